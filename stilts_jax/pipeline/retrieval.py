"""Retrieval evaluation (BUCC, Tatoeba): the encoder is scored directly, with no target training phase."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from stilts_jax.core.io_utils import atomic_write_text
from stilts_jax.core.paths import data_path
from stilts_jax.data.retrieval import read_bucc, read_tatoeba
from stilts_jax.evaluation.embedding import SentenceEncoder, default_retrieval_layer
from stilts_jax.evaluation.plots import layer_curves_png, model_label
from stilts_jax.pipeline.common import finished_evaluation, publish_results, say, search_options, source_of
from stilts_jax.pipeline.protocol import run_protocol
from stilts_jax.tasks.registry import get_task
from stilts_jax.tasks.retrieval import RetrievalEvaluator

if TYPE_CHECKING:
    from stilts_jax.pipeline.context import RunContext as Pipeline


def evaluate_retrieval(pipeline: Pipeline, saved_encoder: str | None) -> dict[str, Any]:
    """Score the encoder itself (the intermediate phase's, or the pretrained one) on BUCC or Tatoeba."""
    earlier = finished_evaluation(pipeline.workdir, pipeline.evaluation_fingerprint)
    if earlier is not None:
        return earlier
    phase, e = pipeline.config.target, pipeline.config.evaluation
    spec = get_task(phase.task)
    encoder = pipeline.load_encoder(saved_encoder)
    depth = encoder.config.num_hidden_layers
    primary = default_retrieval_layer(depth) if e.layer < 0 else e.layer
    layers = list(range(depth + 1)) if e.all_layers else [primary]
    # The run's mesh and rules, as every other evaluation's Predictor (pipeline.common.make_predictor).
    sentence_encoder = SentenceEncoder(
        encoder,
        pipeline.tokenizer,
        layer=layers if e.all_layers else primary,
        batch_size=e.batch_size,
        max_length=phase.max_length,
        mesh=pipeline.mesh,
        rules=pipeline.rules,
        length_buckets=e.length_buckets,
    )
    evaluator = RetrievalEvaluator(sentence_encoder, layers, primary, k=e.margin_k, search_options=search_options(e))
    source = source_of(phase)
    root = data_path(source.get("path", ""))
    languages = list(e.languages) or list(spec.languages)
    per_language, per_layer = {}, {}
    for lang in languages:
        if spec.family == "sentence_retrieval":
            labels = data_path(source["labels"]) / "tatoeba" / f"test-{lang}.tsv" if "labels" in source else None
            if labels is not None and not labels.exists():
                labels = data_path(source["labels"]) / f"test-{lang}.tsv"
            result = evaluator.tatoeba(read_tatoeba(root, lang, labels=labels))
            lines = [str(i) for i in result.predictions]
        else:
            original = (root / f"{lang}-en").is_dir() or (root / "bucc2018" / f"{lang}-en").is_dir()
            dev_split, test_split = ("sample", "training") if original else ("dev", "test")
            oracle = e.bucc_threshold == "oracle"
            result = evaluator.bucc(
                read_bucc(root, lang, dev_split, require_gold=not oracle),
                read_bucc(root, lang, test_split, require_gold=oracle),
                threshold_rule=e.bucc_threshold,
            )
            lines = [f"{src}\t{en}" for src, en in result.predictions]
        per_language[lang] = {**result.scores[primary]}
        for layer, row in result.scores.items():
            per_layer.setdefault(layer, {})[lang] = row
        if jax.process_index() == 0:
            path = spec.submission_path(pipeline.workdir / "predictions", lang)
            atomic_write_text(path, "".join(line + "\n" for line in lines))
        shown = ", ".join(f"{k} {v:.1f}" for k, v in result.scores[primary].items() if k != "threshold")
        say(f"[evaluation] {spec.name} {lang} (layer {primary}): {shown or 'no gold: predictions written'}")
    extra = {"retrieval_layer": f"{primary} of {depth}, mean-pooled"}
    if spec.family == "bitext_mining":
        extra["bucc_threshold"] = BUCC_THRESHOLD_TEXT[e.bucc_threshold]
    protocol = run_protocol(
        pipeline.config,
        split="test",
        trained_target=False,
        phases={"intermediate": pipeline.phase_records.get("intermediate")},
        **extra,
    )
    sentences = spec.family == "sentence_retrieval"
    metric = "accuracy" if sentences else "f1"
    columns = [(metric, metric)] + (
        [("accuracy_reverse", "accuracy (xx->en)")] if sentences else [("precision", "precision"), ("recall", "recall")]
    )
    layered: dict[str, Any] = {}
    if e.all_layers:
        layered = dict(
            per_layer={str(layer): rows for layer, rows in per_layer.items()},
            appendix=layer_table(spec.name, per_layer, metric),
            plots=[
                (
                    f"{spec.name}_layers.png",
                    lambda: layer_curves_png(
                        per_layer,
                        metric,
                        default_layer=primary,
                        task=spec.name,
                        model=model_label(pipeline.config.model.name),
                        intermediate=pipeline.config.intermediate.task,
                    ),
                )
            ],
        )
    return publish_results(pipeline, spec, per_language, columns, protocol, layer=primary, **layered)


BUCC_THRESHOLD_TEXT = {
    "dev": "F1-best threshold on the dev (sample) split's gold pairs, applied to the test split (XTREME, LASER)",
    "oracle": "F1-best threshold on the scored split's own gold pairs (jiant's tables: an oracle upper bound)",
}


def layer_table(task: str, per_layer: dict[int, dict[str, dict[str, float]]], metric: str) -> str:
    """Rows: layers; columns: languages and their mean. Which layer transfers best, at a glance."""
    languages = sorted({lang for rows in per_layer.values() for lang in rows})
    lines = [
        f"### {task}: {metric} per layer",
        "",
        "| layer | " + " | ".join(languages) + " | mean |",
        "|" + "---|" * (len(languages) + 2),
    ]
    for layer in sorted(per_layer):
        values = [per_layer[layer][lang].get(metric, float("nan")) for lang in languages]
        lines.append(f"| {layer} | " + " | ".join(f"{v:.1f}" for v in values) + f" | {np.mean(values):.1f} |")
    return "\n".join(lines) + "\n"
