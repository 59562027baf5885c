"""A multi-task training phase: several registered tasks (any families) and an optional MLM auxiliary, one shared
encoder, one head each (the paper's multi-task intermediate training; stilts_jax/train/multitask.py has the design).

Config (a phase of configs/base.py): `tasks` (task names; `task` is then only a label such as "multitask"),
`task_sources` (task -> source, overriding the phase's `source`), `sampling` ("proportional" or "temperature"),
`temperature`, `cap`, `train_languages`/`translated_train` (per task, as single-task phases), and `mlm`: `files`
(text, one sentence per line, globs allowed), `share` (its fixed share of the steps), `max_length`,
`mask_probability`, `init_from_checkpoint` (start from the checkpoint's lm_head.* when it has one).
The best checkpoint is the one with the best mean of the tasks' English dev scores; each task's score is logged
as `<task>/dev_score`. The intermediate phase hands off `params["encoder"]`, as a single-task phase does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ml_collections
import numpy as np
from flax import nnx

from stilts_jax.core.errors import StiltsError
from stilts_jax.core.paths import absolute
from stilts_jax.data.mlm import DynamicMasking, mlm_features, read_text_lines
from stilts_jax.models.heads import MaskedLMHead, masked_lm_loss
from stilts_jax.models.hf_weights import load_mlm_head
from stilts_jax.pipeline.common import (
    SelectionScores,
    load_training_examples,
    make_predictor,
    record_phase,
    say,
    selection_rule,
    selection_subset,
    task_source_of,
    trainer_config,
    training_features,
)
from stilts_jax.pipeline.context import Phase
from stilts_jax.tasks.registry import TRAINABLE_FAMILIES, get_task
from stilts_jax.train.checkpoints import save_params, transplant_encoder
from stilts_jax.train.multitask import MultiTaskModel, SamplingConfig, TaskData, task_params, train_multitask
from stilts_jax.train.state import ModelSpec

if TYPE_CHECKING:
    from stilts_jax.pipeline.context import RunContext as Pipeline

MLM = "mlm"  # the auxiliary objective's name among the tasks
MULTITASK = "multitask"  # the label of a phase that trains several tasks


def has_mlm(phase: ml_collections.ConfigDict) -> bool:
    mlm = phase.get("mlm")
    return bool(mlm and mlm.get("files"))


def phase_tasks(phase: ml_collections.ConfigDict) -> list[str]:
    names = list(phase.get("tasks") or []) or [phase.task]
    if names == [MULTITASK]:
        raise StiltsError(
            f"task {MULTITASK!r} needs the list of its tasks: set --config.<phase>.tasks=\"['mnli','squad']\" "
            "(configs/multitask.py lists the paper's nine)"
        )
    if MLM in names:
        raise StiltsError(
            f"{MLM!r} is the MLM auxiliary's name, not a task: give text files in <phase>.mlm.files instead"
        )
    return names


def mlm_head(pipeline: Pipeline, hidden_size: int, rngs: nnx.Rngs) -> MaskedLMHead:
    """The MLM auxiliary's head for the run's encoder (a chain's forgetting table rebuilds it to load a stage)."""
    config = pipeline.encoder_config
    activation = "gelu" if config.family == "roberta" else config.hidden_act
    return MaskedLMHead(hidden_size, config.vocab_size, config.layer_norm_eps, activation, rngs=rngs)


def _mlm_task(
    pipeline: Pipeline, phase: ml_collections.ConfigDict, hidden_size: int, rngs: nnx.Rngs
) -> tuple[TaskData, MaskedLMHead]:
    mlm = phase.mlm
    if not 0 < mlm.share < 1:
        raise StiltsError(
            f"<phase>.mlm.share must be in (0, 1) (the MLM auxiliary's share of the steps), got {mlm.share}"
        )
    config = pipeline.encoder_config
    if mlm.max_length > config.max_sequence_length:
        raise StiltsError(
            f"mlm.max_length {mlm.max_length} exceeds the model's maximum of {config.max_sequence_length}"
        )
    lines = read_text_lines(list(mlm.files))
    features = mlm_features(lines, pipeline.tokenizer, max_length=mlm.max_length, mask_probability=mlm.mask_probability)
    tokenizer = pipeline.tokenizer
    masking = DynamicMasking(
        config.vocab_size,
        tokenizer.mask_token_id,
        tokenizer.all_special_ids,
        pipeline.config.seed,
        mlm.mask_probability,
    )
    head = mlm_head(pipeline, hidden_size, rngs)
    loaded = (
        mlm.init_from_checkpoint and not pipeline.config.model.random_init and load_mlm_head(pipeline.model_dir, head)
    )
    say(
        f"  mlm: {len(lines)} lines of text, share {mlm.share}, head "
        f"{'from the checkpoint lm_head' if loaded else 'initialised at random'}"
    )
    return TaskData(MLM, masked_lm_loss, features, transform=masking, share=float(mlm.share)), head


def run_multitask_phase(
    pipeline: Pipeline, name: str, phase: ml_collections.ConfigDict, handoff: str | None = None
) -> dict[str, Any]:
    """Train the phase's tasks (and MLM) together in `workdir/name`; returns and writes the phase record."""
    phase_dir = pipeline.workdir / name
    names = phase_tasks(phase)
    encoder = pipeline.pretrained_encoder()
    hidden = encoder.config.hidden_size
    rngs = nnx.Rngs(pipeline.config.seed + Phase.of(name).seed_offset)
    tasks, heads, data, dev_sets = {}, {}, [], {}
    with_mlm = has_mlm(phase)
    say(f"[{name}] multi-task: {', '.join(names)}{' + mlm' if with_mlm else ''}")
    for task_name in names:
        spec = get_task(task_name)
        if spec.family not in TRAINABLE_FAMILIES:
            raise StiltsError(f"{task_name} is a retrieval task without training data; it cannot be a training task")
        task = pipeline.make_task(spec, phase)
        source = task_source_of(phase, task_name)
        train_examples = load_training_examples(task, phase, source)
        dev_examples = task.load("dev", source, ["en"])["en"]
        if phase.max_dev_examples:
            dev_examples = dev_examples[: phase.max_dev_examples]
        features = training_features(pipeline, task, train_examples)
        say(
            f"  {task_name}: {len(train_examples)} training examples -> {len(features['input_ids'])} features, "
            f"{len(dev_examples)} dev examples"
        )
        tasks[task_name], dev_sets[task_name] = task, dev_examples
        heads[task_name] = task.head(hidden, rngs)
        data.append(TaskData(task_name, task.loss_fn, features))
    if with_mlm:
        mlm_data, heads[MLM] = _mlm_task(pipeline, phase, hidden, rngs)
        data.append(mlm_data)
    model = MultiTaskModel(encoder, heads)
    if handoff is not None:
        transplant_encoder(model, handoff)
        say(f"[{name}] encoder carried over from {handoff}; new heads")
    predictors = {
        task_name: make_predictor(pipeline, ModelSpec(model.task_model(task_name), pipeline.mesh, pipeline.rules))
        for task_name in tasks
    }

    subsets = {task_name: selection_subset(phase, dev) for task_name, dev in dev_sets.items()}

    def score(params: Any, whole: bool) -> dict[str, float]:
        scores: dict[str, float] = {}
        for task_name, task in tasks.items():
            dev = dev_sets[task_name] if whole else subsets[task_name]
            predictions = task.predict(
                predictors[task_name], task_params(params, task_name), dev, desc=f"{task_name} dev"
            )
            for metric, value in task.score(predictions, dev).items():
                scores[f"{task_name}/{metric}"] = value
            scores[f"{task_name}/dev_score"] = scores[f"{task_name}/{task.spec.metric}"]
        scores["dev_score"] = float(np.mean([scores[f"{t}/dev_score"] for t in tasks]))
        return scores

    selection = SelectionScores(score, phase, all(len(subsets[t]) == len(dev_sets[t]) for t in tasks))
    sampling = SamplingConfig(
        method=phase.get("sampling", "proportional"),
        temperature=float(phase.get("temperature", 1.0)),
        cap=int(phase.get("cap", 0)),
    )
    result = train_multitask(
        model,
        data,
        trainer_config(phase, pipeline.config.seed),
        workdir=phase_dir,
        mesh=pipeline.mesh,
        rules=pipeline.rules,
        sampling=sampling,
        evaluate=selection.during_training,
        best_metric="dev_score",
    )
    selected, selected_step = selection.selected(result)
    save_params(phase_dir / "best_model", selected)
    final = selection.final(result)
    info: dict[str, Any] = {
        "task": phase.task or MULTITASK,
        "tasks": names,
        "mlm": with_mlm,
        "best_step": selected_step,
        "steps": result.steps,
        "selection": selection_rule(phase),
        "stopped_early": result.stopped_early,
        "best_model": str(absolute(phase_dir / "best_model")),
        "dev": round(final["dev_score"], 2),
        "dev_per_task": {t: round(final[f"{t}/dev_score"], 2) for t in tasks},
    }
    if Phase.of(name).hands_on_encoder:
        save_params(phase_dir / "encoder", selected["encoder"])
        info["encoder"] = str(absolute(phase_dir / "encoder"))
    record_phase(phase_dir, info)
    say(
        f"[{name}] multi-task: done, mean English dev {info['dev']} with the model of step {selected_step} "
        f"({info['dev_per_task']}; {info['selection']})"
    )
    return info
