"""The benchmark scripts run end to end on CPU at tiny sizes and print Markdown tables of finite positive numbers (slow)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(script: str, *args: str) -> str:
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_NUM_CPU_DEVICES": "1",
        "PYTHONUNBUFFERED": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
    }
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout


def _tables(output: str) -> list[list[dict[str, str]]]:
    """Every Markdown table in the output, as a list of {column: cell} rows."""
    tables, lines = [], output.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header = [c.strip() for c in lines[i].strip("|").split("|")]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip("|").split("|")]
                assert len(cells) == len(header), lines[i]
                rows.append(dict(zip(header, cells)))
                i += 1
            tables.append(rows)
        else:
            i += 1
    return tables


def _number(cell: str) -> float:
    """'12.3', '0.00277%', '16.48x', '4.08 MiB', '7.81e-05%' -> the number; anything else fails."""
    match = re.fullmatch(r"([0-9.]+(?:e[-+]?[0-9]+)?)\s*(%|x|B|KiB|MiB|GiB|TiB)?", cell)
    assert match, f"not a number: {cell!r}"
    return float(match.group(1))


def _positive(rows: list[dict[str, str]], *columns: str) -> None:
    for row in rows:
        for column in columns:
            value = _number(row[column])
            assert math.isfinite(value) and value > 0, (column, row)


def _column(rows: list[dict[str, str]], prefix: str) -> str:
    names = [c for c in rows[0] if c.startswith(prefix)]
    assert len(names) == 1, (prefix, list(rows[0]))
    return names[0]


@pytest.mark.slow
def test_train_bench_smoke():
    output = _run(
        "train_bench.py", "--model", "tiny", "--shapes", "2x32", "--warmup", "1", "--steps", "2", "--no-torch-compile"
    )
    assert "jax " in output and "torch " in output and "800 TFLOP/s" in output
    main, analysis = _tables(output)
    names = [row["implementation"] for row in main]
    assert any(n.startswith("stilts-jax") for n in names) and any("PyTorch" in n and "eager" in n for n in names), names
    _positive(main, "step (ms)", "examples/s", "TFLOP/s", _column(main, "MFU"), "vs PyTorch eager")
    assert len(analysis) == 1
    _positive(analysis, "arguments", "temporaries", _column(analysis, "live total"))


@pytest.mark.slow
def test_eval_bench_smoke():
    output = _run(
        "eval_bench.py",
        "--model",
        "tiny",
        "--shapes",
        "4x32",
        "--batches",
        "2",
        "--mix-examples",
        "32",
        "--mix-batch",
        "4",
        "--min-len",
        "8",
        "--max-len",
        "128",
        "--repeats",
        "1",
    )
    equal, mix = _tables(output)
    assert len(equal) == 2 and len(mix) == 4
    _positive(equal, "examples/s", "TFLOP/s", _column(equal, "MFU"), "vs PyTorch eager")
    _positive(mix, "examples/s", "real / computed tokens", "vs PyTorch pad-to-max")
    # Bucketing computes fewer padded tokens than padding every batch to the max length.
    computed = {
        row["batching"].split(",")[0] + row["implementation"][:7]: _number(row["real / computed tokens"]) for row in mix
    }
    assert computed["sortedstilts-"] > computed["data orderstilts-"], computed


@pytest.mark.slow
def test_featurize_bench_smoke():
    output = _run("featurize_bench.py", "--examples", "50", "--repeats", "1", "--consumer", "100")
    (rows,) = _tables(output)
    assert len(rows) == 2
    _positive(
        rows,
        "examples",
        "features",
        "seconds",
        "examples/s",
        "features/s",
        "real tokens/s",
        _column(rows, "features/s vs consumer"),
    )


@pytest.mark.slow
def test_gpu_checks_pass_on_cpu_with_the_cudnn_row_skipped():
    output = _run("gpu_checks.py", "--small")
    (table,) = _tables(output)
    results = {row["check"]: row["result"] for row in table}
    assert len(results) == 5, results
    assert "fused search kernel vs PyTorch topk (fp32)" in results
    assert results.pop("cudnn attention (bf16) vs XLA") == "SKIP"
    assert set(results.values()) == {"PASS"}, table


@pytest.mark.slow
def test_device_session_script_runs_its_parts_and_writes_logs(tmp_path):
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_NUM_CPU_DEVICES": "1",
        "SMOKE": "1",
        "OUT": str(tmp_path),
        "PYTHON": sys.executable,
        "HF_HUB_OFFLINE": "1",
        "WHEELS": str(tmp_path / "no-wheels"),
    }  # the .whl/ of a checkout holds Python 3.12 wheels for a GPU host
    run = subprocess.run(
        ["bash", str(ROOT / "bench" / "device_session.sh"), "search", "train512"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = (tmp_path / "summary.txt").read_text()
    assert "jax " in summary and "search rc=0" in summary and "train512 rc=0" in summary, summary
    (search,) = _tables((tmp_path / "search.log").read_text())
    assert any(row["implementation"].startswith("stilts-jax (") for row in search), search
    assert any(row["implementation"].startswith("stilts-jax fused kernel") for row in search), search
    assert all(row["top-1 agreement"] == "100.0%" for row in search if row["implementation"].startswith("stilts")), (
        search
    )
    wrong = subprocess.run(
        ["bash", str(ROOT / "bench" / "device_session.sh"), "nope"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode == 2 and "unknown part nope" in wrong.stderr
