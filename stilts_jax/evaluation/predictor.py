"""Jitted, batched forward passes for evaluation: fixed-shape batches over the mesh, padding masked out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from stilts_jax.distributed import batch_shard_count, batch_sharding, process_local_rows
from stilts_jax.train.state import ModelSpec

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "choice_mask")


class Predictor:
    """`predict(params, arrays)` runs the model on every row of `arrays`, `batch_size` rows per step.

    The last batch is padded with empty rows whose outputs are dropped; outputs come back replicated, so every
    process of a multi-host run gets all of them.
    """

    def __init__(self, spec: ModelSpec, mesh: Mesh, rules: Sequence[tuple[str, Any]], batch_size: int):
        shards = batch_shard_count(mesh, rules)
        self.batch_size = -(-batch_size // shards) * shards
        self.mesh, self.rules = mesh, rules
        replicated = NamedSharding(mesh, PartitionSpec())

        def forward(params: Any, batch: dict[str, jax.Array]) -> jax.Array:
            return spec.merge(params)(batch)

        self._forward = jax.jit(forward, out_shardings=replicated)

    def predict(self, params: Any, arrays: dict[str, np.ndarray], *, desc: str = "predict", progress: bool = True) -> np.ndarray:
        inputs = {k: v for k, v in arrays.items() if k in MODEL_INPUTS}
        total = len(next(iter(inputs.values())))
        outputs: list[np.ndarray] = []
        pending = None
        bar = tqdm(total=total, desc=desc, unit="ex", disable=not progress or jax.process_index() != 0, leave=False)
        for start in range(0, total, self.batch_size):
            count = min(self.batch_size, total - start)
            batch = {}
            for name, array in inputs.items():
                chunk = np.zeros((self.batch_size, *array.shape[1:]), array.dtype)
                chunk[:count] = array[start : start + count]
                sharding = batch_sharding(self.mesh, self.rules, ndim=array.ndim)
                batch[name] = jax.make_array_from_process_local_data(sharding, chunk[process_local_rows(sharding, chunk.shape)], chunk.shape)
            result = self._forward(params, batch)
            if pending is not None:  # fetch the previous batch while this one runs
                outputs.append(np.asarray(pending[0])[: pending[1]])
                bar.update(pending[1])
            pending = (result, count)
        if pending is not None:
            outputs.append(np.asarray(pending[0])[: pending[1]])
            bar.update(pending[1])
        bar.close()
        return np.concatenate(outputs) if outputs else np.zeros((0,))

