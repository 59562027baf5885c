"""Masked language modelling data: text files in, fixed-shape features out, dynamic masking at feeding time.

Text: one sentence per line (lines end at \n or \r\n), any languages, UTF-8; blank lines are skipped. Each line is one example, truncated and
padded to `max_length` tokens.

Masking (BERT's recipe, redrawn at every step so each epoch sees new masks): per sequence, 15% of its maskable
tokens (real tokens that are not special tokens; at least one) are chosen; of those, 80% become `<mask>`, 10% a
random non-special token and 10% stay as they were. The chosen positions, their original ids and a weight go into
`mlm_positions`, `mlm_labels` and `mlm_weights` [batch, max_predictions], so the head computes logits for those
positions only. The draw for a batch is a pure function of (seed, batch position), so masking follows the run's
seed and a resumed run masks exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from etils import epath

from stilts_jax.core.errors import InputError
from stilts_jax.core.io_utils import read_lines
from stilts_jax.core.paths import PathLike, data_path, glob_files

MLM_FEATURES = ("mlm_positions", "mlm_labels", "mlm_weights")
_SALT = 0x4D4C4D  # keeps masking draws apart from the shuffles drawn from the same seed


def text_files(patterns: Sequence[PathLike] | PathLike) -> list[epath.Path]:
    """The files named by `patterns` (paths or glob patterns, local or gs://...), in order; each must exist."""
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    files: list[epath.Path] = []
    for pattern in patterns:
        if any(c in os.fspath(pattern) for c in "*?["):
            matches = glob_files(pattern)
            if not matches:
                raise InputError(f"MLM text pattern {pattern} matches no file")
            files.extend(matches)
            continue
        path = data_path(pattern)
        if not path.is_file():
            raise InputError(f"MLM text file {path} does not exist (give files with one sentence per line)")
        files.append(path)
    return files


def read_text_lines(paths: Sequence[PathLike] | PathLike) -> list[str]:
    """Non-blank lines of every file (glob patterns allowed, local or gs://...), in order."""
    lines: list[str] = []
    for path in text_files(paths):
        lines.extend(line.strip() for line in read_lines(path) if line.strip())
    if not lines:
        names = [paths] if isinstance(paths, (str, os.PathLike)) else paths
        raise InputError(f"the MLM text files {[os.fspath(p) for p in names]} hold no non-blank line")
    return lines


def max_predictions_for(max_length: int, mask_probability: float) -> int:
    return max(1, math.ceil(max_length * mask_probability))


def mlm_features(
    lines: Sequence[str], tokenizer: Any, *, max_length: int, mask_probability: float = 0.15
) -> dict[str, np.ndarray]:
    """input_ids and attention_mask [n, max_length], plus the (empty) prediction slots the masker fills per batch."""
    encoded = tokenizer(list(lines), truncation=True, max_length=max_length, padding="max_length")
    n, k = len(lines), max_predictions_for(max_length, mask_probability)
    return {
        "input_ids": np.asarray(encoded["input_ids"], np.int32),
        "attention_mask": np.asarray(encoded["attention_mask"], np.int32),
        "mlm_positions": np.zeros((n, k), np.int32),
        "mlm_labels": np.zeros((n, k), np.int32),
        "mlm_weights": np.zeros((n, k), np.float32),
    }


class DynamicMasking:
    """`masking(batch, position) -> batch`: BERT's 15% / 80-10-10 masking, drawn from (seed, position).

    Args:
      vocab_size: the model's vocabulary (random replacements are drawn below it).
      mask_id: the `<mask>` token id.
      special_ids: ids never masked nor drawn as replacements (<s>, </s>, <pad>, <unk>, <mask>).
      seed: the run's seed.
      mask_probability: the share of maskable tokens chosen (15%).
    """

    def __init__(
        self, vocab_size: int, mask_id: int, special_ids: Sequence[int], seed: int, mask_probability: float = 0.15
    ):
        if not 0 < mask_probability < 1:
            raise ValueError(f"mask_probability must be in (0, 1), got {mask_probability}")
        if not 0 <= mask_id < vocab_size:
            raise ValueError(
                f"mask id {mask_id} is outside the model's vocabulary of {vocab_size}; use the model's tokenizer"
            )
        self.vocab_size, self.mask_id, self.seed, self.mask_probability = vocab_size, mask_id, seed, mask_probability
        self.special_ids = np.asarray(sorted(set(int(i) for i in special_ids) | {mask_id}), np.int64)
        self.replacements = np.setdiff1d(np.arange(vocab_size), self.special_ids)

    def __call__(self, batch: dict[str, np.ndarray], position: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, _SALT, position])
        input_ids = batch["input_ids"].copy()
        positions = np.zeros_like(batch["mlm_positions"])
        labels = np.zeros_like(batch["mlm_labels"])
        weights = np.zeros_like(batch["mlm_weights"])
        slots = positions.shape[1]
        maskable = (batch["attention_mask"] > 0) & ~np.isin(input_ids, self.special_ids)
        for row in range(len(input_ids)):
            candidates = np.nonzero(maskable[row])[0]
            if not len(candidates):
                continue
            count = min(slots, max(1, round(self.mask_probability * len(candidates))))
            chosen = np.sort(rng.choice(candidates, size=count, replace=False))
            action = rng.random(count)
            originals = input_ids[row, chosen]
            replaced = np.where(
                action < 0.8, self.mask_id, np.where(action < 0.9, rng.choice(self.replacements, size=count), originals)
            )
            input_ids[row, chosen] = replaced
            positions[row, :count], labels[row, :count], weights[row, :count] = chosen, originals, 1.0
        return {
            **batch,
            "input_ids": input_ids,
            "mlm_positions": positions,
            "mlm_labels": labels,
            "mlm_weights": weights,
        }
