"""Checkpoint and run averaging: the uniform average of the target phase's last kept checkpoints evaluated beside the
selected model (evaluation.average_checkpoints), and `python -m stilts_jax.average` over several runs' models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest

from stilts_jax import average as average_module, main as main_module
from stilts_jax.config import schema
from stilts_jax.config.loader import load_config_file
from stilts_jax.core.errors import InputError
from stilts_jax.evaluation.report import markdown_table
from stilts_jax.pipeline.common import DONE
from stilts_jax.pipeline.reuse import evaluation_fingerprint, plan
from stilts_jax.train.averaging import AveragingError, average_params, checkpoint_params, kept_steps
from stilts_jax.train.checkpoints import Checkpoints, save_params
from tests.test_family_pipelines import xtreme_folder

ROOT = Path(__file__).resolve().parent.parent
DEVICE = jax.sharding.SingleDeviceSharding(jax.devices()[0])


def _params(value: float) -> dict[str, Any]:
    return {
        "encoder": {"w": np.full((2, 3), value, np.float32), "b": np.arange(3, dtype=np.float32) * value},
        "head": {"w": np.full((3,), -value, np.float32)},
    }


def _abstract(params: Any) -> Any:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=DEVICE), params)


def test_the_last_kept_checkpoints_average_uniformly(tmp_path):
    checkpoints = Checkpoints(tmp_path / "checkpoints", keep_last=3, keep_best=0, async_save=False)
    for step, value in [(1, 10.0), (2, 1.0), (3, 2.0), (4, 6.0)]:
        state = {"params": _params(value), "opt_state": {"mu": _params(100.0)}, "step": np.int32(step)}
        checkpoints.save(step, state, {"position": step})
    checkpoints.close()
    assert kept_steps(tmp_path / "checkpoints") == [2, 3, 4]  # keep_last=3: step 1 is gone

    abstract = _abstract(_params(0.0))
    one = checkpoint_params(tmp_path / "checkpoints", 3, abstract)
    np.testing.assert_array_equal(one["encoder"]["w"], np.full((2, 3), 2.0))
    steps = kept_steps(tmp_path / "checkpoints")[-3:]
    averaged = average_params([lambda s=s: checkpoint_params(tmp_path / "checkpoints", s, abstract) for s in steps])
    np.testing.assert_allclose(averaged["encoder"]["w"], np.full((2, 3), 3.0))  # (1 + 2 + 6) / 3
    np.testing.assert_allclose(averaged["encoder"]["b"], np.arange(3) * 3.0)
    np.testing.assert_allclose(averaged["head"]["w"], np.full((3,), -3.0))
    assert averaged["head"]["w"].dtype == np.float32

    other = _abstract({**_params(0.0), "head": {"w": np.zeros((4,), np.float32)}})
    with pytest.raises(Exception, match=r"head/w"):
        checkpoint_params(tmp_path / "checkpoints", 3, other)
    with pytest.raises(AveragingError, match=r"model 2 of 2 has other parameters"):
        average_params([lambda: _params(1.0), lambda: {"encoder": _params(1.0)["encoder"]}])


def _base() -> Any:
    return load_config_file(str(ROOT / "configs" / "base.py"))


def test_average_checkpoints_is_checked_against_the_kept_checkpoints():
    config = _base()
    assert config.evaluation.average_checkpoints == 0 and schema.validate(config) == []
    config.evaluation.average_checkpoints = 3
    config.target.train.keep_checkpoints = 2
    assert schema.validate(config) == [
        "evaluation.average_checkpoints=3 exceeds target.train.keep_checkpoints=2 (only that many of the last "
        "checkpoints are kept); set --config.target.train.keep_checkpoints=3 or more"
    ]
    config.target.train.keep_checkpoints = 3
    assert schema.validate(config) == []
    config.evaluation.average_checkpoints = -1
    assert schema.validate(config) == ["evaluation.average_checkpoints must be an integer >= 0, got -1"]
    config.evaluation.average_checkpoints = 2
    config.target.evaluate_model = "some/model"
    assert "python -m stilts_jax.average" in schema.validate(config)[0]
    config.target.evaluate_model = ""
    config.target.task = "tatoeba"
    assert schema.validate(config) == [
        "evaluation.average_checkpoints=2: tatoeba (sentence_retrieval) is not evaluated from a trained target model "
        "per language; set evaluation.average_checkpoints=0"
    ]


def test_average_checkpoints_changes_the_evaluation_only():
    config = _base()
    phases = plan(config)
    off = evaluation_fingerprint(config, phases)
    without = _base()
    del without.evaluation["average_checkpoints"]  # an evaluation finished before the key existed is still reused
    assert evaluation_fingerprint(without, plan(without)) == off
    config.evaluation.average_checkpoints = 2
    assert [p.fingerprint for p in plan(config)] == [p.fingerprint for p in phases]  # no phase trains again
    assert evaluation_fingerprint(config, plan(config)) != off


def test_the_results_table_puts_the_averaged_model_beside_the_selected_one():
    summary = {
        "task": "xnli",
        "per_language": {"ar": {"accuracy": 40.0, "baseline_accuracy": 33.3, "examples": 3}},
        "average": {"accuracy": 40.0, "baseline_accuracy": 33.3},
        "average_zero_shot": {"accuracy": 40.0, "baseline_accuracy": 33.3},
        "average_checkpoints": {
            "label": "avg-last-2",
            "description": "uniform average of the parameters of the last 2 kept checkpoints of the target phase",
            "steps": [3, 4],
            "per_language": {"ar": {"accuracy": 50.0, "baseline_accuracy": 33.3, "examples": 3}},
            "average": {"accuracy": 50.0},
            "average_zero_shot": {"accuracy": 50.0},
        },
    }
    table = markdown_table(summary, [("accuracy", "accuracy"), ("baseline_accuracy", "majority baseline")])
    assert "| language | accuracy | accuracy avg-last-2 | majority baseline | examples |" in table
    assert "| ar | 40.0 | 50.0 | 33.3 | 3 |" in table
    assert "| **average (zero-shot, no en)** | 40.0 | 50.0 | 33.3 | |" in table
    assert "- avg-last-2: uniform average of the parameters of the last 2 kept checkpoints" in table
    assert "(steps 3, 4)" in table
    del summary["average_checkpoints"]
    assert "avg-last" not in markdown_table(summary, [("accuracy", "accuracy")])


def _run_args(root: Path, workdir: Path, xlmr_dir: Path, *extra: str) -> list[str]:
    return [
        "--config=configs/stilts.py:intermediate=none,target=xnli",
        f"--config.workdir={workdir}",
        f"--config.model.name={xlmr_dir}",
        "--config.model.dtype=float32",
        "--config.target.source.kind=xtreme",
        f"--config.target.source.path={root}",
        "--config.target.max_length=64",
        "--config.target.train.batch_size=8",
        "--config.target.train.max_steps=3",
        "--config.target.train.checkpoint_every=1",
        "--config.target.train.keep_checkpoints=2",
        "--config.target.train.progress_bar=false",
        "--config.evaluation.split=dev",
        "--config.evaluation.languages=['ar','hi']",
        "--config.evaluation.plots=false",
        *extra,
    ]


def _results(workdir: Path) -> dict[str, Any]:
    return json.loads((workdir / "results.json").read_text())


def test_the_average_of_the_last_checkpoints_is_evaluated_beside_the_selected_model(xlmr_dir, tmp_path, capsys):
    root = xtreme_folder(tmp_path)
    workdir = tmp_path / "run"
    assert main_module.main(_run_args(root, workdir, xlmr_dir, "--config.evaluation.average_checkpoints=2")) == 0
    results = _results(workdir)
    averaged = results["average_checkpoints"]
    assert averaged["label"] == "avg-last-2" and averaged["steps"] == [2, 3]
    assert sorted(averaged["per_language"]) == ["ar", "hi"]
    assert averaged["per_language"]["ar"]["examples"] == results["per_language"]["ar"]["examples"] == 3
    assert set(averaged["average"]) == set(results["average"])
    assert (workdir / "predictions" / "avg-last-2" / "xnli" / "test-ar.tsv").exists()
    assert "accuracy avg-last-2" in (workdir / "results.md").read_text()

    # A changed k evaluates the new average; the trained phase and the selected model's scores are reused.
    capsys.readouterr()
    assert main_module.main(_run_args(root, workdir, xlmr_dir, "--config.evaluation.average_checkpoints=1")) == 0
    out = capsys.readouterr().out
    assert "[target] xnli: finished earlier" in out
    assert "xnli ar: evaluated earlier" in out and "xnli ar (avg-last-1): accuracy" in out
    again = _results(workdir)
    assert again["per_language"] == results["per_language"]
    assert again["average_checkpoints"]["steps"] == [3]
    # The average of one checkpoint, the last (the selected model here: no dev evaluation before the end), is that
    # model: the same scores.
    assert again["average_checkpoints"]["per_language"] == again["per_language"]


def _fake_phase(folder: Path, task: str, value: float, *, seed: int = 0, model: str = "m", lr: float = 1e-5) -> Path:
    """A finished target phase folder with a best_model of constant parameters."""
    save_params(folder / "best_model", _params(value))
    settings = {"model": {"name": model, "tokenizer": ""}, "seed": seed, "phase": {"task": task, "lr": lr}}
    record = {"task": task, "best_step": 7, "dev": 50.0, "best_model": "best_model", "settings": settings}
    (folder / DONE).write_text(json.dumps(record))
    return folder


def test_runs_average_into_a_phase_folder_and_mismatches_are_refused(tmp_path, capsys):
    one = _fake_phase(tmp_path / "w0" / "target", "xnli", 1.0, seed=0)
    two = _fake_phase(tmp_path / "w1" / "target", "xnli", 3.0, seed=1)
    output = tmp_path / "averaged"
    assert average_module.main([f"--runs={tmp_path / 'w0'},{two}", f"--output={output}"]) == 0
    assert f"--config.target.evaluate_model={output}" in capsys.readouterr().out
    record = json.loads((output / DONE).read_text())
    assert record["task"] == "xnli" and [r["seed"] for r in record["averaged_runs"]] == [0, 1]
    assert record["settings"]["model"]["name"] == "m" and record["best_model"] == "best_model"
    from stilts_jax.train.checkpoints import load_params

    averaged = load_params(output / "best_model", _abstract(_params(0.0)))
    np.testing.assert_allclose(averaged["encoder"]["w"], np.full((2, 3), 2.0))
    np.testing.assert_allclose(averaged["head"]["w"], np.full((3,), -2.0))

    paws = _fake_phase(tmp_path / "p" / "target", "pawsx", 1.0)
    with pytest.raises(InputError, match=r"trained pawsx, .* trained xnli: only runs of one target task"):
        average_module.average_runs([str(one), str(paws)], str(tmp_path / "x"))
    other_model = _fake_phase(tmp_path / "o" / "target", "xnli", 1.0, model="other")
    with pytest.raises(InputError, match=r"another model .*name: 'm' -> 'other'"):
        average_module.average_runs([str(one), str(other_model)], str(tmp_path / "x"))
    other_lr = _fake_phase(tmp_path / "l" / "target", "xnli", 1.0, lr=2e-5)
    with pytest.raises(InputError, match=r"phase.lr: 1e-05 -> 2e-05.*--allow-different-settings"):
        average_module.average_runs([str(one), str(other_lr)], str(tmp_path / "x"))
    kept = average_module.average_runs([str(one), str(other_lr)], str(tmp_path / "x"), allow_different_settings=True)
    assert "phase.lr" in kept["setting_differences"][0]
    with pytest.raises(InputError, match=r"two or more"):
        average_module.average_runs([str(one)], str(tmp_path / "x"))
    with pytest.raises(InputError, match=r"neither a workdir"):
        average_module.average_runs([str(one), str(tmp_path / "missing")], str(tmp_path / "x"))


@pytest.mark.slow
def test_averaged_seeds_are_evaluated_as_a_target_model(xlmr_dir, tmp_path):
    root = xtreme_folder(tmp_path)
    runs = [tmp_path / f"seed{seed}" for seed in (0, 1)]
    for seed, workdir in enumerate(runs):
        assert main_module.main(_run_args(root, workdir, xlmr_dir, f"--config.seed={seed}")) == 0
    output = tmp_path / "averaged"
    assert average_module.main([f"--runs={runs[0]},{runs[1]}", f"--output={output}"]) == 0
    evaluated = tmp_path / "evaluated"
    assert main_module.main(_run_args(root, evaluated, xlmr_dir, f"--config.target.evaluate_model={output}")) == 0
    results = _results(evaluated)
    assert sorted(results["per_language"]) == ["ar", "hi"]
    assert "uniform average of the selected models of 2 runs" in results["protocol"]["target"]["selection"]
