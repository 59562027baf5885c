"""Ahead-of-time compilation for a TPU slice on any host: the real TPU compiler's memory, cost and collectives.

With libtpu installed (`pip install "jax[tpu]"`, the `tpu` extra), `jax.experimental.topologies` describes a slice
("v5e:2x2") without one being attached; a jitted function lowered with `jax.ShapeDtypeStruct`s sharded over a mesh
of those devices compiles exactly as on the slice. Nothing runs: the figures below are the compiler's estimates.

`compile_program` compiles one such function and reads, per device: the bytes live at once (arguments + outputs -
donated/aliased + temporaries), the FLOPs and bytes accessed of the cost analysis, the bytes the optimized program
moves through HBM (`hlo_bytes`), a roofline MFU from those and the chip's figures (`TPU_GENERATIONS`), and the number
of each collective in the optimized HLO.

Why the roofline uses the HBM bytes and not the cost analysis' `bytes accessed`: the cost analysis counts every
operand and output of every kernel whatever memory holds it, while the TPU compiler's memory space assignment keeps
many arrays in on-chip memory (memory space 1 in the HLO layouts; 128 MiB of VMEM per v5e or v6e core), whose
traffic does not use HBM bandwidth. XLA's own memory-space cost model prices operands in that memory apart from HBM
(xla/service/memory_space_assignment: GetInstructionElapsedDueToMemory). The all-memory figure stays in the report
(`bytes_accessed`, `roofline_mfu_all_memories`) as the stricter bound.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax

from stilts_jax.core.errors import InputError, StiltsError
from stilts_jax.train.hlo_bytes import computation_executions, group_bytes, instruction_bytes

# Topology names libtpu accepts and that were checked to describe their slice (devices returned); any other
# "<generation>:<AxB[xC]>" of a known generation is tried as well.
KNOWN_TOPOLOGIES = ("v4:2x2x1", "v4:2x2x4", "v5e:2x2", "v5e:16x16", "v5p:2x2x1", "v6e:2x2")


@dataclasses.dataclass(frozen=True)
class ChipFigures:
    """One TPU chip's published figures: peak bf16 FLOP/s, HBM bandwidth (bytes/s) and HBM capacity (bytes)."""

    peak_bf16_flops: float
    hbm_bandwidth: float
    hbm_bytes: int
    accelerator_prefix: str  # TPU_ACCELERATOR_TYPE is "<prefix>-<n>" (n: chips, or TensorCores for v4/v5p)
    cores_per_chip: int  # TensorCores per chip


GIB = 1024**3
# Per chip, from Google Cloud's TPU documentation, the key chip specifications of each generation's page
# (https://cloud.google.com/tpu/docs/v4, .../v5e, .../v5p, .../v6e):
#   v4:  275 TFLOP/s bf16, 32 GiB HBM2, 1200 GB/s   (2 TensorCores, one megacore device)
#   v5e: 197 TFLOP/s bf16, 16 GiB HBM2,  819 GB/s   (1 TensorCore)
#   v5p: 459 TFLOP/s bf16, 95 GiB HBM2e, 2765 GB/s  (2 TensorCores as one megacore device)
#   v6e: 918 TFLOP/s bf16, 32 GiB HBM,  1640 GB/s   (1 TensorCore)
TPU_GENERATIONS: dict[str, ChipFigures] = {
    "v4": ChipFigures(275e12, 1200e9, 32 * GIB, "v4", 2),
    "v5e": ChipFigures(197e12, 819e9, 16 * GIB, "v5litepod", 1),
    "v5p": ChipFigures(459e12, 2765e9, 95 * GIB, "v5p", 2),
    "v6e": ChipFigures(918e12, 1640e9, 32 * GIB, "v6e", 1),
}

COLLECTIVES = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")
# An HLO instruction's opcode, synchronous or the start of an asynchronous pair (the -done half is not counted).
_COLLECTIVE_OP = re.compile(r"\s(" + "|".join(COLLECTIVES) + r")(?:-start)?\(")
# The TPU compiler emits a reduce-scatter as a fusion calling a computation named all-reduce-scatter[.N] (an
# all-reduce whose output each device keeps only its shard of, done as a ring that never materialises the whole).
_REDUCE_SCATTER_FUSION = re.compile(r"\bcalls=%all-reduce-scatter[\w.-]*")
# A computation's header line: `%name (...) -> ... {`, or `ENTRY %name ...`.
_COMPUTATION_HEADER = re.compile(r"^(?:ENTRY\s+)?%([\w.-]+)\s")


class TopologyError(InputError):
    pass


@dataclasses.dataclass(frozen=True)
class Slice:
    """A TPU slice described by libtpu: its devices and the per-device share of its chips' figures."""

    name: str
    generation: str
    devices: tuple[Any, ...]
    device_kind: str
    chips: int

    @property
    def chip(self) -> ChipFigures:
        return TPU_GENERATIONS[self.generation]

    @property
    def devices_per_chip(self) -> int:
        return max(1, len(self.devices) // max(self.chips, 1))

    @property
    def device_hbm_bytes(self) -> int:
        return self.chip.hbm_bytes // self.devices_per_chip

    @property
    def device_peak_flops(self) -> float:
        return self.chip.peak_bf16_flops / self.devices_per_chip

    @property
    def device_hbm_bandwidth(self) -> float:
        return self.chip.hbm_bandwidth / self.devices_per_chip

    def describe(self) -> str:
        per = (
            "TensorCore"
            if self.devices_per_chip > 1
            else (
                "chip (its 2 TensorCores as one megacore device, as JAX runs them)"
                if self.chip.cores_per_chip > 1
                else "chip"
            )
        )
        return (
            f"{self.name}: {len(self.devices)} devices ({self.device_kind}), {self.chips} chips, one device per "
            f"{per}; per device {self.device_hbm_bytes / GIB:g} GiB HBM, {self.device_peak_flops / 1e12:g} "
            f"TFLOP/s bf16, {self.device_hbm_bandwidth / 1e9:g} GB/s"
        )


def _quiet_libtpu(generation: str, chips: int) -> None:
    """libtpu reads these at start-up; without them it logs errors about the TPU VM it is not running on."""
    chip = TPU_GENERATIONS[generation]
    count = chips * (chip.cores_per_chip if generation in ("v4", "v5p") else 1)
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", f"{chip.accelerator_prefix}-{count}")
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    os.environ.setdefault("TPU_WORKER_ID", "0")
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    # Only the compiler is used, never a chip: two compilations at once (two tools, or a test beside a tool) must not
    # refuse each other over libtpu's one-process lock file.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")


def _parse(name: str) -> tuple[str, tuple[int, ...]]:
    generation, _, shape = name.partition(":")
    dims = shape.split("x")
    if generation not in TPU_GENERATIONS or not shape or not all(d.isdigit() and int(d) > 0 for d in dims):
        raise TopologyError(
            f"unknown TPU topology {name!r} (--topology): use <generation>:<AxB> or <AxBxC> with a "
            f"generation of {', '.join(TPU_GENERATIONS)}; known names: {', '.join(KNOWN_TOPOLOGIES)}"
        )
    return generation, tuple(int(d) for d in dims)


def get_slice(name: str) -> Slice:
    """The devices of TPU topology `name` (e.g. "v5e:2x2"), from libtpu; no TPU needed."""
    generation, dims = _parse(name)
    if importlib.util.find_spec("libtpu") is None:
        raise StiltsError(
            'compiling for a TPU slice needs libtpu, which is not installed: pip install "jax[tpu]" '
            '(or this project\'s extra: pip install -e ".[tpu]")'
        )
    _quiet_libtpu(generation, math.prod(dims))
    from jax.experimental import topologies

    # v4 and v5p chips hold two TensorCores that JAX on a TPU VM drives as one device (megacore); libtpu's default
    # description lists each TensorCore, which is not what a run sees (and jax.make_mesh refuses it).
    options = {"chip_config_name": "megacore"} if TPU_GENERATIONS[generation].cores_per_chip > 1 else {}
    try:
        topology = topologies.get_topology_desc(topology_name=name, platform="tpu", **options)
    except Exception as error:  # noqa: BLE001 (libtpu raises JaxRuntimeError, RuntimeError or ValueError by version)
        raise TopologyError(
            f"libtpu does not know TPU topology {name!r} (--topology): {error}; known names: "
            f"{', '.join(KNOWN_TOPOLOGIES)}"
        ) from None
    devices = tuple(topology.devices)
    chips = len({tuple(getattr(d, "coords", (getattr(d, "id", 0),))) for d in devices})
    return Slice(name, generation, devices, str(getattr(devices[0], "device_kind", generation)), chips)


def count_collectives(hlo_text: str) -> dict[str, int]:
    """How many of each collective the HLO holds (kind -> count, every kind present, zeros included).

    A TPU reduce-scatter fusion counts as one reduce-scatter, not as the all-reduce its body holds.
    """
    counts = dict.fromkeys(COLLECTIVES, 0)
    computation = ""
    for line in hlo_text.splitlines():
        header = _COMPUTATION_HEADER.match(line)
        if header:
            computation = header.group(1)
            continue
        if computation.startswith("all-reduce-scatter"):
            continue
        counts["reduce-scatter"] += len(_REDUCE_SCATTER_FUSION.findall(line))
        for match in _COLLECTIVE_OP.finditer(line):
            counts[match.group(1)] += 1
    return counts


# Pallas kernels are custom calls whose FLOPs the cost analysis does not count. The splash attention kernels
# (models/tpu_attention.py) are named by their pass; each multiplies [batch, heads, seq, head_dim] blocks: the
# forward computes q.k and p.v (2 matmuls), the dq pass recomputes q.k and computes do.v and ds.k (3), the dkv pass
# recomputes q.k and computes p.do, do.v and ds.q (4); a matmul of a seq x seq block by head_dim is 2*s*s*d FLOPs.
_SPLASH_CALL = re.compile(r"^\s*(?:ROOT\s+)?%splash_mha_(fwd|dq|dkv)\S*\s*=\s*(.*?)\scustom-call\(", re.M)
_SPLASH_MATMULS = {"fwd": 2, "dq": 3, "dkv": 4}
_ARRAY_4D = re.compile(r"\b(?:bf16|f16|f32)\[(\d+),(\d+),(\d+),(\d+)\]")


def kernel_flops(hlo_text: str, executions: dict[str, int] | None = None) -> float:
    """FLOPs of the attention kernels in an optimized HLO module, which the compiler's cost analysis leaves out
    (a kernel inside a loop, e.g. scanned layers, counts once per trip: `executions`, computed when not given)."""
    if executions is None:
        executions, _ = computation_executions(hlo_text)
    total, computation = 0.0, ""
    for line in hlo_text.splitlines():
        header = _COMPUTATION_HEADER.match(line)
        if header:
            computation = header.group(1)
            continue
        call = _SPLASH_CALL.match(line)
        shape = _ARRAY_4D.search(call.group(2)) if call else None  # the output / dq / dk: [batch, heads, seq, dim]
        if call is None or shape is None:
            continue
        batch, heads, seq, head_dim = (int(d) for d in shape.groups())
        flops = _SPLASH_MATMULS[call.group(1)] * 2.0 * batch * heads * seq * seq * head_dim
        total += flops * executions.get(computation, 1)
    return total


def _cost(compiled: Any) -> dict[str, float]:
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):  # older jax: one dict per computation
        cost = cost[0] if cost else {}
    return dict(cost or {})


def roofline_mfu(flops: float, bytes_accessed: float, peak_flops: float, bandwidth: float) -> float:
    """The MFU the roofline allows: compute time over max(compute time, memory time), in [0, 1]."""
    compute, memory = flops / peak_flops, bytes_accessed / bandwidth
    bound = max(compute, memory)
    return compute / bound if bound > 0 else 0.0


def compile_program(
    name: str,
    function: Any,
    args: Sequence[Any],
    tpu_slice: Slice,
    *,
    details: dict[str, Any] | None = None,
    hlo_sink: Callable[[str, str], None] | None = None,
    seen: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Lower `function` (a jax.jit) on `args` (ShapeDtypeStructs with shardings on the slice's mesh), compile it
    for the slice, and report what the compiler says about one device. `hlo_sink(name, text)` receives the HLO.

    `seen` (lowered program text -> report) skips compiling a program already compiled under another name (two
    phases of the same family and shapes): its figures are copied, with `same_as` naming the first.
    """
    start = time.perf_counter()
    lowered = function.lower(*args)
    key = lowered.as_text()
    if seen is not None and key in seen:
        first = seen[key]
        return {**first, "name": name, **(details or {}), "same_as": first["name"], "compile_seconds": 0.0}
    compiled = lowered.compile()
    seconds = time.perf_counter() - start
    memory = compiled.memory_analysis()
    arguments, outputs = int(memory.argument_size_in_bytes), int(memory.output_size_in_bytes)
    aliased, temporaries = int(memory.alias_size_in_bytes), int(memory.temp_size_in_bytes)
    live = arguments + outputs - aliased + temporaries
    cost = _cost(compiled)
    flops, accessed = float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0))
    text = compiled.as_text()
    executions, unknown_trips = computation_executions(text)
    kernels = kernel_flops(text, executions)
    instructions = instruction_bytes(text, executions=executions)
    hbm_accessed = sum(instruction.bytes for instruction in instructions)
    if hlo_sink is not None:
        hlo_sink(name, text)
    report = {
        "name": name,
        **(details or {}),
        "fits": live <= tpu_slice.device_hbm_bytes,
        "live_bytes": live,
        "hbm_bytes": tpu_slice.device_hbm_bytes,
        "argument_bytes": arguments,
        "output_bytes": outputs,
        "alias_bytes": aliased,
        "temp_bytes": temporaries,
        "flops": flops,
        "kernel_flops": kernels,
        "bytes_accessed": accessed,
        "hbm_bytes_accessed": hbm_accessed,
        "roofline_mfu": round(
            roofline_mfu(flops + kernels, hbm_accessed, tpu_slice.device_peak_flops, tpu_slice.device_hbm_bandwidth), 4
        ),
        "roofline_mfu_all_memories": round(
            roofline_mfu(flops + kernels, accessed, tpu_slice.device_peak_flops, tpu_slice.device_hbm_bandwidth), 4
        ),
        "hbm_bytes_by_source": _top_groups(instructions, "source"),
        "hbm_bytes_by_operation": _top_groups(instructions, "operation"),
        "compile_seconds": round(seconds, 2),
        "collectives": count_collectives(text),
        # Loops whose trip count the HLO does not say count one trip: their HBM bytes are a lower bound.
        **({"loops_without_trip_count": unknown_trips} if unknown_trips else {}),
    }
    if seen is not None:
        seen[key] = report
    return report


BREAKDOWN_ROWS = 12  # the largest groups of HBM traffic a report lists per program


def _top_groups(instructions: list[Any], by: str) -> list[dict[str, Any]]:
    return [
        {"label": group.label, "bytes": group.bytes, "instructions": group.instructions}
        for group in group_bytes(instructions, by)[:BREAKDOWN_ROWS]
    ]


def report_header(tpu_slice: Slice, mesh: jax.sharding.Mesh) -> dict[str, Any]:
    chip = tpu_slice.chip
    return {
        "topology": tpu_slice.name,
        "device_kind": tpu_slice.device_kind,
        "num_devices": len(tpu_slice.devices),
        "chips": tpu_slice.chips,
        "devices_per_chip": tpu_slice.devices_per_chip,
        "mesh": dict(mesh.shape),
        "per_device": {
            "hbm_bytes": tpu_slice.device_hbm_bytes,
            "peak_bf16_flops": tpu_slice.device_peak_flops,
            "hbm_bandwidth_bytes_per_s": tpu_slice.device_hbm_bandwidth,
        },
        "chip": dataclasses.asdict(chip),
        "device_is": "TensorCore" if tpu_slice.devices_per_chip > 1 else "chip",
        "note": "compiler estimates for one device of the slice (memory_analysis, cost_analysis, optimized HLO); "
        "nothing was run",
    }


def markdown_table(report: dict[str, Any]) -> str:
    """The report's programs as a Markdown table, then where each compiled program's HBM traffic comes from."""
    lines = [
        f"# {report['topology']} ({report['num_devices']} x {report['device_kind']}), mesh {report['mesh']}",
        "",
        "Compiler estimates per device; nothing was run. GFLOP includes the attention kernels' FLOPs, which the",
        "compiler's cost analysis leaves out (`kernel_flops` in the JSON). HBM GB: the bytes the optimized program",
        "reads and writes in HBM (arrays the compiler keeps in on-chip memory excluded), which bounds the roofline",
        "MFU; all-memory GB: the cost analysis' bytes accessed, on-chip memory included (its MFU in parentheses).",
        "",
        "| program | fits | live GiB | HBM GiB | GFLOP | HBM GB | all-memory GB | roofline MFU | compile s | "
        "collectives |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in report["programs"]:
        collectives = ", ".join(f"{k} {v}" for k, v in p["collectives"].items() if v) or "none"
        same = f" (= {p['same_as']})" if p.get("same_as") else ""
        all_memories = p.get("roofline_mfu_all_memories")
        lines.append(
            f"| {p['name']}{same} | {'yes' if p['fits'] else 'NO'} | {p['live_bytes'] / GIB:.3f} | "
            f"{p['hbm_bytes'] / GIB:g} | {(p['flops'] + p.get('kernel_flops', 0.0)) / 1e9:.2f} | "
            f"{p.get('hbm_bytes_accessed', 0.0) / 1e9:.3f} | {p['bytes_accessed'] / 1e9:.3f} | "
            f"{p['roofline_mfu']:.3f}" + (f" ({all_memories:.3f})" if all_memories is not None else "") + " | "
            f"{p['compile_seconds']:.1f} | {collectives} |"
        )
    for skipped in report.get("skipped", []):
        lines.append(f"\nNot compiled: {skipped}")
    for p in report["programs"]:
        if p.get("same_as") or not p.get("hbm_bytes_by_source"):
            continue
        total = p.get("hbm_bytes_accessed") or 1.0
        lines += [
            "",
            f"## {p['name']}: where the HBM bytes go",
            "",
            "| source line | MB | share | kernels |",
            "|---|---:|---:|---:|",
        ]
        lines += [
            f"| {g['label']} | {g['bytes'] / 1e6:.1f} | {100 * g['bytes'] / total:.0f}% | {g['instructions']} |"
            for g in p["hbm_bytes_by_source"]
        ]
    return "\n".join(lines) + "\n"
