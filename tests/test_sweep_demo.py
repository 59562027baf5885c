"""The offline demo sweep end to end: real pipeline runs, a rerun that skips them, the report (slow; CI runs it)."""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TYDIQA_LANGUAGES = ("en", "ar", "bn", "fi", "id", "ko", "ru", "sw", "te")


def _sweep(root: Path, cache: Path, *command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "1", "PYTHONUNBUFFERED": "1",
           # The six runs compile the same steps: a shared persistent cache compiles them once.
           "JAX_COMPILATION_CACHE_DIR": str(cache), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    return subprocess.run([sys.executable, "launch/sweep.py", *command, "--sweep", "configs/sweeps/demo.py",
                           "--root", str(root), "--steps", "3"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1500)


def _run_score(workdir: Path) -> float:
    """TyDiQA's XTREME score of one run, straight from its results.json: mean over languages of (EM + F1) / 2."""
    rows = json.loads((workdir / "results.json").read_text())["per_language"]
    assert sorted(rows) == sorted(TYDIQA_LANGUAGES)
    return statistics.fmean((rows[lang]["exact_match"] + rows[lang]["f1"]) / 2 for lang in TYDIQA_LANGUAGES)


@pytest.mark.slow
def test_demo_sweep_runs_skips_on_rerun_and_reports(tmp_path):
    root, cache = tmp_path / "demo sweep", tmp_path / "jax-cache"
    first = _sweep(root, cache, "run")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert first.stdout.count(": done in ") == 6, first.stdout
    names = [f"{i}_to_tydiqa_seed{s}" for i in ("baseline", "squad", "mnli") for s in (0, 1)]
    state = json.loads((root / "sweep_state.json").read_text())["runs"]
    assert sorted(state) == sorted(names) and all(state[n]["status"] == "done" for n in names)
    for name in names:
        assert (root / name / "sweep.log").read_text().count("=== ") == 1
    assert json.loads((root / "mnli_to_tydiqa_seed1" / "intermediate" / "phase_done.json").read_text())["task"] == "mnli"
    assert not (root / "baseline_to_tydiqa_seed0" / "intermediate").exists()
    assert json.loads((root / "squad_to_tydiqa_seed1" / "config.json").read_text())["seed"] == 1

    again = _sweep(root, cache, "run")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("finished earlier, skipped") == 6
    assert all(log.read_text().count("=== ") == 1 for log in root.glob("*/sweep.log"))  # nothing ran again

    report = _sweep(root, cache, "report")
    assert report.returncode == 0, report.stderr[-3000:]
    md = (root / "results.md").read_text()
    assert "| intermediate | tydiqa | XTREME avg | XTREME-R avg |" in md
    table_rows = [line for line in md.splitlines() if line.startswith(("| baseline (none) |", "| squad |", "| mnli |"))]
    assert [row.split("|")[1].strip() for row in table_rows] == ["baseline (none)", "squad", "mnli"]
    assert all(row.count("±") == 3 for row in table_rows)  # every cell: mean ± std over the two seeds
    assert "Missing or incomplete" not in md
    tex = (root / "results.tex").read_text()
    assert r"Intermediate task & tydiqa & XTREME avg & XTREME-R avg \\" in tex and r"\dagger" not in tex

    rows = {(r["intermediate"], r["column"]): r for r in csv.DictReader((root / "results.csv").open())}
    assert len(rows) == 9
    baseline_mean = statistics.fmean(_run_score(root / f"baseline_to_tydiqa_seed{s}") for s in (0, 1))
    for intermediate in ("none", "squad", "mnli"):
        name = "baseline" if intermediate == "none" else intermediate
        scores = [_run_score(root / f"{name}_to_tydiqa_seed{s}") for s in (0, 1)]
        row = rows[(intermediate, "tydiqa")]
        assert float(row["seed_0"]) == pytest.approx(scores[0], abs=1e-3)
        assert float(row["seed_1"]) == pytest.approx(scores[1], abs=1e-3)
        assert float(row["mean"]) == pytest.approx(statistics.fmean(scores), abs=1e-3)
        assert float(row["std"]) == pytest.approx(statistics.stdev(scores), abs=1e-3)
        assert float(row["delta"]) == pytest.approx(statistics.fmean(scores) - baseline_mean, abs=1e-3)
        assert float(rows[(intermediate, "xtreme")]["mean"]) == pytest.approx(statistics.fmean(scores), abs=1e-3)

    import matplotlib.image

    image = matplotlib.image.imread(root / "heatmap.png")
    assert image.ndim == 3 and image.shape[0] > 100
