"""The fused Pallas search kernel (evaluation/fused_top_k.py), run here in Pallas interpret mode, against faiss
and a NumPy reference; its lowering to Triton for CUDA is checked on this CPU machine with jax.export."""

from __future__ import annotations

import faiss
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stilts_jax.core.errors import InputError
from stilts_jax.evaluation import fused_top_k as fused
from stilts_jax.evaluation.search import NearestNeighbors, knn


def _data(seed: int, n_queries: int, n_database: int, dim: int):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_queries, dim)).astype(np.float32), rng.standard_normal((n_database, dim)).astype(
        np.float32
    )


def _reference(queries, database, k, valid):
    """Top-k by float64 inner product over the first `valid` rows; equal scores: the lower row first."""
    scores = queries.astype(np.float64) @ database[:valid].astype(np.float64).T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


@pytest.mark.parametrize("k", [1, 4, 7])
def test_kernel_matches_a_reference_with_ties_and_padding_rows(k):
    queries, database = _data(k, 128, 384, 48)
    database[200] = database[5]  # equal rows in different database tiles of 128
    database[6] = database[5]  # and in the same tile
    queries[3] = database[5] * 3.0  # a query whose best rows tie three ways
    valid = 384 - 50  # the last 50 rows are padding: bias -inf
    bias = np.where(np.arange(384) < valid, 0.0, -np.inf).astype(np.float32)
    values, rows = fused.fused_top_k(
        jnp.asarray(queries), jnp.asarray(database), jnp.asarray(bias), k, block_features=16, interpret=True
    )
    expected_values, expected_rows = _reference(queries, database, k, valid)
    np.testing.assert_array_equal(np.asarray(rows), expected_rows)
    np.testing.assert_allclose(np.asarray(values), expected_values, rtol=1e-5, atol=1e-4)
    assert list(np.asarray(rows)[3, : min(k, 3)]) == [5, 6, 200][: min(k, 3)]


def test_bfloat16_operands_accumulate_in_float32():
    queries, database = _data(11, 128, 256, 64)
    q16, db16 = jnp.asarray(queries, jnp.bfloat16), jnp.asarray(database, jnp.bfloat16)
    values, rows = fused.fused_top_k(q16, db16, jnp.zeros(256), 4, interpret=True)
    # The reference on the same bf16-rounded values: only the operands are rounded, not the sums.
    expected_values, expected_rows = _reference(np.asarray(q16, np.float32), np.asarray(db16, np.float32), 4, 256)
    np.testing.assert_array_equal(np.asarray(rows), expected_rows)
    np.testing.assert_allclose(np.asarray(values), expected_values, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("devices", [1, 8])
def test_nearest_neighbors_with_the_fused_kernel_matches_faiss(devices):
    # 37 features (padded to 48), 1003 rows (not a multiple of the devices or tiles), 150 queries in chunks of 100.
    queries, database = _data(devices, 150, 1003, 37)
    index = NearestNeighbors(database, devices=jax.devices()[:devices], chunk_size=100, kernel="fused")
    ours = index.search(queries, 5)
    flat = faiss.IndexFlatIP(37)
    flat.add(database)
    scores, indices = flat.search(queries, 5)
    np.testing.assert_array_equal(ours.indices, indices)
    np.testing.assert_allclose(ours.scores, scores, rtol=1e-5, atol=1e-5)
    cosine = knn(queries, database, 3, normalize=True, kernel="fused", devices=jax.devices()[:devices])
    np.testing.assert_array_equal(cosine.indices, knn(queries, database, 3, normalize=True).indices)


def test_tiles_other_than_the_default_give_the_same_result():
    queries, database = _data(5, 100, 700, 40)
    expected = NearestNeighbors(database).search(queries, 4)
    for text in ("64,128,32,4,2", "128,256,64,8,3", "64,64,0,4,3"):
        tile = fused.Tile.parse(text)
        assert str(tile) == text
        ours = NearestNeighbors(database, kernel="fused", tile=tile).search(queries, 4)
        np.testing.assert_array_equal(ours.indices, expected.indices)
    with pytest.raises(ValueError, match="block_database must be a power of two, got 100"):
        fused.Tile.parse("64,100,64,4,3")
    with pytest.raises(ValueError, match="is not 'block_queries,block_database"):
        fused.Tile.parse("64,x")


def test_fused_kernel_options_are_checked():
    _, database = _data(0, 1, 100, 16)
    with pytest.raises(InputError, match="unknown search kernel 'triton'"):
        NearestNeighbors(database, kernel="triton")
    with pytest.raises(InputError, match="approx applies to kernel='xla' only"):
        NearestNeighbors(database, kernel="fused", approx=True)
    with pytest.raises(InputError, match="k up to 32, got 33: use kernel='xla'"):
        NearestNeighbors(database, kernel="fused").search(database[:2], 33)
    with pytest.raises(ValueError, match="multiple of 16"):
        fused.feature_block(40)
    assert [fused.feature_block(d) for d in (1024, 768, 48, 16)] == [64, 64, 16, 16]
    # 4-byte operands stage fewer tiles, so that the kernel fits an A100's shared memory too.
    assert NearestNeighbors(database, kernel="fused").tile.num_stages == 2
    assert NearestNeighbors(database, kernel="fused", dtype="bfloat16").tile == fused.Tile()


def test_kernel_lowers_to_triton_for_cuda():
    """The Pallas-to-Triton lowering runs without a GPU: an unsupported operation or block shape fails here. Newer
    JAX asks which GPU to lower for when none is attached: an H100, through an abstract mesh."""
    export = jax.export.export(
        jax.jit(lambda q, db, bias: fused.fused_top_k(q, db, bias, 4)),
        platforms=["cuda"],
        disabled_checks=[jax.export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")],
    )
    h100 = jax.sharding.AbstractDevice(device_kind="NVIDIA H100 80GB HBM3", num_cores=132, platform="gpu")
    with jax.sharding.use_abstract_mesh(jax.sharding.AbstractMesh((1,), ("x",), abstract_device=h100)):
        lowered = export(
            jax.ShapeDtypeStruct((8192, 1024), jnp.bfloat16),
            jax.ShapeDtypeStruct((1 << 16, 1024), jnp.bfloat16),
            jax.ShapeDtypeStruct((1 << 16,), jnp.float32),
        )
    module = lowered.mlir_module()
    assert "__gpu$xla.gpu.triton" in module and "fused_inner_product_top_k" in module
