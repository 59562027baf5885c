"""One run per workdir: the lock file, its refusal message, stale takeover, local and gs://, and the pipeline."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from stilts_jax.core.workdir_lock import LOCK_FILE, WorkdirLock, WorkdirLockedError, lock_workdir
from tests.test_remote_workdir import BUCKET, bucket  # noqa: F401 (the in-memory gs:// fixture)


def _foreign_lock(path, *, pid: int, host: str | None = None, heartbeat_age_s: float = 0.0) -> None:
    """A lock file as another run writes it."""
    now = time.time()
    path.write_text(
        json.dumps(
            {
                "host": host or socket.gethostname(),
                "pid": pid,
                "started": now - 3600,
                "started_at": "2024-01-01 00:00:00 UTC",
                "heartbeat": now - heartbeat_age_s,
                "heartbeat_at": "recently",
                "token": "other-run",
            }
        )
    )


def test_the_lock_names_its_holder_and_is_removed_on_release(tmp_path):
    lock = WorkdirLock(tmp_path / "w")
    lock.acquire()
    record = json.loads((tmp_path / "w" / LOCK_FILE).read_text())
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    assert record["heartbeat"] >= record["started"]
    lock.release()
    assert not (tmp_path / "w" / LOCK_FILE).exists()


def test_a_second_run_is_refused_naming_the_workdir_the_holder_and_what_to_do(tmp_path):
    workdir = tmp_path / "w"
    workdir.mkdir()
    _foreign_lock(workdir / LOCK_FILE, pid=os.getppid(), host=socket.gethostname())  # a live process
    with pytest.raises(WorkdirLockedError) as error:
        lock_workdir(workdir)
    message = str(error.value)
    assert str(workdir) in message and f"process {os.getppid()} on host {socket.gethostname()}" in message
    assert "another --config.workdir" in message and f"delete {workdir / LOCK_FILE}" in message
    assert json.loads((workdir / LOCK_FILE).read_text())["token"] == "other-run"  # left alone

    _foreign_lock(workdir / LOCK_FILE, pid=1, host="another-host")  # a live run elsewhere: pid unknown here
    with pytest.raises(WorkdirLockedError, match="host another-host"):
        lock_workdir(workdir)


def test_stale_locks_are_taken_over_with_a_message(tmp_path, capsys):
    workdir = tmp_path / "w"
    workdir.mkdir()
    _foreign_lock(workdir / LOCK_FILE, pid=1, host="preempted-host", heartbeat_age_s=3600)
    lock = lock_workdir(workdir, stale_after_s=600)
    assert "taking over the lock" in capsys.readouterr().out
    assert json.loads((workdir / LOCK_FILE).read_text())["token"] == lock.token
    lock.release()

    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    _foreign_lock(workdir / LOCK_FILE, pid=int(finished.stdout), heartbeat_age_s=5)  # dead pid on this host
    lock = lock_workdir(workdir)
    assert "no longer runs on this host" in capsys.readouterr().out
    lock.release()


def test_the_heartbeat_is_refreshed_while_held(tmp_path):
    lock = WorkdirLock(tmp_path, heartbeat_s=0.05)
    lock.acquire()
    first = json.loads((tmp_path / LOCK_FILE).read_text())["heartbeat"]
    deadline = time.monotonic() + 10
    while json.loads((tmp_path / LOCK_FILE).read_text())["heartbeat"] == first and time.monotonic() < deadline:
        time.sleep(0.05)
    assert json.loads((tmp_path / LOCK_FILE).read_text())["heartbeat"] > first
    lock.release()


def test_a_gs_workdir_is_locked_and_refused_the_same_way(bucket):  # noqa: F811 (the fixture)
    workdir = f"gs://{BUCKET}/runs/a"
    first = lock_workdir(workdir)
    assert f"{BUCKET}/runs/a/{LOCK_FILE}" in bucket
    with pytest.raises(WorkdirLockedError, match=f"gs://{BUCKET}/runs/a is in use"):
        lock_workdir(workdir)
    first.release()
    assert f"{BUCKET}/runs/a/{LOCK_FILE}" not in bucket
    lock_workdir(workdir).release()


def test_the_pipeline_refuses_a_locked_workdir_before_any_work_and_releases_its_own(tmp_path, monkeypatch):
    from stilts_jax.config.loader import parse_config_args
    from stilts_jax.pipeline.runner import Pipeline

    workdir = tmp_path / "run"
    workdir.mkdir()
    config, _ = parse_config_args(
        ["--config=configs/demo.py", f"--config.workdir={workdir}", f"--config.model.name={tmp_path / 'tiny-xlmr'}"]
    )
    pipeline = Pipeline(config)
    _foreign_lock(workdir / LOCK_FILE, pid=os.getppid())
    with pytest.raises(WorkdirLockedError, match="in use by another run"):
        pipeline.run()
    assert sorted(p.name for p in workdir.iterdir()) == [LOCK_FILE]  # nothing written

    (workdir / LOCK_FILE).unlink()

    def crash(self):
        assert (workdir / LOCK_FILE).exists()  # held while the phases run
        raise RuntimeError("a phase failed")

    monkeypatch.setattr(Pipeline, "_run_phases", crash)
    with pytest.raises(RuntimeError, match="a phase failed"):
        pipeline.run()
    assert not (workdir / LOCK_FILE).exists()
