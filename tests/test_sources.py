"""QA datasets from real sources: an XTREME download folder, Hugging Face parquet, prepared TFDS data, plain files.

All sources are built from the same fixture files (tests/fixtures/qa/xtreme), so every source must give the same
examples. The Hugging Face folders and the TFDS data are generated into tmp paths; nothing touches the network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stilts_jax.core.errors import InputError
from stilts_jax.data import qa
from stilts_jax.data.qa import Answer, QADataError
from stilts_jax.data.task_sources import load_qa

XTREME = Path(__file__).parent / "fixtures" / "qa" / "xtreme"
SQUAD_FILES = {"train": XTREME / "squad" / "train-v1.1.json", "dev": XTREME / "squad" / "dev-v1.1.json"}
TYDIQA_TRAIN = XTREME / "tydiqa" / "tydiqa-goldp-v1.1-train" / "tydiqa-goldp-v1.1-train.json"
TYDIQA_DEV_DIR = XTREME / "tydiqa" / "tydiqa-goldp-v1.1-dev"
TYDIQA_DEV_COUNTS = {"ar": 2, "bn": 1, "en": 2, "fi": 1, "id": 1, "ko": 2, "ru": 2, "sw": 1, "te": 1}
SCRIPTS = {
    "ar": (0x600, 0x6FF),
    "ru": (0x400, 0x4FF),
    "ko": (0xAC00, 0xD7AF),
    "bn": (0x980, 0x9FF),
    "te": (0xC00, 0xC7F),
}


def tydiqa_dev_file(lang: str) -> Path:
    return TYDIQA_DEV_DIR / f"tydiqa.goldp.{lang}.dev.json"


def assert_answers_in_context(by_language):
    for examples in by_language.values():
        for ex in examples:
            assert ex.answers
            for answer in ex.answers:
                assert answer.text and ex.context[answer.start : answer.start + len(answer.text)] == answer.text


def by_id(by_language):
    return {lang: sorted(examples, key=lambda ex: ex.id) for lang, examples in by_language.items()}


# --- Hugging Face parquet folders in the hub repos' layouts --------------------------------------------------


def squad_rows(*paths: Path) -> list[dict]:
    """Rows as the hub's parquet holds them: one per question, answers as a struct of lists."""
    rows = []
    for path in paths:
        for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
            for paragraph in article["paragraphs"]:
                for q in paragraph["qas"]:
                    rows.append(
                        {
                            "id": q["id"],
                            "title": article.get("title", ""),
                            "context": paragraph["context"],
                            "question": q["question"],
                            "answers": {
                                "text": [a["text"] for a in q["answers"]],
                                "answer_start": [a["answer_start"] for a in q["answers"]],
                            },
                        }
                    )
    return rows


def write_parquet(path: Path, rows: list[dict]) -> None:
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("title", pa.string()),
            ("context", pa.string()),
            ("question", pa.string()),
            ("answers", pa.struct([("text", pa.list_(pa.string())), ("answer_start", pa.list_(pa.int32()))])),
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


SQUAD_CARD = """---
configs:
- config_name: plain_text
  data_files:
  - split: train
    path: plain_text/train-*
  - split: validation
    path: plain_text/validation-*
  default: true
---
# SQuAD (test copy)
"""


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """rajpurkar/squad with its dataset card (datasets maps configs to files from it), and google/xtreme's
    tydiqa files alone, as `hf download google/xtreme --include "tydiqa/*"` leaves them (no card)."""
    root = tmp_path_factory.mktemp("hf")
    squad = root / "rajpurkar_squad"
    write_parquet(squad / "plain_text" / "train-00000-of-00001.parquet", squad_rows(SQUAD_FILES["train"]))
    write_parquet(squad / "plain_text" / "validation-00000-of-00001.parquet", squad_rows(SQUAD_FILES["dev"]))
    (squad / "README.md").write_text(SQUAD_CARD, encoding="utf-8")
    xtreme = root / "google_xtreme"
    write_parquet(xtreme / "tydiqa" / "train-00000-of-00001.parquet", squad_rows(TYDIQA_TRAIN))
    write_parquet(
        xtreme / "tydiqa" / "validation-00000-of-00001.parquet",
        squad_rows(*(tydiqa_dev_file(lang) for lang in TYDIQA_DEV_COUNTS)),
    )
    return {"squad": squad, "tydiqa": xtreme, "cache": root / "cache"}


def hf_source(hf_dirs, dataset: str) -> dict:
    return {"kind": "hf", "repo": str(hf_dirs[dataset]), "cache_dir": str(hf_dirs["cache"])}


# --- prepared TFDS data (ArrayRecord), built by the real builders from the fixture files ---------------------


@contextlib.contextmanager
def builder_reading(cls, files: dict[str, Path]):
    """The builder `cls` reading local files instead of downloading. tfds's own check for checksum files next to
    the builder code needs the `importlib_resources` package on Python 3.11; it does not matter here."""
    saved = cls.__dict__.get("_split_generators")

    def split_generators(self, dl_manager):
        return {split: self._generate_examples(str(path)) for split, path in files.items()}

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


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    from tensorflow_datasets.datasets.squad import squad_dataset_builder
    from tensorflow_datasets.question_answering import tydi_qa

    root = tmp_path_factory.mktemp("tfds")
    # tydi_qa's validation split is TyDiQA's single tydiqa-goldp-v1.1-dev.json, all languages together.
    dev = {"version": "1.1", "data": []}
    for lang in TYDIQA_DEV_COUNTS:
        dev["data"] += json.loads(tydiqa_dev_file(lang).read_text(encoding="utf-8"))["data"]
    dev_path = root / "tydiqa-goldp-v1.1-dev.json"
    dev_path.write_text(json.dumps(dev, ensure_ascii=False), encoding="utf-8")
    for cls, config, files in [
        (squad_dataset_builder.Builder, "v1.1", SQUAD_FILES),
        (tydi_qa.TydiQA, "goldp", {"train": TYDIQA_TRAIN, "validation": dev_path}),
    ]:
        files = {("validation" if split == "dev" else split): path for split, path in files.items()}
        with builder_reading(cls, files):
            cls(config=config, data_dir=str(root / "data"), file_format="array_record").download_and_prepare()
    return root / "data"


# --- the XTREME download folder -------------------------------------------------------------------------------


def test_xtreme_squad():
    train = load_qa("squad", "train", {"kind": "xtreme", "path": str(XTREME)})
    dev = load_qa("squad", "dev", {"kind": "xtreme", "path": str(XTREME)})
    assert {k: len(v) for k, v in train.items()} == {"en": 3}
    assert {k: len(v) for k, v in dev.items()} == {"en": 2}
    assert_answers_in_context(train)
    assert_answers_in_context(dev)
    first = dev["en"][0]
    assert first.title == "Lake_Baikal" and first.question == "How deep is Lake Baikal?"
    assert [a.text for a in first.answers] == ["1,642 metres", "reaching 1,642 metres", "1,642 metres"]


def test_xtreme_tydiqa_dev_reads_every_language():
    dev = load_qa("tydiqa", "dev", {"kind": "xtreme", "path": str(XTREME)})
    assert list(dev) == list(TYDIQA_DEV_COUNTS)
    assert {k: len(v) for k, v in dev.items()} == TYDIQA_DEV_COUNTS
    assert_answers_in_context(dev)
    names = {v: k for k, v in qa.TYDIQA_LANGUAGE_PREFIXES.items()}
    for lang, examples in dev.items():
        assert all(ex.language == lang and ex.id.startswith(names[lang] + "-") for ex in examples)
    for lang, (low, high) in SCRIPTS.items():  # non-Latin scripts come through intact
        for ex in dev[lang]:
            assert any(low <= ord(c) <= high for c in ex.question + ex.context + ex.answers[0].text), lang
    ar = dev["ar"][0]
    assert ar.answers[0].text == "نهر النيل" and ar.answers[0].start == 27


def test_xtreme_languages_only_reads_their_files(tmp_path):
    dev_dir = tmp_path / "tydiqa" / "tydiqa-goldp-v1.1-dev"
    dev_dir.mkdir(parents=True)
    for lang in ("ar", "ru", "ko"):
        shutil.copy(tydiqa_dev_file(lang), dev_dir)
    dev = load_qa("tydiqa", "dev", {"kind": "xtreme", "path": str(tmp_path)}, languages=["ko", "ar", "ru"])
    assert list(dev) == ["ko", "ar", "ru"] and [len(v) for v in dev.values()] == [2, 2, 2]
    with pytest.raises(InputError) as err:
        load_qa("tydiqa", "dev", {"kind": "xtreme", "path": str(tmp_path)}, languages=["te"])
    assert str(dev_dir / "tydiqa.goldp.te.dev.json") in str(err.value)


def test_missing_xtreme_file_names_the_path_and_the_script(tmp_path):
    shutil.copytree(XTREME / "squad", tmp_path / "squad")
    assert len(load_qa("squad", "dev", {"kind": "xtreme", "path": str(tmp_path)})["en"]) == 2
    with pytest.raises(InputError) as err:
        load_qa("tydiqa", "train", {"kind": "xtreme", "path": str(tmp_path)})
    message = str(err.value)
    assert str(tmp_path / "tydiqa" / "tydiqa-goldp-v1.1-train" / "tydiqa-goldp-v1.1-train.json") in message
    assert "bash scripts/download_data.sh" in message and "google-research/xtreme" in message
    with pytest.raises(InputError, match="does not exist"):
        load_qa("squad", "dev", {"kind": "xtreme", "path": str(tmp_path / "nowhere")})


def test_xtreme_dev_files_with_blanked_answers_are_refused(tmp_path):
    """Current XTREME versions replace every dev answer by {'answer_start': 0, 'text': ''}: not evaluable."""
    dev_dir = tmp_path / "tydiqa" / "tydiqa-goldp-v1.1-dev"
    dev_dir.mkdir(parents=True)
    data = json.loads(tydiqa_dev_file("ar").read_text(encoding="utf-8"))
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            for q in paragraph["qas"]:
                q["answers"] = [{"answer_start": 0, "text": ""}]
    (dev_dir / "tydiqa.goldp.ar.dev.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(QADataError) as err:
        load_qa("tydiqa", "dev", {"kind": "xtreme", "path": str(tmp_path)}, languages=["ar"])
    message = str(err.value)
    assert str(dev_dir / "tydiqa.goldp.ar.dev.json") in message and "arabic-6611847302918475620-0" in message
    assert "remove_qa_test_annotations" in message and "empty answer" in message


# --- TyDiQA-GoldP training is English only, from every source -------------------------------------------------


@pytest.mark.parametrize("kind", ["xtreme", "hf", "tfds", "files"])
def test_tydiqa_train_keeps_only_english(kind, request):
    source = {
        "xtreme": lambda: {"kind": "xtreme", "path": str(XTREME)},
        "hf": lambda: hf_source(request.getfixturevalue("hf_dirs"), "tydiqa"),
        "tfds": lambda: {"kind": "tfds", "data_dir": str(request.getfixturevalue("tfds_dir"))},
        "files": lambda: {"kind": "files", "paths": {"train": str(TYDIQA_TRAIN)}},
    }[kind]()
    for languages in (None, ["ar", "ko"]):  # whatever is asked, training data is English
        train = load_qa("tydiqa", "train", source, languages=languages)
        assert list(train) == ["en"]
        assert sorted(ex.id for ex in train["en"]) == [
            "english--2045637291883915512-1",
            "english-3519404466425637316-0",
            "english-7291635410052735501-0",
        ]
        assert_answers_in_context(train)


# --- plain files ---------------------------------------------------------------------------------------------


def test_files_per_language_and_mislabelled_file():
    train_dir = TYDIQA_TRAIN.parent
    paths = {
        "train": {
            "en": str(train_dir / "tydiqa.goldp.en.train.json"),
            "ar": str(train_dir / "tydiqa.goldp.ar.train.json"),
        },
        "dev": {lang: str(tydiqa_dev_file(lang)) for lang in ("ar", "ru", "ko")},
    }
    train = load_qa("tydiqa", "train", {"kind": "files", "paths": paths})
    # XTREME's split files cut the ids to their last field; the language comes from the file.
    assert list(train) == ["en"] and sorted(ex.id for ex in train["en"]) == ["0", "0", "1"]
    dev = load_qa("tydiqa", "dev", {"kind": "files", "paths": paths}, languages=["ru"])
    assert list(dev) == ["ru"] and len(dev["ru"]) == 2
    with pytest.raises(InputError, match=r"no tydiqa dev file for language\(s\) te; available: ar, ko, ru"):
        load_qa("tydiqa", "dev", {"kind": "files", "paths": paths}, languages=["te"])
    wrong = {"dev": {"ko": str(tydiqa_dev_file("ru"))}}
    with pytest.raises(QADataError, match="russian-8472910364758201934-0.*given as 'ko'"):
        load_qa("tydiqa", "dev", {"kind": "files", "paths": wrong})
    mixed_as_english = {"train": {"en": str(TYDIQA_TRAIN)}}
    with pytest.raises(QADataError, match="arabic-4812736452019283746-0.*multi-language"):
        load_qa("tydiqa", "train", {"kind": "files", "paths": mixed_as_english})


def test_malformed_json_names_the_file_and_line(tmp_path):
    path = tmp_path / "train.json"
    path.write_text('{"version": "1.1",\n "data": [\n  {"title": "x" "paragraphs": []}\n ]\n}\n', encoding="utf-8")
    with pytest.raises(QADataError) as err:
        load_qa("squad", "train", {"kind": "files", "paths": {"train": str(path)}})
    assert str(path) in str(err.value) and "line 3" in str(err.value)


def test_answer_off_its_offset_names_the_file_and_record(tmp_path, caplog):
    data = json.loads(SQUAD_FILES["train"].read_text(encoding="utf-8"))
    data["data"][0]["paragraphs"][0]["qas"][1]["answers"][0]["answer_start"] += 3
    path = tmp_path / "train-v1.1.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    # Evaluation data: refused, naming the file, the record and the answer.
    with pytest.raises(QADataError) as err:
        load_qa("squad", "dev", {"kind": "files", "paths": {"dev": str(path)}})
    message = str(err.value)
    assert str(path) in message and "data[0].paragraphs[0].qas[1]" in message
    assert "5a1f0c3e9b7d4e2a8c6f0b12" in message and "about 5,895 metres" in message
    # Training data: the question is left out with a warning naming it, as run_squad skips a training example whose
    # answer it cannot find (machine-translated training sets have such questions); the others are kept.
    intact = load_qa("squad", "train", {"kind": "files", "paths": {"train": str(SQUAD_FILES["train"])}})["en"]
    with caplog.at_level(logging.WARNING):
        kept = load_qa("squad", "train", {"kind": "files", "paths": {"train": str(path)}})["en"]
    assert [ex.id for ex in kept] == [ex.id for ex in intact if ex.id != "5a1f0c3e9b7d4e2a8c6f0b12"]
    assert "left out 1 training question(s)" in caplog.text and "5a1f0c3e9b7d4e2a8c6f0b12" in caplog.text


# --- Hugging Face --------------------------------------------------------------------------------------------


def test_hub_rows_with_an_answer_off_its_offset(tmp_path, caplog):
    """Hub (and TFDS) rows follow the SQuAD files: a training question whose answer is not at its offset is left out
    with a warning naming it, as run_squad does; an evaluation question like it is refused."""
    rows = squad_rows(SQUAD_FILES["train"])
    moved = rows[1]["id"]
    rows[1]["answers"]["answer_start"] = [start + 3 for start in rows[1]["answers"]["answer_start"]]
    repo = tmp_path / "squad"
    for split in ("train", "validation"):
        write_parquet(repo / "plain_text" / f"{split}-00000-of-00001.parquet", rows)
    (repo / "README.md").write_text(SQUAD_CARD, encoding="utf-8")
    source = {"kind": "hf", "repo": str(repo), "cache_dir": str(tmp_path / "cache")}
    with caplog.at_level(logging.WARNING):
        kept = load_qa("squad", "train", source)["en"]
    assert [ex.id for ex in kept] == [row["id"] for row in rows if row["id"] != moved]
    assert "left out 1 training question(s)" in caplog.text and moved in caplog.text
    with pytest.raises(QADataError, match=f"{moved}.*does not match the context"):
        load_qa("squad", "dev", source)


def test_hf_gives_the_same_examples_as_xtreme(hf_dirs):
    xtreme = {"kind": "xtreme", "path": str(XTREME)}
    for split in ("train", "dev"):
        assert load_qa("squad", split, hf_source(hf_dirs, "squad")) == load_qa("squad", split, xtreme)
    dev = load_qa("tydiqa", "dev", hf_source(hf_dirs, "tydiqa"))
    assert list(dev) == list(TYDIQA_DEV_COUNTS)
    assert dev == load_qa("tydiqa", "dev", xtreme)
    some = load_qa("tydiqa", "dev", hf_source(hf_dirs, "tydiqa"), languages=["te", "ar"])
    assert list(some) == ["te", "ar"] and some["ar"] == dev["ar"]


def test_hf_bad_row_names_the_repo_and_row(tmp_path):
    rows = squad_rows(SQUAD_FILES["dev"])
    rows[1]["answers"]["answer_start"][2] = 0
    write_parquet(tmp_path / "repo" / "plain_text" / "validation-00000-of-00001.parquet", rows)
    source = {"kind": "hf", "repo": str(tmp_path / "repo"), "cache_dir": str(tmp_path / "cache")}
    with pytest.raises(QADataError) as err:
        load_qa("squad", "dev", source)
    message = str(err.value)
    assert str(tmp_path / "repo") in message and "row 1" in message and "6b2e1d4f0c8e5f3b9d7a1c32" in message


def test_hf_hub_without_network_says_what_to_do(tmp_path):
    with pytest.raises(InputError) as err:
        load_qa("squad", "dev", {"kind": "hf", "cache_dir": str(tmp_path)})
    message = str(err.value)
    assert "rajpurkar/squad" in message and "ConnectionError" in message
    assert "local folder" in message and "'xtreme' source" in message
    with pytest.raises(InputError, match="does not exist"):
        load_qa("squad", "dev", {"kind": "hf", "repo": str(tmp_path / "missing")})


# --- TFDS ----------------------------------------------------------------------------------------------------


def test_tfds_gives_the_same_examples_as_xtreme(tfds_dir):
    xtreme = {"kind": "xtreme", "path": str(XTREME)}
    source = {"kind": "tfds", "data_dir": str(tfds_dir)}
    for split in ("train", "dev"):
        assert by_id(load_qa("squad", split, source)) == by_id(load_qa("squad", split, xtreme))
    dev = load_qa("tydiqa", "dev", source)
    assert list(dev) == list(TYDIQA_DEV_COUNTS)
    assert by_id(dev) == by_id(load_qa("tydiqa", "dev", xtreme))
    assert all(isinstance(ex.context, str) and isinstance(ex.id, str) for ex in dev["ko"])


def test_tfds_missing_dataset_says_how_to_build_it(tmp_path):
    with pytest.raises(InputError) as err:
        load_qa("squad", "train", {"kind": "tfds", "data_dir": str(tmp_path)})
    message = str(err.value)
    assert "tfds build squad/v1.1" in message and str(tmp_path) in message and "array_record" in message
    with pytest.raises(InputError, match="tfds build tydi_qa/goldp"):
        load_qa("tydiqa", "dev", {"kind": "tfds", "data_dir": str(tmp_path)})


# --- configuration errors ------------------------------------------------------------------------------------


def test_configuration_errors_list_the_valid_choices():
    with pytest.raises(InputError, match="valid kinds: xtreme, hf, tfds, files"):
        load_qa("squad", "dev", {"kind": "gcs"})
    with pytest.raises(InputError, match="valid datasets: mlqa, squad, squad_v2, tydiqa, xquad"):
        load_qa("natural_questions", "dev", {"kind": "xtreme", "path": str(XTREME)})
    with pytest.raises(InputError, match="valid splits: train, dev"):
        load_qa("squad", "validation", {"kind": "xtreme", "path": str(XTREME)})
    with pytest.raises(InputError, match="unknown key.*datadir.*valid keys: kind, data_dir, name"):
        load_qa("squad", "dev", {"kind": "tfds", "datadir": "/tmp"})
    with pytest.raises(InputError, match="squad has no data for language.*de; available: en"):
        load_qa("squad", "dev", {"kind": "xtreme", "path": str(XTREME)}, languages=["de"])
    with pytest.raises(InputError, match="'kind'"):
        load_qa("squad", "dev", {"path": str(XTREME)})


# --- a QA dataset of one's own: one register_task call, read by the same loader ---------------------------------


@pytest.fixture
def registered():
    """Names registered by a test, removed from the task registry and the dataset catalog afterwards."""
    from stilts_jax.data import task_sources
    from stilts_jax.tasks import registry

    names: list[str] = []
    yield names
    for name in names:
        registry.TASKS.pop(name, None)
        task_sources.DATASETS.pop(name, None)


def _squad_file(path: Path, lang: str, questions: list[tuple[str, str, str, str]]) -> None:
    """A SQuAD-format file of (id, question, context, answer) tuples, the answer found in its context."""
    data = [
        {
            "title": f"{lang}-{qid}",
            "paragraphs": [
                {
                    "context": context,
                    "qas": [
                        {
                            "id": qid,
                            "question": question,
                            "answers": [{"text": answer, "answer_start": context.index(answer)}],
                        }
                    ],
                }
            ],
        }
        for qid, question, context, answer in questions
    ]
    path.write_text(json.dumps({"version": "1.1", "data": data}, ensure_ascii=False), encoding="utf-8")


def test_a_registered_qa_task_reads_its_squad_folder(tmp_path, registered):
    from stilts_jax.core.errors import StiltsError
    from stilts_jax.core.tokenization import load_demo_tokenizer
    from stilts_jax.data.qa import QAExample
    from stilts_jax.data.task_sources import load_examples
    from stilts_jax.tasks import TaskDataset, TaskSpec, get_task, register_task
    from stilts_jax.tasks.span_qa import SpanQATask

    folder = tmp_path / "riverqa"
    folder.mkdir()
    english = [
        ("r1", "How long is the Rhine?", "The Rhine is 1,230 km long.", "1,230 km"),
        ("r2", "Where does the Rhine rise?", "The Rhine rises in the Swiss Alps.", "the Swiss Alps"),
    ]
    german = [("r1", "Wie lang ist der Rhein?", "Der Rhein ist 1.230 km lang.", "1.230 km")]
    _squad_file(folder / "train-en.json", "en", english)
    _squad_file(folder / "train-de.json", "de", german)  # not read: training is English only
    _squad_file(folder / "dev-en.json", "en", english[:1])
    _squad_file(folder / "test-en.json", "en", english)
    _squad_file(folder / "test-de.json", "de", german)
    data = TaskDataset(
        family="qa",
        labels=(),
        languages=("en", "de"),
        reader="squad",
        english_train_only=True,
        files_layout={split: (f"{split}-{{lang}}.json",) for split in ("train", "dev", "test")},
    )
    spec = TaskSpec(
        name="riverqa",
        family="span_qa",
        dataset="riverqa",
        languages=("en", "de"),
        eval_split="test",
        default_max_length=384,
        defaults=dict(epochs=2.0, batch_size=16, max_length=384),
        defaults_source="this test",
    )
    registered.append("riverqa")
    assert register_task(spec, data=data) is get_task("riverqa")

    source = {"kind": "files", "path": str(folder)}
    test = load_examples("riverqa", "test", source)
    assert list(test) == ["en", "de"] and [len(v) for v in test.values()] == [2, 1]
    assert test["de"][0] == QAExample(
        id="r1",
        question="Wie lang ist der Rhein?",
        context="Der Rhein ist 1.230 km lang.",
        answers=(Answer("1.230 km", 14),),
        language="de",
        title="de-r1",
    )
    assert load_qa("riverqa", "test", source, ["de"]) == {"de": test["de"]}
    train = load_examples("riverqa", "train", source, ["en", "de"])
    assert list(train) == ["en"] and [ex.id for ex in train["en"]] == ["r1", "r2"]
    # The span QA task reads it as it reads SQuAD: no "no answer" predictions, its own split per role.
    task = SpanQATask(get_task("riverqa"), load_demo_tokenizer(), max_length=64, doc_stride=16)
    assert not task.with_null
    assert task.load("eval", source, ["de"]) == {"de": test["de"]}
    assert task.load("dev", source, ["en"])["en"] == train["en"][:1]
    raw = json.loads((folder / "test-de.json").read_text(encoding="utf-8"))
    raw["data"][0]["paragraphs"][0]["qas"][0]["answers"] = []  # unanswerable: not without unanswerable=True
    (folder / "test-de.json").write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(QADataError, match=r"test-de.json: data\[0\].paragraphs\[0\].qas\[0\].*has no answer"):
        load_examples("riverqa", "test", source, ["de"])

    # A QA target may train on SQuAD; the data family of every dataset it reads is checked.
    registered.append("riverqa_from_squad")
    register_task(dataclasses.replace(spec, name="riverqa_from_squad", train_dataset="squad", dev_dataset="squad"))
    with pytest.raises(StiltsError, match="dataset 'xnli' holds pair examples .*span_qa task reads qa"):
        register_task(dataclasses.replace(spec, name="riverqa_xnli", train_dataset="xnli"))
    with pytest.raises(StiltsError, match="dataset 'riverqa' holds qa examples"):
        register_task(TaskSpec(name="riverqa_pairs", family="classification", dataset="riverqa", languages=("en",)))
    with pytest.raises(InputError, match="reader='squad'"):
        register_task(
            dataclasses.replace(spec, name="bad_qa", dataset="bad_qa"), data=dataclasses.replace(data, reader="pair")
        )


# --- repeated question ids ---------------------------------------------------------------------------------------


def _with_repeated_id(path: Path) -> dict:
    """The SQuAD file at `path` with its last question given the first one's id."""
    data = json.loads(path.read_text(encoding="utf-8"))
    questions = [q for article in data["data"] for paragraph in article["paragraphs"] for q in paragraph["qas"]]
    questions[-1]["id"] = questions[0]["id"]
    return data


def test_repeated_question_ids_of_evaluation_data_are_refused(tmp_path):
    # Predictions are keyed by question id: two questions with one id would leave one unscored (40 examples,
    # 39 predictions). Every QA source refuses them in evaluation splits, naming the file (or repo) and the id.
    data = _with_repeated_id(SQUAD_FILES["dev"])
    repeated = data["data"][0]["paragraphs"][0]["qas"][0]["id"]
    path = tmp_path / "dev-v1.1.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(QADataError) as err:
        load_qa("squad", "dev", {"kind": "files", "paths": {"dev": str(path)}})
    message = str(err.value)
    assert str(path) in message and repeated in message and "already used by data[0].paragraphs[0].qas[0]" in message

    rows = squad_rows(SQUAD_FILES["dev"])
    rows[1]["id"] = rows[0]["id"]
    write_parquet(tmp_path / "repo" / "plain_text" / "validation-00000-of-00001.parquet", rows)
    with pytest.raises(QADataError) as err:
        load_qa("squad", "dev", {"kind": "hf", "repo": str(tmp_path / "repo"), "cache_dir": str(tmp_path / "cache")})
    message = str(err.value)
    assert str(tmp_path / "repo") in message and "row 1" in message and rows[0]["id"] in message

    jsonl = tmp_path / "dev.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    with pytest.raises(QADataError, match=rf"{jsonl}: line 2: question id '{rows[0]['id']}' is already used by line 1"):
        load_qa("squad", "dev", {"kind": "files", "paths": {"dev": str(jsonl)}})


def test_training_files_may_repeat_ids(tmp_path):
    # As XTREME's per-language TyDiQA-GoldP train files do (test_files_per_language_and_mislabelled_file): training
    # never looks a question up by id.
    data = _with_repeated_id(SQUAD_FILES["train"])
    (tmp_path / "train.json").write_text(json.dumps(data), encoding="utf-8")
    assert len(
        load_qa("squad", "train", {"kind": "files", "paths": {"train": str(tmp_path / "train.json")}})["en"]
    ) == len(load_qa("squad", "train", {"kind": "files", "paths": {"train": str(SQUAD_FILES["train"])}})["en"])


def test_a_squad_file_that_is_not_utf8_names_the_line(tmp_path):
    text = json.dumps(json.loads(SQUAD_FILES["dev"].read_text(encoding="utf-8")), indent=1)
    lines = text.split("\n")
    number = next(i for i, line in enumerate(lines) if '"question"' in line)
    lines[number] = lines[number].replace('"question": "', '"question": "caf\u00e9 ')
    path = tmp_path / "dev.json"
    path.write_bytes("\n".join(lines).encode("latin-1", errors="replace"))
    with pytest.raises(QADataError, match=rf"{path} line {number + 1}: not UTF-8 text"):
        load_qa("squad", "dev", {"kind": "files", "paths": {"dev": str(path)}})


def test_a_paragraph_without_its_questions_list_is_an_error_not_an_empty_paragraph(tmp_path):
    # Found by the reader fuzz test: a damaged key ("q\x0cas") used to drop the paragraph's questions unnoticed.
    data = json.loads(SQUAD_FILES["train"].read_text(encoding="utf-8"))
    data["data"][1]["paragraphs"][0]["q\x0cas"] = data["data"][1]["paragraphs"][0].pop("qas")
    path = tmp_path / "train.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(QADataError, match=r"data\[1\]\.paragraphs\[0\]: expected an object with a 'qas' list"):
        load_qa("squad", "train", {"kind": "files", "paths": {"train": str(path)}})
