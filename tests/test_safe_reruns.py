"""Safe by default: every key's range checked, the whole config and its data checked before anything is spent, and a
rerun that reuses a phase only when the settings that determine it are the same."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stilts_jax import main as main_module
from stilts_jax.config.loader import ConfigError, parse_config_args
from stilts_jax.config.schema import validate
from stilts_jax.pipeline.common import DONE, finished_evaluation, finished_phase, record_phase
from stilts_jax.pipeline.preflight import check_config
from stilts_jax.pipeline.reuse import SETTINGS, check_reuse, plan, start_phase

DEMO_DATA = Path("stilts_jax/assets/demo")


def demo(*overrides: str):
    config, _ = parse_config_args(["--config=configs/demo.py", *overrides])
    return config


@pytest.mark.parametrize(
    "override, message",
    [
        ("target.train.max_steps=-1", "target.train.max_steps must be an integer >= 0, got -1"),
        ("target.train.batch_size=0", "target.train.batch_size must be an integer >= 1, got 0"),
        ("intermediate.train.batch_size=-4", "intermediate.train.batch_size must be an integer >= 1, got -4"),
        ("target.train.micro_batches=0", "target.train.micro_batches must be an integer >= 1, got 0"),
        ("target.train.log_every=0", "target.train.log_every must be an integer >= 1, got 0"),
        ("target.train.checkpoint_every=0", "target.train.checkpoint_every must be an integer >= 1, got 0"),
        ("evaluation.batch_size=0", "evaluation.batch_size must be an integer >= 1, got 0"),
        ("target.train.learning_rate=-0.001", "target.train.learning_rate must be a finite number > 0, got -0.001"),
        ("target.doc_stride=0", "target.doc_stride must be an integer >= 1, got 0"),
        ("target.train.warmup_fraction=1.5", "target.train.warmup_fraction must be a finite number >= 0 and <= 1"),
        ("model.remat=some", "model.remat must be one of 'none', 'save_dots', 'full', got 'some'"),
        ("on_change=overwrite", "on_change must be one of 'refuse', 'restart'"),
    ],
)
def test_every_numeric_key_has_a_range_named_in_the_error(override, message):
    problems = validate(demo(f"--config.{override}"))
    assert any(message in p for p in problems), problems


def test_relations_and_all_problems_at_once():
    config = demo(
        "--config.target.train.epochs=0",
        "--config.target.train.batch_size=6",
        "--config.target.train.micro_batches=4",
        "--config.target.doc_stride=200",
    )
    problems = validate(config)
    assert len(problems) == 3, problems
    assert any("train nothing" in p for p in problems)
    assert any("not divisible by target.train.micro_batches 4" in p for p in problems)
    assert any("target.doc_stride 200 must be below target.max_length 160" in p for p in problems)
    assert validate(demo()) == []


def test_recipes_are_valid():
    for recipe in sorted(Path("configs").glob("*.py")):
        if recipe.name != "base.py":
            assert validate(parse_config_args([f"--config={recipe}"])[0]) == [], recipe


def test_misspelled_task_bad_languages_and_unreadable_data_are_found_before_training(tmp_path):
    with pytest.raises(ConfigError) as raised:
        check_config(demo("--config.target.task=tydiqaa", "--config.intermediate.task=squad+sqad"))
    text = str(raised.value)
    assert "2 problems" in text and "unknown task 'tydiqaa'" in text and "unknown task 'sqad'" in text

    with pytest.raises(ConfigError, match=r"evaluation.languages: tydiqa has no xx"):
        check_config(demo("--config.evaluation.languages=['en','xx']"))

    # A mis-encoded evaluation file: found by the check, before the intermediate phase would train.
    data = tmp_path / "demo"
    shutil.copytree(DEMO_DATA, data)
    dev = next((data / "tydiqa" / "tydiqa-goldp-v1.1-dev").glob("*sw*"))
    dev.write_bytes(dev.read_bytes()[:200] + b"\xff\xfe" + dev.read_bytes()[200:])
    with pytest.raises(ConfigError) as raised:
        check_config(demo(f"--config.target.source.path={data}", f"--config.intermediate.source.path={data}"))
    assert dev.name in str(raised.value) and "evaluation: tydiqa" in str(raised.value)


def test_main_reports_problems_as_one_error_line_and_trains_nothing(tmp_path, capsys):
    workdir = tmp_path / "run"
    code = main_module.main(
        [
            "--config=configs/demo.py",
            f"--config.workdir={workdir}",
            "--config.target.train.max_steps=-1",
            "--config.target.task=xnlii",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "max_steps" in err and "xnlii" not in err
    assert not workdir.exists()


def fake_phase(workdir: Path, phase, dev: float = 50.0) -> None:
    """A phase folder as a finished phase leaves it (settings, best model, done record), without training."""
    folder = workdir / phase.folder
    start_phase(folder, phase)
    (folder / "best_model").mkdir(parents=True)
    record_phase(
        folder,
        {
            "task": phase.config.task,
            "dev": dev,
            "best_model": str((folder / "best_model").absolute()),
            "encoder": str((folder / "encoder").absolute()),
        },
    )


def test_a_finished_workdir_is_reused_only_with_the_same_settings(tmp_path):
    workdir = tmp_path / "run"
    config = demo()
    phases = plan(config)
    assert [p.folder for p in phases] == ["intermediate", "target"]
    for phase in phases:
        fake_phase(workdir, phase)
    check_reuse(config, workdir, plan(config))  # the same settings: reused
    assert (
        check_reuse(
            demo("--config.target.train.progress_bar=false", "--config.mesh.data=1"),
            workdir,
            plan(demo("--config.target.train.progress_bar=false")),
        )
        is None
    )  # not determining

    changed = demo("--config.intermediate.task=mnli", "--config.target.train.max_steps=80")
    with pytest.raises(ConfigError) as raised:
        check_reuse(changed, workdir, plan(changed))
    text = str(raised.value)
    assert "intermediate (in" in text and "phase.task: 'squad' -> 'mnli'" in text
    assert "target (in" in text and "phase.train.max_steps: 0 -> 80" in text
    assert "--config.on_change=restart" in text
    assert (workdir / "intermediate" / DONE).exists()  # nothing moved, nothing lost

    # The seed and the encoder a phase starts from determine it too: a new intermediate phase changes the target's.
    reseeded = demo("--config.seed=1")
    with pytest.raises(ConfigError, match="seed: 0 -> 1"):
        check_reuse(reseeded, workdir, plan(reseeded))
    lr = demo("--config.intermediate.train.learning_rate=0.001")
    with pytest.raises(ConfigError, match=r"target \(in .*\n\s+it starts from intermediate, which changed"):
        check_reuse(lr, workdir, plan(lr))


def test_restart_sets_the_changed_phase_and_every_later_one_aside(tmp_path):
    workdir = tmp_path / "run"
    for phase in plan(demo()):
        fake_phase(workdir, phase)
    (workdir / "evaluation").mkdir()
    (workdir / "results.json").write_text("{}")
    changed = demo("--config.target.train.learning_rate=0.01", "--config.on_change=restart")
    check_reuse(changed, workdir, plan(changed))
    names = sorted(p.name for p in workdir.iterdir())
    assert "intermediate" in names and "target" not in names and "evaluation" not in names
    assert any(n.startswith("target.replaced-") for n in names)
    assert any(n.startswith("results.json.replaced-") for n in names)
    assert (workdir / "intermediate" / DONE).exists()


def test_unfinished_phase_with_other_settings_is_not_resumed(tmp_path):
    workdir = tmp_path / "run"
    first = plan(demo())[0]
    start_phase(workdir / first.folder, first)  # started, then interrupted: settings.json and checkpoints only
    assert json.loads((workdir / "intermediate" / SETTINGS).read_text())["fingerprint"] == first.fingerprint
    changed = demo("--config.intermediate.max_length=128")
    with pytest.raises(ConfigError, match=r"phase.max_length: 160 -> 128"):
        check_reuse(changed, workdir, plan(changed))


def test_done_records_hold_relative_paths_and_damaged_ones_are_resumed(tmp_path, capsys):
    workdir = tmp_path / "run"
    phase = plan(demo())[0]
    fake_phase(workdir, phase)
    record = json.loads((workdir / "intermediate" / DONE).read_text())
    assert record["best_model"] == "best_model" and record["encoder"] == "encoder"
    assert record["fingerprint"] == phase.fingerprint
    moved = tmp_path / "moved"
    workdir.rename(moved)
    info = finished_phase(moved / "intermediate", "intermediate", "squad")
    assert info["best_model"] == str((moved / "intermediate" / "best_model").absolute())

    (moved / "intermediate" / DONE).write_text('{"task": "squad", "dev": 5')  # cut short
    assert finished_phase(moved / "intermediate", "intermediate", "squad") is None
    assert "is damaged" in capsys.readouterr().out

    (moved / "evaluation").mkdir()
    (moved / "evaluation" / DONE).write_text('{"fingerprint": "abc"}')
    (moved / "results.json").write_text('{"task": "tyd')
    assert finished_evaluation(moved, "abc") is None
    assert "results.json is damaged" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_rerun_reuses_refuses_and_restarts(tmp_path, capsys):
    """The case a new user meets: a finished demo workdir rerun with another intermediate task."""
    workdir = tmp_path / "demo"
    short = [
        f"--config.workdir={workdir}",
        "--config.intermediate.train.max_steps=2",
        "--config.target.train.max_steps=2",
        "--config.evaluation.languages=['en','sw']",
        "--config.evaluation.plots=false",
    ]
    assert main_module.main(["--config=configs/demo.py", *short]) == 0
    results = (workdir / "results.json").read_text()
    config_json = (workdir / "config.json").read_text()
    listing = sorted(str(p) for p in workdir.rglob("*"))
    stamps = {p: p.stat().st_mtime_ns for p in workdir.rglob("*") if p.is_file()}

    # The same run again: everything reused, nothing written (a read-only workdir still prints its results).
    capsys.readouterr()
    assert main_module.main(["--config=configs/demo.py", *short]) == 0
    assert "finished earlier" in capsys.readouterr().out
    assert sorted(str(p) for p in workdir.rglob("*")) == listing
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())

    # Another intermediate task: refused before anything runs; config.json still describes the run that happened.
    glue = (DEMO_DATA / "glue").absolute()
    assert (
        main_module.main(
            [
                "--config=configs/demo.py",
                *short,
                "--config.intermediate.task=mnli",
                "--config.intermediate.source.kind=hf",
                f"--config.intermediate.source.repo={glue}",
                "--config.target.train.max_steps=3",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "phase.task: 'squad' -> 'mnli'" in err and "phase.train.max_steps: 2 -> 3" in err
    assert (workdir / "config.json").read_text() == config_json
    assert (workdir / "results.json").read_text() == results

    # A copy of the workdir uses its own models (paths in the done records are relative).
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    shutil.rmtree(workdir)
    shutil.rmtree(copy / "evaluation")  # evaluated again: the target's best model is read from the copy
    copied = [f"--config.workdir={copy}", *short[1:]]
    assert main_module.main(["--config=configs/demo.py", *copied]) == 0
    again = json.loads((copy / "results.json").read_text())
    assert again["per_language"] == json.loads(results)["per_language"]


def test_unwritable_workdirs_are_one_error_line(tmp_path):
    from stilts_jax.core.errors import StiltsError
    from stilts_jax.core.paths import check_workdir_writable

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(StiltsError, match=r"cannot write to the workdir .*a_file/run .*--config.workdir"):
        check_workdir_writable(blocker / "run")


def test_dry_run_says_what_each_phase_would_do_and_writes_nothing(tmp_path, capsys):
    workdir = tmp_path / "run"
    for phase in plan(demo())[:1]:
        fake_phase(workdir, phase)
    before = sorted(str(p) for p in workdir.rglob("*"))
    assert main_module.main(["--config=configs/demo.py", f"--workdir={workdir}", "--config.dry_run=true"]) == 0
    out = capsys.readouterr().out
    assert '"dry_run": true' in out
    assert "- intermediate: squad -> reuse (finished)" in out and "- target: tydiqa -> run" in out
    assert "- evaluation: tydiqa eval (ar, bn, en, fi, id, ko, ru, sw, te) from xtreme path=" in out
    assert sorted(str(p) for p in workdir.rglob("*")) == before
