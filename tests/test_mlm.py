"""The MLM auxiliary: dynamic masking, the lm_head against transformers' XLMRobertaForMaskedLM, training with MLM."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

from stilts_jax.core import distributed
from stilts_jax.core.errors import InputError, WeightsError
from stilts_jax.core.tokenization import load_demo_tokenizer
from stilts_jax.data.mlm import DynamicMasking, mlm_features, read_text_lines
from stilts_jax.models.config import tiny_config
from stilts_jax.models.encoder import Encoder
from stilts_jax.models.heads import (
    ClassificationHead,
    MaskedLMHead,
    TaskModel,
    classification_loss,
    masked_lm_logits,
    masked_lm_loss,
)
from stilts_jax.models.hf_files import read_state_dict
from stilts_jax.models.hf_weights import convert_mlm_head, load_mlm_head, load_pretrained
from stilts_jax.train.metrics_log import read_metrics
from stilts_jax.train.multitask import MultiTaskModel, TaskData, train_multitask
from stilts_jax.train.optimizer import OptimizerConfig
from tests.hf_reference import SMALL, padded_batch
from tests.train_harness import SEQ, VOCAB, synthetic_features, trainer_config

TEXT = Path(__file__).parent.parent / "stilts_jax" / "assets" / "text"


def test_masking_follows_bert_15_80_10_10_and_the_seed():
    tokenizer = load_demo_tokenizer()
    lines = read_text_lines([str(TEXT / "parallel.*.txt")])
    assert len(lines) == 17 * 80
    features = mlm_features(lines, tokenizer, max_length=48)
    masking = DynamicMasking(len(tokenizer), tokenizer.mask_token_id, tokenizer.all_special_ids, seed=0)
    specials = np.asarray(tokenizer.all_special_ids)
    chosen = masked = random = kept = maskable_total = 0
    for position in range(20):
        rows = np.random.default_rng(position).choice(len(lines), 64, replace=False)
        batch = {k: v[rows] for k, v in features.items()}
        out = masking(batch, position)
        maskable = (batch["attention_mask"] > 0) & ~np.isin(batch["input_ids"], specials)
        maskable_total += maskable.sum()
        for i in range(len(rows)):
            slots = out["mlm_weights"][i] > 0
            positions = out["mlm_positions"][i][slots]
            assert len(positions) == max(1, round(0.15 * maskable[i].sum()))
            assert maskable[i, positions].all()  # never a special token or padding
            np.testing.assert_array_equal(out["mlm_labels"][i][slots], batch["input_ids"][i, positions])
            untouched = np.setdiff1d(np.arange(48), positions)
            np.testing.assert_array_equal(out["input_ids"][i, untouched], batch["input_ids"][i, untouched])
            new = out["input_ids"][i, positions]
            masked += np.sum(new == tokenizer.mask_token_id)
            kept += np.sum(new == batch["input_ids"][i, positions])
            random += np.sum((new != tokenizer.mask_token_id) & (new != batch["input_ids"][i, positions]))
            chosen += len(positions)
        np.testing.assert_array_equal(masking(batch, position)["input_ids"], out["input_ids"])  # a pure function
        assert not np.array_equal(masking(batch, position + 1000)["mlm_positions"], out["mlm_positions"])
    assert abs(chosen / maskable_total - 0.15) < 0.01
    assert abs(masked / chosen - 0.8) < 0.03
    # A random replacement can draw the original token back (1 in ~1000 here), so "kept" is ~10% plus a little.
    assert abs(kept / chosen - 0.1) < 0.02 and abs(random / chosen - 0.1) < 0.02
    other_seed = DynamicMasking(len(tokenizer), tokenizer.mask_token_id, tokenizer.all_special_ids, seed=1)
    assert not np.array_equal(other_seed(batch, 0)["mlm_positions"], masking(batch, 0)["mlm_positions"])


def test_text_files_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="matches no file"):
        read_text_lines([str(tmp_path / "*.txt")])
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("ok\nca\xe7a\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin1.txt line 2: not UTF-8"):
        read_text_lines([bad])


@pytest.fixture(scope="module")
def masked_lm_dir(tmp_path_factory) -> Path:
    """A small random XLMRobertaForMaskedLM saved by transformers (lm_head included)."""
    vocab_size = len(load_demo_tokenizer())
    torch.manual_seed(0)
    model = XLMRobertaForMaskedLM(
        XLMRobertaConfig(vocab_size=vocab_size, pad_token_id=1, bos_token_id=0, eos_token_id=2, **SMALL)
    )
    with torch.no_grad():  # random biases and LayerNorm parameters, so a mapping error in any of them shows
        for name, param in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name:
                param.add_(0.1 * torch.randn_like(param))
    folder = tmp_path_factory.mktemp("xlmr_mlm")
    model.eval().save_pretrained(folder)
    return folder


def test_mlm_head_logits_match_xlm_roberta_for_masked_lm(masked_lm_dir):
    reference = XLMRobertaForMaskedLM.from_pretrained(masked_lm_dir).eval()
    encoder, _ = load_pretrained(masked_lm_dir, attention="xla")
    config = encoder.config
    head = MaskedLMHead(config.hidden_size, config.vocab_size, config.layer_norm_eps, rngs=nnx.Rngs(0))
    assert load_mlm_head(masked_lm_dir, head)
    ids, mask = padded_batch(config.vocab_size, [20, 13, 5], config.pad_token_id, 24)
    positions = np.tile(np.arange(24, dtype=np.int32), (3, 1))
    ours = masked_lm_logits(
        TaskModel(encoder, head),
        {"input_ids": jnp.asarray(ids), "attention_mask": jnp.asarray(mask), "mlm_positions": jnp.asarray(positions)},
    )
    with torch.no_grad():
        theirs = reference(torch.tensor(ids).long(), attention_mask=torch.tensor(mask)).logits.numpy()
    real = mask > 0
    error = np.max(np.abs(np.asarray(ours)[real] - theirs[real]))
    assert error < 1e-4, f"max abs logit difference {error}"
    assert np.std(theirs[real]) > 0.1  # the comparison is not between two near-constant tensors


def test_mlm_head_import_is_strict(masked_lm_dir, xlmr_dir):
    state = read_state_dict(masked_lm_dir)
    encoder_config = load_pretrained(masked_lm_dir)[0].config
    assert convert_mlm_head(read_state_dict(xlmr_dir), encoder_config) is None  # no lm_head: None, head stays random
    assert not load_mlm_head(xlmr_dir, MaskedLMHead(48, encoder_config.vocab_size, rngs=nnx.Rngs(0)))
    partial = {k: v for k, v in state.items() if k != "lm_head.dense.weight"}
    with pytest.raises(WeightsError, match=r"missing \['lm_head.dense.weight'\]"):
        convert_mlm_head(partial, encoder_config)
    untied = {**state, "lm_head.decoder.weight": np.ones_like(state["roberta.embeddings.word_embeddings.weight"])}
    with pytest.raises(WeightsError, match="lm_head.decoder.weight differs from the word embeddings"):
        convert_mlm_head(untied, encoder_config)
    misshaped = {**state, "lm_head.bias": np.zeros(7, np.float32)}
    with pytest.raises(WeightsError, match=r"wrong shape \['lm_head.bias: checkpoint \(7,\)"):
        convert_mlm_head(misshaped, encoder_config)


def _repeated_token_text(num_rows: int = 96, seed: int = 0) -> dict[str, np.ndarray]:
    """Rows of one repeated token out of four: a masked token is learnable (its neighbours, the token set)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(8, SEQ + 1, num_rows)
    ids = np.ones((num_rows, SEQ), np.int32)  # 1: padding
    for i, (length, token) in enumerate(zip(lengths, rng.integers(10, 14, num_rows))):
        ids[i, :length] = token
        ids[i, 0], ids[i, length - 1] = 0, 2
    mask = (ids != 1).astype(np.int32)
    k = 3
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "mlm_positions": np.zeros((num_rows, k), np.int32),
        "mlm_labels": np.zeros((num_rows, k), np.int32),
        "mlm_weights": np.zeros((num_rows, k), np.float32),
    }


@pytest.mark.slow
def test_mlm_auxiliary_run_trains_both_objectives(tmp_path):
    config = tiny_config(
        VOCAB,
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=64,
        num_hidden_layers=2,
        max_position_embeddings=SEQ + 2,
    )
    rngs = nnx.Rngs(0)
    model = MultiTaskModel(
        Encoder(config, rngs=rngs),
        {"cls": ClassificationHead(32, 3, rngs=rngs), "mlm": MaskedLMHead(32, VOCAB, rngs=rngs)},
    )
    before = jax.device_get(nnx.to_pure_dict(nnx.state(model)))
    masking = DynamicMasking(VOCAB, mask_id=7, special_ids=(0, 1, 2, 3), seed=0)
    tasks = [
        TaskData("cls", classification_loss, synthetic_features()),
        TaskData("mlm", masked_lm_loss, _repeated_token_text(), transform=masking, share=0.3),
    ]
    mesh = distributed.make_mesh({"data": -1}, devices=jax.devices()[:1])
    result = train_multitask(
        model,
        tasks,
        trainer_config(100, checkpoint_every=1000, optimizer=OptimizerConfig(learning_rate=1e-2, warmup_fraction=0.1)),
        workdir=tmp_path,
        mesh=mesh,
        rules=distributed.DEFAULT_LOGICAL_RULES,
    )
    rows = read_metrics(tmp_path)
    for task in ("cls", "mlm"):
        losses = [r[f"{task}/loss"] for r in rows if f"{task}/loss" in r]
        assert len(losses) >= 20, f"{task} trained on only {len(losses)} of 100 steps"
        assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5]), (task, losses)
        if task == "mlm":  # below log(4): the masked token is read from its neighbours, not guessed from the token set
            assert np.mean(losses[-5:]) < 1.2, losses
    after = jax.device_get(result.state.params)
    for task in ("cls", "mlm"):
        changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), before["heads"][task], after["heads"][task])
        assert all(jax.tree.leaves(changed)), f"some {task} head parameters never changed: {changed}"
