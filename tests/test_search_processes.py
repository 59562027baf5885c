"""Search as several JAX processes (TPU pods, multi-host GPU) run it: 2 local CPU processes x 2 fake devices hold
half the database each, and both get back the faiss top-k and the mining of 1 process x 4 devices."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np

from tests.search_worker import data

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(tmp_path: Path, processes: int) -> list[dict]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": str(4 // processes), "PYTHONPATH": str(ROOT)}
    coordinator = f"127.0.0.1:{_free_port()}"
    outputs = [tmp_path / f"{processes}-{i}.json" for i in range(processes)]
    extra = lambda i: ([f"--coordinator={coordinator}", f"--processes={processes}", f"--process-id={i}"]  # noqa: E731
                       if processes > 1 else [])
    workers = [subprocess.Popen([sys.executable, "-m", "tests.search_worker", str(out), *extra(i)], env=env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i, out in enumerate(outputs)]
    for i, worker in enumerate(workers):
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, f"process {i} of {processes}:\n{err[-3000:]}"
    return [json.loads(out.read_text()) for out in outputs]


def test_two_processes_split_the_database_and_match_faiss_and_one_process(tmp_path):
    queries, database = data()
    index = faiss.IndexFlatIP(database.shape[1])
    index.add(database)
    expected_scores, expected_indices = index.search(queries, 5)

    [one] = _run(tmp_path, 1)
    two = _run(tmp_path, 2)
    assert one["devices"] == 4 and one["rows_held_here"] == one["padded_rows"]
    for result in two:
        assert result["devices"] == 4 and result["local_devices"] == 2
        assert result["rows_held_here"] == result["padded_rows"] // 2  # each process holds half, not all
        np.testing.assert_array_equal(np.asarray(result["indices"]), expected_indices)
        np.testing.assert_allclose(np.asarray(result["scores"]), expected_scores, rtol=1e-5, atol=1e-5)
        assert result["indices"] == one["indices"]
        np.testing.assert_allclose(result["forward_margin"], one["forward_margin"], rtol=1e-6)
        assert [p[1:] for p in result["pairs"]] == [p[1:] for p in one["pairs"]] and result["pairs"]
