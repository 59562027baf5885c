"""`python -m stilts_jax.inspect`: the features the model gets, per family, from the pipeline's own code path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stilts_jax import inspect as inspect_module
from stilts_jax.data.task_sources import load_examples

FIXTURES = Path(__file__).parent / "fixtures" / "tasks" / "xtreme"
DEMO = Path(__file__).parent.parent / "stilts_jax" / "assets" / "demo"


def _run(tmp_path: Path, config: list[str], *options: str) -> list[dict]:
    output = tmp_path / "features.jsonl"
    assert inspect_module.main([*config, *options, f"--output={output}"]) == 0
    return [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]


def _xtreme(target: str, xlmr_dir: Path) -> list[str]:
    return [
        f"--config=configs/stilts.py:intermediate=none,target={target}",
        f"--config.model.name={xlmr_dir}",
        "--config.target.source.kind=xtreme",
        f"--config.target.source.path={FIXTURES}",
        "--config.target.max_length=16",
        "--config.evaluation.split=dev",
    ]


def test_span_qa_windows_carry_the_answer_where_the_window_holds_it(tmp_path):
    config = [
        "--config=configs/demo.py",
        f"--config.model.name={tmp_path / 'tiny'}",
        "--config.target.max_length=96",
        "--config.target.doc_stride=16",
    ]
    records = _run(tmp_path, config, "--phase=target", "--split=test", "--language=sw", "--limit=4")
    assert {r["language"] for r in records} == {"sw"} and len({r["example_id"] for r in records}) == 4
    examples = {ex.id: ex for ex in load_examples_qa()}
    assert len(records) > 4  # long contexts give several windows
    answered = [r for r in records if r["answer_tokens"] is not None]
    assert answered and any(r["answer_tokens"] is None for r in records)
    for r in records:
        assert r["tokens"][0] == "<s>" and r["tokens"][-1] == "</s>" and len(r["tokens"]) <= 96
        assert r["feature"] == sum(q["example_id"] == r["example_id"] for q in records[: records.index(r)])
    for r in answered:
        gold = examples[r["example_id"]].answers[0].text
        start, end = r["answer_tokens"]
        assert r["answer_text"].strip() == gold
        assert "".join(r["tokens"][start : end + 1]).replace("\u2581", " ").strip() == gold.strip()


def load_examples_qa():
    from stilts_jax.data.task_sources import load_qa

    return load_qa("tydiqa", "dev", {"kind": "xtreme", "path": str(DEMO)}, ["sw"])["sw"]


def test_tagging_labels_sit_on_each_words_first_piece_and_long_sentences_come_in_parts(tmp_path, xlmr_dir):
    records = _run(tmp_path, _xtreme("panx", xlmr_dir), "--phase=target", "--split=train", "--limit=3")
    sentences = {
        s.id: s for s in load_examples("panx", "train", {"kind": "xtreme", "path": str(FIXTURES)}, ["en"])["en"]
    }
    assert any(r["feature"] > 0 for r in records)  # 16 tokens: some sentence is split
    by_sentence: dict[str, list[str]] = {}
    for r in records:
        assert len(r["labels"]) == len(r["tokens"]) and r["labels"][0] is None and r["labels"][-1] is None
        by_sentence.setdefault(r["example_id"], []).extend(tag for tag in r["labels"] if tag is not None)
    for sentence_id, tags in by_sentence.items():
        assert tags == list(sentences[sentence_id].tags)  # every word, in order, across the parts


@pytest.mark.parametrize("target", ["xnli", "xcopa"])
def test_classification_and_multiple_choice_show_the_label(target, tmp_path, xlmr_dir):
    records = _run(tmp_path, _xtreme(target, xlmr_dir), "--phase=target", "--split=test", "--language=zh")
    assert records and all(r["language"] == "zh" and r["label"] is not None for r in records)
    if target == "xcopa":
        assert all(len(r["tokens"]) == 2 and r["tokens"][0][0] == "<s>" for r in records)
        assert all(r["label"] in (0, 1) for r in records)
    else:
        assert all(
            r["tokens"][0] == "<s>" and r["label"] in ("entailment", "neutral", "contradiction") for r in records
        )


def test_bad_requests_are_errors_naming_the_fix(tmp_path, xlmr_dir, capsys):
    output = tmp_path / "x.jsonl"
    assert inspect_module.main([*_xtreme("xnli", xlmr_dir), "--phase=intermediate", f"--output={output}"]) == 2
    assert "baseline" in capsys.readouterr().err
    assert inspect_module.main([*_xtreme("tatoeba", xlmr_dir), "--split=test", f"--output={output}"]) == 2
    assert "retrieval" in capsys.readouterr().err
    assert not output.exists()


def test_the_records_are_the_features_the_trainer_gets(tmp_path):
    """No second featurizer: the tokens shown are the rows SpanQATask.train_features gives the training loop."""
    from stilts_jax.core.tokenization import load_demo_tokenizer
    from stilts_jax.tasks.registry import get_task
    from stilts_jax.tasks.span_qa import SpanQATask

    config = ["--config=configs/demo.py", f"--config.model.name={tmp_path / 'tiny'}"]
    records = _run(tmp_path, config, "--phase=intermediate", "--split=train", "--limit=6")
    tokenizer = load_demo_tokenizer()
    from stilts_jax.data.task_sources import load_qa

    examples = load_qa("squad", "train", {"kind": "xtreme", "path": str(DEMO)}, ["en"])["en"][:6]
    task = SpanQATask(get_task("squad"), tokenizer, max_length=160, doc_stride=64)
    arrays = task.train_features(examples)
    assert len(records) == len(arrays["input_ids"])
    for r, ids, mask, start, end in zip(
        records, arrays["input_ids"], arrays["attention_mask"], arrays["start_positions"], arrays["end_positions"]
    ):
        assert r["tokens"] == tokenizer.convert_ids_to_tokens(ids[: mask.sum()].tolist())
        assert r["answer_tokens"] == ([int(start), int(end)] if (start, end) != (0, 0) else None)
