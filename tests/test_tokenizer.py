"""The shipped sentencepiece tokenizer: XLM-R's format, every shipped script covered, rebuildable."""

from __future__ import annotations

import sys

import pytest

from stilts_jax.core.errors import StiltsError
from stilts_jax.core.tokenization import DEMO_TOKENIZER_DIR, SHIPPED_TEXT_DIR, load_demo_tokenizer, load_tokenizer

LANGUAGES = ["ar", "bn", "de", "en", "es", "fi", "fr", "hi", "id", "ja", "ko", "ru", "sw", "te", "th", "tr", "zh"]


def test_special_tokens_follow_xlm_r():
    tokenizer = load_demo_tokenizer()
    assert type(tokenizer).__name__.startswith("XLMRoberta")
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (
        0,
        1,
        2,
        3,
    )
    assert tokenizer.mask_token_id == len(tokenizer) - 1
    ids = tokenizer("Hello world")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2 and len(ids) > 2


def test_shipped_text_covers_many_scripts():
    files = sorted(p.name for p in SHIPPED_TEXT_DIR.glob("parallel.*.txt"))
    assert files == [f"parallel.{lang}.txt" for lang in LANGUAGES]
    sizes = {len((SHIPPED_TEXT_DIR / f).read_text(encoding="utf-8").splitlines()) for f in files}
    assert sizes == {80}
    scripts = {"Cyrillic": "ru", "Arabic": "ar", "Devanagari": "hi", "CJK": "zh", "Thai": "th", "Hangul": "ko"}
    ranges = {
        "Cyrillic": (0x400, 0x4FF),
        "Arabic": (0x600, 0x6FF),
        "Devanagari": (0x900, 0x97F),
        "CJK": (0x4E00, 0x9FFF),
        "Thai": (0xE00, 0xE7F),
        "Hangul": (0xAC00, 0xD7AF),
    }
    for script, lang in scripts.items():
        text = (SHIPPED_TEXT_DIR / f"parallel.{lang}.txt").read_text(encoding="utf-8")
        low, high = ranges[script]
        assert sum(low <= ord(c) <= high for c in text) > 500, script


@pytest.mark.parametrize("lang", LANGUAGES)
def test_no_unknown_pieces_on_shipped_text(lang):
    tokenizer = load_demo_tokenizer()
    lines = (SHIPPED_TEXT_DIR / f"parallel.{lang}.txt").read_text(encoding="utf-8").splitlines()
    ids = [i for line in lines for i in tokenizer(line, add_special_tokens=False)["input_ids"]]
    assert tokenizer.unk_token_id not in ids
    # Subwords, not characters: the tokenizer learned pieces longer than one character.
    assert len(ids) < sum(len(line) for line in lines)


def test_rebuild_script_reproduces_the_shipped_tokenizer(tmp_path):
    sys.path.insert(0, str(DEMO_TOKENIZER_DIR.parents[2] / "tools"))
    import build_tokenizer

    build_tokenizer.main(["--output", str(tmp_path / "tok")])
    rebuilt, shipped = load_tokenizer(tmp_path / "tok"), load_demo_tokenizer()
    assert len(rebuilt) == len(shipped)
    for lang in LANGUAGES:
        text = (SHIPPED_TEXT_DIR / f"parallel.{lang}.txt").read_text(encoding="utf-8").splitlines()[:10]
        assert rebuilt(text)["input_ids"] == shipped(text)["input_ids"], lang


def test_unloadable_tokenizer_names_the_fix(tmp_path):
    with pytest.raises(
        StiltsError, match="could not load a tokenizer from .*tokenizer.json or sentencepiece.bpe.model"
    ):
        load_tokenizer(tmp_path)
