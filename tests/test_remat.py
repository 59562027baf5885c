"""Activation checkpointing (model.remat): the same loss and gradients as without it, and less memory kept for
the backward pass (the arrays the VJP closure holds: XLA CPU's memory analysis does not show remat's savings)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from stilts_jax.models.config import tiny_config
from stilts_jax.models.encoder import REMAT_POLICIES, Encoder
from stilts_jax.models.hf_weights import load_pretrained


def _loss_and_params(remat: str, config, batch: int, seq: int):
    encoder = Encoder(config, rngs=nnx.Rngs(0), remat=remat)
    graphdef, params = nnx.split(encoder)
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(5, config.vocab_size, (batch, seq)), jnp.int32)
    mask = jnp.asarray(np.arange(seq)[None, :] < rng.integers(seq // 2, seq + 1, (batch, 1)), jnp.int32)

    def loss(p):
        out = nnx.merge(graphdef, p)(ids, mask, dropout_rng=jax.random.key(1)).last_hidden_state
        return jnp.sum(jnp.tanh(out) * mask[..., None])

    return loss, params


def _loss_and_grads(remat: str, config, batch: int, seq: int):
    loss, params = _loss_and_params(remat, config, batch, seq)
    return jax.jit(jax.value_and_grad(loss))(params)


def _residual_bytes(remat: str, config, batch: int, seq: int) -> int:
    """What the forward pass keeps for the backward pass: the arrays the VJP closure holds, parameters aside."""
    loss, params = _loss_and_params(remat, config, batch, seq)
    _, backward = jax.vjp(loss, params)
    param_ids = {id(leaf) for leaf in jax.tree.leaves(params)}
    return sum(leaf.nbytes for leaf in jax.tree.leaves(backward) if id(leaf) not in param_ids)


def test_every_policy_gives_the_loss_and_gradients_of_no_remat():
    config = tiny_config(vocab_size=300, hidden_dropout_prob=0.1)
    reference_loss, reference_grads = _loss_and_grads("none", config, 4, 24)
    for policy in ("full", "save_dots"):
        loss, grads = _loss_and_grads(policy, config, 4, 24)
        np.testing.assert_allclose(loss, reference_loss, rtol=1e-6)
        flat, expected = jax.tree.leaves(grads), jax.tree.leaves(reference_grads)
        assert len(flat) == len(expected) > 10
        for a, b in zip(flat, expected):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_remat_keeps_less_for_the_backward_pass():
    config = tiny_config(
        vocab_size=300,
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=512,
        max_position_embeddings=130,
    )
    kept = {policy: _residual_bytes(policy, config, 4, 128) for policy in REMAT_POLICIES}
    # full: about one [batch, seq, hidden] input per layer; none: every activation, attention scores included.
    assert kept["full"] < 0.25 * kept["none"], kept
    assert kept["full"] < kept["save_dots"] < kept["none"], kept


def test_remat_is_checked_and_reaches_loaded_encoders(xlmr_dir):
    with pytest.raises(ValueError, match="remat must be one of none, full, save_dots, got 'some'"):
        Encoder(tiny_config(vocab_size=300), rngs=nnx.Rngs(0), remat="some")
    encoder, _ = load_pretrained(xlmr_dir, remat="full")
    assert encoder.remat == "full"


def test_out_of_memory_is_an_error_that_names_the_settings_that_fit():
    from stilts_jax.train.loop import TrainerConfig, is_out_of_memory, out_of_memory_message

    xla_error = jax.errors.JaxRuntimeError(
        "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 2147483648 bytes."
    )
    assert is_out_of_memory(xla_error) and not is_out_of_memory(ValueError("shapes (3,) and (4,) differ"))
    message = out_of_memory_message(TrainerConfig(global_batch_size=32, max_steps=1, micro_batches=2), "target", 8)
    assert "32 in 2 micro-batch(es) over 8 device(s) is 2 sequences per device" in message
    for fix in (
        "--config.target.train.micro_batches=4",
        "--config.model.remat=full",
        "--config.mesh.fsdp=-1",
        "--config.target.max_length",
    ):
        assert fix in message
    assert "--config.<phase>.train.micro_batches=2" in out_of_memory_message(
        TrainerConfig(global_batch_size=8, max_steps=1), "mnli", 1
    )
