"""python -m stilts_jax.select on the demo targets: candidates of every kind (a sweep root of runs, a chain's last
stage, a baseline run, a model folder, `pretrained`), scored by LogME and SEmb and set against measured scores, on
the XNLI-style target and the XCOPA-style (multiple-choice) one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from flax import nnx

from stilts_jax import select
from stilts_jax.config.loader import config_to_json, parse_config_args
from stilts_jax.core.errors import InputError
from stilts_jax.demo.tiny_model import make_tiny_model
from stilts_jax.evaluation.transferability import encoder_features, multiple_choice_logme, regret_at_k, spearman
from stilts_jax.models.hf_weights import load_pretrained
from stilts_jax.train.checkpoints import save_params

RECIPE = str(Path(__file__).resolve().parents[1] / "configs" / "chain_demo.py")


def _config_args(model: Path) -> list[str]:
    return [f"--config={RECIPE}", f"--config.model.name={model}", "--config.model.make_tiny=false"]


def _save_encoder(model: Path, path: Path) -> None:
    encoder = load_pretrained(model)[0]
    save_params(path, nnx.to_pure_dict(nnx.state(encoder)))


def _run(
    root: Path,
    name: str,
    base: Path,
    *,
    intermediate: str,
    target: str = "xnli",
    stages: dict[str, Path] | None = None,
    measured: float | None = None,
) -> Path:
    """A run workdir as the pipeline leaves it: config.json, the intermediate phase's done record(s) with the
    encoder, and results.json."""
    run = root / name
    config, _ = parse_config_args(
        [*_config_args(base), f"--config.target.task={target}", f"--config.intermediate.task={intermediate}"]
    )
    run.mkdir(parents=True)
    (run / "config.json").write_text(config_to_json(config))
    for folder, model in (stages or {}).items():
        phase = run / "intermediate" / folder
        _save_encoder(model, phase / "encoder")
        (phase / "phase_done.json").write_text(json.dumps({"task": intermediate, "encoder": "encoder", "dev": 50.0}))
    if measured is not None:
        (run / "results.json").write_text(json.dumps({"task": target, "average_zero_shot": {"accuracy": measured}}))
    return run


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("select")
    # As long as the demo phases' texts (configs/demo.py: max_length 160), like the model a demo run makes.
    models = {
        name: make_tiny_model(root / name, seed=seed, max_length=160)
        for name, seed in (("base", 0), ("other", 1), ("third", 2))
    }
    sweep = root / "sweep"
    _run(sweep, "baseline_to_xnli_seed0", models["base"], intermediate="", measured=40.0)
    _run(sweep, "mnli_to_xnli_seed0", models["base"], intermediate="mnli", stages={".": models["other"]}, measured=45.0)
    chain = _run(
        sweep,
        "squad+mnli_to_xnli_seed0",
        models["base"],
        intermediate="squad+mnli",
        stages={"1_mnli": models["third"]},
        measured=42.0,
    )
    # The first stage's encoder is not the candidate (the last stage's is): a path that would fail to load.
    (chain / "intermediate" / "0_squad").mkdir()
    (chain / "intermediate" / "0_squad" / "phase_done.json").write_text(json.dumps({"encoder": "gone", "dev": 1.0}))
    # The same intermediate task as mnli_to_xnli_seed0 with another encoder, the target not yet measured.
    _run(sweep, "mnli_to_xnli_seed1", models["base"], intermediate="mnli", stages={".": models["third"]})
    xcopa = {"mnli": ("other", 60.0), "squad": ("third", 55.0), "squad&mnli": ("base", 50.0)}
    for task, (model, measured) in xcopa.items():
        _run(
            sweep,
            f"{task}_to_xcopa_seed0",
            models["base"],
            intermediate=task,
            target="xcopa",
            stages={".": models[model]},
            measured=measured,
        )
    return {**models, "sweep": sweep, "root": root}


def test_select_ranks_every_kind_of_candidate(demo: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    output = demo["root"] / "out"
    code = select.main(
        [
            f"--candidates={demo['sweep']},pretrained",
            f"--candidates={demo['third']}",
            "--target=xnli",
            "--max-examples=96",
            f"--output={output}",
            *_config_args(demo["base"]),
        ]
    )
    assert code == 0, capsys.readouterr().err
    data = json.loads((output / "selection.json").read_text())
    rows = {row["name"]: row for row in data["candidates"]}
    # The sweep's runs of the target (not its xcopa run), the pretrained model and the model folder.
    assert set(rows) == {
        "baseline_to_xnli_seed0",
        "mnli_to_xnli_seed0",
        "mnli_to_xnli_seed1",
        "squad+mnli_to_xnli_seed0",
        "pretrained",
        "third",
    }
    assert data["examples"] == 96 and data["target"] == "xnli"
    logme = {name: row["logme"] for name, row in rows.items()}
    # The same weights give the same score whichever way they come: a run's saved encoder or a model folder, a
    # chain's last stage, a baseline run or `pretrained`.
    assert logme["squad+mnli_to_xnli_seed0"] == pytest.approx(logme["third"], abs=1e-6)
    assert logme["baseline_to_xnli_seed0"] == pytest.approx(logme["pretrained"], abs=1e-6)
    # Other weights, another score (random tiny models' features barely inform the labels: close, not equal).
    assert logme["mnli_to_xnli_seed0"] != logme["pretrained"] != logme["third"]
    assert logme["mnli_to_xnli_seed1"] == pytest.approx(logme["third"], abs=1e-6)
    # SEmb compares datasets with one fixed encoder (the pretrained model): the same intermediate task scores the
    # same whatever encoder the run trained; a chain's datasets differ from one of them; no task, no score.
    semb = {name: row["semb"] for name, row in rows.items()}
    assert semb["mnli_to_xnli_seed1"] == semb["mnli_to_xnli_seed0"]
    assert (
        -1 <= semb["squad+mnli_to_xnli_seed0"] <= 1 and semb["squad+mnli_to_xnli_seed0"] != semb["mnli_to_xnli_seed0"]
    )
    assert semb["pretrained"] is semb["third"] is semb["baseline_to_xnli_seed0"] is None
    assert rows["squad+mnli_to_xnli_seed0"]["intermediate"] == "squad+mnli"
    assert data["semb_examples"] == {"mnli": 96, "squad": 96}
    assert rows["squad+mnli_to_xnli_seed0"]["encoder"].endswith("1_mnli/encoder")
    ranked = sorted(logme, key=lambda name: -logme[name])
    assert [row["name"] for row in data["candidates"]] == ranked
    assert rows[ranked[0]]["logme_rank"] == 1
    semb_ranked = sorted((n for n in semb if semb[n] is not None), key=lambda n: -semb[n])
    assert rows[semb_ranked[0]]["semb_rank"] == 1 and rows["pretrained"]["semb_rank"] is None
    measured = {n: rows[n]["measured"] for n in rows if rows[n]["measured"] is not None}
    assert measured == {"baseline_to_xnli_seed0": 40.0, "mnli_to_xnli_seed0": 45.0, "squad+mnli_to_xnli_seed0": 42.0}
    assert rows["mnli_to_xnli_seed0"]["measured_rank"] == 1 and rows["pretrained"]["measured_rank"] is None
    names = list(measured)
    agreement = data["agreement"]["logme"]
    assert agreement["candidates_measured"] == 3
    assert agreement["spearman"] == pytest.approx(spearman([logme[n] for n in names], [measured[n] for n in names]))
    assert agreement["regret@1"] == pytest.approx(
        regret_at_k([logme[n] for n in names], [measured[n] for n in names], 1)
    )
    assert agreement["regret@3"] == 0.0
    # SEmb over the measured runs that have an intermediate task (not the baseline): two, too few for Spearman.
    by_semb = data["agreement"]["semb"]
    assert by_semb["candidates_measured"] == 2 and by_semb["spearman"] is None
    best_semb = max(("mnli_to_xnli_seed0", "squad+mnli_to_xnli_seed0"), key=lambda n: semb[n])
    assert by_semb["regret@1"] == pytest.approx((45.0 - measured[best_semb]) / 45.0)
    table = (output / "selection.md").read_text()
    assert (
        "| candidate | intermediate | LogME | LogME rank | SEmb | SEmb rank | measured score | measured rank |" in table
    )
    row = rows["mnli_to_xnli_seed0"]
    assert (
        f"| mnli_to_xnli_seed0 | mnli | {logme['mnli_to_xnli_seed0']:.6f} | {row['logme_rank']} | "
        f"{semb['mnli_to_xnli_seed0']:.6f} | {row['semb_rank']} | 45.00 | 1 |" in table
    )
    assert (
        f"| pretrained | - | {logme['pretrained']:.6f} | {rows['pretrained']['logme_rank']} | no task | - | - | - |"
        in table
    )
    assert f"| LogME | 3 | {agreement['spearman']:.3f} | {agreement['regret@1']:.3f} | 0.000 |" in table
    assert f"| SEmb | 2 | - | {by_semb['regret@1']:.3f} |" in table


def test_select_scores_a_multiple_choice_target(demo: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    output = demo["root"] / "xcopa"
    code = select.main(
        [
            f"--candidates={demo['sweep']},pretrained",
            "--target=xcopa",
            "--max-examples=64",
            f"--output={output}",
            *_config_args(demo["base"]),
        ]
    )
    assert code == 0, capsys.readouterr().err
    data = json.loads((output / "selection.json").read_text())
    rows = {row["name"]: row for row in data["candidates"]}
    assert set(rows) == {"mnli_to_xcopa_seed0", "squad_to_xcopa_seed0", "squad&mnli_to_xcopa_seed0", "pretrained"}
    assert data["family"] == "multiple_choice" and data["examples"] == 64
    # LogME's choice form on the pretrained model's <s> features of every (premise, choice) pair, worked out here.
    config, _ = parse_config_args([*_config_args(demo["base"]), "--config.target.task=xcopa"])
    from stilts_jax.pipeline.common import source_of
    from stilts_jax.pipeline.context import RunContext
    from stilts_jax.tasks.registry import get_task

    pipeline = RunContext(config)
    task = pipeline.make_task(get_task("xcopa"), config.target)
    arrays = task.train_features(select._english_subset(task, config.target, source_of(config.target), 64, config.seed))
    n, choices, length = arrays["input_ids"].shape
    flat = {k: arrays[k].reshape(n * choices, length) for k in ("input_ids", "attention_mask")}
    features = encoder_features(pipeline.pretrained_encoder(), flat, progress=False).reshape(n, choices, -1)
    expected = multiple_choice_logme(features, arrays["labels"], arrays["choice_mask"])
    assert rows["pretrained"]["logme"] == pytest.approx(expected, abs=1e-5)
    assert rows["squad&mnli_to_xcopa_seed0"]["logme"] == pytest.approx(expected, abs=1e-6)  # the same weights
    # A multi-task stage's datasets weigh equally: its similarity is neither single task's.
    semb = {name: row["semb"] for name, row in rows.items()}
    assert len({semb["mnli_to_xcopa_seed0"], semb["squad_to_xcopa_seed0"], semb["squad&mnli_to_xcopa_seed0"]}) == 3
    assert semb["pretrained"] is None
    assert (
        data["agreement"]["logme"]["candidates_measured"] == 3 and data["agreement"]["semb"]["candidates_measured"] == 3
    )
    assert "relative to the mean of its example's choices" in (output / "selection.md").read_text()


def test_select_refuses_what_it_cannot_score(demo: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    code = select.main(
        ["--candidates=pretrained", "--target=udpos", f"--output={demo['root'] / 'no'}", *_config_args(demo["base"])]
    )
    assert code == 2
    error = capsys.readouterr().err
    assert "udpos is a tagging task" in error and "multiple_choice" in error
    assert not (demo["root"] / "no").exists()
    code = select.main(
        [
            "--candidates=pretrained",
            "--target=xnli",
            f"--semb-model={demo['root'] / 'missing'}",
            f"--output={demo['root'] / 'no'}",
            *_config_args(demo["base"]),
        ]
    )
    assert code == 2 and "--semb-model" in capsys.readouterr().err


def test_unfinished_intermediate_phase_is_named(demo: dict[str, Path]) -> None:
    run = _run(demo["root"] / "unfinished", "anli_to_xnli_seed0", demo["base"], intermediate="anli")
    with pytest.raises(InputError, match="has not finished"):
        select.resolve_candidates([str(run)], "xnli")
    with pytest.raises(InputError, match="neither 'pretrained' nor a folder"):
        select.resolve_candidates([str(demo["root"] / "missing")], "xnli")


def test_logme_reads_the_layer_asked_for(demo: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    from stilts_jax.evaluation.transferability import logme
    from stilts_jax.pipeline.common import source_of
    from stilts_jax.pipeline.context import RunContext
    from stilts_jax.tasks.registry import get_task

    output = demo["root"] / "layer1"
    args = ["--candidates=pretrained", "--target=xnli", "--max-examples=48", f"--output={output}"]
    assert select.main([*args, "--layer=1", *_config_args(demo["base"])]) == 0, capsys.readouterr().err
    data = json.loads((output / "selection.json").read_text())
    assert data["layer"] == 1 and "layer-1 `<s>` features" in (output / "selection.md").read_text()
    config, _ = parse_config_args([*_config_args(demo["base"]), "--config.target.task=xnli"])
    pipeline = RunContext(config)
    task = pipeline.make_task(get_task("xnli"), config.target)
    arrays = task.train_features(select._english_subset(task, config.target, source_of(config.target), 48, config.seed))
    inputs = {k: arrays[k] for k in ("input_ids", "attention_mask")}
    encoder = pipeline.pretrained_encoder()
    features = encoder_features(encoder, inputs, layer=1, progress=False)
    expected = logme(features, arrays["labels"], len(task.labels))
    assert data["candidates"][0]["logme"] == pytest.approx(expected, abs=1e-5)
    # Another layer, other features (LogME of a random tiny model's features is near its noise-only value anyway).
    assert np.abs(features - encoder_features(encoder, inputs, progress=False)).max() > 1e-2
    # The tiny model has no XTREME retrieval layer: 'retrieval' is then the last one; a layer it lacks is refused.
    assert select.feature_layer("retrieval", 24) == 14 and select.feature_layer("retrieval", 2) == 2
    assert select.main([*args, "--layer=9", *_config_args(demo["base"])]) == 2
    assert "--layer=9: use last, retrieval or a hidden-states index from 0 to" in capsys.readouterr().err
