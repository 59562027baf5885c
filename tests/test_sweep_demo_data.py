"""The demo sweep's MNLI set: shipped as the generator writes it, read by the mnli task, labelled by its rule."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from stilts_jax.data.task_sources import load_examples

ROOT = Path(__file__).resolve().parent.parent
GLUE = ROOT / "stilts_jax" / "assets" / "demo" / "glue"
FILES = ("mnli/train-00000-of-00001.parquet", "mnli/validation_matched-00000-of-00001.parquet")
YEAR = re.compile(r"\b\d{4}\b")


def test_shipped_mnli_files_are_what_the_generator_writes(tmp_path):
    out = subprocess.run(
        [sys.executable, "tools/make_demo_data.py", "--output", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    for name in FILES:
        shipped, fresh = pq.read_table(GLUE / name), pq.read_table(tmp_path / "glue" / name)
        assert shipped.schema.names == ["premise", "hypothesis", "label", "idx"]  # GLUE's mnli columns
        assert shipped.to_pylist() == fresh.to_pylist()
    for name in (
        "squad/train-v1.1.json",
        "tydiqa/tydiqa-goldp-v1.1-dev/tydiqa.goldp.sw.dev.json",
        "xcopa/train-en.jsonl",
        "xcopa/val-zh.jsonl",
        "xnli/train-en.tsv",
        "xnli/dev-sw.tsv",
    ):
        assert (tmp_path / name).read_bytes() == (ROOT / "stilts_jax" / "assets" / "demo" / name).read_bytes()


def test_the_mnli_task_reads_the_shipped_copy_and_each_label_follows_the_rule():
    source = {"kind": "hf", "repo": str(GLUE)}
    train, dev = load_examples("mnli", "train", source)["en"], load_examples("mnli", "dev", source)["en"]
    assert len(train) == 600 and len(dev) == 90
    assert Counter(ex.label for ex in train) == {0: 200, 1: 200, 2: 200}  # entailment, neutral, contradiction
    for ex in train + dev:
        premise_year, hypothesis_year = YEAR.findall(ex.text_a), YEAR.findall(ex.text_b)
        assert len(premise_year) == 1 and len(hypothesis_year) == 1, ex
        if ex.label == 0:
            assert ex.text_b in ex.text_a
        elif ex.label == 2:
            assert (
                hypothesis_year != premise_year and ex.text_b.replace(hypothesis_year[0], premise_year[0]) in ex.text_a
            )
        else:
            assert hypothesis_year == premise_year and ex.text_b not in ex.text_a


def test_the_chain_demo_targets_follow_their_rules_in_every_language():
    demo = {"kind": "xtreme", "path": str(ROOT / "stilts_jax" / "assets" / "demo")}
    xcopa = load_examples("xcopa", "dev", demo, ["en", "sw", "zh"])
    for examples in xcopa.values():
        assert len(examples) == 60 and Counter(ex.label for ex in examples).keys() == {0, 1}
        for ex in examples:
            year = YEAR.findall(ex.prompt)[0]
            assert [year in choice for choice in ex.choices] == [c == ex.label for c in range(2)]
    xnli = load_examples("xnli", "dev", demo, ["ar", "en", "th", "zh"])
    for examples in xnli.values():
        assert Counter(ex.label for ex in examples) == Counter({0: 20, 1: 20, 2: 20})
        for ex in examples:
            entailed = ex.text_b in ex.text_a
            assert entailed == (ex.label == 0)  # only entailment repeats the premise's sentence word for word
