"""The dual-encoder target phase (LAReQA, Mewsli-X): English pairs with in-batch negatives, then mAP@20 zero-shot.

Training keeps the checkpoint with the best English dev mAP@20 (see tasks/dual_encoder.py for the dev pools);
evaluation embeds the task's whole candidate pool once, searches it with every language's queries and writes
results.json/.md, `predictions/{task}/test-{lang}.json` ({query id: top-20 candidate ids}) and, when the pool has
gold, `labels/{task}/test-{lang}.json` ({query id: relevant ids}) for `python -m stilts_jax.score`.

The model is XTREME-R's published baseline, google-research/xtreme third_party/bert.py BertForRetrieval, with
`dual_encoder.pooling="pooler"` and `learned_scale=True` (the defaults): one shared encoder, the L2-normalised pooler
output (tanh(dense(h_<s>))) as the embedding, its dense layer loaded from the checkpoint's `pooler.dense.*`, and a
trainable logit scale initialised to `dual_encoder.scale` (100). A checkpoint without pooler weights stops the
phase with an error naming `--config.dual_encoder.pooling=cls` (the raw <s> state), unless
`dual_encoder.allow_random_pooler` (or `model.make_tiny`: the tiny model is random as a whole) lets the pooler start
from a random init, which is logged. With an intermediate phase, the encoder comes from it (`transplant_encoder`)
and the pooler from the pretrained checkpoint, since no intermediate task trains one: the pooler a chain of xtreme's
scripts would hand on too (its transformers 2.x SQuAD model keeps the pretrained pooler, which the span loss never
reaches). The encoder, pooler and scale are all in the saved `best_model`.

With `target.train.micro_batches` > 1 and `dual_encoder.full_batch_negatives` (the default), each query's negatives
are the whole batch's candidates (gradient caching, tasks/dual_encoder.py, the learned scale's gradient included);
with it off, its micro-batch's only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
from flax import nnx

from stilts_jax.core.errors import StiltsError, WeightsError
from stilts_jax.core.paths import absolute, data_path
from stilts_jax.data.ranked_retrieval import RetrievalPool
from stilts_jax.evaluation.predictor import Predictor
from stilts_jax.evaluation.report import write_predictions
from stilts_jax.models.encoder import Encoder
from stilts_jax.models.hf_weights import load_pooler
from stilts_jax.pipeline.common import (
    SelectionScores,
    finished_evaluation,
    finished_phase,
    make_predictor,
    publish_results,
    record_phase,
    say,
    search_options,
    selection_rule,
    source_of,
    trainer_config,
)
from stilts_jax.pipeline.protocol import run_protocol
from stilts_jax.pipeline.reuse import start_phase
from stilts_jax.tasks.dual_encoder import MAP_K, DualEncoder, DualEncoderTask, gold_labels, score_rankings
from stilts_jax.tasks.registry import get_task
from stilts_jax.train.checkpoints import load_params, save_params, transplant_encoder
from stilts_jax.train.loop import train
from stilts_jax.train.state import ModelSpec
from stilts_jax.train.step import GradsFn

if TYPE_CHECKING:
    from stilts_jax.pipeline.context import RunContext as Pipeline

METRIC = f"map@{MAP_K}"


def make_task(pipeline: Pipeline) -> DualEncoderTask:
    phase, d = pipeline.config.target, pipeline.config.dual_encoder
    limit = pipeline.encoder_config.max_sequence_length
    if max(phase.max_length, d.query_max_length) > limit:
        raise StiltsError(
            f"max_length {phase.max_length} / query_max_length {d.query_max_length} exceed the model's "
            f"maximum of {limit} tokens; lower --config.target.max_length or --config.dual_encoder.query_max_length"
        )
    return DualEncoderTask(
        get_task(phase.task), pipeline.tokenizer, max_length=phase.max_length, query_max_length=d.query_max_length
    )


def train_grads_fn(task: DualEncoderTask, dual_encoder: Mapping[str, Any], micro_batches: int) -> GradsFn | None:
    """The train step's GradsFn: gradient caching when micro-batches would otherwise split the negatives.

    One micro-batch already sees the whole batch, and the default step then gives the same update without
    gradient caching's second forward pass.
    """
    if dual_encoder["full_batch_negatives"] and micro_batches > 1:
        return task.full_batch_grads
    return None


def _model(pipeline: Pipeline, encoder: Encoder) -> DualEncoder:
    """The shared tower as `dual_encoder` configures it; its pooler is a random init until `load_checkpoint_pooler`."""
    d = pipeline.config.dual_encoder
    return DualEncoder(
        encoder, d.pooling, scale=d.scale, learned_scale=d.learned_scale, rngs=nnx.Rngs(pipeline.config.seed)
    )


def load_checkpoint_pooler(pipeline: Pipeline, model: DualEncoder) -> None:
    """Fill the model's pooler from the checkpoint's `pooler.dense.*`; without them, stop unless a random one may do."""
    if model.pooler is None:
        return
    if pipeline.config.model.random_init:
        say("[target] model.random_init: the pooler is random, as the whole encoder is")
        return
    if load_pooler(pipeline.model_dir, model.pooler):
        say(f"[target] pooler (dense + tanh on <s>) loaded from {pipeline.model_dir}")
        return
    d = pipeline.config.dual_encoder
    tiny = pipeline.config.model.make_tiny
    if not (d.allow_random_pooler or tiny):
        raise WeightsError(
            f"dual_encoder.pooling='pooler' embeds with the checkpoint's pooler (XTREME-R's retrieval baseline), but "
            f"{pipeline.model_dir} has no pooler weights (pooler.dense.weight, pooler.dense.bias). Use "
            f"--config.dual_encoder.pooling=cls (the <s> hidden state, no pooler), or "
            f"--config.dual_encoder.allow_random_pooler=true to start the pooler from a random init."
        )
    why = "model.make_tiny: the tiny model is random as a whole" if tiny else "dual_encoder.allow_random_pooler"
    say(
        f"[target] WARNING: {pipeline.model_dir} has no pooler weights (pooler.dense.*): the pooler starts from a "
        f"RANDOM init ({why})"
    )


def abstract_model(pipeline: Pipeline) -> DualEncoder:
    return nnx.eval_shape(lambda: _model(pipeline, pipeline.abstract_encoder()))


def pool_scores(
    task: DualEncoderTask,
    predictor: Predictor,
    params: Any,
    pool: RetrievalPool,
    search: Mapping[str, Any] | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, list[str]]]]:
    rankings = task.rank(predictor, params, pool, search_options=search)
    return score_rankings(rankings, pool), rankings


def run_dual_encoder_phase(pipeline: Pipeline, handoff: str | None) -> dict[str, Any]:
    """Train the shared tower on the task's English pairs in `workdir/target` (resuming; skipped when done)."""
    phase_dir = pipeline.workdir / "target"
    phase = pipeline.config.target
    earlier = finished_phase(phase_dir, "target", phase.task)
    if earlier is not None:
        return earlier
    start_phase(phase_dir, pipeline.planned.get("target"))
    task = make_task(pipeline)
    source = source_of(phase)
    say(f"[target] {phase.task}: loading English pairs")
    pairs = task.train_pairs(source)
    if phase.max_train_examples:
        pairs = pairs[: phase.max_train_examples]
    dev = task.dev_pool(source, phase.max_dev_examples)
    model = _model(pipeline, pipeline.pretrained_encoder())
    load_checkpoint_pooler(pipeline, model)
    if model.learned_scale:
        say(f"[target] learned logit scale, initialised to {model.fixed_scale:g}")
    if handoff is not None:
        transplant_encoder(model, handoff)
        say(f"[target] encoder carried over from {handoff}")
    features = task.train_features(pairs)
    say(
        f"[target] {len(pairs)} training pairs; dev: {len(dev.queries['en'])} queries, {len(dev.candidate_ids)} candidates"
    )
    predictor = make_predictor(pipeline, ModelSpec(model, pipeline.mesh, pipeline.rules))

    def score(params: Any, whole: bool) -> dict[str, float]:  # the dev pool is scored whole (no subset)
        value = pool_scores(task, predictor, params, dev, search_options(pipeline.config.evaluation))[0]["en"][METRIC]
        return {"dev_score": value, METRIC: value}

    selection = SelectionScores(score, phase, subset_is_whole=True)
    config = trainer_config(phase, pipeline.config.seed)
    grads_fn = train_grads_fn(task, pipeline.config.dual_encoder, config.micro_batches)
    if grads_fn is not None:
        say(
            f"[target] in-batch negatives over the whole batch of {config.global_batch_size} "
            f"({config.micro_batches} micro-batches, gradient caching)"
        )
    result = train(
        model,
        task.loss_fn,
        features,
        config,
        workdir=phase_dir,
        mesh=pipeline.mesh,
        rules=pipeline.rules,
        evaluate=selection.during_training,
        best_metric="dev_score",
        grads_fn=grads_fn,
    )
    selected, selected_step = selection.selected(result)
    save_params(phase_dir / "best_model", selected)
    info = {
        "task": phase.task,
        "best_step": selected_step,
        "steps": result.steps,
        "selection": selection_rule(phase),
        "best_model": str(absolute(phase_dir / "best_model")),
        "dev": round(selection.final(result)["dev_score"], 2),
    }
    record_phase(phase_dir, info)
    say(
        f"[target] {phase.task}: done, English dev mAP@{MAP_K} {info['dev']} with the model of step {selected_step} "
        f"({info['selection']})"
    )
    return info


def evaluate_dual_encoder(pipeline: Pipeline, target: dict[str, Any]) -> dict[str, Any]:
    """Zero-shot mAP@20 per language over the whole pool; results, predictions and label files."""
    workdir = pipeline.workdir
    earlier = finished_evaluation(workdir, pipeline.evaluation_fingerprint)
    if earlier is not None:
        return earlier
    phase, e, d = pipeline.config.target, pipeline.config.evaluation, pipeline.config.dual_encoder
    spec = get_task(phase.task)
    if e.split:
        spec = dataclasses.replace(spec, eval_split=e.split)
    task = make_task(pipeline)
    root = data_path(d.eval_path or source_of(phase).get("path", ""))
    languages = list(e.languages) or list(spec.languages)
    pool = task.eval_pool(root, languages, spec.eval_split)
    model_spec = ModelSpec(abstract_model(pipeline), pipeline.mesh, pipeline.rules)
    abstract = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        model_spec.abstract_params,
        model_spec.param_shardings,
    )
    params = load_params(target["best_model"], abstract)
    predictor = make_predictor(pipeline, model_spec)
    say(
        f"[evaluation] {spec.name}: {len(pool.candidate_ids)} candidates, "
        f"{sum(len(q) for q in pool.queries.values())} queries in {len(pool.queries)} languages"
    )
    per_language, rankings = pool_scores(task, predictor, params, pool, search_options(pipeline.config.evaluation))
    if jax.process_index() == 0:
        for lang in languages:
            write_predictions(spec.submission_path(workdir / "predictions", lang), rankings[lang])
            write_predictions(spec.submission_path(workdir / "labels", lang), gold_labels(pool.queries[lang]))
    for lang in languages:
        say(
            f"[evaluation] {spec.name} {lang}: mAP@{MAP_K} {per_language[lang][METRIC]:.1f} "
            f"({per_language[lang]['examples']} queries)"
        )
    pooling = (
        f"{d.pooling} embedding, {'learned' if d.learned_scale else 'fixed'} scale from {d.scale:g}, negatives: "
        f"{'the whole batch' if d.full_batch_negatives else 'each micro-batch'}"
    )
    protocol = run_protocol(
        pipeline.config,
        split=spec.eval_split,
        trained_target=True,
        phases={"target": target, **pipeline.phase_records},
        dual_encoder=pooling,
        candidate_pool="every language's candidates at once (mAP@20)",
    )
    return publish_results(
        pipeline, spec, per_language, task.columns, protocol, candidates=len(pool.candidate_ids), split=spec.eval_split
    )


def run_dual_encoder(pipeline: Pipeline, handoff: str | None) -> dict[str, Any]:
    """Target phase then zero-shot evaluation: what the runner calls for retrieval targets with training data."""
    return evaluate_dual_encoder(pipeline, run_dual_encoder_phase(pipeline, handoff))
