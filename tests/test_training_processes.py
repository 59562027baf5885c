"""The training core as users run it: separate processes, several of them, and one killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(workdir: Path, output: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tests.train_harness", "--workdir", str(workdir), "--output", str(output), *extra]


def _env(devices: int) -> dict[str, str]:
    return {**os.environ, "JAX_NUM_CPU_DEVICES": str(devices), "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}


def _result(path: Path) -> dict:
    return json.loads(path.read_text())


def _assert_same_params(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(np.array(a[key]), np.array(b[key]), atol=atol, err_msg=key)


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path):
    single = subprocess.run(
        _command(tmp_path / "single", tmp_path / "single.json", "--steps", "4", "--mesh", "2,2,2"),
        env=_env(8),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr[-3000:]

    port = _free_port()
    workers = [
        subprocess.Popen(
            _command(
                tmp_path / "multi",
                tmp_path / "multi.json",
                "--steps",
                "4",
                "--mesh",
                "2,2,2",
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ),
            env=_env(4),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [w.communicate(timeout=300) for w in workers]
    for worker, (_, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
    one, two = _result(tmp_path / "single.json"), _result(tmp_path / "multi.json")
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-5)
    _assert_same_params(two["params"], one["params"], atol=1e-5)


@pytest.mark.slow
def test_sigkill_then_rerun_ends_identical_to_an_uninterrupted_run(tmp_path):
    steps = ["--steps", "10"]
    clean = subprocess.run(
        _command(tmp_path / "clean", tmp_path / "clean.json", *steps),
        env=_env(8),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert clean.returncode == 0, clean.stderr[-3000:]

    command = _command(tmp_path / "killed", tmp_path / "killed.json", *steps, "--step-delay", "0.3")
    victim = subprocess.Popen(command, env=_env(8), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and not (checkpoints / "4").is_dir():
        time.sleep(0.1)
    assert (checkpoints / "4").is_dir(), "the run never reached its second checkpoint"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "killed.json").exists()

    rerun = subprocess.run(command, env=_env(8), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resumed, uninterrupted = _result(tmp_path / "killed.json"), _result(tmp_path / "clean.json")
    assert resumed["resumed_from"] in (4, 6, 8)
    for key, value in uninterrupted["params"].items():
        assert resumed["params"][key] == value, key  # bit-identical
    assert resumed["losses"] == uninterrupted["losses"]
