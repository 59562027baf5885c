"""English reasoning datasets as intermediate tasks: PIQA, WinoGrande, ReClor, LogiQA 2.0 and alphaNLI.

Each is read from its original release files (the shipped fixtures in tests/fixtures/tasks, written by hand in each
release's format), from parquet in its hub repo's layout (written here from the same rows, with the hub's column names
and label encodings) and, for PIQA and WinoGrande, from TFDS data prepared by TFDS's own builders from the fixture
files. The expected prompts, choices and labels are computed here from the raw records, the way the published code
builds them (the readers in stilts_jax/data/task_sources/records.py cite the same code):

- PIQA: jiant/tasks/lib/piqa.py: prompt = goal, choices = sol1, sol2.
- WinoGrande: allenai/winogrande scripts/utils.py: prompt = the sentence up to the blank, each choice = the option
  followed by the rest of the sentence ("_ " + rest with the blank replaced).
- ReClor, LogiQA 2.0: yuweihao/reclor utils_multiple_choice.py, csitfun/LogiQA2.0 logiqa/utils_mrc.py: prompt =
  context (text), each choice = question + " " + option (the option in the blank of a cloze question).
- alphaNLI: allenai/abductive-commonsense-reasoning anli/data_processors.py to_b_me_format: prompt = obs1, each
  choice = hypothesis + " " + obs2.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stilts_jax.core.errors import InputError
from stilts_jax.core.tokenization import load_demo_tokenizer
from stilts_jax.data.examples import ChoiceExample
from stilts_jax.data.task_sources import DATASETS, TaskDataError, labels, load_examples
from stilts_jax.tasks.families import make_task
from stilts_jax.tasks.registry import get_task
from tests.intermediate_sources import SOURCES, TASKS
from tests.test_multiple_choice_inputs import assert_decodes_to, segments

REASONING = ("piqa", "winogrande", "reclor", "logiqa2", "art")

PIQA = TASKS / "piqa" / "physicaliqa-train-dev"
WINOGRANDE = TASKS / "winogrande" / "winogrande_1.1"
RECLOR = TASKS / "reclor"
LOGIQA = TASKS / "logiqa2" / "logiqa" / "DATA" / "LOGIQA"
ART = TASKS / "art"

# split -> the release file of each dataset (PIQA's test file is tests.jsonl, outside the train-dev folder).
FILES = {
    "piqa": {"train": PIQA / "train.jsonl", "dev": PIQA / "dev.jsonl", "test": TASKS / "piqa" / "tests.jsonl"},
    "winogrande": {
        "train": WINOGRANDE / "train_xl.jsonl",
        "dev": WINOGRANDE / "dev.jsonl",
        "test": WINOGRANDE / "test.jsonl",
    },
    "reclor": {"train": RECLOR / "train.json", "dev": RECLOR / "val.json", "test": RECLOR / "test.json"},
    "logiqa2": {"train": LOGIQA / "train.txt", "dev": LOGIQA / "dev.txt", "test": LOGIQA / "test.txt"},
    "art": {"train": ART / "train.jsonl", "dev": ART / "dev.jsonl"},
}


def files_source(dataset: str) -> dict:
    return {"kind": "files", "paths": {split: str(path) for split, path in FILES[dataset].items()}}


# --- the raw records and the published constructions, computed independently of the readers ----------------------


def raw_records(path: Path) -> list[dict]:
    """The records of a release file: one JSON list (ReClor's .json) or JSON lines (.jsonl, LogiQA 2.0's .txt)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def labels_lst(path: Path) -> list[str] | None:
    """The `{name}-labels.lst` beside a .jsonl file, one label a line, or None."""
    beside = path.with_name(f"{path.stem}-labels.lst")
    return beside.read_text(encoding="utf-8").split() if beside.is_file() else None


def expected(dataset: str, path: Path) -> list[tuple[str, tuple[str, ...], int | None]]:
    """(prompt, choices, label index) of each record of a release file, as the published code builds them."""
    rows, lst = raw_records(path), labels_lst(path)
    out = []
    for i, row in enumerate(rows):
        if dataset == "piqa":  # jiant/tasks/lib/piqa.py:68-75; labels 0/1 in the .lst file
            prompt, choices = row["goal"], (row["sol1"], row["sol2"])
            label = None if lst is None else int(lst[i])
        elif dataset == "winogrande":  # allenai/winogrande scripts/utils.py WinograndeProcessor._create_examples
            idx = row["sentence"].index("_")
            option_str = "_ " + row["sentence"][idx + 1 :].strip()
            prompt = row["sentence"][:idx]
            choices = (option_str.replace("_", row["option1"]), option_str.replace("_", row["option2"]))
            label = int(row["answer"]) - 1 if "answer" in row else None
        elif dataset in ("reclor", "logiqa2"):  # ReclorProcessor / LogiProcessor + convert_examples_to_features
            context, options = (
                (row["context"], row["answers"]) if dataset == "reclor" else (row["text"], row["options"])
            )
            question = row["question"]
            prompt = context
            choices = tuple(
                question.replace("_", o) if question.find("_") != -1 else question + " " + o for o in options
            )
            label = row.get("label" if dataset == "reclor" else "answer")
        else:  # art (alphaNLI): anli/data_processors.py AnliExample.to_b_me_format; labels 1/2 in the .lst file
            prompt = row["obs1"]
            choices = (" ".join([row["hyp1"], row["obs2"]]), " ".join([row["hyp2"], row["obs2"]]))
            label = None if lst is None else int(lst[i]) - 1
        out.append((prompt, choices, label))
    return out


def triples(examples) -> list[tuple[str, tuple[str, ...], int | None]]:
    return [(ex.prompt, ex.choices, ex.label) for ex in examples]


# --- original release files --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", REASONING)
def test_release_files_give_the_published_prompts_choices_and_labels(dataset):
    for split, path in FILES[dataset].items():
        loaded = load_examples(dataset, split, files_source(dataset))
        assert list(loaded) == ["en"]
        examples = loaded["en"]
        assert all(isinstance(ex, ChoiceExample) and ex.language == "en" for ex in examples)
        assert triples(examples) == expected(dataset, path), (dataset, split)
        assert all(len(ex.choices) == len(labels(dataset)) for ex in examples)
    train = load_examples(dataset, "train", files_source(dataset), require_labels=True)["en"]
    assert len({ex.label for ex in train}) == len(labels(dataset))  # labelled, every class present


def test_release_ids_and_label_files():
    # PIQA / alphaNLI: the labels live only in the .lst files; ids are the records' own.
    piqa = load_examples("piqa", "train", files_source("piqa"))["en"]
    assert [ex.label for ex in piqa] == [int(v) for v in (PIQA / "train-labels.lst").read_text().split()]
    assert piqa[0].id == raw_records(PIQA / "train.jsonl")[0]["id"]
    anli = load_examples("art", "dev", files_source("art"))["en"]
    assert [labels("art")[ex.label] for ex in anli] == (ART / "dev-labels.lst").read_text().split()
    assert anli[0].id == raw_records(ART / "dev.jsonl")[0]["story_id"]
    # WinoGrande's records carry their answers; its -labels.lst files repeat them.
    wino = load_examples("winogrande", "train", files_source("winogrande"))["en"]
    assert [labels("winogrande")[ex.label] for ex in wino] == (WINOGRANDE / "train_xl-labels.lst").read_text().split()
    assert wino[0].id == raw_records(WINOGRANDE / "train_xl.jsonl")[0]["qID"]
    assert wino[0].prompt.endswith(" ") and not wino[0].choices[0].startswith(" ")  # the text up to the blank, as is
    # ReClor's ids are id_string; LogiQA 2.0's the integer id.
    assert load_examples("reclor", "dev", files_source("reclor"))["en"][2].id == "val_2"
    assert load_examples("logiqa2", "dev", files_source("logiqa2"))["en"][0].id == "218"


def test_cloze_questions_take_the_option_in_the_blank():
    # yuweihao/reclor (and LogiQA 2.0's copy of it): a question holding "_" has each option put in the blank.
    cloze = load_examples("reclor", "dev", files_source("reclor"))["en"][2]
    raw = raw_records(RECLOR / "val.json")[2]
    assert "_" in raw["question"]
    assert cloze.choices == tuple(raw["question"].replace("_", a) for a in raw["answers"])


def test_unlabelled_test_splits_carry_no_labels(tmp_path):
    for dataset in ("piqa", "winogrande", "reclor"):
        test = load_examples(dataset, "test", files_source(dataset))["en"]
        assert test and all(ex.label is None for ex in test), dataset
        with pytest.raises(InputError, match="carry no labels"):
            load_examples(dataset, "test", files_source(dataset), require_labels=True)
    # LogiQA 2.0 publishes its test labels.
    assert None not in [
        ex.label for ex in load_examples("logiqa2", "test", files_source("logiqa2"), require_labels=True)["en"]
    ]
    # alphaNLI's test inputs come without a labels file (its labels are not public).
    test = tmp_path / "test.jsonl"
    test.write_text((ART / "dev.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    loaded = load_examples("art", "test", {"kind": "files", "paths": {"test": str(test)}})["en"]
    assert [ex.label for ex in loaded] == [None] * 4
    # A training file without its labels file is unusable for training, and says so.
    train = tmp_path / "train.jsonl"
    train.write_text((PIQA / "train.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(InputError, match="carry no labels"):
        load_examples("piqa", "train", {"kind": "files", "paths": {"train": str(train)}})


# --- the hub's parquet, in each repo's layout ------------------------------------------------------------------


def write_parquet(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}


def hub_rows(dataset: str, path: Path) -> list[dict]:
    """The rows the hub repo holds for a release file, as its loading script (or upload) writes them."""
    rows, lst = raw_records(path), labels_lst(path)
    if dataset == "piqa":  # huggingface/datasets datasets/piqa/piqa.py: ClassLabel 0/1, -1 without labels
        return [
            {"goal": r["goal"], "sol1": r["sol1"], "sol2": r["sol2"], "label": -1 if lst is None else int(lst[i])}
            for i, r in enumerate(rows)
        ]
    if dataset == "winogrande":  # datasets/winogrande/winogrande.py: answer "" in test
        return [
            {"sentence": r["sentence"], "option1": r["option1"], "option2": r["option2"], "answer": r.get("answer", "")}
            for r in rows
        ]
    if dataset == "reclor":  # tasksource/reclor: the original train.json / val.json
        return rows
    if dataset == "logiqa2":  # baber/logiqa2 logiqa2.py: texts stripped, type as a string
        return [
            {
                "id": r["id"],
                "answer": r["answer"],
                "text": r["text"].strip(),
                "type": str(r["type"]),
                "question": r["question"].strip(),
                "options": [o.strip() for o in r["options"]],
            }
            for r in rows
        ]
    # allenai/art (datasets/art/art.py): label 1/2, a ClassLabel of 3 classes
    return [
        {
            "observation_1": r["obs1"],
            "observation_2": r["obs2"],
            "hypothesis_1": r["hyp1"],
            "hypothesis_2": r["hyp2"],
            "label": int(lst[i]),
        }
        for i, r in enumerate(rows)
    ]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """dataset -> a local copy of its hub repo at refs/convert/parquet: {config}/{split}/0000.parquet."""
    root = tmp_path_factory.mktemp("hub")
    repos = {}
    for dataset in REASONING:
        loc = DATASETS[dataset].hf
        repo = root / loc.repo.replace("/", "_")
        for split, path in FILES[dataset].items():
            if split in loc.splits:
                write_parquet(
                    repo / (loc.config or "default") / HUB_SPLITS[split] / "0000.parquet", hub_rows(dataset, path)
                )
        repos[dataset] = repo
    return repos


@pytest.mark.parametrize("dataset", REASONING)
def test_hub_parquet_reads_as_the_release_files(dataset, hub):
    loc = DATASETS[dataset].hf
    assert loc.revision == "refs/convert/parquet"
    for split in FILES[dataset]:
        if split not in loc.splits:
            with pytest.raises(InputError, match=f"hub has no {dataset} {split} data"):
                load_examples(dataset, split, {"kind": "hf", "repo": str(hub[dataset])})
            continue
        from_hub = load_examples(dataset, split, {"kind": "hf", "repo": str(hub[dataset])})["en"]
        from_files = load_examples(dataset, split, files_source(dataset))["en"]
        assert triples(from_hub) == triples(from_files), (dataset, split)


def test_hub_repos_configs_and_splits():
    hubs = {name: DATASETS[name].hf for name in REASONING}
    assert {name: (loc.repo, loc.config) for name, loc in hubs.items()} == {
        "piqa": ("ybisk/piqa", "plain_text"),
        "winogrande": ("allenai/winogrande", "winogrande_xl"),
        "reclor": ("tasksource/reclor", None),
        "logiqa2": ("baber/logiqa2", "logiqa2"),
        "art": ("allenai/art", "anli"),
    }
    assert "test" not in hubs["reclor"].splits and "test" not in hubs["art"].splits


def test_hub_unlabelled_rows_and_bad_rows(hub, tmp_path):
    for dataset in ("piqa", "winogrande"):  # label -1 / answer ""
        test = load_examples(dataset, "test", {"kind": "hf", "repo": str(hub[dataset])})["en"]
        assert test and all(ex.label is None for ex in test)
    # The user's own copy of WinoGrande's debiased config, in the same layout.
    repo = tmp_path / "winogrande"
    row = {
        "sentence": "The cup held the water because the _ was empty.",
        "option1": "cup",
        "option2": "water",
        "answer": "3",
    }
    write_parquet(repo / "winogrande_debiased" / "validation" / "0000.parquet", [{**row, "answer": "1"}, row])
    with pytest.raises(TaskDataError, match=r"config winogrande_debiased, split validation\) row 1: unknown label '3'"):
        load_examples("winogrande", "dev", {"kind": "hf", "repo": str(repo), "config": "winogrande_debiased"})
    art = tmp_path / "art"
    good = hub_rows("art", ART / "dev.jsonl")[0]
    write_parquet(art / "anli" / "validation" / "0000.parquet", [good, {**good, "label": 0}])
    with pytest.raises(TaskDataError, match=r"row 1: unknown label '0'; art labels: 1, 2"):
        load_examples("art", "dev", {"kind": "hf", "repo": str(art)})


# --- TFDS: PIQA and WinoGrande, prepared by TFDS's own builders from the release files ---------------------------


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    from tensorflow_datasets.datasets.piqa import piqa_dataset_builder as piqa
    from tensorflow_datasets.text import winogrande

    from tests.test_task_sources import builder_generating

    root = tmp_path_factory.mktemp("tfds") / "data"

    def piqa_splits(self, dl):
        return {
            "train": self._generate_examples(str(PIQA / "train.jsonl"), str(PIQA / "train-labels.lst")),
            "validation": self._generate_examples(str(PIQA / "dev.jsonl"), str(PIQA / "dev-labels.lst")),
        }

    def winogrande_splits(self, dl):
        return {
            "train_xl": self._generate_examples(str(WINOGRANDE / "train_xl.jsonl")),
            "validation": self._generate_examples(str(WINOGRANDE / "dev.jsonl")),
            "test": self._generate_examples(str(WINOGRANDE / "test.jsonl")),
        }

    with builder_generating(piqa.Builder, piqa_splits):
        piqa.Builder(data_dir=str(root), file_format="array_record").download_and_prepare()
    with builder_generating(winogrande.Winogrande, winogrande_splits):
        winogrande.Winogrande(data_dir=str(root), file_format="array_record").download_and_prepare()
    return root


@pytest.mark.parametrize("dataset, splits", [("piqa", ("train", "dev")), ("winogrande", ("train", "dev", "test"))])
def test_tfds_reads_as_the_release_files(dataset, splits, tfds_dir):
    source = {"kind": "tfds", "data_dir": str(tfds_dir)}
    for split in splits:
        from_tfds = load_examples(dataset, split, source)["en"]
        from_files = load_examples(dataset, split, files_source(dataset))["en"]
        # TFDS keeps no record order of its own: compare as sets of (prompt, choices, label).
        assert sorted(triples(from_tfds), key=repr) == sorted(triples(from_files), key=repr), (dataset, split)
    if dataset == "winogrande":  # test labels are -1
        assert all(ex.label is None for ex in load_examples(dataset, "test", source)["en"])
    else:
        with pytest.raises(InputError, match="TFDS has no piqa test data"):
            load_examples(dataset, "test", source)


def test_tfds_lacks_the_others(tmp_path):
    for dataset in ("reclor", "logiqa2", "art"):
        assert DATASETS[dataset].tfds is None
        with pytest.raises(InputError, match=f"TFDS has no {dataset} train data known to this loader"):
            load_examples(dataset, "train", {"kind": "tfds", "data_dir": str(tmp_path)})


# --- bad records name the file and line -------------------------------------------------------------------------


def write_lines(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def train_source(path: Path) -> dict:
    return {"kind": "files", "paths": {"train": str(path)}}


def test_bad_jsonl_records_and_label_files_name_file_and_line(tmp_path):
    piqa = raw_records(PIQA / "train.jsonl")[:3]
    path = write_lines(tmp_path / "train.jsonl", [piqa[0], {k: v for k, v in piqa[1].items() if k != "sol2"}, piqa[2]])
    (tmp_path / "train-labels.lst").write_text("0\n1\n0\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match=rf"{path} line 2: no sol2 field"):
        load_examples("piqa", "train", train_source(path))
    write_lines(path, piqa)
    (tmp_path / "train-labels.lst").write_text("0\n\n1\n2\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match=rf"{tmp_path / 'train-labels.lst'} line 4: unknown label '2'; piqa labels"):
        load_examples("piqa", "train", train_source(path))
    (tmp_path / "train-labels.lst").write_text("0\n1\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match=r"train-labels.lst: 2 labels for the 3 records of"):
        load_examples("piqa", "train", train_source(path))

    wino = raw_records(WINOGRANDE / "train_xl.jsonl")[:3]
    path = write_lines(tmp_path / "wino.jsonl", [wino[0], wino[1], {**wino[2], "sentence": "No blank here."}])
    with pytest.raises(TaskDataError, match=rf"{path} line 3: sentence 'No blank here.' has no blank '_'"):
        load_examples("winogrande", "train", train_source(path))
    write_lines(path, [wino[0], {**wino[1], "answer": "3"}])
    with pytest.raises(TaskDataError, match=rf"{path} line 2: unknown label '3'; winogrande labels: 1, 2"):
        load_examples("winogrande", "train", train_source(path))

    anli = raw_records(ART / "train.jsonl")[:2]
    path = write_lines(tmp_path / "anli.jsonl", [anli[0], {**anli[1], "hyp2": None}])
    (tmp_path / "anli-labels.lst").write_text("1\n2\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match=rf"{path} line 2: field 'hyp2' holds NoneType, not text"):
        load_examples("art", "train", train_source(path))
    (tmp_path / "anli-labels.lst").write_text("1\n0\n", encoding="utf-8")
    write_lines(path, anli)
    with pytest.raises(TaskDataError, match=r"anli-labels.lst line 2: unknown label '0'; art labels: 1, 2"):
        load_examples("art", "train", train_source(path))


def test_bad_logiqa_lines_name_file_and_line(tmp_path):
    lines = (LOGIQA / "train.txt").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "train.txt"
    path.write_text("\n".join([lines[0], lines[1][:40], lines[2]]) + "\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match=rf"{path} line 2: not a JSON record"):
        load_examples("logiqa2", "train", train_source(path))
    record = json.loads(lines[1])
    write_lines(path, [json.loads(lines[0]), {**record, "options": record["options"] + ["A fifth option."]}])
    with pytest.raises(TaskDataError, match=rf"{path} line 2: 5 options, but the dataset's questions have 4"):
        load_examples("logiqa2", "train", train_source(path))
    write_lines(path, [json.loads(lines[0]), {**record, "answer": 4}])
    with pytest.raises(TaskDataError, match=rf"{path} line 2: label 4 is out of range for logiqa2's 4 labels"):
        load_examples("logiqa2", "train", train_source(path))
    path.write_text("Which of the followings can be inferred?\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"train.txt: logiqa2 files are .jsonl, .json .* holds neither"):
        load_examples("logiqa2", "train", train_source(path))


def test_bad_json_list_records_name_file_and_line(tmp_path):
    records = raw_records(RECLOR / "train.json")[:3]
    path = tmp_path / "train.json"
    bad = [records[0], records[1], {**records[2], "answers": records[2]["answers"][:3]}]
    path.write_text(json.dumps(bad, indent=4), encoding="utf-8")
    third = [n for n, text in enumerate(path.read_text().splitlines(), 1) if text == "    {"][2]  # where it starts
    with pytest.raises(
        TaskDataError,
        match=rf"{path} line {third} \(record 2\): 3 answers, but the dataset's "
        "questions have 4",
    ):
        load_examples("reclor", "train", train_source(path))
    # One line holding the whole list (as json.dump writes it): every record is on line 1, its index says which.
    path.write_text(json.dumps([records[0], {**records[1], "label": 7}]), encoding="utf-8")
    with pytest.raises(TaskDataError, match=rf"{path} line 1 \(record 1\): label 7 is out of range for reclor's 4"):
        load_examples("reclor", "train", train_source(path))
    text = json.dumps(records[:2], indent=4)
    path.write_text(text.replace('"question":', '"question"', 1), encoding="utf-8")
    broken = next(n for n, t in enumerate(text.splitlines(), 1) if '"question":' in t)
    with pytest.raises(TaskDataError, match=rf"{path} line {broken}: not a JSON record \(Expecting ':' delimiter"):
        load_examples("reclor", "train", train_source(path))
    path.write_text(json.dumps(records[:1], indent=2) + "\n[]\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match=rf"{path} line \d+: text after the JSON list"):
        load_examples("reclor", "train", train_source(path))
    path.write_text("[" + json.dumps(records[0]) + ', "stray"]', encoding="utf-8")
    with pytest.raises(TaskDataError, match=rf"{path} line 1: a record must be a JSON object, got str"):
        load_examples("reclor", "train", train_source(path))
    path.write_text("[]", encoding="utf-8")
    with pytest.raises(InputError, match="no reclor train examples"):
        load_examples("reclor", "train", train_source(path))


# --- tasks: registered, and the model's input pairs are the published ones ----------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    return load_demo_tokenizer()


@pytest.mark.parametrize("dataset", REASONING)
def test_tasks_encode_the_published_pairs(dataset, tokenizer):
    spec = get_task(dataset)
    assert (spec.family, spec.dataset, spec.languages, spec.metric) == ("multiple_choice", dataset, ("en",), "accuracy")
    assert DATASETS[dataset].family == "choice" and spec.label_names() == labels(dataset)
    assert SOURCES[dataset]["paths"]["dev"] == str(FILES[dataset]["dev"])
    task = make_task(spec, tokenizer, max_length=256)
    examples = task.load("dev", SOURCES[dataset], ["en"])["en"]
    pairs = expected(dataset, FILES[dataset]["dev"])
    arrays = task._encode(examples)
    assert arrays["input_ids"].shape == (len(pairs), len(labels(dataset)), 256)
    for i, (prompt, choices, _) in enumerate(pairs):
        for c, choice in enumerate(choices):
            first, second = segments(tokenizer, arrays["input_ids"][i, c], arrays["attention_mask"][i, c])
            assert_decodes_to(tokenizer, first, prompt)
            assert_decodes_to(tokenizer, second, choice)
