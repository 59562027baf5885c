"""Attention on TPU through the Pallas splash-attention kernel (jax.experimental.pallas.ops.tpu), as MaxText runs it.

XLA's attention writes the [batch, heads, seq, seq] scores and probabilities to HBM and reads them back in the
backward pass; the kernel keeps each block of them in on-chip memory and never materialises the whole. Padding is
expressed with segment ids: every query row is in segment 1 and a key is in segment 1 when it is one of the row's
first `length` tokens, 0 otherwise, so padded query rows attend to the real tokens, exactly as
`jax.nn.dot_product_attention(..., key_value_seq_lengths=lengths)` (the encoder's reference) does.

A Pallas kernel is not partitioned by the compiler: under a mesh (`core.distributed.logical_constraints`) the call
runs inside `jax.shard_map`, each device computing its rows of the batch (the `activation_batch` mesh axes) and its
heads (`activation_heads`), which is how the encoder lays q, k and v out anyway. Sequences must be a multiple of
`SPLASH_BLOCK` tokens (`splash_supported`); the encoder falls back to XLA's attention otherwise.

Off TPU (a CPU test) the kernel runs in Pallas' interpreter: slow, exact, for tests only.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from stilts_jax.core.distributed import activation_context, logical_to_mesh_spec, traced_platform

# Query and key block of the kernel: 128 is the TPU's lane width; longer blocks need longer sequences and were not
# measured to help at the encoder's lengths (128 to 512 tokens).
SPLASH_BLOCK = 128
HEAD_AXES = ("activation_batch", "activation_length", "activation_heads", "activation_kv")


def splash_supported(seq_len: int) -> bool:
    """Whether a sequence of this length can go through the kernel (whole blocks only)."""
    return seq_len >= SPLASH_BLOCK and seq_len % SPLASH_BLOCK == 0


def _kernel(heads: int, seq_len: int, interpret: bool):
    from jax.experimental.pallas.ops.tpu.splash_attention import (
        splash_attention_kernel as kernel_lib,
        splash_attention_mask as mask_lib,
    )

    mask = mask_lib.MultiHeadMask([mask_lib.FullMask((seq_len, seq_len)) for _ in range(heads)])
    block = min(SPLASH_BLOCK, seq_len)
    sizes = kernel_lib.BlockSizes(
        block_q=block,
        block_kv=block,
        block_kv_compute=block,
        block_q_dkv=block,
        block_kv_dkv=block,
        block_kv_dkv_compute=block,
        block_q_dq=block,
        block_kv_dq=block,
    )
    return kernel_lib, kernel_lib.make_splash_mha(
        mask, block_sizes=sizes, head_shards=1, q_seq_shards=1, interpret=interpret
    )


def _local_attention(q: jax.Array, k: jax.Array, v: jax.Array, lengths: jax.Array, interpret: bool) -> jax.Array:
    """One device's share: q, k, v [batch, seq, heads, head_dim], lengths [batch]."""
    batch, seq_len, heads, head_dim = q.shape
    kernel_lib, kernel = _kernel(heads, seq_len, interpret)
    key_segment = (jnp.arange(seq_len)[None, :] < lengths[:, None]).astype(jnp.int32)
    query_segment = jnp.ones((batch, seq_len), jnp.int32)
    scale = jnp.asarray(1.0 / np.sqrt(head_dim), q.dtype)

    def heads_first(x: jax.Array) -> jax.Array:
        return jnp.swapaxes(x, 1, 2)

    out = jax.vmap(kernel)(
        heads_first(q * scale),
        heads_first(k),
        heads_first(v),
        segment_ids=kernel_lib.SegmentIds(q=query_segment, kv=key_segment),
    )
    return jnp.swapaxes(out, 1, 2).astype(q.dtype)


def splash_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, lengths: jax.Array, *, interpret: bool | None = None
) -> jax.Array:
    """Softmax(q.k / sqrt(d)) v over each row's first `lengths` keys, by the splash kernel.

    q, k, v: [batch, seq, heads, head_dim]; lengths: int [batch]. `interpret` (default: off on TPU, on elsewhere)
    runs Pallas' interpreter instead of compiling the kernel.
    """
    if not splash_supported(q.shape[1]):
        raise ValueError(
            f"splash attention needs a sequence length that is a multiple of {SPLASH_BLOCK}, got {q.shape[1]}"
        )
    run = functools.partial(_local_attention, interpret=traced_platform() != "tpu" if interpret is None else interpret)
    context = activation_context()
    if context is None:
        return run(q, k, v, lengths)
    mesh, rules = context
    mapped = logical_to_mesh_spec(HEAD_AXES, rules, mesh, q.shape)
    # The kernel needs whole sequences and whole heads on each device: only the batch and the heads are split.
    spec, batch_only = PartitionSpec(mapped[0], None, mapped[2], None), PartitionSpec(mapped[0])
    return jax.shard_map(run, mesh=mesh, in_specs=(spec, spec, spec, batch_only), out_specs=spec, check_vma=False)(
        q, k, v, lengths
    )
