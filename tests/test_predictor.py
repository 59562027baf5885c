"""The jitted evaluator: length-bucketed batches give the outputs of full-width batches, in the input order."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from stilts_jax.core.distributed import DEFAULT_LOGICAL_RULES, make_mesh
from stilts_jax.evaluation.predictor import PADDED_LOGIT, Predictor, bucket_plan
from stilts_jax.models.config import tiny_config
from stilts_jax.models.encoder import Encoder
from stilts_jax.models.heads import ClassificationHead, SpanHead, TaggingHead, TaskModel
from stilts_jax.train.state import ModelSpec

WIDTH = 96
CONFIG = tiny_config(300, max_position_embeddings=WIDTH + 2)


def _model(head: str) -> TaskModel:
    rngs = nnx.Rngs(0)
    heads = {
        "classification": lambda: ClassificationHead(CONFIG.hidden_size, 3, rngs=rngs),
        "choice": lambda: ClassificationHead(CONFIG.hidden_size, 1, rngs=rngs),
        "tagging": lambda: TaggingHead(CONFIG.hidden_size, 5, rngs=rngs),
        "span": lambda: SpanHead(CONFIG.hidden_size, rngs=rngs),
    }
    return TaskModel(Encoder(CONFIG, rngs=rngs), heads[head]())


def _arrays(lengths: np.ndarray, seed: int = 0, choices: int | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (len(lengths), WIDTH) if choices is None else (len(lengths), choices, WIDTH)
    mask = np.broadcast_to(np.arange(WIDTH) < (lengths if choices is None else lengths[:, None])[..., None], shape)
    mask = mask.astype(np.int32)
    if choices is not None:  # choices of one example have different lengths
        mask[:, 1:, :] &= (np.arange(WIDTH) < np.maximum(1, lengths[:, None] // 2)[..., None]).astype(np.int32)
    ids = np.where(mask == 1, rng.integers(4, CONFIG.vocab_size, shape), CONFIG.pad_token_id).astype(np.int32)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def _predict(head: str, arrays: dict[str, np.ndarray], buckets: bool, mesh_shape: dict[str, int]) -> np.ndarray:
    mesh = make_mesh(mesh_shape)
    spec = ModelSpec(_model(head), mesh, DEFAULT_LOGICAL_RULES)
    predictor = Predictor(spec, mesh, DEFAULT_LOGICAL_RULES, batch_size=8, length_buckets=buckets)
    return predictor.predict(spec.initial_params(), arrays, progress=False)


LENGTHS = np.random.default_rng(1).integers(2, WIDTH + 1, 37)  # not a multiple of the batch size


@pytest.mark.parametrize("head", ["classification", "tagging", "span"])
def test_bucketed_outputs_equal_full_width_outputs_in_input_order(head):
    arrays = _arrays(LENGTHS)
    full = _predict(head, arrays, False, {"data": -1})
    bucketed = _predict(head, arrays, True, {"data": -1})
    assert bucketed.shape == full.shape and bucketed.dtype == full.dtype
    if head == "classification":
        np.testing.assert_allclose(bucketed, full, atol=2e-5)
        return
    real = arrays["attention_mask"].astype(bool)
    np.testing.assert_allclose(bucketed[real], full[real], atol=2e-5)
    if head == "span":  # padded positions hold the span head's own mask value, so no span can start there
        np.testing.assert_array_equal(bucketed[~real], full[~real])
        assert np.all(bucketed[~real] == np.float32(PADDED_LOGIT))


def test_multiple_choice_rows_are_cut_to_their_longest_choice():
    arrays = _arrays(LENGTHS[:13], choices=3)
    full = _predict("choice", arrays, False, {"data": 2, "fsdp": -1})
    bucketed = _predict("choice", arrays, True, {"data": 2, "fsdp": -1})
    assert bucketed.shape == (13, 3)
    np.testing.assert_allclose(bucketed, full, atol=2e-5)


def test_bucket_plan_sorts_rows_and_cuts_each_batch_to_a_power_of_two():
    lengths = np.array([90, 3, 17, 40, 5, 64, 33, 2, 16])
    plan = bucket_plan(lengths, batch_size=3, width=96)
    rows = np.concatenate([r for r, _ in plan])
    assert sorted(rows.tolist()) == list(range(9))  # every row exactly once
    assert [lengths[r].tolist() for r, _ in plan] == [[2, 3, 5], [16, 17, 33], [40, 64, 90]]
    assert [length for _, length in plan] == [16, 64, 96]  # at least 16, capped at the width


def test_a_cut_batch_computes_fewer_positions():
    """The point of it: the model runs on [8, bucket] arrays, not [8, width]."""
    mesh = make_mesh({"data": -1})
    spec = ModelSpec(_model("classification"), mesh, DEFAULT_LOGICAL_RULES)
    predictor = Predictor(spec, mesh, DEFAULT_LOGICAL_RULES, batch_size=8)
    arrays = _arrays(np.array([40] * 8 + [3] * 8))
    shapes = [
        {k: v.shape for k, v in predictor._device_batch(arrays, rows, length).items()}
        for rows, length in predictor._plan(arrays, 16)
    ]
    assert shapes == [{k: (8, 16) for k in arrays}, {k: (8, 64) for k in arrays}]
    unbucketed = Predictor(spec, mesh, DEFAULT_LOGICAL_RULES, batch_size=8, length_buckets=False)
    assert [length for _, length in unbucketed._plan(arrays, 16)] == [WIDTH, WIDTH]


def test_several_calls_can_share_one_progress_bar():
    import io

    from tqdm.auto import tqdm

    mesh = make_mesh({"data": -1})
    spec = ModelSpec(_model("classification"), mesh, DEFAULT_LOGICAL_RULES)
    predictor = Predictor(spec, mesh, DEFAULT_LOGICAL_RULES, batch_size=8)
    params = spec.initial_params()
    bar = tqdm(total=37, file=io.StringIO())
    first = predictor.predict(params, _arrays(LENGTHS[:20]), bar=bar)
    second = predictor.predict(params, _arrays(LENGTHS[20:], seed=1), bar=bar)
    assert bar.n == 37 and first.shape == (20, 3) and second.shape == (17, 3)  # advanced by both, left open
    bar.close()
