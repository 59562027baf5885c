"""The 'tfds' source kind: prepared ArrayRecord data read with `tfds.data_source(..., download=False)` (no TensorFlow
needed; data/tfds_reader.py).

TFDS's `xtreme_pos` swaps Tamil and Tagalog: its `_LANGS` maps "ta" to "Tagalog" and "tl" to "Tamil", so config
`xtreme_pos_ta` holds the Tagalog treebank and `xtreme_pos_tl` the Tamil one. Tamil is read from `xtreme_pos_tl` and
Tagalog from `xtreme_pos_ta` (as long as the installed TFDS still has the swap).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from stilts_jax.core.errors import InputError
from stilts_jax.data.task_sources.catalog import Example, TaskDataError, TaskDataset
from stilts_jax.data.task_sources.fields import _seq, _text
from stilts_jax.data.task_sources.records import _rows_to_examples
from stilts_jax.data.tfds_reader import tfds_data_dir, tfds_records

log = logging.getLogger(__name__)


def _xtreme_pos_swapped() -> bool:
    """Whether the installed TFDS still files Tagalog under xtreme_pos_ta and Tamil under xtreme_pos_tl."""
    try:
        from tensorflow_datasets.datasets.xtreme_pos import xtreme_pos_dataset_builder as builder
    except Exception:  # noqa: BLE001 - an unimportable builder: assume the release this code was checked against
        return True
    return getattr(builder, "_LANGS", {}).get("ta") == "Tagalog"


def _tfds_name(template: str, lang: str | None) -> str:
    if lang is not None and template.startswith("xtreme_pos/") and lang in ("ta", "tl") and _xtreme_pos_swapped():
        lang = {"ta": "tl", "tl": "ta"}[lang]  # TFDS's swap, undone
    return template.format(lang=lang)


def _xnli_tfds_rows(
    rows: Iterable[Mapping[str, Any]], split: str, wanted: Sequence[str], where: str
) -> Iterator[dict[str, Any]]:
    """TFDS xnli holds each pair in all 15 languages: premise {lang: text}, hypothesis {language: [],
    translation: []}."""
    for index, row in enumerate(rows):
        premise, hypothesis = row["premise"], row["hypothesis"]
        hyp_languages = [
            _text(v, "hypothesis.language", where) for v in _seq(hypothesis["language"], "language", where)
        ]
        translations = _seq(hypothesis["translation"], "translation", where)
        for lang in wanted:
            if lang not in premise or lang not in hyp_languages:
                raise TaskDataError(f"{where} record {index}: no {lang} text")
            yield {
                "premise": premise[lang],
                "hypothesis": translations[hyp_languages.index(lang)],
                "label": row["label"],
                "language": lang,
                "id": f"{split}-{lang}-{index}",
            }


def _from_tfds(
    spec: TaskDataset, dataset: str, split: str, source: Mapping[str, Any], wanted: Sequence[str] | None
) -> tuple[list[Example], str]:
    """`wanted` None: every language of the split TFDS has."""
    loc = spec.tfds
    if loc is None or split not in loc.splits:
        raise InputError(
            f"TFDS has no {dataset} {split} data known to this loader; use a source of kind "
            f"{'xtreme, ' if split in spec.xtreme else ''}{'hf or ' if spec.hf else ''}files"
        )
    data_dir = tfds_data_dir(source)
    names = (str(source["name"]),) if source.get("name") else loc.names
    per_language = "{" in names[0]
    languages = wanted if wanted is not None else spec.split_languages(split)
    if per_language and loc.languages is not None and not source.get("name"):
        absent = [lang for lang in languages if lang not in loc.languages]
        if absent and wanted is not None:
            hub_has = (
                spec.hf is not None
                and split in spec.hf.splits
                and (spec.hf.languages is None or set(absent) <= set(spec.hf.languages))
            )
            others = ["hf" if hub_has else "xtreme" if split in spec.xtreme else "", "files"]
            raise InputError(
                f"the TFDS name {names[0]!r} has no language(s) {', '.join(absent)} of {dataset}; it has "
                f"{', '.join(loc.languages)}. Read them from another source "
                f"({' or '.join(filter(None, others))}), or leave them out of the languages "
                f"(--config.evaluation.languages){'; ' + spec.hint if spec.hint else ''}"
            )
        if absent:
            log.info("TFDS %s has no %s data for %s; reading its other languages", names[0], dataset, ", ".join(absent))
            languages = [lang for lang in languages if lang in loc.languages]
    examples: list[Example] = []
    wheres = []
    groups = (
        [(lang, _tfds_name(n, lang)) for lang in languages for n in names]
        if per_language
        else [(spec.monolingual, n) for n in names]
    )
    unnamed = (
        f"the TFDS name {names[0]!r} must contain {{lang}}: this dataset has one per language (the default is "
        f"{loc.names[0]!r})"
    )
    for lang, name in groups:
        rows, where = tfds_records(name, loc.splits[split], data_dir)
        wheres.append(where)
        if name.split("/")[0].split(":")[0] == "xnli":
            rows = _xnli_tfds_rows(rows, split, languages, where)
        examples.extend(_rows_to_examples(spec, dataset, split, rows, lang, wanted, where, "record", unnamed))
    return examples, wheres[0] if len(wheres) == 1 else f"TFDS {', '.join(names)} in {data_dir}"
