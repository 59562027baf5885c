"""Data sources of the committed intermediate-task fixtures (tests/fixtures/tasks, original release formats)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TASKS = Path(__file__).parent / "fixtures" / "tasks"


def _files(train: str, dev: str) -> dict[str, Any]:
    return {"kind": "files", "paths": {"train": str(TASKS / train), "dev": str(TASKS / dev)}}


SOURCES: dict[str, dict[str, Any]] = {
    "mnli": _files("mnli/multinli_1.0_train.jsonl", "mnli/multinli_1.0_dev_matched.jsonl"),
    "snli": _files("snli/snli_1.0_train.jsonl", "snli/snli_1.0_dev.jsonl"),
    "anli": _files("anli/R1/train.jsonl", "anli/R1/dev.jsonl"),
    "qqp": _files("qqp/train.tsv", "qqp/dev.tsv"),
    "paws": _files("paws/final/train.tsv", "paws/final/dev.tsv"),
    "commonsenseqa": _files("commonsenseqa/train_rand_split.jsonl", "commonsenseqa/dev_rand_split.jsonl"),
    "cosmosqa": _files("cosmosqa/train.csv", "cosmosqa/valid.csv"),
    "hellaswag": _files("hellaswag/hellaswag_train.jsonl", "hellaswag/hellaswag_val.jsonl"),
    "copa": _files("copa/COPA/train.jsonl", "copa/COPA/val.jsonl"),
    "ccg": {"kind": "files", "path": str(TASKS / "ccg" / "jiant")},
    # English reasoning datasets, hand-written in their release formats (tests/fixtures/tasks/README.md).
    "piqa": _files("piqa/physicaliqa-train-dev/train.jsonl", "piqa/physicaliqa-train-dev/dev.jsonl"),
    "winogrande": _files("winogrande/winogrande_1.1/train_xl.jsonl", "winogrande/winogrande_1.1/dev.jsonl"),
    "reclor": _files("reclor/train.json", "reclor/val.json"),
    "logiqa2": _files("logiqa2/logiqa/DATA/LOGIQA/train.txt", "logiqa2/logiqa/DATA/LOGIQA/dev.txt"),
    "art": _files("art/train.jsonl", "art/dev.jsonl"),
}
# ANLI+ trains on ANLI + MNLI + SNLI and selects on ANLI's dev set: one source per part.
SOURCES["anli_plus"] = {part: SOURCES[part] for part in ("anli", "mnli", "snli")}
