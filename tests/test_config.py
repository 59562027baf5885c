"""Config files, command-line overrides and their errors."""

from __future__ import annotations

import pytest

from stilts_jax.config.loader import ConfigError, parse_config_args


def test_recipe_and_factory_load_with_overrides():
    config, rest = parse_config_args(
        [
            "--config=configs/squad_to_tydiqa.py",
            "--config.target.train.epochs=3",
            "--config.model.name",
            "xlm-roberta-base",
            "--config.mesh.fsdp=2",
            "--other",
        ]
    )
    assert rest == ["--other"]
    assert config.intermediate.task == "squad" and config.target.task == "tydiqa"
    assert config.target.train.epochs == 3.0 and isinstance(config.target.train.epochs, float)
    assert config.model.name == "xlm-roberta-base" and config.mesh.fsdp == 2
    assert config.model.name != "" and config.target.train.learning_rate == 1e-5

    factory, _ = parse_config_args(["--config=configs/stilts.py:intermediate=none,target=tydiqa"])
    assert factory.intermediate.task == "" and factory.workdir == "workdir/baseline_to_tydiqa"
    demo, _ = parse_config_args(["--config=configs/demo.py", "--config.evaluation.languages=['ar','ru']"])
    assert (
        demo.model.make_tiny and demo.target.source.kind == "xtreme" and list(demo.evaluation.languages) == ["ar", "ru"]
    )


def test_unknown_keys_and_bad_values_name_the_fix():
    with pytest.raises(
        ConfigError,
        match=r"unknown config key 'target.train.epoch': target.train has no 'epoch'; valid keys there: .*epochs",
    ):
        parse_config_args(["--config=configs/demo.py", "--config.target.train.epoch=3"])
    with pytest.raises(
        ConfigError,
        match=r"valid keys there: compilation_cache, distributed, dry_run, dual_encoder, evaluation, feature_cache, intermediate, logging, logical_rules, mesh, model, on_change, seed, target, task_modules, workdir",
    ):
        parse_config_args(["--config=configs/demo.py", "--config.modle.name=x"])
    with pytest.raises(ConfigError, match=r"--config.target.train.batch_size=.big. is not a valid int"):
        parse_config_args(["--config=configs/demo.py", "--config.target.train.batch_size=big"])
    with pytest.raises(ConfigError, match=r"is a section; set one of its keys"):
        parse_config_args(["--config=configs/demo.py", "--config.target.train=3"])
    with pytest.raises(ConfigError, match=r"config file configs/nope.py does not exist"):
        parse_config_args(["--config=configs/nope.py"])
    with pytest.raises(ConfigError, match=r"pass --config="):
        parse_config_args([])


def test_a_changed_task_brings_its_own_defaults_unless_set():
    xnli, _ = parse_config_args(["--config=configs/squad_to_tydiqa.py", "--config.target.task=xnli"])
    direct, _ = parse_config_args(["--config=configs/stilts.py:intermediate=squad,target=xnli"])
    for key in ("max_length", "train.batch_size", "train.epochs", "train.learning_rate"):
        node_a, node_b = xnli.target, direct.target
        for part in key.split("."):
            node_a, node_b = node_a[part], node_b[part]
        assert node_a == node_b, key
    assert xnli.target.max_length == 256 and xnli.target.train.batch_size == 32
    assert xnli.target.preset["values"]["max_length"] == 256 and "d_write_configs.sh:15" in xnli.target.preset.label

    kept, _ = parse_config_args(
        ["--config=configs/squad_to_tydiqa.py", "--config.target.task=xnli", "--config.target.max_length=384"]
    )
    assert kept.target.max_length == 384 and kept.target.train.batch_size == 32
    demo, _ = parse_config_args(["--config=configs/demo.py", "--config.target.task=xnli"])
    assert demo.target.max_length == 160 and demo.target.train.learning_rate == 5e-3  # the recipe's own values


def test_workdir_flag_and_recipe_argument_errors():
    config, _ = parse_config_args(["--config=configs/demo.py", "--workdir=/tmp/elsewhere"])
    assert config.workdir == "/tmp/elsewhere"
    with pytest.raises(ConfigError, match=r"configs/stilts.py:target=xnli,bad=1: .*unknown: \['bad'\]"):
        parse_config_args(["--config=configs/stilts.py:target=xnli,bad=1"])


def test_help_lists_the_recipes_and_every_key(capsys):
    from stilts_jax import main as main_module

    assert main_module.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert (
        "configs/chain_demo.py" in out
        and "The offline default" in out
        and "configs/base.py" not in out.split("Config keys")[0]
    )
    assert "  target.train.batch_size = 16    (an integer >= 1)" in out  # TyDiQA-GoldP, the default target
    assert "  evaluation.bucc_threshold = 'dev'    (one of 'dev', 'oracle')" in out
