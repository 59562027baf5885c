"""Pair, multiple-choice and tagging datasets from real sources: an XTREME download folder, Hugging Face parquet in the
hub repos' layouts, prepared TFDS data, plain files.

The XTREME fixture (tests/fixtures/tasks/xtreme) was written the way utils_preprocess.py writes its files (csv.writer
TSV with quoting and CRLF line ends, tag files without a trailing blank line, labelless test files, XCOPA test labels
set to 0). Hub folders and TFDS data are generated into tmp paths from small Python data; nothing touches the network.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stilts_jax.core.errors import InputError
from stilts_jax.data import task_sources
from stilts_jax.data.examples import ChoiceExample, PairExample, TaggedSentence
from stilts_jax.data.task_sources import TaskDataError, labels, load_examples

XTREME = Path(__file__).parent / "fixtures" / "tasks" / "xtreme"
SOURCE = {"kind": "xtreme", "path": str(XTREME)}
SCRIPTS = {
    "ar": (0x600, 0x6FF),
    "zh": (0x4E00, 0x9FFF),
    "hi": (0x900, 0x97F),
    "ru": (0x400, 0x4FF),
    "ja": (0x3040, 0x9FFF),
    "ko": (0xAC00, 0xD7AF),
    "ta": (0xB80, 0xBFF),
    "th": (0xE00, 0xE7F),
}


def in_script(text: str, lang: str) -> bool:
    low, high = SCRIPTS[lang]
    return any(low <= ord(c) <= high for c in text)


def counts(by_language) -> dict[str, int]:
    return {lang: len(examples) for lang, examples in by_language.items()}


def write_parquet(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def hf_source(folder: Path, **extra) -> dict:
    return {"kind": "hf", "repo": str(folder), **extra}


# --- the XTREME download folder: formats and traps ---------------------------------------------------------------


def test_xtreme_xnli_dev_train_and_labelless_test():
    dev = load_examples("xnli", "dev", SOURCE, languages=["ar", "zh", "hi", "en"])
    assert list(dev) == ["ar", "zh", "hi", "en"] and counts(dev) == {"ar": 3, "zh": 1, "hi": 1, "en": 2}
    for lang in ("ar", "zh", "hi"):
        assert all(in_script(ex.text_a + ex.text_b, lang) for ex in dev[lang])
    assert [labels("xnli")[ex.label] for ex in dev["ar"]] == ["contradiction", "entailment", "neutral"]
    assert dev["ar"][0] == PairExample(
        id="dev-ar-0", text_a="وقال، ماما، لقد عدت للمنزل.", text_b="لم ينطق ببنت شفة.", label=2, language="ar"
    )
    # Training is MNLI English whatever languages asks. The file's csv.writer quoting stays as XTREME's reader
    # (transformers' DataProcessor._read_tsv, quotechar=None) leaves it: the characters as written.
    train = load_examples("xnli", "train", SOURCE, languages=["ar", "de"])
    assert counts(train) == {"en": 3}
    assert train["en"][1].text_a == '"""Yes,"" he said, ""we\'ll leave at dawn."""'
    assert [ex.label for ex in train["en"]] == [1, 0, 2]
    # Test files carry no label column: label None, and an error for callers that need labels.
    test = load_examples("xnli", "test", SOURCE, languages=["en", "ar"])
    assert counts(test) == {"en": 2, "ar": 1} and all(ex.label is None for v in test.values() for ex in v)
    with pytest.raises(InputError) as err:
        load_examples("xnli", "test", SOURCE, languages=["ar"], require_labels=True)
    message = str(err.value)
    assert "carry no labels" in message and "utils_preprocess.py" in message
    assert "evaluate against a labelled source" in message and "facebook/xnli" in message


def test_xtreme_mnli_and_paws_train_are_the_xtreme_english_training_files():
    assert load_examples("mnli", "train", SOURCE) == load_examples("xnli", "train", SOURCE)
    pawsx_train = load_examples("pawsx", "train", SOURCE)
    assert load_examples("paws", "train", SOURCE) == pawsx_train
    assert counts(pawsx_train) == {"en": 3} and [ex.label for ex in pawsx_train["en"]] == [1, 1, 0]
    with pytest.raises(InputError, match="XTREME download has no mnli dev data; use a source of kind hf or tfds"):
        load_examples("mnli", "dev", SOURCE)


def test_xtreme_pawsx():
    dev = load_examples("pawsx", "dev", SOURCE, languages=["ja", "ko", "en"])
    assert counts(dev) == {"ja": 2, "ko": 1, "en": 1}
    assert in_script(dev["ja"][0].text_a, "ja") and in_script(dev["ko"][0].text_b, "ko")
    assert [labels("pawsx")[ex.label] for ex in dev["ja"]] == ["1", "0"]
    test = load_examples("pawsx", "test", SOURCE, languages=["de"])
    assert test["de"][0].label is None and test["de"][0].text_b.startswith("Es ist der Sitz")


def test_xtreme_udpos():
    train = load_examples("udpos", "train", SOURCE, languages=["ru"])  # UD English, whatever is asked
    assert counts(train) == {"en": 2}
    assert train["en"][1] == TaggedSentence(
        id="train-en-1",
        tokens=("What", "if", "Google", "expanded", "?"),
        tags=("PRON", "SCONJ", "PROPN", "VERB", "PUNCT"),
        language="en",
    )
    dev = load_examples("udpos", "dev", SOURCE, languages=["ru", "hi"])
    assert counts(dev) == {"ru": 2, "hi": 1}
    assert dev["ru"][0].tokens == ("Мама", "мыла", "раму", ".")
    assert dev["ru"][0].tags == ("NOUN", "VERB", "NOUN", "PUNCT")
    assert all(set(s.tags) <= set(labels("udpos")) for v in dev.values() for s in v)
    test = load_examples("udpos", "test", SOURCE, languages=["ta", "th"])
    assert [s.tokens for s in test["ta"]] == [("அவன்", "வீட்டுக்குப்", "போனான்"), ("நன்றி",)]
    assert all(s.tags is None for v in test.values() for s in v) and in_script(test["th"][0].tokens[0], "th")
    with pytest.raises(InputError, match=r"udpos has no dev data for language\(s\) th .*treebanks"):
        load_examples("udpos", "dev", SOURCE, languages=["th"])
    assert len(labels("udpos")) == 17 and "PROPN" in labels("udpos")


def test_xtreme_panx():
    dev = load_examples("panx", "dev", SOURCE, languages=["ar", "zh", "en"])
    assert counts(dev) == {"ar": 2, "zh": 1, "en": 1}
    assert dev["ar"][1].tokens == ("نجيب", "محفوظ", "كاتب") and dev["ar"][1].tags == ("B-PER", "I-PER", "O")
    train = load_examples("panx", "train", SOURCE)
    assert train["en"][0].tags == ("B-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-LOC", "O")
    test = load_examples("panx", "test", SOURCE, languages=["ja"])
    assert [s.tokens for s in test["ja"]] == [("東京", "都"), ("夏目", "漱石")] and test["ja"][0].tags is None
    with pytest.raises(InputError, match="carry no labels"):
        load_examples("panx", "test", SOURCE, languages=["ja"], require_labels=True)
    assert labels("panx") == ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")


def test_xtreme_xcopa_copa_and_zeroed_test_labels(tmp_path):
    dev = load_examples("xcopa", "dev", SOURCE, languages=["et", "zh", "ta"])
    assert counts(dev) == {"et": 2, "zh": 1, "ta": 1}
    zh = dev["zh"][0]
    # XCOPA in XTREME-R's wording (run_xcopa.py: f"{premise} What was the {question}?").
    assert zh == ChoiceExample(
        id="1",
        prompt="这个男人打开了水龙头。 What was the effect?",
        choices=("马桶里装满了水。", "水从龙头里流出来。"),
        label=1,
        language="zh",
    )
    assert in_script(dev["ta"][0].prompt, "ta")
    train = load_examples("xcopa", "train", SOURCE, languages=["et"])  # COPA English (xcopa/train-en.jsonl)
    assert (
        counts(train) == {"en": 3}
        and train["en"][0].prompt == "My body cast a shadow over the grass. What was the cause?"
    )
    # The intermediate COPA reads the same file in jiant's wording (jiant/tasks/lib/copa.py:41-44).
    copa = load_examples("copa", "train", SOURCE)
    assert copa["en"][0].prompt == "My body cast a shadow over the grass. What was the cause of this?"
    assert [task_sources.records.as_xcopa_example(ex) for ex in copa["en"]] == train["en"]
    assert load_examples("copa", "dev", SOURCE)["en"][0].label == 1
    # utils_preprocess.py sets every test label to 0: they are no labels.
    test = load_examples("xcopa", "test", SOURCE, languages=["zh"])
    assert [ex.label for ex in test["zh"]] == [None, None]
    assert load_examples("copa", "test", SOURCE)["en"][0].label is None
    with pytest.raises(InputError, match="sets every XCOPA test label to 0"):
        load_examples("xcopa", "test", SOURCE, languages=["zh"], require_labels=True)
    # Older download scripts kept the XCOPA names (test.zh.jsonl) and labels.
    (tmp_path / "xcopa").mkdir()
    record = {
        "premise": "我清空了口袋。",
        "choice1": "我取回了一张票根。",
        "choice2": "我找到了一件武器。",
        "question": "effect",
        "label": 0,
        "idx": 2,
        "changed": False,
    }
    (tmp_path / "xcopa" / "test.zh.jsonl").write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    old = load_examples("xcopa", "test", {"kind": "xtreme", "path": str(tmp_path)}, languages=["zh"])
    assert old["zh"][0].label == 0 and old["zh"][0].prompt == "我清空了口袋。 What was the effect?"
    # English is no XCOPA language; asked for, it is COPA's (model selection on the English dev set).
    mixed = load_examples("xcopa", "dev", SOURCE, languages=["zh", "en"])
    assert list(mixed) == ["zh", "en"] and mixed["en"] == load_examples("copa", "dev", SOURCE)["en"]
    assert "en" not in load_examples("xcopa", "dev", {"kind": "xtreme", "path": str(XTREME)}, ["et", "zh", "ta"])
    with pytest.raises(InputError, match="xcopa has no data for language"):
        load_examples("xcopa", "dev", SOURCE, languages=["de"])


def test_xtreme_siqa():
    train = load_examples("siqa", "train", SOURCE)
    assert [ex.label for ex in train["en"]] == [0, 1]
    dev = load_examples("siqa", "dev", SOURCE)["en"][0]
    assert dev.label == 2 and dev.choices == ("make a new plan", "Go home and see Riley", "Find somewhere to go")
    assert dev.prompt == (
        "Tracy didn't go home that evening and resisted Riley's attacks. What does Tracy need to do before this?"
    ) and labels("siqa") == ("A", "B", "C")


def test_missing_xtreme_data_says_where_and_how(tmp_path):
    with pytest.raises(InputError) as err:
        load_examples("xnli", "dev", {"kind": "xtreme", "path": str(tmp_path)}, languages=["de"])
    message = str(err.value)
    assert str(tmp_path / "xnli" / "dev-de.tsv") in message and "bash scripts/download_data.sh" in message
    with pytest.raises(InputError, match="AmazonPhotos.zip"):
        load_examples("panx", "dev", {"kind": "xtreme", "path": str(tmp_path)}, languages=["de"])
    with pytest.raises(InputError, match="does not exist"):
        load_examples("udpos", "dev", {"kind": "xtreme", "path": str(tmp_path / "nowhere")}, languages=["en"])
    with pytest.raises(InputError, match=r"XTREME download has no hellaswag train data; use a source of kind hf or "):
        load_examples("hellaswag", "train", SOURCE)
    with pytest.raises(InputError, match=r"xnli/dev-bg.tsv is missing"):
        load_examples("xnli", "dev", SOURCE)  # every language is asked for; the fixture has four


# --- malformed files name the file and line ----------------------------------------------------------------------


def test_bad_pair_files_name_the_file_and_line(tmp_path):
    path = tmp_path / "dev-de.tsv"
    path.write_text("Ein Satz.\tNoch einer.\tentailment\nZwei.\tDrei.\tmaybe\n", encoding="utf-8")
    with pytest.raises(TaskDataError) as err:
        load_examples("xnli", "dev", {"kind": "files", "paths": {"dev": {"de": str(path)}}}, languages=["de"])
    assert f"{path} line 2" in str(err.value) and "unknown label 'maybe'" in str(err.value)
    path.write_text("Ein Satz.\tNoch einer.\tentailment\nnur eine Spalte\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match=r"line 2: expected 3 tab-separated columns .* got 1"):
        load_examples("xnli", "dev", {"kind": "files", "paths": {"dev": {"de": str(path)}}}, languages=["de"])
    path.write_text("Ein Satz.\tNoch einer.\tentailment\nZwei.\tDrei.\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match=r"line 2: 2 columns, but line 1 has 3"):
        load_examples("xnli", "dev", {"kind": "files", "paths": {"dev": {"de": str(path)}}}, languages=["de"])


def test_pair_tsv_is_plain_tab_separated_text_as_xtremes_reader_reads_it(tmp_path):
    # XTREME reads XNLI/PAWS-X with transformers' DataProcessor._read_tsv (csv.reader, quotechar=None, utf-8-sig):
    # a quote is an ordinary character, every line is one example, a byte-order mark is dropped.
    path = tmp_path / "dev-en.tsv"
    path.write_bytes(
        '\ufeff"Hello," she said.\tShe spoke.\tentailment\r\n'
        '"Unclosed quote\tstarts a field.\tneutral\r\n'
        "Third line\u2028with a line separator\x85inside.\tA form\x0cfeed.\tcontradiction\r\n".encode("utf-8")
    )
    source = {"kind": "files", "paths": {"dev": {"en": str(path)}}}
    examples = load_examples("xnli", "dev", source, languages=["en"])["en"]
    assert [(ex.text_a, ex.text_b, labels("xnli")[ex.label]) for ex in examples] == [
        ('"Hello," she said.', "She spoke.", "entailment"),
        ('"Unclosed quote', "starts a field.", "neutral"),
        ("Third line\u2028with a line separator\x85inside.", "A form\x0cfeed.", "contradiction"),
    ]


def test_data_files_that_are_not_utf8_name_the_file_and_line(tmp_path):
    files = {
        "xnli": ("dev-de.tsv", "Ein Satz.\tNoch einer.\tentailment\nGr\u00fc\u00dfe.\tHallo.\tneutral\n", "dev", 2),
        "panx": ("dev-de.tsv", "Berlin\tB-LOC\n\nM\u00fcnchen\tB-LOC\n", "dev", 3),
        "qqp": (
            "train.tsv",
            "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n7\t1\t2\tWhy caf\u00e9?\tIs it?\t1\n",
            "train",
            2,
        ),
        "cosmosqa": (
            "train.csv",
            "id,context,question,answer0,answer1,answer2,answer3,label\nx,caf\u00e9,q,a,b,c,d,0\n",
            "train",
            2,
        ),
        "ccg": ("ccg.train", "The dog\tNP/N N\nA caf\u00e9\tNP/N N\n", "train", 2),
    }
    for dataset, (name, text, split, line) in files.items():
        path = tmp_path / dataset / name
        path.parent.mkdir()
        path.write_bytes(text.encode("latin-1"))
        paths = {split: {"de": str(path)}} if dataset in ("xnli", "panx") else {split: str(path)}
        with pytest.raises(TaskDataError, match=rf"{re.escape(str(path))} line {line}: not UTF-8 text"):
            load_examples(
                dataset,
                split,
                {"kind": "files", "paths": paths},
                languages=["de"] if dataset in ("xnli", "panx") else None,
            )


def test_bad_tag_files_name_the_file_and_line(tmp_path):
    folder = tmp_path / "panx"
    folder.mkdir()
    source = {"kind": "xtreme", "path": str(tmp_path)}
    (folder / "dev-de.tsv").write_text("Berlin\tB-LOC\nist\tO\n\ngroß\n", encoding="utf-8")
    with pytest.raises(TaskDataError) as err:
        load_examples("panx", "dev", source, languages=["de"])
    assert f"{folder / 'dev-de.tsv'} line 4" in str(err.value) and "'groß' without a tag" in str(err.value)
    (folder / "dev-de.tsv").write_text("Berlin\tB-LOC\nist\tB-CITY\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match=r"dev-de.tsv line 2: unknown tag 'B-CITY'"):
        load_examples("panx", "dev", source, languages=["de"])
    (folder / "dev-de.tsv").write_text("Berlin\tB-LOC\textra\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match=r"line 1: expected token<TAB>tag, got 3"):
        load_examples("panx", "dev", source, languages=["de"])


def test_bad_jsonl_records_name_the_file_and_line(tmp_path):
    (tmp_path / "xcopa").mkdir()
    good = {"premise": "p", "choice1": "a", "choice2": "b", "question": "cause", "label": 0, "idx": 1}
    lines = [json.dumps(good), json.dumps({**good, "question": "reason"})]
    (tmp_path / "xcopa" / "val-et.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    source = {"kind": "xtreme", "path": str(tmp_path)}
    with pytest.raises(TaskDataError, match=r"val-et.jsonl line 2: question 'reason' is neither 'cause' nor 'effect'"):
        load_examples("xcopa", "dev", source, languages=["et"])
    (tmp_path / "xcopa" / "val-et.jsonl").write_text(lines[0] + "\n{not json\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match=r"val-et.jsonl line 2: not a JSON record"):
        load_examples("xcopa", "dev", source, languages=["et"])
    (tmp_path / "xcopa" / "val-et.jsonl").write_text(json.dumps({**good, "label": 2}) + "\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match=r"line 1: label 2 is out of range"):
        load_examples("xcopa", "dev", source, languages=["et"])


# --- Hugging Face parquet in the hub layouts ---------------------------------------------------------------------


def xtreme_pairs(lang: str, split: str = "dev") -> list[dict]:
    return [
        {"premise": ex.text_a, "hypothesis": ex.text_b, "label": ex.label}
        for ex in load_examples("xnli", split, SOURCE, languages=[lang])[lang if split != "train" else "en"]
    ]


def test_hf_xnli_matches_xtreme(tmp_path):
    repo = tmp_path / "facebook_xnli"  # one config per language, ClassLabel ints
    for lang in ("ar", "en"):
        write_parquet(repo / lang / "validation-00000-of-00001.parquet", xtreme_pairs(lang))
    write_parquet(repo / "en" / "train-00000-of-00001.parquet", xtreme_pairs("en", "train"))
    write_parquet(
        repo / "ar" / "test-00000-of-00001.parquet",
        [{"premise": "حسنا", "hypothesis": "لم أتحدث معه مرة أخرى.", "label": 1}],
    )
    dev = load_examples("xnli", "dev", hf_source(repo), languages=["ar", "en"])
    assert dev == load_examples("xnli", "dev", SOURCE, languages=["ar", "en"])
    assert load_examples("xnli", "train", hf_source(repo)) == load_examples("xnli", "train", SOURCE)
    assert load_examples("xnli", "test", hf_source(repo), languages=["ar"], require_labels=True)["ar"][0].label == 1
    with pytest.raises(InputError, match=r"no parquet files for this split.*de/validation-\*\.parquet"):
        load_examples("xnli", "dev", hf_source(repo), languages=["de"])
    # google/xtreme's XNLI: one config, a language column, label names.
    rows = [
        {"language": lang, "sentence1": ex.text_a, "sentence2": ex.text_b, "gold_label": labels("xnli")[ex.label]}
        for lang in ("en", "ar", "zh")
        for ex in load_examples("xnli", "dev", SOURCE, languages=[lang])[lang]
    ]
    write_parquet(tmp_path / "google_xtreme" / "XNLI" / "validation-00000-of-00001.parquet", rows)
    xtreme_hub = load_examples(
        "xnli", "dev", hf_source(tmp_path / "google_xtreme", config="XNLI"), languages=["zh", "ar"]
    )
    assert list(xtreme_hub) == ["zh", "ar"]
    from_files = load_examples("xnli", "dev", SOURCE, languages=["zh", "ar"])
    for lang in ("zh", "ar"):
        assert [(e.text_a, e.text_b, e.label) for e in xtreme_hub[lang]] == [
            (e.text_a, e.text_b, e.label) for e in from_files[lang]
        ]


def test_hf_hellaswag_refs_convert_parquet_layout(tmp_path):
    repo = tmp_path / "Rowan_hellaswag"
    row = {
        "ind": 4,
        "activity_label": "Removing ice from car",
        "ctx_a": "Then, the man writes over the snow covering "
        "the window of a car, and a woman wearing winter clothes smiles.",
        "ctx_b": "then",
        "ctx": "...",
        "endings": [
            ", the man adds wax to the windshield and cuts it.",
            ", a person board a ski "
            "lift, while two men supporting the head of the person wearing winter clothes snow as the we girls sled.",
            ", the man puts on a christmas coat, knitted with netting.",
            ", the man continues removing the snow on his car.",
        ],
        "source_id": "activitynet~v_-1IBHYS3L-Y",
        "split": "val",
        "split_type": "zeroshot",
        "label": "3",
    }
    write_parquet(repo / "default" / "validation" / "0000.parquet", [row, {**row, "ind": 5, "ctx_b": "", "label": "0"}])
    write_parquet(repo / "default" / "test" / "0000.parquet", [{**row, "label": ""}])
    dev = load_examples("hellaswag", "dev", hf_source(repo))["en"]
    # jiant's HellaSwag pair: prompt ctx_a, choices ctx_b + " " + ending (a leading space where ctx_b is empty).
    assert (
        dev[0].prompt == row["ctx_a"] and dev[0].choices[0] == "then , the man adds wax to the windshield and cuts it."
    )
    assert len(dev[0].choices) == 4 and dev[0].label == 3 and dev[0].id == "4"
    assert dev[1].prompt == row["ctx_a"] and dev[1].choices[3] == " , the man continues removing the snow on his car."
    assert dev[1].label == 0
    assert load_examples("hellaswag", "test", hf_source(repo))["en"][0].label is None
    with pytest.raises(InputError, match="carry no labels"):
        load_examples("hellaswag", "test", hf_source(repo), require_labels=True)


def test_hf_commonsenseqa(tmp_path):
    repo = tmp_path / "tau_commonsense_qa"
    choices = {"label": ["A", "B", "C", "D", "E"], "text": ["ignore", "enforce", "authoritarian", "yell at", "avoid"]}
    row = {
        "id": "075e483d21c29a511267ef62bedc0461",
        "question": "The sanctions against the school were a punishing "
        "blow, and they seemed to what the efforts the school had made to change?",
        "question_concept": "punishing",
        "choices": choices,
        "answerKey": "A",
    }
    write_parquet(repo / "data" / "train-00000-of-00001.parquet", [row, {**row, "id": "x2", "answerKey": "D"}])
    write_parquet(repo / "data" / "test-00000-of-00001.parquet", [{**row, "answerKey": ""}])
    train = load_examples("commonsenseqa", "train", hf_source(repo))["en"]
    assert [ex.label for ex in train] == [0, 3] and train[0].choices == tuple(choices["text"])
    assert train[0].prompt == row["question"] and train[0].id == "075e483d21c29a511267ef62bedc0461"
    assert load_examples("commonsenseqa", "test", hf_source(repo))["en"][0].label is None
    write_parquet(repo / "data" / "validation-00000-of-00001.parquet", [{**row, "answerKey": "F"}])
    with pytest.raises(TaskDataError, match=r"row 0: answerKey 'F' is none of the choices' labels"):
        load_examples("commonsenseqa", "dev", hf_source(repo))


def test_hf_siqa_labels_one_to_three(tmp_path):
    repo = tmp_path / "allenai_social_i_qa"
    row = {
        "context": "Cameron decided to have a barbecue and gathered her friends together.",
        "question": "How would Others feel as a result?",
        "answerA": "like attending",
        "answerB": "like staying home",
        "answerC": "a good friend to have",
        "label": "1",
    }
    write_parquet(repo / "default" / "train" / "0000.parquet", [row, {**row, "label": "3"}, {**row, "label": "2"}])
    train = load_examples("siqa", "train", hf_source(repo))["en"]
    assert [ex.label for ex in train] == [0, 2, 1] and train[0].choices[0] == "like attending"
    xtreme_first = load_examples("siqa", "train", SOURCE)["en"][0]
    assert train[0].prompt == f"{row['context']} {row['question']}"
    assert (train[0].prompt, train[0].choices, train[0].label) == (
        xtreme_first.prompt,
        xtreme_first.choices,
        xtreme_first.label,
    )


def test_hf_wikiann_matches_xtreme_panx(tmp_path):
    repo = tmp_path / "unimelb-nlp_wikiann"  # the parquet export: {lang}/{split}/0000.parquet, ClassLabel ints
    tag_index = {tag: i for i, tag in enumerate(labels("panx"))}
    for lang in ("ar", "zh"):
        sentences = load_examples("panx", "dev", SOURCE, languages=[lang])[lang]
        write_parquet(
            repo / lang / "validation" / "0000.parquet",
            [
                {
                    "tokens": list(s.tokens),
                    "ner_tags": [tag_index[t] for t in s.tags],
                    "langs": [lang] * len(s.tokens),
                    "spans": [],
                }
                for s in sentences
            ],
        )
    assert load_examples("panx", "dev", hf_source(repo), languages=["zh", "ar"]) == load_examples(
        "panx", "dev", SOURCE, languages=["zh", "ar"]
    )
    write_parquet(repo / "de" / "validation" / "0000.parquet", [{"tokens": ["Berlin"], "ner_tags": [9]}])
    with pytest.raises(TaskDataError, match=r"row 0: label 9 is out of range for panx's 7 labels"):
        load_examples("panx", "dev", hf_source(repo), languages=["de"])


def test_hf_coverage_and_offline_errors(tmp_path):
    with pytest.raises(InputError, match=r"google/xtreme has no udpos data for language\(s\) lt.*XTREME download"):
        load_examples("udpos", "dev", {"kind": "hf"}, languages=["lt"])
    with pytest.raises(InputError) as err:
        load_examples("hellaswag", "dev", {"kind": "hf", "cache_dir": str(tmp_path)})
    message = str(err.value)
    assert "Rowan/hellaswag" in message and "refs/convert/parquet" in message and "local folder" in message
    with pytest.raises(InputError, match="does not exist"):
        load_examples("copa", "dev", {"kind": "hf", "repo": str(tmp_path / "missing")})
    with pytest.raises(InputError, match="'revision' applies to hub repos"):
        load_examples("copa", "dev", {"kind": "hf", "repo": str(tmp_path), "revision": "main"})


def test_anli_plus_combines_anli_mnli_snli(tmp_path):
    anli, glue, snli = tmp_path / "facebook_anli", tmp_path / "nyu-mll_glue", tmp_path / "stanfordnlp_snli"
    for r in (1, 2, 3):
        write_parquet(
            anli / "plain_text" / f"train_r{r}-00000-of-00001.parquet",
            [
                {
                    "uid": f"r{r}-0",
                    "premise": f"Round {r} premise.",
                    "hypothesis": "A claim.",
                    "label": r - 1,
                    "reason": "",
                }
            ],
        )
        write_parquet(
            anli / "plain_text" / f"dev_r{r}-00000-of-00001.parquet",
            [{"uid": f"d{r}", "premise": "P.", "hypothesis": "H.", "label": 0, "reason": ""}],
        )
    write_parquet(
        glue / "mnli" / "train-00000-of-00001.parquet", [{"premise": "P.", "hypothesis": "H.", "label": 1, "idx": 0}]
    )
    write_parquet(
        snli / "plain_text" / "train-00000-of-00001.parquet",
        [
            {"premise": "A man.", "hypothesis": "A person.", "label": 0},
            {"premise": "A dog.", "hypothesis": "No consensus.", "label": -1},
        ],
    )
    parts = {"anli": hf_source(anli), "mnli": hf_source(glue), "snli": hf_source(snli)}
    train = load_examples("anli_plus", "train", parts)["en"]
    assert [ex.id for ex in train] == ["anli/r1-0", "anli/r2-0", "anli/r3-0", "mnli/0", "snli/train-en-0"]
    assert [ex.label for ex in train] == [0, 1, 2, 1, 0]  # SNLI's -1 (no gold label) is dropped
    assert [ex.id for ex in load_examples("anli_plus", "dev", {"anli": hf_source(anli)})["en"]] == [
        "anli/d1",
        "anli/d2",
        "anli/d3",
    ]
    with pytest.raises(InputError, match="give one source per part"):
        load_examples("anli_plus", "train", hf_source(anli))
    with pytest.raises(InputError, match=r"needs a source for part\(s\) snli"):
        load_examples("anli_plus", "train", {"anli": hf_source(anli), "mnli": hf_source(glue)})


# --- plain files: original releases ------------------------------------------------------------------------------


def test_files_original_releases(tmp_path):
    # Social IQa's socialiqa-train-dev.zip: dev.jsonl with its labels (1-3) in dev-labels.lst.
    records = [{"context": "c", "question": "q", "answerA": "a", "answerB": "b", "answerC": "c"}] * 3
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    (tmp_path / "dev-labels.lst").write_text("2\n3\n1\n", encoding="utf-8")
    siqa = load_examples("siqa", "dev", {"kind": "files", "paths": {"dev": str(tmp_path / "dev.jsonl")}})
    assert [ex.label for ex in siqa["en"]] == [1, 2, 0]
    # HellaSwag's hellaswag_val.jsonl: integer labels.
    row = {
        "ind": 24,
        "ctx_a": "A man is sitting on a roof.",
        "ctx_b": "he",
        "endings": ["a", "b", "c", "d"],
        "label": 3,
        "activity_label": "Roof shingle removal",
        "split": "val",
        "split_type": "indomain",
    }
    (tmp_path / "hellaswag_val.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    hs = load_examples("hellaswag", "dev", {"kind": "files", "paths": {"dev": str(tmp_path / "hellaswag_val.jsonl")}})
    assert hs["en"][0].prompt == "A man is sitting on a roof." and hs["en"][0].choices == (
        "he a",
        "he b",
        "he c",
        "he d",
    )
    assert hs["en"][0].label == 3
    # ANLI's R1/dev.jsonl: context, hypothesis, label e/n/c.
    anli = {"uid": "u1", "context": "Ernest Jones is a British jeweller.", "hypothesis": "He is French.", "label": "c"}
    (tmp_path / "anli.jsonl").write_text(json.dumps(anli) + "\n", encoding="utf-8")
    assert load_examples("anli", "dev", {"kind": "files", "paths": {"dev": str(tmp_path / "anli.jsonl")}})["en"] == [
        PairExample(
            id="u1", text_a="Ernest Jones is a British jeweller.", text_b="He is French.", label=2, language="en"
        )
    ]
    # CommonsenseQA's dev_rand_split.jsonl: nested question.
    csqa = {
        "answerKey": "B",
        "id": "q1",
        "question": {
            "question_concept": "x",
            "stem": "Where?",
            "choices": [{"label": k, "text": k.lower()} for k in "ABCDE"],
        },
    }
    (tmp_path / "csqa.jsonl").write_text(json.dumps(csqa) + "\n", encoding="utf-8")
    ex = load_examples("commonsenseqa", "dev", {"kind": "files", "paths": {"dev": str(tmp_path / "csqa.jsonl")}})
    ex = ex["en"][0]
    assert (ex.prompt, ex.choices, ex.label) == ("Where?", ("a", "b", "c", "d", "e"), 1)
    # Cosmos QA's valid.csv.
    (tmp_path / "valid.csv").write_text(
        'id,context,question,answer0,answer1,answer2,answer3,label\nc1,"Good night, she said.",Why?,w,x,y,z,2\n',
        encoding="utf-8",
    )
    cosmos = load_examples("cosmosqa", "dev", {"kind": "files", "paths": {"dev": str(tmp_path / "valid.csv")}})["en"][0]
    assert (
        cosmos.prompt == "Good night, she said. Why?" and cosmos.label == 2 and cosmos.choices == ("w", "x", "y", "z")
    )
    with pytest.raises(InputError, match=r"give 'files' dev paths as \{language: path\}"):
        load_examples("xnli", "dev", {"kind": "files", "paths": {"dev": str(tmp_path / "anli.jsonl")}})


def test_files_per_language_tag_files():
    paths = {"dev": {"ru": str(XTREME / "udpos" / "dev-ru.tsv")}, "train": str(XTREME / "udpos" / "train-en.tsv")}
    source = {"kind": "files", "paths": paths}
    assert load_examples("udpos", "dev", source, languages=["ru"]) == load_examples("udpos", "dev", SOURCE, ["ru"])
    assert load_examples("udpos", "train", source) == load_examples("udpos", "train", SOURCE)
    with pytest.raises(InputError, match=r"no udpos dev file for language\(s\) hi; available: ru"):
        load_examples("udpos", "dev", source, languages=["hi"])


# --- TFDS ----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def builder_generating(cls, split_generators):
    """The builder `cls` with `split_generators` instead of its download step (see tests/test_sources.py)."""
    saved = cls.__dict__.get("_split_generators")
    cls._split_generators = split_generators
    cls.code_path = None
    try:
        yield
    finally:
        del cls.code_path
        if saved is None:
            del cls._split_generators
        else:
            cls._split_generators = saved


TAMIL = {"tokens": ["அவன்", "போனான்"], "upos": ["PRON", "VERB"]}
TAGALOG = {"tokens": ["Kumain", "ako"], "upos": ["VERB", "PRON"]}


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """xtreme_pos as TFDS builds it: config xtreme_pos_ta holds the Tagalog treebank, xtreme_pos_tl the Tamil one.
    And xnli, built by its own record generator from a file in XNLI-1.0's xnli.dev.tsv format (each pair in all 15
    languages)."""
    from tensorflow_datasets.datasets.xtreme_pos import xtreme_pos_dataset_builder as pos
    from tensorflow_datasets.text import xnli

    assert pos._LANGS["ta"] == "Tagalog" and pos._LANGS["tl"] == "Tamil"  # the bug the loader undoes
    tmp = tmp_path_factory.mktemp("tfds")
    root = tmp / "data"
    for config, rows in (("xtreme_pos_ta", [TAGALOG]), ("xtreme_pos_tl", [TAMIL, TAMIL])):
        with builder_generating(pos.Builder, lambda self, dl, rows=rows: {"test": iter(list(enumerate(rows)))}):
            pos.Builder(config=config, data_dir=str(root), file_format="array_record").download_and_prepare()
    lines = ["language\tgold_label\tsentence1\tsentence2\tpromptID\tpairID"]
    for pair, label in (("1", "contradiction"), ("2", "entailment")):
        lines += [
            f"{lang}\t{label}\t{lang} premise {pair}\t{lang} hypothesis {pair}\t{pair}\t{pair}"
            for lang in task_sources.XNLI_LANGUAGES
        ]
    dev_tsv = tmp / "xnli.dev.tsv"
    dev_tsv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with builder_generating(xnli.Xnli, lambda self, dl: {"validation": self._generate_examples(str(dev_tsv))}):
        xnli.Xnli(data_dir=str(root), file_format="array_record").download_and_prepare()
    return root


def test_tfds_xtreme_pos_ta_tl_swap_undone(tfds_dir):
    test = load_examples(
        "udpos", "test", {"kind": "tfds", "data_dir": str(tfds_dir)}, languages=["ta", "tl"], require_labels=True
    )
    assert counts(test) == {"ta": 2, "tl": 1}
    assert test["ta"][0].tokens == tuple(TAMIL["tokens"]) and test["ta"][0].tags == ("PRON", "VERB")
    assert test["tl"][0] == TaggedSentence(
        id="test-tl-0", tokens=("Kumain", "ako"), tags=("VERB", "PRON"), language="tl"
    )
    assert all(isinstance(t, str) for s in test["ta"] for t in s.tokens)


def test_tfds_xnli_gives_each_language_its_translation(tfds_dir):
    dev = load_examples("xnli", "dev", {"kind": "tfds", "data_dir": str(tfds_dir)}, languages=["zh", "ar"])
    assert counts(dev) == {"zh": 2, "ar": 2}
    assert sorted((ex.text_a, ex.text_b, labels("xnli")[ex.label]) for ex in dev["ar"]) == [
        ("ar premise 1", "ar hypothesis 1", "contradiction"),
        ("ar premise 2", "ar hypothesis 2", "entailment"),
    ]
    assert all(ex.language == "zh" and ex.text_b.startswith("zh hypothesis") for ex in dev["zh"])


def test_tfds_missing_dataset_says_how_to_build_it(tmp_path):
    with pytest.raises(InputError) as err:
        load_examples("udpos", "test", {"kind": "tfds", "data_dir": str(tmp_path)}, languages=["ta"])
    message = str(err.value)
    assert "tfds build xtreme_pos/xtreme_pos_tl" in message and str(tmp_path) in message and "array_record" in message
    with pytest.raises(InputError, match="tfds build multi_nli"):  # XNLI trains on MNLI
        load_examples("xnli", "train", {"kind": "tfds", "data_dir": str(tmp_path)})
    with pytest.raises(InputError, match="tfds build super_glue/copa"):  # XCOPA trains on COPA
        load_examples("xcopa", "train", {"kind": "tfds", "data_dir": str(tmp_path)})
    with pytest.raises(
        InputError,
        match=r"TFDS has no siqa train data known to this loader; use a source of kind "
        r"xtreme, hf or files",
    ):
        load_examples("siqa", "train", {"kind": "tfds", "data_dir": str(tmp_path)})


# --- configuration errors ------------------------------------------------------------------------------------


def test_configuration_errors_list_the_valid_choices():
    with pytest.raises(InputError, match="valid kinds: xtreme, hf, tfds, files"):
        load_examples("xnli", "dev", {"kind": "gcs"})
    with pytest.raises(InputError, match="unknown dataset 'boolq'; valid datasets: anli, anli_plus"):
        load_examples("boolq", "dev", SOURCE)
    with pytest.raises(InputError, match="valid splits: train, dev, test"):
        load_examples("xnli", "validation", SOURCE)
    with pytest.raises(InputError, match="mnli has no test split"):
        load_examples("mnli", "test", SOURCE)
    with pytest.raises(InputError, match="unknown key.*datadir.*valid keys: kind, data_dir, name"):
        load_examples("xnli", "dev", {"kind": "tfds", "datadir": "/tmp"})
    with pytest.raises(InputError, match=r"pawsx has no data for language\(s\) ar; available: de, en"):
        load_examples("pawsx", "dev", SOURCE, languages=["ar"])
    with pytest.raises(InputError, match="'kind'"):
        load_examples("xnli", "dev", {"path": str(XTREME)})
    with pytest.raises(InputError, match="unknown dataset"):
        labels("xquad")
    assert set(task_sources.DATASETS) >= {
        "xnli",
        "mnli",
        "pawsx",
        "paws",
        "qqp",
        "anli",
        "snli",
        "anli_plus",
        "xcopa",
        "copa",
        "siqa",
        "commonsenseqa",
        "cosmosqa",
        "hellaswag",
        "udpos",
        "panx",
    }
    assert len(task_sources.UDPOS_LANGUAGES) == 38 and len(task_sources.PANX_LANGUAGES) == 48
    assert len(task_sources.PANX_XTREME_LANGUAGES) == 40 and len(task_sources.XNLI_LANGUAGES) == 15


# --- committed intermediate-task fixtures in their original release formats ----------------------------------------

from tests.intermediate_sources import SOURCES as FIXTURE_SOURCES  # noqa: E402


@pytest.mark.parametrize(
    "dataset, train, dev, kind",
    [
        ("mnli", 24, 7, PairExample),
        ("snli", 24, 8, PairExample),
        ("anli", 24, 8, PairExample),
        ("anli_plus", 72, 8, PairExample),
        ("qqp", 24, 8, PairExample),
        ("paws", 24, 8, PairExample),
        ("commonsenseqa", 24, 8, ChoiceExample),
        ("cosmosqa", 24, 8, ChoiceExample),
        ("hellaswag", 24, 8, ChoiceExample),
        ("copa", 24, 8, ChoiceExample),
        ("ccg", 20, 6, TaggedSentence),
    ],
)
def test_intermediate_fixture_loads_in_its_release_format(dataset, train, dev, kind):
    loaded = {split: load_examples(dataset, split, FIXTURE_SOURCES[dataset])["en"] for split in ("train", "dev")}
    assert {split: len(v) for split, v in loaded.items()} == {"train": train, "dev": dev}
    assert all(isinstance(ex, kind) for v in loaded.values() for ex in v)
    if kind is TaggedSentence:
        return
    gold = [ex.label for v in loaded.values() for ex in v]
    assert None not in gold and len(set(gold)) > 1  # labelled, and not one class throughout


def test_intermediate_fixture_labels_follow_their_lexical_cues():
    nli = labels("mnli")
    for dataset in ("mnli", "snli", "anli"):
        for ex in load_examples(dataset, "train", FIXTURE_SOURCES[dataset])["en"]:
            cue = "contradiction" if " never " in ex.text_b else "neutral" if " because " in ex.text_b else "entailment"
            assert nli[ex.label] == cue, ex
    for ex in load_examples("qqp", "train", FIXTURE_SOURCES["qqp"])["en"]:
        assert labels("qqp")[ex.label] == (
            "duplicate" if ex.text_b.startswith("What is the best way") else "not_duplicate"
        )
    for ex in load_examples("paws", "train", FIXTURE_SOURCES["paws"])["en"]:
        assert ex.label == (0 if ex.text_b.startswith("Instead") else 1)
    for dataset in ("commonsenseqa", "cosmosqa", "hellaswag", "copa"):
        for ex in load_examples(dataset, "train", FIXTURE_SOURCES[dataset])["en"]:
            context_words = set(re.findall(r"\w+", ex.prompt)) - {"the", "a", "The", "A", "she"}
            overlaps = [len(context_words & set(re.findall(r"\w+", c))) for c in ex.choices]
            assert overlaps.index(max(overlaps)) == ex.label and overlaps.count(max(overlaps)) == 1, ex


def test_original_mnli_and_snli_drop_pairs_without_a_gold_label():
    raw = (Path(FIXTURE_SOURCES["mnli"]["paths"]["dev"])).read_text(encoding="utf-8").splitlines()
    assert sum('"gold_label": "-"' in line for line in raw) == 1 and len(raw) == 8
    assert len(load_examples("mnli", "dev", FIXTURE_SOURCES["mnli"])["en"]) == 7


def test_header_tsv_of_glue_qqp_and_paws_reads_by_column_name(tmp_path):
    path = tmp_path / "qqp.tsv"
    path.write_text(
        'id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n7\t1\t2\tWhy is "x" odd?\tIs "x" odd?\t1\n',
        encoding="utf-8",
    )
    [ex] = load_examples("qqp", "train", {"kind": "files", "paths": {"train": str(path)}})["en"]
    # Quotes stay as written (GLUE's tsv is not csv-quoted), and the label is the is_duplicate column.
    assert (ex.id, ex.text_a, ex.text_b, labels("qqp")[ex.label]) == (
        "7",
        'Why is "x" odd?',
        'Is "x" odd?',
        "duplicate",
    )
    path.write_text("id\tsentence1\tsentence2\tlabel\n1\ta b\tb a\t0\n2\tc d\td c\n", encoding="utf-8")
    with pytest.raises(
        TaskDataError, match=rf"{path} line 3: 3 tab-separated fields, but the header \(line 1\) names 4"
    ):
        load_examples("paws", "train", {"kind": "files", "paths": {"train": str(path)}})


@pytest.mark.parametrize(
    "dataset, name, text, line",
    [
        ("mnli", "m.jsonl", '{"sentence1": "a", "sentence2": "b", "gold_label": "neutral"}\n{"sentence1": "a"\n', 2),
        ("mnli", "m.jsonl", '{"sentence1": "a", "sentence2": "b", "gold_label": "maybe"}\n', 1),
        (
            "commonsenseqa",
            "c.jsonl",
            '{"answerKey": "F", "question": {"stem": "q", "choices": '
            '[{"label": "A", "text": "x"}, {"label": "B", "text": "y"}]}}\n',
            1,
        ),
        ("hellaswag", "h.jsonl", '{"ctx_a": "a", "ctx_b": "b", "label": 0}\n', 1),
        ("cosmosqa", "c.csv", "id,context,question,answer0,answer1,answer2,answer3,label\nx,c,q,a,b,c,d,0,extra\n", 2),
    ],
)
def test_malformed_intermediate_records_name_file_and_line(tmp_path, dataset, name, text, line):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TaskDataError, match=rf"{path} line {line}"):
        load_examples(dataset, "train", {"kind": "files", "paths": {"train": str(path)}})
