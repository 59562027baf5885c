"""The extractive QA family (SQuAD v1.1/v2.0, XQuAD, MLQA, TyDiQA-GoldP): features, head, loss, predictions, metric.

Scoring follows each dataset's official script: SQuAD v1.1's for SQuAD, XQuAD and TyDiQA-GoldP, MLQA's
language-aware one for MLQA, SQuAD v2.0's (with its HasAns/NoAns breakdown and best-threshold scores) for SQuAD
v2.0, whose predictions may be "no answer".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from stilts_jax.data.qa import QAExample
from stilts_jax.data.qa_features import QAFeatures, featurize_qa
from stilts_jax.data.task_sources import DATASETS, load_examples
from stilts_jax.evaluation.metrics import (
    mlqa_scores,
    squad_v2_best_thresholds,
    squad_v2_reachable_f1_threshold,
    squad_v2_scores,
)
from stilts_jax.evaluation.predictor import Predictor
from stilts_jax.evaluation.qa_postprocess import NullThresholdedAnswers, best_answers, score_answers
from stilts_jax.evaluation.report import write_predictions
from stilts_jax.evaluation.squad_metric import squad_scores
from stilts_jax.models.heads import SpanHead, span_loss
from stilts_jax.tasks.registry import TaskSpec

BEST_THRESHOLD = "best"  # null_score_diff_threshold: tune it on the evaluated set for the best F1


class SpanQATask:
    columns = [("f1", "F1"), ("exact_match", "EM"), ("baseline_f1", "baseline F1")]  # noqa: RUF012 (an instance may replace it)

    def __init__(
        self,
        spec: TaskSpec,
        tokenizer: Any,
        *,
        max_length: int = 384,
        doc_stride: int = 128,
        n_best: int = 20,
        max_answer_length: int = 30,
        null_score_diff_threshold: float | str = 0.0,
    ):
        """`null_score_diff_threshold`: a number, or "best" to predict SQuAD v2.0 with the threshold of the best F1
        on the evaluated questions themselves (their reference answers pick it: an oracle, as in BERT's dev runs)."""
        if isinstance(null_score_diff_threshold, str) and null_score_diff_threshold != BEST_THRESHOLD:
            raise ValueError(
                f"null_score_diff_threshold must be a number or {BEST_THRESHOLD!r}, got "
                f"{null_score_diff_threshold!r} (config: evaluation.null_score_diff_threshold, or "
                f"evaluation.tune_null_score_diff_threshold=true for the best one)"
            )
        self.spec = spec
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.doc_stride = doc_stride
        self.n_best = n_best
        self.max_answer_length = max_answer_length
        self.null_score_diff_threshold = null_score_diff_threshold
        # "No answer" is a prediction only where the task's own data has unanswerable questions (SQuAD v2.0).
        self.with_null = any(
            DATASETS[spec.dataset_and_split(which)[0]].unanswerable for which in ("train", "dev", "eval")
        )
        if self.with_null:  # the official v2.0 script's breakdown and best-threshold F1 beside F1 and EM
            self.columns = [
                ("f1", "F1"),
                ("exact_match", "EM"),
                ("HasAns_f1", "HasAns F1"),
                ("NoAns_f1", "NoAns F1"),
                ("best_f1", "best F1"),
                ("baseline_f1", "baseline F1"),
            ]
        self.loss_fn = span_loss
        self._cached: tuple[tuple, QAFeatures] | None = None  # the dev set, featurized once per phase

    def load(
        self, which: str, source: Mapping[str, Any], languages: Sequence[str] | None
    ) -> dict[str, list[QAExample]]:
        dataset, split = self.spec.dataset_and_split(which)
        return load_examples(dataset, split, source, languages)

    def head(self, hidden_size: int, rngs: nnx.Rngs) -> SpanHead:
        return SpanHead(hidden_size, rngs=rngs)

    def train_features(self, examples: Sequence[QAExample]) -> dict[str, np.ndarray]:
        return featurize_qa(examples, self.tokenizer, max_length=self.max_length, doc_stride=self.doc_stride).arrays

    def _inference_features(self, examples: Sequence[QAExample]) -> QAFeatures:
        # Ids alone are not enough: XQuAD, for one, uses the same ids in every language.
        key = tuple((ex.id, ex.question, ex.context) for ex in examples)
        if self._cached is None or self._cached[0] != key:
            features = featurize_qa(
                examples, self.tokenizer, max_length=self.max_length, doc_stride=self.doc_stride, with_labels=False
            )
            self._cached = (key, features)
        return self._cached[1]

    def predict(
        self, predictor: Predictor, params: Any, examples: Sequence[QAExample], *, desc: str = "predict"
    ) -> dict[str, str]:
        """Question id -> answer; "" is "no answer" for a task on SQuAD v2.0-style data (unanswerable questions).

        Those come as NullThresholdedAnswers, which score() also reads the best-threshold scores from.
        """
        features = self._inference_features(examples)
        logits = predictor.predict(params, features.arrays, desc=desc)
        return self.answers(examples, features, logits[..., 0], logits[..., 1])

    def answers(
        self, examples: Sequence[QAExample], features: QAFeatures, start_logits: np.ndarray, end_logits: np.ndarray
    ) -> dict[str, str]:
        """predict() after the model: the logits of every window to one answer per question."""
        if self.null_score_diff_threshold != BEST_THRESHOLD or not self.with_null:
            return best_answers(
                examples,
                features,
                start_logits,
                end_logits,
                n_best=self.n_best,
                max_answer_length=self.max_answer_length,
                with_null=self.with_null,
                null_score_diff_threshold=self.null_score_diff_threshold,
            )
        scored = score_answers(
            examples, features, start_logits, end_logits, n_best=self.n_best, max_answer_length=self.max_answer_length
        )
        threshold = squad_v2_reachable_f1_threshold(
            {qid: p.text for qid, p in scored.items()},
            _references(examples),
            {qid: p.no_answer_score for qid, p in scored.items()},
        )
        return NullThresholdedAnswers(scored, threshold)

    def score(
        self, predictions: dict[str, str], examples: Sequence[QAExample], language: str | None = None
    ) -> dict[str, float]:
        """F1 and exact match in percent with the official script of the examples' dataset.

        `language` marks the zero-shot evaluation of one language (the evaluated dataset, `spec.dataset`); without it
        the examples are the English dev set that selects checkpoints (`spec.dev_dataset`). MLQA is scored with its
        language-aware normalisation; SQuAD v2.0 adds HasAns_/NoAns_ exact and f1 (exact is given as exact_match).

        SQuAD v2.0 answers from predict() also give the official script's best_exact, best_f1 and their thresholds
        (best_exact_thresh, best_f1_thresh, in null score - best span score): the scores of the best threshold over
        the questions' best spans, so every threshold is searched, not only those below the one predicted with
        (BERT fed the script its thresholded file, which stops the search there). With the tuned threshold ("best")
        the threshold used is given as null_score_diff_threshold.
        """
        dataset = self.spec.dataset_and_split("eval" if language is not None else "dev")[0]
        references = _references(examples)
        if DATASETS[dataset].unanswerable:
            scores = squad_v2_scores(predictions, references)
            result = {
                "exact_match": scores["exact"],
                "f1": scores["f1"],
                **{k: v for k, v in scores.items() if k.startswith(("HasAns_", "NoAns_")) and not k.endswith("_total")},
            }
            if isinstance(predictions, NullThresholdedAnswers):
                result.update(squad_v2_best_thresholds(predictions.spans, references, predictions.no_answer_scores))
                if self.null_score_diff_threshold == BEST_THRESHOLD:
                    result["null_score_diff_threshold"] = predictions.threshold
            return result
        if dataset == "mlqa":
            return mlqa_scores(predictions, references, language or _language_of(examples))
        return squad_scores(predictions, references)

    @staticmethod
    def trivial_predictions(examples: Sequence[QAExample], train_examples: Sequence[Any] = ()) -> dict[str, str]:
        """The baseline a model must beat: the first word of the context."""
        return {ex.id: (ex.context.split() or [""])[0] for ex in examples}

    def baseline(self, examples: Sequence[QAExample], train_examples: Sequence[Any] = ()) -> dict[str, float]:
        """The trivial baseline's F1 on one language of the evaluated set (the pipeline calls it in zero-shot only)."""
        scores = self.score(self.trivial_predictions(examples), examples, language=_language_of(examples))
        return {"baseline_f1": scores["f1"]}

    def write_predictions(
        self, folder: Path, language: str, predictions: dict[str, str], examples: Sequence[Any]
    ) -> Path:
        return write_predictions(self.spec.submission_path(folder, language), predictions)


def _references(examples: Sequence[QAExample]) -> dict[str, list[str]]:
    """Question id -> reference answer texts; [] marks an unanswerable question."""
    return {ex.id: [a.text for a in ex.answers] for ex in examples}


def _language_of(examples: Sequence[QAExample]) -> str:
    languages = {ex.language for ex in examples}
    if len(languages) != 1:
        raise ValueError(f"QA examples of one evaluation must share one language; got {sorted(languages)}")
    return languages.pop()
