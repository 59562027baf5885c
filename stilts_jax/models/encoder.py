"""XLM-R / RoBERTa / BERT (mBERT) encoder as one Flax NNX module.

Parameters are float32 and carry logical axis names (vocab, embed, heads, kv, mlp, ...); the training core maps
them to mesh axes with rules from the config. Compute runs in `dtype` (bfloat16 or float32); LayerNorm statistics
are always float32. Attention goes through `jax.nn.dot_product_attention` with padding expressed as key lengths,
so on GPU the cuDNN flash kernel can run; on TPU the Pallas splash kernel runs (`models/tpu_attention.py`, for
sequences of whole 128-token blocks); on CPU, and for other lengths, the exact XLA path runs.

Padding must be on the right (what Hugging Face tokenizers produce): a row's valid tokens are its first
`sum(attention_mask)` positions. `check_right_padded` verifies this on the host.

Dropout applies only in training, i.e. when a `dropout_rng` is given (a phase with `train.dropout=False`, as the
demo config, passes none, so it runs no dropout at all). Hidden-state dropout (embeddings, attention output,
feed-forward output) uses the model config's hidden_dropout_prob. Attention-probability dropout (the `attention_dropout`
option, `model.attention_dropout` in the run config) drops softmax probabilities, as transformers' XLM-R/BERT and the
XTREME/jiant fine-tuning recipes do: 'config' (the default) takes the model config's attention_probs_dropout_prob
(0.1 for XLM-R and mBERT), 'off' or 0 disables it, a number in [0, 1) overrides it.

Fused kernels (cuDNN flash attention) do not expose probability dropout, so a training call with a rate above 0 runs
the explicit XLA attention (`explicit_attention`) whatever the `attention` setting: float32 scores q.k/sqrt(d) with the
key-length padding mask, float32 softmax, inverted dropout on the probabilities (the `dropout` helper), then probs.v.
Evaluation (no rng) and a rate of 0 keep `jax.nn.dot_product_attention`, bit for bit as without the option. The
probabilities' key is a third stream of each layer's key, so the hidden-dropout keys are those of a run without it.

Cost: the explicit path materialises [batch, heads, seq, seq] scores, probabilities and keep mask, about
9 * batch * heads * seq^2 bytes per layer (float32 probabilities and scores, a boolean mask), kept for the backward
pass unless `remat` recomputes them: XLM-R large (16 heads) at batch 32 x 384 tokens, about 680 MB per layer, 16 GB
over 24 layers without remat. The fused cuDNN kernel never writes them to memory, so on GPU training with attention
dropout costs that memory and the kernel's speed; `attention_dropout='off'` keeps the fused kernel in training. On
CPU (and TPU) the XLA attention runs either way and only the random mask is added: measured on a 2-core CPU (shared,
so noisy), a training step (forward and backward) of a 4-layer, 256-wide, 4-head encoder took about the same time,
at most ~15% more (best of several runs: batch 8 x 128 tokens 180-205 ms without, 185-210 ms with; 2 x 512 tokens
260-295 ms without, 295 ms with).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from stilts_jax.core.distributed import traced_platform, with_logical_constraint
from stilts_jax.core.errors import InputError
from stilts_jax.models.config import EncoderConfig
from stilts_jax.models.tpu_attention import splash_attention, splash_supported

AttentionImpl = Literal["auto", "xla", "cudnn", "splash"]
# What an encoder call runs: XLA's attention, cuDNN's fused kernel (GPU), or the Pallas splash kernel (TPU).
ResolvedAttention = Literal["xla", "cudnn", "splash"]
# Activation checkpointing per layer: "none" keeps every activation for the backward pass; "full" keeps only each
# layer's input and recomputes the rest (about a third more compute, the least memory); "save_dots" keeps the
# weight matmuls' outputs and recomputes the cheap elementwise work and attention scores in between.
Remat = Literal["none", "full", "save_dots"]
REMAT_POLICIES = ("none", "full", "save_dots")
# The name (`checkpoint_name`) of the dropout keep masks, which the scanned layers save for the backward pass.
DROPOUT_MASK = "dropout_mask"
# What the scanned layers keep for the backward pass with remat "none": every matmul's output (q/k/v, the float32
# attention scores, the context, the attention output, both feed-forward matmuls) and the dropout masks. The
# elementwise work in between (LayerNorm's float32 statistics and normalised values, GELU, softmax, the dropout
# scaling, the weights' bfloat16 casts) is recomputed from them in the backward pass, as the unrolled program's
# fusions recompute it; without a policy the scan would keep every such intermediate for every layer as a stacked
# array (docs/SCALING.md, "Scanned layers").
SCAN_SAVE_POLICY = jax.checkpoint_policies.save_from_both_policies(
    jax.checkpoint_policies.dots_saveable, jax.checkpoint_policies.save_only_these_names(DROPOUT_MASK)
)

# Logical axis names carried by the parameters. The sharding rules in the training config map them to mesh axes.
VOCAB, EMBED, HEADS, KV, MLP, POSITIONS, TYPES = "vocab", "embed", "heads", "kv", "mlp", "positions", "types"
# The leading axis of the layers' parameters when they are stored stacked (`scan_layers`); also the attribute name.
LAYERS = "layers"
# Logical axis names of the activations: under a mesh (core.distributed.logical_constraints, which the train step and
# the Predictor open) the hidden states, q/k/v, attention context and feed-forward activations are constrained to
# them, as MaxText does, so that the compiler gathers weights rather than moving activations; without a mesh, no-ops.
HIDDEN_AXES = ("activation_batch", "activation_length", "activation_embed")
HEAD_AXES = ("activation_batch", "activation_length", "activation_heads", "activation_kv")
MLP_AXES = ("activation_batch", "activation_length", "activation_mlp")


class EncoderOutput(NamedTuple):
    last_hidden_state: jax.Array  # [batch, seq, hidden]
    hidden_states: tuple[jax.Array, ...] | None  # embeddings output, then every layer's output


def make_param(
    rngs: nnx.Rngs, shape: tuple[int, ...], axes: tuple[str | None, ...], init: str, std: float = 0.02
) -> nnx.Param:
    if init == "normal":
        value = std * jax.random.normal(rngs.params(), shape, jnp.float32)
    elif init == "zeros":
        value = jnp.zeros(shape, jnp.float32)
    elif init == "ones":
        value = jnp.ones(shape, jnp.float32)
    else:
        raise ValueError(f"unknown initializer {init!r}")
    return nnx.Param(value, out_sharding=axes)


def weight(param: nnx.Param, dtype: jnp.dtype | None = None) -> jax.Array:
    """A parameter's value in the compute dtype, constrained to the parameter's own layout.

    Under FSDP the cast then happens on each device's shard, the compiler gathers the cast copy where a matmul needs
    it whole, and the gradient, constrained the same way in the backward pass, is reduce-scattered back to the shard
    (unconstrained, the compiler may all-reduce whole gradients instead). No-op without a mesh.
    """
    value = param[...] if dtype is None else param[...].astype(dtype)
    return with_logical_constraint(value, param.get_metadata()["out_sharding"])


def dropout(x: jax.Array, rate: float, rng: jax.Array | None) -> jax.Array:
    """Inverted dropout; the identity when `rng` is None (evaluation) or the rate is 0."""
    if rng is None or rate == 0.0:
        return x
    keep = checkpoint_name(jax.random.bernoulli(rng, 1.0 - rate, x.shape), DROPOUT_MASK)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def _split(rng: jax.Array | None, n: int) -> list[jax.Array | None]:
    return [None] * n if rng is None else list(jax.random.split(rng, n))


AttentionDropout = float | str  # 'config', 'off', or a rate in [0, 1) (a number or its text, as a flag gives it)


def resolve_attention_dropout(value: AttentionDropout, config: EncoderConfig) -> float:
    """The attention-probability dropout rate that `attention_dropout` (`model.attention_dropout`) asks for."""
    rate: float | None = None
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "config":
            rate = float(config.attention_probs_dropout_prob)
            if not 0.0 <= rate < 1.0:
                raise InputError(
                    f"model.attention_dropout is 'config', but the model config's "
                    f"attention_probs_dropout_prob {config.attention_probs_dropout_prob!r} is not a rate "
                    f"in [0, 1); set model.attention_dropout to a rate or 'off'"
                )
        elif text == "off":
            rate = 0.0
        else:
            try:
                rate = float(text)
            except ValueError:
                rate = None
    elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        rate = float(value)
    if rate is None or not 0.0 <= rate < 1.0:  # also rejects NaN
        raise InputError(
            f"model.attention_dropout must be 'config' (the model config's attention_probs_dropout_prob), "
            f"'off', or a rate in [0, 1); got {value!r}"
        )
    return rate


def explicit_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    lengths: jax.Array,
    *,
    dropout_rate: float = 0.0,
    dropout_rng: jax.Array | None = None,
) -> jax.Array:
    """Attention with dropout on the probabilities, the XLA way: what fused kernels cannot do.

    q, k, v: [batch, seq, heads, head_dim]; lengths: int [batch], each row's number of valid keys (padded query rows
    attend to the valid keys, as in `jax.nn.dot_product_attention` with `key_value_seq_lengths`). Scores and softmax
    are float32; the probabilities go through `dropout` (inverted: kept ones are scaled by 1 / (1 - rate)), then
    are cast to v's dtype for probs.v. With no rng or a rate of 0 it equals `jax.nn.dot_product_attention`.
    """
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
    scores = scores * jnp.float32(1.0 / np.sqrt(q.shape[-1]))
    valid = jnp.arange(k.shape[1])[None, None, None, :] < lengths[:, None, None, None]
    # A large finite negative, as jax.nn.dot_product_attention uses, not -inf: a row keeps a finite softmax.
    scores = jnp.where(valid, scores, jnp.float32(-0.7 * np.finfo(np.float32).max))
    probs = dropout(jax.nn.softmax(scores, axis=-1), dropout_rate, dropout_rng)
    return jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v)


class LayerNorm(nnx.Module):
    """LayerNorm with float32 statistics whatever the compute dtype."""

    def __init__(self, size: int, eps: float, *, rngs: nnx.Rngs):
        self.eps = eps
        self.scale = make_param(rngs, (size,), (EMBED,), "ones")
        self.bias = make_param(rngs, (size,), (EMBED,), "zeros")

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps) * weight(self.scale) + weight(self.bias)
        return y.astype(x.dtype)


class Embeddings(nnx.Module):
    def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
        self.config = config
        std = config.initializer_range
        self.word = make_param(rngs, (config.vocab_size, config.hidden_size), (VOCAB, EMBED), "normal", std)
        self.position = make_param(
            rngs, (config.max_position_embeddings, config.hidden_size), (POSITIONS, EMBED), "normal", std
        )
        self.token_type = make_param(rngs, (config.type_vocab_size, config.hidden_size), (TYPES, EMBED), "normal", std)
        self.layer_norm = LayerNorm(config.hidden_size, config.layer_norm_eps, rngs=rngs)

    def position_ids(self, input_ids: jax.Array) -> jax.Array:
        if self.config.family == "roberta":
            # As fairseq/transformers: real tokens count up from padding_idx + 1, padding keeps padding_idx.
            not_pad = (input_ids != self.config.pad_token_id).astype(jnp.int32)
            return jnp.cumsum(not_pad, axis=1) * not_pad + self.config.pad_token_id
        return jnp.broadcast_to(jnp.arange(input_ids.shape[1], dtype=jnp.int32), input_ids.shape)

    def __call__(
        self, input_ids: jax.Array, token_type_ids: jax.Array, dtype: jnp.dtype, rng: jax.Array | None
    ) -> jax.Array:
        # Sum in float32, as the float32 reference does, then drop to the compute dtype.
        x = (
            jnp.take(weight(self.word), input_ids, axis=0)
            + jnp.take(weight(self.position), self.position_ids(input_ids), axis=0)
            + jnp.take(weight(self.token_type), token_type_ids, axis=0)
        )
        x = with_logical_constraint(self.layer_norm(x).astype(dtype), HIDDEN_AXES)
        return dropout(x, self.config.hidden_dropout_prob, rng)


def _activation(name: str):
    return {
        "gelu": lambda x: jax.nn.gelu(x, approximate=False),
        "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
        "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
        "relu": jax.nn.relu,
    }[name]


def resolve_attention_impl(impl: AttentionImpl, dtype: jnp.dtype, head_dim: int) -> ResolvedAttention:
    """'auto' picks cuDNN flash attention on GPU for half-precision compute, the splash kernel on TPU, else XLA.

    The platform is that of the mesh the call is traced for (`logical_constraints`), so that a program compiled
    for a TPU slice from another host (`python -m stilts_jax.aot`) picks what the slice runs; else JAX's default.
    """
    if impl != "auto":
        return impl
    platform = traced_platform()
    half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
    if platform == "gpu" and half and head_dim % 8 == 0 and head_dim <= 128:
        return "cudnn"
    if platform == "tpu":
        return "splash"
    return "xla"


def attend(q: jax.Array, k: jax.Array, v: jax.Array, lengths: jax.Array, impl: ResolvedAttention) -> jax.Array:
    """Attention without probability dropout by `impl`; splash falls back to XLA's for lengths it cannot tile."""
    if impl == "splash":
        if splash_supported(q.shape[1]):
            return splash_attention(q, k, v, lengths)
        impl = "xla"
    return jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=lengths, implementation=impl)


class SelfAttention(nnx.Module):
    def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs, dropout_rate: float = 0.0):
        d, h, k, std = config.hidden_size, config.num_attention_heads, config.head_dim, config.initializer_range
        self.dropout_rate = dropout_rate  # on the attention probabilities, in training
        self.query = make_param(rngs, (d, h, k), (EMBED, HEADS, KV), "normal", std)
        self.key = make_param(rngs, (d, h, k), (EMBED, HEADS, KV), "normal", std)
        self.value = make_param(rngs, (d, h, k), (EMBED, HEADS, KV), "normal", std)
        self.query_bias = make_param(rngs, (h, k), (HEADS, KV), "zeros")
        self.key_bias = make_param(rngs, (h, k), (HEADS, KV), "zeros")
        self.value_bias = make_param(rngs, (h, k), (HEADS, KV), "zeros")
        self.output = make_param(rngs, (h, k, d), (HEADS, KV, EMBED), "normal", std)
        self.output_bias = make_param(rngs, (d,), (EMBED,), "zeros")

    def __call__(
        self, x: jax.Array, lengths: jax.Array, impl: ResolvedAttention, rng: jax.Array | None = None
    ) -> jax.Array:
        dtype = x.dtype

        def project(kernel: nnx.Param, bias: nnx.Param) -> jax.Array:
            projected = jnp.einsum("bsd,dhk->bshk", x, weight(kernel, dtype)) + weight(bias, dtype)
            return with_logical_constraint(projected, HEAD_AXES)

        q, k, v = (
            project(self.query, self.query_bias),
            project(self.key, self.key_bias),
            project(self.value, self.value_bias),
        )
        # Only key lengths: padded query rows still attend to the real tokens, exactly as the reference does.
        if rng is not None and self.dropout_rate > 0.0:  # training with probability dropout: no fused kernel has it
            context = explicit_attention(q, k, v, lengths, dropout_rate=self.dropout_rate, dropout_rng=rng)
        else:
            context = attend(q, k, v, lengths, impl)
        context = with_logical_constraint(context, HEAD_AXES)
        out = jnp.einsum("bshk,hkd->bsd", context, weight(self.output, dtype)) + weight(self.output_bias, dtype)
        return with_logical_constraint(out, HIDDEN_AXES)


class FeedForward(nnx.Module):
    def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
        d, m, std = config.hidden_size, config.intermediate_size, config.initializer_range
        self.activation = _activation(config.hidden_act)
        self.intermediate = make_param(rngs, (d, m), (EMBED, MLP), "normal", std)
        self.intermediate_bias = make_param(rngs, (m,), (MLP,), "zeros")
        self.output = make_param(rngs, (m, d), (MLP, EMBED), "normal", std)
        self.output_bias = make_param(rngs, (d,), (EMBED,), "zeros")

    def __call__(self, x: jax.Array) -> jax.Array:
        dtype = x.dtype
        h = self.activation(x @ weight(self.intermediate, dtype) + weight(self.intermediate_bias, dtype))
        h = with_logical_constraint(h, MLP_AXES)
        return with_logical_constraint(h @ weight(self.output, dtype) + weight(self.output_bias, dtype), HIDDEN_AXES)


class TransformerLayer(nnx.Module):
    """Post-LayerNorm block, as BERT and XLM-R."""

    def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs, attention_dropout: float = 0.0):
        self.dropout_rate = config.hidden_dropout_prob
        self.attention = SelfAttention(config, rngs=rngs, dropout_rate=attention_dropout)
        self.attention_norm = LayerNorm(config.hidden_size, config.layer_norm_eps, rngs=rngs)
        self.feed_forward = FeedForward(config, rngs=rngs)
        self.output_norm = LayerNorm(config.hidden_size, config.layer_norm_eps, rngs=rngs)

    def __call__(self, x: jax.Array, lengths: jax.Array, impl: ResolvedAttention, rng: jax.Array | None) -> jax.Array:
        rng_attention, rng_ffn = _split(rng, 2)
        # The probabilities' key is a third stream of the layer's key (split(rng, 2) gives fold_in(rng, 0) and
        # fold_in(rng, 1) with partitionable threefry), so the hidden-dropout keys stay what they were without it.
        rng_probs = None if rng is None else jax.random.fold_in(rng, 2)
        attended = self.attention(x, lengths, impl, rng_probs)
        x = self.attention_norm(x + dropout(attended, self.dropout_rate, rng_attention))
        x = self.output_norm(x + dropout(self.feed_forward(x), self.dropout_rate, rng_ffn))
        return with_logical_constraint(x, HIDDEN_AXES)


class Encoder(nnx.Module):
    """The transformer encoder shared by every task head.

    Args:
      config: the architecture.
      rngs: initialisation randomness (weights are usually overwritten by `load_pretrained`).
      dtype: compute dtype (parameters stay float32).
      attention: 'auto' (cuDNN on GPU with half precision, XLA otherwise), 'xla' or 'cudnn'.
      remat: activation checkpointing of each layer in training (see `Remat`): trades compute for memory.
      attention_dropout: dropout on the attention probabilities in training: 'config' (the config's
        attention_probs_dropout_prob), 'off', or a rate in [0, 1) (see the module docstring for its cost).
      scan_layers: store the layers' parameters stacked (one TransformerLayer whose every parameter has a leading
        `layers` axis) and run them with `jax.lax.scan`: the compiler sees one layer instead of all of them, so
        compiling takes a fraction of the time; outputs, gradients and dropout equal the unrolled layers'. False
        keeps one module per layer (`layers[i]`). The two store parameters under different paths: a checkpoint's
        train state must be restored with the layout that wrote it (`stack_layers`/`unstack_layers` convert).
        With remat "none" the scanned layers keep the matmuls' outputs and dropout masks for the backward pass and
        recompute the elementwise work (`SCAN_SAVE_POLICY`).
      unroll_scan: with `scan_layers`, unroll the scan (no loop; the same computation per layer, the same
        parameters): what `python -m stilts_jax.aot` compiles at 1 and 2 layers for the cost analysis, which counts
        a loop's body once.
    """

    def __init__(
        self,
        config: EncoderConfig,
        *,
        rngs: nnx.Rngs,
        dtype: jnp.dtype | str = jnp.float32,
        attention: AttentionImpl = "auto",
        remat: Remat = "none",
        attention_dropout: AttentionDropout = "config",
        scan_layers: bool = False,
        unroll_scan: bool = False,
    ):
        if remat not in REMAT_POLICIES:
            raise ValueError(f"remat must be one of {', '.join(REMAT_POLICIES)}, got {remat!r}")
        self.config = config
        self.dtype = jnp.dtype(dtype)
        self.attention = attention
        self.remat = remat
        self.attention_dropout = resolve_attention_dropout(attention_dropout, config)
        self.scan_layers = bool(scan_layers)
        self.unroll_scan = bool(unroll_scan)
        # Logical axis names are not mesh axes: never shard eagerly at creation; the training core shards.
        with nnx.use_eager_sharding(False):
            self.embeddings = Embeddings(config, rngs=rngs)
            # Built one by one either way, so both layouts draw the same initial weights from the same rngs.
            layers = [
                TransformerLayer(config, rngs=rngs, attention_dropout=self.attention_dropout)
                for _ in range(config.num_hidden_layers)
            ]
            self.layers: nnx.List[TransformerLayer] | TransformerLayer = (
                _stack_modules(layers) if self.scan_layers else nnx.List(layers)
            )

    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array,
        token_type_ids: jax.Array | None = None,
        *,
        dropout_rng: jax.Array | None = None,
        output_hidden_states: bool = False,
        num_layers: int | None = None,
    ) -> EncoderOutput:
        """Encode a right-padded batch.

        Args:
          input_ids, attention_mask, token_type_ids: int [batch, seq].
          dropout_rng: a PRNG key to train with dropout; None for deterministic evaluation.
          output_hidden_states: also return the embeddings output and every layer's output.
          num_layers: run only the first k layers (retrieval reads an intermediate layer; the rest is skipped).
        """
        config = self.config
        total = config.num_hidden_layers
        num_layers = total if num_layers is None else num_layers
        if not 0 <= num_layers <= total:
            raise ValueError(f"num_layers must be in [0, {total}], got {num_layers}")
        if input_ids.shape[1] > config.max_sequence_length:
            raise ValueError(
                f"sequence length {input_ids.shape[1]} exceeds the model's maximum {config.max_sequence_length}"
            )
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        # A fully padded row (batch padding) still gets one key so that no softmax row is empty.
        lengths = jnp.maximum(jnp.sum(attention_mask, axis=-1, dtype=jnp.int32), 1)
        impl = resolve_attention_impl(self.attention, self.dtype, config.head_dim)

        rngs = _split(dropout_rng, num_layers + 1)
        x = self.embeddings(input_ids, token_type_ids, self.dtype, rngs[0])
        hidden_states = [x] if output_hidden_states else None
        policy = jax.checkpoint_policies.dots_with_no_batch_dims_saveable if self.remat == "save_dots" else None
        if self.scan_layers:
            # The unrolled path's keys, exactly: layer i gets _split(dropout_rng, num_layers + 1)[i + 1].
            layer_rngs = None if dropout_rng is None or not num_layers else jnp.stack(_keys(rngs[1:]))
            x, outputs = self._scan(x, lengths, layer_rngs, impl, num_layers, output_hidden_states, policy)
            if hidden_states is not None and outputs is not None:
                hidden_states.extend(outputs[i] for i in range(num_layers))
            return EncoderOutput(x, tuple(hidden_states) if hidden_states is not None else None)
        run_layer = _run_layer
        if self.remat != "none":
            run_layer = nnx.remat(_run_layer, static_argnums=(4,), policy=policy)
        layers: Any = self.layers
        for index in range(num_layers):
            x = run_layer(layers[index], x, lengths, rngs[index + 1], impl)
            if hidden_states is not None:
                hidden_states.append(x)
        return EncoderOutput(x, tuple(hidden_states) if hidden_states is not None else None)

    def _scan(
        self,
        x: jax.Array,
        lengths: jax.Array,
        layer_rngs: jax.Array | None,
        impl: ResolvedAttention,
        num_layers: int,
        collect: bool,
        policy: Callable[..., Any] | None,
    ) -> tuple[jax.Array, jax.Array | None]:
        """The first `num_layers` stacked layers over `x` with `jax.lax.scan`; their outputs stacked when `collect`."""
        if num_layers == 0:
            return x, None
        graphdef, state = nnx.split(self.layers)
        # The first k layers: a slice of every stacked parameter (its gradient is zero for the layers not run).
        state = jax.tree.map(lambda v: v.replace(value=v[...][:num_layers]), state, is_leaf=_is_variable)

        def body(carry: jax.Array, xs: tuple[Any, jax.Array | None]) -> tuple[jax.Array, jax.Array | None]:
            layer_state, rng = xs
            # Inside the body each parameter is one layer's: its logical axes without the leading `layers`.
            layer_state = jax.tree.map(_without_layer_axis, layer_state, is_leaf=_is_variable)
            out = nnx.merge(graphdef, layer_state)(carry, lengths, impl, rng)
            return out, (out if collect else None)

        # Without remat the body still runs under a policy (SCAN_SAVE_POLICY) that keeps what the unrolled layers keep.
        body = jax.checkpoint(body, policy=SCAN_SAVE_POLICY if self.remat == "none" else policy, prevent_cse=False)
        return jax.lax.scan(body, x, (state, layer_rngs), unroll=self.unroll_scan)


def _keys(rngs: list[jax.Array | None]) -> list[jax.Array]:
    return [rng for rng in rngs if rng is not None]


def _is_variable(x: Any) -> bool:
    return isinstance(x, nnx.Variable)


def _with_layer_axis(variable: nnx.Variable) -> nnx.Variable:
    axes = variable.get_metadata().get("out_sharding")
    return variable.replace(out_sharding=(LAYERS, *axes)) if axes else variable


def _without_layer_axis(variable: nnx.Variable) -> nnx.Variable:
    axes = variable.get_metadata().get("out_sharding")
    return variable.replace(out_sharding=tuple(axes[1:])) if axes and axes[0] == LAYERS else variable


def _stack_modules(layers: list[TransformerLayer]) -> TransformerLayer:
    """One TransformerLayer whose every parameter stacks the given layers' along a new leading `layers` axis."""
    splits = [nnx.split(layer) for layer in layers]
    states = [state for _, state in splits]
    stacked = jax.tree.map(
        lambda *variables: _with_layer_axis(variables[0].replace(value=jnp.stack([v[...] for v in variables]))),
        *states,
        is_leaf=_is_variable,
    )
    return nnx.merge(splits[0][0], stacked)


def _run_layer(
    layer: TransformerLayer, x: jax.Array, lengths: jax.Array, rng: jax.Array | None, impl: ResolvedAttention
) -> jax.Array:
    return layer(x, lengths, impl, rng)


def _layer_index(key: Any) -> int | None:
    """A per-layer key (an int, or its text as Orbax metadata writes it) as an int; None for a parameter name."""
    if isinstance(key, (int, np.integer)):
        return int(key)
    return int(key) if isinstance(key, str) and key.isdigit() else None


def stack_layers(flat: Mapping[tuple, Any], stack: Callable[[list[Any]], Any] = np.stack) -> dict[tuple, Any]:
    """Flat parameters (path -> array) with per-layer paths ("layers", i, ...) under stacked ones ("layers", ...).

    Paths may sit under a prefix (("encoder", "layers", 0, ...)); other paths are kept as they are.
    """
    per_layer: dict[tuple, dict[int, Any]] = {}
    out: dict[tuple, Any] = {}
    for path, value in flat.items():
        at = _layers_position(path)
        index = None if at is None else _layer_index(path[at + 1])
        if at is None or index is None:
            out[path] = value
            continue
        per_layer.setdefault((*path[: at + 1], *path[at + 2 :]), {})[index] = value
    for path, layers in per_layer.items():
        if sorted(layers) != list(range(len(layers))):
            raise ValueError(f"layers {sorted(layers)} of {path} are not 0..{len(layers) - 1}")
        out[path] = stack([layers[i] for i in range(len(layers))])
    return out


def unstack_layers(
    flat: Mapping[tuple, Any], unstack: Callable[[Any], list[Any]] = lambda value: list(value)
) -> dict[tuple, Any]:
    """Flat parameters with stacked paths ("layers", ...) under per-layer ones ("layers", i, ...); the inverse of
    `stack_layers`."""
    out: dict[tuple, Any] = {}
    for path, value in flat.items():
        at = _layers_position(path)
        if at is None or _layer_index(path[at + 1]) is not None:
            out[path] = value
            continue
        for i, layer in enumerate(unstack(value)):
            out[(*path[: at + 1], i, *path[at + 1 :])] = layer
    return out


def _layers_position(path: tuple) -> int | None:
    """The index of the encoder's `layers` key in a parameter path (followed by more keys), or None."""
    for position, key in enumerate(path[:-1]):
        if key == LAYERS:
            return position
    return None


def check_right_padded(attention_mask: np.ndarray) -> None:
    """Raise if any row of a host-side mask is not 1...1 0...0 (the encoder reads padding as lengths)."""
    mask = np.asarray(attention_mask).astype(bool)
    lengths = mask.sum(axis=-1)
    expected = np.arange(mask.shape[-1])[None, :] < lengths[:, None]
    bad = np.nonzero((mask != expected).any(axis=-1))[0]
    if bad.size:
        raise ValueError(
            f"attention_mask rows {bad[:10].tolist()} are not right-padded; tokenize with padding_side='right'"
        )
