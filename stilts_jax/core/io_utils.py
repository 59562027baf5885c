"""Writes that never leave a half-written file or folder in place of a good one, and reads of UTF-8 text files that
never split or decode wrong.

Local files: a temporary file beside the target, fsync, rename. Object stores (gs://, s3://, ...): one upload of
the whole content, which the store makes visible all at once or not at all (they have no rename to build on).

Text files: lines end at `\n` (a `\r` before it is dropped); U+2028, U+0085, form feeds and lone `\r` stay inside
their line, so line i of a file is example i. A leading UTF-8 byte-order mark is dropped. Bytes that are not UTF-8
are an error naming the file and the line. The readers take local paths and object-store URLs (`gs://...`) alike.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from stilts_jax.core.errors import InputError
from stilts_jax.core.paths import PathLike, as_path, is_remote

_BOM = "\ufeff"


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


# --- reading UTF-8 text ----------------------------------------------------------------------------------------


def _not_utf8(path: PathLike, line: int, error: UnicodeDecodeError, column: int) -> str:
    utf16 = (
        " (it starts with a UTF-16 byte-order mark: save it as UTF-8)"
        if line == 1 and error.object[:2] in (b"\xff\xfe", b"\xfe\xff")
        else ""
    )
    return (
        f"{path} line {line}: not UTF-8 text ({error.reason} at byte {column} of the line){utf16}; convert it "
        "with `iconv -f <its encoding> -t utf-8`"
    )


def iter_lines(path: PathLike, error: type[Exception] = InputError) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its line break) of a UTF-8 text file, read as it streams.

    Lines end at `\n` only (`\r\n` too: the `\r` is dropped); a final line break ends the last line. A leading
    byte-order mark is dropped. A line that is not UTF-8 raises `error` naming the file and line.
    """
    with as_path(path).open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise error(_not_utf8(path, number, e, e.start + 1)) from None
            if number == 1 and text.startswith(_BOM):
                text = text[1:]
            if text.endswith("\n"):
                text = text[:-1]
            yield number, text[:-1] if text.endswith("\r") else text


def read_lines(path: PathLike, error: type[Exception] = InputError) -> list[str]:
    """The lines of a UTF-8 text file (see iter_lines): line i of the list is line i + 1 of the file."""
    return [line for _, line in iter_lines(path, error)]


def read_text(path: PathLike, error: type[Exception] = InputError) -> str:
    """The whole text of a UTF-8 file (a leading byte-order mark dropped); bytes that are not UTF-8 raise `error`
    naming the file and line."""
    data = as_path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line_start = data.rfind(b"\n", 0, e.start) + 1
        raise error(_not_utf8(path, data.count(b"\n", 0, e.start) + 1, e, e.start - line_start + 1)) from None
    return text[1:] if text.startswith(_BOM) else text
