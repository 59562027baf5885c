"""Score an XTREME or XTREME-R submission folder against label files, as google-research/xtreme evaluate.py does.

    python -m stilts_jax.score --predictions DIR --labels DIR --benchmark xtreme|xtreme-r --output scores.json

Both folders use the leaderboard layout `{task}/test-{lang}.{tsv|json|jsonl}`:
- pawsx, xnli: one label per line (PAWS-X 0/1; XNLI entailment/neutral/contradiction).
- panx, udpos: one tag per line, a blank line between sentences (PAN-X B-/I-PER|ORG|LOC and O; UD-POS the 17 UPOS).
- tatoeba: one index per line; bucc2018: `src_id<TAB>en_id` lines; xcopa: JSON lines with an integer "label" (0/1).
- xquad, mlqa, tydiqa: predictions JSON {question id: answer}; labels SQuAD-format JSON ({"data": [...]}).
- mewslix, lareqa: predictions JSON {query id: [candidate ids, best first]}; labels JSON {query id: [gold ids]}.

The output holds exactly the keys and values evaluate.py writes: per task, one {language: value} dict per metric
(accuracy; f1/precision/recall; exact_match/f1; map@20), `avg_<metric>` (mean over the task's languages in
evaluate.py's order) and `avg_metric` ((avg_exact_match + avg_f1) / 2 for QA, else avg_f1, else avg_accuracy);
then each group score (mean of its tasks' avg_metric) whose tasks are all present, and `all_task` (mean over every
task of the benchmark) when all are present. A task is scored only when its folder exists under both roots (else it
is skipped, as evaluate.py skips it); once it is, every language file must exist in both (evaluate.py raises).
Unlike evaluate.py, `all_task` is summed in the fixed task order (evaluate.py iterates a set, so its last digits can
vary between runs).

Everything else goes under the one extra key "extensions": skipped tasks and ignored folders, questions without a
prediction (scored 0, as evaluate.py does), the seqeval semantics used, and the XTREME-R values evaluate.py cannot
produce: LAReQA mAP@20 (evaluate.py lists no LAReQA language and writes "lareqa": {}), Mewsli-X's avg_metric
(= avg_map@20; evaluate.py sets none), and with them the XTREME-R "retrieval" group (tatoeba + mewslix, as
evaluate.py groups them) and "all_task" (evaluate.py fails with a TypeError on both).

Stricter than evaluate.py: unequal prediction/label counts, sentences of unequal length, malformed rows, unknown
labels and invalid JSON are errors naming the file and line.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stilts_jax.core.errors import InputError, StiltsError
from stilts_jax.core.io_utils import atomic_write_text
from stilts_jax.evaluation import xtreme_tasks as xt
from stilts_jax.evaluation.metrics import (
    DEFAULT_SEQEVAL_VERSION,
    SEQEVAL_VERSIONS,
    accuracy_score,
    map_at_k_by_id,
    mlqa_scores,
    seqeval_f1,
)
from stilts_jax.evaluation.retrieval_metrics import bucc_scores
from stilts_jax.evaluation.squad_metric import squad_scores

MAP_K = 20
_INDEX = re.compile(r"0|[1-9][0-9]*")


# ---------------------------------------------------------------------------------------------------------------------
# Reading files: every reader reports problems as "path:line: what is wrong".


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e})") from e
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from e


def _lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped line) for every line, as evaluate.py's `[l.strip() for l in f]` sees them."""
    text = _read_text(path).replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline ending the last line opens no new line
    return [(n, line.strip()) for n, line in enumerate(lines, start=1)]


def _read_labels(path: Path, allowed: frozenset[str], what: str) -> list[tuple[int, str]]:
    rows = []
    for n, value in _lines(path):
        if not value:
            raise InputError(f"{path}:{n}: blank line; one {what} per line expected")
        if value not in allowed:
            raise InputError(f"{path}:{n}: unknown {what} {value!r}; expected one of {', '.join(sorted(allowed))}")
        rows.append((n, value))
    return rows


def _read_indices(path: Path) -> list[tuple[int, str]]:
    rows = []
    for n, value in _lines(path):
        if not _INDEX.fullmatch(value):
            raise InputError(
                f"{path}:{n}: expected one sentence index (a non-negative integer) per line, got {value!r}"
            )
        rows.append((n, value))
    return rows


def _read_tags(path: Path, allowed: frozenset[str]) -> list[list[tuple[int, str]]]:
    """Sentences of (line, tag), split at blank lines exactly as evaluate.py's read_tag (a second blank line in a row
    makes an empty sentence)."""
    sentences: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    for n, value in _lines(path):
        if not value:
            sentences.append(current)
            current = []
            continue
        if len(value.split()) != 1:
            raise InputError(f"{path}:{n}: expected one tag per line, got {value!r}")
        if value not in allowed:
            raise InputError(f"{path}:{n}: unknown tag {value!r}; expected one of {', '.join(sorted(allowed))}")
        current.append((n, value))
    if current:
        sentences.append(current)
    return sentences


def _read_bucc_pairs(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for n, value in _lines(path):
        fields = value.split("\t")
        if len(fields) != 2 or not all(f.strip() for f in fields):
            raise InputError(f"{path}:{n}: expected `source id<TAB>English id`, got {value!r}")
        pairs.append((fields[0], fields[1]))  # compared as written, like evaluate.py's bucc_f1
    return pairs


def _read_xcopa(path: Path) -> list[tuple[int, int]]:
    rows = []
    for n, value in _lines(path):
        try:
            record = json.loads(value)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{n}: not a JSON object ({e.msg})") from e
        if not isinstance(record, dict) or "label" not in record:
            raise InputError(f'{path}:{n}: expected a JSON object with a "label" field')
        label = record["label"]
        if isinstance(label, bool) or label not in xt.XCOPA_LABELS:
            raise InputError(f"{path}:{n}: unknown label {label!r}; expected 0 or 1")
        rows.append((n, label))
    return rows


def _load_json(path: Path) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}:{e.colno}: invalid JSON ({e.msg})") from e


def _read_answers(path: Path) -> dict[str, str]:
    data = _load_json(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object {{question id: answer}}")
    for qid, answer in data.items():
        if not isinstance(answer, str):
            raise InputError(f"{path}: the answer to question {qid!r} is {type(answer).__name__}, not a string")
    return data


def _read_squad_references(path: Path) -> dict[str, list[str]]:
    """{question id: [answer texts]} from SQuAD-format JSON ({"data": [articles]} or the article list itself)."""
    data = _load_json(path)
    articles = data["data"] if isinstance(data, dict) and "data" in data else data

    def expect(condition: bool, where: str, what: str) -> None:
        if not condition:
            raise InputError(f"{path}: {where}: expected {what} (SQuAD format)")

    expect(isinstance(articles, list), "data", "a list of articles")
    references: dict[str, list[str]] = {}
    for a, article in enumerate(articles):
        expect(
            isinstance(article, dict) and isinstance(article.get("paragraphs"), list),
            f"data[{a}]",
            'an object with a "paragraphs" list',
        )
        for p, paragraph in enumerate(article["paragraphs"]):
            where = f"data[{a}].paragraphs[{p}]"
            expect(
                isinstance(paragraph, dict) and isinstance(paragraph.get("qas"), list),
                where,
                'an object with a "qas" list',
            )
            for q, qa in enumerate(paragraph["qas"]):
                where_q = f"{where}.qas[{q}]"
                expect(
                    isinstance(qa, dict) and isinstance(qa.get("id"), str) and isinstance(qa.get("answers"), list),
                    where_q,
                    'an object with an "id" string and an "answers" list',
                )
                texts = []
                for i, answer in enumerate(qa["answers"]):
                    expect(
                        isinstance(answer, dict) and isinstance(answer.get("text"), str),
                        f"{where_q}.answers[{i}]",
                        'an object with a "text" string',
                    )
                    texts.append(answer["text"])
                if not texts:
                    raise InputError(f"{path}: {where_q}: question {qa['id']!r} has no answer")
                if qa["id"] in references:
                    raise InputError(f"{path}: {where_q}: question id {qa['id']!r} appears twice")
                references[qa["id"]] = texts
    if not references:
        raise InputError(f"{path}: no questions")
    return references


def _read_id_lists(path: Path, what: str, allow_empty: bool) -> dict[str, list[str]]:
    data = _load_json(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object {{id: [{what}]}}")
    for key, ids in data.items():
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or (not ids and not allow_empty):
            raise InputError(
                f"{path}: the value for {key!r} must be a {'' if allow_empty else 'non-empty '}list of {what} (strings)"
            )
    return data


# ---------------------------------------------------------------------------------------------------------------------
# Scoring one language file pair.


def _check_counts(pred_path: Path, gold_path: Path, predicted: list, gold: list, unit: str) -> None:
    if len(predicted) != len(gold):
        shorter, longer = (pred_path, gold_path) if len(predicted) < len(gold) else (gold_path, pred_path)
        first_extra = (gold if len(predicted) < len(gold) else predicted)[min(len(predicted), len(gold))][0]
        raise InputError(
            f"{pred_path} has {len(predicted)} {unit}s but {gold_path} has {len(gold)}: line "
            f"{first_extra} of {longer} has no counterpart in {shorter}"
        )


def _score_labels(pred_path: Path, gold_path: Path, read: Callable[[Path], list], unit: str) -> dict[str, float]:
    predicted, gold = read(pred_path), read(gold_path)
    _check_counts(pred_path, gold_path, predicted, gold, unit)
    if not gold:
        raise InputError(f"{gold_path}: no {unit}s")
    return {"accuracy": accuracy_score([v for _, v in predicted], [v for _, v in gold])}


def _score_tags(pred_path: Path, gold_path: Path, allowed: frozenset[str], seqeval_version: str) -> dict[str, float]:
    predicted, gold = _read_tags(pred_path, allowed), _read_tags(gold_path, allowed)
    for s, (p, g) in enumerate(zip(predicted, gold)):
        if len(p) != len(g):
            p_line = p[0][0] if p else "?"
            g_line = g[0][0] if g else "?"
            raise InputError(
                f"sentence {s + 1} has {len(p)} tags in {pred_path} (from line {p_line}) but {len(g)} "
                f"in {gold_path} (from line {g_line})"
            )
    if len(predicted) != len(gold):
        n = min(len(predicted), len(gold))
        longer, extra = (pred_path, predicted[n]) if len(predicted) > len(gold) else (gold_path, gold[n])
        where = f"line {extra[0][0]}" if extra else "an empty sentence"
        raise InputError(
            f"{pred_path} has {len(predicted)} sentences but {gold_path} has {len(gold)}: sentence "
            f"{n + 1} ({where} of {longer}) has no counterpart"
        )
    if not any(gold):
        raise InputError(f"{gold_path}: no tagged sentences")
    return seqeval_f1(
        [[t for _, t in s] for s in gold], [[t for _, t in s] for s in predicted], seqeval_version=seqeval_version
    )


def _score_bucc(pred_path: Path, gold_path: Path) -> dict[str, float]:
    predicted, gold = _read_bucc_pairs(pred_path), _read_bucc_pairs(gold_path)
    if not gold:
        raise InputError(f"{gold_path}: no gold pairs")
    scores = bucc_scores(predicted, gold)
    return {"f1": scores["f1"], "precision": scores["precision"], "recall": scores["recall"]}


def _unanswered(predictions: dict, references: dict) -> int:
    return sum(qid not in predictions for qid in references)


# ---------------------------------------------------------------------------------------------------------------------
# The whole submission.


def _subfolders(root: Path, what: str) -> set[str]:
    if not root.is_dir():
        raise InputError(f"{what} folder {root} does not exist or is not a folder")
    return {p.name for p in root.iterdir() if p.is_dir()}


def _languages(task: str, benchmark: str) -> list[str]:
    if benchmark == "xtreme-r" and task == "lareqa":
        return xt.LAREQA_LANGUAGES
    return xt.TASK2LANGS[benchmark][task]


class _Scorer:
    def __init__(self, predictions_dir: Path, labels_dir: Path, benchmark: str, seqeval_version: str):
        self.predictions_dir, self.labels_dir = predictions_dir, labels_dir
        self.benchmark, self.seqeval_version = benchmark, seqeval_version
        self.unanswered: dict[str, dict[str, int]] = {}

    def paths(self, task: str, lang: str) -> tuple[Path, Path]:
        name = f"test-{lang}.{xt.get_suffix(task, self.benchmark)}"
        return self.predictions_dir / task / name, self.labels_dir / task / name

    def score(self, task: str, lang: str) -> dict[str, float]:
        pred, gold = self.paths(task, lang)
        if task == "pawsx":
            return _score_labels(pred, gold, lambda p: _read_labels(p, xt.PAWSX_LABELS, "label"), "label")
        if task == "xnli":
            return _score_labels(pred, gold, lambda p: _read_labels(p, xt.XNLI_LABELS, "label"), "label")
        if task == "xcopa":
            return _score_labels(pred, gold, _read_xcopa, "label")
        if task == "tatoeba":
            return _score_labels(pred, gold, _read_indices, "index")
        if task in ("panx", "udpos"):
            return _score_tags(pred, gold, xt.LABEL_SETS[task], self.seqeval_version)
        if task == "bucc2018":
            return _score_bucc(pred, gold)
        if task in ("xquad", "mlqa", "tydiqa"):
            predictions, references = _read_answers(pred), _read_squad_references(gold)
            self.note_unanswered(task, lang, _unanswered(predictions, references))
            if task == "mlqa":
                return mlqa_scores(predictions, references, lang)
            return squad_scores(predictions, references)
        if task in ("mewslix", "lareqa"):
            predictions = _read_id_lists(pred, "candidate ids", allow_empty=True)
            gold_ids = _read_id_lists(gold, "gold ids", allow_empty=False)
            if not gold_ids:
                raise InputError(f"{gold}: no queries")
            self.note_unanswered(task, lang, _unanswered(predictions, gold_ids))
            # Mewsli-X: the single gold entity is the first of the list, stripped (utils_mewslix.evaluate).
            relevant = {q: {ids[0].strip()} if task == "mewslix" else set(ids) for q, ids in gold_ids.items()}
            return {f"map@{MAP_K}": map_at_k_by_id(predictions, relevant, MAP_K)}
        raise InputError(f"no scorer for task {task!r}")  # unreachable for the benchmark tables

    def note_unanswered(self, task: str, lang: str, count: int) -> None:
        if count:
            self.unanswered.setdefault(task, {})[lang] = count


def _task_scores(scorer: _Scorer, task: str, group2task: dict[str, list[str]]) -> dict[str, Any]:
    """evaluate.py's per-task dict: {metric: {lang: value}}, avg_<metric>, avg_metric."""
    score: dict[str, Any] = {}
    for lang in _languages(task, scorer.benchmark):
        for metric, value in scorer.score(task, lang).items():
            score.setdefault(metric, {})[lang] = value
    averages = {f"avg_{m}": sum(values.values()) / len(values) for m, values in score.items()}
    score.update(averages)
    if task in group2task["qa"]:
        score["avg_metric"] = (score["avg_exact_match"] + score["avg_f1"]) / 2
    elif "avg_f1" in score:
        score["avg_metric"] = score["avg_f1"]
    elif "avg_accuracy" in score:
        score["avg_metric"] = score["avg_accuracy"]
    return score


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def score_submission(
    predictions_dir: str | Path,
    labels_dir: str | Path,
    benchmark: str = "xtreme",
    *,
    seqeval_version: str = DEFAULT_SEQEVAL_VERSION,
) -> dict[str, Any]:
    """The scores evaluate.py writes for this submission, plus "extensions" (see the module docstring)."""
    benchmark = xt.check_benchmark(benchmark)
    if seqeval_version not in SEQEVAL_VERSIONS:
        raise InputError(f"unknown seqeval version {seqeval_version!r}; choose one of {', '.join(SEQEVAL_VERSIONS)}")
    predictions_dir, labels_dir = Path(predictions_dir), Path(labels_dir)
    prediction_tasks = _subfolders(predictions_dir, "predictions")
    label_tasks = _subfolders(labels_dir, "labels")
    group2task, task2langs = xt.GROUP2TASK[benchmark], xt.TASK2LANGS[benchmark]
    scorer = _Scorer(predictions_dir, labels_dir, benchmark, seqeval_version)

    skipped: dict[str, str] = {}
    tasks: list[str] = []
    for task in task2langs:
        missing_sides = [
            side for side, have in (("predictions", prediction_tasks), ("labels", label_tasks)) if task not in have
        ]
        if missing_sides:
            skipped[task] = f"no {' or '.join(missing_sides)} folder"
        else:
            tasks.append(task)
    if not tasks and not _registered_tasks((prediction_tasks & label_tasks) - set(task2langs)):

        def listing(folders: set[str]) -> str:
            return ", ".join(sorted(folders)) or "no folder"

        raise InputError(
            f"no task folder is in both {predictions_dir} ({listing(prediction_tasks)}) and {labels_dir} "
            f"({listing(label_tasks)}), so nothing can be scored. Both must hold one folder per task, named as "
            f"{benchmark} names them ({', '.join(task2langs)}; your own tasks: --task-modules), with test-{{lang}} "
            "files inside: pass the folders that contain those task folders (a run's predictions/ folder)."
        )

    # evaluate.py scores "lareqa" with no languages; the extension needs its files, if any were submitted.
    score_lareqa = (
        benchmark == "xtreme-r" and "lareqa" in tasks and any((predictions_dir / "lareqa").glob("test-*.json"))
    )
    if benchmark == "xtreme-r" and "lareqa" in tasks and not score_lareqa:
        skipped["lareqa"] = "no lareqa/test-{lang}.json prediction files (evaluate.py scores no LAReQA language)"

    missing = [
        str(path)
        for task in tasks
        if task != "lareqa" or score_lareqa
        for lang in _languages(task, benchmark)
        for path in scorer.paths(task, lang)
        if not path.is_file()
    ]
    if missing:
        shown = "\n  ".join(missing[:20]) + (f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else "")
        raise InputError(
            f"{len(missing)} files are missing (a task folder must hold every language of the task, as "
            f"evaluate.py requires; remove the folder to skip the task):\n  {shown}"
        )

    detailed: dict[str, dict[str, Any]] = {}
    lareqa_extension: dict[str, Any] | None = None
    for task in tasks:
        if task == "lareqa":
            detailed[task] = {}  # what evaluate.py writes: XTREME_R_TASK2LANGS has no LAReQA language
            if score_lareqa:
                lareqa_extension = _task_scores(scorer, task, group2task)
                lareqa_extension["avg_metric"] = lareqa_extension[f"avg_map@{MAP_K}"]
            continue
        detailed[task] = _task_scores(scorer, task, group2task)

    overall: dict[str, float] = {}
    available = set(detailed)
    extension_metric = {task: scores["avg_metric"] for task, scores in detailed.items() if "avg_metric" in scores}
    if "mewslix" in detailed:
        extension_metric["mewslix"] = detailed["mewslix"][f"avg_map@{MAP_K}"]
    if lareqa_extension is not None:
        extension_metric["lareqa"] = lareqa_extension["avg_metric"]
    if set(task2langs) == available and all("avg_metric" in detailed[t] for t in task2langs):
        overall["all_task"] = _mean([detailed[t]["avg_metric"] for t in task2langs])
    extension_groups: dict[str, float] = {}
    for group, group_tasks in group2task.items():
        if set(group_tasks) <= available:
            if all("avg_metric" in detailed[t] for t in group_tasks):
                overall[group] = _mean([detailed[t]["avg_metric"] for t in group_tasks])
            elif all(t in extension_metric for t in group_tasks):
                extension_groups[group] = _mean([extension_metric[t] for t in group_tasks])

    registered = _registered_tasks((prediction_tasks & label_tasks) - set(task2langs))
    extensions: dict[str, Any] = {
        "about": "values google-research/xtreme evaluate.py does not write; see stilts_jax/score.py",
        "seqeval_version": seqeval_version,
        "skipped_tasks": skipped,
        "ignored_folders": sorted((prediction_tasks | label_tasks) - set(task2langs) - set(registered)),
        "unanswered": scorer.unanswered,
    }
    if registered:
        extensions["registered_tasks"] = {
            folder: _registered_scores(scorer, spec) for folder, spec in registered.items()
        }
    if benchmark == "xtreme-r":
        if "mewslix" in detailed:
            extensions["mewslix"] = {"avg_metric": extension_metric["mewslix"]}
        if lareqa_extension is not None:
            extensions["lareqa"] = lareqa_extension
        extensions.update(extension_groups)
        if "all_task" not in overall and all(t in extension_metric for t in task2langs):
            extensions["all_task"] = _mean([extension_metric[t] for t in task2langs])
    return {**overall, **detailed, "extensions": extensions}


def _registered_tasks(folders: set[str]) -> dict[str, Any]:
    """Submission folder -> the registered task (a user's, from --task-modules) scored in it, for folders that are
    not the benchmark's."""
    from stilts_jax.tasks.registry import TASKS

    by_folder = {
        spec.submission_folder: spec
        for spec in TASKS.values()
        if spec.family in ("classification", "multiple_choice", "tagging", "span_qa")
    }
    return {folder: by_folder[folder] for folder in sorted(folders) if folder in by_folder}


def _registered_scores(scorer: _Scorer, spec: Any) -> dict[str, Any]:
    """A registered task's scores per language and averaged, read by its family (every language file required)."""
    score: dict[str, Any] = {}
    languages = [lang for lang in spec.languages if spec.submission_path(scorer.labels_dir, lang).is_file()]
    if not languages:
        raise InputError(
            f"{scorer.labels_dir / spec.submission_folder} holds no label file of {spec.name}'s "
            f"languages (test-{{lang}} files as {spec.submission_path(scorer.labels_dir, 'xx').name})"
        )
    for lang in languages:
        pred = Path(str(spec.submission_path(scorer.predictions_dir, lang)))
        gold = Path(str(spec.submission_path(scorer.labels_dir, lang)))
        if not pred.is_file():
            raise InputError(f"{pred} is missing (labels exist for {spec.name} {lang})")
        if spec.family == "classification":
            labels = frozenset(spec.label_names())
            row = _score_labels(pred, gold, lambda p: _read_labels(p, labels, "label"), "label")  # noqa: B023 (called here)
        elif spec.family == "multiple_choice":
            row = _score_labels(pred, gold, _read_xcopa, "label")
        elif spec.family == "tagging":
            row = _score_tags(pred, gold, frozenset(spec.label_names()), scorer.seqeval_version)
        else:
            row = squad_scores(_read_answers(pred), _read_squad_references(gold))
        for metric, value in row.items():
            score.setdefault(metric, {})[lang] = value
    score.update({f"avg_{m}": sum(values.values()) / len(values) for m, values in list(score.items())})
    return score


def _summary_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for key, value in result.items():
        if key == "extensions":
            continue
        if isinstance(value, dict):
            if "avg_metric" in value:
                lines.append(f"{key}: avg_metric {value['avg_metric']:.2f}")
            elif value:
                lines.append(f"{key}: " + ", ".join(f"{k} {v:.2f}" for k, v in value.items() if k.startswith("avg_")))
        else:
            lines.append(f"[{key}] {value:.2f}")
    extensions = result["extensions"]
    for key in ("retrieval", "all_task"):
        if key in extensions:
            lines.append(f"[{key}] {extensions[key]:.2f} (extension: Mewsli-X/LAReQA count with avg mAP@20)")
    for task, scores in extensions.get("registered_tasks", {}).items():
        lines.append(
            f"{task} (registered): " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items() if k.startswith("avg_"))
        )
    for task, reason in extensions["skipped_tasks"].items():
        lines.append(f"skipped {task}: {reason}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stilts_jax.score", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--predictions", required=True, help="submission folder: {task}/test-{lang}.*")
    parser.add_argument("--labels", required=True, help="label folder in the same layout")
    parser.add_argument("--benchmark", default="xtreme", choices=xt.BENCHMARKS)
    parser.add_argument("--output", required=True, help="JSON file to write")
    parser.add_argument(
        "--seqeval",
        default=DEFAULT_SEQEVAL_VERSION,
        choices=SEQEVAL_VERSIONS,
        help="seqeval semantics for PAN-X/UD-POS (default %(default)s, what XTREME's reference "
        "numbers were computed with; 1.2.2 is today's `pip install seqeval`)",
    )
    parser.add_argument(
        "--task-modules",
        nargs="*",
        default=[],
        help="Python files (or module names) that register your own tasks: their folders are scored "
        "too, under extensions.registered_tasks",
    )
    args = parser.parse_args(argv)
    try:
        from stilts_jax.tasks.user_modules import load_task_modules

        load_task_modules(args.task_modules)
        result = score_submission(args.predictions, args.labels, args.benchmark, seqeval_version=args.seqeval)
        atomic_write_text(args.output, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    except StiltsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n".join(_summary_lines(result)))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
