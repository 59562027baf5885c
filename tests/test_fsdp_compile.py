"""FSDP compiles to the FSDP pattern: weights gathered, gradients reduce-scattered, activations never re-laid out.

The train step of a small encoder is compiled by the real TPU compiler (libtpu) for a v5e:2x2 slice, on this host.
"""

from __future__ import annotations

import math
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from stilts_jax.core.distributed import (
    ACTIVATION_RULES,
    DEFAULT_LOGICAL_RULES,
    batch_sharding,
    logical_constraints,
    make_mesh,
    with_logical_constraint,
)
from stilts_jax.models.config import EncoderConfig
from stilts_jax.models.encoder import HIDDEN_AXES, Encoder
from stilts_jax.train.state import ModelSpec, abstract_train_state, state_shardings
from stilts_jax.train.step import make_train_step

# Rules written without the activation names: those fall back to the defaults.
PARAMETER_RULES = tuple(rule for rule in DEFAULT_LOGICAL_RULES if not rule[0].startswith("activation_"))


def small_encoder() -> Encoder:
    config = EncoderConfig(
        vocab_size=1000,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=512,
        max_position_embeddings=130,
    )
    return nnx.eval_shape(lambda: Encoder(config, rngs=nnx.Rngs(0), dtype="bfloat16", attention="xla"))


def loss_fn(model: Any, batch: dict[str, jax.Array], rng: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    hidden = model(batch["input_ids"], batch["attention_mask"], dropout_rng=rng).last_hidden_state
    return jnp.sum(jnp.square(hidden.astype(jnp.float32))), jnp.float32(hidden.shape[0])


def compile_fsdp_step(tpu_slice: Any, rules: Any, axes: dict[str, int] | None = None) -> tuple[dict[str, int], str]:
    """The collectives and the optimized HLO of the encoder's train step on `tpu_slice` (mesh `axes`, fsdp=4 unless
    given)."""
    from stilts_jax.train.aot import compile_program

    mesh = make_mesh(axes or {"data": 1, "fsdp": 4, "tensor": 1}, devices=tpu_slice.devices)
    spec = ModelSpec(small_encoder(), mesh, rules)
    tx = optax.adamw(1e-4)
    shardings = state_shardings(spec, tx)
    batch_shardings = {name: batch_sharding(mesh, rules, ndim=3, leading=1) for name in ("input_ids", "attention_mask")}
    step = make_train_step(spec, tx, optax.constant_schedule(1e-4), loss_fn, shardings, batch_shardings)
    batch = {
        name: jax.ShapeDtypeStruct((1, 16, 128), jnp.int32, sharding=batch_shardings[name])
        for name in ("input_ids", "attention_mask")
    }
    hlo: dict[str, str] = {}
    report = compile_program(
        "train_step",
        step,
        [abstract_train_state(spec, tx, shardings), batch],
        tpu_slice,
        hlo_sink=lambda name, text: hlo.setdefault(name, text),
    )
    return report["collectives"], hlo["train_step"]


def all_reduces(hlo: str) -> list[int]:
    """Bytes of each all-reduce's operands, outside the all-reduce that a TPU reduce-scatter fusion wraps."""
    sizes, in_reduce_scatter = [], False
    for line in hlo.splitlines():
        if not line.startswith(" "):
            in_reduce_scatter = line.startswith("%all-reduce-scatter")
        match = re.match(r"\s+%\S+ = (.*?) all-reduce(?:-start)?\(", line)
        if match and not in_reduce_scatter:
            sizes.append(
                sum(
                    math.prod(int(d) for d in dims.split(",") if d) * (2 if dtype == "bf16" else 4)
                    for dtype, dims in re.findall(r"(bf16|f32|s32|u32)\[([\d,]*)\]", match.group(1))
                )
            )
    return sizes


def all_reduced_bytes(hlo: str) -> int:
    return sum(all_reduces(hlo))


@pytest.mark.slow  # one TPU compile each, ~30 s on 2 cores
@pytest.mark.parametrize("topology", ["v5e:2x2", "v4:2x2x1"])
def test_fsdp_train_step_gathers_weights_and_reduce_scatters_gradients(topology: str) -> None:
    pytest.importorskip("libtpu", reason="compiling for a TPU slice needs libtpu (the test extra installs it)")
    from stilts_jax.train.aot import get_slice

    collectives, hlo = compile_fsdp_step(get_slice(topology), DEFAULT_LOGICAL_RULES)
    # Each layer's weights are all-gathered (in bfloat16) and their gradients reduce-scattered back to the shards.
    assert collectives["all-gather"] > 0 and collectives["reduce-scatter"] > 0, collectives
    # Activations stay split over the batch: none is all-reduced (the partial sums of a matmul over a sharded
    # hidden dimension), only bias and LayerNorm gradients and scalars are, well under one layer's weights.
    one_layer_weights = (4 * 128 * 128 + 2 * 128 * 512) * 2
    assert all_reduced_bytes(hlo) < one_layer_weights // 2, all_reduced_bytes(hlo)
    # The one exchange of activations is the embedding lookup's (and its gradient's): the table stays sharded
    # over the hidden dimension and the looked-up rows go to the device of their batch rows.
    exchanges = [line for line in hlo.splitlines() if re.search(r" all-to-all(?:-start)?\(", line)]
    assert len(exchanges) == collectives["all-to-all"] <= 2 and all("_take" in line for line in exchanges), exchanges


@pytest.mark.slow  # one TPU compile, ~30 s on 2 cores
def test_fsdp_with_tensor_parallel_heads_adds_only_the_megatron_all_reduces() -> None:
    """fsdp=2 x tensor=2 on v4:2x2x1: weights still gathered over fsdp and their gradients reduce-scattered; the
    tensor axis splits heads and the feed-forward width, so each layer all-reduces activations exactly where
    Megatron-LM's tensor parallelism does: the attention output and the feed-forward output in the forward pass,
    the q/k/v and feed-forward inputs' gradients in the backward pass (4 per layer), and nothing else of that size."""
    pytest.importorskip("libtpu", reason="compiling for a TPU slice needs libtpu (the test extra installs it)")
    from stilts_jax.train.aot import get_slice

    axes = {"data": 1, "fsdp": 2, "tensor": 2}
    collectives, hlo = compile_fsdp_step(get_slice("v4:2x2x1"), DEFAULT_LOGICAL_RULES, axes)
    assert collectives["all-gather"] > 0 and collectives["reduce-scatter"] > 0, collectives
    activation = (16 // axes["fsdp"]) * 128 * 128 * 2  # a bfloat16 [rows per fsdp shard, seq, hidden] array
    activation_reduces = [size for size in all_reduces(hlo) if size >= activation]
    assert len(activation_reduces) == 4 * small_encoder().config.num_hidden_layers, all_reduces(hlo)
    exchanges = [line for line in hlo.splitlines() if re.search(r" all-to-all(?:-start)?\(", line)]
    assert all("_take" in line for line in exchanges), exchanges


def test_constraint_is_a_no_op_without_a_mesh_and_follows_the_rules_under_one() -> None:
    x = jnp.ones((8, 4, 16))
    assert with_logical_constraint(x, HIDDEN_AXES) is x
    mesh = make_mesh({"data": 2, "fsdp": 4, "tensor": 1}, devices=jax.devices()[:8])

    def layout(rules: Any) -> PartitionSpec:
        def f(y: jax.Array) -> jax.Array:
            with logical_constraints(mesh, rules):
                return with_logical_constraint(y * 2, HIDDEN_AXES)

        out = jax.jit(f)(x)
        assert isinstance(out.sharding, NamedSharding)
        return out.sharding.spec

    assert layout(DEFAULT_LOGICAL_RULES) == PartitionSpec(("data", "fsdp"))
    # A user's rules override the defaults; rules written without the activation names fall back to them.
    override = [(name, "fsdp" if name == "activation_embed" else axes) for name, axes in DEFAULT_LOGICAL_RULES]
    override = [(name, "data" if name == "activation_batch" else axes) for name, axes in override]
    assert layout(override) == PartitionSpec("data", None, "fsdp")
    assert layout(PARAMETER_RULES) == PartitionSpec(("data", "fsdp"))
    assert {name for name, _ in ACTIVATION_RULES} <= {name for name, _ in DEFAULT_LOGICAL_RULES}
    np.testing.assert_array_equal(np.asarray(with_logical_constraint(x, HIDDEN_AXES)), np.ones((8, 4, 16)))
