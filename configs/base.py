"""Defaults shared by every recipe. Real runs: xlm-roberta-large from the hub, the paper's hyperparameters.

Recipes import this file's helpers; override any key from the command line, e.g. `--config.target.train.epochs=3`.
"""

from __future__ import annotations

import ml_collections

from stilts_jax.distributed import DEFAULT_LOGICAL_RULES

# English training data, epochs, effective batch and max length per target (see BENCHMARKS.md).
TASK_DEFAULTS = {
    "squad": dict(epochs=2.0, batch_size=16, max_length=384),
    "tydiqa": dict(epochs=2.0, batch_size=16, max_length=384),
    "xquad": dict(epochs=2.0, batch_size=16, max_length=384),  # both train on SQuAD v1.1 (doc stride 128)
    "mlqa": dict(epochs=2.0, batch_size=16, max_length=384),
    "squad_v2": dict(epochs=3.0, batch_size=16, max_length=256),  # an intermediate task: the paper's intermediate setup
    "xnli": dict(epochs=2.0, batch_size=32, max_length=256),
    "pawsx": dict(epochs=5.0, batch_size=32, max_length=256),
    "udpos": dict(epochs=10.0, batch_size=32, max_length=256),
    "panx": dict(epochs=10.0, batch_size=32, max_length=256),
    "xcopa": dict(epochs=10.0, batch_size=32, max_length=256),  # COPA is tiny; XTREME-R trains SIQA first
    "tatoeba": dict(epochs=0.0, batch_size=32, max_length=512),  # retrieval: no training
    "bucc": dict(epochs=0.0, batch_size=32, max_length=512),
    # Dual encoders (xtreme scripts/train_lareqa.sh, train_mewslix.sh): max_length is the candidate length
    # (LAReQA answer sentence + paragraph 256, Mewsli-X 64); batch = per-device batch x accumulation there.
    "lareqa": dict(epochs=3.0, batch_size=16, max_length=256),
    "mewslix": dict(epochs=2.0, batch_size=256, max_length=64),
}
INTERMEDIATE_DEFAULTS = dict(epochs=3.0, batch_size=16, max_length=256)


def source(kind: str = "hf", **values: str) -> ml_collections.ConfigDict:
    """Where a task's data comes from: kind is hf (hub), xtreme (download folder), tfds or files."""
    # labels: a folder of XTREME label files (Tatoeba's XTREME download has none; see stilts_jax/data/retrieval.py).
    base = dict(kind=kind, path="", repo="", config="", revision="", name="", data_dir="", labels="")
    base.update(values)
    return ml_collections.ConfigDict(base)


def phase(task: str, *, intermediate: bool = False, **overrides) -> ml_collections.ConfigDict:
    defaults = INTERMEDIATE_DEFAULTS if intermediate else TASK_DEFAULTS.get(task, INTERMEDIATE_DEFAULTS)
    config = ml_collections.ConfigDict(dict(
        task=task,
        source=source(),
        max_length=defaults["max_length"],
        doc_stride=128,
        max_train_examples=0,  # 0: all (per training language)
        max_dev_examples=0,
        # Training languages, concatenated; non-English ones come from translated_train (a file template with {lang},
        # in the task's training-file format) or from the source where it has them. Dev selection stays English.
        train_languages=["en"],
        translated_train="",
        # Multi-task (stilts_jax/pipeline/multitask_phase.py): several tasks share the encoder, one head each; `task`
        # is then a label. task_sources: task -> source overriding `source`. sampling: proportional or temperature
        # (p ~ n ** (1/temperature)); cap: the most examples a task counts with (0: none).
        tasks=[],
        task_sources={},
        sampling="proportional",
        temperature=1.0,
        cap=0,
        # MLM auxiliary, one more task of the sampler: text files (one sentence per line), its share of the steps.
        mlm=dict(files=[], share=0.1, max_length=128, mask_probability=0.15, init_from_checkpoint=True),
        train=dict(
            batch_size=defaults["batch_size"],
            micro_batches=1,
            epochs=defaults["epochs"],
            max_steps=0,  # 0: from epochs
            learning_rate=1e-5,
            warmup_fraction=0.1,
            weight_decay=0.01,
            adam_eps=1e-8,
            max_grad_norm=1.0,
            dropout=True,
            log_every=50,
            checkpoint_every=1000,
            eval_every=0,  # 0: evaluate on the English dev set at the end of the phase only
            keep_checkpoints=2,
            progress_bar=True,
            early_stopping_patience=0,  # stop after this many evaluations without a better dev score (0: off)
        ),
    ))
    for key, value in overrides.items():
        config[key] = value
    return config


def get_config(intermediate: str = "squad", target: str = "tydiqa") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.workdir = f"workdir/{intermediate or 'baseline'}_to_{target}"
    config.seed = 0
    # remat: activation checkpointing per layer in training: "none", "save_dots" (keep the weight matmuls' outputs)
    # or "full" (keep each layer's input only: the least memory, about a third more compute).
    config.model = dict(name="xlm-roberta-large", tokenizer="", dtype="auto", attention="auto", remat="none",
                        make_tiny=False)
    config.mesh = dict(data=-1, fsdp=1, tensor=1)  # -1: the devices left over
    # Logical axis of the parameters/batches -> mesh axis (or axes, or None to replicate).
    config.logical_rules = [list(rule) for rule in DEFAULT_LOGICAL_RULES]
    config.distributed = dict(coordinator_address="", num_processes=1, process_id=0)
    # An empty intermediate task is the baseline: the target task straight from the pretrained model.
    config.intermediate = phase(intermediate or "squad", intermediate=True)
    config.intermediate.task = intermediate
    config.target = phase(target)
    # languages: [] evaluates every language of the target task.
    # layer: the retrieval layer (-1: 14 of 24, 8 of 12); all_layers: also score every layer (a per-layer table).
    # split: "" evaluates the task's own zero-shot split (test for XNLI, PAWS-X, XCOPA, UD-POS, PAN-X).
    # Dual-encoder targets (lareqa, mewslix): embedding ("cls" as XTREME-R's baselines, or "mean"), logit scale,
    # query length (0: 96 for LAReQA, 64 for Mewsli-X), and the evaluation folder when it differs from the
    # target source (LAReQA trains on SQuAD from target.source and searches XQuAD-R from eval_path).
    # full_batch_negatives: with train.micro_batches > 1, the negatives are still the whole batch (gradient caching:
    # a second forward pass); false: each micro-batch's own candidates.
    config.dual_encoder = dict(pooling="cls", scale=100.0, query_max_length=0, eval_path="", full_batch_negatives=True)
    # null_score_diff_threshold: SQuAD v2.0 predicts "no answer" when null score - best span score exceeds it;
    # tune_null_score_diff_threshold: instead, each evaluated SQuAD v2.0 set uses the threshold of its best F1
    # (chosen with its own answers: an oracle, as BERT's dev runs; the threshold is logged).
    # length_buckets: evaluation batches sorted by length and cut to the power of two above their longest row (a few
    # compiled shapes; false: every batch at max_length, one shape).
    # search_kernel: nearest-neighbour search of the retrieval tasks, "xla" (dot + top_k, every platform) or "fused"
    # (one Pallas kernel per GPU that never writes the score matrix; k <= 32); search_dtype: its matmul operands
    # ("bfloat16" halves memory and time on accelerators; accumulation is float32 either way).
    # plots: beside results.md, {task}_languages.png (zero-shot score per language) and, with all_layers,
    # {task}_layers.png (retrieval score per layer); needs matplotlib (skipped with a message without it).
    config.evaluation = dict(batch_size=64, n_best=20, max_answer_length=30, languages=[], layer=-1, all_layers=False,
                             margin_k=4, split="", null_score_diff_threshold=0.0,
                             tune_null_score_diff_threshold=False, plots=True, length_buckets=True,
                             search_kernel="xla", search_dtype="float32")
    return config
