"""Token-tagging features: every word keeps its own first sub-word, and a sentence that does not fit is split.

Follows XTREME (google-research/xtreme):
- third_party/utils_tag.py, convert_examples_to_features: each word is tokenized on its own, and a word the
  tokenizer turns into no piece at all (U+200E, U+200B, U+FEFF, a lone NBSP, ...) becomes the unk piece
  (`if len(word) != 0 and len(word_tokens) == 0: word_tokens = [tokenizer.unk_token]`), so no later word takes its
  neighbour's position and tag. The tag goes on the word's first piece; its other pieces are ignored (-100).
- utils_preprocess.py (panx/udpos_tokenize_preprocess): a sentence whose pieces exceed the length is cut into
  consecutive parts at word boundaries, each part a sentence of its own, in training and in prediction; the parts'
  predictions are joined back into the sentence's (scripts' `.idx` files), so every word is predicted by the model.

- A word with more pieces than one row holds is fed as the unk piece too (utils_preprocess.py:
  `current_subwords_len == 0 or current_subwords_len > max_seq_len`).

Rows are `<s> pieces </s>`, the tokenizer's own single-sequence template (XTREME's run_tag adds a second `</s>` for
XLM-R, `sep_token_extra`; jiant and transformers use one), so a row holds max_length - 2 pieces.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

IGNORED = -100  # label of every position that is not a word's first piece


@dataclasses.dataclass
class TaggingFeatures:
    """Fixed-width model inputs, one row per part of a sentence, and the way back from rows to words."""

    arrays: dict[str, np.ndarray]  # input_ids, attention_mask: [F, L]
    sentence_index: np.ndarray  # [F] the sentence each row is a part of
    first_word: np.ndarray  # [F] index in that sentence of the row's first word
    word_positions: list[list[int]]  # per row: the token position of each of its words' first piece
    words_without_pieces: int  # words the tokenizer gave no piece, fed as the unk piece
    overlong_words: int  # words with more pieces than a row holds, fed as the unk piece
    split_sentences: int  # sentences longer than one row, cut into parts at word boundaries

    def __len__(self) -> int:
        return len(self.sentence_index)

    def counts(self) -> dict[str, int]:
        return {
            "words_without_pieces": self.words_without_pieces,
            "overlong_words": self.overlong_words,
            "split_sentences": self.split_sentences,
        }

    def gather_words(self, best: np.ndarray, num_sentences: int) -> list[list[int]]:
        """Per sentence, the value at each word's first piece (e.g. the argmax tag), parts joined in order."""
        words: list[list[int]] = [[] for _ in range(num_sentences)]
        for row, (sentence, positions) in enumerate(zip(self.sentence_index, self.word_positions)):
            if len(words[sentence]) != self.first_word[row]:
                raise AssertionError(f"parts of sentence {sentence} are out of order")
            words[sentence].extend(int(best[row, p]) for p in positions)
        return words


def word_pieces(
    words_per_sentence: Sequence[Sequence[str]], tokenizer: Any, capacity: int
) -> tuple[list[list[list[int]]], int, int]:
    """Each word's piece ids (one batched tokenizer call); a word without pieces, or with more than `capacity`, is
    given the unk piece. Returns the pieces per sentence per word and the counts of both kinds of words."""
    encoded = tokenizer(
        [list(words) for words in words_per_sentence], is_split_into_words=True, add_special_tokens=False
    )
    unk = tokenizer.unk_token_id
    pieces: list[list[list[int]]] = []
    empty = overlong = 0
    for i, words in enumerate(words_per_sentence):
        per_word: list[list[int]] = [[] for _ in words]
        for piece, word in zip(encoded["input_ids"][i], encoded.word_ids(i)):
            if word is not None:
                per_word[word].append(int(piece))
        for w, word_ids in enumerate(per_word):
            if not word_ids or len(word_ids) > capacity:
                empty += not word_ids
                overlong += bool(word_ids)
                per_word[w] = [unk]
        pieces.append(per_word)
    return pieces, empty, overlong


def split_into_parts(per_word: Sequence[Sequence[int]], capacity: int) -> list[tuple[int, int]]:
    """[first word, end word) of consecutive parts whose pieces fit `capacity`, cut greedily at word boundaries
    (utils_preprocess.py: `if (subword_len_counter + current_subwords_len) > max_seq_len`: a new part)."""
    parts, start, used = [], 0, 0
    for w, word_ids in enumerate(per_word):
        size = len(word_ids)
        if size > capacity:
            raise ValueError(f"word {w} has {size} pieces, more than a row holds ({capacity}): feed it as unk")
        if used + size > capacity and w > start:
            parts.append((start, w))
            start, used = w, 0
        used += size
    parts.append((start, len(per_word)))
    return parts


def featurize_tagging(
    words_per_sentence: Sequence[Sequence[str]],
    tokenizer: Any,
    *,
    max_length: int,
    tags_per_sentence: Sequence[Sequence[int]] | None = None,
) -> tuple[TaggingFeatures, np.ndarray | None]:
    """Rows of <s> pieces </s> (the tokenizer's own specials) padded to max_length, and their labels when tags are given.

    `tags_per_sentence` holds tag ids per word; the labels are [F, L] with each word's tag at its first piece and
    IGNORED elsewhere.
    """
    capacity = max_length - 2
    if capacity < 1:
        raise ValueError(f"max_length {max_length} leaves no room for a word between the two special tokens")
    pieces, empty, overlong = word_pieces(words_per_sentence, tokenizer, capacity)
    cls, sep, pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    rows, sentence_index, first_word, positions_per_row, label_rows = [], [], [], [], []
    split = 0
    for s, per_word in enumerate(pieces):
        parts = split_into_parts(per_word, capacity)
        split += len(parts) > 1
        for start, end in parts:
            ids, positions, labels = [cls], [], [IGNORED]
            for w in range(start, end):
                word_ids = per_word[w]
                positions.append(len(ids))
                ids.extend(word_ids)
                if tags_per_sentence is not None:
                    labels.extend([int(tags_per_sentence[s][w])] + [IGNORED] * (len(word_ids) - 1))
            ids.append(sep)
            labels.append(IGNORED)
            rows.append(ids)
            label_rows.append(labels)
            sentence_index.append(s)
            first_word.append(start)
            positions_per_row.append(positions)
    input_ids = np.full((len(rows), max_length), pad, np.int32)
    attention_mask = np.zeros((len(rows), max_length), np.int32)
    labels = np.full((len(rows), max_length), IGNORED, np.int32) if tags_per_sentence is not None else None
    for r, ids in enumerate(rows):
        input_ids[r, : len(ids)] = ids
        attention_mask[r, : len(ids)] = 1
        if labels is not None:
            labels[r, : len(ids)] = label_rows[r]
    features = TaggingFeatures(
        {"input_ids": input_ids, "attention_mask": attention_mask},
        np.asarray(sentence_index, np.int32),
        np.asarray(first_word, np.int32),
        positions_per_row,
        empty,
        overlong,
        split,
    )
    return features, labels
