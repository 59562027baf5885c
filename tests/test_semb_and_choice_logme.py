"""SEmb (dataset embeddings and their cosine) against numbers worked out by hand, and the multiple-choice form of
LogME (stilts_jax.evaluation.transferability) on features whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stilts_jax.core.errors import InputError
from stilts_jax.evaluation.transferability import (
    dataset_embedding,
    logme_per_column,
    multiple_choice_logme,
    semb,
)
from stilts_jax.select import text_parts


def test_semb_is_the_cosine_of_the_datasets_mean_features() -> None:
    source = np.array([[1.0, 0.0, 2.0], [3.0, 2.0, 0.0]])  # mean (2, 1, 1)
    target = np.array([[0.0, 1.0, 1.0], [0.0, 3.0, 1.0], [3.0, 2.0, 1.0]])  # mean (1, 2, 1)
    assert dataset_embedding(source).tolist() == [2.0, 1.0, 1.0]
    assert dataset_embedding(target).tolist() == [1.0, 2.0, 1.0]
    # (2*1 + 1*2 + 1*1) / (sqrt(6) * sqrt(6)) = 5/6
    assert semb(dataset_embedding(source), dataset_embedding(target)) == pytest.approx(5 / 6, abs=1e-12)
    assert semb(np.array([1.0, 0.0]), np.array([-2.0, 0.0])) == pytest.approx(-1.0)
    assert semb(np.array([1.0, 0.0]), np.array([0.0, 5.0])) == pytest.approx(0.0)
    # The mean, not the examples one by one: two datasets of opposite examples embed to the same point.
    assert semb(dataset_embedding(np.array([[1.0, 1.0], [3.0, 1.0]])), np.array([2.0, 1.0])) == pytest.approx(1.0)


def test_semb_refuses_what_it_cannot_compare() -> None:
    with pytest.raises(InputError, match="same D"):
        semb(np.ones(3), np.ones(4))
    with pytest.raises(InputError, match="all zeros"):
        semb(np.zeros(3), np.ones(3))
    with pytest.raises(InputError, match="at least one example"):
        dataset_embedding(np.zeros((0, 3)))
    with pytest.raises(InputError, match="NaN"):
        dataset_embedding(np.array([[np.nan, 1.0]]))


def test_text_parts_flatten_choices_and_drop_padded_ones() -> None:
    ids = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    mask = np.ones((2, 3, 4), np.int32)
    mask[1, 2] = 0  # the second example has two choices only
    parts = text_parts({"input_ids": ids, "attention_mask": mask, "choice_mask": mask[..., 0], "labels": np.zeros(2)})
    assert len(parts) == 1 and parts[0]["input_ids"].shape == (5, 4)
    assert parts[0]["input_ids"][-1].tolist() == ids[1, 1].tolist()
    dual = text_parts(
        {
            "query_input_ids": np.ones((3, 5)),
            "query_attention_mask": np.ones((3, 5)),
            "candidate_input_ids": np.ones((3, 7)),
            "candidate_attention_mask": np.ones((3, 7)),
        }
    )
    assert sorted(p["input_ids"].shape for p in dual) == [(3, 5), (3, 7)]
    with pytest.raises(InputError, match="no input_ids"):
        text_parts({"labels": np.zeros(2)})


def _choices(rng: np.random.Generator, examples: int, choices: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.normal(size=(examples, choices, dim)), rng.integers(0, choices, size=examples)


def test_choice_logme_prefers_features_that_tell_the_correct_choice() -> None:
    rng = np.random.default_rng(0)
    noise, labels = _choices(rng, 200, 2, 16)
    informative = noise.copy()
    informative[np.arange(200), labels, 0] += 3.0  # one direction marks the correct choice
    separated = multiple_choice_logme(informative, labels)
    random = multiple_choice_logme(noise, labels)
    assert separated > random + 0.5
    # A direction shared by both choices of an example (the prompt's content) carries no answer: the choice form
    # subtracts it, so it changes nothing.
    shared = noise + rng.normal(size=(200, 1, 16)) * 5.0
    assert multiple_choice_logme(shared, labels) == pytest.approx(random, abs=1e-8)
    # Features that point at the wrong choice are as informative as ones pointing at the right one (a linear map
    # can flip the sign).
    flipped = noise.copy()
    flipped[np.arange(200), labels, 0] -= 3.0
    assert multiple_choice_logme(flipped, labels) == pytest.approx(separated, abs=0.1)


def test_two_choices_are_the_feature_difference_entered_in_both_orders() -> None:
    rng = np.random.default_rng(1)
    features, labels = _choices(rng, 50, 2, 4)
    difference = features[np.arange(50), labels] - features[np.arange(50), 1 - labels]
    rows = np.concatenate([difference / 2, -difference / 2])
    targets = np.concatenate([np.full(50, 0.5), np.full(50, -0.5)])[:, None]
    expected = logme_per_column(rows, targets)["evidence"][0]
    assert multiple_choice_logme(features, labels) == pytest.approx(expected, rel=1e-9)


def test_padded_choices_are_left_out() -> None:
    rng = np.random.default_rng(2)
    features, labels = _choices(rng, 40, 3, 6)
    labels = labels % 2  # every correct choice among the first two
    mask = np.ones((40, 3), np.int32)
    mask[:, 2] = 0
    padded = features.copy()
    padded[:, 2] = 1e6  # a padded choice's feature must not count
    assert multiple_choice_logme(padded, labels, mask) == pytest.approx(
        multiple_choice_logme(features[:, :2], labels), rel=1e-9
    )
    # Three real choices: the targets are 2/3 and -1/3.
    three = multiple_choice_logme(features, labels)
    centered = features - features.mean(axis=1, keepdims=True)
    targets = (np.arange(3)[None, :] == labels[:, None]) - 1 / 3
    assert three == pytest.approx(
        logme_per_column(centered.reshape(-1, 6), targets.reshape(-1, 1))["evidence"][0], rel=1e-9
    )
    assert math.isfinite(three)


def test_choice_logme_refuses_bad_inputs() -> None:
    features = np.zeros((4, 2, 3))
    with pytest.raises(InputError, match=r"\[N, choices, D\]"):
        multiple_choice_logme(np.zeros((4, 3)), np.zeros(4, np.int64))
    with pytest.raises(InputError, match="one of each example's choices"):
        multiple_choice_logme(features, np.array([0, 1, 2, 0]))
    with pytest.raises(InputError, match="at least 2 choices"):
        multiple_choice_logme(features, np.zeros(4, np.int64), np.array([[1, 0], [1, 1], [1, 1], [1, 1]]))


def test_the_report_ranks_each_method_and_scores_its_agreement() -> None:
    from stilts_jax.select import Candidate, report

    candidates = [
        Candidate("a", "run", "enc/a", intermediate="mnli", measured=50.0, logme=-0.5, semb=0.90),
        Candidate("b", "run", "enc/b", intermediate="squad", measured=40.0, logme=-0.4, semb=0.95),
        Candidate("c", "run", "enc/c", intermediate="squad+mnli", measured=45.0, logme=-0.6, semb=0.80),
        # Equal to LogME's 10th decimal: a tie, as the noise-only evidence of different encoders is.
        Candidate("d", "run", None, measured=30.0, logme=-0.6 + 1e-14),
        Candidate("pretrained", "pretrained", logme=-0.3),
    ]
    data, table = report(
        candidates,
        {"target": "xnli", "family": "classification", "examples": 8, "pooling": "cls", "semb_model": "/models/base"},
    )
    rows = {row["name"]: row for row in data["candidates"]}
    assert [row["name"] for row in data["candidates"]] == ["pretrained", "b", "a", "c", "d"]
    assert {n: rows[n]["logme_rank"] for n in rows} == {"pretrained": 1, "b": 2, "a": 3, "c": 4, "d": 4}
    assert {n: rows[n]["semb_rank"] for n in rows} == {"pretrained": None, "b": 1, "a": 2, "c": 3, "d": None}
    assert rows["c"]["measured_rank"] == 2 and rows["pretrained"]["measured_rank"] is None
    logme, semb = data["agreement"]["logme"], data["agreement"]["semb"]
    # LogME over a, b, c, d: ranks (2, 1, 3.5, 3.5) against measured (1, 3, 2, 4).
    assert logme["candidates_measured"] == 4
    assert logme["spearman"] == pytest.approx(0.2108185, abs=1e-6)
    assert logme["regret@1"] == pytest.approx(0.2) and logme["regret@3"] == 0.0
    # SEmb over a, b, c (d has no intermediate task): order b, a, c against measured a, c, b.
    assert semb["candidates_measured"] == 3 and semb["spearman"] == pytest.approx(-0.5)
    assert semb["regret@1"] == pytest.approx(0.2) and semb["regret@3"] == 0.0
    assert "| b | squad | -0.400000 | 2 | 0.950000 | 1 | 40.00 | 3 |" in table
    assert "| d | - | -0.600000 | 4 | no task | - | 30.00 | 4 |" in table
    assert "| LogME | 4 | 0.211 | 0.200 | 0.000 |" in table
    assert "| SEmb | 3 | -0.500 | 0.200 | 0.000 |" in table
    assert "without an intermediate task" in table and "of base." in table
