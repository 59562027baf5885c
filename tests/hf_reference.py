"""Reference models: transformers' PyTorch XLMRobertaModel and BertModel from small random configs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

from stilts_jax.core.tokenization import DEMO_TOKENIZER_DIR, load_demo_tokenizer

SMALL = dict(
    hidden_size=48, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96, max_position_embeddings=66
)


def build_reference_model(model_type: str, vocab_size: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    if model_type == "xlm-roberta":
        config = XLMRobertaConfig(vocab_size=vocab_size, pad_token_id=1, bos_token_id=0, eos_token_id=2, **SMALL)
        model = XLMRobertaModel(config, add_pooling_layer=False)
    elif model_type == "bert":
        config = BertConfig(vocab_size=vocab_size, type_vocab_size=2, **SMALL)
        model = BertModel(config, add_pooling_layer=False)
    else:
        raise ValueError(model_type)
    # Random LayerNorm parameters and biases, so that a mapping error in any of them shows.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                param.add_(0.1 * torch.randn_like(param))
    return model.eval()


def save_reference_model(model_type: str, folder: Path) -> Path:
    vocab_size = len(load_demo_tokenizer())
    model = build_reference_model(model_type, vocab_size)
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "sentencepiece.bpe.model", "special_tokens_map.json"):
        if (DEMO_TOKENIZER_DIR / name).exists():
            shutil.copy(DEMO_TOKENIZER_DIR / name, folder / name)
    return folder


def load_reference_model(folder: Path) -> torch.nn.Module:
    from transformers import AutoModel

    return AutoModel.from_pretrained(folder, add_pooling_layer=False).eval()


def padded_batch(
    vocab_size: int, lengths: list[int], pad_id: int, seq_len: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Random token ids (avoiding the special ids 0..3), right-padded to seq_len, and the attention mask."""
    rng = np.random.RandomState(seed)
    ids = rng.randint(4, vocab_size, size=(len(lengths), seq_len)).astype(np.int32)
    mask = (np.arange(seq_len)[None, :] < np.array(lengths)[:, None]).astype(np.int32)
    ids[mask == 0] = pad_id
    return ids, mask
