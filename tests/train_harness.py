"""A tiny encoder + classification head on a learnable synthetic task, trained through the real training core.

Used in-process by the tests, and as a command for the multi-process and kill/resume tests:

    python -m tests.train_harness --workdir W --steps 8 [--mesh 2,2,2] [--coordinator 127.0.0.1:P --num-processes 2 --process-id i]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

VOCAB = 64
SEQ = 16
CLASSES = 3


def synthetic_features(num_examples: int = 96, seed: int = 0) -> dict[str, np.ndarray]:
    """The label is which of three marker tokens occurs most often: learnable by a tiny encoder."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(6, SEQ + 1, num_examples)
    ids = rng.integers(10, VOCAB, (num_examples, SEQ)).astype(np.int32)
    labels = rng.integers(0, CLASSES, num_examples).astype(np.int32)
    for i, (length, label) in enumerate(zip(lengths, labels)):
        ids[i, 1 : 1 + length // 2] = 4 + label
    ids[:, 0] = 0
    mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype(np.int32)
    ids[np.arange(num_examples), lengths - 1] = 2
    ids[mask == 0] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def tiny_model(seed: int = 0, num_classes: int = CLASSES, num_layers: int = 2, scan_layers: bool = False):
    from flax import nnx

    from stilts_jax.models.config import tiny_config
    from stilts_jax.models.encoder import Encoder
    from stilts_jax.models.heads import ClassificationHead, TaskModel

    config = tiny_config(
        VOCAB,
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=64,
        num_hidden_layers=num_layers,
        max_position_embeddings=SEQ + 2,
    )
    rngs = nnx.Rngs(seed)
    return TaskModel(
        Encoder(config, rngs=rngs, scan_layers=scan_layers), ClassificationHead(32, num_classes, rngs=rngs)
    )


def trainer_config(steps: int, **overrides):
    from stilts_jax.train.loop import TrainerConfig
    from stilts_jax.train.optimizer import OptimizerConfig

    values = dict(
        global_batch_size=16,
        max_steps=steps,
        log_every=1,
        checkpoint_every=2,
        progress_bar=False,
        optimizer=OptimizerConfig(learning_rate=1e-3, warmup_fraction=0.25),
    )
    values.update(overrides)
    return TrainerConfig(**values)


def params_digest(params) -> dict[str, list[float]]:
    """Every parameter as a flat float list, gathered to this host (works across processes)."""
    import jax
    from jax.experimental import multihost_utils

    gathered = (
        multihost_utils.process_allgather(params, tiled=True) if jax.process_count() > 1 else jax.device_get(params)
    )
    return {
        jax.tree_util.keystr(p): np.asarray(x, np.float64).ravel().tolist()
        for p, x in jax.tree_util.tree_leaves_with_path(gathered)
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--mesh", default="-1,1,1", help="data,fsdp,tensor")
    parser.add_argument("--coordinator")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--step-delay", type=float, default=0.0, help="seconds to sleep in every step (kill tests)")
    parser.add_argument("--output", help="JSON file for the final parameters and losses (process 0)")
    args = parser.parse_args(argv)

    from stilts_jax.core import distributed

    distributed.initialize(args.coordinator, args.num_processes, args.process_id, auto=False)
    import jax

    from stilts_jax.models.heads import classification_loss
    from stilts_jax.train.loop import train
    from stilts_jax.train.metrics_log import read_metrics

    data, fsdp, tensor = (int(x) for x in args.mesh.split(","))
    mesh = distributed.make_mesh({"data": data, "fsdp": fsdp, "tensor": tensor})

    def loss_fn(model, batch, rng):
        if args.step_delay:
            jax.debug.callback(lambda: time.sleep(args.step_delay))
        return classification_loss(model, batch, rng)

    result = train(
        tiny_model(),
        loss_fn,
        synthetic_features(),
        trainer_config(args.steps),
        workdir=args.workdir,
        mesh=mesh,
        rules=distributed.DEFAULT_LOGICAL_RULES,
    )
    digest = params_digest(result.state.params)
    if jax.process_index() == 0 and args.output:
        losses = [r["loss"] for r in read_metrics(args.workdir)]
        Path(args.output).write_text(
            json.dumps({"params": digest, "losses": losses, "resumed_from": result.resumed_from})
        )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.exit(main())
