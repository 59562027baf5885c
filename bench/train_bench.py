"""Train-step throughput: this project's jitted train step beside transformers' PyTorch XLMRobertaModel.

    python bench/train_bench.py --model large --shapes 32x384 16x512            # one GPU host, bf16
    python bench/train_bench.py --model tiny --shapes 4x64 --steps 3 --no-torch-compile   # CPU smoke

The JAX rows run the project's real step (stilts_jax.train: ModelSpec + make_train_step, TaskModel with the
span-QA SpanHead and span_loss, AdamW with warmup/decay, decay mask and global-norm clipping, hidden-state
dropout) from random init. The PyTorch rows do the same work: XLMRobertaModel (SDPA attention, no pooler) + a
linear start/end head, the mean of the start and end cross-entropies, AdamW (fused on CUDA, no decay on biases
and LayerNorm), clip_grad_norm_(1.0); eager (torch.autocast bf16 when --dtype is bfloat16) and torch.compile.
Both take random token ids (all positions real tokens) and random start/end labels, fp32 master weights.

Each row: median step time over --steps timed steps after --warmup steps (every step synchronised:
jax.block_until_ready on the returned state and metrics; torch.cuda.synchronize), examples/s, model TFLOP/s and
MFU from 6 * N_nonembed * tokens + 12 * L * d * S^2 * B with N_nonembed = 12 * L * d^2 (docs/PERFORMANCE.md),
and peak device memory. A second table gives the XLA compiler's memory analysis of the JAX step.

GPU memory: PyTorch rows run first and torch.cuda.empty_cache() returns their memory before the JAX rows; JAX
is told not to preallocate. JAX's peak is the device high-water mark since the process started (run one shape
per invocation for a per-shape figure); PyTorch's is reset per row.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np

import common  # first: it sets OMP_WAIT_POLICY and XLA_PYTHON_CLIENT_PREALLOCATE


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        choices=common.MODELS,
        default="large",
        help="XLM-R base (768/12), large (1024/24) or tiny (64/2, for CPU smoke runs). Default: large",
    )
    parser.add_argument("--batch", type=int, default=32, help="batch size when --shapes is not given. Default: 32")
    parser.add_argument("--seq", type=int, default=384, help="sequence length when --shapes is not given. Default: 384")
    parser.add_argument(
        "--shapes",
        nargs="+",
        default=None,
        metavar="BxS",
        help="several batch x sequence shapes, e.g. 32x384 16x512 (overrides --batch/--seq)",
    )
    parser.add_argument(
        "--dtype",
        choices=("auto", "bfloat16", "float32"),
        default="auto",
        help="compute dtype (weights stay fp32). Default: auto = bfloat16 on GPU/TPU, float32 on CPU",
    )
    parser.add_argument(
        "--attention",
        choices=("auto", "xla", "cudnn"),
        default="auto",
        help="the JAX encoder's attention kernel. Default: auto (cuDNN flash on GPU with bf16)",
    )
    parser.add_argument(
        "--remat",
        nargs="+",
        default=["none"],
        choices=("none", "full", "save_dots"),
        help="activation checkpointing of the encoder layers; one JAX row per value. Default: none",
    )
    parser.add_argument(
        "--warmup", type=int, default=5, help="untimed steps before timing (after compiling). Default: 5"
    )
    parser.add_argument("--steps", type=int, default=20, help="timed steps; the median is reported. Default: 20")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=common.DEFAULT_PEAK_TFLOPS,
        help="device peak for MFU, TFLOP/s. Default: 800 (H100 SXM dense bf16)",
    )
    parser.add_argument(
        "--vocab",
        type=int,
        default=None,
        help="vocabulary size. Default: 250002 for base/large, 4002 (the demo tokenizer) for tiny",
    )
    parser.add_argument(
        "--dropout",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="hidden-state dropout 0.1 in both implementations, as in fine-tuning. Default: on",
    )
    parser.add_argument(
        "--torch",
        dest="run_torch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the PyTorch rows. Default: on",
    )
    parser.add_argument(
        "--torch-compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the torch.compile row (compiling takes minutes). Default: on",
    )
    parser.add_argument(
        "--jax",
        dest="run_jax",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the JAX rows. Default: on",
    )
    parser.add_argument(
        "--devices",
        type=int,
        default=1,
        help="JAX devices to split the batch over (data parallel); PyTorch uses one. MFU counts the peak of "
        "every device used. Default: 1",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the random batch. Default: 0")
    args = parser.parse_args(argv)
    args.shapes = [common.parse_shape(s) for s in args.shapes] if args.shapes else [(args.batch, args.seq)]
    if any(batch % args.devices for batch, _ in args.shapes):
        parser.error(f"every batch size must be a multiple of --devices {args.devices}")
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    return args


def make_batch(config, batch: int, seq: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids, mask = common.random_batch(rng, batch, seq, config.vocab_size)
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "start_positions": rng.integers(0, seq, batch).astype(np.int32),
        "end_positions": rng.integers(0, seq, batch).astype(np.int32),
    }


# ----------------------------------------------------------------------------------------------- JAX (this project)


def jax_row(config, arrays: dict[str, np.ndarray], args, dtype: str, remat: str = "none") -> dict:
    import jax
    from flax import nnx

    from stilts_jax.core.distributed import DEFAULT_LOGICAL_RULES, batch_sharding, make_mesh
    from stilts_jax.models.encoder import Encoder, resolve_attention_impl
    from stilts_jax.models.heads import SpanHead, TaskModel, span_loss
    from stilts_jax.train.optimizer import OptimizerConfig, make_optimizer
    from stilts_jax.train.state import ModelSpec, init_train_state, state_shardings
    from stilts_jax.train.step import make_train_step

    rules = DEFAULT_LOGICAL_RULES
    mesh = make_mesh({"data": -1}, jax.devices()[: args.devices])
    rngs = nnx.Rngs(args.seed)
    model = TaskModel(
        Encoder(config, rngs=rngs, dtype=dtype, attention=args.attention, remat=remat),
        SpanHead(config.hidden_size, rngs=rngs),
    )
    spec = ModelSpec(model, mesh, rules)
    tx, schedule = make_optimizer(OptimizerConfig(learning_rate=1e-5), total_steps=args.warmup + args.steps + 1)
    shardings = state_shardings(spec, tx)
    state = init_train_state(spec, tx, args.seed, shardings)
    # The model's own copy of the initial weights is not part of training: free it before measuring memory.
    del model
    spec._initial_params = None

    micro = {k: v[None] for k, v in arrays.items()}  # one micro-batch: [1, batch, ...]
    batch_shardings = {k: batch_sharding(mesh, rules, ndim=v.ndim, leading=1) for k, v in micro.items()}
    train_step = make_train_step(spec, tx, schedule, span_loss, shardings, batch_shardings, dropout=args.dropout)
    batch = jax.device_put(micro, batch_shardings)

    start = time.perf_counter()
    compiled = train_step.lower(state, batch).compile()
    compile_seconds = time.perf_counter() - start
    try:
        analysis = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 (not every backend implements it)
        analysis = None

    metrics = None

    def step() -> None:
        nonlocal state, metrics
        state, metrics = compiled(state, batch)  # noqa: F821 (runs before the `del` below)
        jax.block_until_ready((state, metrics))

    start = time.perf_counter()
    step()
    first = time.perf_counter() - start + compile_seconds
    seconds, _ = common.time_calls(step, args.warmup, args.steps)
    loss = float(metrics["loss"])
    if not math.isfinite(loss):
        raise RuntimeError(f"JAX train step gave loss {loss}")
    impl = resolve_attention_impl(args.attention, dtype, config.head_dim)
    result = {
        "name": f"stilts-jax train step, {impl} attention"
        + (f", remat {remat}" if remat != "none" else "")
        + (f", {args.devices} devices" if args.devices > 1 else ""),
        "seconds": seconds,
        "first": first,
        "memory": common.jax_peak_memory(),
        "loss": loss,
        "analysis": analysis,
        "compile": compile_seconds,
        "devices": args.devices,
    }
    del state, metrics, compiled, batch
    return result


# ----------------------------------------------------------------------------------------------- PyTorch baselines


def torch_rows(config, arrays: dict[str, np.ndarray], args, dtype: str) -> list[dict]:
    import torch

    device = common.torch_device()
    torch.manual_seed(args.seed)
    torch.set_float32_matmul_precision("high")  # TF32 for fp32 matmuls on GPU, as XLA's default precision
    bf16 = dtype == "bfloat16"

    class SpanModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = common.torch_encoder(config, dropout=args.dropout)
            self.head = torch.nn.Linear(config.hidden_size, 2)

        def forward(self, input_ids, attention_mask, start_positions, end_positions):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            logits = self.head(hidden).float()
            logits = logits.masked_fill(attention_mask[..., None] == 0, -1e9)
            ce = torch.nn.functional.cross_entropy
            return 0.5 * (ce(logits[..., 0], start_positions) + ce(logits[..., 1], end_positions))

    tensors = {k: torch.from_numpy(v.astype(np.int64)).to(device) for k, v in arrays.items()}
    variants = [("eager", False)] + ([("torch.compile", True)] if args.torch_compile else [])
    rows = []
    for label, compiled in variants:
        model = SpanModel().to(device).train()
        decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
        no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
            lr=1e-5,
            betas=(0.9, 0.999),
            eps=1e-8,
            fused=device == "cuda",
        )
        forward = torch.compile(model) if compiled else model
        params = list(model.parameters())
        losses = []

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)  # noqa: B023, F821 (step runs in this iteration, before the `del`)
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
                loss = forward(**tensors)  # noqa: B023, F821 (step runs in this iteration, before the `del`)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)  # noqa: B023, F821 (step runs in this iteration, before the `del`)
            optimizer.step()  # noqa: B023, F821 (step runs in this iteration, before the `del`)
            common.torch_sync(device)
            losses.append(loss.detach())  # noqa: B023, F821 (step runs in this iteration, before the `del`)

        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        step()
        first = time.perf_counter() - start
        seconds, _ = common.time_calls(step, args.warmup, args.steps)
        loss = float(losses[-1])
        if not math.isfinite(loss):
            raise RuntimeError(f"PyTorch {label} step gave loss {loss}")
        memory = torch.cuda.max_memory_allocated() if device == "cuda" else None
        precision = "autocast bf16" if bf16 else "fp32"
        rows.append(
            {
                "name": f"PyTorch {torch.__version__.split('+')[0]} {label}, {precision}, SDPA",
                "kind": label,
                "seconds": seconds,
                "first": first,
                "memory": memory,
                "loss": loss,
            }
        )
        del model, optimizer, forward, params, losses
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows


# ----------------------------------------------------------------------------------------------- report


def live_total(analysis) -> int | None:
    """Bytes the compiled step needs at once: arguments + outputs - donated (aliased) + temporaries."""
    if analysis is None:
        return None
    return (
        analysis.argument_size_in_bytes
        + analysis.output_size_in_bytes
        - analysis.alias_size_in_bytes
        + analysis.temp_size_in_bytes
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import jax

    if args.devices > jax.device_count():
        raise SystemExit(f"--devices {args.devices}, but JAX sees {jax.device_count()}: {jax.devices()}")
    dtype = common.resolve_dtype(args.dtype)
    config = common.model_config(args.model, args.vocab)
    for _, seq in args.shapes:
        if seq > config.max_sequence_length:
            raise SystemExit(f"--seq {seq} exceeds the model's maximum {config.max_sequence_length}")

    results: dict[tuple[int, int], list[dict]] = {shape: [] for shape in args.shapes}
    if args.run_torch:
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError:
            print("torch/transformers are not installed: skipping the PyTorch rows", file=sys.stderr)
            args.run_torch = False
    if args.run_torch:  # first, so that torch.cuda.empty_cache() can hand its memory back before JAX runs
        for shape in args.shapes:
            results[shape] += torch_rows(config, make_batch(config, *shape, args.seed), args, dtype)
    if args.run_jax:
        for shape in args.shapes:
            for remat in args.remat:
                results[shape].append(jax_row(config, make_batch(config, *shape, args.seed), args, dtype, remat))

    print()
    print(
        f"## Train step: XLM-R {args.model} (hidden {config.hidden_size}, {config.num_hidden_layers} layers, vocab "
        f"{config.vocab_size}), span-QA head, AdamW, random init, {dtype} compute, dropout "
        f"{'on' if args.dropout else 'off'}"
    )
    for line in common.environment_lines(args.run_torch):
        print(f"- {line}")
    print(
        f"- timing: median of {args.steps} steps after {args.warmup} warm-up steps; MFU against a peak of "
        f"{args.peak_tflops:g} TFLOP/s (--peak-tflops); FLOPs/step = 6 * N_nonembed * B * S + 12 * L * d * S^2 * B, "
        f"N_nonembed = 12 * L * d^2 = {common.non_embedding_params(config) / 1e6:.1f}M"
    )
    print()
    header = [
        "implementation",
        "batch x seq",
        "step (ms)",
        "examples/s",
        "TFLOP/s",
        f"MFU (of {args.peak_tflops:g} TFLOP/s per device)",
        "peak device memory",
        "first step incl. compile (s)",
        "vs PyTorch eager",
        "vs torch.compile",
    ]
    rows = []
    for (batch, seq), entries in results.items():
        flops = common.train_flops(config, batch, seq)
        baselines = {e.get("kind"): batch / e["seconds"] for e in entries if e.get("kind")}
        for e in entries:
            throughput = batch / e["seconds"]
            tflops = flops / e["seconds"] / 1e12
            peak = args.peak_tflops * e.get("devices", 1)
            ratios = [
                f"{throughput / baselines[k]:.2f}x" if k in baselines else "n/a" for k in ("eager", "torch.compile")
            ]
            rows.append(
                [
                    e["name"],
                    f"{batch} x {seq}",
                    common.fmt_num(e["seconds"] * 1e3),
                    common.fmt_num(throughput),
                    common.fmt_num(tflops),
                    common.fmt_num(100 * tflops / peak) + "%",
                    common.fmt_bytes(e["memory"]),
                    common.fmt_num(e["first"]),
                    *ratios,
                ]
            )
    print(common.markdown_table(header, rows))

    analyses = [(shape, e) for shape, entries in results.items() for e in entries if "analysis" in e]
    if analyses:
        print()
        print("### JAX train step: XLA compiled memory analysis (jitted.lower(...).compile().memory_analysis())")
        print()
        header = [
            "implementation",
            "batch x seq",
            "arguments",
            "outputs",
            "aliased (donated)",
            "temporaries",
            "generated code",
            "live total (args + outputs - aliased + temps)",
            "compile (s)",
        ]
        rows = []
        for (batch, seq), e in analyses:
            a = e["analysis"]
            if a is None:
                rows.append([e["name"], f"{batch} x {seq}", *(["n/a"] * 6), common.fmt_num(e["compile"])])
                continue
            total = live_total(a)
            rows.append(
                [
                    e["name"],
                    f"{batch} x {seq}",
                    common.fmt_bytes(a.argument_size_in_bytes),
                    common.fmt_bytes(a.output_size_in_bytes),
                    common.fmt_bytes(a.alias_size_in_bytes),
                    common.fmt_bytes(a.temp_size_in_bytes),
                    common.fmt_bytes(a.generated_code_size_in_bytes),
                    common.fmt_bytes(total),
                    common.fmt_num(e["compile"]),
                ]
            )
        print(common.markdown_table(header, rows))

    if args.model == "large" and jax.default_backend() == "gpu":
        print()
        print("### Targets")
        for (batch, seq), entries in results.items():
            jax_entry = next((e for e in entries if "analysis" in e), None)
            if jax_entry is None:
                continue
            mfu = (
                100
                * common.train_flops(config, batch, seq)
                / jax_entry["seconds"]
                / 1e12
                / (args.peak_tflops * args.devices)
            )
            if (batch, seq) == (32, 384):
                print(f"- large 32x384 MFU >= 55%: {mfu:.1f}% -> {'met' if mfu >= 55 else 'NOT met'}")
                compiled = next((e for e in entries if e.get("kind") == "torch.compile"), None)
                if compiled:
                    ratio = compiled["seconds"] / jax_entry["seconds"]
                    print(
                        f"- large 32x384 >= 1.35x torch.compile examples/s: {ratio:.2f}x -> "
                        f"{'met' if ratio >= 1.35 else 'NOT met'}"
                    )
            if (batch, seq) == (32, 512):
                live = live_total(jax_entry["analysis"])
                print(
                    f"- large 32x512 fits in 80 GB: ran on {jax.devices()[0].device_kind}; peak device memory "
                    f"{common.fmt_bytes(jax_entry['memory'])}; compiled live total {common.fmt_bytes(live)}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
