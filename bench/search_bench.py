"""Exact top-k search, N queries x N database x d: this project beside faiss (CPU) and PyTorch (matmul + topk).

    python bench/search_bench.py --n 50000 --dim 768 --k 4            # CPU goal: within 1.5x of faiss
    python bench/search_bench.py --n 400000 --dim 1024 --k 4 --dtype bfloat16 --kernels xla fused   # one H100: <= 0.55 s

Prints one table; every row is timed in this run on this machine (median of --repeats after a warm-up run), and
each implementation's top-1 agreement with the first one is shown.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import jax
import numpy as np

from stilts_jax.evaluation.fused_top_k import Tile
from stilts_jax.evaluation.search import NearestNeighbors


def _time(fn, repeats: int) -> tuple[float, object]:
    result = fn()  # warm-up (compilation, allocations)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--chunk-size", type=int, help="default: the library's (1024 on CPU, 8192 on accelerators)")
    parser.add_argument(
        "--block-rows", type=int, help="default: the library's (about 5000 on CPU, the whole shard elsewhere)"
    )
    parser.add_argument(
        "--kernels",
        nargs="+",
        default=["xla"],
        choices=("xla", "fused"),
        help="this project's search kernels to time (fused: the Pallas kernel; GPU)",
    )
    parser.add_argument(
        "--fused-tiles",
        nargs="+",
        type=Tile.parse,
        default=[None],
        help="tilings of the fused kernel to time: block_queries,block_database,block_features,warps,stages "
        "(default: the library's for --dtype)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip", nargs="*", default=[], choices=("jax", "faiss", "torch"))
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    data = rng.standard_normal((args.n, args.dim)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    queries = data + 0.05 * rng.standard_normal(data.shape).astype(np.float32)
    rows = []

    if "jax" not in args.skip:
        where = f"{len(jax.devices())} {jax.default_backend()}, {args.dtype}"
        variants = [("xla", None)] * ("xla" in args.kernels) + [("fused", t) for t in args.fused_tiles] * (
            "fused" in args.kernels
        )
        for kernel, tile in variants:
            try:
                index = NearestNeighbors(
                    data,
                    chunk_size=args.chunk_size,
                    block_rows=args.block_rows,
                    dtype=args.dtype,
                    kernel=kernel,
                    tile=tile,
                )
                seconds, result = _time(lambda: index.search(queries, args.k), args.repeats)  # noqa: B023 (called here)
            except Exception as e:  # noqa: BLE001 (one failing variant (a tile too large for the chip) must not cost the others)
                print(f"stilts-jax {kernel} {tile or ''} failed: {type(e).__name__}: {str(e)[:300]}")
                continue
            name = "stilts-jax" if kernel == "xla" else f"stilts-jax fused kernel, tile {index.tile}"
            rows.append((f"{name} ({where})", seconds, result.indices[:, 0]))
            print(f"{rows[-1][0]}: {seconds:.3f} s", flush=True)  # kept in the log if a later row runs out of time
            del index
    if "faiss" not in args.skip:
        try:
            import faiss

            flat = faiss.IndexFlatIP(args.dim)
            flat.add(data)
            seconds, (_, indices) = _time(lambda: flat.search(queries, args.k), args.repeats)
            rows.append((f"faiss IndexFlatIP (CPU, {faiss.omp_get_max_threads()} threads)", seconds, indices[:, 0]))
        except ImportError:
            print("faiss-cpu is not installed: skipping it")
    if "torch" not in args.skip:
        try:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
            half = torch.float16 if device == "cuda" else torch.float32
            db = torch.from_numpy(data).to(device, half)
            qs = torch.from_numpy(queries).to(device, half)

            chunk = args.chunk_size or 8192

            def torch_search():
                out = []
                for start in range(0, len(qs), chunk):
                    out.append(torch.topk(qs[start : start + chunk] @ db.T, args.k, dim=1).indices)
                result = torch.cat(out)
                if device == "cuda":
                    torch.cuda.synchronize()
                return result.cpu().numpy()

            seconds, indices = _time(torch_search, args.repeats)
            rows.append((f"PyTorch matmul+topk ({device}, {str(half).split('.')[-1]})", seconds, indices[:, 0]))
        except ImportError:
            print("torch is not installed: skipping it")

    flops = 2.0 * args.n * args.n * args.dim
    reference = rows[0][2] if rows else None
    print(
        f"\nexact top-{args.k} search, {args.n} x {args.n} x {args.dim}; {platform.processor() or platform.machine()}, "
        f"jax {jax.__version__} on {jax.default_backend()}"
    )
    print(f"| implementation | seconds | GFLOP/s | vs {rows[0][0].split(' (')[0] if rows else '-'} | top-1 agreement |")
    print("|---|---|---|---|---|")
    for name, seconds, top1 in rows:
        print(
            f"| {name} | {seconds:.3f} | {flops / seconds / 1e9:.0f} | {seconds / rows[0][1]:.2f}x | "
            f"{100 * np.mean(top1 == reference):.1f}% |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
