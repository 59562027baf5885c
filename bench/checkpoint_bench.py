"""How long the training thread is blocked by checkpointing: manifests hashed inline against in the background.

    python bench/checkpoint_bench.py                        # XLM-R large's parameters (560M, float32), 3 saves
    python bench/checkpoint_bench.py --moments              # with both Adam moments (1.68B floats, 6.7 GB)
    python bench/checkpoint_bench.py --model base --saves 2 --steps 4

A state with the parameter shapes of the chosen encoder (random values; with --moments also two moment trees of
the same shapes) is saved with `stilts_jax.train.checkpoints.Checkpoints` exactly as the training loop does it:
between two saves, `--steps` steps of CPU work (a jitted matmul chain standing in for the train step), each followed
by `record_finished()` (the loop calls it at every log line), then `save()`; `close()` at the end. Each mode runs
in a fresh folder, one after the other in the same process:

- inline: `background_manifests=False`, the manifests' CRC32s computed on the calling thread (the old behaviour);
- background: the default, the CRC32s computed on a background thread.

The table gives the seconds the calling thread spent inside `save()` and `record_finished()` per save, the work
steps' time (the background hashing competes with them for the CPU), and `close()`, which waits for the last save
and its manifest.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common


def random_state(model: str, moments: bool, seed: int) -> tuple[dict[str, Any], int]:
    """A pure dict of float32 arrays in the encoder's parameter shapes (and two moment copies), and its float count."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from stilts_jax.models.encoder import Encoder

    config = common.model_config(model)
    abstract = nnx.to_pure_dict(nnx.state(nnx.eval_shape(lambda: Encoder(config, rngs=nnx.Rngs(0)))))
    leaves, treedef = jax.tree.flatten(abstract)
    keys = jax.random.split(jax.random.key(seed), len(leaves) * (3 if moments else 1))

    def fill(i: int, leaf: Any) -> jax.Array:
        return jax.random.normal(keys[i], leaf.shape, jnp.float32)

    params = jax.tree.unflatten(treedef, [fill(i, x) for i, x in enumerate(leaves)])
    state: dict[str, Any] = {"params": params}
    if moments:
        n = len(leaves)
        state["mu"] = jax.tree.unflatten(treedef, [fill(n + i, x) for i, x in enumerate(leaves)])
        state["nu"] = jax.tree.unflatten(treedef, [fill(2 * n + i, x) for i, x in enumerate(leaves)])
    jax.block_until_ready(state)
    count = sum(x.size for x in jax.tree.leaves(state))
    return state, count


def run_mode(background: bool, state: Any, folder: Path, saves: int, steps: int, work) -> dict[str, Any]:
    from stilts_jax.train.checkpoints import Checkpoints

    checkpoints = Checkpoints(folder / "checkpoints", keep_last=2, keep_best=0, background_manifests=background)
    save_s, record_s, step_s = [], [], []
    start = time.perf_counter()
    for save in range(1, saves + 1):
        recorded = 0.0
        for _ in range(steps):
            t = time.perf_counter()
            work()
            step_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            checkpoints.record_finished()
            recorded += time.perf_counter() - t
        record_s.append(recorded)
        t = time.perf_counter()
        checkpoints.save(save * steps, state, {"step": save * steps})
        save_s.append(time.perf_counter() - t)
    t = time.perf_counter()
    checkpoints.close()
    close_s = time.perf_counter() - t
    total = time.perf_counter() - start
    manifests = sorted(int(p.stem) for p in (folder / "checkpoints_manifests").glob("*.json"))
    kept = checkpoints.all_steps()
    if manifests != kept:
        raise SystemExit(f"manifests {manifests} do not match the kept checkpoints {kept}")
    return {
        "save_s": save_s,
        "record_s": record_s,
        "step_s": step_s,
        "close_s": close_s,
        "total_s": total,
        "manifests": manifests,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=common.MODELS, default="large", help="parameter shapes (default: large)")
    parser.add_argument("--moments", action="store_true", help="also save two Adam-moment trees (3x the bytes)")
    parser.add_argument("--saves", type=int, default=3, help="saves per mode (default: 3)")
    parser.add_argument("--steps", type=int, default=10, help="work steps between saves (default: 10)")
    parser.add_argument("--work-size", type=int, default=1024, help="matmul size of a work step (default: 1024)")
    parser.add_argument("--work-matmuls", type=int, default=60, help="matmuls per work step (default: 60)")
    parser.add_argument("--modes", nargs="+", choices=("inline", "background"), default=["inline", "background"])
    parser.add_argument("--dir", default=None, help="where the checkpoints are written (default: a temporary folder)")
    args = parser.parse_args(argv)

    import jax
    import jax.numpy as jnp

    for line in common.environment_lines(torch_needed=False):
        print(line)
    state, floats = random_state(args.model, args.moments, 0)
    what = "parameters and two Adam moments" if args.moments else "parameters only"
    print(
        f"state: XLM-R {args.model} shapes, {what}: {floats / 1e6:.0f}M float32 ({common.fmt_bytes(4 * floats)}); "
        f"{args.saves} saves, {args.steps} work steps before each"
    )

    a = jnp.ones((args.work_size, args.work_size), jnp.float32) / args.work_size

    @jax.jit
    def chain(x: jax.Array) -> jax.Array:
        for _ in range(args.work_matmuls):
            x = jnp.tanh(x @ a)
        return x

    x0 = jnp.ones((args.work_size, args.work_size), jnp.float32)
    jax.block_until_ready(chain(x0))

    def work() -> None:
        jax.block_until_ready(chain(x0))

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="checkpoint_bench_"))
    rows = []
    try:
        for mode in args.modes:
            folder = root / mode
            shutil.rmtree(folder, ignore_errors=True)
            result = run_mode(mode == "background", state, folder, args.saves, args.steps, work)
            shutil.rmtree(folder, ignore_errors=True)
            blocked = [s + r for s, r in zip(result["save_s"], result["record_s"])]
            rows.append(
                [
                    mode,
                    " / ".join(f"{s:.2f}" for s in result["save_s"]),
                    " / ".join(f"{s:.2f}" for s in result["record_s"]),
                    f"{statistics.median(blocked[1:] or blocked):.2f}",
                    f"{statistics.median(result['step_s']):.3f} (max {max(result['step_s']):.3f})",
                    f"{result['close_s']:.2f}",
                    f"{result['total_s']:.1f}",
                ]
            )
            print(f"{mode}: done, manifests of steps {result['manifests']}", flush=True)
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(
        common.markdown_table(
            [
                "manifests",
                "save() per save (s)",
                "record_finished() before each save (s)",
                "blocked per save, median after the first (s)",
                "work step (s)",
                "close() (s)",
                "total (s)",
            ],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
