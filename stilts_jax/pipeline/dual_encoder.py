"""The dual-encoder target phase (LAReQA, Mewsli-X): English pairs with in-batch negatives, then mAP@20 zero-shot.

Training keeps the checkpoint with the best English dev mAP@20 (see tasks/dual_encoder.py for the dev pools);
evaluation embeds the task's whole candidate pool once, searches it with every language's queries and writes
results.json/.md, `predictions/{task}/test-{lang}.json` ({query id: top-20 candidate ids}) and, when the pool has
gold, `labels/{task}/test-{lang}.json` ({query id: relevant ids}) for `python -m stilts_jax.score`.

With `target.train.micro_batches` > 1 and `dual_encoder.full_batch_negatives` (the default), each query's negatives
are the whole batch's candidates (gradient caching, tasks/dual_encoder.py); with it off, its micro-batch's only.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
from flax import nnx

from stilts_jax.data.ranked_retrieval import RetrievalPool
from stilts_jax.errors import StiltsError
from stilts_jax.evaluation.predictor import Predictor
from stilts_jax.evaluation.plots import headline_columns, language_bars_png, model_label, write_plot
from stilts_jax.evaluation.report import summarize, write_results
from stilts_jax.io_utils import atomic_write_text
from stilts_jax.models.encoder import Encoder
from stilts_jax.models.hf_weights import load_pretrained
from stilts_jax.paths import absolute
from stilts_jax.pipeline.common import DONE, make_predictor, say, search_options, source_of, trainer_config
from stilts_jax.tasks.dual_encoder import MAP_K, DualEncoder, DualEncoderTask, gold_labels, score_rankings
from stilts_jax.tasks.registry import get_task
from stilts_jax.train.checkpoints import load_params, save_params, transplant_encoder
from stilts_jax.train.loop import train
from stilts_jax.train.state import ModelSpec
from stilts_jax.train.step import GradsFn

if TYPE_CHECKING:
    from stilts_jax.pipeline.runner import Pipeline

METRIC = f"map@{MAP_K}"


def make_task(pipeline: "Pipeline") -> DualEncoderTask:
    phase, d = pipeline.config.target, pipeline.config.dual_encoder
    limit = pipeline.encoder_config.max_sequence_length
    if max(phase.max_length, d.query_max_length) > limit:
        raise StiltsError(f"max_length {phase.max_length} / query_max_length {d.query_max_length} exceed the model's "
                          f"maximum of {limit} tokens; lower --config.target.max_length or --config.dual_encoder.query_max_length")
    return DualEncoderTask(get_task(phase.task), pipeline.tokenizer, max_length=phase.max_length,
                           query_max_length=d.query_max_length, pooling=d.pooling, scale=d.scale)


def train_grads_fn(task: DualEncoderTask, dual_encoder: Mapping[str, Any], micro_batches: int) -> GradsFn | None:
    """The train step's GradsFn: gradient caching when micro-batches would otherwise split the negatives.

    One micro-batch already sees the whole batch, and the default step then gives the same update without
    gradient caching's second forward pass.
    """
    if dual_encoder["full_batch_negatives"] and micro_batches > 1:
        return task.full_batch_grads
    return None


def _model(pipeline: "Pipeline", encoder: Encoder) -> DualEncoder:
    return DualEncoder(encoder, pipeline.config.dual_encoder.pooling)


def abstract_model(pipeline: "Pipeline") -> DualEncoder:
    config = pipeline.encoder_config
    return nnx.eval_shape(lambda: _model(pipeline, Encoder(config, rngs=nnx.Rngs(0), **pipeline.encoder_options)))


def pool_scores(task: DualEncoderTask, predictor: Predictor, params: Any, pool: RetrievalPool,
                search: Mapping[str, Any] | None = None) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, list[str]]]]:
    rankings = task.rank(predictor, params, pool, search_options=search)
    return score_rankings(rankings, pool), rankings


def run_dual_encoder_phase(pipeline: "Pipeline", handoff: str | None) -> dict[str, Any]:
    """Train the shared tower on the task's English pairs in `workdir/target` (resuming; skipped when done)."""
    phase_dir = pipeline.workdir / "target"
    done = phase_dir / DONE
    phase = pipeline.config.target
    if done.exists():
        info = json.loads(done.read_text())
        say(f"[target] {phase.task}: finished earlier (best dev {info['dev']}), skipping")
        return info
    task = make_task(pipeline)
    source = source_of(phase)
    say(f"[target] {phase.task}: loading English pairs")
    pairs = task.train_pairs(source)
    if phase.max_train_examples:
        pairs = pairs[: phase.max_train_examples]
    dev = task.dev_pool(source, phase.max_dev_examples)
    encoder, _ = load_pretrained(pipeline.model_dir, **pipeline.encoder_options)
    model = _model(pipeline, encoder)
    if handoff is not None:
        transplant_encoder(model, handoff)
        say(f"[target] encoder carried over from {handoff}")
    features = task.train_features(pairs)
    say(f"[target] {len(pairs)} training pairs; dev: {len(dev.queries['en'])} queries, {len(dev.candidate_ids)} candidates")
    predictor = make_predictor(pipeline, ModelSpec(model, pipeline.mesh, pipeline.rules))

    def evaluate(params: Any) -> dict[str, float]:
        score = pool_scores(task, predictor, params, dev, search_options(pipeline.config.evaluation))[0]["en"][METRIC]
        return {"dev_score": score, METRIC: score}

    config = trainer_config(phase, pipeline.config.seed)
    grads_fn = train_grads_fn(task, pipeline.config.dual_encoder, config.micro_batches)
    if grads_fn is not None:
        say(f"[target] in-batch negatives over the whole batch of {config.global_batch_size} "
            f"({config.micro_batches} micro-batches, gradient caching)")
    result = train(model, task.loss_fn, features, config, workdir=phase_dir, mesh=pipeline.mesh, rules=pipeline.rules,
                   evaluate=evaluate, best_metric="dev_score", grads_fn=grads_fn)
    save_params(phase_dir / "best_model", result.best_params)
    info = {"task": phase.task, "best_step": result.best_step, "steps": result.steps,
            "best_model": str(absolute(phase_dir / "best_model")),
            "dev": round(evaluate(result.best_params)["dev_score"], 2)}
    if jax.process_index() == 0:
        atomic_write_text(done, json.dumps(info, indent=2) + "\n")
    say(f"[target] {phase.task}: done, best dev mAP@{MAP_K} {info['dev']} at step {result.best_step}")
    return info


def evaluate_dual_encoder(pipeline: "Pipeline", target: dict[str, Any]) -> dict[str, Any]:
    """Zero-shot mAP@20 per language over the whole pool; results, predictions and label files."""
    workdir = pipeline.workdir
    results = workdir / "results.json"
    if results.exists() and (workdir / "evaluation" / DONE).exists():
        say(f"[evaluation] finished earlier: {results}")
        return json.loads(results.read_text())
    phase, e, d = pipeline.config.target, pipeline.config.evaluation, pipeline.config.dual_encoder
    spec = get_task(phase.task)
    if e.split:
        spec = dataclasses.replace(spec, eval_split=e.split)
    task = make_task(pipeline)
    root = Path(d.eval_path or source_of(phase).get("path", ""))
    languages = list(e.languages) or list(spec.languages)
    pool = task.eval_pool(root, languages, spec.eval_split)
    model_spec = ModelSpec(abstract_model(pipeline), pipeline.mesh, pipeline.rules)
    abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                            model_spec.abstract_params, model_spec.param_shardings)
    params = load_params(target["best_model"], abstract)
    predictor = make_predictor(pipeline, model_spec)
    say(f"[evaluation] {spec.name}: {len(pool.candidate_ids)} candidates, "
        f"{sum(len(q) for q in pool.queries.values())} queries in {len(pool.queries)} languages")
    per_language, rankings = pool_scores(task, predictor, params, pool, search_options(pipeline.config.evaluation))
    if jax.process_index() == 0:
        folder = spec.xtreme_name or spec.name
        for lang in languages:
            name = f"{folder}/test-{lang}.json"
            atomic_write_text(workdir / "predictions" / name, json.dumps(rankings[lang], ensure_ascii=False, indent=1) + "\n")
            atomic_write_text(workdir / "labels" / name, json.dumps(gold_labels(pool.queries[lang]), ensure_ascii=False,
                                                                    indent=1) + "\n")
    for lang in languages:
        say(f"[evaluation] {spec.name} {lang}: mAP@{MAP_K} {per_language[lang][METRIC]:.1f} "
            f"({per_language[lang]['examples']} queries)")
    summary = summarize(spec.name, per_language)
    summary.update(intermediate_task=pipeline.config.intermediate.task or None, candidates=len(pool.candidate_ids),
                   split=spec.eval_split)
    if jax.process_index() == 0:
        _, md = write_results(workdir, summary, task.columns)
        if e.plots:
            write_plot(md.parent / f"{spec.name}_languages.png", lambda: language_bars_png(
                per_language, headline_columns(task.columns), task=spec.name,
                model=model_label(pipeline.config.model.name), intermediate=pipeline.config.intermediate.task),
                report=say)
        (workdir / "evaluation").mkdir(parents=True, exist_ok=True)
        atomic_write_text(workdir / "evaluation" / DONE, json.dumps({"results": str(results)}) + "\n")
        print(md.read_text(), flush=True)
    return summary


def run_dual_encoder(pipeline: "Pipeline", handoff: str | None) -> dict[str, Any]:
    """Target phase then zero-shot evaluation: what the runner calls for retrieval targets with training data."""
    return evaluate_dual_encoder(pipeline, run_dual_encoder_phase(pipeline, handoff))
