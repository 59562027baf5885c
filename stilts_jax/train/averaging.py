"""Uniform parameter averaging: the last kept checkpoints of a phase, or the selected models of several runs.

Averaging the weights of the last checkpoints of one run, or of several runs fine-tuned from the same encoder,
improves zero-shot cross-lingual transfer without any target-language dev data (Schmidt et al. 2023, "Free Lunch:
Robust Cross-Lingual Transfer via Model Checkpoint Averaging"). Parameters are summed in float32 one model at a
time (one model and the running sum in memory), then divided by their count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from stilts_jax.core.errors import StiltsError, WeightsError
from stilts_jax.core.paths import PathLike, absolute

STATE_ITEM = "state"  # the checkpoint item train.checkpoints saves the TrainState under


class AveragingError(StiltsError):
    """Models that cannot be averaged: none, or of different structures."""


def kept_steps(directory: PathLike) -> list[int]:
    """The steps of the finished checkpoints in a phase's checkpoint folder (Orbax names each by its step and writes
    it under a temporary name until complete), oldest first."""
    directory = absolute(directory)
    if not directory.exists():
        return []
    steps = [int(p.name) for p in directory.iterdir() if p.name.isdigit() and p.is_dir() and (p / STATE_ITEM).exists()]
    return sorted(steps)


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    def name(path: tuple) -> str:
        return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)

    return {name(p): tuple(x.shape) for p, x in jax.tree_util.tree_leaves_with_path(tree)}


def checkpoint_params(directory: PathLike, step: int, abstract_params: Any) -> Any:
    """The model parameters of one training checkpoint (the `params` of its TrainState; the optimizer state is not
    read), strictly: every path and shape must match `abstract_params` (ShapeDtypeStructs with shardings)."""
    path = absolute(directory) / str(step) / STATE_ITEM
    if not path.exists():
        raise WeightsError(f"no checkpoint of step {step} in {absolute(directory)}")
    checkpointer = ocp.PyTreeCheckpointer()
    try:
        saved_tree = checkpointer.metadata(path).item_metadata.tree
        if not isinstance(saved_tree, dict) or "params" not in saved_tree:
            raise WeightsError(f"{path} holds no training state with params")
        saved, expected = _shapes(saved_tree["params"]), _shapes(abstract_params)
        if saved != expected:  # partial restore could leave a missing parameter untouched: check it all first
            differing = sorted(k for k in set(saved) | set(expected) if saved.get(k) != expected.get(k))
            raise WeightsError(
                f"the checkpoint {path} holds other parameters than this model's: {', '.join(differing[:5])}"
                f"{f' (+{len(differing) - 5} more)' if len(differing) > 5 else ''}. Average checkpoints of the "
                "run that trained this model."
            )
        item = {"params": abstract_params}
        restored = checkpointer.restore(
            path,
            args=ocp.args.PyTreeRestore(
                item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item), partial_restore=True
            ),
        )
    finally:
        checkpointer.close()
    return restored["params"]


@jax.jit
def _add(total: Any, params: Any) -> Any:
    return jax.tree.map(lambda a, b: a + b.astype(jnp.float32), total, params)


def average_params(loaders: Sequence[Callable[[], Any]]) -> Any:
    """The uniform average of the parameter trees the `loaders` return (called one at a time), in the dtype and
    sharding of the first. Trees of different structure or shapes are an AveragingError naming the first difference."""
    if not loaders:
        raise AveragingError("nothing to average: no models were given")
    first = loaders[0]()
    reference = _shapes(first)
    dtypes = jax.tree.map(lambda x: x.dtype, first)
    total = jax.tree.map(lambda x: x.astype(jnp.float32), first)
    for index, load in enumerate(loaders[1:], start=2):
        params = load()
        shapes = _shapes(params)
        if shapes != reference:
            differing = sorted(k for k in set(shapes) | set(reference) if shapes.get(k) != reference.get(k))
            raise AveragingError(
                f"model {index} of {len(loaders)} has other parameters than the first: {', '.join(differing[:5])}; "
                "only models of the same architecture and task head can be averaged"
            )
        total = _add(total, params)
        del params
    count = float(len(loaders))
    return jax.tree.map(lambda x, dtype: (x / count).astype(dtype), total, dtypes)
