"""Exact inner-product top-k as one Pallas kernel (GPU, Triton backend): the score matrix never reaches memory.

The plain search writes every [queries, database] score to device memory and reads it back for `lax.top_k`: at
BUCC scale (400k x 400k, d=1024) that is 1.3 TB of traffic on top of the matmul, about as long as the matmul
itself. Here each program takes a block of queries, walks the database block by block (`q @ db.T` on the tensor
cores, float32 accumulation, the feature dimension in slices), and folds every score tile into a running top-k
held in registers: rounds of (row max, lowest column reaching it, mask it out), each inserted into a sorted
list of k values and rows, for as long as the tile still holds a score that beats some query's k-th best. Equal scores keep the lower database row first, as `lax.top_k` and faiss do.

On CPU the same kernel runs in Pallas interpret mode (slow; for tests); on TPU use the plain search.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

# Query rows, database rows and feature columns per tile, and Triton's warps and pipeline stages: 128 x 128 float32
# accumulators per program, feature slices of 64 (Triton's usual matmul tile on Hopper and Ampere; 128 query rows
# per database tile read keep the L2 traffic below what the tensor cores consume). bench/search_bench.py compares
# others (--fused-tiles).
BLOCK_QUERIES = 128
BLOCK_DATABASE = 128
BLOCK_FEATURES = 64
NUM_WARPS = 8
NUM_STAGES = 3
MAX_K = 32  # up to k rounds of extraction per tile, k sorted registers per query: beyond this use the plain search


@dataclasses.dataclass(frozen=True)
class Tile:
    """The kernel's tiling (powers of two; block_features 0: chosen from d) and Triton launch parameters."""

    block_queries: int = BLOCK_QUERIES
    block_database: int = BLOCK_DATABASE
    block_features: int = 0
    num_warps: int = NUM_WARPS
    num_stages: int = NUM_STAGES

    @classmethod
    def parse(cls, text: str) -> Tile:
        """'128,128,64,8,3' (block_queries, block_database, block_features, num_warps, num_stages)."""
        try:
            values = [int(v) for v in text.split(",")]
            tile = cls(*values)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"tile {text!r} is not 'block_queries,block_database,block_features,num_warps,num_stages'"
            ) from e
        if tile.num_warps < 1 or tile.num_stages < 1:
            raise ValueError(f"tile {text!r}: num_warps and num_stages must be positive")
        for name in ("block_queries", "block_database", "block_features"):
            value = getattr(tile, name)
            if value < 0 or (value and value & (value - 1)):
                raise ValueError(f"tile {text!r}: {name} must be a power of two, got {value}")
        return tile

    def __str__(self) -> str:
        return ",".join(str(v) for v in dataclasses.astuple(self))


def default_tile(dtype: jnp.dtype | str) -> Tile:
    """Three pipeline stages of 2-byte operands, two of 4-byte ones: 128 KB of staged tiles either way, which fits
    the shared memory of an A100 (164 KB) as well as an H100's (228 KB)."""
    return Tile() if jnp.dtype(dtype).itemsize <= 2 else Tile(num_stages=2)


def feature_block(dim: int, preferred: int = BLOCK_FEATURES) -> int:
    """The feature slice for `dim` columns: the largest power of two <= preferred dividing dim (at least 16)."""
    block = preferred
    while block > 16 and dim % block:
        block //= 2
    if dim % block:
        raise ValueError(f"feature dimension {dim} must be a multiple of 16 for the fused kernel; pad it with zeros")
    return block


def _insert(values: list, rows: list, value: jax.Array, row: jax.Array) -> tuple[list, list]:
    """Insert (value, row) per query into lists sorted best first; ties go after the entries already there."""
    new_values, new_rows = [], []
    stays_before: Any = None  # set at p == 0, read from p == 1 on
    for p in range(len(values)):
        stays = values[p] >= value
        if p == 0:
            new_values.append(jnp.where(stays, values[0], value))
            new_rows.append(jnp.where(stays, rows[0], row))
        else:
            new_values.append(jnp.where(stays, values[p], jnp.where(stays_before, value, values[p - 1])))
            new_rows.append(jnp.where(stays, rows[p], jnp.where(stays_before, row, rows[p - 1])))
        stays_before = stays
    return new_values, new_rows


def _kernel(
    queries_ref,
    database_ref,
    bias_ref,
    *out_refs,
    k: int,
    block_database: int,
    block_features: int,
    num_database_blocks: int,
    num_feature_blocks: int,
):
    value_refs, row_refs = out_refs[:k], out_refs[k:]
    block_queries = queries_ref.shape[0]
    columns = jax.lax.broadcasted_iota(jnp.int32, (block_queries, block_database), 1)

    def database_step(j, best):
        start = j * block_database

        def feature_step(c, scores):
            features = pl.ds(c * block_features, block_features)
            q = queries_ref[:, features]
            x = database_ref[pl.ds(start, block_database), features]
            return scores + jax.lax.dot_general(q, x, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)

        scores = jax.lax.fori_loop(
            0, num_feature_blocks, feature_step, jnp.zeros((block_queries, block_database), jnp.float32)
        )
        scores = scores + bias_ref[pl.ds(start, block_database)][None, :]  # -inf on padding rows

        # Extract the tile's best scores only while one of them still beats some query's k-th: after the first
        # tiles that is rarely more than one or two rounds, not k.
        def improves(carry):
            _, top, values, _, rounds = carry
            beats = jnp.max((top > values[k - 1]).astype(jnp.int32))  # jnp.any has no Triton lowering
            return jnp.logical_and(rounds < k, beats > 0)

        def extract(carry):
            scores, top, values, rows, rounds = carry
            column = jnp.min(jnp.where(scores == top[:, None], columns, block_database), axis=1)
            scores = jnp.where(columns == column[:, None], -jnp.inf, scores)
            values, rows = _insert(list(values), list(rows), top, column + start)
            return scores, jnp.max(scores, axis=1), tuple(values), tuple(rows), rounds + 1

        carry = (scores, jnp.max(scores, axis=1), best[0], best[1], jnp.int32(0))
        _, _, values, rows, _ = jax.lax.while_loop(improves, extract, carry)
        return values, rows

    init = (
        tuple(jnp.full((block_queries,), -jnp.inf, jnp.float32) for _ in range(k)),
        tuple(jnp.zeros((block_queries,), jnp.int32) for _ in range(k)),
    )
    values, rows = jax.lax.fori_loop(0, num_database_blocks, database_step, init)
    for p in range(k):
        value_refs[p][...] = values[p]
        row_refs[p][...] = rows[p]


@functools.partial(
    jax.jit,
    static_argnames=("k", "block_queries", "block_database", "block_features", "num_warps", "num_stages", "interpret"),
)
def fused_top_k(
    queries: jax.Array,
    database: jax.Array,
    bias: jax.Array,
    k: int,
    *,
    block_queries: int = BLOCK_QUERIES,
    block_database: int = BLOCK_DATABASE,
    block_features: int | None = None,
    num_warps: int = NUM_WARPS,
    num_stages: int = NUM_STAGES,
    interpret: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """Top-k rows of `database` by inner product for every query, best first.

    Args:
      queries: [M, d], M a multiple of block_queries.
      database: [N, d], N a multiple of block_database; d a multiple of 16.
      bias: [N] float32 added to every score of a row: 0 for real rows, -inf for padding (never returned while
        k real rows exist).
      k: 1 to MAX_K.
    Returns:
      scores [M, k] float32 and rows [M, k] int32.
    """
    from jax.experimental.pallas import triton as pallas_triton

    (num_queries, dim), num_rows = queries.shape, database.shape[0]
    block_features = block_features or feature_block(dim)
    if not 1 <= k <= MAX_K:
        raise ValueError(f"the fused kernel takes k from 1 to {MAX_K}, got {k}")
    if num_queries % block_queries or num_rows % block_database or dim % block_features:
        raise ValueError(
            f"shapes {queries.shape} x {database.shape} are not multiples of the blocks "
            f"({block_queries}, {block_database}, {block_features})"
        )
    kernel = functools.partial(
        _kernel,
        k=k,
        block_database=block_database,
        block_features=block_features,
        num_database_blocks=num_rows // block_database,
        num_feature_blocks=dim // block_features,
    )
    row_block = pl.BlockSpec((block_queries,), lambda i: (i,))
    outputs = pl.pallas_call(
        kernel,
        out_shape=[jax.ShapeDtypeStruct((num_queries,), jnp.float32)] * k
        + [jax.ShapeDtypeStruct((num_queries,), jnp.int32)] * k,
        grid=(num_queries // block_queries,),
        in_specs=[
            pl.BlockSpec((block_queries, dim), lambda i: (i, 0)),
            pl.BlockSpec((num_rows, dim), lambda i: (0, 0)),
            pl.BlockSpec((num_rows,), lambda i: (0,)),
        ],
        out_specs=[row_block] * (2 * k),
        compiler_params=pallas_triton.CompilerParams(num_warps=num_warps, num_stages=num_stages),
        interpret=interpret,
        name="fused_inner_product_top_k",
    )(queries, database, bias.astype(jnp.float32))
    return jnp.stack(outputs[:k], axis=1), jnp.stack(outputs[k:], axis=1)
