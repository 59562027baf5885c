"""A tiny, randomly initialised XLM-R-shaped model in the Hugging Face format, with the shipped tokenizer.

Command line: `python -m stilts_jax.tiny_model --output workdir/tiny-xlmr`.

It loads wherever a hub model does (this project's `--model`, transformers' XLMRobertaModel), so the whole
system runs offline. The weights are a deterministic function of --seed.
"""

from __future__ import annotations

from pathlib import Path

from flax import nnx

from stilts_jax.core.tokenization import DEMO_TOKENIZER_DIR, load_demo_tokenizer
from stilts_jax.models.config import tiny_config
from stilts_jax.models.encoder import Encoder
from stilts_jax.models.hf_weights import export_hf


def make_tiny_model(
    output_dir: str | Path,
    *,
    seed: int = 0,
    num_layers: int = 2,
    hidden_size: int = 64,
    num_heads: int = 4,
    intermediate_size: int = 128,
    max_length: int = 128,
) -> Path:
    """Write config.json, model.safetensors and the shipped tokenizer to `output_dir`; return it."""
    tokenizer = load_demo_tokenizer()
    config = tiny_config(
        len(tokenizer),
        num_hidden_layers=num_layers,
        hidden_size=hidden_size,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_length + 2,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    encoder = Encoder(config, rngs=nnx.Rngs(seed))
    return export_hf(encoder, output_dir, tokenizer_dir=DEMO_TOKENIZER_DIR)
