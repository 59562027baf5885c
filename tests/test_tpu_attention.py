"""The Pallas splash-attention kernel (the encoder's attention on TPU) against XLA's attention, in Pallas' interpreter
on CPU: the same outputs and gradients, with padding, alone and split over a device mesh."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from stilts_jax.core.distributed import DEFAULT_LOGICAL_RULES, logical_constraints, make_mesh
from stilts_jax.models.config import EncoderConfig
from stilts_jax.models.encoder import Encoder, resolve_attention_impl
from stilts_jax.models.tpu_attention import splash_attention, splash_supported

# Row lengths: whole, partial, a single token (a row of batch padding keeps one key).
LENGTHS = np.array([128, 70, 1, 128], np.int32)


def reference(q: jax.Array, k: jax.Array, v: jax.Array, lengths: jax.Array) -> jax.Array:
    return jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=lengths, implementation="xla")


def qkv(batch: int = 4, seq: int = 128, heads: int = 2, head_dim: int = 64) -> list[jax.Array]:
    rng = np.random.default_rng(0)
    return [jnp.asarray(rng.normal(size=(batch, seq, heads, head_dim)), jnp.float32) for _ in range(3)]


def close(a: jax.Array, b: jax.Array) -> bool:
    return bool(jnp.max(jnp.abs(a - b) / (jnp.abs(b) + 1.0)) < 2e-5)


@pytest.mark.slow  # Pallas' interpreter: seconds per call on 2 cores
def test_splash_matches_xla_attention_and_its_gradients() -> None:
    q, k, v = qkv()
    lengths = jnp.asarray(LENGTHS)
    assert close(splash_attention(q, k, v, lengths), reference(q, k, v, lengths))

    def loss(attention):
        return lambda q, k, v: jnp.sum(jnp.sin(attention(q, k, v, lengths)))

    ours = jax.grad(loss(splash_attention), argnums=(0, 1, 2))(q, k, v)
    expected = jax.grad(loss(reference), argnums=(0, 1, 2))(q, k, v)
    for got, want in zip(ours, expected, strict=True):
        assert close(got, want)


@pytest.mark.slow  # Pallas' interpreter: seconds per call on 2 cores
def test_splash_under_a_mesh_splits_batch_and_heads() -> None:
    q, k, v = qkv(heads=4)
    lengths = jnp.asarray(LENGTHS)
    mesh = make_mesh({"data": 2, "fsdp": 1, "tensor": 2}, devices=jax.devices()[:4])

    @jax.jit
    def run(q, k, v, lengths):
        with logical_constraints(mesh, DEFAULT_LOGICAL_RULES):
            return splash_attention(q, k, v, lengths)

    out = run(q, k, v, lengths)
    assert close(out, reference(q, k, v, lengths))
    hlo = run.lower(q, k, v, lengths).as_text()
    assert "shard_map" in hlo or "manual" in hlo.lower()


def test_lengths_the_kernel_cannot_tile_are_refused() -> None:
    assert splash_supported(128) and splash_supported(384) and not splash_supported(64) and not splash_supported(200)
    q, k, v = qkv(seq=64)
    with pytest.raises(ValueError, match="multiple of 128"):
        splash_attention(q, k, v, jnp.asarray(LENGTHS))


@pytest.mark.slow  # Pallas' interpreter: seconds per call on 2 cores
def test_encoder_with_splash_equals_xla_and_falls_back_for_short_inputs() -> None:
    config = EncoderConfig(
        vocab_size=50,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=96,
        max_position_embeddings=300,
        pad_token_id=1,
    )
    encoders = {impl: Encoder(config, rngs=nnx.Rngs(3), attention=impl) for impl in ("xla", "splash")}
    rng = np.random.default_rng(1)
    for seq in (128, 40):  # 40: not whole blocks, so XLA's attention runs
        ids = jnp.asarray(rng.integers(3, 50, size=(2, seq)), jnp.int32)
        mask = (np.arange(seq)[None, :] < np.array([[seq], [seq // 3]])).astype(np.int32)
        ids = jnp.where(mask, ids, 1)
        outputs = {impl: encoder(ids, jnp.asarray(mask)).last_hidden_state for impl, encoder in encoders.items()}
        assert close(outputs["splash"], outputs["xla"])


def test_auto_picks_the_kernel_of_the_mesh_platform() -> None:
    assert resolve_attention_impl("auto", jnp.bfloat16, 64) == "xla"  # this CPU host, no mesh
    mesh = make_mesh({"data": 2, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:2])
    with logical_constraints(mesh, DEFAULT_LOGICAL_RULES):
        assert resolve_attention_impl("auto", jnp.float32, 64) == "xla"
    assert resolve_attention_impl("splash", jnp.float32, 64) == "splash"
