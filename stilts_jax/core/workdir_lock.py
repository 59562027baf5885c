"""One run per workdir: a lock file `<workdir>/.lock` that a second run on the same workdir is refused by.

The file (JSON) names its holder: host, pid, start time and a heartbeat time that a daemon thread refreshes
every `heartbeat_s` seconds. A lock is stale, and taken over with a message, when its heartbeat is older than
`stale_after_s` (a preempted or crashed host, which cannot remove it) or when its holder's pid is no longer alive
on this very host. Local folders and object stores (gs://) alike, through etils.epath: a store has no exclusive
create, so the taker writes its own token and reads the file back to check that it won.
In a run of several processes only process 0 holds the lock; every process learns whether it got it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import jax
import numpy as np

from stilts_jax.core.errors import StiltsError
from stilts_jax.core.io_utils import atomic_write_text
from stilts_jax.core.paths import PathLike, as_path, check_workdir_writable, is_remote

LOCK_FILE = ".lock"
HEARTBEAT_S = 60.0
STALE_AFTER_S = 10 * 60.0


class WorkdirLockedError(StiltsError):
    """Another run holds the workdir."""


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


class WorkdirLock:
    """The lock of one workdir, held by this process between `acquire` and `release`."""

    def __init__(self, workdir: PathLike, *, heartbeat_s: float = HEARTBEAT_S, stale_after_s: float = STALE_AFTER_S):
        self.workdir = as_path(workdir)
        self.path = self.workdir / LOCK_FILE
        self.heartbeat_s, self.stale_after_s = heartbeat_s, stale_after_s
        self.token = uuid.uuid4().hex
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _record(self) -> dict[str, Any]:
        now = time.time()
        return {
            "host": self.host,
            "pid": self.pid,
            "started": self.started,
            "started_at": _iso(self.started),
            "heartbeat": now,
            "heartbeat_at": _iso(now),
            "token": self.token,
        }

    def _read(self) -> dict[str, Any] | None:
        """The lock file's record; None when there is none. A file that is not a lock record counts as stale."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        try:
            record = json.loads(text)
        except ValueError:
            return {}
        return record if isinstance(record, dict) else {}

    def _stale_reason(self, record: dict[str, Any]) -> str | None:
        """Why the holder in `record` is gone, or None while it may still be running."""
        heartbeat = record.get("heartbeat")
        if not isinstance(heartbeat, (int, float)):
            return "the lock file is unreadable"
        age = time.time() - heartbeat
        if age > self.stale_after_s:
            return f"its last heartbeat was {age / 60:.0f} minutes ago (host preempted or crashed)"
        pid = record.get("pid")
        if record.get("host") == self.host and isinstance(pid, int) and pid != self.pid and not _pid_alive(pid):
            return f"process {pid} no longer runs on this host"
        return None

    def _holder(self, record: dict[str, Any]) -> str:
        return (
            f"process {record.get('pid')} on host {record.get('host')}, running since "
            f"{record.get('started_at', '?')} (last heartbeat {record.get('heartbeat_at', '?')})"
        )

    def _write(self) -> None:
        atomic_write_text(self.path, json.dumps(self._record(), indent=2) + "\n")

    def _create_exclusively(self) -> bool:
        """Create the lock file if none exists; False when one appeared first. Object stores: always writes."""
        if is_remote(self.path):
            self._write()
            return True
        try:
            fd = os.open(os.fspath(self.path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(self._record(), indent=2) + "\n")
        return True

    def acquire(self) -> None:
        """Take the lock, taking over a stale one (with a message); WorkdirLockedError when another run holds it."""
        if is_remote(self.workdir):
            check_workdir_writable(self.workdir)  # no bucket or credentials: an error naming the fix
        elif self.workdir.exists() and not os.access(self.workdir, os.W_OK):
            print(
                f"warning: the workdir {self.workdir} is read-only: it is not locked (this run can write nothing "
                "there either)",
                flush=True,
            )
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a lock released or replaced between our read and our write: look again
            record = self._read()
            if record is None:
                if not self._create_exclusively():
                    continue
            else:
                reason = self._stale_reason(record)
                if reason is None:
                    raise WorkdirLockedError(
                        f"the workdir {self.workdir} is in use by another run: {self._holder(record)}. Two runs in "
                        f"one workdir would overwrite each other's checkpoints and logs. Wait for that run to end, "
                        f"or give this one another --config.workdir. If that run is gone, delete {self.path}; a lock "
                        f"whose heartbeat is older than {self.stale_after_s / 60:.0f} minutes is taken over "
                        f"automatically."
                    )
                print(
                    f"warning: taking over the lock of {self.workdir} from {self._holder(record)}: {reason}", flush=True
                )
                self._write()
            time.sleep(0.05)  # let a concurrent writer of the same object finish; then see who won
            if (self._read() or {}).get("token") == self.token:
                self._start_heartbeat()
                return
        raise WorkdirLockedError(
            f"could not take the lock {self.path}: other runs keep replacing it. Make sure only "
            f"one run uses the workdir {self.workdir}."
        )

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"workdir-lock {self.workdir}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                record = self._read()
                if (record or {}).get("token") != self.token:
                    print(
                        f"warning: the lock of {self.workdir} was taken over by "
                        f"{self._holder(record) if record else 'nobody (the file is gone)'}; this run no longer "
                        "holds it",
                        flush=True,
                    )
                    return
                self._write()
            except Exception as e:  # noqa: BLE001 (a failed heartbeat must not kill the run; the next one retries)
                print(f"warning: could not refresh the lock {self.path}: {type(e).__name__}: {e}", flush=True)

    def release(self) -> None:
        """Stop the heartbeat and remove the lock file if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        try:
            if (self._read() or {}).get("token") == self.token:
                self.path.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> WorkdirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_workdir(workdir: PathLike, **options: Any) -> WorkdirLock | None:
    """Take the workdir's lock on process 0 (the returned lock; None on the other processes). With several
    processes every one of them raises WorkdirLockedError when process 0 could not take it."""
    lock = WorkdirLock(workdir, **options) if jax.process_index() == 0 else None
    error: WorkdirLockedError | None = None
    if lock is not None:
        try:
            lock.acquire()
        except WorkdirLockedError as e:
            error = e
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        refused = multihost_utils.broadcast_one_to_all(np.int32(error is not None))
        if int(refused) and error is None:
            raise WorkdirLockedError(f"the workdir {as_path(workdir)} is in use by another run (process 0 says so)")
    if error is not None:
        raise error
    return lock
