"""Sentence embeddings from the command line.

    python -m stilts_jax.embed --model xlm-roberta-large --input sentences.txt --layer 14 --pooling mean \\
        --output emb.npy

One sentence per line in; a float32 array [N, hidden] out, in the input order. `--layer k` indexes the
hidden-states tuple (0 = embeddings output); mean pooling covers every token the attention mask keeps,
<s> and </s> included (XTREME's retrieval representation). The sentences run through the evaluation Predictor
(stilts_jax.evaluation.embedding.SentenceEncoder), split over every device; several processes (--coordinator-address,
--num-processes, --process-id; nothing on TPU pods) embed the file together and process 0 writes it.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import jax
import numpy as np

from stilts_jax.core.distributed import add_process_arguments, initialize_from_args
from stilts_jax.core.errors import InputError, StiltsError
from stilts_jax.core.io_utils import atomic_write_bytes, read_lines
from stilts_jax.core.tokenization import load_tokenizer
from stilts_jax.evaluation.embedding import SentenceEncoder, default_retrieval_layer
from stilts_jax.models.hf_weights import load_pretrained


def read_sentences(path: str | Path) -> list[str]:
    """The lines of a UTF-8 file, split at line breaks (\n or \r\n) only, so embedding i is line i + 1; an empty file
    is an error."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input file {path} does not exist")
    sentences = read_lines(path)
    if not sentences:
        raise InputError(f"{path} is empty: expected one sentence per line")
    return sentences


def check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise InputError(f"--batch-size must be a positive number of sentences, got {batch_size}")


def save_array(path: str | Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m stilts_jax.embed", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="hub id (e.g. xlm-roberta-large) or a local Hugging Face folder")
    parser.add_argument("--tokenizer", help="tokenizer hub id or folder (default: the model's)")
    parser.add_argument("--input", required=True, help="UTF-8 text file, one sentence per line")
    parser.add_argument("--output", required=True, help="where to write the float32 [N, hidden] .npy array")
    parser.add_argument(
        "--layer", type=int, help="hidden-states index, 0 = embeddings (default: 14 of 24, 8 of 12, else the last)"
    )
    parser.add_argument("--pooling", choices=("mean", "cls"), default="mean")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=512, help="truncate sentences to this many tokens")
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default=None,
        help="compute dtype (default: float32 on CPU, bfloat16 on GPU/TPU)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_process_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_batch_size(args.batch_size)
        if args.max_length < 2:
            raise InputError(f"--max-length must be at least 2 tokens (<s> and </s>), got {args.max_length}")
        initialize_from_args(args)
        sentences = read_sentences(args.input)
        dtype = args.dtype or ("float32" if jax.default_backend() == "cpu" else "bfloat16")
        encoder, model_dir = load_pretrained(args.model, dtype=dtype)
        tokenizer = load_tokenizer(args.tokenizer or model_dir)
        layer = default_retrieval_layer(encoder.config.num_hidden_layers) if args.layer is None else args.layer
        sentence_encoder = SentenceEncoder(
            encoder,
            tokenizer,
            layer=layer,
            pooling=args.pooling,
            batch_size=args.batch_size,
            max_length=args.max_length,
        )
        start = time.perf_counter()
        embeddings = sentence_encoder.encode(sentences, progress=not args.no_progress)
        elapsed = time.perf_counter() - start
        if jax.process_index() == 0:  # every process holds every embedding
            save_array(args.output, embeddings)
    except StiltsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if jax.process_index() == 0:
        print(
            f"wrote {args.output}: {embeddings.shape[0]} x {embeddings.shape[1]} float32 (layer {layer}, "
            f"{args.pooling} pooling, {dtype}, {len(jax.devices())} {jax.default_backend()} device(s), "
            f"{len(sentences) / elapsed:.0f} sentences/s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
