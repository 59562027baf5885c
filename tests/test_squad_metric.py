"""SQuAD v1.1 EM/F1 on hand-checked cases."""

import pytest

from stilts_jax.evaluation.squad_metric import exact_match, f1, normalize_answer, squad_scores


def test_normalisation_drops_case_punctuation_articles_and_extra_space():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("Theatre") == "theatre"  # 'the' only as a word
    assert normalize_answer("“Nile”") == "“nile”"  # only ASCII punctuation, as the official script


def test_exact_match_and_f1_by_hand():
    assert exact_match("the Nile", "Nile") == 1.0
    assert exact_match("Nile river", "Nile") == 0.0
    # prediction "nile river" vs gold "nile": precision 1/2, recall 1 -> F1 2/3
    assert f1("Nile river", "Nile") == pytest.approx(2 / 3)
    assert f1("1889", "in 1889") == pytest.approx(2 / 3)
    assert f1("Paris", "London") == 0.0
    assert f1("", "London") == 0.0


def test_scores_take_the_best_reference_and_count_missing_predictions_as_zero():
    refs = {"q1": ["1889", "in 1889"], "q2": ["Gutenberg"], "q3": ["Mount Everest"]}
    preds = {"q1": "in 1889", "q2": "Johannes Gutenberg"}
    scores = squad_scores(preds, refs)
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3 + 0) / 3)
