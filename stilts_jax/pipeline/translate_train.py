"""Translate-train and translate-train-all: a phase trained on English plus machine translations of its training set.

The settings (XTREME, Hu et al. 2020; mT5, Xue et al. 2021, arXiv 2010.11934):
- zero-shot: English training data only (`train_languages=['en']`, the default);
- translate-train: English plus its translation into one language (`train_languages=['en','de']`);
- translate-train-all: English plus the translations into every evaluated language (`train_languages=['all']`: every
  language of the task), one model for all of them; `language_sampling='balanced'` draws every language equally often.

Where translations come from: `translated_train` (a file template with `{lang}`, e.g. the translations bucket,
gs://xtreme_translations/XNLI/translate-train/en-{lang}-translated.tsv), else, for a source of kind xtreme, the
files XTREME's own training code reads inside the download folder (the task dataset's `xtreme_translate_train`,
stilts_jax/data/task_sources/catalog.py), else the source itself where it has training data in the language.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

from stilts_jax.core.paths import as_path
from stilts_jax.data.task_sources import DATASETS
from stilts_jax.tasks.registry import TASKS

ALL = "all"  # train_languages=['all']: English and every language of the task
ZERO_SHOT, TRANSLATE_TRAIN, TRANSLATE_TRAIN_ALL = "zero-shot", "translate-train", "translate-train-all"
SAMPLINGS = ("concatenate", "balanced")


def training_languages(phase: ml_collections.ConfigDict, task: str) -> list[str]:
    """The phase's training languages, English first where trained; 'all' is English and every language of `task`."""
    languages = list(phase.train_languages or ["en"])
    if ALL in languages:
        spec = TASKS.get(task)
        task_languages = list(spec.languages) if spec is not None else []
        languages = ["en", *task_languages, *(lang for lang in languages if lang != ALL)]
    return list(dict.fromkeys(languages))


def translation_source(
    task: str, phase: ml_collections.ConfigDict, source: Mapping[str, Any], language: str
) -> dict[str, Any] | None:
    """A 'files' source for the translated training file of `language`, or None when the language's training data
    comes from the phase's source itself."""
    if phase.translated_train:
        return {"kind": "files", "paths": {"train": phase.translated_train.format(lang=language, task=task)}}
    spec = TASKS.get(task)
    dataset = DATASETS.get(spec.dataset) if spec is not None else None
    if source.get("kind") != "xtreme" or dataset is None or not dataset.xtreme_translate_train:
        return None
    root = as_path(source["path"])
    candidates = [root / layout.format(lang=language) for layout in dataset.xtreme_translate_train]
    found = next((path for path in candidates if path.exists()), candidates[0])  # a missing file: named when read
    return {"kind": "files", "paths": {"train": str(found)}}


def balanced(parts: Sequence[list[Any]], languages: Sequence[str]) -> list[list[Any]]:
    """Each language's examples repeated to the largest language's count (cycling through a fixed shuffle of its
    own, the repeats given distinct ids), so that drawing a training example draws every language equally often."""
    size = max((len(part) for part in parts), default=0)
    out = []
    for part, language in zip(parts, languages):
        if not part or len(part) == size:
            out.append(list(part))
            continue
        order = list(range(len(part)))
        random.Random(f"language-balance-{language}").shuffle(order)
        extra = [
            dataclasses.replace(part[order[i % len(part)]], id=f"{part[order[i % len(part)]].id}-r{i // len(part) + 1}")
            for i in range(size - len(part))
        ]
        out.append(list(part) + extra)
    return out


def transfer_setting(phase: ml_collections.ConfigDict, task: str, evaluated: Sequence[str] = ()) -> tuple[str, str]:
    """(label, description) of how the target was trained: zero-shot, translate-train, or translate-train-all when
    its training languages hold English and every evaluated language (`evaluated`; empty: all the task's)."""
    languages = training_languages(phase, task)
    others = [lang for lang in languages if lang != "en"]
    if not others:
        return ZERO_SHOT, "zero-shot from English"
    spec = TASKS.get(task)
    wanted = [lang for lang in (evaluated or (spec.languages if spec is not None else ())) if lang != "en"]
    sampling = "language-balanced" if phase.get("language_sampling") == "balanced" else "concatenated"
    trained = f"trained on {', '.join(languages)} ({sampling}), not zero-shot"
    if wanted and set(wanted) <= set(others) and "en" in languages:
        return TRANSLATE_TRAIN_ALL, f"translate-train-all: English and all {len(wanted)} evaluated languages, {trained}"
    return TRANSLATE_TRAIN, f"translate-train: {trained}"
