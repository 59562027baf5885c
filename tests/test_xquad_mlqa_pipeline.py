"""The main command with the new span-QA tasks (slow): SQuAD v2.0 as the intermediate task, XQuAD and MLQA as
targets. The tiny model of the demo recipe (configs/demo.py) trains a few steps on the demo's SQuAD v1.1; the
scorer (`python -m stilts_jax.score`) run on the pipeline's prediction folder must give its per-language numbers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stilts_jax import main as main_module

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "stilts_jax" / "assets" / "demo"
FIXTURES = Path(__file__).parent / "fixtures" / "qa" / "xtreme"
LANGUAGES = {
    "xquad": ("en", "es", "de", "el", "ru", "tr", "ar", "vi", "th", "zh", "hi", "ro"),
    "mlqa": ("en", "es", "de", "ar", "hi", "vi", "zh"),
    "tydiqa": ("ar", "bn", "en", "fi", "id", "ko", "ru", "sw", "te"),
}


def _download_folder(tmp_path: Path) -> Path:
    """An XTREME download folder: the demo's SQuAD v1.1 and TyDiQA-GoldP, the fixtures' XQuAD and MLQA, and the
    fixtures' SQuAD v2.0 (training file repeated, so that a batch of 8 draws every question more than once)."""
    root = tmp_path / "download"
    shutil.copytree(DEMO / "squad", root / "squad")
    shutil.copytree(DEMO / "tydiqa", root / "tydiqa")
    shutil.copytree(FIXTURES / "xquad", root / "xquad")
    shutil.copytree(FIXTURES / "mlqa", root / "mlqa")
    shutil.copy(FIXTURES / "squad" / "dev-v2.0.json", root / "squad" / "dev-v2.0.json")
    train = json.loads((FIXTURES / "squad" / "train-v2.0.json").read_text(encoding="utf-8"))
    train["data"] = train["data"] * 4
    (root / "squad" / "train-v2.0.json").write_text(json.dumps(train), encoding="utf-8")
    return root


def _run(tmp_path: Path, intermediate: str, target: str, *extra: str) -> tuple[Path, dict]:
    root = _download_folder(tmp_path)
    workdir = tmp_path / "run"
    phase = [
        "--config.{p}.source.kind=xtreme",
        f"--config.{{p}}.source.path={root}",
        "--config.{p}.max_length=128",
        "--config.{p}.doc_stride=32",
        "--config.{p}.train.batch_size=8",
        "--config.{p}.train.max_steps=3",
        "--config.{p}.train.progress_bar=false",
        "--config.{p}.max_train_examples=64",
        "--config.{p}.max_dev_examples=16",
    ]
    code = main_module.main(
        [
            "--config=configs/demo.py",
            f"--config.workdir={workdir}",
            f"--config.model.name={tmp_path / 'tiny-xlmr'}",
            f"--config.intermediate.task={intermediate}",
            f"--config.target.task={target}",
            *[a.format(p="intermediate") for a in phase],
            *[a.format(p="target") for a in phase],
            *extra,
        ]
    )
    assert code == 0
    results = json.loads((workdir / "results.json").read_text())
    assert sorted(results["per_language"]) == sorted(LANGUAGES[target])
    assert results["intermediate_task"] == intermediate and results["task"] == target
    return workdir, results


def _scorer_reproduces(tmp_path: Path, workdir: Path, results: dict, task: str, labels: dict[str, Path]) -> dict:
    """Label files in the XTREME layout, `python -m stilts_jax.score` on the run's predictions, same numbers."""
    label_dir = tmp_path / "labels" / task
    label_dir.mkdir(parents=True)
    for lang, path in labels.items():
        shutil.copy(path, label_dir / f"test-{lang}.json")
    output = tmp_path / "scores.json"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "1"}
    score = subprocess.run(
        [
            sys.executable,
            "-m",
            "stilts_jax.score",
            "--predictions",
            str(workdir / "predictions"),
            "--labels",
            str(label_dir.parent),
            "--benchmark",
            "xtreme-r",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert score.returncode == 0, score.stderr[-3000:]
    scored = json.loads(output.read_text())[task]
    for lang in labels:
        row = results["per_language"][lang]
        predictions = json.loads((workdir / "predictions" / task / f"test-{lang}.json").read_text(encoding="utf-8"))
        assert len(predictions) == row["examples"]
        assert scored["f1"][lang] == pytest.approx(row["f1"]) and scored["exact_match"][lang] == pytest.approx(
            row["exact_match"]
        )
    # Not a comparison of zeros only: a few training steps already find some answers (the run is deterministic).
    assert any(scored["f1"][lang] > 0 for lang in labels), scored["f1"]
    return scored


@pytest.mark.slow
def test_squad_to_xquad_in_every_language_matches_the_scorer(tmp_path):
    workdir, results = _run(tmp_path, "squad", "xquad")
    target = json.loads((workdir / "target" / "phase_done.json").read_text())
    assert target["task"] == "xquad"
    labels = {lang: FIXTURES / "xquad" / f"xquad.{lang}.json" for lang in LANGUAGES["xquad"]}
    _scorer_reproduces(tmp_path, workdir, results, "xquad", labels)


@pytest.mark.slow
def test_squad_to_mlqa_in_every_language_matches_the_mlqa_scorer(tmp_path):
    workdir, results = _run(tmp_path, "squad", "mlqa")
    labels = {
        lang: FIXTURES / "mlqa" / "MLQA_V1" / "test" / f"test-context-{lang}-question-{lang}.json"
        for lang in LANGUAGES["mlqa"]
    }
    _scorer_reproduces(tmp_path, workdir, results, "mlqa", labels)
    # The trivial baseline is scored with MLQA's script too: its character segmentation credits Chinese.
    assert results["per_language"]["zh"]["baseline_f1"] > 0.0


@pytest.mark.slow
def test_squad_v2_intermediate_hands_off_to_tydiqa_with_the_threshold_applied(tmp_path):
    # A threshold far below any score difference: every dev question gets "no answer", which is right for the
    # fixtures' 3 unanswerable dev questions of 6, so the v2.0 dev F1 that selects the checkpoint is exactly 50.
    workdir, _results = _run(tmp_path, "squad_v2", "tydiqa", "--config.evaluation.null_score_diff_threshold=-1e9")
    intermediate = json.loads((workdir / "intermediate" / "phase_done.json").read_text())
    assert intermediate["task"] == "squad_v2" and intermediate["dev"] == 50.0
    dev_rows = [json.loads(line) for line in (workdir / "intermediate" / "metrics.jsonl").read_text().splitlines()]
    dev_rows = [row for row in dev_rows if "NoAns_f1" in row]
    assert dev_rows and all(row["NoAns_f1"] == 100.0 and row["HasAns_f1"] == 0.0 for row in dev_rows)
    # TyDiQA-GoldP is SQuAD v1.1-style: it never predicts "no answer", whatever the threshold.
    for lang in LANGUAGES["tydiqa"]:
        predictions = json.loads((workdir / "predictions" / "tydiqa" / f"test-{lang}.json").read_text(encoding="utf-8"))
        assert predictions and all(answer for answer in predictions.values())
