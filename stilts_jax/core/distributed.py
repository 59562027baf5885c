"""Multi-host start-up, the device mesh, and logical-to-mesh sharding rules.

Nothing here touches devices at import time; the mesh and the rules are passed around, never global.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from stilts_jax.core.errors import StiltsError

log = logging.getLogger(__name__)

MESH_AXES = ("data", "fsdp", "tensor")

# Logical axis name -> mesh axis (or axes). Batches split over data and fsdp; parameters shard their embed
# dimension over fsdp (ZeRO-3 style) and their heads/mlp/vocab dimension over tensor (Megatron style).
# The activation_* names are the model's intermediate arrays (`with_logical_constraint`): split over the batch like the
# inputs, never over the embed dimension, so that FSDP gathers each layer's weights (and reduce-scatters their
# gradients) instead of moving activations between layouts; attention heads and the feed-forward width over tensor.
ACTIVATION_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("activation_batch", ("data", "fsdp")),
    ("activation_length", None),
    ("activation_embed", None),
    ("activation_heads", "tensor"),
    ("activation_kv", None),
    ("activation_mlp", "tensor"),
)
DEFAULT_LOGICAL_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", ("data", "fsdp")),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv", None),
    ("mlp", "tensor"),
    ("positions", None),
    ("types", None),
    ("classes", None),
    # The leading axis of the encoder's stacked layer parameters (model.scan_layers): every layer on every device.
    ("layers", None),
    *ACTIVATION_RULES,
)
# Names a rules list may leave out (one written before they existed): they take these mesh axes.
IMPLIED_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (("layers", None),)


class DistributedError(StiltsError):
    pass


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    auto: bool = True,
) -> None:
    """Start `jax.distributed` before any other JAX call, when the run spans several processes.

    - Explicit (GPU hosts, CPU processes): coordinator address, process count and this process's id.
    - Cloud TPU VM pods and SLURM: no arguments; JAX reads the environment (`auto=True`).
    - Otherwise: a single process, nothing to start.
    """
    if coordinator_address or (num_processes or 1) > 1:
        if not (coordinator_address and num_processes and process_id is not None):
            raise DistributedError(
                "multi-process runs need all of coordinator_address (host:port of process 0), num_processes and "
                f"process_id; got {coordinator_address!r}, {num_processes!r}, {process_id!r}"
            )
        jax.distributed.initialize(coordinator_address, num_processes=num_processes, process_id=process_id)
    elif auto and _is_multi_host_environment():
        jax.distributed.initialize()
    else:
        return
    log.info(
        "jax.distributed: process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )


def _is_multi_host_environment() -> bool:
    hostnames = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    if len([h for h in hostnames.split(",") if h]) > 1:
        return True
    return int(os.environ.get("SLURM_NTASKS", "1")) > 1


def resolve_mesh_shape(shape: Mapping[str, int], num_devices: int) -> tuple[int, ...]:
    """Sizes for (data, fsdp, tensor); one axis may be -1, meaning the devices left over."""
    unknown = set(shape) - set(MESH_AXES)
    if unknown:
        raise DistributedError(f"unknown mesh axes {sorted(unknown)}; the mesh axes are {MESH_AXES}")
    sizes = [int(shape.get(axis, 1)) for axis in MESH_AXES]
    free = [i for i, s in enumerate(sizes) if s == -1]
    if len(free) > 1:
        raise DistributedError(f"at most one mesh axis may be -1, got {dict(zip(MESH_AXES, sizes))}")
    if any(s == 0 or s < -1 for s in sizes):
        raise DistributedError(f"mesh axis sizes must be positive or -1, got {dict(zip(MESH_AXES, sizes))}")
    known = math.prod(s for s in sizes if s != -1)
    if free:
        if num_devices % known:
            raise DistributedError(
                f"{num_devices} devices cannot be split into a mesh with fixed axes {dict(zip(MESH_AXES, sizes))}"
            )
        sizes[free[0]] = num_devices // known
    if math.prod(sizes) != num_devices:
        raise DistributedError(
            f"mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices but {num_devices} are available; "
            "set one axis to -1 to use the rest"
        )
    return tuple(sizes)


def fit_mesh_to_batch(
    shape: Mapping[str, int], num_devices: int, rows: int | None, widths: Sequence[int]
) -> tuple[dict[str, int], str | None]:
    """The mesh to build when a batch axis (`data` or `fsdp`) takes the devices left over (-1) but they would be
    more than a training micro-batch of `rows` rows can be split over (the batch is split over data x fsdp): that
    axis takes the largest share that splits it and the devices left over go to `tensor`, which splits the attention
    heads and the feed-forward width (each of `widths` must divide by it). Returns the shape and a line saying what
    changed and why, or the shape as given and None when the batch splits, the user set `tensor`, or no layout of
    that kind fits."""
    given = {axis: int(shape.get(axis, 1)) for axis in MESH_AXES}
    free = [axis for axis in ("data", "fsdp") if given[axis] == -1]
    if rows is None or len(free) != 1 or given["tensor"] != 1:
        return given, None
    other = given["fsdp" if free[0] == "data" else "data"]
    if other < 1 or num_devices % other:
        return given, None
    spare = num_devices // other
    if rows % (spare * other) == 0 or rows % other:
        return given, None
    share = math.gcd(spare, rows // other)
    tensor = spare // share
    if any(width % tensor for width in widths):
        return given, None
    fitted = {**given, free[0]: share, "tensor": tensor}
    layout = ", ".join(f"{axis}={fitted[axis]}" for axis in MESH_AXES)
    note = (
        f"mesh: {layout}: a training micro-batch of {rows} rows splits over at most {share * other} of the "
        f"{num_devices} devices, so the other devices split the attention heads and the feed-forward width "
        "(docs/SCALING.md, 'What fits where'); set --config.mesh.data/fsdp/tensor to choose another layout"
    )
    return fitted, note


def make_mesh(shape: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A (data, fsdp, tensor) mesh over all devices (every process's), axes in Auto mode."""
    devices = list(devices) if devices is not None else jax.devices()
    sizes = resolve_mesh_shape(shape, len(devices))
    return jax.make_mesh(sizes, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices)


def logical_to_mesh_spec(
    logical: PartitionSpec | Sequence[str | None],
    rules: Sequence[tuple[str, Any]],
    mesh: Mesh,
    shape: Sequence[int] | None = None,
) -> PartitionSpec:
    """Map a spec of logical names to mesh axes.

    A mesh axis serves at most one dimension; a dimension whose size the mesh axes do not divide, or whose mesh
    axes have size 1, is replicated instead.
    """
    table = {**dict(IMPLIED_RULES), **dict(rules)}
    used: set[str] = set()
    out: list[Any] = []
    for dim, name in enumerate(logical):
        if name is None:
            out.append(None)
            continue
        if name not in table:
            raise DistributedError(f"no sharding rule for logical axis {name!r}; rules cover {sorted(table)}")
        target = table[name]
        axes = () if target is None else (target,) if isinstance(target, str) else tuple(target)
        axes = tuple(a for a in axes if a not in used and mesh.shape[a] > 1)
        size = math.prod(mesh.shape[a] for a in axes)
        if shape is not None and axes and shape[dim] % size:
            axes = ()
        used.update(axes)
        out.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*out)


def tree_shardings(logical_specs: Any, shapes: Any, rules: Sequence[tuple[str, Any]], mesh: Mesh) -> Any:
    """NamedShardings for a pytree, from matching pytrees of logical PartitionSpecs and arrays (or shapes)."""
    is_spec = lambda x: isinstance(x, PartitionSpec)  # noqa: E731
    return jax.tree.map(
        lambda spec, x: NamedSharding(
            mesh, logical_to_mesh_spec(spec, rules, mesh, np.shape(x) if not hasattr(x, "shape") else x.shape)
        ),
        logical_specs,
        shapes,
        is_leaf=is_spec,
    )


_ACTIVATION_CONTEXT: contextvars.ContextVar[tuple[Mesh, tuple[tuple[str, Any], ...]] | None] = contextvars.ContextVar(
    "stilts_logical_constraints", default=None
)


@contextlib.contextmanager
def logical_constraints(mesh: Mesh, rules: Sequence[tuple[str, Any]]) -> Iterator[None]:
    """Within this block (around the code a jit traces), `with_logical_constraint` lays arrays out on `mesh` by `rules`.

    Rules without the activation_* names (a config written before they existed) take those of ACTIVATION_RULES.
    """
    names = {name for name, _ in rules}
    full = (*tuple(rules), *(rule for rule in ACTIVATION_RULES if rule[0] not in names))
    token = _ACTIVATION_CONTEXT.set((mesh, full))
    try:
        yield
    finally:
        _ACTIVATION_CONTEXT.reset(token)


def activation_context() -> tuple[Mesh, tuple[tuple[str, Any], ...]] | None:
    """The mesh and rules of the enclosing `logical_constraints` block, or None outside one."""
    return _ACTIVATION_CONTEXT.get()


def traced_platform() -> str:
    """The platform a traced computation will run on: that of the enclosing `logical_constraints` mesh (a TPU slice
    compiled for from another host, `python -m stilts_jax.aot`), else JAX's default backend."""
    context = _ACTIVATION_CONTEXT.get()
    return context[0].devices.flat[0].platform if context is not None else jax.default_backend()


def with_logical_constraint(x: jax.Array, logical: Sequence[str | None]) -> jax.Array:
    """`x` constrained to the layout its logical axis names map to, inside `logical_constraints`; else `x` itself."""
    context = _ACTIVATION_CONTEXT.get()
    if context is None:
        return x
    mesh, rules = context
    spec = logical_to_mesh_spec(logical, rules, mesh, x.shape)
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


def batch_sharding(mesh: Mesh, rules: Sequence[tuple[str, Any]], ndim: int = 2, leading: int = 0) -> NamedSharding:
    """Sharding of a batch array: its first dimension after `leading` unsharded ones split like 'batch'."""
    batch_axes = logical_to_mesh_spec(("batch",), rules, mesh)[0]
    return NamedSharding(mesh, PartitionSpec(*([None] * leading), batch_axes, *([None] * (ndim - leading - 1))))


def batch_shard_count(mesh: Mesh, rules: Sequence[tuple[str, Any]]) -> int:
    """How many ways a batch is split: the product of the mesh axes the 'batch' rule maps to."""
    entry = logical_to_mesh_spec(("batch",), rules, mesh)[0]
    axes = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
    return math.prod(mesh.shape[a] for a in axes)


def process_local_rows(sharding: NamedSharding, shape: tuple[int, ...], axis: int = 0) -> slice:
    """The contiguous range along `axis` that this process's devices hold of an array of `shape`."""
    ranges = [index[axis] for index in sharding.addressable_devices_indices_map(shape).values() if index is not None]
    start = min(r.start or 0 for r in ranges)
    stop = max(shape[axis] if r.stop is None else r.stop for r in ranges)
    return slice(start, stop)


def place(tree: Any, sharding: NamedSharding) -> Any:
    """`tree` (host or device arrays, the same on every process) laid out on `sharding`.

    One process: a plain device_put. Several: each process builds its own devices' shards from a host copy, since
    JAX refuses to move arrays committed to one process's device onto a mesh spanning other hosts.
    """
    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)

    def place_leaf(leaf: Any) -> jax.Array:
        host = np.asarray(jax.device_get(leaf))
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(place_leaf, tree)


def add_process_arguments(parser: Any) -> None:
    """--coordinator-address/--num-processes/--process-id on a command-line tool (argparse parser)."""
    group = parser.add_argument_group("several processes (GPU hosts; Cloud TPU pods and SLURM need none of these)")
    group.add_argument("--coordinator-address", help="host:port of process 0")
    group.add_argument("--num-processes", type=int, help="how many processes run this command")
    group.add_argument("--process-id", type=int, help="this process's index, 0 to num-processes - 1")


def initialize_from_args(args: Any) -> None:
    """Start jax.distributed from add_process_arguments' flags (or from a TPU pod's environment)."""
    initialize(args.coordinator_address, args.num_processes, args.process_id)
