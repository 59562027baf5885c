"""AdamW with weight decay masked off biases and LayerNorm, linear warmup then linear decay, global-norm clipping."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import optax


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    learning_rate: float = 1e-5
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    max_grad_norm: float = 1.0


def _key_name(entry: Any) -> str:
    return str(getattr(entry, "key", getattr(entry, "name", getattr(entry, "idx", entry))))


def decays(path: tuple) -> bool:
    """Weight decay applies to matrices and embeddings, not to biases or LayerNorm parameters (as BERT/XLM-R)."""
    names = [_key_name(p) for p in path]
    return not (names[-1].endswith("bias") or any(n.endswith("norm") for n in names))


def weight_decay_mask(params: Any) -> Any:
    return jax.tree_util.tree_map_with_path(lambda path, _: decays(path), params)


def learning_rate_schedule(peak: float, total_steps: int, warmup_fraction: float) -> optax.Schedule:
    """0 -> peak linearly over warmup_fraction of the steps, then peak -> 0 linearly at the last step."""
    warmup = round(warmup_fraction * total_steps)
    return (
        optax.join_schedules(
            [
                optax.linear_schedule(0.0, peak, max(warmup, 1)),
                optax.linear_schedule(peak, 0.0, max(total_steps - warmup, 1)),
            ],
            [warmup],
        )
        if warmup > 0
        else optax.linear_schedule(peak, 0.0, max(total_steps, 1))
    )


def make_optimizer(config: OptimizerConfig, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    schedule = learning_rate_schedule(config.learning_rate, total_steps, config.warmup_fraction)
    tx = optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm),
        optax.adamw(
            schedule,
            b1=config.adam_b1,
            b2=config.adam_b2,
            eps=config.adam_eps,
            weight_decay=config.weight_decay,
            mask=weight_decay_mask,
        ),
    )
    return tx, schedule
