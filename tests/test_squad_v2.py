"""SQuAD v2.0: unanswerable questions from every source, CLS labels for null windows, null-vs-span post-processing,
the v2.0 metric through the task (with the official best-threshold scores and the tuned threshold), and unchanged
SQuAD v1.1 behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stilts_jax.core.tokenization import load_demo_tokenizer
from stilts_jax.data.qa import Answer, QADataError, QAExample
from stilts_jax.data.qa_features import featurize_qa
from stilts_jax.data.task_sources import load_qa
from stilts_jax.evaluation.metrics import squad_v2_scores
from stilts_jax.evaluation.qa_postprocess import NullThresholdedAnswers, best_answers, score_answers
from stilts_jax.tasks.families import make_task
from stilts_jax.tasks.registry import get_task
from stilts_jax.tasks.span_qa import SpanQATask
from tests.test_sources import builder_reading, squad_rows, write_parquet

XTREME = Path(__file__).parent / "fixtures" / "qa" / "xtreme"
V2_FILES = {"train": XTREME / "squad" / "train-v2.0.json", "dev": XTREME / "squad" / "dev-v2.0.json"}


def _raw_questions(path: Path) -> dict[str, dict]:
    """id -> the raw SQuAD v2.0 record, read straight from the JSON (the independent reference)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return {q["id"]: q for a in data["data"] for p in a["paragraphs"] for q in p["qas"]}


# --- loading: every source kind keeps the unanswerable questions -------------------------------------------------


@pytest.fixture(scope="module")
def v2_sources(tmp_path_factory):
    from tensorflow_datasets.datasets.squad import squad_dataset_builder

    root = tmp_path_factory.mktemp("squad_v2")
    # rajpurkar/squad_v2 on the hub: squad_v2/{train,validation}-00000-of-00001.parquet, no is_impossible column;
    # an unanswerable question has empty answer lists.
    hub = root / "rajpurkar_squad_v2"
    write_parquet(hub / "squad_v2" / "train-00000-of-00001.parquet", squad_rows(V2_FILES["train"]))
    write_parquet(hub / "squad_v2" / "validation-00000-of-00001.parquet", squad_rows(V2_FILES["dev"]))
    # TFDS squad/v2.0, built by the real builder (its v2 features add is_impossible and plausible_answers).
    files = {"train": V2_FILES["train"], "validation": V2_FILES["dev"]}
    with builder_reading(squad_dataset_builder.Builder, files):
        squad_dataset_builder.Builder(
            config="v2.0", data_dir=str(root / "tfds"), file_format="array_record"
        ).download_and_prepare()
    return {
        "xtreme": {"kind": "xtreme", "path": str(XTREME)},
        "hf": {"kind": "hf", "repo": str(hub), "cache_dir": str(root / "cache")},
        "tfds": {"kind": "tfds", "data_dir": str(root / "tfds")},
        "files": {"kind": "files", "paths": {split: str(path) for split, path in V2_FILES.items()}},
    }


@pytest.mark.parametrize("kind", ["xtreme", "hf", "tfds", "files"])
def test_every_source_keeps_unanswerable_questions(kind, v2_sources):
    for split, path in V2_FILES.items():
        raw = _raw_questions(path)
        examples = load_qa("squad_v2", split, v2_sources[kind])["en"]
        assert sorted(ex.id for ex in examples) == sorted(raw)
        for ex in examples:
            record = raw[ex.id]
            assert bool(ex.answers) == (not record["is_impossible"])
            assert [(a.text, a.start) for a in ex.answers] == [
                (a["text"], a["answer_start"]) for a in record["answers"]
            ]
            assert isinstance(ex.context, str) and ex.language == "en"
        assert any(not ex.answers for ex in examples) and any(ex.answers for ex in examples)


def test_squad_v1_still_refuses_questions_without_answers(tmp_path):
    path = tmp_path / "dev-v1.1.json"
    path.write_text(V2_FILES["dev"].read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(QADataError, match=r"dev-v1.1.json: data\[0\].paragraphs\[0\].qas\[2\].*has no answer"):
        load_qa("squad", "dev", {"kind": "files", "paths": {"dev": str(path)}})


def test_contradictory_or_malformed_v2_records_name_the_file_and_record(tmp_path):
    data = json.loads(V2_FILES["train"].read_text(encoding="utf-8"))
    impossible = data["data"][0]["paragraphs"][0]["qas"][2]
    impossible["answers"] = impossible["plausible_answers"]  # marked impossible, yet answered
    path = tmp_path / "train-v2.0.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(QADataError) as err:
        load_qa("squad_v2", "train", {"kind": "files", "paths": {"train": str(path)}})
    message = str(err.value)
    assert str(path) in message and "data[0].paragraphs[0].qas[2]" in message
    assert impossible["id"] in message and "is_impossible" in message and "plausible_answers" in message

    data = json.loads(V2_FILES["train"].read_text(encoding="utf-8"))
    data["data"][1]["paragraphs"][0]["qas"][0]["is_impossible"] = "no"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(QADataError, match=r"data\[1\].paragraphs\[0\].qas\[0\].*is_impossible must be true or false"):
        load_qa("squad_v2", "train", {"kind": "files", "paths": {"train": str(path)}})


def test_hf_row_marked_impossible_with_answers_names_the_row(tmp_path):
    rows = squad_rows(V2_FILES["dev"])
    rows[3]["answers"] = {"text": ["Mainz"], "answer_start": [78]}
    write_parquet(tmp_path / "repo" / "squad_v2" / "validation-00000-of-00001.parquet", rows)
    answered = load_qa(
        "squad_v2", "dev", {"kind": "hf", "repo": str(tmp_path / "repo"), "cache_dir": str(tmp_path / "cache")}
    )["en"]
    assert answered[3].answers == (Answer("Mainz", 78),)  # the hub marks unanswerable only by empty answers
    rows[3]["answers"] = {"text": ["Mainz"], "answer_start": [3]}
    write_parquet(tmp_path / "bad" / "squad_v2" / "validation-00000-of-00001.parquet", rows)
    with pytest.raises(QADataError, match=r"bad.*row 3.*'Mainz' at offset 3"):
        load_qa("squad_v2", "dev", {"kind": "hf", "repo": str(tmp_path / "bad"), "cache_dir": str(tmp_path / "cache")})


# --- features: null windows point at <s> ------------------------------------------------------------------------


def test_unanswerable_and_answer_free_windows_are_labelled_cls():
    tokenizer = load_demo_tokenizer()
    filler = "The river flows north through many countries before it reaches the sea. " * 4
    context = filler + "The tower was completed in 1889 for the fair. " + filler
    start = context.index("1889")
    answerable = QAExample("a", "When was the tower completed?", context, (Answer("1889", start),), "en")
    unanswerable = QAExample("u", "When was the bridge demolished?", context, (), "en")
    features = featurize_qa([answerable, unanswerable], tokenizer, max_length=48, doc_stride=16, max_query_length=12)
    starts, ends = features.arrays["start_positions"], features.arrays["end_positions"]
    windows = {e: np.nonzero(features.example_index == e)[0] for e in (0, 1)}
    assert len(windows[0]) > 2 and len(windows[1]) == len(windows[0])

    # Every window of the unanswerable question: start = end = 0, the <s> token.
    assert (starts[windows[1]] == 0).all() and (ends[windows[1]] == 0).all()
    assert all(features.arrays["input_ids"][f, 0] == tokenizer.cls_token_id for f in windows[1])
    # The answerable question: windows holding the whole answer label its tokens, the others <s>.
    for f in windows[0]:
        covered = features.offsets[f][features.offsets[f, :, 0] >= 0]
        holds_answer = covered[:, 0].min() <= start and covered[:, 1].max() >= start + 4
        if holds_answer:
            s, t = starts[f], ends[f]
            assert 0 < s <= t and context[features.offsets[f, s, 0] : features.offsets[f, t, 1]].strip() == "1889"
            pieces = "".join(tokenizer.convert_ids_to_tokens(features.arrays["input_ids"][f, s : t + 1].tolist()))
            assert pieces.replace("\u2581", "") == "1889"
        else:
            assert starts[f] == ends[f] == 0
    assert (starts[windows[0]] > 0).any() and (starts[windows[0]] == 0).any()


# --- post-processing: null score against the best span -----------------------------------------------------------


def _two_windows():
    tokenizer = load_demo_tokenizer()
    context = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau"
    example = QAExample("q", "Which?", context, (Answer("gamma", 11),), "en")
    features = featurize_qa([example], tokenizer, max_length=24, doc_stride=4, max_query_length=6, with_labels=False)
    assert len(features) >= 2
    context_tokens = [np.nonzero(features.offsets[f, :, 0] >= 0)[0] for f in range(len(features))]
    return example, features, context_tokens


def _logits(features, context_tokens, *, null_scores, span_score, span_window=0):
    """Zero logits, a CLS score per window (split evenly over start and end) and one valid span."""
    start = np.zeros(features.arrays["input_ids"].shape, np.float32)
    end = np.zeros_like(start)
    start[:, 0] = np.asarray(null_scores) / 2
    end[:, 0] = np.asarray(null_scores) / 2
    first = context_tokens[span_window][1]
    start[span_window, first] = span_score / 2
    end[span_window, first + 1] = span_score / 2
    return start, end


def test_null_prediction_uses_the_minimum_null_score_over_windows():
    example, features, tokens = _two_windows()
    n = len(features)
    # Windows' null scores 2 and 10 (and 10 for the rest); the span scores 5. The minimum (2) decides: span wins.
    start, end = _logits(features, tokens, null_scores=[2.0] + [10.0] * (n - 1), span_score=5.0)
    scored = score_answers([example], features, start, end)["q"]
    assert scored.null_score == pytest.approx(2.0) and scored.span_score == pytest.approx(5.0)
    span_text = scored.text
    assert span_text and span_text in example.context
    assert best_answers([example], features, start, end, with_null=True) == {"q": span_text}
    # Every window sure there is no answer (null 7 > span 5): "no answer".
    start, end = _logits(features, tokens, null_scores=[7.0] * n, span_score=5.0)
    assert best_answers([example], features, start, end, with_null=True) == {"q": ""}
    # The threshold: answer unless null - span > threshold (7 - 5 = 2).
    assert best_answers([example], features, start, end, with_null=True, null_score_diff_threshold=2.5) == {
        "q": span_text
    }
    assert best_answers([example], features, start, end, with_null=True, null_score_diff_threshold=1.5) == {"q": ""}
    assert best_answers([example], features, start, end, with_null=True, null_score_diff_threshold=2.0) == {
        "q": span_text
    }
    # SQuAD v1.1 never predicts "no answer", however sure the CLS token is.
    assert best_answers([example], features, start, end) == {"q": span_text}


def test_question_without_any_valid_span_gets_no_answer():
    example, features, tokens = _two_windows()
    start = np.full(features.arrays["input_ids"].shape, -5.0, np.float32)
    end = np.full_like(start, -5.0)
    last = tokens[0][-1]
    start[0, last], end[0, tokens[0][0]] = 9.0, 9.0  # the best start after the best end, and max length 1 below
    assert best_answers([example], features, start, end, max_answer_length=1, n_best=1, with_null=True) == {"q": ""}
    assert best_answers([example], features, start, end, max_answer_length=1, n_best=1) == {"q": ""}


# --- the task: metric, threshold and v1.1 behaviour ----------------------------------------------------------------


def test_squad_v2_task_scores_with_the_v2_metric():
    tokenizer = load_demo_tokenizer()
    dev = load_qa("squad_v2", "dev", {"kind": "xtreme", "path": str(XTREME)})["en"]
    task = SpanQATask(get_task("squad_v2"), tokenizer, max_length=64, doc_stride=16)
    assert task.with_null
    raw = _raw_questions(V2_FILES["dev"])
    has_answer = [qid for qid, q in raw.items() if q["answers"]]
    no_answer = [qid for qid, q in raw.items() if not q["answers"]]
    # Right on every unanswerable question, the first gold answer on one answerable one, "" on the others.
    predictions = {qid: "" for qid in raw}
    predictions[has_answer[0]] = raw[has_answer[0]]["answers"][0]["text"]
    scores = task.score(predictions, dev)
    assert scores["NoAns_exact"] == scores["NoAns_f1"] == 100.0
    assert scores["HasAns_exact"] == pytest.approx(100.0 / len(has_answer))
    assert scores["exact_match"] == pytest.approx(100.0 * (len(no_answer) + 1) / len(raw))
    assert scores["f1"] == pytest.approx(scores["exact_match"])
    assert not any(k.endswith("_total") for k in scores)
    # A span for an unanswerable question scores 0 there.
    predictions[no_answer[0]] = "Mainz"
    assert task.score(predictions, dev)["NoAns_exact"] == pytest.approx(100.0 * (len(no_answer) - 1) / len(no_answer))


def test_v2_results_table_has_the_breakdown_and_best_f1_columns():
    from stilts_jax.evaluation.report import markdown_table, summarize

    tokenizer = load_demo_tokenizer()
    v2 = SpanQATask(get_task("squad_v2"), tokenizer, max_length=64, doc_stride=16)
    assert [key for key, _ in v2.columns] == ["f1", "exact_match", "HasAns_f1", "NoAns_f1", "best_f1", "baseline_f1"]
    assert [key for key, _ in SpanQATask(get_task("squad"), tokenizer).columns] == ["f1", "exact_match", "baseline_f1"]
    # A set without unanswerable questions has no NoAns F1: "-" in its row, the average over the sets that have one.
    row = {"f1": 70.0, "exact_match": 60.0, "HasAns_f1": 80.0, "best_f1": 72.0, "baseline_f1": 5.0, "examples": 10}
    summary = summarize("squad_v2", {"en": {**row, "NoAns_f1": 50.0}, "xx": row})
    table = markdown_table(summary, v2.columns)
    assert "| language | F1 | EM | HasAns F1 | NoAns F1 | best F1 | baseline F1 | examples |" in table
    assert "| xx | 70.0 | 60.0 | 80.0 | - | 72.0 | 5.0 | 10 |" in table
    assert "| **average (2 evaluated languages)** | 70.0 | 60.0 | 80.0 | 50.0 | 72.0 | 5.0 | |" in table


@pytest.mark.parametrize("name", ["squad", "tydiqa", "xquad", "mlqa"])
def test_v1_tasks_never_predict_no_answer(name):
    assert not SpanQATask(get_task(name), load_demo_tokenizer()).with_null


def test_threshold_reaches_the_task_from_make_task_and_the_config():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "configs"))
    import base

    config = base.get_config(intermediate="squad_v2", target="xquad")
    assert config.evaluation.null_score_diff_threshold == 0.0
    task = make_task(get_task("squad_v2"), load_demo_tokenizer(), max_length=64, null_score_diff_threshold=-3.5)
    assert task.null_score_diff_threshold == -3.5 and task.with_null
    assert make_task(get_task("squad_v2"), load_demo_tokenizer(), max_length=64).null_score_diff_threshold == 0.0


# --- best thresholds: the official search beside the fixed-threshold scores, and the tuned threshold ---------------

BEST_KEYS = {"best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"}


@pytest.fixture(scope="module")
def v2_windows():
    """The fixtures' 13 SQuAD v2.0 questions (train and dev; 6 unanswerable) in short windows, with labels."""
    tokenizer = load_demo_tokenizer()
    source = {"kind": "xtreme", "path": str(XTREME)}
    examples = [ex for split in ("train", "dev") for ex in load_qa("squad_v2", split, source)["en"]]
    return tokenizer, examples, featurize_qa(examples, tokenizer, max_length=64, doc_stride=16, max_query_length=12)


def _planted_logits(features, seed, null_shift=0.0):
    """Random logits, the gold span raised in most answer-holding windows and a random CLS score per window (mean
    2 * null_shift): some questions get their answer, others a wrong span, and the null scores decide which are
    worth answering."""
    rng = np.random.default_rng(seed)
    shape = features.arrays["input_ids"].shape
    start, end = rng.normal(size=shape), rng.normal(size=shape)
    for f, (s, t) in enumerate(zip(features.arrays["start_positions"], features.arrays["end_positions"])):
        if s > 0 and rng.random() < 0.7:
            start[f, s] += 6.0
            end[f, t] += 6.0
    start[:, 0] = rng.normal(null_shift, 4.0, size=shape[0])
    end[:, 0] = rng.normal(null_shift, 4.0, size=shape[0])
    return start.astype(np.float32), end.astype(np.float32)


def _scores_at_every_threshold(examples, features, start, end, no_answer_scores):
    """{threshold: v2.0 scores of best_answers at it} for one threshold below every score and at each score: every
    set of answered questions a threshold can give (the independent check of the search)."""
    references = {ex.id: [a.text for a in ex.answers] for ex in examples}
    thresholds = [-np.inf] + sorted(set(no_answer_scores.values()))
    return {
        t: squad_v2_scores(
            best_answers(examples, features, start, end, with_null=True, null_score_diff_threshold=t), references
        )
        for t in thresholds
    }


def test_squad_v2_scores_add_the_official_best_thresholds_and_keep_the_fixed_ones(v2_windows):
    tokenizer, examples, features = v2_windows
    task = SpanQATask(get_task("squad_v2"), tokenizer, max_length=64, doc_stride=16)
    better_below, better_above = 0, 0
    for seed in range(6):
        # Null scores shifted down and up: the best threshold lies below 0.0 for some, above it for others.
        start, end = _planted_logits(features, seed, null_shift=(-3.0, 8.0)[seed % 2])
        answers = task.answers(examples, features, start, end)
        assert isinstance(answers, NullThresholdedAnswers) and answers.threshold == 0.0
        assert dict(answers) == {
            qid: "" if answers.no_answer_scores[qid] > 0.0 else answers.spans[qid] for qid in answers.spans
        }
        scores = task.score(answers, examples)
        # The fixed-threshold keys are exactly those of the same answers as a plain dict (what the task gave before).
        fixed = task.score(dict(answers), examples)
        assert set(fixed) == {"exact_match", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1"}
        assert set(scores) == set(fixed) | BEST_KEYS and {k: scores[k] for k in fixed} == fixed
        # Against every threshold, scored by predicting with it: the best is the maximum, first reached at the
        # reported threshold (0.0 when answering nothing is best); no tied scores here, so it is reachable.
        no_answer = answers.no_answer_scores
        assert len(set(no_answer.values())) == len(no_answer) and all(np.isfinite(list(no_answer.values())))
        every = _scores_at_every_threshold(examples, features, start, end, no_answer)
        for metric in ("exact", "f1"):
            best = max(row[metric] for row in every.values())
            assert scores[f"best_{metric}"] == pytest.approx(best)
            first = min(t for t, row in every.items() if row[metric] >= best - 1e-9)
            assert scores[f"best_{metric}_thresh"] == (0.0 if first == -np.inf else first)
        assert scores["best_f1"] >= scores["f1"] - 1e-9 and scores["best_exact"] >= scores["exact_match"] - 1e-9
        if scores["best_f1"] > scores["f1"] + 1e-6:
            better_below += scores["best_f1_thresh"] < 0.0
            better_above += scores["best_f1_thresh"] > 0.0
    # Both sides are reached. Above 0.0 the search needs the unthresholded spans: the answers written at 0.0 have
    # "" there, so the official script fed with them would stop at 0.0.
    assert better_below and better_above


def test_tuned_threshold_predicts_at_the_best_f1(v2_windows):
    tokenizer, examples, features = v2_windows
    task = SpanQATask(get_task("squad_v2"), tokenizer, max_length=64, doc_stride=16, null_score_diff_threshold="best")
    for seed in range(4):
        start, end = _planted_logits(features, seed, null_shift=(-3.0, 8.0)[seed % 2])
        answers = task.answers(examples, features, start, end)
        scores = task.score(answers, examples)
        threshold = scores["null_score_diff_threshold"]
        assert threshold == answers.threshold
        assert answers == best_answers(
            examples, features, start, end, with_null=True, null_score_diff_threshold=threshold
        )
        every = _scores_at_every_threshold(examples, features, start, end, answers.no_answer_scores)
        assert scores["f1"] == pytest.approx(max(row["f1"] for row in every.values()))
        assert scores["f1"] == pytest.approx(scores["best_f1"])  # no ties: the official best is reachable
    # Only unanswerable questions and every window sure of an answer: the best is to answer nothing, which the
    # script would report at 0.0; the tuned threshold lies below every score instead, and every answer is "".
    unanswerable = [ex for ex in examples if not ex.answers]
    features = featurize_qa(unanswerable, tokenizer, max_length=64, doc_stride=16, max_query_length=12)
    start, end = _planted_logits(features, 0)
    start[:, 0] = end[:, 0] = -20.0
    answers = task.answers(unanswerable, features, start, end)
    scores = task.score(answers, unanswerable)
    assert max(answers.no_answer_scores.values()) < 0.0 and set(answers.values()) == {""}
    assert answers.threshold < min(answers.no_answer_scores.values())
    assert scores["f1"] == scores["best_f1"] == 100.0 and scores["best_f1_thresh"] == 0.0


def test_v1_answers_and_baselines_stay_plain(v2_windows):
    tokenizer, examples, features = v2_windows
    start, end = _planted_logits(features, 0)
    assert type(best_answers(examples, features, start, end)) is dict
    task = SpanQATask(get_task("squad_v2"), tokenizer, max_length=64, doc_stride=16)
    assert not BEST_KEYS & set(task.score(task.trivial_predictions(examples), examples))
    with pytest.raises(ValueError, match="must be a number or 'best'.*tune_null_score_diff_threshold"):
        SpanQATask(get_task("squad_v2"), tokenizer, null_score_diff_threshold="auto")


def test_tuned_threshold_reaches_the_task_from_the_config(tmp_path):
    from stilts_jax.config.loader import parse_config_args
    from stilts_jax.core.tokenization import DEMO_TOKENIZER_DIR
    from stilts_jax.models.config import tiny_config
    from stilts_jax.pipeline.runner import Pipeline

    # Tasks need only the model's config.json (its length limit), not weights: no tiny model is built.
    model = tmp_path / "model"
    model.mkdir()
    config_json = tiny_config(len(load_demo_tokenizer()), max_position_embeddings=514).to_hf_dict()
    (model / "config.json").write_text(json.dumps(config_json), encoding="utf-8")
    common = [
        "--config=configs/demo.py",
        f"--config.workdir={tmp_path / 'run'}",
        f"--config.model.name={model}",
        "--config.model.make_tiny=false",
        f"--config.model.tokenizer={DEMO_TOKENIZER_DIR}",
        "--config.intermediate.task=squad_v2",
    ]
    config, _ = parse_config_args(
        common
        + [
            "--config.evaluation.null_score_diff_threshold=-2",
            "--config.evaluation.tune_null_score_diff_threshold=true",
        ]
    )
    pipeline = Pipeline(config)
    assert pipeline.make_task(get_task("squad_v2"), config.intermediate).null_score_diff_threshold == "best"
    config, _ = parse_config_args(common + ["--config.evaluation.null_score_diff_threshold=-2"])
    assert Pipeline(config).make_task(get_task("squad_v2"), config.intermediate).null_score_diff_threshold == -2.0


@pytest.mark.slow
def test_pipeline_reports_best_thresholds_and_writes_tuned_predictions(tmp_path):
    # SQuAD v2.0 as the target (no intermediate task) of the tiny demo model, a few steps on the fixtures, with the
    # tuned threshold: results.json and the dev rows carry the official best-threshold scores and the threshold
    # used, and the written predictions are those the results score.
    from stilts_jax import main as main_module

    download = tmp_path / "download" / "squad"
    download.mkdir(parents=True)
    train = json.loads(V2_FILES["train"].read_text(encoding="utf-8"))
    train["data"] = train["data"] * 4
    (download / "train-v2.0.json").write_text(json.dumps(train), encoding="utf-8")
    (download / "dev-v2.0.json").write_text(V2_FILES["dev"].read_text(encoding="utf-8"), encoding="utf-8")
    workdir = tmp_path / "run"
    code = main_module.main(
        [
            "--config=configs/demo.py",
            f"--config.workdir={workdir}",
            f"--config.model.name={tmp_path / 'tiny-xlmr'}",
            "--config.intermediate.task=",
            "--config.target.task=squad_v2",
            "--config.target.source.kind=xtreme",
            f"--config.target.source.path={download.parent}",
            "--config.target.max_length=128",
            "--config.target.doc_stride=32",
            "--config.target.train.batch_size=8",
            "--config.target.train.max_steps=3",
            "--config.target.train.eval_every=3",
            "--config.target.train.progress_bar=false",
            "--config.evaluation.tune_null_score_diff_threshold=true",
        ]
    )
    assert code == 0
    row = json.loads((workdir / "results.json").read_text())["per_language"]["en"]
    assert BEST_KEYS | {"null_score_diff_threshold", "HasAns_f1", "NoAns_f1"} <= set(row)
    assert row["best_f1"] >= row["f1"] - 1e-9
    # The predictions written are the ones scored, at the tuned threshold, by the v2.0 metric on the raw file.
    predictions = json.loads((workdir / "predictions" / "squad_v2" / "test-en.json").read_text(encoding="utf-8"))
    raw = _raw_questions(V2_FILES["dev"])
    rescored = squad_v2_scores(predictions, {qid: [a["text"] for a in q["answers"]] for qid, q in raw.items()})
    assert rescored["f1"] == pytest.approx(row["f1"]) and rescored["exact"] == pytest.approx(row["exact_match"])
    dev_rows = [json.loads(line) for line in (workdir / "target" / "metrics.jsonl").read_text().splitlines()]
    dev_rows = [r for r in dev_rows if "best_f1" in r]
    assert dev_rows and all("null_score_diff_threshold" in r and r["dev_score"] == r["f1"] for r in dev_rows)
