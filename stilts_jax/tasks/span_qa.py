"""The extractive QA family (SQuAD, XQuAD, MLQA, TyDiQA-GoldP): features, head, loss, predictions, metric."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from stilts_jax.data.qa import QAExample
from stilts_jax.data.qa_features import QAFeatures, featurize_qa
from stilts_jax.data.sources import load_qa
from stilts_jax.evaluation.predictor import Predictor
from stilts_jax.evaluation.qa_postprocess import best_answers
from stilts_jax.evaluation.report import write_predictions
from stilts_jax.evaluation.squad_metric import squad_scores
from stilts_jax.models.heads import SpanHead, span_loss
from stilts_jax.tasks.registry import TaskSpec


class SpanQATask:
    columns = [("f1", "F1"), ("exact_match", "EM"), ("baseline_f1", "baseline F1")]

    def __init__(self, spec: TaskSpec, tokenizer: Any, *, max_length: int = 384, doc_stride: int = 128,
                 n_best: int = 20, max_answer_length: int = 30):
        self.spec = spec
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.doc_stride = doc_stride
        self.n_best = n_best
        self.max_answer_length = max_answer_length
        self.loss_fn = span_loss
        self._cached: tuple[tuple, QAFeatures] | None = None  # the dev set, featurized once per phase

    def load(self, which: str, source: Mapping[str, Any], languages: Sequence[str] | None) -> dict[str, list[QAExample]]:
        dataset, split = self.spec.dataset_and_split(which)
        return load_qa(dataset, split, source, languages)

    def head(self, hidden_size: int, rngs: nnx.Rngs) -> SpanHead:
        return SpanHead(hidden_size, rngs=rngs)

    def train_features(self, examples: Sequence[QAExample]) -> dict[str, np.ndarray]:
        return featurize_qa(examples, self.tokenizer, max_length=self.max_length, doc_stride=self.doc_stride).arrays

    def _inference_features(self, examples: Sequence[QAExample]) -> QAFeatures:
        # Ids alone are not enough: XQuAD, for one, uses the same ids in every language.
        key = tuple((ex.id, ex.question, ex.context) for ex in examples)
        if self._cached is None or self._cached[0] != key:
            features = featurize_qa(examples, self.tokenizer, max_length=self.max_length, doc_stride=self.doc_stride,
                                    with_labels=False)
            self._cached = (key, features)
        return self._cached[1]

    def predict(self, predictor: Predictor, params: Any, examples: Sequence[QAExample], *, desc: str = "predict") -> dict[str, str]:
        features = self._inference_features(examples)
        logits = predictor.predict(params, features.arrays, desc=desc)
        return best_answers(examples, features, logits[..., 0], logits[..., 1], n_best=self.n_best,
                            max_answer_length=self.max_answer_length)

    @staticmethod
    def score(predictions: dict[str, str], examples: Sequence[QAExample]) -> dict[str, float]:
        return squad_scores(predictions, {ex.id: [a.text for a in ex.answers] for ex in examples})

    @staticmethod
    def trivial_predictions(examples: Sequence[QAExample], train_examples: Sequence[Any] = ()) -> dict[str, str]:
        """The baseline a model must beat: the first word of the context."""
        return {ex.id: (ex.context.split() or [""])[0] for ex in examples}

    def baseline(self, examples: Sequence[QAExample], train_examples: Sequence[Any] = ()) -> dict[str, float]:
        return {"baseline_f1": self.score(self.trivial_predictions(examples), examples)["f1"]}

    def write_predictions(self, folder: Path, language: str, predictions: dict[str, str], examples: Sequence[Any]) -> Path:
        return write_predictions(folder, self.spec.xtreme_name or self.spec.name, language, predictions, "json")
