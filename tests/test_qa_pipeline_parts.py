"""QA records, features and post-processing: bad records are named, labels map back to the gold answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stilts_jax.core.tokenization import load_demo_tokenizer
from stilts_jax.data.qa import Answer, QADataError, QAExample, read_squad_json, to_squad_dict
from stilts_jax.data.qa_features import featurize_qa
from stilts_jax.demo.qa_data import tydiqa_examples
from stilts_jax.evaluation.qa_postprocess import best_answers
from stilts_jax.evaluation.squad_metric import squad_scores


def _write(tmp_path, data, name="data.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data, ensure_ascii=False))
    return path


def test_bad_records_are_errors_that_name_the_file_and_record(tmp_path):
    good = QAExample("q1", "When?", "Built in 1889.", (Answer("1889", 9),), "en")
    assert read_squad_json(_write(tmp_path, to_squad_dict([good])), language="en") == [good]

    broken = tmp_path / "broken.json"
    broken.write_text('{"data": [\n{"paragraphs": [}\n]}')
    with pytest.raises(QADataError, match=r"broken.json: malformed JSON at line 2"):
        read_squad_json(broken, language="en")

    shifted = to_squad_dict([QAExample("q7", "When?", "Built in 1889.", (Answer("1889", 8),), "en")])
    with pytest.raises(
        QADataError, match=r"shifted.json: data\[0\].paragraphs\[0\].qas\[0\]: question 'q7': answer '1889' at offset 8"
    ):
        read_squad_json(_write(tmp_path, shifted, "shifted.json"), language="en")

    empty = to_squad_dict([good])
    empty["data"][0]["paragraphs"][0]["context"] = "  "
    with pytest.raises(QADataError, match=r"empty.json: .*question 'q1' has an empty context"):
        read_squad_json(_write(tmp_path, empty, "empty.json"), language="en")

    missing = to_squad_dict([good])
    del missing["data"][0]["paragraphs"][0]["qas"][0]["question"]
    with pytest.raises(
        QADataError, match=r"missing.json: data\[0\].paragraphs\[0\].qas\[0\]: malformed record \(KeyError"
    ):
        read_squad_json(_write(tmp_path, missing, "missing.json"), language="en")


@pytest.mark.parametrize("language", ["en", "ru", "ar", "ko", "te"])
def test_gold_labels_survive_windows_and_map_back_to_the_answer_text(language):
    tokenizer = load_demo_tokenizer()
    examples = tydiqa_examples(language, 12, seed=5, split="test")
    # Short windows force long contexts into several overlapping ones.
    features = featurize_qa(examples, tokenizer, max_length=96, doc_stride=24, max_query_length=32)
    assert len(features) > len(examples)
    labelled = features.arrays["start_positions"] > 0
    assert labelled.any() and (~labelled).any()  # windows without the answer point at <s>
    start = np.full(features.arrays["input_ids"].shape, -10.0)
    end = np.full(features.arrays["input_ids"].shape, -10.0)
    rows = np.arange(len(features))
    start[rows, features.arrays["start_positions"]] = np.where(labelled, 10.0, -10.0)
    end[rows, features.arrays["end_positions"]] = np.where(labelled, 10.0, -10.0)
    predictions = best_answers(examples, features, start, end)
    references = {ex.id: [ex.answers[0].text] for ex in examples}
    assert squad_scores(predictions, references) == {"exact_match": 100.0, "f1": 100.0}


def test_windows_that_cannot_hold_the_stride_are_refused():
    tokenizer = load_demo_tokenizer()
    with pytest.raises(ValueError, match="leaves 28 context tokens after a 64-token question"):
        featurize_qa(tydiqa_examples("en", 2, 0, "x"), tokenizer, max_length=96, doc_stride=32)


def test_post_processing_respects_length_and_order_limits():
    tokenizer = load_demo_tokenizer()
    example = QAExample("q", "Which?", "alpha beta gamma delta epsilon", (Answer("gamma", 11),), "en")
    features = featurize_qa([example], tokenizer, max_length=32, doc_stride=8, max_query_length=8)
    context_tokens = np.nonzero(features.offsets[0, :, 0] >= 0)[0]
    start = np.zeros((1, 32))
    end = np.zeros((1, 32))
    start[0, context_tokens[-1]] = 9.0  # best start after the best end: invalid
    end[0, context_tokens[0]] = 9.0
    start[0, context_tokens[1]] = 5.0
    end[0, context_tokens[2]] = 5.0
    answer = best_answers([example], features, start, end)["q"]
    assert answer and answer in example.context
    assert best_answers([example], features, start, end, max_answer_length=1)["q"] != answer


def test_shipped_demo_data_is_what_the_generator_writes(tmp_path):
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root / "tools"))
    import make_demo_data

    make_demo_data.main(["--output", str(tmp_path)])
    for relative in make_demo_data.LAYOUT.values():
        assert (tmp_path / relative).read_bytes() == (
            root / "stilts_jax" / "assets" / "demo" / relative
        ).read_bytes(), relative


def test_dev_features_are_built_once_for_repeated_evaluations(monkeypatch):
    from stilts_jax.tasks import span_qa
    from stilts_jax.tasks.registry import get_task

    calls = []
    original = span_qa.featurize_qa
    monkeypatch.setattr(span_qa, "featurize_qa", lambda *a, **k: calls.append(1) or original(*a, **k))
    task = span_qa.SpanQATask(get_task("tydiqa"), load_demo_tokenizer(), max_length=128, doc_stride=32)
    dev, other = tydiqa_examples("en", 4, 1, "dev"), tydiqa_examples("en", 4, 2, "dev")
    first = task._inference_features(dev)
    assert task._inference_features(list(dev)) is first and len(calls) == 1  # same questions: reused
    assert [ex.id for ex in other] == [ex.id for ex in dev]  # same ids, other text (as XQuAD across languages)
    task._inference_features(other)
    assert len(calls) == 2  # other questions: featurized anew
