"""SQuAD (demo data) -> LAReQA and -> Mewsli-X through the main command, on the committed fixtures (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stilts_jax import main as main_module, score

FIXTURES = Path(__file__).parent / "fixtures" / "retrieval"
DEMO = Path(__file__).parents[1] / "stilts_jax" / "assets" / "demo"


def _phase_args(phase: str, path: Path, max_length: int) -> list[str]:
    return [
        f"--config.{phase}.source.kind=xtreme",
        f"--config.{phase}.source.path={path}",
        f"--config.{phase}.max_length={max_length}",
        f"--config.{phase}.doc_stride=64",
        f"--config.{phase}.train.batch_size=8",
        f"--config.{phase}.train.max_steps=2",
        f"--config.{phase}.train.progress_bar=false",
        f"--config.{phase}.max_dev_examples=16",
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    "target, data, languages",
    [
        ("lareqa", DEMO, ["en", "de", "zh"]),
        ("mewslix", FIXTURES / "mewslix", ["en", "ja", "ar"]),
    ],
)
def test_squad_then_dual_encoder_target_writes_results_and_predictions(target, data, languages, tmp_path):
    workdir = tmp_path / target
    extra = [f"--config.dual_encoder.eval_path={FIXTURES / 'lareqa'}"] if target == "lareqa" else []
    code = main_module.main(
        [
            f"--config=configs/stilts.py:intermediate=squad,target={target}",
            f"--config.workdir={workdir}",
            f"--config.model.name={tmp_path / 'tiny-xlmr'}",
            "--config.model.make_tiny=true",
            "--config.model.dtype=float32",
            "--config.dual_encoder.query_max_length=32",
            *_phase_args("intermediate", DEMO, 160),
            *_phase_args("target", data, 64),
            *extra,
            # The published preset's 4 micro-batches (xtreme scripts/train_lareqa.sh, train_mewslix.sh): 8 rows each.
            "--config.target.train.batch_size=32",
            f"--config.evaluation.languages={languages!r}",
        ]
    )
    assert code == 0
    results = json.loads((workdir / "results.json").read_text())
    assert set(results["per_language"]) == set(languages)
    for row in results["per_language"].values():
        assert 0.0 <= row["map@20"] <= 100.0 and row["examples"] > 0
    assert results["average"]["map@20"] == pytest.approx(sum(r["map@20"] for r in results["per_language"].values()) / 3)
    protocol = results["protocol"]["target"]
    assert protocol["selection"] == "last step" and protocol["preset"].startswith("XTREME-R (google-research/xtreme")
    plot = workdir / f"{target}_languages.png"  # mAP@20 per language beside results.md
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 5000
    done = json.loads((workdir / "target" / "phase_done.json").read_text())
    assert done["best_step"] == 2 and (workdir / "intermediate" / "phase_done.json").exists()
    for lang in languages:
        ranked = json.loads((workdir / "predictions" / target / f"test-{lang}.json").read_text())
        assert len(ranked) == results["per_language"][lang]["examples"]
        assert all(len(ids) == 20 and len(set(ids)) == 20 for ids in ranked.values())
    # The scorer on the pipeline's own prediction and label files reproduces its numbers.
    scores = score._Scorer(workdir / "predictions", workdir / "labels", "xtreme-r", "0.0.12")
    for lang in languages:
        assert scores.score(target, lang)["map@20"] == pytest.approx(results["per_language"][lang]["map@20"])
