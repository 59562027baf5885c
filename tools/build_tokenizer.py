"""Rebuild the shipped tokenizer: a sentencepiece unigram model in XLM-R's format.

    python tools/build_tokenizer.py [--vocab-size N] [--output stilts_jax/assets/tokenizer]

Trained on every `stilts_jax/assets/text/*.txt` file (17 languages; Latin, Cyrillic, Arabic, Devanagari, Bengali,
Telugu, CJK, Hangul and Thai scripts). Like XLM-R's, the sentencepiece model has <unk>=0, <s>=1, </s>=2 and no
padding piece; transformers' XLMRobertaTokenizer shifts it by one (fairseq's <s>=0 <pad>=1 </s>=2 <unk>=3) and
appends <mask>. The folder gets sentencepiece.bpe.model plus the tokenizer.json / tokenizer_config.json that
`AutoTokenizer.from_pretrained` reads.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

import sentencepiece as spm
from transformers import XLMRobertaTokenizer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stilts_jax.core.io_utils import atomic_directory  # noqa: E402
from stilts_jax.core.tokenization import DEMO_TOKENIZER_DIR, SHIPPED_TEXT_DIR  # noqa: E402


def training_lines(text_dir: Path) -> list[str]:
    files = sorted(text_dir.glob("*.txt"))
    if not files:
        raise SystemExit(f"no .txt files in {text_dir}")
    return [line for f in files for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]


def train_sentencepiece(lines: list[str], vocab_size: int) -> bytes:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type="unigram",
        vocab_size=vocab_size,
        hard_vocab_limit=False,  # a small corpus may support fewer pieces; take what it supports
        character_coverage=1.0,  # keep every CJK, Thai and Hangul character seen: no <unk> on shipped text
        normalization_rule_name="nmt_nfkc",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,  # deterministic
        seed_sentencepiece_size=100000,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    return model.getvalue()


def build(output: Path, vocab_size: int, text_dir: Path = SHIPPED_TEXT_DIR) -> Path:
    model_bytes = train_sentencepiece(training_lines(text_dir), vocab_size)
    with tempfile.TemporaryDirectory() as raw, atomic_directory(output) as tmp:
        (Path(raw) / "sentencepiece.bpe.model").write_bytes(model_bytes)
        tokenizer = XLMRobertaTokenizer.from_pretrained(raw, model_max_length=512)
        tokenizer.save_pretrained(tmp)
        (tmp / "sentencepiece.bpe.model").write_bytes(model_bytes)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab-size", type=int, default=4000)
    parser.add_argument("--output", type=Path, default=DEMO_TOKENIZER_DIR)
    parser.add_argument("--text-dir", type=Path, default=SHIPPED_TEXT_DIR)
    args = parser.parse_args(argv)
    build(args.output, args.vocab_size, args.text_dir)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(args.output))
    print(f"wrote {args.output}: {len(tokenizer)} tokens ({type(tokenizer).__name__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
