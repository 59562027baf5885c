"""Multi-task stages inside a chain (`anli+squad&mnli`): parsing, folder names, per-stage overrides and sources, the
forgetting table's columns, and the refusals (fast: configs only, nothing trains)."""

from __future__ import annotations

import pytest

from stilts_jax.config.loader import parse_config_args
from stilts_jax.core.errors import InputError
from stilts_jax.pipeline.chain import (
    chain_columns,
    chain_stages,
    chain_table,
    chain_tasks,
    stage_folder,
    stage_task_names,
    stage_tasks,
)
from stilts_jax.pipeline.protocol import run_protocol

RECIPE = "--config=configs/stilts.py:intermediate={},target=xcopa"


def _config(chain: str, *args: str):
    config, _ = parse_config_args([RECIPE.format(chain), *args])
    return config


def test_ampersand_joins_the_tasks_of_one_stage_and_plus_the_stages():
    config = _config("anli+squad&mnli")
    assert chain_tasks(config.intermediate) == ["anli", "squad&mnli"]
    assert stage_task_names("squad&mnli") == ["squad", "mnli"] and stage_task_names("anli") == ["anli"]
    (first, anli), (second, joint) = chain_stages(config.intermediate)
    assert (first, second) == ("intermediate/0_anli", "intermediate/1_squad-mnli")  # "&" is written "-" in folders
    assert anli.task == "anli" and list(anli.tasks) == [] and stage_tasks(anli) == ["anli"]
    assert joint.task == "squad&mnli" and list(joint.tasks) == ["squad", "mnli"]  # the multi-task phase's form
    assert stage_tasks(joint) == ["squad", "mnli"]
    assert not joint.stage_overrides and not anli.stage_overrides
    assert stage_folder(3, "a&b&c") == "intermediate/3_a-b-c"
    # Spaces around the separators are forgiven, as around "+".
    assert [f for f, _ in chain_stages(_config("anli + squad & mnli").intermediate)] == [
        "intermediate/0_anli",
        "intermediate/1_squad-mnli",
    ]


def test_the_workdir_of_a_chain_with_a_multi_task_stage_is_filesystem_safe():
    assert _config("anli+squad&mnli").workdir == "workdir/anli+squad-mnli_to_xcopa"
    assert _config("anli+siqa").workdir == "workdir/anli+siqa_to_xcopa"  # unchanged without "&"


def test_one_stage_runs_stay_as_they_were():
    single = _config("squad")
    [(folder, stage)] = chain_stages(single.intermediate)
    assert folder == "intermediate" and stage is single.intermediate  # the phase itself, untouched
    multi, _ = parse_config_args(["--config=configs/multitask_demo.py"])  # intermediate.tasks: one multi-task phase
    [(folder, stage)] = chain_stages(multi.intermediate)
    assert folder == "intermediate" and stage is multi.intermediate
    # One "&" stage alone is one multi-task phase in intermediate/, with its tasks spelled out.
    [(folder, stage)] = chain_stages(_config("squad&mnli").intermediate)
    assert folder == "intermediate" and list(stage.tasks) == ["squad", "mnli"] and stage.task == "squad&mnli"


def test_overrides_keyed_by_the_spelled_stage_apply_to_that_multi_task_stage_only():
    config = _config(
        "mnli+squad&mnli",
        "--config.intermediate.stage_overrides={'squad&mnli': {'max_length': 192, 'sampling': 'temperature', "
        "'temperature': 2.0, 'train': {'epochs': 1.5}}, 'mnli': {'max_length': 128}, 'siqa': {'max_length': 64}}",
        "--config.intermediate.task_sources={'mnli': {'kind': 'hf', 'repo': '/data/glue'}}",
    )
    (_, mnli), (_, joint) = chain_stages(config.intermediate)
    assert (mnli.max_length, mnli.train.epochs) == (128, 3.0)  # the bare task's entry: its single-task stage
    assert (joint.max_length, joint.train.epochs) == (192, 1.5)  # the spelled entry: the multi-task stage
    assert (joint.sampling, joint.temperature) == ("temperature", 2.0)
    assert mnli.source.repo == "/data/glue"  # a single-task stage's source is its task_sources entry
    # A multi-task stage keeps task_sources: each of its tasks reads its own entry, else the phase's source.
    assert joint.task_sources.mnli.repo == "/data/glue" and joint.source.kind == config.intermediate.source.kind


def test_the_protocol_lists_a_multi_task_stage_with_its_tasks():
    config = _config("anli+squad&mnli")
    protocol = run_protocol(config, split="test", trained_target=True)
    stages = protocol["intermediate"]
    assert [(s["stage"], s["task"], s.get("tasks")) for s in stages] == [
        (0, "anli", None),
        (1, "squad&mnli", ["squad", "mnli"]),
    ]


@pytest.mark.parametrize(
    "chain, args, message",
    [
        ("anli+squad&", [], "stage 'squad&' has an empty task"),
        ("anli+&mnli", [], "stage '&mnli' has an empty task"),
        ("anli++siqa", [], "has an empty stage"),
        ("anli+squad&squad", [], "lists squad twice"),
        ("anli+squad&nope", [], "unknown task 'nope'"),
        ("anli+squad&mnli", ["--config.intermediate.tasks=['squad','mnli']"], "cannot be combined"),
        ("squad&mnli", ["--config.intermediate.tasks=['squad','mnli']"], "leave intermediate.tasks empty"),
        (
            "anli+squad&mnli",
            ["--config.intermediate.stage_overrides={'mnli&squad': {'max_length': 64}}"],
            "meant for the stage 'squad&mnli': key it as the chain spells",
        ),
        (
            "anli+squad&mnli",
            ["--config.intermediate.stage_overrides={'anli+siqa': {'max_length': 64}}"],
            "names one stage",
        ),
        (
            "anli+squad&mnli",
            ["--config.intermediate.stage_overrides={'squad&mnly': {'max_length': 64}}"],
            "names mnly, which are not tasks",
        ),
        (
            "anli+squad&mnli",
            ["--config.intermediate.stage_overrides={'squad&mnli': {'max_len': 64}}"],
            r"stage_overrides\['squad&mnli'\]: unknown key 'max_len'",
        ),
        (
            "anli+squad&mnli",
            ["--config.intermediate.stage_overrides={'squad&mnli': {'tasks': ['squad']}}"],
            "'tasks' cannot be set per stage",
        ),
        ("anli+siqa", ["--config.intermediate.stage_overrides={'siqa': {'task': 'copa'}}"], "'task' cannot be set"),
    ],
)
def test_multi_task_stage_mistakes_are_errors_before_anything_trains(chain, args, message):
    config = _config(chain, *args)
    with pytest.raises(Exception, match=message) as error:
        chain_stages(config.intermediate)
    if "unknown task" not in message:
        assert isinstance(error.value, InputError)


def test_overrides_for_stages_of_other_chains_are_allowed():
    """A sweep's recipe carries settings for every row's stages; a stage this chain lacks is not an error."""
    config = _config(
        "anli+siqa",
        "--config.intermediate.stage_overrides={'squad&mnli': {'max_length': 64}, 'hellaswag': {'max_length': 64}}",
    )
    assert [s.max_length for _, s in chain_stages(config.intermediate)] == [256, 256]


def test_forgetting_columns_cover_every_task_of_every_stage():
    stages = chain_stages(_config("squad&mnli+mnli+anli").intermediate)
    assert [f for f, _ in stages] == ["intermediate/0_squad-mnli", "intermediate/1_mnli", "intermediate/2_anli"]
    # mnli is trained by two stages, each with its own head: a column each.
    assert chain_columns(stages) == [
        ("squad", 0, "squad"),
        ("mnli@0", 0, "mnli"),
        ("mnli@1", 1, "mnli"),
        ("anli", 2, "anli"),
    ]
    table = chain_table(
        stages,
        {
            "intermediate/0_squad-mnli": {"squad": 40.0, "mnli@0": 50.0},
            "intermediate/1_mnli": {"squad": 30.0, "mnli@0": 52.0, "mnli@1": 60.0},
        },
    )
    assert "| after stage | squad | mnli@0 | mnli@1 | anli |" in table
    assert "| 0: squad&mnli | 40.0 | 50.0 |  |  |" in table
    assert "| 1: mnli | 30.0 | 52.0 | 60.0 |  |" in table
    assert "| 2: anli |  |  |  |  |" in table  # not trained yet: empty, not dropped
    assert "one head per task" in table


def test_the_chain_plot_has_a_tick_per_stage_and_a_line_per_column():
    from stilts_jax.evaluation.plots import chain_lines_png

    png = chain_lines_png(
        ["squad", "mnli@0", "mnli@1"], [[40.0, 50.0, None], [30.0, 52.0, 60.0]], stages=["squad&mnli", "mnli"]
    )
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert chain_lines_png(["squad", "mnli"], [[55.0, None], [5.3, 33.3]])[:4] == b"\x89PNG"  # one task per stage
