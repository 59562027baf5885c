"""When a rerun in a workdir may reuse what is there: each phase's settings, their fingerprint, and the check.

A training phase's result is determined by the model (name, tokenizer, dtype, attention dropout), the seed, its own
phase config (task, data source, lengths, every training hyperparameter) and the encoder it starts from (the
previous stage's fingerprint). `plan(config)` lists the run's phases with those settings; each phase folder keeps
them in `settings.json` from its start and in `phase_done.json` when finished. A rerun reuses a finished phase, or
resumes an unfinished one, only when its fingerprint is unchanged. Otherwise `check_reuse` stops before anything
runs and lists the differences, or, with `on_change="restart"`, moves the changed phase and every later one aside
(`<folder>.replaced-<UTC time>`) so they start anew. Settings that do not change a result (progress bars, logging and
checkpoint intervals, the mesh, the attention kernel, remat) are not part of the fingerprint.

The evaluation is keyed by the model it evaluates and the evaluation settings; a change there re-evaluates (the old
results.json is kept in evaluation/earlier/).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from typing import Any

import jax
import ml_collections

from stilts_jax.config.loader import ConfigError
from stilts_jax.core.io_utils import atomic_write_text
from stilts_jax.pipeline.chain import chain_stages
from stilts_jax.pipeline.common import DONE, say
from stilts_jax.pipeline.evaluate_model import model_identity
from stilts_jax.tasks.registry import ENCODER_ONLY_FAMILIES, get_task

SETTINGS = "settings.json"
# Phase keys that change how a phase runs or reports, never what it computes.
NOT_DETERMINING = (
    "preset",
    "stage_overrides",
    "train.progress_bar",
    "train.log_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "evaluate_model",
)
MODEL_KEYS = ("name", "tokenizer", "dtype", "attention_dropout", "make_tiny")
# Phase keys added later, left out of the fingerprint at the value that computes what runs before them computed, so
# a workdir started before such a key existed still resumes.
NEUTRAL_DEFAULTS = {"train.length_grouping": False, "language_sampling": "concatenate"}


def model_settings(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The model keys a phase's fingerprint holds; random_init only when on (workdirs from before it still resume)."""
    model = {key: config.model[key] for key in MODEL_KEYS if key in config.model}
    if config.model.get("random_init"):
        model["random_init"] = True
    return model


def fingerprint_of(settings: dict[str, Any]) -> str:
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class PlannedPhase:
    folder: str  # under the workdir: "intermediate", "intermediate/1_siqa", "target"
    config: ml_collections.ConfigDict
    settings: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.settings)


def _phase_values(node: ml_collections.ConfigDict) -> dict[str, Any]:
    values = node.to_dict()
    for dotted in NOT_DETERMINING:
        parent, _, key = dotted.rpartition(".")
        holder = values.get(parent, {}) if parent else values
        holder.pop(key, None)
    for dotted, neutral in NEUTRAL_DEFAULTS.items():
        parent, _, key = dotted.rpartition(".")
        holder = values.get(parent, {}) if parent else values
        if key in holder and holder[key] == neutral:
            holder.pop(key)
    return values


def plan(config: ml_collections.ConfigDict) -> list[PlannedPhase]:
    """The run's training phases in order, each with the settings that determine it (none when the run evaluates a
    given model, target.evaluate_model)."""
    if config.target.evaluate_model:
        return []
    model = model_settings(config)
    phases: list[PlannedPhase] = []
    previous: str | None = None
    target_spec = get_task(config.target.task)
    trained_target = target_spec.family not in ENCODER_ONLY_FAMILIES
    planned = list(chain_stages(config.intermediate))
    if trained_target:
        planned.append(("target", config.target))
    for folder, node in planned:
        settings: dict[str, Any] = {
            "model": model,
            "seed": config.seed,
            "phase": _phase_values(node),
            "starts_from": previous,
        }
        if folder == "target" and target_spec.family == "dual_encoder":
            settings["dual_encoder"] = config.dual_encoder.to_dict()
        phases.append(PlannedPhase(folder, node, settings))
        previous = phases[-1].fingerprint
    return phases


def evaluation_fingerprint(config: ml_collections.ConfigDict, phases: list[PlannedPhase]) -> str:
    """What determines the evaluation: the model evaluated (the last phase's fingerprint, or the pretrained model for
    the baseline of an encoder-only target, or the model target.evaluate_model names), the target task and its
    source, and the evaluation settings."""
    evaluated = phases[-1].fingerprint if phases else fingerprint_of(model_settings(config))
    if config.target.evaluate_model:
        evaluated = fingerprint_of({"evaluate_model": model_identity(config.target.evaluate_model), "model": evaluated})
    return fingerprint_of(
        {
            "model": evaluated,
            "task": config.target.task,
            "source": config.target.source.to_dict(),
            "evaluation": _evaluation_values(config.evaluation),
            "dual_encoder": config.dual_encoder.to_dict(),
        }
    )


# Evaluation keys added later, left out of the fingerprint at their "off" value, so an evaluation finished before
# such a key existed is still reused.
NEUTRAL_EVALUATION = {"average_checkpoints": 0}


def _evaluation_values(evaluation: ml_collections.ConfigDict) -> dict[str, Any]:
    values = evaluation.to_dict()
    for key, neutral in NEUTRAL_EVALUATION.items():
        if values.get(key) == neutral:
            values.pop(key)
    return values


def _flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(values, dict):
        flat: dict[str, Any] = {}
        for key, value in values.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): values}


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`key: old -> new` for every setting that differs."""
    before, after = _flatten(old), _flatten(new)
    lines = []
    for key in sorted(set(before) | set(after)):
        if key == "starts_from":
            continue
        if before.get(key, "(unset)") != after.get(key, "(unset)"):
            lines.append(f"{key}: {before.get(key, '(unset)')!r} -> {after.get(key, '(unset)')!r}")
    return lines


def _read_json(path: Any) -> dict[str, Any] | None:
    """A JSON file's object; None when it is missing or damaged (a damaged one is reported)."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        say(f"warning: {path} is damaged (not a whole JSON object); it is ignored and rewritten")
        return None
    return data if isinstance(data, dict) else None


def recorded_settings(phase_dir: Any) -> dict[str, Any] | None:
    """The settings a phase folder was started with (settings.json, else its phase_done.json), or None."""
    for name in (SETTINGS, DONE):
        data = _read_json(phase_dir / name)
        if data is not None and "settings" in data:
            return data
    return None


def check_reuse(config: ml_collections.ConfigDict, workdir: Any, phases: list[PlannedPhase]) -> None:
    """Stop (on_change "refuse") or set aside (on_change "restart") phases whose recorded settings differ."""
    changed: list[tuple[PlannedPhase, list[str]]] = []
    for index, phase in enumerate(phases):
        phase_dir = workdir / phase.folder
        recorded = recorded_settings(phase_dir)
        if recorded is None:
            if (phase_dir / DONE).exists():
                say(
                    f"warning: {phase_dir / DONE} records no settings (written by an earlier version); the phase is "
                    "reused as it is, unverified"
                )
            continue
        if recorded.get("fingerprint") == phase.fingerprint:
            continue
        lines = differences(recorded["settings"], phase.settings)
        if not lines and index > 0:
            lines = [f"it starts from {phases[index - 1].folder}, which changed"]
        changed.append((phase, lines or ["its settings differ"]))
    if not changed:
        return
    if config.on_change != "restart":
        parts = [
            f"{phase.folder} (in {workdir / phase.folder}):\n      " + "\n      ".join(lines)
            for phase, lines in changed
        ]
        raise ConfigError(
            f"the workdir {workdir} holds phases run with other settings; reusing them would mix two runs:\n    "
            + "\n    ".join(parts)
            + "\n  Use another --config.workdir, put the settings back, or pass --config.on_change=restart to start "
            "the changed phases (and every later one) anew; their old folders are kept, renamed."
        )
    first = phases.index(changed[0][0])
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    if jax.process_index() == 0:
        for phase in phases[first:]:
            _set_aside(workdir / phase.folder, stamp)
        if any(p.folder.startswith("intermediate/") for p in phases[first:]):
            _set_aside(workdir / "intermediate" / "chain.json", stamp)
        for name in ("evaluation", "results.json", "results.md"):
            _set_aside(workdir / name, stamp)
    say(f"[restart] settings changed in {changed[0][0].folder}: it and every later phase start anew")


def _set_aside(path: Any, stamp: str) -> None:
    if path.exists():
        moved = path.with_name(f"{path.name}.replaced-{stamp}")
        path.rename(moved)
        say(f"[restart] kept the earlier {path.name} as {moved}")


def start_phase(phase_dir: Any, phase: PlannedPhase | None) -> None:
    """Record the settings a phase starts (or resumes) with, once, in its folder (process 0)."""
    if phase is None or jax.process_index() != 0 or _read_json(phase_dir / SETTINGS) is not None:
        return
    phase_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        phase_dir / SETTINGS,
        json.dumps(
            {"fingerprint": phase.fingerprint, "settings": phase.settings}, indent=2, sort_keys=True, default=str
        )
        + "\n",
    )


def finished_run(workdir: Any, phases: list[PlannedPhase], evaluation: str) -> bool:
    """Whether every phase and the evaluation finished earlier with these settings (a rerun then writes nothing)."""
    for phase in phases:
        done = _read_json(workdir / phase.folder / DONE)
        if done is None or done.get("fingerprint") != phase.fingerprint:
            return False
    marker = _read_json(workdir / "evaluation" / DONE)
    return marker is not None and marker.get("fingerprint") == evaluation and (workdir / "results.json").exists()
