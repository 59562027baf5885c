"""A tiny, randomly initialised XLM-R-shaped model in the Hugging Face format, with the shipped tokenizer.

    python -m stilts_jax.tiny_model --output workdir/tiny-xlmr

It loads wherever a hub model does (this project's `--model`, transformers' XLMRobertaModel), so the whole
system runs offline. The weights are a deterministic function of --seed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flax import nnx

from stilts_jax.models.config import tiny_config
from stilts_jax.models.encoder import Encoder
from stilts_jax.models.hf_weights import export_hf
from stilts_jax.tokenization import DEMO_TOKENIZER_DIR, load_demo_tokenizer


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stilts_jax.tiny_model", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="folder to write (replaced whole if it exists)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--intermediate", type=int, default=128)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args(argv)
    path = make_tiny_model(
        args.output,
        seed=args.seed,
        num_layers=args.layers,
        hidden_size=args.hidden,
        num_heads=args.heads,
        intermediate_size=args.intermediate,
        max_length=args.max_length,
    )
    print(f"wrote a tiny XLM-R model ({args.layers} layers, hidden {args.hidden}) to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
