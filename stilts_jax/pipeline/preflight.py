"""Everything checked before a run spends anything: the whole config, the tasks and languages it names, the optional
packages it needs (wandb for logging.wandb), the model's length limit, and every local or gs:// data file each phase
will read, with every problem reported at once.

Hub and TFDS sources are opened when their phase reads them (opening them here would download them); a files or
XTREME-folder source is read whole here, so a missing, unreadable, mis-encoded or malformed file stops the run before
the first training step instead of after hours of an earlier phase.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections

from stilts_jax.config import schema
from stilts_jax.config.loader import ConfigError
from stilts_jax.core.errors import StiltsError
from stilts_jax.data.mlm import text_files
from stilts_jax.data.task_sources import load_examples
from stilts_jax.pipeline.chain import chain_stages
from stilts_jax.pipeline.common import source_of, task_source_of
from stilts_jax.pipeline.translate_train import training_languages, translation_source
from stilts_jax.pipeline.wandb_log import wandb_problems
from stilts_jax.tasks.registry import TASKS, TRAINABLE_FAMILIES, TaskSpec, get_task

READ_HERE = ("files", "xtreme")  # source kinds read in the preflight (local or gs:// files)
STAGE_SEPARATORS = r"[+&]"


def _unknown_task(name: str, where: str) -> str:
    close = [t for t in TASKS if t.startswith(name[:3])] if name else []
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return (
        f"{where}: unknown task {name!r}{hint}; registered tasks: {', '.join(sorted(TASKS))} (or register your own "
        "with --config.task_modules)"
    )


def task_problems(config: ml_collections.ConfigDict) -> list[str]:
    """Task names of every phase and the evaluation languages."""
    problems = []
    intermediate = config.intermediate
    names = [n.strip() for n in re.split(STAGE_SEPARATORS, intermediate.task or "") if n.strip()]
    names += [n for n in intermediate.tasks if n]
    for name in names:
        if name == "multitask":  # the label of a multi-task phase; its tasks are in intermediate.tasks
            continue
        if name not in TASKS:
            problems.append(_unknown_task(name, "intermediate.task"))
        elif TASKS[name].family not in TRAINABLE_FAMILIES:
            problems.append(
                f"intermediate.task: {name} ({TASKS[name].family}) cannot be trained as an intermediate "
                f"task; trainable families: {', '.join(TRAINABLE_FAMILIES)}"
            )
    target = config.target.task
    if target not in TASKS:
        problems.append(_unknown_task(target, "target.task"))
        return problems
    spec = TASKS[target]
    unknown = [lang for lang in config.evaluation.languages if lang not in spec.languages]
    if unknown:
        problems.append(
            f"evaluation.languages: {target} has no {', '.join(unknown)}; its languages: "
            f"{', '.join(spec.languages)} (an empty list evaluates them all)"
        )
    return problems


@dataclasses.dataclass(frozen=True)
class DataRead:
    """One read a phase will make: which task and split, from where, in which languages."""

    where: str  # the phase, as messages name it
    spec: TaskSpec
    which: str  # train, dev or eval
    source: dict[str, Any]
    languages: tuple[str, ...] | None


def _phase_tasks(node: ml_collections.ConfigDict) -> list[str]:
    return [t for t in node.tasks] if len(node.tasks) else [node.task]


def planned_reads(config: ml_collections.ConfigDict) -> list[DataRead]:
    """The data every phase of the run reads, in order (training languages, English dev, the evaluation split)."""
    reads: list[DataRead] = []
    stages = chain_stages(config.intermediate) if config.intermediate.task else []
    target_spec = get_task(config.target.task)
    phases = list(stages)
    if target_spec.family in TRAINABLE_FAMILIES:
        phases.append(("target", config.target))
    if config.target.evaluate_model:  # a given model is evaluated: no phase trains
        phases = []
    for folder, node in phases:
        for name in _phase_tasks(node):
            if name not in TASKS or TASKS[name].family not in TRAINABLE_FAMILIES:
                continue
            spec, source = TASKS[name], task_source_of(node, name)
            for language in training_languages(node, name):
                translated = None if language == "en" else translation_source(name, node, source, language)
                if translated is not None:
                    reads.append(DataRead(folder, spec, "train", translated, ("en",)))
                else:
                    reads.append(DataRead(folder, spec, "train", source, (language,)))
            reads.append(DataRead(folder, spec, "dev", source, ("en",)))
    if target_spec.family in TRAINABLE_FAMILIES:
        spec = target_spec
        if config.evaluation.split:
            spec = dataclasses.replace(spec, eval_split=config.evaluation.split)
        languages = tuple(config.evaluation.languages) or tuple(spec.languages)
        reads.append(DataRead("evaluation", spec, "eval", source_of(config.target), languages))
    return reads


def data_problems(
    reads: list[DataRead], load: Callable[[str, str, Mapping[str, Any], Any], Any] = load_examples
) -> list[str]:
    """Read every files or XTREME-folder source the run will read; each failure becomes one problem line."""
    problems = []
    for read in reads:
        if read.source.get("kind", "hf") not in READ_HERE:
            continue
        dataset, split = read.spec.dataset_and_split(read.which)
        try:
            load(dataset, split, read.source, list(read.languages) if read.languages else None)
        except (StiltsError, OSError, ValueError) as e:
            problems.append(f"{read.where}: {read.spec.name} {split} data: {e}")
    return problems


def check_config(config: ml_collections.ConfigDict, *, read_data: bool = True) -> None:
    """Validate the resolved config whole and open the data it names; raise one ConfigError listing every problem."""
    problems = schema.validate(config)
    if not problems:
        problems += task_problems(config) + wandb_problems(config)
    if not problems:
        try:
            stages = chain_stages(config.intermediate) if config.intermediate.task else []
        except StiltsError as e:
            stages, problems = [], [*problems, str(e)]
        for folder, node in stages:
            if node is not config.intermediate:  # a stage with its own overrides
                problems += schema.validate_phase(node, folder)
    for phase in (config.intermediate, config.target):
        for pattern in phase.mlm.files:
            try:
                text_files([pattern])
            except (StiltsError, OSError) as e:
                problems.append(f"mlm.files: {e}")
    if not problems and read_data:
        reads = planned_reads(config)
        # Printed without asking JAX for the process index: no JAX call may come before jax.distributed starts.
        if config.distributed.process_id == 0 and any(read.source.get("kind", "hf") in READ_HERE for read in reads):
            count = sum(r.source.get("kind", "hf") in READ_HERE for r in reads)
            print(f"[check] reading the {count} local data sets the run will use", flush=True)
        problems += data_problems(reads)
    if problems:
        raise ConfigError(
            "the run cannot start; {} problem{}:\n  - {}".format(
                len(problems), "s" if len(problems) > 1 else "", "\n  - ".join(problems)
            )
        )


def check_model_limits(config: ml_collections.ConfigDict, limit: int, phases: list[tuple[str, Any]]) -> None:
    """Every trained phase's max_length within the model's positions (known once the model folder is resolved)."""
    problems = [
        f"{folder}.max_length {node.max_length} exceeds the model's maximum of {limit} tokens; lower "
        f"--config.{folder.split('/')[0]}.max_length"
        for folder, node in phases
        if node.max_length > limit
    ]
    if problems:
        raise ConfigError("the run cannot start:\n  - " + "\n  - ".join(problems))
