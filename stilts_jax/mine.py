"""Bitext mining, as LASER's miner: embed two sentence files, score pairs by ratio margin, keep the best one-to-one.

    python -m stilts_jax.mine --model xlm-roberta-large --src sentences.de --tgt sentences.en --output pairs.tsv

Writes `score<TAB>source sentence<TAB>target sentence` lines, best first ("max" retrieval: each sentence's best
candidate in both directions, pooled, greedily one-to-one). Identical sentences are embedded once.
`--threshold` keeps only pairs scoring at least that much (BUCC tunes it on gold pairs). Several processes
(--coordinator-address, --num-processes, --process-id; nothing on TPU pods) share the embedding and the search;
process 0 writes the file.
"""

from __future__ import annotations

import argparse
import sys

import jax

from stilts_jax.core.distributed import add_process_arguments, initialize_from_args
from stilts_jax.core.errors import InputError, StiltsError
from stilts_jax.core.io_utils import atomic_write_text
from stilts_jax.core.tokenization import load_tokenizer
from stilts_jax.embed import check_batch_size, read_sentences
from stilts_jax.evaluation.embedding import SentenceEncoder, default_retrieval_layer
from stilts_jax.evaluation.search import mine_max, ratio_margin
from stilts_jax.models.hf_weights import load_pretrained


def mine_sentences(
    encoder: SentenceEncoder,
    source: list[str],
    target: list[str],
    *,
    k: int = 4,
    threshold: float | None = None,
    drop_non_finite: bool = False,
) -> list[tuple[float, str, str]]:
    unique_source, unique_target = sorted(set(source)), sorted(set(target))
    if min(len(unique_source), len(unique_target)) < k:
        raise StiltsError(f"mining with k={k} needs at least {k} distinct sentences on each side")
    x, y = encoder.encode(unique_source), encoder.encode(unique_target)
    pairs = mine_max(ratio_margin(x, y, k, drop_non_finite=drop_non_finite))
    return [
        (score, unique_source[i], unique_target[j]) for score, i, j in pairs if threshold is None or score >= threshold
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stilts_jax.mine", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="hub id or local Hugging Face folder")
    parser.add_argument("--tokenizer", help="default: the model's")
    parser.add_argument("--src", required=True, help="one sentence per line")
    parser.add_argument("--tgt", required=True, help="one sentence per line")
    parser.add_argument("--output", required=True, help="TSV to write")
    parser.add_argument("--layer", type=int, help="hidden-states index (default: 14 of 24, 8 of 12, else the last)")
    parser.add_argument("--k", type=int, default=4, help="neighbours for the margin (BUCC: 4)")
    parser.add_argument("--threshold", type=float, help="keep pairs with margin score >= this")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--drop-non-finite",
        action="store_true",
        help="leave out sentences whose embedding holds NaN or inf (refused by default)",
    )
    parser.add_argument("--dtype", choices=("float32", "bfloat16"))
    add_process_arguments(parser)
    args = parser.parse_args(argv)
    try:
        check_batch_size(args.batch_size)
        if args.k < 1:
            raise InputError(f"--k must be a positive number of neighbours, got {args.k}")
        initialize_from_args(args)
        source, target = read_sentences(args.src), read_sentences(args.tgt)
        dtype = args.dtype or ("float32" if jax.default_backend() == "cpu" else "bfloat16")
        model, model_dir = load_pretrained(args.model, dtype=dtype)
        layer = default_retrieval_layer(model.config.num_hidden_layers) if args.layer is None else args.layer
        encoder = SentenceEncoder(
            model, load_tokenizer(args.tokenizer or model_dir), layer=layer, batch_size=args.batch_size
        )
        pairs = mine_sentences(
            encoder, source, target, k=args.k, threshold=args.threshold, drop_non_finite=args.drop_non_finite
        )
        if jax.process_index() == 0:  # every process mined the same pairs
            atomic_write_text(args.output, "".join(f"{score:.6f}\t{s}\t{t}\n" for score, s, t in pairs))
    except StiltsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if jax.process_index() == 0:
        print(f"wrote {len(pairs)} pairs to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
