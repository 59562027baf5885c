"""XTREME-R's retrieval model (google-research/xtreme third_party/bert.py BertForRetrieval): the pooler embedding
against transformers' PyTorch pooler_output, the learned logit scale, and gradient caching with both."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
import torch
from flax import nnx
from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

from stilts_jax.core.distributed import DEFAULT_LOGICAL_RULES, make_mesh
from stilts_jax.core.errors import WeightsError
from stilts_jax.core.tokenization import load_demo_tokenizer
from stilts_jax.models.config import tiny_config
from stilts_jax.models.encoder import Encoder
from stilts_jax.models.hf_weights import load_pooler, load_pretrained
from stilts_jax.tasks.dual_encoder import DualEncoder, make_cached_in_batch_grads, make_in_batch_loss
from stilts_jax.train.feeding import BatchFeeder
from stilts_jax.train.loop import train
from stilts_jax.train.optimizer import decays
from stilts_jax.train.state import ModelSpec
from stilts_jax.train.step import accumulate_micro_batch_grads
from tests.hf_reference import SMALL, padded_batch
from tests.train_harness import trainer_config

RULES = DEFAULT_LOGICAL_RULES
LENGTHS, SEQ = [20, 13, 5, 1], 24


def _save_model_with_pooler(model_type: str, folder):
    """A small random XLMRobertaModel / BertModel WITH its pooler (transformers' default), saved by transformers."""
    torch.manual_seed(0)
    vocab_size = len(load_demo_tokenizer())
    if model_type == "xlm-roberta":
        model = XLMRobertaModel(
            XLMRobertaConfig(vocab_size=vocab_size, pad_token_id=1, bos_token_id=0, eos_token_id=2, **SMALL)
        )
    else:
        model = BertModel(BertConfig(vocab_size=vocab_size, type_vocab_size=2, **SMALL))
    with torch.no_grad():  # random biases and LayerNorms (the pooler's bias too), so a mapping error shows
        for name, param in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                param.add_(0.1 * torch.randn_like(param))
    model.eval().save_pretrained(folder)
    assert "pooler.dense.weight" in safetensors.numpy.load_file(str(folder / "model.safetensors"))
    return model


def _pooler_model(folder) -> DualEncoder:
    encoder, _ = load_pretrained(folder, attention="xla")
    model = DualEncoder(encoder, "pooler", learned_scale=True)
    assert load_pooler(folder, model.pooler)
    return model


@pytest.mark.parametrize("model_type", ["xlm-roberta", "bert"])
def test_pooler_embedding_equals_transformers_pooler_output_l2_normalised(model_type, tmp_path):
    reference = _save_model_with_pooler(model_type, tmp_path / "model")
    model = _pooler_model(tmp_path / "model")
    ids, mask = padded_batch(model.encoder.config.vocab_size, LENGTHS, model.encoder.config.pad_token_id, SEQ)
    ours = np.asarray(jax.jit(model.embed)(jnp.asarray(ids), jnp.asarray(mask)))
    with torch.no_grad():
        pooled = reference(torch.tensor(ids).long(), attention_mask=torch.tensor(mask)).pooler_output
        theirs = torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()  # bert.py normalized_cls_token
    err = np.max(np.abs(ours - theirs))
    assert err < 1e-5, f"max abs difference {err}"
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-6)
    # The raw <s> state is another embedding: the pooler is really applied.
    cls = DualEncoder(model.encoder, "cls")
    assert np.max(np.abs(np.asarray(cls.embed(jnp.asarray(ids), jnp.asarray(mask))) - ours)) > 1e-2


def test_pooler_under_a_task_prefix_loads_the_same_and_a_partial_pooler_is_an_error(tmp_path):
    _save_model_with_pooler("xlm-roberta", tmp_path / "model")
    tensors = safetensors.numpy.load_file(str(tmp_path / "model" / "model.safetensors"))
    expected = _pooler_model(tmp_path / "model").pooler
    prefixed = tmp_path / "prefixed"
    prefixed.mkdir()
    (prefixed / "config.json").write_bytes((tmp_path / "model" / "config.json").read_bytes())
    safetensors.numpy.save_file({f"roberta.{k}": v for k, v in tensors.items()}, str(prefixed / "model.safetensors"))
    loaded = _pooler_model(prefixed).pooler
    np.testing.assert_array_equal(np.asarray(loaded.dense[...]), np.asarray(expected.dense[...]))
    np.testing.assert_array_equal(np.asarray(loaded.dense[...]), tensors["pooler.dense.weight"].T)
    np.testing.assert_array_equal(np.asarray(loaded.dense_bias[...]), tensors["pooler.dense.bias"])

    partial = dict(tensors)
    del partial["pooler.dense.bias"]
    safetensors.numpy.save_file(partial, str(prefixed / "model.safetensors"))
    with pytest.raises(WeightsError, match=r"pooler does not fit: missing \['pooler.dense.bias'\]"):
        load_pooler(prefixed, expected)


def _fake_pipeline(model_dir, *, allow_random: bool = False, make_tiny: bool = False, learned_scale: bool = True):
    from configs.base import get_config

    config = get_config("squad", "lareqa")
    config.dual_encoder.allow_random_pooler = allow_random
    config.dual_encoder.learned_scale = learned_scale
    config.model.make_tiny = make_tiny
    config.model.name = str(model_dir)
    config.model.dtype = "float32"
    from stilts_jax.pipeline.context import RunContext

    return RunContext(config)


def test_defaults_are_the_published_model_and_a_checkpoint_without_pooler_names_the_alternative(xlmr_dir, capsys):
    from configs.base import get_config
    from stilts_jax.pipeline import dual_encoder as pipeline_module

    d = get_config("squad", "lareqa").dual_encoder
    assert (d.pooling, d.learned_scale, d.scale, d.allow_random_pooler) == ("pooler", True, 100.0, False)

    encoder, _ = load_pretrained(xlmr_dir)  # the session fixture: XLMRobertaModel(add_pooling_layer=False)
    pipeline = _fake_pipeline(xlmr_dir)
    model = pipeline_module._model(pipeline, encoder)
    assert model.learned_scale and float(model.logit_scale[...]) == 100.0
    assert load_pooler(xlmr_dir, model.pooler) is False
    with pytest.raises(
        WeightsError,
        match=r"has no pooler weights.*--config\.dual_encoder\.pooling=cls.*"
        r"--config\.dual_encoder\.allow_random_pooler=true",
    ):
        pipeline_module.load_checkpoint_pooler(pipeline, model)
    for flags in (dict(allow_random=True), dict(make_tiny=True)):
        pipeline_module.load_checkpoint_pooler(_fake_pipeline(xlmr_dir, **flags), model)
        assert "pooler starts from a RANDOM init" in capsys.readouterr().out
    # The structure the evaluation restores `best_model` into is the trained model's: pooler and scale included.
    abstract = nnx.to_pure_dict(nnx.state(pipeline_module.abstract_model(pipeline)))
    trained = nnx.to_pure_dict(nnx.state(model))
    assert jax.tree.map(lambda x: (x.shape, x.dtype), abstract) == jax.tree.map(lambda x: (x.shape, x.dtype), trained)
    assert "pooler" in trained and "logit_scale" in trained
    # cls with a fixed scale: no pooler, no scale parameter.
    fixed = DualEncoder(encoder, "cls", scale=30.0)
    assert fixed.pooler is None and fixed.logit_scale is None and float(fixed.scale()) == 30.0
    assert "logit_scale" not in nnx.to_pure_dict(nnx.state(fixed))


def test_the_learned_scale_is_in_the_decay_group_as_bert_py_puts_it():
    assert decays(("logit_scale",))
    assert decays(("pooler", "dense")) and not decays(("pooler", "dense_bias"))


# --- the learned scale in training and under gradient caching ---------------------------------------------------

VOCAB, PAIR_SEQ, BATCH, MICRO, SCALE = 48, 8, 32, 4, 20.0


def _tiny_model(dropout: float = 0.0) -> DualEncoder:
    config = tiny_config(
        VOCAB,
        hidden_size=16,
        num_attention_heads=2,
        intermediate_size=32,
        num_hidden_layers=1,
        max_position_embeddings=PAIR_SEQ + 2,
        hidden_dropout_prob=dropout,
    )
    model = DualEncoder(Encoder(config, rngs=nnx.Rngs(0)), "pooler", scale=SCALE, learned_scale=True, rngs=nnx.Rngs(1))
    # A pooler that spreads the embeddings (its 0.02 init maps every sequence near tanh(bias): a flat loss).
    dense_key, bias_key = jax.random.split(jax.random.key(2))
    model.pooler.dense.set_value(0.3 * jax.random.normal(dense_key, (16, 16)))
    model.pooler.dense_bias.set_value(0.1 * jax.random.normal(bias_key, (16,)))
    return model


def _features(n: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """Query/candidate pairs sharing their first token, a marker; few distinct keys, so duplicates span micro-batches.

    The marker comes first because the pooler reads the first token only: behind a shared <s>, a random 1-layer
    encoder gives every sequence nearly the same first state (cosines ~1, a flat loss)."""
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 12, n).astype(np.int32)

    def sequences() -> tuple[np.ndarray, np.ndarray]:
        ids = rng.integers(10, VOCAB, (n, PAIR_SEQ)).astype(np.int32)
        ids[:, 0] = 10 + keys
        mask = (np.arange(PAIR_SEQ)[None, :] < rng.integers(3, PAIR_SEQ + 1, n)[:, None]).astype(np.int32)
        return np.where(mask == 1, ids, 1).astype(np.int32), mask

    qi, qm = sequences()
    ci, cm = sequences()
    return {
        "query_input_ids": qi,
        "query_attention_mask": qm,
        "candidate_input_ids": ci,
        "candidate_attention_mask": cm,
        "candidate_key": keys,
    }


def _flat(tree) -> dict[str, np.ndarray]:
    return {
        jax.tree_util.keystr(p): np.asarray(x, np.float64)
        for p, x in jax.tree_util.tree_leaves_with_path(jax.device_get(tree))
    }


@pytest.fixture(scope="module")
def mesh():
    return make_mesh({"data": 8, "fsdp": 1, "tensor": 1})


def test_gradient_caching_equals_one_piece_autodiff_for_the_scale_pooler_and_encoder(mesh):
    spec = ModelSpec(_tiny_model(), mesh, RULES)
    params = spec.initial_params()
    features = _features()
    one = BatchFeeder(features, BATCH, 1, 0, mesh, RULES).batch(0)
    four = BatchFeeder(features, BATCH, MICRO, 0, mesh, RULES).batch(0)

    def run(grads_fn, batch):
        return jax.jit(lambda p, b: grads_fn(spec, p, b, None))(params, batch)

    grads, loss, _ = run(make_cached_in_batch_grads(), four)
    ref_grads, ref_loss, _ = run(accumulate_micro_batch_grads(make_in_batch_loss()), one)
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-5)
    cached, reference = _flat(grads), _flat(ref_grads)
    assert set(cached) == set(reference)
    floor = 1e-4 * max(np.abs(g).max() for g in reference.values())
    for key, value in reference.items():
        np.testing.assert_allclose(cached[key], value, rtol=1e-4, atol=floor, err_msg=key)
    # The scale and the pooler get real gradients, equal on their own scale too.
    scale_grad = reference["['logit_scale']"]
    assert abs(float(scale_grad)) > 1e-3
    np.testing.assert_allclose(cached["['logit_scale']"], scale_grad, rtol=1e-4)
    np.testing.assert_allclose(
        cached["['pooler']['dense']"],
        reference["['pooler']['dense']"],
        rtol=1e-4,
        atol=1e-4 * np.abs(reference["['pooler']['dense']"]).max(),
    )
    # And it is d(loss)/d(scale) of bert.py's loss: sum_i (E_softmax(s cos_i.)[cos_ij] - cos_ii), in float64 from the
    # embeddings (duplicate candidates masked, as the loss masks them).
    model, rows = spec.merge(params), {k: np.asarray(v)[0] for k, v in jax.device_get(one).items()}  # the step's rows
    q = np.asarray(
        model.embed(jnp.asarray(rows["query_input_ids"]), jnp.asarray(rows["query_attention_mask"])), np.float64
    )
    c = np.asarray(
        model.embed(jnp.asarray(rows["candidate_input_ids"]), jnp.asarray(rows["candidate_attention_mask"])), np.float64
    )
    keys = rows["candidate_key"]
    cos = q @ c.T
    keep = (keys[:, None] != keys[None, :]) | np.eye(BATCH, dtype=bool)
    logits = np.where(keep, SCALE * cos, -np.inf)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    exact = np.sum(np.sum(probs * np.where(keep, cos, 0.0), axis=1) - np.diag(cos))
    np.testing.assert_allclose(float(scale_grad), exact, rtol=1e-3)


@pytest.mark.parametrize("micro_batches", [1, MICRO])
def test_the_learned_scale_changes_in_a_train_step(micro_batches, mesh, tmp_path):
    model = _tiny_model()
    loss_grads = nnx.grad(lambda m, b: make_in_batch_loss()(m, b, None)[0])(
        model, {k: jnp.asarray(v[:BATCH]) for k, v in _features().items()}
    )
    assert abs(float(loss_grads.logit_scale[...])) > 1e-3
    grads_fn = make_cached_in_batch_grads() if micro_batches > 1 else None
    config = trainer_config(
        1,
        global_batch_size=BATCH,
        micro_batches=micro_batches,
        dropout=False,
        async_checkpointing=False,
        checkpoint_every=100,
    )
    result = train(
        model,
        make_in_batch_loss(),
        _features(),
        config,
        workdir=tmp_path / "run",
        mesh=mesh,
        rules=RULES,
        grads_fn=grads_fn,
    )
    scale = float(jax.device_get(result.state.params["logit_scale"]))
    # One AdamW step at lr 1e-3 moves it by about the learning rate, against the sign of its gradient.
    assert scale != SCALE and abs(scale - SCALE) < 2e-3
    assert np.sign(SCALE - scale) == np.sign(float(loss_grads.logit_scale[...]))
