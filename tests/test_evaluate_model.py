"""Evaluating a fine-tuned model without training (--config.target.evaluate_model): a transformers task model or a
finished phase, zero-shot in every language, with the scores the run that trained it reported."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from stilts_jax import export as export_module, main as main_module
from stilts_jax.config import schema
from stilts_jax.config.loader import load_config_file
from stilts_jax.core.errors import InputError
from stilts_jax.pipeline.reuse import evaluation_fingerprint, plan
from tests.two_step_demo import LANGUAGES, demo_args, two_step_demo

ROOT = Path(__file__).resolve().parent.parent


def _base() -> Any:
    return load_config_file(str(ROOT / "configs" / "base.py"))


def _config(evaluate_model: str = "") -> Any:
    config = _base()
    config.target.evaluate_model = evaluate_model
    return config


def test_evaluate_model_trains_nothing_and_keys_the_evaluation_by_the_model(tmp_path):
    trained = plan(_config())
    assert [p.folder for p in trained] == ["intermediate", "target"]
    assert all("evaluate_model" not in p.settings["phase"] for p in trained)  # earlier workdirs stay reusable

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"1234")
    config = _config(str(folder))
    assert plan(config) == []
    first = evaluation_fingerprint(config, [])
    assert first != evaluation_fingerprint(_config(), [])
    assert evaluation_fingerprint(config, []) == first
    (folder / "model.safetensors").write_bytes(b"123456")  # a changed model is evaluated again
    assert evaluation_fingerprint(config, []) != first

    (folder / "config.json").unlink()
    with pytest.raises(InputError, match="neither a finished phase folder"):
        evaluation_fingerprint(config, [])


def test_only_the_target_takes_a_model_to_evaluate():
    config = _base()
    config.intermediate.evaluate_model = "some/model"
    assert schema.validate(config) == [
        "intermediate.evaluate_model: a model to evaluate is given as target.evaluate_model"
    ]


def _per_language(workdir: Path) -> dict:
    return json.loads((workdir / "results.json").read_text())["per_language"]


@pytest.mark.slow
def test_exported_model_evaluated_again_gives_the_runs_scores(tmp_path_factory, tmp_path, capsys, xlmr_dir):
    workdir = two_step_demo(tmp_path_factory)
    root = workdir.parent
    exported = tmp_path / "exported"
    assert export_module.main([f"--workdir={workdir}", f"--output={exported}"]) == 0
    capsys.readouterr()

    evaluated = tmp_path / "evaluated"
    assert main_module.main(demo_args(root, evaluated, f"--config.target.evaluate_model={exported}")) == 0
    out = capsys.readouterr().out
    assert "train target" not in out and "[intermediate]" not in out
    assert _per_language(evaluated) == _per_language(workdir)
    for lang in LANGUAGES:  # the same answers, not only the same averages
        name = Path("predictions") / "tydiqa" / f"test-{lang}.json"
        assert json.loads((evaluated / name).read_text()) == json.loads((workdir / name).read_text())
    protocol = json.loads((evaluated / "results.json").read_text())["protocol"]
    assert (
        protocol["intermediate"]
        == f"not trained in this run: target.evaluate_model {exported} is evaluated as it was trained"
    )
    assert (
        protocol["target"]["selection"]
        == f"the fine-tuned model {exported}, evaluated as it is (not trained in this run)"
    )
    assert not (evaluated / "target").exists() and (evaluated / "evaluated_model").is_dir()

    assert main_module.main(demo_args(root, evaluated, f"--config.target.evaluate_model={exported}")) == 0
    again = capsys.readouterr().out
    assert "imported earlier" in again and "[evaluation] finished earlier" in again

    # A phase folder, or the workdir (its target phase), is evaluated from its own best model.
    from_phase = tmp_path / "from_phase"
    assert main_module.main(demo_args(root, from_phase, f"--config.target.evaluate_model={workdir}")) == 0
    assert _per_language(from_phase) == _per_language(workdir)
    assert (
        os.fspath(workdir / "target")
        in json.loads((from_phase / "results.json").read_text())["protocol"]["target"]["selection"]
    )

    # A model of another architecture is named, with the fix.
    capsys.readouterr()
    assert main_module.main(demo_args(root, tmp_path / "other", f"--config.target.evaluate_model={xlmr_dir}")) == 2
    assert f"pass --config.model.name={xlmr_dir}" in capsys.readouterr().err
