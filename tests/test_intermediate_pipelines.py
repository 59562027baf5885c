"""Every intermediate task of the paper, and the English reasoning tasks (docs/DATASETS.md), through the pipeline:
its own head on its fixture, then PAN-X zero-shot.

Each run trains the tiny XLM-R a few steps on the intermediate task's committed fixture (original release format),
hands the encoder to a PAN-X target trained on the XTREME-layout fixture, and evaluates two languages.
"""

from __future__ import annotations

import json
import math

import ml_collections
import orbax.checkpoint as ocp
import pytest

from stilts_jax.config.loader import parse_config_args
from stilts_jax.data.task_sources import derive_tag_set, load_examples
from stilts_jax.pipeline import run
from tests.intermediate_sources import SOURCES
from tests.test_family_pipelines import xtreme_folder

LANGUAGES = ["ar", "zh"]
# Outputs of each task's head: classes, 1 score per choice, or the tags of the training data plus the unknown tag.
HEAD_OUTPUTS = {
    "mnli": 3,
    "anli_plus": 3,
    "qqp": 2,
    "paws": 2,
    "commonsenseqa": 1,
    "cosmosqa": 1,
    "hellaswag": 1,
    "copa": 1,
    "piqa": 1,
    "winogrande": 1,
    "reclor": 1,
    "logiqa2": 1,
    "art": 1,
}


def _head_outputs(task: str) -> int:
    if task == "ccg":
        return len(derive_tag_set(load_examples("ccg", "train", SOURCES["ccg"])["en"]))
    return HEAD_OUTPUTS[task]


@pytest.mark.slow
@pytest.mark.parametrize(
    "intermediate",
    [
        "mnli",
        "anli_plus",
        "qqp",
        "paws",
        "commonsenseqa",
        "cosmosqa",
        "hellaswag",
        "copa",
        "ccg",
        "piqa",
        "winogrande",
        "reclor",
        "logiqa2",
        "art",
    ],
)
def test_intermediate_task_trains_its_head_and_hands_off_to_panx(intermediate, xlmr_dir, tmp_path, capsys):
    root = xtreme_folder(tmp_path)
    workdir = tmp_path / "run"
    phase_args = [
        "--config.{p}.max_length=32",
        "--config.{p}.train.batch_size=8",
        "--config.{p}.train.max_steps=2",
        "--config.{p}.train.progress_bar=false",
    ]
    intermediate_source = []
    if intermediate == "ccg":  # CCG's folder of jiant files is reachable from the command line
        intermediate_source = [
            "--config.intermediate.source.kind=files",
            f"--config.intermediate.source.path={SOURCES['ccg']['path']}",
        ]
    config, rest = parse_config_args(
        [
            f"--config=configs/stilts.py:intermediate={intermediate},target=panx",
            f"--config.workdir={workdir}",
            f"--config.model.name={xlmr_dir}",
            "--config.model.dtype=float32",
            "--config.evaluation.split=dev",
            f"--config.evaluation.languages={LANGUAGES!r}",
            "--config.target.source.kind=xtreme",
            f"--config.target.source.path={root}",
            *intermediate_source,
            *[a.format(p="intermediate") for a in phase_args],
            *[a.format(p="target") for a in phase_args],
        ]
    )
    assert not rest
    if intermediate != "ccg":  # 'paths' (split -> file) and per-part sources are set in Python
        with config.unlocked():
            config.intermediate.source = ml_collections.ConfigDict(SOURCES[intermediate])
    run(config)
    printed = capsys.readouterr().out

    done = json.loads((workdir / "intermediate" / "phase_done.json").read_text())
    assert done["task"] == intermediate and done["steps"] == 2
    assert math.isfinite(done["dev"]) and 0.0 <= done["dev"] <= 100.0
    # Its own head, sized for its labels, trained on its data (the dev score was measured with it).
    best_model = workdir / "intermediate" / done["best_model"]  # recorded relative to the phase folder
    saved = ocp.StandardCheckpointer().metadata(best_model).item_metadata.tree
    head_widths = {leaf.shape[-1] for leaf in _leaves(saved["head"]) if len(leaf.shape) == 2}
    assert _head_outputs(intermediate) in head_widths
    rows = [json.loads(line) for line in (workdir / "intermediate" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if row["split"] == "train"] and any(row["split"] == "dev" for row in rows)
    # The encoder went from the intermediate phase to the target phase.
    assert f"encoder carried over from {workdir / 'intermediate' / done['encoder']}" in printed
    target = json.loads((workdir / "target" / "phase_done.json").read_text())
    assert target["task"] == "panx" and target["steps"] == 2
    results = json.loads((workdir / "results.json").read_text())
    assert results["intermediate_task"] == intermediate
    assert sorted(results["per_language"]) == sorted(LANGUAGES)
    assert all(0.0 <= results["per_language"][lang]["f1"] <= 100.0 for lang in LANGUAGES)


def _leaves(tree):
    if isinstance(tree, (dict, list, tuple)):
        tree = tree.values() if isinstance(tree, dict) else tree
        for value in tree:
            yield from _leaves(value)
    else:
        yield tree
