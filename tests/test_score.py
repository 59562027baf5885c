"""The XTREME / XTREME-R scorer on small submissions in the real layout, checked against hand-computed values."""

import json
from pathlib import Path

import pytest

from stilts_jax.core.errors import InputError
from stilts_jax.evaluation.xtreme_tasks import LAREQA_LANGUAGES, XTREME_R_TASK2LANGS, XTREME_TASK2LANGS, get_suffix
from stilts_jax.score import main, score_submission
from stilts_jax.tasks import registry


def squad_json(answer: str) -> str:
    qa = {"id": "q1", "question": "?", "answers": [{"text": answer, "answer_start": 0}]}
    return json.dumps(
        {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": answer, "qas": [qa]}]}]},
        ensure_ascii=False,
    )


def xcopa_jsonl(labels):
    return "".join(json.dumps({"idx": i, "label": label}) + "\n" for i, label in enumerate(labels))


# Each task's default file pair: (labels, predictions); perfect predictions unless overridden.
DEFAULTS = {
    "pawsx": "1\n0\n1\n0\n",
    "xnli": "entailment\nneutral\ncontradiction\nneutral\n",
    "xcopa": xcopa_jsonl([0, 1, 1, 0]),
    "panx": "B-PER\nI-PER\nO\n\nB-LOC\n",
    "udpos": "DET\nNOUN\nNOUN\nVERB\n",
    "bucc2018": "s1\te1\ns2\te2\n",
    "tatoeba": "0\n1\n2\n3\n",
    "xquad": squad_json("Denver Broncos"),
    "mlqa": squad_json("Denver Broncos"),
    "tydiqa": squad_json("Denver Broncos"),
    "mewslix": json.dumps({"m1": ["Q1"]}),
    "lareqa": json.dumps({"q1": ["a1", "a2"]}),
}
DEFAULT_PREDICTIONS = {
    "xquad": json.dumps({"q1": "Denver Broncos"}),
    "mlqa": json.dumps({"q1": "Denver Broncos"}),
    "tydiqa": json.dumps({"q1": "Denver Broncos"}),
    "mewslix": json.dumps({"m1": ["Q1", "Q2"]}),
    "lareqa": json.dumps({"q1": ["a1", "a2", "x"]}),
}


def write_submission(root: Path, benchmark: str, tasks, overrides=None):
    """predictions/ and labels/ under root; overrides[(task, lang)] = (labels, predictions), either None = default."""
    overrides = overrides or {}
    table = XTREME_TASK2LANGS if benchmark == "xtreme" else XTREME_R_TASK2LANGS
    for task in tasks:
        languages = LAREQA_LANGUAGES if task == "lareqa" else table[task]
        for lang in languages:
            labels, predictions = overrides.get((task, lang), (None, None))
            labels = DEFAULTS[task] if labels is None else labels
            predictions = DEFAULT_PREDICTIONS.get(task, labels) if predictions is None else predictions
            for side, text in (("labels", labels), ("predictions", predictions)):
                path = root / side / task / f"test-{lang}.{get_suffix(task, benchmark)}"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    return root / "predictions", root / "labels"


XTREME_OVERRIDES = {
    ("pawsx", "de"): (None, "1\n1\n1\n0\n"),  # 3 of 4 -> 75
    ("xnli", "ar"): (None, "entailment\nneutral\nneutral\nneutral\n"),  # 3 of 4 -> 75
    # gold PER 0-1, LOC 4-4; predicted I-PER I-PER = PER 0-1 only: P 1, R 1/2, F1 2/3
    ("panx", "de"): (None, "I-PER\nI-PER\nO\n\nO\n"),
    # gold DET|NOUN NOUN|VERB, predicted DET|NOUN|VERB VERB: 1 of 3 chunks each way -> 1/3
    ("udpos", "en"): (None, "DET\nNOUN\nVERB\nVERB\n"),
    ("bucc2018", "de"): (None, "s1\te1\ns2\te9\n"),  # 1 of 2 right, 1 of 2 found -> P = R = F1 = 1/2
    ("tatoeba", "fr"): (None, "0\n1\n3\n2\n"),  # 2 of 4 -> 50
    ("xquad", "es"): (None, json.dumps({"q1": "Broncos"})),  # EM 0; P 1, R 1/2 -> F1 2/3
    # "北京" vs "北京大学" with zh mixed segmentation: EM 0, F1 2/3
    ("mlqa", "zh"): (squad_json("北京大学"), json.dumps({"q1": "北京"})),
    ("tydiqa", "sw"): (None, json.dumps({})),  # unanswered: EM 0, F1 0
}

# avg_metric of each task by hand (each task: all other languages score 100).
PAWSX = (6 * 100 + 75) / 7
XNLI = (14 * 100 + 75) / 15
PANX_F1 = (39 * 100 + 200 / 3) / 40
UDPOS_F1 = (32 * 100 + 100 / 3) / 33
BUCC_F1 = (3 * 100 + 50) / 4
TATOEBA = (35 * 100 + 50) / 36
XQUAD = ((10 * 100 + 0) / 11 + (10 * 100 + 200 / 3) / 11) / 2  # (avg EM + avg F1) / 2
MLQA = ((6 * 100 + 0) / 7 + (6 * 100 + 200 / 3) / 7) / 2
TYDIQA = ((8 * 100) / 9 + (8 * 100) / 9) / 2


def test_full_xtreme_submission(tmp_path):
    predictions, labels = write_submission(tmp_path, "xtreme", XTREME_TASK2LANGS, XTREME_OVERRIDES)
    result = score_submission(predictions, labels, "xtreme")

    # Keys and their order as evaluate.py writes them: all_task, groups, tasks; then this project's extensions.
    assert list(result) == [
        "all_task",
        "classification",
        "tagging",
        "qa",
        "retrieval",
        "pawsx",
        "xnli",
        "panx",
        "udpos",
        "bucc2018",
        "tatoeba",
        "xquad",
        "mlqa",
        "tydiqa",
        "extensions",
    ]
    assert list(result["panx"]) == ["f1", "precision", "recall", "avg_f1", "avg_precision", "avg_recall", "avg_metric"]
    assert list(result["panx"]["f1"]) == XTREME_TASK2LANGS["panx"]
    assert list(result["xquad"]) == ["exact_match", "f1", "avg_exact_match", "avg_f1", "avg_metric"]

    # Per-language values.
    assert result["pawsx"]["accuracy"]["de"] == 75.0
    assert result["pawsx"]["accuracy"]["en"] == 100.0
    assert result["panx"]["f1"]["de"] == pytest.approx(200 / 3)
    assert result["panx"]["precision"]["de"] == 100.0
    assert result["panx"]["recall"]["de"] == 50.0
    assert result["udpos"]["f1"]["en"] == pytest.approx(100 / 3)
    assert result["bucc2018"]["precision"]["de"] == 50.0
    assert result["tatoeba"]["accuracy"]["fr"] == 50.0
    assert result["xquad"]["exact_match"]["es"] == 0.0
    assert result["xquad"]["f1"]["es"] == pytest.approx(200 / 3)
    assert result["mlqa"]["f1"]["zh"] == pytest.approx(200 / 3)
    assert result["tydiqa"]["f1"]["sw"] == 0.0

    # Averages and avg_metric.
    expected = {
        "pawsx": PAWSX,
        "xnli": XNLI,
        "panx": PANX_F1,
        "udpos": UDPOS_F1,
        "bucc2018": BUCC_F1,
        "tatoeba": TATOEBA,
        "xquad": XQUAD,
        "mlqa": MLQA,
        "tydiqa": TYDIQA,
    }
    for task, value in expected.items():
        assert result[task]["avg_metric"] == pytest.approx(value, rel=1e-12), task
    assert result["panx"]["avg_recall"] == pytest.approx((39 * 100 + 50) / 40)
    assert result["xquad"]["avg_exact_match"] == pytest.approx(1000 / 11)

    # Groups: means of their tasks' avg_metric; all_task: mean over the nine tasks.
    assert result["classification"] == pytest.approx((PAWSX + XNLI) / 2)
    assert result["tagging"] == pytest.approx((UDPOS_F1 + PANX_F1) / 2)
    assert result["qa"] == pytest.approx((XQUAD + MLQA + TYDIQA) / 3)
    assert result["retrieval"] == pytest.approx((BUCC_F1 + TATOEBA) / 2)
    assert result["all_task"] == pytest.approx(sum(expected.values()) / 9)

    extensions = result["extensions"]
    assert extensions["skipped_tasks"] == {}
    assert extensions["unanswered"] == {"tydiqa": {"sw": 1}}
    assert extensions["seqeval_version"] == "0.0.12"
    assert "all_task" not in extensions and "retrieval" not in extensions


def test_partial_submission_scores_complete_groups_only(tmp_path):
    predictions, labels = write_submission(tmp_path, "xtreme", ["pawsx", "xnli", "udpos"], XTREME_OVERRIDES)
    (predictions / "mewslix").mkdir()  # not an XTREME task: ignored
    (predictions / "panx").mkdir()  # no labels folder: skipped, as evaluate.py skips it
    result = score_submission(predictions, labels, "xtreme")
    assert list(result) == ["classification", "pawsx", "xnli", "udpos", "extensions"]
    assert result["classification"] == pytest.approx((PAWSX + XNLI) / 2)
    assert result["extensions"]["skipped_tasks"]["panx"] == "no labels folder"
    assert result["extensions"]["skipped_tasks"]["tydiqa"] == "no predictions or labels folder"
    assert result["extensions"]["ignored_folders"] == ["mewslix"]


def test_seqeval_version_changes_udpos_only_where_tags_differ(tmp_path):
    # CCONJ SCONJ: 0.0.12 finds two chunks, 1.2.2 one ("CONJ" 1-1). Prediction SCONJ SCONJ: 0.0.12 two S chunks
    # (SCONJ 0-0, 1-1), one right -> P = R = 1/2; 1.2.2 predicts CONJ 0-0, CONJ 1-1, gold CONJ 1-1 -> P 1/2, R 1.
    overrides = {("udpos", lang): ("CCONJ\nSCONJ\n", "SCONJ\nSCONJ\n") for lang in XTREME_TASK2LANGS["udpos"]}
    predictions, labels = write_submission(tmp_path, "xtreme", ["udpos"], overrides)
    old = score_submission(predictions, labels, "xtreme")["udpos"]
    new = score_submission(predictions, labels, "xtreme", seqeval_version="1.2.2")["udpos"]
    assert (old["avg_precision"], old["avg_recall"]) == pytest.approx((50.0, 50.0))
    assert (new["avg_precision"], new["avg_recall"], new["avg_f1"]) == pytest.approx((50.0, 100.0, 200 / 3))


def test_full_xtreme_r_submission_with_extensions(tmp_path):
    overrides = {
        ("xcopa", "it"): (None, xcopa_jsonl([0, 1, 0, 0])),  # 3 of 4 -> 75
        ("mewslix", "de"): (None, json.dumps({"m1": ["Q9", "Q1"]})),  # gold at rank 2 -> 50
        # relevant {a1, a2}, ranking x a1 a2: hits at 2 and 3 -> (1/2 + 2/3) / 2 = 7/12
        ("lareqa", "en"): (None, json.dumps({"q1": ["x", "a1", "a2"]})),
    }
    predictions, labels = write_submission(tmp_path, "xtreme-r", XTREME_R_TASK2LANGS, overrides)
    result = score_submission(predictions, labels, "xtreme-r")
    xcopa = (10 * 100 + 75) / 11
    mewslix = (10 * 100 + 50) / 11
    lareqa = (10 * 100 + 100 * 7 / 12) / 11

    # evaluate.py writes no "retrieval" and no "all_task" (it fails on Mewsli-X's missing avg_metric) and an empty
    # "lareqa" (no languages listed for it).
    assert list(result) == [
        "classification",
        "tagging",
        "qa",
        "multi_choice",
        "xnli",
        "panx",
        "udpos",
        "tatoeba",
        "xcopa",
        "lareqa",
        "mewslix",
        "xquad",
        "mlqa",
        "tydiqa",
        "extensions",
    ]
    assert result["lareqa"] == {}
    assert list(result["mewslix"]) == ["map@20", "avg_map@20"]
    assert result["mewslix"]["map@20"]["de"] == 50.0
    assert result["mewslix"]["avg_map@20"] == pytest.approx(mewslix)
    assert result["xcopa"]["avg_metric"] == pytest.approx(xcopa)
    assert result["classification"] == pytest.approx((100 + xcopa) / 2)
    assert result["multi_choice"] == pytest.approx(xcopa)
    assert result["tagging"] == 100.0 and result["qa"] == 100.0
    assert list(result["panx"]["f1"]) == XTREME_R_TASK2LANGS["panx"]  # 48 languages

    extensions = result["extensions"]
    assert extensions["lareqa"]["map@20"]["en"] == pytest.approx(100 * 7 / 12)
    assert extensions["lareqa"]["avg_metric"] == pytest.approx(lareqa)
    assert extensions["mewslix"] == {"avg_metric": pytest.approx(mewslix)}
    assert extensions["retrieval"] == pytest.approx((100 + mewslix) / 2)  # tatoeba + mewslix, as evaluate.py groups
    # ten tasks: xnli panx udpos tatoeba xquad mlqa tydiqa at 100, xcopa, lareqa, mewslix
    assert extensions["all_task"] == pytest.approx((7 * 100 + xcopa + lareqa + mewslix) / 10)


def test_command_line_writes_the_scores(tmp_path, capsys):
    predictions, labels = write_submission(tmp_path, "xtreme", ["pawsx", "xnli"], XTREME_OVERRIDES)
    output = tmp_path / "out" / "scores.json"
    assert main(["--predictions", str(predictions), "--labels", str(labels), "--output", str(output)]) == 0
    written = json.loads(output.read_text())
    assert written["classification"] == pytest.approx((PAWSX + XNLI) / 2)
    assert written == json.loads(json.dumps(score_submission(predictions, labels)))
    assert "classification" in capsys.readouterr().out


def test_command_line_reports_errors(tmp_path, capsys):
    predictions, labels = write_submission(tmp_path, "xtreme", ["pawsx"])
    (predictions / "pawsx" / "test-ja.tsv").unlink()
    assert main(["--predictions", str(predictions), "--labels", str(labels), "--output", str(tmp_path / "s.json")]) == 2
    assert "test-ja.tsv" in capsys.readouterr().err
    assert not (tmp_path / "s.json").exists()


# ---------------------------------------------------------------------------------------------------------------------
# Errors: each names the file (and line).


def _score_one(tmp_path, task, labels_text, predictions_text, benchmark="xtreme"):
    languages = XTREME_TASK2LANGS[task] if benchmark == "xtreme" else XTREME_R_TASK2LANGS[task]
    lang = languages[0]
    predictions, labels = write_submission(tmp_path, benchmark, [task], {(task, lang): (labels_text, predictions_text)})
    return lambda: score_submission(predictions, labels, benchmark), predictions / task, labels / task, lang


def test_missing_language_files_are_listed(tmp_path):
    predictions, labels = write_submission(tmp_path, "xtreme", ["xnli", "tatoeba"])
    (predictions / "xnli" / "test-de.tsv").unlink()
    (labels / "tatoeba" / "test-ko.tsv").unlink()
    with pytest.raises(InputError, match="2 files are missing") as error:
        score_submission(predictions, labels)
    assert "xnli/test-de.tsv" in str(error.value) and "tatoeba/test-ko.tsv" in str(error.value)


def test_count_mismatch_names_both_files_and_the_line(tmp_path):
    run, pred_dir, label_dir, lang = _score_one(tmp_path, "xnli", None, "entailment\nneutral\ncontradiction\n")
    with pytest.raises(InputError) as error:
        run()
    message = str(error.value)
    assert f"{pred_dir}/test-{lang}.tsv has 3 labels but {label_dir}/test-{lang}.tsv has 4" in message
    assert f"line 4 of {label_dir}/test-{lang}.tsv has no counterpart" in message


def test_unknown_labels_name_file_and_line(tmp_path):
    run, pred_dir, _, lang = _score_one(tmp_path, "pawsx", None, "1\n2\n1\n0\n")
    with pytest.raises(InputError, match=rf"{pred_dir}/test-{lang}.tsv:2: unknown label '2'"):
        run()
    run, pred_dir, _, lang = _score_one(tmp_path / "b", "panx", None, "B-PER\nB-MISC\nO\n\nB-LOC\n")
    with pytest.raises(InputError, match=rf"test-{lang}.tsv:2: unknown tag 'B-MISC'"):
        run()
    run, _, label_dir, lang = _score_one(tmp_path / "c", "xcopa", xcopa_jsonl([0, 2]), xcopa_jsonl([0, 1]), "xtreme-r")
    with pytest.raises(InputError, match=rf"{label_dir}/test-{lang}.jsonl:2: unknown label 2"):
        run()


def test_malformed_rows_name_file_and_line(tmp_path):
    run, _pred_dir, _, lang = _score_one(tmp_path, "panx", None, "B-PER\nI-PER\nO\n\nParis\tB-LOC\n")
    with pytest.raises(InputError, match=rf"test-{lang}.tsv:5: expected one tag per line"):
        run()
    run, _, _, lang = _score_one(tmp_path / "b", "bucc2018", None, "s1\te1\ns2 e2\n")
    with pytest.raises(InputError, match=rf"test-{lang}.tsv:2: expected `source id<TAB>English id`"):
        run()
    run, _, _, lang = _score_one(tmp_path / "c", "tatoeba", None, "0\n1\nx\n3\n")
    with pytest.raises(InputError, match=rf"test-{lang}.tsv:3: expected one sentence index"):
        run()
    run, _, _, lang = _score_one(tmp_path / "d", "xnli", None, "entailment\n\nneutral\nneutral\n")
    with pytest.raises(InputError, match=rf"test-{lang}.tsv:2: blank line"):
        run()
    run, _, _, lang = _score_one(tmp_path / "e", "xcopa", None, '{"label": 0}\nnot json\n', "xtreme-r")
    with pytest.raises(InputError, match=rf"test-{lang}.jsonl:2: not a JSON object"):
        run()


def test_tagging_alignment_errors(tmp_path):
    # Sentence 1 has 3 gold tags but 2 predicted.
    run, _, _, _ = _score_one(tmp_path, "panx", None, "B-PER\nI-PER\n\nB-LOC\n")
    with pytest.raises(InputError, match="sentence 1 has 2 tags in .* but 3 in"):
        run()
    # An extra predicted sentence (line 7).
    run, pred_dir, _, lang = _score_one(tmp_path / "b", "panx", None, "B-PER\nI-PER\nO\n\nB-LOC\n\nO\n")
    expected = rf"has 3 sentences but .* has 2: sentence 3 \(line 7 of {pred_dir}/test-{lang}"
    with pytest.raises(InputError, match=expected):
        run()


def test_qa_json_errors(tmp_path):
    run, pred_dir, _, lang = _score_one(tmp_path, "xquad", None, '{"q1": "Denver",\n "q2": }')
    with pytest.raises(InputError, match=rf"{pred_dir}/test-{lang}.json:2:8: invalid JSON"):
        run()
    run, _, _, _ = _score_one(tmp_path / "b", "xquad", None, json.dumps({"q1": ["Denver"]}))
    with pytest.raises(InputError, match="the answer to question 'q1' is list, not a string"):
        run()
    run, _, _label_dir, lang = _score_one(tmp_path / "c", "tydiqa", json.dumps({"data": [{"paragraphs": [{}]}]}), None)
    with pytest.raises(InputError, match=r"data\[0\].paragraphs\[0\]: expected an object with a \"qas\" list"):
        run()


def test_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="unknown benchmark"):
        score_submission(tmp_path, tmp_path, "xtreme-x")
    with pytest.raises(InputError, match="predictions folder .* does not exist"):
        score_submission(tmp_path / "nope", tmp_path)


def test_task_tables_agree_with_the_registry():
    assert set(registry.TATOEBA_LANGUAGES) == set(XTREME_R_TASK2LANGS["tatoeba"])
    assert set(XTREME_TASK2LANGS["tatoeba"]) < set(registry.TATOEBA_LANGUAGES)
    assert set(registry.BUCC_LANGUAGES) == set(XTREME_TASK2LANGS["bucc2018"])
    assert set(registry.TYDIQA_LANGUAGES) == set(XTREME_TASK2LANGS["tydiqa"])
    assert len(XTREME_R_TASK2LANGS["udpos"]) == 38 and len(XTREME_R_TASK2LANGS["panx"]) == 48
    assert len(XTREME_R_TASK2LANGS["tatoeba"]) == 41 and len(XTREME_R_TASK2LANGS["xquad"]) == 12
