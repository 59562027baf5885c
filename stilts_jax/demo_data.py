"""The offline demo's QA data, built from the shipped parallel sentences (`python tools/make_demo_data.py`).

Each context is a few sentences of one language; exactly one of them states a number, and the question is that
sentence with the number blanked out. The answer is the number. A tiny model trained from scratch on English
can learn to find it, and since digits are written the same way in every demo language (Bengali digits are
converted), the skill transfers zero-shot, which is what the demo must show. The files are SQuAD v1.1 JSON and
TyDiQA-GoldP JSON (ids `{language name}-...`), the real formats.
"""

from __future__ import annotations

import random
import re
import unicodedata
from pathlib import Path

from stilts_jax.data.qa import TYDIQA_LANGUAGE_PREFIXES, Answer, QAExample, validate_example
from stilts_jax.tokenization import SHIPPED_TEXT_DIR

TYDIQA_LANGUAGES = ("ar", "bn", "en", "fi", "id", "ko", "ru", "sw", "te")
_LANGUAGE_NAMES = {code: name for name, code in TYDIQA_LANGUAGE_PREFIXES.items()}
_NUMBER = re.compile(r"\d(?:[\d.,]*\d)?")
_BLANK = "___"


def _ascii_digits(text: str) -> str:
    return "".join(str(unicodedata.digit(c)) if c.isdigit() else c for c in text)


def _lines(language: str) -> list[str]:
    return (SHIPPED_TEXT_DIR / f"parallel.{language}.txt").read_text(encoding="utf-8").splitlines()


def _templates(language: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(prefix, suffix) around the number of each English number sentence, and the number-free sentences."""
    english, lines = _lines("en"), [_ascii_digits(line) for line in _lines(language)]
    templates, plain = [], []
    for en_line, line in zip(english, lines):
        en_numbers = _NUMBER.findall(en_line)
        if not en_numbers:
            if not _NUMBER.search(line):
                plain.append(line)
            continue
        wanted = re.sub(r"\D", "", en_numbers[0])
        for match in _NUMBER.finditer(line):
            if re.sub(r"\D", "", match.group()) == wanted:
                templates.append((line[: match.start()], line[match.end() :]))
                break
    return templates, plain


def make_examples(language: str, count: int, seed: int, *, id_prefix: str, distractors: tuple[int, int] = (2, 4)) -> list[QAExample]:
    rng = random.Random(f"{seed}-{language}-{id_prefix}")
    templates, plain = _templates(language)
    joiner = "" if language in ("zh", "ja", "th") else " "
    examples = []
    for i in range(count):
        prefix, suffix = rng.choice(templates)
        number = str(rng.randint(10, 9999))
        fact = prefix + number + suffix
        sentences = rng.sample(plain, rng.randint(*distractors))
        position = rng.randint(0, len(sentences))
        before = joiner.join(sentences[:position])
        context = before + (joiner if before else "") + fact + (joiner if position < len(sentences) else "") + joiner.join(sentences[position:])
        start = len(before) + (len(joiner) if before else 0) + len(prefix)
        example = QAExample(
            id=f"{id_prefix}-{i:05d}", question=(prefix + _BLANK + suffix).strip(), context=context,
            answers=(Answer(number, start),), language=language, title=f"demo-{language}",
        )
        validate_example(example, "demo data generator")
        examples.append(example)
    return examples


def tydiqa_examples(language: str, count: int, seed: int, split: str) -> list[QAExample]:
    return make_examples(language, count, seed, id_prefix=f"{_LANGUAGE_NAMES[language]}-demo-{split}")


def squad_examples(count: int, seed: int, split: str) -> list[QAExample]:
    # SQuAD's flavour of the task: more distractor sentences around the fact.
    return make_examples("en", count, seed, id_prefix=f"squad-demo-{split}", distractors=(3, 5))


def write_all(root: Path, layout: dict[str, str]) -> list[Path]:
    """Write the demo files under `root` at the XTREME download paths given by `layout` (name -> relative path)."""
    import json

    from stilts_jax.data.qa import to_squad_dict

    files = {
        "squad_train": squad_examples(600, 1, "train"),
        "squad_dev": squad_examples(60, 2, "dev"),
        "tydiqa_train": [ex for lang in TYDIQA_LANGUAGES for ex in tydiqa_examples(lang, 300 if lang == "en" else 30, 3, "train")],
    }
    for lang in TYDIQA_LANGUAGES:
        files[f"tydiqa_dev_{lang}"] = tydiqa_examples(lang, 40, 4, "dev")
    written = []
    for name, examples in files.items():
        path = root / layout[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(to_squad_dict(examples), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        written.append(path)
    return written
