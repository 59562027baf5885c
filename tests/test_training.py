"""The sharded training core on 8 fake CPU devices: meshes, accumulation, checkpoints, hand-off, divergence."""

from __future__ import annotations

import dataclasses
import glob
import os

import jax
import numpy as np
import pytest
from flax import nnx

from stilts_jax.core import distributed
from stilts_jax.core.errors import StiltsError, WeightsError
from stilts_jax.models.heads import classification_loss
from stilts_jax.train.checkpoints import CheckpointMismatchError, save_params, transplant_encoder
from stilts_jax.train.feeding import BatchFeeder, DataPositionError
from stilts_jax.train.loop import TrainingDivergedError, TrainingPreempted, train
from stilts_jax.train.metrics_log import read_metrics
from stilts_jax.train.optimizer import OptimizerConfig
from tests.train_harness import synthetic_features, tiny_model, trainer_config

RULES = distributed.DEFAULT_LOGICAL_RULES


def _run(
    workdir,
    mesh_shape=(-1, 1, 1),
    steps=4,
    devices=None,
    features=None,
    loss_fn=classification_loss,
    model=None,
    **overrides,
):
    mesh = distributed.make_mesh(dict(zip(distributed.MESH_AXES, mesh_shape)), devices=devices)
    return train(
        model or tiny_model(),
        loss_fn,
        features or synthetic_features(),
        trainer_config(steps, **overrides),
        workdir=workdir,
        mesh=mesh,
        rules=RULES,
    )


def _flat(params):
    return {
        jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(jax.device_get(params))
    }


@pytest.mark.slow
def test_every_mesh_follows_the_single_device_trajectory(tmp_path):
    reference = _run(tmp_path / "one", devices=jax.devices()[:1], async_checkpointing=False)
    ref_losses = [r["loss"] for r in read_metrics(tmp_path / "one")]
    ref_params = _flat(reference.state.params)
    assert len(ref_losses) == 4
    for shape in [(8, 1, 1), (1, 8, 1), (2, 2, 2), (2, 1, 4)]:
        name = "x".join(map(str, shape))
        result = _run(tmp_path / name, shape)
        # The parameters really are sharded the way the mesh says.
        query = result.state.params["encoder"]["layers"][0]["attention"]["query"]
        assert query.sharding.mesh.devices.shape == shape
        losses = [r["loss"] for r in read_metrics(tmp_path / name)]
        np.testing.assert_allclose(losses, ref_losses, rtol=2e-5, err_msg=name)
        for key, value in _flat(result.state.params).items():
            np.testing.assert_allclose(value, ref_params[key], atol=2e-5, err_msg=f"{name} {key}")


def test_gradient_accumulation_equals_one_large_batch(tmp_path):
    one = _run(tmp_path / "one", steps=3, dropout=False, global_batch_size=32, micro_batches=1)
    four = _run(tmp_path / "four", steps=3, dropout=False, global_batch_size=32, micro_batches=4)
    a, b = _flat(one.state.params), _flat(four.state.params)
    for key in a:
        np.testing.assert_allclose(b[key], a[key], atol=1e-5, err_msg=key)
    np.testing.assert_allclose(
        [r["loss"] for r in read_metrics(tmp_path / "four")],
        [r["loss"] for r in read_metrics(tmp_path / "one")],
        rtol=1e-5,
    )


def test_training_learns_and_resumes_where_it_stopped(tmp_path):
    first = _run(tmp_path, steps=4)
    assert first.resumed_from is None and first.checkpoints.all_steps() == [2, 4]
    again = _run(tmp_path, steps=4)
    assert again.resumed_from == 4
    for key, value in _flat(first.state.params).items():
        np.testing.assert_array_equal(_flat(again.state.params)[key], value)
    # Resuming with a longer schedule is allowed: the data order depends only on the seed and the step.
    longer = _run(
        tmp_path, steps=40, checkpoint_every=20, optimizer=OptimizerConfig(learning_rate=1e-2, warmup_fraction=0.1)
    )
    assert longer.resumed_from == 4
    losses = [r["loss"] for r in read_metrics(tmp_path)]
    assert [r["step"] for r in read_metrics(tmp_path)] == list(range(1, 41))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])  # the synthetic task is learned


def _damage(path, how):
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if how == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0x01
    with open(path, "wb") as f:
        f.write(bytes(data))


@pytest.mark.parametrize("how", ["truncate", "flip-one-bit"])
def test_damaged_latest_checkpoint_is_reported_and_the_previous_one_used(tmp_path, how, capsys):
    _run(tmp_path, steps=4)
    files = [
        f
        for f in glob.glob(str(tmp_path / "checkpoints" / "4" / "state" / "**" / "*"), recursive=True)
        if os.path.isfile(f)
    ]
    _damage(max(files, key=os.path.getsize), how)
    resumed = _run(tmp_path, steps=6)
    assert resumed.resumed_from == 2
    assert "checkpoint step 4" in capsys.readouterr().out
    assert len(list((tmp_path / "checkpoints_corrupt").iterdir())) == 1
    assert resumed.checkpoints.all_steps() == [4, 6]


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    features = synthetic_features()
    feeder = BatchFeeder(features, 16, 1, 0, distributed.make_mesh({"data": -1}), RULES)
    poisoned = int(feeder.example_indices(4)[0])  # in the batch of the fifth step
    features["poison"] = np.ones(len(features["labels"]), np.float32)
    features["poison"][poisoned] = np.nan

    def loss_fn(model, batch, rng):
        loss, weight = classification_loss(model, batch, rng)
        return loss * jax.numpy.prod(batch["poison"]), weight

    with pytest.raises(TrainingDivergedError, match=r"loss became nan .* at step 5.*Last good checkpoint: 4"):
        _run(tmp_path, steps=8, features=features, loss_fn=loss_fn)
    good = _run(tmp_path, steps=4)  # the kept checkpoint is whole and finite
    assert good.resumed_from == 4
    assert all(np.isfinite(v).all() for v in _flat(good.state.params).values())


def test_batches_that_do_not_split_over_the_mesh_are_refused(tmp_path):
    with pytest.raises(StiltsError, match="micro-batch size 4 .* does not split over the 8 batch shards"):
        _run(tmp_path, global_batch_size=16, micro_batches=4)


def test_resuming_on_other_data_is_refused(tmp_path):
    _run(tmp_path, steps=2)
    with pytest.raises(DataPositionError, match="num_examples: checkpoint 96, now 80"):
        _run(tmp_path, steps=4, features={k: v[:80] for k, v in synthetic_features().items()})


def test_resuming_with_another_model_is_refused_and_the_checkpoint_kept(tmp_path):
    _run(tmp_path, steps=2)
    saved = sorted(os.listdir(tmp_path / "checkpoints"))
    with pytest.raises(
        CheckpointMismatchError,
        match=r"different model or task set.*wrong shape params/head/output: saved \(32, 3\), now \(32, 5\)",
    ):
        _run(tmp_path, steps=4, model=tiny_model(num_classes=5))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == saved  # nothing quarantined, nothing overwritten
    assert not glob.glob(str(tmp_path / "**" / "*corrupt*"), recursive=True)


def test_handoff_carries_the_encoder_and_leaves_the_new_head_fresh(tmp_path):
    intermediate = _run(tmp_path / "intermediate", steps=2)
    saved = jax.device_get(intermediate.state.params["encoder"])
    save_params(tmp_path / "handoff" / "encoder", saved)

    target = tiny_model(seed=7, num_classes=2)
    fresh_head = _flat(nnx.to_pure_dict(nnx.state(target.head)))
    transplant_encoder(target, tmp_path / "handoff" / "encoder")
    two_class = {k: (v % 2 if k == "labels" else v) for k, v in synthetic_features().items()}
    result = _run(
        tmp_path / "target",
        steps=1,
        model=target,
        features=two_class,
        optimizer=dataclasses.replace(trainer_config(1).optimizer, learning_rate=0.0),
    )
    start = result.spec.initial_params()
    for key, value in _flat(saved).items():
        np.testing.assert_array_equal(_flat(start["encoder"])[key], value)
    for key, value in fresh_head.items():
        np.testing.assert_array_equal(_flat(start["head"])[key], value)
    assert start["head"]["output"].shape == (32, 2)

    shallow = tiny_model(num_layers=1)
    with pytest.raises(WeightsError, match=r"do not fit the new model: missing \[\], unexpected \['layers/1/"):
        transplant_encoder(shallow, tmp_path / "handoff" / "encoder")
    with pytest.raises(WeightsError, match="run the intermediate phase first"):
        transplant_encoder(shallow, tmp_path / "nowhere")


def test_keep_best_and_keep_last_checkpoints_and_logs(tmp_path):
    scores = iter([0.2, 0.9, 0.4, 0.3])

    def evaluate(params):
        assert set(params) == {"encoder", "head"}
        return {"dev_score": next(scores)}

    mesh = distributed.make_mesh({"data": -1})
    result = train(
        tiny_model(),
        classification_loss,
        synthetic_features(),
        trainer_config(8, eval_every=2, keep_checkpoints=1, checkpoint_every=100),
        workdir=tmp_path,
        mesh=mesh,
        rules=RULES,
        evaluate=evaluate,
    )
    assert result.best_step == 4
    assert not np.array_equal(
        _flat(result.best_params)["['head']['output']"], _flat(result.state.params)["['head']['output']"]
    )
    assert result.checkpoints.all_steps() == [4, 8]  # the best and the latest
    dev = read_metrics(tmp_path, "dev")
    assert [(r["step"], r["dev_score"]) for r in dev] == [(2, 0.2), (4, 0.9), (6, 0.4), (8, 0.3)]
    train_rows = read_metrics(tmp_path, "train")
    assert {"loss", "grad_norm", "learning_rate", "examples", "examples_per_second"} <= set(train_rows[0])
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_sigterm_saves_a_checkpoint_and_stops(tmp_path):
    import signal as signal_module

    def loss_fn(model, batch, rng):
        return classification_loss(model, batch, rng)

    calls = {"n": 0}
    original = BatchFeeder.batch

    def batch_then_signal(self, step):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal_module.SIGTERM)
        return original(self, step)

    BatchFeeder.batch = batch_then_signal
    try:
        with pytest.raises(TrainingPreempted, match="after step 3; checkpoint saved"):
            _run(tmp_path, steps=8, loss_fn=loss_fn, checkpoint_every=100)
    finally:
        BatchFeeder.batch = original
    assert _run(tmp_path, steps=8, checkpoint_every=100).resumed_from == 3


def test_without_a_terminal_training_prints_plain_progress_lines(tmp_path, capsys):
    from stilts_jax.train.loop import progress_line

    _run(tmp_path / "run", steps=4, log_every=2, progress_bar=True)  # pytest's stderr is no terminal
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if line.startswith("[train run]")]
    assert [line.split()[3] for line in lines] == ["2/4", "4/4"]
    assert "loss " in lines[0] and "examples/s" in lines[0] and "ETA" in lines[0]
    assert "\r" not in captured.err and "\x1b[" not in captured.err  # no progress bar in a log file
    line = progress_line("target", 150, 300, {"loss": 0.5, "learning_rate": 1e-5}, 12.5, (100, 0.0), 50.0)
    assert line == "[train target] step 150/300 (50%)  loss 0.5000  lr 1.00e-05  12.5 examples/s  ETA 2m30s"
