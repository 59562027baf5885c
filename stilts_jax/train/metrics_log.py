"""Metrics on process 0: JSON lines and TensorBoard event files in the workdir.

A local workdir gets lines appended to metrics.jsonl as they come and TensorBoard events written in place.
Object stores (gs://, ...) cannot append, so for a remote workdir the log keeps the whole file in memory and
uploads it complete (one object, replaced whole) at most every `upload_every_s` seconds, before each checkpoint
(`flush`) and on `close`; TensorBoard writes to a local temporary folder whose event files are uploaded at the
same moments. A run killed without `close` loses at most the lines since the last upload; on resume the lines of
steps after the restored checkpoint are dropped either way (`truncate_after`).

A run killed while writing leaves a partial last line: it is dropped, with a message, when the log is opened or
read. A damaged line before the last one is no crash's doing and is an error naming the file and the line.

Inside `forwarding_to(sink)` every record written on process 0 also goes to `sink` (an experiment tracker: the
pipeline opens one per run when logging.wandb is set), with the folder of the log that wrote it.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import jax

from stilts_jax.core.errors import StiltsError
from stilts_jax.core.io_utils import atomic_write_bytes, atomic_write_text
from stilts_jax.core.paths import PathLike, as_path, is_remote

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_FOLDER = "tensorboard"


class MetricsSink(Protocol):
    """Where records go besides metrics.jsonl and TensorBoard: `folder` is the workdir of the MetricsLog."""

    def write(self, folder: PathLike, step: int, split: str, metrics: dict[str, float]) -> None: ...


_SINKS: list[MetricsSink] = []


@contextlib.contextmanager
def forwarding_to(sink: MetricsSink) -> Iterator[None]:
    """Every MetricsLog writes its records to `sink` too while the block runs (on process 0, as its own lines)."""
    _SINKS.append(sink)
    try:
        yield
    finally:
        _SINKS.remove(sink)


def _record(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    ok = isinstance(record, dict) and isinstance(record.get("step"), int) and isinstance(record.get("split"), str)
    return record if ok else None


def parse_lines(text: str, path: Any) -> tuple[list[str], list[dict[str, Any]], bool]:
    """(lines, records, whether a partial last line was dropped) of a metrics.jsonl's text.

    The last line may be what a killed run left half written: it is dropped. Any other damaged line is a
    StiltsError naming the file and the line."""
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    lines: list[str] = []
    records: list[dict[str, Any]] = []
    for position, (n, line) in enumerate(numbered):
        record = _record(line)
        if record is None:
            if position == len(numbered) - 1:
                return lines, records, True
            raise StiltsError(
                f"{path}:{n}: not a metrics record ({line[:80]!r}); only the last line can be cut short by a crash. "
                f"Delete or repair that line (the run's earlier numbers stay), or delete {path} to start the log "
                "anew, then rerun."
            )
        lines.append(line)
        records.append(record)
    return lines, records, False


def _say_dropped(path: Any) -> None:
    print(
        f"warning: {path} ended in a partial line (the previous run was interrupted while writing it); the line "
        "is dropped",
        flush=True,
    )


class MetricsLog:
    """Appends `{"step": s, "split": ..., name: value}` lines to metrics.jsonl and scalars to tensorboard/."""

    def __init__(self, workdir: PathLike, *, enabled: bool | None = None, upload_every_s: float = 30.0):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        workdir = as_path(workdir)
        self.folder = workdir
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
                self._lines, _, dropped = parse_lines(self.path.read_text(), self.path)
                if dropped:
                    _say_dropped(self.path)
            self._local_events = Path(tempfile.mkdtemp(prefix="stilts-tensorboard-"))
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists():  # new lines must not be appended to a partial one
                lines, _, dropped = parse_lines(self.path.read_text(), self.path)
                if dropped:
                    _say_dropped(self.path)
                    atomic_write_text(self.path, "".join(line + "\n" for line in lines))
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
        text = self.path.read_text()
        lines, records, _ = parse_lines(text, self.path)
        kept = [line for line, record in zip(lines, records) if record["step"] <= step]
        if len(kept) != len(text.splitlines()):
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def write(self, step: int, split: str, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        clean = {k: (float(v) if math.isfinite(float(v)) else str(float(v))) for k, v in metrics.items()}
        line = json.dumps({"step": step, "split": split, **clean})
        for name, value in metrics.items():
            self._tensorboard.add_scalar(f"{split}/{name}", float(value), step)
        for sink in _SINKS:
            sink.write(self.folder, step, split, {k: float(v) for k, v in metrics.items()})
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
    """The records of one split; a partial last line (a run killed while writing) is left out."""
    path = as_path(workdir) / METRICS_FILE
    _, records, _ = parse_lines(path.read_text(), path)
    return [r for r in records if r["split"] == split]
