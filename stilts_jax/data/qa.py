"""Extractive QA examples and the SQuAD JSON format (SQuAD v1.1 and v2.0, XQuAD, MLQA, TyDiQA-GoldP share it).

Every record is validated; a bad one is an error naming the file and the record, never silently dropped. Question ids
key the predictions and the scores, so an id repeated within an evaluation file is an error too (training files may
repeat them: XTREME's per-language TyDiQA-GoldP train files keep only the last field of each id, and training never
looks an example up by id).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable

from stilts_jax.core.errors import InputError
from stilts_jax.core.io_utils import read_text
from stilts_jax.core.paths import PathLike, data_path

log = logging.getLogger(__name__)

# TyDiQA-GoldP ids start with the language's English name.
TYDIQA_LANGUAGE_PREFIXES = {
    "arabic": "ar",
    "bengali": "bn",
    "english": "en",
    "finnish": "fi",
    "indonesian": "id",
    "korean": "ko",
    "russian": "ru",
    "swahili": "sw",
    "telugu": "te",
}


@dataclasses.dataclass(frozen=True)
class Answer:
    text: str
    start: int  # character offset into the context


@dataclasses.dataclass(frozen=True)
class QAExample:
    id: str
    question: str
    context: str
    answers: tuple[Answer, ...]  # empty for SQuAD v2.0 unanswerable questions
    language: str
    title: str = ""


class QADataError(InputError):
    pass


def tydiqa_language(example_id: str) -> str:
    prefix = example_id.split("-", 1)[0].lower()
    if prefix not in TYDIQA_LANGUAGE_PREFIXES:
        raise QADataError(
            f"TyDiQA id {example_id!r} does not start with a known language name "
            f"({', '.join(TYDIQA_LANGUAGE_PREFIXES)})"
        )
    return TYDIQA_LANGUAGE_PREFIXES[prefix]


class MisplacedAnswerError(QADataError):
    """An answer whose text is not in the context at its offset."""


def validate_example(example: QAExample, where: str, *, allow_unanswerable: bool = False) -> None:
    """Raise QADataError naming `where` (file and record) for an empty context or an answer off its offset
    (MisplacedAnswerError)."""
    if not example.context.strip():
        raise QADataError(f"{where}: question {example.id!r} has an empty context")
    if not example.question.strip():
        raise QADataError(f"{where}: question {example.id!r} is empty")
    if not example.answers and not allow_unanswerable:
        raise QADataError(f"{where}: question {example.id!r} has no answer (unanswerable questions need SQuAD v2.0)")
    for answer in example.answers:
        found = example.context[answer.start : answer.start + len(answer.text)]
        if answer.start < 0 or found != answer.text:
            raise MisplacedAnswerError(
                f"{where}: question {example.id!r}: answer {answer.text!r} at offset {answer.start} does not match "
                f"the context there ({found!r})"
            )


def check_impossible_flag(flag: object, answers: tuple[Answer, ...], example_id: str) -> None:
    """SQuAD v2.0 marks an unanswerable question with is_impossible=true and an empty answer list; both must agree.

    Raises ValueError (callers add the file and record) for a flag that is not a boolean, or a question marked
    impossible that still lists answers.
    """
    if flag not in (True, False):  # also accepts numpy booleans (TFDS) and 0/1
        raise ValueError(f"question {example_id!r}: is_impossible must be true or false, not {flag!r}")
    if flag and answers:
        raise ValueError(
            f"question {example_id!r} is marked is_impossible but has {len(answers)} answer(s); "
            "SQuAD v2.0 keeps the answers of unanswerable questions under plausible_answers"
        )


def examples_from_squad_dict(
    data: dict,
    source: str,
    *,
    language: str | None = None,
    allow_unanswerable: bool = False,
    unique_ids: bool = True,
    skip_misplaced_answers: bool = False,
) -> list[QAExample]:
    """Examples of a parsed SQuAD-format dict. `language=None` reads it from TyDiQA-style ids.

    `allow_unanswerable` accepts SQuAD v2.0 questions without answers (is_impossible, or an empty answer list);
    `unique_ids` (evaluation data) makes a repeated question id an error naming both questions;
    `skip_misplaced_answers` (training data) leaves out, with one warning, questions whose answer is not in the
    context at its offset, as run_squad leaves out training examples whose answer it cannot find (XTREME's
    third_party/processors/squad.py, squad_convert_example_to_features) instead of refusing the file; machine-translated
    training sets hold such questions. run_squad's test is looser (the answer's words within the words its offset
    points to, so a slightly shifted offset passes); this one is exact, so it may leave out a few more.
    """
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise QADataError(f"{source}: not SQuAD format (expected an object with a 'data' list)")
    examples = []
    misplaced: list[str] = []
    first_seen: dict[str, str] = {}
    for a, article in enumerate(data["data"]):
        for p, paragraph in enumerate(_records(article, "paragraphs", f"{source}: data[{a}]")):
            for q, qa in enumerate(_records(paragraph, "qas", f"{source}: data[{a}].paragraphs[{p}]")):
                where = f"{source}: data[{a}].paragraphs[{p}].qas[{q}]"
                try:
                    context = paragraph["context"]
                    answers = tuple(Answer(x["text"], int(x["answer_start"])) for x in qa["answers"])
                    check_impossible_flag(qa.get("is_impossible", False), answers, str(qa["id"]))
                    example = QAExample(
                        id=str(qa["id"]),
                        question=qa["question"],
                        context=context,
                        answers=answers,
                        language=language or tydiqa_language(str(qa["id"])),
                        title=article.get("title", ""),
                    )
                except QADataError as e:
                    raise QADataError(f"{where}: {e}") from e
                except (KeyError, TypeError, ValueError) as e:
                    raise QADataError(f"{where}: malformed record ({type(e).__name__}: {e})") from e
                try:
                    validate_example(example, where, allow_unanswerable=allow_unanswerable)
                except MisplacedAnswerError:
                    if not skip_misplaced_answers:
                        raise
                    misplaced.append(example.id)
                    continue
                if unique_ids:
                    check_unique_id(example.id, source, f"data[{a}].paragraphs[{p}].qas[{q}]", first_seen)
                examples.append(example)
    warn_misplaced_left_out(source, misplaced)
    return examples


def warn_misplaced_left_out(source: str, ids: list[str]) -> None:
    """One warning naming the training questions left out because their answer is not at its offset."""
    if ids:
        shown = ", ".join(ids[:5]) + (f" (+{len(ids) - 5} more)" if len(ids) > 5 else "")
        log.warning(
            "%s: left out %d training question(s) whose answer is not in the context at its offset: %s",
            source,
            len(ids),
            shown,
        )


def _records(parent: object, key: str, where: str) -> list:
    """parent[key], a list: SQuAD articles hold `paragraphs`, paragraphs `qas` (a missing list would drop its
    questions unnoticed)."""
    if not isinstance(parent, dict) or not isinstance(parent.get(key), list):
        found = type(parent.get(key)).__name__ if isinstance(parent, dict) and key in parent else "nothing"
        raise QADataError(f"{where}: expected an object with a {key!r} list, found {found} there; not SQuAD format")
    return parent[key]


def check_unique_id(example_id: str, source: str, place: str, first_seen: dict[str, str]) -> None:
    """Record `example_id` as seen at `place` of `source` (a file, a hub split); a second question with the same id is
    a QADataError naming both places (predictions are keyed by id: one of the two would silently go unscored)."""
    if example_id in first_seen:
        raise QADataError(
            f"{source}: {place}: question id {example_id!r} is already used by {first_seen[example_id]}; "
            "predictions and scores are keyed by question id, so every question needs its own"
        )
    first_seen[example_id] = place


def read_squad_json(
    path: PathLike,
    *,
    language: str | None = None,
    allow_unanswerable: bool = False,
    unique_ids: bool = True,
    skip_misplaced_answers: bool = False,
) -> list[QAExample]:
    path = data_path(path)
    if not path.is_file():
        raise QADataError(f"{path} does not exist")
    try:
        data = json.loads(read_text(path, QADataError))
    except json.JSONDecodeError as e:
        raise QADataError(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from e
    return examples_from_squad_dict(
        data,
        str(path),
        language=language,
        allow_unanswerable=allow_unanswerable,
        unique_ids=unique_ids,
        skip_misplaced_answers=skip_misplaced_answers,
    )


def to_squad_dict(examples: Iterable[QAExample], version: str = "1.1") -> dict:
    """SQuAD JSON for examples (one paragraph per example), e.g. to write fixtures or label files."""
    data = []
    for ex in examples:
        qa = {
            "id": ex.id,
            "question": ex.question,
            "answers": [{"text": a.text, "answer_start": a.start} for a in ex.answers],
        }
        if not ex.answers:
            qa["is_impossible"] = True
        data.append({"title": ex.title, "paragraphs": [{"context": ex.context, "qas": [qa]}]})
    return {"version": version, "data": data}
