"""The offline demo's second English intermediate task: a small MNLI-format NLI set (`python tools/make_demo_data.py`).

Written as a local copy of the hub repo `nyu-mll/glue` (config `mnli`: `mnli/train-*.parquet`,
`mnli/validation_matched-*.parquet`, columns premise, hypothesis, label, idx), which the `mnli` task reads with a
source of kind `hf` whose `repo` is that folder. The XTREME download layout cannot serve it: it holds MNLI's train
split only (`xnli/train-en.tsv`) and no MNLI dev set to select the intermediate model on.

The rule is learnable and in the demo's spirit (years hidden in sentences). The premise is one to three number-free
English sentences, one of which gets a year. The hypothesis is
- entailment: the sentence with the year, exactly as in the premise;
- contradiction: the same sentence with another year;
- neutral: a sentence that is not in the premise, with the same year.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from stilts_jax.core.io_utils import read_lines
from stilts_jax.core.tokenization import SHIPPED_TEXT_DIR

LABELS = ("entailment", "neutral", "contradiction")  # GLUE's ClassLabel order: 0, 1, 2
_HAS_DIGIT = re.compile(r"\d")


def _english_sentences() -> list[str]:
    lines = read_lines(SHIPPED_TEXT_DIR / "parallel.en.txt")
    return [line for line in lines if line.strip() and not _HAS_DIGIT.search(line)]


def _with_year(sentence: str, year: int, rng: random.Random) -> str:
    words = sentence.split(" ")
    cut = rng.randint(1, max(1, len(words) - 1))
    return " ".join(words[:cut] + [str(year)] + words[cut:])


def nli_rows(count: int, seed: int, language: str = "en") -> list[dict[str, object]]:
    """`count` GLUE-MNLI rows (premise, hypothesis, label, idx), balanced over the three labels; in `language`,
    from the shipped parallel sentences (the same rule: digits look the same in every demo language)."""
    if language == "en":
        rng, sentences = random.Random(f"demo-nli-{seed}"), _english_sentences()
    else:
        from stilts_jax.demo.qa_data import _number_free_sentences

        rng, sentences = random.Random(f"demo-nli-{seed}-{language}"), _number_free_sentences(language)
    rows: list[dict[str, object]] = []
    for idx in range(count):
        label = idx % len(LABELS)
        chosen = rng.sample(sentences, rng.randint(1, 3) + 1)  # the fact, its companions, and an outside sentence
        fact, companions, outside = chosen[0], chosen[1:-1], chosen[-1]
        year = rng.randint(1000, 2099)
        fact_with_year = _with_year(fact, year, rng)
        premise_parts = list(companions)
        premise_parts.insert(rng.randint(0, len(companions)), fact_with_year)
        if LABELS[label] == "entailment":
            hypothesis = fact_with_year
        elif LABELS[label] == "contradiction":
            other = rng.choice([y for y in range(1000, 2100) if y != year])
            hypothesis = fact_with_year.replace(str(year), str(other), 1)
        else:
            hypothesis = _with_year(outside, year, rng)
        rows.append({"premise": " ".join(premise_parts), "hypothesis": hypothesis, "label": label, "idx": idx})
    rng.shuffle(rows)
    for idx, row in enumerate(rows):
        row["idx"] = idx
    return rows


def write_parquet(path: Path, rows: list[dict[str, object]]) -> Path:
    """One parquet file with GLUE-MNLI's schema (label int64, idx int32)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [("premise", pa.string()), ("hypothesis", pa.string()), ("label", pa.int64()), ("idx", pa.int32())]
    )
    table = pa.Table.from_pylist(rows, schema=schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def write_glue_mnli(root: Path, layout: dict[str, str]) -> list[Path]:
    """The MNLI train and matched dev files under `root` at the hub-layout paths `layout` names."""
    return [
        write_parquet(root / layout["mnli_train"], nli_rows(600, 5)),
        write_parquet(root / layout["mnli_dev"], nli_rows(90, 6)),
    ]


# XNLI languages among the shipped parallel sentences (google-research/xtreme evaluate.py TASK2LANGS["xnli"]).
XNLI_DEMO_LANGUAGES = ("ar", "de", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "zh")


def write_xnli(root: Path) -> list[Path]:
    """An XNLI-style target in the XTREME download layout: `xnli/train-en.tsv` (MNLI's role) and
    `xnli/dev-{lang}.tsv`, lines `sentence1 TAB sentence2 TAB label` of plain tab-separated text ending in CRLF, as
    utils_preprocess.py's csv.writer leaves XTREME's files (no demo sentence holds a quote, a tab or a line break)."""
    files = {"xnli/train-en.tsv": nli_rows(600, 7)}
    for lang in XNLI_DEMO_LANGUAGES:
        files[f"xnli/dev-{lang}.tsv"] = nli_rows(60, 8, lang)
    written = []
    for name, rows in files.items():
        lines = []
        for row in rows:
            fields = [str(row["premise"]), str(row["hypothesis"]), LABELS[int(row["label"])]]  # type: ignore[call-overload]
            if any(c in field for field in fields for c in '\t\r\n"'):
                raise ValueError(f"{name}: a demo sentence holds a quote, tab or line break: {fields}")
            lines.append("\t".join(fields) + "\r\n")
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(lines), encoding="utf-8", newline="")
        written.append(path)
    return written


def translated_nli_rows(count: int, seed: int, language: str) -> list[tuple[str, str, str, str, str]]:
    """`count` NLI pairs in English and their translation into `language`, built as `nli_rows` builds them from the
    line-aligned shipped parallel sentences (sentence i of one language translates sentence i of the other), the same
    year in both: (English premise, English hypothesis, translated premise, translated hypothesis, label)."""
    from stilts_jax.demo.qa_data import _NUMBER, _ascii_digits, _lines

    english, other = _lines("en"), [_ascii_digits(line) for line in _lines(language)]
    aligned = [
        i
        for i, (en, tr) in enumerate(zip(english, other))
        if en.strip() and tr.strip() and not _HAS_DIGIT.search(en) and not _NUMBER.search(tr)
    ]
    rng = random.Random(f"demo-translate-train-{seed}-{language}")
    rows = []
    for idx in range(count):
        label = LABELS[idx % len(LABELS)]
        chosen = rng.sample(aligned, rng.randint(1, 3) + 1)
        fact, companions, outside = chosen[0], chosen[1:-1], chosen[-1]
        year = rng.randint(1000, 2099)
        other_year = rng.choice([y for y in range(1000, 2100) if y != year])
        position = rng.randint(0, len(companions))
        pair = []
        for sentences in (english, other):
            fact_with_year = _with_year(sentences[fact], year, rng)
            parts = [sentences[i] for i in companions]
            parts.insert(position, fact_with_year)
            if label == "entailment":
                hypothesis = fact_with_year
            elif label == "contradiction":
                hypothesis = fact_with_year.replace(str(year), str(other_year), 1)
            else:
                hypothesis = _with_year(sentences[outside], year, rng)
            pair += [" ".join(parts), hypothesis]
        rows.append((pair[0], pair[1], pair[2], pair[3], label))
    return rows


def write_xnli_translate_train(root: Path, count: int = 60) -> list[Path]:
    """XTREME's translate-train files for the demo's XNLI languages, where google-research/xtreme's run_classify.py
    reads them in a download folder (third_party/processors/xnli.py: `xnli/XNLI-Translated/en-{lang}-translated.tsv`),
    in the rows of XTREME's translations (README "Translations": English pair, translated pair, label), tab-separated,
    CRLF line ends."""
    written = []
    for lang in XNLI_DEMO_LANGUAGES:
        if lang == "en":
            continue
        rows = translated_nli_rows(count, 9, lang)
        for fields in rows:
            if any(c in field for field in fields for c in '\t\r\n"'):
                raise ValueError(f"{lang}: a demo sentence holds a quote, tab or line break: {fields}")
        path = root / "xnli" / "XNLI-Translated" / f"en-{lang}-translated.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join("\t".join(fields) + "\r\n" for fields in rows), encoding="utf-8", newline="")
        written.append(path)
    return written
