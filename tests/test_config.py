"""Config files, command-line overrides and their errors."""

from __future__ import annotations

import pytest

from stilts_jax.config.loader import ConfigError, parse_config_args


def test_recipe_and_factory_load_with_overrides():
    config, rest = parse_config_args(["--config=configs/squad_to_tydiqa.py", "--config.target.train.epochs=3",
                                      "--config.model.name", "xlm-roberta-base", "--config.mesh.fsdp=2", "--other"])
    assert rest == ["--other"]
    assert config.intermediate.task == "squad" and config.target.task == "tydiqa"
    assert config.target.train.epochs == 3.0 and isinstance(config.target.train.epochs, float)
    assert config.model.name == "xlm-roberta-base" and config.mesh.fsdp == 2
    assert config.model.name != "" and config.target.train.learning_rate == 1e-5

    factory, _ = parse_config_args(["--config=configs/stilts.py:intermediate=none,target=tydiqa"])
    assert factory.intermediate.task == "" and factory.workdir == "workdir/baseline_to_tydiqa"
    demo, _ = parse_config_args(["--config=configs/demo.py", "--config.evaluation.languages=['ar','ru']"])
    assert demo.model.make_tiny and demo.target.source.kind == "xtreme" and list(demo.evaluation.languages) == ["ar", "ru"]


def test_unknown_keys_and_bad_values_name_the_fix():
    with pytest.raises(ConfigError, match=r"unknown config key 'target.train.epoch': target.train has no 'epoch'; valid keys there: .*epochs"):
        parse_config_args(["--config=configs/demo.py", "--config.target.train.epoch=3"])
    with pytest.raises(ConfigError, match=r"valid keys there: distributed, dual_encoder, evaluation, intermediate, logical_rules, mesh, model, on_change, seed, target, task_modules, workdir"):
        parse_config_args(["--config=configs/demo.py", "--config.modle.name=x"])
    with pytest.raises(ConfigError, match=r"--config.target.train.batch_size=.big. is not a valid int"):
        parse_config_args(["--config=configs/demo.py", "--config.target.train.batch_size=big"])
    with pytest.raises(ConfigError, match=r"is a section; set one of its keys"):
        parse_config_args(["--config=configs/demo.py", "--config.target.train=3"])
    with pytest.raises(ConfigError, match=r"config file configs/nope.py does not exist"):
        parse_config_args(["--config=configs/nope.py"])
    with pytest.raises(ConfigError, match=r"pass --config="):
        parse_config_args([])
