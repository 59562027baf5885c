"""Per-language results as JSON and a Markdown table, and predictions in the XTREME submission layout."""

from __future__ import annotations

import json
from typing import Any

from etils import epath

from stilts_jax.io_utils import atomic_write_text
from stilts_jax.paths import PathLike, as_path


def write_predictions(folder: PathLike, task_folder: str, language: str, predictions: dict[str, str],
                      extension: str = "json") -> epath.Path:
    """`{folder}/{task}/test-{lang}.json` as the XTREME leaderboard (and its evaluate.py) reads it."""
    path = as_path(folder) / task_folder / f"test-{language}.{extension}"
    atomic_write_text(path, json.dumps(predictions, ensure_ascii=False, indent=1) + "\n")
    return path


def summarize(task: str, per_language: dict[str, dict[str, float]], source_language: str = "en") -> dict[str, Any]:
    """Averages over all languages (as XTREME reports them) and over the zero-shot ones (all but English)."""
    metrics = sorted({k for row in per_language.values() for k in row if k != "examples"})

    def mean(languages: list[str]) -> dict[str, float]:
        """Each metric over the languages that have it (HasAns/NoAns exist only where such questions do)."""
        out = {}
        for m in metrics:
            values = [per_language[lang][m] for lang in languages if m in per_language[lang]]
            if values:
                out[m] = sum(values) / len(values)
        return out

    languages = sorted(per_language)
    return {
        "task": task,
        "per_language": per_language,
        "average": mean(languages),
        "average_zero_shot": mean([lang for lang in languages if lang != source_language]),
    }


def markdown_table(summary: dict[str, Any], columns: list[tuple[str, str]]) -> str:
    """A table with one row per language and the two averages; `columns` are (metric key, header)."""
    header = "| language | " + " | ".join(h for _, h in columns) + " | examples |"
    lines = [f"### {summary['task']}", "", header, "|" + "---|" * (len(columns) + 2)]
    for lang, row in sorted(summary["per_language"].items()):
        lines.append(f"| {lang} | " + " | ".join(_cell(row, k) for k, _ in columns) + f" | {int(row.get('examples', 0))} |")
    for name in ("average", "average_zero_shot"):
        avg = summary[name]
        if avg:
            label = "**average**" if name == "average" else "**average (zero-shot, no en)**"
            lines.append(f"| {label} | " + " | ".join(_cell(avg, k) for k, _ in columns) + " | |")
    return "\n".join(lines) + "\n"


def _cell(row: dict[str, float], key: str) -> str:
    """A metric to one decimal; "-" where a language has none (SQuAD v2.0's NoAns F1 without unanswerable ones)."""
    return f"{row[key]:.1f}" if key in row else "-"


def write_results(workdir: PathLike, summary: dict[str, Any], columns: list[tuple[str, str]]
                  ) -> tuple[epath.Path, epath.Path]:
    workdir = as_path(workdir)
    json_path, md_path = workdir / "results.json", workdir / "results.md"
    atomic_write_text(json_path, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    atomic_write_text(md_path, markdown_table(summary, columns))
    return json_path, md_path
