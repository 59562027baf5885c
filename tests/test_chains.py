"""Sequential intermediate chains: stage configs, the strict hand-off from stage to stage, resume in the middle of a
chain, the forgetting table, and the protocol naming the chain."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from stilts_jax import main as main_module
from stilts_jax.config.loader import parse_config_args
from stilts_jax.core.errors import InputError
from stilts_jax.pipeline.chain import chain_stages, chain_table


def test_a_chain_is_one_stage_config_per_task_with_its_own_source_and_settings():
    config, _ = parse_config_args(
        [
            "--config=configs/stilts.py:intermediate=anli+siqa,target=xcopa",
            "--config.intermediate.task_sources={'siqa': {'kind': 'xtreme', 'path': '/data/xtreme'}}",
            "--config.intermediate.stage_overrides={'siqa': {'max_length': 128, 'train': {'epochs': 5.0}}}",
        ]
    )
    assert config.workdir == "workdir/anli+siqa_to_xcopa"
    (first, anli), (second, siqa) = chain_stages(config.intermediate)
    assert (first, second) == ("intermediate/0_anli", "intermediate/1_siqa")
    assert (anli.task, siqa.task) == ("anli", "siqa")
    assert siqa.source.kind == "xtreme" and anli.source.kind == "hf"
    assert (siqa.max_length, siqa.train.epochs) == (128, 5.0)
    assert (anli.max_length, anli.train.epochs) == (256, 3.0)
    # One task is today's single intermediate phase; none is the baseline.
    single, _ = parse_config_args(["--config=configs/stilts.py:intermediate=squad,target=tydiqa"])
    assert [folder for folder, _ in chain_stages(single.intermediate)] == ["intermediate"]
    baseline, _ = parse_config_args(["--config=configs/stilts.py:intermediate=none,target=tydiqa"])
    assert chain_stages(baseline.intermediate) == []
    # A single stage of a chain recipe (a sweep row) keeps its own source and settings.
    mnli, _ = parse_config_args(["--config=configs/chain_demo.py", "--config.intermediate.task=mnli"])
    [(folder, stage)] = chain_stages(mnli.intermediate)
    assert folder == "intermediate" and stage.source.kind == "hf" and stage.max_length == 128


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config.intermediate.stage_overrides={'siqa': {'train': {'epoch': 5.0}}}"], "unknown key 'train.epoch'"),
        (["--config.intermediate.stage_overrides={'sqiua': {'max_length': 64}}"], "not tasks; the chain"),
        (["--config.intermediate.tasks=['mnli']"], "cannot be combined"),
    ],
)
def test_chain_mistakes_are_errors_before_anything_trains(args, message):
    config, _ = parse_config_args(["--config=configs/stilts.py:intermediate=anli+siqa,target=xcopa", *args])
    with pytest.raises(InputError, match=message):
        chain_stages(config.intermediate)
    unknown, _ = parse_config_args(
        ["--config=configs/stilts.py:intermediate=anli+siqa,target=xcopa", "--config.intermediate.task=anli+nope"]
    )
    with pytest.raises(Exception, match="unknown task 'nope'"):
        chain_stages(unknown.intermediate)


def test_the_chain_table_reads_down_each_task():
    config, _ = parse_config_args(["--config=configs/stilts.py:intermediate=squad+mnli,target=xcopa"])
    stages = chain_stages(config.intermediate)
    table = chain_table(
        stages, {"intermediate/0_squad": {"squad": 55.0}, "intermediate/1_mnli": {"squad": 5.3, "mnli": 33.3}}
    )
    assert "| after stage | squad | mnli |" in table
    assert "| 0: squad | 55.0 |  |" in table and "| 1: mnli | 5.3 | 33.3 |" in table


def _chain_args(workdir: Path, model: Path) -> list[str]:
    return [
        "--config=configs/chain_demo.py",
        f"--config.workdir={workdir}",
        f"--config.model.name={model}",
        "--config.intermediate.train.max_steps=2",
        "--config.target.train.max_steps=2",
        "--config.intermediate.train.progress_bar=false",
        "--config.target.train.progress_bar=false",
        "--config.intermediate.max_dev_examples=16",
        "--config.target.max_dev_examples=16",
        "--config.evaluation.languages=['sw','zh']",
        "--config.evaluation.plots=false",
    ]


@pytest.mark.slow
def test_chain_hands_off_bit_for_bit_resumes_mid_chain_and_reports_forgetting(tmp_path, monkeypatch):
    from stilts_jax.pipeline import context, runner
    from stilts_jax.train.checkpoints import load_params

    workdir, model = tmp_path / "run", tmp_path / "tiny"
    args = _chain_args(workdir, model)

    # First attempt: the run dies when the second stage starts; the first stage is complete.
    real_phase = runner.run_training_phase

    def crash_at_stage_one(pipeline, folder, stage, handoff=None):
        if str(folder).startswith("intermediate/1_"):
            raise RuntimeError("preempted")
        return real_phase(pipeline, folder, stage, handoff=handoff)

    monkeypatch.setattr(runner, "run_training_phase", crash_at_stage_one)
    with pytest.raises(RuntimeError, match="preempted"):
        main_module.main(args)
    first_done = workdir / "intermediate" / "0_squad" / "phase_done.json"
    assert first_done.exists() and not (workdir / "intermediate" / "1_mnli" / "phase_done.json").exists()
    stamp = first_done.stat().st_mtime_ns
    monkeypatch.setattr(runner, "run_training_phase", real_phase)

    # The rerun skips stage 0 and starts stage 1 from stage 0's encoder, bit for bit.
    handed: dict[str, object] = {}
    real_make_model = context.RunContext.make_model

    def spy(self, task, seed, encoder_from=None):
        model = real_make_model(self, task, seed, encoder_from)
        if encoder_from is not None:
            from flax import nnx

            handed[str(encoder_from)] = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model.encoder)))
        return model

    monkeypatch.setattr(context.RunContext, "make_model", spy)
    assert main_module.main(args) == 0
    assert first_done.stat().st_mtime_ns == stamp  # skipped, not trained again
    stage0_encoder = str(workdir / "intermediate" / "0_squad" / "encoder")
    assert stage0_encoder in handed
    saved = jax.tree.map(
        np.asarray,
        load_params(
            stage0_encoder, jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), handed[stage0_encoder])
        ),
    )
    assert jax.tree.all(jax.tree.map(np.array_equal, saved, handed[stage0_encoder]))
    assert str(workdir / "intermediate" / "1_mnli" / "encoder") in handed  # the target starts from the last stage

    chain = json.loads((workdir / "intermediate" / "chain.json").read_text())
    assert [s["task"] for s in chain["stages"]] == ["squad", "mnli"]
    after_second = chain["scores"]["intermediate/1_mnli"]
    assert set(after_second) == {"squad", "mnli"} and 0.0 <= after_second["squad"] <= 100.0
    assert "| 1: mnli |" in (workdir / "intermediate" / "chain.md").read_text()
    results = json.loads((workdir / "results.json").read_text())
    assert [stage["task"] for stage in results["protocol"]["intermediate"]] == ["squad", "mnli"]
    assert results["intermediate_task"] == "squad+mnli"
    assert "- intermediate stage 1: mnli;" in (workdir / "results.md").read_text()


@pytest.mark.slow
def test_anli_then_siqa_then_xcopa_runs_on_the_release_format_fixtures(tmp_path):
    """The study's recipe, `intermediate=anli+siqa,target=xcopa`, end to end with a data source per stage."""
    from tests.test_family_pipelines import xtreme_folder

    tasks = Path(__file__).parent / "fixtures" / "tasks"
    anli = {
        "kind": "files",
        "paths": {"train": str(tasks / "anli/R1/train.jsonl"), "dev": str(tasks / "anli/R1/dev.jsonl")},
    }
    xtreme = xtreme_folder(tmp_path)  # English training files repeated: a batch of 8 fits the 8 test devices
    siqa = {"kind": "xtreme", "path": str(xtreme)}
    workdir = tmp_path / "run"
    args = [
        "--config=configs/stilts.py:intermediate=anli+siqa,target=xcopa",
        f"--config.workdir={workdir}",
        f"--config.model.name={tmp_path / 'tiny'}",
        "--config.model.make_tiny=true",
        "--config.model.dtype=float32",
        f"--config.intermediate.task_sources={ {'anli': anli, 'siqa': siqa}!r}",
        "--config.intermediate.stage_overrides={'siqa': {'max_length': 48}}",
        "--config.intermediate.train.batch_size=8",
        "--config.intermediate.train.max_steps=2",
        "--config.intermediate.max_length=64",
        "--config.target.source.kind=xtreme",
        f"--config.target.source.path={xtreme}",
        "--config.target.train.batch_size=8",
        "--config.target.train.max_steps=2",
        "--config.target.max_length=64",
        "--config.evaluation.split=dev",
        "--config.evaluation.languages=['et','zh']",
        "--config.intermediate.train.progress_bar=false",
        "--config.target.train.progress_bar=false",
    ]
    assert main_module.main(args) == 0
    chain = json.loads((workdir / "intermediate" / "chain.json").read_text())
    assert set(chain["scores"]["intermediate/1_siqa"]) == {"anli", "siqa"}
    results = json.loads((workdir / "results.json").read_text())
    stages = results["protocol"]["intermediate"]
    assert [s["task"] for s in stages] == ["anli", "siqa"]
    assert stages[0]["changed_from_preset"] == ["max_length", "train.batch_size"]
    assert json.loads((workdir / "intermediate" / "1_siqa" / "phase_done.json").read_text())["task"] == "siqa"
    assert sorted(results["per_language"]) == ["et", "zh"]


@pytest.mark.slow
def test_a_multi_task_stage_takes_and_hands_on_the_encoder_and_each_of_its_heads_is_measured(tmp_path, monkeypatch):
    """`mnli+squad&mnli+squad`: a single-task stage, a multi-task stage (SQuAD and MNLI together, one head each), a
    single-task stage; the encoder goes into and out of the multi-task stage, and the forgetting table measures every
    head of every stage, with a column per stage for a task two stages train."""
    from stilts_jax.pipeline import context, multitask_phase

    workdir = tmp_path / "run"
    args = [
        *_chain_args(workdir, tmp_path / "tiny"),
        "--config.intermediate.task=mnli+squad&mnli+squad",
        "--config.intermediate.max_train_examples=64",
    ]
    handed: list[tuple[str, str]] = []  # (what received it, encoder path)
    real_transplant = multitask_phase.transplant_encoder

    def transplant_spy(model, path):
        handed.append(("multitask_phase", str(path)))
        real_transplant(model, path)

    real_make_model = context.RunContext.make_model

    def make_model_spy(self, task, seed, encoder_from=None):  # a single-task phase builds its model on the encoder
        if encoder_from is not None:
            handed.append(("training", str(encoder_from)))
        return real_make_model(self, task, seed, encoder_from)

    monkeypatch.setattr(multitask_phase, "transplant_encoder", transplant_spy)
    monkeypatch.setattr(context.RunContext, "make_model", make_model_spy)
    assert main_module.main(args) == 0

    stages = workdir / "intermediate"
    folders = ["0_mnli", "1_squad-mnli", "2_squad"]
    assert handed == [
        ("multitask_phase", str(stages / "0_mnli" / "encoder")),
        ("training", str(stages / "1_squad-mnli" / "encoder")),
        ("training", str(stages / "2_squad" / "encoder")),
    ]  # the last one: the target phase
    joint = json.loads((stages / "1_squad-mnli" / "phase_done.json").read_text())
    assert joint["task"] == "squad&mnli" and joint["tasks"] == ["squad", "mnli"]
    assert set(joint["dev_per_task"]) == {"squad", "mnli"}

    # The multi-task stage hands on the shared encoder of its selected model, bit for bit.
    def restored(name):
        import orbax.checkpoint as ocp

        checkpointer = ocp.StandardCheckpointer()
        try:  # a record's paths may be relative to its phase folder
            return jax.tree.map(np.asarray, checkpointer.restore(stages / "1_squad-mnli" / name))
        finally:
            checkpointer.close()

    encoder, best = restored(joint["encoder"]), restored(joint["best_model"])
    assert set(best) == {"encoder", "heads"} and set(best["heads"]) == {"squad", "mnli"}
    assert jax.tree.all(jax.tree.map(np.array_equal, encoder, best["encoder"]))

    chain = json.loads((stages / "chain.json").read_text())
    assert [s["folder"] for s in chain["stages"]] == [f"intermediate/{f}" for f in folders]
    assert chain["stages"][1] == {
        "folder": "intermediate/1_squad-mnli",
        "task": "squad&mnli",
        "tasks": ["squad", "mnli"],
    }
    assert [c["column"] for c in chain["columns"]] == ["mnli@0", "squad@1", "mnli@1", "squad@2"]
    scores = chain["scores"]
    assert set(scores["intermediate/0_mnli"]) == {"mnli@0"}
    assert set(scores["intermediate/1_squad-mnli"]) == {"mnli@0", "squad@1", "mnli@1"}
    assert scores["intermediate/1_squad-mnli"]["squad@1"] == joint["dev_per_task"]["squad"]
    after = scores["intermediate/2_squad"]
    assert set(after) == {"mnli@0", "squad@1", "mnli@1", "squad@2"}  # the multi-task stage's two heads measured
    assert all(0.0 <= v <= 100.0 for v in after.values())
    assert "| 1: squad&mnli |" in (stages / "chain.md").read_text()
    results = json.loads((workdir / "results.json").read_text())
    protocol = results["protocol"]["intermediate"]
    assert [(s["task"], s.get("tasks")) for s in protocol] == [
        ("mnli", None),
        ("squad&mnli", ["squad", "mnli"]),
        ("squad", None),
    ]
    assert "- intermediate stage 1: squad & mnli;" in (workdir / "results.md").read_text()
