"""Dual encoder: the in-batch loss against NumPy, sharded training equal to one device, mAP@20 on hand-made rankings."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from stilts_jax.core.distributed import DEFAULT_LOGICAL_RULES, make_mesh
from stilts_jax.data.ranked_retrieval import Query, RankedRetrievalDataError, RetrievalPool
from stilts_jax.evaluation.metrics import map_at_k_by_id
from stilts_jax.tasks.dual_encoder import DualEncoder, in_batch_logits, make_in_batch_loss, score_rankings
from stilts_jax.train.loop import train
from stilts_jax.train.metrics_log import read_metrics
from tests.train_harness import SEQ, VOCAB, trainer_config

RULES = DEFAULT_LOGICAL_RULES


def _numpy_in_batch_loss(q: np.ndarray, c: np.ndarray, keys: np.ndarray, scale: float) -> np.ndarray:
    """Per-query cross-entropy, written from the definition (float64)."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    c = c / np.linalg.norm(c, axis=1, keepdims=True)
    losses = []
    for i in range(len(q)):
        others = [j for j in range(len(c)) if j == i or keys[j] != keys[i]]
        logits = scale * np.array([q[i] @ c[j] for j in others], np.float64)
        target = others.index(i)
        losses.append(np.log(np.sum(np.exp(logits - logits.max()))) + logits.max() - logits[target])
    return np.asarray(losses)


def test_in_batch_loss_matches_numpy_with_duplicate_candidates_masked():
    rng = np.random.default_rng(0)
    q, c = rng.normal(size=(6, 8)), rng.normal(size=(6, 8))
    keys = np.array([0, 1, 1, 2, 3, 1])  # rows 1, 2 and 5 share a candidate: not each other's negatives
    expected = _numpy_in_batch_loss(q, c, keys, 20.0)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    logits = np.asarray(
        in_batch_logits(jnp.asarray(unit(q), jnp.float32), jnp.asarray(unit(c), jnp.float32), jnp.asarray(keys), 20.0)
    )
    got = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1) - np.diag(logits)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # Without duplicates it is plain softmax cross-entropy over the batch.
    plain = _numpy_in_batch_loss(q, c, np.arange(6), 20.0)
    assert not np.allclose(plain, expected)


def _tiny_dual_encoder(seed: int = 0, pooling: str = "cls", scale: float = 10.0) -> DualEncoder:
    from flax import nnx

    from stilts_jax.models.config import tiny_config
    from stilts_jax.models.encoder import Encoder

    config = tiny_config(
        VOCAB,
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=64,
        num_hidden_layers=2,
        max_position_embeddings=SEQ + 2,
    )
    return DualEncoder(Encoder(config, rngs=nnx.Rngs(seed)), pooling, scale=scale)


def _pair_features(n: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """Query and candidate share their marker token: a relation the in-batch loss can learn."""
    rng = np.random.default_rng(seed)

    def sequences(markers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lengths = rng.integers(6, SEQ + 1, n)
        ids = rng.integers(10, VOCAB, (n, SEQ)).astype(np.int32)
        ids[np.arange(n), 1] = markers
        ids[:, 0] = 0
        mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype(np.int32)
        ids[mask == 0] = 1
        return ids, mask

    markers = rng.integers(10, VOCAB, n).astype(np.int32)
    qi, qm = sequences(markers)
    ci, cm = sequences(markers)
    return {
        "query_input_ids": qi,
        "query_attention_mask": qm,
        "candidate_input_ids": ci,
        "candidate_attention_mask": cm,
        "candidate_key": markers,
    }


@pytest.mark.slow  # ~25-35 s on 2 busy cores: compiling the tiny encoder
def test_loss_of_the_model_equals_numpy_on_its_own_embeddings():
    model = _tiny_dual_encoder(pooling="mean", scale=30.0)
    batch = {k: jnp.asarray(v[:8]) for k, v in _pair_features().items()}
    loss, count = jax.jit(lambda b: make_in_batch_loss()(model, b, None))(batch)
    embed = jax.jit(lambda ids, mask: model.embed(ids, mask))
    q = np.asarray(embed(batch["query_input_ids"], batch["query_attention_mask"]), np.float64)
    c = np.asarray(embed(batch["candidate_input_ids"], batch["candidate_attention_mask"]), np.float64)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, rtol=1e-5)
    assert float(count) == 8
    np.testing.assert_allclose(
        float(loss), _numpy_in_batch_loss(q, c, np.asarray(batch["candidate_key"]), 30.0).sum(), rtol=1e-4
    )


@pytest.mark.slow
def test_the_loss_sees_the_global_batch_when_it_is_sharded_over_8_devices():
    model = _tiny_dual_encoder()
    features = {k: jnp.asarray(v[:16]) for k, v in _pair_features().items()}
    loss_fn = make_in_batch_loss()
    one = jax.jit(lambda b: loss_fn(model, b, None)[0])(features)
    mesh = make_mesh({"data": 8, "fsdp": 1, "tensor": 1})
    sharded = {
        k: jax.device_put(v, NamedSharding(mesh, P("data", *([None] * (v.ndim - 1))))) for k, v in features.items()
    }
    assert len(sharded["query_input_ids"].sharding.device_set) == 8
    eight = jax.jit(lambda b: loss_fn(model, b, None)[0])(sharded)
    np.testing.assert_allclose(float(eight), float(one), rtol=1e-5)
    # A per-device loss (2 candidates each) would be much smaller: the global one is what was computed.
    per_pair = jax.jit(lambda b: loss_fn(model, b, None)[0])
    local = sum(float(per_pair({k: v[i : i + 2] for k, v in features.items()})) for i in range(0, 16, 2))
    assert float(one) > local + 1.0


def _flat(params):
    return {
        jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(jax.device_get(params))
    }


@pytest.mark.slow
def test_sharded_dual_encoder_training_follows_the_single_device_run(tmp_path):
    features = _pair_features()
    runs = {}
    for name, shape, devices in (
        ("one", {"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1]),
        ("data8", {"data": 8, "fsdp": 1, "tensor": 1}, None),
        ("2x2x2", {"data": 2, "fsdp": 2, "tensor": 2}, None),
    ):
        mesh = make_mesh(shape, devices)
        result = train(
            _tiny_dual_encoder(),
            make_in_batch_loss(),
            features,
            trainer_config(3, async_checkpointing=False, dropout=False),
            workdir=tmp_path / name,
            mesh=mesh,
            rules=RULES,
        )
        runs[name] = ([r["loss"] for r in read_metrics(tmp_path / name)], _flat(result.state.params))
    losses, params = runs.pop("one")
    assert len(losses) == 3
    for name, (other_losses, other_params) in runs.items():
        np.testing.assert_allclose(other_losses, losses, rtol=2e-5, err_msg=name)
        for key, value in other_params.items():
            # Adam divides by sqrt(v): where a gradient is ~1e-8 (position rows few sequences reach), the
            # summation order of a sharded reduction moves that coordinate by a fraction of one lr=1e-3 step.
            np.testing.assert_allclose(value, params[key], atol=1e-4, err_msg=f"{name} {key}")


# --- mAP@20 ------------------------------------------------------------------------------------------------------


def _reference_ap_at_k(targets: set, ranked: list, k: int) -> float:
    """xtreme third_party/utils_lareqa.py average_precision_at_k, transcribed from its definition."""
    ranked = ranked[:k]
    score, hits = 0.0, 0.0
    for i, pred in enumerate(ranked):
        if pred in targets and pred not in ranked[:i]:
            hits += 1.0
            score += hits / (i + 1.0)
    return score / min(len(targets), k)


def _reference_mrr_at_k(gold: str, ranked: list, k: int) -> float:
    """xtreme third_party/utils_mewslix.py evaluate: reciprocal rank of the gold id in the top k, else 0."""
    for rank, label in enumerate(ranked[:k], start=1):
        if label == gold:
            return 1.0 / rank
    return 0.0


def test_map_at_20_on_hand_made_rankings():
    ids = [f"c{i}" for i in range(40)]
    predictions = {
        "several_relevant": ["c0", "x", "c1", "x2", "c2"],  # (1/1 + 2/3 + 3/5) / 3
        "fewer_than_20": ["x", "c5"],  # 1 relevant at rank 2: 1/2
        "none_found": ["x", "y", "z"],
        "more_than_20_relevant": ids[:25],  # every one of the first 20 relevant: divisor min(25, 20) -> 1.0
        "found_after_20": ["y"] * 20 + ["c9"],  # outside the top 20: 0
    }
    relevant = {
        "several_relevant": {"c0", "c1", "c2"},
        "fewer_than_20": {"c5"},
        "none_found": {"c7"},
        "more_than_20_relevant": set(ids[:25]),
        "found_after_20": {"c9"},
        "no_prediction": {"c3"},
    }
    expected = [(1 + 2 / 3 + 3 / 5) / 3, 0.5, 0.0, 1.0, 0.0, 0.0]
    assert map_at_k_by_id(predictions, relevant, 20) == pytest.approx(100 * np.mean(expected))
    reference = [_reference_ap_at_k(relevant[q], predictions.get(q, []), 20) for q in relevant]
    assert map_at_k_by_id(predictions, relevant, 20) == pytest.approx(100 * np.mean(reference))


def test_map_at_20_with_one_gold_id_is_mewslix_mrr_at_20():
    rng = np.random.default_rng(1)
    entities = [f"Q{i}" for i in range(60)]
    golds = {f"m{i}": entities[rng.integers(60)] for i in range(50)}
    predictions = {m: list(rng.permutation(entities)[:30]) for m in golds}
    expected = np.mean([_reference_mrr_at_k(golds[m], predictions[m], 20) for m in golds])
    assert expected > 0
    assert map_at_k_by_id(predictions, {m: {g} for m, g in golds.items()}, 20) == pytest.approx(100 * expected)


def test_score_rankings_per_language_and_pool_checks():
    pool = RetrievalPool(
        {"de": (Query("a", "?", frozenset({"c1", "c2"})),), "zh": (Query("b", "?", frozenset({"c3"})),)},
        ("c1", "c2", "c3"),
        ("x", "y", "z"),
        None,
        "test pool",
    )
    scores = score_rankings({"de": {"a": ["c2", "c3", "c1"]}, "zh": {"b": ["c1", "c2", "c3"]}}, pool)
    assert scores["de"]["map@20"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert scores["zh"]["map@20"] == pytest.approx(100 / 3) and scores["zh"]["examples"] == 1
    with pytest.raises(RankedRetrievalDataError, match="not in the candidate pool"):
        RetrievalPool({"de": (Query("a", "?", frozenset({"c9"})),)}, ("c1",), ("x",), None, "bad pool")
    with pytest.raises(RankedRetrievalDataError, match="not unique"):
        RetrievalPool({}, ("c1", "c1"), ("x", "y"), None, "dup pool")
