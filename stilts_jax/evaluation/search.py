"""Exact (or TPU-approximate) nearest-neighbour search on the accelerator, and BUCC's ratio-margin mining.

The database is split over every device of a one-axis mesh. For each chunk of queries, each device scores its
shard (`q @ db.T`, float32 accumulation), keeps its local top-k, and the k-per-shard candidates are merged into the
global top-k. With several processes (a TPU pod, multi-host GPU) the mesh spans every process's devices by
default: each device holds 1/(all devices) of the database, every process calls `search` with the same queries,
and every process gets the whole result back. On CPU a shard is also scored in blocks of rows with a running
top-k, so the score tile of one block stays in cache while it is reduced. Memory is bounded by chunk_size x block
rows, never by N^2.
With kernel="fused" (GPU) each shard is searched by one Pallas kernel that keeps the top-k in registers while it
multiplies (evaluation/fused_top_k.py), so no score matrix is written at all.

Embeddings must be finite: a NaN row would rank first for every query and an inf row would vanish, so rows with a
NaN or inf are refused (InputError naming them), or with drop_non_finite=True left out with a warning; returned
indices always count rows of the arrays as given.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from stilts_jax.core.distributed import place
from stilts_jax.core.errors import InputError
from stilts_jax.evaluation import fused_top_k as fused

KERNELS = ("xla", "fused")

_AXIS = "shard"


def _varying(tree):
    """Mark per-shard values as varying over the mesh axis (a scan carry inside shard_map must say so)."""
    if hasattr(jax.lax, "pcast"):
        return jax.lax.pcast(tree, (_AXIS,), to="varying")
    return jax.lax.pvary(tree, (_AXIS,))  # type: ignore[attr-defined]  # older JAX, before pcast replaced it


def non_finite_rows(array: np.ndarray) -> np.ndarray:
    """Indices of the rows of a [N, d] array holding a NaN or an inf (one float64 sum per row: no [N, d] mask)."""
    sums = np.asarray(array).sum(axis=1, dtype=np.float64)  # any NaN or inf makes its row's sum non-finite
    return np.flatnonzero(~np.isfinite(sums))


def finite_rows(array: np.ndarray, what: str, *, drop: bool) -> np.ndarray | None:
    """None when every row of `array` is finite; else the indices of its finite rows (drop=True, with a warning
    saying how many were left out) or an InputError naming the bad rows (drop=False)."""
    bad = non_finite_rows(array)
    if not len(bad):
        return None
    shown = (
        f"row{'s' if len(bad) > 1 else ''} "
        + ", ".join(str(i) for i in bad[:5])
        + (f", ... ({len(bad)} in all)" if len(bad) > 5 else "")
    )
    if not drop:
        raise InputError(
            f"{len(bad)} of the {len(array)} {what} rows hold NaN or inf values ({shown}, counting "
            "from 0): they would rank first or vanish from every search. Fix what produced those "
            "embeddings, or leave the rows out: drop_non_finite=True in the library, --drop-non-finite on "
            "python -m stilts_jax.search / stilts_jax.mine"
        )
    if len(bad) == len(array):
        raise InputError(f"all {len(array)} {what} rows hold NaN or inf values: nothing is left to search")
    if jax.process_index() == 0:
        print(
            f"warning: left out {len(bad)} of the {len(array)} {what} rows holding NaN or inf values ({shown}, "
            "counting from 0); returned indices still count every row",
            file=sys.stderr,
            flush=True,
        )
    keep = np.ones(len(array), bool)
    keep[bad] = False
    return np.flatnonzero(keep)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclasses.dataclass(frozen=True)
class SearchResult:
    scores: np.ndarray  # [num_queries, k] float32, best first (-inf for a left-out query)
    indices: np.ndarray  # [num_queries, k] int64 rows of the database (-1 for a left-out query)

    def expand(
        self, kept_queries: np.ndarray | None, num_queries: int, database_rows: np.ndarray | None
    ) -> SearchResult:
        """This result of a search over kept rows only, in the numbering of all rows: `kept_queries` are the rows
        of the full query set it answers (the others get scores -inf and indices -1), `database_rows` maps the
        kept database's rows to the full database's."""
        indices = self.indices if database_rows is None else database_rows[self.indices]
        if kept_queries is None:
            return SearchResult(self.scores, indices)
        scores = np.full((num_queries, self.scores.shape[1]), -np.inf, np.float32)
        full_indices = np.full((num_queries, self.scores.shape[1]), -1, np.int64)
        scores[kept_queries], full_indices[kept_queries] = self.scores, indices
        return SearchResult(scores, full_indices)


class NearestNeighbors:
    """k-nearest-neighbour search by inner product over a database held on the devices.

    Args:
      database: [N, d] vectors (normalise them first for cosine similarity).
      devices: where to shard the database (default: every device of every process; then every process must
        build the index from the same database and search the same queries, as all of them take part).
      chunk_size: queries scored per step; default 1024 on CPU, 8192 on accelerators (65536 with the fused kernel,
        which holds no [chunk, database] scores).
      block_rows: database rows scored at once within a shard, reduced by a running top-k (default about 5,000
        on CPU, where the [chunk, block] score tile stays in the last-level cache: 50k x 50k x 768 went from 1.45x
        to 1.08x faiss's time on 2 cores; the whole shard on accelerators). The shard is split into equal blocks
        of about this size.
      dtype: operand dtype of the matmul (bfloat16 halves memory traffic on accelerators; accumulation is
        float32 either way).
      approx: use `jax.lax.approx_max_k` for the local top-k (fast on TPU; exact elsewhere).
      kernel: "xla" (jnp.dot then lax.top_k; every platform) or "fused" (one Pallas kernel per shard that never
        writes the score matrix; GPUs, and CPU in interpret mode for tests; k up to 32).
      tile: the fused kernel's tiling and launch parameters (default: fused.default_tile(dtype)).
      drop_non_finite: leave database and query rows holding NaN or inf out (with a warning) instead of refusing
        them; indices keep counting every database row, and a left-out query gets scores -inf and indices -1.
    """

    def __init__(
        self,
        database: np.ndarray,
        *,
        devices: Sequence[jax.Device] | None = None,
        chunk_size: int | None = None,
        block_rows: int | None = None,
        dtype: str | jnp.dtype = jnp.float32,
        approx: bool = False,
        recall_target: float = 0.95,
        kernel: str = "xla",
        tile: fused.Tile | None = None,
        drop_non_finite: bool = False,
    ):
        database = np.asarray(database)
        if database.ndim != 2 or len(database) == 0:
            raise InputError(f"the database must be a non-empty [N, d] array, got shape {database.shape}")
        self.drop_non_finite = drop_non_finite
        self._database_rows = finite_rows(database, "database", drop=drop_non_finite)  # None: every row is kept
        if self._database_rows is not None:
            database = database[self._database_rows]
        devices = list(devices or jax.devices())
        self.mesh = Mesh(np.array(devices), (_AXIS,))
        self.num_shards = len(devices)
        self.size, self.dim = database.shape
        on_cpu = devices[0].platform == "cpu"
        if kernel not in KERNELS:
            raise InputError(f"unknown search kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
        if kernel == "fused" and devices[0].platform not in ("gpu", "cuda", "rocm", "cpu"):
            raise InputError(
                f"the fused search kernel is written for GPUs (Pallas Triton), not {devices[0].platform}: "
                "use kernel='xla' (with approx=True on TPU)"
            )
        if kernel == "fused" and approx:
            raise InputError("approx applies to kernel='xla' only: the fused kernel is exact")
        self.kernel = kernel
        self.dtype = jnp.dtype(dtype)
        self.tile = tile or fused.default_tile(self.dtype)
        self._interpret = on_cpu
        self.chunk_size = chunk_size or (1024 if on_cpu else 8192)
        self.approx, self.recall_target = approx, recall_target
        rows_per_shard = -(-self.size // self.num_shards)
        if kernel == "fused":  # the kernel walks its whole shard; rows and features padded to its tiles
            # No score matrix to bound: large chunks keep every multiprocessor busy through one launch.
            chunk = chunk_size or (1024 if on_cpu else 65536)
            self.chunk_size = -(-chunk // self.tile.block_queries) * self.tile.block_queries
            self.num_blocks = 1
            self.block_rows = -(-rows_per_shard // self.tile.block_database) * self.tile.block_database
            multiple = self.tile.block_features or 16
            self._padded_dim = -(-self.dim // multiple) * multiple
        else:
            target_block = block_rows or (5_000 if on_cpu else rows_per_shard)
            self.num_blocks = max(1, -(-rows_per_shard // target_block))
            self.block_rows = -(-rows_per_shard // self.num_blocks)
            self._padded_dim = self.dim
        self.shard_rows = self.block_rows * self.num_blocks
        padded = np.zeros((self.shard_rows * self.num_shards, self._padded_dim), database.dtype)
        padded[: self.size, : self.dim] = database
        rows = NamedSharding(self.mesh, P(_AXIS))
        self._database = place(padded.astype(self.dtype), NamedSharding(self.mesh, P(_AXIS, None)))
        bias = np.where(np.arange(len(padded)) < self.size, 0.0, -np.inf).astype(np.float32)
        self._bias = place(bias, rows) if kernel == "fused" else None
        self._replicated = NamedSharding(self.mesh, P())
        self._compiled: dict[int, object] = {}

    def _search_fn(self, k: int):
        if k not in self._compiled:
            shard_rows, size, approx, recall = self.shard_rows, self.size, self.approx, self.recall_target
            num_blocks, block_rows = self.num_blocks, self.block_rows
            local_k = min(k, shard_rows)
            use_fused, interpret, tile = self.kernel == "fused", self._interpret, self.tile

            def block_top_k(queries: jax.Array, block: jax.Array, first_row: jax.Array) -> tuple[jax.Array, jax.Array]:
                scores = jnp.dot(queries, block.T, preferred_element_type=jnp.float32)
                rows = first_row + jnp.arange(block.shape[0])
                scores = jnp.where(rows[None, :] < size, scores, -jnp.inf)  # padding rows never win
                if approx:
                    values, index = jax.lax.approx_max_k(scores, min(k, block.shape[0]), recall_target=recall)
                else:
                    values, index = jax.lax.top_k(scores, min(k, block.shape[0]))
                return values, index + first_row

            def local_top_k(
                queries: jax.Array, shard: jax.Array, bias: jax.Array | None
            ) -> tuple[jax.Array, jax.Array]:
                offset = jax.lax.axis_index(_AXIS) * shard_rows
                if use_fused:
                    values, index = fused.fused_top_k(
                        queries,
                        shard,
                        bias,
                        local_k,
                        block_queries=tile.block_queries,
                        block_database=tile.block_database,
                        block_features=tile.block_features or None,
                        num_warps=tile.num_warps,
                        num_stages=tile.num_stages,
                        interpret=interpret,
                    )
                    return values[None], (index + offset)[None]
                if num_blocks == 1:
                    values, index = block_top_k(queries, shard, offset)
                    return values[None], index[None]

                def merge_block(best, block_and_start):
                    block, start = block_and_start
                    values, index = block_top_k(queries, block, offset + start)
                    # The running best comes first: on equal scores the lower row keeps winning, as in one pass.
                    values = jnp.concatenate([best[0], values], axis=1)
                    index = jnp.concatenate([best[1], index], axis=1)
                    values, position = jax.lax.top_k(values, local_k)
                    return (values, jnp.take_along_axis(index, position, axis=1)), None

                n = queries.shape[0]
                init = _varying((jnp.full((n, local_k), -jnp.inf, jnp.float32), jnp.zeros((n, local_k), jnp.int32)))
                blocks = shard.reshape(num_blocks, block_rows, shard.shape[1])
                starts = jnp.arange(num_blocks, dtype=jnp.int32) * block_rows
                (values, index), _ = jax.lax.scan(merge_block, init, (blocks, starts))
                return values[None], index[None]

            sharded = jax.shard_map(
                local_top_k,
                mesh=self.mesh,
                in_specs=(P(), P(_AXIS, None), None if self._bias is None else P(_AXIS)),
                out_specs=(P(_AXIS), P(_AXIS)),
                # pallas_call outputs carry no per-axis variance annotation to check
                check_vma=not use_fused,
            )

            # Replicated result: every process reads the whole top-k from its own devices.
            @partial(jax.jit, out_shardings=self._replicated)
            def search(queries: jax.Array, database: jax.Array, bias: jax.Array | None) -> tuple[jax.Array, jax.Array]:
                values, index = sharded(queries, database, bias)  # [shards, q, local_k]
                values = jnp.moveaxis(values, 0, 1).reshape(queries.shape[0], -1)
                index = jnp.moveaxis(index, 0, 1).reshape(queries.shape[0], -1)
                best, position = jax.lax.top_k(values, k)  # shards in order: ties keep the lower row
                return best, jnp.take_along_axis(index, position, axis=1)

            self._compiled[k] = search
        return self._compiled[k]

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        queries = np.asarray(queries)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise InputError(f"queries must be [M, {self.dim}] to match the database, got shape {queries.shape}")
        if not 1 <= k <= self.size:
            left_out = "" if self._database_rows is None else " (after leaving out its non-finite rows)"
            raise InputError(f"k must be between 1 and the database size {self.size}{left_out}, got {k}")
        if self.kernel == "fused" and k > fused.MAX_K:
            raise InputError(f"the fused search kernel takes k up to {fused.MAX_K}, got {k}: use kernel='xla'")
        kept_queries = finite_rows(queries, "query", drop=self.drop_non_finite)
        num_queries = len(queries)
        if kept_queries is not None:
            queries = queries[kept_queries]
        return self._search(queries, k).expand(kept_queries, num_queries, self._database_rows)

    def _search(self, queries: np.ndarray, k: int) -> SearchResult:
        search = self._search_fn(k)
        chunk = min(self.chunk_size, max(len(queries), 1))
        if self.kernel == "fused":
            chunk = -(-chunk // self.tile.block_queries) * self.tile.block_queries
        scores = np.empty((len(queries), k), np.float32)
        indices = np.empty((len(queries), k), np.int64)
        pending = None
        for start in range(0, len(queries), chunk):
            block = np.zeros((chunk, self._padded_dim), self.dtype)
            count = min(chunk, len(queries) - start)
            block[:count, : self.dim] = queries[start : start + count]
            result = search(place(block, self._replicated), self._database, self._bias)
            if pending is not None:  # fetch the previous chunk while this one runs
                self._store(pending, scores, indices)
            pending = (start, count, result)
        if pending is not None:
            self._store(pending, scores, indices)
        return SearchResult(scores, indices)

    @staticmethod
    def _store(pending, scores: np.ndarray, indices: np.ndarray) -> None:
        start, count, (values, index) = pending
        scores[start : start + count] = np.asarray(values)[:count]
        indices[start : start + count] = np.asarray(index)[:count]


def knn(queries: np.ndarray, database: np.ndarray, k: int, *, normalize: bool = False, **options) -> SearchResult:
    """Top-k database rows by inner product (cosine with normalize=True) for every query."""
    if normalize:
        queries, database = l2_normalize(queries), l2_normalize(database)
    return NearestNeighbors(database, **options).search(queries, k)


# --- BUCC-style margin mining (Artetxe & Schwenk 2019, as LASER and XTREME use it) ------------------------------


@dataclasses.dataclass(frozen=True)
class MarginNeighbors:
    forward: SearchResult  # each x's k nearest y
    backward: SearchResult  # each y's k nearest x
    forward_margin: np.ndarray  # [Nx, k] ratio margin of each forward neighbour
    backward_margin: np.ndarray  # [Ny, k]


def ratio_margin(
    x: np.ndarray, y: np.ndarray, k: int = 4, *, drop_non_finite: bool = False, **options
) -> MarginNeighbors:
    """Cosine kNN both ways and the ratio margin cos(x,y) / ((mean_k cos(x,NN(x)) + mean_k cos(y,NN(y))) / 2).

    Rows holding NaN or inf are refused, or with drop_non_finite=True left out of both searches and the margins:
    their own rows get margins -inf and indices -1, and `mine_max` never pairs them."""
    num_x, num_y = len(x), len(y)
    kept_x = finite_rows(x, "source (x)", drop=drop_non_finite)
    kept_y = finite_rows(y, "target (y)", drop=drop_non_finite)
    x = l2_normalize(x if kept_x is None else x[kept_x])
    y = l2_normalize(y if kept_y is None else y[kept_y])
    forward = NearestNeighbors(y, **options).search(x, k)
    backward = NearestNeighbors(x, **options).search(y, k)
    mean_x = forward.scores.mean(axis=1)
    mean_y = backward.scores.mean(axis=1)
    forward_margin = forward.scores / ((mean_x[:, None] + mean_y[forward.indices]) / 2)
    backward_margin = backward.scores / ((mean_y[:, None] + mean_x[backward.indices]) / 2)
    return MarginNeighbors(
        forward.expand(kept_x, num_x, kept_y),
        backward.expand(kept_y, num_y, kept_x),
        _expand_rows(forward_margin, kept_x, num_x),
        _expand_rows(backward_margin, kept_y, num_y),
    )


def _expand_rows(margins: np.ndarray, kept: np.ndarray | None, num_rows: int) -> np.ndarray:
    """Margins of the kept rows placed among all rows; left-out rows get -inf."""
    if kept is None:
        return margins.astype(np.float32)
    full = np.full((num_rows, margins.shape[1]), -np.inf, np.float32)
    full[kept] = margins
    return full


def mine_max(neighbors: MarginNeighbors) -> list[tuple[float, int, int]]:
    """LASER's "max" retrieval: each side's best candidate by margin, pooled, then greedy one-to-one by score.

    Returns (margin score, x row, y row) triples, best first; a row of either side appears at most once.
    """
    candidates = []
    best_forward = neighbors.forward_margin.argmax(axis=1)
    for i, j in enumerate(best_forward):
        if neighbors.forward.indices[i, j] >= 0:  # -1: a row left out as non-finite
            candidates.append((float(neighbors.forward_margin[i, j]), i, int(neighbors.forward.indices[i, j])))
    best_backward = neighbors.backward_margin.argmax(axis=1)
    for j, i in enumerate(best_backward):
        if neighbors.backward.indices[j, i] >= 0:
            candidates.append((float(neighbors.backward_margin[j, i]), int(neighbors.backward.indices[j, i]), j))
    candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
    used_x, used_y, pairs = set(), set(), []
    for score, i, j in candidates:
        if i not in used_x and j not in used_y:
            used_x.add(i)
            used_y.add(j)
            pairs.append((score, i, j))
    return pairs
