"""Task heads on top of the encoder, and the encoder+head model every phase trains.

The encoder is one attribute (`model.encoder`) and the head another (`model.head`): the phase hand-off carries
the encoder's parameters to a new model and leaves its freshly initialised head alone.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from stilts_jax.models.encoder import EMBED, MLP, VOCAB, Encoder, LayerNorm, dropout, make_param


class ClassificationHead(nnx.Module):
    """RoBERTa's sentence classification head on the first token: dropout, dense, tanh, dropout, projection."""

    def __init__(self, hidden_size: int, num_classes: int, dropout_rate: float = 0.1, *, rngs: nnx.Rngs):
        self.dropout_rate = dropout_rate
        with nnx.use_eager_sharding(False):
            self.dense = make_param(rngs, (hidden_size, hidden_size), ("embed", "mlp"), "normal")
            self.dense_bias = make_param(rngs, (hidden_size,), ("mlp",), "zeros")
            self.output = make_param(rngs, (hidden_size, num_classes), ("mlp", "classes"), "normal")
            self.output_bias = make_param(rngs, (num_classes,), ("classes",), "zeros")

    def __call__(self, hidden: jax.Array, attention_mask: jax.Array, rng: jax.Array | None) -> jax.Array:
        rng_in, rng_out = (None, None) if rng is None else jax.random.split(rng)
        x = dropout(hidden[:, 0].astype(jnp.float32), self.dropout_rate, rng_in)
        x = jnp.tanh(x @ self.dense[...] + self.dense_bias[...])
        x = dropout(x, self.dropout_rate, rng_out)
        return x @ self.output[...] + self.output_bias[...]  # float32 logits


class TaskModel(nnx.Module):
    """Encoder plus one task head. `__call__` takes a batch dict with input_ids, attention_mask (token_type_ids)."""

    def __init__(self, encoder: Encoder, head: nnx.Module):
        self.encoder = encoder
        self.head = head

    def __call__(self, batch: dict[str, Any], *, dropout_rng: jax.Array | None = None) -> jax.Array:
        """Head outputs for [batch, seq] inputs; for multiple choice ([batch, choices, seq]) one score per choice."""
        rng_encoder, rng_head = (None, None) if dropout_rng is None else jax.random.split(dropout_rng)
        input_ids, mask, types = batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")
        choices = input_ids.shape[1] if input_ids.ndim == 3 else None
        if choices is not None:  # every choice is its own sequence

            def flat(x: jax.Array) -> jax.Array:
                return x.reshape(-1, x.shape[-1])

            input_ids, mask, types = flat(input_ids), flat(mask), None if types is None else flat(types)
        hidden = self.encoder(input_ids, mask, types, dropout_rng=rng_encoder).last_hidden_state
        out = self.head(hidden, mask, rng_head)
        if choices is not None:
            out = out.reshape(-1, choices)
            if "choice_mask" in batch:  # fewer real choices than the batch's width
                out = jnp.where(batch["choice_mask"] > 0, out, -1e9)
        return out


def classification_loss(
    model: TaskModel, batch: dict[str, Any], dropout_rng: jax.Array | None
) -> tuple[jax.Array, jax.Array]:
    """Summed float32 cross-entropy over the examples whose `weight` is 1, and their count."""
    logits = model(batch, dropout_rng=dropout_rng)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
    nll = -jnp.take_along_axis(log_probs, batch["labels"][:, None], axis=-1)[:, 0]
    weight = batch.get("weight", jnp.ones_like(nll)).astype(jnp.float32)
    return jnp.sum(nll * weight), jnp.sum(weight)


class SpanHead(nnx.Module):
    """Extractive QA: a start and an end logit for every token (padding masked out)."""

    def __init__(self, hidden_size: int, *, rngs: nnx.Rngs):
        with nnx.use_eager_sharding(False):
            self.output = make_param(rngs, (hidden_size, 2), ("embed", None), "normal")
            self.output_bias = make_param(rngs, (2,), (None,), "zeros")

    def __call__(self, hidden: jax.Array, attention_mask: jax.Array, rng: jax.Array | None) -> jax.Array:
        logits = hidden.astype(jnp.float32) @ self.output[...] + self.output_bias[...]
        return jnp.where(attention_mask[..., None] > 0, logits, -1e9)  # [batch, seq, 2] float32


def span_loss(model: TaskModel, batch: dict[str, Any], dropout_rng: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """Mean of start and end cross-entropy per example, summed over the examples whose `weight` is 1."""
    logits = model(batch, dropout_rng=dropout_rng)
    log_start = jax.nn.log_softmax(logits[..., 0], axis=-1)
    log_end = jax.nn.log_softmax(logits[..., 1], axis=-1)
    nll_start = -jnp.take_along_axis(log_start, batch["start_positions"][:, None], axis=-1)[:, 0]
    nll_end = -jnp.take_along_axis(log_end, batch["end_positions"][:, None], axis=-1)[:, 0]
    weight = batch.get("weight", jnp.ones_like(nll_start)).astype(jnp.float32)
    return jnp.sum(0.5 * (nll_start + nll_end) * weight), jnp.sum(weight)


class TaggingHead(nnx.Module):
    """Token tagging: dropout, then one logit per tag for every token."""

    def __init__(self, hidden_size: int, num_tags: int, dropout_rate: float = 0.1, *, rngs: nnx.Rngs):
        self.dropout_rate = dropout_rate
        with nnx.use_eager_sharding(False):
            self.output = make_param(rngs, (hidden_size, num_tags), ("embed", "classes"), "normal")
            self.output_bias = make_param(rngs, (num_tags,), ("classes",), "zeros")

    def __call__(self, hidden: jax.Array, attention_mask: jax.Array, rng: jax.Array | None) -> jax.Array:
        x = dropout(hidden.astype(jnp.float32), self.dropout_rate, rng)
        return x @ self.output[...] + self.output_bias[...]  # [batch, seq, tags] float32


def tagging_loss(model: TaskModel, batch: dict[str, Any], dropout_rng: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """Cross-entropy summed over the labelled tokens (first sub-word of each word; others carry -100), and their count."""
    logits = model(batch, dropout_rng=dropout_rng)
    labels = batch["labels"]
    labelled = (labels >= 0).astype(jnp.float32)
    if "weight" in batch:
        labelled = labelled * batch["weight"][:, None]
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(log_probs, jnp.maximum(labels, 0)[..., None], axis=-1)[..., 0]
    return jnp.sum(nll * labelled), jnp.sum(labelled)


class MaskedLMHead(nnx.Module):
    """XLM-R's `lm_head` (BERT's `cls.predictions`): dense, GELU, LayerNorm, then the decoder tied to the encoder's word
    embeddings plus a bias of its own. Logits are computed only at the given positions (the masked ones): a full
    [batch, seq, 250k] logit tensor would dwarf the model's activations.
    """

    def __init__(
        self,
        hidden_size: int,
        vocab_size: int,
        layer_norm_eps: float = 1e-5,
        activation: str = "gelu",
        *,
        rngs: nnx.Rngs,
    ):
        if activation not in ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu"):
            raise ValueError(f"unsupported MLM head activation {activation!r}")
        self.activation = activation
        with nnx.use_eager_sharding(False):
            self.dense = make_param(rngs, (hidden_size, hidden_size), (EMBED, MLP), "normal")
            self.dense_bias = make_param(rngs, (hidden_size,), (MLP,), "zeros")
            self.layer_norm = LayerNorm(hidden_size, layer_norm_eps, rngs=rngs)
            self.output_bias = make_param(rngs, (vocab_size,), (VOCAB,), "zeros")

    def __call__(self, hidden: jax.Array, positions: jax.Array, word_embeddings: jax.Array) -> jax.Array:
        """float32 logits [batch, k, vocab] at `positions` [batch, k] of `hidden` [batch, seq, hidden]."""
        x = jnp.take_along_axis(hidden.astype(jnp.float32), positions[..., None], axis=1)
        x = x @ self.dense[...] + self.dense_bias[...]
        x = jax.nn.relu(x) if self.activation == "relu" else jax.nn.gelu(x, approximate=self.activation != "gelu")
        x = self.layer_norm(x)
        return x @ word_embeddings.astype(jnp.float32).T + self.output_bias[...]


def masked_lm_logits(model: TaskModel, batch: dict[str, Any], dropout_rng: jax.Array | None = None) -> jax.Array:
    """The MLM head's logits at `batch["mlm_positions"]` for a TaskModel whose head is a MaskedLMHead."""
    rng_encoder = None if dropout_rng is None else jax.random.split(dropout_rng)[0]
    hidden = model.encoder(
        batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"), dropout_rng=rng_encoder
    ).last_hidden_state
    return model.head(hidden, batch["mlm_positions"], model.encoder.embeddings.word[...])


def masked_lm_loss(
    model: TaskModel, batch: dict[str, Any], dropout_rng: jax.Array | None
) -> tuple[jax.Array, jax.Array]:
    """Cross-entropy summed over the masked tokens (`mlm_weights` 1), and their count (stilts_jax.data.mlm's batches)."""
    logits = masked_lm_logits(model, batch, dropout_rng)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(log_probs, batch["mlm_labels"][..., None], axis=-1)[..., 0]
    weight = batch["mlm_weights"].astype(jnp.float32)
    if "weight" in batch:
        weight = weight * batch["weight"][:, None]
    return jnp.sum(nll * weight), jnp.sum(weight)
