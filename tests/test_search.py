"""Nearest-neighbour search and margin mining against faiss and a NumPy reference, on 1 and 8 devices."""

from __future__ import annotations

import faiss
import jax
import numpy as np
import pytest

from stilts_jax.evaluation.search import NearestNeighbors, knn, l2_normalize, mine_max, ratio_margin


def _data(seed: int, n_queries: int, n_database: int, dim: int = 32):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_queries, dim)).astype(np.float32), rng.standard_normal((n_database, dim)).astype(
        np.float32
    )


def _faiss(queries, database, k):
    index = faiss.IndexFlatIP(database.shape[1])
    index.add(database)
    return index.search(queries, k)


@pytest.mark.parametrize("devices", [1, 8])
@pytest.mark.parametrize("n_database", [1, 37, 1000])  # not multiples of the device count: padding rows must never win
@pytest.mark.parametrize("block_rows", [None, 3, 64])  # 3 < k: a block holds fewer rows than the top-k it feeds
def test_exact_search_matches_faiss(devices, n_database, block_rows):
    queries, database = _data(devices * 1000 + n_database, 50, n_database)
    k = min(5, n_database)
    index = NearestNeighbors(database, devices=jax.devices()[:devices], chunk_size=16, block_rows=block_rows)
    if block_rows and -(-n_database // devices) > block_rows:
        assert index.num_blocks > 1  # the running top-k over blocks is what is being checked
    ours = index.search(queries, k)
    scores, indices = _faiss(queries, database, k)
    np.testing.assert_array_equal(ours.indices, indices)
    np.testing.assert_allclose(ours.scores, scores, rtol=1e-5, atol=1e-5)


def test_cosine_and_bfloat16_and_approx_options():
    queries, database = _data(3, 64, 500)
    exact = knn(queries, database, 4, normalize=True, devices=jax.devices()[:8])
    _scores, indices = _faiss(l2_normalize(queries), l2_normalize(database), 4)
    np.testing.assert_array_equal(exact.indices, indices)
    assert np.all(exact.scores <= 1.0 + 1e-6)
    approx = knn(queries, database, 4, normalize=True, approx=True)  # exact off TPU
    np.testing.assert_array_equal(approx.indices, indices)
    half = knn(queries, database, 4, normalize=True, dtype="bfloat16")
    assert np.mean(half.indices[:, 0] == indices[:, 0]) > 0.9  # bf16 operands: near-ties may swap


def test_margin_scores_and_max_mining_match_a_numpy_reference():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((40, 16)).astype(np.float32)
    y = np.concatenate([x[:30] + 0.1 * rng.standard_normal((30, 16)), rng.standard_normal((25, 16))]).astype(np.float32)
    k = 4
    ours = ratio_margin(x, y, k, devices=jax.devices()[:8])

    # Reference straight from the definition, with full similarity matrices.
    xn, yn = l2_normalize(x), l2_normalize(y)
    sim = xn @ yn.T
    mean_x = np.sort(sim, axis=1)[:, ::-1][:, :k].mean(1)
    mean_y = np.sort(sim.T, axis=1)[:, ::-1][:, :k].mean(1)
    margin = sim / ((mean_x[:, None] + mean_y[None, :]) / 2)
    fwd_idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(ours.forward.indices, fwd_idx)
    np.testing.assert_allclose(ours.forward_margin, np.take_along_axis(margin, fwd_idx, 1), rtol=1e-5)
    bwd_idx = np.argsort(-sim.T, axis=1, kind="stable")[:, :k]
    np.testing.assert_allclose(ours.backward_margin, np.take_along_axis(margin.T, bwd_idx, 1), rtol=1e-5)

    pairs = mine_max(ours)
    assert [p[0] for p in pairs] == sorted((p[0] for p in pairs), reverse=True)
    assert len({p[1] for p in pairs}) == len(pairs) == len({p[2] for p in pairs})  # one-to-one
    best = {(i, j) for _, i, j in pairs[:30]}
    assert len(best & {(i, i) for i in range(30)}) >= 28  # the true translations come first


def test_bad_shapes_are_reported():
    with pytest.raises(Exception, match="non-empty"):
        NearestNeighbors(np.zeros((0, 4)))
    index = NearestNeighbors(np.ones((3, 4), np.float32))
    with pytest.raises(Exception, match=r"queries must be \[M, 4\]"):
        index.search(np.ones((2, 5), np.float32), 1)
    with pytest.raises(Exception, match="k must be between 1 and the database size 3"):
        index.search(np.ones((2, 4), np.float32), 4)


def test_search_cli_writes_indices_scores_and_margins(tmp_path, capsys):
    from stilts_jax import search as search_cli

    queries, database = _data(11, 30, 200)
    np.save(tmp_path / "q.npy", queries)
    np.save(tmp_path / "d.npy", database)
    assert (
        search_cli.main(
            [
                "--queries",
                str(tmp_path / "q.npy"),
                "--database",
                str(tmp_path / "d.npy"),
                "--k",
                "3",
                "--output",
                str(tmp_path / "out.npz"),
                "--normalize",
                "--margin",
                "ratio",
            ]
        )
        == 0
    )
    out = np.load(tmp_path / "out.npz")
    scores, indices = _faiss(l2_normalize(queries), l2_normalize(database), 3)
    np.testing.assert_array_equal(out["indices"], indices)
    np.testing.assert_allclose(out["scores"], scores, rtol=1e-5)
    assert out["margin_scores"].shape == (30, 3)

    np.save(tmp_path / "bad.npy", np.ones((4, 7), np.float32))
    assert (
        search_cli.main(
            [
                "--queries",
                str(tmp_path / "bad.npy"),
                "--database",
                str(tmp_path / "d.npy"),
                "--output",
                str(tmp_path / "x.npz"),
            ]
        )
        == 2
    )
    assert "queries have dimension 7 but the database 32" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_miner_pairs_translations_with_a_real_encoder(xlmr_dir, tmp_path):
    from stilts_jax import mine
    from stilts_jax.core.tokenization import SHIPPED_TEXT_DIR

    # Even a random tiny encoder maps near-copies (the final period dropped) close together.
    english = (SHIPPED_TEXT_DIR / "parallel.en.txt").read_text(encoding="utf-8").splitlines()[:20]
    (tmp_path / "src.txt").write_text("\n".join(s[:-1] for s in english) + "\n", encoding="utf-8")
    (tmp_path / "tgt.txt").write_text("\n".join(english[::-1]) + "\n", encoding="utf-8")
    assert (
        mine.main(
            [
                "--model",
                str(xlmr_dir),
                "--src",
                str(tmp_path / "src.txt"),
                "--tgt",
                str(tmp_path / "tgt.txt"),
                "--output",
                str(tmp_path / "pairs.tsv"),
                "--layer",
                "0",
            ]
        )
        == 0
    )
    rows = [line.split("\t") for line in (tmp_path / "pairs.tsv").read_text(encoding="utf-8").splitlines()]
    assert 15 <= len(rows) <= 20  # one-to-one: a sentence is never used twice
    assert len({r[1] for r in rows}) == len(rows) == len({r[2] for r in rows})
    assert [float(r[0]) for r in rows] == sorted((float(r[0]) for r in rows), reverse=True)
    correct = sum(r[1] == r[2][:-1] for r in rows)
    assert correct >= 0.9 * len(rows), rows


def test_blocked_search_breaks_ties_like_one_pass():
    """Equal scores in different blocks: the lower database row wins, whether or not the shard is split."""
    rng = np.random.default_rng(11)
    base = rng.standard_normal((10, 16)).astype(np.float32)
    database = np.concatenate([base, base, base])  # every vector three times, in three different blocks
    queries = base + 0.01 * rng.standard_normal(base.shape).astype(np.float32)
    whole = NearestNeighbors(database, devices=jax.devices()[:1]).search(queries, 3)
    blocked = NearestNeighbors(database, devices=jax.devices()[:1], block_rows=7).search(queries, 3)
    np.testing.assert_array_equal(blocked.indices, whole.indices)
    np.testing.assert_array_equal(whole.indices, np.stack([np.arange(10), np.arange(10) + 10, np.arange(10) + 20], 1))


def _npy_bytes(array) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty (0 bytes)"),
        (b"0.1 0.2\n0.3 0.4\n", "is not a .npy array (it does not start with numpy's header)"),
        (_npy_bytes(np.ones((4, 32), np.float32))[:60], "cannot be read: damaged, truncated"),
        (_npy_bytes(np.ones((4, 32), np.float32))[:-7], "cannot be read: damaged, truncated"),
        (_npy_bytes(np.ones((0, 32), np.float32)), "holds an empty array"),
    ],
    ids=["empty", "text", "cut-in-header", "cut-in-data", "no-rows"],
)
def test_search_cli_refuses_empty_or_damaged_npy_files_in_one_line(tmp_path, capsys, content, message):
    from stilts_jax import search as search_cli

    np.save(tmp_path / "d.npy", np.ones((5, 32), np.float32))
    (tmp_path / "q.npy").write_bytes(content)
    assert (
        search_cli.main(
            [
                "--queries",
                str(tmp_path / "q.npy"),
                "--database",
                str(tmp_path / "d.npy"),
                "--output",
                str(tmp_path / "out.npz"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err == f"error: queries file {tmp_path / 'q.npy'} {message}" + err.split(message, 1)[1]
    assert err.count("\n") == 1 and not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("flag, value", [("--batch-size", "0"), ("--batch-size", "-1"), ("--k", "0")])
def test_miner_refuses_non_positive_numbers_naming_the_flag(tmp_path, capsys, flag, value):
    from stilts_jax import mine

    (tmp_path / "s.txt").write_text("a\nb\n", encoding="utf-8")
    assert (
        mine.main(
            [
                "--model",
                str(tmp_path / "no_model"),
                "--src",
                str(tmp_path / "s.txt"),
                "--tgt",
                str(tmp_path / "s.txt"),
                "--output",
                str(tmp_path / "pairs.tsv"),
                flag,
                value,
            ]
        )
        == 2
    )
    assert capsys.readouterr().err.startswith(f"error: {flag} must be a positive number")
