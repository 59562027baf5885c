"""The offline demo sweeps end to end: real pipeline runs, a rerun that skips them, the report (slow; CI runs them).
The chain sweep runs a reduced configs/sweeps/chain_demo.py: the baseline and two chains in both orders."""

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


def _sweep(
    root: Path, cache: Path, *command: str, sweep: str | Path = "configs/sweeps/demo.py", steps: int = 3
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_NUM_CPU_DEVICES": "1",
        "PYTHONUNBUFFERED": "1",
        # The runs compile the same steps: a shared persistent cache compiles them once.
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    return subprocess.run(
        [
            sys.executable,
            "launch/sweep.py",
            *command,
            "--sweep",
            str(sweep),
            "--root",
            str(root),
            "--steps",
            str(steps),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )


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
    assert (
        json.loads((root / "mnli_to_tydiqa_seed1" / "intermediate" / "phase_done.json").read_text())["task"] == "mnli"
    )
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


# configs/sweeps/chain_demo.py narrowed to three runs of one target, on little data: what CI can afford.
REDUCED_CHAIN_SWEEP = """\
import importlib.util

spec = importlib.util.spec_from_file_location("chain_demo_sweep", {demo!r})
demo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(demo)


def get_sweep():
    sweep = demo.get_sweep()
    sweep.update(name="chain_demo_ci", intermediate=["none", "squad+mnli", "mnli+squad"], targets=["xnli"])
    sweep["overrides"] = {{**sweep["overrides"], "intermediate.max_train_examples": 48,
                          "intermediate.max_dev_examples": 16, "target.max_train_examples": 48,
                          "target.max_dev_examples": 16, "evaluation.languages": ["sw", "zh"],
                          "evaluation.plots": False, "intermediate.train.progress_bar": False,
                          "target.train.progress_bar": False}}
    return sweep
"""


@pytest.mark.slow
def test_chain_sweep_runs_chains_through_the_sweep_runner_and_reports_them_beside_the_baseline(tmp_path):
    sweep_file = tmp_path / "chain_demo_ci.py"
    sweep_file.write_text(REDUCED_CHAIN_SWEEP.format(demo=str(ROOT / "configs" / "sweeps" / "chain_demo.py")))
    root, cache = tmp_path / "chain sweep", tmp_path / "jax-cache"
    first = _sweep(root, cache, "run", sweep=sweep_file, steps=2)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    names = ["baseline_to_xnli_seed0", "squad+mnli_to_xnli_seed0", "mnli+squad_to_xnli_seed0"]
    assert first.stdout.count(": done in ") == 3, first.stdout
    state = json.loads((root / "sweep_state.json").read_text())["runs"]
    assert sorted(state) == sorted(names) and all(state[n]["status"] == "done" for n in names)
    assert not (root / names[0] / "intermediate").exists()
    for name, stages in ((names[1], ["0_squad", "1_mnli"]), (names[2], ["0_mnli", "1_squad"])):
        workdir = root / name
        for stage in stages:  # each stage trained in its own folder
            assert (workdir / "intermediate" / stage / "phase_done.json").is_file()
        chain = json.loads((workdir / "intermediate" / "chain.json").read_text())
        assert [s["task"] for s in chain["stages"]] == name.split("_to_")[0].split("+")
        assert set(chain["scores"][f"intermediate/{stages[1]}"]) == {"squad", "mnli"}  # forgetting measured
        results = json.loads((workdir / "results.json").read_text())
        assert results["intermediate_task"] == name.split("_to_")[0]
        assert sorted(results["per_language"]) == ["sw", "zh"]

    report = _sweep(root, cache, "report", sweep=sweep_file, steps=2)
    assert report.returncode == 0, report.stderr[-3000:]
    for file in ("results.md", "results.tex", "results.csv", "heatmap.png"):
        assert (root / file).is_file()
    md = (root / "results.md").read_text()
    assert (
        "| intermediate | xnli | XTREME avg | XTREME classification avg | XTREME-R avg | XTREME-R classification avg |"
    ) in md
    rows = [
        line.split("|")[1].strip()
        for line in md.splitlines()
        if line.startswith(("| baseline (none) |", "| squad+mnli |", "| mnli+squad |"))
    ]
    assert rows == ["baseline (none)", "squad+mnli", "mnli+squad"]
    assert "`a+b` is a chain" in md
    # 2 of XNLI's 15 languages evaluated: the target cells say so, the averages (which need every language) are
    # missing with the reason, never computed from part of the languages.
    assert "scored on 2 of 15 languages" in md and "13 of 15 languages missing" in md
    cells = {(r["intermediate"], r["column"]): r for r in csv.DictReader((root / "results.csv").open())}
    assert len(cells) == 3 * 5
    for row, name in zip(("none", "squad+mnli", "mnli+squad"), names, strict=True):
        per_language = json.loads((root / name / "results.json").read_text())["per_language"]
        expected = statistics.fmean(per_language[lang]["accuracy"] for lang in ("sw", "zh"))
        assert float(cells[(row, "xnli")]["mean"]) == pytest.approx(expected, abs=1e-3)
        assert cells[(row, "xtreme-r/classification")]["status"] == "missing"
    baseline = float(cells[("none", "xnli")]["mean"])
    assert float(cells[("mnli+squad", "xnli")]["delta"]) == pytest.approx(
        float(cells[("mnli+squad", "xnli")]["mean"]) - baseline, abs=1e-3
    )
