"""Sentence embeddings: one layer's (or several layers') hidden states, pooled over the attention mask.

`SentenceEmbedder` is the model: an NNX module around the encoder whose output is the pooled hidden_states[layer]
of a batch, float32; layers above the highest one asked for are never run. It has no inference loop of its own:
like every other evaluation model it runs through stilts_jax.evaluation.predictor.Predictor, on the run's mesh and
logical sharding rules (parameters sharded over fsdp/tensor where the mesh has those axes; rows sorted by length,
batches cut to power-of-two buckets and split over the batch axes, the next batch dispatched before the last one
is fetched).

`SentenceEncoder` puts the pieces together for callers holding sentences: it tokenizes, builds the module and its
Predictor (on the mesh and rules it is given: the pipeline passes the run's; by default a data-parallel mesh over
every device), and returns float32 embeddings in the input order. With several processes (a TPU pod, multi-host
GPU) every process calls `encode` with the same sentences, each one feeds its own devices' rows of every batch,
and all of them get every embedding back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh
from tqdm.auto import tqdm

from stilts_jax.core.distributed import DEFAULT_LOGICAL_RULES, make_mesh, place
from stilts_jax.core.errors import InputError
from stilts_jax.evaluation.predictor import Predictor, bucket_length
from stilts_jax.models.encoder import Encoder
from stilts_jax.models.pooling import Pooling, pool
from stilts_jax.train.state import ModelSpec

__all__ = ["SentenceEmbedder", "SentenceEncoder", "bucket_length", "default_retrieval_layer"]

# XTREME's retrieval layers: 14 of XLM-R Large's 24, 8 of mBERT's/XLM-R Base's 12.
_RETRIEVAL_LAYER = {24: 14, 12: 8}
POOLINGS = ("mean", "cls")
# Sentences padded into arrays and handed to the Predictor at a time (rounded to whole batches): bounds the host
# memory of the padded arrays for a file of a million sentences; batches are the same as in one call.
_CHUNK_ROWS = 16384


def default_retrieval_layer(num_layers: int) -> int:
    """The hidden-states index XTREME uses for retrieval; the last layer for other depths."""
    return _RETRIEVAL_LAYER.get(num_layers, num_layers)


class SentenceEmbedder(nnx.Module):
    """`__call__(batch)`: float32 [batch, hidden] embeddings of `encoder`'s hidden_states[layer], pooled;
    [batch, len(layer), hidden] when `layer` is a sequence of indices (every one from a single forward pass).

    Args:
      encoder: the NNX encoder (its compute dtype applies); the module's only parameters are the encoder's.
      layer: index into the hidden-states tuple, 0 being the embeddings output, or a sequence of them.
      pooling: 'mean' over the attention mask (<s> and </s> included, XTREME's retrieval representation), or 'cls'.
    """

    def __init__(self, encoder: Encoder, layer: int | Sequence[int], pooling: Pooling = "mean"):
        num_layers = encoder.config.num_hidden_layers
        single = isinstance(layer, (int, np.integer))
        layers = (int(layer),) if isinstance(layer, (int, np.integer)) else tuple(int(index) for index in layer)
        for index in layers:
            if not 0 <= index <= num_layers:
                raise InputError(
                    f"layer {index} is out of range: the model has {num_layers} layers, so valid indices are "
                    f"0 (embeddings output) to {num_layers} (last layer)"
                )
        if not layers:
            raise InputError("no layer to embed")
        if pooling not in POOLINGS:
            raise InputError(f"unknown pooling {pooling!r}; use one of {', '.join(POOLINGS)}")
        self.encoder = encoder
        self.layers = layers
        self.single = single
        self.pooling = pooling

    def __call__(self, batch: Mapping[str, jax.Array]) -> jax.Array:
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        token_type_ids = batch.get("token_type_ids")
        # Layers above the highest one asked for are never run.
        if self.single:
            hidden = self.encoder(input_ids, attention_mask, token_type_ids, num_layers=self.layers[0])
            return pool(hidden.last_hidden_state, attention_mask, self.pooling)
        hidden_states = self.encoder(
            input_ids, attention_mask, token_type_ids, num_layers=max(self.layers), output_hidden_states=True
        ).hidden_states
        assert hidden_states is not None  # output_hidden_states=True
        return jnp.stack([pool(hidden_states[i], attention_mask, self.pooling) for i in self.layers], axis=1)


class SentenceEncoder:
    """Sentences in, embeddings out: tokenization, a `SentenceEmbedder`, and the `Predictor` that runs it.

    Args:
      encoder: the NNX encoder (its compute dtype applies).
      tokenizer: a Hugging Face tokenizer that adds <s> ... </s> (or [CLS] ... [SEP]).
      layer: index into the hidden-states tuple, 0 being the embeddings output (or a sequence of indices).
      pooling: 'mean' over the attention mask, or 'cls'.
      batch_size: sentences per step (rounded up to a multiple of the mesh's batch split).
      max_length: truncation length in tokens, special tokens included.
      mesh, rules: where the model runs: the run's mesh and logical sharding rules (parameters sharded as they say,
        batches split like 'batch'). Default: a data-parallel mesh over `devices` with DEFAULT_LOGICAL_RULES.
      devices: the default mesh's devices (default: every device of every process). A mesh spanning several
        processes means every process must call `encode` with the same sentences, as all of them run each batch.
      length_buckets: the Predictor's (batches cut to the power of two above their longest sentence).
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
        mesh: Mesh | None = None,
        rules: Sequence[tuple[str, Any]] | None = None,
        devices: Sequence[jax.Device] | None = None,
        length_buckets: bool = True,
    ):
        if mesh is not None and devices is not None:
            raise ValueError("pass a mesh or devices to build one from, not both")
        self.model = SentenceEmbedder(encoder, layer, pooling)
        self.tokenizer = tokenizer
        self.layer = layer
        self.max_length = min(max_length, encoder.config.max_sequence_length)
        self._pad_id = encoder.config.pad_token_id
        self.mesh = mesh if mesh is not None else make_mesh({"data": -1}, devices)
        self.rules = tuple(rules) if rules is not None else DEFAULT_LOGICAL_RULES
        spec = ModelSpec(self.model, self.mesh, self.rules)
        self.predictor = Predictor(spec, self.mesh, self.rules, batch_size, length_buckets=length_buckets)
        self.batch_size = self.predictor.batch_size
        # Each process builds its own devices' shards (distributed.place): the encoder's arrays may be committed to
        # one local device, which JAX does not move onto a mesh spanning other hosts.
        self.params = jax.tree.map(place, nnx.to_pure_dict(nnx.state(self.model)), spec.param_shardings)

    def tokenize(self, sentences: Sequence[str]) -> list[list[int]]:
        encoded = self.tokenizer(list(sentences), truncation=True, max_length=self.max_length, padding=False)
        return encoded["input_ids"]

    def _arrays(self, token_ids: list[list[int]], rows: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
        """input_ids and attention_mask of `rows`, right-padded to the bucket of their longest (as the Predictor
        cuts its batches: no shape beyond the power-of-two ones is compiled)."""
        width = bucket_length(int(lengths[rows].max()), self.max_length)
        input_ids = np.full((len(rows), width), self._pad_id, np.int32)
        attention_mask = (np.arange(width)[None, :] < lengths[rows][:, None]).astype(np.int32)
        for row, i in enumerate(rows):
            input_ids[row, : lengths[i]] = token_ids[i]
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def encode(self, sentences: Sequence[str], *, progress: bool = True) -> np.ndarray:
        """float32 [len(sentences), hidden] in the input order; [len(sentences), len(layers), hidden] for several layers."""
        if not sentences:
            raise InputError("no sentences to embed")
        token_ids = self.tokenize(sentences)
        lengths = np.fromiter((len(ids) for ids in token_ids), np.int64, len(token_ids))
        # Sorted here, so that the chunks hold the batches one Predictor call over every sentence would make.
        order = np.argsort(lengths, kind="stable")
        chunk = -(-_CHUNK_ROWS // self.batch_size) * self.batch_size
        out: np.ndarray | None = None
        bar = tqdm(
            total=len(sentences),
            desc="embedding",
            unit="sent",
            disable=not progress or len(sentences) < 2 * self.batch_size or jax.process_index() != 0,
        )
        for start in range(0, len(order), chunk):
            rows = order[start : start + chunk]
            pooled = self.predictor.predict(self.params, self._arrays(token_ids, rows, lengths), bar=bar)
            if out is None:
                out = np.empty((len(sentences), *pooled.shape[1:]), np.float32)
            out[rows] = pooled
        bar.close()
        assert out is not None
        return out
