"""Extractive-QA datasets from real sources: an XTREME download folder, the Hugging Face hub, TFDS, or files.

`load_qa(dataset, split, source)` picks the source from a config mapping (`source["kind"]`). Where each dataset lives
in each kind of source is one entry of `DATASETS`.

Layouts (checked against the sources' own code):
- xtreme: google-research/xtreme `scripts/download_data.sh` writes `./download/` in the checkout:
  `squad/{train,dev}-v1.1.json`; `tydiqa/tydiqa-goldp-v1.1-train/` holds the original multi-language
  `tydiqa-goldp-v1.1-train.json` plus per-language `tydiqa.goldp.{lang}.train.json` (ids cut to their last
  field by utils_preprocess.py); `tydiqa/tydiqa-goldp-v1.1-dev/tydiqa.goldp.{lang}.dev.json`;
  `xquad/xquad.{lang}.json`; `mlqa/MLQA_V1/{dev,test}/{dev,test}-context-{lang}-question-{lang}.json`. The current
  utils_preprocess.py blanks the answers of the TyDiQA dev, XQuAD and MLQA test files (remove_qa_test_annotations):
  blanked files are refused. XTREME does not download SQuAD v2.0; its files (`train-v2.0.json`, `dev-v2.0.json`
  from the SQuAD site) are looked for beside v1.1 in `squad/`.
- hf: `rajpurkar/squad` (config plain_text), `rajpurkar/squad_v2` (config squad_v2), `google/xtreme` (config tydiqa),
  parquet under `{config}/{train,validation}-*.parquet`; `google/xquad` (configs `xquad.{lang}`, split validation);
  `facebook/mlqa` at revision refs/convert/parquet (configs `mlqa.{lang}.{lang}`, `{config}/{split}/*.parquet`,
  splits validation and test). Columns id, title (not in XQuAD/MLQA), context, question, answers{text,
  answer_start}; an unanswerable SQuAD v2.0 question has empty answer lists.
- tfds: `squad/v1.1`, `squad/v2.0` (adds is_impossible), `tydi_qa/goldp` (splits train / validation);
  `xquad/{lang}` (split test; XQuAD's original 11 languages, no ro); `mlqa/{lang}` (splits validation / test).
  Same feature names; strings come as bytes.
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

SPLITS = ("train", "dev", "test")
KINDS = ("xtreme", "hf", "tfds", "files")
_KIND_KEYS = {
    "xtreme": {"path"},
    "hf": {"repo", "config", "revision", "cache_dir"},
    "tfds": {"name", "data_dir"},
    "files": {"paths"},
}
ALL_LANGUAGES = "*"  # a file key for a file holding several languages (or the dataset's only one)
LANGUAGE_FIELD = "{lang}"  # in an hf config or TFDS name: one dataset per language

XTREME_REPO = "https://github.com/google-research/xtreme"
XTREME_HINT = (f"run `bash scripts/download_data.sh` in a checkout of {XTREME_REPO} (it writes ./download/ there) "
               "and set the source's path to that download folder")
TYDIQA_LANGUAGES = ("ar", "bn", "en", "fi", "id", "ko", "ru", "sw", "te")
# google-research/xtreme evaluate.py: XTREME_R_TASK2LANGS["xquad"] (XTREME_TASK2LANGS has the first 11, without ro)
# and ["mlqa"] (the same 7 in both; XTREME evaluates context language == question language).
XQUAD_LANGUAGES = ("en", "es", "de", "el", "ru", "tr", "ar", "vi", "th", "zh", "hi", "ro")
MLQA_LANGUAGES = ("en", "es", "de", "ar", "hi", "vi", "zh")


@dataclasses.dataclass(frozen=True)
class QADataset:
    """Where one SQuAD-format dataset lives in each kind of source.

    A dataset's language comes from one of three places: `language` (a monolingual dataset), the ids
    (`language_in_ids`, TyDiQA-GoldP), or else the source itself, which then holds one file, hf config or TFDS
    dataset per language (`{lang}` in `hf_config` and `tfds_name`).
    """

    languages: tuple[str, ...]
    xtreme: Mapping[str, Mapping[str, str]]  # split -> {language or "*": path under the XTREME download folder}
    hf_repo: str
    hf_config: str | None
    tfds_name: str
    language: str | None = None  # the only language of a monolingual dataset
    language_in_ids: bool = False  # TyDiQA-style ids start with the language's English name
    english_train_only: bool = False  # train on English only, whatever the source's train split holds
    unanswerable: bool = False  # SQuAD v2.0: questions without an answer are part of the data
    hf_revision: str | None = None  # the default hub revision (script-only repos keep parquet on a convert branch)
    hf_splits: Mapping[str, str] = dataclasses.field(default_factory=lambda: {"train": "train", "dev": "validation"})
    tfds_splits: Mapping[str, str] = dataclasses.field(default_factory=lambda: {"train": "train", "dev": "validation"})
    tfds_languages: tuple[str, ...] | None = None  # the languages TFDS has, when not all of them
    originals: str = ""  # where the labelled original files are (XTREME blanks its evaluation answers)

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(split for split in SPLITS if split in self.xtreme)

    @property
    def one_source_per_language(self) -> bool:
        return self.language is None and not self.language_in_ids


DATASETS: dict[str, QADataset] = {
    "squad": QADataset(
        languages=("en",),
        xtreme={"train": {"en": "squad/train-v1.1.json"}, "dev": {"en": "squad/dev-v1.1.json"}},
        hf_repo="rajpurkar/squad", hf_config="plain_text", tfds_name="squad/v1.1", language="en",
    ),
    "squad_v2": QADataset(
        languages=("en",),
        xtreme={"train": {"en": "squad/train-v2.0.json"}, "dev": {"en": "squad/dev-v2.0.json"}},
        hf_repo="rajpurkar/squad_v2", hf_config="squad_v2", tfds_name="squad/v2.0", language="en", unanswerable=True,
    ),
    "tydiqa": QADataset(
        languages=TYDIQA_LANGUAGES,
        xtreme={
            # The original file keeps the full `english-...` ids; the per-language split files cut them.
            "train": {ALL_LANGUAGES: "tydiqa/tydiqa-goldp-v1.1-train/tydiqa-goldp-v1.1-train.json"},
            "dev": {lang: f"tydiqa/tydiqa-goldp-v1.1-dev/tydiqa.goldp.{lang}.dev.json" for lang in TYDIQA_LANGUAGES},
        },
        hf_repo="google/xtreme", hf_config="tydiqa", tfds_name="tydi_qa/goldp", language_in_ids=True,
        english_train_only=True, originals="https://storage.googleapis.com/tydiqa/v1.1/tydiqa-goldp-v1.1-dev.tgz",
    ),
    # XQuAD has one split, the test set (1190 questions per language, the same ids in every language).
    "xquad": QADataset(
        languages=XQUAD_LANGUAGES,
        xtreme={"test": {lang: f"xquad/xquad.{lang}.json" for lang in XQUAD_LANGUAGES}},
        hf_repo="google/xquad", hf_config="xquad.{lang}", tfds_name="xquad/{lang}",
        hf_splits={"test": "validation"}, tfds_splits={"test": "test"}, tfds_languages=XQUAD_LANGUAGES[:-1],
        originals="https://github.com/google-deepmind/xquad (xquad.{lang}.json)",
    ),
    "mlqa": QADataset(
        languages=MLQA_LANGUAGES,
        xtreme={split: {lang: f"mlqa/MLQA_V1/{split}/{split}-context-{lang}-question-{lang}.json"
                        for lang in MLQA_LANGUAGES} for split in ("dev", "test")},
        hf_repo="facebook/mlqa", hf_config="mlqa.{lang}.{lang}", tfds_name="mlqa/{lang}",
        hf_revision="refs/convert/parquet", hf_splits={"dev": "validation", "test": "test"},
        tfds_splits={"dev": "validation", "test": "test"},
        originals="https://dl.fbaipublicfiles.com/MLQA/MLQA_V1.zip (MLQA_V1/{dev,test}/)",
    ),
}


def load_qa(dataset: str, split: str, source: Mapping[str, Any],
            languages: Sequence[str] | None = None) -> dict[str, list[QAExample]]:
    """Language -> validated examples of `dataset`'s `split` ("train", "dev" or "test") read from `source`.

    `source["kind"]` is one of xtreme (`path`), hf (`repo`, `config`, `revision`, `cache_dir`), tfds (`name`,
    `data_dir`) or files (`paths`: split -> SQuAD JSON path, or split -> {language: path}).
    `languages` restricts the result; a requested language without data is an error listing those present.
    Splits per dataset: squad and squad_v2 train/dev, tydiqa train/dev (its dev set is XTREME's test set), xquad test
    (its only split), mlqa dev/test. SQuAD v2.0 keeps its unanswerable questions (no answers); elsewhere a question
    without an answer is an error.
    TyDiQA-GoldP train is always English only (ids starting `english-`), whatever `languages` asks: the XTREME
    protocol trains on English, and the hf/tfds train splits mix all nine languages.
    Bad records raise QADataError naming the source and record; a missing source raises InputError saying how to
    get it.
    """
    spec = _dataset(dataset)
    if split not in spec.splits:
        raise InputError(f"unknown split {split!r} for {dataset}; valid splits: {', '.join(spec.splits)}")
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

def _check_answer_texts(example: QAExample, where: str, hint: str = "") -> None:
    """validate_example accepts an empty answer at any offset; XTREME's blanked files are exactly that."""
    if any(not answer.text.strip() for answer in example.answers):
        raise QADataError(f"{where}: question {example.id!r} has an empty answer text.{hint}")


def _blanked_hint(spec: QADataset) -> str:
    return (" XTREME's download script blanks the answers of its evaluation files (utils_preprocess.py "
            f"remove_qa_test_annotations): use the original labelled files instead (source kind 'files'; {spec.originals})"
            " or the hf/tfds source")


def _read_json(spec: QADataset, path: Path, language: str, blank_hint: str = "") -> list[QAExample]:
    """Examples of one SQuAD JSON file; `language` "*" means the dataset's only language, or read it from ids."""
    if language == ALL_LANGUAGES and spec.one_source_per_language:
        raise InputError(f"{path}: this dataset has one file per language; give the file's language "
                         "(a 'files' source's paths entry as {language: path})")
    fixed = spec.language if language == ALL_LANGUAGES else language
    examples = qa.read_squad_json(path, language=fixed, allow_unanswerable=spec.unanswerable)
    for ex in examples:
        _check_answer_texts(ex, str(path), blank_hint)
    if spec.language_in_ids and language != ALL_LANGUAGES:
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
        examples.extend(_read_json(spec, path, lang, _blanked_hint(spec)))
    return examples, f"XTREME download {root}"


def _from_files(spec: QADataset, dataset: str, split: str, source: Mapping[str, Any],
                wanted: tuple[str, ...] | None) -> tuple[list[QAExample], str]:
    paths = source.get("paths")
    if not isinstance(paths, Mapping) or not paths:
        raise InputError("a 'files' source needs 'paths': a mapping split -> SQuAD JSON path, "
                         "or split -> {language: path}")
    if split not in paths:
        raise InputError(f"the 'files' source has no {split!r} entry (it has: {', '.join(map(str, paths))}); "
                         f"valid splits: {', '.join(spec.splits)}")
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


def _example_from_row(spec: QADataset, row: Mapping[str, Any], where: str, language: str | None) -> QAExample:
    """A validated example of one hf/tfds row (id, title, context, question, answers{text, answer_start}, and for
    SQuAD v2.0 in TFDS is_impossible). `language` is the source's language, None when the dataset or ids give it."""
    try:
        example_id = _text(row["id"], "id")
        answers = row["answers"]
        texts = [_text(t, "answers.text") for t in answers["text"]]
        starts = [int(s) for s in answers["answer_start"]]
        if len(texts) != len(starts):
            raise ValueError(f"{len(texts)} answer texts but {len(starts)} answer starts")
        parsed = tuple(Answer(t, s) for t, s in zip(texts, starts, strict=True))
        qa.check_impossible_flag(row.get("is_impossible", False), parsed, example_id)
        title = row.get("title")
        example = QAExample(
            id=example_id, question=_text(row["question"], "question"), context=_text(row["context"], "context"),
            answers=parsed, language=language or spec.language or qa.tydiqa_language(example_id),
            title="" if title is None else _text(title, "title"),
        )
    except QADataError as e:
        raise QADataError(f"{where}: {e}") from e
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as e:
        raise QADataError(f"{where}: malformed record ({type(e).__name__}: {e})") from e
    qa.validate_example(example, where, allow_unanswerable=spec.unanswerable)
    _check_answer_texts(example, where)
    return example


def _check_columns(columns: Iterable[str], where: str) -> None:
    missing = {"id", "context", "question", "answers"} - set(columns)
    if missing:
        raise QADataError(f"{where} lacks column(s) {', '.join(sorted(missing))}; it has {', '.join(sorted(columns))}")


def _per_source_languages(spec: QADataset, name: str, what: str, wanted: tuple[str, ...] | None,
                          available: Sequence[str] | None = None) -> list[tuple[str | None, str]]:
    """(language, source name) pairs to read: one per language when `spec` keeps each language apart (`{lang}` in
    `name`), else the one name. `available` limits the languages a source kind has (TFDS XQuAD has no ro)."""
    if not spec.one_source_per_language:
        return [(None, name)]
    if LANGUAGE_FIELD not in name:
        default = spec.hf_config if what == "hf config" else spec.tfds_name
        raise InputError(f"the {what} {name!r} must contain {LANGUAGE_FIELD}: this dataset has one per language "
                         f"(the default is {default!r})")
    languages = list(wanted or spec.languages)
    if available is not None:
        absent = [lang for lang in languages if lang not in available]
        if absent and wanted is not None:
            raise InputError(f"the {what} {name!r} has no language(s) {', '.join(absent)}; it has "
                             f"{', '.join(available)}. Read them from another source (hf or files), or leave them out "
                             "of the languages (--config.evaluation.languages)")
        languages = [lang for lang in languages if lang in available]
    return [(lang, name.replace(LANGUAGE_FIELD, lang)) for lang in languages]


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


def _hf_dataset(repo: str, config: str | None, hf_split: str, revision: str | None, cache_dir: str | None) -> Any:
    """One split of one config, from the hub or a local copy of a hub repo; InputError says how to get it."""
    try:
        import datasets
    except ImportError as e:
        raise InputError(f"the 'hf' source needs the `datasets` package (pip install datasets): {e}") from e
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
                return datasets.load_dataset("parquet", data_files={hf_split: [str(f) for f in files]}, split=hf_split,
                                             cache_dir=cache_dir)
            # the folder's README.md (dataset card) maps configs and splits to files, as on the hub
            return datasets.load_dataset(str(folder), config, split=hf_split, cache_dir=cache_dir)
        return datasets.load_dataset(repo, config, split=hf_split, revision=revision, cache_dir=cache_dir)
    except InputError:
        raise
    except Exception as e:  # datasets raises many types (ConnectionError, DatasetNotFoundError, ValueError, ...)
        if local:
            raise InputError(f"could not load {where} from the local folder {folder}: {type(e).__name__}: {e}. It "
                             f"should hold the hub repo's files, e.g. {config or 'data'}/{hf_split}-*.parquet") from e
        at_revision = f" --revision {revision}" if revision else ""
        raise InputError(
            f"could not load {where}: {type(e).__name__}: {e}. Without network access, copy the repo elsewhere "
            f"(`hf download {repo} --repo-type dataset{at_revision} --local-dir DIR`) and set repo to that local "
            f"folder, or use the 'xtreme' source") from e


def _from_hf(spec: QADataset, dataset: str, split: str, source: Mapping[str, Any],
             wanted: tuple[str, ...] | None) -> tuple[list[QAExample], str]:
    repo = str(source.get("repo") or spec.hf_repo)
    config = source.get("config", spec.hf_config)
    # The default revision belongs to the default repo (facebook/mlqa keeps its parquet on refs/convert/parquet).
    revision = source.get("revision", spec.hf_revision if repo == spec.hf_repo else None)
    hf_split = spec.hf_splits[split]
    examples = []
    for language, name in _per_source_languages(spec, config, "hf config", wanted):
        ds = _hf_dataset(repo, name, hf_split, revision, source.get("cache_dir"))
        where = f"Hugging Face dataset {repo} (config {name}, split {hf_split})"
        _check_columns(ds.column_names, where)
        index = 0
        for batch in ds.iter(batch_size=1024):
            for i in range(len(batch["id"])):
                row = {column: values[i] for column, values in batch.items()}
                examples.append(_example_from_row(spec, row, f"{where} row {index}", language))
                index += 1
    return examples, f"Hugging Face dataset {repo} (config {config}, split {hf_split})"


def _from_tfds(spec: QADataset, dataset: str, split: str, source: Mapping[str, Any],
               wanted: tuple[str, ...] | None) -> tuple[list[QAExample], str]:
    template = str(source.get("name") or spec.tfds_name)
    examples = []
    for language, name in _per_source_languages(spec, template, "TFDS name", wanted, spec.tfds_languages):
        rows, where = tfds_records(name, spec.tfds_splits[split], tfds_data_dir(source))
        for index, row in enumerate(rows):
            if index == 0:
                _check_columns(row, where)
            examples.append(_example_from_row(spec, row, f"{where} record {index}", language))
    return examples, f"TFDS {template} split {spec.tfds_splits[split]} in {tfds_data_dir(source)}"
