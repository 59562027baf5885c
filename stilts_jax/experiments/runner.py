"""Running a sweep's runs one after another as subprocesses, resumably.

A run is finished when its workdir holds `evaluation/phase_done.json` and `results.json` (what the pipeline writes
last); finished runs are skipped. A failed run is retried up to `retries` more times; each attempt appends to
`<workdir>/sweep.log` (on a gs:// workdir the attempt logs to a local file, then the whole log is uploaded). `<root>/sweep_state.json` records every run's status, attempts, exit codes and durations
and is rewritten atomically after each change, so a killed sweep leaves a readable state and the same command
carries on where it stopped (an unfinished run resumes from its latest checkpoint: the pipeline does that itself).
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from stilts_jax.core.io_utils import atomic_write_bytes, atomic_write_text
from stilts_jax.core.paths import PathLike, as_path, is_remote
from stilts_jax.experiments.sweep import Run, SweepError

STATE_FILE = "sweep_state.json"
LOG_FILE = "sweep.log"
DONE, FAILED, RUNNING, PENDING, INTERRUPTED = "done", "failed", "running", "pending", "interrupted"


def default_entrypoint() -> list[str]:
    return [sys.executable, "-m", "stilts_jax.main"]


def is_finished(workdir: PathLike) -> bool:
    """What the pipeline leaves only after its last phase: the evaluation marker and results.json."""
    workdir = as_path(workdir)
    return (workdir / "evaluation" / "phase_done.json").is_file() and (workdir / "results.json").is_file()


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


class SweepState:
    """`sweep_state.json`: {"sweep": name, "runs": {run name: record}}; every change is written atomically."""

    def __init__(self, path: PathLike, sweep_name: str):
        self.path = path = as_path(path)
        self.data: dict[str, Any] = {"sweep": sweep_name, "runs": {}}
        if path.is_file():
            try:
                loaded = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise SweepError(
                    f"{path}:{e.lineno}: not valid JSON ({e.msg}); delete it to start the state afresh "
                    "(finished runs are recognised from their workdirs)"
                ) from e
            if not isinstance(loaded, dict) or not isinstance(loaded.get("runs"), dict):
                raise SweepError(f'{path}: expected an object with a "runs" mapping; delete it to start afresh')
            self.data = loaded
            self.data["sweep"] = sweep_name

    def record(self, run: Run) -> dict[str, Any]:
        return self.data["runs"].setdefault(
            run.name,
            {
                "intermediate": run.intermediate,
                "target": run.target,
                "seed": run.seed,
                "workdir": str(run.workdir),
                "status": PENDING,
                "attempts": 0,
                "exit_codes": [],
                "durations_s": [],
            },
        )

    def update(self, run: Run, **values: Any) -> None:
        self.record(run).update(values)
        self.save()

    def save(self) -> None:
        self.data["updated"] = _now()
        atomic_write_text(self.path, json.dumps(self.data, indent=2, sort_keys=True) + "\n")


def load_state(root: PathLike) -> dict[str, Any]:
    """The state file's runs ({} when the sweep never ran)."""
    path = as_path(root) / STATE_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text()).get("runs", {})
    except (json.JSONDecodeError, AttributeError) as e:
        raise SweepError(f"{path}: unreadable sweep state ({e}); delete it to start afresh") from e


def _attempt(
    run: Run,
    argv: Sequence[str],
    log_path: PathLike,
    env: Mapping[str, str] | None,
    cwd: Path | None,
    timeout: float | None,
) -> tuple[int, float]:
    if is_remote(log_path):  # object stores cannot append, and a subprocess needs a local file to write to
        with tempfile.TemporaryDirectory(prefix="stilts-sweep-log-") as local:
            local_log = Path(local) / LOG_FILE
            remote_log = as_path(log_path)
            if remote_log.exists():
                local_log.write_bytes(remote_log.read_bytes())
            try:
                return _attempt(run, argv, local_log, env, cwd, timeout)
            finally:
                atomic_write_bytes(remote_log, local_log.read_bytes())
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n=== {_now()} {' '.join(argv)}\n")
        log.flush()
        try:
            code = subprocess.run(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env else None,
                cwd=cwd,
                timeout=timeout,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            log.write(f"\n=== timed out after {timeout} s\n")
            code = -9
        except OSError as e:
            log.write(f"\n=== could not start: {e}\n")
            code = 127
    return code, time.monotonic() - start


def run_sweep(
    runs: Sequence[Run],
    root: PathLike,
    sweep_name: str,
    *,
    retries: int = 1,
    entrypoint: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every unfinished run (each up to 1 + `retries` times); return the state's run records."""
    if retries < 0:
        raise SweepError(f"retries must be >= 0, got {retries}")
    entrypoint = list(entrypoint or default_entrypoint())
    root = as_path(root)
    root.mkdir(parents=True, exist_ok=True)
    state = SweepState(root / STATE_FILE, sweep_name)
    for run in runs:
        state.record(run)
    state.save()
    total = len(runs)
    for index, run in enumerate(runs, start=1):
        prefix = f"[{index}/{total}] {run.name}"
        if is_finished(run.workdir):
            if state.record(run)["status"] != DONE:
                state.update(run, status=DONE, note="finished before this sweep recorded it")
            say(f"{prefix}: finished earlier, skipped")
            continue
        log_path = run.workdir / LOG_FILE
        for attempt in range(1, retries + 2):
            record = state.record(run)
            state.update(run, status=RUNNING, attempts=record["attempts"] + 1, started=_now())
            say(f"{prefix}: running (attempt {attempt}/{retries + 1}), log {log_path}")
            try:
                code, seconds = _attempt(run, [*entrypoint, *run.args], log_path, env, cwd, timeout)
            except KeyboardInterrupt:
                state.update(run, status=INTERRUPTED)
                raise
            record = state.record(run)
            finished = code == 0 and is_finished(run.workdir)
            note = "" if finished or code else "exited 0 but left no evaluation/phase_done.json and results.json"
            state.update(
                run,
                status=DONE if finished else FAILED,
                exit_codes=record["exit_codes"] + [code],
                durations_s=record["durations_s"] + [round(seconds, 2)],
                note=note,
            )
            if finished:
                say(f"{prefix}: done in {seconds:.1f} s")
                break
            say(f"{prefix}: failed (exit {code}{', ' + note if note else ''}) after {seconds:.1f} s; see {log_path}")
    return state.data["runs"]


def summary_line(records: Mapping[str, Mapping[str, Any]], runs: Sequence[Run]) -> tuple[str, int]:
    """`N done, M failed` over the sweep's runs, and how many are not done."""
    statuses = [records.get(run.name, {}).get("status", PENDING) for run in runs]
    counts = {s: statuses.count(s) for s in (DONE, FAILED, INTERRUPTED, RUNNING, PENDING) if statuses.count(s)}
    return ", ".join(f"{n} {s}" for s, n in counts.items()), sum(s != DONE for s in statuses)


def environment_for_runs() -> dict[str, str]:
    """The runs' environment: this one, with unbuffered Python so the logs stay current."""
    return {**os.environ, "PYTHONUNBUFFERED": "1"}
