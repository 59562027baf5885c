"""`load_examples`, the entry point: checks the split, languages and source, reads the examples from the source's
kind (or from the datasets a combination such as ANLI+ joins) and checks that examples carry the labels asked for.
`load_qa` is `load_examples` restricted to the span QA datasets (family "qa").
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from stilts_jax.core.errors import InputError
from stilts_jax.data.examples import TaggedSentence
from stilts_jax.data.qa import QAExample
from stilts_jax.data.task_sources.catalog import DATASETS, SPLITS, Example, TaskDataset, _dataset, _ordered
from stilts_jax.data.task_sources.file_sources import _from_files, _from_xtreme
from stilts_jax.data.task_sources.hub_source import _from_hf
from stilts_jax.data.task_sources.tfds_source import _from_tfds

log = logging.getLogger(__name__)

KINDS = ("xtreme", "hf", "tfds", "files")
_KIND_KEYS = {
    "xtreme": {"path"},
    "hf": {"repo", "config", "revision", "cache_dir"},
    "tfds": {"name", "data_dir"},
    "files": {"paths", "path"},
}


# --- entry point -----------------------------------------------------------------------------------------------


def load_examples(
    dataset: str,
    split: str,
    source: Mapping[str, Any],
    languages: Sequence[str] | None = None,
    *,
    require_labels: bool = False,
) -> dict[str, list[Example]]:
    """Language -> examples of `dataset`'s `split` (train, dev or test) read from `source`.

    `source["kind"]` is xtreme (`path`), hf (`repo`, `config`, `revision`, `cache_dir`), tfds (`name`, `data_dir`) or
    files (`paths`: split -> path, or split -> {language: path}). For anli_plus, `source` may also map each part
    (anli, mnli, snli) to its own source. `languages` restricts (and orders) the result; a language without data for
    the split is an error listing those that have it. Without `languages`, every language the source has for the
    split is read (a 'files' source: those its paths name; TFDS XQuAD: all but ro), in the dataset's order.
    English-trained datasets return {"en": ...} for train whatever `languages` asks (TyDiQA-GoldP: the `english-`
    ids of a train split mixing all languages). Examples without a label (XTREME's test files, hub test splits) carry
    label/tags None; `require_labels=True` (always on for train) makes them an error that says where labelled data is.
    Span QA examples (QAExample) are always labelled: a question without an answer is an error, except in datasets
    with unanswerable questions (SQuAD v2.0), and so are the blanked answers of XTREME's evaluation files.
    Bad records raise TaskDataError (QADataError for span QA) naming the file and line (or record); a missing source
    raises InputError saying how to get it.
    """
    spec = _dataset(dataset)
    if split not in spec.splits:
        lacking = f" ({dataset} has no {split} split)" if split in SPLITS else ""
        raise InputError(f"unknown split {split!r} for {dataset}; valid splits: {', '.join(spec.splits)}{lacking}")
    if not isinstance(source, Mapping):
        raise InputError(f"a data source must be a mapping with a 'kind' key ({', '.join(KINDS)}), got {source!r}")
    requested = None if languages is None else (languages,) if isinstance(languages, str) else tuple(languages)
    requested = None if requested is None else tuple(dict.fromkeys(requested))
    english_only = split == "train" and spec.english_train_only
    if requested is not None and not requested:
        raise InputError(f"empty language list for {dataset} {split}; leave it out to load every language")
    wanted: tuple[str, ...] | None  # None: every language the source has
    if english_only:
        if requested is not None and requested != ("en",):
            log.info("%s train is English only; ignoring languages=%s", dataset, list(requested))
        wanted = ("en",)
    else:
        wanted = requested
        if wanted is not None:
            _check_languages(spec, dataset, split, wanted)
        english_from = spec.english_from and "en" not in spec.languages and source.get("kind") != "files"
        if english_from and wanted is not None and "en" in wanted:
            # XCOPA's English is COPA (XTREME's download keeps it as xcopa/{split}-en.jsonl).
            kept = {k: v for k, v in source.items() if k in ("kind", "path", "cache_dir", "data_dir")}
            english = load_examples(spec.english_from, split, kept, ["en"], require_labels=require_labels)
            others = [lang for lang in wanted if lang != "en"]
            rest = load_examples(dataset, split, source, others, require_labels=require_labels) if others else {}
            return {lang: english["en"] if lang == "en" else rest[lang] for lang in wanted}

    if spec.parts:
        examples, where = _load_parts(spec, dataset, split, source)
    else:
        kind = _check_source(source)
        if spec.files_only and kind != "files":
            raise InputError(f"{dataset} cannot be read from a {kind!r} source: {spec.files_only}")
        delegate = spec.train_from.get(kind) if split == "train" else None
        if delegate:
            log.info("%s train from a %s source is %s's train split", dataset, kind, delegate)
            kept = {k: v for k, v in source.items() if k in ("kind", "cache_dir", "data_dir")}
            return load_examples(delegate, "train", kept, require_labels=require_labels)
        loader = {"xtreme": _from_xtreme, "hf": _from_hf, "tfds": _from_tfds, "files": _from_files}[kind]
        examples, where = loader(spec, dataset, split, source, wanted)

    if spec.drop_unlabeled:
        kept_examples = [ex for ex in examples if ex.label is not None]
        if len(kept_examples) < len(examples):
            log.info("%s %s: dropped %d pairs without a gold label", dataset, split, len(examples) - len(kept_examples))
        examples = kept_examples
    by_language: dict[str, list[Example]] = {}
    for ex in examples:
        by_language.setdefault(ex.language, []).append(ex)
    missing = [lang for lang in wanted or () if lang not in by_language]
    if missing:
        raise InputError(
            f"{where}: no {dataset} {split} data for language(s) {', '.join(missing)}; "
            f"available: {', '.join(_ordered(by_language, spec.languages)) or 'none'}"
        )
    if not by_language:
        raise InputError(f"{where}: no {dataset} {split} examples")
    result = {lang: by_language[lang] for lang in (wanted or _ordered(by_language, spec.languages))}
    if english_only and len(by_language) > 1:
        log.info("%s train from %s: kept %d English examples of %d", dataset, where, len(result["en"]), len(examples))
    if require_labels or split == "train":
        _check_labels(spec, dataset, split, source, result, where)
    return result


def load_qa(
    dataset: str, split: str, source: Mapping[str, Any], languages: Sequence[str] | None = None
) -> dict[str, list[QAExample]]:
    """`load_examples` of a span QA dataset (family "qa"): language -> validated QAExamples. Splits: squad and
    squad_v2 train/dev, tydiqa train/dev (its dev set is XTREME's test set), xquad test (its only split), mlqa
    dev/test."""
    qa_datasets = sorted(name for name, spec in DATASETS.items() if spec.family == "qa")
    if dataset not in qa_datasets:
        raise InputError(f"unknown QA dataset {dataset!r}; valid datasets: {', '.join(qa_datasets)}")
    return load_examples(dataset, split, source, languages)  # type: ignore[return-value]


def _check_source(source: Mapping[str, Any]) -> str:
    if "kind" not in source:
        raise InputError(
            f"a data source must be a mapping with a 'kind' key ({', '.join(KINDS)}), got {dict(source)!r}"
        )
    kind = source["kind"]
    if kind not in KINDS:
        raise InputError(f"unknown source kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    unknown = set(source) - {"kind"} - _KIND_KEYS[kind]
    if unknown:
        raise InputError(
            f"unknown key(s) {', '.join(sorted(unknown))} for a {kind!r} source; "
            f"valid keys: kind, {', '.join(sorted(_KIND_KEYS[kind]))}"
        )
    return kind


def _check_languages(spec: TaskDataset, dataset: str, split: str, wanted: Sequence[str]) -> None:
    unknown = [lang for lang in wanted if lang not in spec.languages and not (lang == "en" and spec.english_from)]
    if unknown:
        raise InputError(
            f"{dataset} has no data for language(s) {', '.join(unknown)}; available: {', '.join(spec.languages)}"
        )
    lacking = [lang for lang in wanted if lang not in spec.split_languages(split) and lang in spec.languages]
    if lacking:
        raise InputError(
            f"{dataset} has no {split} data for language(s) {', '.join(lacking)} (their treebanks have "
            f"no {split} set); languages with {split} data: {', '.join(spec.split_languages(split))}"
        )


def _has_labels(ex: Example) -> bool:
    if isinstance(ex, QAExample):  # the readers refuse questions without answers unless they may have none
        return True
    return (ex.tags if isinstance(ex, TaggedSentence) else ex.label) is not None


def _check_labels(
    spec: TaskDataset,
    dataset: str,
    split: str,
    source: Mapping[str, Any],
    result: Mapping[str, list[Example]],
    where: str,
) -> None:
    unlabeled = [ex for examples in result.values() for ex in examples if not _has_labels(ex)]
    if not unlabeled:
        return
    total = sum(len(v) for v in result.values())
    first = unlabeled[0]
    why = ""
    if source.get("kind") == "xtreme":
        why = (
            " google-research/xtreme's download strips the labels of its test files (utils_preprocess.py; it sets "
            "every XCOPA test label to 0)."
        )
    others = [
        f"kind hf (repo {spec.hf.repo})" if spec.hf else "",
        f"kind tfds ({spec.tfds.names[0]})" if spec.tfds else "",
        "kind files with the original labelled release",
    ]
    raise InputError(
        f"{where}: {len(unlabeled)} of {total} {dataset} {split} examples carry no labels (first: "
        f"{first.language} {first.id!r}).{why} {'Training' if split == 'train' else 'Scoring'} needs "
        f"labels: evaluate against a labelled source: {'; '.join(o for o in others if o)}"
    )


# --- combinations (ANLI+) ------------------------------------------------------------------------------------


def _load_parts(spec: TaskDataset, dataset: str, split: str, source: Mapping[str, Any]) -> tuple[list[Example], str]:
    parts = spec.parts[split]
    all_parts = sorted({p for ps in spec.parts.values() for p in ps})
    if "kind" in source:
        specific = sorted(set(source) & {"repo", "config", "revision", "name", "paths"})
        if specific:
            per_part = ", ".join(f"{p!r}: {{...}}" for p in all_parts)
            raise InputError(
                f"{dataset} combines {', '.join(all_parts)}: key(s) {', '.join(specific)} cannot apply "
                f"to all of them; give one source per part: {{{per_part}}}"
            )
        sources = {part: source for part in parts}
    else:
        unknown = sorted(set(source) - set(all_parts))
        if unknown:
            raise InputError(
                f"{dataset} sources are keyed by part ({', '.join(all_parts)}); unknown: {', '.join(unknown)}"
            )
        absent = [part for part in parts if part not in source]
        if absent:
            raise InputError(f"{dataset} {split} needs a source for part(s) {', '.join(absent)}")
        sources = {part: source[part] for part in parts}
    examples: list[Example] = []
    counts = []
    for part in parts:
        loaded = load_examples(part, split, sources[part], require_labels=split == "train")["en"]
        counts.append(f"{part} {len(loaded)}")
        examples.extend(dataclasses.replace(ex, id=f"{part}/{ex.id}") for ex in loaded)
    log.info("%s %s: %s", dataset, split, ", ".join(counts))
    return examples, f"{dataset} ({', '.join(counts)})"
