"""From start/end logits of every window back to an answer string per question (n-best search).

SQuAD v1.1 style (XQuAD, MLQA, TyDiQA-GoldP): every question gets its best span. SQuAD v2.0 style (`with_null`):
the best span competes with "no answer", scored by the first token (<s>, the CLS position the features label for
unanswerable windows), as the original BERT run_squad.py and Hugging Face's utils_qa.py do. Its answers keep every
question's best span and no-answer score (NullThresholdedAnswers), which the v2.0 best-threshold search needs.

Candidates follow transformers' squad_metrics.compute_predictions_logits (what XTREME's run_squad scores with): the
n_best start and end positions of every window, a span only inside the context, ending at or after its start, at most
max_answer_length tokens, and starting at a token that has its maximum context in that window
(`if not feature.token_is_max_context.get(start_index, False): continue`; the rule of XTREME's
third_party/processors/squad.py `_new_check_is_max_context`, see stilts_jax/data/qa_features.py). Overlapping windows
thus never offer the same start token twice; only the start is checked, not the end.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from stilts_jax.data.qa import QAExample
from stilts_jax.data.qa_features import QAFeatures

CLS_INDEX = 0  # <s>: inputs are right-padded, so the first token of every window


@dataclasses.dataclass(frozen=True)
class QAPrediction:
    text: str  # "" when no span was found or "no answer" won
    span_score: float  # best valid span's start + end logit; -inf when there is none
    null_score: float  # min over the question's windows of the CLS start + end logit

    @property
    def no_answer_score(self) -> float:
        """null score - best span score: above the threshold the question gets "no answer" (BERT's score_diff)."""
        return self.null_score - self.span_score


class NullThresholdedAnswers(dict[str, str]):
    """Question id -> answer after the null threshold ("" for "no answer"), as written and scored.

    Beside the answers it keeps what they were decided from: `spans`, every question's best span text (what it
    would answer at any threshold), `no_answer_scores` (null score - best span score) and the `threshold` used.
    Everything else treats it as the plain dict of answers.
    """

    def __init__(self, scored: Mapping[str, QAPrediction], threshold: float):
        super().__init__((qid, "" if p.no_answer_score > threshold else p.text) for qid, p in scored.items())
        self.threshold = threshold
        self.spans = {qid: p.text for qid, p in scored.items()}
        self.no_answer_scores = {qid: p.no_answer_score for qid, p in scored.items()}


def _windows_by_example(features: QAFeatures) -> dict[int, list[int]]:
    by_example: dict[int, list[int]] = {}
    for f, e in enumerate(features.example_index):
        by_example.setdefault(int(e), []).append(f)
    return by_example


def score_answers(
    examples: Sequence[QAExample],
    features: QAFeatures,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
) -> dict[str, QAPrediction]:
    """The highest-scoring valid span (start + end logit) over all windows of each question, and its null score.

    Valid spans lie inside the context, start at a token that has its maximum context in the window
    (features.max_context), end at or after their start, and are at most max_answer_length tokens; only the n_best
    start and n_best end positions of each window are tried. The null score is the smallest CLS score over the
    question's windows (the window most sure that an answer exists decides).
    """
    by_example = _windows_by_example(features)
    predictions = {}
    for e, example in enumerate(examples):
        best_score, best_text, null_score = -np.inf, "", np.inf
        for f in by_example.get(e, []):
            null_score = min(null_score, float(start_logits[f, CLS_INDEX] + end_logits[f, CLS_INDEX]))
            offsets = features.offsets[f]
            max_context = features.max_context[f]
            starts = np.argsort(start_logits[f])[::-1][:n_best]
            ends = np.argsort(end_logits[f])[::-1][:n_best]
            for s in starts:
                if offsets[s, 0] < 0 or not max_context[s]:
                    continue
                for t in ends:
                    if offsets[t, 0] < 0 or t < s or t - s + 1 > max_answer_length:
                        continue
                    score = float(start_logits[f, s] + end_logits[f, t])
                    if score > best_score:
                        best_score = score
                        best_text = example.context[offsets[s, 0] : offsets[t, 1]]
        predictions[example.id] = QAPrediction(best_text.strip(), best_score, null_score)
    return predictions


def best_answers(
    examples: Sequence[QAExample],
    features: QAFeatures,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
    with_null: bool = False,
    null_score_diff_threshold: float = 0.0,
) -> dict[str, str]:
    """Question id -> answer text.

    Without `with_null` (SQuAD v1.1 and its cross-lingual sets) the best valid span, or "" when there is none.
    With it (SQuAD v2.0), "" ("no answer") when null score - best span score > null_score_diff_threshold: a larger
    threshold answers more questions. The threshold is run_squad.py's null_score_diff_threshold (default 0.0). The
    SQuAD v2.0 answers come as NullThresholdedAnswers, which also hold the spans and no-answer scores.
    """
    scored = score_answers(
        examples, features, start_logits, end_logits, n_best=n_best, max_answer_length=max_answer_length
    )
    if not with_null:
        return {qid: p.text for qid, p in scored.items()}
    return NullThresholdedAnswers(scored, null_score_diff_threshold)
