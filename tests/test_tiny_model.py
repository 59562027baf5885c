"""The tiny offline model: a Hugging Face folder that transformers and this project both load."""

from __future__ import annotations

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from stilts_jax import tiny_model
from stilts_jax.models.hf_weights import load_pretrained


def test_tiny_model_loads_everywhere_and_is_seeded(tmp_path):
    assert tiny_model.main(["--output", str(tmp_path / "a"), "--seed", "1"]) == 0
    tiny_model.make_tiny_model(tmp_path / "b", seed=1)
    tiny_model.make_tiny_model(tmp_path / "c", seed=2)
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert (tmp_path / "a" / "model.safetensors").read_bytes() != (tmp_path / "c" / "model.safetensors").read_bytes()

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "a")
    reference = AutoModel.from_pretrained(tmp_path / "a", add_pooling_layer=False).eval()
    assert reference.config.vocab_size == len(tokenizer)
    encoder, _ = load_pretrained(tmp_path / "a")
    batch = tokenizer(["Der Rhein fließt durch sechs Länder.", "Привет"], padding=True, return_tensors="np")
    ours = np.asarray(encoder(batch["input_ids"], batch["attention_mask"]).last_hidden_state)
    with torch.no_grad():
        theirs = reference(**{k: torch.tensor(v) for k, v in batch.items()}).last_hidden_state.numpy()
    assert np.max(np.abs(ours - theirs)) < 1e-5
