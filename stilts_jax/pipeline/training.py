"""One training phase of the pipeline (intermediate or target): English data in, best model and encoder out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ml_collections

from stilts_jax.core.host_memory import release_host_memory
from stilts_jax.core.paths import absolute
from stilts_jax.pipeline.common import (
    SelectionScores,
    finished_phase,
    load_training_examples,
    make_predictor,
    record_phase,
    say,
    selection_rule,
    selection_subset,
    source_of,
    trainer_config,
    training_features,
)
from stilts_jax.pipeline.context import Phase
from stilts_jax.pipeline.multitask_phase import MULTITASK, has_mlm, run_multitask_phase
from stilts_jax.pipeline.reuse import start_phase
from stilts_jax.pipeline.translate_train import training_languages
from stilts_jax.tasks.registry import get_task
from stilts_jax.train.checkpoints import save_params
from stilts_jax.train.loop import train
from stilts_jax.train.state import ModelSpec

if TYPE_CHECKING:
    from stilts_jax.pipeline.context import RunContext as Pipeline


def is_multitask(phase: ml_collections.ConfigDict) -> bool:
    """Several tasks, or one task plus the MLM auxiliary (the label "multitask" alone asks for its task list)."""
    return bool(phase.tasks) or has_mlm(phase) or phase.task == MULTITASK


def run_training_phase(
    pipeline: Pipeline, name: str, phase: ml_collections.ConfigDict, handoff: str | None = None
) -> dict[str, Any]:
    """Train `phase.task` in `workdir/name` (resuming if a checkpoint is there); skip it if it finished earlier.

    Returns the phase's record (also written to `phase_done.json`): best step, dev score, the best model's path and,
    for the intermediate phase, the encoder's path that the target phase starts from. A phase with several `tasks`
    or MLM text files (`mlm.files`) is a multi-task phase (stilts_jax.pipeline.multitask_phase).

    When it returns, nothing of the phase's model, train state or optimizer moments is held any more, and their
    host memory has been handed back to the operating system (core.host_memory): the next phase builds its model
    in the memory this one used.
    """
    record = _train_phase(pipeline, name, phase, handoff)
    release_host_memory()  # the phase's arrays died with _train_phase's frame; malloc still holds their pages
    return record


def _train_phase(
    pipeline: Pipeline, name: str, phase: ml_collections.ConfigDict, handoff: str | None
) -> dict[str, Any]:
    phase_dir = pipeline.workdir / name
    earlier = finished_phase(phase_dir, name, phase.task)
    if earlier is not None:
        return earlier
    start_phase(phase_dir, pipeline.planned.get(name))
    if is_multitask(phase):
        return run_multitask_phase(pipeline, name, phase, handoff=handoff)
    spec = get_task(phase.task)
    task = pipeline.make_task(spec, phase)
    languages = training_languages(phase, spec.name)
    say(f"[{name}] {spec.name}: loading training data ({', '.join(languages)}) and the English dev set")
    train_examples = load_training_examples(task, phase, source_of(phase))
    dev_examples = task.load("dev", source_of(phase), ["en"])["en"]
    if phase.max_dev_examples:
        dev_examples = dev_examples[: phase.max_dev_examples]
    model = pipeline.make_model(task, pipeline.config.seed + Phase.of(name).seed_offset, encoder_from=handoff)
    if handoff is not None:
        say(f"[{name}] encoder carried over from {handoff}; new {spec.name} head")
    features = training_features(pipeline, task, train_examples)
    say(
        f"[{name}] {len(train_examples)} training examples -> {len(features['input_ids'])} features, "
        f"{len(dev_examples)} dev examples"
    )
    model_spec = ModelSpec(model, pipeline.mesh, pipeline.rules)
    predictor = make_predictor(pipeline, model_spec)

    subset = selection_subset(phase, dev_examples)

    def score(params: Any, whole: bool) -> dict[str, float]:
        examples = dev_examples if whole else subset
        scores = task.score(task.predict(predictor, params, examples, desc=f"{name} dev"), examples)
        return {"dev_score": scores[spec.metric], **scores}

    selection = SelectionScores(score, phase, len(subset) == len(dev_examples))
    result = train(
        model,
        task.loss_fn,
        features,
        trainer_config(phase, pipeline.config.seed),
        workdir=phase_dir,
        mesh=pipeline.mesh,
        rules=pipeline.rules,
        evaluate=selection.during_training,
        best_metric="dev_score",
    )
    selected, selected_step = selection.selected(result)
    save_params(phase_dir / "best_model", selected)
    info: dict[str, Any] = {
        "task": spec.name,
        "best_step": selected_step,
        "steps": result.steps,
        "selection": selection_rule(phase),
        "stopped_early": result.stopped_early,
        "train_languages": languages,
        "language_sampling": phase.language_sampling,
        "best_model": str(absolute(phase_dir / "best_model")),
    }
    if Phase.of(name).hands_on_encoder:
        save_params(phase_dir / "encoder", selected["encoder"])
        info["encoder"] = str(absolute(phase_dir / "encoder"))
    info["dev"] = round(selection.final(result)["dev_score"], 2)
    record_phase(phase_dir, info)
    say(
        f"[{name}] {spec.name}: done, English dev {spec.metric} {info['dev']} with the model of step {selected_step} "
        f"({info['selection']})"
    )
    return info
