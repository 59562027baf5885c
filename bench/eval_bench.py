"""Evaluation throughput: this project's jitted forward (Predictor) beside transformers' PyTorch eager inference.

    python bench/eval_bench.py --model large                                     # one GPU host, bf16
    python bench/eval_bench.py --model tiny --shapes 8x64 --batches 2 --mix-examples 64 --mix-batch 16   # CPU smoke

Two tables, each timed in this run on this device (median of --repeats full passes after one warm-up pass,
which also compiles every shape the JAX side needs):

1. Equal shapes (default 128 x 384, every position a real token): examples/s of the span-QA model's forward
   (encoder + start/end head, logits fetched to the host) through stilts_jax.evaluation.predictor.Predictor,
   beside XLMRobertaModel + a linear head in PyTorch eager (torch.inference_mode, SDPA attention).
2. A realistic length mix: --mix-examples sequences with lengths drawn uniformly from --min-len..--max-len tokens.
   (a) PyTorch padding every batch to the max length (transformers' usual padding="max_length"), in data order;
   (b) this project's evaluator as the pipeline runs it: one Predictor call on the data-order arrays, which sorts
       the rows by length and cuts each batch to its power-of-two bucket (Predictor's length_buckets, the
       `evaluation.length_buckets` default; stilts_jax.evaluation.predictor.bucket_length, for sentence embeddings too).
   The other two combinations (PyTorch with the same buckets, JAX padded to the max) are shown too, so the
   gain from bucketing and the gain from the implementation can be read apart.

With bfloat16 compute both sides hold bf16 weights (PyTorch: model.to(torch.bfloat16); JAX: parameters cast
before the call); with float32 both are fp32. Model FLOPs of a forward pass: 2 * N_nonembed * tokens +
4 * L * d * S^2 * B (one third of the train-step formula in docs/PERFORMANCE.md).
"""

from __future__ import annotations

import argparse
import os
import sys

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
    parser.add_argument(
        "--shapes",
        nargs="+",
        default=["128x384"],
        metavar="BxS",
        help="equal-shape batches to time, batch x sequence. Default: 128x384",
    )
    parser.add_argument(
        "--batches", type=int, default=8, help="batches per timed pass in the equal-shape table. Default: 8"
    )
    parser.add_argument(
        "--mix-examples",
        type=int,
        default=4096,
        help="sequences in the length-mix comparison (0 skips it). Default: 4096",
    )
    parser.add_argument(
        "--mix-batch", type=int, default=128, help="batch size of the length-mix comparison. Default: 128"
    )
    parser.add_argument("--min-len", type=int, default=16, help="shortest sequence of the length mix. Default: 16")
    parser.add_argument(
        "--max-len",
        type=int,
        default=256,
        help="longest sequence of the length mix, and the pad-to-max length. Default: 256",
    )
    parser.add_argument(
        "--dtype",
        choices=("auto", "bfloat16", "float32"),
        default="auto",
        help="compute and weight dtype. Default: auto = bfloat16 on GPU/TPU, float32 on CPU",
    )
    parser.add_argument(
        "--attention",
        choices=("auto", "xla", "cudnn"),
        default="auto",
        help="the JAX encoder's attention kernel. Default: auto (cuDNN flash on GPU with bf16)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed passes; the median is reported. Default: 3")
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
        "--torch",
        dest="run_torch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the PyTorch rows. Default: on",
    )
    parser.add_argument(
        "--devices",
        type=int,
        default=1,
        help="JAX devices to split the batch over (data parallel); PyTorch uses one. MFU counts the peak of "
        "every device used. Default: 1",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the inputs. Default: 0")
    args = parser.parse_args(argv)
    args.shapes = [common.parse_shape(s) for s in args.shapes]
    if not 1 <= args.min_len <= args.max_len:
        parser.error("need 1 <= --min-len <= --max-len")
    if args.repeats < 1 or args.batches < 1:
        parser.error("--repeats and --batches must be >= 1")
    return args


# ----------------------------------------------------------------------------------------------- the two models


class JaxModel:
    """The project's span-QA model (Encoder + SpanHead) behind Predictor, with parameters in the compute dtype."""

    def __init__(self, config, dtype: str, attention: str, seed: int, devices: int = 1):
        import jax
        import jax.numpy as jnp
        from flax import nnx

        from stilts_jax.core.distributed import DEFAULT_LOGICAL_RULES, make_mesh
        from stilts_jax.models.encoder import Encoder, resolve_attention_impl
        from stilts_jax.models.heads import SpanHead, TaskModel
        from stilts_jax.train.state import ModelSpec

        self.mesh = make_mesh({"data": -1}, jax.devices()[:devices])
        self.rules = DEFAULT_LOGICAL_RULES
        rngs = nnx.Rngs(seed)
        model = TaskModel(
            Encoder(config, rngs=rngs, dtype=dtype, attention=attention), SpanHead(config.hidden_size, rngs=rngs)
        )
        self.spec = ModelSpec(model, self.mesh, self.rules)
        del model
        self.params = jax.tree.map(lambda x: x.astype(jnp.dtype(dtype)), self.spec.initial_params())
        self.spec._initial_params = None  # keep one copy of the weights on the device
        self.impl = resolve_attention_impl(attention, dtype, config.head_dim)
        self._predictors: dict[tuple[int, bool], object] = {}

    def predict(self, arrays: dict[str, np.ndarray], batch_size: int, length_buckets: bool) -> np.ndarray:
        from stilts_jax.evaluation.predictor import Predictor

        key = (batch_size, length_buckets)
        if key not in self._predictors:
            self._predictors[key] = Predictor(
                self.spec, self.mesh, self.rules, batch_size, length_buckets=length_buckets
            )
        return self._predictors[key].predict(self.params, arrays, progress=False)


class TorchModel:
    """transformers' XLMRobertaModel + a linear start/end head, eager inference (bf16 weights for bf16 compute)."""

    def __init__(self, config, dtype: str, seed: int):
        import torch

        torch.manual_seed(seed)
        torch.set_float32_matmul_precision("high")
        self.torch = torch
        self.device = common.torch_device()
        self.dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
        self.encoder = common.torch_encoder(config, dropout=False).to(self.device, self.dtype).eval()
        self.head = torch.nn.Linear(config.hidden_size, 2).to(self.device, self.dtype).eval()

    def predict_batch(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            ids = torch.from_numpy(input_ids.astype(np.int64)).to(self.device, non_blocking=True)
            mask = torch.from_numpy(attention_mask.astype(np.int64)).to(self.device, non_blocking=True)
            hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            logits = self.head(hidden).float().masked_fill(mask[..., None] == 0, -1e9)
            return logits.cpu().numpy()


# ----------------------------------------------------------------------------------------------- batching


def pad(token_ids: list[np.ndarray], length: int, rows: int | None = None) -> dict[str, np.ndarray]:
    rows = len(token_ids) if rows is None else rows
    ids = np.full((rows, length), 1, np.int32)
    mask = np.zeros((rows, length), np.int32)
    for r, t in enumerate(token_ids):
        ids[r, : len(t)] = t
        mask[r, : len(t)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def pad_to_max_batches(token_ids: list[np.ndarray], batch: int, max_len: int):
    """Data order, every batch padded to max_len (padding="max_length")."""
    for start in range(0, len(token_ids), batch):
        yield pad(token_ids[start : start + batch], max_len)


def bucketed_groups(token_ids: list[np.ndarray], batch: int, max_len: int):
    """Sorted by length; each batch padded to bucket_length(its longest); consecutive batches of one bucket joined."""
    from stilts_jax.evaluation.embedding import bucket_length

    order = np.argsort([len(t) for t in token_ids], kind="stable")
    groups: list[tuple[int, list[np.ndarray]]] = []
    for start in range(0, len(order), batch):
        members = [token_ids[i] for i in order[start : start + batch]]
        length = bucket_length(max(len(t) for t in members), max_len)
        if groups and groups[-1][0] == length:
            groups[-1][1].extend(members)
        else:
            groups.append((length, members))
    for length, members in groups:
        yield pad(members, length)


def padded_tokens(groups, batch: int) -> int:
    """Tokens the device computes: every batch is `batch` rows (the last one padded with empty rows)."""
    return sum(-(-len(g["input_ids"]) // batch) * batch * g["input_ids"].shape[1] for g in groups)


# ----------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import jax

    if args.devices > jax.device_count():
        raise SystemExit(f"--devices {args.devices}, but JAX sees {jax.device_count()}: {jax.devices()}")
    dtype = common.resolve_dtype(args.dtype)
    config = common.model_config(args.model, args.vocab)
    longest = max([s for _, s in args.shapes] + [args.max_len if args.mix_examples else 0])
    if longest > config.max_sequence_length:
        raise SystemExit(f"sequence length {longest} exceeds the model's maximum {config.max_sequence_length}")
    if args.run_torch:
        try:
            import torch
            import transformers  # noqa: F401
        except ImportError:
            print("torch/transformers are not installed: skipping the PyTorch rows", file=sys.stderr)
            args.run_torch = False
    rng = np.random.default_rng(args.seed)

    # ---- equal shapes
    equal_rows: list[list[str]] = []
    equal_inputs = {}
    for batch, seq in args.shapes:
        ids, mask = common.random_batch(rng, batch * args.batches, seq, config.vocab_size)
        equal_inputs[(batch, seq)] = {"input_ids": ids, "attention_mask": mask}

    # ---- length mix
    mix = []
    if args.mix_examples:
        lengths = rng.integers(args.min_len, args.max_len + 1, args.mix_examples)
        ids, _ = common.random_batch(rng, args.mix_examples, args.max_len, config.vocab_size, lengths)
        mix = [ids[i, :n].copy() for i, n in enumerate(lengths)]
    real_tokens = int(sum(len(t) for t in mix))

    results: dict[str, dict] = {}

    def timed(key: str, fn, examples: int, tokens: int | None = None) -> None:
        seconds, _ = common.time_calls(fn, 1, args.repeats)
        results[key] = {"seconds": seconds, "examples_per_second": examples / seconds, "tokens": tokens}

    torch_name = "PyTorch eager"
    if args.run_torch:  # first, so that its cached memory is handed back before JAX allocates
        import torch

        tm = TorchModel(config, dtype, args.seed)
        torch_name = (
            f"PyTorch {torch.__version__.split('+')[0]} eager ({'bf16' if dtype == 'bfloat16' else 'fp32'}, SDPA)"
        )
        for (batch, seq), arrays in equal_inputs.items():

            def run(arrays=arrays, batch=batch):
                for s in range(0, len(arrays["input_ids"]), batch):
                    tm.predict_batch(arrays["input_ids"][s : s + batch], arrays["attention_mask"][s : s + batch])

            timed(f"torch {batch}x{seq}", run, len(arrays["input_ids"]))
        if mix:

            def run_max():
                for g in pad_to_max_batches(mix, args.mix_batch, args.max_len):
                    tm.predict_batch(g["input_ids"], g["attention_mask"])

            def run_buckets():
                for g in bucketed_groups(mix, args.mix_batch, args.max_len):
                    for s in range(0, len(g["input_ids"]), args.mix_batch):
                        tm.predict_batch(
                            g["input_ids"][s : s + args.mix_batch], g["attention_mask"][s : s + args.mix_batch]
                        )

            timed(
                "torch mix max",
                run_max,
                len(mix),
                sum(g["input_ids"].size for g in pad_to_max_batches(mix, args.mix_batch, args.max_len)),
            )
            timed(
                "torch mix buckets",
                run_buckets,
                len(mix),
                sum(g["input_ids"].size for g in bucketed_groups(mix, args.mix_batch, args.max_len)),
            )
        del tm
        if common.torch_device() == "cuda":
            torch.cuda.empty_cache()

    jm = JaxModel(config, dtype, args.attention, args.seed, args.devices)
    jax_name = f"stilts-jax Predictor ({'bf16' if dtype == 'bfloat16' else 'fp32'}, {jm.impl} attention" + (
        f", {args.devices} devices)" if args.devices > 1 else ")"
    )
    for (batch, seq), arrays in equal_inputs.items():
        timed(
            f"jax {batch}x{seq}",
            lambda arrays=arrays, batch=batch: jm.predict(arrays, batch, False),
            len(arrays["input_ids"]),
        )
    if mix:
        from stilts_jax.evaluation.predictor import bucket_plan

        whole = pad(mix, args.max_len)  # data order, one array: Predictor batches it
        planned = bucket_plan(whole["attention_mask"].sum(1), args.mix_batch, args.max_len)
        timed(
            "jax mix max",
            lambda: jm.predict(whole, args.mix_batch, False),
            len(mix),
            padded_tokens([whole], args.mix_batch),
        )
        timed(
            "jax mix buckets",
            lambda: jm.predict(whole, args.mix_batch, True),
            len(mix),
            sum(args.mix_batch * length for _, length in planned),
        )

    # ---- report
    print()
    print(
        f"## Evaluation forward: XLM-R {args.model} (hidden {config.hidden_size}, {config.num_hidden_layers} layers, "
        f"vocab {config.vocab_size}) + span head, random init, {dtype} weights and compute"
    )
    for line in common.environment_lines(args.run_torch):
        print(f"- {line}")
    print(
        f"- timing: median of {args.repeats} full passes after one warm-up pass (compilation excluded); logits "
        f"fetched to the host; MFU against a peak of {args.peak_tflops:g} TFLOP/s (--peak-tflops)"
    )
    print()
    print(f"### Equal shapes ({args.batches} batches per pass, all positions real tokens)")
    print()
    header = [
        "implementation",
        "batch x seq",
        "examples/s",
        "TFLOP/s",
        f"MFU (of {args.peak_tflops:g} TFLOP/s per device)",
        "vs PyTorch eager",
    ]
    for batch, seq in args.shapes:
        base = results.get(f"torch {batch}x{seq}")
        for key, name in ((f"torch {batch}x{seq}", torch_name), (f"jax {batch}x{seq}", jax_name)):
            if key not in results:
                continue
            r = results[key]
            tflops = common.forward_flops(config, batch, seq) * args.batches / r["seconds"] / 1e12
            peak = args.peak_tflops * (args.devices if key.startswith("jax") else 1)
            ratio = f"{r['examples_per_second'] / base['examples_per_second']:.2f}x" if base else "n/a"
            equal_rows.append(
                [
                    name,
                    f"{batch} x {seq}",
                    common.fmt_num(r["examples_per_second"]),
                    common.fmt_num(tflops),
                    common.fmt_num(100 * tflops / peak) + "%",
                    ratio,
                ]
            )
    print(common.markdown_table(header, equal_rows))

    if mix:
        print()
        print(
            f"### Length mix: {len(mix)} sequences, lengths uniform in {args.min_len}..{args.max_len} tokens "
            f"(mean {real_tokens / len(mix):.0f}), batch {args.mix_batch}"
        )
        print()
        header = ["implementation", "batching", "examples/s", "real / computed tokens", "vs PyTorch pad-to-max"]
        base = results.get("torch mix max")
        rows = []
        for key, name, batching in (
            ("torch mix max", torch_name, f'data order, pad to {args.max_len} (padding="max_length")'),
            ("torch mix buckets", torch_name, "sorted, power-of-two buckets"),
            ("jax mix max", jax_name, f"data order, pad to {args.max_len}"),
            ("jax mix buckets", jax_name, "sorted, power-of-two buckets (Predictor length_buckets)"),
        ):
            if key not in results:
                continue
            r = results[key]
            ratio = f"{r['examples_per_second'] / base['examples_per_second']:.2f}x" if base else "n/a"
            rows.append(
                [
                    name,
                    batching,
                    common.fmt_num(r["examples_per_second"]),
                    f"{100 * real_tokens / r['tokens']:.0f}%",
                    ratio,
                ]
            )
        print(common.markdown_table(header, rows))

    if args.model == "large" and jax.default_backend() == "gpu" and args.run_torch:
        print()
        print("### Targets")
        if "jax 128x384" in results:
            ratio = results["jax 128x384"]["examples_per_second"] / results["torch 128x384"]["examples_per_second"]
            print(
                f"- large 128x384 >= 1.1x PyTorch eager examples/s: {ratio:.2f}x -> {'met' if ratio >= 1.1 else 'NOT met'}"
            )
        if "jax mix buckets" in results:
            ratio = results["jax mix buckets"]["examples_per_second"] / results["torch mix max"]["examples_per_second"]
            print(
                f"- length mix >= 2x PyTorch pad-to-max examples/s: {ratio:.2f}x -> {'met' if ratio >= 2 else 'NOT met'}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
