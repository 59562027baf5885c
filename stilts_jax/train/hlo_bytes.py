"""Which operations of a compiled program move the bytes: a per-instruction breakdown of an optimized HLO module.

The compiler's cost analysis gives one total of bytes accessed. This reads the optimized HLO text
(`compiled.as_text()`) and charges each instruction that runs as its own kernel (every instruction outside fusion
bodies and reducers: a fusion counts once, with its operands and outputs) the bytes of its operands plus its
outputs, as the cost analysis does for a fusion, and names the code that produced it from the instruction's
metadata (the `op_name` JAX writes, and the innermost Python frame of its `stack_frame_id`). Grouped by source line
or by operation, the result says which lines of the model or the optimizer a memory-bound step spends its HBM
traffic on.

It is an estimate of the same kind as the cost analysis, not a measurement. Counted over every memory
(`hbm_only=False`) it equals the cost analysis' `bytes accessed` on a CPU program, except that an operand read only
through slices or gathers is charged what those read (the cost analysis charges a gather's whole table). Counted over
HBM only (the default), arrays the compiler placed in on-chip memory (layout memory space `S(1)`: VMEM on v5e and
v6e) cost nothing where they are read, and the asynchronous copies and slices that bring them there from HBM are
charged their HBM reads. Writes in place (scatter, dynamic-update-slice) are charged the whole array, as the cost
analysis does.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Iterable

# Bytes per element of each HLO primitive type (sub-byte types round to a fraction).
_ELEMENT_BYTES = {
    "pred": 1.0,
    "s2": 0.25,
    "u2": 0.25,
    "s4": 0.5,
    "u4": 0.5,
    "s8": 1.0,
    "u8": 1.0,
    "s16": 2.0,
    "u16": 2.0,
    "s32": 4.0,
    "u32": 4.0,
    "s64": 8.0,
    "u64": 8.0,
    "f16": 2.0,
    "bf16": 2.0,
    "f32": 4.0,
    "f64": 8.0,
    "c64": 8.0,
    "c128": 16.0,
}
_ARRAY_TYPE = re.compile(r"\b(pred|[suf]\d+|bf16|c64|c128|f8e\w+)\[([\d,]*)\](\{[^}]*\})?")
# A layout's memory space: S(0), or none written, is HBM; the others are on-chip memories and scalar registers.
_MEMORY_SPACE = re.compile(r"S\((\d+)\)")
_COMPUTATION_HEADER = re.compile(r"^(ENTRY\s+)?%([\w.-]+)\s*\((.*)\)\s*->.*\{\s*$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%([\w.-]+)\s*=\s*(.*)$")
_OPERAND = re.compile(r"%([\w.-]+)")
_FUSED_CALLEE = re.compile(r"\b(?:calls|to_apply)=%([\w.-]+)")
_OP_NAME = re.compile(r'\bop_name="([^"]*)"')
_STACK_FRAME = re.compile(r"\bstack_frame_id=(\d+)")
# Opcodes that move no array through memory themselves (views, tuples, control, the second half of async pairs).
_NO_TRAFFIC = {
    "parameter",
    "constant",
    "get-tuple-element",
    "tuple",
    "bitcast",
    "after-all",
    "partition-id",
    "replica-id",
    "opt-barrier",
    "copy-done",
    "slice-done",
    "all-gather-done",
    "all-reduce-done",
    "collective-permute-done",
    "async-done",
    "send-done",
    "recv-done",
    "iota",
}
# Custom calls that only reinterpret memory (the TPU compiler's concatenation of adjacent slices).
_VIEW_CALL = re.compile(r'custom_call_target="ConcatBitcast"')
# Opcodes that call computations run as their own instructions (their bodies are listed, so the call is free).
_CONTROL = {"while", "conditional", "call"}


def array_bytes(type_text: str, *, hbm_only: bool = False) -> float:
    """Bytes of every array in an HLO type ("f32[8,128]{1,0}", or a tuple of them); with `hbm_only`, only those
    whose layout places them in HBM (no memory space, or S(0))."""
    total = 0.0
    for element, dims, layout in _ARRAY_TYPE.findall(type_text):
        space = _MEMORY_SPACE.search(layout)
        if hbm_only and space is not None and space.group(1) != "0":
            continue
        size = _ELEMENT_BYTES.get(element, 1.0)  # the fp8 kinds are one byte
        for dim in filter(None, dims.split(",")):
            size *= int(dim)
        total += size
    return total


@dataclasses.dataclass(frozen=True)
class InstructionBytes:
    """One instruction of the optimized program and the HBM bytes it reads and writes."""

    computation: str
    name: str
    opcode: str
    bytes: float
    output_bytes: float
    op_name: str
    source: str  # "file.py:line" of the innermost Python frame, or "" when the metadata names none


def _split_type(rest: str) -> tuple[str, str]:
    """`rest` of an instruction line ("TYPE opcode(...)...") as (TYPE, the text after it)."""
    if rest.startswith("("):
        depth = 0
        for index, char in enumerate(rest):
            depth += (char == "(") - (char == ")")
            if depth == 0:
                return rest[: index + 1], rest[index + 1 :].lstrip()
    type_text, _, after = rest.partition(" ")
    return type_text, after


def _operands(after: str) -> list[str]:
    """Names of the operands in "opcode(%a, %b), attrs" (the text up to the call's closing parenthesis)."""
    start = after.find("(")
    if start < 0:
        return []
    depth = 0
    for index in range(start, len(after)):
        depth += (after[index] == "(") - (after[index] == ")")
        if depth == 0:
            return _OPERAND.findall(after[start:index])
    return _OPERAND.findall(after[start:])


def _frame_sources(lines: list[str]) -> dict[int, str]:
    """stack_frame_id -> "file.py:line" from the module's FileNames / FileLocations / StackFrames tables."""
    tables: dict[str, dict[int, str]] = {"FileNames": {}, "FileLocations": {}, "StackFrames": {}}
    current: dict[int, str] | None = None
    for line in lines:
        stripped = line.strip()
        if stripped in tables:
            current = tables[stripped]
            continue
        if line.startswith(("%", "ENTRY")):
            break  # the tables come before the computations
        if not stripped or line.startswith("HloModule"):
            current = None
            continue
        if current is not None:
            key, _, value = stripped.partition(" ")
            if key.isdigit():
                current[int(key)] = value
    files = {k: v.strip('"').rsplit("/", 1)[-1] for k, v in tables["FileNames"].items()}
    locations: dict[int, str] = {}
    for key, value in tables["FileLocations"].items():
        file_id = re.search(r"file_name_id=(\d+)", value)
        line_no = re.search(r"\bline=(\d+)", value)
        if file_id and line_no:
            locations[key] = f"{files.get(int(file_id.group(1)), '?')}:{line_no.group(1)}"
    sources: dict[int, str] = {}
    for key, value in tables["StackFrames"].items():
        location = re.search(r"file_location_id=(\d+)", value)
        if location:
            sources[key] = locations.get(int(location.group(1)), "")
    return sources


def _tuple_elements(type_text: str) -> list[str]:
    """The top-level elements of a tuple type "(A, (B, C), D)"; a non-tuple type is its own one element."""
    if not type_text.startswith("("):
        return [type_text]
    elements, depth, begin = [], 0, 1
    for index, char in enumerate(type_text):
        if char in "({[":
            depth += 1
        elif char in ")}]":
            depth -= 1
        if (char == "," and depth == 1) or (char == ")" and depth == 0):
            elements.append(type_text[begin:index].strip())
            begin = index + 1
    return [element.removeprefix("/*index=").split("*/")[-1] for element in elements if element]


# Operations that read only part of their first operand: what they read is the size of their output.
_PARTIAL_READERS = {"gather", "dynamic-slice", "slice"}
_PARAMETER_NUMBER = re.compile(r"parameter\((\d+)\)")


def _partial_parameter_reads(instructions: list[tuple[str, str, str, list[str]]]) -> dict[int, float]:
    """For a fused computation, the parameters that are read only through slices or gathers (as their first
    operand), with the bytes those read: the fusion reads that much of the operand, not all of it."""
    users: dict[str, list[tuple[str, str, int]]] = {}
    for _, opcode, type_text, operands in instructions:
        for position, operand in enumerate(operands):
            users.setdefault(operand, []).append((opcode, type_text, position))
    reads = {}
    for name, opcode, _, operands in instructions:
        if opcode != "parameter":
            continue
        uses = users.get(name, [])
        if uses and all(use in _PARTIAL_READERS and position == 0 for use, _, position in uses):
            reads[int(operands[0])] = sum(array_bytes(type_text) for _, type_text, _ in uses)
    return reads


def _written_bytes(opcode: str, type_text: str, read: float, hbm_only: bool) -> float:
    """HBM bytes an instruction writes: its output, or for an async start the one result its output tuple holds
    beside the operands (and context scalars)."""
    if not opcode.endswith("-start"):
        return array_bytes(type_text, hbm_only=hbm_only)
    elements = _tuple_elements(type_text)
    if opcode == "copy-start":  # (destination, source, context)
        return array_bytes(elements[0], hbm_only=hbm_only)
    if opcode == "slice-start":  # ((operand), slice, context)
        return array_bytes(elements[1], hbm_only=hbm_only) if len(elements) > 1 else 0.0
    if type_text.startswith("((") and len(elements) > 1:  # ((operands), result, ...)
        return array_bytes(elements[1], hbm_only=hbm_only)
    return max(array_bytes(type_text, hbm_only=hbm_only) - read, 0.0)


def instruction_bytes(hlo_text: str, *, hbm_only: bool = True) -> list[InstructionBytes]:
    """Every instruction that runs as its own kernel, with the HBM bytes of its operands and outputs (with
    `hbm_only=False`, the bytes of every memory, as the compiler's cost analysis counts them)."""
    lines = hlo_text.splitlines()
    sources = _frame_sources(lines)
    fused: set[str] = set()
    for line in lines:
        if "fusion(" in line or "to_apply=" in line or "-start(" in line:
            fused.update(_FUSED_CALLEE.findall(line))
    hbm: dict[str, float] = {}
    body: dict[str, list[tuple[str, str, str, list[str]]]] = {}  # fused computation -> (name, opcode, type, operands)
    pending: list[tuple[str, str, str, str, list[str], str]] = []
    computation = ""
    for line in lines:
        header = _COMPUTATION_HEADER.match(line)
        if header:
            computation = header.group(2)
            continue
        match = _INSTRUCTION.match(line)
        if not match:
            continue
        name, rest = match.groups()
        type_text, after = _split_type(rest)
        opcode = after.split("(", 1)[0].strip()
        hbm[name] = array_bytes(type_text, hbm_only=hbm_only)
        if computation in fused:
            parameter = _PARAMETER_NUMBER.match(after) if opcode == "parameter" else None
            operands = [parameter.group(1)] if parameter else _operands(after)
            body.setdefault(computation, []).append((name, opcode, type_text, operands))
            continue
        if opcode in _NO_TRAFFIC or opcode in _CONTROL or _VIEW_CALL.search(line):
            continue
        pending.append((computation, name, opcode, type_text, _operands(after), line))
    partial = {callee: _partial_parameter_reads(instructions) for callee, instructions in body.items()}
    result = []
    for computation, name, opcode, type_text, operand_names, line in pending:
        if opcode == "slice-start":  # reads only its slice of the operand
            elements = _tuple_elements(type_text)
            read = array_bytes(elements[1]) if len(elements) > 1 and hbm.get(operand_names[0], 0.0) else 0.0
        else:
            callee = _FUSED_CALLEE.search(line) if opcode == "fusion" else None
            reads = partial.get(callee.group(1), {}) if callee else {}
            read = sum(
                reads[index] if index in reads and hbm.get(operand, 0.0) else hbm.get(operand, 0.0)
                for index, operand in enumerate(operand_names)
            )
        written = _written_bytes(opcode, type_text, read, hbm_only)
        op_name = _OP_NAME.search(line)
        frame = _STACK_FRAME.search(line)
        result.append(
            InstructionBytes(
                computation=computation,
                name=name,
                opcode=opcode,
                bytes=read + written,
                output_bytes=written,
                op_name=op_name.group(1) if op_name else "",
                source=sources.get(int(frame.group(1)), "") if frame else "",
            )
        )
    return result


# The transformations JAX writes around a primitive's name in op_name, e.g. "transpose(jvp(bsd,dhk->bshk))".
_WRAPPER = re.compile(r"^(jvp|transpose|vmap|remat|checkpoint|pjit|jit|closed_call|shard_map)\((.*)\)$")


def operation_label(op_name: str) -> str:
    """A short label for an op_name: the last two path parts without the jit/while prefix, marking backward work.

    "jit(step)/while/body/closed_call/transpose(jvp(bsd,dhk->bshk))/dot_general" -> "bwd bsd,dhk->bshk/dot_general".
    """
    parts = [p for p in op_name.split("/") if p and not p.startswith("jit(") and p not in ("while", "body", "cond")]
    parts = [p for p in parts if p != "closed_call"]
    backward = any(p.startswith("transpose(") for p in parts)
    cleaned = []
    for part in parts[-2:]:
        while (match := _WRAPPER.match(part)) is not None:
            part = match.group(2)
        cleaned.append(part)
    label = "/".join(cleaned) or "(no op_name)"
    return f"bwd {label}" if backward else label


def _unsourced_label(instruction: InstructionBytes) -> str:
    """A kernel the metadata names no line for: by its opcode, and by its own name where that says more (a Pallas
    kernel's custom call is named after the kernel, e.g. splash_mha_fwd_segmented_residuals)."""
    stem = re.sub(r"(\.\d+)+$", "", instruction.name)
    if stem not in (instruction.opcode, "fusion") and not stem.startswith(instruction.opcode):
        return f"({instruction.opcode} {stem})"
    return f"({instruction.opcode}, no source)"


@dataclasses.dataclass(frozen=True)
class ByteGroup:
    label: str
    bytes: float
    instructions: int


def group_bytes(instructions: Iterable[InstructionBytes], by: str = "source") -> list[ByteGroup]:
    """Bytes summed per source line (`by="source"`), per operation label (`"operation"`) or per opcode, largest first."""
    if by not in ("source", "operation", "opcode"):
        raise ValueError(f"group_bytes: by must be 'source', 'operation' or 'opcode', not {by!r}")
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for instruction in instructions:
        if by == "source":
            label = instruction.source or _unsourced_label(instruction)
        elif by == "operation":
            label = operation_label(instruction.op_name)
        else:
            label = instruction.opcode
        totals[label][0] += instruction.bytes
        totals[label][1] += 1
    groups = [ByteGroup(label, total, int(count)) for label, (total, count) in totals.items()]
    return sorted(groups, key=lambda group: -group.bytes)
