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
import pytest

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

    def extra(i: int) -> list[str]:
        return (
            [f"--coordinator={coordinator}", f"--processes={processes}", f"--process-id={i}"] if processes > 1 else []
        )

    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.search_worker", str(out), *extra(i)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, out in enumerate(outputs)
    ]
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


def _cli(tmp_path: Path, module: str, args: list[str], processes: int) -> list[subprocess.CompletedProcess]:
    """`python -m module args` as `processes` processes of 4 devices in all."""
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_NUM_CPU_DEVICES": str(4 // processes),
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
    }
    coordinator = f"127.0.0.1:{_free_port()}"

    def extra(i: int) -> list[str]:
        if processes == 1:
            return []
        return [f"--coordinator-address={coordinator}", f"--num-processes={processes}", f"--process-id={i}"]

    workers = [
        subprocess.Popen(
            [sys.executable, "-m", module, *args, *extra(i)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    done = []
    for i, worker in enumerate(workers):
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, f"process {i} of {processes}:\n{err[-3000:]}"
        done.append(subprocess.CompletedProcess(worker.args, worker.returncode, out, err))
    return done


def test_search_command_in_two_processes_writes_what_one_process_writes(tmp_path):
    queries, database = data()
    np.save(tmp_path / "q.npy", queries)
    np.save(tmp_path / "db.npy", database)
    outputs = {}
    for processes in (1, 2):
        out = tmp_path / f"out-{processes}.npz"
        runs = _cli(
            tmp_path,
            "stilts_jax.search",
            ["--queries", "q.npy", "--database", "db.npy", "--k", "4", "--output", str(out), "--margin", "ratio"],
            processes,
        )
        assert f"on 4 cpu device(s) of {processes} process(es)" in runs[0].stdout
        assert all("wrote" not in run.stdout for run in runs[1:])  # process 0 reports and writes
        outputs[processes] = dict(np.load(out))
    assert outputs[2].keys() == outputs[1].keys() == {"indices", "scores", "margin_scores"}
    for key, value in outputs[1].items():
        np.testing.assert_allclose(outputs[2][key], value, rtol=1e-6)


@pytest.mark.slow
def test_miner_in_two_processes_mines_what_one_process_mines(xlmr_dir, tmp_path):
    from stilts_jax.core.tokenization import SHIPPED_TEXT_DIR

    english = (SHIPPED_TEXT_DIR / "parallel.en.txt").read_text(encoding="utf-8").splitlines()[:20]
    (tmp_path / "src.txt").write_text("\n".join(s[:-1] for s in english) + "\n", encoding="utf-8")
    (tmp_path / "tgt.txt").write_text("\n".join(english[::-1]) + "\n", encoding="utf-8")
    pairs = {}
    for processes in (1, 2):
        _cli(
            tmp_path,
            "stilts_jax.mine",
            [
                "--model",
                str(xlmr_dir),
                "--src",
                "src.txt",
                "--tgt",
                "tgt.txt",
                "--output",
                f"pairs-{processes}.tsv",
                "--layer",
                "0",
            ],
            processes,
        )
        pairs[processes] = [line.split("\t") for line in (tmp_path / f"pairs-{processes}.tsv").read_text().splitlines()]
    assert len(pairs[1]) >= 15
    assert [row[1:] for row in pairs[2]] == [row[1:] for row in pairs[1]]
    np.testing.assert_allclose([float(r[0]) for r in pairs[2]], [float(r[0]) for r in pairs[1]], rtol=1e-5)
