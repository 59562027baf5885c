"""Python logging for the command-line tools: one format, a verbosity, and the one expected library warning muted."""

from __future__ import annotations

import logging

VERBOSITIES = {"error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG}
# Orbax warns at every periodic checkpoint saved between dev evaluations (no metrics to rank it by): expected here.
EXPECTED_WARNINGS = ("Requested `tracked_metric`; did not provide metrics.",)


class _DropExpected(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.WARNING and str(record.msg).startswith(EXPECTED_WARNINGS))


def configure_logging(verbosity: str = "warning") -> None:
    """Library logs (JAX, Orbax, TFDS, datasets) at `verbosity` and above, on stderr, with the logger's name."""
    if verbosity not in VERBOSITIES:
        raise ValueError(f"--verbosity must be one of {', '.join(VERBOSITIES)}, got {verbosity!r}")
    logging.basicConfig(level=VERBOSITIES[verbosity], format="%(levelname)s %(name)s: %(message)s", force=True)
    for name in ("absl", "orbax"):
        logger = logging.getLogger(name)
        logger.setLevel(VERBOSITIES[verbosity])
        if not any(isinstance(f, _DropExpected) for f in logger.filters):
            logger.addFilter(_DropExpected())
