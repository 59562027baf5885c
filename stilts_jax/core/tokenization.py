"""Tokenizers: Hugging Face's AutoTokenizer for real models, and the small shipped one for offline work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stilts_jax.core.errors import StiltsError

# A sentencepiece unigram tokenizer in XLM-R's format, trained on the shipped multilingual text
# (rebuild with `python tools/build_tokenizer.py`).
DEMO_TOKENIZER_DIR = Path(__file__).parent.parent / "assets" / "tokenizer"
SHIPPED_TEXT_DIR = Path(__file__).parent.parent / "assets" / "text"


def load_tokenizer(name_or_path: str | Path) -> Any:
    """`AutoTokenizer.from_pretrained` with an error that says what to pass instead."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(name_or_path))
    except Exception as e:
        reason = " ".join(str(e).split())
        raise StiltsError(
            f"could not load a tokenizer from {name_or_path!s} ({type(e).__name__}: {reason}). Pass a hub id or a "
            f"folder with tokenizer.json or sentencepiece.bpe.model (the shipped one is {DEMO_TOKENIZER_DIR})."
        ) from e


def load_demo_tokenizer() -> Any:
    return load_tokenizer(DEMO_TOKENIZER_DIR)
