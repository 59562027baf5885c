"""Correctness checks that only an accelerator can run: one table of PASS / FAIL rows, exit status 1 on a FAIL.

    python bench/gpu_checks.py                    # on a GPU host: XLM-R base shapes, batch 16 x 384
    python bench/gpu_checks.py --small            # a CPU smoke run (the cuDNN row is skipped there)

Rows:
- `cudnn attention`: the encoder with cuDNN flash attention against the same weights with XLA's attention, both in
  bfloat16 compute, each compared with a float32 XLA reference (last hidden state at real positions, and the
  gradient of a projection of it): cuDNN's error must stay within a small factor of XLA-bf16's own error.
- `encoder vs PyTorch (fp32)`: every hidden state of the project's encoder, loaded from a random transformers
  `XLMRobertaModel` saved in the Hugging Face format, against that model run by PyTorch on the same device, both
  at full float32 matmul precision (TF32 off on both sides).
- `search vs PyTorch`: `NearestNeighbors` top-k against `torch.topk(q @ db.T)` on the same device in float32;
  neighbours must agree except where the k-th and (k+1)-th scores are a near tie.
- `fused search kernel vs PyTorch`: the same with `kernel="fused"` (the Pallas Triton kernel, compiled for the GPU;
  Pallas interpret mode on CPU).
- `bf16 train steps`: the span-QA train step (the project's optimizer, bf16 compute, the resolved attention) on one
  fixed batch: the loss must fall by half within the steps, with finite values throughout.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

import common  # first: it sets XLA_PYTHON_CLIENT_PREALLOCATE before jax and torch load

Check = tuple[str, str, str]  # (name, PASS / FAIL / SKIP, detail)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--small", action="store_true", help="tiny sizes (a CPU smoke run)")
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        choices=("cudnn", "torch", "search", "fused", "train"),
        help="run only these checks",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def _lengths(batch: int, seq: int, rng: np.random.Generator) -> np.ndarray:
    """Right-padding lengths spread over [seq / 8, seq], one full row and one length-1 row."""
    lengths = rng.integers(max(1, seq // 8), seq + 1, batch)
    lengths[0], lengths[-1] = seq, 1
    return lengths


def _batch(vocab: int, batch: int, seq: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    lengths = _lengths(batch, seq, rng)
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int32)
    ids = np.where(mask == 1, rng.integers(4, vocab, (batch, seq)), 1).astype(np.int32)
    return ids, mask


def check_cudnn_attention(args: argparse.Namespace) -> Check:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from stilts_jax.models.encoder import Encoder

    name = "cudnn attention (bf16) vs XLA"
    if jax.default_backend() != "gpu":
        return name, "SKIP", f"needs a GPU (backend: {jax.default_backend()})"
    config = common.model_config("tiny" if args.small else "base")
    batch, seq = (4, 64) if args.small else (16, 384)
    ids, mask = _batch(config.vocab_size, batch, seq, np.random.default_rng(args.seed))
    real = mask.astype(bool)
    projection = jnp.asarray(np.random.default_rng(args.seed + 1).standard_normal(config.hidden_size), jnp.float32)
    state = nnx.state(Encoder(config, rngs=nnx.Rngs(args.seed)))

    def run(dtype: str, impl: str) -> tuple[np.ndarray, np.ndarray]:
        model = Encoder(config, rngs=nnx.Rngs(args.seed), dtype=dtype, attention=impl)
        nnx.update(model, state)
        graphdef, params = nnx.split(model)

        def loss(p):
            hidden = nnx.merge(graphdef, p)(jnp.asarray(ids), jnp.asarray(mask)).last_hidden_state
            hidden = hidden.astype(jnp.float32) * jnp.asarray(mask, jnp.float32)[..., None]
            return jnp.sum(hidden @ projection) / mask.sum(), hidden

        with jax.default_matmul_precision("highest" if dtype == "float32" else "default"):
            (_, hidden), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
        flat = np.concatenate([np.asarray(g, np.float32).ravel() for g in jax.tree.leaves(grads)])
        return np.asarray(hidden)[real], flat

    reference_hidden, reference_grad = run("float32", "xla")
    errors = {}
    for impl in ("xla", "cudnn"):
        hidden, grad = run("bfloat16", impl)
        errors[impl] = (
            np.max(np.abs(hidden - reference_hidden)) / np.max(np.abs(reference_hidden)),
            np.linalg.norm(grad - reference_grad) / np.linalg.norm(reference_grad),
        )
    (xla_h, xla_g), (cudnn_h, cudnn_g) = errors["xla"], errors["cudnn"]
    ok = cudnn_h <= 2 * xla_h + 1e-3 and cudnn_g <= 2 * xla_g + 1e-3 and np.isfinite([cudnn_h, cudnn_g]).all()
    detail = (
        f"{batch}x{seq}, relative error vs fp32: hidden cudnn {cudnn_h:.2e} / xla {xla_h:.2e}, "
        f"gradient cudnn {cudnn_g:.2e} / xla {xla_g:.2e} (limit 2x xla + 1e-3)"
    )
    return name, "PASS" if ok else "FAIL", detail


def check_torch_parity(args: argparse.Namespace) -> Check:
    import jax
    import jax.numpy as jnp
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    from stilts_jax.models.hf_weights import load_pretrained

    name = "encoder vs PyTorch (fp32)"
    device = "cuda" if torch.cuda.is_available() and jax.default_backend() == "gpu" else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    sizes = (
        dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
        if args.small
        else dict(hidden_size=768, num_hidden_layers=4, num_attention_heads=12, intermediate_size=3072)
    )
    torch.manual_seed(args.seed)
    reference = XLMRobertaModel(
        XLMRobertaConfig(
            vocab_size=4002, pad_token_id=1, bos_token_id=0, eos_token_id=2, max_position_embeddings=514, **sizes
        ),
        add_pooling_layer=False,
    ).eval()
    batch, seq = (4, 64) if args.small else (16, 384)
    ids, mask = _batch(4002, batch, seq, np.random.default_rng(args.seed))
    with tempfile.TemporaryDirectory() as folder:
        reference.save_pretrained(folder)
        encoder, _ = load_pretrained(folder, attention="xla")
    with jax.default_matmul_precision("highest"):
        ours = encoder(jnp.asarray(ids), jnp.asarray(mask), output_hidden_states=True).hidden_states
        ours = [np.asarray(h) for h in ours]
    reference = reference.to(device)
    with torch.no_grad():
        theirs = reference(
            torch.tensor(ids, dtype=torch.long, device=device),
            attention_mask=torch.tensor(mask, device=device),
            output_hidden_states=True,
        ).hidden_states
    real = mask.astype(bool)
    error = max(float(np.max(np.abs(a[real] - b.float().cpu().numpy()[real]))) for a, b in zip(ours, theirs))
    ok = error < 1e-4
    return (
        name,
        "PASS" if ok else "FAIL",
        (f"{batch}x{seq}, {len(ours)} hidden states on {device}: max abs difference {error:.2e} (limit 1e-4)"),
    )


def check_search(args: argparse.Namespace, kernel: str = "xla") -> Check:
    import jax
    import torch

    from stilts_jax.evaluation.search import NearestNeighbors

    name = "search vs PyTorch topk (fp32)" if kernel == "xla" else "fused search kernel vs PyTorch topk (fp32)"
    device = "cuda" if torch.cuda.is_available() and jax.default_backend() == "gpu" else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    n, dim, k = (3000, 64, 4) if args.small else (40000, 1024, 4)
    rng = np.random.default_rng(args.seed)
    queries = rng.standard_normal((n, dim), dtype=np.float32)
    database = rng.standard_normal((n, dim), dtype=np.float32)
    with jax.default_matmul_precision("highest"):
        ours = NearestNeighbors(database, kernel=kernel).search(queries, k + 1)
    q, db = torch.from_numpy(queries).to(device), torch.from_numpy(database).to(device)
    scores = torch.cat([q[i : i + 4096] @ db.T for i in range(0, n, 4096)]) if device == "cuda" else q @ db.T
    values, indices = torch.topk(scores, k + 1, dim=1)
    values, indices = values.cpu().numpy(), indices.cpu().numpy()
    tie = np.abs(values[:, k - 1] - values[:, k]) < 1e-3  # the k-th and (k+1)-th neighbours nearly tie
    same = np.all(np.sort(ours.indices[:, :k], 1) == np.sort(indices[:, :k], 1), axis=1)
    score_error = float(np.max(np.abs(ours.scores[:, :k] - values[:, :k])))
    disagreements = int(np.sum(~same & ~tie))
    ok = disagreements == 0 and score_error < 1e-2
    return (
        name,
        "PASS" if ok else "FAIL",
        (
            f"{n} x {n} x {dim}, top-{k} on {device}: {disagreements} rows differ "
            f"outside near ties ({int(tie.sum())} near ties), max score difference "
            f"{score_error:.2e}"
        ),
    )


def check_train_steps(args: argparse.Namespace) -> Check:
    import jax
    from flax import nnx

    from stilts_jax.core.distributed import DEFAULT_LOGICAL_RULES, batch_sharding, make_mesh
    from stilts_jax.models.encoder import Encoder, resolve_attention_impl
    from stilts_jax.models.heads import SpanHead, TaskModel, span_loss
    from stilts_jax.train.optimizer import OptimizerConfig, make_optimizer
    from stilts_jax.train.state import ModelSpec, init_train_state, state_shardings
    from stilts_jax.train.step import make_train_step

    dtype = common.resolve_dtype("auto")
    config = common.model_config("tiny" if args.small else "base", vocab_size=4002)
    batch, seq, steps = (8, 64, 40) if args.small else (16, 256, 40)
    impl = resolve_attention_impl("auto", dtype, config.head_dim)
    name = f"{dtype} train steps ({impl} attention)"
    rng = np.random.default_rng(args.seed)
    ids, mask = _batch(config.vocab_size, batch, seq, rng)
    lengths = mask.sum(1)
    starts = (rng.random(batch) * lengths).astype(np.int32)
    arrays = {
        "input_ids": ids,
        "attention_mask": mask,
        "start_positions": starts,
        "end_positions": np.minimum(starts + 2, lengths - 1).astype(np.int32),
    }
    mesh = make_mesh({"data": -1}, jax.devices()[:1])
    rngs = nnx.Rngs(args.seed)
    spec = ModelSpec(
        TaskModel(Encoder(config, rngs=rngs, dtype=dtype), SpanHead(config.hidden_size, rngs=rngs)),
        mesh,
        DEFAULT_LOGICAL_RULES,
    )
    tx, schedule = make_optimizer(
        OptimizerConfig(learning_rate=1e-3 if args.small else 2e-4, warmup_fraction=0.0), total_steps=steps
    )
    shardings = state_shardings(spec, tx)
    state = init_train_state(spec, tx, args.seed, shardings)
    micro = {key: value[None] for key, value in arrays.items()}
    batch_shardings = {
        key: batch_sharding(mesh, DEFAULT_LOGICAL_RULES, ndim=v.ndim, leading=1) for key, v in micro.items()
    }
    step = make_train_step(spec, tx, schedule, span_loss, shardings, batch_shardings, dropout=False)
    device_batch = jax.device_put(micro, batch_shardings)
    losses = []
    for _ in range(steps):
        state, metrics = step(state, device_batch)
        losses.append(float(metrics["loss"]))
    ok = bool(np.all(np.isfinite(losses))) and losses[-1] < 0.5 * losses[0]
    return (
        name,
        "PASS" if ok else "FAIL",
        (
            f"{config.num_hidden_layers} layers, {batch}x{seq}, {steps} steps on one "
            f"batch: loss {losses[0]:.3f} -> {losses[-1]:.3f} (must halve)"
        ),
    )


CHECKS: dict[str, Callable[[argparse.Namespace], Check]] = {
    "cudnn": check_cudnn_attention,
    "torch": check_torch_parity,
    "search": check_search,
    "fused": lambda args: check_search(args, "fused"),
    "train": check_train_steps,
}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for line in common.environment_lines():
        print(line)
    rows = []
    for key, check in CHECKS.items():
        if args.only is not None and key not in args.only:
            continue
        start = time.perf_counter()
        try:
            name, status, detail = check(args)
        except Exception as error:  # noqa: BLE001 (a crash is a failed check, reported with the others)
            name, status, detail = key, "FAIL", f"{type(error).__name__}: {error}"
        rows.append((name, status, detail, time.perf_counter() - start))
        print(f"[{status}] {name}: {detail}", flush=True)
    print("\n| check | result | detail | seconds |\n|---|---|---|---|")
    for name, status, detail, seconds in rows:
        print(f"| {name} | {status} | {detail} | {seconds:.1f} |")
    return 1 if any(status == "FAIL" for _, status, _, _ in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
