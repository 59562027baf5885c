"""Every reader, fed seeded random corruptions of its shipped fixtures (tests/fixtures and stilts_jax/assets/demo),
either reads correctly or raises a StiltsError naming the file: nothing in between.

A correct read is a list of well-formed examples: fields of the right types, labels in the dataset's label set,
answers at their offsets, as many examples as the file has records (a stray quote must not merge two lines, a line
separator inside a line must not split it), and a byte-order mark changes nothing. The task-source readers are found
through the catalog (`DATASETS`: each dataset's XTREME layout resolved under the fixture folders) and the release-format
sources of tests/intermediate_sources.py, so a new dataset or file format gets fuzzed as soon as it has a fixture;
test_every_dataset_of_the_catalog_is_fuzzed fails for one without.

Corruptions: truncation at a random byte, byte flips, the text re-encoded as latin-1 and as UTF-16, an extra or a
missing column (a JSON field for JSON formats), a `"` at the start of a line, U+2028 / U+0085 / form feed / CR inside
a line, a UTF-8 byte-order mark.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from stilts_jax.core.errors import StiltsError
from stilts_jax.data.examples import ChoiceExample, PairExample, TaggedSentence
from stilts_jax.data.lareqa import read_xquad_r
from stilts_jax.data.mewslix import (
    mewslix_path,
    read_entities,
    read_mewslix,
    read_wikipedia_pairs,
    wikipedia_dev_pool,
    wikipedia_training_pairs,
)
from stilts_jax.data.mlm import read_text_lines
from stilts_jax.data.qa import QAExample
from stilts_jax.data.retrieval import read_bucc, read_tatoeba
from stilts_jax.data.task_sources import DATASETS, labels, load_examples
from stilts_jax.embed import read_sentences
from tests.intermediate_sources import SOURCES

SEED = 20260601
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
XTREME_ROOTS = (FIXTURES / "tasks" / "xtreme", FIXTURES / "qa" / "xtreme", ROOT / "stilts_jax" / "assets" / "demo")
RETRIEVAL = FIXTURES / "retrieval"
FILES_PER_DATASET = 3  # fixture files fuzzed per dataset (spread over splits), to keep the run short
CORRUPTIONS = (
    "truncate",
    "truncate",
    "flip",
    "flip",
    "latin1",
    "utf16",
    "extra_column",
    "missing_column",
    "quote",
    "line_separator",
    "bom",
)
# Corruptions after which a successful read must hold exactly the records of the intact file.
SAME_COUNT = ("quote", "line_separator", "bom")


@dataclasses.dataclass(frozen=True)
class Case:
    """One reader on one fixture: `files` (name in the scratch folder -> fixture) are copied, `target` corrupted;
    `read(folder, intact)` reads them (`intact`: what the intact files gave, None while reading those);
    `records(result)` is the list whose length counts the records read."""

    name: str
    files: dict[str, Path]
    target: str
    read: Callable[[Path, Any], Any]
    check: Callable[[Any], None]
    records: Callable[[Any], Sequence[Any]]


# --- corruptions --------------------------------------------------------------------------------------------------


def _random_line(data: bytes, rng: random.Random) -> tuple[list[bytes], int]:
    lines = data.split(b"\n")
    candidates = [i for i, line in enumerate(lines) if line.strip()] or [0]
    return lines, rng.choice(candidates)


def _json_objects(value: Any) -> list[dict]:
    found = [value] if isinstance(value, dict) else []
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        found += _json_objects(child)
    return found


def _edit_json(data: bytes, rng: random.Random, add: bool) -> bytes | None:
    """A JSON file (or one JSON line) with a field added to, or removed from, a random object of it."""
    text = data.decode("utf-8")
    whole = text.lstrip().startswith("[") or (
        text.lstrip().startswith("{")
        and "\n" in text.strip()
        and not text.strip().split("\n")[0].rstrip().endswith("}")
    )
    lines = [text] if whole else text.split("\n")
    candidates = [i for i, line in enumerate(lines) if line.strip()]
    if not candidates:
        return None
    index = rng.choice(candidates)
    try:
        value = json.loads(lines[index])
    except json.JSONDecodeError:
        return None
    objects = [o for o in _json_objects(value) if add or o]
    if not objects:
        return None
    target = rng.choice(objects)
    if add:
        target["zz_unexpected"] = rng.choice(["x", 1, None, [1, 2]])
    else:
        del target[rng.choice(sorted(target))]
    lines[index] = json.dumps(value, ensure_ascii=False)
    return "\n".join(lines).encode("utf-8")


def corrupt(data: bytes, kind: str, rng: random.Random, name: str) -> bytes | None:
    """`data` corrupted one way; None where the corruption does not apply to this file."""
    is_json = name.endswith((".json", ".jsonl")) or (name.endswith(".txt") and data.lstrip()[:1] in (b"{", b"["))
    if kind == "truncate":
        return data[: rng.randrange(len(data))] if data else None
    if kind == "flip":
        out = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            position = rng.randrange(len(out))
            out[position] ^= rng.randrange(1, 256)
        return bytes(out)
    if name.endswith(".parquet"):  # binary: only cut or flipped
        return None
    if kind in ("latin1", "utf16"):
        text = data.decode("utf-8")
        return text.encode("latin-1", errors="replace") if kind == "latin1" else text.encode("utf-16")
    if kind == "bom":
        return b"\xef\xbb\xbf" + data
    if kind in ("extra_column", "missing_column"):
        if is_json:
            return _edit_json(data, rng, add=kind == "extra_column")
        separator = b"," if name.endswith(".csv") else b"\t"
        lines, i = _random_line(data, rng)
        ending = b"\r" if lines[i].endswith(b"\r") else b""
        line = lines[i][: len(lines[i]) - len(ending)]
        if kind == "extra_column":
            lines[i] = line + separator + b"extra" + ending
        elif separator in line:
            lines[i] = line.rsplit(separator, 1)[0] + ending
        else:
            return None
        return b"\n".join(lines)
    lines, i = _random_line(data, rng)
    if kind == "quote":
        lines[i] = b'"' + lines[i]
        return b"\n".join(lines)
    if kind == "line_separator":
        text = lines[i].decode("utf-8")
        position = rng.randrange(1, max(2, len(text.rstrip("\r"))))
        lines[i] = (text[:position] + rng.choice(["\u2028", "\x85", "\x0c", "\r"]) + text[position:]).encode("utf-8")
        return b"\n".join(lines)
    raise AssertionError(kind)


# --- checks of a successful read ----------------------------------------------------------------------------------


def _check_example(example: Any, dataset: str, language: str | None) -> None:
    assert isinstance(example.id, str) and isinstance(example.language, str), example
    if language is not None:
        assert example.language == language, example
    if isinstance(example, PairExample):
        assert isinstance(example.text_a, str) and isinstance(example.text_b, (str, type(None))), example
        assert "\n" not in example.text_a + (example.text_b or ""), f"a line break inside a field: {example}"
        assert example.label is None or 0 <= example.label < len(labels(dataset)), example
    elif isinstance(example, ChoiceExample):
        assert isinstance(example.prompt, str) and len(example.choices) >= 2, example
        assert all(isinstance(choice, str) for choice in example.choices), example
        assert example.label is None or 0 <= example.label < len(example.choices), example
    elif isinstance(example, TaggedSentence):
        assert example.tokens and all(isinstance(t, str) and "\n" not in t for t in example.tokens), example
        if example.tags is not None:
            assert len(example.tags) == len(example.tokens), example
            if not DATASETS[dataset].open_labels:
                assert set(example.tags) <= set(labels(dataset)), example
    elif isinstance(example, QAExample):
        assert example.question.strip() and example.context.strip(), example
        for answer in example.answers:
            assert example.context[answer.start : answer.start + len(answer.text)] == answer.text, example
    else:
        raise AssertionError(f"not an example: {example!r}")


def _labelled(example: Any) -> bool:
    return (
        isinstance(example, QAExample)
        or (example.tags if isinstance(example, TaggedSentence) else example.label) is not None
    )


# --- the task-source readers, found through the catalog -----------------------------------------------------------


def _task_case(
    dataset: str,
    split: str,
    language: str | None,
    files: dict[str, Path],
    target: str,
    source: Callable[[Path], dict[str, Any]],
) -> Case:
    """load_examples of `source(folder)`; labels are required of a corrupted copy where the intact file has them all,
    so a label lost to the corruption is an error, never a silent None."""

    def read(folder: Path, intact: list[Any] | None) -> list[Any]:
        require = intact is not None and all(_labelled(ex) for ex in intact)
        by_language = load_examples(
            dataset, split, source(folder), [language] if language else None, require_labels=require
        )
        return [ex for examples in by_language.values() for ex in examples]

    def check(examples: list[Any]) -> None:
        assert examples, "no examples and no error"
        for ex in examples:
            _check_example(ex, dataset, language)

    return Case(f"{dataset}-{split}-{target}", files, target, read, check, lambda examples: examples)


def _xtreme_cases() -> list[Case]:
    """Each dataset's XTREME layout (`TaskDataset.xtreme`) resolved under the fixture folders; read as 'files'."""
    found: dict[str, list[tuple[str, str | None, Path]]] = {}
    claimed: set[Path] = set()
    for dataset, spec in DATASETS.items():
        for split, templates in spec.xtreme.items():
            for root in XTREME_ROOTS:
                for template in templates:
                    languages = sorted(set(spec.split_languages(split)) | {"en"}) if "{lang}" in template else [None]
                    for language in languages:
                        path = root / template.format(lang=language)
                        if path.is_file() and path not in claimed:
                            claimed.add(path)
                            found.setdefault(dataset, []).append((split, language, path))
    cases = []
    for dataset, entries in found.items():
        step = max(1, len(entries) // FILES_PER_DATASET)
        for split, language, path in entries[::step][:FILES_PER_DATASET]:

            def source(folder: Path, split: str = split, name: str = path.name) -> dict[str, Any]:
                return {"kind": "files", "paths": {split: str(folder / name)}}

            case = _task_case(dataset, split, language, {path.name: path}, path.name, source)
            cases.append(dataclasses.replace(case, name=f"{dataset}-{split}-{path.relative_to(ROOT)}"))
    return cases


def _release_cases() -> list[Case]:
    """The original-release fixtures of the intermediate tasks (tests/intermediate_sources.py)."""
    cases = []
    for dataset, source in SOURCES.items():
        if "kind" not in source:
            continue  # a combination of other datasets' sources (ANLI+)
        if "paths" in source:
            for split, file in source["paths"].items():
                path = Path(file)
                files = {path.name: path}
                lst = path.with_name(f"{path.stem}-labels.lst")
                if lst.is_file():
                    files[lst.name] = lst
                for target in files:

                    def make(folder: Path, split: str = split, name: str = path.name) -> dict[str, Any]:
                        return {"kind": "files", "paths": {split: str(folder / name)}}

                    cases.append(_task_case(dataset, split, None, files, target, make))
        else:  # a folder in the dataset's files_layout (CCG)
            folder = Path(source["path"])
            layout = DATASETS[dataset].files_layout
            files = {p.name: p for p in sorted(folder.iterdir()) if p.is_file()}
            for split, names in layout.items():
                for name in names:
                    if name in files:
                        cases.append(
                            _task_case(
                                dataset, split, None, files, name, lambda root: {"kind": "files", "path": str(root)}
                            )
                        )
    return cases


def _hub_cases() -> list[Case]:
    """The demo's local copy of a hub repo (glue/mnli parquet), read as an 'hf' source."""
    glue = ROOT / "stilts_jax" / "assets" / "demo" / "glue"
    files = {f"mnli/{p.name}": p for p in sorted((glue / "mnli").glob("*.parquet"))}
    cases = []
    for target, split in (
        ("mnli/train-00000-of-00001.parquet", "train"),
        ("mnli/validation_matched-00000-of-00001.parquet", "dev"),
    ):
        cases.append(_task_case("mnli", split, None, files, target, lambda root: {"kind": "hf", "repo": str(root)}))
    return cases


# --- the retrieval readers ----------------------------------------------------------------------------------------


def _files_under(folder: Path, pattern: str) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for p in sorted(folder.glob(pattern)) if p.is_file()}


def _check_bucc(split: Any) -> None:
    for ids, sentences in ((split.src_ids, split.src_sentences), (split.en_ids, split.en_sentences)):
        assert ids and len(ids) == len(sentences) == len(set(ids)), split
        assert all(isinstance(s, str) and s and "\n" not in s for s in sentences), split
    if split.gold is not None:
        assert {s for s, _ in split.gold} <= set(split.src_ids) and {e for _, e in split.gold} <= set(split.en_ids)


def _check_tatoeba(data: Any) -> None:
    assert data.queries and len(data.queries) == len(data.candidates), data
    assert all(isinstance(s, str) and s and "\n" not in s for s in data.queries + data.candidates), data
    if data.gold is not None:
        assert len(data.gold) == len(data.queries) and all(0 <= g < len(data.candidates) for g in data.gold)


def _check_xquad_r(result: Any) -> None:
    questions, candidates, answer_of = result
    ids = [q.id for q in questions]
    assert questions and len(ids) == len(set(ids)) and all(q.text.strip() for q in questions), result
    candidate_ids = {c[0] for c in candidates}
    assert set(answer_of) == set(ids) and set(answer_of.values()) <= candidate_ids, result


def _check_pool(pool: Any) -> None:
    assert pool.candidate_ids and all(isinstance(t, str) for t in pool.candidate_texts)
    for queries in pool.queries.values():
        ids = [q.id for q in queries]
        assert len(ids) == len(set(ids)) and all(q.relevant <= set(pool.candidate_ids) for q in queries)


def _check_lines(lines: Any) -> None:
    assert all(isinstance(line, str) and "\n" not in line for line in lines), lines


def _retrieval_cases() -> list[Case]:
    cases = []
    bucc = [
        ("bucc_original", "de", "sample", "original"),
        ("bucc_original", "de", "training", "original"),
        ("bucc_original", "zh", "sample", "original"),
        ("bucc_xtreme", "de", "dev", "xtreme"),
        ("bucc_xtreme", "ru", "test", "xtreme"),
    ]
    for folder, language, split, layout in bucc:
        root = RETRIEVAL / folder
        files = _files_under(root, f"bucc2018/**/{language}-en.{split}.*")
        for target in files:
            cases.append(
                Case(
                    f"bucc-{target}",
                    files,
                    target,
                    lambda r, _, lang=language, s=split, lay=layout: read_bucc(r, lang, s, layout=lay),
                    _check_bucc,
                    lambda b: b.src_ids + b.en_ids,
                )
            )
    laser = _files_under(RETRIEVAL / "tatoeba_laser", "tatoeba.*")
    for target in laser:
        cases.append(
            Case(
                f"tatoeba-laser-{target}",
                laser,
                target,
                lambda r, _: read_tatoeba(r, "de", layout="laser"),
                _check_tatoeba,
                lambda t: t.queries,
            )
        )
    xtreme = _files_under(RETRIEVAL / "tatoeba_xtreme", "**/*de*")
    for target in xtreme:
        cases.append(
            Case(
                f"tatoeba-xtreme-{target}",
                xtreme,
                target,
                lambda r, _: read_tatoeba(
                    r / "tatoeba", "de", layout="xtreme", labels=r / "labels" / "tatoeba" / "test-de.tsv"
                ),
                _check_tatoeba,
                lambda t: t.queries,
            )
        )
    for language in ("en", "zh"):
        path = RETRIEVAL / "lareqa" / "lareqa" / "xquad-r" / f"{language}.json"
        cases.append(
            Case(
                f"lareqa-{language}",
                {path.name: path},
                path.name,
                lambda r, _, lang=language: read_xquad_r(r / f"{lang}.json", lang),
                _check_xquad_r,
                lambda result: result[0],
            )
        )
    mewslix = _files_under(RETRIEVAL / "mewslix", "mewslix/*.jsonl")
    cases.append(
        Case(
            "mewslix-entities",
            mewslix,
            "mewslix/candidate_set_entities.jsonl",
            lambda r, _: read_entities(mewslix_path(r, "candidate_set_entities.jsonl")),
            lambda entities: None,
            lambda entities: entities,
        )
    )
    for split in ("dev", "test"):
        cases.append(
            Case(
                f"mewslix-wikinews-{split}",
                mewslix,
                f"mewslix/wikinews_mentions-{split}.jsonl",
                lambda r, _, s=split: read_mewslix(r, s, ["en", "ar"]),
                _check_pool,
                lambda pool: [q for qs in pool.queries.values() for q in qs],
            )
        )

    def pairs_and_pool(root: Path, split: str) -> Any:
        path = mewslix_path(root, f"wikipedia_pairs-{split}.jsonl")
        pairs = read_wikipedia_pairs(path)
        wikipedia_training_pairs(pairs)
        return pairs, wikipedia_dev_pool(pairs, str(path))

    for split in ("train", "dev"):
        cases.append(
            Case(
                f"mewslix-wikipedia-{split}",
                mewslix,
                f"mewslix/wikipedia_pairs-{split}.jsonl",
                lambda r, _, s=split: pairs_and_pool(r, s),
                lambda result: _check_pool(result[1]),
                lambda result: result[0],
            )
        )
    text = RETRIEVAL / "tatoeba_laser" / "tatoeba.deu-eng.deu"
    cases.append(
        Case(
            "mlm-text",
            {text.name: text},
            text.name,
            lambda r, _: read_text_lines([r / text.name]),
            _check_lines,
            lambda lines: lines,
        )
    )
    cases.append(
        Case(
            "embed-input",
            {text.name: text},
            text.name,
            lambda r, _: read_sentences(r / text.name),
            _check_lines,
            lambda lines: lines,
        )
    )
    return cases


TASK_CASES = _xtreme_cases() + _release_cases() + _hub_cases()
CASES = TASK_CASES + _retrieval_cases()


# --- the fuzzing --------------------------------------------------------------------------------------------------


def _copy(case: Case, folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    for name, path in case.files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / name)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_corrupted_fixtures_read_correctly_or_fail_naming_the_file(case, tmp_path):
    folder = tmp_path / "data"
    _copy(case, folder)
    intact = case.read(folder, None)
    case.check(intact)
    intact_count = len(case.records(intact))
    data = case.files[case.target].read_bytes()
    problems = []
    for number, kind in enumerate(CORRUPTIONS):
        rng = random.Random(f"{SEED}/{case.name}/{number}")
        corrupted = corrupt(data, kind, rng, case.target)
        if corrupted is None:
            continue
        _copy(case, folder)
        (folder / case.target).write_bytes(corrupted)
        what = f"{kind} #{number}"
        try:
            result = case.read(folder, intact)
        except StiltsError as e:
            if case.target not in str(e) and str(folder / case.target) not in str(e):
                problems.append(f"{what}: the error does not name {case.target}: {e}")
            continue
        except Exception as e:  # noqa: BLE001 (any other exception type is what this test is here to find)
            problems.append(f"{what}: {type(e).__name__}: {e}")
            continue
        try:
            case.check(result)
            count = len(case.records(result))
            if kind in SAME_COUNT:
                assert count == intact_count, f"{count} records read, the intact file holds {intact_count}"
            if kind == "bom":
                assert result == intact, "a byte-order mark changed what was read"
        except AssertionError as e:
            problems.append(f"{what}: read without an error, but wrong: {e}")
    assert not problems, "\n".join(problems)


def test_every_dataset_of_the_catalog_is_fuzzed():
    fuzzed = {case.name.split("-", 1)[0] for case in TASK_CASES}
    combinations = {name for name, spec in DATASETS.items() if spec.parts}  # read through their parts
    assert set(DATASETS) - fuzzed - combinations == set(), "give these datasets a fixture the fuzz test can find"
