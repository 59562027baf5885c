"""Resume never trusts a checkpoint no manifest vouches for, and damaged saved parameters are one error line."""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np
import pytest

from stilts_jax.core import distributed
from stilts_jax.models.heads import classification_loss
from stilts_jax.train.checkpoints import Checkpoints, DamagedParamsError, load_params, save_params
from stilts_jax.train.loop import train
from tests.train_harness import synthetic_features, tiny_model, trainer_config


def _train(workdir: Path, steps: int):
    # One device: one data file per array group, so the byte offsets the tests damage land in parameter values.
    mesh = distributed.make_mesh({"data": -1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
    return train(
        tiny_model(),
        classification_loss,
        synthetic_features(),
        trainer_config(steps),
        workdir=workdir,
        mesh=mesh,
        rules=distributed.DEFAULT_LOGICAL_RULES,
    )


def _largest_data_file(step_dir: Path) -> Path:
    return max((step_dir / "state").glob("ocdbt.process_*/d/*"), key=lambda p: p.stat().st_size)


def _crash_after_save(workdir: Path, step: int) -> Path:
    """What a SIGKILL right after the async save of `step` leaves: the checkpoint, but no manifest for it."""
    (workdir / "checkpoints_manifests" / f"{step}.json").unlink()
    return workdir / "checkpoints" / str(step)


def _write_nan_into_a_parameter(step_dir: Path) -> None:
    """Damage that still decodes: one stored parameter's values replaced by NaN (as flipped bytes of raw float32
    data read back), written through TensorStore so that the checkpoint stays readable."""
    import tensorstore as ts

    array = ts.open(
        {
            "driver": "zarr",
            "kvstore": {
                "driver": "ocdbt",
                "base": f"file://{step_dir / 'state'}/",
                "path": "params.encoder.layers.0.attention.output/",
            },
        }
    ).result()
    array[...] = np.full(array.shape, np.nan, np.float32)


@pytest.mark.slow  # two short trainings (compiling the train step dominates)
def test_resume_quarantines_a_newest_checkpoint_without_manifest_whose_arrays_are_not_finite(tmp_path, capfd):
    workdir = tmp_path / "run"
    _train(workdir, 4)  # checkpoints at steps 2 and 4
    _write_nan_into_a_parameter(_crash_after_save(workdir, 4))

    result = _train(workdir, 6)  # before: resumed from step 4 and stopped with "loss became nan", on every rerun
    assert result.resumed_from == 2
    assert [p.name.split("-")[0] for p in (workdir / "checkpoints_corrupt").iterdir()] == ["4"]
    output = capfd.readouterr().out
    assert "checkpoint step 4" in output and "NaN or inf" in output and "attention/output" in output
    leaves = jax.tree.leaves(jax.device_get(result.state.params))
    assert all(np.isfinite(x).all() for x in leaves)


@pytest.mark.slow
def test_a_missing_data_file_falls_back_with_one_message_and_no_event_loop_noise(tmp_path, capfd):
    workdir = tmp_path / "run"
    _train(workdir, 4)
    _largest_data_file(_crash_after_save(workdir, 4)).unlink()
    capfd.readouterr()
    result = _train(workdir, 4)
    assert result.resumed_from == 2
    output = capfd.readouterr()
    assert "is missing" in output.out
    assert "Event loop is closed" not in output.out + output.err


def test_a_finished_background_save_gets_its_manifest_before_the_next_save(tmp_path):
    from stilts_jax.train.optimizer import make_optimizer
    from stilts_jax.train.state import ModelSpec, init_train_state, state_shardings

    mesh = distributed.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
    spec = ModelSpec(tiny_model(), mesh, distributed.DEFAULT_LOGICAL_RULES)
    tx, _ = make_optimizer(trainer_config(2).optimizer, 2)
    state = init_train_state(spec, tx, 0, state_shardings(spec, tx))
    checkpoints = Checkpoints(tmp_path / "checkpoints", keep_best=0)
    checkpoints.save(2, state, {"step": 2})
    manifest = tmp_path / "checkpoints_manifests" / "2.json"
    deadline = time.monotonic() + 60
    while not manifest.exists() and time.monotonic() < deadline:  # what the training loop does at each log line
        checkpoints.record_finished()
        time.sleep(0.05)
    assert manifest.exists()
    checkpoints.close()


def test_a_damaged_best_model_is_an_error_naming_the_folder_and_the_rerun(tmp_path):
    params = {"dense": {"kernel": np.arange(4096, dtype=np.float32).reshape(64, 64), "bias": np.ones(64, np.float32)}}
    phase = tmp_path / "target"
    save_params(phase / "best_model", params)
    (phase / "phase_done.json").write_text("{}")
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), params)
    np.testing.assert_array_equal(
        load_params(phase / "best_model", abstract)["dense"]["kernel"], params["dense"]["kernel"]
    )

    data = _largest(phase / "best_model")
    data.write_bytes(data.read_bytes()[:100])  # truncated
    with pytest.raises(
        DamagedParamsError,
        match=r"best_model are damaged or incomplete .*delete .*target/phase_done"
        r"\.json and run the same command again",
    ):
        load_params(phase / "best_model", abstract)
    data.unlink()
    with pytest.raises(DamagedParamsError, match="missing"):
        load_params(phase / "best_model", abstract)
    for name in ("_METADATA", "manifest.ocdbt"):
        (phase / "best_model" / name).unlink()
    with pytest.raises(DamagedParamsError, match="best_model"):
        load_params(phase / "best_model", abstract)


def _largest(folder: Path) -> Path:
    return max(folder.glob("ocdbt.process_*/d/*"), key=lambda p: p.stat().st_size)
