"""Encoder architecture read from (and written back to) a Hugging Face `config.json`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from stilts_jax.core.errors import ModelConfigError

# model_type -> family. RoBERTa-style models number positions from padding_idx + 1; BERT-style from 0.
SUPPORTED_MODEL_TYPES: dict[str, str] = {
    "xlm-roberta": "roberta",
    "roberta": "roberta",
    "bert": "bert",
}

SUPPORTED_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")

# The config.json of xlm-roberta-base, xlm-roberta-large and bert-base-multilingual-cased, as on the hub: their shapes
# without a download (ahead-of-time compilation, model.random_init).
SHIPPED_CONFIGS_DIR = Path(__file__).resolve().parents[1] / "assets" / "model_configs"


def shipped_config_dir(name: str) -> Path | None:
    """The folder holding the shipped config.json of hub model `name` (its last path part), or None."""
    folder = SHIPPED_CONFIGS_DIR / str(name).rstrip("/").split("/")[-1]
    return folder if (folder / "config.json").is_file() else None


def shipped_config_names() -> list[str]:
    return sorted(p.name for p in SHIPPED_CONFIGS_DIR.iterdir() if (p / "config.json").is_file())


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Architecture hyperparameters; names follow Hugging Face's config.json."""

    model_type: str = "xlm-roberta"
    vocab_size: int = 250002
    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 514
    type_vocab_size: int = 1
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    pad_token_id: int = 1
    bos_token_id: int = 0
    eos_token_id: int = 2

    def __post_init__(self) -> None:
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ModelConfigError(
                f"unsupported model_type {self.model_type!r}; supported: "
                f"{', '.join(sorted(SUPPORTED_MODEL_TYPES))}. Use an XLM-R/RoBERTa or BERT (e.g. mBERT) checkpoint."
            )
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            raise ModelConfigError(
                f"unsupported hidden_act {self.hidden_act!r}; supported: {', '.join(SUPPORTED_ACTIVATIONS)}"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ModelConfigError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )

    @property
    def family(self) -> str:
        return SUPPORTED_MODEL_TYPES[self.model_type]

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def position_offset(self) -> int:
        """First position id of a real token: padding_idx + 1 for RoBERTa/XLM-R, 0 for BERT."""
        return self.pad_token_id + 1 if self.family == "roberta" else 0

    @property
    def max_sequence_length(self) -> int:
        return self.max_position_embeddings - self.position_offset

    @classmethod
    def from_hf_dict(cls, hf: dict[str, Any]) -> EncoderConfig:
        model_type = hf.get("model_type")
        if model_type is None:
            raise ModelConfigError(
                "config.json has no 'model_type'; expected one of " + ", ".join(SUPPORTED_MODEL_TYPES)
            )
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ModelConfigError(
                f"unsupported model_type {model_type!r} in config.json; supported: "
                f"{', '.join(sorted(SUPPORTED_MODEL_TYPES))}. Use an XLM-R/RoBERTa or BERT (e.g. mBERT) checkpoint."
            )
        position_type = hf.get("position_embedding_type", "absolute")
        if position_type != "absolute":
            raise ModelConfigError(
                f"position_embedding_type {position_type!r} is not supported; only 'absolute' position embeddings are"
            )
        defaults = {"bert": {"layer_norm_eps": 1e-12, "pad_token_id": 0, "type_vocab_size": 2}}.get(
            SUPPORTED_MODEL_TYPES[model_type], {}
        )
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {**defaults, **{k: v for k, v in hf.items() if k in fields and v is not None}}
        return cls(**values)

    def to_hf_dict(self) -> dict[str, Any]:
        architectures = {"xlm-roberta": "XLMRobertaModel", "roberta": "RobertaModel", "bert": "BertModel"}
        return {
            "architectures": [architectures[self.model_type]],
            **dataclasses.asdict(self),
            "position_embedding_type": "absolute",
        }

    @classmethod
    def from_json_file(cls, path: str | Path) -> EncoderConfig:
        path = Path(path)
        try:
            hf = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ModelConfigError(f"{path} is not valid JSON ({e}); re-download or re-export the model") from e
        return cls.from_hf_dict(hf)


def tiny_config(vocab_size: int, **overrides: Any) -> EncoderConfig:
    """A small XLM-R-shaped architecture for tests and the offline demo."""
    values: dict[str, Any] = dict(
        model_type="xlm-roberta",
        vocab_size=vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=130,
    )
    values.update(overrides)
    return EncoderConfig(**values)
