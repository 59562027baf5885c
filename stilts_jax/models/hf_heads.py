"""A fine-tuned TaskModel as a transformers task model (XLMRobertaForQuestionAnswering, BertForSequenceClassification,
...) and back: the encoder under the base-model prefix (roberta., bert.) plus the head's tensors, mapped exactly.

How each head maps (torch Linear stores [out, in]; ours [in, out]):
  question answering     SpanHead output -> qa_outputs (start and end logits: column 0 and 1).
  token classification   TaggingHead output -> classifier.
  sequence classification, RoBERTa/XLM-R: ClassificationHead dense -> classifier.dense, output -> classifier.out_proj
                         (both dropout, dense, tanh, dropout, projection on the first token).
  sequence classification and multiple choice, BERT; multiple choice, RoBERTa/XLM-R: ClassificationHead dense ->
                         the base model's pooler.dense (tanh of the first token's projection), output -> classifier.
In evaluation (no dropout) the logits are the same function of the same weights; in training our head also drops out
the first token's hidden state before the dense layer, which the pooler does not.

Import is strict: every tensor of the checkpoint must be used (position-id buffers aside) and every parameter found,
with the right shape; class labels are matched by name (config.json's id2label) to the task's labels.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from stilts_jax.core.errors import WeightsError
from stilts_jax.models import hf_files
from stilts_jax.models.config import EncoderConfig
from stilts_jax.models.encoder import Encoder, stack_layers
from stilts_jax.models.heads import ClassificationHead, SpanHead, TaggingHead, TaskModel
from stilts_jax.models.hf_weights import (
    _mapping,
    _normalise_key,
    convert_hf_state_dict,
    encoder_to_hf_state_dict,
    write_hf_folder,
)

QUESTION_ANSWERING = "question_answering"
SEQUENCE_CLASSIFICATION = "sequence_classification"
TOKEN_CLASSIFICATION = "token_classification"
MULTIPLE_CHOICE = "multiple_choice"
HEAD_KINDS = (QUESTION_ANSWERING, SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION, MULTIPLE_CHOICE)

_SUFFIXES = {
    QUESTION_ANSWERING: "ForQuestionAnswering",
    SEQUENCE_CLASSIFICATION: "ForSequenceClassification",
    TOKEN_CLASSIFICATION: "ForTokenClassification",
    MULTIPLE_CHOICE: "ForMultipleChoice",
}
_CLASS_PREFIXES = {"xlm-roberta": "XLMRoberta", "roberta": "Roberta", "bert": "Bert"}
_BASE_PREFIXES = {"roberta": "roberta.", "bert": "bert."}  # by EncoderConfig.family
_HEAD_TYPES = {
    QUESTION_ANSWERING: SpanHead,
    TOKEN_CLASSIFICATION: TaggingHead,
    SEQUENCE_CLASSIFICATION: ClassificationHead,
    MULTIPLE_CHOICE: ClassificationHead,
}
# Buffers some checkpoints carry beside the weights; they hold no learned values.
_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")


def architecture_name(config: EncoderConfig, kind: str) -> str:
    """transformers' class for the encoder with this head, e.g. XLMRobertaForQuestionAnswering."""
    return _CLASS_PREFIXES[config.model_type] + _SUFFIXES[kind]


def kind_of_architecture(name: str) -> str | None:
    """The head kind of a transformers class name (XLMRobertaForTokenClassification -> token_classification)."""
    for kind, suffix in _SUFFIXES.items():
        if re.fullmatch(rf"({'|'.join(_CLASS_PREFIXES.values())}){suffix}", name):
            return kind
    return None


def _head_keys(config: EncoderConfig, kind: str) -> dict[tuple[str, ...], str]:
    """Our head's parameter paths -> Hugging Face keys, after the base-model prefix is stripped (pooler.*)."""
    if kind == QUESTION_ANSWERING:
        return {("output",): "qa_outputs.weight", ("output_bias",): "qa_outputs.bias"}
    if kind == TOKEN_CLASSIFICATION:
        return {("output",): "classifier.weight", ("output_bias",): "classifier.bias"}
    if kind == SEQUENCE_CLASSIFICATION and config.family == "roberta":
        return {
            ("dense",): "classifier.dense.weight",
            ("dense_bias",): "classifier.dense.bias",
            ("output",): "classifier.out_proj.weight",
            ("output_bias",): "classifier.out_proj.bias",
        }
    return {
        ("dense",): "pooler.dense.weight",
        ("dense_bias",): "pooler.dense.bias",
        ("output",): "classifier.weight",
        ("output_bias",): "classifier.bias",
    }


def _check_kind(kind: str) -> None:
    if kind not in HEAD_KINDS:
        raise WeightsError(f"unknown head kind {kind!r}; known: {', '.join(HEAD_KINDS)}")


def check_head(head: nnx.Module, kind: str) -> None:
    """Refuse a head that transformers' class for `kind` cannot hold exactly."""
    _check_kind(kind)
    expected = _HEAD_TYPES[kind]
    if not isinstance(head, expected):
        raise WeightsError(
            f"a {type(head).__name__} cannot be exported as a {kind} head (transformers' "
            f"{_SUFFIXES[kind]} models hold a {expected.__name__})"
        )
    outputs = head.output.shape[-1]
    if kind == MULTIPLE_CHOICE and outputs != 1:
        raise WeightsError(f"a multiple-choice head scores each choice with one logit; this head has {outputs}")
    if kind == SEQUENCE_CLASSIFICATION and outputs < 2:
        raise WeightsError(
            "a classification head with one output would be a regression model in transformers; "
            "export it as a multiple-choice head if it scores choices"
        )


def _flat_params(module: nnx.Module) -> dict[tuple, np.ndarray]:
    return {
        tuple(path): np.asarray(jax.device_get(var[...]), np.float32)
        for path, var in nnx.to_flat_state(nnx.state(module, nnx.Param))
    }


def task_model_to_hf_state_dict(model: TaskModel, kind: str) -> dict[str, np.ndarray]:
    """The model's parameters under the keys of transformers' task model for `kind`, float32 NumPy arrays."""
    check_head(model.head, kind)
    config: EncoderConfig = model.encoder.config
    prefix = _BASE_PREFIXES[config.family]
    tensors = {prefix + key: value for key, value in encoder_to_hf_state_dict(model.encoder).items()}
    head = _flat_params(model.head)
    for path, key in _head_keys(config, kind).items():
        value = head[path]
        tensors[(prefix + key) if key.startswith("pooler.") else key] = (
            np.ascontiguousarray(value.T) if value.ndim == 2 else value
        )
    return tensors


def hf_task_config(config: EncoderConfig, kind: str, labels: Sequence[str] | None = None) -> dict[str, Any]:
    """config.json for transformers' task model: the encoder's config, the architecture and, for classification and
    tagging, the labels (id2label/label2id in the head's output order)."""
    _check_kind(kind)
    hf = {**config.to_hf_dict(), "architectures": [architecture_name(config, kind)]}
    if kind in (SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION):
        if not labels:
            raise WeightsError(f"a {kind} export needs the task's labels (id2label)")
        hf["id2label"] = {str(i): str(label) for i, label in enumerate(labels)}
        hf["label2id"] = {str(label): i for i, label in enumerate(labels)}
        if kind == SEQUENCE_CLASSIFICATION:
            hf["problem_type"] = "single_label_classification"
    return hf


def export_task_model(
    model: TaskModel,
    output_dir: str | Path,
    *,
    kind: str,
    labels: Sequence[str] | None = None,
    tokenizer_dir: str | Path | None = None,
) -> Path:
    """Write config.json, model.safetensors (and the tokenizer files from `tokenizer_dir`) that transformers'
    task model for `kind` loads with no missing or unexpected keys. The folder is written whole or not at all."""
    tensors = task_model_to_hf_state_dict(model, kind)
    outputs = _flat_params(model.head)[("output",)].shape[-1]
    if kind in (SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION) and labels is not None and len(labels) != outputs:
        raise WeightsError(f"{len(labels)} labels for a head with {outputs} outputs")
    config = hf_task_config(model.encoder.config, kind, labels)
    return write_hf_folder(output_dir, config, tensors, tokenizer_dir=tokenizer_dir)


def label_order(hf_config: dict[str, Any], labels: Sequence[str], where: str) -> list[int]:
    """For each of our `labels`, the checkpoint's output index: by name when config.json's id2label names them all,
    by position when it holds transformers' placeholders (LABEL_0, ...)."""
    id2label = {int(k): str(v) for k, v in (hf_config.get("id2label") or {}).items()}
    names = [id2label.get(i) for i in range(len(id2label))]
    if len(names) != len(labels):
        raise WeightsError(
            f"{where}: the checkpoint has {len(names)} labels ({names}), the task {len(labels)} "
            f"({list(labels)}); it was fine-tuned for another task"
        )
    if all(name == f"LABEL_{i}" for i, name in enumerate(names)):
        return list(range(len(labels)))
    by_name = {str(name).lower(): i for i, name in enumerate(names)}
    missing = [label for label in labels if str(label).lower() not in by_name]
    if missing:
        raise WeightsError(
            f"{where}: config.json's id2label {names} does not name the task's labels {missing} "
            f"(the task's labels: {list(labels)}); fix id2label, or use a model fine-tuned for this task"
        )
    return [by_name[str(label).lower()] for label in labels]


def hf_task_params(
    model_dir: str | Path, *, kind: str, labels: Sequence[str] | None = None
) -> tuple[EncoderConfig, dict[tuple, np.ndarray], dict[tuple, np.ndarray]]:
    """A transformers task model folder's encoder and head parameters (our flat paths, float32), strictly.

    `kind` must be the head in config.json's architectures; `labels` (classification, tagging) are the task's, in
    the head's output order: the checkpoint's outputs are reordered to them by name (see `label_order`).
    Raises WeightsError naming every missing, unexpected or mis-shaped tensor.
    """
    _check_kind(kind)
    model_dir = Path(model_dir)
    config_path = model_dir / "config.json"
    if not config_path.exists():
        raise WeightsError(f"{model_dir} has no config.json; it is not a Hugging Face model folder")
    try:
        hf_config = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise WeightsError(f"{config_path} is not valid JSON ({e})") from e
    architectures = hf_config.get("architectures") or []
    found = [kind_of_architecture(name) for name in architectures]
    if kind not in found:
        wanted = "/".join(f"{prefix}{_SUFFIXES[kind]}" for prefix in _CLASS_PREFIXES.values())
        raise WeightsError(
            f"{config_path} names the architectures {architectures}; a {kind} model is a {wanted} "
            "(a base model without its task head cannot be evaluated)"
        )
    config = EncoderConfig.from_hf_dict(hf_config)
    state_dict = {_normalise_key(k): v for k, v in hf_files.read_state_dict(model_dir).items()}
    encoder = convert_hf_state_dict(state_dict, config)  # strict about the encoder's own tensors
    prefix = _BASE_PREFIXES[config.family]
    stripped = {key[len(prefix) :] if key.startswith(prefix) else key: value for key, value in state_dict.items()}
    keys = _head_keys(config, kind)
    head: dict[tuple, np.ndarray] = {}
    missing = [key for key in keys.values() if key not in stripped]
    for path, key in keys.items():
        if key in stripped:
            value = np.asarray(stripped[key], np.float32)
            head[path] = np.ascontiguousarray(value.T) if value.ndim == 2 else value
    used = {rule.hf_key for rule in _mapping(config)} | set(keys.values()) | set(_BUFFERS)
    unexpected = sorted(key for key in stripped if key not in used)
    d = config.hidden_size
    shapes = _head_shapes(kind, d, head)
    misshaped = [
        f"{keys[path]}: {tuple(head[path].shape[::-1]) if head[path].ndim == 2 else head[path].shape}, "
        f"expected {shape[::-1]}"
        for path, shape in shapes.items()
        if path in head and head[path].shape != shape
    ]
    if missing or unexpected or misshaped:
        problems = [
            f"missing {missing}" if missing else "",
            f"unexpected {unexpected}" if unexpected else "",
            f"wrong shape {misshaped}" if misshaped else "",
        ]
        raise WeightsError(
            f"{model_dir}: the checkpoint does not hold exactly a {architecture_name(config, kind)}: "
            + "; ".join(p for p in problems if p)
            + ". Save the model with transformers' save_pretrained from that class."
        )
    if kind in (SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION):
        if labels is None:
            raise WeightsError(f"importing a {kind} head needs the task's labels")
        order = label_order(hf_config, labels, str(config_path))
        head[("output",)] = np.ascontiguousarray(head[("output",)][:, order])
        head[("output_bias",)] = head[("output_bias",)][order]
    return config, encoder, head


def _head_shapes(kind: str, d: int, head: dict[tuple, np.ndarray]) -> dict[tuple, tuple[int, ...]]:
    outputs = {QUESTION_ANSWERING: 2, MULTIPLE_CHOICE: 1}.get(kind)
    if outputs is None:  # the label count is checked against the task's labels
        outputs = head[("output",)].shape[-1] if ("output",) in head else 0
    shapes: dict[tuple, tuple[int, ...]] = {("output",): (d, outputs), ("output_bias",): (outputs,)}
    if kind in (SEQUENCE_CLASSIFICATION, MULTIPLE_CHOICE):
        shapes.update({("dense",): (d, d), ("dense_bias",): (d,)})
    return shapes


def load_hf_task_model(
    model_dir: str | Path,
    *,
    kind: str,
    head: Callable[[int, nnx.Rngs], nnx.Module],
    labels: Sequence[str] | None = None,
    dtype: Any = jnp.float32,
    scan_layers: bool = False,
) -> TaskModel:
    """The TaskModel of a transformers task model folder: `head(hidden_size, rngs)` builds the head (a task's
    `head` method), filled from the checkpoint as `hf_task_params` reads it; `scan_layers`: the encoder's layers
    stacked (see `Encoder`)."""
    config, encoder_params, head_params = hf_task_params(model_dir, kind=kind, labels=labels)
    if scan_layers:
        encoder_params = stack_layers(encoder_params)
    abstract = nnx.eval_shape(
        lambda: TaskModel(
            Encoder(config, rngs=nnx.Rngs(0), dtype=dtype, scan_layers=scan_layers),
            head(config.hidden_size, nnx.Rngs(0)),
        )
    )
    check_head(abstract.head, kind)
    graphdef, state = nnx.split(abstract)
    params = {("encoder", *path): value for path, value in encoder_params.items()}
    params.update({("head", *path): value for path, value in head_params.items()})
    flat = nnx.to_flat_state(state)
    expected = {tuple(path): tuple(var.shape) for path, var in flat}
    if set(expected) != set(params):
        raise WeightsError(
            f"{model_dir}: the head's parameters {sorted(p for p in expected if p[0] == 'head')} do not "
            f"match the checkpoint's {sorted(p for p in params if p[0] == 'head')}"
        )
    wrong = [
        f"{'/'.join(map(str, p))}: checkpoint {params[p].shape}, model {expected[p]}"
        for p in expected
        if params[p].shape != expected[p]
    ]
    if wrong:
        raise WeightsError(f"{model_dir}: the checkpoint's head does not fit the task's head: {wrong}")
    for path, var in flat:
        var.set_value(jnp.asarray(params[tuple(path)]))
    return nnx.merge(graphdef, state)
