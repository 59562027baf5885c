"""Global batches from in-memory features: deterministic per-epoch shuffles, each host feeding its own rows.

The batch of step s is a pure function of (seed, s), so the position in the data is the step number: a resumed
run sees exactly the batches an uninterrupted one would have.

Length grouping (optional): instead of padding every batch to max_length, each batch is cut to a padded width, the
smallest of a few widths (powers of two up to max_length, and max_length) that holds its longest row. Rows of one
width are gathered into the same batches: each epoch's shuffled examples are taken in pools of POOL_BATCHES
batches, sorted by width inside a pool, cut into batches, and the epoch's batches are shuffled again. An epoch still
uses exactly the examples an ungrouped epoch uses, each once, and the plan is still a pure function of (seed, epoch).
Only trailing padding is removed: every array shaped like attention_mask is cut on its last axis.
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


SMALLEST_WIDTH = 16  # the narrowest padded width of a length-grouped batch
POOL_BATCHES = 64  # batches pooled (and sorted by width) at a time when grouping by length
_BATCH_ORDER_SALT = 0x4C454E  # the epoch's grouped batches are shuffled with rng (seed, epoch, salt)


def padded_widths(max_length: int, smallest: int = SMALLEST_WIDTH) -> list[int]:
    """The widths a length-grouped batch may have: powers of two from `smallest` below max_length, and max_length."""
    widths, width = [], smallest
    while width < max_length:
        widths.append(width)
        width *= 2
    return [*widths, max_length]


def row_lengths(attention_mask: np.ndarray) -> np.ndarray:
    """Each example's real length: its attention-mask sum (the longest choice's for [examples, choices, length])."""
    mask = attention_mask.reshape(len(attention_mask), -1, attention_mask.shape[-1])
    return mask.sum(-1).max(-1)


def _check_right_padded(attention_mask: np.ndarray, lengths: np.ndarray) -> None:
    mask = attention_mask.reshape(len(attention_mask), -1, attention_mask.shape[-1])
    own = mask.sum(-1)
    if not np.array_equal(mask > 0, np.arange(mask.shape[-1]) < own[..., None]):
        raise StiltsError(
            "train.length_grouping needs right-padded features (attention_mask 1...1 0...0 in every row); "
            "these are padded elsewhere: set --config.<phase>.train.length_grouping=false"
        )


class BatchFeeder:
    """Serves `[micro_batches, micro_batch_size, ...]` global arrays for each training step.

    Args:
      features: name -> array [num_examples, ...], the same on every host.
      global_batch_size: examples per optimizer step, over all hosts and micro-batches.
      micro_batches: gradient-accumulation steps; must divide global_batch_size.
      seed: shuffling seed; epoch e uses the permutation drawn from (seed, e).
      transform: optional `(global batch, step) -> global batch` applied on the host before sharding (e.g. MLM's
        dynamic masking); it must be a pure function of its arguments and keep every name and shape.
      length_grouping: cut each batch to a padded width and group rows of one width (module docstring). Needs an
        `attention_mask`; features without one (a dual encoder's query_/candidate_ arrays) are fed at full width.
      smallest_width: the narrowest padded width when grouping.
    """

    def __init__(
        self,
        features: dict[str, np.ndarray],
        global_batch_size: int,
        micro_batches: int,
        seed: int,
        mesh: Mesh,
        rules: Any,
        transform: Callable[[dict[str, np.ndarray], int], dict[str, np.ndarray]] | None = None,
        length_grouping: bool = False,
        smallest_width: int = SMALLEST_WIDTH,
    ):
        sizes = {name: len(array) for name, array in features.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"features have different numbers of examples: {sizes}")
        self.features = features
        self.num_examples = next(iter(sizes.values()))
        if global_batch_size % micro_batches:
            raise StiltsError(
                f"global batch size {global_batch_size} is not divisible by micro_batches {micro_batches}"
            )
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
        self.length_grouping = length_grouping and "attention_mask" in features
        self.row_widths: np.ndarray | None = None  # each example's padded width, when grouping
        self.sequence_names: tuple[str, ...] = ()  # the arrays cut on their last axis, when grouping
        self._plan_cache: tuple[int, np.ndarray, np.ndarray] | None = None
        if self.length_grouping:
            mask = features["attention_mask"]
            lengths = row_lengths(mask)
            _check_right_padded(mask, lengths)
            self.widths = padded_widths(mask.shape[-1], smallest_width)
            self.row_widths = np.asarray(self.widths, np.int32)[np.searchsorted(self.widths, np.maximum(lengths, 1))]
            self.sequence_names = tuple(name for name, array in features.items() if array.shape == mask.shape)

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            self._epoch_cache = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.num_examples))
        return self._epoch_cache[1]

    def _grouped_plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """The epoch's batches when grouping by length: [steps, batch] example indices and each batch's width."""
        if self._plan_cache is None or self._plan_cache[0] != epoch:
            assert self.row_widths is not None
            used = self._permutation(epoch)[: self.steps_per_epoch * self.global_batch_size]
            pool = POOL_BATCHES * self.global_batch_size
            pools = [used[start : start + pool] for start in range(0, len(used), pool)]
            grouped = np.concatenate([rows[np.argsort(self.row_widths[rows], kind="stable")] for rows in pools])
            batches = grouped.reshape(self.steps_per_epoch, self.global_batch_size)
            order = np.random.default_rng([self.seed, epoch, _BATCH_ORDER_SALT]).permutation(self.steps_per_epoch)
            batches = batches[order]
            self._plan_cache = (epoch, batches, self.row_widths[batches].max(axis=1))
        return self._plan_cache[1], self._plan_cache[2]

    def example_indices(self, step: int) -> np.ndarray:
        """Indices of the examples in step's global batch (the remainder of each epoch is dropped)."""
        epoch, index = divmod(step, self.steps_per_epoch)
        if self.length_grouping:
            return self._grouped_plan(epoch)[0][index]
        start = index * self.global_batch_size
        return self._permutation(epoch)[start : start + self.global_batch_size]

    def batch_width(self, step: int) -> int | None:
        """The padded width step's batch is cut to (None: the features' own width, without length grouping)."""
        if not self.length_grouping:
            return None
        epoch, index = divmod(step, self.steps_per_epoch)
        return int(self._grouped_plan(epoch)[1][index])

    def global_batch(self, step: int) -> dict[str, np.ndarray]:
        """Step's whole global batch on the host, [global_batch_size, ...] per feature (transformed if asked)."""
        indices = self.example_indices(step)
        arrays = {name: array[indices] for name, array in self.features.items()}
        width = self.batch_width(step)
        if width is not None:
            arrays.update({name: np.ascontiguousarray(arrays[name][..., :width]) for name in self.sequence_names})
        if self.transform is None:
            return arrays
        transformed = self.transform(arrays, step)
        changed = {
            name: (arrays[name].shape, transformed.get(name, np.zeros(0)).shape)
            for name in arrays
            if name not in transformed or transformed[name].shape != arrays[name].shape
        }
        if changed or set(transformed) != set(arrays):
            raise ValueError(
                f"the batch transform must keep every feature's name and shape; changed: {changed}, "
                f"names {sorted(arrays)} -> {sorted(transformed)}"
            )
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

    def position(self, step: int) -> dict[str, Any]:
        epoch, index = divmod(step, self.steps_per_epoch)
        position: dict[str, Any] = {
            "step": step,
            "epoch": epoch,
            "batch_in_epoch": index,
            "seed": self.seed,
            "num_examples": self.num_examples,
            "global_batch_size": self.global_batch_size,
        }
        if self.length_grouping:  # recorded only when on: checkpoints written before the option still match
            position["length_grouping"] = {"widths": list(self.widths), "pool_batches": POOL_BATCHES}
        return position

    def check_position(self, saved: dict[str, Any], step: int) -> None:
        """Refuse to resume on data that would not reproduce the checkpoint's batches."""
        expected = self.position(step)
        expected.setdefault("length_grouping", None)
        changed = {k: (saved.get(k), v) for k, v in expected.items() if saved.get(k) != v}
        if changed:
            detail = ", ".join(f"{k}: checkpoint {a}, now {b}" for k, (a, b) in changed.items())
            raise DataPositionError(
                f"the checkpoint at step {step} was written for other training data or settings ({detail}); "
                "use a new workdir, or restore the original data and settings"
            )
