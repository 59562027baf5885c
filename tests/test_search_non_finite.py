"""Search refuses NaN/inf embeddings (naming the rows), or leaves them out on request, in the original numbering."""

from __future__ import annotations

import numpy as np
import pytest

from stilts_jax import search as search_cli
from stilts_jax.core.errors import InputError
from stilts_jax.evaluation.search import NearestNeighbors, knn, mine_max, ratio_margin


def _vectors(rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, 16)).astype(np.float32)


def test_a_nan_database_row_is_refused_with_its_row_number():
    database = _vectors(40)
    database[7, 3] = np.nan
    with pytest.raises(
        InputError, match=r"1 of the 40 database rows hold NaN or inf values \(row 7,.*--drop-non-finite"
    ):
        knn(_vectors(5, seed=1), database, 3)


def test_inf_rows_and_nan_queries_are_refused_first_few_and_count():
    database = _vectors(40)
    database[[2, 5, 9, 11, 20, 33], 0] = np.inf
    with pytest.raises(InputError, match=r"6 of the 40 database rows .*rows 2, 5, 9, 11, 20, \.\.\. \(6 in all\)"):
        NearestNeighbors(database)
    queries = _vectors(5, seed=1)
    queries[4, 1] = np.nan
    with pytest.raises(InputError, match=r"1 of the 5 query rows .*row 4"):
        NearestNeighbors(_vectors(40)).search(queries, 3)
    with pytest.raises(InputError, match="database rows"):
        NearestNeighbors(database, kernel="fused")  # refused before any kernel runs


def test_dropping_keeps_the_original_row_numbers(capsys):
    database, queries = _vectors(40), _vectors(6, seed=1)
    clean = knn(queries, database, 4)
    poisoned = database.copy()
    poisoned[[0, 13], :] = np.nan  # row 0 would otherwise win every NaN comparison
    poisoned[21, 5] = -np.inf
    queries_poisoned = queries.copy()
    queries_poisoned[2, 0] = np.nan
    result = knn(queries_poisoned, poisoned, 4, drop_non_finite=True)
    assert "left out 3 of the 40 database rows" in capsys.readouterr().err
    keep = np.setdiff1d(np.arange(40), [0, 13, 21])
    expected = knn(queries, database[keep], 4)
    for q in (0, 1, 3, 4, 5):
        np.testing.assert_array_equal(result.indices[q], keep[expected.indices[q]])
        np.testing.assert_allclose(result.scores[q], expected.scores[q], rtol=1e-6)
        assert not set(result.indices[q]) & {0, 13, 21}
    assert (result.indices[2] == -1).all() and (result.scores[2] == -np.inf).all()
    assert np.isfinite(result.scores[[0, 1, 3, 4, 5]]).all()
    assert (clean.indices[[0, 1, 3, 4, 5]] >= 0).all()


def test_ratio_margin_refuses_and_drops_non_finite_rows():
    x, y = _vectors(12), _vectors(15, seed=3)
    x[4] = np.nan
    y[[1, 6], 2] = np.inf
    with pytest.raises(InputError, match=r"source \(x\) rows .*row 4"):
        ratio_margin(x, y, 3)
    neighbors = ratio_margin(x, y, 3, drop_non_finite=True)
    assert np.isfinite(np.delete(neighbors.forward_margin, 4, axis=0)).all()
    assert np.isfinite(np.delete(neighbors.backward_margin, [1, 6], axis=0)).all()
    assert (neighbors.forward.indices[4] == -1).all()
    assert not set(neighbors.forward.indices.ravel()) & {1, 6}
    pairs = mine_max(neighbors)
    assert pairs and all(i != 4 and j not in (1, 6) and j >= 0 for _, i, j in pairs)
    assert all(np.isfinite(score) for score, _, _ in pairs)


def test_search_command_exits_non_zero_and_names_the_rows_unless_told_to_drop(tmp_path, capsys):
    database, queries = _vectors(30), _vectors(4, seed=1)
    database[17, 0] = np.nan
    np.save(tmp_path / "db.npy", database)
    np.save(tmp_path / "q.npy", queries)
    args = [
        "--queries",
        str(tmp_path / "q.npy"),
        "--database",
        str(tmp_path / "db.npy"),
        "--k",
        "3",
        "--output",
        str(tmp_path / "out.npz"),
    ]
    assert search_cli.main(args) == 2
    assert "row 17" in capsys.readouterr().err
    assert not (tmp_path / "out.npz").exists()
    assert search_cli.main([*args, "--drop-non-finite", "--margin", "ratio"]) == 0
    written = np.load(tmp_path / "out.npz")
    assert 17 not in written["indices"] and (written["indices"] >= 0).all()
    assert np.isfinite(written["margin_scores"]).all()
