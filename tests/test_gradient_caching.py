"""Gradient caching for the dual encoder: whole-batch in-batch negatives under gradient accumulation, 8 devices.

The reference is the plain in-batch loss of the whole batch differentiated in one piece by JAX's autodiff (the
default train step with one micro-batch, or jax.value_and_grad through every micro-batch's embedding). The model's
logit scale is learned (bert.py's `logit_scale`), so its gradient is compared too.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from stilts_jax.core.distributed import DEFAULT_LOGICAL_RULES, make_mesh
from stilts_jax.models.config import tiny_config
from stilts_jax.models.encoder import Encoder
from stilts_jax.tasks.dual_encoder import (
    DualEncoder,
    DualEncoderTask,
    embed_pairs,
    in_batch_nll,
    make_cached_in_batch_grads,
    make_in_batch_loss,
)
from stilts_jax.tasks.registry import get_task
from stilts_jax.train.feeding import BatchFeeder
from stilts_jax.train.loop import train
from stilts_jax.train.metrics_log import read_metrics
from stilts_jax.train.state import ModelSpec
from stilts_jax.train.step import accumulate_micro_batch_grads, micro_batch_key
from tests.train_harness import trainer_config

RULES = DEFAULT_LOGICAL_RULES
VOCAB, SEQ, BATCH, MICRO = 48, 8, 32, 4
SCALE = 20.0


def _model(dropout: float = 0.0) -> DualEncoder:
    config = tiny_config(
        VOCAB,
        hidden_size=16,
        num_attention_heads=2,
        intermediate_size=32,
        num_hidden_layers=1,
        max_position_embeddings=SEQ + 2,
        hidden_dropout_prob=dropout,
    )
    return DualEncoder(Encoder(config, rngs=nnx.Rngs(0)), "mean", scale=SCALE, learned_scale=True)


def _assert_scale_grad_close(actual, expected, rtol: float = 1e-4) -> None:
    """The learned scale's gradient on its own (the floor of `_assert_grads_close` is set by the largest gradient)."""
    a, e = float(actual["logit_scale"]), float(expected["logit_scale"])
    assert e != 0.0
    np.testing.assert_allclose(a, e, rtol=rtol)


def _features(n: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """Query/candidate pairs sharing a marker token; few distinct keys, so duplicates span micro-batches."""
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 12, n).astype(np.int32)

    def sequences() -> tuple[np.ndarray, np.ndarray]:
        ids = rng.integers(10, VOCAB, (n, SEQ)).astype(np.int32)
        ids[:, 0], ids[:, 1] = 0, 10 + keys
        mask = (np.arange(SEQ)[None, :] < rng.integers(3, SEQ + 1, n)[:, None]).astype(np.int32)
        return np.where(mask == 1, ids, 1).astype(np.int32), mask

    qi, qm = sequences()
    ci, cm = sequences()
    return {
        "query_input_ids": qi,
        "query_attention_mask": qm,
        "candidate_input_ids": ci,
        "candidate_attention_mask": cm,
        "candidate_key": keys,
    }


def _batches(mesh, features):
    """Step 0's global batch as [1, 32, ...] and as [4, 8, ...] (the same rows, micro-batch-major), data-sharded."""
    one = BatchFeeder(features, BATCH, 1, 0, mesh, RULES).batch(0)
    four = BatchFeeder(features, BATCH, MICRO, 0, mesh, RULES).batch(0)
    np.testing.assert_array_equal(
        np.asarray(four["candidate_key"]).reshape(-1), np.asarray(one["candidate_key"]).reshape(-1)
    )
    return one, four


def _leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x, np.float64) for x in jax.tree.leaves(jax.device_get(tree))]


def _assert_grads_close(actual, expected, rtol: float = 1e-4) -> None:
    """Leaf by leaf, with an absolute floor at rtol x the largest gradient: some gradients are exactly zero in
    exact arithmetic (attention key biases) and only summation-order noise in float32."""
    floor = rtol * max(np.abs(e).max() for e in _leaves(expected))
    for a, e in zip(_leaves(actual), _leaves(expected), strict=True):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=floor)


def _max_difference(a, b) -> float:
    """The largest gradient difference as a fraction of the largest gradient of `b`."""
    return max(np.abs(x - y).max() for x, y in zip(_leaves(a), _leaves(b), strict=True)) / max(
        np.abs(y).max() for y in _leaves(b)
    )


@pytest.fixture(scope="module")
def mesh():
    return make_mesh({"data": 8, "fsdp": 1, "tensor": 1})


def test_cached_grads_over_4_micro_batches_equal_the_whole_batch_in_one_piece(mesh):
    spec = ModelSpec(_model(), mesh, RULES)
    params = spec.initial_params()
    one, four = _batches(mesh, _features())
    assert len(four["query_input_ids"].sharding.device_set) == 8
    # Some candidate keys recur in other micro-batches: the whole-batch duplicate masking is exercised.
    keys = np.asarray(four["candidate_key"])
    assert any(set(keys[i]) & set(np.delete(keys, i, axis=0).ravel()) for i in range(MICRO))

    def run(grads_fn, batch):
        return jax.jit(lambda p, b: grads_fn(spec, p, b, None))(params, batch)

    plain = accumulate_micro_batch_grads(make_in_batch_loss())
    grads, loss, weight = run(make_cached_in_batch_grads(), four)
    ref_grads, ref_loss, ref_weight = run(plain, one)
    assert float(weight) == float(ref_weight) == BATCH
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-5)
    _assert_grads_close(grads, ref_grads)
    _assert_scale_grad_close(grads, ref_grads)
    # Per-micro-batch negatives (the default accumulation) is a different objective: fewer negatives, lower loss.
    micro_grads, micro_loss, _ = run(plain, four)
    assert float(micro_loss) < float(ref_loss) - 0.05 * BATCH
    assert _max_difference(micro_grads, ref_grads) > 0.05


@pytest.mark.slow  # ~15-30 s of compiles on 2 cores; the one-piece equality test stays in the fast suite
def test_with_dropout_the_backward_pass_recomputes_each_micro_batch_with_its_own_key(mesh):
    spec = ModelSpec(_model(dropout=0.3), mesh, RULES)
    params = spec.initial_params()
    _, four = _batches(mesh, _features(seed=1))
    step_key = jax.random.key(7)

    @jax.jit
    def direct(p, micro_keys):
        """Plain autodiff of the whole-batch loss, micro-batch i embedded with micro_keys[i] (activations kept)."""

        def flat(x):
            return x.reshape(BATCH, *x.shape[2:])

        def loss(p):
            q, c = jax.lax.map(lambda args: embed_pairs(spec.merge(p), *args), (four, micro_keys))
            return jnp.sum(in_batch_nll(flat(q), flat(c), flat(four["candidate_key"]), spec.merge(p).scale()))

        return jax.value_and_grad(loss)(p)

    grads, loss, _ = jax.jit(lambda p, b, k: make_cached_in_batch_grads()(spec, p, b, k))(params, four, step_key)
    micro_keys = jnp.stack([micro_batch_key(step_key, i) for i in range(MICRO)])
    ref_loss, ref_grads = direct(params, micro_keys)
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-5)
    _assert_grads_close(grads, ref_grads)
    _assert_scale_grad_close(grads, ref_grads)
    # Dropout changes the gradients: the micro-batches' keys in another order give other ones, so the agreement
    # above holds only because both passes used each micro-batch's own key.
    _, shuffled = direct(params, jnp.roll(micro_keys, 1, axis=0))
    assert _max_difference(shuffled, ref_grads) > 0.01


@pytest.mark.slow  # ~15-30 s of compiles on 2 cores; the one-piece equality test stays in the fast suite
def test_train_with_cached_grads_and_4_micro_batches_follows_1_micro_batch(mesh, tmp_path):
    features = _features()
    runs = {}
    for name, micro_batches, grads_fn in (("one", 1, None), ("cached", MICRO, make_cached_in_batch_grads())):
        config = trainer_config(
            2,
            global_batch_size=BATCH,
            micro_batches=micro_batches,
            dropout=False,
            async_checkpointing=False,
            checkpoint_every=100,
        )
        result = train(
            _model(),
            make_in_batch_loss(),
            features,
            config,
            workdir=tmp_path / name,
            mesh=mesh,
            rules=RULES,
            grads_fn=grads_fn,
        )
        rows = [r for r in read_metrics(tmp_path / name) if "grad_norm" in r]
        runs[name] = ([(r["loss"], r["grad_norm"]) for r in rows], _leaves(result.state.params))
    (metrics, params), (cached_metrics, cached_params) = runs["one"], runs["cached"]
    assert len(metrics) == 2 and metrics[1][0] != metrics[0][0]
    np.testing.assert_allclose(cached_metrics, metrics, rtol=1e-5)
    for cached, one in zip(cached_params, params, strict=True):
        # Adam divides by sqrt(v): a gradient that is summation noise (key biases) moves its parameter by noise.
        np.testing.assert_allclose(cached, one, atol=1e-5)


def test_full_batch_negatives_config_picks_gradient_caching_only_when_micro_batches_split_the_batch():
    from configs.base import get_config
    from stilts_jax.pipeline.dual_encoder import train_grads_fn

    task = DualEncoderTask(get_task("lareqa"), tokenizer=None, max_length=64)
    dual_encoder = get_config("squad", "lareqa").dual_encoder
    dual_encoder.full_batch_negatives = True  # its default depends on the preset (configs/base.py)
    assert train_grads_fn(task, dual_encoder, 4) is task.full_batch_grads
    assert train_grads_fn(task, dual_encoder, 1) is None  # one micro-batch: the plain step is the same update
    dual_encoder.full_batch_negatives = False
    assert train_grads_fn(task, dual_encoder, 4) is None
