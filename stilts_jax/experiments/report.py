"""The sweep report files: `results.md` (the paper-style table), `results.tex` (the same table for a LaTeX paper),
`results.csv` (one row per cell) and `heatmap.png`."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from stilts_jax.core.io_utils import atomic_write_text
from stilts_jax.experiments.aggregate import (
    BENCHMARK_TITLES,
    BENCHMARKS,
    GROUP_COLUMNS,
    Cell,
    SweepTable,
    benchmark_languages,
    column_label,
    format_cell,
    group_members,
    is_average,
    metric_description,
    table_benchmark,
)
from stilts_jax.experiments.heatmap import write_heatmap
from stilts_jax.experiments.sweep import BASELINE

MARKDOWN, LATEX, CSV, HEATMAP = "results.md", "results.tex", "results.csv", "heatmap.png"


def report_names(model: str = "") -> tuple[str, str, str, str]:
    """The report's file names: results.md, .tex, .csv and heatmap.png, or results_<model>.md ... for an averaged
    model's table."""
    if not model:
        return MARKDOWN, LATEX, CSV, HEATMAP
    return f"results_{model}.md", f"results_{model}.tex", f"results_{model}.csv", f"heatmap_{model}.png"


def _model_note(model: str) -> str:
    k = model.rsplit("-", 1)[-1]
    return (
        f"Model scored: {model}, the uniform average of the parameters of the last {k} kept checkpoints of each run's "
        "target phase (`evaluation.average_checkpoints`), in place of the checkpoint selected on the English dev set "
        "(results.md)."
    )


def _row_label(row: str) -> str:
    return "baseline (none)" if row == BASELINE else row


def _column_label(column: str) -> str:
    return column_label(column)


def _target_note(task: str) -> str:
    benchmark = table_benchmark(task)
    if benchmark is None:
        return f"{task}: {metric_description(task)} over its evaluated languages (in neither benchmark)"
    count = len(benchmark_languages(task, benchmark) or [])
    return f"{task}: {metric_description(task)} over {BENCHMARK_TITLES[benchmark]}'s {count} languages"


def _benchmark_note(table: SweepTable, benchmark: str) -> str:
    tasks = table.benchmark_tasks[benchmark]
    title = BENCHMARK_TITLES[benchmark]
    if not tasks:
        return f"{title} avg: none of this sweep's targets is an {title} task."
    included = ", ".join(f"{t} ({len(benchmark_languages(t, benchmark) or [])} languages)" for t in tasks)
    text = f"{title} avg: mean over {included}"
    if table.benchmark_excluded[benchmark]:
        text += f"; not in {title}, so left out: {', '.join(table.benchmark_excluded[benchmark])}"
    return text + f". Only the targets of this sweep: not the full {title} score."


def _group_note(table: SweepTable, column: str) -> str | None:
    """The note of a group column (XTREME-R classification avg): its tasks, and those of its group not swept."""
    tasks = table.benchmark_tasks[column]
    if not tasks:
        return None
    benchmark = GROUP_COLUMNS[column]
    group = group_members(column)
    included = ", ".join(f"{t} ({len(benchmark_languages(t, benchmark) or [])} languages)" for t in tasks)
    missing = [t for t in group if t not in tasks]
    text = (
        f"{column_label(column)}: mean over {included}, of {BENCHMARK_TITLES[benchmark]}'s {column.split('/')[1]} "
        f"tasks ({', '.join(group)}, as evaluate.py groups them)"
    )
    if missing:
        text += f"; not in this sweep: {', '.join(missing)}"
    return text + "."


def _row_notes(table: SweepTable) -> list[str]:
    if not any("+" in row or "&" in row for row in table.rows):
        return []
    return [
        "- Rows: `a+b` is a chain (a, then b, each stage starting from the previous stage's encoder); `a&b` "
        "trains a and b together in one stage (multi-task); the others are one intermediate task, or none."
    ]


def _transfer_label(table: SweepTable) -> str:
    """The sweep's protocol for titles and captions; a sweep mixing protocols says so, since its cells are not
    comparable with each other."""
    transfers = table.transfers() or ["zero-shot"]
    if len(transfers) == 1:
        return transfers[0]
    return "MIXED (" + ", ".join(transfers) + "; see the protocol of each run below)"


def markdown(table: SweepTable, name: str) -> str:
    columns = table.columns()
    seeds = ", ".join(map(str, table.seeds))
    lines = [
        f"# Sweep {name}: intermediate task x target task" + (f", {table.model}" if table.model else ""),
        "",
        f"Transfer protocol: {_transfer_label(table)}.",
        "",
        *([_model_note(table.model), ""] if table.model else []),
        *(
            [f"Averaged models of the same runs: {', '.join(f'{m} ({report_names(m)[0]})' for m in others)}.", ""]
            if (others := [m for m in table.averaged if m != table.model])
            else []
        ),
        f"Each cell: the target's score as mean ± std over seeds {seeds} (std: sample standard deviation, n-1), "
        "and in brackets the difference of the mean to the baseline's (no intermediate task).",
        "",
        "| intermediate | " + " | ".join(_column_label(c) for c in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for row in table.rows:
        cells = [format_cell(table.cells[(row, c)], with_delta=row != BASELINE) for c in columns]
        lines.append(f"| {_row_label(row)} | " + " | ".join(cells) + " |")
    lines += ["", "Scores:"] + [f"- {_target_note(t)}" for t in table.targets]
    lines += [f"- {_benchmark_note(table, b)}" for b in BENCHMARKS]
    lines += [f"- {note}" for note in (_group_note(table, c) for c in GROUP_COLUMNS) if note]
    lines += _row_notes(table)
    if BASELINE not in table.rows:
        lines.append("- No baseline run in this sweep: no deltas.")
    problems = [(row, column, p) for (row, column), cell in table.cells.items() for p in cell.problems]
    if problems:
        lines += ["", "Missing or incomplete (cells show `missing`, `(k/n seeds)` or `†`):"]
        seen = set()
        for row, column, problem in problems:
            if is_average(column) and problem in seen:
                continue  # a benchmark average repeats its targets' problems
            seen.add(problem)
            lines.append(f"- {_row_label(row)} / {_column_label(column)}: {problem}")
    lines += [
        "",
        "## Runs",
        "",
        "| run | status | protocol | attempts | time (s) | score |",
        "|---|---|---|---|---|---|",
    ]
    for result in table.runs:
        score = result.scores.get("table")
        shown = f"{score.value:.2f}" if score is not None and score.value is not None else "-"
        lines.append(
            f"| {result.run.name} | {result.status} | {result.transfer or '-'} | {result.attempts} | "
            f"{result.seconds:.0f} | {shown} |"
        )
    return "\n".join(lines) + "\n"


def _tex(text: str) -> str:
    """Escape LaTeX's special characters in a task or run name."""
    for char, escaped in (
        ("\\", r"\textbackslash{}"),
        ("_", r"\_"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("#", r"\#"),
        ("$", r"\$"),
        ("{", r"\{"),
        ("}", r"\}"),
        ("~", r"\textasciitilde{}"),
        ("^", r"\^{}"),
    ):
        text = text.replace(char, escaped)
    return text


def _tex_cell(cell: Cell, *, with_delta: bool, best: bool) -> str:
    if cell.mean is None:
        return "--"
    mean = f"{cell.mean:.1f}"
    text = rf"\textbf{{{mean}}}" if best else mean
    if cell.std is not None:
        text += rf"$_{{\pm {cell.std:.1f}}}$"
    if with_delta and cell.delta is not None:
        text += f" ({cell.delta:+.1f})"
    if not cell.complete:
        text += r"$^\dagger$"
    return text


def latex(table: SweepTable, name: str) -> str:
    """A booktabs table: mean with the seeds' std as a subscript, the delta to the baseline in brackets, each
    column's best complete mean in bold, and a dagger on cells that lack seeds or languages (results.md lists why)."""
    columns = table.columns()
    best = {}
    for column in columns:
        complete = [table.cells[(row, column)] for row in table.rows if table.cells[(row, column)].complete]
        best[column] = max((cell.mean for cell in complete), default=None)  # incomplete cells never bold
    seeds = ", ".join(map(str, table.seeds))
    lines = [
        f"% Sweep {name}, written by `python launch/sweep.py report`; needs \\usepackage{{booktabs}}.",
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\begin{tabular}{l" + "c" * len(columns) + "}",
        r"\toprule",
        "Intermediate task & " + " & ".join(_tex(_column_label(c)) for c in columns) + r" \\",
        r"\midrule",
    ]
    for row in table.rows:
        cells = [
            _tex_cell(
                table.cells[(row, c)],
                with_delta=row != BASELINE,
                best=table.cells[(row, c)].complete and table.cells[(row, c)].mean == best[c],
            )
            for c in columns
        ]
        lines.append(_tex(_row_label(row)) + " & " + " & ".join(cells) + r" \\")
        if row == BASELINE and len(table.rows) > 1:
            lines.append(r"\midrule")
    notes = "; ".join(_tex(_target_note(t)) for t in table.targets)
    averaged = (
        f" Model: {table.model}, the average of the last {table.model.rsplit('-', 1)[-1]} checkpoints of each target phase."
        if table.model
        else ""
    )
    caption = (
        f"Cross-lingual transfer ({_transfer_label(table)}) after intermediate-task training: mean over seeds "
        f"{seeds} with the "
        "sample standard deviation as subscript, and in brackets the difference to the baseline without an "
        f"intermediate task. Best mean per column in bold. {notes}."
        + (r" $^\dagger$: seeds or languages missing." if any(not c.complete for c in table.cells.values()) else "")
        + _tex(averaged)
    )
    lines += [
        r"\bottomrule",
        r"\end{tabular}",
        rf"\caption{{{caption}}}",
        rf"\label{{tab:sweep-{re.sub(r'[^A-Za-z0-9]+', '-', name)}}}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def _csv_row(row: str, column: str, cell: Cell, seeds: tuple[int, ...]) -> list[str]:
    def number(value: float | None) -> str:
        return "" if value is None else f"{value:.4f}"

    metric = "average" if is_average(column) else metric_description(column)
    return [
        row,
        column,
        metric,
        number(cell.mean),
        number(cell.std),
        number(cell.delta),
        str(len(cell.seeds)),
        str(len(seeds)),
        *[number(cell.seeds.get(seed)) for seed in seeds],
        "complete" if cell.complete else ("missing" if cell.mean is None else "incomplete"),
        " | ".join(cell.problems),
    ]


def csv_text(table: SweepTable) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "intermediate",
            "column",
            "metric",
            "mean",
            "std",
            "delta",
            "seeds_scored",
            "seeds_expected",
            *[f"seed_{seed}" for seed in table.seeds],
            "status",
            "problems",
        ]
    )
    for row in table.rows:
        for column in table.columns():
            writer.writerow(_csv_row(row, column, table.cells[(row, column)], table.seeds))
    return buffer.getvalue()


def write_report(table: SweepTable, root: Path, name: str) -> list[Path]:
    """results.md, results.tex, results.csv and heatmap.png in the sweep root (results_<model>.md ... for an
    averaged model's table), each written atomically."""
    paths = [root / file_name for file_name in report_names(table.model)]
    atomic_write_text(paths[0], markdown(table, name))
    atomic_write_text(paths[1], latex(table, name))
    atomic_write_text(paths[2], csv_text(table))
    model = f", {table.model}" if table.model else ""
    write_heatmap(table, paths[3], f"{name}{model}: delta to the baseline (mean over seeds)")
    return paths
