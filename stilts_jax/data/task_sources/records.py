"""The record readers: one dict record of a dataset -> one example (`TaskDataset.reader` names the reader), and
rows of a hub split or TFDS dataset -> examples. Span QA rows (reader "squad": one question per row, as the hub and
TFDS keep SQuAD-format data) become data/qa.py's QAExample, validated as SQuAD JSON files are (file_formats.py)."""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from stilts_jax.data import qa
from stilts_jax.data.examples import ChoiceExample, PairExample, TaggedSentence
from stilts_jax.data.qa import Answer, QADataError, QAExample
from stilts_jax.data.task_sources.catalog import Example, TaskDataError, TaskDataset
from stilts_jax.data.task_sources.fields import _get, _label_index, _record_id, _seq, _tag_names, _text

# The multiple-choice readers build each example's prompt (first segment) and choices (each a whole second segment)
# the way the published code does: jiant (nyu-mll/jiant, jiant/tasks/lib/*.py), the paper's code, for the
# intermediate tasks; google-research/xtreme third_party/run_xcopa.py for the XCOPA target.

# COPA's `question` field names the relation. jiant's COPA (the intermediate task) asks
# jiant/tasks/lib/copa.py:41-44 (_QUESTION_DICT); XTREME-R's XCOPA asks f"{premise} What was the {question}?"
# (run_xcopa.py preprocess_function, L288-333).
COPA_QUESTIONS = {"cause": "What was the cause of this?", "effect": "What happened as a result?"}
XCOPA_QUESTIONS = {relation: f"What was the {relation}?" for relation in ("cause", "effect")}


def as_xcopa_example(example: ChoiceExample) -> ChoiceExample:
    """`example`, a COPA example, with XCOPA's (XTREME-R's) question in place of jiant's.

    load_examples reads part of XCOPA's English data as the `copa` dataset (train from hub and TFDS sources, and
    "en" of dev/test from any but plain files), whose reader asks jiant's question; the XCOPA task
    (tasks/families.py MultipleChoiceTask.load) rewords those. Examples in XCOPA's wording come back unchanged.
    """
    for relation, question in COPA_QUESTIONS.items():
        if example.prompt.endswith(" " + question):
            premise = example.prompt[: -len(question) - 1]
            return dataclasses.replace(example, prompt=f"{premise} {XCOPA_QUESTIONS[relation]}")
    if any(example.prompt.endswith(" " + question) for question in XCOPA_QUESTIONS.values()):
        return example
    raise ValueError(
        f"example {example.id!r} ({example.language}) is no COPA example: its prompt "
        f"{example.prompt!r} ends with neither COPA question"
    )


# Each reader turns one record into an example of `language` (None: the record names it, as TyDiQA ids do);
# `default_id` is the id of a record without one.
Reader = Callable[[TaskDataset, str, Mapping[str, Any], "str | None", str, str], Example]


def _read_pair(
    spec: TaskDataset, dataset: str, row: Mapping[str, Any], language: str, default_id: str, where: str
) -> PairExample:
    text_a = _text(_get(row, ("premise", "sentence1", "question1", "context"), where), "premise", where)
    text_b = _text(_get(row, ("hypothesis", "sentence2", "question2"), where), "hypothesis", where)
    raw = _get(row, ("label", "gold_label", "is_duplicate"), where, required=False)
    return PairExample(
        id=_record_id(row, ("id", "uid", "pairID", "idx"), default_id),
        text_a=text_a,
        text_b=text_b,
        label=_label_index(spec, dataset, raw, where),
        language=language,
    )


def _read_copa(
    spec: TaskDataset, dataset: str, row: Mapping[str, Any], language: str, default_id: str, where: str
) -> ChoiceExample:
    relation = _text(_get(row, ("question",), where), "question", where).strip()
    if relation not in COPA_QUESTIONS:
        raise TaskDataError(f"{where}: question {relation!r} is neither 'cause' nor 'effect'")
    premise = _text(_get(row, ("premise",), where), "premise", where)
    # jiant/tasks/lib/copa.py:59-65: prompt = premise + " " + question, choices = [choice1, choice2]. XCOPA:
    # run_xcopa.py L288-333: first = f"{premise} What was the {question}?", second = choice1 | choice2.
    questions = XCOPA_QUESTIONS if dataset == "xcopa" else COPA_QUESTIONS
    choices = tuple(_text(_get(row, (f"choice{i}",), where), f"choice{i}", where) for i in (1, 2))
    return ChoiceExample(
        id=_record_id(row, ("idx", "id"), default_id),
        prompt=f"{premise} {questions[relation]}",
        choices=choices,
        label=_label_index(spec, dataset, _get(row, ("label",), where, required=False), where),
        language=language,
    )


def _read_siqa(
    spec: TaskDataset, dataset: str, row: Mapping[str, Any], language: str, default_id: str, where: str
) -> ChoiceExample:
    raw = _get(row, ("correct", "label"), where, required=False)  # correct: A-C (XTREME's v1.4); label: 1-3
    if isinstance(raw, numbers.Integral) and not isinstance(raw, bool):
        raw = str(int(raw))
    context = _text(_get(row, ("context",), where), "context", where)
    question = _text(_get(row, ("question",), where), "question", where)
    # jiant/tasks/lib/socialiqa.py:68-69: prompt = context + " " + question, choices = answerA..C (as
    # run_xcopa.py L288-333 builds SIQA: f"{context} {question}", answerA|B|C).
    return ChoiceExample(
        id=_record_id(row, ("id",), default_id),
        prompt=f"{context} {question}",
        choices=tuple(_text(_get(row, (f"answer{c}",), where), f"answer{c}", where) for c in "ABC"),
        label=_label_index(spec, dataset, raw, where),
        language=language,
    )


def _read_csqa(
    spec: TaskDataset, dataset: str, row: Mapping[str, Any], language: str, default_id: str, where: str
) -> ChoiceExample:
    question = _get(row, ("question",), where)
    if isinstance(question, Mapping):  # the original release: {"stem", "choices": [{"label", "text"}]}
        choices_field, question = question.get("choices"), question.get("stem")
    else:
        choices_field = _get(row, ("choices",), where)
    question = _text(question, "question", where)
    if isinstance(choices_field, Mapping):  # hub parquet: a struct of lists
        keys = [_text(k, "choices.label", where) for k in _seq(choices_field.get("label", []), "choices.label", where)]
        texts = [_text(t, "choices.text", where) for t in _seq(choices_field.get("text", []), "choices.text", where)]
    else:
        items = _seq(choices_field, "choices", where)
        if items and isinstance(items[0], Mapping):
            keys = [_text(c.get("label"), "choices.label", where) for c in items]
            texts = [_text(c.get("text"), "choices.text", where) for c in items]
        else:  # TFDS cos_e: plain texts, the answer given as text
            texts = [_text(t, "choices", where) for t in items]
            keys = list(spec.labels[: len(texts)])
    if not texts or len(keys) != len(texts):
        raise TaskDataError(f"{where}: {len(texts)} choice texts but {len(keys)} choice labels")
    label = None
    if "answerKey" in row:
        answer = _text(row["answerKey"] or "", "answerKey", where).strip()
        if answer:
            if answer not in keys:
                raise TaskDataError(f"{where}: answerKey {answer!r} is none of the choices' labels {keys}")
            label = keys.index(answer)
    elif "answer" in row:
        answer = _text(row["answer"], "answer", where)
        if answer:
            if answer not in texts:
                raise TaskDataError(f"{where}: answer {answer!r} is none of the choices")
            label = texts.index(answer)
    # jiant/tasks/lib/commonsenseqa.py:83-89 (original release) and 95-98 (hub rows): prompt = the question stem,
    # choices = the choice texts; the question concept is not used.
    return ChoiceExample(
        id=_record_id(row, ("id",), default_id), prompt=question, choices=tuple(texts), label=label, language=language
    )


def _read_cosmos(
    spec: TaskDataset, dataset: str, row: Mapping[str, Any], language: str, default_id: str, where: str
) -> ChoiceExample:
    raw = _get(row, ("label",), where, required=False)
    if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
        raw = int(raw)  # the original CSV files
    context = _text(_get(row, ("context",), where), "context", where)
    question = _text(_get(row, ("question",), where), "question", where)
    # jiant/tasks/lib/cosmosqa.py:62-63: prompt = context + " " + question, choices = answer0..3.
    return ChoiceExample(
        id=_record_id(row, ("id",), default_id),
        prompt=f"{context} {question}",
        choices=tuple(_text(_get(row, (f"answer{i}",), where), f"answer{i}", where) for i in range(4)),
        label=_label_index(spec, dataset, raw, where),
        language=language,
    )


def _read_hellaswag(
    spec: TaskDataset, dataset: str, row: Mapping[str, Any], language: str, default_id: str, where: str
) -> ChoiceExample:
    endings = [_text(e, "endings", where) for e in _seq(_get(row, ("endings",), where), "endings", where)]
    if "ctx_a" in row:
        # Hub rows and the original files. jiant/tasks/lib/hellaswag.py:56-57: prompt = ctx_a, each choice =
        # ctx_b + " " + ending (ctx_b, the context's unfinished last phrase, is "" where it has none, as in most
        # WikiHow contexts: the choice then starts with a space, which XLM-R's tokenizer drops).
        prompt = _text(row["ctx_a"], "ctx_a", where)
        start = _text(row.get("ctx_b") or "", "ctx_b", where)
        choices = tuple(f"{start} {ending}" for ending in endings)
    else:
        # TFDS's hellaswag keeps only `context`, the file's `ctx` (= ctx_a + " " + ctx_b when ctx_b is not empty;
        # tensorflow_datasets/text/hellaswag.py _generate_examples), and drops ctx_a/ctx_b: the split cannot be
        # recovered, so ctx_b's words stay at the end of the prompt and each choice is the ending alone. Same text
        # as jiant's pair, with the segment boundary before ctx_b moved after it; read the hub or the original files
        # for jiant's exact inputs.
        prompt = _text(_get(row, ("ctx", "context"), where), "ctx", where)
        choices = tuple(endings)
    return ChoiceExample(
        id=_record_id(row, ("ind", "id"), default_id),
        prompt=prompt,
        choices=choices,
        label=_label_index(spec, dataset, _get(row, ("label",), where, required=False), where),
        language=language,
    )


# --- English reasoning datasets -----------------------------------------------------------------------------------
# jiant has PIQA (the construction below follows it); for WinoGrande, ReClor, LogiQA 2.0 and alphaNLI, whose published
# constructions jiant either lacks or cannot express as one (prompt, choice) pair, the readers follow the baseline code
# each dataset's authors published with it, cited in each reader.


def _class_name(raw: Any) -> Any:
    """An integer label that names a class ("1"/"2" of alphaNLI's hub rows, WinoGrande answers) as that name; a
    negative one (no label) stays as it is."""
    if isinstance(raw, numbers.Integral) and not isinstance(raw, bool) and int(raw) >= 0:
        return str(int(raw))
    return raw


def _read_piqa(
    spec: TaskDataset, dataset: str, row: Mapping[str, Any], language: str, default_id: str, where: str
) -> ChoiceExample:
    # Original release (physicaliqa-train-dev.zip: {train,dev}.jsonl with id, goal, sol1, sol2; labels 0/1 in
    # {train,dev}-labels.lst), hub ybisk/piqa (huggingface/datasets datasets/piqa/piqa.py: goal, sol1, sol2, label
    # ClassLabel 0/1, -1 in test) and TFDS piqa (tensorflow_datasets/datasets/piqa/piqa_dataset_builder.py: id, goal,
    # sol1, sol2, label). jiant/tasks/lib/piqa.py:64-76: prompt = goal, choices = [sol1, sol2].
    goal = _text(_get(row, ("goal",), where), "goal", where)
    choices = tuple(_text(_get(row, (f"sol{i}",), where), f"sol{i}", where) for i in (1, 2))
    return ChoiceExample(
        id=_record_id(row, ("id",), default_id),
        prompt=goal,
        choices=choices,
        label=_label_index(spec, dataset, _get(row, ("label",), where, required=False), where),
        language=language,
    )


def _read_winogrande(
    spec: TaskDataset, dataset: str, row: Mapping[str, Any], language: str, default_id: str, where: str
) -> ChoiceExample:
    # Original release (winogrande_1.1.zip: qID, sentence with one "_" blank, option1, option2, answer "1"/"2"; test
    # without answer), hub allenai/winogrande (huggingface/datasets datasets/winogrande/winogrande.py: answer "" in
    # test) and TFDS winogrande (tensorflow_datasets/text/winogrande.py: label = class index of ('1', '2'), -1 in test).
    # allenai/winogrande scripts/utils.py WinograndeProcessor._create_examples: segment 1 = the sentence up to the
    # blank, segment 2 = ("_ " + the rest, stripped) with the blank replaced by each option. (jiant's winogrande.py
    # puts the option in the first segment, which then differs per choice: no fixed prompt can express it.)
    sentence = _text(_get(row, ("sentence",), where), "sentence", where)
    options = [_text(_get(row, (f"option{i}",), where), f"option{i}", where) for i in (1, 2)]
    if "_" not in sentence:
        raise TaskDataError(f"{where}: sentence {sentence!r} has no blank '_' for the options")
    blank = sentence.index("_")
    rest = "_ " + sentence[blank + 1 :].strip()
    if "answer" in row:  # the option's number as text ("1"/"2"; "" where unlabelled)
        label = _label_index(spec, dataset, _class_name(row["answer"]), where)
    else:  # TFDS: a class index; the labels-lst file: the option's number
        label = _label_index(spec, dataset, _get(row, ("label",), where, required=False), where)
    return ChoiceExample(
        id=_record_id(row, ("qID", "id"), default_id),
        prompt=sentence[:blank],
        choices=tuple(rest.replace("_", option) for option in options),
        label=label,
        language=language,
    )


def _reading_comprehension_choices(question: str, options: Sequence[str]) -> tuple[str, ...]:
    """ReClor's and LogiQA 2.0's second segments: the question, then the option; a cloze question (one holding "_")
    with the option in the blank instead (yuweihao/reclor utils_multiple_choice.py and csitfun/LogiQA2.0
    logiqa/utils_mrc.py convert_examples_to_features: text_a = context, text_b as here)."""
    if "_" in question:
        return tuple(question.replace("_", option) for option in options)
    return tuple(f"{question} {option}" for option in options)


def _four_options(row: Mapping[str, Any], names: Sequence[str], where: str) -> list[str]:
    field = next((n for n in names if n in row), names[0])
    options = [_text(o, field, where) for o in _seq(_get(row, names, where), field, where)]
    if len(options) != 4:
        raise TaskDataError(f"{where}: {len(options)} {field}, but the dataset's questions have 4")
    return options


def _read_reclor(
    spec: TaskDataset, dataset: str, row: Mapping[str, Any], language: str, default_id: str, where: str
) -> ChoiceExample:
    # Original release (train.json / val.json / test.json: a JSON list of {context, question, answers[4], label 0-3,
    # id_string}; no label in test.json), as yuweihao/reclor utils_multiple_choice.py ReclorProcessor reads it; hub
    # tasksource/reclor holds those files (parquet columns of the same names; community-datasets/reclor's
    # datasets/reclor/reclor.py keeps them too, label as text). ReclorProcessor + convert_examples_to_features:
    # segment 1 = context, segment 2 = question + " " + answer.
    context = _text(_get(row, ("context",), where), "context", where)
    question = _text(_get(row, ("question",), where), "question", where)
    raw = _get(row, ("label",), where, required=False)
    return ChoiceExample(
        id=_record_id(row, ("id_string", "id"), default_id),
        prompt=context,
        choices=_reading_comprehension_choices(question, _four_options(row, ("answers",), where)),
        label=_label_index(spec, dataset, raw, where),
        language=language,
    )


def _read_logiqa2(
    spec: TaskDataset, dataset: str, row: Mapping[str, Any], language: str, default_id: str, where: str
) -> ChoiceExample:
    # csitfun/LogiQA2.0 logiqa/DATA/LOGIQA/{train,dev,test}.txt: JSON lines {id, answer 0-3, text, question,
    # options[4], type}; hub baber/logiqa2 config logiqa2 (its logiqa2.py reads those files: the same fields, texts
    # stripped, type as a string). logiqa/utils_mrc.py LogiProcessor + convert_examples_to_features (the LogiQA 2.0
    # baseline): segment 1 = text, segment 2 = question + " " + option.
    text = _text(_get(row, ("text",), where), "text", where)
    question = _text(_get(row, ("question",), where), "question", where)
    raw = _get(row, ("answer", "label"), where, required=False)
    return ChoiceExample(
        id=_record_id(row, ("id",), default_id),
        prompt=text,
        choices=_reading_comprehension_choices(question, _four_options(row, ("options",), where)),
        label=_label_index(spec, dataset, raw, where),
        language=language,
    )


def _read_art(
    spec: TaskDataset, dataset: str, row: Mapping[str, Any], language: str, default_id: str, where: str
) -> ChoiceExample:
    # Original release (alphanli-train-dev.zip: {train,dev}.jsonl with story_id, obs1, obs2, hyp1, hyp2; labels 1/2 in
    # {train,dev}-labels.lst) and hub allenai/art config anli (huggingface/datasets datasets/art/art.py: observation_1,
    # observation_2, hypothesis_1, hypothesis_2, label = 1/2 as a ClassLabel of 3 classes, 0 unused). jiant's
    # abductive_nli.py scores obs1 [SEP] hyp [SEP] obs2 (three segments); of the two-segment formats of the dataset
    # authors' baseline, allenai/abductive-commonsense-reasoning anli/data_processors.py AnliExample.to_b_me_format
    # keeps the story's order: segment 1 = obs1, segment 2 = hyp + " " + obs2.
    first = _text(_get(row, ("obs1", "observation_1"), where), "obs1", where)
    last = _text(_get(row, ("obs2", "observation_2"), where), "obs2", where)
    hypotheses = [_text(_get(row, (f"hyp{i}", f"hypothesis_{i}"), where), f"hyp{i}", where) for i in (1, 2)]
    raw = _class_name(_get(row, ("label",), where, required=False))
    return ChoiceExample(
        id=_record_id(row, ("story_id", "id"), default_id),
        prompt=first,
        choices=tuple(f"{hypothesis} {last}" for hypothesis in hypotheses),
        label=_label_index(spec, dataset, raw, where),
        language=language,
    )


def _read_tags(
    spec: TaskDataset, dataset: str, row: Mapping[str, Any], language: str, default_id: str, where: str
) -> TaggedSentence:
    tokens = tuple(_text(t, "tokens", where) for t in _seq(_get(row, ("tokens", "words"), where), "tokens", where))
    raw = _get(row, ("ner_tags", "pos_tags", "upos", "tags", "ner"), where, required=False)
    tags = None if raw is None else _tag_names(spec, dataset, _seq(raw, "tags", where), where)
    if tags is not None and len(tags) != len(tokens):
        raise TaskDataError(f"{where}: {len(tokens)} tokens but {len(tags)} tags")
    return TaggedSentence(id=_record_id(row, ("id",), default_id), tokens=tokens, tags=tags, language=language)


# --- span QA ---------------------------------------------------------------------------------------------------


def _blanked_hint(spec: TaskDataset) -> str:
    """Where labelled data is, for answers blanked the way XTREME's download blanks its evaluation files."""
    return (
        " XTREME's download script blanks the answers of its evaluation files (utils_preprocess.py "
        "remove_qa_test_annotations): use the original labelled files instead (source kind 'files'; "
        f"{spec.originals}) or the hf/tfds source"
    )


def _check_answer_texts(example: QAExample, where: str, hint: str = "") -> None:
    """qa.validate_example accepts an empty answer at any offset; XTREME's blanked files are exactly that."""
    if any(not answer.text.strip() for answer in example.answers):
        raise QADataError(f"{where}: question {example.id!r} has an empty answer text.{hint}")


def _read_squad(
    spec: TaskDataset, dataset: str, row: Mapping[str, Any], language: str | None, default_id: str, where: str
) -> QAExample:
    """One question of a hub/TFDS row (id, title, context, question, answers{text, answer_start}, and for SQuAD v2.0
    in TFDS is_impossible), validated: the answers at their offsets, none empty, and none missing unless the dataset
    has unanswerable questions. `language` None: the id names it (TyDiQA-GoldP). Errors are QADataError."""
    try:
        example_id = _text(_get(row, ("id",), where), "id", where)
        answers = _get(row, ("answers",), where)
        texts = [_text(t, "answers.text", where) for t in _seq(answers["text"], "answers.text", where)]
        starts = [int(s) for s in _seq(answers["answer_start"], "answers.answer_start", where)]
        if len(texts) != len(starts):
            raise ValueError(f"{len(texts)} answer texts but {len(starts)} answer starts")
        parsed = tuple(Answer(t, s) for t, s in zip(texts, starts, strict=True))
        qa.check_impossible_flag(row.get("is_impossible", False), parsed, example_id)
        title = row.get("title")
        language = language or spec.monolingual
        example = QAExample(
            id=example_id,
            question=_text(_get(row, ("question",), where), "question", where),
            context=_text(_get(row, ("context",), where), "context", where),
            answers=parsed,
            language=language if language is not None else qa.tydiqa_language(example_id),
            title="" if title is None else _text(title, "title", where),
        )
    except QADataError as e:
        raise QADataError(f"{where}: {e}") from e
    except TaskDataError as e:  # field access: the message names the record already
        raise QADataError(str(e)) from e
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as e:
        raise QADataError(f"{where}: malformed record ({type(e).__name__}: {e})") from e
    qa.validate_example(example, where, allow_unanswerable=spec.unanswerable)
    _check_answer_texts(example, where)
    return example


READERS: dict[str, Reader] = {
    "pair": _read_pair,
    "copa": _read_copa,
    "siqa": _read_siqa,
    "csqa": _read_csqa,
    "cosmos": _read_cosmos,
    "hellaswag": _read_hellaswag,
    "tags": _read_tags,
    "squad": _read_squad,
    "piqa": _read_piqa,
    "winogrande": _read_winogrande,
    "reclor": _read_reclor,
    "logiqa2": _read_logiqa2,
    "art": _read_art,
}


def _read_record(
    spec: TaskDataset, dataset: str, row: Mapping[str, Any], language: str | None, default_id: str, where: str
) -> Example:
    try:
        return READERS[spec.reader](spec, dataset, row, language, default_id, where)
    except TaskDataError:
        raise
    except (KeyError, TypeError, ValueError, UnicodeDecodeError, AttributeError) as e:
        raise TaskDataError(f"{where}: malformed record ({type(e).__name__}: {e})") from e


def _rows_to_examples(
    spec: TaskDataset,
    dataset: str,
    split: str,
    rows: Iterable[Mapping[str, Any]],
    language: str | None,
    wanted: Sequence[str] | None,
    where: str,
    unit: str,
    unnamed: str = "",
) -> list[Example]:
    """Examples of dict records of `language`, or else of the language each record names: a `language` column
    (google/xtreme's XNLI) or the id (`language_in_ids`, TyDiQA-GoldP). Those name languages outside `wanted` (None:
    any) are skipped. `unnamed` says what to fix when nothing names the language. Span QA ids key the predictions
    of evaluation splits: a repeated one there is an error. A training question whose answer is not at its offset
    is left out with one warning, as run_squad leaves such a training example out (qa.examples_from_squad_dict);
    in an evaluation split it is an error."""
    examples = []
    misplaced: list[str] = []
    first_seen: dict[str, str] = {}
    for index, row in enumerate(rows):
        lang = language
        if "language" in row and isinstance(row["language"], (str, bytes)):
            lang = _text(row["language"], "language", where)
            if wanted is not None and lang not in wanted:
                continue
        if lang is None and not spec.language_in_ids:
            raise TaskDataError(
                f"{where}: "
                + (
                    unnamed
                    or f"{dataset} has several languages but its records carry "
                    "none; name one language's data (an hf config or a TFDS name holding "
                    "{lang})"
                )
            )
        try:
            example = _read_record(spec, dataset, row, lang, f"{split}-{lang}-{index}", f"{where} {unit} {index}")
        except qa.MisplacedAnswerError:
            if split != "train":
                raise
            misplaced.append(str(row.get("id", f"{unit} {index}")))
            continue
        if lang is None and wanted is not None and example.language not in wanted:
            continue
        if isinstance(example, QAExample) and split != "train":
            qa.check_unique_id(example.id, where, f"{unit} {index}", first_seen)
        examples.append(example)
    qa.warn_misplaced_left_out(where, misplaced)
    return examples
