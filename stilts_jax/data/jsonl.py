"""JSON Lines files (local or gs://...): one object per line, every problem an error naming the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from stilts_jax.core.paths import PathLike, as_path


def json_objects(
    path: PathLike,
    error: type[Exception],
    *,
    where_format: str = "{path}:{line}",
    bad_json: str = "invalid JSON at column {column} ({reason})",
) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(line number, "where" text, object) for every non-empty line of `path`; a line that is not UTF-8, not JSON or
    not a JSON object raises `error` with the place (`where_format` lays it out: `{path}` and `{line}`; `bad_json`
    words the JSON error: `{column}` and `{reason}`)."""
    with as_path(path).open("rb") as f:
        for number, raw in enumerate(f, start=1):
            where = where_format.format(path=path, line=number)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise error(f"{where}: not UTF-8 text ({e.reason} at byte {e.start + 1} of the line)") from e
            if number == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise error(f"{where}: " + bad_json.format(column=e.colno, reason=e.msg)) from e
            if not isinstance(record, dict):
                raise error(f"{where}: a JSON record must be an object, got {type(record).__name__}")
            yield number, where, record
