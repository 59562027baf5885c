"""Classification, multiple choice and tagging targets through the main command, on XTREME-layout files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stilts_jax import main as main_module

FIXTURES = Path(__file__).parent / "fixtures" / "tasks" / "xtreme"


def _xtreme_folder(tmp_path: Path) -> Path:
    """The fixture folder with every English training file repeated, so a batch of 8 fits (8 fake devices)."""
    root = tmp_path / "xtreme"
    shutil.copytree(FIXTURES, root)
    for path in list(root.glob("*/train-en.*")) + list(root.glob("siqa/*trn*")):
        text = path.read_text(encoding="utf-8")
        separator = "\n" if path.parent.name in ("udpos", "panx") and not text.endswith("\n\n") else ""
        path.write_text((text + separator) * 8, encoding="utf-8")
    return root


@pytest.mark.parametrize("target, languages, metric", [
    ("panx", ["ar", "zh"], "f1"),
    pytest.param("udpos", ["hi", "ru"], "f1", marks=pytest.mark.slow),
    pytest.param("xnli", ["ar", "hi", "zh"], "accuracy", marks=pytest.mark.slow),
    pytest.param("xcopa", ["et", "zh"], "accuracy", marks=pytest.mark.slow),
])
def test_target_family_runs_end_to_end(target, languages, metric, xlmr_dir, tmp_path):
    root = _xtreme_folder(tmp_path)
    workdir = tmp_path / "run"
    code = main_module.main([
        f"--config=configs/stilts.py:intermediate=none,target={target}", f"--config.workdir={workdir}",
        f"--config.model.name={xlmr_dir}", "--config.model.dtype=float32",
        "--config.target.source.kind=xtreme", f"--config.target.source.path={root}",
        "--config.target.max_length=64", "--config.target.train.batch_size=8", "--config.target.train.max_steps=2",
        "--config.target.train.progress_bar=false", "--config.evaluation.split=dev",
        f"--config.evaluation.languages={languages!r}",
    ])
    assert code == 0
    results = json.loads((workdir / "results.json").read_text())
    assert sorted(results["per_language"]) == sorted(languages)
    for lang in languages:
        row = results["per_language"][lang]
        assert 0.0 <= row[metric] <= 100.0
        extension = "jsonl" if target == "xcopa" else "tsv"
        predictions = (workdir / "predictions" / target / f"test-{lang}.{extension}").read_text(encoding="utf-8")
        if target in ("panx", "udpos"):
            sentences = [block for block in predictions.split("\n\n") if block.strip()]
            assert len(sentences) == row["examples"]
        else:
            assert len(predictions.splitlines()) == row["examples"]


@pytest.mark.slow
def test_intermediate_multiple_choice_hands_off_to_xcopa(xlmr_dir, tmp_path):
    root = _xtreme_folder(tmp_path)
    workdir = tmp_path / "chain"
    phase_args = ["--config.{p}.source.kind=xtreme", "--config.{p}.source.path=" + str(root), "--config.{p}.max_length=64",
                  "--config.{p}.train.batch_size=8", "--config.{p}.train.max_steps=2", "--config.{p}.train.progress_bar=false"]
    code = main_module.main([
        "--config=configs/stilts.py:intermediate=siqa,target=xcopa", f"--config.workdir={workdir}",
        f"--config.model.name={xlmr_dir}", "--config.model.dtype=float32", "--config.evaluation.split=dev",
        "--config.evaluation.languages=['et']",
        *[a.format(p="intermediate") for a in phase_args], *[a.format(p="target") for a in phase_args],
    ])
    assert code == 0
    assert json.loads((workdir / "intermediate" / "phase_done.json").read_text())["task"] == "siqa"
    assert json.loads((workdir / "results.json").read_text())["intermediate_task"] == "siqa"
