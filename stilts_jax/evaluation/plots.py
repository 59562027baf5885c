"""Figures of evaluation results as PNG bytes: a retrieval score per encoder layer, a zero-shot score per language.

Each figure is one function that takes plain dicts (shaped as results.json holds them) and returns PNG bytes, so
the caller decides where the file goes (`write_plot` writes it atomically, to a local folder or gs://). Figures
are drawn with matplotlib's object API on the Agg canvas: no pyplot state, no display, no global backend switch.
matplotlib is imported only when a figure is drawn; without it `PlotsUnavailable` says how to install it.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stilts_jax.core.errors import StiltsError
from stilts_jax.core.io_utils import atomic_write_bytes
from stilts_jax.core.paths import PathLike

DPI = 150
MEAN_COLOR = "black"
# Per metric column (F1, then EM for QA): other languages, and the source language that was trained on.
BAR_COLORS = ("#4c72b0", "#9bb4dc")
SOURCE_BAR_COLORS = ("#dd8452", "#f2bb92")
AVERAGE_COLORS = ("#1f3b66", "#5a78a8")
MAX_VALUE_LABELS = 24  # bars up to which each carries its value (more would overlap)


class PlotsUnavailable(StiltsError):
    """matplotlib is not installed, so no figure can be drawn."""


MISSING_MATPLOTLIB = (
    "plots need matplotlib, which is not installed: `pip install 'matplotlib>=3.8'` (it is in "
    "requirements.txt), or turn plots off with --config.evaluation.plots=false"
)


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise PlotsUnavailable(MISSING_MATPLOTLIB) from err
    return Figure(figsize=(width, height), dpi=DPI)


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")  # keeps a legend placed outside the axes
    return buffer.getvalue()


def _line_colors(count: int) -> list[Any]:
    """Distinct colours for `count` lines: tab10/tab20 while they last, then an even sweep of a wide colour map."""
    from matplotlib import colormaps

    if count <= 10:
        return [colormaps["tab10"](i) for i in range(count)]
    if count <= 20:
        return [colormaps["tab20"](i) for i in range(count)]
    return [colormaps["nipy_spectral"](0.05 + 0.9 * i / (count - 1)) for i in range(count)]


def _subtitle(model: str, intermediate: str | None) -> str:
    parts = [model] if model else []
    if intermediate is not None:
        parts.append(f"intermediate task: {intermediate or 'none'}")
    return ", ".join(parts)


def model_label(name: str) -> str:
    """A hub id as it is (`FacebookAI/xlm-roberta-large`); a local model folder by its folder name."""
    path = Path(name)
    return path.name if (os.sep in name or name.startswith(".")) and path.exists() else name


def _mean_over_languages(values: np.ndarray) -> np.ndarray:
    """Per column, the mean of the finite values (NaN where a column has none), without numpy's empty-slice warning."""
    finite = np.isfinite(values)
    counts = finite.sum(axis=0)
    sums = np.where(finite, values, 0.0).sum(axis=0)
    return np.divide(sums, counts, out=np.full(sums.shape, np.nan), where=counts > 0)


@dataclass(frozen=True)
class LayerSeries:
    """A metric per layer: `values[i, j]` is language i at layer j (NaN where missing); `mean` over languages."""

    layers: list[int]
    languages: list[str]
    values: np.ndarray
    mean: np.ndarray


def layer_series(per_layer: Mapping[int | str, Mapping[str, Mapping[str, float]]], metric: str) -> LayerSeries:
    """`per_layer` maps a layer (int, or str as in results.json) to {language: {metric: value}}."""
    by_layer = {int(layer): rows for layer, rows in per_layer.items()}
    layers = sorted(by_layer)
    languages = sorted({lang for rows in by_layer.values() for lang in rows})
    if not layers or not languages:
        raise ValueError(f"no per-layer scores to plot (got {len(layers)} layers, {len(languages)} languages)")
    values = np.array(
        [[by_layer[layer].get(lang, {}).get(metric, np.nan) for layer in layers] for lang in languages], dtype=float
    )
    if not np.isfinite(values).any():
        raise ValueError(f"no per-layer scores carry the metric {metric!r}")
    return LayerSeries(layers, languages, values, _mean_over_languages(values))


def layer_curves_png(
    per_layer: Mapping[int | str, Mapping[str, Mapping[str, float]]],
    metric: str,
    *,
    default_layer: int,
    task: str,
    model: str = "",
    intermediate: str | None = None,
) -> bytes:
    """One thin line per language and a bold mean line over the encoder's layers; the default layer marked."""
    return _png(
        layer_curves_figure(
            per_layer, metric, default_layer=default_layer, task=task, model=model, intermediate=intermediate
        )
    )


def layer_curves_figure(
    per_layer: Mapping[int | str, Mapping[str, Mapping[str, float]]],
    metric: str,
    *,
    default_layer: int,
    task: str,
    model: str = "",
    intermediate: str | None = None,
) -> Any:
    """`layer_curves_png`'s matplotlib Figure, before rendering."""
    series = layer_series(per_layer, metric)
    figure = _figure(7.5, 4.5)
    ax = figure.add_subplot()
    for lang, row, color in zip(series.languages, series.values, _line_colors(len(series.languages))):
        ax.plot(series.layers, row, color=color, linewidth=0.9, alpha=0.8, marker=".", markersize=3, label=lang)
    ax.plot(series.layers, series.mean, color=MEAN_COLOR, linewidth=2.8, label="mean", zorder=3)
    ax.axvline(default_layer, color="grey", linestyle="--", linewidth=1.0, zorder=1)
    if default_layer in series.layers and math.isfinite(mean := float(series.mean[series.layers.index(default_layer)])):
        ax.plot([default_layer], [mean], marker="o", markersize=7, color=MEAN_COLOR, zorder=4)
        label = f"default layer {default_layer}: mean {mean:.1f}"
    else:
        label = f"default layer {default_layer}"
    # At the top of the marker line (x in data, y in axes units), on white so that the curves do not hide it, and
    # turned inwards near either end of the axis so that it stays inside the plot.
    low, high = series.layers[0], series.layers[-1]
    where = (default_layer - low) / (high - low) if high > low else 0.5
    align, shift = ("left", 4) if where < 0.25 else ("right", -4) if where > 0.75 else ("center", 0)
    ax.annotate(
        label,
        (default_layer, 0.98),
        xycoords=ax.get_xaxis_transform(),
        xytext=(shift, 0),
        textcoords="offset points",
        ha=align,
        va="top",
        fontsize=8,
        zorder=5,
        bbox=dict(boxstyle="round,pad=0.25", facecolor="white", edgecolor="grey", alpha=0.9),
    )
    if len(series.layers) <= 30:
        ax.set_xticks(series.layers)
    ax.set_xlabel("layer (0 = embeddings output)")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    title = f"{task}: {metric} per layer"
    subtitle = _subtitle(model, intermediate)
    ax.set_title(title + (f"\n{subtitle}" if subtitle else ""), fontsize=10)
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=7,
        frameon=False,
        ncol=max(1, math.ceil((len(series.languages) + 1) / 20)),
    )
    return figure


def chain_lines_png(
    tasks: Sequence[str], scores: Sequence[Sequence[float | None]], stages: Sequence[str] | None = None
) -> bytes:
    """A sequential chain's English dev scores: x = the stage after which they were measured, one line per stage
    task (starting where that task was trained); `scores[after][task_index]`, None where not measured. `stages`:
    the stages' names when they are not `tasks` (a multi-task stage has several tasks, so several lines)."""
    figure = _figure(6.5, 4.0)
    ax = figure.add_subplot()
    names = list(stages) if stages is not None else list(tasks)
    for t, (task, color) in enumerate(zip(tasks, _line_colors(len(tasks)), strict=True)):
        points = [(k, row[t]) for k, row in enumerate(scores) if t < len(row) and row[t] is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(
                xs, ys, color=color, marker="o", linewidth=1.8, label=task if stages is not None else f"{t}: {task}"
            )
    ax.set_xticks(list(range(len(names))))
    ax.set_xticklabels([f"after {k}: {name}" for k, name in enumerate(names)], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("English dev score")
    ax.grid(alpha=0.3)
    ax.set_title("Chain: each stage's task after each later stage", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return _png(figure)


def headline_columns(columns: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The task's own metrics among its results-table columns (F1 and EM for QA, accuracy, F1): baselines dropped."""
    headline = [(key, header) for key, header in columns if not key.startswith("baseline")]
    if not headline:
        raise ValueError(f"the columns {[key for key, _ in columns]} hold no metric other than baselines")
    return headline


@dataclass(frozen=True)
class LanguageBars:
    """Bars per language in the results table's order: `values[m, i]` is metric m of language i; `averages[m]`
    is metric m's mean over all languages (the table's **average** row)."""

    languages: list[str]
    metrics: list[tuple[str, str]]
    values: np.ndarray
    averages: np.ndarray


def language_bars(per_language: Mapping[str, Mapping[str, float]], metrics: Sequence[tuple[str, str]]) -> LanguageBars:
    languages = sorted(per_language)  # the order of results.md
    if not languages:
        raise ValueError("no per-language scores to plot")
    missing = [f"{lang}: {key}" for lang in languages for key, _ in metrics if key not in per_language[lang]]
    if missing:
        raise ValueError(f"per-language scores lack metrics to plot ({', '.join(missing)})")
    values = np.array([[per_language[lang][key] for lang in languages] for key, _ in metrics], dtype=float)
    return LanguageBars(languages, list(metrics), values, values.mean(axis=1))


def language_bars_png(
    per_language: Mapping[str, Mapping[str, float]],
    metrics: Sequence[tuple[str, str]],
    *,
    task: str,
    model: str = "",
    intermediate: str | None = None,
    source_language: str = "en",
) -> bytes:
    """A bar per language (grouped bars for several metrics, e.g. F1 and EM), the source language highlighted,
    each metric's average over all languages as a dashed horizontal line. `metrics` are (key, label) pairs."""
    return _png(
        language_bars_figure(
            per_language, metrics, task=task, model=model, intermediate=intermediate, source_language=source_language
        )
    )


def language_bars_figure(
    per_language: Mapping[str, Mapping[str, float]],
    metrics: Sequence[tuple[str, str]],
    *,
    task: str,
    model: str = "",
    intermediate: str | None = None,
    source_language: str = "en",
) -> Any:
    """`language_bars_png`'s matplotlib Figure, before rendering."""
    bars = language_bars(per_language, metrics)
    count, groups = len(bars.languages), len(bars.metrics)
    figure = _figure(min(16.0, max(5.0, 1.8 + 0.42 * count * groups)), 4.2)
    ax = figure.add_subplot()
    width = 0.8 / groups
    positions = np.arange(count)
    for m, (_, label) in enumerate(bars.metrics):
        colors = [SOURCE_BAR_COLORS[m % 2] if lang == source_language else BAR_COLORS[m % 2] for lang in bars.languages]
        offsets = positions - 0.4 + width * (m + 0.5)
        drawn = ax.bar(
            offsets,
            np.nan_to_num(bars.values[m]),
            width=width,
            color=colors,
            edgecolor="white",
            linewidth=0.5,
            label=label,
        )
        if count * groups <= MAX_VALUE_LABELS:
            ax.bar_label(drawn, fmt="%.1f", fontsize=7, padding=2)
        ax.axhline(
            bars.averages[m],
            color=AVERAGE_COLORS[m % 2],
            linestyle="--",
            linewidth=1.4,
            label=f"average {label} (all languages): {bars.averages[m]:.1f}",
        )
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i].startswith("average"))  # bars first, then lines
    handles, labels = [handles[i] for i in order], [labels[i] for i in order]
    if source_language in bars.languages:
        from matplotlib.patches import Patch

        handles.append(Patch(color=SOURCE_BAR_COLORS[0]))
        labels.append(f"{source_language} (training language)")
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_xticks(positions, bars.languages)
    for tick in ax.get_xticklabels():
        if tick.get_text() == source_language:
            tick.set_fontweight("bold")
    ax.set_xlim(-0.6, count - 0.4)
    finite = bars.values[np.isfinite(bars.values)]
    # Headroom above the tallest bar for its value; scores are points, so an all-zero task still gets a 0..1 axis.
    ax.set_ylim(0.0, max(1.0, 1.12 * float(finite.max(initial=0.0))))
    ax.set_xlabel("language")
    ax.set_ylabel(" / ".join(label for _, label in bars.metrics))
    ax.grid(axis="y", alpha=0.3)
    title = f"{task}: zero-shot {' / '.join(label for _, label in bars.metrics)} per language"
    subtitle = _subtitle(model, intermediate)
    ax.set_title(title + (f"\n{subtitle}" if subtitle else ""), fontsize=10)
    return figure


def write_plot(path: PathLike, render: Callable[[], bytes], report: Callable[[str], None] = print) -> bool:
    """Write `render()`'s PNG atomically to `path` (local or gs://). Without matplotlib the figure is skipped with
    a message through `report` (the run's results stay complete without it); returns whether it was written."""
    try:
        data = render()
    except PlotsUnavailable as err:
        report(f"[plots] {os.fspath(path)} not written: {err}")
        return False
    atomic_write_bytes(path, data)
    return True
