"""Global batches from in-memory features: deterministic per-epoch shuffles, each host feeding its own rows.

The batch of step s is a pure function of (seed, s), so the position in the data is the step number: a resumed
run sees exactly the batches an uninterrupted one would have.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from stilts_jax.core.distributed import batch_shard_count, batch_sharding, process_local_rows
from stilts_jax.core.errors import StiltsError


class DataPositionError(StiltsError):
    pass


class BatchFeeder:
    """Serves `[micro_batches, micro_batch_size, ...]` global arrays for each training step.

    Args:
      features: name -> array [num_examples, ...], the same on every host.
      global_batch_size: examples per optimizer step, over all hosts and micro-batches.
      micro_batches: gradient-accumulation steps; must divide global_batch_size.
      seed: shuffling seed; epoch e uses the permutation drawn from (seed, e).
      transform: optional `(global batch, step) -> global batch` applied on the host before sharding (e.g. MLM's
        dynamic masking); it must be a pure function of its arguments and keep every name and shape.
    """

    def __init__(self, features: dict[str, np.ndarray], global_batch_size: int, micro_batches: int, seed: int,
                 mesh: Mesh, rules: Any,
                 transform: Callable[[dict[str, np.ndarray], int], dict[str, np.ndarray]] | None = None):
        sizes = {name: len(array) for name, array in features.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"features have different numbers of examples: {sizes}")
        self.features = features
        self.num_examples = next(iter(sizes.values()))
        if global_batch_size % micro_batches:
            raise StiltsError(f"global batch size {global_batch_size} is not divisible by micro_batches {micro_batches}")
        self.global_batch_size = global_batch_size
        self.micro_batches = micro_batches
        self.micro_batch_size = global_batch_size // micro_batches
        self.steps_per_epoch = self.num_examples // global_batch_size
        if self.steps_per_epoch == 0:
            raise StiltsError(
                f"global batch size {global_batch_size} is larger than the {self.num_examples} training examples; "
                "lower the batch size"
            )
        self.seed = seed
        batch_shards = batch_shard_count(mesh, rules)
        if self.micro_batch_size % batch_shards:
            raise StiltsError(
                f"micro-batch size {self.micro_batch_size} (global batch {global_batch_size} / {micro_batches} micro-batches) "
                f"does not split over the {batch_shards} batch shards of the mesh; make it a multiple of {batch_shards}"
            )
        self.shardings = {
            name: batch_sharding(mesh, rules, ndim=array.ndim + 1, leading=1) for name, array in features.items()
        }
        self.transform = transform
        self._epoch_cache: tuple[int, np.ndarray] | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            self._epoch_cache = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.num_examples))
        return self._epoch_cache[1]

    def example_indices(self, step: int) -> np.ndarray:
        """Indices of the examples in step's global batch (the remainder of each epoch is dropped)."""
        epoch, index = divmod(step, self.steps_per_epoch)
        start = index * self.global_batch_size
        return self._permutation(epoch)[start : start + self.global_batch_size]

    def global_batch(self, step: int) -> dict[str, np.ndarray]:
        """Step's whole global batch on the host, [global_batch_size, ...] per feature (transformed if asked)."""
        indices = self.example_indices(step)
        arrays = {name: array[indices] for name, array in self.features.items()}
        if self.transform is None:
            return arrays
        transformed = self.transform(arrays, step)
        changed = {name: (arrays[name].shape, transformed.get(name, np.zeros(0)).shape) for name in arrays
                   if name not in transformed or transformed[name].shape != arrays[name].shape}
        if changed or set(transformed) != set(arrays):
            raise ValueError(f"the batch transform must keep every feature's name and shape; changed: {changed}, "
                             f"names {sorted(arrays)} -> {sorted(transformed)}")
        return transformed

    def batch(self, step: int) -> dict[str, jax.Array]:
        out = {}
        for name, array in self.global_batch(step).items():
            sharding = self.shardings[name]
            shape = (self.micro_batches, self.micro_batch_size, *array.shape[1:])
            rows = process_local_rows(sharding, shape, axis=1)
            local = array.reshape(shape)[:, rows]
            out[name] = jax.make_array_from_process_local_data(sharding, local, shape)
        return out

    def position(self, step: int) -> dict[str, int]:
        epoch, index = divmod(step, self.steps_per_epoch)
        return {
            "step": step, "epoch": epoch, "batch_in_epoch": index, "seed": self.seed,
            "num_examples": self.num_examples, "global_batch_size": self.global_batch_size,
        }

    def check_position(self, saved: dict[str, int], step: int) -> None:
        """Refuse to resume on data that would not reproduce the checkpoint's batches."""
        expected = self.position(step)
        changed = {k: (saved.get(k), v) for k, v in expected.items() if saved.get(k) != v}
        if changed:
            detail = ", ".join(f"{k}: checkpoint {a}, now {b}" for k, (a, b) in changed.items())
            raise DataPositionError(
                f"the checkpoint at step {step} was written for other training data or settings ({detail}); "
                "use a new workdir, or restore the original data and settings"
            )
