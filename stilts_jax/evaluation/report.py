"""Per-language results as JSON and a Markdown table, and predictions in the XTREME submission layout."""

from __future__ import annotations

import json
from typing import Any

from etils import epath

from stilts_jax.core.io_utils import atomic_write_text
from stilts_jax.core.paths import PathLike, as_path


def write_predictions(path: PathLike, predictions: dict[str, str]) -> epath.Path:
    """A JSON predictions file {id: answer} (`{folder}/{task}/test-{lang}.json` as XTREME's evaluate.py reads it)."""
    path = as_path(path)
    atomic_write_text(path, json.dumps(predictions, ensure_ascii=False, indent=1) + "\n")
    return path


def summarize(
    task: str,
    per_language: dict[str, dict[str, float]],
    source_language: str = "en",
    benchmark_name: str | None = None,
    protocol: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Averages over all evaluated languages and over the zero-shot ones (all but English), and, where a benchmark's
    language list differs from the evaluated one, over each benchmark's own list (XTREME's, as the paper's tables,
    and XTREME-R's), each labelled with its languages so no average mixes them silently.

    `benchmark_name`: the task's name in google-research/xtreme evaluate.py (e.g. bucc2018); `protocol`: how the
    numbers were obtained (stilts_jax.pipeline.protocol), written at the head of the results.
    """
    from stilts_jax.evaluation.xtreme_tasks import TASK2LANGS

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
    benchmark_averages = {}
    for benchmark, lists in (("XTREME", TASK2LANGS["xtreme"]), ("XTREME-R", TASK2LANGS["xtreme-r"])):
        listed = sorted(lists.get(benchmark_name or task) or [])
        if listed and set(listed) <= set(languages) and listed != languages:
            benchmark_averages[benchmark] = {"languages": listed, "scores": mean(listed)}
    summary = {
        "task": task,
        "per_language": per_language,
        "average": mean(languages),
        "average_languages": languages,
        "average_zero_shot": mean([lang for lang in languages if lang != source_language]),
        "benchmark_averages": benchmark_averages,
    }
    if protocol is not None:
        summary["protocol"] = protocol
    return summary


def protocol_markdown(protocol: dict[str, Any]) -> str:
    """The protocol as a few Markdown lines above the results table."""
    lines = [f"Protocol: {protocol['setting']}, {protocol['split']} split."]
    for name in ("intermediate", "target"):
        if name not in protocol:
            continue
        phase = protocol[name]
        if phase is None:
            lines.append(f"- {name}: none (the pretrained encoder)")
            continue
        if isinstance(phase, str):  # a note, e.g. a phase not trained in this run
            lines.append(f"- {name}: {phase}")
            continue
        for entry in phase if isinstance(phase, list) else [phase]:  # a list: the stages of a sequential chain
            label = f"{name} stage {entry['stage']}" if "stage" in entry else name
            task = " & ".join(entry.get("tasks") or []) or entry["task"]  # "&": trained jointly (multi-task)
            changed = entry["changed_from_preset"]
            changed_text = f"; changed: {', '.join(changed)}" if changed else ""
            step = f" (step {entry['selected_step']})" if entry.get("selected_step") is not None else ""
            lines.append(
                f"- {label}: {task}; preset {entry['preset']}{changed_text}; selection: {entry['selection']}{step}"
            )
    for key, value in protocol.items():
        if key not in ("setting", "split", "transfer", "intermediate", "target"):  # transfer: the setting names it
            lines.append(f"- {key.replace('_', ' ')}: {value}")
    return "\n".join(lines) + "\n"


def markdown_table(summary: dict[str, Any], columns: list[tuple[str, str]]) -> str:
    """The protocol, then a table with one row per language and the labelled averages; `columns` are (metric key,
    header). With a second model evaluated beside the selected one (`average_checkpoints`: the average of the last
    checkpoints, labelled e.g. avg-last-3), each column is followed by that model's, its header carrying the label."""
    averaged = summary.get("average_checkpoints") or {}
    label = averaged.get("label", "")
    shown = [(key, header, False) for key, header in columns]
    if averaged:  # the selected model's metric, then the averaged model's beside it (a baseline is the same for both)
        shown = []
        for key, header in columns:
            shown.append((key, header, False))
            if not key.startswith("baseline"):
                shown.append((key, f"{header} {label}", True))
    header = "| language | " + " | ".join(h for _, h, _ in shown) + " | examples |"
    lines = [f"### {summary['task']}", ""]
    if summary.get("protocol"):
        lines += [protocol_markdown(summary["protocol"]).rstrip("\n")]
    if averaged:
        steps = ", ".join(map(str, averaged.get("steps", [])))
        lines += [f"- {label}: {averaged.get('description', 'a second model')} (steps {steps})"]
    if summary.get("protocol") or averaged:
        lines.append("")
    lines += [header, "|" + "---|" * (len(shown) + 2)]

    def cells(row: dict[str, float], other: dict[str, float]) -> str:
        return " | ".join(_cell(other if second else row, key) for key, _, second in shown)

    other_rows = averaged.get("per_language", {})
    for lang, row in sorted(summary["per_language"].items()):
        lines.append(f"| {lang} | " + cells(row, other_rows.get(lang, {})) + f" | {int(row.get('examples', 0))} |")
    count = len(summary.get("average_languages") or summary["per_language"])
    other_benchmarks = averaged.get("benchmark_averages", {})
    averages = [(f"**average ({count} evaluated languages)**", summary["average"], averaged.get("average", {}))]
    averages += [
        (
            f"**average ({name}: {len(entry['languages'])} languages)**",
            entry["scores"],
            other_benchmarks.get(name, {}).get("scores", {}),
        )
        for name, entry in summary.get("benchmark_averages", {}).items()
    ]
    transfer = (summary.get("protocol") or {}).get("transfer", "zero-shot")
    no_english = "**average (zero-shot, no en)**" if transfer == "zero-shot" else f"**average (no en; {transfer})**"
    averages.append((no_english, summary["average_zero_shot"], averaged.get("average_zero_shot", {})))
    for row_label, avg, other in averages:
        if avg:
            lines.append(f"| {row_label} | " + cells(avg, other) + " | |")
    return "\n".join(lines) + "\n"


def _cell(row: dict[str, float], key: str) -> str:
    """A metric to one decimal; "-" where a language has none (SQuAD v2.0's NoAns F1 without unanswerable ones)."""
    return f"{row[key]:.1f}" if key in row else "-"


def write_results(
    workdir: PathLike, summary: dict[str, Any], columns: list[tuple[str, str]]
) -> tuple[epath.Path, epath.Path]:
    workdir = as_path(workdir)
    json_path, md_path = workdir / "results.json", workdir / "results.md"
    atomic_write_text(json_path, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    atomic_write_text(md_path, markdown_table(summary, columns))
    return json_path, md_path
