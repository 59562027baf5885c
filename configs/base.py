"""Defaults shared by every recipe. Real runs: xlm-roberta-large from the hub, the paper's hyperparameters.

Recipes import this file's helpers; override any key from the command line, e.g. `--config.target.train.epochs=3`.
"""

from __future__ import annotations

import ml_collections

from stilts_jax.config.presets import (  # noqa: F401 (recipes read these through base)
    INTERMEDIATE_DEFAULTS,
    OWN_OVERRIDES,
    PAPER_TRAINING,
    PRESETS,
    preset_values,
)
from stilts_jax.core.distributed import DEFAULT_LOGICAL_RULES

# The presets (published, own), the file behind every default and the target rows: stilts_jax/config/presets.py.


def source(kind: str = "hf", **values: str) -> ml_collections.ConfigDict:
    """Where a task's data comes from: kind is hf (hub), xtreme (download folder), tfds or files."""
    # labels: a folder of XTREME label files (Tatoeba's XTREME download has none; see stilts_jax/data/retrieval.py).
    base = dict(kind=kind, path="", repo="", config="", revision="", name="", data_dir="", labels="")
    base.update(values)
    return ml_collections.ConfigDict(base)


def phase(
    task: str, *, intermediate: bool = False, preset: str = "published", target: str = "", **overrides
) -> ml_collections.ConfigDict:
    values, label = preset_values(task, intermediate=intermediate, preset=preset, target=target)
    row, training = values, {key: values[key] for key in PAPER_TRAINING}
    config = ml_collections.ConfigDict(
        dict(
            task=task,
            source=source(),
            max_length=row["max_length"],
            doc_stride=128,  # the step between QA windows (run_squad's meaning), jiant/XTREME's 128
            max_train_examples=0,  # 0: all (per training language)
            max_dev_examples=0,
            # Training languages, concatenated; non-English ones come from translated_train (a file template with {lang},
            # in the task's training-file format) or from the source where it has them. Dev selection stays English.
            train_languages=["en"],
            translated_train="",
            # "concatenate" the training languages, or "balanced": each language drawn equally often (the smaller ones
            # repeated). train_languages=['all'] is English and every language of the task (translate-train-all).
            language_sampling="concatenate",
            evaluate_model="",  # target only: a fine-tuned model (phase folder, workdir, HF task model) evaluated untrained
            # Multi-task (stilts_jax/pipeline/multitask_phase.py): several tasks share the encoder, one head each; `task`
            # is then a label. task_sources: task -> source overriding `source`. sampling: proportional or temperature
            # (p ~ n ** (1/temperature)); cap: the most examples a task counts with (0: none).
            tasks=[],
            task_sources={},
            sampling="proportional",
            temperature=1.0,
            cap=0,
            # A chain of intermediate stages (task "anli+hellaswag", stilts_jax/pipeline/chain.py): per-stage settings,
            # {task: {key: value or {key: value}}}; a stage's data source comes from task_sources.<task> as above.
            stage_overrides={},
            # MLM auxiliary, one more task of the sampler: text files (one sentence per line), its share of the steps.
            mlm=dict(files=[], share=0.1, max_length=128, mask_probability=0.15, init_from_checkpoint=True),
            train=dict(
                batch_size=row["batch_size"],
                micro_batches=training["micro_batches"],
                epochs=row["epochs"],
                max_steps=0,  # 0: from epochs
                learning_rate=training["learning_rate"],
                warmup_fraction=training["warmup_fraction"],
                weight_decay=training["weight_decay"],
                adam_eps=training["adam_eps"],
                max_grad_norm=training["max_grad_norm"],
                dropout=True,
                log_every=50,
                checkpoint_every=1000,
                # Model selection. selection "best": the English dev score every eval_every steps (on the first
                # eval_subset dev examples, 0: all) picks the checkpoint; "last": the final parameters are used.
                # The selected model's English dev score on the whole dev set is reported either way.
                selection=training["selection"],
                eval_every=training["eval_every"],  # 0: at the end of the phase only
                eval_subset=training["eval_subset"],
                keep_checkpoints=2,
                progress_bar=True,
                early_stopping_patience=training[
                    "early_stopping_patience"
                ],  # evaluations without a better score; 0: off
                length_grouping=False,  # batches of similar lengths, cut to a power-of-two width: faster, other batches
            ),
            # Where the defaults above come from, and their values, so results name the protocol and what was changed.
            preset=dict(
                name=preset,
                label=label,
                values=dict(
                    max_length=row["max_length"], batch_size=row["batch_size"], epochs=row["epochs"], **training
                ),
            ),
        )
    )
    for key, value in overrides.items():
        config[key] = value
    return config


def get_config(
    intermediate: str = "squad", target: str = "tydiqa", preset: str = "published"
) -> ml_collections.ConfigDict:
    """`preset`: "published" (the code behind each task's published numbers) or "own"; see PRESETS above. Each phase
    records its preset's label and values (`<phase>.preset`), so results name the protocol and what was changed."""
    config = ml_collections.ConfigDict()
    # Python files (or module names) that register users' own tasks (README: "Add your own task").
    config.task_modules = []
    config.workdir = f"workdir/{(intermediate or 'baseline').replace('&', '-')}_to_{target}"  # '&' as stage folders
    config.seed = 0
    # A rerun in a workdir reuses a finished (or resumes an unfinished) phase only when every setting that determines
    # it is the same. When one differs: "refuse" stops before anything runs and lists the differences; "restart"
    # starts that phase and every phase after it anew (the old folders are kept beside them, renamed).
    config.on_change = "refuse"
    # dry_run: print the resolved config, what each phase would do in this workdir and the data it would read; exit.
    config.dry_run = False
    # JAX's persistent compilation cache (a resumed or repeated run does not compile again): a folder (local or
    # gs://), "default" ($XDG_CACHE_HOME or ~/.cache, then stilts-jax/jax-compilation) or "" (off, the default: on
    # CPU meshes an executable loaded from the cache deadlocked in a cross-device all-gather).
    config.compilation_cache = ""
    # Training features (tokenized examples) are kept for resumes and other hosts: "" in <workdir>/features; a folder
    # (local or gs://) shared by several runs, e.g. a sweep's, tokenizes each dataset once for all of them (files are
    # keyed by the tokenizer, the featurization settings and the data, so a change of any of them builds anew).
    config.feature_cache = ""
    # attention: "auto" (cuDNN's fused kernel on GPU in half precision, the Pallas splash kernel on TPU, XLA's
    # elsewhere), or "xla", "cudnn", "splash". Training with attention dropout runs XLA's whatever this says.
    # remat: activation checkpointing per layer in training: "none", "save_dots" (keep the weight matmuls' outputs)
    # or "full" (keep each layer's input only: the least memory, about a third more compute).
    # random_init: the encoder gets random weights (seeded by `seed`) in the shapes of the model's config.json (a model
    # folder, or the config shipped for xlm-roberta-base/-large and bert-base-multilingual-cased): nothing is
    # downloaded. For timing and memory checks at real size, not for results. The tokenizer comes from `tokenizer`,
    # else from the model folder; a shipped config has none, so set `tokenizer` then (the demo's works offline).
    # scan_layers: store the layers' parameters stacked and run them with jax.lax.scan, so the compiler compiles one
    # layer instead of all of them (docs/SCALING.md, "Scanned layers"); outputs equal the unrolled layers'.
    config.model = dict(
        name="xlm-roberta-large",
        tokenizer="",
        dtype="auto",
        attention="auto",
        remat="none",
        make_tiny=False,
        random_init=False,
        attention_dropout="config",
        scan_layers=False,
    )
    config.mesh = dict(data=-1, fsdp=1, tensor=1)  # -1: the devices left over
    # Logical axis of the parameters/batches -> mesh axis (or axes, or None to replicate).
    config.logical_rules = [list(rule) for rule in DEFAULT_LOGICAL_RULES]
    config.distributed = dict(coordinator_address="", num_processes=1, process_id=0)
    # An empty intermediate task is the baseline: the target task straight from the pretrained model.
    config.intermediate = phase(intermediate or "squad", intermediate=True, preset=preset, target=target)
    config.intermediate.task = intermediate
    config.target = phase(target, preset=preset)
    # languages: [] evaluates every language of the target task.
    # layer: the retrieval layer (-1: 14 of 24, 8 of 12); all_layers: also score every layer (a per-layer table).
    # split: "" evaluates the task's own zero-shot split (test for XNLI, PAWS-X, XCOPA, UD-POS, PAN-X).
    # Dual-encoder targets (lareqa, mewslix). The defaults are XTREME-R's published baseline (google-research/xtreme
    # third_party/bert.py BertForRetrieval): pooling="pooler" embeds with tanh(dense(h_<s>)), the checkpoint's
    # pretrained pooler.dense (a checkpoint without it is an error unless allow_random_pooler), L2-normalised, and
    # learned_scale=True trains the logits' multiplier from `scale` (100). The named alternative: pooling="cls" (the
    # raw <s> hidden state, no pooler) with learned_scale=False (`scale` fixed); "mean" pools over the mask.
    # query_max_length: 0 is 96 for LAReQA, 64 for Mewsli-X; eval_path: the evaluation folder when it differs from
    # the target source (LAReQA trains on SQuAD from target.source and searches XQuAD-R from eval_path).
    # full_batch_negatives: with train.micro_batches > 1, the negatives are still the whole batch (gradient caching:
    # a second forward pass); false: each micro-batch's own candidates.
    config.dual_encoder = dict(
        pooling="pooler",
        scale=100.0,
        learned_scale=True,
        allow_random_pooler=False,
        query_max_length=0,
        eval_path="",
        full_batch_negatives=True,
    )
    if preset == "published":  # xtreme third_party/bert.py: the negatives of one forward pass (micro-batch) only
        config.dual_encoder.full_batch_negatives = False
    # null_score_diff_threshold: SQuAD v2.0 predicts "no answer" when null score - best span score exceeds it;
    # tune_null_score_diff_threshold: instead, each evaluated SQuAD v2.0 set uses the threshold of its best F1
    # (chosen with its own answers: an oracle, as BERT's dev runs; the threshold is logged).
    # length_buckets: evaluation batches sorted by length and cut to the power of two above their longest row (a few
    # compiled shapes; false: every batch at max_length, one shape).
    # search_kernel: nearest-neighbour search of the retrieval tasks, "xla" (dot + top_k, every platform) or "fused"
    # (one Pallas kernel per GPU that never writes the score matrix; k <= 32); search_dtype: its matmul operands
    # ("bfloat16" halves memory and time on accelerators; accumulation is float32 either way).
    # bucc_threshold: "dev" tunes BUCC's F1-best threshold on the dev (sample) split and applies it to test (XTREME,
    # LASER); "oracle" tunes it on the scored split itself (jiant's tables; an upper bound). Written in the results.
    # average_checkpoints: k > 0 also evaluates the uniform average of the target phase's last k kept checkpoints
    # (k <= target.train.keep_checkpoints; save often enough with target.train.checkpoint_every), reported beside the
    # selected model as avg-last-k (Schmidt et al. 2023: checkpoint averaging helps zero-shot transfer). 0: off.
    # plots: beside results.md, {task}_languages.png (zero-shot score per language) and, with all_layers,
    # {task}_layers.png (retrieval score per layer); needs matplotlib (skipped with a message without it).
    config.evaluation = dict(
        batch_size=64,
        n_best=20,
        max_answer_length=30,
        languages=[],
        layer=-1,
        all_layers=False,
        margin_k=4,
        split="",
        null_score_diff_threshold=0.0,
        tune_null_score_diff_threshold=False,
        plots=True,
        length_buckets=True,
        search_kernel="xla",
        search_dtype="float32",
        bucc_threshold="dev",
        average_checkpoints=0,
    )
    # Weights & Biases, besides metrics.jsonl and TensorBoard (which are always written): wandb is a project name to
    # log to ("" is off; needs `pip install "stilts-jax[wandb]"`). One W&B run per invocation, from process 0: each
    # phase's train and dev rows as <phase folder>/<split>/<metric> against <phase folder>/step, the zero-shot scores
    # as evaluation/zero_shot/<language or average>/<metric>, the resolved config as the run's config.
    # wandb_entity: the team or user ("" is the default entity); wandb_group: "" is the workdir's parent folder (a
    # sweep's root: a sweep's runs form one group); wandb_name: "" is the workdir's folder name; wandb_mode: "online",
    # "offline" (`wandb sync` later) or "" (WANDB_MODE, else online). An online run keeps its id in the workdir
    # (wandb_run.json): rerunning there continues the same W&B run.
    config.logging = dict(wandb="", wandb_entity="", wandb_group="", wandb_name="", wandb_mode="")
    return config
