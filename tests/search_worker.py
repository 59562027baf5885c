"""One process of a multi-process search (tests/test_search_processes.py): searches random data over a mesh of
every process's devices and writes what it got, and how much of the database its own devices hold, as JSON.

    python -m tests.search_worker OUT.json [--coordinator HOST:PORT --processes N --process-id I]
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((300, 32)).astype(np.float32), rng.standard_normal((1001, 32)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("output")
    parser.add_argument("--coordinator")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    args = parser.parse_args()

    from stilts_jax.core import distributed

    distributed.initialize(args.coordinator, args.processes, args.process_id, auto=False)
    import jax

    from stilts_jax.evaluation.search import NearestNeighbors, mine_max, ratio_margin

    queries, database = data()
    index = NearestNeighbors(database, chunk_size=128, block_rows=100)
    found = index.search(queries, 5)
    margins = ratio_margin(queries, database, 4, chunk_size=128)
    held = sum(shard.data.shape[0] for shard in index._database.addressable_shards)
    with open(args.output, "w") as f:
        json.dump(
            {
                "devices": jax.device_count(),
                "local_devices": jax.local_device_count(),
                "rows_held_here": held,
                "padded_rows": index._database.shape[0],
                "indices": found.indices.tolist(),
                "scores": found.scores.tolist(),
                "forward_margin": margins.forward_margin.tolist(),
                "pairs": [list(p) for p in mine_max(margins)],
            },
            f,
        )


if __name__ == "__main__":
    main()
