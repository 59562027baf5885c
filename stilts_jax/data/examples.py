"""Examples of the non-QA task families, as every loader returns them (QA examples are in data/qa.py)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class PairExample:
    """Sentence(-pair) classification: XNLI, MNLI, ANLI, SNLI, PAWS(-X), QQP."""

    id: str
    text_a: str
    text_b: str | None
    label: int | None  # index into the task's label list; None where the split carries no labels
    language: str


@dataclasses.dataclass(frozen=True)
class ChoiceExample:
    """Multiple choice with any number of choices: XCOPA, COPA, SIQA, CommonsenseQA, Cosmos QA, HellaSwag.

    Exactly what the model sees: each choice is scored as the segment pair (prompt, choice). The readers
    (data/task_sources/records.py) build both as the published code does, e.g. HellaSwag's prompt is ctx_a and
    each choice ctx_b + " " + ending; Cosmos QA's prompt is context + " " + question and each choice an answer.
    """

    id: str
    prompt: str  # the first segment
    choices: tuple[str, ...]  # each the whole second segment
    label: int | None
    language: str


@dataclasses.dataclass(frozen=True)
class TaggedSentence:
    """Token tagging: UD-POS, PAN-X/WikiANN, CCG. Words, not sub-words; tags are strings (BIO for NER)."""

    id: str
    tokens: tuple[str, ...]
    tags: tuple[str, ...] | None
    language: str
