"""Attention-probability dropout (model.attention_dropout): the explicit XLA attention it runs in training, the
fused path kept in evaluation, its keys, remat and the option's validation."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from stilts_jax.core.errors import InputError
from stilts_jax.models import encoder as encoder_module
from stilts_jax.models.config import tiny_config
from stilts_jax.models.encoder import Encoder, explicit_attention, resolve_attention_dropout

LENGTHS = [24, 13, 5, 1]
SEQ = 24


def _batch(vocab_size: int, lengths=LENGTHS, seq: int = SEQ):
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(5, vocab_size, (len(lengths), seq)), jnp.int32)
    mask = jnp.asarray(np.arange(seq)[None, :] < np.asarray(lengths)[:, None], jnp.int32)
    return ids, mask


def _qkv(batch: int = 4, seq: int = SEQ, heads: int = 3, head_dim: int = 8, seed: int = 0):
    q, k, v = jax.random.normal(jax.random.key(seed), (3, batch, seq, heads, head_dim), jnp.float32)
    return q, k, v


def _encoder(attention_dropout, **overrides) -> Encoder:
    config = tiny_config(vocab_size=300, **overrides)
    return Encoder(config, rngs=nnx.Rngs(0), attention="xla", attention_dropout=attention_dropout)


def test_evaluation_and_rate_zero_keep_the_fused_path(monkeypatch):
    ids, mask = _batch(300)
    fused = _encoder("off", hidden_dropout_prob=0.0)(ids, mask).last_hidden_state
    # No rng (evaluation): the default rate changes nothing; the explicit path is never traced.
    with monkeypatch.context() as patch:
        patch.setattr(encoder_module, "explicit_attention", lambda *a, **k: pytest.fail("explicit path in evaluation"))
        evaluated = _encoder("config", hidden_dropout_prob=0.0)(ids, mask).last_hidden_state
        # Rate 0 with an rng (training without it): the fused path too, so (hidden dropout off) the same output.
        trained = _encoder("off", hidden_dropout_prob=0.0)(ids, mask, dropout_rng=jax.random.key(3)).last_hidden_state
    np.testing.assert_array_equal(np.asarray(evaluated), np.asarray(fused))
    np.testing.assert_array_equal(np.asarray(trained), np.asarray(fused))


def test_explicit_attention_without_dropout_equals_dot_product_attention():
    q, k, v = _qkv()
    lengths = jnp.asarray(LENGTHS, jnp.int32)
    expected = jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=lengths, implementation="xla")
    for ours in (
        explicit_attention(q, k, v, lengths),
        explicit_attention(q, k, v, lengths, dropout_rate=0.0, dropout_rng=jax.random.key(0)),
        explicit_attention(q, k, v, lengths, dropout_rate=0.3, dropout_rng=None),
    ):
        # Every row, padded query rows included (they attend to the valid keys in both).
        np.testing.assert_allclose(np.asarray(ours), np.asarray(expected), rtol=1e-5, atol=1e-5)
    bf16 = [x.astype(jnp.bfloat16) for x in (q, k, v)]
    ours16 = explicit_attention(*bf16, lengths)
    assert ours16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(ours16, np.float32), np.asarray(expected), atol=3e-2)


def test_dropout_falls_on_the_probabilities():
    # With v the identity over keys (head_dim = seq), the attention output is the (dropped) probability matrix.
    batch, heads, rate = 4, 4, 0.25
    q, k, _ = _qkv(batch=batch, seq=SEQ, heads=heads, head_dim=SEQ)
    v = jnp.broadcast_to(jnp.eye(SEQ)[None, :, None, :], (batch, SEQ, heads, SEQ))
    lengths = jnp.asarray(LENGTHS, jnp.int32)
    probs = np.asarray(explicit_attention(q, k, v, lengths))  # [batch, query, heads, key]
    dropped = np.asarray(explicit_attention(q, k, v, lengths, dropout_rate=rate, dropout_rng=jax.random.key(1)))
    valid = np.broadcast_to((np.arange(SEQ)[None, :] < np.asarray(LENGTHS)[:, None])[:, None, None, :], probs.shape)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    assert np.all(probs[~valid] == 0) and np.all(dropped[~valid] == 0)
    zeroed = dropped[valid] == 0
    assert abs(zeroed.mean() - rate) < 0.02, zeroed.mean()  # about 10^4 valid probabilities
    kept = ~zeroed
    np.testing.assert_allclose(dropped[valid][kept], probs[valid][kept] / (1 - rate), rtol=1e-5, atol=1e-7)


def test_dropout_keys_and_expectation():
    q, k, v = _qkv(head_dim=16)
    lengths = jnp.asarray(LENGTHS, jnp.int32)

    def attend(key):
        return explicit_attention(q, k, v, lengths, dropout_rate=0.1, dropout_rng=key)

    one, again, other = attend(jax.random.key(1)), attend(jax.random.key(1)), attend(jax.random.key(2))
    np.testing.assert_array_equal(np.asarray(one), np.asarray(again))
    assert not np.allclose(np.asarray(one), np.asarray(other))
    # Inverted dropout keeps the expectation: the mean over many keys approaches the output without dropout.
    mean = jnp.mean(jax.vmap(attend)(jax.random.split(jax.random.key(7), 2000)), axis=0)
    expected = explicit_attention(q, k, v, lengths)
    err = np.max(np.abs(np.asarray(mean - expected)))
    assert err < 0.05 * np.max(np.abs(np.asarray(expected))), err


def test_encoder_applies_it_in_training_only():
    ids, mask = _batch(300)
    encoder = _encoder("config", hidden_dropout_prob=0.0)  # only attention dropout
    assert encoder.attention_dropout == 0.1 and all(layer.attention.dropout_rate == 0.1 for layer in encoder.layers)
    evaluated = encoder(ids, mask).last_hidden_state
    a = encoder(ids, mask, dropout_rng=jax.random.key(1)).last_hidden_state
    b = encoder(ids, mask, dropout_rng=jax.random.key(1)).last_hidden_state
    c = encoder(ids, mask, dropout_rng=jax.random.key(2)).last_hidden_state
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(np.asarray(a), np.asarray(c))
    assert not np.allclose(np.asarray(a), np.asarray(evaluated))


def test_hidden_dropout_keys_do_not_depend_on_attention_dropout(monkeypatch):
    # With attention dropout replaced by a "keep all" explicit path, the hidden dropout must be what it is with the
    # option off: the probabilities' key is a stream of its own.
    ids, mask = _batch(300)
    key = jax.random.key(5)
    off = _encoder("off", hidden_dropout_prob=0.1)(ids, mask, dropout_rng=key).last_hidden_state
    keep_all = encoder_module.explicit_attention
    monkeypatch.setattr(encoder_module, "explicit_attention", lambda q, k, v, lengths, **_: keep_all(q, k, v, lengths))
    on = _encoder("config", hidden_dropout_prob=0.1)(ids, mask, dropout_rng=key).last_hidden_state
    np.testing.assert_allclose(np.asarray(on), np.asarray(off), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("remat", ["full", "save_dots"])
def test_gradients_flow_with_remat(remat):
    config = tiny_config(vocab_size=300, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    ids, mask = _batch(300)

    def grads(policy):
        graphdef, params = nnx.split(Encoder(config, rngs=nnx.Rngs(0), attention="xla", remat=policy))

        def loss(p):
            out = nnx.merge(graphdef, p)(ids, mask, dropout_rng=jax.random.key(1)).last_hidden_state
            return jnp.sum(jnp.tanh(out) * mask[..., None])

        return jax.jit(jax.value_and_grad(loss))(params)

    loss, grad = grads(remat)
    reference_loss, reference = grads("none")
    assert np.isfinite(float(loss))
    np.testing.assert_allclose(loss, reference_loss, rtol=1e-6)  # the recomputed masks are the same masks
    leaves, expected = jax.tree.leaves(grad), jax.tree.leaves(reference)
    assert len(leaves) == len(expected) > 10
    for a, b in zip(leaves, expected):
        assert np.all(np.isfinite(np.asarray(a)))
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert any(np.any(np.asarray(a) != 0) for a in leaves)


def test_bfloat16_training_gradients_are_finite():
    config = tiny_config(vocab_size=300)
    graphdef, params = nnx.split(Encoder(config, rngs=nnx.Rngs(0), dtype=jnp.bfloat16, attention="xla"))
    ids, mask = _batch(300)

    def loss(p):
        out = nnx.merge(graphdef, p)(ids, mask, dropout_rng=jax.random.key(1)).last_hidden_state
        return jnp.sum(jnp.tanh(out.astype(jnp.float32)) * mask[..., None])

    for leaf in jax.tree.leaves(jax.grad(loss)(params)):
        assert np.all(np.isfinite(np.asarray(leaf)))


def test_option_values_and_errors():
    config = tiny_config(vocab_size=300, attention_probs_dropout_prob=0.2)
    assert resolve_attention_dropout("config", config) == 0.2
    assert resolve_attention_dropout("Config", config) == 0.2
    assert resolve_attention_dropout("off", config) == 0.0
    assert resolve_attention_dropout(0, config) == 0.0
    assert resolve_attention_dropout(0.05, config) == 0.05
    assert resolve_attention_dropout("0.05", config) == 0.05  # --config.model.attention_dropout=0.05 gives text
    message = (
        "model.attention_dropout must be 'config' (the model config's attention_probs_dropout_prob), 'off', "
        "or a rate in [0, 1); got "
    )
    for bad in ("sometimes", "", 1.0, -0.1, "1", "nan", True, None):
        with pytest.raises(InputError, match=re.escape(message + repr(bad)) + "$"):
            resolve_attention_dropout(bad, config)
    with pytest.raises(InputError, match="model.attention_dropout must be"):
        Encoder(config, rngs=nnx.Rngs(0), attention_dropout="on")
    with pytest.raises(InputError, match="attention_probs_dropout_prob 1.5 is not a rate in"):
        resolve_attention_dropout("config", tiny_config(vocab_size=300, attention_probs_dropout_prob=1.5))


def _load_config(name: str):
    path = Path(__file__).resolve().parent.parent / "configs" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_attention_dropout_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def test_defaults_follow_the_recipe_and_the_demo_trains_without_dropout():
    base = _load_config("base")
    assert base.model.attention_dropout == "config"
    assert resolve_attention_dropout(base.model.attention_dropout, tiny_config(vocab_size=300)) == 0.1
    demo = _load_config("demo")
    # The demo's phases train with no dropout key, so neither hidden nor attention dropout runs.
    assert demo.model.attention_dropout == "config"
    assert not demo.intermediate.train.dropout and not demo.target.train.dropout


@pytest.mark.parametrize("value, rate", [("config", 0.1), ("off", 0.0), ("0.05", 0.05)])
def test_the_run_config_reaches_every_encoder_of_the_pipeline(value, rate, xlmr_dir):
    from stilts_jax.config.loader import parse_config_args
    from stilts_jax.models.hf_weights import load_pretrained
    from stilts_jax.pipeline.runner import Pipeline

    config, _ = parse_config_args(
        [
            "--config=configs/stilts.py:intermediate=none,target=xnli",
            f"--config.model.name={xlmr_dir}",
            f"--config.model.attention_dropout={value}",
        ]
    )
    encoder, _ = load_pretrained(xlmr_dir, **Pipeline(config).encoder_options)
    assert [layer.attention.dropout_rate for layer in encoder.layers] == [pytest.approx(rate)] * len(encoder.layers)
