"""Pipeline level: machine-translated training data, recipes, and a multi-task (+MLM) intermediate phase handing
its encoder to a target."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import ml_collections
import pytest

from stilts_jax import main as main_module
from stilts_jax.config.loader import parse_config_args
from stilts_jax.core.errors import StiltsError
from stilts_jax.core.tokenization import load_demo_tokenizer
from stilts_jax.data.task_sources import load_examples
from stilts_jax.data.task_sources.records import as_xcopa_example
from stilts_jax.pipeline.common import load_training_examples
from stilts_jax.tasks.families import make_task
from stilts_jax.tasks.registry import get_task
from stilts_jax.train.metrics_log import read_metrics

FIXTURES = Path(__file__).parent / "fixtures" / "tasks"
TEXT = Path(__file__).parent.parent / "stilts_jax" / "assets" / "text"


def _phase(**values) -> ml_collections.ConfigDict:
    config, _ = parse_config_args(["--config=configs/stilts.py:intermediate=mnli,target=xnli"])
    phase = config.intermediate
    with phase.unlocked():
        for key, value in values.items():
            phase[key] = value
    return phase


def test_translated_training_files_are_concatenated_per_language():
    task = make_task(get_task("mnli"), load_demo_tokenizer(), max_length=64)
    source = {"kind": "xtreme", "path": str(FIXTURES / "xtreme")}
    template = str(FIXTURES / "translated" / "mnli.train.{lang}.tsv")
    examples = load_training_examples(
        task, _phase(train_languages=["en", "de", "fr"], translated_train=template), source
    )
    assert [ex.language for ex in examples] == ["en"] * 3 + ["de"] * 3 + ["fr"] * 3
    english, german = examples[:3], examples[3:6]
    assert german[2].text_a == "Die Tennisschuhe haben eine Reihe von Preisen."
    assert german[1].text_a == '"Ja", sagte er, "wir brechen im Morgengrauen auf."'  # plain TSV: quotes kept
    assert [ex.label for ex in german] == [ex.label for ex in english]  # the same pairs, translated
    assert len({ex.id for ex in examples}) == 9
    features = task.train_features(examples)
    assert features["input_ids"].shape == (9, 64)
    limited = load_training_examples(
        task, _phase(train_languages=["en", "de"], translated_train=template, max_train_examples=2), source
    )
    assert [ex.language for ex in limited] == ["en", "en", "de", "de"]
    assert [ex.language for ex in load_training_examples(task, _phase(), source)] == ["en"] * 3


def test_a_language_the_source_lacks_names_the_fix():
    task = make_task(get_task("mnli"), load_demo_tokenizer(), max_length=64)
    with pytest.raises(StiltsError, match=r"translated_train"):
        load_training_examples(
            task, _phase(train_languages=["en", "de"]), {"kind": "xtreme", "path": str(FIXTURES / "xtreme")}
        )
    from stilts_jax.pipeline.multitask_phase import phase_tasks

    with pytest.raises(StiltsError, match=r"--config.<phase>.tasks"):
        phase_tasks(_phase(task="multitask"))
    assert phase_tasks(_phase(task="multitask", tasks=["mnli", "squad"])) == ["mnli", "squad"]


def test_recipes():
    chain, _ = parse_config_args(["--config=configs/siqa_to_xcopa.py"])
    assert chain.intermediate.task == "siqa" and chain.target.task == "xcopa"
    # The target phase of that chain trains on XCOPA's English training data, which is COPA.
    source = {"kind": "xtreme", "path": str(FIXTURES / "xtreme")}
    xcopa_train = load_examples("xcopa", "train", source, ["en"])["en"]
    copa_train = load_examples("copa", "train", source, ["en"])["en"]
    assert len(xcopa_train) == 3
    # The same records: XCOPA asks XTREME-R's question (run_xcopa.py), the intermediate COPA jiant's (copa.py).
    assert [(ex.choices, ex.label) for ex in xcopa_train] == [(ex.choices, ex.label) for ex in copa_train]
    assert xcopa_train == [as_xcopa_example(ex) for ex in copa_train] != copa_train
    paper, _ = parse_config_args(["--config=configs/multitask.py:target=pawsx"])
    assert sorted(paper.intermediate.tasks) == [
        "anli_plus",
        "ccg",
        "commonsenseqa",
        "cosmosqa",
        "hellaswag",
        "mnli",
        "qqp",
        "squad",
        "squad_v2",
    ]
    assert paper.intermediate.sampling == "proportional" and paper.target.task == "pawsx"
    demo, _ = parse_config_args(["--config=configs/multitask_demo.py"])
    assert len(demo.intermediate.mlm.files) == 17 and all(Path(f).is_file() for f in demo.intermediate.mlm.files)


def _xtreme_folder(tmp_path: Path) -> Path:
    """The fixture folder with every English training file repeated, so a batch of 8 fits (8 fake devices)."""
    root = tmp_path / "xtreme"
    shutil.copytree(FIXTURES / "xtreme", root)
    for path in list(root.glob("*/train-en.*")) + list(root.glob("siqa/*trn*")):
        text = path.read_text(encoding="utf-8")
        separator = "\n" if path.parent.name in ("udpos", "panx") and not text.endswith("\n\n") else ""
        path.write_text((text + separator) * 8, encoding="utf-8")
    return root


@pytest.mark.slow
def test_multitask_intermediate_phase_with_mlm_hands_off_to_a_target(xlmr_dir, tmp_path):
    root = _xtreme_folder(tmp_path)
    workdir = tmp_path / "run"
    phase_args = [
        "--config.{p}.source.kind=xtreme",
        f"--config.{{p}}.source.path={root}",
        "--config.{p}.max_length=64",
        "--config.{p}.train.batch_size=8",
        "--config.{p}.train.progress_bar=false",
        "--config.{p}.train.log_every=1",
    ]
    code = main_module.main(
        [
            "--config=configs/stilts.py:intermediate=siqa,target=panx",
            f"--config.workdir={workdir}",
            f"--config.model.name={xlmr_dir}",
            "--config.model.dtype=float32",
            "--config.evaluation.split=dev",
            "--config.evaluation.languages=['ar']",
            *[a.format(p="intermediate") for a in phase_args],
            *[a.format(p="target") for a in phase_args],
            "--config.intermediate.task=multitask",
            "--config.intermediate.tasks=['siqa','xnli','udpos']",
            f"--config.intermediate.mlm.files=['{TEXT / 'parallel.de.txt'}','{TEXT / 'parallel.ru.txt'}']",
            "--config.intermediate.mlm.share=0.25",
            "--config.intermediate.mlm.max_length=32",
            "--config.intermediate.train.max_steps=12",
            "--config.intermediate.train.eval_every=6",
            "--config.target.train.max_steps=2",
        ]
    )
    assert code == 0
    info = json.loads((workdir / "intermediate" / "phase_done.json").read_text())
    assert info["task"] == "multitask" and info["tasks"] == ["siqa", "xnli", "udpos"] and info["mlm"]
    assert sorted(info["dev_per_task"]) == ["siqa", "udpos", "xnli"]
    assert info["dev"] == pytest.approx(sum(info["dev_per_task"].values()) / 3, abs=0.02)
    dev_rows = read_metrics(workdir / "intermediate", "dev")
    assert [r["step"] for r in dev_rows] == [6, 12]
    assert {"siqa/accuracy", "xnli/accuracy", "udpos/f1", "dev_score"} <= set(dev_rows[0])
    trained = {key.split("/")[0] for r in read_metrics(workdir / "intermediate") for key in r if key.endswith("/loss")}
    assert "mlm" in trained and len(trained) >= 3
    assert info["encoder"] == "encoder" and (workdir / "intermediate" / "encoder").is_dir()  # relative to the phase
    results = json.loads((workdir / "results.json").read_text())
    assert results["intermediate_task"] == "multitask" and list(results["per_language"]) == ["ar"]
