"""Span-QA featurization throughput on the host CPU: is the input pipeline a bottleneck for training?

    python bench/featurize_bench.py                                 # 2000 demo examples, 384 / stride 128
    python bench/featurize_bench.py --context-multiplier 3          # ~SQuAD-length contexts
    python bench/featurize_bench.py --consumer 441                  # compare with a train step's examples/s

Times stilts_jax.data.qa_features.featurize_qa (question truncation, the tokenizer's question/context pairs with
doc stride and offsets, answer labelling, numpy arrays) with the shipped tokenizer
(stilts_jax.core.tokenization.load_demo_tokenizer, a sentencepiece unigram in XLM-R's format) on the demo SQuAD
examples (stilts_jax.demo.qa_data.squad_examples). --context-multiplier k appends k-1 other demo contexts after
each context, so contexts get longer (the answer stays where it was). Median of --repeats passes after a
warm-up pass; one process, the tokenizer's own threading as configured (TOKENIZERS_PARALLELISM).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np

import common


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=2000, help="demo SQuAD examples to featurize. Default: 2000")
    parser.add_argument("--max-length", type=int, default=384, help="feature length in tokens. Default: 384")
    parser.add_argument("--doc-stride", type=int, default=128, help="overlap of context windows. Default: 128")
    parser.add_argument("--max-query-length", type=int, default=64, help="question truncation. Default: 64")
    parser.add_argument(
        "--context-multiplier",
        type=int,
        default=1,
        help="make each context this many demo contexts long. Default: 1 (as shipped)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed passes; the median is reported. Default: 3")
    parser.add_argument(
        "--consumer",
        type=float,
        default=None,
        metavar="EXAMPLES_PER_S",
        help="a train or eval step's features/s (e.g. from train_bench.py) to compare with. Default: none",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the demo examples. Default: 0")
    args = parser.parse_args(argv)
    if args.examples < 1 or args.repeats < 1 or args.context_multiplier < 1:
        parser.error("--examples, --repeats and --context-multiplier must be >= 1")
    return args


def lengthen(examples: list, multiplier: int) -> list:
    if multiplier == 1:
        return examples
    out = []
    for i, ex in enumerate(examples):
        extra = [examples[(i + j) % len(examples)].context for j in range(1, multiplier)]
        out.append(dataclasses.replace(ex, context=" ".join([ex.context, *extra])))
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import transformers

    from stilts_jax.core.tokenization import load_demo_tokenizer
    from stilts_jax.data.qa_features import featurize_qa
    from stilts_jax.demo.qa_data import squad_examples

    tokenizer = load_demo_tokenizer()
    examples = lengthen(squad_examples(args.examples, args.seed, "train"), args.context_multiplier)
    context_tokens = [
        len(ids) for ids in tokenizer([ex.context for ex in examples], add_special_tokens=False)["input_ids"]
    ]

    rows = []
    for with_labels, label in ((True, "train (with start/end labels)"), (False, "evaluation (no labels)")):
        result = {}

        def run(with_labels=with_labels, result=result):
            result["features"] = featurize_qa(
                examples,
                tokenizer,
                max_length=args.max_length,
                doc_stride=args.doc_stride,
                max_query_length=args.max_query_length,
                with_labels=with_labels,
            )

        seconds, _ = common.time_calls(run, 1, args.repeats)
        features = result["features"]
        num_features = len(features)
        real = int(features.arrays["attention_mask"].sum())
        row = [
            label,
            str(len(examples)),
            str(num_features),
            common.fmt_num(seconds),
            common.fmt_num(len(examples) / seconds),
            common.fmt_num(num_features / seconds),
            common.fmt_num(real / seconds),
        ]
        if args.consumer:
            row.append(f"{num_features / seconds / args.consumer:.1f}x")
        rows.append(row)

    print()
    print(
        f"## Span-QA featurization (featurize_qa), max_length {args.max_length}, doc_stride {args.doc_stride}, "
        f"max_query_length {args.max_query_length}"
    )
    for line in common.environment_lines(torch_needed=False):
        if not line.startswith("jax"):
            print(f"- {line}")
    print(
        f"- transformers {transformers.__version__}, tokenizer {type(tokenizer).__name__} (the shipped demo one, "
        f"vocab {len(tokenizer)}), TOKENIZERS_PARALLELISM={os.environ.get('TOKENIZERS_PARALLELISM', 'unset')}"
    )
    print(
        f"- data: demo SQuAD examples x context multiplier {args.context_multiplier}: context length mean "
        f"{np.mean(context_tokens):.0f} tokens, max {max(context_tokens)}; median of {args.repeats} passes after a warm-up"
    )
    print()
    header = ["featurization", "examples", "features", "seconds", "examples/s", "features/s", "real tokens/s"]
    if args.consumer:
        header.append(f"features/s vs consumer ({args.consumer:g}/s)")
    print(common.markdown_table(header, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
