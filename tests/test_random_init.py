"""model.random_init: an encoder in a model's real shapes with random weights, without any weight download."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from stilts_jax.config.loader import parse_config_args
from stilts_jax.core.errors import InputError
from stilts_jax.core.tokenization import DEMO_TOKENIZER_DIR
from stilts_jax.models.config import SHIPPED_CONFIGS_DIR, EncoderConfig
from stilts_jax.pipeline.context import RunContext, random_init_model_dir
from stilts_jax.pipeline.reuse import fingerprint_of, model_settings


def test_a_hub_name_uses_the_shipped_config_and_an_unknown_one_names_the_fix():
    folder = random_init_model_dir("xlm-roberta-large")
    assert folder == SHIPPED_CONFIGS_DIR / "xlm-roberta-large"
    config = EncoderConfig.from_json_file(folder / "config.json")
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (1024, 24, 250002)
    assert random_init_model_dir("FacebookAI/xlm-roberta-base") == SHIPPED_CONFIGS_DIR / "xlm-roberta-base"
    with pytest.raises(InputError, match=r"xlm-roberta-large.*--config.model.name="):
        random_init_model_dir("no-such-model")


def _config(tmp_path, *overrides):
    config, _ = parse_config_args(
        ["--config=configs/demo.py", f"--config.workdir={tmp_path / 'run'}", "--config.model.make_tiny=false"]
        + ["--config.model.random_init=true", *overrides]
    )
    return config


def test_the_encoder_is_random_in_the_folders_shapes_and_the_same_at_every_call(tmp_path, monkeypatch):
    shipped = json.loads((SHIPPED_CONFIGS_DIR / "xlm-roberta-base" / "config.json").read_text())
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**shipped, "num_hidden_layers": 1, "vocab_size": 4002}))

    def no_download(*args, **kwargs):
        raise AssertionError("model.random_init must not read or download weights")

    monkeypatch.setattr("stilts_jax.models.hf_files.read_state_dict", no_download)
    monkeypatch.setattr("stilts_jax.models.hf_files._download_from_hub", no_download)
    context = RunContext(
        _config(tmp_path, f"--config.model.name={folder}", f"--config.model.tokenizer={DEMO_TOKENIZER_DIR}")
    )
    encoder = context.pretrained_encoder()
    assert encoder.config.hidden_size == 768 and encoder.config.num_hidden_layers == 1
    table = np.asarray(jax.device_get(encoder.embeddings.word[...]))
    assert table.shape == (4002, 768) and 0.005 < table.std() < 0.1  # initializer_range 0.02, not zeros
    again = np.asarray(jax.device_get(context.pretrained_encoder().embeddings.word[...]))
    np.testing.assert_array_equal(table, again)


def test_a_shipped_config_without_a_tokenizer_asks_for_one(tmp_path):
    with pytest.raises(InputError, match=r"--config.model.tokenizer=.*assets/tokenizer"):
        RunContext(_config(tmp_path, "--config.model.name=xlm-roberta-large"))


def test_the_phase_fingerprint_holds_random_init_only_when_it_is_on(tmp_path):
    config = _config(tmp_path)
    assert model_settings(config)["random_init"] is True
    config.model.random_init = False
    off = model_settings(config)
    assert "random_init" not in off  # workdirs started before the key existed keep their fingerprints
    config.model.random_init = True
    assert fingerprint_of(model_settings(config)) != fingerprint_of(off)
