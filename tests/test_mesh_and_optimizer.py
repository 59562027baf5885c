"""Mesh shapes, logical-to-mesh rules, the optimizer's decay mask and learning-rate schedule."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from stilts_jax.core import distributed
from stilts_jax.core.distributed import (
    DistributedError,
    fit_mesh_to_batch,
    logical_to_mesh_spec,
    make_mesh,
    resolve_mesh_shape,
)
from stilts_jax.train.optimizer import OptimizerConfig, learning_rate_schedule, make_optimizer, weight_decay_mask
from stilts_jax.train.state import ModelSpec, state_shardings
from tests.train_harness import tiny_model


def test_mesh_shapes_resolve_and_bad_ones_say_why():
    assert resolve_mesh_shape({"data": -1}, 8) == (8, 1, 1)
    assert resolve_mesh_shape({"data": 2, "fsdp": -1, "tensor": 2}, 8) == (2, 2, 2)
    with pytest.raises(DistributedError, match="needs 16 devices but 8 are available"):
        resolve_mesh_shape({"data": 4, "fsdp": 4}, 8)
    with pytest.raises(DistributedError, match="at most one mesh axis may be -1"):
        resolve_mesh_shape({"data": -1, "fsdp": -1}, 8)
    with pytest.raises(DistributedError, match="unknown mesh axes \\['model'\\]"):
        resolve_mesh_shape({"model": 2}, 8)
    assert make_mesh({"data": 2, "fsdp": 2, "tensor": 2}).shape == {"data": 2, "fsdp": 2, "tensor": 2}


def test_devices_a_small_batch_cannot_use_split_the_heads():
    large = (16, 4096)  # XLM-R large's heads and feed-forward width
    # The published intermediate batch of 4 on 8 devices: 4 split the batch, 2 the heads (docs/SCALING.md's table).
    shape, note = fit_mesh_to_batch({"data": -1, "fsdp": 1, "tensor": 1}, 8, 4, large)
    assert shape == {"data": 4, "fsdp": 1, "tensor": 2}
    assert note is not None and "4 rows" in note and "--config.mesh" in note
    assert fit_mesh_to_batch({"data": -1, "fsdp": 2, "tensor": 1}, 16, 4, large)[0] == {
        "data": 2,
        "fsdp": 2,
        "tensor": 4,
    }
    assert fit_mesh_to_batch({"data": -1}, 8, 6, large)[0] == {"data": 2, "fsdp": 1, "tensor": 4}
    # FSDP over the devices left over (the faster layout on TPU slices) shrinks the same way.
    assert fit_mesh_to_batch({"data": 1, "fsdp": -1}, 8, 4, large)[0] == {"data": 1, "fsdp": 4, "tensor": 2}
    # Nothing to change: the batch splits, the user chose the tensor axis or data's size, or no phase trains.
    for shape_in, rows in [({"data": -1}, 32), ({"data": -1, "tensor": 2}, 4), ({"data": 8}, 4), ({"data": -1}, None)]:
        assert fit_mesh_to_batch(shape_in, 8, rows, large) == (
            {**{"data": 1, "fsdp": 1, "tensor": 1}, **shape_in},
            None,
        )
    # The heads cannot be split that way (12 heads, 8 devices left over for a batch of 1): left for the batch check.
    assert fit_mesh_to_batch({"data": -1}, 8, 1, (12, 3072))[1] is None


def test_logical_rules_map_to_mesh_axes():
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    rules = distributed.DEFAULT_LOGICAL_RULES
    assert logical_to_mesh_spec(P("embed", "heads", "kv"), rules, mesh, (64, 4, 16)) == P("fsdp", "tensor", None)
    assert logical_to_mesh_spec(P("batch", None), rules, mesh) == P(("data", "fsdp"), None)
    # A dimension the mesh axis does not divide is replicated rather than padded.
    assert logical_to_mesh_spec(P("vocab", "embed"), rules, mesh, (4001, 64)) == P(None, "fsdp")
    # Size-1 mesh axes are dropped.
    assert logical_to_mesh_spec(P("embed", "mlp"), rules, make_mesh({"data": -1}), (64, 128)) == P(None, None)
    with pytest.raises(DistributedError, match="no sharding rule for logical axis 'widgets'"):
        logical_to_mesh_spec(P("widgets"), rules, mesh)


def test_optimizer_moments_are_sharded_like_their_parameters():
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    spec = ModelSpec(tiny_model(), mesh, distributed.DEFAULT_LOGICAL_RULES)
    tx, _ = make_optimizer(OptimizerConfig(), 10)
    shardings = state_shardings(spec, tx)
    mu = shardings.opt_state[1][0].mu
    assert mu["encoder"]["layers"][0]["attention"]["query"].spec == P("fsdp", "tensor", None)
    assert mu["encoder"]["layers"][0]["feed_forward"]["output"].spec == P("tensor", "fsdp")


def test_weight_decay_skips_biases_and_layer_norms():
    params = nnx.to_pure_dict(nnx.state(tiny_model(), nnx.Param))
    mask = weight_decay_mask(params)
    layer = mask["encoder"]["layers"][0]
    assert (
        layer["attention"]["query"] and layer["feed_forward"]["intermediate"] and mask["encoder"]["embeddings"]["word"]
    )
    assert not layer["attention"]["query_bias"] and not layer["feed_forward"]["output_bias"]
    assert not layer["attention_norm"]["scale"] and not layer["output_norm"]["bias"]
    assert not mask["encoder"]["embeddings"]["layer_norm"]["scale"] and not mask["head"]["dense_bias"]
    assert mask["head"]["dense"] and mask["head"]["output"]


def test_schedule_warms_up_linearly_then_decays_to_zero():
    schedule = learning_rate_schedule(1e-5, total_steps=100, warmup_fraction=0.1)
    values = np.array([float(schedule(s)) for s in range(101)])
    np.testing.assert_allclose(values[[0, 5, 10, 55, 100]], [0.0, 5e-6, 1e-5, 5e-6, 0.0], atol=1e-12)
    assert np.argmax(values) == 10


def test_decay_and_clipping_act_on_an_update():
    tx, _ = make_optimizer(
        OptimizerConfig(learning_rate=1.0, warmup_fraction=0.0, weight_decay=0.5, max_grad_norm=1.0), 2
    )
    params = {"dense": jax.numpy.ones((2, 2)), "dense_bias": jax.numpy.ones((2,))}
    zero_grads = jax.tree.map(jax.numpy.zeros_like, params)
    updates, _ = tx.update(zero_grads, tx.init(params), params)
    # With zero gradients only decoupled weight decay moves the matrix; the bias is masked off.
    np.testing.assert_allclose(np.asarray(updates["dense"]), -0.5 * np.ones((2, 2)), atol=1e-6)
    np.testing.assert_allclose(np.asarray(updates["dense_bias"]), np.zeros(2), atol=1e-6)
