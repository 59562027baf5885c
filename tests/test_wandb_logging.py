"""Weights & Biases as an option (logging.wandb): the keys, what a run logs (a real offline run read back from its
.wandb file), resuming by the id kept in the workdir, and the missing package named at config check time."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from stilts_jax.config.loader import ConfigError, parse_config_args
from stilts_jax.config.schema import validate
from stilts_jax.core.errors import StiltsError
from stilts_jax.pipeline.common import log_scores
from stilts_jax.pipeline.preflight import check_config
from stilts_jax.pipeline.wandb_log import RUN_FILE, WandbSink, init_options, wandb_run
from stilts_jax.train.metrics_log import MetricsLog, forwarding_to

PER_LANGUAGE = {"en": {"f1": 52.5, "exact_match": 50.0}, "sw": {"f1": 30.0, "exact_match": 25.0}}
AVERAGE = {"average": {"f1": 41.25, "exact_match": 37.5}}


def demo_config(*overrides: str) -> Any:
    config, _ = parse_config_args(["--config=configs/demo.py", *overrides])
    return config


class FakeRun:
    """What WandbSink and wandb_run call on a W&B run, recorded."""

    id = "fake123"

    def __init__(self) -> None:
        self.defined: list[tuple[str, str | None]] = []
        self.logged: list[dict[str, float]] = []
        self.exit_code: int | None = None

    def define_metric(self, name: str, step_metric: str | None = None) -> None:
        self.defined.append((name, step_metric))

    def log(self, row: dict[str, float]) -> None:
        self.logged.append(row)

    def finish(self, exit_code: int = 0) -> None:
        self.exit_code = exit_code


def test_the_keys_are_off_by_default_and_validated():
    assert demo_config().logging.wandb == ""
    assert validate(demo_config("--config.logging.wandb=cross-lingual")) == []
    problems = validate(demo_config("--config.logging.wandb=team/project", "--config.logging.wandb_mode=cloud"))
    assert any(p.startswith("logging.wandb must be") and "'team/project'" in p for p in problems)
    assert any(p.startswith("logging.wandb_mode must be one of '', 'online', 'offline'") for p in problems)


def test_a_missing_wandb_package_stops_the_config_check_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    with pytest.raises(ConfigError, match=r"logging\.wandb='proj'.*pip install \"stilts-jax\[wandb\]\"") as caught:
        check_config(demo_config("--config.logging.wandb=proj"), read_data=False)
    assert "--config.logging.wandb=''" in str(caught.value)
    check_config(demo_config(), read_data=False)  # off: wandb is never imported


def test_records_go_to_the_run_keyed_by_phase_folder_while_forwarding(tmp_path):
    run = FakeRun()
    sink = WandbSink(run, tmp_path)
    with forwarding_to(sink):
        log = MetricsLog(tmp_path / "intermediate" / "1_siqa", enabled=True)
        log.write(5, "train", {"loss": 0.5, "learning_rate": 1e-5})
        log.write(10, "dev", {"dev_score": 0.75})
        log.close()
        MetricsLog(tmp_path / "target", enabled=False).write(3, "train", {"loss": 9.0})  # not process 0
        log_scores(tmp_path / "evaluation", PER_LANGUAGE, AVERAGE)
    after = MetricsLog(tmp_path / "target", enabled=True)
    after.write(7, "train", {"loss": 1.0})  # outside the block: metrics.jsonl and TensorBoard only
    after.close()
    assert run.logged[:2] == [
        {
            "intermediate/1_siqa/step": 5,
            "intermediate/1_siqa/train/loss": 0.5,
            "intermediate/1_siqa/train/learning_rate": 1e-5,
        },
        {"intermediate/1_siqa/step": 10, "intermediate/1_siqa/dev/dev_score": 0.75},
    ]
    scores = {k: v for row in run.logged[2:] for k, v in row.items()}
    assert scores["evaluation/zero_shot/sw/f1"] == 30.0
    assert scores["evaluation/zero_shot/average/exact_match"] == 37.5
    assert len(run.logged) == 5  # en, sw, average; nothing from process != 0 or after the block
    assert ("intermediate/1_siqa/*", "intermediate/1_siqa/step") in run.defined
    assert ("evaluation/*", "evaluation/step") in run.defined


def test_an_online_run_continues_the_id_kept_in_the_workdir_and_an_offline_one_does_not(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    workdir = tmp_path / "my_sweep" / "squad_to_xnli_seed0"
    config = demo_config("--config.logging.wandb=proj")
    first = init_options(config, workdir)
    assert first["resume"] == "allow" and "id" not in first  # online, nothing stored yet: W&B picks the id
    assert (first["project"], first["group"], first["name"]) == ("proj", "my_sweep", "squad_to_xnli_seed0")
    assert first["config"]["target"]["task"] == config.target.task and first["entity"] is None
    workdir.mkdir(parents=True)
    (workdir / RUN_FILE).write_text(json.dumps({"id": "abc", "project": "proj", "entity": ""}))
    assert init_options(config, workdir)["id"] == "abc"
    assert "id" not in init_options(demo_config("--config.logging.wandb=other"), workdir)  # another project
    named = demo_config(
        "--config.logging.wandb=proj", "--config.logging.wandb_group=g", "--config.logging.wandb_name=n"
    )
    assert (init_options(named, workdir)["group"], init_options(named, workdir)["name"]) == ("g", "n")
    offline = init_options(demo_config("--config.logging.wandb=proj", "--config.logging.wandb_mode=offline"), workdir)
    assert offline["mode"] == "offline" and "id" not in offline and "resume" not in offline
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert "resume" not in init_options(config, workdir)


def test_the_run_is_opened_once_its_id_kept_and_finished_failed_when_the_pipeline_raises(tmp_path, monkeypatch):
    import wandb

    monkeypatch.delenv("WANDB_MODE", raising=False)
    runs: list[tuple[dict[str, Any], FakeRun]] = []

    def fake_init(**options: Any) -> FakeRun:
        runs.append((options, FakeRun()))
        return runs[-1][1]

    monkeypatch.setattr(wandb, "init", fake_init)
    config = demo_config("--config.logging.wandb=proj")
    with pytest.raises(RuntimeError, match="preempted"), wandb_run(config, tmp_path):
        MetricsLog(tmp_path / "target", enabled=True).write(1, "train", {"loss": 2.0})
        raise RuntimeError("preempted")
    assert runs[0][1].exit_code == 1 and runs[0][1].logged == [{"target/step": 1, "target/train/loss": 2.0}]
    assert json.loads((tmp_path / RUN_FILE).read_text()) == {"id": "fake123", "project": "proj", "entity": ""}
    with wandb_run(config, tmp_path):  # the rerun resumes the same W&B run
        pass
    assert runs[1][0]["id"] == "fake123" and runs[1][0]["resume"] == "allow" and runs[1][1].exit_code == 0
    with wandb_run(demo_config(), tmp_path) as none:  # off: no run
        assert none is None
    assert len(runs) == 2


def test_wandb_failing_to_start_names_login_offline_and_off(tmp_path, monkeypatch):
    import wandb

    def no_login(**options: Any) -> None:
        raise wandb.errors.UsageError("api_key not configured (no-tty)")

    monkeypatch.setattr(wandb, "init", no_login)
    config = demo_config("--config.logging.wandb=proj", "--config.logging.wandb_mode=online")
    with (
        pytest.raises(StiltsError, match=r"wandb login.*wandb_mode=offline.*logging\.wandb=''"),
        wandb_run(config, tmp_path),
    ):
        pass


def _records(path: Path) -> list[Any]:
    """The records of a W&B run file, read with wandb's own reader once the run's exit record is in it (wandb's
    service may still be writing the file's last block when finish() returns)."""
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal import datastore

    deadline = time.monotonic() + 20
    while True:
        store = datastore.DataStore()
        store.open_for_scan(str(path))
        records = []
        try:
            while (data := store.scan_data()) is not None:
                record = wandb_internal_pb2.Record()
                record.ParseFromString(data)
                records.append(record)
        except AssertionError:  # wandb's reader on a record still being written (a partial header): read again
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
            continue
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def _history(records: list[Any]) -> list[dict[str, Any]]:
    return [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
        for record in records
        if record.WhichOneof("record_type") == "history"
    ]


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """W&B offline in tmp_path (no network): runs are written to <tmp_path>/wandb_dir/wandb for `wandb sync`."""
    folder = tmp_path / "wandb_dir"
    folder.mkdir()
    monkeypatch.setenv("WANDB_DIR", str(folder))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    return folder / "wandb"


def test_a_real_offline_run_holds_the_phase_curves_the_zero_shot_scores_and_the_config(tmp_path, offline_wandb):
    workdir = tmp_path / "sweep" / "run0"
    config = demo_config("--config.logging.wandb=stilts-test")
    with wandb_run(config, workdir) as run:
        assert run is not None
        log = MetricsLog(workdir / "target", enabled=True)  # as the training loop logs
        for step in (1, 2, 3):
            log.write(step, "train", {"loss": 1.0 / step, "learning_rate": 1e-3, "examples_per_second": 100.0})
        log.write(3, "dev", {"dev_score": 0.625})
        log.close()
        log_scores(workdir / "evaluation", PER_LANGUAGE, AVERAGE)
    assert not (workdir / RUN_FILE).exists()  # offline: nothing to continue
    [path] = offline_wandb.glob("offline-run-*/run-*.wandb")
    records = _records(path)
    [header] = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (header.project, header.run_group, header.display_name) == ("stilts-test", "sweep", "run0")
    config_items = {item.key: json.loads(item.value_json) for item in header.config.update}
    assert config_items["logging"]["wandb"] == "stilts-test" and config_items["target"]["task"] == config.target.task
    rows = _history(records)
    train_rows = [row for row in rows if "target/train/loss" in row]
    assert [(row["target/step"], row["target/train/loss"]) for row in train_rows] == [(1, 1.0), (2, 0.5), (3, 1 / 3)]
    assert all({"target/train/learning_rate", "target/train/examples_per_second"} <= row.keys() for row in train_rows)
    assert [row["target/dev/dev_score"] for row in rows if "target/dev/dev_score" in row] == [0.625]
    scores = {k: v for row in rows for k, v in row.items() if k.startswith("evaluation/zero_shot/")}
    assert scores["evaluation/zero_shot/en/f1"] == 52.5 and scores["evaluation/zero_shot/average/f1"] == 41.25
    assert [r.exit.exit_code for r in records if r.WhichOneof("record_type") == "exit"] == [0]


@pytest.mark.slow
def test_the_demo_pipeline_logs_every_phase_and_the_zero_shot_scores_to_one_offline_run(tmp_path, offline_wandb):
    from stilts_jax.main import main

    workdir = tmp_path / "sweep" / "demo"
    args = [
        "--config=configs/demo.py",
        f"--config.workdir={workdir}",
        "--config.logging.wandb=stilts-demo",
        "--config.evaluation.plots=false",
        *(
            f"--config.{phase}.train.{key}"
            for phase in ("intermediate", "target")
            for key in ("max_steps=2", "log_every=1")
        ),
    ]
    assert main(args) == 0
    [path] = offline_wandb.glob("offline-run-*/run-*.wandb")
    records = _records(path)
    rows = _history(records)
    assert [row["intermediate/step"] for row in rows if "intermediate/train/loss" in row] == [1, 2]
    assert [row["target/step"] for row in rows if "target/train/loss" in row] == [1, 2]
    keys = {key for row in rows for key in row}
    assert {"intermediate/dev/dev_score", "target/dev/dev_score", "target/train/learning_rate"} <= keys
    assert {"evaluation/zero_shot/sw/f1", "evaluation/zero_shot/average/f1"} <= keys  # the demo's target: TyDiQA
    [header] = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (header.run_group, header.display_name) == ("sweep", "demo")
