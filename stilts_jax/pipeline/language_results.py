"""Per-language evaluation scores saved as each language finishes, so an interrupted evaluation (a preempted
TPU VM, a killed job) resumes at the next language instead of starting over.

Each file holds the scores and a fingerprint of what produced them (the model, the task and split, the
evaluation settings); a file whose fingerprint differs is ignored and overwritten, never reused.
"""

from __future__ import annotations

import hashlib
import json
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
    def __init__(self, folder: PathLike, fingerprint: str):
        self.folder = as_path(folder)
        self.fingerprint = fingerprint

    def _path(self, language: str):
        return self.folder / f"{language}.json"

    def get(self, language: str) -> dict[str, float] | None:
        """The saved scores of `language`, or None when there are none from this model and these settings.

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
        return saved.get("scores")

    def put(self, language: str, scores: dict[str, float]) -> None:
        """Save on process 0 (after the language's predictions are written), atomically."""
        if jax.process_index() == 0:
            atomic_write_text(self._path(language), json.dumps(
                {"fingerprint": self.fingerprint, "language": language, "scores": scores}, sort_keys=True) + "\n")
