"""One path type for workdirs and data: `etils.epath.Path`, local folders and object-store URLs (gs://, s3://, ...)
alike.

Local paths behave as `pathlib.Path`. A `gs://` path goes through fsspec + gcsfs (or tf.io.gfile when TensorFlow is
installed, which epath prefers); object stores have no rename, no append and no recursive glob, so code that writes
under a workdir uses the helpers here and in `stilts_jax.core.io_utils` instead of those operations.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

from etils import epath

from stilts_jax.core.errors import StiltsError

PathLike = str | os.PathLike

_REMOTE_FIXES = {
    "gs": "check the bucket name (create it with `gcloud storage buckets create gs://BUCKET`), sign in with "
    "`gcloud auth application-default login` (on a TPU/GCE VM: give its service account Storage Object Admin "
    "on the bucket), and install gcsfs (`pip install gcsfs`) unless TensorFlow is installed",
}


def as_path(path: PathLike) -> epath.Path:
    """`path` as an epath.Path; `gs://bucket/x` keeps its scheme (pathlib.Path would turn it into `gs:/bucket/x`)."""
    return path if isinstance(path, epath.Path) else epath.Path(path)


def data_path(path: PathLike) -> epath.Path:
    """A data file or folder given by a user: `~` expanded on a local path, a `gs://...` URL kept as it is."""
    path = as_path(path)
    return path if is_remote(path) else path.expanduser()


def glob_files(pattern: PathLike) -> list[epath.Path]:
    """The files matching a glob pattern (`*`, `?`, `[...]` in any part but the bucket), sorted; local or remote.

    The pattern is split at its first part holding a wildcard and globbed from the folder above it, so `gs://b/t/*.txt`
    lists one folder (object stores have no recursive glob: `**` works on local paths only).
    """
    text = os.fspath(pattern)
    scheme = url_scheme(text)
    head, rest = (f"{scheme}://", text.split("://", 1)[1]) if scheme else ("", text)
    parts = rest.split("/")
    first = next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")), None)
    if first is None:
        path = data_path(text)
        return [path] if path.is_file() else []
    folder = "/".join(parts[:first]) or ("/" if first else ".")
    if head and not first:
        raise StiltsError(f"{text}: a wildcard in the bucket name is not supported; name the bucket")
    base = data_path(head + folder)
    if not base.is_dir():
        return []
    return sorted((p for p in base.glob("/".join(parts[first:])) if p.is_file()), key=os.fspath)


def url_scheme(path: PathLike) -> str | None:
    """'gs', 's3', ... for an object-store URL; None for a local path."""
    text = os.fspath(path)
    return text.split("://", 1)[0] if "://" in text else None


def is_remote(path: PathLike) -> bool:
    return url_scheme(path) is not None


def absolute(path: PathLike) -> epath.Path:
    """A local path made absolute (as recorded in phase_done.json); a URL is already absolute and is kept."""
    path = as_path(path)
    return path if is_remote(path) else path.absolute()


def iter_files(folder: PathLike) -> Iterator[tuple[str, epath.Path]]:
    """(name relative to `folder` with '/' separators, path) of every file below `folder`, sorted by name.

    Written with listings only: epath refuses recursive globs on object stores, and its walk() drops the URL scheme.
    """
    folder = as_path(folder)

    def below(current: epath.Path, prefix: str) -> Iterator[tuple[str, epath.Path]]:
        for child in sorted(current.iterdir(), key=lambda p: p.name):
            name = f"{prefix}{child.name}"
            if child.is_dir():
                yield from below(child, name + "/")
            else:
                yield name, child

    yield from below(folder, "")


def check_workdir_writable(workdir: PathLike) -> None:
    """Fail now, with the fix, when a remote workdir cannot be written (no credentials, no bucket, no gcsfs).

    Without this a run would load data and a model first and fail deep inside its first checkpoint save. A local
    workdir is created and probed too (a path under a file, a read-only filesystem, no permission).
    """
    workdir = as_path(workdir)
    if not is_remote(workdir):
        try:
            workdir.mkdir(parents=True, exist_ok=True)
            probe = workdir / f".stilts-write-check-{uuid.uuid4().hex}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as e:
            reason = e.strerror or type(e).__name__
            raise StiltsError(
                f"cannot write to the workdir {workdir} ({reason}: {e.filename or workdir}); choose a "
                "writable folder with --config.workdir"
            ) from e
        return
    probe = workdir / f".stilts-write-check-{uuid.uuid4().hex}"
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except Exception as e:  # ImportError, auth errors and missing buckets come as many exception types
        scheme = url_scheme(workdir)
        fix = _REMOTE_FIXES.get(
            scheme,
            f"check the URL, your credentials for {scheme}:// and that fsspec's "
            f"{scheme} filesystem package is installed",
        )
        raise StiltsError(
            f"cannot write to the workdir {workdir} ({type(e).__name__}: {' '.join(str(e).split())[:300]}): {fix}"
        ) from e
