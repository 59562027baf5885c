"""Training state (step, parameters, optimizer state, dropout key) and its shardings over the mesh."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from stilts_jax.core.distributed import logical_constraints, logical_to_mesh_spec


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer steps taken
    params: Any  # pure dict of float32 arrays, the model's nnx.Param values
    opt_state: Any
    rng: jax.Array  # base dropout key; each step folds in its step number


class ModelSpec:
    """An NNX model split into its static graph and a pure dict of parameters, with their mesh shardings."""

    def __init__(self, model: nnx.Module, mesh: Mesh, rules: Sequence[tuple[str, Any]]):
        graphdef, state = nnx.split(model)
        non_params = [path for path, var in nnx.to_flat_state(state) if not isinstance(var, nnx.Param)]
        if non_params:
            raise TypeError(f"models may hold only nnx.Param variables; found others at {non_params[:5]}")
        self.graphdef = graphdef
        self.mesh = mesh
        self.rules = tuple(rules)
        params = nnx.to_pure_dict(state)
        self.abstract_params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
        logical = nnx.to_pure_dict(nnx.get_partition_spec(state))
        self.param_shardings = jax.tree.map(
            lambda spec, x: NamedSharding(mesh, logical_to_mesh_spec(spec, self.rules, mesh, x.shape)),
            logical,
            self.abstract_params,
            is_leaf=lambda x: isinstance(x, PartitionSpec),
        )
        self._initial_params = params

    def merge(self, params: Any) -> nnx.Module:
        return nnx.merge(self.graphdef, params)

    def logical_constraints(self) -> contextlib.AbstractContextManager[None]:
        """Open around the code a jit traces: the model's activations are then laid out on the mesh by the rules."""
        return logical_constraints(self.mesh, self.rules)

    def initial_params(self) -> Any:
        """The model's own parameter values (random init plus whatever was loaded into it), placed on the mesh."""
        return jax.device_put(self._initial_params, self.param_shardings)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def state_shardings(spec: ModelSpec, tx: optax.GradientTransformation) -> TrainState:
    """Shardings of every TrainState leaf: optimizer moments follow their parameters, scalars are replicated."""
    abstract_opt = jax.eval_shape(tx.init, spec.abstract_params)
    params_structure: Any = jax.tree.structure(spec.abstract_params)  # Any: jaxlib's PyTreeDef has no usable stub
    is_params_like = lambda x: jax.tree.structure(x) == params_structure  # noqa: E731  (Adam's mu and nu)
    opt_shardings = jax.tree.map(
        lambda x: spec.param_shardings if is_params_like(x) else replicated(spec.mesh),
        abstract_opt,
        is_leaf=is_params_like,
    )
    # A TrainState of shardings (abstract_train_state: of shapes): the fields are typed for the arrays only.
    replicated_field: Any = replicated(spec.mesh)
    return TrainState(step=replicated_field, params=spec.param_shardings, opt_state=opt_shardings, rng=replicated_field)


def init_train_state(spec: ModelSpec, tx: optax.GradientTransformation, seed: int, shardings: TrainState) -> TrainState:
    """A fresh state from the model's current parameters, created directly in its shardings."""

    def init(params: Any) -> TrainState:
        key = jax.random.key_data(jax.random.key(seed))
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=key)

    return jax.jit(init, out_shardings=shardings)(spec.initial_params())


def abstract_train_state(spec: ModelSpec, tx: optax.GradientTransformation, shardings: TrainState) -> TrainState:
    """ShapeDtypeStructs with shardings for every TrainState leaf: the target a checkpoint restores into."""
    shapes = TrainState(
        step=jax.ShapeDtypeStruct((), jnp.int32),  # type: ignore[arg-type]  # a TrainState of shapes
        params=spec.abstract_params,
        opt_state=jax.eval_shape(tx.init, spec.abstract_params),
        rng=jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0))),
    )
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, shardings)
