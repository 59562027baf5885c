"""seqeval entity F1, MLQA and SQuAD v2.0 EM/F1, accuracy and mAP@k on hand-checked cases."""

import json
from pathlib import Path

import pytest

from stilts_jax.evaluation.metrics import (
    accuracy_score,
    map_at_k_by_id,
    mlqa_exact_match,
    mlqa_f1,
    mlqa_mixed_segmentation,
    mlqa_normalize_answer,
    mlqa_scores,
    seqeval_entities,
    seqeval_f1,
    squad_v2_scores,
)
from stilts_jax.evaluation.retrieval_metrics import MetricInputError
from stilts_jax.evaluation.squad_metric import normalize_answer as squad_normalize_answer
from stilts_jax.evaluation.xtreme_tasks import XTREME_TASK2LANGS

FIXTURES = Path(__file__).parent / "fixtures" / "scorer"


# ---------------------------------------------------------------------------------------------------------------------
# seqeval: BIO / IOBES spans


def test_a_span_starting_with_i_opens_an_entity():
    # O -> I-PER: "I after O" starts a chunk; I-PER I-PER continue it; the separator O closes it: PER 0..1.
    assert seqeval_entities([["I-PER", "I-PER", "O"]]) == [("PER", 0, 1)]


def test_a_type_change_inside_a_span_splits_it():
    # B-PER then I-LOC: the type changes, so PER ends at 0 and a LOC chunk starts at 1.
    assert seqeval_entities([["B-PER", "I-LOC"]]) == [("PER", 0, 0), ("LOC", 1, 1)]
    # B after I of the same type closes the first entity and opens a second.
    assert seqeval_entities([["B-PER", "I-PER", "B-PER"]]) == [("PER", 0, 1), ("PER", 2, 2)]


def test_entities_end_at_the_sentence_end_and_positions_count_separators():
    # Sentence 1 is positions 0-2, its separator "O" is 3, sentence 2 starts at 4. LOC 1..2 closes at the sentence end;
    # the I-LOC opening sentence 2 starts a new entity instead of continuing the first one.
    assert seqeval_entities([["O", "B-LOC", "I-LOC"], ["I-LOC"]]) == [("LOC", 1, 2), ("LOC", 4, 4)]


def test_iobes_tags_in_the_default_mode():
    # E-PER ends PER 0..1; S-LOC is a one-token entity; I-LOC after S starts a new LOC chunk, closed by the separator.
    assert seqeval_entities([["B-PER", "E-PER", "S-LOC", "I-LOC"]]) == [("PER", 0, 1), ("LOC", 2, 2), ("LOC", 3, 3)]


def test_all_o_scores_zero_and_missing_entities_score_zero():
    # No entity on either side: precision and recall have zero denominators, seqeval returns 0 for all three.
    assert seqeval_f1([["O", "O"]], [["O", "O"]]) == {"f1": 0.0, "precision": 0.0, "recall": 0.0}
    # Gold has one entity, nothing predicted: 0 correct, precision 0 (no predictions), recall 0/1.
    assert seqeval_f1([["B-PER", "O"]], [["O", "O"]]) == {"f1": 0.0, "precision": 0.0, "recall": 0.0}


def test_entity_f1_by_hand():
    # gold {PER 0-1, LOC 3-3}, predicted {PER 0-1, ORG 3-3}: 1 correct of 2 and 2 -> P = R = F1 = 1/2.
    scores = seqeval_f1([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "B-ORG"]])
    assert scores == pytest.approx({"f1": 50.0, "precision": 50.0, "recall": 50.0})
    # gold {PER 0-1, LOC 4-4} (separator at 3); predicted I-PER I-PER = PER 0-1 and nothing in sentence 2:
    # P = 1/1, R = 1/2, F1 = 2 * 1 * 1/2 / (3/2) = 2/3.
    scores = seqeval_f1([["B-PER", "I-PER", "O"], ["B-LOC"]], [["I-PER", "I-PER", "O"], ["O"]])
    assert scores == pytest.approx({"f1": 200 / 3, "precision": 100.0, "recall": 50.0})


# ---------------------------------------------------------------------------------------------------------------------
# seqeval on UD-POS tags (evaluate.py passes them unconverted)


def test_pos_tags_form_runs_of_equal_tags_except_s_tags():
    # seqeval 0.0.12: the type is the whole tag, the chunk tag its first letter. DET | NOUN NOUN | VERB.
    assert seqeval_entities([["DET", "NOUN", "NOUN", "VERB"]]) == [("DET", 0, 0), ("NOUN", 1, 2), ("VERB", 3, 3)]
    # SCONJ and SYM start with S ("single"): every token is its own chunk; INTJ (I) and X merge like the rest.
    assert seqeval_entities([["SCONJ", "SCONJ", "SYM", "SYM"]]) == [
        ("SCONJ", 0, 0),
        ("SCONJ", 1, 1),
        ("SYM", 2, 2),
        ("SYM", 3, 3),
    ]
    assert seqeval_entities([["INTJ", "INTJ", "X", "X"]]) == [("INTJ", 0, 1), ("X", 2, 3)]


def test_pos_f1_by_hand():
    # gold DET | NOUN NOUN | VERB (3 chunks), predicted DET | NOUN | VERB VERB (3 chunks): only DET 0-0 matches.
    # P = R = F1 = 1/3, although 3 of 4 tags are right.
    scores = seqeval_f1([["DET", "NOUN", "NOUN", "VERB"]], [["DET", "NOUN", "VERB", "VERB"]])
    assert scores == pytest.approx({"f1": 100 / 3, "precision": 100 / 3, "recall": 100 / 3})


def test_seqeval_1x_reads_pos_types_differently():
    # seqeval >= 0.0.18 takes the type from the tag minus its first letter: CCONJ and SCONJ share type "CONJ". At
    # SCONJ nothing ends (same type, C is no chunk tag) but S starts a chunk, so the CCONJ chunk is lost.
    assert seqeval_entities([["CCONJ", "SCONJ"]], seqeval_version="1.2.2") == [("CONJ", 1, 1)]
    assert seqeval_entities([["CCONJ", "SCONJ"]]) == [("CCONJ", 0, 0), ("SCONJ", 1, 1)]
    # X gets type "_", the type of the separator "O", so an X ending a sentence is never closed and disappears.
    assert seqeval_entities([["NOUN", "X"], ["NOUN"]], seqeval_version="1.2.2") == [("OUN", 0, 0), ("OUN", 3, 3)]
    assert seqeval_entities([["NOUN", "X"], ["NOUN"]]) == [("NOUN", 0, 0), ("X", 1, 1), ("NOUN", 3, 3)]
    # BIO tags read alike in both.
    bio = [["I-PER", "B-LOC", "I-LOC", "O", "B-ORG"]]
    assert seqeval_entities(bio, seqeval_version="1.2.2") == seqeval_entities(bio)


def _tag_file_sentences(text):
    sentences, current = [], []
    for line in text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"):
        if line.strip():
            current.append(line.strip())
        else:
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    return sentences


def test_xtreme_mock_udpos_submission_gives_evaluate_test_values():
    # xtreme evaluate_test.py expects these averages for its mock UD-POS submission (33 languages).
    data = json.loads((FIXTURES / "xtreme_mock_udpos.json").read_text(encoding="utf-8"))
    per_metric = {"f1": [], "precision": [], "recall": []}
    for lang in XTREME_TASK2LANGS["udpos"]:
        files = data["languages"][lang]
        scores = seqeval_f1(_tag_file_sentences(files["labels"]), _tag_file_sentences(files["predictions"]))
        for metric, values in per_metric.items():
            values.append(scores[metric])
    averages = {f"avg_{m}": sum(v) / len(v) for m, v in per_metric.items()}
    # As evaluate.py computes them (sum / len), to the last bit but one: Python 3.12's sum of floats is compensated.
    assert averages == pytest.approx(data["expected_seqeval_0.0.12"], rel=1e-14, abs=0)


def test_seqeval_rejects_misaligned_input():
    with pytest.raises(MetricInputError, match="sentence 1 has 1 predicted tags but 2 gold"):
        seqeval_f1([["O"], ["B-PER", "O"]], [["O"], ["B-PER"]])
    with pytest.raises(MetricInputError, match="1 predicted sentences but 2 gold"):
        seqeval_f1([["O"], ["O"]], [["O"]])
    with pytest.raises(MetricInputError, match="unknown seqeval version"):
        seqeval_f1([["O"]], [["O"]], seqeval_version="2.0")


# ---------------------------------------------------------------------------------------------------------------------
# MLQA


def test_chinese_mixed_segmentation():
    # CJK ideographs are tokens of their own, other runs split on white space.
    assert mlqa_mixed_segmentation("iphone 12手机") == ["iphone", "12", "手", "机"]
    assert mlqa_normalize_answer("北京，上海。", "zh") == "北 京 上 海"  # ，and 。are Unicode punctuation (Po)
    # prediction 北京 = [北, 京] vs gold 北京大学 = [北, 京, 大, 学]: 2 shared, P = 2/2, R = 2/4, F1 = 2/3.
    assert mlqa_f1("北京", "北京大学", "zh") == pytest.approx(2 / 3)
    assert mlqa_exact_match("北京", "北京大学", "zh") == 0.0
    # Whitespace tokenisation (any other language) sees one token each, and no overlap.
    assert mlqa_f1("北京", "北京大学", "en") == 0.0


def test_arabic_article_removal_also_hits_inside_words():
    assert mlqa_normalize_answer("الكتاب", "ar") == "كتاب"
    assert mlqa_exact_match("كتاب", "الكتاب", "ar") == 1.0
    # The script replaces every "ال", even inside a word: جمال (Jamal) becomes جم.
    assert mlqa_normalize_answer("جمال", "ar") == "جم"


def test_spanish_german_vietnamese_articles():
    assert mlqa_normalize_answer("El Niño y la niña", "es") == "niño y niña"
    assert mlqa_normalize_answer("lasaña", "es") == "lasaña"  # whole words only
    assert mlqa_exact_match("la casa blanca", "casa blanca", "es") == 1.0
    assert squad_normalize_answer("la casa blanca") != squad_normalize_answer("casa blanca")  # v1.1 knows only English
    assert mlqa_exact_match("der Hund", "Hund", "de") == 1.0
    assert mlqa_normalize_answer("của tôi", "vi") == "tôi"
    assert mlqa_normalize_answer("the Nile", "hi") == "the nile"  # Hindi removes no articles


def test_unicode_punctuation():
    assert mlqa_normalize_answer("«¿Qué?»", "es") == "qué"  # « » ¿ ? are category P
    assert mlqa_normalize_answer("“Nile”", "en") == "nile"  # SQuAD v1.1 keeps these quotes
    assert mlqa_normalize_answer("भारत।", "hi") == "भारत"  # the danda is Po
    assert mlqa_normalize_answer("$5", "en") == "5"  # $ is in string.punctuation
    assert mlqa_normalize_answer("€5", "en") == "€5"  # € is a currency symbol (Sc), not punctuation


def test_mlqa_scores_count_unanswered_questions_as_zero():
    references = {"q1": ["北京大学"], "q2": ["上海"]}
    # q1: EM 0, F1 2/3 (above); q2 unanswered: 0. EM = 0, F1 = (2/3 + 0) / 2 = 1/3.
    scores = mlqa_scores({"q1": "北京"}, references, "zh")
    assert scores == pytest.approx({"exact_match": 0.0, "f1": 100 / 3})
    with pytest.raises(MetricInputError, match="language 'fr'"):
        mlqa_scores({"q1": "x"}, {"q1": ["x"]}, "fr")


def test_xtreme_mock_mlqa_answers_give_evaluate_test_values():
    # The answers of xtreme's mock MLQA submission (one or two questions per language). By hand: ar, hi, vi, zh exact;
    # en "had sustained skin," vs 7 gold tokens: P 1, R 3/7, F1 0.6; es drops "unas"/"un": 2 of 13 gold tokens,
    # F1 4/15; de 3 of 4, F1 6/7. EM = 4/7, F1 = (0.6 + 4/15 + 6/7 + 4) / 7.
    cases = {
        "en": ({"q": ["had sustained skin, liver, and respiratory injuries"]}, {"q": "had sustained skin,"}),
        "es": (
            {"q": ["unas estructuras en forma de abanico que seguían un patrón de hojas, lenguas y lóbulos"]},
            {"q": "unas estructuras en"},
        ),
        "de": ({"q": ["3050 und 3350 Meter"]}, {"q": "3050 und 3350"}),
        "ar": ({"a": ["الطرق الترابية"], "b": ["شمال شرق"]}, {"a": "الطرق الترابية", "b": "شمال شرق"}),
        "hi": ({"q": ["उत्तर पूर्व"]}, {"q": "उत्तर पूर्व"}),
        "vi": ({"a": ["Đài Loan"], "b": ["Khách Gia"]}, {"a": "Đài Loan", "b": "Khách Gia"}),
        "zh": ({"q": ["电化电池"]}, {"q": "电化电池"}),
    }
    em, f1 = [], []
    for lang in XTREME_TASK2LANGS["mlqa"]:
        references, predictions = cases[lang]
        scores = mlqa_scores(predictions, references, lang)
        em.append(scores["exact_match"])
        f1.append(scores["f1"])
    assert sum(em) / len(em) == 57.142857142857146  # evaluate_test.py, bit for bit
    assert sum(f1) / len(f1) == 81.76870748299321
    assert sum(f1) / len(f1) == pytest.approx(100 * (0.6 + 4 / 15 + 6 / 7 + 4) / 7)


# ---------------------------------------------------------------------------------------------------------------------
# SQuAD v2.0


def test_squad_v2_has_answer_and_no_answer_breakdown():
    references = {"q1": ["Paris", "the city of Paris"], "q2": ["Denver Broncos"], "q3": [], "q4": []}
    predictions = {"q1": "Paris", "q2": "Broncos", "q3": "", "q4": "Broncos"}
    # q1 exact (1, 1); q2 "broncos" vs "denver broncos": EM 0, P 1, R 1/2, F1 2/3;
    # q3 unanswerable and "" predicted: (1, 1); q4 unanswerable but answered: (0, 0).
    scores = squad_v2_scores(predictions, references)
    assert scores == pytest.approx(
        {
            "exact": 100 * 2 / 4,
            "f1": 100 * (1 + 2 / 3 + 1 + 0) / 4,
            "total": 4,
            "HasAns_exact": 100 * 1 / 2,
            "HasAns_f1": 100 * (1 + 2 / 3) / 2,
            "HasAns_total": 2,
            "NoAns_exact": 100 * 1 / 2,
            "NoAns_f1": 100 * (1 + 0) / 2,
            "NoAns_total": 2,
        }
    )


def test_squad_v2_empty_prediction_on_answerable_question_and_empty_normalised_answers():
    # An empty prediction for an answerable question: F1 is 0 (one side empty), not undefined.
    assert squad_v2_scores({"q": ""}, {"q": ["Denver"]}) == pytest.approx(
        {"exact": 0.0, "f1": 0.0, "total": 1, "HasAns_exact": 0.0, "HasAns_f1": 0.0, "HasAns_total": 1}
    )
    # A reference that normalises to "" ("The") is dropped; the question is scored against [""] yet stays HasAns.
    assert squad_v2_scores({"q": ""}, {"q": ["The"]})["HasAns_exact"] == 100.0
    # Only unanswerable questions: no HasAns keys.
    assert set(squad_v2_scores({"q": ""}, {"q": []})) == {
        "exact",
        "f1",
        "total",
        "NoAns_exact",
        "NoAns_f1",
        "NoAns_total",
    }
    with pytest.raises(MetricInputError, match="1 questions have no prediction"):
        squad_v2_scores({}, {"q": []})


# ---------------------------------------------------------------------------------------------------------------------
# Accuracy and mAP@k


def test_accuracy_score():
    # 2 of 4 equal.
    assert accuracy_score(["a", "b", "c", "a"], ["a", "b", "b", "b"]) == 50.0
    assert accuracy_score([0, 1, 1], [0, 1, 1]) == 100.0
    with pytest.raises(MetricInputError, match="3 predictions but 2 labels"):
        accuracy_score([0, 1, 1], [0, 1])
    with pytest.raises(MetricInputError):
        accuracy_score([], [])


def test_map_at_k_by_id():
    # Relevant {r1, r2, r3}, ranking x r1 y r2: hits at ranks 2 and 4 add 1/2 and 2/4; divided by min(20, 3) -> 1/3.
    # Query b is not predicted: 0. mAP = (1/3 + 0) / 2 = 1/6.
    relevant = {"a": {"r1", "r2", "r3"}, "b": {"r9"}}
    assert map_at_k_by_id({"a": ["x", "r1", "y", "r2"], "ignored": ["r9"]}, relevant) == pytest.approx(100 / 6)
    # One gold id (Mewsli-X): the reciprocal rank within the top k; at rank 21 it no longer counts.
    ranking = [f"c{i}" for i in range(20)] + ["gold"]
    assert map_at_k_by_id({"m": ranking[19:]}, {"m": {"gold"}}) == pytest.approx(50.0)
    assert map_at_k_by_id({"m": ranking}, {"m": {"gold"}}) == 0.0


def test_xtreme_mock_mewslix_ranks_give_evaluate_test_value():
    # xtreme's mock Mewsli-X submission ranks the gold entity at these positions; evaluate_test.py expects
    # avg_map@20 = mean of 100/rank over its 11 languages.
    ranks = {"ar": 16, "de": 2, "en": 12, "es": 12, "fa": 4, "ja": 14, "pl": 19, "ro": 6, "ta": 13, "tr": 8, "uk": 9}
    values = []
    for rank in ranks.values():
        ranking = [f"wrong{i}" for i in range(1, rank)] + ["gold"] + [f"late{i}" for i in range(20 - rank)]
        values.append(map_at_k_by_id({"q": ranking}, {"q": {"gold"}}))
    assert sum(values) / len(values) == pytest.approx(14.39025156130419, rel=1e-14, abs=0)  # sum: see above
