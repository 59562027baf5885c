"""bench/full_size_run.py runs the whole pipeline (random XLM-R weights, demo data) and times every stage; here at
reduced size (XLM-R base's widths, 2 layers, the demo vocabulary) so that the script cannot rot (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

STAGES = (
    "setup: mesh, tokenizer, model config",
    "model build (random weights, new head)",
    "featurization (training features)",
    "sharding: parameter shardings, train state on the mesh",
    "first train step (compile + run)",
    "train steps after the first",
    "checkpoint save (training thread)",
    "hand-off: encoder into the target model",
    "evaluation: English dev during training",
    "evaluation: zero-shot languages",
    "restore (resume: manifests verified, whole train state)",
    "export (transformers folder)",
)


@pytest.mark.slow
def test_the_full_size_run_script_times_every_stage_of_the_pipeline(tmp_path):
    report = tmp_path / "stages.json"
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_NUM_CPU_DEVICES": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",  # random weights from the shipped config: nothing may be downloaded
    }
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "full_size_run.py"),
            *("--model", "xlm-roberta-base", "--layers", "2", "--vocab-size", "4002"),
            *("--steps", "2", "--batch", "4", "--dev-examples", "8", "--languages", "en"),
            *("--workdir", str(tmp_path / "workdir"), "--json", str(report)),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(report.read_text())
    stages = result["stages"]
    missing = [stage for stage in STAGES if stage not in stages]
    assert not missing, f"stages not timed: {missing}; timed: {sorted(stages)}"
    assert stages["first train step (compile + run)"]["calls"] == 2  # one per phase
    assert stages["train steps after the first"]["calls"] == 2
    assert stages["first train step (compile + run)"]["compile_seconds"] > 0
    # The selected model was scored by the loop on the whole (cut) dev set: the final score is not computed again.
    assert stages["evaluation: English dev during training"]["calls"] == 2
    assert all(stage["seconds"] >= 0 for stage in stages.values())
    assert 0 < result["pipeline_seconds"] <= result["total_seconds"]
    assert sum(stage["seconds"] for stage in stages.values()) == pytest.approx(result["total_seconds"], rel=0.05)
    assert result["peak_rss_bytes"] > 100 * 2**20
    # The run's own record: the target phase trained the steps asked for.
    assert "| stage |" in run.stdout and "**total**" in run.stdout
    record = json.loads((tmp_path / "workdir" / "target" / "phase_done.json").read_text())
    assert record["steps"] == 2
