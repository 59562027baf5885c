"""Nearest-neighbour search from the command line, on whatever devices JAX sees.

    python -m stilts_jax.search --queries Q.npy --database D.npy --k 4 --output out.npz [--normalize] [--margin ratio]

Several processes (GPU hosts: --coordinator-address, --num-processes, --process-id; TPU pods: nothing) each
load both files, hold 1/(all devices) of the database, and process 0 writes the output.

Writes `indices` [Nq, K] (database rows, best first) and `scores` [Nq, K] (inner products, or cosines with
--normalize). `--margin ratio` implies --normalize and adds `margin_scores` [Nq, K]: BUCC's ratio margin of each
neighbour, which needs the database's own K nearest queries too.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import jax
import numpy as np

from stilts_jax.core.distributed import add_process_arguments, initialize_from_args
from stilts_jax.core.errors import InputError, StiltsError
from stilts_jax.core.io_utils import atomic_write_bytes
from stilts_jax.evaluation.fused_top_k import Tile
from stilts_jax.evaluation.search import knn, ratio_margin

_NPY_MAGIC = b"\x93NUMPY"


def load_matrix(path: str | Path, name: str) -> np.ndarray:
    """The float [N, d] array of a .npy file; an empty, truncated or foreign file is an InputError naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{name} file {path} does not exist")
    fix = "write it with numpy.save (python -m stilts_jax.embed writes one)"
    with path.open("rb") as f:
        magic = f.read(len(_NPY_MAGIC))
    if not magic:
        raise InputError(f"{name} file {path} is empty (0 bytes); {fix}")
    if magic != _NPY_MAGIC:
        raise InputError(f"{name} file {path} is not a .npy array (it does not start with numpy's header); {fix}")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(
            f"{name} file {path} cannot be read: damaged, truncated or not a plain numeric array ({e}); {fix}"
        ) from e
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{name} file {path} must hold a float [N, d] array, found {array.dtype} {array.shape}")
    if 0 in array.shape:
        raise InputError(f"{name} file {path} holds an empty array {array.shape}; {fix}")
    return array.astype(np.float32, copy=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stilts_jax.search", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", required=True, help="float [Nq, d] .npy")
    parser.add_argument("--database", required=True, help="float [N, d] .npy")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--output", required=True, help=".npz to write")
    parser.add_argument("--normalize", action="store_true", help="L2-normalise both sides: cosine similarity")
    parser.add_argument("--margin", choices=("ratio",), help="also write BUCC ratio-margin scores")
    parser.add_argument(
        "--chunk-size",
        type=int,
        help="queries scored per step (bounds memory; default 1024 on CPU, 8192 on accelerators)",
    )
    parser.add_argument(
        "--block-rows",
        type=int,
        help="database rows scored at once per device (default about 5000 on CPU, all elsewhere)",
    )
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="matmul operand dtype")
    parser.add_argument("--approx", action="store_true", help="approximate top-k (jax.lax.approx_max_k; fast on TPU)")
    parser.add_argument(
        "--kernel",
        choices=("xla", "fused"),
        default="xla",
        help="fused: one Pallas kernel per device keeps the top-k while it multiplies (GPU; k <= 32)",
    )
    parser.add_argument(
        "--drop-non-finite",
        action="store_true",
        help="leave out query and database rows holding NaN or inf (refused by default); indices "
        "still count every database row, and a left-out query gets indices -1, scores -inf",
    )
    parser.add_argument(
        "--tile",
        type=Tile.parse,
        help="the fused kernel's block_queries,block_database,"
        "block_features,num_warps,num_stages (default 128,128,0,8,3)",
    )
    add_process_arguments(parser)
    args = parser.parse_args(argv)
    try:
        initialize_from_args(args)
        queries, database = load_matrix(args.queries, "queries"), load_matrix(args.database, "database")
        if queries.shape[1] != database.shape[1]:
            raise InputError(f"queries have dimension {queries.shape[1]} but the database {database.shape[1]}")
        options = dict(
            chunk_size=args.chunk_size,
            block_rows=args.block_rows,
            dtype=args.dtype,
            approx=args.approx,
            kernel=args.kernel,
            tile=args.tile,
            drop_non_finite=args.drop_non_finite,
        )
        start = time.perf_counter()
        if args.margin:
            neighbors = ratio_margin(queries, database, args.k, **options)
            arrays = {
                "indices": neighbors.forward.indices,
                "scores": neighbors.forward.scores,
                "margin_scores": neighbors.forward_margin,
            }
        else:
            result = knn(queries, database, args.k, normalize=args.normalize, **options)
            arrays = {"indices": result.indices, "scores": result.scores}
        elapsed = time.perf_counter() - start
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        if jax.process_index() == 0:  # every process holds the whole result
            atomic_write_bytes(args.output, buffer.getvalue())
    except StiltsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if jax.process_index() == 0:
        print(
            f"wrote {args.output}: top-{args.k} of {len(database)} for {len(queries)} queries in {elapsed:.2f} s "
            f"on {len(jax.devices())} {jax.default_backend()} device(s) of {jax.process_count()} process(es)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
