"""The product's main command on the offline demo: all phases, learning, resuming (slow; CI runs them)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _readme_main_command() -> list[str]:
    """The python step of the README's first command (the venv and install steps are this test run's own)."""
    readme = (ROOT / "README.md").read_text()
    first = re.search(r"```bash\n# 1\..*\n(.*)\n", readme).group(1)
    steps = [s.strip() for s in first.split("&&") if s.strip().startswith("python -m stilts_jax")]
    assert len(steps) == 1, steps
    return steps[0].split()[1:]


def _command(workdir: Path) -> list[str]:
    # The README's command, kept out of the repository's workdir/.
    return [
        sys.executable,
        *_readme_main_command(),
        f"--config.workdir={workdir}",
        f"--config.model.name={workdir.parent / 'tiny-xlmr'}",
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "1", "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
def test_demo_runs_every_phase_and_beats_the_trivial_baseline_in_every_language(tmp_path):
    workdir = tmp_path / "demo"
    run = subprocess.run(_command(workdir), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    results = json.loads((workdir / "results.json").read_text())
    languages = ("ar", "bn", "en", "fi", "id", "ko", "ru", "sw", "te")
    assert sorted(results["per_language"]) == list(languages)
    for lang, row in results["per_language"].items():
        assert row["f1"] > row["baseline_f1"] + 5, (lang, row)
    assert results["intermediate_task"] == "squad"
    for lang in languages:
        predictions = json.loads((workdir / "predictions" / "tydiqa" / f"test-{lang}.json").read_text())
        assert len(predictions) == results["per_language"][lang]["examples"]
    table = (workdir / "results.md").read_text()
    assert "| **average (9 evaluated languages)** |" in table
    # The protocol header: split, presets, what the demo changed from them, and the selection rule.
    assert "Protocol: zero-shot from English, dev split." in table
    assert "- intermediate: squad; preset paper" in table and "changed: max_length, train.batch_size" in table
    assert results["protocol"]["target"]["selection"].startswith("best checkpoint by the first 500 English dev")
    assert json.loads((workdir / "config.json").read_text())["target"]["task"] == "tydiqa"
    assert (workdir / "intermediate" / "phase_done.json").exists() and (workdir / "target" / "phase_done.json").exists()

    # The XTREME-compatible scorer, run on the pipeline's own prediction folder, gives the pipeline's numbers.
    labels = tmp_path / "labels" / "tydiqa"
    labels.mkdir(parents=True)
    dev = ROOT / "stilts_jax" / "assets" / "demo" / "tydiqa" / "tydiqa-goldp-v1.1-dev"
    for lang in languages:
        (labels / f"test-{lang}.json").write_bytes((dev / f"tydiqa.goldp.{lang}.dev.json").read_bytes())
    score = subprocess.run(
        [
            sys.executable,
            "-m",
            "stilts_jax.score",
            "--predictions",
            str(workdir / "predictions"),
            "--labels",
            str(labels.parent),
            "--benchmark",
            "xtreme",
            "--output",
            str(tmp_path / "scores.json"),
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert score.returncode == 0, score.stderr[-3000:]
    scored = json.loads((tmp_path / "scores.json").read_text())["tydiqa"]
    for lang in languages:
        assert scored["f1"][lang] == pytest.approx(results["per_language"][lang]["f1"])
        assert scored["exact_match"][lang] == pytest.approx(results["per_language"][lang]["exact_match"])

    again = subprocess.run(_command(workdir), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.stdout.count("finished earlier") == 3  # intermediate, target, evaluation


@pytest.mark.slow
def test_interrupted_demo_resumes_on_rerun(tmp_path):
    workdir = tmp_path / "demo"
    # Shortened: the intermediate phase is killed after its first checkpoint (step 40 of 80); what is learnt is the
    # test above's business.
    command = [*_command(workdir), "--config.intermediate.train.max_steps=80", "--config.target.train.max_steps=20"]
    victim = subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = workdir / "intermediate" / "checkpoints"
    deadline = time.time() + 600
    while time.time() < deadline and not any(p.name.isdigit() for p in checkpoints.glob("*")):
        time.sleep(0.2)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert any(p.name.isdigit() for p in checkpoints.glob("*")), "the demo never saved a checkpoint"
    assert not (workdir / "results.json").exists()

    rerun = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert f"resuming {workdir / 'intermediate'} from step" in rerun.stdout
    assert (workdir / "results.json").exists()


def test_readme_main_command_is_the_demo():
    assert _readme_main_command() == ["-m", "stilts_jax.main", "--config=configs/demo.py"]
