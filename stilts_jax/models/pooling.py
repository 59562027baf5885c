"""Sentence representations from token hidden states."""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

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
    raise ValueError(f"unknown pooling {pooling!r}; use 'mean' or 'cls'")
