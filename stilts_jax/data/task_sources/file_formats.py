"""Reading one data file: XTREME's TSV formats, TSVs with a header row, jsonl, CSV and jiant's tagging files.

- `sentence1 TAB sentence2 TAB label` rows (XNLI, PAWS-X; test files have no label column) are plain tab-separated
  text, read as XTREME's own reader reads them: fields split at tabs, a `"` is an ordinary character.
- `token TAB tag` lines, a blank line between sentences (UD-POS, PAN-X, CoNLL-like CCG); test files hold tokens only.
- TSVs with a header row: GLUE's QQP/MNLI `train.tsv`, PAWS's original `train.tsv`.
- `.jsonl` records with the hub's field names or the original releases' (ANLI, SNLI, MNLI, COPA, XCOPA, CommonsenseQA,
  HellaSwag, Social IQa with its `{split}-labels.lst` next to it); `.csv` for Cosmos QA's original train/valid files.
- The English reasoning datasets' releases: `.jsonl` with the labels in `{name}-labels.lst` beside it (PIQA, alphaNLI;
  WinoGrande's records carry their `answer`); ReClor's `train.json`/`val.json`/`test.json`, each one JSON list of
  records (a `.json` file whose first character is `[`); LogiQA 2.0's `{train,dev,test}.txt`, JSON lines under a
  `.txt` name (a multiple-choice file of any other suffix is read as JSON lines or a JSON list by its first
  character).
- CCG in jiant's format (`ccg.{train,dev,test}`: space-separated words TAB space-separated supertags, one sentence a
  line; a `tags_to_id.json` beside them is not needed) or CoNLL-like (`token TAB tag` lines).
- SQuAD-format JSON (span QA: SQuAD v1.1/v2.0, TyDiQA-GoldP, XQuAD, MLQA; data/qa.py reads and validates it), one
  language per file or, for TyDiQA-GoldP's original files, every language with the ids naming each question's.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import re
from collections.abc import Callable
from typing import Any

from etils import epath

from stilts_jax.core.errors import InputError
from stilts_jax.core.io_utils import iter_lines, read_text
from stilts_jax.data import qa
from stilts_jax.data.examples import PairExample, TaggedSentence
from stilts_jax.data.jsonl import json_objects
from stilts_jax.data.qa import QADataError, QAExample
from stilts_jax.data.task_sources.catalog import Example, TaskDataError, TaskDataset
from stilts_jax.data.task_sources.fields import _label_index
from stilts_jax.data.task_sources.records import _blanked_hint, _check_answer_texts, _read_record

log = logging.getLogger(__name__)

# --- XTREME file formats (xtreme and files) --------------------------------------------------------------------


def _read_pair_tsv(spec: TaskDataset, dataset: str, path: epath.Path, split: str, language: str) -> list[PairExample]:
    """sentence1 TAB sentence2 [TAB label] lines, plain tab-separated text; or XTREME's translate-train rows.

    Read as google-research/xtreme reads them (third_party/processors/xnli.py and pawsx.py call transformers'
    DataProcessor._read_tsv: csv.reader(f, delimiter="\t", quotechar=None) on a file opened as utf-8-sig): no quote
    is special, so `"Hello," she said.` keeps its quotes and a line is always one example, and a byte-order mark
    is dropped. utils_preprocess.py writes the files with csv.writer, which wraps a field holding `"` in quotes and
    doubles the quotes inside; XTREME's reader keeps those characters as they stand, and so does this one.

    A file whose first row has 5 columns holds XTREME's machine translations of the English training set
    (google-research/xtreme README, "Translations": the English pair, the translated pair, the label); the translated
    pair is the example. Some rows of those files are malformed (tensorflow_datasets' xtreme_pawsx builder skips
    them): rows of another column count or an unknown label are skipped there, and counted in a warning."""
    examples: list[PairExample] = []
    columns = first_line = None
    skipped: list[int] = []
    for line, text in iter_lines(path, TaskDataError):
        if not text:
            continue
        row = text.split("\t")
        if columns is None and len(row) == 5:
            columns, first_line = 5, line
        if columns == 5:
            try:
                if len(row) != 5:
                    raise TaskDataError(f"{len(row)} columns")
                label = _label_index(spec, dataset, row[4], f"{path} line {line}")
            except TaskDataError:
                skipped.append(line)
                continue
            if label is None:
                skipped.append(line)
                continue
            examples.append(
                PairExample(
                    id=f"{split}-{language}-{len(examples)}",
                    text_a=row[2],
                    text_b=row[3],
                    label=label,
                    language=language,
                )
            )
            continue
        if len(row) not in (2, 3):
            raise TaskDataError(
                f"{path} line {line}: expected 3 tab-separated columns (sentence1, sentence2, "
                f"label), or 2 in a test file without labels, or 5 in XTREME's translate-train files; got {len(row)}"
            )
        if columns is None:
            columns, first_line = len(row), line
        elif len(row) != columns:
            raise TaskDataError(f"{path} line {line}: {len(row)} columns, but line {first_line} has {columns}")
        label = _label_index(spec, dataset, row[2], f"{path} line {line}") if len(row) == 3 else None
        if len(row) == 3 and label is None:
            raise TaskDataError(f"{path} line {line}: empty label")
        examples.append(
            PairExample(
                id=f"{split}-{language}-{len(examples)}", text_a=row[0], text_b=row[1], label=label, language=language
            )
        )
    if skipped:
        shown = ", ".join(map(str, skipped[:5])) + (f" (+{len(skipped) - 5} more)" if len(skipped) > 5 else "")
        log.warning(
            "%s: skipped %d malformed translate-train row(s) (not 5 columns, or no known label) at lines %s",
            path,
            len(skipped),
            shown,
        )
    return examples


def _read_tags_tsv(
    spec: TaskDataset, dataset: str, path: epath.Path, split: str, language: str
) -> list[TaggedSentence]:
    """token TAB tag lines, a blank line between sentences; test files hold tokens only (tags None)."""
    sentences: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    tagged = first_token_line = None

    def close() -> None:
        if tokens:
            sentences.append(
                TaggedSentence(
                    id=f"{split}-{language}-{len(sentences)}",
                    tokens=tuple(tokens),
                    tags=tuple(tags) if tagged else None,
                    language=language,
                )
            )
            tokens.clear()
            tags.clear()

    for number, line in iter_lines(path, TaskDataError):
        if not line.strip():
            close()
            continue
        fields = line.split("\t")
        if len(fields) > 2:
            raise TaskDataError(
                f"{path} line {number}: expected token<TAB>tag, got {len(fields)} tab-separated columns"
            )
        # A token may be empty: utils_preprocess.py strips PAN-X tokens, and XTREME's reader keeps the word.
        has_tag = len(fields) == 2
        if tagged is None:
            tagged, first_token_line = has_tag, number
        elif has_tag != tagged:
            if tagged:
                raise TaskDataError(
                    f"{path} line {number}: token {fields[0]!r} without a tag (expected "
                    "token<TAB>tag like the file's other lines)"
                )
            raise TaskDataError(
                f"{path} line {number}: a tagged token in a file whose tokens have no tags (line "
                f"{first_token_line} has none)"
            )
        tokens.append(fields[0])
        if has_tag:
            tag = fields[1].strip()
            if spec.open_labels and not tag:
                raise TaskDataError(f"{path} line {number}: empty tag after the tab")
            if not spec.open_labels and tag not in spec.labels:
                raise TaskDataError(
                    f"{path} line {number}: unknown tag {tag!r}; {dataset} tags: {', '.join(spec.labels)}"
                )
            tags.append(tag)
    close()
    return sentences


def _read_jiant_tags(
    spec: TaskDataset, dataset: str, path: epath.Path, split: str, language: str
) -> list[TaggedSentence]:
    """jiant's tagging files (CCG: ccg.train, ...): one sentence a line, space-separated words TAB space-separated
    tags, one tag per word (written by jiant's scripts/ccg/ccg_proc.py)."""
    sentences = []
    for number, line in iter_lines(path, TaskDataError):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise TaskDataError(
                f"{path} line {number}: expected `words<TAB>tags` (jiant's CCG format: the "
                f"sentence's words, a tab, one tag per word), got {len(fields)} tab-separated "
                "fields"
            )
        words, tags = fields[0].split(), fields[1].split()
        if not words or len(words) != len(tags):
            raise TaskDataError(
                f"{path} line {number}: {len(words)} words but {len(tags)} tags; jiant's format "
                "has one space-separated tag per word"
            )
        sentences.append(
            TaggedSentence(
                id=f"{split}-{language}-{len(sentences)}", tokens=tuple(words), tags=tuple(tags), language=language
            )
        )
    return sentences


def _tag_file_format(spec: TaskDataset, path: epath.Path) -> str:
    """jiant (a sentence a line: its words hold spaces) or conll (a token a line), from the first non-blank line."""
    if "jiant" not in spec.tag_formats:
        return "conll"
    for _, line in iter_lines(path, TaskDataError):
        if line.strip():
            return "jiant" if " " in line.split("\t")[0].strip() else "conll"
    return "conll"


_HEADER_TEXT_COLUMNS = ({"sentence1", "question1", "premise"}, {"sentence2", "question2", "hypothesis"})


def _header_tsv_columns(path: epath.Path) -> list[str] | None:
    """The column names of a TSV whose first row is a header (GLUE's QQP/MNLI, PAWS's original release), else None."""
    first = next(iter_lines(path, TaskDataError), (1, ""))[1].split("\t")
    names = {c.strip() for c in first}
    return [c.strip() for c in first] if all(names & group for group in _HEADER_TEXT_COLUMNS) else None


def _read_header_tsv(
    spec: TaskDataset, dataset: str, path: epath.Path, split: str, language: str, columns: list[str]
) -> list[Example]:
    """Rows under a header, fields not quoted (as GLUE's and PAWS's own readers take them: csv.QUOTE_NONE)."""
    examples = []
    lines = iter_lines(path, TaskDataError)
    next(lines)
    for number, line in lines:
        where = f"{path} line {number}"
        if not line:
            continue
        row = line.split("\t")
        if len(row) != len(columns):
            raise TaskDataError(
                f"{where}: {len(row)} tab-separated fields, but the header (line 1) names "
                f"{len(columns)}: {', '.join(columns)}"
            )
        record = dict(zip(columns, row))
        examples.append(_read_record(spec, dataset, record, language, f"{split}-{language}-{len(examples)}", where))
    return examples


_LABEL_FIELDS = ("correct", "label", "answer")  # a record holding one of these carries its own label


def _with_labels_lst(
    spec: TaskDataset, dataset: str, path: epath.Path, records: list[tuple[int, dict[str, Any]]]
) -> list[tuple[int, dict[str, Any]]]:
    """`records` of `path` with the labels of `{name}-labels.lst` beside it, one a line (the AI2 leaderboard releases:
    Social IQa 1-3, PIQA 0/1, alphaNLI 1/2), where the dataset's releases keep them there and the records carry none.
    A label the dataset does not have is an error naming the .lst file's line."""
    labels_file = path.with_name(f"{path.stem}-labels.lst")
    keeps_lst = spec.labels_lst or spec.reader == "siqa"  # a user's dataset read like Social IQa, too
    if not (keeps_lst and labels_file.is_file()) or any(f in r for _, r in records for f in _LABEL_FIELDS):
        return records
    values = []
    for number, value in iter_lines(labels_file, TaskDataError):
        if value.strip():
            _label_index(spec, dataset, value.strip(), f"{labels_file} line {number}")
            values.append(value.strip())
    if len(values) != len(records):
        raise TaskDataError(f"{labels_file}: {len(values)} labels for the {len(records)} records of {path}")
    return [(n, {**r, "label": v}) for (n, r), v in zip(records, values)]


def _read_jsonl(
    spec: TaskDataset, dataset: str, path: epath.Path, split: str, language: str, labels_zeroed: bool = False
) -> list[Example]:
    """One JSON record per line, read with the dataset's record reader. Social IQa's, PIQA's and alphaNLI's original
    releases keep their labels in `{name}-labels.lst` next to `{name}.jsonl`; `labels_zeroed`: XTREME's XCOPA test
    files."""
    records = [
        (number, row)
        for number, _, row in json_objects(
            path, TaskDataError, where_format="{path} line {line}", bad_json="not a JSON record ({reason})"
        )
    ]
    records = _with_labels_lst(spec, dataset, path, records)
    examples = []
    first_seen: dict[str, str] = {}
    for i, (number, row) in enumerate(records):
        if labels_zeroed:
            row = {k: v for k, v in row.items() if k != "label"}
        example = _read_record(spec, dataset, row, language, f"{split}-{language}-{i}", f"{path} line {number}")
        if isinstance(example, QAExample) and split != "train":  # evaluation questions: their ids key predictions
            qa.check_unique_id(example.id, str(path), f"line {number}", first_seen)
        examples.append(example)
    return examples


_SPACE = re.compile(r"[ \t\n\r]*")


def _first_character(path: epath.Path) -> str:
    """The first character of `path` that is not white space ("" for an empty file)."""
    with path.open("rb") as f:  # bytes: object-store files take no `errors=`
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while chunk := f.read(4096):
            text = decoder.decode(chunk)
            if text.strip():
                return text.lstrip()[0]
    return ""


def _json_list_records(path: epath.Path) -> list[tuple[int, dict[str, Any]]]:
    """(line, record) of a file holding one JSON list of objects (ReClor's train.json, read with json.load by
    yuweihao/reclor utils_multiple_choice.py): each record's line is where it starts; a malformed one is an error
    naming its line."""
    text = read_text(path, TaskDataError)
    decoder = json.JSONDecoder()
    pos = _SPACE.match(text).end()
    if text[pos : pos + 1] != "[":
        raise TaskDataError(f"{path}: expected one JSON list of records")
    line, counted = 1, 0

    def line_at(position: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, position)
        counted = position
        return line

    records: list[tuple[int, dict[str, Any]]] = []
    pos = _SPACE.match(text, pos + 1).end()
    if text[pos : pos + 1] == "]":
        pos += 1
    else:
        while True:
            start = line_at(pos)
            try:
                record, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as e:
                raise TaskDataError(f"{path} line {e.lineno}: not a JSON record ({e.msg}, column {e.colno})") from e
            if not isinstance(record, dict):
                raise TaskDataError(f"{path} line {start}: a record must be a JSON object, got {type(record).__name__}")
            records.append((start, record))
            pos = _SPACE.match(text, end).end()
            if text[pos : pos + 1] == ",":
                pos = _SPACE.match(text, pos + 1).end()
            elif text[pos : pos + 1] == "]":
                pos += 1
                break
            else:
                raise TaskDataError(f"{path} line {line_at(pos)}: expected ',' or ']' after the record of line {start}")
    if text[_SPACE.match(text, pos).end() :]:
        raise TaskDataError(f"{path} line {line_at(_SPACE.match(text, pos).end())}: text after the JSON list")
    return records


def _read_json_list(spec: TaskDataset, dataset: str, path: epath.Path, split: str, language: str) -> list[Example]:
    """A file holding one JSON list of records (ReClor's original train.json / val.json / test.json)."""
    return [
        _read_record(spec, dataset, row, language, f"{split}-{language}-{i}", f"{path} line {number} (record {i})")
        for i, (number, row) in enumerate(_json_list_records(path))
    ]


def _read_csv(spec: TaskDataset, dataset: str, path: epath.Path, split: str, language: str) -> list[Example]:
    """A CSV file with a header row (Cosmos QA's original train.csv / valid.csv: csv-quoted, as pandas writes it)."""
    examples: list[Example] = []
    reader = csv.DictReader(io.StringIO(read_text(path, TaskDataError), newline=""))
    while True:
        where = f"{path} line {reader.line_num + 1}"
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise TaskDataError(f"{where}: not CSV ({e})") from e
        where = f"{path} line {reader.line_num}"
        if None in row:
            raise TaskDataError(f"{where}: more fields than the header's {len(reader.fieldnames or [])}")
        examples.append(_read_record(spec, dataset, row, language, f"{split}-{language}-{len(examples)}", where))
    return examples


def _read_squad_json(
    spec: TaskDataset, dataset: str, path: epath.Path, split: str, language: str | None, from_xtreme: bool = False
) -> list[QAExample]:
    """A SQuAD-format JSON file, every question validated (QADataError names the file and record). `language` None:
    the file holds several languages and each id names its own (TyDiQA-GoldP's original files). `from_xtreme`: the
    file comes from the XTREME download, which blanks evaluation answers; an empty answer then says where the
    labelled originals are."""
    examples = qa.read_squad_json(
        path,
        language=language or spec.monolingual,
        allow_unanswerable=spec.unanswerable,
        unique_ids=split != "train",
        skip_misplaced_answers=split == "train",
    )
    hint = _blanked_hint(spec) if from_xtreme else ""
    for ex in examples:
        _check_answer_texts(ex, str(path), hint)
    if spec.language_in_ids and language is not None:
        # A file given one language of a dataset whose ids name their language: a mismatch means a mixed or
        # mislabelled file (XTREME's per-language split files cut the ids, which then name nothing).
        for ex in examples:
            prefix = ex.id.split("-", 1)[0].lower()
            named = qa.TYDIQA_LANGUAGE_PREFIXES.get(prefix)
            if named is not None and named != language:
                raise QADataError(
                    f"{path}: question {ex.id!r} is {named} ({prefix}) but the file is given as "
                    f"{language!r}; is this a multi-language file?"
                )
    return examples


# name -> reader(dataset spec, dataset name, path, split, language) -> examples: formats added by users' task modules.
# `path` is an etils.epath.Path (local or gs://...): open it with path.open(), not open().
FILE_FORMATS: dict[str, Callable[..., list[Example]]] = {}


def register_file_format(name: str, reader: Callable[..., list[Example]]) -> None:
    if not callable(reader):
        raise InputError(f"file format {name!r}: the reader must be callable")
    FILE_FORMATS[name] = reader


def _read_registered(spec: TaskDataset, dataset: str, path: epath.Path, split: str, language: str) -> list[Example]:
    if spec.file_format not in FILE_FORMATS:
        raise InputError(
            f"{dataset} reads its files as {spec.file_format!r}, a format nobody registered; known: "
            f"{', '.join(sorted(FILE_FORMATS)) or 'none'} (register_file_format in a task module)"
        )
    try:
        examples = FILE_FORMATS[spec.file_format](spec, dataset, path, split, language)
    except (TaskDataError, InputError):
        raise
    except (OSError, UnicodeDecodeError, ValueError, KeyError, IndexError) as e:
        raise TaskDataError(f"{path}: the {spec.file_format!r} reader failed ({type(e).__name__}: {e})") from e
    return list(examples)


def _read_file(
    spec: TaskDataset,
    dataset: str,
    path: epath.Path,
    split: str,
    language: str | None,
    labels_zeroed: bool = False,
    from_xtreme: bool = False,
) -> list[Example]:
    """The examples of one file of `language` (None: a file of several languages whose records name theirs, for
    datasets with `language_in_ids`). `labels_zeroed`: XTREME's XCOPA test labels; `from_xtreme`: a file of the XTREME
    download."""
    if language is None and not spec.language_in_ids:
        raise InputError(
            f"{path}: {dataset} has one file per language; give the file's language (a 'files' source's "
            "paths entry as {language: path})"
        )
    if spec.file_format:
        return _read_registered(spec, dataset, path, split, language)
    suffix = path.suffix.lower()
    if spec.family == "qa" and suffix != ".jsonl":  # .jsonl: one hub-style row per line, read below
        return _read_squad_json(spec, dataset, path, split, language, from_xtreme)
    if suffix in (".jsonl", ".json") or (
        spec.family == "choice" and suffix != ".csv" and _first_character(path) in ("{", "[")
    ):
        if suffix != ".jsonl" and _first_character(path) == "[":  # one JSON list (ReClor's .json files)
            return _read_json_list(spec, dataset, path, split, language)
        return _read_jsonl(spec, dataset, path, split, language, labels_zeroed)  # also LogiQA 2.0's .txt files
    if suffix == ".csv":
        return _read_csv(spec, dataset, path, split, language)
    if spec.family == "pair":
        columns = _header_tsv_columns(path)
        if columns is not None:
            return _read_header_tsv(spec, dataset, path, split, language, columns)
        return _read_pair_tsv(spec, dataset, path, split, language)
    if spec.family == "tagging":
        if _tag_file_format(spec, path) == "jiant":
            return _read_jiant_tags(spec, dataset, path, split, language)
        return _read_tags_tsv(spec, dataset, path, split, language)
    raise InputError(
        f"{path}: {dataset} files are .jsonl, .json (JSON lines or one JSON list) or .csv (Cosmos QA's "
        f"originals), or JSON lines under another name (LogiQA 2.0's .txt); this {suffix or 'no suffix'} "
        "file holds neither"
    )
