"""Explicit mapping between Hugging Face XLM-R/BERT weights and the NNX encoder, both ways.

Import is strict: every encoder parameter must come from the checkpoint with the right shape, and every
checkpoint tensor inside the encoder (embeddings.*, encoder.*) must be used. Tensors of task heads a hub
checkpoint carries (lm_head, cls, pooler, ...) are skipped and reported by the encoder import; the masked-LM head
(XLM-R's `lm_head.*`, BERT's `cls.predictions.*`) is loaded on request by `load_mlm_head`, and the pooler
(`pooler.dense.*`, the dual encoder's embedding) by `load_pooler`, just as strictly.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import safetensors.numpy
from flax import nnx

from stilts_jax.core.errors import WeightsError
from stilts_jax.core.io_utils import atomic_directory
from stilts_jax.models import hf_files
from stilts_jax.models.config import EncoderConfig
from stilts_jax.models.encoder import AttentionDropout, AttentionImpl, Encoder, Remat, stack_layers, unstack_layers

log = logging.getLogger(__name__)

# Where the base model sits inside task checkpoints (XLMRobertaForMaskedLM -> "roberta.", BertForPreTraining -> "bert.").
_BASE_MODEL_PREFIXES = ("", "roberta.", "xlm_roberta.", "bert.")
# Tensors outside the encoder that hub checkpoints carry; they are not part of the encoder and are skipped.
_HEAD_PREFIXES = (
    "lm_head.",
    "cls.",
    "pooler.",
    "classifier.",
    "qa_outputs.",
    "embeddings.position_ids",
    "embeddings.token_type_ids",
)


@dataclasses.dataclass(frozen=True)
class _Rule:
    """One tensor: our parameter path, its Hugging Face key, and the layout change between them."""

    path: tuple[str | int, ...]
    hf_key: str
    to_ours: Callable[[np.ndarray], np.ndarray]
    to_hf: Callable[[np.ndarray], np.ndarray]


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def _transpose(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.T)


def _mapping(config: EncoderConfig) -> list[_Rule]:
    d, h, k = config.hidden_size, config.num_attention_heads, config.head_dim
    # torch Linear stores [out, in]; ours is [in, out] with heads split out where attention needs them.
    q_in = lambda w: np.ascontiguousarray(w.T.reshape(d, h, k))  # noqa: E731
    q_in_hf = lambda w: np.ascontiguousarray(w.reshape(d, h * k).T)  # noqa: E731
    heads_bias = lambda b: b.reshape(h, k)  # noqa: E731
    heads_bias_hf = lambda b: b.reshape(h * k)  # noqa: E731
    o_in = lambda w: np.ascontiguousarray(w.T.reshape(h, k, d))  # noqa: E731
    o_in_hf = lambda w: np.ascontiguousarray(w.reshape(h * k, d).T)  # noqa: E731

    rules = [
        _Rule(("embeddings", "word"), "embeddings.word_embeddings.weight", _identity, _identity),
        _Rule(("embeddings", "position"), "embeddings.position_embeddings.weight", _identity, _identity),
        _Rule(("embeddings", "token_type"), "embeddings.token_type_embeddings.weight", _identity, _identity),
        _Rule(("embeddings", "layer_norm", "scale"), "embeddings.LayerNorm.weight", _identity, _identity),
        _Rule(("embeddings", "layer_norm", "bias"), "embeddings.LayerNorm.bias", _identity, _identity),
    ]
    for i in range(config.num_hidden_layers):
        hf = f"encoder.layer.{i}."
        ours: tuple[str | int, ...] = ("layers", i)
        for name in ("query", "key", "value"):
            rules.append(_Rule((*ours, "attention", name), f"{hf}attention.self.{name}.weight", q_in, q_in_hf))
            rules.append(
                _Rule(
                    (*ours, "attention", f"{name}_bias"), f"{hf}attention.self.{name}.bias", heads_bias, heads_bias_hf
                )
            )
        rules += [
            _Rule((*ours, "attention", "output"), f"{hf}attention.output.dense.weight", o_in, o_in_hf),
            _Rule((*ours, "attention", "output_bias"), f"{hf}attention.output.dense.bias", _identity, _identity),
            _Rule((*ours, "attention_norm", "scale"), f"{hf}attention.output.LayerNorm.weight", _identity, _identity),
            _Rule((*ours, "attention_norm", "bias"), f"{hf}attention.output.LayerNorm.bias", _identity, _identity),
            _Rule((*ours, "feed_forward", "intermediate"), f"{hf}intermediate.dense.weight", _transpose, _transpose),
            _Rule((*ours, "feed_forward", "intermediate_bias"), f"{hf}intermediate.dense.bias", _identity, _identity),
            _Rule((*ours, "feed_forward", "output"), f"{hf}output.dense.weight", _transpose, _transpose),
            _Rule((*ours, "feed_forward", "output_bias"), f"{hf}output.dense.bias", _identity, _identity),
            _Rule((*ours, "output_norm", "scale"), f"{hf}output.LayerNorm.weight", _identity, _identity),
            _Rule((*ours, "output_norm", "bias"), f"{hf}output.LayerNorm.bias", _identity, _identity),
        ]
    return rules


def _normalise_key(key: str) -> str:
    # Old BERT checkpoints (TF conversions) name LayerNorm parameters gamma/beta.
    return key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")


def _strip_base_prefix(state_dict: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    keys = {_normalise_key(k): k for k in state_dict}
    for prefix in _BASE_MODEL_PREFIXES:
        if f"{prefix}embeddings.word_embeddings.weight" in keys:
            stripped = {}
            for norm, original in keys.items():
                stripped[norm[len(prefix) :] if norm.startswith(prefix) else norm] = state_dict[original]
            return stripped
    sample = sorted(state_dict)[:8]
    raise WeightsError(
        "the checkpoint has no embeddings.word_embeddings.weight under any known prefix "
        f"({', '.join(repr(p) for p in _BASE_MODEL_PREFIXES)}); first keys: {sample}. Is it an XLM-R or BERT model?"
    )


def _expected_shapes(config: EncoderConfig) -> dict[tuple, tuple[int, ...]]:
    abstract = nnx.eval_shape(lambda: Encoder(config, rngs=nnx.Rngs(0), scan_layers=False))
    flat = nnx.to_flat_state(nnx.state(abstract, nnx.Param))
    return {tuple(path): tuple(var.shape) for path, var in flat}


def convert_hf_state_dict(
    state_dict: dict[str, np.ndarray], config: EncoderConfig, *, scan_layers: bool = False
) -> dict[tuple, np.ndarray]:
    """Map a Hugging Face state dict to the encoder's flat parameter paths (float32 NumPy arrays).

    One entry per layer (("layers", i, ...)), or with `scan_layers` the layers stacked (("layers", ...), a leading
    axis of num_hidden_layers), as `Encoder(scan_layers=...)` stores them.
    Raises WeightsError listing every missing, unexpected and mis-shaped tensor at once.
    """
    tensors = _strip_base_prefix(state_dict)
    expected = _expected_shapes(config)
    rules = _mapping(config)
    missing, misshaped, params = [], [], {}
    for rule in rules:
        if rule.hf_key not in tensors:
            missing.append(rule.hf_key)
            continue
        value = np.asarray(tensors[rule.hf_key])
        try:
            converted = rule.to_ours(value)
        except ValueError:
            converted = None
        if converted is None or converted.shape != expected[rule.path]:
            misshaped.append(
                f"{rule.hf_key}: checkpoint {tuple(value.shape)}, model expects {expected[rule.path]} (ours)"
            )
            continue
        params[rule.path] = converted.astype(np.float32)
    used = {rule.hf_key for rule in rules}
    skipped = sorted(k for k in tensors if k not in used and k.startswith(_HEAD_PREFIXES))
    unexpected = sorted(k for k in tensors if k not in used and not k.startswith(_HEAD_PREFIXES))
    if missing or unexpected or misshaped:
        problems = []
        if missing:
            problems.append(f"missing ({len(missing)}): {missing}")
        if unexpected:
            problems.append(f"unexpected ({len(unexpected)}): {unexpected}")
        if misshaped:
            problems.append(f"wrong shape ({len(misshaped)}): {misshaped}")
        raise WeightsError(
            "checkpoint does not match the encoder built from its config.json; "
            + "; ".join(problems)
            + ". Check that config.json belongs to these weights (num_hidden_layers, hidden_size, vocab_size, ...)."
        )
    if set(params) != set(expected):
        raise AssertionError(f"mapping does not cover the encoder: {sorted(set(expected) - set(params))}")
    if skipped:
        log.info("skipped %d tensors that belong to task heads, not the encoder (e.g. %s)", len(skipped), skipped[0])
    return stack_layers(params) if scan_layers else params


def encoder_to_hf_state_dict(encoder: Encoder) -> dict[str, np.ndarray]:
    """The encoder's parameters under Hugging Face base-model keys, float32 NumPy arrays."""
    flat = {
        tuple(path): np.asarray(jax.device_get(var[...]), np.float32)
        for path, var in nnx.to_flat_state(nnx.state(encoder, nnx.Param))
    }
    if encoder.scan_layers:
        flat = unstack_layers(flat)
    return {rule.hf_key: rule.to_hf(flat[rule.path]) for rule in _mapping(encoder.config)}


def load_pretrained(
    name_or_path: str | Path,
    *,
    dtype: Any = jnp.float32,
    attention: AttentionImpl = "auto",
    remat: Remat = "none",
    attention_dropout: AttentionDropout = "config",
    scan_layers: bool = False,
    revision: str | None = None,
    place: Callable[[tuple, np.ndarray], jax.Array] | None = None,
) -> tuple[Encoder, Path]:
    """Build the encoder from a hub id or a local Hugging Face folder and load its weights.

    Args:
      name_or_path: e.g. "xlm-roberta-large", "bert-base-multilingual-cased" or a local folder.
      dtype: compute dtype; parameters are float32.
      attention, remat, attention_dropout, scan_layers: the encoder's attention implementation, activation
        checkpointing, attention-probability dropout in training and stacked layers (see `Encoder`).
      place: optional `(path, array) -> jax.Array`, to put each parameter straight onto its sharding.

    Returns: the encoder and the resolved model folder (which holds the tokenizer files).
    """
    model_dir = hf_files.resolve_model_dir(name_or_path, revision=revision)
    config_path = model_dir / "config.json"
    if not config_path.exists():
        raise WeightsError(f"{model_dir} has no config.json; it is not a Hugging Face model folder")
    config = EncoderConfig.from_json_file(config_path)
    params = convert_hf_state_dict(hf_files.read_state_dict(model_dir), config, scan_layers=scan_layers)
    place = place or (lambda path, array: jnp.asarray(array))
    abstract = nnx.eval_shape(
        lambda: Encoder(
            config,
            rngs=nnx.Rngs(0),
            dtype=dtype,
            attention=attention,
            remat=remat,
            attention_dropout=attention_dropout,
            scan_layers=scan_layers,
        )
    )
    graphdef, state = nnx.split(abstract)
    for path, var in nnx.to_flat_state(state):
        var.set_value(place(tuple(path), params[tuple(path)]))
    return nnx.merge(graphdef, state), model_dir


def export_hf(encoder: Encoder, output_dir: str | Path, *, tokenizer_dir: str | Path | None = None) -> Path:
    """Write config.json and model.safetensors that transformers' XLMRobertaModel/BertModel loads.

    The folder is written whole or not at all. Tokenizer files from `tokenizer_dir` are copied beside them.
    """
    return write_hf_folder(
        output_dir, encoder.config.to_hf_dict(), encoder_to_hf_state_dict(encoder), tokenizer_dir=tokenizer_dir
    )


def write_hf_folder(
    output_dir: str | Path,
    config: dict[str, Any],
    tensors: dict[str, np.ndarray],
    *,
    tokenizer_dir: str | Path | None = None,
) -> Path:
    """A Hugging Face model folder: config.json, model.safetensors and the tokenizer files of `tokenizer_dir`,
    written whole or not at all."""
    output_dir = Path(output_dir)
    with atomic_directory(output_dir) as tmp:
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        safetensors.numpy.save_file(tensors, str(tmp / hf_files.SAFETENSORS), metadata={"format": "pt"})
        if tokenizer_dir is not None:
            for name in hf_files.TOKENIZER_FILES:
                source = Path(tokenizer_dir) / name
                if source.exists():
                    (tmp / name).write_bytes(source.read_bytes())
    return output_dir


# Masked-LM head tensors: our MaskedLMHead path -> (XLM-R key, BERT key). The decoder weight is tied to the word
# embeddings; its bias is the head's own (`lm_head.bias`, with `lm_head.decoder.bias` its alias).
_MLM_HEAD_KEYS = {
    ("dense",): ("lm_head.dense.weight", "cls.predictions.transform.dense.weight"),
    ("dense_bias",): ("lm_head.dense.bias", "cls.predictions.transform.dense.bias"),
    ("layer_norm", "scale"): ("lm_head.layer_norm.weight", "cls.predictions.transform.LayerNorm.weight"),
    ("layer_norm", "bias"): ("lm_head.layer_norm.bias", "cls.predictions.transform.LayerNorm.bias"),
    ("output_bias",): ("lm_head.bias", "cls.predictions.bias"),
}
_MLM_BIAS_ALIASES = ("lm_head.decoder.bias", "cls.predictions.decoder.bias")
_MLM_DECODER_WEIGHTS = ("lm_head.decoder.weight", "cls.predictions.decoder.weight")


def _collect(
    tensors: dict[str, np.ndarray], keys: dict[tuple, str], shapes: dict[tuple, tuple], what: str
) -> tuple[dict[tuple, np.ndarray], list[str], list[str]]:
    """A head's parameters (float32; `dense` transposed: torch Linear stores [out, in]) from checkpoint `tensors` by
    `keys` (our path -> checkpoint key), with the keys missing and the mis-shaped ones described."""
    params: dict[tuple, np.ndarray] = {}
    missing: list[str] = []
    misshaped: list[str] = []
    for path, key in keys.items():
        if key not in tensors:
            missing.append(key)
            continue
        value = np.asarray(tensors[key], np.float32)
        value = np.ascontiguousarray(value.T) if path == ("dense",) else value
        if value.shape != shapes[path]:
            misshaped.append(f"{key}: checkpoint {tuple(np.shape(tensors[key]))}, {what} expects {shapes[path]} (ours)")
            continue
        params[path] = value
    return params, missing, misshaped


def convert_mlm_head(state_dict: dict[str, np.ndarray], config: EncoderConfig) -> dict[tuple, np.ndarray] | None:
    """The masked-LM head's parameters (MaskedLMHead paths, float32), or None when the checkpoint has no such head.

    Strict: a head that is only partly present, mis-shaped, or whose decoder is not tied to the word embeddings
    (this head always ties them) is an error listing every problem.
    """
    tensors = {_normalise_key(k): v for k, v in state_dict.items()}
    family = (
        0
        if any(k.startswith("lm_head.") for k in tensors)
        else 1
        if any(k.startswith("cls.predictions.") for k in tensors)
        else None
    )
    if family is None:
        return None
    for alias, key in zip(_MLM_BIAS_ALIASES, ("lm_head.bias", "cls.predictions.bias")):
        if key not in tensors and alias in tensors:
            tensors[key] = tensors[alias]
    d, v = config.hidden_size, config.vocab_size
    shapes = {
        ("dense",): (d, d),
        ("dense_bias",): (d,),
        ("layer_norm", "scale"): (d,),
        ("layer_norm", "bias"): (d,),
        ("output_bias",): (v,),
    }
    params, missing, misshaped = _collect(
        tensors, {path: keys[family] for path, keys in _MLM_HEAD_KEYS.items()}, shapes, "head"
    )
    untied = []
    decoder_key = _MLM_DECODER_WEIGHTS[family]
    if decoder_key in tensors:
        word = _strip_base_prefix(state_dict).get("embeddings.word_embeddings.weight")
        decoder = np.asarray(tensors[decoder_key])
        if word is None or decoder.shape != np.shape(word) or not np.array_equal(decoder, np.asarray(word)):
            untied.append(decoder_key)
    if missing or misshaped or untied:
        problems = [
            f"missing {missing}" if missing else "",
            f"wrong shape {misshaped}" if misshaped else "",
            f"{untied[0]} differs from the word embeddings (this MLM head ties them)" if untied else "",
        ]
        raise WeightsError(
            "the checkpoint's masked-LM head does not fit: "
            + "; ".join(p for p in problems if p)
            + ". Use the checkpoint's own config.json, or train the MLM head from scratch "
            "(a checkpoint without lm_head.* tensors)."
        )
    return params


def load_mlm_head(name_or_path: str | Path, head: Any, *, revision: str | None = None) -> bool:
    """Fill `head` (a MaskedLMHead) in place from the checkpoint's lm_head.*; False (head untouched) if it has none."""
    loaded = _load_head(name_or_path, head, convert_mlm_head, "MLM head", revision)
    if not loaded:
        log.info("%s has no masked-LM head tensors; the MLM head starts from random weights", name_or_path)
    return loaded


def _load_head(name_or_path: str | Path, module: Any, convert: Any, what: str, revision: str | None) -> bool:
    """Fill `module` in place with what `convert(state_dict, config)` takes from the checkpoint; False if none."""
    model_dir = hf_files.resolve_model_dir(name_or_path, revision=revision)
    config = EncoderConfig.from_json_file(model_dir / "config.json")
    params = convert(hf_files.read_state_dict(model_dir), config)
    if params is None:
        return False
    _fill(module, params, what)
    return True


def _fill(module: Any, params: dict[tuple, np.ndarray], what: str) -> None:
    """Set every parameter of `module` in place from `params` (path -> array), which must cover it exactly."""
    state = nnx.state(module, nnx.Param)
    expected = {tuple(path): tuple(var.shape) for path, var in nnx.to_flat_state(state)}
    if set(expected) != set(params):
        raise AssertionError(f"{what} mapping does not cover the {what}: {sorted(expected)} vs {sorted(params)}")
    for path, var in nnx.to_flat_state(state):
        if tuple(var.shape) != params[tuple(path)].shape:
            raise WeightsError(
                f"the checkpoint's {what} tensor for {path} has shape {params[tuple(path)].shape}, "
                f"the {what} {tuple(var.shape)}; build the model from the checkpoint's config.json"
            )
        var.set_value(jnp.asarray(params[tuple(path)]))
    nnx.update(module, state)


# The pooler (transformers' BertPooler / XLMRobertaPooler): our models.pooling.Pooler path -> Hugging Face key, after
# the base-model prefix (roberta., bert., ...) is stripped.
_POOLER_KEYS = {("dense",): "pooler.dense.weight", ("dense_bias",): "pooler.dense.bias"}


def convert_pooler(state_dict: dict[str, np.ndarray], config: EncoderConfig) -> dict[tuple, np.ndarray] | None:
    """The pooler's parameters (Pooler paths, float32; `dense` as [in, out]), or None when the checkpoint has none.

    Strict: a pooler that is only partly present or mis-shaped is an error listing every problem.
    """
    tensors = _strip_base_prefix(state_dict)
    if not any(key in tensors for key in _POOLER_KEYS.values()):
        return None
    d = config.hidden_size
    shapes = {("dense",): (d, d), ("dense_bias",): (d,)}
    params, missing, misshaped = _collect(tensors, _POOLER_KEYS, shapes, "pooler")
    if missing or misshaped:
        problems = [f"missing {missing}" if missing else "", f"wrong shape {misshaped}" if misshaped else ""]
        raise WeightsError(
            "the checkpoint's pooler does not fit: "
            + "; ".join(p for p in problems if p)
            + ". Use the checkpoint's own config.json."
        )
    return params


def load_pooler(name_or_path: str | Path, pooler: Any, *, revision: str | None = None) -> bool:
    """Fill `pooler` (a models.pooling.Pooler) in place from the checkpoint's pooler.dense.*; False if it has none."""
    return _load_head(name_or_path, pooler, convert_pooler, "pooler", revision)
