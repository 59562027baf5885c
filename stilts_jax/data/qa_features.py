"""SQuAD-style features: question + a window of the context, windows every `doc_stride` tokens, offsets, max context.

Featurization follows XTREME's run_squad (google-research/xtreme third_party/processors/squad.py,
squad_convert_example_to_features, as BERT's run_squad.py and jiant do), token for token:

- The question keeps its first `max_query_length` sub-word tokens (q of them).
- `doc_stride` is the STEP between window starts, not their overlap. With N context tokens, max_length L and the
  tokenizer's P special tokens of a pair (4 for XLM-R's `<s> q </s></s> c </s>`, 3 for BERT's), a window holds at most
  W = L - q - P context tokens; window k covers context tokens [k * doc_stride, min(k * doc_stride + W, N)), and the
  windows stop at the first one that reaches the end: 1 window when N <= W, else 1 + ceil((N - W) / doc_stride).
  Consecutive windows overlap by W - doc_stride tokens. Each window is laid out as the tokenizer lays out a pair and
  right-padded to L. A doc_stride above W would skip context tokens between windows (XTREME does so silently); it is
  refused here, for the longest question max_query_length allows.
- Max context (squad.py `_new_check_is_max_context`): a context token seen by several windows belongs to the window
  where it has the most context, score = min(tokens left of it, tokens right of it in the window) + 0.01 * window
  length, the earliest window on ties. `QAFeatures.max_context` marks it; post-processing only lets an answer start
  at such a token (transformers' squad_metrics.compute_predictions_logits).
- Training labels: the answer's context tokens are found once per question (`answer_tokens`); a window that does not
  contain all of them is labelled with the first token (<s>, start = end = 0), as in the original SQuAD recipe
  (squad.py keeps such windows, pointing at CLS); so is every window of an unanswerable SQuAD v2.0 question (no
  answers), which teaches the CLS position the "no answer" score that post-processing compares with the best span.

Each window keeps the character offsets of its context tokens, so predictions map back to the context text. The
contexts and the questions are tokenized once each (a context shared by several questions only once); the windows are
assembled from the token ids.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from stilts_jax.data.qa import QAExample


@dataclasses.dataclass
class QAFeatures:
    arrays: dict[str, np.ndarray]  # input_ids, attention_mask, [start_positions, end_positions] : [F, L] / [F]
    example_index: np.ndarray  # [F] index into the examples
    offsets: np.ndarray  # [F, L, 2] character span of each context token, -1 elsewhere
    max_context: np.ndarray  # [F, L] bool: the context token has its maximum context in this window (False elsewhere)

    def __len__(self) -> int:
        return len(self.example_index)


@dataclasses.dataclass(frozen=True)
class PairTemplate:
    """Where a tokenizer puts its special tokens around a pair: prefix + question + middle + context + suffix."""

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]

    @property
    def added(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)


def pair_template(tokenizer: Any) -> PairTemplate:
    """The special tokens the tokenizer adds to a pair, read off one encoded pair (`<s>`, `</s></s>`, `</s>`: XLM-R)."""
    encoded = tokenizer("a", "b", add_special_tokens=True)
    ids, sequence_ids = encoded["input_ids"], encoded.sequence_ids()
    first = [i for i, s in enumerate(sequence_ids) if s == 0]
    second = [i for i, s in enumerate(sequence_ids) if s == 1]
    if not first or not second:
        raise ValueError(f"cannot read the pair layout of tokenizer {type(tokenizer).__name__}")
    template = PairTemplate(tuple(ids[: first[0]]), tuple(ids[first[-1] + 1 : second[0]]), tuple(ids[second[-1] + 1 :]))
    expected = getattr(tokenizer, "num_special_tokens_to_add", None)
    if callable(expected) and expected(pair=True) != template.added:
        raise ValueError(
            f"tokenizer {type(tokenizer).__name__} adds {expected(pair=True)} special tokens to a pair, "
            f"but its encoded pair shows {template.added}"
        )
    return template


def window_starts(num_tokens: int, room: int, doc_stride: int) -> list[int]:
    """Start of each window over num_tokens context tokens, `room` (W) tokens per window, `doc_stride` apart: up to and
    including the first window that reaches the end (XTREME's loop)."""
    starts = [0]
    while starts[-1] + room < num_tokens:
        starts.append(starts[-1] + doc_stride)
    return starts


def max_context_windows(num_tokens: int, starts: Sequence[int], lengths: Sequence[int]) -> np.ndarray:
    """[N] index of the window where each context token has its maximum context (XTREME `_new_check_is_max_context`):
    the highest min(left, right) + 0.01 * length over the windows holding it, the earliest on ties."""
    best_score = np.full(num_tokens, -np.inf)
    best = np.full(num_tokens, -1, np.int64)
    for k, (start, length) in enumerate(zip(starts, lengths)):
        position = np.arange(start, start + length)
        score = np.minimum(position - start, start + length - 1 - position) + 0.01 * length
        better = score > best_score[start : start + length]  # strict: an earlier window keeps a tie
        best_score[start : start + length][better] = score[better]
        best[start : start + length][better] = k
    return best


def answer_tokens(example: QAExample, offsets: np.ndarray) -> tuple[int, int] | None:
    """The context tokens [start, end] of the example's first answer; None when it has none (or no token holds it).

    Start: the last token starting at or before the answer's first character (scanning from the left, up to the first
    token starting after it); end: the first token ending at or after its last character, at least the start (a lone
    "\u2581" piece shares the offsets of the character after it, so a one-character answer could otherwise end before
    it starts).
    """
    if not example.answers or not len(offsets):
        return None
    answer = example.answers[0]
    char_start, char_end = answer.start, answer.start + len(answer.text)
    after = np.nonzero(offsets[:, 0] > char_start)[0]
    token_start = (after[0] if len(after) else len(offsets)) - 1
    before = np.nonzero(offsets[:, 1] < char_end)[0]
    token_end = before[-1] + 1 if len(before) else 0
    if token_start < 0 or token_end >= len(offsets):
        return None  # the answer starts before the first token or ends after the last one
    return int(token_start), int(max(token_end, token_start))


def featurize_qa(
    examples: Sequence[QAExample],
    tokenizer: Any,
    *,
    max_length: int = 384,
    doc_stride: int = 128,
    max_query_length: int = 64,
    with_labels: bool = True,
) -> QAFeatures:
    if not examples:
        raise ValueError("no examples to featurize")
    template = pair_template(tokenizer)
    min_room = max_length - max_query_length - template.added  # W for the longest question max_query_length allows
    if doc_stride <= 0 or max_query_length <= 0 or min_room <= 0:
        raise ValueError(
            f"max_length {max_length} with max_query_length {max_query_length} and doc_stride {doc_stride} leaves no "
            f"context window: doc_stride and max_query_length must be positive and max_length above max_query_length "
            f"+ {template.added} (the tokenizer's special tokens of a pair)"
        )
    if doc_stride > min_room:
        raise ValueError(
            f"max_length {max_length} leaves {min_room} context tokens after a {max_query_length}-token question and "
            f"the tokenizer's {template.added} special tokens, fewer than doc_stride {doc_stride}, the step between "
            f"windows: context tokens between windows would never be seen (XTREME's run_squad skips them silently). "
            f"Raise max_length, or lower doc_stride or max_query_length"
        )

    questions = tokenizer([ex.question.lstrip() for ex in examples], add_special_tokens=False, verbose=False)[
        "input_ids"
    ]
    unique_contexts: dict[str, int] = {}
    context_of = [unique_contexts.setdefault(ex.context, len(unique_contexts)) for ex in examples]
    encoded = tokenizer(
        list(unique_contexts), add_special_tokens=False, return_offsets_mapping=True, verbose=False
    )  # contexts longer than the model's maximum are expected: they are windowed
    context_ids = [np.asarray(ids, np.int64) for ids in encoded["input_ids"]]
    context_offsets = [np.asarray(offsets, np.int64).reshape(-1, 2) for offsets in encoded["offset_mapping"]]

    # The windows: (example, question length, context start, context length, max-context flags, answer tokens).
    plan = []
    for e, (example, question) in enumerate(zip(examples, questions)):
        q = min(len(question), max_query_length)
        room = max_length - q - template.added
        num_tokens = len(context_ids[context_of[e]])
        starts = window_starts(num_tokens, room, doc_stride)
        lengths = [min(num_tokens - start, room) for start in starts]
        owner = max_context_windows(num_tokens, starts, lengths)
        answer = answer_tokens(example, context_offsets[context_of[e]]) if with_labels else None
        for k, (start, length) in enumerate(zip(starts, lengths)):
            plan.append((e, q, start, length, owner[start : start + length] == k, answer))

    num = len(plan)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = np.full((num, max_length), pad_id, np.int32)
    attention_mask = np.zeros((num, max_length), np.int32)
    offsets = np.full((num, max_length, 2), -1, np.int32)
    max_context = np.zeros((num, max_length), bool)
    starts_out = np.zeros(num, np.int32)
    ends_out = np.zeros(num, np.int32)
    example_index = np.zeros(num, np.int32)
    prefix, middle, suffix = (np.asarray(p, np.int64) for p in (template.prefix, template.middle, template.suffix))
    for f, (e, q, start, length, owned, answer) in enumerate(plan):
        example_index[f] = e
        ids, spans = context_ids[context_of[e]], context_offsets[context_of[e]]
        first = len(prefix) + q + len(middle)  # the window's first context token
        question = np.asarray(questions[e][:q], np.int64)
        row = np.concatenate([prefix, question, middle, ids[start : start + length], suffix])
        input_ids[f, : len(row)] = row
        attention_mask[f, : len(row)] = 1
        offsets[f, first : first + length] = spans[start : start + length]
        max_context[f, first : first + length] = owned
        if answer is not None and start <= answer[0] and answer[1] < start + length:
            starts_out[f], ends_out[f] = first + answer[0] - start, first + answer[1] - start
        # else: no answer, or not wholly in this window: label <s> (0)
    arrays = {"input_ids": input_ids, "attention_mask": attention_mask}
    if with_labels:
        arrays["start_positions"] = starts_out
        arrays["end_positions"] = ends_out
    return QAFeatures(arrays, example_index, offsets, max_context)
