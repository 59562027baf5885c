"""Metrics on process 0: JSON lines and TensorBoard event files in the workdir."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax

from stilts_jax.io_utils import atomic_write_text


class MetricsLog:
    """Appends `{"step": s, "split": ..., name: value}` lines to metrics.jsonl and scalars to tensorboard/."""

    def __init__(self, workdir: str | Path, *, enabled: bool | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.path = Path(workdir) / "metrics.jsonl"
        self._tensorboard = None
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            from tensorboardX import SummaryWriter

            self._tensorboard = SummaryWriter(str(Path(workdir) / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """On resume: drop lines of steps after the restored checkpoint, which the run will redo."""
        if not self.enabled or not self.path.exists():
            return
        lines = self.path.read_text().splitlines()
        kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
        if len(kept) != len(lines):
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def write(self, step: int, split: str, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        clean = {k: (float(v) if math.isfinite(float(v)) else str(float(v))) for k, v in metrics.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, "split": split, **clean}) + "\n")
        for name, value in metrics.items():
            self._tensorboard.add_scalar(f"{split}/{name}", float(value), step)

    def flush(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.flush()

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()


def read_metrics(workdir: str | Path, split: str = "train") -> list[dict]:
    path = Path(workdir) / "metrics.jsonl"
    return [r for r in (json.loads(line) for line in path.read_text().splitlines() if line.strip()) if r["split"] == split]
