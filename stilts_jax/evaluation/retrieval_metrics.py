"""Retrieval metrics: BUCC F1 and its threshold, Tatoeba accuracy, mAP@k (LAReQA, Mewsli-X). Scores in percent.

One implementation each, shared by the pipeline and the scorer. Definitions (checked against their sources):

- BUCC (google-research/xtreme evaluate.py bucc_f1 and third_party/utils_retrieve.py, LASER tasks/bucc/bucc.py):
  sets of (src_id, en_id) pairs; precision = |predicted & gold| / |predicted|, recall = |predicted & gold| / |gold|,
  F1 their harmonic mean; all three are 0 when nothing predicted is gold.
- BUCC threshold (LASER's BuccOptimize, made tie-safe): candidates are the (score, src_id, en_id) pairs left by
  "max" retrieval with greedy one-to-one matching. A threshold t keeps the candidates with score >= t. Only cuts
  between distinct scores are tried, so candidates with equal scores are always kept or dropped together (LASER
  walks the sorted list one pair at a time and can cut inside a group of equal scores, whose midpoint then keeps
  the whole group: the F1 it reports is not the F1 of what it extracts). Of the cuts with the best F1 the one
  keeping fewest pairs (highest threshold) wins. As in LASER the threshold returned lies halfway between the
  lowest kept score and the next lower score (so the selection is exactly reproduced on the split it was chosen
  on, and a test pair scoring in between is kept only if above the middle); when every candidate is kept it is
  the lowest score. Recall counts every gold pair, including those no candidate proposes. The threshold is chosen
  on the split with gold (BUCC sample = XTREME dev) and applied to the other (BUCC training = XTREME test).
- Tatoeba (evaluate.py accuracy): percentage of queries whose predicted index equals the gold index.
- mAP@k (XTREME-R; xtreme third_party/utils_lareqa.py average_precision_at_k, called with k=20 by
  evaluate_retrieval.py for LAReQA): per query, walk the first k ranked candidates; at each relevant candidate not
  already seen higher in the list add hits_so_far / rank; divide by min(k, |relevant|) (not |relevant|: a query
  with more than k relevant candidates can still score 1). mAP@k is the mean over queries. Mewsli-X has a single
  gold entity per mention, where this is the reciprocal rank within the top 20 (utils_mewslix.py reports it as
  MRR/MAP@20).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Iterable, Sequence
from typing import NamedTuple

from stilts_jax.core.errors import InputError

Pair = tuple[str, str]
Candidate = tuple[float, str, str]


class MetricInputError(InputError, ValueError):
    """Inputs a metric cannot score (mismatched lengths, nothing to score against)."""


def bucc_scores(predicted_pairs: Iterable[Pair], gold_pairs: Iterable[Pair]) -> dict[str, float]:
    """{"precision", "recall", "f1"} in percent over (src_id, en_id) pairs."""
    predicted, gold = set(map(tuple, predicted_pairs)), set(map(tuple, gold_pairs))
    if not gold:
        raise MetricInputError("no gold BUCC pairs to score against")
    return _prf(len(predicted & gold), len(predicted), len(gold))


def _prf(correct: int, num_predicted: int, num_gold: int) -> dict[str, float]:
    if correct == 0:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    precision, recall = correct / num_predicted, correct / num_gold
    f1 = 2 * precision * recall / (precision + recall)
    return {"precision": 100.0 * precision, "recall": 100.0 * recall, "f1": 100.0 * f1}


class BuccThreshold(NamedTuple):
    threshold: float  # keep candidates with score >= threshold
    scores: dict[str, float]  # precision, recall, f1 (percent) of that selection on the given split


def _best_scores(candidates: Iterable[Candidate]) -> dict[Pair, float]:
    """Pair -> score; a pair listed twice keeps its higher score (as LASER's read_candidate2score)."""
    best: dict[Pair, float] = {}
    for n, candidate in enumerate(candidates):
        try:
            score, src, en = candidate
            score = float(score)
        except (TypeError, ValueError) as e:
            raise MetricInputError(f"candidate {n} is not (score, src_id, en_id): {candidate!r}") from e
        if math.isnan(score):
            raise MetricInputError(f"candidate {n} ({src!r}, {en!r}) has a NaN score")
        pair = (src, en)
        if pair not in best or score > best[pair]:
            best[pair] = score
    return best


def select_bucc_threshold(candidates: Iterable[Candidate], gold_pairs: Iterable[Pair]) -> BuccThreshold:
    """The threshold maximising F1 against `gold_pairs`, and the scores there (rules in the module docstring)."""
    best = _best_scores(candidates)
    gold: set[Pair] = {(src, en) for src, en in gold_pairs}
    if not best:
        raise MetricInputError("no BUCC candidates to choose a threshold from")
    if not gold:
        raise MetricInputError("no gold BUCC pairs to choose a threshold with")
    by_score: dict[float, list[Pair]] = {}
    for pair, score in best.items():
        by_score.setdefault(score, []).append(pair)
    levels = sorted(by_score, reverse=True)
    kept = correct = 0
    best_f1, best_level = -1.0, 0
    for level, score in enumerate(levels):
        kept += len(by_score[score])
        correct += sum(pair in gold for pair in by_score[score])
        f1 = _prf(correct, kept, len(gold))["f1"]
        if f1 > best_f1:  # strict: of equal F1s the higher threshold stays
            best_f1, best_level = f1, level
    lowest_kept = levels[best_level]
    threshold = lowest_kept
    if best_level < len(levels) - 1:
        middle = (lowest_kept + levels[best_level + 1]) / 2
        if middle > levels[best_level + 1]:  # adjacent floats can round the middle down onto the lower score
            threshold = middle
    selected = apply_threshold(((score, *pair) for pair, score in best.items()), threshold)
    return BuccThreshold(threshold, bucc_scores(selected, gold))


def apply_threshold(candidates: Iterable[Candidate], threshold: float) -> set[Pair]:
    """The (src_id, en_id) pairs whose score is >= threshold."""
    if math.isnan(threshold):
        raise MetricInputError("the BUCC threshold is NaN")
    return {pair for pair, score in _best_scores(candidates).items() if score >= threshold}


def count_accuracy(
    predictions: Sequence[object], gold: Sequence[object], *, gold_name: str, unit: str, units: str = ""
) -> float:
    """Percentage of positions where the prediction equals the gold value: the one accuracy of the project
    (metrics.accuracy_score, Tatoeba's `accuracy`, the classification tasks)."""
    if len(predictions) != len(gold):
        raise MetricInputError(
            f"{len(predictions)} predictions but {len(gold)} {gold_name}; one prediction per {unit} is expected"
        )
    if not gold:
        raise MetricInputError(f"no {units or unit + 's'} to score")
    return 100.0 * sum(int(p == g) for p, g in zip(predictions, gold)) / len(gold)


def accuracy(predicted_indices: Sequence[int], gold_indices: Sequence[int]) -> float:
    """Percentage of positions where the predicted index equals the gold one (Tatoeba)."""
    return count_accuracy(
        [int(p) for p in predicted_indices],
        [int(g) for g in gold_indices],
        gold_name="gold indices",
        unit="query",
        units="queries",
    )


def average_precision_at_k(ranking: Sequence[Hashable], relevant: Collection[Hashable], k: int = 20) -> float:
    """AP@k of one ranked list, as a fraction (definition in the module docstring)."""
    if k < 1:
        raise MetricInputError(f"k must be at least 1, got {k}")
    relevant = set(relevant)
    if not relevant:
        raise MetricInputError("a query without relevant candidates has no average precision")
    seen: set[Hashable] = set()
    hits, total = 0, 0.0
    for rank, candidate in enumerate(list(ranking)[:k], start=1):
        if candidate in relevant and candidate not in seen:
            hits += 1
            total += hits / rank
        seen.add(candidate)
    return total / min(k, len(relevant))


def mean_average_precision_at_k(
    rankings: Sequence[Sequence[Hashable]], relevant: Sequence[Collection[Hashable]], k: int = 20
) -> float:
    """mAP@k in percent: rankings[q] is query q's ranked candidate ids, relevant[q] the set of its relevant ids (the
    one mAP of the project: metrics.map_at_k_by_id reads it by query id)."""
    if len(rankings) != len(relevant):
        raise MetricInputError(f"{len(rankings)} rankings but {len(relevant)} relevant sets; one of each per query")
    if not rankings:
        raise MetricInputError("no queries to score")
    total = 0.0
    for q, (ranking, gold) in enumerate(zip(rankings, relevant)):
        if not gold:
            raise MetricInputError(f"query {q} has no relevant candidates")
        total += average_precision_at_k(ranking, gold, k)
    return 100.0 * total / len(rankings)
