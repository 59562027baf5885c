"""SQuAD-style features: question + a window of the context, with doc stride and offset mapping.

A long context becomes several overlapping windows (`doc_stride` tokens of overlap). Each window keeps the
character offsets of its context tokens, so predictions map back to the context text. In training, a window that
does not contain the whole answer is labelled with the first token (<s>, start = end = 0), as in the original SQuAD
recipe; so is every window of an unanswerable SQuAD v2.0 question (no answers), which teaches the CLS position the
"no answer" score that post-processing compares with the best span.
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

    def __len__(self) -> int:
        return len(self.example_index)


def truncate_questions(questions: Sequence[str], tokenizer: Any, max_query_length: int) -> list[str]:
    """Cut each question after its first max_query_length tokens (the original SQuAD recipe's query limit)."""
    encoded = tokenizer(list(questions), add_special_tokens=False, return_offsets_mapping=True)
    return [q if len(offsets) <= max_query_length else q[: offsets[max_query_length - 1][1]]
            for q, offsets in zip(questions, encoded["offset_mapping"])]


def featurize_qa(examples: Sequence[QAExample], tokenizer: Any, *, max_length: int = 384, doc_stride: int = 128,
                 max_query_length: int = 64, with_labels: bool = True) -> QAFeatures:
    if not examples:
        raise ValueError("no examples to featurize")
    room = max_length - max_query_length - 4  # <s> q </s></s> context </s>
    if room <= doc_stride:
        raise ValueError(
            f"max_length {max_length} leaves {room} context tokens after a {max_query_length}-token question, which is "
            f"not more than doc_stride {doc_stride}: raise max_length or lower doc_stride / max_query_length"
        )
    questions = truncate_questions([ex.question.lstrip() for ex in examples], tokenizer, max_query_length)
    encoded = tokenizer(
        questions,
        [ex.context for ex in examples],
        truncation="only_second",
        max_length=max_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )
    num = len(encoded["input_ids"])
    example_index = np.asarray(encoded["overflow_to_sample_mapping"], np.int32)
    offsets = np.full((num, max_length, 2), -1, np.int32)
    starts = np.zeros(num, np.int32)
    ends = np.zeros(num, np.int32)
    for f in range(num):
        sequence_ids = encoded.sequence_ids(f)
        context_tokens = [i for i, s in enumerate(sequence_ids) if s == 1]
        for i in context_tokens:
            offsets[f, i] = encoded["offset_mapping"][f][i]
        example = examples[example_index[f]]
        if not with_labels or not example.answers or not context_tokens:
            continue
        answer = example.answers[0]
        char_start, char_end = answer.start, answer.start + len(answer.text)
        first, last = context_tokens[0], context_tokens[-1]
        if offsets[f, first, 0] > char_start or offsets[f, last, 1] < char_end:
            continue  # the answer is not (wholly) in this window: label <s>
        token_start = first
        while token_start <= last and offsets[f, token_start, 0] <= char_start:
            token_start += 1
        token_end = last
        while token_end >= first and offsets[f, token_end, 1] >= char_end:
            token_end -= 1
        starts[f], ends[f] = token_start - 1, token_end + 1
    arrays = {
        "input_ids": np.asarray(encoded["input_ids"], np.int32),
        "attention_mask": np.asarray(encoded["attention_mask"], np.int32),
    }
    if with_labels:
        arrays["start_positions"] = starts
        arrays["end_positions"] = ends
    return QAFeatures(arrays, example_index, offsets)
