"""Per-language evaluation scores saved as each language finishes, so an interrupted evaluation (a preempted
TPU VM, a killed job) resumes at the next language instead of starting over.

Each file holds the scores and a fingerprint of what produced them (the model, the task and split, the
evaluation settings); a file whose fingerprint differs is ignored and overwritten, never reused. It also holds
the SHA-256 of the files written with the scores (the language's predictions): when one of them is gone or no
longer matches, the language is evaluated again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from stilts_jax.core.io_utils import atomic_write_text
from stilts_jax.core.paths import PathLike, as_path


def fingerprint(**parts: Any) -> str:
    """A stable digest of JSON-able parts (config dicts, paths, names)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class LanguageResults:
    """Scores per language in `folder`; recorded files under `root` (the workdir) are named relative to it, so a
    moved workdir keeps its results."""

    def __init__(self, folder: PathLike, fingerprint: str, root: PathLike | None = None):
        self.folder = as_path(folder)
        self.fingerprint = fingerprint
        self.root = None if root is None else as_path(root)

    def _name(self, path: PathLike) -> str:
        text, root = str(as_path(path)), str(self.root) if self.root is not None else None
        return text[len(root) + 1 :] if root is not None and text.startswith(root + "/") else text

    def _resolve(self, name: str) -> Any:
        return as_path(name) if self.root is None or "://" in name or name.startswith("/") else self.root / name

    def _path(self, language: str):
        return self.folder / f"{language}.json"

    def get(self, language: str) -> dict[str, float] | None:
        """The saved scores of `language`, or None when there are none from this model and these settings, or when
        a file recorded with them is missing or changed (then a line says so).

        With several processes the answer is the same on all of them (None unless every process reads the scores),
        since they must predict the same languages together."""
        scores = self._read(language)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            found = multihost_utils.process_allgather(np.int32(scores is not None))
            if not np.all(found):
                return None
        return scores

    def _read(self, language: str) -> dict[str, float] | None:
        path = self._path(language)
        if not path.exists():
            return None
        try:
            saved = json.loads(path.read_text())
        except (ValueError, OSError):
            return None  # a damaged file: evaluate the language again
        if not isinstance(saved, dict) or saved.get("fingerprint") != self.fingerprint:
            return None
        files = saved.get("files")
        if not isinstance(files, dict):
            return None  # written before files were recorded: evaluate again, so the predictions are known intact
        for name, digest in files.items():
            problem = _file_problem(self._resolve(name), digest)
            if problem is not None:
                if jax.process_index() == 0:
                    print(f"[evaluation] {language}: {name} {problem}; evaluating {language} again", flush=True)
                return None
        return saved.get("scores")

    def put(self, language: str, scores: dict[str, float], files: Sequence[PathLike] = ()) -> None:
        """Save on process 0 (after the language's predictions are written), atomically, with the SHA-256 of
        `files` (what was written with the scores: `get` trusts the scores only while these are intact)."""
        if jax.process_index() == 0:
            digests = {self._name(f): _sha256(as_path(f)) for f in files}
            atomic_write_text(
                self._path(language),
                json.dumps(
                    {"fingerprint": self.fingerprint, "language": language, "scores": scores, "files": digests},
                    sort_keys=True,
                )
                + "\n",
            )


def _sha256(path: Any) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _file_problem(path: Any, digest: str) -> str | None:
    try:
        actual = _sha256(path)
    except FileNotFoundError:
        return "is missing"
    except OSError as e:
        return f"cannot be read ({e})"
    return None if actual == digest else "has changed since it was written"
