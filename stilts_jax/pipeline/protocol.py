"""The protocol behind a result, written at the head of results.json and results.md so no number travels unlabelled:
the evaluated split, how each phase's model was selected, which preset its hyperparameters come from (and which of
them the run changed), the transfer setting and, for BUCC, how the threshold was chosen."""

from __future__ import annotations

from typing import Any

import ml_collections

# protocol_markdown renders a protocol for the results table; it lives with the tables (evaluation, a lower layer).
from stilts_jax.evaluation.report import protocol_markdown  # noqa: F401 (re-exported)
from stilts_jax.pipeline.chain import chain_stages
from stilts_jax.pipeline.common import selection_rule
from stilts_jax.pipeline.translate_train import ZERO_SHOT, training_languages, transfer_setting

# Keys of a phase whose values the preset fixes: (key in phase.preset.values, where it lives in the phase).
_PRESET_KEYS = {"max_length": ("max_length",), "batch_size": ("train", "batch_size"), "epochs": ("train", "epochs")}


def _value(phase: ml_collections.ConfigDict, path: tuple[str, ...]) -> Any:
    node: Any = phase
    for part in path:
        node = node[part]
    return node


def changed_from_preset(phase: ml_collections.ConfigDict) -> list[str]:
    """The phase keys whose value differs from its preset's (the run's own choices), e.g. `train.learning_rate`."""
    preset = phase.get("preset")
    if preset is None:
        return []
    changed = []
    for key, expected in preset["values"].items():
        path = _PRESET_KEYS.get(key, ("train", key))
        try:
            value = _value(phase, path)
        except KeyError:
            continue
        if value != expected:
            changed.append(".".join(path))
    return sorted(changed)


def phase_protocol(phase: ml_collections.ConfigDict, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Task, preset, changed keys and selection rule of one training phase (`info`: its phase_done record)."""
    preset = phase.get("preset")
    tasks = list(phase.tasks)
    return {
        "task": phase.task or None,
        **({"tasks": tasks} if tasks else {}),
        "preset": preset["label"] if preset is not None else "unrecorded",
        "changed_from_preset": changed_from_preset(phase),
        "selection": (info or {}).get("selection") or selection_rule(phase),
        **({"selected_step": info.get("best_step"), "english_dev": info.get("dev")} if info else {}),
    }


def run_protocol(
    config: ml_collections.ConfigDict,
    *,
    split: str,
    trained_target: bool,
    phases: dict[str, dict[str, Any] | None] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The whole run's protocol. `phases`: phase name -> its phase_done record, where it ran."""
    phases = phases or {}
    target = config.target
    # The transfer label (zero-shot, translate-train, translate-train-all) heads every table. An evaluated model was
    # trained elsewhere: its own record says on which languages (a model imported from Hugging Face has none).
    trained_on = target
    evaluated = phases.get("target") if target.evaluate_model else None
    if evaluated is not None:
        trained_on = ml_collections.ConfigDict(
            {
                "train_languages": list(evaluated.get("train_languages") or ["en"]),
                "language_sampling": evaluated.get("language_sampling", "concatenate"),
            }
        )
    transfer, setting = transfer_setting(trained_on, target.task, list(config.evaluation.languages))
    if evaluated is not None and "train_languages" not in evaluated:
        setting += " (assumed: the evaluated model's training languages are not recorded)"
    protocol: dict[str, Any] = {"setting": setting, "split": split, "transfer": transfer}
    if transfer != ZERO_SHOT:
        protocol["train_languages"] = training_languages(trained_on, target.task)
        protocol["language_sampling"] = trained_on.get("language_sampling", "concatenate")
    stages = chain_stages(config.intermediate)
    if target.evaluate_model:
        protocol["intermediate"] = (
            f"not trained in this run: target.evaluate_model {target.evaluate_model} is evaluated as it was trained"
        )
    elif len(stages) > 1:  # a sequential chain: one entry per stage, in order
        protocol["intermediate"] = [
            {"stage": index, **phase_protocol(stage, phases.get(folder))}
            for index, (folder, stage) in enumerate(stages)
        ]
    elif stages:  # one stage: a task, or several trained together (squad&mnli)
        protocol["intermediate"] = phase_protocol(stages[0][1], phases.get("intermediate"))
    else:
        protocol["intermediate"] = None
    if trained_target:
        protocol["target"] = phase_protocol(target, phases.get("target"))
    protocol.update(extra)
    return protocol
