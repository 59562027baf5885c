"""Classification, multiple choice and tagging targets through the main command, on XTREME-layout files."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

from stilts_jax import main as main_module, score as score_module
from stilts_jax.core.errors import InputError
from stilts_jax.data.task_sources import labels, load_examples
from stilts_jax.evaluation import xtreme_tasks

FIXTURES = Path(__file__).parent / "fixtures" / "tasks" / "xtreme"


def xtreme_folder(tmp_path: Path) -> Path:
    """The fixture folder with every English training file repeated, so a batch of 8 fits (8 fake devices)."""
    root = tmp_path / "xtreme"
    shutil.copytree(FIXTURES, root)
    for path in list(root.glob("*/train-en.*")) + list(root.glob("siqa/*trn*")):
        text = path.read_text(encoding="utf-8")
        separator = "\n" if path.parent.name in ("udpos", "panx") and not text.endswith("\n\n") else ""
        path.write_text((text + separator) * 8, encoding="utf-8")
    return root


@pytest.mark.parametrize(
    "target, languages, metric",
    [
        ("panx", ["ar", "zh"], "f1"),
        pytest.param("udpos", ["hi", "ru"], "f1", marks=pytest.mark.slow),
        pytest.param("xnli", ["ar", "hi", "zh"], "accuracy", marks=pytest.mark.slow),
        pytest.param("pawsx", ["ja", "ko"], "accuracy", marks=pytest.mark.slow),
        pytest.param("xcopa", ["et", "zh"], "accuracy", marks=pytest.mark.slow),
    ],
)
def test_target_family_runs_end_to_end(target, languages, metric, xlmr_dir, tmp_path, monkeypatch):
    root = xtreme_folder(tmp_path)
    workdir = tmp_path / "run"
    args = [
        f"--config=configs/stilts.py:intermediate=none,target={target}",
        f"--config.workdir={workdir}",
        f"--config.model.name={xlmr_dir}",
        "--config.model.dtype=float32",
        "--config.target.source.kind=xtreme",
        f"--config.target.source.path={root}",
        "--config.target.max_length=64",
        "--config.target.train.batch_size=8",
        "--config.target.train.max_steps=2",
        "--config.target.train.progress_bar=false",
        "--config.evaluation.split=dev",
        f"--config.evaluation.languages={languages!r}",
        # PAN-X (the fast case) also trains with activation checkpointing: the config reaches the encoder.
        *(["--config.model.remat=full"] if target == "panx" else []),
    ]
    assert main_module.main(args) == 0
    results = json.loads((workdir / "results.json").read_text())
    assert sorted(results["per_language"]) == sorted(languages)
    for lang in languages:
        row = results["per_language"][lang]
        assert 0.0 <= row[metric] <= 100.0
        extension = "jsonl" if target == "xcopa" else "tsv"
        predictions = (workdir / "predictions" / target / f"test-{lang}.{extension}").read_text(encoding="utf-8")
        if target in ("panx", "udpos"):
            sentences = [block for block in predictions.split("\n\n") if block.strip()]
            assert len(sentences) == row["examples"]
        else:
            assert len(predictions.splitlines()) == row["examples"]
    figure = matplotlib.image.imread(workdir / f"{target}_languages.png")  # beside results.md: a bar per language
    assert figure.ndim == 3 and figure.shape[0] > 300 and (figure[..., :3] < 0.9).any(axis=-1).mean() > 0.01
    _scorer_reproduces_the_pipeline(target, languages, metric, root, workdir, results, tmp_path)
    if target == "panx":
        _interrupted_evaluation_resumes_at_the_next_language(args, workdir, results, monkeypatch)


def _interrupted_evaluation_resumes_at_the_next_language(args, workdir, results, monkeypatch):
    from stilts_jax.evaluation.predictor import Predictor

    # As if the job died after the languages' scores were saved but before the tables: a rerun predicts nothing.
    (workdir / "results.json").unlink()
    (workdir / "evaluation" / "phase_done.json").unlink()
    saved = sorted(p.name for p in (workdir / "evaluation" / "languages").iterdir())
    assert saved == sorted(f"{lang}.json" for lang in results["per_language"])
    real_predict = Predictor.predict

    def no_prediction(*a, **k):
        raise AssertionError("a language with saved scores was predicted again")

    monkeypatch.setattr(Predictor, "predict", no_prediction)
    assert main_module.main(args) == 0
    assert json.loads((workdir / "results.json").read_text()) == results
    # Other evaluation settings (here the batch size) do not reuse the saved scores: the language is predicted.
    (workdir / "results.json").unlink()
    (workdir / "evaluation" / "phase_done.json").unlink()
    with pytest.raises(AssertionError, match="predicted again"):
        main_module.main([*args, "--config.evaluation.batch_size=16"])
    monkeypatch.setattr(Predictor, "predict", real_predict)


# One line (or sentence) in the XTREME label layout per example; filler for languages the run did not evaluate.
_FILLER = {
    "panx": "O\n",
    "udpos": "NOUN\n",
    "xnli": "entailment\n",
    "xcopa": '{"label": 0}\n',
    "pawsx": f"{labels('pawsx')[0]}\n",
}


def _gold_file(target: str, examples: list) -> str:
    if target in ("panx", "udpos"):
        return "\n".join("".join(f"{tag}\n" for tag in ex.tags) for ex in examples)
    if target == "xcopa":
        return "".join(json.dumps({"label": ex.label}) + "\n" for ex in examples)
    return "".join(f"{labels(target)[ex.label]}\n" for ex in examples)


def _scorer_reproduces_the_pipeline(target, languages, metric, root, workdir, results, tmp_path):
    """`python -m stilts_jax.score` on the pipeline's prediction folder gives results.json's per-language numbers."""
    extension = "jsonl" if target == "xcopa" else "tsv"
    predictions, gold = tmp_path / "submission", tmp_path / "labels"
    shutil.copytree(workdir / "predictions", predictions)
    gold_examples = load_examples(target, "dev", {"kind": "xtreme", "path": str(root)}, languages)
    benchmark = "xtreme" if target == "pawsx" else "xtreme-r"  # PAWS-X is in XTREME only
    for lang in xtreme_tasks.TASK2LANGS[benchmark][target]:  # the scorer wants every language of the task
        label_file = gold / target / f"test-{lang}.{extension}"
        label_file.parent.mkdir(parents=True, exist_ok=True)
        if lang in languages:
            label_file.write_text(_gold_file(target, gold_examples[lang]), encoding="utf-8")
        else:
            label_file.write_text(_FILLER[target], encoding="utf-8")
            (predictions / target / label_file.name).write_text(_FILLER[target], encoding="utf-8")
    scores_path = tmp_path / "scores.json"
    scored = subprocess.run(
        [
            sys.executable,
            "-m",
            "stilts_jax.score",
            "--predictions",
            str(predictions),
            "--labels",
            str(gold),
            "--benchmark",
            benchmark,
            "--output",
            str(scores_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert scored.returncode == 0, scored.stderr[-3000:]
    by_language = json.loads(scores_path.read_text())[target][metric]
    for lang in languages:
        assert by_language[lang] == pytest.approx(results["per_language"][lang][metric])
    # A prediction file one example short is an error naming it.
    short = predictions / target / f"test-{languages[0]}.{extension}"
    text = short.read_text(encoding="utf-8")
    if target in ("panx", "udpos"):
        blocks = [b for b in text.split("\n\n") if b.strip()]
        short.write_text("".join(block.strip("\n") + "\n\n" for block in blocks[:-1]), encoding="utf-8")
    else:
        short.write_text("".join(text.splitlines(keepends=True)[:-1]), encoding="utf-8")
    with pytest.raises(InputError, match=re.escape(str(short))) as err:
        score_module.score_submission(predictions, gold, benchmark)
    assert "has no counterpart" in str(err.value)


@pytest.mark.slow
def test_intermediate_multiple_choice_hands_off_to_xcopa(xlmr_dir, tmp_path):
    root = xtreme_folder(tmp_path)
    workdir = tmp_path / "chain"
    phase_args = [
        "--config.{p}.source.kind=xtreme",
        "--config.{p}.source.path=" + str(root),
        "--config.{p}.max_length=64",
        "--config.{p}.train.batch_size=8",
        "--config.{p}.train.max_steps=2",
        "--config.{p}.train.progress_bar=false",
    ]
    code = main_module.main(
        [
            "--config=configs/stilts.py:intermediate=siqa,target=xcopa",
            f"--config.workdir={workdir}",
            f"--config.model.name={xlmr_dir}",
            "--config.model.dtype=float32",
            "--config.evaluation.split=dev",
            "--config.evaluation.languages=['et']",
            *[a.format(p="intermediate") for a in phase_args],
            *[a.format(p="target") for a in phase_args],
        ]
    )
    assert code == 0
    assert json.loads((workdir / "intermediate" / "phase_done.json").read_text())["task"] == "siqa"
    assert json.loads((workdir / "results.json").read_text())["intermediate_task"] == "siqa"
