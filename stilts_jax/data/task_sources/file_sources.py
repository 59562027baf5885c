"""The 'xtreme' and 'files' source kinds: which files hold a dataset's split in each language.

- xtreme: google-research/xtreme `scripts/download_data.sh` + `utils_preprocess.py` write `./download/`:
  `xnli/train-en.tsv` (MNLI train, from XNLI-MT's multinli.train.en.tsv), `xnli/{dev,test}-{lang}.tsv`,
  `pawsx/train-en.tsv` (PAWS-Wiki labeled_final train), `pawsx/{dev,test}-{lang}.tsv`: rows `sentence1 TAB sentence2
  TAB label`, plain tab-separated text read as XTREME's own reader reads it (file_formats.py); test files have no
  label column. `udpos/` and `panx/` `{split}-{lang}.tsv`: `token TAB tag` lines, a blank line between sentences;
  test files hold tokens only. `xcopa/{train,val,test}-en.jsonl` (SuperGLUE COPA) and `xcopa/{val,test}-{lang}.jsonl`
  (XCOPA); utils_preprocess.py sets the label of every test record to 0, so test labels are read as missing. Older
  versions of the script wrote `xcopa/{split}.{lang}.jsonl` without touching labels; those names are read too.
  `siqa/socialIQa_v1.4_{trn,dev,tst}.jsonl` (answers `answerA..C`, label letter in `correct`). Span QA's
  SQuAD-format JSON files are listed in catalog.py; a path template without {lang} in a dataset of several languages
  (TyDiQA-GoldP's original train file) is one file holding them all, its ids naming each question's language.
  The download never holds test labels: such examples get label/tags None, and `require_labels=True` (always on for
  train) raises an error pointing to a labelled source.
- files: `paths`: split -> path, or split -> {language: path} (without `languages`, the languages named there are
  read; a single path of a dataset whose ids name their language holds any of them); `.json` SQuAD files for span QA;
  `.tsv` in the XTREME formats above or with a header row
  (GLUE's QQP/MNLI `train.tsv`, PAWS's original `train.tsv`), `.jsonl` records with the hub's field names or the
  original releases' (ANLI, SNLI, MNLI, COPA, XCOPA, CommonsenseQA, HellaSwag, Social IQa with its
  `{split}-labels.lst` next to it), `.csv` for Cosmos QA's original train/valid files. Datasets with a `files_layout`
  (CCG) also take `path`: a folder holding those file names, or a jiant task config JSON (`{"paths": {"train", "val",
  "test"}}`, relative paths taken from the config's folder).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from etils import epath

from stilts_jax.core.errors import InputError
from stilts_jax.core.io_utils import read_text
from stilts_jax.core.paths import data_path
from stilts_jax.data.task_sources.catalog import SPLITS, Example, TaskDataset, _ordered
from stilts_jax.data.task_sources.file_formats import _read_file

XTREME_REPO = "https://github.com/google-research/xtreme"
XTREME_HINT = (
    f"run `bash scripts/download_data.sh` in a checkout of {XTREME_REPO} (it writes ./download/ there) "
    "and set the source's path to that download folder"
)


def _from_xtreme(
    spec: TaskDataset, dataset: str, split: str, source: Mapping[str, Any], wanted: Sequence[str] | None
) -> tuple[list[Example], str]:
    """`wanted` None: every language of the split."""
    hint = XTREME_HINT + (f" ({spec.hint})" if spec.hint else "")
    if not source.get("path"):
        raise InputError(f"an 'xtreme' source needs 'path', the folder written by scripts/download_data.sh: {hint}")
    root = data_path(source["path"])
    templates = spec.xtreme.get(split)
    if not templates:
        others = [k for k, loc in (("hf", spec.hf), ("tfds", spec.tfds)) if loc and split in loc.splits]
        raise InputError(
            f"the XTREME download has no {dataset} {split} data; use a source of kind {' or '.join(others + ['files'])}"
        )
    where = f"XTREME download {root}"
    if spec.monolingual or any("{lang}" in t for t in templates):
        groups = [
            (lang, [root / t.format(lang=lang) for t in templates])
            for lang in (wanted if wanted is not None else spec.split_languages(split))
        ]
    else:  # one file holds every language, its records naming theirs (TyDiQA-GoldP's original train file)
        groups = [(None, [root / t for t in templates])]
    examples: list[Example] = []
    for lang, candidates in groups:
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            folder = "" if root.is_dir() else f" (the XTREME download folder {root} does not exist)"
            raise InputError(
                f"{dataset} {split} data not found: {candidates[0]} is missing{folder}; that is where "
                f"google-research/xtreme scripts/download_data.sh puts it. To get it, {hint}."
            )
        # utils_preprocess.py sets every label of the current layout's XCOPA test files to 0.
        zeroed = spec.xtreme_format == "copa_jsonl" and split == "test" and path == candidates[0]
        examples.extend(_read_file(spec, dataset, path, split, lang, labels_zeroed=zeroed, from_xtreme=True))
    return examples, where


def _jiant_config_paths(config: epath.Path) -> dict[str, str]:
    """split -> file of a jiant task config JSON ({"task", "paths": {"train", "val", "test", ...}, "name"})."""
    try:
        data = json.loads(read_text(config))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{config}: cannot read it as a jiant task config JSON ({type(e).__name__}: {e})") from e
    paths = data.get("paths") if isinstance(data, dict) else None
    if not isinstance(paths, dict):
        raise InputError(f'{config}: a jiant task config needs a "paths" object (train, val, test)')
    resolved = {}
    for split, key in (("train", "train"), ("dev", "val"), ("test", "test")):
        if isinstance(paths.get(key), str):
            file = data_path(paths[key])
            resolved[split] = str(file if file.is_absolute() else config.parent / file)
    return resolved


def _paths_under(spec: TaskDataset, dataset: str, split: str, root: epath.Path) -> dict[str, Any]:
    """split -> file (or {language: file}) for a 'files' source's `path`: a folder in `files_layout` (names may hold
    {lang}), or a jiant task config JSON."""
    if not spec.files_layout:
        raise InputError(
            f"a 'files' source of {dataset} needs 'paths' (split -> file); 'path' works for datasets with "
            "a known folder layout (ccg, registered tasks)"
        )
    if root.is_file():
        return _jiant_config_paths(root)
    if not root.is_dir():
        raise InputError(
            f"the 'files' source's path {root} does not exist; give the folder holding "
            f"{' or '.join(spec.files_layout.get('train', ()))} or a jiant task config JSON"
        )
    found: dict[str, Any] = {}
    for name, candidates in spec.files_layout.items():
        if any("{lang}" in c for c in candidates):
            per_language = {}
            for lang in spec.split_languages(name) if name in SPLITS else spec.languages:
                hit = next(
                    (root / c.format(lang=lang) for c in candidates if (root / c.format(lang=lang)).is_file()), None
                )
                if hit is not None:
                    per_language[lang] = str(hit)
            if per_language:
                found[name] = per_language
            continue
        hit = next((root / c for c in candidates if (root / c).is_file()), None)
        if hit is not None:
            found[name] = str(hit)
    if split not in found:
        wanted = spec.files_layout.get(split, ())
        raise InputError(
            f"{dataset} {split} file not found in {root}: expected {' or '.join(wanted) or 'nothing'} there"
        )
    return found


def _from_files(
    spec: TaskDataset, dataset: str, split: str, source: Mapping[str, Any], wanted: Sequence[str] | None
) -> tuple[list[Example], str]:
    """`wanted` None: the languages the paths name (or the one file's)."""
    paths = source.get("paths")
    if source.get("path") and not paths:
        paths = _paths_under(spec, dataset, split, data_path(str(source["path"])))
    if not isinstance(paths, Mapping) or not paths:
        raise InputError("a 'files' source needs 'paths': a mapping split -> path, or split -> {language: path}")
    if split not in paths:
        raise InputError(
            f"the 'files' source has no {split!r} entry (it has: {', '.join(map(str, paths))}); "
            f"valid splits: {', '.join(spec.splits)}"
        )
    entry = paths[split]
    if isinstance(entry, Mapping):
        bad = [
            lang
            for lang in entry
            if lang not in spec.languages and not (lang == "en" and (split == "train" or spec.english_from))
        ]
        if bad:
            raise InputError(
                f"'files' {split} paths name language(s) {', '.join(map(str, bad))} that {dataset} does "
                f"not have; its languages: {', '.join(spec.languages)}"
            )
        absent = [lang for lang in wanted or () if lang not in entry]
        if absent:
            raise InputError(
                f"the 'files' source has no {dataset} {split} file for language(s) {', '.join(absent)}; "
                f"available: {', '.join(_ordered(entry, spec.languages))}"
            )
        if wanted is None:  # the split's languages the paths name (XCOPA's English only when asked for)
            wanted = [lang for lang in _ordered(entry, spec.languages) if lang in spec.split_languages(split)]
        chosen = {lang: entry[lang] for lang in wanted}
    elif spec.language_in_ids:  # one file of any languages: the ids name them
        chosen = {None: entry}
    elif wanted is not None and len(wanted) == 1:
        chosen = {wanted[0]: entry}
    elif spec.monolingual:
        chosen = {spec.monolingual: entry}
    else:
        raise InputError(
            f"{entry}: this dataset has one file per language ({dataset} has several); give 'files' "
            f"{split} paths as {{language: path}}"
        )
    examples: list[Example] = []
    for lang, p in chosen.items():
        path = data_path(p)
        if not path.is_file():
            raise InputError(f"{dataset} {split} file {path} does not exist (from the 'files' source's paths)")
        examples.extend(_read_file(spec, dataset, path, split, lang))
    return examples, "files " + ", ".join(str(p) for p in chosen.values())
