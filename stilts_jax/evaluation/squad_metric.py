"""SQuAD v1.1 exact match and F1, as the official evaluation script (v1.1) defines them.

One implementation, shared by the pipeline's evaluator and the scorer.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower case, drop ASCII punctuation and English articles, collapse white space (in that order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def f1(prediction: str, truth: str) -> float:
    predicted, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = Counter(predicted) & Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """{"exact_match", "f1"} in percent over every referenced question; a missing prediction scores 0."""
    if not references:
        raise ValueError("no reference answers to score against")
    em = f1_total = 0.0
    for qid, truths in references.items():
        if qid not in predictions:
            continue
        prediction = predictions[qid]
        em += max(exact_match(prediction, t) for t in truths)
        f1_total += max(f1(prediction, t) for t in truths)
    return {"exact_match": 100.0 * em / len(references), "f1": 100.0 * f1_total / len(references)}
