"""Jitted, batched forward passes for evaluation: fixed-shape batches over the mesh, padding masked out.

The project's one inference engine: every task's evaluation and the sentence embeddings of retrieval
(stilts_jax.evaluation.embedding's SentenceEmbedder) run through `Predictor`, on the run's mesh and logical sharding rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from stilts_jax.core.distributed import batch_shard_count, batch_sharding, process_local_rows
from stilts_jax.train.state import ModelSpec

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "choice_mask")
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # last axis: the sequence
# What a per-token output holds past a bucket's end once padded back to the full width: the value SpanHead gives
# padded positions, so that span selection never picks them; tagging reads first sub-words only.
PADDED_LOGIT = -1e9


def bucket_length(length: int, max_length: int, smallest: int = 16) -> int:
    """The smallest power of two >= length (at least `smallest`), capped at max_length."""
    bucket = smallest
    while bucket < length:
        bucket *= 2
    return min(bucket, max_length)


def bucket_plan(lengths: np.ndarray, batch_size: int, width: int) -> list[tuple[np.ndarray, int]]:
    """(rows, sequence length) per batch: rows sorted by length, each batch cut to `bucket_length` of its longest.

    A right-padded row's length is its attention-mask sum (the longest choice for multiple choice), so the cut
    drops padding only; the outputs of a real token do not depend on how much padding follows it.
    """
    order = np.argsort(lengths, kind="stable")
    plan = []
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        plan.append((rows, bucket_length(int(max(1, lengths[rows].max())), width)))
    return plan


class Predictor:
    """`predict(params, arrays)` runs the model on every row of `arrays`, `batch_size` rows per step.

    The model is `spec`'s (any NNX module whose `__call__(batch)` takes a dict of MODEL_INPUTS arrays), its
    parameters laid out as `spec.param_shardings` say (the run's mesh and rules: sharded over fsdp/tensor when those
    axes are larger than 1); each batch is split over the mesh axes the 'batch' rule names (`batch_size` is rounded
    up to a multiple of that split).

    With `length_buckets` (the default) rows are sorted by length and each batch is cut to the power of two above
    its longest row (at least 16 tokens, at most the arrays' width), so short sentences do not pay for the longest
    one's padding: a few compiled shapes instead of one. Outputs come back in the input order, per-token outputs
    padded back to the full width (with PADDED_LOGIT), in the model's output dtype. The last batch is padded with
    empty rows whose outputs are dropped. A batch is dispatched before the previous one's outputs are fetched, so
    the device does not wait on the host.

    Several processes (a TPU pod, multi-host GPU): every process calls `predict` with the same arrays, each one
    feeds only its own devices' rows of every batch, and outputs come back replicated, so every process gets all
    of them.
    """

    def __init__(
        self,
        spec: ModelSpec,
        mesh: Mesh,
        rules: Sequence[tuple[str, Any]],
        batch_size: int,
        *,
        length_buckets: bool = True,
    ):
        shards = batch_shard_count(mesh, rules)
        self.batch_size = -(-batch_size // shards) * shards
        self.mesh, self.rules = mesh, rules
        self.length_buckets = length_buckets
        self._output_shapes: dict[tuple, tuple[int, ...]] = {}
        replicated = NamedSharding(mesh, PartitionSpec())

        def forward(params: Any, batch: dict[str, jax.Array]) -> jax.Array:
            with spec.logical_constraints():
                return spec.merge(params)(batch)

        self._forward = jax.jit(forward, out_shardings=replicated)

    def _output_shape(self, params: Any, inputs: dict[str, np.ndarray]) -> tuple[int, ...]:
        """The output shape of a full-width batch (traced once per input layout: tracing a large model takes seconds)."""
        layout = tuple((k, v.shape[1:], v.dtype.str) for k, v in sorted(inputs.items()))
        if layout not in self._output_shapes:
            full_width = {k: jax.ShapeDtypeStruct((self.batch_size, *v.shape[1:]), v.dtype) for k, v in inputs.items()}
            self._output_shapes[layout] = jax.eval_shape(self._forward, params, full_width).shape
        return self._output_shapes[layout]

    def _plan(self, inputs: dict[str, np.ndarray], total: int) -> list[tuple[np.ndarray, int]]:
        mask = inputs.get("attention_mask")
        width = mask.shape[-1] if mask is not None else 0
        if not self.length_buckets or mask is None:
            return [
                (np.arange(start, min(start + self.batch_size, total)), width)
                for start in range(0, total, self.batch_size)
            ]
        lengths = mask.reshape(total, -1, width).sum(-1).max(-1)
        return bucket_plan(lengths, self.batch_size, width)

    def _device_batch(self, inputs: dict[str, np.ndarray], rows: np.ndarray, length: int) -> dict[str, jax.Array]:
        batch = {}
        for name, array in inputs.items():
            part = array[rows][..., :length] if name in TOKEN_INPUTS else array[rows]
            chunk = np.zeros((self.batch_size, *part.shape[1:]), array.dtype)
            chunk[: len(rows)] = part
            sharding = batch_sharding(self.mesh, self.rules, ndim=array.ndim)
            batch[name] = jax.make_array_from_process_local_data(
                sharding, chunk[process_local_rows(sharding, chunk.shape)], chunk.shape
            )
        return batch

    def predict(
        self,
        params: Any,
        arrays: dict[str, np.ndarray],
        *,
        desc: str = "predict",
        progress: bool = True,
        bar: tqdm | None = None,
    ) -> np.ndarray:
        """The outputs of every row of `arrays` (their MODEL_INPUTS entries), in the input order.

        bar: an open progress bar to advance by the rows done (one bar over several calls); it is left open.
        Otherwise a bar of its own, shown with `progress` (on process 0 only).
        """
        inputs = {k: v for k, v in arrays.items() if k in MODEL_INPUTS}
        total = len(next(iter(inputs.values())))
        if total == 0:
            return np.zeros((0,))
        plan = self._plan(inputs, total)
        full_shape = self._output_shape(params, inputs)
        outputs: np.ndarray | None = None
        own_bar = bar is None
        if bar is None:
            bar = tqdm(total=total, desc=desc, unit="ex", disable=not progress or jax.process_index() != 0, leave=False)

        def collect(result: jax.Array, rows: np.ndarray) -> None:
            nonlocal outputs
            out = np.asarray(result)[: len(rows)]
            gaps = [(0, 0)] + [(0, full - got) for full, got in zip(full_shape[1:], out.shape[1:])]
            if any(after for _, after in gaps):  # a per-token output of a cut batch: back to the full width
                out = np.pad(out, gaps, constant_values=PADDED_LOGIT)
            if outputs is None:
                outputs = np.empty((total, *out.shape[1:]), out.dtype)
            outputs[rows] = out
            bar.update(len(rows))

        pending = None
        for rows, length in plan:
            result = self._forward(params, self._device_batch(inputs, rows, length))
            if pending is not None:  # fetch the previous batch while this one runs
                collect(*pending)
            pending = (result, rows)
        assert pending is not None  # total > 0: the plan has a batch
        collect(*pending)
        if own_bar:
            bar.close()
        assert outputs is not None
        return outputs
