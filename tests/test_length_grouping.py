"""Length-grouped training batches: each example once per epoch, batches a pure function of (seed, step), only
trailing padding cut (the loss of a batch is unchanged), identical parameters on resume, and the config key."""

from __future__ import annotations

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from stilts_jax.core import distributed
from stilts_jax.core.errors import StiltsError
from stilts_jax.models.config import tiny_config
from stilts_jax.models.encoder import Encoder
from stilts_jax.models.heads import (
    ClassificationHead,
    SpanHead,
    TaggingHead,
    TaskModel,
    classification_loss,
    span_loss,
    tagging_loss,
)
from stilts_jax.train.feeding import BatchFeeder, DataPositionError, padded_widths, row_lengths
from stilts_jax.train.loop import train
from stilts_jax.train.metrics_log import read_metrics
from tests.train_harness import trainer_config

RULES = distributed.DEFAULT_LOGICAL_RULES
SEQ, VOCAB, CLASSES = 64, 64, 3


def _features(num_examples: int = 128, seed: int = 0) -> dict[str, np.ndarray]:
    """Mostly short rows and a few long ones (as in NLI data), labelled by the most frequent marker token."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.geometric(1 / 14, num_examples) + 3, 4, SEQ)
    ids = rng.integers(10, VOCAB, (num_examples, SEQ)).astype(np.int32)
    labels = rng.integers(0, CLASSES, num_examples).astype(np.int32)
    for i, (length, label) in enumerate(zip(lengths, labels)):
        ids[i, 1 : 1 + length // 2] = 4 + label
    ids[:, 0] = 0
    mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype(np.int32)
    ids[np.arange(num_examples), lengths - 1] = 2
    ids[mask == 0] = 1
    tags = np.where(mask > 0, ids % 5, -100).astype(np.int32)
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": labels,
        "tags": tags,
        "start_positions": (lengths // 3).astype(np.int32),
        "end_positions": (lengths // 2).astype(np.int32),
    }


def _mesh(shape=(-1, 1, 1), devices=None):
    return distributed.make_mesh(dict(zip(distributed.MESH_AXES, shape)), devices=devices)


def _encoder(seed: int = 0) -> tuple[Encoder, nnx.Rngs]:
    config = tiny_config(
        VOCAB,
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=64,
        num_hidden_layers=2,
        max_position_embeddings=SEQ + 2,
    )
    rngs = nnx.Rngs(seed)
    return Encoder(config, rngs=rngs), rngs


def _classifier(seed: int = 0) -> TaskModel:
    encoder, rngs = _encoder(seed)
    return TaskModel(encoder, ClassificationHead(32, CLASSES, rngs=rngs))


def test_padded_widths_are_powers_of_two_up_to_max_length():
    assert padded_widths(256) == [16, 32, 64, 128, 256]
    assert padded_widths(384) == [16, 32, 64, 128, 256, 384]
    assert padded_widths(12) == [12]
    choices = np.zeros((2, 3, 8), np.int32)
    choices[0, 1, :5] = 1
    choices[1, :, :2] = 1
    assert row_lengths(choices).tolist() == [5, 2]  # multiple choice: the longest choice


def test_an_epoch_uses_the_ungrouped_examples_once_in_batches_cut_to_fit():
    features = _features()
    plain = BatchFeeder(features, 16, 1, seed=3, mesh=_mesh(), rules=RULES)
    grouped = BatchFeeder(features, 16, 1, seed=3, mesh=_mesh(), rules=RULES, length_grouping=True)
    lengths = row_lengths(features["attention_mask"])
    for epoch in range(2):
        steps = range(epoch * plain.steps_per_epoch, (epoch + 1) * plain.steps_per_epoch)
        seen = np.concatenate([grouped.example_indices(s) for s in steps])
        assert len(set(seen.tolist())) == len(seen)  # each example at most once per epoch
        assert sorted(seen.tolist()) == sorted(np.concatenate([plain.example_indices(s) for s in steps]).tolist())
        for step in steps:
            width = grouped.batch_width(step)
            batch = grouped.global_batch(step)
            assert width in padded_widths(SEQ) and width >= lengths[grouped.example_indices(step)].max()
            assert batch["input_ids"].shape == batch["tags"].shape == (16, width)
            assert batch["labels"].shape == (16,)
            np.testing.assert_array_equal(
                batch["input_ids"], features["input_ids"][grouped.example_indices(step), :width]
            )
    computed = sum(grouped.batch_width(s) * 16 for s in range(plain.steps_per_epoch))
    real = sum(lengths[grouped.example_indices(s)].sum() for s in range(plain.steps_per_epoch))
    assert real / computed > 1.5 * real / (plain.steps_per_epoch * 16 * SEQ)  # far fewer padding tokens computed


def test_the_batch_of_a_step_depends_only_on_the_seed_and_the_step():
    features = _features()
    first = BatchFeeder(features, 16, 2, seed=5, mesh=_mesh(), rules=RULES, length_grouping=True)
    sequential = [first.global_batch(s) for s in range(20)]
    for step in (17, 3, 11):  # a fresh feeder jumping straight to a step, as a resumed run does
        fresh = BatchFeeder(features, 16, 2, seed=5, mesh=_mesh(), rules=RULES, length_grouping=True).global_batch(step)
        for name, array in fresh.items():
            np.testing.assert_array_equal(array, sequential[step][name])
    other_seed = BatchFeeder(features, 16, 2, seed=6, mesh=_mesh(), rules=RULES, length_grouping=True)
    assert any(not np.array_equal(other_seed.example_indices(s), first.example_indices(s)) for s in range(8))
    # Every micro-batch of a step has the step's width: the step compiles one shape per width.
    assert first.batch(4)["input_ids"].shape == (2, 8, first.batch_width(4))


@pytest.mark.parametrize(
    "head, loss_fn, labels",
    [
        ("classification", classification_loss, "labels"),
        ("tagging", tagging_loss, "tags"),
        ("span", span_loss, None),
    ],
)
def test_cutting_trailing_padding_leaves_the_loss_unchanged(head, loss_fn, labels):
    features = _features(32)
    encoder, rngs = _encoder()
    heads = {
        "classification": ClassificationHead(32, CLASSES, rngs=rngs),
        "tagging": TaggingHead(32, 5, rngs=rngs),
        "span": SpanHead(32, rngs=rngs),
    }
    model = TaskModel(encoder, heads[head])
    feeder = BatchFeeder(features, 16, 1, seed=0, mesh=_mesh(), rules=RULES, length_grouping=True)
    indices = feeder.example_indices(0)
    cut = feeder.global_batch(0)
    assert feeder.batch_width(0) < SEQ
    full = {name: array[indices] for name, array in features.items()}
    if labels is not None:
        full["labels"], cut["labels"] = full[labels], cut[labels]
    names = ["input_ids", "attention_mask", *(["labels"] if labels else ["start_positions", "end_positions"])]
    loss_full, count_full = loss_fn(model, {n: jnp.asarray(full[n]) for n in names}, None)
    loss_cut, count_cut = loss_fn(model, {n: jnp.asarray(cut[n]) for n in names}, None)
    assert float(count_full) == float(count_cut) > 0
    np.testing.assert_allclose(float(loss_cut), float(loss_full), rtol=2e-5)


def _flat(params):
    return {
        jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(jax.device_get(params))
    }


def _train(workdir, steps, **overrides):
    features = {k: v for k, v in _features().items() if k in ("input_ids", "attention_mask", "labels")}
    values = dict(length_grouping=True, micro_batches=2, async_checkpointing=False, keep_checkpoints=3)
    return train(
        _classifier(),
        classification_loss,
        features,
        trainer_config(steps, **{**values, **overrides}),
        workdir=workdir,
        mesh=_mesh(devices=jax.devices()[:2]),
        rules=RULES,
    )


@pytest.mark.slow  # three short training runs compiling one step per width
def test_a_resumed_grouped_run_ends_with_the_parameters_of_an_uninterrupted_one(tmp_path):
    straight = _train(tmp_path / "straight", 4)
    assert straight.checkpoints.all_steps() == [2, 4]
    widths = [
        BatchFeeder(_features(), 16, 2, seed=0, mesh=_mesh(), rules=RULES, length_grouping=True).batch_width(s)
        for s in range(4)
    ]
    assert len(set(widths)) > 1  # the run really fed batches of several widths
    # A run stopped after step 2's checkpoint: the same workdir without step 4.
    shutil.copytree(tmp_path / "straight", tmp_path / "resumed")
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "4")
    resumed = _train(tmp_path / "resumed", 4)
    assert resumed.resumed_from == 2
    a, b = _flat(straight.state.params), _flat(resumed.state.params)
    for key in a:
        np.testing.assert_array_equal(b[key], a[key], err_msg=key)
    assert [r["loss"] for r in read_metrics(tmp_path / "resumed")] == [
        r["loss"] for r in read_metrics(tmp_path / "straight")
    ]
    # A checkpoint of grouped batches does not resume with grouping turned off (other batches).
    with pytest.raises(DataPositionError, match="length_grouping"):
        _train(tmp_path / "resumed", 6, length_grouping=False)


def test_left_padded_features_are_refused_with_the_key_to_turn_grouping_off():
    features = _features(32)
    features["attention_mask"] = features["attention_mask"][:, ::-1].copy()
    with pytest.raises(StiltsError, match="length_grouping=false"):
        BatchFeeder(features, 16, 1, seed=0, mesh=_mesh(), rules=RULES, length_grouping=True)


def test_the_phase_config_key_reaches_the_trainer_and_the_fingerprint():
    from stilts_jax.config.loader import parse_config_args
    from stilts_jax.pipeline.common import trainer_config as phase_trainer_config
    from stilts_jax.pipeline.reuse import plan

    config, _ = parse_config_args(["--config=configs/demo.py", "--config.target.train.length_grouping=true"])
    assert phase_trainer_config(config.target, 0).length_grouping
    assert not phase_trainer_config(config.intermediate, 0).length_grouping
    default, _ = parse_config_args(["--config=configs/demo.py"])
    grouped, ungrouped = plan(config)[-1], plan(default)[-1]
    assert grouped.fingerprint != ungrouped.fingerprint  # other batches, another result
    assert "length_grouping" not in ungrouped.settings["phase"]["train"]  # runs started before the key still resume
