"""How well an encoder's frozen features suit a target task, measured before any training: LogME, and how well such
a score ranks candidates against the scores they measured after training.

LogME (You, Liu, Wang and Long, "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML 2021)
is the log marginal evidence of a Bayesian linear model y = F w + noise on the frozen features F [N, D], with prior
w ~ N(0, 1/alpha I) and noise precision beta, at the alpha and beta that maximize it, divided by N. A
classification target's labels become one one-hot column per class; the score is the mean over classes. With the
SVD F = U diag(s) V^T (one per encoder) and x = U^T y, sigma = s^2 and t = alpha / beta, every quantity of the
paper's fixed-point iteration is a sum over the singular values:

    gamma = sum sigma / (sigma + t)                    (the effective number of parameters)
    |m|^2 = sum sigma x^2 / (sigma + t)^2              (m: the posterior mean of w)
    |F m - y|^2 = sum x^2 t^2 / (sigma + t)^2 + (|y|^2 - |x|^2)
    alpha <- gamma / |m|^2,  beta <- (N - gamma) / |F m - y|^2

until t settles; then

    log p(y | F) = D/2 log alpha + N/2 log beta - N/2 log 2 pi - beta/2 |F m - y|^2 - alpha/2 |m|^2
                   - 1/2 log det(alpha I + beta F^T F),

the determinant being prod (alpha + beta sigma) times alpha^(D - k) for the D - k directions F does not span. A
higher score means the labels are more linearly predictable from the features with less complexity. This module is
written from the paper's equations (the authors' reference code, github.com/thuml/LogME, sums the determinant over
the k = min(N, D) singular values only, which differs from the paper when N < D).

A multiple-choice target (XCOPA, COPA, SIQA) has a label per example but a feature per choice, and its head scores
each choice with one shared linear map followed by a softmax over the example's choices, which only sees the
differences between the choices' scores. `multiple_choice_logme` gives LogME that form: every choice's feature minus
the mean feature of its example's choices, regressed on whether it is the correct one (1 - 1/C for the correct
choice, -1/C for the others, C the example's number of choices). For two choices it is LogME of the difference of
the two choices' features against which one is correct, each example entered in both orders.

SEmb (Vu et al. 2020, "Exploring and Predicting Transferability across NLP Tasks", there called TextEmb; Poth et al.
2021, "What to Pre-Train on? Efficient Intermediate Task Selection", github.com/adapter-hub/efficient-task-transfer,
task_selection/semb.py) embeds a dataset as the mean over its examples of one fixed encoder's mean-pooled last layer,
and scores an intermediate dataset by the cosine similarity of its embedding to the target dataset's
(`dataset_embedding`, `semb`; written from the papers' description, not from their code).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from stilts_jax.core.distributed import place
from stilts_jax.core.errors import InputError
from stilts_jax.evaluation.embedding import POOLINGS, SentenceEmbedder, SentenceEncoder
from stilts_jax.models.encoder import Encoder

__all__ = [
    "FeatureExtractor",
    "dataset_embedding",
    "encoder_features",
    "logme",
    "logme_per_column",
    "multiple_choice_logme",
    "regret_at_k",
    "semb",
    "spearman",
]

MAX_ITERATIONS = 1000  # where N <= D the labels lie in the features' span and beta grows slowly
TOLERANCE = 1e-6  # relative change of t = alpha / beta between iterations


def _sums(sigma: jax.Array, x2: jax.Array, rest: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """gamma, |m|^2 and |F m - y|^2 per column at t = alpha / beta (sigma [k, 1], x2 [k, C], rest and t [C])."""
    ratio = sigma + t
    gamma = jnp.sum(sigma / ratio, axis=0)
    m2 = jnp.sum(sigma * x2 / ratio**2, axis=0)
    residual = jnp.sum(x2 * (t / ratio) ** 2, axis=0) + rest
    return gamma, m2, residual


@jax.jit
def _logme_columns(features: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    n, d = features.shape
    u, s, _ = jnp.linalg.svd(features, full_matrices=False)
    sigma = (s**2)[:, None]
    x = u.T @ targets
    x2 = x**2
    # What the features cannot reach of y; rounding may leave it a hair below 0 where they reach all of it (N <= D).
    rest = jnp.maximum(jnp.sum(targets**2, axis=0) - jnp.sum(x2, axis=0), 0.0)
    tiny = jnp.finfo(features.dtype).tiny
    columns = targets.shape[1]

    def update(alpha: jax.Array, beta: jax.Array) -> tuple[jax.Array, jax.Array]:
        gamma, m2, residual = _sums(sigma, x2, rest, alpha / beta)
        return gamma / jnp.maximum(m2, tiny), jnp.maximum(n - gamma, tiny) / jnp.maximum(residual, tiny)

    def not_settled(state: tuple[Any, ...]) -> jax.Array:
        step, alpha, beta, previous_t = state
        change = jnp.max(jnp.abs(alpha / beta - previous_t) / previous_t)
        return (step < MAX_ITERATIONS) & (change > TOLERANCE)

    def body(state: tuple[Any, ...]) -> tuple[Any, ...]:
        step, alpha, beta, _ = state
        new_alpha, new_beta = update(alpha, beta)
        return step + 1, new_alpha, new_beta, alpha / beta

    ones = jnp.ones((columns,), features.dtype)
    first_alpha, first_beta = update(ones, ones)
    _, alpha, beta, _ = jax.lax.while_loop(not_settled, body, (1, first_alpha, first_beta, ones))
    _, m2, residual = _sums(sigma, x2, rest, alpha / beta)
    log_det = jnp.sum(jnp.log(alpha + beta * sigma), axis=0) + (d - s.shape[0]) * jnp.log(alpha)
    evidence = (
        d / 2 * jnp.log(alpha)
        + n / 2 * jnp.log(beta)
        - n / 2 * math.log(2 * math.pi)
        - beta / 2 * residual
        - alpha / 2 * m2
        - log_det / 2
    )
    return evidence / n, alpha, beta, m2


def _compute_dtype() -> Any:
    """float64 where the backend has it (CPU, GPU): the evidence of similar encoders can differ in the 4th digit."""
    return jnp.float32 if jax.default_backend() == "tpu" else jnp.float64


def logme_per_column(features: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Each column of `targets` [N, C]'s LogME on `features` [N, D]: {"evidence", "alpha", "beta"}, each [C]
    (evidence divided by N)."""
    features = np.asarray(features)
    targets = np.asarray(targets)
    if features.ndim != 2 or targets.ndim != 2 or len(features) != len(targets):
        raise InputError(
            f"LogME needs features [N, D] and targets [N, C] of the same N, got {features.shape} and {targets.shape}"
        )
    if len(features) < 2:
        raise InputError(f"LogME needs at least 2 examples, got {len(features)}")
    if not np.isfinite(features).all():
        raise InputError("the features hold NaN or infinite values: the encoder's outputs are not usable")
    dtype = _compute_dtype()
    with jax.enable_x64(dtype == jnp.float64):
        evidence, alpha, beta, _ = _logme_columns(jnp.asarray(features, dtype), jnp.asarray(targets, dtype))
        return {
            "evidence": np.asarray(evidence, np.float64),
            "alpha": np.asarray(alpha, np.float64),
            "beta": np.asarray(beta, np.float64),
        }


def logme(features: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> float:
    """LogME of class `labels` [N] (integers 0..C-1) on `features` [N, D]: the mean over classes of each one-hot
    column's evidence per example. Higher is better; compare scores on the same examples only."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"LogME for classification needs integer labels [N], got {labels.dtype} {labels.shape}")
    classes = int(num_classes if num_classes is not None else labels.max() + 1)
    if labels.min() < 0 or labels.max() >= classes:
        raise InputError(f"labels must lie in 0..{classes - 1}, got {labels.min()}..{labels.max()}")
    one_hot = (labels[:, None] == np.arange(classes)[None, :]).astype(np.float64)
    return float(np.mean(logme_per_column(features, one_hot)["evidence"]))


def multiple_choice_logme(features: np.ndarray, labels: np.ndarray, choice_mask: np.ndarray | None = None) -> float:
    """LogME of a multiple-choice target: `features` [N, C, D] (each choice's pooled feature), `labels` [N] (the
    correct choice), `choice_mask` [N, C] (1 for the example's real choices; default all). Each real choice is a row:
    its feature minus its example's mean choice feature, against 1 - 1/C_i for the correct choice and -1/C_i for the
    others (C_i: the example's choices). Higher is better; compare scores on the same examples only."""
    features = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    if features.ndim != 3 or labels.shape != features.shape[:1]:
        raise InputError(
            f"multiple-choice LogME needs features [N, choices, D] and labels [N], got {features.shape} and "
            f"{labels.shape}"
        )
    examples, choices, _ = features.shape
    mask = np.ones((examples, choices), bool) if choice_mask is None else np.asarray(choice_mask) > 0
    if mask.shape != (examples, choices):
        raise InputError(f"choice_mask must be [N, choices] = {(examples, choices)}, got {mask.shape}")
    counts = mask.sum(axis=1)
    if (counts < 2).any():
        raise InputError(f"every example needs at least 2 choices; {int((counts < 2).sum())} have fewer")
    if not np.issubdtype(labels.dtype, np.integer) or (labels < 0).any() or (labels >= counts).any():
        raise InputError("labels must be integers naming one of each example's choices")
    mean = (features * mask[..., None]).sum(axis=1) / counts[:, None]
    centered = features - mean[:, None, :]
    correct = (np.arange(choices)[None, :] == labels[:, None]).astype(np.float64)
    targets = correct - 1.0 / counts[:, None]
    return float(logme_per_column(centered[mask], targets[mask][:, None])["evidence"][0])


def dataset_embedding(features: np.ndarray) -> np.ndarray:
    """SEmb's embedding of a dataset: the mean of its examples' pooled features [N, D] -> [D] (float64)."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) == 0:
        raise InputError(f"a dataset embedding needs features [N, D] of at least one example, got {features.shape}")
    if not np.isfinite(features).all():
        raise InputError("the features hold NaN or infinite values: the encoder's outputs are not usable")
    return features.mean(axis=0)


def semb(source: np.ndarray, target: np.ndarray) -> float:
    """SEmb's score of an intermediate dataset for a target: the cosine similarity of their dataset embeddings
    (`dataset_embedding`), in [-1, 1]; higher is more similar."""
    a, b = np.asarray(source, np.float64), np.asarray(target, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise InputError(f"SEmb compares two embeddings [D] of the same D, got {a.shape} and {b.shape}")
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norms == 0:
        raise InputError("a dataset embedding is all zeros: its cosine similarity is undefined")
    return float(a @ b) / norms


class FeatureExtractor:
    """One layer (the last unless `layer` says: an index into the hidden states, 0 the embeddings' output) of
    encoders of one architecture over featurized inputs (input_ids, attention_mask as a task featurizes them),
    pooled: 'cls' is the first token (<s>, what the classification head reads), 'mean' the mean over the attention
    mask. One evaluation Predictor on `mesh` and `rules` serves every encoder passed to `__call__`, so its shapes
    compile once for all of them.

    `structure`: an encoder of the architecture (its weights are not used).
    """

    def __init__(
        self,
        structure: Encoder,
        *,
        pooling: str = "cls",
        batch_size: int = 64,
        mesh: Mesh | None = None,
        rules: Sequence[tuple[str, Any]] | None = None,
        layer: int | None = None,
    ):
        if pooling not in POOLINGS:
            raise InputError(f"unknown pooling {pooling!r}; use one of {', '.join(POOLINGS)}")
        depth = structure.config.num_hidden_layers
        if layer is not None and not 0 <= layer <= depth:
            raise InputError(f"layer {layer} does not exist: the encoder's hidden states are 0 (embeddings) to {depth}")
        self.pooling = pooling
        self.layer = depth if layer is None else layer
        self._runner = SentenceEncoder(
            structure,
            None,
            layer=self.layer,
            pooling=pooling,  # type: ignore[arg-type]
            batch_size=batch_size,
            mesh=mesh,
            rules=rules,
        )

    def __call__(self, encoder: Encoder, arrays: Mapping[str, np.ndarray], *, progress: bool = False) -> np.ndarray:
        """float32 [N, hidden] features of `encoder` (the structure's architecture) for the rows of `arrays`."""
        state = nnx.to_pure_dict(nnx.state(SentenceEmbedder(encoder, self.layer, self.pooling)))  # type: ignore[arg-type]
        params = jax.tree.map(lambda new, old: place(new, old.sharding), state, self._runner.params)
        output = self._runner.predictor.predict(params, dict(arrays), desc="features", progress=progress)
        return np.asarray(output, np.float32)


def encoder_features(
    encoder: Encoder,
    arrays: Mapping[str, np.ndarray],
    *,
    pooling: str = "cls",
    batch_size: int = 64,
    mesh: Mesh | None = None,
    rules: Sequence[tuple[str, Any]] | None = None,
    progress: bool = True,
    layer: int | None = None,
) -> np.ndarray:
    """One encoder's pooled features [N, hidden] of `layer` (the last by default; FeatureExtractor, for a single
    encoder)."""
    extractor = FeatureExtractor(encoder, pooling=pooling, batch_size=batch_size, mesh=mesh, rules=rules, layer=layer)
    return extractor(encoder, arrays, progress=progress)


def _ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank."""
    array = np.asarray(values, np.float64)
    order = np.argsort(array, kind="stable")
    ranks = np.empty(len(array))
    ranks[order] = np.arange(1, len(array) + 1)
    for value in np.unique(array):
        tied = array == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(predicted: Sequence[float], measured: Sequence[float]) -> float | None:
    """Spearman's rank correlation (ties at their mean rank); None for fewer than 3 pairs or a constant side."""
    if len(predicted) != len(measured):
        raise ValueError(f"{len(predicted)} predicted and {len(measured)} measured scores")
    if len(predicted) < 3:
        return None
    a, b = _ranks(predicted), _ranks(measured)
    a, b = a - a.mean(), b - b.mean()
    denominator = math.sqrt(float(a @ a) * float(b @ b))
    return None if denominator == 0 else float(a @ b) / denominator


def regret_at_k(predicted: Sequence[float], measured: Sequence[float], k: int) -> float | None:
    """(best measured - best measured among the k highest predicted) / |best measured|: 0 when the top k predicted
    hold the truly best candidate. None without candidates or where the best measured score is 0."""
    if len(predicted) != len(measured):
        raise ValueError(f"{len(predicted)} predicted and {len(measured)} measured scores")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if not measured:
        return None
    best = max(measured)
    top = np.argsort(-np.asarray(predicted, np.float64), kind="stable")[:k]
    chosen = max(measured[i] for i in top)
    return None if best == 0 else (best - chosen) / abs(best)
