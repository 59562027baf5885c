"""From start/end logits of every window back to an answer string per question (n-best search)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stilts_jax.data.qa import QAExample
from stilts_jax.data.qa_features import QAFeatures


def best_answers(examples: Sequence[QAExample], features: QAFeatures, start_logits: np.ndarray, end_logits: np.ndarray,
                 *, n_best: int = 20, max_answer_length: int = 30) -> dict[str, str]:
    """The highest-scoring valid span (start + end logit) over all windows of each question.

    Valid spans lie inside the context, end at or after their start, and are at most max_answer_length tokens.
    A question with no valid span gets the empty answer.
    """
    by_example: dict[int, list[int]] = {}
    for f, e in enumerate(features.example_index):
        by_example.setdefault(int(e), []).append(f)
    predictions = {}
    for e, example in enumerate(examples):
        best_score, best_text = -np.inf, ""
        for f in by_example.get(e, []):
            offsets = features.offsets[f]
            starts = np.argsort(start_logits[f])[::-1][:n_best]
            ends = np.argsort(end_logits[f])[::-1][:n_best]
            for s in starts:
                if offsets[s, 0] < 0:
                    continue
                for t in ends:
                    if offsets[t, 0] < 0 or t < s or t - s + 1 > max_answer_length:
                        continue
                    score = start_logits[f, s] + end_logits[f, t]
                    if score > best_score:
                        best_score = score
                        best_text = example.context[offsets[s, 0] : offsets[t, 1]]
        predictions[example.id] = best_text.strip()
    return predictions
