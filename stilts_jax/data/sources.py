"""Extractive-QA datasets from real sources: an XTREME download folder, the Hugging Face hub, TFDS, or files.

`load_qa(dataset, split, source)` picks the source from a config mapping (`source["kind"]`). Where each dataset lives
in each kind of source is one entry of `DATASETS`; SQuAD-format datasets such as XQuAD or MLQA are added there.

Layouts (checked against the sources' own code):
- xtreme: google-research/xtreme `scripts/download_data.sh` writes `./download/` in the checkout:
  `squad/{train,dev}-v1.1.json`; `tydiqa/tydiqa-goldp-v1.1-train/` holds the original multi-language
  `tydiqa-goldp-v1.1-train.json` plus per-language `tydiqa.goldp.{lang}.train.json` (ids cut to their last
  field by utils_preprocess.py); `tydiqa/tydiqa-goldp-v1.1-dev/tydiqa.goldp.{lang}.dev.json`. The current
  utils_preprocess.py blanks the answers of those dev files (remove_qa_test_annotations): blanked files are refused.
- hf: `rajpurkar/squad` (config plain_text) and `google/xtreme` (config tydiqa), parquet under
  `{config}/{train,validation}-*.parquet`; columns id, title, context, question, answers{text, answer_start}.
- tfds: `squad/v1.1`, `tydi_qa/goldp`, splits train / validation, same feature names (strings come as bytes).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from stilts_jax.data import qa
from stilts_jax.data.qa import Answer, QADataError, QAExample
from stilts_jax.data.tfds_reader import tfds_data_dir, tfds_records
from stilts_jax.errors import InputError

log = logging.getLogger(__name__)

SPLITS = ("train", "dev")
KINDS = ("xtreme", "hf", "tfds", "files")
_KIND_KEYS = {
    "xtreme": {"path"},
    "hf": {"repo", "config", "revision", "cache_dir"},
    "tfds": {"name", "data_dir"},
    "files": {"paths"},
}
ALL_LANGUAGES = "*"  # a file key for a file holding several languages (or the dataset's only one)

XTREME_REPO = "https://github.com/google-research/xtreme"
XTREME_HINT = (f"run `bash scripts/download_data.sh` in a checkout of {XTREME_REPO} (it writes ./download/ there) "
               "and set the source's path to that download folder")
TYDIQA_LANGUAGES = ("ar", "bn", "en", "fi", "id", "ko", "ru", "sw", "te")


@dataclasses.dataclass(frozen=True)
class QADataset:
    """Where one SQuAD-format dataset lives in each kind of source."""

    languages: tuple[str, ...]
    xtreme: Mapping[str, Mapping[str, str]]  # split -> {language or "*": path under the XTREME download folder}
    hf_repo: str
    hf_config: str | None
    tfds_name: str
    language: str | None = None  # the only language of a monolingual dataset; None: TyDiQA-style ids carry it
    english_train_only: bool = False  # train on English only, whatever the source's train split holds
    hf_splits: Mapping[str, str] = dataclasses.field(default_factory=lambda: {"train": "train", "dev": "validation"})
    tfds_splits: Mapping[str, str] = dataclasses.field(default_factory=lambda: {"train": "train", "dev": "validation"})


DATASETS: dict[str, QADataset] = {
    "squad": QADataset(
        languages=("en",),
        xtreme={"train": {"en": "squad/train-v1.1.json"}, "dev": {"en": "squad/dev-v1.1.json"}},
        hf_repo="rajpurkar/squad", hf_config="plain_text", tfds_name="squad/v1.1", language="en",
    ),
    "tydiqa": QADataset(
        languages=TYDIQA_LANGUAGES,
        xtreme={
            # The original file keeps the full `english-...` ids; the per-language split files cut them.
            "train": {ALL_LANGUAGES: "tydiqa/tydiqa-goldp-v1.1-train/tydiqa-goldp-v1.1-train.json"},
            "dev": {lang: f"tydiqa/tydiqa-goldp-v1.1-dev/tydiqa.goldp.{lang}.dev.json" for lang in TYDIQA_LANGUAGES},
        },
        hf_repo="google/xtreme", hf_config="tydiqa", tfds_name="tydi_qa/goldp", english_train_only=True,
    ),
}


def load_qa(dataset: str, split: str, source: Mapping[str, Any],
            languages: Sequence[str] | None = None) -> dict[str, list[QAExample]]:
    """Language -> validated examples of `dataset`'s `split` ("train" or "dev") read from `source`.

    `source["kind"]` is one of xtreme (`path`), hf (`repo`, `config`, `revision`, `cache_dir`), tfds (`name`,
    `data_dir`) or files (`paths`: split -> SQuAD JSON path, or split -> {language: path}).
    `languages` restricts the result; a requested language without data is an error listing those present.
    TyDiQA-GoldP train is always English only (ids starting `english-`), whatever `languages` asks: the XTREME
    protocol trains on English, and the hf/tfds train splits mix all nine languages.
    Bad records raise QADataError naming the source and record; a missing source raises InputError saying how to
    get it.
    """
    spec = _dataset(dataset)
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r} for {dataset}; valid splits: {', '.join(SPLITS)}")
    if not isinstance(source, Mapping) or "kind" not in source:
        raise InputError(f"a QA source must be a mapping with a 'kind' key ({', '.join(KINDS)}), got {source!r}")
    kind = source["kind"]
    if kind not in KINDS:
        raise InputError(f"unknown QA source kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    unknown = set(source) - {"kind"} - _KIND_KEYS[kind]
    if unknown:
        raise InputError(f"unknown key(s) {', '.join(sorted(unknown))} for a {kind!r} QA source; "
                         f"valid keys: kind, {', '.join(sorted(_KIND_KEYS[kind]))}")

    requested = None if languages is None else (languages,) if isinstance(languages, str) else tuple(languages)
    english_only = split == "train" and spec.english_train_only
    wanted = ("en",) if english_only else requested
    if wanted is not None:
        if not wanted:
            raise InputError(f"empty language list for {dataset} {split}; leave it out to load every language")
        unknown_langs = [lang for lang in wanted if lang not in spec.languages]
        if unknown_langs:
            raise InputError(f"{dataset} has no data for language(s) {', '.join(unknown_langs)}; "
                             f"available: {', '.join(spec.languages)}")

    loader = {"xtreme": _from_xtreme, "hf": _from_hf, "tfds": _from_tfds, "files": _from_files}[kind]
    examples, where = loader(spec, dataset, split, source, wanted)
    by_language: dict[str, list[QAExample]] = {}
    for ex in examples:
        by_language.setdefault(ex.language, []).append(ex)
    if english_only:
        total = len(examples)
        by_language = {"en": by_language["en"]} if "en" in by_language else {}
        if not by_language:
            raise InputError(f"{where}: no English (`english-` ids) {dataset} training examples among {total}")
        log.info("%s train from %s: kept %d English examples of %d", dataset, where, len(by_language["en"]), total)
        if requested is not None and requested != ("en",):
            log.info("%s train is English only; ignoring languages=%s", dataset, list(requested))
        return by_language
    if wanted is None:
        return {lang: by_language[lang] for lang in _ordered(by_language, spec.languages)}
    missing = [lang for lang in wanted if lang not in by_language]
    if missing:
        raise InputError(f"{where}: no {dataset} {split} data for language(s) {', '.join(missing)}; "
                         f"available: {', '.join(_ordered(by_language, spec.languages)) or 'none'}")
    return {lang: by_language[lang] for lang in wanted}


def _dataset(name: str) -> QADataset:
    if name not in DATASETS:
        raise InputError(f"unknown QA dataset {name!r}; valid datasets: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def _ordered(found: Iterable[str], preferred: Sequence[str]) -> list[str]:
    found = list(found)
    return [lang for lang in preferred if lang in found] + sorted(lang for lang in found if lang not in preferred)


# --- SQuAD JSON files (xtreme and files) ---------------------------------------------------------------------

XTREME_BLANKED = (" XTREME's download script blanks the answers of its evaluation files (utils_preprocess.py "
                  "remove_qa_test_annotations): use the original labelled files instead (source kind 'files'; for "
                  "TyDiQA-GoldP https://storage.googleapis.com/tydiqa/v1.1/tydiqa-goldp-v1.1-dev.tgz) or the hf/tfds "
                  "source")


def _check_answer_texts(example: QAExample, where: str, hint: str = "") -> None:
    """validate_example accepts an empty answer at any offset; XTREME's blanked files are exactly that."""
    if any(not answer.text.strip() for answer in example.answers):
        raise QADataError(f"{where}: question {example.id!r} has an empty answer text.{hint}")


def _read_json(spec: QADataset, path: Path, language: str, blank_hint: str = "") -> list[QAExample]:
    """Examples of one SQuAD JSON file; `language` "*" means the dataset's only language, or read it from ids."""
    fixed = spec.language if language == ALL_LANGUAGES else language
    examples = qa.read_squad_json(path, language=fixed)
    for ex in examples:
        _check_answer_texts(ex, str(path), blank_hint)
    if spec.language is None and language != ALL_LANGUAGES:
        # A per-language file of a dataset whose ids name their language: a mismatch means a mixed or mislabelled file.
        for ex in examples:
            prefix = ex.id.split("-", 1)[0].lower()
            named = qa.TYDIQA_LANGUAGE_PREFIXES.get(prefix)
            if named is not None and named != language:
                raise QADataError(f"{path}: question {ex.id!r} is {named} ({prefix}) but the file is given as "
                                  f"{language!r}; is this a multi-language file?")
    return examples


def _from_xtreme(spec: QADataset, dataset: str, split: str, source: Mapping[str, Any],
                 wanted: tuple[str, ...] | None) -> tuple[list[QAExample], str]:
    if not source.get("path"):
        raise InputError(f"an 'xtreme' source needs 'path', the folder written by scripts/download_data.sh: "
                         f"{XTREME_HINT}")
    root = Path(source["path"]).expanduser()
    files = spec.xtreme.get(split, {})
    if not files:
        raise InputError(f"the XTREME download has no {dataset} {split} data")
    chosen = {lang: rel for lang, rel in files.items() if lang == ALL_LANGUAGES or wanted is None or lang in wanted}
    examples: list[QAExample] = []
    for lang, rel in chosen.items():
        path = root / rel
        if not path.is_file():
            folder = "" if root.is_dir() else f" (the XTREME download folder {root} does not exist)"
            raise InputError(f"{dataset} {split} data not found: {path} is missing{folder}; that is where "
                             f"google-research/xtreme scripts/download_data.sh puts it. To get it, {XTREME_HINT}.")
        examples.extend(_read_json(spec, path, lang, XTREME_BLANKED))
    return examples, f"XTREME download {root}"


def _from_files(spec: QADataset, dataset: str, split: str, source: Mapping[str, Any],
                wanted: tuple[str, ...] | None) -> tuple[list[QAExample], str]:
    paths = source.get("paths")
    if not isinstance(paths, Mapping) or not paths:
        raise InputError("a 'files' source needs 'paths': a mapping split -> SQuAD JSON path, "
                         "or split -> {language: path}")
    if split not in paths:
        raise InputError(f"the 'files' source has no {split!r} entry (it has: {', '.join(map(str, paths))}); "
                         f"valid splits: {', '.join(SPLITS)}")
    entry = paths[split]
    if isinstance(entry, Mapping):
        bad = [lang for lang in entry if lang not in spec.languages]
        if bad:
            raise InputError(f"'files' {split} paths name language(s) {', '.join(map(str, bad))} that {dataset} does "
                             f"not have; its languages: {', '.join(spec.languages)}")
        absent = [lang for lang in wanted or () if lang not in entry]
        if absent:
            raise InputError(f"the 'files' source has no {dataset} {split} file for language(s) {', '.join(absent)}; "
                             f"available: {', '.join(_ordered(entry, spec.languages))}")
        chosen = {lang: p for lang, p in entry.items() if wanted is None or lang in wanted}
    else:
        chosen = {ALL_LANGUAGES: entry}
    examples: list[QAExample] = []
    for lang, p in chosen.items():
        path = Path(p).expanduser()
        if not path.is_file():
            raise InputError(f"{dataset} {split} file {path} does not exist (from the 'files' source's paths)")
        examples.extend(_read_json(spec, path, lang))
    return examples, "files " + ", ".join(str(p) for p in chosen.values())


# --- rows of Hugging Face and TFDS datasets ------------------------------------------------------------------

def _text(value: Any, column: str) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8")
    if isinstance(value, str):
        return str(value)
    raise TypeError(f"column {column!r} holds {type(value).__name__}, not text")


def _example_from_row(spec: QADataset, row: Mapping[str, Any], where: str) -> QAExample:
    """A validated example of one hf/tfds row (id, title, context, question, answers{text, answer_start})."""
    try:
        example_id = _text(row["id"], "id")
        answers = row["answers"]
        texts = [_text(t, "answers.text") for t in answers["text"]]
        starts = [int(s) for s in answers["answer_start"]]
        if len(texts) != len(starts):
            raise ValueError(f"{len(texts)} answer texts but {len(starts)} answer starts")
        title = row.get("title")
        example = QAExample(
            id=example_id, question=_text(row["question"], "question"), context=_text(row["context"], "context"),
            answers=tuple(Answer(t, s) for t, s in zip(texts, starts, strict=True)),
            language=spec.language or qa.tydiqa_language(example_id),
            title="" if title is None else _text(title, "title"),
        )
    except QADataError as e:
        raise QADataError(f"{where}: {e}") from e
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as e:
        raise QADataError(f"{where}: malformed record ({type(e).__name__}: {e})") from e
    qa.validate_example(example, where)
    _check_answer_texts(example, where)
    return example


def _check_columns(columns: Iterable[str], where: str) -> None:
    missing = {"id", "context", "question", "answers"} - set(columns)
    if missing:
        raise QADataError(f"{where} lacks column(s) {', '.join(sorted(missing))}; it has {', '.join(sorted(columns))}")


def _local_parquet(folder: Path, config: str | None, split: str) -> list[Path]:
    """Parquet files of `split` in a local copy of a hub repo: `{config}/{split}-*.parquet` (the repo's own layout)
    or `{config}/{split}/*.parquet` (refs/convert/parquet); `data/{split}-*.parquet` without a config."""
    base = folder / config if config else folder
    patterns = [base.glob(f"{split}-*.parquet"), (base / split).glob("*.parquet")]
    if not config:
        patterns.append((folder / "data").glob(f"{split}-*.parquet"))
    for found in patterns:
        files = sorted(found)
        if files:
            return files
    return []


def _from_hf(spec: QADataset, dataset: str, split: str, source: Mapping[str, Any],
             wanted: tuple[str, ...] | None) -> tuple[list[QAExample], str]:
    try:
        import datasets
    except ImportError as e:
        raise InputError(f"the 'hf' source needs the `datasets` package (pip install datasets): {e}") from e
    repo = str(source.get("repo") or spec.hf_repo)
    config = source.get("config", spec.hf_config)
    revision = source.get("revision")
    cache_dir = source.get("cache_dir")
    hf_split = spec.hf_splits[split]
    folder = Path(repo).expanduser()
    local = folder.is_dir()
    if not local and repo.startswith(("/", "./", "../", "~")):
        raise InputError(f"the 'hf' source's repo {repo!r} looks like a local folder but {folder} does not exist")
    where = f"Hugging Face dataset {repo} (config {config}, split {hf_split})"
    try:
        if local:
            if revision is not None:
                raise InputError(f"'revision' applies to hub repos, not to the local folder {folder}")
            files = [] if (folder / "README.md").is_file() else _local_parquet(folder, config, hf_split)
            if files:
                ds = datasets.load_dataset("parquet", data_files={hf_split: [str(f) for f in files]}, split=hf_split,
                                           cache_dir=cache_dir)
            else:  # the folder's README.md (dataset card) maps configs and splits to files, as on the hub
                ds = datasets.load_dataset(str(folder), config, split=hf_split, cache_dir=cache_dir)
        else:
            ds = datasets.load_dataset(repo, config, split=hf_split, revision=revision, cache_dir=cache_dir)
    except InputError:
        raise
    except Exception as e:  # datasets raises many types (ConnectionError, DatasetNotFoundError, ValueError, ...)
        if local:
            raise InputError(f"could not load {where} from the local folder {folder}: {type(e).__name__}: {e}. It "
                             f"should hold the hub repo's files, e.g. {config or 'data'}/{hf_split}-*.parquet") from e
        raise InputError(
            f"could not load {where}: {type(e).__name__}: {e}. Without network access, copy the repo elsewhere "
            f"(`hf download {repo} --repo-type dataset --local-dir DIR`) and set repo to that local folder, "
            f"or use the 'xtreme' source") from e
    _check_columns(ds.column_names, where)
    examples = []
    index = 0
    for batch in ds.iter(batch_size=1024):
        for i in range(len(batch["id"])):
            row = {name: values[i] for name, values in batch.items()}
            examples.append(_example_from_row(spec, row, f"{where} row {index}"))
            index += 1
    return examples, where


def _from_tfds(spec: QADataset, dataset: str, split: str, source: Mapping[str, Any],
               wanted: tuple[str, ...] | None) -> tuple[list[QAExample], str]:
    name = str(source.get("name") or spec.tfds_name)
    rows, where = tfds_records(name, spec.tfds_splits[split], tfds_data_dir(source))
    examples = []
    for index, row in enumerate(rows):
        if index == 0:
            _check_columns(row, where)
        examples.append(_example_from_row(spec, row, f"{where} record {index}"))
    return examples, where
