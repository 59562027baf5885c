"""Dual-encoder retrieval (LAReQA, Mewsli-X): one shared tower, in-batch negatives, mAP@20 over a full pool.

The published model is XTREME-R's baseline for both tasks, google-research/xtreme third_party/bert.py
BertForRetrieval (xlm_roberta.py XLMRobertaForRetrieval for XLM-R; trained by run_retrieval_qa.py for LAReQA and
run_retrieval_el.py for Mewsli-X):
- ONE encoder embeds queries and candidates (both towers call the same model, bert.py L41-58);
- the embedding is the encoder's POOLER output, tanh(dense(h_<s>)) with the checkpoint's pretrained `pooler.dense`,
  L2-normalised (bert.py L19-20, L60-61);
- the logits of a batch are `logit_scale * q @ c.T`, `logit_scale` a trainable parameter initialised to 100.0 and
  used as a plain multiplier (bert.py L22-23);
- the loss is softmax cross-entropy of each query over the batch's candidates, its own candidate being the target
  (query -> candidate direction only, bert.py L62-66).
Here `pooling="pooler"` with `learned_scale=True` (configs/base.py's defaults) is that model: `Pooler`
(models/pooling.py) loaded from the checkpoint's `pooler.dense.*` (models/hf_weights.py `load_pooler`), and
`DualEncoder.logit_scale`, an nnx.Param trained with the encoder. Alternatives: `pooling="cls"` (the raw <s>
hidden state, no pooler: XLM-R's checkpoint pooler was never trained by its MLM objective, mBERT's was by next
sentence prediction) or `"mean"` (mean over the attention mask); `learned_scale=False` keeps `scale` fixed.

The learned scale sits where bert.py puts it: in the weight-decay group (train/optimizer.py `decays` is true for
`logit_scale`, as for the matrices), with xtreme's weight_decay 0.0 (train_lareqa.sh, train_mewslix.sh; the
published preset's too), so it is not decayed. With a non-zero `target.train.weight_decay` (e.g. 0.01) it would be:
AdamW's decoupled decay pulls it by learning_rate x weight_decay x scale per step (1e-5 x 0.01 x 100 = 1e-5), as large
as the largest step Adam itself takes (about the learning rate). Either way the scale moves little at these learning
rates: at most about the learning rate per step, ~0.1 over 10^4 steps. Global-norm clipping covers its gradient, as
bert.py's clip_grad_norm_ over all parameters does.

Differences from xtreme, on purpose:
- Two pairs of one batch with the same candidate (two SQuAD questions answered by one sentence) are not each
  other's negatives here: the duplicate's logit is masked out. xtreme counts it as a negative.
Under jit the loss is computed on the global, data-sharded batch, so every query sees every candidate of the
global batch (XLA gathers the candidate embeddings across devices and hosts). With gradient accumulation,
`make_cached_in_batch_grads` (gradient caching, Gao et al. 2021, arXiv 2101.06983) keeps the whole batch as the
negatives: it embeds every micro-batch without keeping activations, takes the loss of the whole batch and its
gradient w.r.t. the [B, D] embeddings (and the learned scale), then back-propagates each micro-batch's slice of the
embedding gradient through a recomputed forward (same dropout keys), so memory stays one micro-batch's activations
plus the embeddings. `make_in_batch_loss` under the default accumulation gives each query only its micro-batch's
candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import nnx

from stilts_jax.core.paths import PathLike, data_path
from stilts_jax.data.ranked_retrieval import DualPair, Query, RankedRetrievalDataError, RetrievalPool
from stilts_jax.evaluation.metrics import map_at_k_by_id
from stilts_jax.evaluation.predictor import Predictor
from stilts_jax.evaluation.search import NearestNeighbors
from stilts_jax.models.encoder import Encoder
from stilts_jax.models.pooling import Pooler, pool
from stilts_jax.tasks.registry import TaskSpec
from stilts_jax.train.state import ModelSpec
from stilts_jax.train.step import GradsFn, micro_batch_key

MAP_K = 20
# Query lengths of the XTREME-R scripts (train_lareqa.sh MAX_QUERY_LEN, train_mewslix.sh MAX_SEQ_LEN).
DEFAULT_QUERY_MAX_LENGTH = {"lareqa": 96, "mewslix": 64}
_EMBED_CHUNK = 16384  # texts tokenized and embedded per host step: bounds host memory for a 1M-entity pool
# "pooler": tanh(dense(h_<s>)) as XTREME-R's BertForRetrieval; "cls": the raw <s> state; "mean": over the mask.
DualPooling = Literal["pooler", "cls", "mean"]
POOLINGS = ("pooler", "cls", "mean")


class DualEncoder(nnx.Module):
    """The shared tower: `embed(ids, mask)` -> L2-normalised float32 [batch, hidden]; `__call__(batch)` for Predictor.

    pooling: "pooler" adds `self.pooler` (a Pooler, randomly initialised here: `models.hf_weights.load_pooler` fills
      it from a checkpoint), "cls" or "mean" have no parameters beyond the encoder's.
    scale, learned_scale: the logits' multiplier; learned, it is the nnx.Param `self.logit_scale` (initialised to
      `scale`, trained with the rest, as bert.py's `logit_scale`); otherwise the constant `scale`. `scale()` gives
      the one in use.
    """

    def __init__(
        self,
        encoder: Encoder,
        pooling: DualPooling = "cls",
        *,
        scale: float = 100.0,
        learned_scale: bool = False,
        rngs: nnx.Rngs | None = None,
    ):
        if pooling not in POOLINGS:
            raise ValueError(f"unknown dual_encoder.pooling {pooling!r}; use one of {', '.join(POOLINGS)}")
        self.encoder = encoder
        self.pooling = pooling
        config = encoder.config
        self.pooler = (
            Pooler(config.hidden_size, rngs=rngs or nnx.Rngs(0), std=config.initializer_range)
            if pooling == "pooler"
            else None
        )
        self.fixed_scale = float(scale)
        with nnx.use_eager_sharding(False):
            self.logit_scale = nnx.Param(jnp.asarray(scale, jnp.float32), out_sharding=()) if learned_scale else None

    @property
    def learned_scale(self) -> bool:
        return self.logit_scale is not None

    def scale(self) -> jax.Array:
        """The float32 scalar the cosine logits are multiplied by: the learned `logit_scale`, or the fixed scale."""
        return self.logit_scale[...] if self.logit_scale is not None else jnp.asarray(self.fixed_scale, jnp.float32)

    def embed(self, input_ids: jax.Array, attention_mask: jax.Array, dropout_rng: jax.Array | None = None) -> jax.Array:
        hidden = self.encoder(input_ids, attention_mask, dropout_rng=dropout_rng).last_hidden_state
        pooled = self.pooler(hidden) if self.pooler is not None else pool(hidden, attention_mask, self.pooling)
        return pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)

    def __call__(self, batch: Mapping[str, jax.Array], *, dropout_rng: jax.Array | None = None) -> jax.Array:
        return self.embed(batch["input_ids"], batch["attention_mask"], dropout_rng)


def in_batch_logits(
    queries: jax.Array, candidates: jax.Array, candidate_keys: jax.Array, scale: float | jax.Array
) -> jax.Array:
    """[B, B] float32 `scale * q @ c.T`; a candidate equal to the row's own (same key, other column) gets -1e9."""
    logits = scale * jnp.dot(queries, candidates.T, preferred_element_type=jnp.float32)
    same = candidate_keys[:, None] == candidate_keys[None, :]
    duplicate = same & ~jnp.eye(logits.shape[0], dtype=bool)
    return jnp.where(duplicate, -1e9, logits)


def in_batch_nll(
    queries: jax.Array, candidates: jax.Array, candidate_keys: jax.Array, scale: float | jax.Array
) -> jax.Array:
    """[B] cross-entropy of each query over the batch's candidates (its own is the target; duplicates masked)."""
    logits = in_batch_logits(queries, candidates, candidate_keys, scale)
    return jax.nn.logsumexp(logits, axis=-1) - jnp.diagonal(logits)


def embed_pairs(
    model: DualEncoder, batch: Mapping[str, jax.Array], dropout_rng: jax.Array | None
) -> tuple[jax.Array, jax.Array]:
    """The batch's query and candidate embeddings; the dropout key is split into one for each side."""
    rng_q, rng_c = (None, None) if dropout_rng is None else jax.random.split(dropout_rng)
    q = model.embed(batch["query_input_ids"], batch["query_attention_mask"], rng_q)
    c = model.embed(batch["candidate_input_ids"], batch["candidate_attention_mask"], rng_c)
    return q, c


def make_in_batch_loss() -> Callable[
    [DualEncoder, dict[str, jax.Array], jax.Array | None], tuple[jax.Array, jax.Array]
]:
    """The train-step loss: summed cross-entropy of each query over the batch's candidates, and the batch size.

    The logits' scale is the model's `scale()`: with a learned scale, autodiff of this loss gives its gradient too.
    """

    def loss_fn(
        model: DualEncoder, batch: dict[str, jax.Array], dropout_rng: jax.Array | None
    ) -> tuple[jax.Array, jax.Array]:
        q, c = embed_pairs(model, batch, dropout_rng)
        nll = in_batch_nll(q, c, batch["candidate_key"], model.scale())
        return jnp.sum(nll), jnp.asarray(nll.shape[0], jnp.float32)

    return loss_fn


def _whole_batch(x: jax.Array) -> jax.Array:
    """[micro_batches, micro_batch_size, ...] -> [micro_batches * micro_batch_size, ...], micro-batch-major."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def make_cached_in_batch_grads() -> GradsFn:
    """A train-step GradsFn whose in-batch negatives are the whole batch, whatever the number of micro-batches.

    Gradient caching in one jitted step: (1) a lax.scan embeds every micro-batch's queries and candidates without
    differentiating (no activations kept); (2) the summed loss of the whole [B, D] batch and its gradient w.r.t. the
    embeddings (duplicate candidates masked by key across the whole batch) and w.r.t. the parameters through the
    model's `scale()` (the learned scale's whole gradient: the embeddings do not depend on it; zero for a
    fixed scale); (3) a lax.scan of `jax.vjp` of the embedding w.r.t. the parameters at each micro-batch, pulling
    back that micro-batch's slice of the embedding gradient, summed onto (2)'s. Both passes use micro-batch `i`'s key
    `micro_batch_key(step_key, i)`, so the recomputed forward is the one the loss saw. The update equals
    `make_in_batch_loss` on the whole batch as one micro-batch, at the cost of a second forward pass.
    """

    def grads_fn(
        spec: ModelSpec, params: Any, batch: dict[str, jax.Array], step_key: jax.Array | None
    ) -> tuple[Any, jax.Array, jax.Array]:
        num_micro = jax.tree.leaves(batch)[0].shape[0]
        indices = jnp.arange(num_micro)

        def embeddings(p: Any, micro_batch: dict[str, jax.Array], index: jax.Array) -> tuple[jax.Array, jax.Array]:
            rng = None if step_key is None else micro_batch_key(step_key, index)
            return embed_pairs(spec.merge(p), micro_batch, rng)

        def embed_micro(_, inputs):
            index, micro_batch = inputs
            return None, embeddings(jax.lax.stop_gradient(params), micro_batch, index)

        _, (q, c) = jax.lax.scan(embed_micro, None, (indices, batch))  # [micro_batches, micro_batch_size, D] each
        keys = _whole_batch(batch["candidate_key"])

        def batch_loss(q: jax.Array, c: jax.Array, p: Any) -> jax.Array:
            # `p` enters only through the logits' scale: its gradient is the learned scale's (zeros elsewhere).
            return jnp.sum(in_batch_nll(_whole_batch(q), _whole_batch(c), keys, spec.merge(p).scale()))

        loss_sum, (dq, dc, scale_grads) = jax.value_and_grad(batch_loss, argnums=(0, 1, 2))(q, c, params)

        def backward_micro(grads, inputs):
            index, micro_batch, dq_micro, dc_micro = inputs
            _, pullback = jax.vjp(lambda p: embeddings(p, micro_batch, index), params)
            (micro_grads,) = pullback((dq_micro, dc_micro))
            grads = jax.lax.with_sharding_constraint(jax.tree.map(jnp.add, grads, micro_grads), spec.param_shardings)
            return grads, None

        init = jax.lax.with_sharding_constraint(scale_grads, spec.param_shardings)
        grads, _ = jax.lax.scan(backward_micro, init, (indices, batch, dq, dc))
        weight = jnp.asarray(q.shape[0] * q.shape[1], jnp.float32)
        return grads, loss_sum, weight

    return grads_fn


class DualEncoderTask:
    """Data, features and evaluation of one dual-encoder task (`spec.name` is lareqa or mewslix)."""

    columns = [(f"map@{MAP_K}", f"mAP@{MAP_K}")]  # noqa: RUF012 (an instance may replace it)

    def __init__(self, spec: TaskSpec, tokenizer: Any, *, max_length: int, query_max_length: int = 0):
        if spec.name not in DEFAULT_QUERY_MAX_LENGTH:
            raise ValueError(
                f"task {spec.name} is not a dual-encoder task; known: {', '.join(DEFAULT_QUERY_MAX_LENGTH)}"
            )
        self.spec, self.tokenizer = spec, tokenizer
        self.max_length = max_length
        self.query_max_length = query_max_length or min(DEFAULT_QUERY_MAX_LENGTH[spec.name], max_length)
        # The embedding and the logits' scale are the model's (DualEncoder): the losses read them from it.
        self.loss_fn = make_in_batch_loss()
        self.full_batch_grads = make_cached_in_batch_grads()  # the train-step GradsFn for micro_batches > 1

    # --- data ------------------------------------------------------------------------------------------------

    def train_pairs(self, source: Mapping[str, Any]) -> list[DualPair]:
        if self.spec.name == "lareqa":
            from stilts_jax.data.lareqa import squad_training_pairs
            from stilts_jax.data.task_sources import load_qa

            return squad_training_pairs(load_qa("squad", "train", source, ["en"])["en"])
        from stilts_jax.data.mewslix import mewslix_path, read_wikipedia_pairs, wikipedia_training_pairs

        return wikipedia_training_pairs(
            read_wikipedia_pairs(mewslix_path(_folder(source), "wikipedia_pairs-train.jsonl"))
        )

    def dev_pool(self, source: Mapping[str, Any], max_queries: int = 0) -> RetrievalPool:
        """English model-selection pool: SQuAD dev sentences (LAReQA), Wikipedia dev pairs' entities (Mewsli-X)."""
        if self.spec.name == "lareqa":
            from stilts_jax.data.lareqa import squad_dev_pool
            from stilts_jax.data.task_sources import load_qa

            examples = load_qa("squad", "dev", source, ["en"])["en"]
            return squad_dev_pool(examples[:max_queries] if max_queries else examples)
        from stilts_jax.data.mewslix import mewslix_path, read_wikipedia_pairs, wikipedia_dev_pool

        path = mewslix_path(_folder(source), "wikipedia_pairs-dev.jsonl")
        pairs = read_wikipedia_pairs(path)
        return wikipedia_dev_pool(pairs[:max_queries] if max_queries else pairs, str(path))

    def eval_pool(self, root: PathLike, languages: Sequence[str], split: str) -> RetrievalPool:
        """The zero-shot pool: XQuAD-R of all its languages (LAReQA), the 1M candidate set (Mewsli-X)."""
        if self.spec.name == "lareqa":
            from stilts_jax.data.lareqa import LAREQA_LANGUAGES, read_lareqa

            # The pool is every XQuAD-R language present (all 11 in the real download), not only those queried.
            present = [lang for lang in LAREQA_LANGUAGES if _has_xquad_r(root, lang)]
            return read_lareqa(root, languages, present + [lang for lang in languages if lang not in present])
        from stilts_jax.data.mewslix import read_mewslix

        return read_mewslix(root, split, languages)

    # --- features ----------------------------------------------------------------------------------------------

    def encode(self, texts: Sequence[str], contexts: Sequence[str] | None, max_length: int) -> dict[str, np.ndarray]:
        encoded = self.tokenizer(
            list(texts),
            None if contexts is None else list(contexts),
            truncation=True,
            max_length=max_length,
            padding="max_length",
        )
        return {
            "input_ids": np.asarray(encoded["input_ids"], np.int32),
            "attention_mask": np.asarray(encoded["attention_mask"], np.int32),
        }

    def train_features(self, pairs: Sequence[DualPair]) -> dict[str, np.ndarray]:
        if not pairs:
            raise RankedRetrievalDataError(f"no {self.spec.name} training pairs")
        queries = self.encode([p.query for p in pairs], None, self.query_max_length)
        has_context = any(p.candidate_context is not None for p in pairs)
        candidates = self.encode(
            [p.candidate for p in pairs],
            [p.candidate_context or "" for p in pairs] if has_context else None,
            self.max_length,
        )
        keys = {cid: i for i, cid in enumerate(dict.fromkeys(p.candidate_id for p in pairs))}
        return {
            "query_input_ids": queries["input_ids"],
            "query_attention_mask": queries["attention_mask"],
            "candidate_input_ids": candidates["input_ids"],
            "candidate_attention_mask": candidates["attention_mask"],
            "candidate_key": np.asarray([keys[p.candidate_id] for p in pairs], np.int32),
        }

    # --- evaluation --------------------------------------------------------------------------------------------

    def embed(
        self,
        predictor: Predictor,
        params: Any,
        texts: Sequence[str],
        contexts: Sequence[str] | None,
        max_length: int,
        desc: str,
    ) -> np.ndarray:
        """[len(texts), hidden] float32 unit vectors, in chunks so a 1M-text pool never tokenizes at once."""
        parts = []
        for start in range(0, len(texts), _EMBED_CHUNK):
            stop = start + _EMBED_CHUNK
            arrays = self.encode(texts[start:stop], None if contexts is None else contexts[start:stop], max_length)
            parts.append(np.asarray(predictor.predict(params, arrays, desc=desc), np.float32))
        return np.concatenate(parts)

    def rank(
        self,
        predictor: Predictor,
        params: Any,
        pool: RetrievalPool,
        k: int = MAP_K,
        search_options: Mapping[str, Any] | None = None,
    ) -> dict[str, dict[str, list[str]]]:
        """Language -> {query id: the top-k candidate ids, best first}, searched over the whole pool."""
        candidates = self.embed(
            predictor,
            params,
            pool.candidate_texts,
            pool.candidate_contexts,
            self.max_length,
            f"{self.spec.name} candidates",
        )
        # The pool is split over every process's devices; every process gets the whole ranking back.
        index = NearestNeighbors(candidates, **(search_options or {}))
        k = min(k, len(pool.candidate_ids))
        rankings = {}
        for language, queries in pool.queries.items():
            embedded = self.embed(
                predictor,
                params,
                [q.text for q in queries],
                None,
                self.query_max_length,
                f"{self.spec.name} {language} queries",
            )
            found = index.search(embedded, k).indices
            rankings[language] = {q.id: [pool.candidate_ids[i] for i in row] for q, row in zip(queries, found)}
        return rankings


def score_rankings(
    rankings: Mapping[str, Mapping[str, Sequence[str]]], pool: RetrievalPool, k: int = MAP_K
) -> dict[str, dict[str, float]]:
    """Language -> {"map@20": percent, "examples": query count}, with evaluation.metrics.map_at_k_by_id."""
    out = {}
    for language, queries in pool.queries.items():
        relevant = {q.id: q.relevant for q in queries}
        out[language] = {f"map@{k}": map_at_k_by_id(rankings[language], relevant, k), "examples": len(queries)}
    return out


def gold_labels(queries: Sequence[Query]) -> dict[str, list[str]]:
    """The label-file form the scorer reads: {query id: [relevant candidate ids]} (sorted, for stable files)."""
    return {q.id: sorted(q.relevant) for q in queries}


def _folder(source: Mapping[str, Any]) -> epath.Path:
    if not source.get("path"):
        raise RankedRetrievalDataError(
            "Mewsli-X is read from files: set --config.target.source.kind=xtreme and "
            "--config.target.source.path=<the download/ or download/mewslix/ folder>"
        )
    return data_path(source["path"])


def _has_xquad_r(root: PathLike, language: str) -> bool:
    from stilts_jax.data.lareqa import xquad_r_path

    try:
        xquad_r_path(root, language)
    except RankedRetrievalDataError:
        return False
    return True
