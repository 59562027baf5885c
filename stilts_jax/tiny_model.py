"""A tiny, randomly initialised XLM-R-shaped model in the Hugging Face format, with the shipped tokenizer.

    python -m stilts_jax.tiny_model --output workdir/tiny-xlmr

It loads wherever a hub model does (this project's `--model`, transformers' XLMRobertaModel), so the whole
system runs offline. The weights are a deterministic function of --seed.
"""

from __future__ import annotations

import argparse
import sys

from stilts_jax.demo.tiny_model import make_tiny_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stilts_jax.tiny_model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
