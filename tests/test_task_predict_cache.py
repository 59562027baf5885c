"""A task tokenizes the examples it predicts on once while the same examples come again (a phase's dev set at every
evaluation), and anew when they change."""

from __future__ import annotations

from typing import Any

import numpy as np

from stilts_jax.core.tokenization import load_demo_tokenizer
from stilts_jax.data.examples import PairExample, TaggedSentence
from stilts_jax.tasks.families import make_task
from stilts_jax.tasks.registry import get_task


class TokenPredictor:
    """Logits that depend on the features: one-hot of a token id modulo the classes, per row (`per_token=False`,
    from the second token) or per token."""

    def __init__(self, classes: int, *, per_token: bool = False):
        self.classes, self.per_token = classes, per_token

    def predict(self, params: Any, arrays: dict[str, np.ndarray], desc: str = "") -> np.ndarray:
        ids = arrays["input_ids"]
        return np.eye(self.classes)[(ids if self.per_token else ids[:, 1]) % self.classes]


def counting(task: Any, name: str) -> list[int]:
    calls = [0]
    original = getattr(task, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    setattr(task, name, wrapped)
    return calls


def test_classification_encodes_the_same_examples_once_and_new_ones_again() -> None:
    task = make_task(get_task("xnli"), load_demo_tokenizer(), max_length=32)
    calls = counting(task, "_encode")
    dev = [PairExample(str(i), f"a premise {i}", f"a hypothesis {i}", i % 3, "en") for i in range(6)]
    predictor = TokenPredictor(3)
    first = task.predict(predictor, None, dev)
    assert task.predict(predictor, None, list(dev)) == first and calls[0] == 1  # an equal list: no new tokenization
    other = [PairExample("x", "another premise", "and hypothesis", 0, "de")]
    assert len(task.predict(predictor, None, other)) == 1 and calls[0] == 2
    assert task.predict(predictor, None, dev) == first and calls[0] == 3


def test_tagging_featurizes_the_same_sentences_once() -> None:
    task = make_task(get_task("udpos"), load_demo_tokenizer(), max_length=32)
    calls = counting(task, "featurize")
    sentences = [TaggedSentence(str(i), ("a", "word", str(i)), ("DET", "NOUN", "NUM"), "en") for i in range(4)]
    predictor = TokenPredictor(len(task.labels), per_token=True)
    first = task.predict(predictor, None, sentences)
    assert task.predict(predictor, None, sentences) == first and calls[0] == 1
