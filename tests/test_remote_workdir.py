"""Workdirs on object stores (gs://...): the pipeline's own file handling, run offline against an in-memory bucket.

fsspec's MemoryFileSystem is registered under gs:// (where gcsfs would be), so every etils.epath call the code
makes goes through the same fsspec backend a real bucket uses; only the storage is memory. The bucket keeps no
folders and has no rename or append, as GCS. Orbax's array writes (TensorStore) cannot be served this way: the
checkpoint tests here cover the project's own checkpoint file handling (manifests, quarantine moves).
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import ClassVar

import fsspec
import pytest
from etils.epath import backend as epath_backend, gpath
from fsspec.implementations.memory import MemoryFileSystem

from stilts_jax.core.errors import StiltsError
from stilts_jax.core.io_utils import atomic_write_text
from stilts_jax.core.paths import absolute, as_path, check_workdir_writable, iter_files
from stilts_jax.evaluation.report import write_predictions, write_results
from stilts_jax.experiments import runner
from stilts_jax.experiments.aggregate import aggregate
from stilts_jax.experiments.report import markdown, write_report
from stilts_jax.experiments.sweep import expand, sweep_from_mapping
from stilts_jax.train import checkpoints as checkpoints_module
from stilts_jax.train.metrics_log import MetricsLog, read_metrics

BUCKET = "test-bucket"


class InMemoryBucket(MemoryFileSystem):
    """gs:// in memory. Paths are kept as `bucket/key` (gcsfs's form); writing to an unknown bucket fails as on GCS."""

    protocol = ("gs", "gcs")
    root_marker = ""
    store: ClassVar[dict] = {}
    pseudo_dirs: ClassVar[list] = [""]
    buckets: ClassVar[set[str]] = set()

    @classmethod
    def _strip_protocol(cls, path):
        path = fsspec.utils.stringify_path(path)
        for prefix in ("gs://", "gcs://"):
            path = path.removeprefix(prefix)
        return path.rstrip("/")

    def _open(self, path, mode="rb", **kwargs):
        bucket = self._strip_protocol(path).split("/", 1)[0]
        if "w" in mode and bucket not in self.buckets:
            raise FileNotFoundError(f"404 The specified bucket does not exist: {bucket}")
        if "a" in mode:
            raise NotImplementedError("objects cannot be appended to")
        return super()._open(path, mode, **kwargs)


@pytest.fixture
def bucket(monkeypatch):
    """A fresh in-memory `gs://test-bucket`, served through the fsspec backend epath uses for gs:// without TF."""
    monkeypatch.setattr(InMemoryBucket, "store", {})
    monkeypatch.setattr(InMemoryBucket, "pseudo_dirs", [""])
    monkeypatch.setattr(InMemoryBucket, "buckets", {BUCKET})
    InMemoryBucket.clear_instance_cache()
    monkeypatch.setenv("EPATH_USE_TF", "false")  # TensorFlow, when installed, would take gs:// otherwise
    gpath._is_tf_installed.cache_clear()
    registry = importlib.import_module("fsspec.registry")._registry  # `fsspec.registry` is a read-only view of it
    for protocol in InMemoryBucket.protocol:
        monkeypatch.setitem(registry, protocol, InMemoryBucket)  # restored after the test
    epath_backend.fsspec_backend._get_filesystem.cache_clear()
    yield InMemoryBucket.store
    epath_backend.fsspec_backend._get_filesystem.cache_clear()
    gpath._is_tf_installed.cache_clear()


def objects(store: dict, prefix: str = "") -> list[str]:
    return sorted(key for key in store if key.startswith(f"{BUCKET}/{prefix}"))


# --- paths and atomic writes -------------------------------------------------------------------------------------


def test_a_gs_workdir_keeps_its_scheme_and_local_paths_are_unchanged(tmp_path, monkeypatch):
    remote = as_path("gs://b/run") / "target" / "best_model"
    assert str(remote) == "gs://b/run/target/best_model" and remote.name == "best_model"
    assert str(absolute("gs://b/run/x")) == "gs://b/run/x"  # pathlib would give <cwd>/gs:/b/run/x
    monkeypatch.chdir(tmp_path)
    assert str(absolute("runs/a")) == str(tmp_path / "runs" / "a")
    assert as_path("runs/a") == Path("runs/a")


def test_atomic_writes_to_a_bucket_are_one_whole_object(bucket):
    target = as_path(f"gs://{BUCKET}/run/evaluation/phase_done.json")
    atomic_write_text(target, '{"a": 1}\n')
    atomic_write_text(target, '{"a": 2}\n')
    assert objects(bucket) == [f"{BUCKET}/run/evaluation/phase_done.json"]  # no temporary objects left beside it
    assert json.loads(target.read_text()) == {"a": 2}


def test_results_and_predictions_go_to_a_bucket(bucket):
    workdir = f"gs://{BUCKET}/run"
    summary = {
        "task": "xnli",
        "per_language": {"en": {"accuracy": 80.0, "examples": 3}, "de": {"accuracy": 70.0, "examples": 3}},
        "average": {"accuracy": 75.0},
        "average_zero_shot": {"accuracy": 70.0},
    }
    json_path, md_path = write_results(workdir, summary, [("accuracy", "accuracy")])
    assert str(json_path) == f"{workdir}/results.json" and json.loads(json_path.read_text()) == summary
    assert "| de | 70.0 | 3 |" in md_path.read_text()
    path = write_predictions(f"{workdir}/predictions/tydiqa/test-sw.json", {"q1": "jibu"})
    assert str(path) == f"{workdir}/predictions/tydiqa/test-sw.json"
    assert json.loads(bucket[f"{BUCKET}/run/predictions/tydiqa/test-sw.json"].getvalue()) == {"q1": "jibu"}


def test_an_unreachable_bucket_fails_early_naming_the_fix(bucket):
    check_workdir_writable(f"gs://{BUCKET}/run")  # writable: passes and leaves nothing behind
    assert objects(bucket) == []
    with pytest.raises(
        StiltsError, match=r"gs://no-such-bucket/run.*bucket does not exist.*gcloud auth application-default login"
    ):
        check_workdir_writable("gs://no-such-bucket/run")


def test_without_gcsfs_a_gs_workdir_names_the_package_to_install(monkeypatch):
    try:
        import gcsfs  # noqa: F401

        pytest.skip("gcsfs is installed: a real gs:// check would need credentials and network")
    except ImportError:
        pass
    monkeypatch.setenv("EPATH_USE_TF", "false")
    gpath._is_tf_installed.cache_clear()
    epath_backend.fsspec_backend._get_filesystem.cache_clear()
    with pytest.raises(
        StiltsError, match=r"cannot write to the workdir gs://bucket/run \(ImportError.*pip install gcsfs"
    ):
        check_workdir_writable("gs://bucket/run")
    gpath._is_tf_installed.cache_clear()


# --- metrics log ---------------------------------------------------------------------------------------------------


def test_a_remote_metrics_log_is_uploaded_whole_and_survives_resume_with_truncation(bucket):
    workdir = f"gs://{BUCKET}/run/target"
    log = MetricsLog(workdir, enabled=True, upload_every_s=1e9)
    for step in (10, 20, 30):
        log.write(step, "train", {"loss": 1.0 / step})
    log.write(20, "dev", {"dev_score": 50.0})
    assert f"{BUCKET}/run/target/metrics.jsonl" not in bucket  # nothing appended: the log waits for an upload
    log.flush()  # what the training loop does before each checkpoint
    assert [r["step"] for r in read_metrics(workdir)] == [10, 20, 30]
    log.write(40, "train", {"loss": float("nan")})
    log.close()
    assert [r["step"] for r in read_metrics(workdir)] == [10, 20, 30, 40]
    assert read_metrics(workdir)[-1]["loss"] == "nan"
    assert read_metrics(workdir, "dev") == [{"step": 20, "split": "dev", "dev_score": 50.0}]
    events = objects(bucket, "run/target/tensorboard/")
    assert len(events) == 1 and b"train/loss" in bucket[events[0]].getvalue()
    assert log._local_events is not None and not log._local_events.exists()  # the local staging folder is gone

    resumed = MetricsLog(workdir, enabled=True, upload_every_s=1e9)  # the run restarts from the checkpoint at 20
    resumed.truncate_after(20)
    assert [(r["step"], r["split"]) for r in read_metrics(workdir)] == [(10, "train"), (20, "train")]
    resumed.write(30, "train", {"loss": 0.5})
    resumed.close()
    assert [(r["step"], r["loss"]) for r in read_metrics(workdir)] == [(10, 0.1), (20, 0.05), (30, 0.5)]
    assert len(objects(bucket, "run/target/tensorboard/")) == 2  # one event file per session, as locally


def test_a_remote_metrics_log_uploads_on_its_own_after_the_interval(bucket):
    workdir = f"gs://{BUCKET}/run"
    log = MetricsLog(workdir, enabled=True, upload_every_s=0.0)
    log.write(1, "train", {"loss": 2.0})
    assert [r["loss"] for r in read_metrics(workdir)] == [2.0]  # uploaded without flush or close
    log.close()


def test_the_local_metrics_log_still_appends_and_truncates(tmp_path):
    log = MetricsLog(tmp_path, enabled=True)
    for step in (1, 2, 3):
        log.write(step, "train", {"loss": float(step)})
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]  # appended as written, before any flush
    log.close()
    resumed = MetricsLog(tmp_path, enabled=True)
    resumed.truncate_after(2)
    resumed.close()
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tensorboard").iterdir())


# --- checkpoints' own file handling ------------------------------------------------------------------------------


def _fake_checkpoint_files(root) -> dict[str, bytes]:
    files = {"state/_METADATA": b'{"tree": 1}', "state/d/abc": b"\x00" * 1000, "data/position.json": b'{"step": 5}'}
    for name, content in files.items():
        path = as_path(root) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return files


def test_checkpoint_manifests_are_the_same_for_a_local_and_a_remote_copy(bucket, tmp_path):
    files = _fake_checkpoint_files(tmp_path / "5")
    _fake_checkpoint_files(f"gs://{BUCKET}/ck/5")
    local = checkpoints_module._file_manifest(as_path(tmp_path / "5"))
    remote = checkpoints_module._file_manifest(as_path(f"gs://{BUCKET}/ck/5"))
    assert local == remote
    assert sorted(local) == sorted(files) and local["state/d/abc"][0] == 1000
    assert [name for name, _ in iter_files(f"gs://{BUCKET}/ck/5")] == sorted(files)


def test_quarantine_moves_a_remote_checkpoint_folder_aside_whole(bucket):
    files = _fake_checkpoint_files(f"gs://{BUCKET}/ck/7")
    checkpoints_module._move_folder(as_path(f"gs://{BUCKET}/ck/7"), as_path(f"gs://{BUCKET}/ck_corrupt/7-1"))
    assert objects(bucket, "ck/") == []
    assert {name: path.read_bytes() for name, path in iter_files(f"gs://{BUCKET}/ck_corrupt/7-1")} == files


def test_the_local_quarantine_still_renames(tmp_path):
    files = _fake_checkpoint_files(tmp_path / "ck" / "7")
    checkpoints_module._move_folder(as_path(tmp_path / "ck" / "7"), as_path(tmp_path / "ck_corrupt" / "7-1"))
    assert not (tmp_path / "ck" / "7").exists()
    assert {name: p.read_bytes() for name, p in iter_files(tmp_path / "ck_corrupt" / "7-1")} == files


# --- the sweep tool on a bucket ------------------------------------------------------------------------------------


def _sweep():
    return sweep_from_mapping(
        dict(
            name="t",
            recipe="configs/demo.py",
            root="sweeps/t",
            intermediate=["none", "squad"],
            targets=["xnli"],
            seeds=[0, 1],
        )
    )


def _write_run(run, score: float) -> None:
    per_language = {lang: {"accuracy": score + i, "examples": 10} for i, lang in enumerate(["en", "de", "sw"])}
    atomic_write_text(run.workdir / "results.json", json.dumps({"task": "xnli", "per_language": per_language}))
    atomic_write_text(run.workdir / "evaluation" / "phase_done.json", "{}\n")


def test_the_sweep_report_reads_remote_workdirs_as_local_ones(bucket, tmp_path):
    scores = {"baseline_to_xnli_seed0": 60.0, "baseline_to_xnli_seed1": 62.0, "squad_to_xnli_seed0": 65.0}
    tables = {}
    for root in (str(tmp_path / "sweep"), f"gs://{BUCKET}/sweep"):
        runs = expand(_sweep(), root=root)
        assert all(str(run.workdir) == f"{root}/{run.name}" for run in runs)
        assert all(f"--config.workdir={root}/{run.name}" in run.args for run in runs)
        for run in runs:
            if run.name in scores:
                _write_run(run, scores[run.name])
        tables[root] = aggregate(runs, runner.load_state(root))
        written = write_report(tables[root], as_path(root), "t")
        assert all(path.exists() for path in written)
    local, remote = tables.values()
    assert markdown(remote, "t") == markdown(local, "t")
    assert "squad_to_xnli_seed1: pending" in remote.cells[("squad", "xnli")].problems
    assert (
        remote.cells[("none", "xnli")].seeds == local.cells[("none", "xnli")].seeds
        and len(local.cells[("none", "xnli")].seeds) == 2
    )
    assert bucket[f"{BUCKET}/sweep/heatmap.png"].getvalue().startswith(b"\x89PNG")


def test_a_sweep_attempt_on_a_remote_workdir_uploads_its_whole_log(bucket):
    run = expand(_sweep(), root=f"gs://{BUCKET}/sweep")[0]
    log = run.workdir / runner.LOG_FILE
    for word in ("first", "second"):
        code, _ = runner._attempt(run, [sys.executable, "-c", f"print('{word} attempt')"], log, None, None, 60)
        assert code == 0
    text = log.read_text()
    assert text.index("first attempt") < text.index("second attempt") and text.count("=== ") == 2


def test_a_remote_sweep_state_is_written_and_read_back(bucket):
    runs = expand(_sweep(), root=f"gs://{BUCKET}/sweep")
    for run in runs:
        _write_run(run, 50.0)
    records = runner.run_sweep(
        runs,
        f"gs://{BUCKET}/sweep",
        "t",
        say=lambda line: None,
        entrypoint=[sys.executable, "-c", "raise SystemExit(3)"],
    )
    assert {r["status"] for r in records.values()} == {"done"}  # finished runs are recognised from their workdirs
    assert runner.load_state(f"gs://{BUCKET}/sweep") == records
