"""ml_collections config files from the command line, big_vision style.

    --config=configs/squad_to_tydiqa.py
    --config=configs/stilts.py:intermediate=squad,target=tydiqa     (the text after ':' goes to get_config(arg))
    --config.target.train.epochs=3 --config.model.name=xlm-roberta-base

An override of a key that does not exist is an error listing the valid keys at that level; values are parsed to
the type of the field they replace.
"""

from __future__ import annotations

import ast
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections

from stilts_jax.core.errors import StiltsError


class ConfigError(StiltsError):
    pass


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    path, _, arg = spec.partition(":")
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {file} does not exist (configs live in configs/, e.g. configs/demo.py)")
    module_spec = importlib.util.spec_from_file_location(f"stilts_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{file} defines no get_config()")
    try:
        config = module.get_config(arg) if arg else module.get_config()
    except (ValueError, TypeError, KeyError) as e:  # a recipe's own argument checks
        raise ConfigError(f"{spec}: {e}") from None
    return config


def _parse_value(text: str, current: Any, key: str) -> Any:
    if isinstance(current, bool):
        lowered = text.lower()
        if lowered not in ("true", "false", "1", "0"):
            raise ConfigError(f"--config.{key} expects true or false, got {text!r}")
        return lowered in ("true", "1")
    if isinstance(current, str):
        return text
    if text.lower() in ("none", "null"):
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if current is None:
            return text
        raise ConfigError(f"--config.{key}={text!r} is not a valid {type(current).__name__}") from None
    if isinstance(current, float) and isinstance(value, int):
        return float(value)
    if current is not None and not isinstance(value, type(current)):
        raise ConfigError(f"--config.{key} expects a {type(current).__name__}, got {text!r}")
    return value


def apply_override(config: ml_collections.ConfigDict, dotted: str, text: str) -> None:
    node: Any = config
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            where = ".".join(parts[:depth]) or "(top level)"
            valid = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
            raise ConfigError(
                f"unknown config key {dotted!r}: {where} has no {part!r}; valid keys there: {', '.join(valid)}"
            )
        if depth < len(parts) - 1:
            node = node[part]
    current = node[parts[-1]]
    if isinstance(current, ml_collections.ConfigDict):
        # A mapping keyed by names (task_sources, stage_overrides: empty by default) is given whole, as a dict.
        value = None
        if not current.keys():
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                value = None
        if not isinstance(value, dict):
            keys = ", ".join(sorted(current.keys()))
            raise ConfigError(
                f"--config.{dotted} is a section; set one of its keys: {keys}"
                if keys
                else f"--config.{dotted} is a mapping: give it whole as a dict, e.g. \"{{'name': {{...}}}}\""
            )
        with node.unlocked():
            node[parts[-1]] = ml_collections.ConfigDict(value)
        return
    with node.unlocked():
        node[parts[-1]] = _parse_value(text, current, dotted)


def parse_config_args(argv: Sequence[str]) -> tuple[ml_collections.ConfigDict, list[str]]:
    """The config from `--config=...` and its `--config.key=value` overrides; other arguments are returned."""
    spec, overrides, rest = None, [], []
    items = list(argv)
    i = 0
    while i < len(items):
        arg = items[i]
        if arg == "--workdir" or arg.startswith("--workdir="):  # big_vision's flag for --config.workdir
            arg = "--config.workdir" + arg[len("--workdir") :]
        if arg.startswith("--config.") or arg == "--config" or arg.startswith("--config="):
            if "=" in arg:
                key, value = arg[2:].split("=", 1)
            elif i + 1 < len(items):
                key, value = arg[2:], items[i + 1]
                i += 1
            else:
                raise ConfigError(f"{arg} needs a value")
            if key == "config":
                spec = value
            else:
                overrides.append((key[len("config.") :], value))
        else:
            rest.append(arg)
        i += 1
    if spec is None:
        raise ConfigError("pass --config=configs/<recipe>.py (e.g. configs/demo.py or configs/squad_to_tydiqa.py)")
    # Users' task modules first: the recipe may name their tasks and read their defaults.
    from stilts_jax.tasks.user_modules import load_task_modules

    for key, value in overrides:
        if key == "task_modules":
            load_task_modules(_parse_value(value, [], key))
    config = load_config_file(spec)
    for key, value in overrides:
        apply_override(config, key, value)
    if any(key in ("target.task", "intermediate.task") for key, _ in overrides) and "target" in config:
        from stilts_jax.config.presets import retarget

        changed = retarget(config, {key for key, _ in overrides})
        if changed:
            print(
                f"[config] the task changed: {', '.join(changed)} follow the new task's defaults (set them on the "
                "command line to keep other values)",
                flush=True,
            )
    config.lock()
    return config, rest


def config_to_json(config: ml_collections.ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str) + "\n"
