"""Training features built once: a cache of featurized arrays keyed by everything that determines them.

The key hashes the tokenizer (its serialized content and special-token settings), the featurization settings (the
caller's dict: task, family, max_length, doc_stride, label set, ...) and the data (the loaded examples' content).
A file is `<folder>/<name>-<key>.npz`, written atomically (local or gs://), with a digest of its arrays inside: a
damaged or truncated file is reported and rebuilt, never read. With several processes, process 0 writes and every
other process reads the file when it is there, else featurizes itself (the features are the same everywhere).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import numpy as np

from stilts_jax.core.io_utils import atomic_write_bytes
from stilts_jax.core.paths import PathLike, as_path

_DIGEST = "__digest__"


def examples_fingerprint(examples: Iterable[Any]) -> str:
    """A hash of the examples' content (their reprs: dataclasses of text, labels and ids)."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(repr(example).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of what the tokenizer does: its serialized model and rules, and its special tokens and sides."""
    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # The truncation and padding a call last set live in the serialized state too: they vary between calls.
        state = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
        digest.update(json.dumps(state, sort_keys=True).encode())
    else:
        digest.update(repr(sorted(tokenizer.get_vocab().items())).encode())
    settings = {
        "special": {k: str(v) for k, v in tokenizer.special_tokens_map.items()},
        "padding_side": tokenizer.padding_side,
        "truncation_side": getattr(tokenizer, "truncation_side", None),
        "class": type(tokenizer).__name__,
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


def cache_key(tokenizer: str, settings: Mapping[str, Any], data: str) -> str:
    text = json.dumps({"tokenizer": tokenizer, "settings": dict(settings), "data": data}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _arrays_digest(arrays: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _read(path: Any) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as loaded:
        arrays = {name: loaded[name] for name in loaded.files}
    stored = str(arrays.pop(_DIGEST, np.asarray("")))
    if stored != _arrays_digest(arrays):
        raise ValueError("its content does not match the digest written with it")
    return arrays


def _write(path: Any, arrays: Mapping[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, **{_DIGEST: np.asarray(_arrays_digest(arrays))})
    atomic_write_bytes(path, buffer.getvalue())


def cached_features(
    build: Callable[[], dict[str, np.ndarray]],
    *,
    folder: PathLike,
    name: str,
    key: str,
    say: Callable[[str], None] = print,
) -> dict[str, np.ndarray]:
    """`build()`'s arrays, read from `folder/<name>-<key>.npz` when a sound file is there, else built and written."""
    path = as_path(folder) / f"{name}-{key}.npz"
    if path.exists():
        try:
            arrays = _read(path)
            say(f"  features of {name} read from {path}")
            return arrays
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:  # truncated, bad header, digest
            say(f"  the feature cache file {path} is damaged ({type(e).__name__}: {e}); featurizing again")
    arrays = build()
    if jax.process_index() == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(str(path), arrays)
    return arrays
