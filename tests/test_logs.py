"""The command line's logging: one expected Orbax warning muted, every other warning kept, a verbosity flag."""

from __future__ import annotations

import logging

import pytest
from absl import logging as absl_logging

from stilts_jax import main as main_module
from stilts_jax.core.logs import configure_logging


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def absl_records():
    root_handlers = logging.getLogger().handlers[:]
    collect = Collect()
    logger = logging.getLogger("absl")
    logger.addHandler(collect)
    yield collect
    logger.removeHandler(collect)
    logger.filters.clear()
    logging.getLogger().handlers[:] = root_handlers


def test_only_the_expected_orbax_warning_is_muted(absl_records):
    configure_logging("warning")
    absl_logging.warning("Requested `tracked_metric`; did not provide metrics.")
    absl_logging.warning("Waiting for previous save to complete took %f seconds.", 12.0)
    absl_logging.info("an info line")
    assert absl_records.messages == ["Waiting for previous save to complete took 12.000000 seconds."]
    configure_logging("info")
    absl_logging.info("an info line")
    assert absl_records.messages[-1] == "an info line"


def test_a_bad_verbosity_is_one_error_line(capsys, absl_records):
    assert main_module.main(["--config=configs/demo.py", "--verbosity=loud"]) == 2
    assert capsys.readouterr().err.startswith("error: --verbosity must be one of error, warning, info, debug")


def test_zero_shot_scores_go_to_tensorboard_and_the_metrics_log(tmp_path):
    import json

    from stilts_jax.pipeline.common import log_scores

    per_language = {"en": {"f1": 52.5, "exact_match": 50.0, "examples": 40}, "sw": {"f1": 30.0, "exact_match": 25.0}}
    log_scores(tmp_path, per_language, {"average": {"f1": 41.25, "exact_match": 37.5}})
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {row["split"] for row in rows} == {"zero_shot/en", "zero_shot/sw", "zero_shot/average"}
    assert next(r for r in rows if r["split"] == "zero_shot/sw")["f1"] == 30.0
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
