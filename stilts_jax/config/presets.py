"""The presets behind every phase's defaults: which file each value comes from, per task and phase.

configs/base.py builds the phase configs from `preset_row`; the config loader calls `retarget` when the command line
changes a phase's task, so the new task's defaults replace the old task's wherever the recipe and the command line
left them as they were.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import ml_collections

from stilts_jax.tasks.registry import TASKS, get_task

# Every default below names its source. Two presets:
# Choose one with `configs/stilts.py:intermediate=X,target=Y,preset=own` or base.get_config(..., preset=...).
#   published: each task as the code behind its published numbers ran it. The paper's tasks follow the paper's own
#     code, jiant (nyu-mll/jiant jiant/scripts/benchmarks/xtreme/subscripts/: c_tokenize_and_cache.sh for max
#     lengths, d_write_configs.sh for epochs and batch (train_batch_size 4 x gradient_accumulation_steps), and
#     e_run_models.sh for lr 1e-5, --eval_every_steps 1000, --no_improvements_for_n_evals 30); XTREME-R's own
#     baselines (LAReQA, Mewsli-X, the SIQA -> COPA -> XCOPA chain) follow google-research/xtreme's scripts.
#   own: this project's earlier setup, kept as a named alternative (rows of OWN_OVERRIDES).
# batch_size is the effective batch (per-step examples over all devices and micro-batches).
# The target-phase rows live with each task (stilts_jax/tasks/registry.py: TaskSpec.defaults and defaults_source,
# e.g. xnli: jiant d_write_configs.sh:15 and c_tokenize_and_cache.sh:16; xcopa, lareqa, mewslix: XTREME-R's
# scripts/train_{xcopa,lareqa,mewslix}.sh), so a task added with register_task brings its own.
# The intermediate phase: jiant's guides/projects/xstilts.md runs jiant/proj/simple/runscript.py with
# `--train_batch_size 4` and the runscript's defaults otherwise (num_train_epochs 3, max_seq_length 256, lr 1e-5);
# model selection as the XTREME targets (e_run_models.sh).
INTERMEDIATE_DEFAULTS = dict(epochs=3.0, batch_size=4, max_length=256)
# XTREME-R's SIQA stage ahead of XCOPA (scripts/train_xcopa.sh L58-76: the settings of its COPA stage).
XCOPA_CHAIN_INTERMEDIATE = dict(get_task("xcopa").defaults)
# Shared by every task unless a row sets it: jiant/shared/model_setup.py (AdamW, weight decay 0.01 except bias and
# LayerNorm, eps 1e-8), jiant/proj/main/scripts/configurator.py (warmup_steps_proportion 0.1, eval_subset_num 500),
# jiant/proj/main/runscript.py (max_grad_norm 1.0), e_run_models.sh (lr 1e-5, eval every 1000 steps, patience 30).
PAPER_TRAINING = dict(
    learning_rate=1e-5,
    warmup_fraction=0.1,
    weight_decay=0.01,
    adam_eps=1e-8,
    max_grad_norm=1.0,
    micro_batches=1,
    eval_every=1000,
    eval_subset=500,
    early_stopping_patience=30,
    selection="best",
)
# The `own` preset: the project's setup before the published presets (XCOPA 10 epochs at the paper's optimizer;
# dual encoders with warmup and weight decay, whole-batch negatives; intermediate batch 16).
OWN_OVERRIDES = {
    "intermediate": dict(batch_size=16),
    "xcopa": dict(
        epochs=10.0,
        batch_size=32,
        max_length=256,
        learning_rate=1e-5,
        warmup_fraction=0.1,
        weight_decay=0.01,
        selection="best",
    ),
    "lareqa": dict(
        epochs=3.0,
        batch_size=16,
        max_length=256,
        learning_rate=1e-5,
        warmup_fraction=0.1,
        weight_decay=0.01,
        micro_batches=1,
        selection="best",
    ),
    "mewslix": dict(
        epochs=2.0,
        batch_size=256,
        max_length=64,
        learning_rate=1e-5,
        warmup_fraction=0.1,
        weight_decay=0.01,
        micro_batches=1,
        selection="best",
    ),
}
PRESETS = ("published", "own")
INTERMEDIATE_SOURCE = "paper (nyu-mll/jiant guides/projects/xstilts.md, jiant/proj/simple/runscript.py)"


def preset_row(task: str, *, intermediate: bool, preset: str, target: str = "") -> tuple[dict, str]:
    """The preset's values for a phase and the label that names where they come from."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    if intermediate:
        chain = task == "siqa" and target == "xcopa"
        row = dict(XCOPA_CHAIN_INTERMEDIATE if chain else INTERMEDIATE_DEFAULTS)
        label = get_task("xcopa").defaults_source if chain else INTERMEDIATE_SOURCE
        own_key = "intermediate"
    else:
        spec = get_task(task) if task else None
        if spec is not None and spec.defaults:
            row, label = dict(spec.defaults), spec.defaults_source or f"{task}'s own defaults"
        else:  # an English task as the target: the intermediate settings, named as such
            row, label = dict(INTERMEDIATE_DEFAULTS), f"{INTERMEDIATE_SOURCE}, intermediate settings"
        own_key = task
    if preset == "own":
        row.update(OWN_OVERRIDES.get(own_key, {}))
        if intermediate and task == "siqa" and target == "xcopa":
            row = {**INTERMEDIATE_DEFAULTS, **OWN_OVERRIDES["intermediate"]}
        label = "own (stilts-jax's earlier defaults)"
    return row, label


# preset value -> its key in the phase config
PHASE_PATHS = {
    "max_length": "max_length",
    "batch_size": "train.batch_size",
    "epochs": "train.epochs",
    **{key: f"train.{key}" for key in PAPER_TRAINING},
}


def preset_values(task: str, *, intermediate: bool, preset: str, target: str = "") -> tuple[dict[str, Any], str]:
    """A phase's preset values (the keys of PHASE_PATHS) and their label."""
    row, label = preset_row(task, intermediate=intermediate, preset=preset, target=target)
    training = {**PAPER_TRAINING, **{k: v for k, v in row.items() if k in PAPER_TRAINING}}
    if training["selection"] == "last":  # no evaluation during training: only the final model's English dev score
        training.update(eval_every=0, early_stopping_patience=0)
    return dict(max_length=row["max_length"], batch_size=row["batch_size"], epochs=row["epochs"], **training), label


def _get(node: ml_collections.ConfigDict, dotted: str) -> Any:
    for part in dotted.split("."):
        node = node[part]
    return node


def _set(node: ml_collections.ConfigDict, dotted: str, value: Any) -> None:
    *parents, key = dotted.split(".")
    for part in parents:
        node = node[part]
    with node.unlocked():
        node[key] = value


def retarget(config: ml_collections.ConfigDict, explicit: Collection[str]) -> list[str]:
    """After a task changed on the command line: each phase's values that still equal its old preset's take the new
    task's preset values, unless `explicit` (dotted keys set on the command line) names them. Returns the changed
    keys."""
    changed = []
    target = config.target.task
    for name in ("intermediate", "target"):
        node = config[name]
        old = node.preset["values"].to_dict()
        task = node.task or ("squad" if name == "intermediate" else target)
        if name == "intermediate" and "+" in task:  # a chain: the intermediate settings
            task = task.split("+")[0]
        task = task.split("&")[0]
        if task not in TASKS or target not in TASKS:  # a misspelled task: the run's checks name it
            continue
        new, label = preset_values(task, intermediate=name == "intermediate", preset=node.preset.name, target=target)
        if new == old:
            continue
        for key, path in PHASE_PATHS.items():
            dotted = f"{name}.{path}"
            if dotted in explicit or key not in old or _get(node, path) != old[key]:
                continue
            if _get(node, path) != new[key]:
                _set(node, path, new[key])
                changed.append(dotted)
        with node.preset.unlocked():
            node.preset["values"] = ml_collections.ConfigDict(new)
            node.preset.label = label
    return changed
