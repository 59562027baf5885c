"""A sweep's results as the paper's table: intermediate task x target, mean +- std over seeds, delta to the baseline.

A run's score on its target is the target's benchmark score, computed from the run's `results.json` as
google-research/xtreme evaluate.py computes a task's `avg_metric`: the mean over the benchmark's languages of
(EM + F1) / 2 for QA tasks, F1 where the task has F1, accuracy otherwise. A target's languages are XTREME's when
XTREME has the task, else XTREME-R's (XCOPA); the XTREME and XTREME-R averages use each benchmark's own language
lists (they differ for UD-POS, PAN-X, Tatoeba and XQuAD) over the targets of the sweep that the benchmark has.
Each benchmark's classification average is a column too, over the sweep's targets in evaluate.py's
"classification" group of that benchmark: XTREME-R's is XNLI and XCOPA, XTREME's PAWS-X and XNLI (PAWS-X is no
XTREME-R task). A row is an intermediate task, a chain of stages ("anli+hellaswag") or the baseline.

Nothing is dropped silently: a run without results, a target missing languages, or a benchmark average with a
missing piece is reported as such (cells carry the reason).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from stilts_jax.evaluation import xtreme_tasks as xt
from stilts_jax.experiments.runner import PENDING, is_finished
from stilts_jax.experiments.sweep import BASELINE, Run
from stilts_jax.tasks.registry import TASKS

BENCHMARKS = ("xtreme", "xtreme-r")
BENCHMARK_TITLES = {"xtreme": "XTREME", "xtreme-r": "XTREME-R"}
GROUP = "classification"  # the evaluate.py task group averaged in a column of its own, per benchmark
GROUP_COLUMNS = {f"{b}/{GROUP}": b for b in BENCHMARKS}  # column -> its benchmark
AVERAGE_COLUMNS = ("xtreme", f"xtreme/{GROUP}", "xtreme-r", f"xtreme-r/{GROUP}")  # in the tables' order


def group_members(column: str) -> list[str]:
    """The tasks (this package's names) of a group column's benchmark group, in evaluate.py's order."""
    benchmark = GROUP_COLUMNS[column]
    names = xt.GROUP2TASK[benchmark][column.split("/", 1)[1]]
    return [next((t for t in TASKS if xtreme_name(t) == name), name) for name in names]


def column_label(column: str) -> str:
    """A column's header: the target's name, `XTREME-R avg`, `XTREME-R classification avg`."""
    if column in BENCHMARK_TITLES:
        return f"{BENCHMARK_TITLES[column]} avg"
    if column in GROUP_COLUMNS:
        return f"{BENCHMARK_TITLES[GROUP_COLUMNS[column]]} {column.split('/', 1)[1]} avg"
    return column


def is_average(column: str) -> bool:
    return column in AVERAGE_COLUMNS


def xtreme_name(task: str) -> str:
    """The task's folder name in google-research/xtreme (bucc -> bucc2018)."""
    spec = TASKS.get(task)
    return spec.xtreme_name if spec and spec.xtreme_name else task


def benchmark_languages(task: str, benchmark: str) -> list[str] | None:
    """The benchmark's languages of the task, in evaluate.py's order; None if the benchmark lacks the task."""
    languages = xt.TASK2LANGS[benchmark].get(xtreme_name(task))
    return list(languages) if languages else None


def table_benchmark(task: str) -> str | None:
    """The benchmark whose language list the table's cells use: XTREME, or XTREME-R for tasks only it has."""
    return next((b for b in BENCHMARKS if benchmark_languages(task, b)), None)


def metric_description(task: str) -> str:
    if xtreme_name(task) in xt.XTREME_GROUP2TASK["qa"]:
        return "(EM+F1)/2"
    return "F1" if _metric_key(task) == "f1" else "accuracy"


def _metric_key(task: str) -> str:
    """evaluate.py's choice for non-QA tasks: f1 where the task reports it, else accuracy."""
    spec = TASKS.get(task)
    return "f1" if spec is not None and spec.metric == "f1" else "accuracy"


def language_score(task: str, row: Mapping[str, float]) -> float | None:
    """One language's task metric from a results.json row (None if the row lacks it)."""
    if xtreme_name(task) in xt.XTREME_GROUP2TASK["qa"]:
        if "f1" in row and "exact_match" in row:
            return (row["f1"] + row["exact_match"]) / 2
        return None
    value = row.get(_metric_key(task))
    return float(value) if value is not None else None


@dataclasses.dataclass(frozen=True)
class TaskScore:
    value: float | None  # None: no language could be scored
    languages: int  # how many of the expected languages were scored
    expected: int
    missing: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return self.value is not None and not self.missing


def task_score(
    task: str, per_language: Mapping[str, Mapping[str, float]], languages: Sequence[str] | None
) -> TaskScore:
    """The mean of the task metric over `languages` (None: every language of the results)."""
    wanted = list(languages) if languages is not None else sorted(per_language)
    values, missing = [], []
    for lang in wanted:
        row = per_language.get(lang)
        score = language_score(task, row) if isinstance(row, Mapping) else None
        (missing.append(lang) if score is None else values.append(score))
    value = sum(values) / len(values) if values else None
    return TaskScore(value, len(values), len(wanted), tuple(missing))


ZERO_SHOT = "zero-shot"
# results.json's entry of the averaged model (evaluation.average_checkpoints; stilts_jax/pipeline/zero_shot.py
# AVERAGED): its label (avg-last-k), the averaged steps and per_language scores like the selected model's.
AVERAGED_RESULTS = "average_checkpoints"


@dataclasses.dataclass
class RunResult:
    run: Run
    status: str  # done, or the state's status (failed, running, interrupted, pending), or "no results"
    scores: dict[str, TaskScore] = dataclasses.field(default_factory=dict)  # "table", "xtreme", "xtreme-r"
    attempts: int = 0
    seconds: float = 0.0
    error: str = ""
    transfer: str = ""  # results.json's protocol.transfer: zero-shot, translate-train, translate-train-all


def read_run(run: Run, record: Mapping[str, Any] | None = None, model: str = "") -> RunResult:
    """A run's scores from its workdir, or its status from the sweep state when it has no results. `model` names
    the averaged model (its label, e.g. avg-last-3) to score instead of the selected one."""
    record = record or {}
    attempts, seconds = int(record.get("attempts", 0)), float(sum(record.get("durations_s", [])))
    if not is_finished(run.workdir):
        status = record.get("status", PENDING)
        return RunResult(run, "no results" if status == "done" else status, attempts=attempts, seconds=seconds)
    path = run.workdir / "results.json"
    try:
        results = json.loads(path.read_text())
        if model:
            averaged = results.get(AVERAGED_RESULTS)
            if not isinstance(averaged, dict) or averaged.get("label") != model:
                return RunResult(run, f"no {model} results", attempts=attempts, seconds=seconds)
            per_language = averaged["per_language"]
        else:
            per_language = results["per_language"]
        if not isinstance(per_language, dict):
            raise TypeError("per_language is not an object")
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        return RunResult(run, "unreadable results", attempts=attempts, seconds=seconds, error=f"{path}: {e}")
    table = table_benchmark(run.target)
    scores = {"table": task_score(run.target, per_language, benchmark_languages(run.target, table) if table else None)}
    for benchmark in BENCHMARKS:
        languages = benchmark_languages(run.target, benchmark)
        if languages:
            scores[benchmark] = task_score(run.target, per_language, languages)
    protocol = results.get("protocol")
    # Results written before the label existed were all zero-shot.
    transfer = str(protocol.get("transfer", ZERO_SHOT)) if isinstance(protocol, dict) else ZERO_SHOT
    return RunResult(run, "done", scores, attempts, seconds, transfer=transfer)


@dataclasses.dataclass
class Cell:
    """One table entry: a score per seed, their mean and std, the delta to the baseline, what is missing."""

    seeds: dict[int, float]
    expected_seeds: tuple[int, ...]
    problems: list[str]  # runs without a score and why, languages missing, ...
    delta: float | None = None

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.seeds.values()) if self.seeds else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation (n - 1) over seeds; None with fewer than two."""
        return statistics.stdev(self.seeds.values()) if len(self.seeds) > 1 else None

    @property
    def complete(self) -> bool:
        return len(self.seeds) == len(self.expected_seeds) and not self.problems


def averaged_models(runs: Sequence[Run]) -> list[str]:
    """The labels of the averaged models (avg-last-k) that the finished runs' results.json hold, sorted."""
    labels = set()
    for run in runs:
        path = run.workdir / "results.json"
        if not is_finished(run.workdir) or not path.exists():
            continue
        try:
            averaged = json.loads(path.read_text()).get(AVERAGED_RESULTS)
        except (json.JSONDecodeError, AttributeError):
            continue  # read_run reports an unreadable file in the main table
        if isinstance(averaged, dict) and isinstance(averaged.get("label"), str):
            labels.add(averaged["label"])
    return sorted(labels)


@dataclasses.dataclass
class SweepTable:
    rows: list[str]  # intermediate tasks, baseline first
    targets: list[str]
    seeds: tuple[int, ...]
    cells: dict[tuple[str, str], Cell]  # (intermediate, target or average column) -> cell
    benchmark_tasks: dict[str, list[str]]  # benchmark or group column -> the sweep's targets it averages
    benchmark_excluded: dict[str, list[str]]  # benchmark or group column -> the sweep's targets it leaves out
    runs: list[RunResult]
    model: str = ""  # "": each run's selected model; else the averaged model scored (avg-last-k)
    averaged: list[str] = dataclasses.field(default_factory=list)  # the averaged models the runs' results hold

    def transfers(self) -> list[str]:
        """The transfer protocols of the finished runs (one, unless the sweep mixes them)."""
        return sorted({r.transfer for r in self.runs if r.status == "done" and r.transfer})

    def columns(self) -> list[str]:
        """The targets, then each average over at least one of them: XTREME, its classification group, XTREME-R,
        its classification group."""
        return self.targets + [c for c in AVERAGE_COLUMNS if self.benchmark_tasks[c]]


def _cell(results: Sequence[RunResult], key: str, seeds: tuple[int, ...], *, allow_partial_languages: bool) -> Cell:
    cell = Cell({}, seeds, [])
    for result in results:
        score = result.scores.get(key)
        if result.status != "done" or score is None:
            cell.problems.append(f"{result.run.name}: {result.status}" + (f" ({result.error})" if result.error else ""))
            continue
        if score.value is None:
            cell.problems.append(f"{result.run.name}: no language scored")
            continue
        if score.missing and not allow_partial_languages:
            cell.problems.append(
                f"{result.run.name}: {len(score.missing)} of {score.expected} languages missing "
                f"({', '.join(score.missing[:6])}{', ...' if len(score.missing) > 6 else ''})"
            )
            continue
        if score.missing:
            cell.problems.append(f"{result.run.name}: scored on {score.languages} of {score.expected} languages")
        cell.seeds[result.run.seed] = score.value
    return cell


def _benchmark_cell(
    per_target: Mapping[str, Sequence[RunResult]], tasks: Sequence[str], benchmark: str, seeds: tuple[int, ...]
) -> Cell:
    """Per seed, the mean over `tasks` of the benchmark score; a seed counts only if every task has it complete."""
    cell = Cell({}, seeds, [])
    by_seed: dict[int, list[float]] = {seed: [] for seed in seeds}
    for task in tasks:
        task_cell = _cell(per_target[task], benchmark, seeds, allow_partial_languages=False)
        cell.problems.extend(task_cell.problems)
        for seed, value in task_cell.seeds.items():
            by_seed[seed].append(value)
    for seed, values in by_seed.items():
        if len(values) == len(tasks):
            cell.seeds[seed] = sum(values) / len(values)
    return cell


def aggregate(runs: Sequence[Run], records: Mapping[str, Mapping[str, Any]], model: str = "") -> SweepTable:
    """The table of a sweep's runs (expanded with stilts_jax.experiments.sweep.expand) and their state records;
    with `model` (an averaged model's label, see `averaged_models`), of that model's scores."""
    results = [read_run(run, records.get(run.name), model) for run in runs]
    rows = list(dict.fromkeys(r.run.intermediate for r in results))
    rows.sort(key=lambda task: task != BASELINE)
    targets = list(dict.fromkeys(r.run.target for r in results))
    seeds = tuple(dict.fromkeys(r.run.seed for r in results))
    benchmark_tasks = {b: [t for t in targets if benchmark_languages(t, b)] for b in BENCHMARKS}
    for column, benchmark in GROUP_COLUMNS.items():
        benchmark_tasks[column] = [
            t for t in targets if t in group_members(column) and benchmark_languages(t, benchmark)
        ]
    excluded = {c: [t for t in targets if t not in tasks] for c, tasks in benchmark_tasks.items()}
    cells: dict[tuple[str, str], Cell] = {}
    for row in rows:
        per_target = {t: [r for r in results if r.run.intermediate == row and r.run.target == t] for t in targets}
        for target in targets:
            cells[(row, target)] = _cell(per_target[target], "table", seeds, allow_partial_languages=True)
        for column in AVERAGE_COLUMNS:
            if benchmark_tasks[column]:
                benchmark = GROUP_COLUMNS.get(column, column)
                cells[(row, column)] = _benchmark_cell(per_target, benchmark_tasks[column], benchmark, seeds)
    if BASELINE in rows:
        for row in rows:
            for column in targets + [c for c in AVERAGE_COLUMNS if benchmark_tasks[c]]:
                cell, base = cells[(row, column)], cells[(BASELINE, column)]
                if cell.mean is not None and base.mean is not None:
                    cell.delta = cell.mean - base.mean
    return SweepTable(rows, targets, seeds, cells, benchmark_tasks, excluded, results, model, averaged_models(runs))


def format_cell(cell: Cell, *, with_delta: bool) -> str:
    """`55.2 ± 0.4 (+3.1)`; `missing` when no seed has a score; `(1/2 seeds)` and `†` mark incomplete cells."""
    if cell.mean is None:
        return "missing"
    text = f"{cell.mean:.1f}"
    if cell.std is not None:
        text += f" ± {cell.std:.1f}"
    if len(cell.seeds) < len(cell.expected_seeds):
        text += f" ({len(cell.seeds)}/{len(cell.expected_seeds)} seeds)"
    if with_delta and cell.delta is not None:
        text += f" ({cell.delta:+.1f})"
    if cell.problems and len(cell.seeds) == len(cell.expected_seeds):
        text += " †"
    return text
