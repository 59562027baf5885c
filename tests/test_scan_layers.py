"""model.scan_layers: the encoder's layers stored stacked and run with jax.lax.scan give the unrolled layers' outputs
and gradients (dropout and attention dropout included), load and export Hugging Face weights alike, train sharded
on a mesh, and convert or refuse saved parameters written with the other layout."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
from flax import nnx

from stilts_jax.core import distributed
from stilts_jax.demo.tiny_model import make_tiny_model
from stilts_jax.models.config import tiny_config
from stilts_jax.models.encoder import Encoder, stack_layers, unstack_layers
from stilts_jax.models.heads import classification_loss
from stilts_jax.models.hf_weights import export_hf, load_pretrained
from stilts_jax.train.checkpoints import CheckpointMismatchError, load_params, save_params
from stilts_jax.train.loop import train
from stilts_jax.train.metrics_log import read_metrics
from tests.train_harness import synthetic_features, tiny_model, trainer_config

RULES = distributed.DEFAULT_LOGICAL_RULES
CONFIG = tiny_config(vocab_size=300, num_hidden_layers=3, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def _batch(batch: int = 4, seq: int = 16, seed: int = 0) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(seed)
    ids = jnp.asarray(rng.integers(5, CONFIG.vocab_size, (batch, seq)), jnp.int32)
    mask = jnp.asarray(np.arange(seq)[None, :] < rng.integers(seq // 2, seq + 1, (batch, 1)), jnp.int32)
    return ids, mask


def _pair(**options) -> tuple[Encoder, Encoder]:
    """The same encoder (same seed, so the same weights) unrolled and scanned."""
    return (
        Encoder(CONFIG, rngs=nnx.Rngs(0), **options),
        Encoder(CONFIG, rngs=nnx.Rngs(0), scan_layers=True, **options),
    )


def _flat_params(encoder: Encoder) -> dict[tuple, np.ndarray]:
    flat = {tuple(p): np.asarray(v[...]) for p, v in nnx.to_flat_state(nnx.state(encoder, nnx.Param))}
    return unstack_layers(flat) if encoder.scan_layers else flat


def test_stacked_parameters_have_a_leading_layers_axis_mapped_to_no_mesh_axis():
    unrolled, scanned = _pair()
    assert isinstance(scanned.layers, nnx.Module) and not isinstance(scanned.layers, nnx.List)
    query = scanned.layers.attention.query
    assert query.shape == (3, *unrolled.layers[0].attention.query.shape)
    specs = nnx.get_partition_spec(nnx.state(scanned, nnx.Param))
    assert tuple(specs["layers"]["attention"]["query"].get_value()) == ("layers", "embed", "heads", "kv")
    mesh = distributed.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    assert distributed.logical_to_mesh_spec(
        ("layers", "embed", "heads", "kv"), RULES, mesh, query.shape
    ) == jax.sharding.PartitionSpec(None, "fsdp", "tensor", None)
    # A rules list written before the stacked axis existed still maps it (to no mesh axis).
    old_rules = [rule for rule in RULES if rule[0] != "layers"]
    assert distributed.logical_to_mesh_spec(("layers", "embed"), old_rules, mesh, (3, 64))[0] is None
    # Same seed, same initial weights: the stack holds exactly the unrolled layers.
    reference = _flat_params(unrolled)
    for path, value in _flat_params(scanned).items():
        np.testing.assert_array_equal(value, reference[path], err_msg=str(path))
    assert set(_flat_params(scanned)) == set(reference)


@pytest.mark.parametrize("dropout", [False, True])
def test_forward_equals_the_unrolled_layers(dropout):
    unrolled, scanned = _pair()
    ids, mask = _batch()
    kwargs = {"dropout_rng": jax.random.key(3)} if dropout else {}
    expected = unrolled(ids, mask, **kwargs).last_hidden_state
    got = scanned(ids, mask, **kwargs).last_hidden_state
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-5)
    if dropout:  # dropout really ran: a deterministic forward differs
        assert not np.allclose(np.asarray(scanned(ids, mask).last_hidden_state), np.asarray(got), atol=1e-3)


@pytest.mark.parametrize("dropout", [False, True])
def test_first_k_layers_and_hidden_states_equal_the_unrolled_layers(dropout):
    unrolled, scanned = _pair()
    ids, mask = _batch()
    kwargs = {"dropout_rng": jax.random.key(5)} if dropout else {}
    for k in (0, 1, 2, 3):
        expected = unrolled(ids, mask, num_layers=k, output_hidden_states=True, **kwargs)
        got = scanned(ids, mask, num_layers=k, output_hidden_states=True, **kwargs)
        assert got.hidden_states is not None and expected.hidden_states is not None
        assert len(got.hidden_states) == len(expected.hidden_states) == k + 1
        for a, b in zip(got.hidden_states, expected.hidden_states):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            np.asarray(got.last_hidden_state), np.asarray(expected.last_hidden_state), rtol=1e-5, atol=1e-5
        )
        assert scanned(ids, mask, num_layers=k).hidden_states is None


def _loss_and_grads(encoder: Encoder, ids: jax.Array, mask: jax.Array):
    graphdef, params = nnx.split(encoder)

    def loss(p):
        out = nnx.merge(graphdef, p)(ids, mask, dropout_rng=jax.random.key(1)).last_hidden_state
        return jnp.sum(jnp.tanh(out) * mask[..., None])

    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    flat = {tuple(path): np.asarray(leaf) for path, leaf in nnx.to_flat_state(grads)}
    return float(value), (unstack_layers(flat) if encoder.scan_layers else flat)


@pytest.mark.parametrize("remat", ["none", "full", "save_dots"])
def test_gradients_with_dropout_equal_the_unrolled_layers(remat):
    unrolled, scanned = _pair(remat=remat)
    ids, mask = _batch()
    loss, grads = _loss_and_grads(scanned, ids, mask)
    reference_loss, reference = _loss_and_grads(unrolled, ids, mask)
    np.testing.assert_allclose(loss, reference_loss, rtol=1e-5)
    assert set(grads) == set(reference) and len(grads) > 20
    for path, value in grads.items():
        np.testing.assert_allclose(value, reference[path], rtol=1e-4, atol=1e-6, err_msg=str(path))
    assert np.abs(grads[("layers", 2, "feed_forward", "output")]).sum() > 0


def _stacked_residuals(encoder: Encoder, ids: jax.Array, mask: jax.Array) -> list[tuple[str, tuple[int, ...]]]:
    """(dtype, shape) of what the forward pass keeps for the backward pass with a leading layers axis."""
    graphdef, params = nnx.split(encoder)

    def loss(p):
        out = nnx.merge(graphdef, p)(ids, mask, dropout_rng=jax.random.key(1)).last_hidden_state
        return jnp.sum(out.astype(jnp.float32))

    _, backward = jax.vjp(loss, params)
    param_ids = {id(leaf) for leaf in jax.tree.leaves(params)}
    layers = encoder.config.num_hidden_layers
    return sorted(
        (str(leaf.dtype), tuple(leaf.shape))
        for leaf in jax.tree.leaves(backward)
        if id(leaf) not in param_ids and leaf.ndim > 1 and leaf.shape[0] == layers
    )


def test_scan_keeps_the_matmul_outputs_and_dropout_masks_only():
    """Without remat the scan keeps what the unrolled layers keep: each matmul's output and the dropout masks; not
    LayerNorm's float32 values, GELU's or softmax's intermediates, or bfloat16 copies of the weights."""
    encoder = Encoder(CONFIG, rngs=nnx.Rngs(0), dtype=jnp.bfloat16, scan_layers=True)
    ids, mask = _batch(batch=2, seq=12)
    b, s, d = 2, 12, CONFIG.hidden_size
    h, k, m = CONFIG.num_attention_heads, CONFIG.head_dim, CONFIG.intermediate_size
    kept = _stacked_residuals(encoder, ids, mask)
    expected = sorted(
        [("bfloat16", (3, b, s, d))] * 3  # the layer's input, the attention output, the feed-forward output
        + [("bfloat16", (3, b, s, h, k))] * 3  # q, k, v
        + [("float32", (3, b, h, s, s))]  # the attention scores
        + [("bfloat16", (3, b, h, k, s))]  # the context (probs.v, heads first)
        + [("bfloat16", (3, b, s, m))]  # the feed-forward's first matmul
        + [("bool", (3, b, h, s, s))]
        + [("bool", (3, b, s, d))] * 2  # the dropout masks
    )
    assert kept == expected, kept
    assert not any(dtype == "float32" and shape[-1] == d for dtype, shape in kept)  # no LayerNorm values
    assert not any(shape[1:] in ((d, h, k), (d, m), (m, d), (h, k, d)) for _, shape in kept)  # no weight copies


@pytest.mark.parametrize("remat", ["none", "save_dots"])
def test_unrolled_scan_equals_the_scan(remat):
    """`unroll_scan` (what the aot tool compiles for the cost analysis) computes what the scan computes."""
    scanned = Encoder(CONFIG, rngs=nnx.Rngs(0), scan_layers=True, remat=remat)
    unrolled_scan = Encoder(CONFIG, rngs=nnx.Rngs(0), scan_layers=True, remat=remat, unroll_scan=True)
    ids, mask = _batch()
    loss, grads = _loss_and_grads(scanned, ids, mask)
    reference_loss, reference = _loss_and_grads(unrolled_scan, ids, mask)
    np.testing.assert_allclose(loss, reference_loss, rtol=1e-6)
    for path, value in grads.items():
        np.testing.assert_allclose(value, reference[path], rtol=1e-5, atol=1e-6, err_msg=str(path))


def test_layers_not_run_get_zero_gradients():
    _, scanned = _pair()
    ids, mask = _batch()
    graphdef, params = nnx.split(scanned)

    def loss(p):
        return jnp.sum(nnx.merge(graphdef, p)(ids, mask, num_layers=2).last_hidden_state ** 2)

    grads = jax.grad(loss)(params)
    query = np.asarray(grads["layers"]["attention"]["query"][...])
    assert np.abs(query[:2]).sum() > 0 and not np.any(query[2])


def test_hugging_face_folder_loads_into_either_layout_and_exports_the_same_tensors(tmp_path):
    folder = make_tiny_model(tmp_path / "tiny", num_layers=3, seed=4)
    unrolled, _ = load_pretrained(folder, scan_layers=False)
    scanned, _ = load_pretrained(folder, scan_layers=True)
    assert scanned.scan_layers and scanned.layers.feed_forward.output.shape[0] == 3
    ids, mask = _batch()
    np.testing.assert_allclose(
        np.asarray(scanned(ids % 200, mask).last_hidden_state),
        np.asarray(unrolled(ids % 200, mask).last_hidden_state),
        rtol=1e-5,
        atol=1e-5,
    )
    export_hf(unrolled, tmp_path / "from_unrolled")
    export_hf(scanned, tmp_path / "from_scanned")
    a = safetensors.numpy.load_file(str(tmp_path / "from_unrolled" / "model.safetensors"))
    b = safetensors.numpy.load_file(str(tmp_path / "from_scanned" / "model.safetensors"))
    original = safetensors.numpy.load_file(str(folder / "model.safetensors"))
    assert set(a) == set(b) == set(original)
    for key in a:
        np.testing.assert_array_equal(b[key], a[key], err_msg=key)
        np.testing.assert_array_equal(b[key], original[key], err_msg=key)


def test_stack_and_unstack_are_inverse_under_a_prefix():
    flat = {("encoder", "layers", i, "attention", "query"): np.full((2, 3), float(i)) for i in range(4)} | {
        ("head", "dense"): np.ones(2)
    }
    stacked = stack_layers(flat)
    assert stacked[("encoder", "layers", "attention", "query")].shape == (4, 2, 3)
    assert stacked[("head", "dense")] is flat[("head", "dense")]
    back = unstack_layers(stacked)
    assert set(back) == set(flat)
    for path, value in flat.items():
        np.testing.assert_array_equal(back[path], value)
    with pytest.raises(ValueError, match="not 0..1"):
        stack_layers({("layers", 0, "x"): np.ones(1), ("layers", 2, "x"): np.ones(1)})


@pytest.mark.parametrize("saved_scanned", [False, True])
def test_saved_parameters_load_into_the_other_layout(tmp_path, saved_scanned):
    writer = Encoder(CONFIG, rngs=nnx.Rngs(2), scan_layers=saved_scanned)
    save_params(tmp_path / "encoder", nnx.to_pure_dict(nnx.state(writer)))
    reader = Encoder(CONFIG, rngs=nnx.Rngs(9), scan_layers=not saved_scanned)
    state = nnx.state(reader)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), nnx.to_pure_dict(state))
    loaded = load_params(tmp_path / "encoder", abstract)
    assert jax.tree.structure(loaded) == jax.tree.structure(abstract)
    nnx.replace_by_pure_dict(state, loaded)
    nnx.update(reader, state)
    expected = _flat_params(writer)
    for path, value in _flat_params(reader).items():
        np.testing.assert_array_equal(value, expected[path], err_msg=str(path))


def _train(workdir, scan_layers: bool, steps: int, mesh_shape=(2, 2, 2)):
    mesh = distributed.make_mesh(dict(zip(distributed.MESH_AXES, mesh_shape)))
    return train(
        tiny_model(scan_layers=scan_layers),
        classification_loss,
        synthetic_features(),
        trainer_config(steps, async_checkpointing=False),
        workdir=workdir,
        mesh=mesh,
        rules=RULES,
    )


def test_sharded_training_follows_the_unrolled_trajectory_and_resume_needs_the_same_layout(tmp_path):
    scanned = _train(tmp_path / "scanned", True, 3)
    unrolled = _train(tmp_path / "unrolled", False, 3)
    query = scanned.state.params["encoder"]["layers"]["attention"]["query"]
    assert query.shape[0] == 2 and query.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor", None)
    np.testing.assert_allclose(
        [r["loss"] for r in read_metrics(tmp_path / "scanned")],
        [r["loss"] for r in read_metrics(tmp_path / "unrolled")],
        rtol=2e-5,
    )
    flat = {
        tuple(str(getattr(k, "key", k)) for k in p): np.asarray(x)
        for p, x in jax.tree_util.tree_leaves_with_path(jax.device_get(scanned.state.params))
    }
    reference = {
        tuple(str(getattr(k, "key", k)) for k in p): np.asarray(x)
        for p, x in jax.tree_util.tree_leaves_with_path(jax.device_get(unrolled.state.params))
    }
    unstacked = {tuple(map(str, path)): value for path, value in unstack_layers(flat).items()}
    assert set(unstacked) == set(reference)
    for path, value in unstacked.items():
        np.testing.assert_allclose(value, reference[path], atol=2e-5, err_msg=str(path))
    with pytest.raises(CheckpointMismatchError, match=r"stacked \(model.scan_layers=True\).*scan_layers=True"):
        _train(tmp_path / "scanned", False, 4)
    with pytest.raises(CheckpointMismatchError, match=r"one by one \(model.scan_layers=False\).*scan_layers=False"):
        _train(tmp_path / "unrolled", True, 4)
