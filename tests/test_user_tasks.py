"""Users' own tasks: one register_task call in their own file, loaded with --config.task_modules, works in the
pipeline, the inspector and multi-task lists; registration refuses what would fail later."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stilts_jax import inspect as inspect_module, main as main_module
from stilts_jax.config.loader import parse_config_args
from stilts_jax.core.errors import StiltsError
from stilts_jax.tasks import TaskDataset, TaskSpec, get_task, register_task
from stilts_jax.tasks.user_modules import load_task_modules

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "my_tasks.py"
DATA = ROOT / "docs" / "examples" / "has_number"


def test_the_readme_shows_the_example_file_verbatim():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Add your own task") :]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert block == EXAMPLE.read_text(encoding="utf-8")


def test_the_readme_example_runs_through_the_pipeline(xlmr_dir, tmp_path):
    workdir = tmp_path / "run"
    args = [
        "--config=configs/stilts.py:intermediate=none,target=has_number",
        f"--config.task_modules=['{EXAMPLE}']",
        "--config.target.source.kind=files",
        f"--config.target.source.path={DATA}",
        f"--config.workdir={workdir}",
        f"--config.model.name={xlmr_dir}",
        "--config.model.dtype=float32",
        "--config.target.max_length=64",
        "--config.target.train.batch_size=8",
        "--config.target.train.max_steps=2",
        "--config.target.train.progress_bar=false",
    ]
    assert main_module.main(args) == 0
    results = json.loads((workdir / "results.json").read_text())
    assert sorted(results["per_language"]) == ["de", "en", "fr"]
    assert results["per_language"]["de"]["examples"] == 80 and 0 <= results["per_language"]["de"]["accuracy"] <= 100
    assert results["protocol"]["target"]["preset"] == "my own choice"
    predictions = (workdir / "predictions" / "has_number" / "test-fr.tsv").read_text().split("\n")
    assert len([p for p in predictions if p]) == 80 and set(filter(None, predictions)) <= {"none", "number"}
    # The scorer scores the task's folder with --task-modules, to the pipeline's numbers.
    from stilts_jax import score as score_module

    labels = tmp_path / "labels" / "has_number"
    labels.mkdir(parents=True)
    for lang in ("en", "de", "fr"):
        (labels / f"test-{lang}.tsv").write_text(
            "".join(line.split("\t")[1] + "\n" for line in (DATA / f"test-{lang}.tsv").read_text().splitlines())
        )
    scores = tmp_path / "scores.json"
    assert (
        score_module.main(
            [
                "--predictions",
                str(workdir / "predictions"),
                "--labels",
                str(labels.parent),
                "--output",
                str(scores),
                "--task-modules",
                str(EXAMPLE),
            ]
        )
        == 0
    )
    scored = json.loads(scores.read_text())["extensions"]["registered_tasks"]["has_number"]
    for lang in ("en", "de", "fr"):
        assert scored["accuracy"][lang] == pytest.approx(results["per_language"][lang]["accuracy"])
    # The inspector reads the same task.
    output = tmp_path / "features.jsonl"
    assert (
        inspect_module.main(
            [
                *args[:5],
                f"--config.model.name={xlmr_dir}",
                "--config.target.max_length=64",
                "--split=test",
                "--language=de",
                "--limit=3",
                f"--output={output}",
            ]
        )
        == 0
    )
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["label"] for r in records] == ["none", "none", "number"]


def test_user_tasks_join_multi_task_lists():
    load_task_modules([str(EXAMPLE)])
    config, _ = parse_config_args(
        [
            f"--config.task_modules=['{EXAMPLE}']",
            "--config=configs/stilts.py:intermediate=multitask,target=has_number",
            "--config.intermediate.tasks=['mnli','has_number']",
        ]
    )
    assert list(config.intermediate.tasks) == ["mnli", "has_number"]
    assert config.target.train.epochs == 3.0 and config.target.preset.label == "my own choice"


def test_registration_refuses_what_would_fail_later():
    data = TaskDataset(family="pair", labels=("a", "b"), languages=("en", "de"), reader="pair")
    with pytest.raises(StiltsError, match="defaults=dict"):
        register_task(
            TaskSpec(name="no_defaults", family="classification", dataset="no_defaults", languages=("en", "de")),
            data=data,
        )
    with pytest.raises(StiltsError, match="unknown family"):
        register_task(TaskSpec(name="odd", family="regression", dataset="odd", languages=("en",)))
    with pytest.raises(StiltsError, match="holds choice examples"):
        register_task(TaskSpec(name="mismatch", family="classification", dataset="copa", languages=("en",)))
    with pytest.raises(StiltsError, match="already registered"):
        register_task(TaskSpec(name="xnli", family="classification", dataset="xnli", languages=("en",)))
    with pytest.raises(StiltsError, match="register_task"):
        get_task("not_a_task")


def test_a_broken_task_module_is_an_error_naming_its_line(tmp_path):
    bad = tmp_path / "bad_tasks.py"
    bad.write_text("x = 1\nraise RuntimeError('oops')\n")
    with pytest.raises(StiltsError, match=r"bad_tasks.py failed at line 2: RuntimeError: oops"):
        load_task_modules([str(bad)])
    with pytest.raises(StiltsError, match="does not exist"):
        load_task_modules([str(tmp_path / "missing.py")])


def test_sweeps_plan_runs_of_user_tasks():
    from stilts_jax.experiments.sweep import expand, sweep_from_mapping

    sweep = sweep_from_mapping(
        dict(
            recipe="configs/stilts.py:intermediate={intermediate},target={target}",
            intermediate=["none", "mnli"],
            targets=["has_number"],
            seeds=[0],
            overrides={"task_modules": [str(EXAMPLE)]},
        )
    )
    runs = expand(sweep)
    assert [run.target for run in runs] == ["has_number", "has_number"]
    config, _ = parse_config_args(list(runs[1].args))
    assert config.target.task == "has_number" and config.intermediate.task == "mnli"
