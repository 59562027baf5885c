"""Multiple-choice model inputs are the (prompt, choice) pairs the published code builds.

For each task the shipped fixture goes through the real loader and MultipleChoiceTask's encoding; the two segments of
every encoded row, decoded, must be the strings that jiant (nyu-mll/jiant jiant/tasks/lib/*.py, the paper's code)
or, for the XCOPA target, google-research/xtreme third_party/run_xcopa.py builds from the raw record, which the test
computes on its own from the fixture file.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from stilts_jax.core.tokenization import load_demo_tokenizer
from stilts_jax.data.examples import ChoiceExample
from stilts_jax.data.task_sources import DATASETS, READERS, load_examples
from stilts_jax.tasks.families import make_task
from stilts_jax.tasks.registry import get_task
from tests.intermediate_sources import SOURCES, TASKS

XTREME = TASKS / "xtreme"
XTREME_SOURCE = {"kind": "xtreme", "path": str(XTREME)}


@pytest.fixture(scope="module")
def tokenizer():
    return load_demo_tokenizer()


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# The published constructions, from the raw records: (prompt, [choice, ...]) per record.


def hellaswag_pairs(path: Path) -> list[tuple[str, list[str]]]:  # jiant/tasks/lib/hellaswag.py:56-57
    return [(row["ctx_a"], [row["ctx_b"] + " " + ending for ending in row["endings"]]) for row in jsonl(path)]


def cosmos_pairs(path: Path) -> list[tuple[str, list[str]]]:  # jiant/tasks/lib/cosmosqa.py:62-63
    with path.open(encoding="utf-8", newline="") as f:
        return [
            (row["context"] + " " + row["question"], [row[f"answer{i}"] for i in range(4)]) for row in csv.DictReader(f)
        ]


def copa_pairs(path: Path) -> list[tuple[str, list[str]]]:  # jiant/tasks/lib/copa.py:41-44, 59-65
    question = {"cause": "What was the cause of this?", "effect": "What happened as a result?"}
    return [(row["premise"] + " " + question[row["question"]], [row["choice1"], row["choice2"]]) for row in jsonl(path)]


def xcopa_pairs(path: Path) -> list[tuple[str, list[str]]]:  # run_xcopa.py preprocess_function (L288-333)
    return [
        (f"{row['premise']} What was the {row['question']}?", [row["choice1"], row["choice2"]]) for row in jsonl(path)
    ]


def siqa_pairs(path: Path) -> list[tuple[str, list[str]]]:  # jiant/tasks/lib/socialiqa.py:68-69
    return [
        (row["context"] + " " + row["question"], [row[k] for k in ("answerA", "answerB", "answerC")])
        for row in jsonl(path)
    ]


def csqa_pairs(path: Path) -> list[tuple[str, list[str]]]:  # jiant/tasks/lib/commonsenseqa.py:83-89
    pairs = []
    for row in jsonl(path):
        by_label = {c["label"]: c["text"] for c in row["question"]["choices"]}
        pairs.append((row["question"]["stem"], [by_label[k] for k in "ABCDE"]))
    return pairs


def segments(tokenizer, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[list[int], list[int]]:
    """(first, second) segment ids of one XLM-R row `<s> first </s></s> second </s> <pad>...`."""
    row = input_ids[: int(attention_mask.sum())].tolist()
    assert not attention_mask[len(row) :].any() and (input_ids[len(row) :] == tokenizer.pad_token_id).all()
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    first_end = row.index(sep)
    assert row[0] == cls and row[first_end + 1] == sep and row[-1] == sep
    return row[1:first_end], row[first_end + 2 : -1]


def assert_decodes_to(tokenizer, ids: list[int], expected: str) -> None:
    """The segment is the tokenization of `expected`, and decodes back to it (whitespace runs as one space, as
    XLM-R's normalizer takes them; the small shipped tokenizer has no piece for a few characters, such as `?`, which
    it encodes as <unk>: an <unk> matches the characters it stands for)."""
    assert ids == tokenizer(expected, add_special_tokens=False)["input_ids"]
    decoded = tokenizer.decode(ids)
    text = " ".join(expected.split())
    pattern = ".+?".join(re.escape(part) for part in decoded.split(tokenizer.unk_token))
    assert re.fullmatch(pattern, text), (decoded, text)
    if tokenizer.unk_token not in decoded:
        assert decoded == text


CASES = {
    "hellaswag": (SOURCES["hellaswag"], ["en"], {"en": hellaswag_pairs(TASKS / "hellaswag" / "hellaswag_val.jsonl")}),
    "cosmosqa": (SOURCES["cosmosqa"], ["en"], {"en": cosmos_pairs(TASKS / "cosmosqa" / "valid.csv")}),
    "copa": (SOURCES["copa"], ["en"], {"en": copa_pairs(TASKS / "copa" / "COPA" / "val.jsonl")}),
    "siqa": (XTREME_SOURCE, ["en"], {"en": siqa_pairs(XTREME / "siqa" / "socialIQa_v1.4_dev.jsonl")}),
    "commonsenseqa": (
        SOURCES["commonsenseqa"],
        ["en"],
        {"en": csqa_pairs(TASKS / "commonsenseqa" / "dev_rand_split.jsonl")},
    ),
    # XCOPA's languages are read as the xcopa dataset; its English (COPA's dev set, for model selection) through
    # the copa dataset, whose reader asks jiant's question: the task rewords it as XTREME-R does.
    "xcopa": (
        XTREME_SOURCE,
        ["zh", "et", "en"],
        {
            "zh": xcopa_pairs(XTREME / "xcopa" / "val-zh.jsonl"),
            "et": xcopa_pairs(XTREME / "xcopa" / "val-et.jsonl"),
            "en": xcopa_pairs(XTREME / "xcopa" / "val-en.jsonl"),
        },
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_encoded_segments_are_the_published_prompt_and_choices(name, tokenizer):
    source, languages, expected = CASES[name]
    task = make_task(get_task(name), tokenizer, max_length=256)
    loaded = task.load("dev", source, languages)
    for lang, examples in loaded.items():
        pairs = expected[lang]
        assert len(examples) == len(pairs) > 0
        arrays = task._encode(examples)
        width = max(len(choices) for _, choices in pairs)
        assert arrays["input_ids"].shape == (len(pairs), width, 256)
        for i, (ex, (prompt, choices)) in enumerate(zip(examples, pairs)):
            assert (ex.prompt, ex.choices) == (prompt, tuple(choices))
            for c, choice in enumerate(choices):
                first, second = segments(tokenizer, arrays["input_ids"][i, c], arrays["attention_mask"][i, c])
                assert_decodes_to(tokenizer, first, prompt)
                assert_decodes_to(tokenizer, second, choice)
                # Untruncated, the row is the tokenizer's own pair encoding.
                encoded = tokenizer(prompt, choice)["input_ids"]
                assert arrays["input_ids"][i, c, : len(encoded)].tolist() == encoded


def test_xcopa_and_copa_word_the_same_record_their_own_way(tokenizer):
    copa = make_task(get_task("copa"), tokenizer, max_length=64)
    xcopa = make_task(get_task("xcopa"), tokenizer, max_length=64)
    record = jsonl(XTREME / "xcopa" / "train-en.jsonl")[0]
    assert record["question"] == "cause"
    jiant_first = copa.load("train", XTREME_SOURCE, ["en"])["en"][0]
    xtreme_first = xcopa.load("train", XTREME_SOURCE, ["en"])["en"][0]
    assert jiant_first.prompt == f"{record['premise']} What was the cause of this?"
    assert xtreme_first.prompt == f"{record['premise']} What was the cause?"
    assert jiant_first.choices == xtreme_first.choices == (record["choice1"], record["choice2"])
    # The loader gives XCOPA's English dev set as COPA's (jiant's wording); the XCOPA task rewords it.
    val_en = XTREME / "xcopa" / "val-en.jsonl"
    assert [ex.prompt for ex in load_examples("xcopa", "dev", XTREME_SOURCE, ["en"])["en"]] == [
        prompt for prompt, _ in copa_pairs(val_en)
    ]
    dev = xcopa.load("dev", XTREME_SOURCE, ["en"])["en"]
    assert [ex.prompt for ex in dev] == [prompt for prompt, _ in xcopa_pairs(val_en)]


def jiant_truncate(prompt: list[int], choice: list[int], budget: int) -> tuple[list[int], list[int]]:
    """jiant/tasks/utils.py:57-67 truncate_sequences(..., truncate_end=False)."""
    lengths = np.array([len(prompt), len(choice)])
    if lengths.sum() < budget:
        return prompt, choice
    while lengths.sum() > budget:
        lengths[np.argmax(lengths)] -= 1
    return prompt[len(prompt) - lengths[0] :], choice[len(choice) - lengths[1] :]


def test_long_pairs_lose_tokens_from_the_start_of_the_longer_segment_as_in_jiant(tokenizer):
    context = "Yesterday the teacher felt tired, so she stayed in the park and said nothing to the baker"
    examples = [
        ChoiceExample(
            id=str(n),
            prompt=" ".join([context] * n) + " Where did she stay?",
            choices=(
                "Because the park was quiet and the baker was " + "very " * m + "kind.",
                "She wanted to see a cat.",
            ),
            label=0,
            language="en",
        )
        for n, m in ((1, 0), (1, 30), (3, 0), (3, 12), (4, 40))
    ]
    for max_length in (16, 31, 48):
        task = make_task(get_task("cosmosqa"), tokenizer, max_length=max_length)
        arrays = task._encode(examples)
        for i, ex in enumerate(examples):
            for c, choice in enumerate(ex.choices):
                prompt_ids = tokenizer(ex.prompt, add_special_tokens=False)["input_ids"]
                choice_ids = tokenizer(choice, add_special_tokens=False)["input_ids"]
                want = jiant_truncate(prompt_ids, choice_ids, max_length - 4)
                first, second = segments(tokenizer, arrays["input_ids"][i, c], arrays["attention_mask"][i, c])
                assert (first, second) == want
                assert len(first) + len(second) + 4 == min(max_length, len(prompt_ids) + len(choice_ids) + 4)
    # The end of the prompt, where Cosmos QA's question is, survives.
    first, _ = segments(tokenizer, arrays["input_ids"][4, 0], arrays["attention_mask"][4, 0])
    assert first == tokenizer(examples[4].prompt, add_special_tokens=False)["input_ids"][-len(first) :]


def test_xcopa_truncates_ends_as_run_xcopa_does(tokenizer):
    # run_xcopa.py: tokenizer(first, second, truncation=True) cuts the segments' ends (not that COPA pairs ever
    # reach max_length).
    example = ChoiceExample(
        id="0",
        prompt="The woman brings a baker to the park and the harbor. What was the cause?",
        choices=("She wanted to see a cat in the park.", "x"),
        label=0,
        language="en",
    )
    task = make_task(get_task("xcopa"), tokenizer, max_length=20)
    arrays = task._encode([example])
    first, second = segments(tokenizer, arrays["input_ids"][0, 0], arrays["attention_mask"][0, 0])
    prompt_ids = tokenizer(example.prompt, add_special_tokens=False)["input_ids"]
    choice_ids = tokenizer(example.choices[0], add_special_tokens=False)["input_ids"]
    assert len(first) + len(second) == 16 and first == prompt_ids[: len(first)] and second == choice_ids[: len(second)]


def test_fewer_choices_are_padded_and_masked_and_bert_pairs_take_one_separator(tokenizer):
    from transformers import BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "park", "woman", "she", "left", "stayed", "."]
    bert = BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    examples = [
        ChoiceExample(
            id="a", prompt="the woman stayed .", choices=("she left .", "she stayed ."), label=1, language="en"
        ),
        ChoiceExample(id="b", prompt="the park .", choices=("she left .",), label=0, language="en"),
    ]
    task = make_task(get_task("commonsenseqa"), bert, max_length=12)
    arrays = task._encode(examples)
    assert arrays["choice_mask"].tolist() == [[1, 1], [1, 0]]
    row = arrays["input_ids"][0, 1][: arrays["attention_mask"][0, 1].sum()].tolist()
    assert row == bert("the woman stayed .", "she stayed .")["input_ids"] == [2, 5, 7, 10, 11, 3, 8, 10, 11, 3]
    assert (arrays["input_ids"][0, 1, len(row) :] == bert.pad_token_id).all()


def test_tfds_hellaswag_has_no_ctx_split():
    # tensorflow_datasets/text/hellaswag.py keeps only `context` (the file's ctx = ctx_a + " " + ctx_b).
    row = {
        "context": "A woman brings a baker to the park. she",
        "endings": ["holds the baker.", "walks away."],
        "activity_label": "Walking",
        "label": 1,
        "split_type": "indomain",
    }
    ex = READERS["hellaswag"](DATASETS["hellaswag"], "hellaswag", row, "en", "dev-en-0", "record 0")
    assert ex.prompt == row["context"] and ex.choices == ("holds the baker.", "walks away.") and ex.label == 1
