"""QA windows exactly as XTREME's run_squad builds them: doc_stride is the step between windows, max-context flags.

The references below re-implement the published code on their own (google-research/xtreme
third_party/processors/squad.py: the `while len(spans) * doc_stride < len(all_doc_tokens)` loop around transformers
2.x `encode_plus(..., truncation_strategy="only_second", return_overflowing_tokens=True)`, and
`_new_check_is_max_context`), and featurize_qa must agree with them token for token.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from stilts_jax.core.tokenization import load_demo_tokenizer
from stilts_jax.data.qa import Answer, QAExample
from stilts_jax.data.qa_features import featurize_qa
from stilts_jax.demo.qa_data import squad_examples
from stilts_jax.evaluation.qa_postprocess import score_answers

PAIR_ADDED = 4  # XLM-R: <s> q </s></s> c </s>


@pytest.fixture(scope="module")
def tokenizer():
    return load_demo_tokenizer()


def _published_spans(query: list[int], doc: list[int], max_length: int, doc_stride: int) -> list[dict]:
    """XTREME's loop, with transformers 2.x only_second truncation spelled out: each call keeps what fits and hands
    its last `stride + removed` document tokens on as overflowing_tokens (only when it had to remove some)."""
    spans, span_doc = [], list(doc)
    stride = max_length - doc_stride - len(query) - PAIR_ADDED
    while len(spans) * doc_stride < len(doc):
        removed = max(0, len(query) + len(span_doc) + PAIR_ADDED - max_length)
        kept = span_doc[: len(span_doc) - removed]
        paragraph_len = min(len(doc) - len(spans) * doc_stride, max_length - len(query) - PAIR_ADDED)
        assert len(kept) == paragraph_len
        spans.append({"tokens": kept, "start": len(spans) * doc_stride, "length": paragraph_len})
        if not removed:  # no "overflowing_tokens" in encoded_dict
            break
        span_doc = span_doc[-min(len(span_doc), stride + removed) :]
    return spans


def _published_is_max_context(doc_spans, cur_span_index, position):
    """_new_check_is_max_context, verbatim."""
    best_score = None
    best_span_index = None
    for span_index, doc_span in enumerate(doc_spans):
        end = doc_span["start"] + doc_span["length"] - 1
        if position < doc_span["start"]:
            continue
        if position > end:
            continue
        num_left_context = position - doc_span["start"]
        num_right_context = end - position
        score = min(num_left_context, num_right_context) + 0.01 * doc_span["length"]
        if best_score is None or score > best_score:
            best_score = score
            best_span_index = span_index
    return cur_span_index == best_span_index


def _reference(examples, tokenizer, max_length, doc_stride, max_query_length):
    """Per feature: input ids (padded), example index, the spans, the span index, the window's first position."""
    rows = []
    for e, ex in enumerate(examples):
        query = tokenizer(ex.question.lstrip(), add_special_tokens=False)["input_ids"][:max_query_length]
        doc = tokenizer(ex.context, add_special_tokens=False)["input_ids"]
        spans = _published_spans(query, doc, max_length, doc_stride)
        for k, span in enumerate(spans):
            ids = [
                tokenizer.cls_token_id,
                *query,
                tokenizer.sep_token_id,
                tokenizer.sep_token_id,
                *span["tokens"],
                tokenizer.sep_token_id,
            ]
            rows.append((ids + [tokenizer.pad_token_id] * (max_length - len(ids)), e, spans, k, len(query) + 3))
    return rows


def _long_context(tokenizer, num_tokens: int) -> str:
    """Demo SQuAD contexts joined and cut to exactly num_tokens tokens."""
    text = " ".join(ex.context for ex in squad_examples(400, 3, "train"))
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert len(offsets) > num_tokens + 10
    for cut in range(num_tokens - 5, num_tokens + 10):  # a cut may split a word into other pieces: try nearby ones
        context = text[: offsets[cut - 1][1]]
        if len(tokenizer(context, add_special_tokens=False)["input_ids"]) == num_tokens:
            return context
    raise AssertionError(f"no cut gives {num_tokens} tokens")


def _examples(tokenizer, long_tokens=2235):
    demo = squad_examples(6, 11, "dev")
    long_context = _long_context(tokenizer, long_tokens)
    start = long_context.rindex(" ") + 1  # the last word: an answer in the last windows only
    long_question = " ".join(ex.question for ex in demo)  # far over any max_query_length here
    return [
        *demo,
        QAExample("long", "When was it built?", long_context, (Answer(long_context[start:], start),), "en"),
        # The same context again, with a truncated question: another q, so another window width, same tokenization.
        QAExample("long-q", long_question, long_context, (Answer(long_context[:5], 0),), "en"),
        QAExample("tiny", "Which?", "alpha", (Answer("alpha", 0),), "en"),
    ]


@pytest.mark.parametrize(
    "max_length, doc_stride, max_query_length, long_tokens",
    [
        (384, 128, 64, 2235),
        (64, 16, 12, 2235),
        (48, 32, 12, 700),
        (40, 1, 8, 121),
        (96, 30, 32, 700),
        (64, 48, 12, 700),
    ],
)
def test_windows_are_the_published_ones_token_for_token(
    tokenizer, max_length, doc_stride, max_query_length, long_tokens
):
    examples = _examples(tokenizer, long_tokens)
    docs = [
        tokenizer(ex.context, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        for ex in examples
    ]
    features = featurize_qa(
        examples, tokenizer, max_length=max_length, doc_stride=doc_stride, max_query_length=max_query_length
    )
    reference = _reference(examples, tokenizer, max_length, doc_stride, max_query_length)
    assert len(features) == len(reference)
    np.testing.assert_array_equal(features.arrays["input_ids"], np.asarray([r[0] for r in reference]))
    np.testing.assert_array_equal(features.example_index, [r[1] for r in reference])
    np.testing.assert_array_equal(
        features.arrays["attention_mask"], features.arrays["input_ids"] != tokenizer.pad_token_id
    )

    # Max context: the published rule for every context token of every window, False outside the context.
    expected = np.zeros_like(features.max_context)
    for f, (_, _, spans, k, first) in enumerate(reference):
        for j in range(spans[k]["length"]):
            expected[f, first + j] = _published_is_max_context(spans, k, spans[k]["start"] + j)
    np.testing.assert_array_equal(features.max_context, expected)
    # ... and exactly one window owns each context token.
    for e in range(len(examples)):
        windows = np.nonzero(features.example_index == e)[0]
        owned = [features.offsets[f][features.max_context[f]].tolist() for f in windows]
        flat = [tuple(o) for window in owned for o in window]
        assert len(flat) == len(docs[e])

    # Offsets: the context tokens' character spans where the window's tokens are, -1 elsewhere.
    for f, (_, e, spans, k, first) in enumerate(reference):
        window = np.asarray(docs[e][spans[k]["start"] : spans[k]["start"] + spans[k]["length"]]).reshape(-1, 2)
        np.testing.assert_array_equal(features.offsets[f, first : first + len(window)], window)
        assert (np.delete(features.offsets[f], np.s_[first : first + len(window)], axis=0) == -1).all()

    # Labels (the published rule on token positions, squad.py L214-235): the answer's tokens where the window holds
    # all of them, else <s>. The answer's tokens: from the last one starting at or before it (a lone "\u2581" piece
    # sharing the offsets of the character after it stays out) to the first one ending at or after it, or the start.
    for f, (_, e, spans, k, first) in enumerate(reference):
        answer, doc = examples[e].answers[0], docs[e]
        tok_start = max(i for i, (a, _) in enumerate(doc) if a <= answer.start)
        tok_end = max(tok_start, min(i for i, (_, b) in enumerate(doc) if b >= answer.start + len(answer.text)))
        doc_start, doc_end = spans[k]["start"], spans[k]["start"] + spans[k]["length"] - 1
        if doc_start <= tok_start and tok_end <= doc_end:
            label = (tok_start - doc_start + first, tok_end - doc_start + first)
        else:
            label = (0, 0)
        assert (features.arrays["start_positions"][f], features.arrays["end_positions"][f]) == label


def test_a_long_context_advances_by_doc_stride(tokenizer):
    example = [ex for ex in _examples(tokenizer) if ex.id == "long"]
    features = featurize_qa(example, tokenizer, max_length=384, doc_stride=128, max_query_length=64)
    q = len(tokenizer("When was it built?", add_special_tokens=False)["input_ids"])
    room = 384 - q - PAIR_ADDED
    assert len(features) == 1 + math.ceil((2235 - room) / 128) == 16  # overlap semantics (stride=128) gave 9
    firsts = [features.offsets[f][features.offsets[f, :, 0] >= 0][0, 0] for f in range(len(features))]
    doc = tokenizer(example[0].context, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert firsts == [doc[k * 128][0] for k in range(16)]
    # The last window is the first to reach the end; only it and its predecessors holding the answer are labelled.
    assert features.offsets[15][features.offsets[15, :, 0] >= 0][-1, 1] == len(example[0].context)
    assert features.arrays["start_positions"][-1] > 0 and (features.arrays["start_positions"][:-3] == 0).all()


def test_one_window_is_the_tokenizers_own_pair(tokenizer):
    example = squad_examples(1, 4, "dev")[0]
    features = featurize_qa([example], tokenizer, max_length=192, doc_stride=64, max_query_length=64, with_labels=False)
    assert len(features) == 1 and set(features.arrays) == {"input_ids", "attention_mask"}
    own = tokenizer(example.question, example.context, max_length=192, padding="max_length")
    np.testing.assert_array_equal(features.arrays["input_ids"][0], own["input_ids"])
    np.testing.assert_array_equal(features.arrays["attention_mask"][0], own["attention_mask"])
    assert features.max_context[0].sum() == (features.offsets[0, :, 0] >= 0).sum() > 0  # one window owns everything


def test_an_answer_may_only_start_where_its_window_has_the_max_context(tokenizer):
    context = " ".join(["alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi"] * 3)
    example = QAExample("q", "Which?", context, (Answer("alpha", 0),), "en")
    features = featurize_qa([example], tokenizer, max_length=40, doc_stride=8, max_query_length=8, with_labels=False)
    assert len(features) >= 3
    a = 0
    in_a = np.nonzero(features.offsets[a, :, 0] >= 0)[0]
    # A token of window A two before its end: A sees only 2 tokens right of it, a later window B has more context.
    position = in_a[-3]
    char = features.offsets[a, position, 0]
    assert not features.max_context[a, position]
    [b] = [f for f in range(len(features)) if features.max_context[f][features.offsets[f, :, 0] == char].any()]
    position_b = int(np.nonzero(features.offsets[b, :, 0] == char)[0][0])
    assert b > a and features.max_context[b, position_b]

    start = np.full(features.arrays["input_ids"].shape, -10.0, np.float32)
    end = np.full_like(start, -10.0)
    start[a, position], end[a, position + 2] = 10.0, 10.0  # the best span overall (20), starting in A's short tail
    start[b, position_b], end[b, position_b + 1] = 4.0, 4.0  # a weaker one (8) from B, where the start is owned
    scored = score_answers([example], features, start, end)["q"]
    assert scored.span_score == pytest.approx(8.0)
    assert scored.text == context[features.offsets[b, position_b, 0] : features.offsets[b, position_b + 1, 1]].strip()
    # Without the rule A's span would win: the test tells the two apart.
    features.max_context[:] = features.offsets[..., 0] >= 0
    unruled = score_answers([example], features, start, end)["q"]
    assert unruled.span_score == pytest.approx(20.0) and unruled.text != scored.text


def test_strides_that_would_skip_context_tokens_are_refused(tokenizer):
    examples = squad_examples(2, 0, "dev")
    # 64 - 12 - 4 = 48 context tokens a window for the longest question: a step of 48 is fine, 49 would skip one.
    featurize_qa(examples, tokenizer, max_length=64, doc_stride=48, max_query_length=12)
    with pytest.raises(
        ValueError,
        match=r"max_length 64 leaves 48 context tokens after a 12-token question.*"
        r"fewer than doc_stride 49.*skips them silently.*Raise max_length, or lower "
        r"doc_stride or max_query_length",
    ):
        featurize_qa(examples, tokenizer, max_length=64, doc_stride=49, max_query_length=12)
    for max_length, doc_stride, max_query_length in ((16, 4, 12), (64, 0, 12), (64, 16, 0)):
        with pytest.raises(
            ValueError,
            match=rf"max_length {max_length} with max_query_length {max_query_length} and "
            rf"doc_stride {doc_stride} leaves no context window",
        ):
            featurize_qa(
                examples, tokenizer, max_length=max_length, doc_stride=doc_stride, max_query_length=max_query_length
            )
