"""Batched, jitted sentence embeddings: one layer's hidden states pooled over the attention mask.

Sentences are sorted by length and padded to a few bucket lengths with a fixed batch size, so a whole file
compiles a handful of programs and wastes little work on padding. Batches are split over every device JAX sees;
with several processes (a TPU pod, multi-host GPU) every process calls `encode` on the same sentences, each one
feeds its own devices' rows of every batch, and all of them get every embedding back.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from stilts_jax.distributed import place
from stilts_jax.errors import InputError
from stilts_jax.models.encoder import Encoder
from stilts_jax.models.pooling import Pooling, pool

# XTREME's retrieval layers: 14 of XLM-R Large's 24, 8 of mBERT's/XLM-R Base's 12.
_RETRIEVAL_LAYER = {24: 14, 12: 8}


def default_retrieval_layer(num_layers: int) -> int:
    """The hidden-states index XTREME uses for retrieval; the last layer for other depths."""
    return _RETRIEVAL_LAYER.get(num_layers, num_layers)


def bucket_length(length: int, max_length: int, smallest: int = 16) -> int:
    """The smallest power of two >= length (at least `smallest`), capped at max_length."""
    bucket = smallest
    while bucket < length:
        bucket *= 2
    return min(bucket, max_length)


class SentenceEncoder:
    """Embeds sentences with `encoder`'s hidden_states[layer], pooled.

    Args:
      encoder: the NNX encoder (its compute dtype applies).
      tokenizer: a Hugging Face tokenizer that adds <s> ... </s> (or [CLS] ... [SEP]).
      layer: index into the hidden-states tuple, 0 being the embeddings output.
      pooling: 'mean' over the attention mask, or 'cls'.
      batch_size: sentences per step (rounded up to a multiple of the device count).
      max_length: truncation length in tokens, special tokens included.
      devices: where batches are split (default: every device of every process; then every process must call
        `encode` with the same sentences, as all of them run each batch).
    """

    def __init__(
        self,
        encoder: Encoder,
        tokenizer: Any,
        *,
        layer: int | Sequence[int],
        pooling: Pooling = "mean",
        batch_size: int = 64,
        max_length: int = 512,
        devices: Sequence[jax.Device] | None = None,
    ):
        num_layers = encoder.config.num_hidden_layers
        layers = (layer,) if isinstance(layer, int) else tuple(layer)
        for index in layers:
            if not 0 <= index <= num_layers:
                raise InputError(
                    f"layer {index} is out of range: the model has {num_layers} layers, so valid indices are "
                    f"0 (embeddings output) to {num_layers} (last layer)"
                )
        if not layers:
            raise InputError("no layer to embed")
        self.tokenizer = tokenizer
        self.layer = layer
        self.max_length = min(max_length, encoder.config.max_sequence_length)
        devices = list(devices or jax.devices())
        self.batch_size = -(-batch_size // len(devices)) * len(devices)
        mesh = Mesh(np.array(devices), ("data",))
        self._batch_sharding = NamedSharding(mesh, PartitionSpec("data"))
        replicated = NamedSharding(mesh, PartitionSpec())
        graphdef, state = nnx.split(encoder)
        self._state = place(state, replicated)
        pad_id = encoder.config.pad_token_id

        # Replicated output: every process reads the whole batch's embeddings from its own devices.
        @partial(jax.jit, out_shardings=replicated)
        def embed_batch(state: nnx.State, input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
            model = nnx.merge(graphdef, state)
            # Layers above the highest one asked for are never run.
            if isinstance(layer, int):
                hidden = model(input_ids, attention_mask, num_layers=layer).last_hidden_state
                return pool(hidden, attention_mask, pooling)
            hidden_states = model(input_ids, attention_mask, num_layers=max(layers), output_hidden_states=True).hidden_states
            return jnp.stack([pool(hidden_states[i], attention_mask, pooling) for i in layers], axis=1)

        self._embed_batch = embed_batch
        self._pad_id = pad_id

    def tokenize(self, sentences: Sequence[str]) -> list[list[int]]:
        encoded = self.tokenizer(list(sentences), truncation=True, max_length=self.max_length, padding=False)
        return encoded["input_ids"]

    def encode(self, sentences: Sequence[str], *, progress: bool = True) -> np.ndarray:
        """float32 [len(sentences), hidden] in the input order; [len(sentences), len(layers), hidden] for several layers."""
        if not sentences:
            raise InputError("no sentences to embed")
        token_ids = self.tokenize(sentences)
        order = np.argsort([len(ids) for ids in token_ids], kind="stable")
        out: np.ndarray | None = None
        pending: tuple[np.ndarray, jax.Array] | None = None
        bar = tqdm(total=len(sentences), desc="embedding", unit="sent",
                   disable=not progress or len(sentences) < 2 * self.batch_size or jax.process_index() != 0)

        def collect(index: np.ndarray, result: jax.Array) -> None:
            nonlocal out
            pooled = np.asarray(result)
            if out is None:
                out = np.empty((len(sentences), *pooled.shape[1:]), np.float32)
            out[index] = pooled[: len(index)]
            bar.update(len(index))

        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            length = bucket_length(max(len(token_ids[i]) for i in index), self.max_length)
            input_ids = np.full((self.batch_size, length), self._pad_id, np.int32)
            attention_mask = np.zeros((self.batch_size, length), np.int32)
            for row, i in enumerate(index):
                ids = token_ids[i]
                input_ids[row, : len(ids)] = ids
                attention_mask[row, : len(ids)] = 1
            batch = tuple(place(array, self._batch_sharding) for array in (input_ids, attention_mask))
            result = self._embed_batch(self._state, *batch)
            # Fetch the previous batch only after this one is dispatched, so the device never waits on the host.
            if pending is not None:
                collect(*pending)
            pending = (index, result)
        assert pending is not None
        collect(*pending)
        bar.close()
        assert out is not None
        return out

