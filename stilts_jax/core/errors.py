"""Errors raised for bad input. Each message names what is wrong and how to fix it."""

from __future__ import annotations

import sys
from collections.abc import Callable


class StiltsError(Exception):
    """Base class for user-facing errors; command-line tools print them without a traceback."""


class WeightsError(StiltsError):
    """A checkpoint folder or its weights do not fit the model."""


class ModelConfigError(StiltsError):
    """A Hugging Face config.json describes a model this project cannot build."""


class InputError(StiltsError):
    """An input file or argument is unusable."""


def run_tool(body: Callable[[], None]) -> int:
    """A command-line tool's exit code: 0 when `body` finishes; a StiltsError is printed as one `error: ...` line on
    stderr (no traceback) and gives 2."""
    try:
        body()
    except StiltsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
