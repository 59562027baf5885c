"""The NNX encoder against transformers' PyTorch XLMRobertaModel and BertModel."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from stilts_jax.models.encoder import check_right_padded
from stilts_jax.models.hf_weights import convert_hf_state_dict, load_pretrained
from tests.hf_reference import load_reference_model, padded_batch

LENGTHS = [20, 13, 5, 1]
SEQ = 24


def _inputs(encoder, model_type: str):
    config = encoder.config
    ids, mask = padded_batch(config.vocab_size, LENGTHS, config.pad_token_id, SEQ)
    token_types = np.zeros_like(ids)
    if model_type == "bert":  # a second segment in two rows, as sentence pairs have
        token_types[0, 10:20] = 1
        token_types[1, 6:13] = 1
    return ids, mask, token_types


@pytest.mark.parametrize("model_type", ["xlm-roberta", "bert"])
def test_every_hidden_state_matches_pytorch(model_type, xlmr_dir, bert_dir):
    folder = xlmr_dir if model_type == "xlm-roberta" else bert_dir
    encoder, _ = load_pretrained(folder, attention="xla")
    reference = load_reference_model(folder)
    ids, mask, token_types = _inputs(encoder, model_type)

    ours = encoder(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(token_types), output_hidden_states=True)
    with torch.no_grad():
        theirs = reference(
            torch.tensor(ids).long(),
            attention_mask=torch.tensor(mask),
            token_type_ids=torch.tensor(token_types).long(),
            output_hidden_states=True,
        )
    assert len(ours.hidden_states) == len(theirs.hidden_states) == encoder.config.num_hidden_layers + 1
    for layer, (a, b) in enumerate(zip(ours.hidden_states, theirs.hidden_states)):
        # Padded positions too: their queries attend to the real tokens in both implementations.
        err = np.max(np.abs(np.asarray(a) - b.numpy()))
        assert err < 1e-5, f"layer {layer}: max abs difference {err}"
    np.testing.assert_array_equal(np.asarray(ours.last_hidden_state), np.asarray(ours.hidden_states[-1]))


@pytest.mark.parametrize("model_type", ["xlm-roberta", "bert"])
def test_gradients_match_pytorch(model_type, xlmr_dir, bert_dir):
    folder = xlmr_dir if model_type == "xlm-roberta" else bert_dir
    encoder, _ = load_pretrained(folder, attention="xla")
    reference = load_reference_model(folder)
    ids, mask, token_types = _inputs(encoder, model_type)
    projection = np.random.RandomState(1).randn(encoder.config.hidden_size).astype(np.float32)

    def loss_ours(model):
        hidden = model(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(token_types)).last_hidden_state
        return jnp.sum(jnp.tanh(hidden @ projection) * mask)

    grads = nnx.grad(loss_ours)(encoder)
    ours = {tuple(p): np.asarray(v[...]) for p, v in nnx.to_flat_state(grads)}

    reference.zero_grad()
    hidden = reference(
        torch.tensor(ids).long(), attention_mask=torch.tensor(mask), token_type_ids=torch.tensor(token_types).long()
    ).last_hidden_state
    torch.sum(torch.tanh(hidden @ torch.tensor(projection)) * torch.tensor(mask)).backward()
    # The weight mapping is linear, so it maps PyTorch's gradients into our layout too.
    theirs = convert_hf_state_dict({k: p.grad.numpy() for k, p in reference.named_parameters()}, encoder.config)

    assert set(ours) == set(theirs)
    for path, grad in theirs.items():
        if path[-1] == "key_bias":
            # Softmax ignores a shift shared by every key, so this gradient is zero up to rounding in both.
            assert np.max(np.abs(ours[path])) < 1e-5 and np.max(np.abs(grad)) < 1e-5
            continue
        rel = np.linalg.norm(ours[path] - grad) / np.linalg.norm(grad)
        assert rel < 1e-4, f"{path}: relative gradient error {rel}"


def test_bfloat16_compute_keeps_float32_parameters(xlmr_dir):
    fp32, _ = load_pretrained(xlmr_dir, attention="xla")
    bf16, _ = load_pretrained(xlmr_dir, dtype="bfloat16", attention="xla")
    ids, mask = padded_batch(fp32.config.vocab_size, LENGTHS, fp32.config.pad_token_id, SEQ)
    a = fp32(jnp.asarray(ids), jnp.asarray(mask)).last_hidden_state
    b = bf16(jnp.asarray(ids), jnp.asarray(mask)).last_hidden_state
    assert a.dtype == jnp.float32 and b.dtype == jnp.bfloat16
    assert all(v[...].dtype == jnp.float32 for _, v in nnx.to_flat_state(nnx.state(bf16, nnx.Param)))
    rel = np.linalg.norm(np.asarray(b, np.float32) - np.asarray(a)) / np.linalg.norm(np.asarray(a))
    assert 1e-5 < rel < 3e-2  # bf16 differs from fp32, but only by rounding


def test_num_layers_stops_early_at_that_hidden_state(xlmr_dir):
    encoder, _ = load_pretrained(xlmr_dir)
    ids, mask = padded_batch(encoder.config.vocab_size, LENGTHS, encoder.config.pad_token_id, SEQ)
    full = encoder(jnp.asarray(ids), jnp.asarray(mask), output_hidden_states=True)
    for k in range(encoder.config.num_hidden_layers + 1):
        partial = encoder(jnp.asarray(ids), jnp.asarray(mask), num_layers=k)
        np.testing.assert_allclose(np.asarray(partial.last_hidden_state), np.asarray(full.hidden_states[k]), atol=1e-6)
    with pytest.raises(ValueError, match="num_layers"):
        encoder(jnp.asarray(ids), jnp.asarray(mask), num_layers=encoder.config.num_hidden_layers + 1)


def test_dropout_is_reproducible_and_off_without_a_key(xlmr_dir):
    encoder, _ = load_pretrained(xlmr_dir)
    ids, mask = padded_batch(encoder.config.vocab_size, LENGTHS, encoder.config.pad_token_id, SEQ)
    run = jax.jit(lambda m, rng: m(jnp.asarray(ids), jnp.asarray(mask), dropout_rng=rng).last_hidden_state)
    plain = encoder(jnp.asarray(ids), jnp.asarray(mask)).last_hidden_state
    a, b = run(encoder, jax.random.key(0)), run(encoder, jax.random.key(0))
    c = run(encoder, jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(np.asarray(a), np.asarray(c))
    assert not np.allclose(np.asarray(a), np.asarray(plain))


def test_parameters_carry_logical_axis_names(xlmr_dir):
    encoder, _ = load_pretrained(xlmr_dir)
    known = {"vocab", "embed", "heads", "kv", "mlp", "positions", "types"}
    specs = {
        tuple(p): v.get_value() for p, v in nnx.to_flat_state(nnx.get_partition_spec(nnx.state(encoder, nnx.Param)))
    }
    values = {tuple(p): v[...] for p, v in nnx.to_flat_state(nnx.state(encoder, nnx.Param))}
    assert set(specs) == set(values)
    for path, spec in specs.items():
        assert isinstance(spec, jax.sharding.PartitionSpec), path
        assert len(spec) == values[path].ndim, path
        assert set(spec) <= known, path
    assert specs[("embeddings", "word")] == jax.sharding.PartitionSpec("vocab", "embed")
    assert specs[("layers", 0, "attention", "query")] == jax.sharding.PartitionSpec("embed", "heads", "kv")
    assert specs[("layers", 0, "feed_forward", "output")] == jax.sharding.PartitionSpec("mlp", "embed")


def test_too_long_input_and_left_padding_are_rejected(xlmr_dir):
    encoder, _ = load_pretrained(xlmr_dir)
    too_long = encoder.config.max_sequence_length + 1
    with pytest.raises(ValueError, match="exceeds the model's maximum"):
        encoder(jnp.ones((1, too_long), jnp.int32), jnp.ones((1, too_long), jnp.int32))
    check_right_padded(np.array([[1, 1, 0], [1, 1, 1], [0, 0, 0]]))
    with pytest.raises(ValueError, match="rows \\[1\\] are not right-padded"):
        check_right_padded(np.array([[1, 1, 0], [0, 1, 1]]))
