"""Writes that never leave a half-written file or folder in place of a good one.

Local files: a temporary file beside the target, fsync, rename. Object stores (gs://, s3://, ...): one upload of
the whole content, which the store makes visible all at once or not at all (they have no rename to build on).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from stilts_jax.core.paths import PathLike, as_path, is_remote


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _default_file_mode()


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it over `path`; on an object store,
    upload it in one piece (the content is complete in memory before the upload starts)."""
    if is_remote(path):
        remote = as_path(path)
        remote.parent.mkdir(parents=True, exist_ok=True)  # a no-op on buckets; kept for stores with folders
        remote.write_bytes(data)
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes it private; the result is an ordinary file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary folder; on success it replaces `path` whole, on failure it is removed.

    An existing `path` is swapped out only after the new folder is complete, so a crash leaves either the old
    folder or the new one, never a mix. Local folders only (object stores cannot rename folders).
    """
    if is_remote(path):
        raise ValueError(f"atomic_directory({path}): needs a local folder; write to a local one and upload the files")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.parent / f".{path.name}.old-{os.getpid()}"
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
