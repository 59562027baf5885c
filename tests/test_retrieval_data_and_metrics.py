"""BUCC 2018 and Tatoeba readers (both layouts each) and the retrieval metrics, checked by hand.

Fixtures: tests/fixtures/retrieval (README there). Every metric case writes its arithmetic in comments.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stilts_jax.core.errors import InputError
from stilts_jax.data import retrieval
from stilts_jax.data.retrieval import (
    RetrievalDataError,
    deduplicate,
    expand_candidates,
    expand_pairs,
    read_bucc,
    read_index_file,
    read_tatoeba,
    xtreme_english_order,
)
from stilts_jax.evaluation.retrieval_metrics import (
    MetricInputError,
    accuracy,
    apply_threshold,
    average_precision_at_k,
    bucc_scores,
    mean_average_precision_at_k,
    select_bucc_threshold,
)

FIXTURES = Path(__file__).parent / "fixtures" / "retrieval"
BUCC_ORIGINAL = FIXTURES / "bucc_original"
BUCC_XTREME = FIXTURES / "bucc_xtreme"
TATOEBA_LASER = FIXTURES / "tatoeba_laser"
TATOEBA_XTREME = FIXTURES / "tatoeba_xtreme"
TATOEBA_LABELS = TATOEBA_XTREME / "labels" / "tatoeba"

# LASER's aligned de pairs (tatoeba_laser): English -> German, as written in the fixture.
DE_PAIRS = {
    ("Where is the station?", "Wo ist der Bahnhof?"),
    ("I like tea.", "Ich mag Tee."),
    ('"Hello," she said.', "„Hallo“, sagte sie."),
    ("Tom is tired.", "Tom ist müde."),
    ("Are you sure?", "Bist du sicher?"),
    ("I like tea.", "Ich trinke gern Tee."),
    ("iPhones are expensive.", "iPhones sind teuer."),
}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- BUCC reading ------------------------------------------------------------------------------------------------


def test_bucc_original_layout_sample_training_test():
    sample = read_bucc(BUCC_ORIGINAL / "bucc2018", "de", "sample")
    assert sample.src_ids == ("de-000000001", "de-000000002", "de-000000003", "de-000000004", "de-000000005")
    assert sample.src_sentences[0] == "Der Zug fährt um acht Uhr ab."
    assert sample.en_ids[3] == "en-000000004" and sample.en_sentences[3] == "The train leaves at eight o'clock."
    assert sample.gold == {
        ("de-000000001", "en-000000004"),
        ("de-000000002", "en-000000001"),
        ("de-000000003", "en-000000002"),
    }
    training = read_bucc(BUCC_ORIGINAL, "de", "training")  # the folder above bucc2018/ works too
    assert len(training.src_ids) == 4 and len(training.gold) == 3
    test = read_bucc(BUCC_ORIGINAL, "de", "test")
    assert test.gold is None and test.en_ids == ("en-000900001", "en-000900002", "en-000900003")
    with pytest.raises(RetrievalDataError, match=r"de-en\.test\.gold is missing"):
        read_bucc(BUCC_ORIGINAL, "de", "test", require_gold=True)
    zh = read_bucc(BUCC_ORIGINAL, "zh", "sample", layout="original")
    assert zh.src_sentences[1] == "这座桥是一八九〇年建成的。"
    assert zh.gold == {("zh-000000001", "en-000000002"), ("zh-000000003", "en-000000001")}


def test_bucc_xtreme_layout_is_the_renamed_original():
    dev = read_bucc(BUCC_XTREME, "de", "dev")
    sample = read_bucc(BUCC_ORIGINAL, "de", "sample")
    assert (dev.src_ids, dev.src_sentences, dev.en_ids, dev.en_sentences, dev.gold) == (
        sample.src_ids,
        sample.src_sentences,
        sample.en_ids,
        sample.en_sentences,
        sample.gold,
    )
    test = read_bucc(BUCC_XTREME, "de", "test", layout="xtreme")
    training = read_bucc(BUCC_ORIGINAL, "de", "training")
    assert test.src_ids == training.src_ids and test.en_sentences == training.en_sentences
    assert test.gold is None  # download_bucc18 deletes {xx}-en.test.gold
    ru = read_bucc(BUCC_XTREME / "bucc2018", "ru", "dev")
    assert ru.src_sentences[0] == "Кошка спит на диване."
    assert ("ru-000000001", "en-000000002") in ru.gold
    assert read_bucc(BUCC_XTREME, "ru", "test").gold is None


def test_bucc_split_names_per_layout():
    with pytest.raises(RetrievalDataError, match="called 'dev'"):
        read_bucc(BUCC_XTREME, "de", "sample")
    with pytest.raises(RetrievalDataError, match="valid: sample, training, test"):
        read_bucc(BUCC_ORIGINAL, "de", "dev")
    with pytest.raises(RetrievalDataError, match="no language 'es'"):
        read_bucc(BUCC_ORIGINAL, "es", "sample")


def test_bucc_deduplication_and_expansion():
    sample = read_bucc(BUCC_ORIGINAL, "de", "sample")
    src = deduplicate(sample.src_ids, sample.src_sentences)
    en = deduplicate(sample.en_ids, sample.en_sentences)
    # de-000000002 and de-000000004 share "Das Wetter ist heute schön.";
    # en-000000001 and en-000000005 share "The weather is nice today."
    assert len(src) == 4 and src.ids[1] == ("de-000000002", "de-000000004")
    assert src.sentences[1] == "Das Wetter ist heute schön." and src.ids[3] == ("de-000000005",)
    assert len(en) == 4 and en.ids[0] == ("en-000000001", "en-000000005")
    # Unique rows: src 0 = de-1 (train), 1 = de-2/de-4 (weather); en 0 = en-1/en-5 (weather), 3 = en-4 (train).
    assert expand_pairs([(1, 0), (0, 3)], src, en) == {
        ("de-000000002", "en-000000001"),
        ("de-000000002", "en-000000005"),
        ("de-000000004", "en-000000001"),
        ("de-000000004", "en-000000005"),
        ("de-000000001", "en-000000004"),
    }
    assert expand_candidates([(1.3, 0, 3), (1.1, 1, 0)], src, en) == [
        (1.3, "de-000000001", "en-000000004"),
        (1.1, "de-000000002", "en-000000001"),
        (1.1, "de-000000002", "en-000000005"),
        (1.1, "de-000000004", "en-000000001"),
        (1.1, "de-000000004", "en-000000005"),
    ]
    with pytest.raises(RetrievalDataError, match="out of range"):
        expand_pairs([(4, 0)], src, en)


def test_bucc_missing_files_name_the_path_and_how_to_get_them(tmp_path):
    with pytest.raises(RetrievalDataError) as info:
        read_bucc(tmp_path / "bucc2018", "fr", "sample")
    message = str(info.value)
    assert str(tmp_path / "bucc2018" / "fr-en" / "fr-en.sample.fr") in message
    assert "comparable.limsi.fr/bucc2018" in message and "download_data.sh" in message
    assert isinstance(info.value, InputError)
    with pytest.raises(RetrievalDataError, match=r"fr-en\.dev\.fr is missing"):
        read_bucc(tmp_path, "fr", "dev")


@pytest.mark.parametrize(
    "line, error",
    [
        ("de-000000001 Der Zug fährt.", r"de-en\.sample\.de:2: no tab"),
        ("\tDer Zug fährt.", r"de-en\.sample\.de:2: empty id"),
        ("de-000000002\t   ", r"de-en\.sample\.de:2: id 'de-000000002' has an empty sentence"),
        ("en-000000002\tDer Zug fährt.", r"de-en\.sample\.de:2: id 'en-000000002' should start with 'de-'"),
        ("de-000000001\tDer Zug fährt.", r"de-en\.sample\.de:2: id 'de-000000001' repeats line 1"),
    ],
)
def test_bucc_malformed_sentence_lines(tmp_path, line, error):
    folder = tmp_path / "bucc2018" / "de-en"
    write(folder / "de-en.sample.de", f"de-000000001\tDas Haus ist alt.\n{line}\n")
    write(folder / "de-en.sample.en", "en-000000001\tThe house is old.\n")
    with pytest.raises(RetrievalDataError, match=error):
        read_bucc(tmp_path, "de", "sample")


@pytest.mark.parametrize(
    "line, error",
    [
        ("de-000000001 en-000000001", r"de-en\.sample\.gold:2: expected `de_id<TAB>en_id`, got 1"),
        ("de-000000001\ten-000000001\textra", r"\.gold:2: expected .* got 3"),
        (
            "en-000000001\tde-000000001",
            r"\.gold:2: id 'en-000000001' should start with 'de-' \(the foreign id comes first\)",
        ),
        ("de-000000009\ten-000000001", r"\.gold:2: 'de-000000009' is not an id of the de sentence file"),
        ("de-000000001\ten-000000009", r"\.gold:2: 'en-000000009' is not an id of the English sentence file"),
    ],
)
def test_bucc_malformed_gold_lines(tmp_path, line, error):
    folder = tmp_path / "bucc2018" / "de-en"
    write(folder / "de-en.sample.de", "de-000000001\tDas Haus ist alt.\n")
    write(folder / "de-en.sample.en", "en-000000001\tThe house is old.\n")
    write(folder / "de-en.sample.gold", f"de-000000001\ten-000000001\n{line}\n")
    with pytest.raises(RetrievalDataError, match=error):
        read_bucc(tmp_path, "de", "sample")


def test_bucc_undecodable_line_is_named(tmp_path):
    folder = tmp_path / "bucc2018" / "de-en"
    folder.mkdir(parents=True)
    (folder / "de-en.sample.de").write_bytes(b"de-000000001\tok\nde-000000002\t\xff\xfe\n")
    write(folder / "de-en.sample.en", "en-000000001\tok\n")
    with pytest.raises(RetrievalDataError, match=r"de-en\.sample\.de line 2: not UTF-8"):
        read_bucc(tmp_path, "de", "sample")


# --- Tatoeba reading ---------------------------------------------------------------------------------------------


def test_tatoeba_laser_files_give_xtreme_order_and_gold():
    data = read_tatoeba(TATOEBA_LASER, "de")
    # XTREME's sorted English (code points, stable): '"' first, capitals before 'iPhones', the two 'I like tea.'
    # in their original order 1 then 5. Query j's gold is the LASER line that sorted line j came from.
    assert data.queries == (
        '"Hello," she said.',
        "Are you sure?",
        "I like tea.",
        "I like tea.",
        "Tom is tired.",
        "Where is the station?",
        "iPhones are expensive.",
    )
    assert data.gold == (2, 4, 1, 5, 3, 0, 6)
    assert data.candidates[:2] == ("Wo ist der Bahnhof?", "Ich mag Tee.")  # foreign side in file order
    # Each query with its gold candidate is a real translation pair; a naive gold (j) would pair '"Hello," she
    # said.' with 'Wo ist der Bahnhof?'.
    assert {(q, data.candidates[g]) for q, g in zip(data.queries, data.gold)} == DE_PAIRS
    assert data.gold[2:4] == (1, 5)  # equal English lines keep LASER's order
    assert data.gold != tuple(range(len(data.queries)))
    assert accuracy(list(range(7)), data.gold) == pytest.approx(100 / 7)  # naive indices: only query 6 (6 -> 6)


def test_tatoeba_xtreme_files_with_labels_match_laser():
    xtreme = read_tatoeba(TATOEBA_XTREME, "de", labels=TATOEBA_LABELS / "test-de.tsv")
    laser = read_tatoeba(TATOEBA_LASER, "de")
    assert (xtreme.queries, xtreme.candidates, xtreme.gold) == (laser.queries, laser.candidates, laser.gold)
    assert {(q, xtreme.candidates[g]) for q, g in zip(xtreme.queries, xtreme.gold)} == DE_PAIRS
    # Without labels the XTREME files carry no alignment at all.
    assert read_tatoeba(TATOEBA_XTREME / "tatoeba", "de", layout="xtreme").gold is None

    fr = read_tatoeba(TATOEBA_XTREME, "fr", labels=TATOEBA_LABELS / "test-fr.tsv")
    assert fr.queries[0] == '"Help!"' and fr.candidates[fr.gold[0]] == "« Au secours ! »"
    assert [fr.candidates[g] for g in fr.gold] == [
        "« Au secours ! »",
        "Les pommes sont rouges.",
        "Ferme la porte, s'il te plaît.",
        "Bonjour !",
        "Le chat dort.",
    ]


def test_xtreme_english_order_is_stable_code_point_order():
    # stripped: 'b', 'B', 'a', 'b', ' A' -> 'A'(4) < 'B'(1) < 'a'(2) < 'b'(0) = 'b'(3)
    assert xtreme_english_order(["b", "B", "a", "b ", " A"]) == [4, 1, 2, 0, 3]


def test_tatoeba_errors(tmp_path):
    with pytest.raises(RetrievalDataError) as info:
        read_tatoeba(tmp_path, "de")
    message = str(info.value)
    assert "tatoeba.deu-eng.deu" in message and "de-en.de" in message and "LASER" in message
    with pytest.raises(RetrievalDataError, match=r"de-en\.de is missing"):
        read_tatoeba(tmp_path, "de", layout="xtreme")
    write(tmp_path / "half" / "de-en.de", "Eins.\n")
    with pytest.raises(RetrievalDataError, match=r"half/de-en\.en is missing.*download_data\.sh"):
        read_tatoeba(tmp_path / "half", "de")

    write(tmp_path / "counts" / "tatoeba.deu-eng.deu", "Eins.\nZwei.\nDrei.\n")
    write(tmp_path / "counts" / "tatoeba.deu-eng.eng", "One.\nTwo.\n")
    with pytest.raises(
        RetrievalDataError, match=r"tatoeba\.deu-eng\.deu has 3 lines but .*tatoeba\.deu-eng\.eng has 2"
    ):
        read_tatoeba(tmp_path / "counts", "de")

    write(tmp_path / "blank" / "de-en.de", "Eins.\n\nDrei.\n")
    write(tmp_path / "blank" / "de-en.en", "One.\nThree.\nTwo.\n")
    with pytest.raises(RetrievalDataError, match=r"de-en\.de:2: empty line"):
        read_tatoeba(tmp_path / "blank", "de")

    write(tmp_path / "unsorted" / "de-en.de", "Eins.\nZwei.\n")
    write(tmp_path / "unsorted" / "de-en.en", "Two.\nOne.\n")
    with pytest.raises(RetrievalDataError, match=r"de-en\.en:2: the English side is not sorted"):
        read_tatoeba(tmp_path / "unsorted", "de")

    sorted_dir = tmp_path / "sorted"
    write(sorted_dir / "de-en.de", "Eins.\nZwei.\n")
    write(sorted_dir / "de-en.en", "One.\nTwo.\n")
    with pytest.raises(RetrievalDataError, match=r"test-de\.tsv:2: expected one integer index, got 'x'"):
        read_tatoeba(sorted_dir, "de", labels=write(tmp_path / "bad" / "test-de.tsv", "0\nx\n"))
    with pytest.raises(RetrievalDataError, match=r"test-de\.tsv:1: index 2 is out of range \(there are 2 candidates\)"):
        read_tatoeba(sorted_dir, "de", labels=write(tmp_path / "range" / "test-de.tsv", "2\n0\n"))
    with pytest.raises(RetrievalDataError, match="has 1 indices but .* has 2 English queries"):
        read_tatoeba(sorted_dir, "de", labels=write(tmp_path / "short" / "test-de.tsv", "1\n"))
    with pytest.raises(RetrievalDataError, match="no Tatoeba language 'xx'"):
        read_tatoeba(sorted_dir, "xx")
    assert read_index_file(write(tmp_path / "ok.tsv", "1\n0\n"), 2) == (1, 0)


# --- BUCC metrics ------------------------------------------------------------------------------------------------


def test_bucc_precision_recall_f1():
    gold = {("d1", "e1"), ("d2", "e2"), ("d3", "e3"), ("d4", "e4"), ("d5", "e5"), ("d6", "e6")}
    predicted = {("d1", "e1"), ("d2", "e2"), ("d3", "e3"), ("d9", "e9")}
    # 3 correct of 4 predicted, of 6 gold: P = 3/4 = 75, R = 3/6 = 50, F1 = 2*.75*.5/(.75+.5) = .75/1.25 = 60
    scores = bucc_scores(predicted, gold)
    assert scores == pytest.approx({"precision": 75.0, "recall": 50.0, "f1": 60.0})
    assert bucc_scores({("d9", "e9")}, gold) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert bucc_scores(set(), gold) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    # Pairs are ordered (src, en): the swapped pair is not the gold one.
    assert bucc_scores({("e1", "d1")}, gold)["f1"] == 0.0
    with pytest.raises(MetricInputError, match="no gold"):
        bucc_scores(predicted, set())


def test_bucc_threshold_in_the_middle():
    gold = {("d1", "e1"), ("d2", "e2"), ("d3", "e3"), ("d4", "e4")}
    candidates = [
        (0.95, "d1", "e1"),
        (0.90, "d2", "e2"),
        (0.85, "d5", "e5"),
        (0.80, "d3", "e3"),
        (0.60, "d6", "e6"),
        (0.50, "d7", "e7"),
    ]
    # keep >= 0.95: 1 of 1 correct, P=1,   R=1/4, F1 = 2*.25/1.25            = .400
    # keep >= 0.90: 2 of 2,         P=1,   R=2/4, F1 = 2*.5/1.5              = .667
    # keep >= 0.85: 2 of 3,         P=2/3, R=2/4, F1 = 2*(1/3)/(7/6)         = .571
    # keep >= 0.80: 3 of 4,         P=3/4, R=3/4, F1 = .750   <- best
    # keep >= 0.60: 3 of 5,         P=3/5, R=3/4, F1 = 2*.45/1.35            = .667
    # keep >= 0.50: 3 of 6,         P=1/2, R=3/4, F1 = 2*.375/1.25           = .600
    # threshold halfway between the lowest kept score and the next: (0.80 + 0.60) / 2 = 0.70
    threshold, scores = select_bucc_threshold(candidates, gold)
    assert threshold == pytest.approx(0.70)
    assert scores == pytest.approx({"precision": 75.0, "recall": 75.0, "f1": 75.0})
    assert apply_threshold(candidates, threshold) == {("d1", "e1"), ("d2", "e2"), ("d5", "e5"), ("d3", "e3")}
    # Applied to another split: 0.75 >= 0.70 is kept, 0.65 is not; a score equal to the threshold is kept (>=).
    test = [(0.75, "x1", "y1"), (0.65, "x2", "y2"), (0.70, "x3", "y3")]
    assert apply_threshold(test, threshold) == {("x1", "y1"), ("x3", "y3")}
    assert apply_threshold([(0.7, "a", "b")], 0.7) == {("a", "b")}


def test_bucc_threshold_ties():
    # Equal scores are kept or dropped together; of equal F1s the higher threshold wins.
    gold = {("a", "A"), ("b", "B")}
    candidates = [(0.9, "a", "A"), (0.7, "b", "B"), (0.7, "c", "C"), (0.7, "d", "D")]
    # keep >= 0.9: 1 of 1, P=1,   R=1/2, F1 = 2*.5/1.5 = .667
    # keep >= 0.7: 2 of 4, P=1/2, R=1,   F1 = 2*.5/1.5 = .667   (same F1: the higher threshold stays)
    # (A one-pair-at-a-time scan, as LASER's, would stop after ("b","B"), report F1 = 1.0 and set the threshold
    # to (0.7 + 0.7) / 2 = 0.7, which then keeps all four pairs.)
    threshold, scores = select_bucc_threshold(candidates, gold)
    assert threshold == pytest.approx(0.8)  # (0.9 + 0.7) / 2
    assert scores == pytest.approx({"precision": 100.0, "recall": 50.0, "f1": 200 / 3})
    assert bucc_scores(apply_threshold(candidates, threshold), gold) == pytest.approx(scores)

    # When the best cut keeps everything the threshold is the lowest score itself.
    gold = {("a", "A"), ("b", "B"), ("e", "E")}
    candidates = [(0.9, "a", "A"), (0.7, "b", "B"), (0.7, "c", "C"), (0.7, "d", "D"), (0.5, "e", "E")]
    # >= 0.9: 1/1, R 1/3, F1 .5;  >= 0.7: 2/4, R 2/3, F1 2*(1/3)/(7/6) = .571;  >= 0.5: 3/5, R 1, F1 1.2/1.6 = .75
    threshold, scores = select_bucc_threshold(candidates, gold)
    assert threshold == 0.5 and scores == pytest.approx({"precision": 60.0, "recall": 100.0, "f1": 75.0})

    # A pair listed twice keeps its higher score; recall counts gold pairs no candidate proposes.
    threshold, scores = select_bucc_threshold(
        [(0.2, "a", "A"), (0.9, "a", "A"), (0.4, "z", "Z")], {("a", "A"), ("b", "B")}
    )
    # >= 0.9: 1 of 1, P=1, R=1/2, F1 .667; >= 0.4: 1 of 2, P=.5, R=.5, F1 .5 -> threshold (0.9 + 0.4) / 2
    assert threshold == pytest.approx(0.65) and scores["recall"] == pytest.approx(50.0)
    with pytest.raises(MetricInputError, match="no BUCC candidates"):
        select_bucc_threshold([], gold)
    with pytest.raises(MetricInputError, match="NaN"):
        select_bucc_threshold([(float("nan"), "a", "A")], gold)


def test_bucc_pipeline_from_mined_rows_to_f1():
    # Mined rows of the de sample (unique sentences) -> ids -> threshold, the way the pipeline chains them.
    sample = read_bucc(BUCC_XTREME, "de", "dev")
    src = deduplicate(sample.src_ids, sample.src_sentences)
    en = deduplicate(sample.en_ids, sample.en_sentences)
    # rows: src 0 train, 1 weather, 2 city, 3 books; en 0 weather, 1 city, 2 stocks, 3 train
    mined = [(1.30, 0, 3), (1.20, 2, 1), (1.10, 1, 0), (0.90, 3, 2)]
    candidates = expand_candidates(mined, src, en)
    # ids: (de1,en4) 1.30 gold; (de3,en2) 1.20 gold; weather 1.10 x4: (de2,en1) gold, (de2,en5), (de4,en1),
    # (de4,en5) not; (de5,en3) 0.90 not. Gold has 3 pairs.
    # >= 1.30: 1/1, R 1/3, F1 .5;  >= 1.20: 2/2, R 2/3, F1 .8;  >= 1.10: 3/6, R 1, F1 1/1.5 = .667;
    # >= 0.90: 3/7, R 1, F1 2*(3/7)/(10/7) = .6  -> best 1.20, threshold (1.20 + 1.10) / 2 = 1.15
    threshold, scores = select_bucc_threshold(candidates, sample.gold)
    assert threshold == pytest.approx(1.15)
    assert scores == pytest.approx({"precision": 100.0, "recall": 200 / 3, "f1": 80.0})


# --- Tatoeba accuracy --------------------------------------------------------------------------------------------


def test_accuracy():
    # 2 of 3 equal: 66.67 %
    assert accuracy([3, 1, 2], [3, 0, 2]) == pytest.approx(200 / 3)
    assert accuracy([0], [0]) == 100.0
    with pytest.raises(MetricInputError, match="3 predictions but 2 gold indices"):
        accuracy([1, 2, 3], [1, 2])
    with pytest.raises(MetricInputError, match="no queries"):
        accuracy([], [])


# --- mAP@20 ------------------------------------------------------------------------------------------------------


def test_average_precision_fewer_relevant_than_k_and_one_below_20():
    ranking = ["r1", "x1", "r2"] + [f"n{i}" for i in range(21)] + ["r3"]  # r3 at rank 25, outside the top 20
    # hits in the top 20: r1 at rank 1 (1/1), r2 at rank 3 (2/3); divide by min(20, 3) = 3:
    # (1 + 2/3) / 3 = 0.5556
    assert average_precision_at_k(ranking, {"r1", "r2", "r3"}) == pytest.approx((1 + 2 / 3) / 3)
    # r3 at rank 20 (inside): (1 + 2/3 + 3/20) / 3
    ranking20 = ["r1", "x1", "r2"] + [f"n{i}" for i in range(16)] + ["r3"]
    assert average_precision_at_k(ranking20, {"r1", "r2", "r3"}) == pytest.approx((1 + 2 / 3 + 3 / 20) / 3)


def test_average_precision_more_relevant_than_k():
    relevant = {f"r{i}" for i in range(25)}
    ranking = [f"r{i}" for i in range(10)] + [f"n{i}" for i in range(10)] + [f"r{i}" for i in range(10, 25)]
    # ranks 1..10 relevant, each adds hits/rank = 1; ranks 11..20 not relevant; the rest is below 20.
    # sum = 10; divisor min(20, 25) = 20 -> 0.5 (dividing by |relevant| = 25 would give 0.4)
    assert average_precision_at_k(ranking, relevant) == pytest.approx(0.5)
    # all top 20 relevant: 20 / 20 = 1 although 5 relevant items are never reached
    assert average_precision_at_k(sorted(relevant), relevant) == pytest.approx(1.0)


def test_average_precision_repeats_and_single_gold():
    # a repeated candidate counts once, but still takes its rank: r1 (1/1), r1 again (skip), r2 at rank 3 (2/3)
    assert average_precision_at_k(["r1", "r1", "r2"], {"r1", "r2"}) == pytest.approx((1 + 2 / 3) / 2)
    # Mewsli-X: one gold entity -> reciprocal rank in the top 20
    assert average_precision_at_k(["a", "b", "c", "gold"], {"gold"}) == pytest.approx(1 / 4)
    assert average_precision_at_k([f"n{i}" for i in range(20)] + ["gold"], {"gold"}) == 0.0


def test_mean_average_precision_at_20():
    rankings = [["r1", "x1", "r2"], ["a", "b", "c", "gold"], ["n1", "n2"]]
    relevant = [{"r1", "r2", "r3"}, {"gold"}, {"gold"}]
    # APs: (1 + 2/3) / 3 = 0.5556, 1/4 = 0.25, 0 -> mean 0.2685 -> 26.85 %
    expected = 100 * ((1 + 2 / 3) / 3 + 0.25 + 0.0) / 3
    assert mean_average_precision_at_k(rankings, relevant) == pytest.approx(expected)
    assert mean_average_precision_at_k(rankings, relevant, k=2) == pytest.approx(100 * (1 / 2 + 0 + 0) / 3)
    with pytest.raises(MetricInputError, match="3 rankings but 2 relevant sets"):
        mean_average_precision_at_k(rankings, relevant[:2])
    with pytest.raises(MetricInputError, match="query 1 has no relevant candidates"):
        mean_average_precision_at_k(rankings[:2], [{"r1"}, set()])
    with pytest.raises(MetricInputError, match="k must be at least 1"):
        average_precision_at_k(["a"], {"a"}, k=0)


def test_layout_constants_match_the_sources():
    assert retrieval.BUCC_XTREME_SPLIT_OF == {"sample": "dev", "training": "test"}
    assert len(retrieval.TATOEBA_ISO3) == 41 and retrieval.TATOEBA_ISO3["zh"] == "cmn"
    assert retrieval.TATOEBA_ISO3["fa"] == "pes" and retrieval.TATOEBA_ISO3["sw"] == "swh"
