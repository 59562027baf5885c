"""The 'hf' source kind: parquet from the Hugging Face hub repos in `DATASETS`, or a local copy in the hub layout.

facebook/xnli, google/xtreme, nyu-mll/glue, google-research-datasets/paws, facebook/anli, stanfordnlp/snli,
tau/commonsense_qa, cambridgeltl/xcopa, rajpurkar/squad, rajpurkar/squad_v2 and google/xquad are read from their
main branch; Rowan/hellaswag, allenai/cosmos_qa, allenai/social_i_qa, aps/super_glue and facebook/mlqa (main: a loading
script only) and unimelb-nlp/wikiann from the parquet export, revision refs/convert/parquet. So are the reasoning
datasets (catalog.py): ybisk/piqa, allenai/art and baber/logiqa2 (loading scripts on main), tasksource/reclor (the
original JSON files on main) and allenai/winogrande. `repo` may be a local
folder (or a gs:// one) in the hub layout: `{config}/{split}-*.parquet`, `{config}/{split}/*.parquet` (refs/convert/parquet),
`data/{split}-*.parquet` or `default/{split}/*.parquet`.
A `config` may contain `{lang}` (and `{name}`, the UD language name google/xtreme's udpos configs use).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from etils import epath

from stilts_jax.core.errors import InputError
from stilts_jax.core.paths import data_path, is_remote
from stilts_jax.data.task_sources.catalog import CONVERTED, Example, TaskDataset
from stilts_jax.data.task_sources.records import _rows_to_examples
from stilts_jax.data.task_sources.vocabulary import UD_NAMES

log = logging.getLogger(__name__)


def _local_parquet(folder: epath.Path, config: str | None, split: str) -> list[epath.Path]:
    """Parquet files of `split` in a local copy of a hub repo, in the layouts the hub uses."""
    base = folder / config if config else folder
    patterns = [(base, f"{split}-*.parquet"), (base / split, "*.parquet"), (base, f"*-{split}.parquet")]
    if not config:
        patterns += [
            (folder / "data", f"{split}-*.parquet"),
            (folder / "default" / split, "*.parquet"),
            (folder / "default", f"*-{split}.parquet"),
        ]
    for directory, pattern in patterns:
        files = sorted(directory.glob(pattern)) if directory.is_dir() else []
        if files:
            return files
    return []


def _parquet_rows(files: Sequence[epath.Path]) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    for path in files:
        with contextlib.ExitStack() as opened:
            try:  # pyarrow opens local files itself; an object-store file is read through epath's file object
                batches = iter(
                    pq.ParquetFile(opened.enter_context(path.open("rb")) if is_remote(path) else path).iter_batches(
                        batch_size=4096
                    )
                )
            except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ...
                raise InputError(
                    f"cannot read {path} as parquet ({type(e).__name__}: {e}); a Git LFS pointer instead "
                    "of the file? Download the repo with `hf download` or `git lfs pull`"
                ) from e
            while True:
                try:
                    rows = next(batches).to_pylist()
                except StopIteration:
                    break
                except Exception as e:  # a damaged file: pyarrow's OSError, ArrowInvalid, or text that is not UTF-8
                    raise InputError(
                        f"{path} is damaged: its parquet data cannot be read ({type(e).__name__}: {e}); "
                        "download the file again"
                    ) from e
                yield from rows


def _dataset_rows(ds: Any) -> Iterator[dict[str, Any]]:
    for batch in ds.iter(batch_size=1024):
        names = list(batch)
        for i in range(len(batch[names[0]]) if names else 0):
            yield {name: batch[name][i] for name in names}


def _hf_rows(
    repo: str, config: str | None, hf_split: str, revision: str | None, explicit_revision: bool, cache_dir: str | None
) -> tuple[Iterator[dict[str, Any]], str]:
    folder = data_path(repo)
    where = f"Hugging Face dataset {repo} (config {config}, split {hf_split})"
    if folder.is_dir():
        if explicit_revision:
            raise InputError(f"'revision' applies to hub repos, not to the local folder {folder}")
        files = _local_parquet(folder, config, hf_split)
        if files:
            return _parquet_rows(files), where
        if is_remote(folder) or not (folder / "README.md").is_file():  # `datasets` loads dataset cards locally only
            layout = f"{config}/{hf_split}-*.parquet" if config else f"data/{hf_split}-*.parquet"
            raise InputError(
                f"{where}: the folder {folder} holds no parquet files for this split; it should "
                f"hold the hub repo's files, e.g. {layout} (or {config or 'default'}/{hf_split}/*.parquet "
                f"from {CONVERTED})"
            )
    elif repo.startswith(("/", "./", "../", "~")) or is_remote(repo):
        raise InputError(f"the 'hf' source's repo {repo!r} looks like a folder but {folder} does not exist")
    try:
        import datasets
    except ImportError as e:
        raise InputError(f"the 'hf' source needs the `datasets` package (pip install datasets): {e}") from e
    try:
        if folder.is_dir():  # the folder's README.md (dataset card) maps configs and splits to files
            ds = datasets.load_dataset(str(folder), config, split=hf_split, cache_dir=cache_dir)
        elif revision == CONVERTED:  # the export branch: {config}/{split}/NNNN.parquet, no dataset card configs
            ds = datasets.load_dataset(
                repo,
                revision=revision,
                cache_dir=cache_dir,
                split=hf_split,
                data_files={hf_split: f"{config or 'default'}/{hf_split}/*.parquet"},
            )
        else:
            ds = datasets.load_dataset(repo, config, split=hf_split, revision=revision, cache_dir=cache_dir)
    except Exception as e:  # datasets raises many types (ConnectionError, DatasetNotFoundError, ValueError, ...)
        if folder.is_dir():
            raise InputError(f"could not load {where} from the local folder {folder}: {type(e).__name__}: {e}") from e
        other = CONVERTED if revision != CONVERTED else "main"
        at_revision = f" --revision {revision}" if revision else ""
        raise InputError(
            f"could not load {where} (revision {revision or 'main'}): {type(e).__name__}: {e}. Without network access, "
            f"copy the repo elsewhere (`hf download {repo} --repo-type dataset{at_revision} --local-dir DIR`) and set "
            f"repo to that local folder, try revision {other!r}, or use the 'tfds' or 'xtreme' source"
        ) from e
    return _dataset_rows(ds), where


def _from_hf(
    spec: TaskDataset, dataset: str, split: str, source: Mapping[str, Any], wanted: Sequence[str] | None
) -> tuple[list[Example], str]:
    """`wanted` None: every language of the split the repo has."""
    loc = spec.hf
    if loc is None or split not in loc.splits:
        raise InputError(
            f"the Hugging Face hub has no {dataset} {split} data known to this loader; use a source of "
            f"kind {'xtreme or ' if split in spec.xtreme else ''}files"
        )
    repo = str(source.get("repo") or loc.repo)
    config = source.get("config", loc.config)
    explicit = source.get("revision") is not None
    revision = source.get("revision") if explicit else (loc.revision if repo == loc.repo else None)
    per_language = config is not None and "{" in str(config)
    languages = wanted if wanted is not None else spec.split_languages(split)
    if per_language and loc.languages is not None and repo == loc.repo:
        absent = [lang for lang in languages if lang not in loc.languages]
        if absent and wanted is not None:
            raise InputError(
                f"{loc.repo} has no {dataset} data for language(s) {', '.join(absent)}"
                f"{'; ' + spec.hint if spec.hint else ''}"
            )
        if absent:
            log.info("%s has no %s data for %s; reading its other languages", loc.repo, dataset, ", ".join(absent))
            languages = [lang for lang in languages if lang in loc.languages]
    examples: list[Example] = []
    wheres = []
    groups = (
        [(lang, str(config).format(lang=lang, name=UD_NAMES.get(lang, lang))) for lang in languages]
        if per_language
        else [(spec.monolingual, config)]
    )
    unnamed = (
        f"the hf config {config!r} must contain {{lang}}: this dataset has one per language (the default is "
        f"{loc.config!r})"
    )
    for lang, cfg in groups:
        for hf_split in loc.splits[split]:
            rows, where = _hf_rows(repo, cfg, hf_split, revision, explicit, source.get("cache_dir"))
            wheres.append(where)
            examples.extend(_rows_to_examples(spec, dataset, split, rows, lang, wanted, where, "row", unnamed))
    return examples, wheres[0] if len(wheres) == 1 else f"Hugging Face dataset {repo} ({len(wheres)} configs/splits)"
