"""Sequential intermediate training: a chain of stages, each handing its best encoder to the next.

    --config=configs/stilts.py:intermediate=anli+hellaswag,target=xcopa

`intermediate.task` joins the stages' tasks with `+`. Every stage is a full copy of the `intermediate` phase config
with its own task; `intermediate.task_sources.<task>` gives a stage its own data source and
`intermediate.stage_overrides` = {task: {key: value or {key: value}}} its own settings (e.g.
`--config.intermediate.stage_overrides="{'hellaswag': {'train': {'epochs': 2.0}}}"`). Stage i works in `intermediate/{i}_{task}`, is skipped when done and resumed when not, and starts from the
previous stage's best encoder through the same strict hand-off as the target phase. A single task is today's one
intermediate phase in `intermediate/`.

After each stage the English dev score of every earlier single-task stage is measured again with its own head kept
and the new encoder: `intermediate/chain.json`, `chain.md` (a stage x task table) and `chain.png` show what a later
stage undid (forgetting) or helped.
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

import jax
import ml_collections

from stilts_jax.core.errors import InputError
from stilts_jax.core.io_utils import atomic_write_text
from stilts_jax.pipeline.common import make_predictor, say, task_source_of
from stilts_jax.tasks.registry import get_task
from stilts_jax.train.checkpoints import load_params
from stilts_jax.train.state import ModelSpec

if TYPE_CHECKING:
    from stilts_jax.pipeline.context import RunContext

CHAIN_SEPARATOR = "+"
CHAIN_FILE = "chain.json"


def chain_tasks(phase: ml_collections.ConfigDict) -> list[str]:
    """The stage tasks of an intermediate phase (one for an ordinary run, none for the baseline)."""
    task = phase.task or ""
    return [t.strip() for t in task.split(CHAIN_SEPARATOR)] if task else []


def _apply(node: ml_collections.ConfigDict, values: Any, task: str, where: str = "") -> None:
    """Set `values` (nested mappings of keys to values) on the phase config `node`; unknown keys are errors."""
    for key, value in dict(values).items():
        dotted = f"{where}{key}"
        if key not in node:
            raise InputError(f"intermediate.stage_overrides[{task!r}]: unknown key {dotted!r}; valid keys there: "
                             f"{', '.join(sorted(node.keys()))}")
        if isinstance(node[key], ml_collections.ConfigDict):
            if not isinstance(value, (dict, ml_collections.ConfigDict)):
                raise InputError(f"intermediate.stage_overrides[{task!r}]: {dotted!r} is a section; give a mapping")
            _apply(node[key], value, task, f"{dotted}.")
        else:
            node[key] = value


def chain_stages(phase: ml_collections.ConfigDict) -> list[tuple[str, ml_collections.ConfigDict]]:
    """(folder, stage config) of each stage, in order; the folder of a one-stage phase is "intermediate"."""
    tasks = chain_tasks(phase)
    if not tasks:
        return []
    if len(tasks) == 1 and (phase.get("tasks") or not (phase.get("stage_overrides") or phase.get("task_sources"))):
        return [("intermediate", phase)]  # one stage as configured (a multi-task phase reads task_sources itself)
    if "" in tasks:
        raise InputError(f"intermediate.task {phase.task!r} has an empty stage; join task names with "
                         f"{CHAIN_SEPARATOR!r}, e.g. anli+hellaswag")
    if phase.get("tasks") and len(tasks) > 1:
        raise InputError("a chain (intermediate.task with '+') and a multi-task list (intermediate.tasks) cannot be "
                         "combined in one phase; give the chain's stages one task each")
    overrides = phase.get("stage_overrides") or {}
    # A recipe may carry settings for tasks its other chains use (sweep rows); a name that is no task is a typo.
    from stilts_jax.tasks.registry import TASKS

    unknown = sorted(set(overrides) - set(TASKS))
    if unknown:
        raise InputError(f"intermediate.stage_overrides names {', '.join(unknown)}, which are not tasks; the chain "
                         f"{phase.task!r} has stages {', '.join(tasks)}")
    stages = []
    for index, task in enumerate(tasks):
        get_task(task)  # an unknown task fails here, before any stage trains
        stage = copy.deepcopy(phase)
        with stage.unlocked():
            stage.task = task
            stage.source = ml_collections.ConfigDict(task_source_of(phase, task))
            _apply(stage, overrides.get(task, {}), task)
            stage.stage_overrides = {}
        stages.append((f"intermediate/{index}_{task}" if len(tasks) > 1 else "intermediate", stage))
    return stages


def stage_scores(pipeline: RunContext, stages: list[tuple[str, ml_collections.ConfigDict]],
                 records: dict[str, dict[str, Any]], upto: int) -> dict[str, float]:
    """The English dev score of every single-task stage up to `upto` (included), each with its own head and the
    encoder of stage `upto`."""
    encoder_path = records[stages[upto][0]]["encoder"]
    scores: dict[str, float] = {}
    for folder, stage in stages[: upto + 1]:
        record = records[folder]
        if record.get("tasks"):  # a multi-task stage has several heads: not measured here
            continue
        if folder == stages[upto][0]:
            scores[stage.task] = float(record["dev"])
            continue
        spec = get_task(stage.task)
        task = pipeline.make_task(spec, stage)
        model_spec = ModelSpec(pipeline.abstract_model(task), pipeline.mesh, pipeline.rules)
        abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                model_spec.abstract_params, model_spec.param_shardings)
        params = load_params(record["best_model"], abstract)
        params = {**params, "encoder": load_params(encoder_path, abstract["encoder"])}
        dev = task.load("dev", task_source_of(stage, stage.task), ["en"])["en"]
        if stage.max_dev_examples:
            dev = dev[: stage.max_dev_examples]
        predictions = task.predict(make_predictor(pipeline, model_spec), params, dev, desc=f"{stage.task} dev")
        scores[stage.task] = float(task.score(predictions, dev)[spec.metric])
    return scores


def chain_table(stages: list[tuple[str, ml_collections.ConfigDict]], table: dict[str, dict[str, float]]) -> str:
    """Markdown: a row per stage (after training it), a column per stage task, English dev scores."""
    tasks = [stage.task for _, stage in stages]
    lines = ["### Chain: English dev score of each stage's task after each stage", "",
             "Rows: the encoder after that stage (each task keeps its own head). A drop down a column is what a later "
             "stage undid.", "",
             "| after stage | " + " | ".join(tasks) + " |", "|" + "---|" * (len(tasks) + 1)]
    for index, (folder, stage) in enumerate(stages):
        row = table.get(folder, {})
        cells = [f"{row[t]:.1f}" if t in row else "" for t in tasks]
        lines.append(f"| {index}: {stage.task} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_chain_report(pipeline: RunContext, stages: list[tuple[str, ml_collections.ConfigDict]],
                       table: dict[str, dict[str, float]]) -> None:
    if jax.process_index() != 0:
        return
    folder = pipeline.workdir / "intermediate"
    data = {"stages": [{"folder": f, "task": s.task} for f, s in stages], "scores": table}
    atomic_write_text(folder / CHAIN_FILE, json.dumps(data, indent=2) + "\n")
    markdown = chain_table(stages, table)
    atomic_write_text(folder / "chain.md", markdown)
    if pipeline.config.evaluation.get("plots", True):
        from stilts_jax.evaluation.plots import chain_lines_png, write_plot

        write_plot(folder / "chain.png", lambda: chain_lines_png([s.task for _, s in stages], [
            [table.get(f, {}).get(s2.task) for _, s2 in stages] for f, _ in stages]), report=say)
    say(markdown)


def run_chain(pipeline: RunContext, run_stage: Any) -> str | None:
    """Train the intermediate stages in order (`run_stage(folder, stage, handoff) -> record`); returns the last
    stage's encoder (None for the baseline). Records each stage in `pipeline.phase_records`."""
    stages = chain_stages(pipeline.config.intermediate)
    handoff: str | None = None
    table: dict[str, dict[str, float]] = {}
    saved = pipeline.workdir / "intermediate" / CHAIN_FILE
    if len(stages) > 1 and saved.exists():
        table = json.loads(saved.read_text()).get("scores", {})
    for index, (folder, stage) in enumerate(stages):
        record = run_stage(folder, stage, handoff)
        pipeline.phase_records[folder] = record
        handoff = record["encoder"]
        if len(stages) > 1 and folder not in table:
            table[folder] = stage_scores(pipeline, stages, pipeline.phase_records, index)
            write_chain_report(pipeline, stages[: index + 1], table)
    if len(stages) > 1:
        pipeline.phase_records["intermediate"] = {
            "task": pipeline.config.intermediate.task, "stages": [pipeline.phase_records[f] for f, _ in stages],
            "encoder": handoff, "dev": pipeline.phase_records[stages[-1][0]]["dev"]}
    elif stages:
        pipeline.phase_records["intermediate"] = pipeline.phase_records[stages[0][0]]
    return handoff
