"""The jitted train step: gradient accumulation over micro-batches, AdamW update, step metrics on device.

How a batch's gradients are computed is a hook (`GradsFn`). The default differentiates each micro-batch's loss on
its own and sums the gradients in a lax.scan; a task whose loss couples the examples of a batch (in-batch
negatives) can pass its own, e.g. the gradient caching of tasks/dual_encoder.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from stilts_jax.train.state import ModelSpec, TrainState, replicated

# (model, micro-batch, dropout key or None) -> (summed float32 loss, number of examples or tokens it covers); the model
# is the nnx.Module the ModelSpec merges, of whatever class the loss expects (TaskModel, MultiTaskModel, DualEncoder).
LossFn = Callable[[Any, dict[str, jax.Array], jax.Array | None], tuple[jax.Array, jax.Array]]
# (updated params-shaped tree, previous one) -> the tree to keep: selects which parameters a step may change.
KeepFn = Callable[[Any, Any], Any]
# (model spec, params, batch of [micro_batches, micro_batch_size, ...] leaves, the step's dropout key or None)
#   -> (gradients of the summed loss w.r.t. params, summed float32 loss, total weight); traced inside the step.
GradsFn = Callable[[ModelSpec, Any, dict[str, jax.Array], jax.Array | None], tuple[Any, jax.Array, jax.Array]]


def micro_batch_key(step_key: jax.Array, index: jax.Array) -> jax.Array:
    """The dropout key of micro-batch `index` of a step; every GradsFn derives its keys this way."""
    return jax.random.fold_in(step_key, index)


def accumulate_micro_batch_grads(loss_fn: LossFn) -> GradsFn:
    """The default GradsFn: value_and_grad of `loss_fn` on each micro-batch in a lax.scan, the gradients summed.

    Each micro-batch's loss sees only its own micro-batch: k micro-batches equal one k-times larger batch when the
    loss is a sum over independent examples (not for in-batch negatives, whose negatives become the micro-batch's).
    """

    def grads_fn(
        spec: ModelSpec, params: Any, batch: dict[str, jax.Array], step_key: jax.Array | None
    ) -> tuple[Any, jax.Array, jax.Array]:
        num_micro = jax.tree.leaves(batch)[0].shape[0]

        def micro_step(carry, inputs):
            grads, loss_sum, weight = carry
            index, micro_batch = inputs
            rng = None if step_key is None else micro_batch_key(step_key, index)

            def loss_of(params):
                return loss_fn(spec.merge(params), micro_batch, rng)

            (loss, micro_weight), micro_grads = jax.value_and_grad(loss_of, has_aux=True)(params)
            grads = jax.lax.with_sharding_constraint(jax.tree.map(jnp.add, grads, micro_grads), spec.param_shardings)
            return (grads, loss_sum + loss, weight + micro_weight), None

        zeros = jax.tree.map(jnp.zeros_like, params)
        init = (zeros, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32))
        (grads, loss_sum, weight), _ = jax.lax.scan(micro_step, init, (jnp.arange(num_micro), batch))
        return grads, loss_sum, weight

    return grads_fn


def keep_unchanged_parts(new: Any, old: Any, params_structure: Any, keep: KeepFn) -> Any:
    """Apply `keep` to every params-shaped subtree of `new`/`old` (the parameters, Adam's mu and nu)."""
    is_params_like = lambda x: jax.tree.structure(x) == params_structure  # noqa: E731
    return jax.tree.map(lambda a, b: keep(a, b) if is_params_like(a) else a, new, old, is_leaf=is_params_like)


def make_train_step(
    spec: ModelSpec,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    loss_fn: LossFn,
    shardings: TrainState,
    batch_shardings: dict[str, Any],
    *,
    dropout: bool = True,
    keep: KeepFn | None = None,
    grads_fn: GradsFn | None = None,
) -> Callable[[TrainState, dict[str, jax.Array]], tuple[TrainState, dict[str, jax.Array]]]:
    """Returns `step(state, batch) -> (state, metrics)`; batch leaves are [micro_batches, micro_batch_size, ...].

    Gradients of summed losses are accumulated over the micro-batches and divided by the total weight once, so
    k micro-batches give the update of one k-times larger batch. The state is donated; metrics stay on device
    (loss, grad_norm, learning_rate, examples) until the loop fetches them.

    `keep(new, old)`, when given, picks per parameter between the updated and the previous value, for the
    parameters and their Adam moments alike: a multi-task step leaves the heads of the other tasks exactly as they
    were (as PyTorch's AdamW skips parameters without gradients), instead of moving them by momentum and decay.

    `grads_fn`, when given, replaces `accumulate_micro_batch_grads(loss_fn)` (`loss_fn` is then unused): it gets
    the step's dropout key (None when `dropout` is off) and returns the summed gradients, loss and weight.
    """
    compute_grads = grads_fn if grads_fn is not None else accumulate_micro_batch_grads(loss_fn)

    def step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array]]:
        step_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        with spec.logical_constraints():
            grads, loss_sum, weight = compute_grads(spec, state.params, batch, step_key if dropout else None)
        denominator = jnp.maximum(weight, 1.0)
        grads = jax.tree.map(lambda g: g / denominator, grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if keep is not None:
            structure = jax.tree.structure(state.params)
            params = keep(params, state.params)
            opt_state = keep_unchanged_parts(opt_state, state.opt_state, structure, keep)
        metrics = {
            "loss": loss_sum / denominator,
            "grad_norm": optax.tree.norm(grads),
            "learning_rate": schedule(state.step),
            "examples": weight,
        }
        # flax.struct.dataclass adds `replace`; mypy does not see it.
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics  # type: ignore[attr-defined]

    return jax.jit(
        step,
        in_shardings=(shardings, batch_shardings),
        out_shardings=(shardings, replicated(spec.mesh)),
        donate_argnums=0,
    )
