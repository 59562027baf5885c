"""What every phase of the pipeline shares: the done marker, printing on one host, sources and trainer settings."""

from __future__ import annotations

from typing import Any

import jax
import ml_collections

from stilts_jax.train.loop import TrainerConfig
from stilts_jax.train.optimizer import OptimizerConfig

DONE = "phase_done.json"


def say(message: str) -> None:
    """Print once per run (on process 0), unbuffered so logs of long runs stay current."""
    if jax.process_index() == 0:
        print(message, flush=True)


def source_of(phase: ml_collections.ConfigDict) -> dict[str, Any]:
    """The phase's data source with its unset keys dropped."""
    return {k: v for k, v in phase.source.to_dict().items() if v not in ("", None)}


def trainer_config(phase: ml_collections.ConfigDict, seed: int) -> TrainerConfig:
    t = phase.train
    return TrainerConfig(
        global_batch_size=t.batch_size, micro_batches=t.micro_batches, epochs=t.epochs, max_steps=t.max_steps or None,
        seed=seed, dropout=t.dropout, log_every=t.log_every, checkpoint_every=t.checkpoint_every,
        eval_every=t.eval_every or None, keep_checkpoints=t.keep_checkpoints, progress_bar=t.progress_bar,
        optimizer=OptimizerConfig(learning_rate=t.learning_rate, warmup_fraction=t.warmup_fraction,
                                  weight_decay=t.weight_decay, adam_eps=t.adam_eps, max_grad_norm=t.max_grad_norm),
    )
