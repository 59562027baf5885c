"""Importing and exporting Hugging Face weights: round trips, fallbacks and the errors for bad folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch
from transformers import AutoModel, XLMRobertaConfig, XLMRobertaForMaskedLM

from stilts_jax.core.errors import ModelConfigError, WeightsError
from stilts_jax.models import hf_files
from stilts_jax.models.hf_weights import export_hf, load_pretrained
from tests.hf_reference import load_reference_model, padded_batch


def _copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(folder, target)
    return target


def _outputs(encoder):
    ids, mask = padded_batch(encoder.config.vocab_size, [9, 4], encoder.config.pad_token_id, 12)
    return np.asarray(encoder(jnp.asarray(ids), jnp.asarray(mask)).last_hidden_state)


@pytest.mark.parametrize("model_type", ["xlm-roberta", "bert"])
def test_export_round_trip_loads_in_transformers_with_identical_outputs(model_type, xlmr_dir, bert_dir, tmp_path):
    folder = xlmr_dir if model_type == "xlm-roberta" else bert_dir
    encoder, _ = load_pretrained(folder)
    exported = export_hf(encoder, tmp_path / "exported", tokenizer_dir=folder)
    assert (exported / "model.safetensors").exists() and (exported / "tokenizer.json").exists()

    original, reloaded = (
        load_reference_model(folder),
        AutoModel.from_pretrained(exported, add_pooling_layer=False).eval(),
    )
    assert type(reloaded) is type(original)
    original_state, reloaded_state = original.state_dict(), reloaded.state_dict()
    for key, tensor in original_state.items():
        assert torch.equal(tensor, reloaded_state[key]), key
    ids, mask = padded_batch(encoder.config.vocab_size, [9, 4], encoder.config.pad_token_id, 12)
    with torch.no_grad():
        a = original(torch.tensor(ids).long(), attention_mask=torch.tensor(mask)).last_hidden_state
        b = reloaded(torch.tensor(ids).long(), attention_mask=torch.tensor(mask)).last_hidden_state
    assert torch.equal(a, b)
    # And back into JAX: the same encoder.
    again, _ = load_pretrained(exported)
    np.testing.assert_array_equal(_outputs(again), _outputs(encoder))


def test_export_never_leaves_a_half_written_folder(xlmr_dir, tmp_path, monkeypatch):
    encoder, _ = load_pretrained(xlmr_dir)
    target = export_hf(encoder, tmp_path / "exported")
    before = (target / "model.safetensors").read_bytes()

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.numpy, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        export_hf(encoder, target)
    assert (target / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]


def test_masked_lm_checkpoint_loads_its_encoder_and_skips_the_head(xlmr_dir, tmp_path):
    config = XLMRobertaConfig.from_pretrained(xlmr_dir)
    torch.manual_seed(3)
    mlm = XLMRobertaForMaskedLM(config).eval()
    base = load_reference_model(xlmr_dir)
    mlm.roberta.load_state_dict(base.state_dict(), strict=False)
    mlm.save_pretrained(tmp_path / "mlm")
    keys = safetensors.numpy.load_file(str(tmp_path / "mlm" / "model.safetensors")).keys()
    assert any(k.startswith("roberta.") for k in keys) and any(k.startswith("lm_head.") for k in keys)
    from_mlm, _ = load_pretrained(tmp_path / "mlm")
    from_base, _ = load_pretrained(xlmr_dir)
    np.testing.assert_array_equal(_outputs(from_mlm), _outputs(from_base))


def test_pytorch_bin_fallback_and_bfloat16_safetensors(xlmr_dir, tmp_path):
    state = load_reference_model(xlmr_dir).state_dict()
    reference, _ = load_pretrained(xlmr_dir)

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy(xlmr_dir / "config.json", bin_dir)
    torch.save(state, bin_dir / "pytorch_model.bin")
    from_bin, _ = load_pretrained(bin_dir)
    np.testing.assert_array_equal(_outputs(from_bin), _outputs(reference))

    bf16_dir = tmp_path / "bf16"
    bf16_dir.mkdir()
    shutil.copy(xlmr_dir / "config.json", bf16_dir)
    safetensors.torch.save_file(
        {k: v.to(torch.bfloat16).contiguous() for k, v in state.items()}, bf16_dir / "model.safetensors"
    )
    from_bf16, _ = load_pretrained(bf16_dir)
    word = np.asarray(from_bf16.embeddings.word[...])
    expected = state["embeddings.word_embeddings.weight"].to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(word, expected)


def test_folder_without_weights_names_what_is_expected(xlmr_dir, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    shutil.copy(xlmr_dir / "config.json", folder)
    with pytest.raises(WeightsError, match="no weights in .*expected model.safetensors"):
        load_pretrained(folder)
    with pytest.raises(WeightsError, match="does not exist"):
        load_pretrained(tmp_path / "nowhere" / "model")


def _rewrite_weights(folder: Path, edit) -> None:
    tensors = dict(safetensors.numpy.load_file(str(folder / "model.safetensors")))
    edit(tensors)
    safetensors.numpy.save_file(tensors, str(folder / "model.safetensors"))


def test_missing_unexpected_and_misshaped_keys_are_all_listed(xlmr_dir, tmp_path):
    folder = _copy(xlmr_dir, tmp_path)

    def edit(tensors):
        del tensors["encoder.layer.1.attention.self.key.bias"]
        tensors["encoder.layer.0.attention.self.rotary.weight"] = np.zeros(3, np.float32)
        tensors["encoder.layer.2.output.dense.weight"] = tensors["encoder.layer.2.output.dense.weight"][:, :-1].copy()

    _rewrite_weights(folder, edit)
    with pytest.raises(WeightsError) as info:
        load_pretrained(folder)
    message = str(info.value)
    assert "missing (1): ['encoder.layer.1.attention.self.key.bias']" in message
    assert "unexpected (1): ['encoder.layer.0.attention.self.rotary.weight']" in message
    assert "wrong shape (1): ['encoder.layer.2.output.dense.weight" in message


def test_config_that_does_not_fit_the_weights_is_reported(xlmr_dir, tmp_path):
    folder = _copy(xlmr_dir, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] += 1
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match=r"missing \(16\).*encoder\.layer\.3\."):
        load_pretrained(folder)


def test_unsupported_model_type_lists_the_supported_ones(xlmr_dir, tmp_path):
    folder = _copy(xlmr_dir, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "gpt2"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelConfigError, match="unsupported model_type 'gpt2'.*bert, roberta, xlm-roberta"):
        load_pretrained(folder)


def test_truncated_safetensors_is_detected(xlmr_dir, tmp_path):
    folder = _copy(xlmr_dir, tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        load_pretrained(folder)
    (folder / "model.safetensors").write_bytes(data[:5])
    with pytest.raises(WeightsError, match="truncated"):
        load_pretrained(folder)


def test_hub_id_without_network_explains_how_to_get_the_model(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="hf download stilts-test/no-such-model"):
        hf_files.resolve_model_dir("stilts-test/no-such-model")
