"""The sweep table as a heatmap: deltas to the baseline on a diverging colour map centred at 0, annotated cells."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from stilts_jax.core.io_utils import atomic_write_bytes
from stilts_jax.experiments.aggregate import SweepTable, column_label
from stilts_jax.experiments.sweep import BASELINE

COLORMAP = "RdBu"  # red below the baseline, white at it, blue above
MISSING_COLOR = "#bdbdbd"


def delta_matrix(table: SweepTable) -> np.ndarray:
    """Rows x columns of deltas to the baseline; NaN where a cell has no mean or there is no baseline."""
    columns = table.columns()
    return np.array(
        [
            [table.cells[(row, col)].delta if table.cells[(row, col)].delta is not None else np.nan for col in columns]
            for row in table.rows
        ],
        dtype=float,
    ).reshape(len(table.rows), len(columns))


def color_limit(deltas: np.ndarray) -> float:
    """Symmetric colour range: the largest |delta|, at least 1 point so that noise stays pale."""
    finite = np.abs(deltas[np.isfinite(deltas)])
    return max(1.0, float(finite.max())) if finite.size else 1.0


def cell_colors(deltas: np.ndarray) -> np.ndarray:
    """RGBA per cell: the diverging map over [-limit, +limit] (0 -> its centre); missing cells grey."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize, to_rgba

    limit = color_limit(deltas)
    colors = colormaps[COLORMAP](Normalize(-limit, limit)(np.nan_to_num(deltas)))
    colors[~np.isfinite(deltas)] = to_rgba(MISSING_COLOR)
    return colors


def _label(table: SweepTable, row: str, column: str) -> str:
    cell = table.cells[(row, column)]
    if cell.mean is None:
        return "missing"
    incomplete = "*" if not cell.complete else ""
    if cell.delta is None or row == BASELINE:
        return f"{cell.mean:.1f}{incomplete}"
    return f"{cell.delta:+.1f}{incomplete}\n({cell.mean:.1f})"


def render_png(table: SweepTable, title: str) -> bytes:
    """The heatmap as PNG bytes (matplotlib's Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    columns = table.columns()
    deltas = delta_matrix(table)
    colors = cell_colors(deltas)
    width = 2.0 + 1.3 * len(columns)
    height = 1.6 + 0.6 * len(table.rows)
    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    try:
        ax.imshow(colors, aspect="auto", interpolation="nearest")
        limit = color_limit(deltas)
        for i, row in enumerate(table.rows):
            for j, column in enumerate(columns):
                value = deltas[i, j]
                dark = math.isfinite(value) and abs(value) > 0.6 * limit
                ax.text(
                    j,
                    i,
                    _label(table, row, column),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if dark else "black",
                )
        ax.set_xticks(range(len(columns)), [column_label(c) for c in columns], rotation=30, ha="right")
        ax.set_yticks(range(len(table.rows)), ["baseline (none)" if r == BASELINE else r for r in table.rows])
        ax.set_xlabel("target task")
        ax.set_ylabel("intermediate task or chain")
        if any(not table.cells[(r, c)].complete for r in table.rows for c in columns):
            title += "\n* incomplete: seeds or languages missing (see results.md)"
        ax.set_title(title, fontsize=10)
        mappable = plt.cm.ScalarMappable(norm=Normalize(-limit, limit), cmap=COLORMAP)
        fig.colorbar(mappable, ax=ax, label="delta to the baseline (points)")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    return buffer.getvalue()


def write_heatmap(table: SweepTable, path: Path, title: str) -> Path:
    atomic_write_bytes(path, render_png(table, title))
    return path
