"""Every number carries its protocol: presets with named sources, the keys a run changed, the selection rule, and
averages labelled by the language list they cover."""

from __future__ import annotations

import pytest

from configs import base
from stilts_jax.config.loader import parse_config_args
from stilts_jax.evaluation.report import markdown_table, summarize
from stilts_jax.evaluation.xtreme_tasks import TASK2LANGS
from stilts_jax.pipeline.common import selection_rule, trainer_config
from stilts_jax.pipeline.protocol import changed_from_preset, protocol_markdown, run_protocol


def test_published_preset_follows_the_papers_code_and_xtreme_r_scripts():
    config = base.get_config(intermediate="squad", target="xnli")
    target, intermediate = config.target, config.intermediate
    # jiant e_run_models.sh / d_write_configs.sh / c_tokenize_and_cache.sh
    assert (target.train.learning_rate, target.train.batch_size, target.train.epochs, target.max_length) == (
        1e-5,
        32,
        2.0,
        256,
    )
    assert (target.train.eval_every, target.train.early_stopping_patience, target.train.eval_subset) == (1000, 30, 500)
    assert target.train.selection == "best" and target.preset.label.startswith("paper (nyu-mll/jiant")
    # jiant guides/projects/xstilts.md: --train_batch_size 4
    assert intermediate.train.batch_size == 4 and intermediate.max_length == 256
    # google-research/xtreme scripts/train_xcopa.sh: SIQA then COPA, 5 epochs each, lr 3e-5, 2 x 16, 128 tokens
    chain = base.get_config(intermediate="siqa", target="xcopa")
    for phase in (chain.intermediate, chain.target):
        assert (phase.train.learning_rate, phase.train.batch_size, phase.train.epochs, phase.max_length) == (
            3e-5,
            32,
            5.0,
            128,
        )
        assert (phase.train.warmup_fraction, phase.train.weight_decay, phase.train.selection) == (0.0, 0.0, "last")
        assert "train_xcopa.sh" in phase.preset.label
    # scripts/train_lareqa.sh: lr 2e-5, 4 x 4, no warmup or decay, negatives within a micro-batch
    lareqa = base.get_config(intermediate="squad", target="lareqa")
    assert (lareqa.target.train.learning_rate, lareqa.target.train.batch_size, lareqa.target.train.micro_batches) == (
        2e-5,
        16,
        4,
    )
    assert lareqa.target.train.warmup_fraction == 0.0 and not lareqa.dual_encoder.full_batch_negatives


def test_own_preset_is_the_named_alternative():
    own = base.get_config(intermediate="siqa", target="xcopa", preset="own")
    assert own.target.train.epochs == 10.0 and own.target.train.selection == "best"
    assert own.intermediate.train.batch_size == 16 and own.target.preset.label.startswith("own")
    assert base.get_config(intermediate="squad", target="lareqa", preset="own").dual_encoder.full_batch_negatives
    with pytest.raises(ValueError, match="preset"):
        base.get_config(preset="mine")


def test_changed_keys_are_listed_and_the_selection_rule_reaches_the_trainer():
    config, _ = parse_config_args(
        [
            "--config=configs/stilts.py:intermediate=squad,target=xnli",
            "--config.target.train.learning_rate=3e-5",
            "--config.target.max_length=128",
        ]
    )
    assert changed_from_preset(config.target) == ["max_length", "train.learning_rate"]
    assert changed_from_preset(config.intermediate) == []
    assert trainer_config(config.target, 0).eval_every == 1000
    assert "first 500 English dev examples" in selection_rule(config.target)
    last, _ = parse_config_args(["--config=configs/stilts.py:intermediate=siqa,target=xcopa"])
    assert selection_rule(last.target) == "last step"
    assert (
        trainer_config(last.target, 0).eval_every is None
        and trainer_config(last.target, 0).early_stopping_patience == 0
    )


def test_the_protocol_header_names_split_preset_changes_and_selection():
    config, _ = parse_config_args(
        ["--config=configs/stilts.py:intermediate=squad,target=xnli", "--config.target.train.epochs=3"]
    )
    protocol = run_protocol(
        config,
        split="test",
        trained_target=True,
        phases={"target": {"best_step": 2000, "dev": 84.1, "selection": selection_rule(config.target)}},
    )
    assert protocol["setting"] == "zero-shot from English" and protocol["split"] == "test"
    assert protocol["target"]["changed_from_preset"] == ["train.epochs"] and protocol["target"]["selected_step"] == 2000
    text = protocol_markdown(protocol)
    assert "test split" in text and "changed: train.epochs" in text and "(step 2000)" in text
    assert "- intermediate: squad; preset paper" in text
    config, _ = parse_config_args(
        ["--config=configs/stilts.py:intermediate=none,target=xnli", "--config.target.train_languages=['en','de']"]
    )
    protocol = run_protocol(config, split="test", trained_target=True)
    assert protocol["intermediate"] is None and "not zero-shot" in protocol["setting"]


def test_averages_are_labelled_by_benchmark_language_list():
    xtreme_r = TASK2LANGS["xtreme-r"]["udpos"]
    per_language = {lang: {"f1": float(i)} for i, lang in enumerate(sorted(xtreme_r))}
    summary = summarize(
        "udpos", per_language, benchmark_name="udpos", protocol={"setting": "zero-shot from English", "split": "test"}
    )
    xtreme = sorted(TASK2LANGS["xtreme"]["udpos"])
    assert list(summary["benchmark_averages"]) == ["XTREME"]  # the evaluated list is XTREME-R's own
    assert summary["benchmark_averages"]["XTREME"]["languages"] == xtreme
    assert summary["benchmark_averages"]["XTREME"]["scores"]["f1"] == pytest.approx(
        sum(per_language[lang]["f1"] for lang in xtreme) / len(xtreme)
    )
    table = markdown_table(summary, [("f1", "F1")])
    assert table.index("Protocol: zero-shot from English, test split.") < table.index("| language |")
    assert f"**average ({len(xtreme_r)} evaluated languages)**" in table
    assert f"**average (XTREME: {len(xtreme)} languages)**" in table
    # An evaluated list equal to the benchmark's gives no second, identical average.
    xnli = {lang: {"accuracy": 1.0} for lang in TASK2LANGS["xtreme"]["xnli"]}
    assert summarize("xnli", xnli, benchmark_name="xnli")["benchmark_averages"] == {}


def test_selection_hands_on_the_best_or_the_last_model_and_scores_it_on_the_whole_dev_set():
    from types import SimpleNamespace

    from stilts_jax.pipeline.common import SelectionScores, selection_subset

    config, _ = parse_config_args(
        ["--config=configs/stilts.py:intermediate=squad,target=xnli", "--config.target.train.eval_subset=2"]
    )
    dev = ["a", "b", "c", "d"]
    assert selection_subset(config.target, dev) == ["a", "b"]
    calls = []

    def score(params, whole):
        calls.append((params, whole))
        return {"dev_score": float(params == "best")}

    result = SimpleNamespace(
        state=SimpleNamespace(params="final"),
        steps=3000,
        best_params="best",
        best_step=1000,
        evaluations={3000: {"dev_score": 0.0}},  # what the loop's last evaluation returned
    )
    selection = SelectionScores(score, config.target, subset_is_whole=False)
    assert selection.during_training("final") == {"dev_score": 0.0} and calls[-1] == ("final", False)
    assert selection.selected(result) == ("best", 1000)  # a checkpoint before the last step
    assert selection.final(result) == {"dev_score": 1.0} and calls[-1] == ("best", True)
    # "last" hands on the final parameters; with the subset being the whole dev set the last score is reused.
    last, _ = parse_config_args(
        ["--config=configs/stilts.py:intermediate=siqa,target=xcopa", "--config.target.train.eval_subset=0"]
    )
    selection = SelectionScores(score, last.target, subset_is_whole=True)
    selection.during_training("final")
    before = len(calls)
    assert selection.selected(result) == ("final", 3000) and selection.final(result) == {"dev_score": 0.0}
    assert len(calls) == before


def test_a_joint_stage_and_an_evaluated_model_are_named_in_the_protocol():
    joint, _ = parse_config_args(["--config=configs/stilts.py:intermediate=squad&mnli,target=xnli"])
    assert joint.workdir == "workdir/squad-mnli_to_xnli"
    protocol = run_protocol(joint, split="test", trained_target=True)
    assert protocol["intermediate"]["tasks"] == ["squad", "mnli"]
    assert "- intermediate: squad & mnli; preset" in protocol_markdown(protocol)

    evaluated, _ = parse_config_args(["--config=configs/demo.py", "--config.target.evaluate_model=/models/qa"])
    protocol = run_protocol(evaluated, split="test", trained_target=True)
    assert (
        "- intermediate: not trained in this run: target.evaluate_model /models/qa is evaluated as it was "
        "trained" in protocol_markdown(protocol)
    )
