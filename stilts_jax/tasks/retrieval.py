"""Sentence-retrieval evaluation (Tatoeba, BUCC) of an encoder, at one layer or at every layer in one pass.

Both tasks have no training data: the paper evaluates the intermediate model's encoder directly.
- Tatoeba: English queries against the other language's sentences (XTREME's direction), nearest neighbour by
  cosine; accuracy, and the reverse direction too.
- BUCC: unique sentences of both sides, ratio margin with k neighbours both ways, "max" retrieval, the threshold
  chosen for F1 on the dev gold and applied to test.
Embeddings come from a SentenceEncoder: the SentenceEmbedder module run by the evaluation Predictor, on the run's
mesh and sharding rules when the pipeline builds it. With several processes every process embeds the same sentences
together (each feeding its own devices' rows), gets all the embeddings, and the search splits the candidates over
every process's devices (NearestNeighbors), so every process computes the same results.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from stilts_jax.data.retrieval import BuccSplit, TatoebaSet, deduplicate, expand_candidates
from stilts_jax.evaluation.embedding import SentenceEncoder
from stilts_jax.evaluation.retrieval_metrics import accuracy, apply_threshold, bucc_scores, select_bucc_threshold
from stilts_jax.evaluation.search import knn, mine_max, ratio_margin

BUCC_THRESHOLD_RULES = ("dev", "oracle")


@dataclasses.dataclass
class LayerResults:
    """Metrics per layer, and the predictions of `primary_layer` (what goes into the submission files)."""

    scores: dict[int, dict[str, float]]
    predictions: list
    primary_layer: int


class RetrievalEvaluator:
    def __init__(
        self,
        encoder: SentenceEncoder,
        layers: Sequence[int],
        primary_layer: int,
        *,
        k: int = 4,
        search_options: Mapping[str, Any] | None = None,
    ):
        if primary_layer not in layers:
            raise ValueError(f"primary layer {primary_layer} is not among the evaluated layers {list(layers)}")
        self.encoder = encoder
        self.layers = list(layers)
        self.primary_layer = primary_layer
        self.k = k
        self.search_options = dict(search_options or {})  # NearestNeighbors' kernel, dtype, chunk_size, ...

    def embed(self, sentences: Sequence[str]) -> np.ndarray:
        """[N, len(layers), hidden] float32, from the encoder's Predictor."""
        out = self.encoder.encode(sentences, progress=False)
        return out[:, None] if out.ndim == 2 else out

    def tatoeba(self, data: TatoebaSet) -> LayerResults:
        queries, candidates = self.embed(data.queries), self.embed(data.candidates)
        scores, predictions = {}, []
        for position, layer in enumerate(self.layers):
            forward = knn(
                queries[:, position], candidates[:, position], 1, normalize=True, **self.search_options
            ).indices[:, 0]
            backward = knn(
                candidates[:, position], queries[:, position], 1, normalize=True, **self.search_options
            ).indices[:, 0]
            row = {}
            if data.gold is not None:
                gold = np.asarray(data.gold)
                inverse = np.empty_like(gold)
                inverse[gold] = np.arange(len(gold))
                row = {
                    "accuracy": accuracy(forward.tolist(), gold.tolist()),
                    "accuracy_reverse": accuracy(backward.tolist(), inverse.tolist()),
                }
            scores[layer] = row
            if layer == self.primary_layer:
                predictions = forward.tolist()
        return LayerResults(scores, predictions, self.primary_layer)

    def _mine(self, split: BuccSplit) -> list[list[tuple[float, str, str]]]:
        """Per layer: (margin score, src_id, en_id) candidates of max retrieval over the unique sentences."""
        src, en = deduplicate(split.src_ids, split.src_sentences), deduplicate(split.en_ids, split.en_sentences)
        x, y = self.embed(src.sentences), self.embed(en.sentences)
        k = min(self.k, len(src.sentences), len(en.sentences))
        return [
            expand_candidates(mine_max(ratio_margin(x[:, p], y[:, p], k, **self.search_options)), src, en)
            for p in range(len(self.layers))
        ]

    def bucc(self, dev: BuccSplit, test: BuccSplit, *, threshold_rule: str = "dev") -> LayerResults:
        """Mine `test` and keep the pairs above a threshold chosen by `threshold_rule`:
        "dev": the F1-best threshold on the dev (sample) split's gold pairs, applied to test, as XTREME intends
          (google-research/xtreme third_party/evaluate_retrieval.py: tuned on dev, `best_threshold` applied to test)
          and LASER's BUCC recipe do;
        "oracle": the F1-best threshold on the scored split's own gold pairs, as jiant's BUCC evaluation
          (nyu-mll/jiant jiant/tasks/evaluate/core.py BUCC2018EvaluationScheme: bucc_eval(..., threshold=None)
          optimises on the gold it scores against): an upper bound, not comparable with XTREME's test numbers."""
        if threshold_rule not in BUCC_THRESHOLD_RULES:
            raise ValueError(
                f"BUCC threshold rule must be one of {', '.join(BUCC_THRESHOLD_RULES)}, got "
                f"{threshold_rule!r} (config: evaluation.bucc_threshold)"
            )
        tuning = dev if threshold_rule == "dev" else test
        if tuning.gold is None:
            raise ValueError(f"BUCC {tuning.language} {tuning.split} has no gold pairs to choose the threshold with")
        dev_candidates = self._mine(dev) if threshold_rule == "dev" else None
        test_candidates = self._mine(test)
        scores, predictions = {}, []
        for position, layer in enumerate(self.layers):
            candidates = dev_candidates[position] if dev_candidates is not None else test_candidates[position]
            chosen = select_bucc_threshold(candidates, tuning.gold)
            predicted = apply_threshold(test_candidates[position], chosen.threshold)
            row = {"threshold": chosen.threshold, f"{threshold_rule}_f1": chosen.scores["f1"]}
            if test.gold is not None:
                row.update(bucc_scores(predicted, test.gold))
            scores[layer] = row
            if layer == self.primary_layer:
                predictions = sorted(predicted)
        return LayerResults(scores, predictions, self.primary_layer)
