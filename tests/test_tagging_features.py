"""Tagging features as XTREME builds them (third_party/utils_tag.py, utils_preprocess.py): a word without pieces is
fed as the unk piece so later words keep their own tags, and a sentence longer than max_length is split into parts
at word boundaries, every word predicted by the model."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from stilts_jax.core.tokenization import load_tokenizer
from stilts_jax.data.examples import TaggedSentence
from stilts_jax.data.tagging_features import IGNORED, featurize_tagging, split_into_parts
from stilts_jax.tasks.families import TaggingTask
from stilts_jax.tasks.registry import get_task

ZERO_PIECE_MARKS = ["\u200e", "\u200f", "\u200b", "\u200c", "\ufeff", "\u00a0"]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(str(Path("stilts_jax/assets/tokenizer")))


def _reference_pieces(words, tokenizer, max_pieces=10_000):
    """XTREME's loop, word by word: tokenizer.tokenize(word), the unk token when it gives nothing or more than a
    row holds (utils_preprocess.py panx_tokenize_preprocess)."""
    pieces = []
    for word in words:
        tokens = tokenizer.tokenize(word)
        if (len(tokens) == 0 or len(tokens) > max_pieces) and len(word) != 0:
            tokens = [tokenizer.unk_token]
        pieces.append(tokenizer.convert_tokens_to_ids(tokens))
    return pieces


SENTENCES = [  # (words, tags): a zero-piece mark between words, in several scripts
    (["John", "\u200e", "lives", "in", "Paris"], ["B-PER", "O", "O", "O", "B-LOC"]),
    (["محمد", "\u200f", "يعيش", "في", "القاهرة"], ["B-PER", "O", "O", "O", "B-LOC"]),
    (["राम", "\u200c", "दिल्ली", "में", "\u200b", "रहता"], ["B-PER", "O", "B-LOC", "O", "O", "O"]),
    (["\ufeff", "東京", "に", "\u00a0", "住む"], ["O", "B-LOC", "O", "O", "O"]),
]


@pytest.mark.parametrize("words,tags", SENTENCES)
def test_a_word_without_pieces_keeps_every_later_tag_in_place(words, tags, tokenizer):
    assert any(not tokenizer.tokenize(w) for w in words)  # the case under test: some word has no piece
    task = TaggingTask(get_task("panx"), tokenizer, max_length=64)
    sentence = TaggedSentence(id="s", tokens=tuple(words), tags=tuple(tags), language="xx")
    features = task.train_features([sentence])
    reference = _reference_pieces(words, tokenizer)
    expected_ids = [tokenizer.cls_token_id] + [p for word in reference for p in word] + [tokenizer.sep_token_id]
    row = features["input_ids"][0]
    assert row[: len(expected_ids)].tolist() == expected_ids
    assert features["attention_mask"][0].sum() == len(expected_ids)
    # Each word's tag at its own first piece, nothing anywhere else.
    expected_labels = [IGNORED]
    for word, tag in zip(reference, tags):
        expected_labels += [task.label_index[tag]] + [IGNORED] * (len(word) - 1)
    expected_labels += [IGNORED] * (64 - len(expected_labels))
    assert features["labels"][0].tolist() == expected_labels
    assert task.featurization_counts["words_without_pieces"] == sum(not tokenizer.tokenize(w) for w in words)


class FirstPiecePredictor:
    """Stands in for the model: each token's logits put the highest score on tag (piece id mod the tag count)."""

    def __init__(self, num_tags: int):
        self.num_tags = num_tags
        self.rows = 0

    def predict(self, params, arrays, desc=""):
        ids = arrays["input_ids"]
        self.rows += len(ids)
        assert ids.shape[1] <= 16
        return np.eye(self.num_tags, dtype=np.float32)[ids % self.num_tags]


def test_sentences_longer_than_max_length_are_predicted_in_parts(tokenizer):
    words = (
        "Les",
        "enfants",
        "\u200e",
        "jouent",
        "dans",
        "le",
        "jardin",
        "pendant",
        "que",
        "leurs",
        "parents",
        "préparent",
        "le",
        "dîner",
        "pour",
        "toute",
        "la",
        "famille",
        "réunie",
        "ce",
        "soir",
        ".",
    )
    short = ("Hier", "soir", ".")
    task = TaggingTask(get_task("udpos"), tokenizer, max_length=16)
    sentences = [
        TaggedSentence(id=str(i), tokens=w, tags=("X",) * len(w), language="fr")
        for i, w in enumerate([words, short, words[::-1]])
    ]
    predictor = FirstPiecePredictor(len(task.labels))
    predicted = task.predict(predictor, None, sentences)
    # The reference: every word's tag from its own first piece, as if the model had seen the sentence whole.
    for sentence, tags in zip(sentences, predicted):
        first = [pieces[0] for pieces in _reference_pieces(sentence.tokens, tokenizer)]
        assert tags == [task.labels[p % len(task.labels)] for p in first]
    assert task.featurization_counts["split_sentences"] == 2 and predictor.rows > 3
    assert "2 sentences longer than max_length 16" in task.featurization_note()


def test_parts_are_greedy_at_word_boundaries_and_cover_every_piece(tokenizer):
    rng = np.random.default_rng(0)
    vocabulary = ["a", "longerword", "x", "internationalisation", "\u200b", "日本語", "bc"]
    for _ in range(50):
        words = [vocabulary[i] for i in rng.integers(0, len(vocabulary), rng.integers(1, 40))]
        max_length = int(rng.integers(4, 20))
        features, labels = featurize_tagging(
            [words], tokenizer, max_length=max_length, tags_per_sentence=[list(range(len(words)))]
        )
        capacity = max_length - 2
        reference = _reference_pieces(words, tokenizer, capacity)
        assert features.first_word.tolist()[0] == 0
        bounds = features.first_word.tolist() + [len(words)]
        for row, (start, end) in enumerate(itertools.pairwise(bounds)):
            sizes = [len(p) for p in reference[start:end]]
            assert sum(sizes) <= capacity  # fits
            if end < len(words):  # greedy: the next word would not have fitted
                assert sum(sizes) + len(reference[end]) > capacity
            # every word of the part is labelled with its own index at its first piece
            assert [labels[row, p] for p in features.word_positions[row]] == list(range(start, end))
            assert [features.arrays["input_ids"][row, p] for p in features.word_positions[row]] == [
                reference[w][0] for w in range(start, end)
            ]
        assert features.split_sentences == (len(features) > 1)


def test_split_into_parts_is_greedy():
    assert split_into_parts([[1], [2, 3], [4, 5], [6]], 3) == [(0, 2), (2, 4)]
    assert split_into_parts([[1], [2], [3]], 3) == [(0, 3)]
    assert split_into_parts([], 3) == [(0, 0)]
    with pytest.raises(ValueError, match="unk"):
        split_into_parts([[1], [2, 3, 4, 5]], 3)


def test_a_word_longer_than_a_row_is_fed_as_unk(tokenizer):
    words = ["a", "internationalisation" * 3, "b"]
    assert len(tokenizer.tokenize(words[1])) > 6
    features, labels = featurize_tagging([words], tokenizer, max_length=8, tags_per_sentence=[[0, 1, 2]])
    assert features.overlong_words == 1 and features.words_without_pieces == 0
    ids = features.arrays["input_ids"][0]
    assert tokenizer.unk_token_id in ids.tolist()
    assert [labels[0, p] for p in features.word_positions[0]] == [0, 1, 2]
