"""Length-grouped training batches (train.length_grouping): the share of computed tokens that are real, and the
train-step time at equal examples.

    python bench/length_grouping.py                   # token shares on three data sets + CPU step timing (tiny model)
    python bench/length_grouping.py --no-timing       # token shares only

Data sets, all tokenized with the shipped demo tokenizer (stilts_jax.core.tokenization.load_demo_tokenizer):
- demo XNLI (stilts_jax/assets/demo/xnli/train-en.tsv, 600 pairs) at max_length 256, as the xnli task featurizes it;
- demo SQuAD (stilts_jax.demo.qa_data.squad_examples) at 384 / doc stride 128, through featurize_qa;
- an MNLI-shaped mix at max_length 256: premise and hypothesis word counts drawn log-normally (sigma 0.5) around
  MultiNLI's mean lengths of 22 premise and 11 hypothesis words (Williams et al. 2018, "A Broad-Coverage Challenge
  Corpus for Sentence Understanding through Inference", table of key statistics), the words taken from the demo XNLI
  text, so the tokens per word are those of the demo tokenizer on English.
One epoch of BatchFeeder batches (global batch 32, seed 0), without and with grouping: real tokens (attention-mask
sums) over computed tokens (batch x width). Timing: the tiny model (bench/common.py) trains one epoch of the
MNLI-shaped mix on this host's CPU both ways after one warm-up step per width (compilation excluded); the ratio is
at equal examples (the same steps).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np

import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_XNLI = os.path.join(ROOT, "stilts_jax", "assets", "demo", "xnli", "train-en.tsv")


def pair_features(tokenizer, premises: list[str], hypotheses: list[str], max_length: int) -> dict[str, np.ndarray]:
    encoded = tokenizer(premises, hypotheses, truncation=True, max_length=max_length, padding="max_length")
    return {
        "input_ids": np.asarray(encoded["input_ids"], np.int32),
        "attention_mask": np.asarray(encoded["attention_mask"], np.int32),
        "labels": np.zeros(len(premises), np.int32),
    }


def demo_xnli(tokenizer) -> dict[str, np.ndarray]:
    with open(DEMO_XNLI, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    return pair_features(tokenizer, [r[0] for r in rows], [r[1] for r in rows], 256)


def demo_squad(tokenizer, count: int) -> dict[str, np.ndarray]:
    from stilts_jax.data.qa_features import featurize_qa
    from stilts_jax.demo.qa_data import squad_examples

    return featurize_qa(squad_examples(count, 0, "train"), tokenizer, max_length=384, doc_stride=128).arrays


def mnli_shaped(tokenizer, count: int, seed: int = 0) -> dict[str, np.ndarray]:
    with open(DEMO_XNLI, encoding="utf-8") as f:
        words = " ".join(line.split("\t")[0] for line in f).split()
    rng = np.random.default_rng(seed)

    def sentences(mean_words: float) -> list[str]:
        sigma = 0.5
        counts = np.maximum(1, rng.lognormal(np.log(mean_words) - sigma**2 / 2, sigma, count).round().astype(int))
        return [" ".join(rng.choice(words, n)) for n in counts]

    return pair_features(tokenizer, sentences(22.0), sentences(11.0), 256)


def token_shares(features: dict[str, np.ndarray], batch: int, mesh, rules) -> tuple[float, float, list[int]]:
    from stilts_jax.train.feeding import BatchFeeder, row_lengths

    lengths = row_lengths(features["attention_mask"])
    shares = []
    widths: list[int] = []
    for grouping in (False, True):
        feeder = BatchFeeder(features, batch, 1, 0, mesh, rules, length_grouping=grouping)
        real = computed = 0
        for step in range(feeder.steps_per_epoch):
            width = feeder.batch_width(step) or features["input_ids"].shape[-1]
            real += int(lengths[feeder.example_indices(step)].sum())
            computed += width * batch
            if grouping:
                widths.append(width)
        shares.append(real / computed)
    return shares[0], shares[1], widths


def time_epoch(features: dict[str, np.ndarray], batch: int, grouping: bool, mesh, rules) -> tuple[float, int]:
    """Seconds for one epoch of train steps of the tiny model (after compiling each width), and the steps."""
    import jax
    from flax import nnx

    from stilts_jax.models.encoder import Encoder
    from stilts_jax.models.heads import ClassificationHead, TaskModel, classification_loss
    from stilts_jax.train.feeding import BatchFeeder
    from stilts_jax.train.loop import SingleTaskData
    from stilts_jax.train.optimizer import OptimizerConfig, make_optimizer
    from stilts_jax.train.state import ModelSpec, init_train_state, state_shardings

    config = common.model_config("tiny")
    rngs = nnx.Rngs(0)
    model = TaskModel(Encoder(config, rngs=rngs), ClassificationHead(config.hidden_size, 3, rngs=rngs))
    feeder = BatchFeeder(features, batch, 1, 0, mesh, rules, length_grouping=grouping)
    data = SingleTaskData(feeder, classification_loss)
    spec = ModelSpec(model, mesh, rules)
    tx, schedule = make_optimizer(OptimizerConfig(learning_rate=1e-4), feeder.steps_per_epoch)
    shardings = state_shardings(spec, tx)
    state = init_train_state(spec, tx, 0, shardings)
    step_fn = data.make_steps(spec, tx, schedule, shardings, dropout=True)[""]
    steps = feeder.steps_per_epoch
    first_of_width: dict[int | None, int] = {}
    for step in range(steps):
        first_of_width.setdefault(feeder.batch_width(step), step)
    for step in first_of_width.values():  # compile every width outside the timing
        state, metrics = step_fn(state, data.batch(step))
        jax.block_until_ready(metrics)
    start = time.perf_counter()
    for step in range(steps):
        state, metrics = step_fn(state, data.batch(step))
    jax.block_until_ready(metrics)
    return time.perf_counter() - start, steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32, help="global batch size. Default: 32")
    parser.add_argument("--mnli-examples", type=int, default=4096, help="MNLI-shaped pairs. Default: 4096")
    parser.add_argument("--squad-examples", type=int, default=1000, help="demo SQuAD questions. Default: 1000")
    parser.add_argument("--no-timing", action="store_true", help="skip the CPU train-step timing")
    args = parser.parse_args(argv)

    import jax

    from stilts_jax.core import distributed
    from stilts_jax.core.tokenization import load_demo_tokenizer

    tokenizer = load_demo_tokenizer()
    mesh = distributed.make_mesh({"data": -1}, devices=jax.devices()[:1])
    rules = distributed.DEFAULT_LOGICAL_RULES
    sets = {
        "demo XNLI (256)": demo_xnli(tokenizer),
        "demo SQuAD (384/128)": demo_squad(tokenizer, args.squad_examples),
        "MNLI-shaped (256)": mnli_shaped(tokenizer, args.mnli_examples),
    }
    print("| data | rows | mean real length | real tokens, padded to max_length | real tokens, grouped | widths used |")
    print("|---|---|---|---|---|---|")
    for name, features in sets.items():
        before, after, widths = token_shares(features, args.batch, mesh, rules)
        mean = features["attention_mask"].sum(-1).mean()
        used = ", ".join(f"{w}: {widths.count(w)}" for w in sorted(set(widths)))
        print(
            f"| {name} | {len(features['input_ids'])} | {mean:.1f} | {100 * before:.1f}% | {100 * after:.1f}% | {used} |"
        )
    if not args.no_timing:
        features = sets["MNLI-shaped (256)"]
        padded, steps = time_epoch(features, args.batch, False, mesh, rules)
        grouped, _ = time_epoch(features, args.batch, True, mesh, rules)
        print(
            f"\nCPU train steps, tiny model, MNLI-shaped, {steps} steps of {args.batch}: padded {padded:.2f} s, "
            f"grouped {grouped:.2f} s, ratio {padded / grouped:.2f}x"
        )
    print("\n" + "\n".join(common.environment_lines(torch_needed=False)))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.exit(main())
