"""The per-instruction byte breakdown of an optimized HLO module (stilts_jax.train.hlo_bytes)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from stilts_jax.train import hlo_bytes


def mlp_step(params: list[jax.Array], x: jax.Array) -> list[jax.Array]:
    def loss(params: list[jax.Array]) -> jax.Array:
        w1, w2, b = params
        h = jax.nn.gelu(x @ w1 + b)
        return -jax.nn.log_softmax(h @ w2)[:, 0].mean()

    grads = jax.grad(loss)(params)
    return [p - 0.1 * g for p, g in zip(params, grads, strict=True)]


def test_all_memory_bytes_reproduce_the_cost_analysis_on_cpu() -> None:
    params = [jax.ShapeDtypeStruct(s, jnp.float32) for s in [(256, 512), (512, 128), (512,)]]
    compiled = jax.jit(mlp_step).lower(params, jax.ShapeDtypeStruct((64, 256), jnp.float32)).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    text = compiled.as_text()
    every = hlo_bytes.instruction_bytes(text, hbm_only=False)
    assert len(every) > 3  # several kernels: the matmuls and their gradients do not all fuse into one
    # The compiler's own count of the same thing, to within the few bytes of scalars it prices differently.
    assert sum(i.bytes for i in every) == pytest.approx(float(cost["bytes accessed"]), rel=1e-3)
    # A CPU has one memory: nothing is on chip, so the HBM-only count is the same.
    assert sum(i.bytes for i in hlo_bytes.instruction_bytes(text)) == sum(i.bytes for i in every)
    # Every kernel is named by the Python line that produced it, in this file.
    assert all(i.source.startswith("test_hlo_bytes.py:") for i in every if i.source)
    labels = {group.label for group in hlo_bytes.group_bytes(every, by="operation")}
    assert any(label.startswith("bwd ") for label in labels) and any(not label.startswith("bwd ") for label in labels)


# An optimized TPU module in miniature: a weight prefetched into on-chip memory (S(1)) by an async copy, a slice of
# another prefetched by an async slice and joined back by the compiler's ConcatBitcast view, a fusion reading both
# with an HBM input and writing to HBM, and an all-gather of the fusion's output.
TPU_MODULE = """HloModule jit_step, is_scheduled=true

FileNames
1 "/work/stilts_jax/models/encoder.py"

FunctionNames
1 "__call__"

FileLocations
1 {file_name_id=1 function_name_id=1 line=284 end_line=284 column=1 end_column=9}

StackFrames
1 {file_location_id=1 parent_frame_id=1}

%fused_computation.1 (param_0: f32[256,128], param_1: f32[256,128], param_2: bf16[8,256]) -> bf16[8,128] {
  %param_0 = f32[256,128]{1,0:T(8,128)S(1)} parameter(0)
  %param_2 = bf16[8,256]{1,0} parameter(2)
  ROOT %dot.1 = bf16[8,128]{1,0} dot(%param_2, %param_0), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

ENTRY %main (param.1: f32[256,128], param.2: f32[512,128], param.3: bf16[8,256]) -> bf16[32,128] {
  %param.1 = f32[256,128]{1,0:T(8,128)} parameter(0)
  %param.2 = f32[512,128]{1,0:T(8,128)} parameter(1)
  %param.3 = bf16[8,256]{1,0:T(8,128)(2,1)} parameter(2)
  %copy-start.1 = (f32[256,128]{1,0:T(8,128)S(1)}, f32[256,128]{1,0:T(8,128)}, u32[]{:S(2)}) copy-start(%param.1)
  %copy-done.1 = f32[256,128]{1,0:T(8,128)S(1)} copy-done(%copy-start.1)
  %slice-start.1 = ((f32[512,128]{1,0:T(8,128)}), f32[128,128]{1,0:T(8,128)S(1)}, s32[]{:S(2)}) slice-start(%param.2), slice={[0:128], [0:128]}
  %slice-done.1 = f32[128,128]{1,0:T(8,128)S(1)} slice-done(%slice-start.1)
  %slice-start.2 = ((f32[512,128]{1,0:T(8,128)}), f32[128,128]{1,0:T(8,128)S(1)}, s32[]{:S(2)}) slice-start(%param.2), slice={[128:256], [0:128]}
  %slice-done.2 = f32[128,128]{1,0:T(8,128)S(1)} slice-done(%slice-start.2)
  %custom-call.1 = f32[256,128]{1,0:T(8,128)S(1)} custom-call(%slice-done.1, %slice-done.2), custom_call_target="ConcatBitcast"
  %fusion.1 = bf16[8,128]{1,0:T(8,128)(2,1)} fusion(%copy-done.1, %custom-call.1, %param.3), kind=kOutput, calls=%fused_computation.1, metadata={op_name="jit(step)/while/body/closed_call/transpose(jvp(bsd,dhk->bshk))/dot_general" stack_frame_id=1}
  %all-gather-start.1 = (bf16[8,128]{1,0:T(8,128)(2,1)}, bf16[32,128]{1,0:T(8,128)(2,1)}) all-gather-start(%fusion.1), dimensions={0}
  ROOT %all-gather-done.1 = bf16[32,128]{1,0:T(8,128)(2,1)} all-gather-done(%all-gather-start.1)
}
"""


def test_tpu_memory_spaces_async_copies_and_views() -> None:
    weight, slice_, x, y, gathered = 256 * 128 * 4, 128 * 128 * 4, 8 * 256 * 2, 8 * 128 * 2, 32 * 128 * 2
    hbm = {i.name: i for i in hlo_bytes.instruction_bytes(TPU_MODULE)}
    # Views, parameters, the -done halves and the fused body's instructions are not kernels of their own.
    assert set(hbm) == {"copy-start.1", "slice-start.1", "slice-start.2", "fusion.1", "all-gather-start.1"}
    assert hbm["copy-start.1"].bytes == weight  # read from HBM; written on chip
    assert hbm["slice-start.1"].bytes == hbm["slice-start.2"].bytes == slice_  # only the slice is read
    fusion = hbm["fusion.1"]
    assert fusion.bytes == x + y  # the two on-chip weights cost no HBM traffic
    assert (fusion.opcode, fusion.source) == ("fusion", "encoder.py:284")
    assert hlo_bytes.operation_label(fusion.op_name) == "bwd bsd,dhk->bshk/dot_general"
    assert hbm["all-gather-start.1"].bytes == y + gathered

    every = {i.name: i for i in hlo_bytes.instruction_bytes(TPU_MODULE, hbm_only=False)}
    assert every["copy-start.1"].bytes == 2 * weight and every["slice-start.1"].bytes == 2 * slice_
    assert every["fusion.1"].bytes == 2 * weight + x + y

    by_source = hlo_bytes.group_bytes(hbm.values(), by="source")
    assert by_source[0].label == "(copy-start, no source)" and by_source[0].bytes == weight
    assert {g.label: g.instructions for g in by_source}["(slice-start, no source)"] == 2


def test_array_bytes_reads_tuples_sub_byte_types_and_memory_spaces() -> None:
    assert hlo_bytes.array_bytes("(f32[2,3]{1,0}, bf16[4]{0}, pred[])") == 24 + 8 + 1
    assert hlo_bytes.array_bytes("s4[10]{0}") == 5
    assert hlo_bytes.array_bytes("(f32[8]{0:T(256)S(1)}, f32[8]{0})", hbm_only=True) == 32
    with pytest.raises(ValueError, match="by must be"):
        hlo_bytes.group_bytes([], by="line")


def test_a_gather_reads_its_rows_not_the_whole_table() -> None:
    """The cost analysis charges a gather the whole table it gathers from; the rows it reads are what HBM serves."""

    def lookup(table: jax.Array, ids: jax.Array, w: jax.Array) -> jax.Array:
        return jnp.tanh(jnp.take(table, ids, axis=0) @ w).sum()

    rows, width, tokens = 50_000, 128, 64
    args = [
        jax.ShapeDtypeStruct((rows, width), jnp.float32),
        jax.ShapeDtypeStruct((tokens,), jnp.int32),
        jax.ShapeDtypeStruct((width, width), jnp.float32),
    ]
    compiled = jax.jit(lookup).lower(*args).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    counted = sum(i.bytes for i in hlo_bytes.instruction_bytes(compiled.as_text(), hbm_only=False))
    table, gathered = rows * width * 4, tokens * width * 4
    assert counted == pytest.approx(float(cost["bytes accessed"]) - table + gathered, rel=1e-6)


def test_kernels_in_a_scan_count_once_per_trip_and_in_place_updates_their_update() -> None:
    """The cost analysis counts a loop's body once; the breakdown charges each trip, and a scan's stacked outputs
    (dynamic-update-slice in place) and stacked inputs (dynamic-slice) only the layer they write or read."""
    layers, width, rows = 6, 128, 32

    def loss(w: jax.Array, x: jax.Array) -> jax.Array:
        def layer(h: jax.Array, w_i: jax.Array) -> tuple[jax.Array, None]:
            return jnp.tanh(h @ w_i), None

        return jax.lax.scan(layer, x, w)[0].sum()

    args = [jax.ShapeDtypeStruct((layers, width, width), jnp.float32), jax.ShapeDtypeStruct((rows, width), jnp.float32)]
    compiled = jax.jit(jax.grad(loss)).lower(*args).compile()
    text = compiled.as_text()
    executions, unknown = hlo_bytes.computation_executions(text)
    assert unknown == 0 and layers in executions.values() and layers + 1 in executions.values()
    every = hlo_bytes.instruction_bytes(text, hbm_only=False)
    in_loop = [i for i in every if i.executions == layers]
    assert in_loop and all(i.executions in (1, layers, layers + 1) for i in every)  # +1: the condition
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    # One trip of every kernel is what the compiler's cost analysis counts.
    assert sum(i.bytes / i.executions for i in every) == pytest.approx(float(cost["bytes accessed"]), rel=1e-3)
    stacked, one_layer = layers * width * width * 4, width * width * 4
    updates = [round(i.output_bytes / i.executions) for i in in_loop if i.op_name.endswith("dynamic_update_slice")]
    assert one_layer in updates  # the weight gradient, written layer by layer into its stack
    assert all(written < stacked for written in updates)
    slices = [i for i in in_loop if i.op_name.endswith("dynamic_slice")]
    assert slices and all(i.bytes / i.executions < stacked for i in slices)


# A loop as the TPU compiler writes it: no known_trip_count, the counter compared below a constant of the condition;
# the body's fusion reads one layer of a stacked weight through a nested fusion's dynamic-slice.
TPU_LOOP_MODULE = """HloModule jit_scan, is_scheduled=true

%nested.1 (param_0.1: f32[24,256,128], param_1.1: s32[]) -> f32[256,128] {
  %param_0.1 = f32[24,256,128]{2,1,0:T(8,128)} parameter(0)
  %param_1.1 = s32[]{:T(128)} parameter(1)
  %zero.1 = s32[]{:T(128)} constant(0)
  %dynamic-slice.1 = f32[1,256,128]{2,1,0:T(8,128)} dynamic-slice(%param_0.1, %param_1.1, %zero.1, %zero.1), dynamic_slice_sizes={1,256,128}
  ROOT %bitcast.1 = f32[256,128]{1,0:T(8,128)} bitcast(%dynamic-slice.1)
}

%fused_computation.2 (param_0.2: f32[24,256,128], param_1.2: s32[], param_2.2: f32[8,256]) -> f32[8,128] {
  %param_0.2 = f32[24,256,128]{2,1,0:T(8,128)} parameter(0)
  %param_1.2 = s32[]{:T(128)} parameter(1)
  %param_2.2 = f32[8,256]{1,0:T(8,128)} parameter(2)
  %fusion.9 = f32[256,128]{1,0:T(8,128)} fusion(%param_0.2, %param_1.2), kind=kLoop, calls=%nested.1
  ROOT %dot.2 = f32[8,128]{1,0:T(8,128)} dot(%param_2.2, %fusion.9), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

%body.3 (param.3: (s32[], f32[24,256,128], f32[8,256])) -> (s32[], f32[24,256,128], f32[8,256]) {
  %param.3 = (s32[]{:T(128)}, f32[24,256,128]{2,1,0:T(8,128)}, f32[8,256]{1,0:T(8,128)}) parameter(0)
  %i.3 = s32[]{:T(128)} get-tuple-element(%param.3), index=0
  %w.3 = f32[24,256,128]{2,1,0:T(8,128)} get-tuple-element(%param.3), index=1
  %x.3 = f32[8,256]{1,0:T(8,128)} get-tuple-element(%param.3), index=2
  %fusion.3 = f32[8,128]{1,0:T(8,128)} fusion(%w.3, %i.3, %x.3), kind=kOutput, calls=%fused_computation.2
  %one.3 = s32[]{:T(128)} constant(1)
  %next.3 = s32[]{:T(128)} add(%i.3, %one.3)
  ROOT %tuple.3 = (s32[]{:T(128)}, f32[24,256,128]{2,1,0:T(8,128)}, f32[8,256]{1,0:T(8,128)}) tuple(%next.3, %w.3, %x.3)
}

%condition.4 (param.4: (s32[], f32[24,256,128], f32[8,256])) -> pred[] {
  %layers.4 = s32[]{:T(128)} constant(24)
  %param.4 = (s32[]{:T(128)}, f32[24,256,128]{2,1,0:T(8,128)}, f32[8,256]{1,0:T(8,128)}) parameter(0)
  %i.4 = s32[]{:T(128)} get-tuple-element(%param.4), index=0
  ROOT %lt.4 = pred[]{:T(512)} compare(%i.4, %layers.4), direction=LT
}

ENTRY %main (w: f32[24,256,128], x: f32[8,256]) -> (s32[], f32[24,256,128], f32[8,256]) {
  %w = f32[24,256,128]{2,1,0:T(8,128)} parameter(0)
  %x = f32[8,256]{1,0:T(8,128)} parameter(1)
  %zero = s32[]{:T(128)} constant(0)
  %tuple.5 = (s32[]{:T(128)}, f32[24,256,128]{2,1,0:T(8,128)}, f32[8,256]{1,0:T(8,128)}) tuple(%zero, %w, %x)
  ROOT %while.5 = (s32[]{:T(128)}, f32[24,256,128]{2,1,0:T(8,128)}, f32[8,256]{1,0:T(8,128)}) while(%tuple.5), condition=%condition.4, body=%body.3
}
"""


def test_a_tpu_loop_takes_its_trip_count_from_the_condition_and_nested_fusions_read_their_slice() -> None:
    executions, unknown = hlo_bytes.computation_executions(TPU_LOOP_MODULE)
    assert unknown == 0
    assert (executions["main"], executions["body.3"], executions["condition.4"]) == (1, 24, 25)
    kernels = {i.name: i for i in hlo_bytes.instruction_bytes(TPU_LOOP_MODULE)}
    fusion = kernels["fusion.3"]
    # Per trip: one layer of the stacked weight (a nested fusion slices it), the counter, the input, the output.
    assert fusion.executions == 24
    assert fusion.bytes == 24 * (256 * 128 * 4 + 4 + 8 * 256 * 4 + 8 * 128 * 4)  # the counter: 4 bytes
    without_count = TPU_LOOP_MODULE.replace("constant(24)", "parameter(1)")
    assert hlo_bytes.computation_executions(without_count)[1] == 1  # a loop it cannot read counts one trip
