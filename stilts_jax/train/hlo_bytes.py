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
charged their HBM reads. A dynamic-update-slice writes in place: it is charged its update, not the whole buffer
(how scan loops fill their stacked outputs); a scatter is charged the whole array, as the cost analysis does.

Kernels inside loops count once per trip (`computation_executions`): the trip count of each `while` comes from the
compiler's `known_trip_count`, or else from its condition (a counter from 0 compared below a constant, the form
`jax.lax.scan` and `fori_loop` compile to). So a program whose layers run in a scan is charged every layer, where
the cost analysis counts a loop's body once.
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
    executions: int = 1  # how often the kernel runs per program run (the trips of the loops around it)


_WHILE_PARTS = re.compile(r"\bcondition=%([\w.-]+), body=%([\w.-]+)")
_KNOWN_TRIP_COUNT = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')
_CONSTANT = re.compile(r"\bconstant\((-?\d+)\)")
_CALLED = re.compile(r"\b(?:to_apply|calls|true_computation|false_computation)=%([\w.-]+)")
_BRANCHES = re.compile(r"\bbranch_computations=\{([^}]*)\}")


def _condition_trip_count(lines: list[str]) -> int | None:
    """The trips of a loop whose condition compares a counter (from 0, step 1) below a constant of the condition."""
    constants: dict[str, int] = {}
    for line in lines:
        match = _INSTRUCTION.match(line)
        if match and (value := _CONSTANT.search(match.group(2))) and " constant(" in match.group(2):
            constants[match.group(1)] = int(value.group(1))
    for line in lines:
        if "ROOT" in line and " compare(" in line and "direction=LT" in line:
            operands = _operands(line.split(" compare", 1)[1])
            if len(operands) == 2 and operands[1] in constants:
                return constants[operands[1]]
    return None


def computation_executions(hlo_text: str) -> tuple[dict[str, int], int]:
    """How often each computation runs per run of the module (entry: 1; a loop body: its caller's count times the
    loop's trips), and how many loops had no trip count the text says (counted as one trip)."""
    lines_of: dict[str, list[str]] = defaultdict(list)
    entry, computation = "", ""
    for line in hlo_text.splitlines():
        header = _COMPUTATION_HEADER.match(line)
        if header:
            computation = header.group(2)
            entry = computation if header.group(1) else entry
            continue
        if computation and _INSTRUCTION.match(line):
            lines_of[computation].append(line)
    calls: dict[str, list[tuple[str, int]]] = defaultdict(list)  # caller -> (callee, trips per caller run)
    unknown = 0
    for caller, lines in lines_of.items():
        for line in lines:
            loop = _WHILE_PARTS.search(line) if " while(" in line else None
            if loop is not None:
                known = _KNOWN_TRIP_COUNT.search(line)
                trips = int(known.group(1)) if known else _condition_trip_count(lines_of.get(loop.group(1), []))
                unknown += trips is None
                calls[caller] += [(loop.group(2), trips or 1), (loop.group(1), (trips or 1) + 1)]
                continue
            calls[caller] += [(callee, 1) for callee in _CALLED.findall(line)]
            for branches in _BRANCHES.findall(line):
                calls[caller] += [(callee, 1) for callee in _OPERAND.findall(branches)]
    executions: dict[str, int] = {}

    def visit(name: str, times: int, depth: int) -> None:
        if depth > 64:  # HLO calls form a tree of modest depth; this only guards against a malformed text
            return
        executions[name] = executions.get(name, 0) + times
        for callee, trips in calls.get(name, []):
            visit(callee, times * trips, depth + 1)

    if entry:
        visit(entry, 1, 0)
    return executions, unknown


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


_Fused = list[tuple[str, str, str, list[str], str]]  # a fused computation: (name, opcode, type, operands, callee)


# Operations that hand on the same elements in another layout or type; in a fusion they are computed where used.
_ELEMENTWISE_VIEWS = {"bitcast", "copy", "convert"}


def _is_relayout(callee: str, bodies: dict[str, _Fused]) -> bool:
    """Whether a nested fusion only changes its one operand's layout or type (the TPU compiler's copy fusions)."""
    instructions = bodies.get(callee, [])
    opcodes = [opcode for _, opcode, _, _, _ in instructions]
    return opcodes.count("parameter") == 1 and all(o == "parameter" or o in _ELEMENTWISE_VIEWS for o in opcodes)


def _partial_parameter_reads(
    callee: str, bodies: dict[str, _Fused], memo: dict[str, dict[int, float]]
) -> dict[int, float]:
    """For a fused computation, the parameters that are read only through slices or gathers (as their first
    operand), with the bytes those read, and those only updated in place (the buffer of a dynamic-update-slice),
    with 0: the fusion reads that much of the operand, not all of it. A parameter handed to a nested fusion reads
    what that fusion reads of it; one handed on in another layout or type first (a bitcast, copy, convert, or a
    nested fusion of only those) reads what is read of the result."""
    if callee in memo:
        return memo[callee]
    memo[callee] = {}  # a guard against a malformed, recursive text
    instructions = bodies.get(callee, [])
    types = {name: type_text for name, _, type_text, _, _ in instructions}
    users: dict[str, list[tuple[str, str, int, str, str]]] = {}
    for name, opcode, type_text, operands, nested in instructions:
        for position, operand in enumerate(operands):
            users.setdefault(operand, []).append((opcode, type_text, position, nested, name))

    def read_share(value: str, depth: int) -> float | None:
        """The share of `value` its users read, or None when one of them reads all of it."""
        uses, size = users.get(value, []), array_bytes(types.get(value, "")) or 1.0
        if not uses or depth > 8:
            return None
        share = 0.0
        for opcode, type_text, position, nested, user in uses:
            if opcode in _PARTIAL_READERS and position == 0:
                share += array_bytes(type_text) / size
            elif opcode == "dynamic-update-slice" and position == 0:
                continue  # updated in place: the buffer is not read
            elif (
                opcode == "fusion"
                and nested
                and (read := _partial_parameter_reads(nested, bodies, memo).get(position)) is not None
            ):
                share += read / size
            elif opcode in _ELEMENTWISE_VIEWS or (opcode == "fusion" and nested and _is_relayout(nested, bodies)):
                handed_on = read_share(user, depth + 1)
                if handed_on is None:
                    return None
                share += handed_on
            else:
                return None
        return share

    reads = {}
    for name, opcode, type_text, operands, _ in instructions:
        if opcode == "parameter" and (share := read_share(name, 0)) is not None:
            reads[int(operands[0])] = share * array_bytes(type_text)
    memo[callee] = reads
    return reads


def _in_place_share(instructions: _Fused) -> float:
    """For a fused computation, the bytes of its output that a dynamic-update-slice leaves as they were (the
    buffer minus the update): an in-place update writes only its update."""
    types = {name: type_text for name, _, type_text, _, _ in instructions}
    kept = 0.0
    for _, opcode, type_text, operands, _ in instructions:
        if opcode == "dynamic-update-slice" and len(operands) > 1:
            kept += array_bytes(type_text) - array_bytes(types.get(operands[1], ""))
    return kept


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


def instruction_bytes(
    hlo_text: str, *, hbm_only: bool = True, executions: dict[str, int] | None = None
) -> list[InstructionBytes]:
    """Every instruction that runs as its own kernel, with the HBM bytes of its operands and outputs (with
    `hbm_only=False`, the bytes of every memory, as the compiler's cost analysis counts them)."""
    lines = hlo_text.splitlines()
    sources = _frame_sources(lines)
    if executions is None:
        executions, _ = computation_executions(hlo_text)
    fused: set[str] = set()
    for line in lines:
        if "fusion(" in line or "to_apply=" in line or "-start(" in line:
            fused.update(_FUSED_CALLEE.findall(line))
    hbm: dict[str, float] = {}
    types: dict[str, str] = {}
    body: dict[str, _Fused] = {}
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
        types[name] = type_text
        if computation in fused:
            parameter = _PARAMETER_NUMBER.match(after) if opcode == "parameter" else None
            operands = [parameter.group(1)] if parameter else _operands(after)
            nested = _FUSED_CALLEE.search(after) if opcode == "fusion" else None
            body.setdefault(computation, []).append(
                (name, opcode, type_text, operands, nested.group(1) if nested else "")
            )
            continue
        if opcode in _NO_TRAFFIC or opcode in _CONTROL or _VIEW_CALL.search(line):
            continue
        pending.append((computation, name, opcode, type_text, _operands(after), line))
    memo: dict[str, dict[int, float]] = {}
    partial = {callee: _partial_parameter_reads(callee, body, memo) for callee in body}
    kept = {callee: _in_place_share(instructions) for callee, instructions in body.items()}
    result = []
    for computation, name, opcode, type_text, operand_names, line in pending:
        callee = _FUSED_CALLEE.search(line) if opcode == "fusion" else None
        if opcode == "slice-start":  # reads only its slice of the operand
            elements = _tuple_elements(type_text)
            read = array_bytes(elements[1]) if len(elements) > 1 and hbm.get(operand_names[0], 0.0) else 0.0
        elif opcode == "dynamic-update-slice":  # in place: reads the update and indices, not the buffer
            read = sum(hbm.get(operand, 0.0) for operand in operand_names[1:])
        else:
            reads = partial.get(callee.group(1), {}) if callee else {}
            read = sum(
                reads[index] if index in reads and hbm.get(operand, 0.0) else hbm.get(operand, 0.0)
                for index, operand in enumerate(operand_names)
            )
        written = _written_bytes(opcode, type_text, read, hbm_only)
        unchanged = kept.get(callee.group(1), 0.0) if callee else 0.0
        if opcode == "dynamic-update-slice" and len(operand_names) > 1:
            unchanged = array_bytes(type_text) - array_bytes(types.get(operand_names[1], ""))
        if unchanged > 0 and (whole := array_bytes(type_text)) > 0:
            written *= max(0.0, 1.0 - unchanged / whole)
        op_name = _OP_NAME.search(line)
        frame = _STACK_FRAME.search(line)
        times = executions.get(computation, 1)
        result.append(
            InstructionBytes(
                computation=computation,
                name=name,
                opcode=opcode,
                bytes=(read + written) * times,
                output_bytes=written * times,
                op_name=op_name.group(1) if op_name else "",
                source=sources.get(int(frame.group(1)), "") if frame else "",
                executions=times,
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
