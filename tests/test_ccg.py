"""CCG supertagging: jiant's and CoNLL-like files, the open tag set taken from training data, token accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stilts_jax.core.errors import InputError
from stilts_jax.core.tokenization import load_tokenizer
from stilts_jax.data.examples import TaggedSentence
from stilts_jax.data.task_sources import (
    UNKNOWN_TAG,
    TaskDataError,
    derive_tag_set,
    has_open_labels,
    labels,
    load_examples,
)
from stilts_jax.tasks.families import TaggingTask
from stilts_jax.tasks.registry import get_task

CCG = Path(__file__).parent / "fixtures" / "tasks" / "ccg"
JIANT, CONLL = CCG / "jiant", CCG / "conll"


def _files(folder: Path) -> dict:
    return {"kind": "files", "path": str(folder)}


def test_jiant_and_conll_files_hold_the_same_sentences():
    for split in ("train", "dev", "test"):
        jiant = load_examples("ccg", split, _files(JIANT))["en"]
        assert jiant == load_examples("ccg", split, _files(CONLL))["en"]
        assert jiant == load_examples("ccg", split, _files(JIANT / "ccg_config.json"))["en"]
    # jiant's format: one line per sentence, its words and tags space-separated.
    lines = (JIANT / "ccg.train").read_text(encoding="utf-8").splitlines()
    train = load_examples("ccg", "train", {"kind": "files", "paths": {"train": str(JIANT / "ccg.train")}})["en"]
    assert len(train) == len(lines) == 20
    words, tags = lines[3].split("\t")
    assert train[3].tokens == tuple(words.split(" ")) and train[3].tags == tuple(tags.split(" "))
    assert all(len(s.tokens) == len(s.tags) for s in train)


def test_tag_set_is_sorted_from_training_data_with_a_reserved_unknown_tag():
    train = load_examples("ccg", "train", _files(JIANT))["en"]
    tag_set = derive_tag_set(train)
    seen = {tag for s in train for tag in s.tags}
    assert tag_set == (UNKNOWN_TAG, *sorted(seen))
    assert derive_tag_set(list(reversed(train))) == tag_set  # order of the data does not matter
    # The dev set holds a supertag training never saw; it is not in the set.
    dev_tags = {tag for s in load_examples("ccg", "dev", _files(JIANT))["en"] for tag in s.tags}
    assert dev_tags - seen and not (dev_tags - seen) & set(tag_set)
    assert has_open_labels("ccg") and not has_open_labels("udpos")
    with pytest.raises(InputError, match="open"):
        labels("ccg")


def test_reserved_unknown_tag_in_the_data_is_an_error():
    sentence = TaggedSentence(id="train-en-7", tokens=("a",), tags=(UNKNOWN_TAG,), language="en")
    with pytest.raises(InputError, match="train-en-7.*reserved"):
        derive_tag_set([sentence])


def _task(metric_task: str = "ccg") -> TaggingTask:
    return TaggingTask(get_task(metric_task), load_tokenizer(str(Path("stilts_jax/assets/tokenizer"))), max_length=64)


def test_tagging_task_derives_the_tag_set_even_when_only_an_evaluation_split_is_loaded():
    source = _files(JIANT)
    trained = _task()
    trained.load("train", source, ["en"])
    evaluating = _task()
    assert evaluating.labels == ()
    with pytest.raises(ValueError, match="load a split"):
        evaluating.head(16, None)
    evaluating.load("dev", source, ["en"])  # a later phase: the same set, rebuilt from the training file
    assert evaluating.labels == trained.labels == derive_tag_set(load_examples("ccg", "train", source)["en"])
    assert evaluating.columns[0] == ("accuracy", "accuracy")


def test_token_accuracy_counts_unseen_gold_tags_as_the_unknown_tag():
    task = _task()
    dev = task.load("dev", _files(JIANT), ["en"])["en"]
    gold = [list(s.tags) for s in dev]
    assert task.score(gold, dev)["accuracy"] < 100.0  # the unseen tag cannot be predicted as itself
    as_scored = [task.gold_tags(s) for s in dev]
    assert task.score(as_scored, dev)["accuracy"] == 100.0
    total = sum(len(t) for t in gold)
    unseen = sum(tag not in task.label_index for t in gold for tag in t)
    assert unseen == 1
    assert task.score(gold, dev)["accuracy"] == pytest.approx(100.0 * (total - unseen) / total)
    wrong_first = [["N"] + tags[1:] for tags in as_scored]
    changed = sum(tags[0] != "N" for tags in as_scored)
    assert task.score(wrong_first, dev)["accuracy"] == pytest.approx(100.0 * (total - changed) / total)
    assert set(task.baseline(dev)) == {"baseline_accuracy"}


def test_udpos_and_panx_keep_seqeval_f1():
    for name in ("udpos", "panx"):
        task = _task(name)
        assert task.columns[0] == ("f1", "F1") and not task.open_tag_set
    panx = _task("panx")
    sentences = [TaggedSentence(id="s", tokens=("a", "b", "c"), tags=("B-PER", "I-PER", "O"), language="en")]
    assert panx.score([["B-PER", "I-PER", "O"]], sentences) == {"f1": 100.0, "precision": 100.0, "recall": 100.0}
    assert panx.score([["B-PER", "O", "O"]], sentences)["f1"] == 0.0  # token accuracy would give 66.7


@pytest.mark.parametrize("kind", ["hf", "tfds", "xtreme"])
def test_other_source_kinds_say_why_ccg_needs_files(kind):
    with pytest.raises(InputError) as err:
        load_examples("ccg", "train", {"kind": kind})
    message = str(err.value)
    assert "LDC" in message and "'files'" in message and "jiant" in message


def test_files_folder_without_the_split_names_the_expected_files(tmp_path):
    (tmp_path / "ccg.train").write_text("a dog .\tNP[nb]/N N .\n", encoding="utf-8")
    assert len(load_examples("ccg", "train", _files(tmp_path))["en"]) == 1
    with pytest.raises(InputError, match=r"ccg dev file not found in .*ccg\.dev or dev\.tsv"):
        load_examples("ccg", "dev", _files(tmp_path))


@pytest.mark.parametrize(
    "name, text, line, what",
    [
        ("ccg.train", "a dog .\tNP[nb]/N N .\nthe cat sleeps .\tNP[nb]/N N S[dcl]\\NP\n", 2, "4 words but 3 tags"),
        ("ccg.train", "a dog .\tNP[nb]/N N .\nthe cat\tNP[nb]/N\tN\n", 2, "3 tab-separated fields"),
        ("train.tsv", "a\tNP[nb]/N\ndog\tN\textra\n", 2, "3 tab-separated columns"),
        ("train.tsv", "a\tNP[nb]/N\ndog\t \n", 2, "empty tag"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, name, text, line, what):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TaskDataError) as err:
        load_examples("ccg", "train", {"kind": "files", "paths": {"train": str(path)}})
    assert f"{path} line {line}" in str(err.value) and what in str(err.value)


def test_jiant_task_config_paths_are_relative_to_the_config(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "ccg.train").write_text("a dog .\tNP[nb]/N N .\n", encoding="utf-8")
    config = tmp_path / "ccg_config.json"
    config.write_text(json.dumps({"task": "ccg", "paths": {"train": "data/ccg.train"}, "name": "ccg"}))
    assert load_examples("ccg", "train", _files(config))["en"][0].tokens == ("a", "dog", ".")
    config.write_text(json.dumps({"task": "ccg"}))
    with pytest.raises(InputError, match="paths"):
        load_examples("ccg", "train", _files(config))
