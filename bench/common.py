"""Shared pieces of the benchmark scripts: model sizes, the FLOPs formula, timing, environment lines, formatting.

Imported by the scripts in this folder (`python bench/train_bench.py ...` puts bench/ on sys.path).
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

# Set before torch and jax initialise (the scripts import this module first; the environment still wins):
# - PyTorch's OpenMP threads sleep instead of spinning when idle. With spinning, eager PyTorch on a small shared CPU
#   host is up to 50x slower, and torch.compile's C++ kernels (a second OpenMP pool) collide with eager ops.
# - JAX does not grab 75% of GPU memory up front: PyTorch shares the device in the same process.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from stilts_jax.models.config import EncoderConfig, tiny_config

MODELS = ("base", "large", "tiny")
XLMR_VOCAB = 250002
TINY_VOCAB = 4002  # the shipped demo tokenizer's vocabulary
DEFAULT_PEAK_TFLOPS = 800.0  # one H100 SXM, dense bf16 (an 8192^3 bf16 matmul measures 788-798 TFLOP/s)


def model_config(name: str, vocab_size: int | None = None) -> EncoderConfig:
    """XLM-R base / large (hub config.json values) or the tiny test-size model (hidden 64, 2 layers)."""
    if name == "base":
        return EncoderConfig(
            vocab_size=vocab_size or XLMR_VOCAB,
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            max_position_embeddings=514,
        )
    if name == "large":
        return EncoderConfig(
            vocab_size=vocab_size or XLMR_VOCAB,
            hidden_size=1024,
            num_hidden_layers=24,
            num_attention_heads=16,
            intermediate_size=4096,
            max_position_embeddings=514,
        )
    if name == "tiny":
        return tiny_config(vocab_size or TINY_VOCAB, max_position_embeddings=514)
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


def non_embedding_params(config: EncoderConfig) -> int:
    """N_nonembed = 12 * L * d^2 (PERFORMANCE.md's convention; biases and LayerNorm left out)."""
    return 12 * config.num_hidden_layers * config.hidden_size**2


def train_flops(config: EncoderConfig, batch: int, seq: int) -> float:
    """Model FLOPs of one train step: 6 * N_nonembed * tokens + 12 * L * d * S^2 * B."""
    L, d = config.num_hidden_layers, config.hidden_size
    return 6.0 * non_embedding_params(config) * batch * seq + 12.0 * L * d * seq**2 * batch


def forward_flops(config: EncoderConfig, batch: int, seq: int) -> float:
    """One third of the train-step FLOPs: 2 * N_nonembed * tokens + 4 * L * d * S^2 * B."""
    return train_flops(config, batch, seq) / 3.0


def parse_shape(text: str) -> tuple[int, int]:
    """'32x384' -> (32, 384)."""
    try:
        batch, seq = (int(x) for x in text.lower().split("x"))
    except ValueError as e:
        raise ValueError(f"shape {text!r} is not BATCHxSEQ, e.g. 32x384") from e
    if batch <= 0 or seq <= 0:
        raise ValueError(f"shape {text!r} must be positive")
    return batch, seq


def resolve_dtype(name: str) -> str:
    """'auto' -> bfloat16 on an accelerator, float32 on CPU."""
    import jax

    if name != "auto":
        return name
    return "float32" if jax.default_backend() == "cpu" else "bfloat16"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_lines(torch_needed: bool = True) -> list[str]:
    """Device and library versions, printed above every table."""
    import flax
    import jax

    devices = jax.devices()
    lines = [
        f"date: {datetime.date.today().isoformat()}",
        f"host CPU: {cpu_model()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start",
        f"jax {jax.__version__} (flax {flax.__version__}), backend {jax.default_backend()}: "
        f"{len(devices)} x {devices[0].device_kind}",
    ]
    if torch_needed:
        try:
            import torch
            import transformers

            device = (
                torch.cuda.get_device_name(0)
                if torch.cuda.is_available()
                else f"cpu ({torch.get_num_threads()} threads)"
            )
            lines.append(
                f"torch {torch.__version__}, transformers {transformers.__version__}, device {device}, "
                f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
            )
        except ImportError:
            lines.append("torch/transformers not installed: PyTorch rows skipped")
    return lines


def jax_peak_memory() -> int | None:
    """Peak bytes in use on the first JAX device since the process started; None where the backend has no stats."""
    import jax

    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 (backends without stats raise or return None)
        return None
    if not stats:
        return None
    return stats.get("peak_bytes_in_use")


def time_calls(fn: Callable[[], Any], warmup: int, repeats: int) -> tuple[float, list[float]]:
    """Median seconds of `fn()` over `repeats` calls after `warmup` calls; fn must synchronise itself."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def fmt_bytes(n: int | float | None) -> str:
    if n is None:
        return "n/a"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"


def fmt_num(x: float | None, digits: int = 3) -> str:
    """Three significant figures, never rounding a small positive number to 0 (CPU smoke MFUs are tiny)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if x == 0:
        return "0"
    if abs(x) >= 10**digits:
        return f"{x:.0f}"
    return f"{x:.{digits}g}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def torch_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def torch_encoder(config: EncoderConfig, *, dropout: bool = True):
    """transformers' PyTorch XLMRobertaModel of the same shape (SDPA attention, random init, no pooler).

    Attention-probability dropout is 0, as in this project's encoder (fused attention kernels do not expose it);
    hidden-state dropout follows `dropout`.
    """
    from transformers import XLMRobertaConfig, XLMRobertaModel

    hf = XLMRobertaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        hidden_act=config.hidden_act,
        max_position_embeddings=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size,
        layer_norm_eps=config.layer_norm_eps,
        pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        hidden_dropout_prob=config.hidden_dropout_prob if dropout else 0.0,
        attention_probs_dropout_prob=0.0,
    )
    try:
        return XLMRobertaModel(hf, add_pooling_layer=False, attn_implementation="sdpa")
    except TypeError:  # older transformers take the attention implementation from the config only
        hf._attn_implementation = "sdpa"
        return XLMRobertaModel(hf, add_pooling_layer=False)


def random_batch(rng, batch: int, seq: int, vocab_size: int, lengths=None):
    """Random token ids (avoiding the special ids 0..3) right-padded with id 1 to `seq`; <s> first, </s> last."""
    import numpy as np

    lengths = np.full(batch, seq) if lengths is None else np.asarray(lengths)
    ids = rng.integers(4, vocab_size, (batch, seq)).astype(np.int32)
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int32)
    ids[:, 0] = 0
    ids[np.arange(batch), lengths - 1] = 2
    ids[mask == 0] = 1
    return ids, mask
