"""Metrics on process 0: JSON lines and TensorBoard event files in the workdir.

A local workdir gets lines appended to metrics.jsonl as they come and TensorBoard events written in place.
Object stores (gs://, ...) cannot append, so for a remote workdir the log keeps the whole file in memory and
uploads it complete (one object, replaced whole) at most every `upload_every_s` seconds, before each checkpoint
(`flush`) and on `close`; TensorBoard writes to a local temporary folder whose event files are uploaded at the
same moments. A run killed without `close` loses at most the lines since the last upload; on resume the lines of
steps after the restored checkpoint are dropped either way (`truncate_after`).
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import jax

from stilts_jax.core.io_utils import atomic_write_bytes, atomic_write_text
from stilts_jax.core.paths import PathLike, as_path, is_remote

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_FOLDER = "tensorboard"


class MetricsLog:
    """Appends `{"step": s, "split": ..., name: value}` lines to metrics.jsonl and scalars to tensorboard/."""

    def __init__(self, workdir: PathLike, *, enabled: bool | None = None, upload_every_s: float = 30.0):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        workdir = as_path(workdir)
        self.path = workdir / METRICS_FILE
        self.remote = is_remote(workdir)
        self.upload_every_s = upload_every_s
        self._tensorboard_dir = workdir / TENSORBOARD_FOLDER
        self._tensorboard: Any = None  # a tensorboardX SummaryWriter while logging
        self._local_events: Path | None = None  # remote workdir: where tensorboardX writes before the upload
        self._lines: list[str] = []  # remote workdir: the whole file, uploaded complete
        self._last_upload = time.monotonic()
        if not self.enabled:
            return
        if self.remote:
            if self.path.exists():
                self._lines = [line for line in self.path.read_text().splitlines() if line.strip()]
            self._local_events = Path(tempfile.mkdtemp(prefix="stilts-tensorboard-"))
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        from tensorboardX import SummaryWriter

        # Remote event files are uploaded by name: a unique suffix keeps a restart within the same second (same
        # time-and-host name) from replacing the previous session's file.
        suffix = f".{uuid.uuid4().hex[:8]}" if self.remote else ""
        self._tensorboard = SummaryWriter(str(self._local_events or self._tensorboard_dir), filename_suffix=suffix)

    def truncate_after(self, step: int) -> None:
        """On resume: drop lines of steps after the restored checkpoint, which the run will redo."""
        if not self.enabled:
            return
        if self.remote:
            kept = [line for line in self._lines if json.loads(line)["step"] <= step]
            if len(kept) != len(self._lines):
                self._lines = kept
                self._upload_lines()
            return
        if not self.path.exists():
            return
        lines = self.path.read_text().splitlines()
        kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
        if len(kept) != len(lines):
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def write(self, step: int, split: str, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        clean = {k: (float(v) if math.isfinite(float(v)) else str(float(v))) for k, v in metrics.items()}
        line = json.dumps({"step": step, "split": split, **clean})
        for name, value in metrics.items():
            self._tensorboard.add_scalar(f"{split}/{name}", float(value), step)
        if not self.remote:
            with open(self.path, "a") as f:
                f.write(line + "\n")
            return
        self._lines.append(line)
        if time.monotonic() - self._last_upload >= self.upload_every_s:
            self.flush()

    def flush(self) -> None:
        """Make everything logged so far durable: TensorBoard flushed; on a remote workdir, both files uploaded."""
        if self._tensorboard is None:
            return
        self._tensorboard.flush()
        if self.remote:
            self._upload_lines()
            self._upload_events()

    def close(self) -> None:
        if self._tensorboard is None:
            return
        self._tensorboard.close()
        if self.remote:
            self._upload_lines()
            self._upload_events()
            assert self._local_events is not None  # set for a remote workdir
            shutil.rmtree(self._local_events, ignore_errors=True)
        self._tensorboard = None

    def _upload_lines(self) -> None:
        atomic_write_text(self.path, "".join(line + "\n" for line in self._lines))
        self._last_upload = time.monotonic()

    def _upload_events(self) -> None:
        assert self._local_events is not None  # set for a remote workdir
        for event_file in sorted(self._local_events.iterdir()):
            if event_file.is_file():
                atomic_write_bytes(self._tensorboard_dir / event_file.name, event_file.read_bytes())


def read_metrics(workdir: PathLike, split: str = "train") -> list[dict]:
    path = as_path(workdir) / METRICS_FILE
    return [r for r in (json.loads(line) for line in path.read_text().splitlines() if line.strip()) if r["split"] == split]
