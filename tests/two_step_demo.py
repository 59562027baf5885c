"""The offline demo trained for 2 steps per phase, once per test session (the export and evaluate_model tests share it)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from stilts_jax import main as main_module

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = ["en", "sw"]


def demo_args(root: Path, workdir: Path, *extra: str) -> list[str]:
    return [
        f"--config={ROOT / 'configs' / 'demo.py'}",
        f"--config.workdir={workdir}",
        f"--config.model.name={root / 'tiny-xlmr'}",
        f"--config.evaluation.languages={LANGUAGES!r}",
        "--config.intermediate.train.progress_bar=false",
        "--config.target.train.progress_bar=false",
        *extra,
    ]


@functools.cache
def _trained(root: Path) -> Path:
    workdir = root / "W"
    args = demo_args(root, workdir, "--config.intermediate.train.max_steps=2", "--config.target.train.max_steps=2")
    assert main_module.main(args) == 0
    assert sorted(json.loads((workdir / "results.json").read_text())["per_language"]) == sorted(LANGUAGES)
    return workdir


def two_step_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained demo's workdir; its tiny model folder is beside it (`workdir.parent / "tiny-xlmr"`)."""
    return _trained(tmp_path_factory.getbasetemp() / "two_step_demo")
