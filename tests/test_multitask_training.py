"""Multi-task training through the real training core: one task per step, exact resume, heads left alone."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from stilts_jax.core import distributed
from stilts_jax.core.errors import StiltsError
from stilts_jax.models.config import tiny_config
from stilts_jax.models.encoder import Encoder
from stilts_jax.models.heads import ClassificationHead, classification_loss
from stilts_jax.train.feeding import DataPositionError
from stilts_jax.train.metrics_log import read_metrics
from stilts_jax.train.multitask import MultiTaskData, MultiTaskModel, SamplingConfig, TaskData, train_multitask
from stilts_jax.train.optimizer import OptimizerConfig
from tests.train_harness import SEQ, VOCAB, synthetic_features, trainer_config

RULES = distributed.DEFAULT_LOGICAL_RULES


def multitask_model(seed: int = 0) -> MultiTaskModel:
    config = tiny_config(
        VOCAB,
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=64,
        num_hidden_layers=2,
        max_position_embeddings=SEQ + 2,
    )
    rngs = nnx.Rngs(seed)
    return MultiTaskModel(
        Encoder(config, rngs=rngs),
        {"three": ClassificationHead(32, 3, rngs=rngs), "two": ClassificationHead(32, 2, rngs=rngs)},
    )


def two_tasks() -> list[TaskData]:
    """Two classification tasks of different sizes and shapes (16 and 12 tokens, 3 and 2 classes)."""
    second = synthetic_features(48, seed=1)
    second = {
        "input_ids": second["input_ids"][:, :12],
        "attention_mask": second["attention_mask"][:, :12],
        "labels": second["labels"] % 2,
    }
    return [
        TaskData("three", classification_loss, synthetic_features(96)),
        TaskData("two", classification_loss, second),
    ]


def _flat(params):
    return {
        jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(jax.device_get(params))
    }


def _head_bias_score(params):
    return {"dev_score": float(np.sum(np.asarray(params["heads"]["three"]["output_bias"])))}


def _run(workdir, steps, evaluate=None, **overrides):
    mesh = distributed.make_mesh({"data": -1})  # 8 fake devices: multi-task steps and restores on a sharded mesh
    return train_multitask(
        multitask_model(),
        two_tasks(),
        trainer_config(steps, **overrides),
        workdir=workdir,
        mesh=mesh,
        rules=RULES,
        evaluate=evaluate,
    )


@pytest.mark.slow
def test_crashed_run_resumes_to_the_uninterrupted_result(tmp_path):
    reference = _run(tmp_path / "whole", 8, evaluate=_head_bias_score, eval_every=2, checkpoint_every=100)
    rows = read_metrics(tmp_path / "whole")
    assert [r["step"] for r in rows] == list(range(1, 9))
    # Every row names the task its step trained; both tasks were trained.
    trained = {key.split("/")[0] for r in rows for key in r if key.endswith("/loss")}
    assert trained == {"three", "two"}

    calls = {"n": 0}

    def crash_at_third_evaluation(params):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash at step 6")
        return _head_bias_score(params)

    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(tmp_path / "crashed", 8, evaluate=crash_at_third_evaluation, eval_every=2, checkpoint_every=100)
    resumed = _run(tmp_path / "crashed", 8, evaluate=_head_bias_score, eval_every=2, checkpoint_every=100)
    assert resumed.resumed_from == 4
    for key, value in _flat(reference.state.params).items():
        np.testing.assert_array_equal(_flat(resumed.state.params)[key], value, err_msg=key)
    np.testing.assert_array_equal([r["loss"] for r in read_metrics(tmp_path / "crashed")], [r["loss"] for r in rows])
    assert resumed.best_step == reference.best_step
    # A rerun with other sampling settings would not see the same batches: refused before any step.
    with pytest.raises(DataPositionError, match="another task schedule"):
        train_multitask(
            multitask_model(),
            two_tasks(),
            trainer_config(8),
            workdir=tmp_path / "crashed",
            mesh=distributed.make_mesh({"data": -1}),
            rules=RULES,
            sampling=SamplingConfig("temperature", 3.0),
        )


def test_a_step_changes_the_encoder_and_its_own_head_only(tmp_path):
    model = multitask_model()
    before = _flat(nnx.to_pure_dict(nnx.state(model)))
    config = trainer_config(1, optimizer=OptimizerConfig(learning_rate=1e-2, warmup_fraction=0.0))
    mesh = distributed.make_mesh({"data": -1}, devices=jax.devices()[:1])
    data = MultiTaskData(two_tasks(), config, mesh, RULES)
    first, other = data.step_name(0), ({"three", "two"} - {data.step_name(0)}).pop()
    result = train_multitask(model, two_tasks(), config, workdir=tmp_path, mesh=mesh, rules=RULES)
    after = _flat(result.state.params)
    for key, value in before.items():
        changed = not np.array_equal(after[key], value)
        if f"['heads']['{other}']" in key:
            assert not changed, f"{key} of the task that did not train moved"
        elif key.endswith("['output_bias']") and f"['heads']['{first}']" in key:
            assert changed, key
    assert not np.array_equal(after["['encoder']['embeddings']['word']"], before["['encoder']['embeddings']['word']"])
    # The other head's Adam moments were not touched either.
    moments = {
        jax.tree_util.keystr(p): np.asarray(x)
        for p, x in jax.tree_util.tree_leaves_with_path(jax.device_get(result.state.opt_state))
    }
    other_moments = [v for k, v in moments.items() if f"['heads']['{other}']" in k]
    assert other_moments and all(not v.any() for v in other_moments)


def test_schedule_follows_the_seed_and_the_sampling_settings(tmp_path):
    mesh = distributed.make_mesh({"data": -1}, devices=jax.devices()[:1])
    config = trainer_config(4)
    names = [MultiTaskData(two_tasks(), config, mesh, RULES).step_name(s) for s in range(64)]
    assert names == [MultiTaskData(two_tasks(), config, mesh, RULES).step_name(s) for s in range(64)]
    other_seed = trainer_config(4, seed=1)
    assert names != [MultiTaskData(two_tasks(), other_seed, mesh, RULES).step_name(s) for s in range(64)]
    probabilities = MultiTaskData(two_tasks(), config, mesh, RULES).probabilities
    assert probabilities == pytest.approx({"three": 96 / 144, "two": 48 / 144})
    temperature = MultiTaskData(two_tasks(), config, mesh, RULES, SamplingConfig("temperature", 2.0)).probabilities
    assert temperature["two"] == pytest.approx(48**0.5 / (96**0.5 + 48**0.5))

    with pytest.raises(StiltsError, match="heads .* and the tasks .* differ"):
        train_multitask(multitask_model(), two_tasks()[:1], config, workdir=tmp_path / "x", mesh=mesh, rules=RULES)
