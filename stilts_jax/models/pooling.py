"""Sentence representations from token hidden states."""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from stilts_jax.models.encoder import EMBED, MLP, make_param

Pooling = Literal["mean", "cls"]


def mean_pool(hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
    """Mean over the tokens the mask keeps (<s> and </s> included, as XTREME's retrieval does), in float32."""
    mask = attention_mask.astype(jnp.float32)[..., None]
    total = jnp.sum(hidden.astype(jnp.float32) * mask, axis=1)
    return total / jnp.maximum(jnp.sum(mask, axis=1), 1.0)


def pool(hidden: jax.Array, attention_mask: jax.Array, pooling: Pooling) -> jax.Array:
    if pooling == "mean":
        return mean_pool(hidden, attention_mask)
    if pooling == "cls":
        return hidden[:, 0].astype(jnp.float32)
    raise ValueError(f"unknown pooling {pooling!r}; use 'mean' or 'cls' (the 'pooler' embedding is the Pooler module)")


class Pooler(nnx.Module):
    """BERT's and XLM-R's pooler: tanh(dense(h_<s>)) on the first token's final hidden state, float32.

    transformers' BertPooler / XLMRobertaPooler (`pooler.dense.weight` [out, in] and `pooler.dense.bias` in a Hugging
    Face checkpoint; here `dense` is [in, out]). `models.hf_weights.load_pooler` fills it from a checkpoint; its own
    init is transformers' (normal(initializer_range) weights, zero bias).
    """

    def __init__(self, hidden_size: int, *, rngs: nnx.Rngs, std: float = 0.02):
        with nnx.use_eager_sharding(False):
            self.dense = make_param(rngs, (hidden_size, hidden_size), (EMBED, MLP), "normal", std)
            self.dense_bias = make_param(rngs, (hidden_size,), (MLP,), "zeros")

    def __call__(self, hidden: jax.Array) -> jax.Array:
        first = hidden[:, 0].astype(jnp.float32)
        return jnp.tanh(first @ self.dense[...] + self.dense_bias[...])
