"""Retrieval evaluation as several JAX processes (TPU pods, multi-host GPU) must run it: 2 local CPU processes
x 2 fake devices give the numbers and files of 1 process x 4 devices, and every process returns the same summary.

Started the way tests/test_training_processes.py starts its workers; all of these are slow (whole pipelines).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "retrieval"
DEMO = ROOT / "stilts_jax" / "assets" / "demo"
TIMEOUT = 600


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict[str, str]:
    return {
        **os.environ,
        "JAX_NUM_CPU_DEVICES": str(devices),
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
    }


def _run(args: list[str], workdir: Path, processes: int) -> list[dict]:
    """The pipeline on `workdir` as `processes` processes (4 devices in all); each process's returned summary."""
    summaries = workdir.parent / f"{workdir.name}-summaries"
    command = [
        sys.executable,
        "-m",
        "tests.pipeline_harness",
        f"--summary-dir={summaries}",
        *args,
        f"--config.workdir={workdir}",
    ]
    if processes == 1:
        workers = [
            subprocess.Popen(command, env=_env(4), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ]
    else:
        coordinator = f"127.0.0.1:{_free_port()}"
        workers = [
            subprocess.Popen(
                [
                    *command,
                    f"--config.distributed.coordinator_address={coordinator}",
                    f"--config.distributed.num_processes={processes}",
                    f"--config.distributed.process_id={i}",
                ],
                env=_env(4 // processes),
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(processes)
        ]
    outputs = [w.communicate(timeout=TIMEOUT) for w in workers]
    for i, (worker, (_, err)) in enumerate(zip(workers, outputs)):
        assert worker.returncode == 0, f"process {i} of {processes}:\n{err[-3000:]}"
    return [json.loads((summaries / f"summary-{i}.json").read_text()) for i in range(processes)]


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def _numbers(tree: object, prefix: str = "") -> dict[str, object]:
    """Flattened leaves of a JSON tree, for comparisons that name the differing key."""
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in _numbers(value, f"{prefix}/{key}").items()}
    return {prefix: tree}


def _assert_close(actual: dict, expected: dict, rel: float = 0.0) -> None:
    actual, expected = _numbers(actual), _numbers(expected)
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, float):
            assert actual[key] == pytest.approx(value, rel=rel, abs=rel), key
        else:
            assert actual[key] == value, key


def _model_args(tmp_path: Path) -> list[str]:
    return [
        f"--config.model.name={tmp_path / 'tiny-xlmr'}",
        "--config.model.make_tiny=true",
        "--config.model.dtype=float32",
    ]


@pytest.mark.slow
def test_tatoeba_and_bucc_in_two_processes_match_one(tmp_path):
    # Tatoeba on the pretrained (tiny) encoder: Pipeline.load_encoder's pretrained path.
    tatoeba = [
        "--config=configs/stilts.py:intermediate=none,target=tatoeba",
        *_model_args(tmp_path),
        "--config.target.source.kind=xtreme",
        f"--config.target.source.path={FIXTURES / 'tatoeba_xtreme'}",
        f"--config.target.source.labels={FIXTURES / 'tatoeba_xtreme' / 'labels'}",
        "--config.evaluation.languages=['de','fr']",
        "--config.evaluation.all_layers=true",
    ]
    [one] = _run(tatoeba, tmp_path / "tatoeba-1", 1)
    two = _run(tatoeba, tmp_path / "tatoeba-2", 2)
    assert set(one["per_language"]) == {"de", "fr"} and set(one["per_layer"]) == {"0", "1", "2"}
    for summary in two:  # every process returns the single process's summary, exactly
        assert summary == one
    assert _files(tmp_path / "tatoeba-2" / "predictions") == _files(tmp_path / "tatoeba-1" / "predictions")
    assert (tmp_path / "tatoeba-2" / "results.md").read_text() == (tmp_path / "tatoeba-1" / "results.md").read_text()

    # BUCC on the encoder an intermediate phase saved (Pipeline.load_encoder's saved path). The intermediate
    # phase runs once, in one process; the 2-process run finds it finished and evaluates the same weights.
    bucc = [
        "--config=configs/stilts.py:intermediate=squad,target=bucc",
        *_model_args(tmp_path),
        "--config.target.source.kind=xtreme",
        f"--config.target.source.path={FIXTURES / 'bucc_original'}",
        "--config.evaluation.languages=['de']",
        "--config.intermediate.source.kind=xtreme",
        f"--config.intermediate.source.path={DEMO}",
        "--config.intermediate.max_length=128",
        "--config.intermediate.doc_stride=32",
        "--config.intermediate.train.batch_size=8",
        "--config.intermediate.train.max_steps=2",
        "--config.intermediate.train.progress_bar=false",
        "--config.intermediate.max_dev_examples=16",
    ]
    [one] = _run(bucc, tmp_path / "bucc-1", 1)
    shutil.copytree(tmp_path / "bucc-1" / "intermediate", tmp_path / "bucc-2" / "intermediate")
    two = _run(bucc, tmp_path / "bucc-2", 2)
    assert {"threshold", "dev_f1", "precision", "recall", "f1"} <= set(one["per_language"]["de"])
    for summary in two:
        assert summary == one
    predictions = _files(tmp_path / "bucc-1" / "predictions")
    assert predictions and any(predictions.values())  # pairs were mined, so the comparison below means something
    assert _files(tmp_path / "bucc-2" / "predictions") == predictions


@pytest.mark.slow
def test_mewslix_dual_encoder_in_two_processes_matches_one(tmp_path):
    mewslix = [
        "--config=configs/stilts.py:intermediate=none,target=mewslix",
        *_model_args(tmp_path),
        "--config.target.source.kind=xtreme",
        f"--config.target.source.path={FIXTURES / 'mewslix'}",
        "--config.target.max_length=64",
        "--config.dual_encoder.query_max_length=32",
        "--config.target.train.batch_size=16",
        "--config.target.train.max_steps=2",  # 4 micro-batches (published)
        "--config.target.train.progress_bar=false",
        "--config.target.max_dev_examples=16",
        "--config.evaluation.languages=['en','ja','ar']",
    ]
    [one] = _run(mewslix, tmp_path / "mewslix-1", 1)
    two = _run(mewslix, tmp_path / "mewslix-2", 2)
    assert set(one["per_language"]) == {"en", "ja", "ar"}
    # Training in 2 processes matches 1 process within float tolerance (tests/test_training_processes.py), so
    # the scores do too; the rankings may swap near-tied candidates, so they are compared by their queries.
    for summary in two:
        _assert_close(summary, one, rel=1e-6)
    done = [json.loads((tmp_path / f"mewslix-{n}" / "target" / "phase_done.json").read_text()) for n in (1, 2)]
    assert done[1]["dev"] == pytest.approx(done[0]["dev"]) and done[1]["best_step"] == done[0]["best_step"] == 2
    for lang in ("en", "ja", "ar"):
        rankings = [
            json.loads((tmp_path / f"mewslix-{n}" / "predictions" / "mewslix" / f"test-{lang}.json").read_text())
            for n in (1, 2)
        ]
        assert rankings[1].keys() == rankings[0].keys()
        assert all(len(ids) == 20 for ids in rankings[1].values())
        labels = [(tmp_path / f"mewslix-{n}" / "labels" / "mewslix" / f"test-{lang}.json").read_text() for n in (1, 2)]
        assert labels[1] == labels[0]
