"""The offline demo's QA data, built from the shipped parallel sentences (`python tools/make_demo_data.py`).

Each context is a few sentences of one language; a year is inserted at a random place in one of them, and the
question is that sentence with the year blanked out. The answer is the year. A tiny model trained from scratch on
English can learn to find it, and since digits are written the same way in every demo language, the skill
transfers zero-shot, which is what the demo must show. The files are SQuAD v1.1 JSON and
TyDiQA-GoldP JSON (ids `{language name}-...`), the real formats.
"""

from __future__ import annotations

import random
import re
import unicodedata
from pathlib import Path

from stilts_jax.core.tokenization import SHIPPED_TEXT_DIR
from stilts_jax.data.qa import TYDIQA_LANGUAGE_PREFIXES, Answer, QAExample, validate_example

TYDIQA_LANGUAGES = ("ar", "bn", "en", "fi", "id", "ko", "ru", "sw", "te")
_LANGUAGE_NAMES = {code: name for name, code in TYDIQA_LANGUAGE_PREFIXES.items()}
_NUMBER = re.compile(r"\d(?:[\d.,]*\d)?")
_BLANK = "___"


def _ascii_digits(text: str) -> str:
    return "".join(str(unicodedata.digit(c)) if c.isdigit() else c for c in text)


def _lines(language: str) -> list[str]:
    return (SHIPPED_TEXT_DIR / f"parallel.{language}.txt").read_text(encoding="utf-8").splitlines()


def _number_free_sentences(language: str) -> list[str]:
    return [line for line in (_ascii_digits(x) for x in _lines(language)) if not _NUMBER.search(line)]


def make_examples(
    language: str, count: int, seed: int, *, id_prefix: str, distractors: tuple[int, int] = (1, 3)
) -> list[QAExample]:
    """Contexts of number-free sentences, one of which gets a year inserted between two of its words.

    The year's position is random, so no word order or template gives it away: only its digits do, and digits
    look the same in every demo language.
    """
    rng = random.Random(f"{seed}-{language}-{id_prefix}")
    sentences = _number_free_sentences(language)
    examples = []
    for i in range(count):
        chosen = rng.sample(sentences, rng.randint(distractors[0], distractors[1]) + 1)
        words = chosen[0].split(" ")
        cut = rng.randint(1, max(1, len(words) - 1))
        number = str(rng.randint(1000, 2099))  # a year: four digit tokens in every script
        prefix = " ".join(words[:cut]) + " "
        fact = prefix + number + " " + " ".join(words[cut:])
        question = prefix + _BLANK + " " + " ".join(words[cut:])
        others = chosen[1:]
        position = rng.randint(0, len(others))
        before = " ".join(others[:position])
        after = " ".join(others[position:])
        context = " ".join(part for part in (before, fact, after) if part)
        start = (len(before) + 1 if before else 0) + len(prefix)
        example = QAExample(
            id=f"{id_prefix}-{i:05d}",
            question=question,
            context=context,
            answers=(Answer(number, start),),
            language=language,
            title=f"demo-{language}",
        )
        validate_example(example, "demo data generator")
        examples.append(example)
    return examples


def tydiqa_examples(language: str, count: int, seed: int, split: str) -> list[QAExample]:
    return make_examples(language, count, seed, id_prefix=f"{_LANGUAGE_NAMES[language]}-demo-{split}")


def squad_examples(count: int, seed: int, split: str) -> list[QAExample]:
    # SQuAD's flavour of the task: more distractor sentences around the fact.
    return make_examples("en", count, seed, id_prefix=f"squad-demo-{split}", distractors=(2, 4))


def write_all(root: Path, layout: dict[str, str]) -> list[Path]:
    """Write the demo files under `root` at the XTREME download paths given by `layout` (name -> relative path)."""
    import json

    from stilts_jax.data.qa import to_squad_dict

    files = {
        "squad_train": squad_examples(600, 1, "train"),
        "squad_dev": squad_examples(60, 2, "dev"),
        "tydiqa_train": [
            ex for lang in TYDIQA_LANGUAGES for ex in tydiqa_examples(lang, 300 if lang == "en" else 30, 3, "train")
        ],
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
