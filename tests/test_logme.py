"""LogME (stilts_jax.evaluation.transferability) against the paper's equations written out with whole matrices in
NumPy (A = alpha I + beta F^T F, m = beta A^-1 F^T y, log det A directly), and the ranking metrics on hand-made
numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stilts_jax.core.errors import InputError
from stilts_jax.evaluation.transferability import logme, logme_per_column, regret_at_k, spearman


def reference_evidence(f: np.ndarray, y: np.ndarray, iterations: int = 5000) -> tuple[float, float, float]:
    """You et al. 2021, Algorithm 1, with matrices: iterate alpha, beta to the fixed point, return the evidence / N."""
    n, d = f.shape
    ftf = f.T @ f
    eig = np.linalg.eigvalsh(ftf)
    alpha, beta = 1.0, 1.0
    for _ in range(iterations):
        a = alpha * np.eye(d) + beta * ftf
        m = beta * np.linalg.solve(a, f.T @ y)
        gamma = float(np.sum(beta * eig / (alpha + beta * eig)))
        new_alpha = gamma / float(m @ m)
        new_beta = (n - gamma) / float(np.sum((f @ m - y) ** 2))
        done = abs(new_alpha / new_beta - alpha / beta) <= 1e-12 * alpha / beta
        alpha, beta = new_alpha, new_beta
        if done:
            break
    a = alpha * np.eye(d) + beta * ftf
    m = beta * np.linalg.solve(a, f.T @ y)
    _, log_det = np.linalg.slogdet(a)
    evidence = (
        d / 2 * math.log(alpha)
        + n / 2 * math.log(beta)
        - n / 2 * math.log(2 * math.pi)
        - beta / 2 * float(np.sum((f @ m - y) ** 2))
        - alpha / 2 * float(m @ m)
        - log_det / 2
    )
    return evidence / n, alpha, beta


def _data(n: int, d: int, classes: int, seed: int, signal: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centers = rng.normal(size=(classes, d))
    return rng.normal(size=(n, d)) + signal * centers[labels], labels


@pytest.mark.parametrize("n, d", [(200, 16), (40, 30)])
def test_logme_matches_the_matrix_form_of_the_paper(n: int, d: int) -> None:
    features, labels = _data(n, d, 3, seed=n, signal=1.0)
    one_hot = np.eye(3)[labels]
    got = logme_per_column(features, one_hot)
    for c in range(3):
        evidence, alpha, beta = reference_evidence(features, one_hot[:, c])
        assert got["evidence"][c] == pytest.approx(evidence, rel=1e-6, abs=1e-8)
        assert got["alpha"][c] == pytest.approx(alpha, rel=1e-4)
        assert got["beta"][c] == pytest.approx(beta, rel=1e-4)
    expected = np.mean([reference_evidence(features, one_hot[:, c])[0] for c in range(3)])
    assert logme(features, labels) == pytest.approx(expected, rel=1e-6)


def test_logme_is_higher_for_features_that_separate_the_classes() -> None:
    separated, labels = _data(300, 8, 3, seed=0, signal=3.0)
    noise = np.random.default_rng(1).normal(size=separated.shape)
    assert logme(separated, labels) > logme(noise, labels) + 0.1


def test_rank_deficient_features() -> None:
    """Duplicated feature columns (rank 4 of 8): the evidence is the paper's, zero directions counted in log det."""
    base, labels = _data(100, 4, 2, seed=3, signal=1.0)
    features = np.concatenate([base, base], axis=1)
    one_hot = np.eye(2)[labels]
    got = logme_per_column(features, one_hot)["evidence"]
    for c in range(2):
        assert got[c] == pytest.approx(reference_evidence(features, one_hot[:, c])[0], rel=1e-5)


def test_logme_refuses_bad_inputs() -> None:
    with pytest.raises(InputError, match="same N"):
        logme_per_column(np.zeros((5, 3)), np.zeros((4, 2)))
    with pytest.raises(InputError, match="NaN"):
        logme(np.full((5, 3), np.nan), np.array([0, 1, 0, 1, 0]))
    with pytest.raises(InputError, match="integer labels"):
        logme(np.zeros((5, 3)), np.array([0.0, 1.0, 0.0, 1.0, 0.0]))


def test_spearman_on_hand_made_numbers() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    # ranks (1, 2, 3, 4) against (2, 1, 4, 3): 1 - 6 * 4 / (4 * 15) = 0.6
    assert spearman([0.1, 0.2, 0.3, 0.4], [5, 1, 9, 7]) == pytest.approx(0.6)
    # a tie takes the mean rank: (1.5, 1.5, 3) against (1, 2, 3) -> Pearson of the ranks = sqrt(3)/2
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(math.sqrt(3) / 2)
    assert spearman([1, 2], [1, 2]) is None
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_regret_on_hand_made_numbers() -> None:
    predicted = [0.9, 0.5, 0.7, 0.1]  # predicted order: 0, 2, 1, 3
    measured = [60.0, 80.0, 70.0, 50.0]  # truly best: 1
    assert regret_at_k(predicted, measured, 1) == pytest.approx(20 / 80)
    assert regret_at_k(predicted, measured, 2) == pytest.approx(10 / 80)
    assert regret_at_k(predicted, measured, 3) == 0.0
    assert regret_at_k([1.0, 0.0], [70.0, 60.0], 1) == 0.0
    assert regret_at_k([], [], 1) is None
