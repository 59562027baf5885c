"""Sequential intermediate training: a chain of stages, each handing its best encoder to the next.

    --config=configs/stilts.py:intermediate=anli+hellaswag,target=xcopa
    --config=configs/stilts.py:intermediate=anli+squad&mnli,target=xcopa

`intermediate.task` joins the stages with `+`; within a stage, `&` joins tasks trained together (the multi-task
phase, stilts_jax/pipeline/multitask_phase.py: one shared encoder, one head per task). `anli+squad&mnli` is stage 0
ANLI, then stage 1 SQuAD and MNLI together. Every stage is a full copy of the `intermediate` phase config:

- a single-task stage gets its task and `intermediate.task_sources.<task>` as its source;
- a multi-task stage gets `tasks` = its `&`-joined tasks (`task` stays the spelled form, "squad&mnli", as its
  label); each of its tasks reads `task_sources.<task>` (else the phase's `source`), and `sampling`, `temperature`,
  `cap` and `mlm` work as in any multi-task phase;
- `intermediate.stage_overrides` = {stage as spelled: {key: value or {key: value}}} gives a stage its own settings
  (e.g. `"{'hellaswag': {'train': {'epochs': 2.0}}, 'squad&mnli': {'max_length': 256}}"`). A multi-task stage
  takes only the entry of its spelled form: a bare task's entry ('mnli') is for single-task stages of that task,
  since the tasks of a multi-task stage share one max_length, batch and schedule.

Stage i works in `intermediate/{i}_{name}`, where name is the spelled stage with `&` written `-` (a filesystem- and
shell-safe name: `intermediate/1_squad-mnli`); it is skipped when done and resumed when not, and starts from the
previous stage's best encoder through the same strict hand-off as the target phase (a multi-task stage hands on its
shared encoder, `params["encoder"]`, with new heads after it). One stage of one task is today's single intermediate
phase in `intermediate/`; one `&` stage alone is one multi-task phase there too.

After each stage the English dev score of every task of every stage so far is measured again, each task with its own
head (a multi-task stage's heads: one per task) and the new encoder: `intermediate/chain.json`, `chain.md` (a
stage x task table) and `chain.png` show what a later stage undid (forgetting) or helped. A column is a stage's task;
a task trained in two stages has a column per stage (`squad@0`, `squad@2`).
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

import jax
import ml_collections
from flax import nnx

from stilts_jax.core.errors import InputError
from stilts_jax.core.io_utils import atomic_write_text
from stilts_jax.pipeline.common import make_predictor, say, task_source_of
from stilts_jax.pipeline.multitask_phase import MLM, mlm_head
from stilts_jax.tasks.registry import get_task
from stilts_jax.train.checkpoints import load_params
from stilts_jax.train.multitask import MultiTaskModel
from stilts_jax.train.state import ModelSpec

if TYPE_CHECKING:
    from stilts_jax.pipeline.context import RunContext

CHAIN_SEPARATOR = "+"  # between stages, trained one after another
JOINT_SEPARATOR = "&"  # between the tasks of one stage, trained together
FOLDER_JOINT = "-"  # how a stage folder writes JOINT_SEPARATOR
CHAIN_FILE = "chain.json"
_FIXED_KEYS = ("task", "tasks", "stage_overrides")  # what a stage is, not a setting: the chain's spelling decides


def chain_tasks(phase: ml_collections.ConfigDict) -> list[str]:
    """The stages of an intermediate phase as spelled (one for an ordinary run, none for the baseline), e.g.
    ["anli", "squad&mnli"] for `anli+squad&mnli`."""
    task = phase.task or ""
    return [t.strip() for t in task.split(CHAIN_SEPARATOR)] if task else []


def stage_task_names(spelled: str) -> list[str]:
    """The tasks a stage trains: "squad&mnli" -> ["squad", "mnli"], "anli" -> ["anli"]."""
    return [t.strip() for t in spelled.split(JOINT_SEPARATOR)]


def stage_folder(index: int, spelled: str) -> str:
    """The folder of stage `index` of a chain of several stages: `intermediate/1_squad-mnli` for "squad&mnli"."""
    return f"intermediate/{index}_{FOLDER_JOINT.join(stage_task_names(spelled))}"


def stage_tasks(stage: ml_collections.ConfigDict) -> list[str]:
    """The tasks a stage config trains (its `tasks` when multi-task, else its task)."""
    return list(stage.get("tasks") or []) or [stage.task]


def _apply(node: ml_collections.ConfigDict, values: Any, stage: str, where: str = "") -> None:
    """Set `values` (nested mappings of keys to values) on the phase config `node`; unknown keys are errors."""
    if not isinstance(values, (dict, ml_collections.ConfigDict)):
        raise InputError(f"intermediate.stage_overrides[{stage!r}] must be a mapping key -> value, got {values!r}")
    for key, value in dict(values).items():
        dotted = f"{where}{key}"
        if not where and key in _FIXED_KEYS:
            raise InputError(
                f"intermediate.stage_overrides[{stage!r}]: {key!r} cannot be set per stage; the stages "
                f"and their tasks come from intermediate.task ({CHAIN_SEPARATOR!r} between stages, "
                f"{JOINT_SEPARATOR!r} between the tasks of one stage)"
            )
        if key not in node:
            raise InputError(
                f"intermediate.stage_overrides[{stage!r}]: unknown key {dotted!r}; valid keys there: "
                f"{', '.join(sorted(node.keys()))}"
            )
        if isinstance(node[key], ml_collections.ConfigDict):
            if not isinstance(value, (dict, ml_collections.ConfigDict)):
                raise InputError(f"intermediate.stage_overrides[{stage!r}]: {dotted!r} is a section; give a mapping")
            _apply(node[key], value, stage, f"{dotted}.")
        else:
            node[key] = value


def _check_spelling(phase: ml_collections.ConfigDict, spelled: list[str]) -> None:
    example = f"join stages with {CHAIN_SEPARATOR!r} and the tasks of one stage with {JOINT_SEPARATOR!r}, e.g. anli+squad&mnli"
    if "" in spelled:
        raise InputError(f"intermediate.task {phase.task!r} has an empty stage; {example}")
    for stage in spelled:
        names = stage_task_names(stage)
        if "" in names:
            raise InputError(f"intermediate.task {phase.task!r}: stage {stage!r} has an empty task; {example}")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise InputError(
                f"intermediate.task {phase.task!r}: stage {stage!r} lists {', '.join(repeated)} twice; "
                "a multi-task stage trains each of its tasks once"
            )


def _check_overrides(phase: ml_collections.ConfigDict, spelled: list[str], overrides: Any) -> None:
    """Keys of stage_overrides: a task (its single-task stages) or a multi-task stage as spelled. A recipe may carry
    settings for stages its other chains use (sweep rows); a name that is no task is a typo."""
    from stilts_jax.tasks.registry import TASKS

    for key in overrides:
        if CHAIN_SEPARATOR in key:
            raise InputError(
                f"intermediate.stage_overrides[{key!r}]: a key names one stage (a task, or tasks joined "
                f"with {JOINT_SEPARATOR!r}), not a chain; the chain {phase.task!r} has stages "
                f"{', '.join(spelled)}"
            )
    unknown = sorted({name for key in overrides for name in stage_task_names(key)} - set(TASKS))
    if unknown:
        raise InputError(
            f"intermediate.stage_overrides names {', '.join(unknown)}, which are not tasks; the chain "
            f"{phase.task!r} has stages {', '.join(spelled)}"
        )
    for key in overrides:
        if JOINT_SEPARATOR not in key or key in spelled:
            continue
        same = [s for s in spelled if sorted(stage_task_names(s)) == sorted(stage_task_names(key))]
        if same:
            raise InputError(
                f"intermediate.stage_overrides[{key!r}] is meant for the stage {same[0]!r}: key it as "
                "the chain spells the stage (the order of a multi-task stage's tasks is part of it)"
            )


def chain_stages(phase: ml_collections.ConfigDict) -> list[tuple[str, ml_collections.ConfigDict]]:
    """(folder, stage config) of each stage, in order; the folder of a one-stage phase is "intermediate"."""
    spelled = chain_tasks(phase)
    if not spelled:
        return []
    joint = any(JOINT_SEPARATOR in stage for stage in spelled)
    if (
        len(spelled) == 1
        and not joint
        and (phase.get("tasks") or not (phase.get("stage_overrides") or phase.get("task_sources")))
    ):
        return [("intermediate", phase)]  # one stage as configured (a multi-task phase reads task_sources itself)
    _check_spelling(phase, spelled)
    if phase.get("tasks") and (len(spelled) > 1 or joint):
        raise InputError(
            f"intermediate.task {phase.task!r} with {CHAIN_SEPARATOR!r} or {JOINT_SEPARATOR!r} and a "
            f"multi-task list (intermediate.tasks={list(phase.tasks)}) cannot be combined in one "
            f"phase; spell the tasks trained together with {JOINT_SEPARATOR!r} in the chain instead, "
            f"e.g. anli+{JOINT_SEPARATOR.join(list(phase.tasks)[:2])}, and leave intermediate.tasks empty"
        )
    overrides = phase.get("stage_overrides") or {}
    _check_overrides(phase, spelled, overrides)
    for stage in spelled:
        for task in stage_task_names(stage):
            get_task(task)  # an unknown task fails here, before any stage trains
    stages = []
    for index, spell in enumerate(spelled):
        names = stage_task_names(spell)
        stage = copy.deepcopy(phase)
        with stage.unlocked():
            stage.task = spell
            if len(names) == 1:
                stage.source = ml_collections.ConfigDict(task_source_of(phase, spell))
                stage.tasks = []
            else:  # a multi-task stage: each task reads task_sources.<task> (else `source`) itself
                stage.tasks = names
            _apply(stage, overrides.get(spell, {}), spell)
            stage.stage_overrides = {}
        stages.append((stage_folder(index, spell) if len(spelled) > 1 else "intermediate", stage))
    return stages


def chain_columns(stages: list[tuple[str, ml_collections.ConfigDict]]) -> list[tuple[str, int, str]]:
    """The forgetting table's columns, (name, stage index, task): every task of every stage, in order. The name is
    the task, or `task@stage` for a task that more than one stage trains (each stage has its own head)."""
    pairs = [(index, task) for index, (_, stage) in enumerate(stages) for task in stage_tasks(stage)]
    counts = {task: sum(t == task for _, t in pairs) for _, task in pairs}
    return [(task if counts[task] == 1 else f"{task}@{index}", index, task) for index, task in pairs]


def _stage_heads(
    pipeline: RunContext, stage: ml_collections.ConfigDict, record: dict[str, Any]
) -> dict[str, tuple[Any, ModelSpec, Any]]:
    """task -> (task, model spec of its TaskModel, its head's parameters from the stage's best model)."""
    names = list(record.get("tasks") or []) or [stage.task]
    tasks = {name: pipeline.make_task(get_task(name), stage) for name in names}
    specs = {
        name: ModelSpec(pipeline.abstract_model(task), pipeline.mesh, pipeline.rules) for name, task in tasks.items()
    }

    def placed(spec: ModelSpec) -> Any:
        return jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), spec.abstract_params, spec.param_shardings
        )

    if not record.get("tasks"):  # a single-task phase's best model: {"encoder", "head"}
        [name] = names
        heads = {name: load_params(record["best_model"], placed(specs[name]))["head"]}
    else:  # a multi-task phase's best model: {"encoder", "heads": {task: head, [mlm: head]}}
        hidden = pipeline.encoder_config.hidden_size

        def build() -> MultiTaskModel:
            rngs = nnx.Rngs(0)
            modules = {name: task.head(hidden, rngs) for name, task in tasks.items()}
            if record.get("mlm"):
                modules[MLM] = mlm_head(pipeline, hidden, rngs)
            return MultiTaskModel(pipeline.abstract_encoder(), modules)

        loaded = load_params(
            record["best_model"], placed(ModelSpec(nnx.eval_shape(build), pipeline.mesh, pipeline.rules))
        )
        heads = {name: loaded["heads"][name] for name in names}
    return {name: (tasks[name], specs[name], heads[name]) for name in names}


def stage_scores(
    pipeline: RunContext,
    stages: list[tuple[str, ml_collections.ConfigDict]],
    records: dict[str, dict[str, Any]],
    upto: int,
) -> dict[str, float]:
    """The English dev score of every task of every stage up to `upto` (included), each with its own head and the
    encoder of stage `upto`; keyed by the column names of `chain_columns`."""
    columns = chain_columns(stages)
    scores: dict[str, float] = {}
    current = records[stages[upto][0]]
    for column, index, task in columns:  # the stage just trained: its own dev scores, as its record has them
        if index == upto:
            scores[column] = float(current["dev_per_task"][task] if current.get("tasks") else current["dev"])
    encoder: Any = None
    for index, (folder, stage) in enumerate(stages[:upto]):
        for name, (task, model_spec, head) in _stage_heads(pipeline, stage, records[folder]).items():
            if encoder is None:
                abstract = jax.tree.map(
                    lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                    model_spec.abstract_params["encoder"],
                    model_spec.param_shardings["encoder"],
                )
                encoder = load_params(current["encoder"], abstract)
            dev = task.load("dev", task_source_of(stage, name), ["en"])["en"]
            if stage.max_dev_examples:
                dev = dev[: stage.max_dev_examples]
            predictions = task.predict(
                make_predictor(pipeline, model_spec), {"encoder": encoder, "head": head}, dev, desc=f"{name} dev"
            )
            column = next(c for c, i, t in columns if i == index and t == name)
            scores[column] = float(task.score(predictions, dev)[task.spec.metric])
    return scores


def chain_table(stages: list[tuple[str, ml_collections.ConfigDict]], table: dict[str, dict[str, float]]) -> str:
    """Markdown: a row per stage (after training it), a column per task of each stage, English dev scores."""
    columns = [name for name, _, _ in chain_columns(stages)]
    lines = [
        "### Chain: English dev score of each stage's task after each stage",
        "",
        "Rows: the encoder after that stage (each task keeps its own head; a multi-task stage `a&b` has one head "
        "per task). A drop down a column is what a later stage undid.",
        "",
        "| after stage | " + " | ".join(columns) + " |",
        "|" + "---|" * (len(columns) + 1),
    ]
    for index, (folder, stage) in enumerate(stages):
        row = table.get(folder, {})
        cells = [f"{row[c]:.1f}" if c in row else "" for c in columns]
        lines.append(f"| {index}: {stage.task} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_chain_report(
    pipeline: RunContext, stages: list[tuple[str, ml_collections.ConfigDict]], table: dict[str, dict[str, float]]
) -> None:
    if jax.process_index() != 0:
        return
    folder = pipeline.workdir / "intermediate"
    columns = chain_columns(stages)
    data = {
        "stages": [{"folder": f, "task": s.task, "tasks": stage_tasks(s)} for f, s in stages],
        "columns": [{"column": c, "stage": i, "task": t} for c, i, t in columns],
        "scores": table,
    }
    atomic_write_text(folder / CHAIN_FILE, json.dumps(data, indent=2) + "\n")
    markdown = chain_table(stages, table)
    atomic_write_text(folder / "chain.md", markdown)
    if pipeline.config.evaluation.get("plots", True):
        from stilts_jax.evaluation.plots import chain_lines_png, write_plot

        write_plot(
            folder / "chain.png",
            lambda: chain_lines_png(
                [c for c, _, _ in columns],
                [[table.get(f, {}).get(c) for c, _, _ in columns] for f, _ in stages],
                stages=[s.task for _, s in stages],
            ),
            report=say,
        )
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
            "task": pipeline.config.intermediate.task,
            "stages": [pipeline.phase_records[f] for f, _ in stages],
            "encoder": handoff,
            "dev": pipeline.phase_records[stages[-1][0]]["dev"],
        }
    elif stages:
        pipeline.phase_records["intermediate"] = pipeline.phase_records[stages[0][0]]
    return handoff
