"""The offline chain demo's XCOPA-style target (`python tools/make_demo_data.py`), in XCOPA's own JSON Lines format.

Each record's premise is a number-free sentence of one language with a year inserted; of the two choices (other
sentences of that language), one carries the same year and the other a different one, and the label points at
the matching one; the question (cause or effect) is drawn at random and carries no signal. A tiny model trained
from scratch on English can learn to match the years, and since digits are written the same way in every demo
language, the skill transfers zero-shot. Files: `xcopa/train-en.jsonl` and `xcopa/val-en.jsonl` (English, COPA's
role in XCOPA's English training) and `xcopa/val-{lang}.jsonl` for the XCOPA languages the shipped sentences have;
fields premise, choice1, choice2, question, label, idx, as google-research/xtreme's download writes XCOPA.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from stilts_jax.demo.qa_data import _number_free_sentences

XCOPA_DEMO_LANGUAGES = ("id", "sw", "th", "tr", "zh")  # XCOPA languages among the shipped parallel sentences


def _with_year(sentence: str, year: int, rng: random.Random) -> str:
    words = sentence.split(" ")
    cut = rng.randint(1, max(1, len(words) - 1))
    return " ".join([*words[:cut], str(year), *words[cut:]])


def xcopa_records(language: str, count: int, seed: int) -> list[dict]:
    rng = random.Random(f"xcopa-demo-{seed}-{language}")
    sentences = _number_free_sentences(language)
    records = []
    for i in range(count):
        premise, same, other = rng.sample(sentences, 3)
        year = rng.randint(1000, 2099)
        wrong = rng.choice([y for y in range(1000, 2100) if abs(y - year) > 50])
        label = rng.randint(0, 1)
        matching, different = _with_year(same, year, rng), _with_year(other, wrong, rng)
        choices = [matching, different] if label == 0 else [different, matching]
        records.append(
            {
                "premise": _with_year(premise, year, rng),
                "choice1": choices[0],
                "choice2": choices[1],
                "question": rng.choice(["cause", "effect"]),
                "label": label,
                "idx": i,
            }
        )
    return records


def write_xcopa(root: Path) -> list[Path]:
    """Write the demo's XCOPA files under `root` (an XTREME download layout)."""
    files = {"xcopa/train-en.jsonl": xcopa_records("en", 400, 1), "xcopa/val-en.jsonl": xcopa_records("en", 60, 2)}
    for lang in XCOPA_DEMO_LANGUAGES:
        files[f"xcopa/val-{lang}.jsonl"] = xcopa_records(lang, 60, 3)
    written = []
    for name, records in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        written.append(path)
    return written
