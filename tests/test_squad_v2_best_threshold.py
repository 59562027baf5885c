"""SQuAD v2.0 best-threshold scores (evaluate-v2.0.py's find_best_thresh / find_all_best_thresh): cases worked out
by hand, and random data against a reference written here from the published script."""

from __future__ import annotations

import collections
import math
import random
import re
import string

import pytest

from stilts_jax.evaluation.metrics import squad_v2_best_thresholds, squad_v2_reachable_f1_threshold, squad_v2_scores
from stilts_jax.evaluation.retrieval_metrics import MetricInputError

# ---------------------------------------------------------------------------------------------------------------------
# By hand


def test_exact_and_f1_reach_their_best_at_different_thresholds():
    references = {"a": ["Denver Broncos"], "b": ["Paris"], "c": [], "d": []}
    predictions = {"a": "Denver Broncos", "b": "Paris France", "c": "Mainz", "d": ""}
    no_answer = {"a": -2.0, "b": 0.5, "c": 1.0, "d": -3.0}
    # Raw scores (exact, f1): a (1, 1); b "paris france" vs "paris": EM 0, P 1/2, R 1, F1 2/3; c unanswerable but a
    # span: (0, 0); d unanswerable and "": (1, 1).
    # Start (nothing answered): the 2 unanswerable questions right -> 2 of 4.
    # Ascending no-answer score: d -3.0 ("" on an unanswerable question: +0) -> 2; a -2.0 (+1) -> 3, best so far;
    # b 0.5 (+0 exact, +2/3 F1) -> exact 3 (not better), F1 3 2/3 (best); c 1.0 (a span where there is no answer: -1).
    result = squad_v2_best_thresholds(predictions, references, no_answer)
    assert result == {
        "best_exact": 100.0 * 3 / 4,
        "best_exact_thresh": -2.0,
        "best_f1": pytest.approx(100.0 * (3 + 2 / 3) / 4),
        "best_f1_thresh": 0.5,
    }
    # The v2 scorer adds the same keys and leaves its own unchanged: at the predictions as given, a, b (2/3 F1) and d
    # are right and c wrong.
    scores = squad_v2_scores(predictions, references, no_answer)
    assert scores["exact"] == 100.0 * 2 / 4 and scores["f1"] == pytest.approx(100.0 * (2 + 2 / 3) / 4)
    assert {k: scores[k] for k in result} == result
    assert scores == {**squad_v2_scores(predictions, references), **result}


def test_answering_nothing_best_is_reported_at_threshold_zero():
    # a: unanswerable, its span would cost 1; b: answerable, but the span is wrong. Start 1 of 2 (a right);
    # a (-1.0): 0; b (2.0): +0 -> 0. Nothing beats the start, so the script keeps its initial threshold 0.0, although
    # a threshold of 0.0 answers a (-1.0 <= 0.0) and scores 0 there.
    references = {"a": [], "b": ["x y"]}
    predictions = {"a": "span", "b": "wrong"}
    no_answer = {"a": -1.0, "b": 2.0}
    assert squad_v2_best_thresholds(predictions, references, no_answer) == {
        "best_exact": 50.0,
        "best_exact_thresh": 0.0,
        "best_f1": 50.0,
        "best_f1_thresh": 0.0,
    }
    # The reachable threshold answers nothing: the largest float below the smallest score.
    threshold = squad_v2_reachable_f1_threshold(predictions, references, no_answer)
    assert threshold < -1.0 and threshold == math.nextafter(-1.0, -math.inf)


def test_tied_scores_are_walked_in_the_mappings_order_and_may_be_split():
    references = {"a": ["yes"], "b": []}
    predictions = {"a": "yes", "b": "no"}
    # Both at 1.0. Order a, b: start 1 (b); a +1 -> 2, best, threshold 1.0; b -1 -> 1. The script reports 100 at
    # 1.0, though a threshold of 1.0 answers both and scores 50: the best lies inside the tie.
    assert squad_v2_best_thresholds(predictions, references, {"a": 1.0, "b": 1.0})["best_f1"] == 100.0
    assert squad_v2_best_thresholds(predictions, references, {"a": 1.0, "b": 1.0})["best_f1_thresh"] == 1.0
    # Order b, a: b -1 -> 0; a +1 -> 1, not better than the start: 50 at 0.0.
    flipped = squad_v2_best_thresholds(predictions, references, {"b": 1.0, "a": 1.0})
    assert (flipped["best_f1"], flipped["best_f1_thresh"]) == (50.0, 0.0)
    # Reachable thresholds take a tie whole: answering both (1 of 2) is no better than nothing (1 of 2).
    assert squad_v2_reachable_f1_threshold(predictions, references, {"a": 1.0, "b": 1.0}) < 1.0


def test_an_empty_prediction_counts_its_raw_score_on_answerable_and_nothing_on_unanswerable_questions():
    # a: "" on an unanswerable question: +0 wherever it is answered. b: "" on an answerable question: raw score 0.
    # c: answerable ("The" is a real answer) but its only reference normalises to "", so it is scored against [""]:
    # "" is right there (raw 1) and answering it adds 1. Start 1 (a); a (0.1) 1; b (0.2) 1; c (0.3) 2 -> best.
    references = {"a": [], "b": ["Denver"], "c": ["The"]}
    predictions = {"a": "", "b": "", "c": ""}
    result = squad_v2_best_thresholds(predictions, references, {"a": 0.1, "b": 0.2, "c": 0.3})
    assert result == {
        "best_exact": pytest.approx(100.0 * 2 / 3),
        "best_exact_thresh": 0.3,
        "best_f1": pytest.approx(100.0 * 2 / 3),
        "best_f1_thresh": 0.3,
    }


def test_reachable_threshold_ends_a_tie_run_and_prefers_the_smallest():
    references = {"a": ["one"], "b": [], "c": ["three"], "d": ["four"]}
    predictions = {"a": "one", "b": "", "c": "three", "d": "wrong"}
    # Runs: a (-1.0) +1 -> 2; b and c tied at 0.5: +0, +1 -> 3; d (2.0) +0 -> 3. Best 3 first reached at the end of
    # the run at 0.5 (2.0 only equals it).
    no_answer = {"a": -1.0, "b": 0.5, "c": 0.5, "d": 2.0}
    assert squad_v2_reachable_f1_threshold(predictions, references, no_answer) == 0.5
    assert squad_v2_best_thresholds(predictions, references, no_answer)["best_f1_thresh"] == 0.5


def test_unreferenced_scores_are_ignored_and_missing_or_nan_ones_refused():
    references = {"a": ["x"], "b": []}
    predictions = {"a": "x", "b": ""}
    base = squad_v2_best_thresholds(predictions, references, {"a": 0.0, "b": 1.0})
    assert squad_v2_best_thresholds(predictions, references, {"z": -5.0, "a": 0.0, "b": 1.0, "y": float("nan")}) == base
    with pytest.raises(MetricInputError, match=r"1 questions have no no-answer score \(first: 'b'\)"):
        squad_v2_best_thresholds(predictions, references, {"a": 0.0})
    with pytest.raises(MetricInputError, match=r"1 no-answer scores are NaN \(first: 'a'\)"):
        squad_v2_scores(predictions, references, {"a": float("nan"), "b": 0.0})
    with pytest.raises(MetricInputError, match="1 questions have no prediction"):
        squad_v2_best_thresholds({"a": "x"}, references, {"a": 0.0, "b": 1.0})


# ---------------------------------------------------------------------------------------------------------------------
# Random data against the published script (evaluate-v2.0.py), re-implemented here on its own JSON-shaped inputs

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def _reference_normalize(text):
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(_ARTICLES.sub(" ", text).split())


def _reference_exact(gold, predicted):
    return int(_reference_normalize(gold) == _reference_normalize(predicted))


def _reference_f1(gold, predicted):
    gold_tokens = _reference_normalize(gold).split() if gold else []
    predicted_tokens = _reference_normalize(predicted).split() if predicted else []
    if len(gold_tokens) == 0 or len(predicted_tokens) == 0:
        return int(gold_tokens == predicted_tokens)
    shared = sum((collections.Counter(gold_tokens) & collections.Counter(predicted_tokens)).values())
    if shared == 0:
        return 0
    precision = 1.0 * shared / len(predicted_tokens)
    recall = 1.0 * shared / len(gold_tokens)
    return (2 * precision * recall) / (precision + recall)


def _reference_best_thresholds(dataset, preds, na_probs):
    """The script's main() with --na-prob-file: get_raw_scores, make_qid_to_has_ans, find_all_best_thresh."""
    has_answer, exact_raw, f1_raw = {}, {}, {}
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                has_answer[qa["id"]] = bool(qa["answers"])
                golds = [a["text"] for a in qa["answers"] if _reference_normalize(a["text"])] or [""]
                if qa["id"] not in preds:
                    continue
                exact_raw[qa["id"]] = max(_reference_exact(g, preds[qa["id"]]) for g in golds)
                f1_raw[qa["id"]] = max(_reference_f1(g, preds[qa["id"]]) for g in golds)

    def find_best(raw):
        running = sum(1 for qid in has_answer if not has_answer[qid])
        best, best_thresh = running, 0.0
        for qid in sorted(na_probs, key=lambda k: na_probs[k]):
            if qid not in raw:
                continue
            if has_answer[qid]:
                step = raw[qid]
            else:
                step = -1 if preds[qid] else 0
            running += step
            if running > best:
                best, best_thresh = running, na_probs[qid]
        return 100.0 * best / len(raw), best_thresh

    best_exact, exact_thresh = find_best(exact_raw)
    best_f1, f1_thresh = find_best(f1_raw)
    return {
        "best_exact": best_exact,
        "best_exact_thresh": exact_thresh,
        "best_f1": best_f1,
        "best_f1_thresh": f1_thresh,
    }


_WORDS = ["the", "a", "Paris", "paris,", "Denver", "Broncos", "river", "1889", "of", "An", "!", "tower", "blue"]


def _random_text(rng, max_words=4):
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(0, max_words)))


@pytest.mark.parametrize("seed", range(40))
def test_random_questions_match_the_published_script_bit_for_bit(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 30)
    tied = rng.random() < 0.5  # few distinct scores: many ties, walked in the mapping's order
    qas, predictions, no_answer = [], {}, {}
    for i in range(n):
        qid = f"q{i}"
        answers = [{"text": _random_text(rng), "answer_start": 0} for _ in range(rng.choice([0, 0, 1, 2, 3]))]
        qas.append({"id": qid, "answers": answers})
        predictions[qid] = (
            ""
            if rng.random() < 0.25
            else (rng.choice(answers)["text"] if answers and rng.random() < 0.5 else _random_text(rng))
        )
        no_answer[qid] = float(rng.randint(-3, 3)) if tied else rng.gauss(0.0, 3.0)
    order = list(no_answer)
    rng.shuffle(order)
    no_answer = {qid: no_answer[qid] for qid in order}  # the score file's order is not the questions'
    dataset = [{"paragraphs": [{"qas": qas}]}]
    references = {qa["id"]: [a["text"] for a in qa["answers"]] for qa in qas}
    expected = _reference_best_thresholds(dataset, predictions, no_answer)
    assert squad_v2_best_thresholds(predictions, references, no_answer) == expected
    assert {
        k: v for k, v in squad_v2_scores(predictions, references, no_answer).items() if k.startswith("best")
    } == expected
