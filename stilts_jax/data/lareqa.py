"""LAReQA (XQuAD-R) evaluation data and its English training data (SQuAD v1.1 as question -> answer sentence).

What this follows (read in google-research/xtreme and google-research-datasets/lareqa; Roy et al. 2020, "LAReQA:
Language-agnostic answer retrieval from a multilingual pool", arXiv 2004.05484; Ruder et al. 2021, XTREME-R):

- Files: xtreme `scripts/download_lareqa_data.sh` unpacks the lareqa repository into `download/lareqa/`, giving
  `lareqa/xquad-r/{lang}.json` for ar de el en es hi ru th tr vi zh. Each file is SQuAD JSON whose paragraphs also
  carry `sentence_breaks`: [start, end) character offsets of the paragraph's sentences. Every question has exactly
  one answer. No other source is supported: the hub's `xquad_r` builder drops `sentence_breaks` (and strips the
  context, shifting offsets), and TFDS has no XQuAD-R builder of its own.
- Pool (xtreme third_party/utils_lareqa.py load_data/generate_examples): within one language file paragraphs are
  numbered from 1 in file order, `context_id = "{lang}_{n}"`; every sentence of every paragraph is a candidate
  `"{context_id}_{position}"` (position from 0 in `sentence_breaks` order), encoded with its paragraph as context;
  candidates of all 11 languages form one pool. A question's answer sentence is the sentence whose break holds
  `answer_start` (a question whose answer start is in no sentence is skipped, as there). Questions are 11-way
  parallel and share the SQuAD id (`xling_id`) across languages; a question's relevant candidates are the answer
  sentences of the questions with its id in every language (so 11 for XQuAD-R). Question keys in the prediction
  files are the SQuAD ids (unique within one language's file).
- English training data (xtreme third_party/processors/lareqa.py RetrievalSquadProcessor, scripts/train_lareqa.sh):
  SQuAD v1.1 train, the first answer of each question, its enclosing sentence found by a sentence breaker
  (xtreme's sb_sed.py, a sed-style rule set tuned on SQuAD), the pair (question, (answer sentence, paragraph)).
  `sentence_spans` below is this project's own, simpler breaker (split after . ? ! and closing quotes/brackets
  before an upper-case letter, digit or opening quote, except after common abbreviations and initials); it
  agrees with sb_sed on ordinary prose but not on all of its SQuAD-specific exceptions.
- Model selection: xtreme's run_retrieval_qa.py keeps the checkpoint by in-batch loss on SQuAD dev; this project
  selects by mAP@20 of SQuAD dev questions against all sentences of the dev paragraphs (`squad_dev_pool`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence

from etils import epath

from stilts_jax.core.io_utils import read_text
from stilts_jax.core.paths import PathLike, data_path
from stilts_jax.data.qa import QAExample
from stilts_jax.data.ranked_retrieval import DualPair, Query, RankedRetrievalDataError, RetrievalPool

LAREQA_LANGUAGES = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")
LAREQA_HINT = (
    "run `bash scripts/download_lareqa_data.sh` in a checkout of https://github.com/google-research/xtreme "
    "(it writes download/lareqa/xquad-r/{lang}.json) or download xquad-r/ from "
    "https://github.com/google-research-datasets/lareqa, and pass the folder as the source path"
)

_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr rev gen col lt sgt capt gov sen rep vs etc e.g i.e cf al approx "
    "no vol fig jan feb mar apr jun jul aug sep sept oct nov dec u.s".split()
)
_BREAK = re.compile(r"[.!?]+[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) offsets of the sentences of an English paragraph, whitespace between them excluded."""
    spans, start = [], 0
    for match in _BREAK.finditer(text):
        words = text[start : match.start() + 1].split()
        last_word = words[-1].rstrip(".").lower() if words else ""
        if last_word in _ABBREVIATIONS or re.fullmatch(r"[a-z]", last_word):  # "Dr. Smith", "J. Smith"
            continue
        end = match.start() + len(match.group(0).rstrip())
        spans.append((start, end))
        start = match.end()
    spans.append((start, len(text.rstrip())))
    return [(s, e) for s, e in spans if text[s:e].strip()]


def _sentence_of(spans: Sequence[tuple[int, int]], offset: int) -> int | None:
    for index, (start, end) in enumerate(spans):
        if start <= offset < end:
            return index
    return None


def squad_training_pairs(examples: Iterable[QAExample]) -> list[DualPair]:
    """(question, answer sentence with its paragraph) pairs of SQuAD examples; first answer only (as xtreme)."""
    pairs, breaks = [], {}
    for example in examples:
        if not example.answers:
            continue
        spans = breaks.setdefault(example.context, sentence_spans(example.context))
        position = _sentence_of(spans, example.answers[0].start)
        if position is None:  # the answer starts between sentences
            continue
        start, end = spans[position]
        pairs.append(
            DualPair(
                example.question,
                example.context[start:end],
                example.context,
                f"{_paragraph_key(example.context)}_{position}",
            )
        )
    return pairs


def _paragraph_key(context: str) -> str:
    return hashlib.sha1(context.encode("utf-8")).hexdigest()[:16]


def squad_dev_pool(examples: Sequence[QAExample], source: str = "SQuAD dev") -> RetrievalPool:
    """English dev questions against every sentence of the dev paragraphs (model selection by mAP@20)."""
    ids, texts, contexts, queries = [], [], [], []
    breaks: dict[str, list[tuple[int, int]]] = {}
    for example in examples:
        key = _paragraph_key(example.context)
        if key not in breaks:
            breaks[key] = sentence_spans(example.context)
            for position, (start, end) in enumerate(breaks[key]):
                ids.append(f"{key}_{position}")
                texts.append(example.context[start:end])
                contexts.append(example.context)
        if example.answers:
            position = _sentence_of(breaks[key], example.answers[0].start)
            if position is not None:
                queries.append(Query(example.id, example.question, frozenset({f"{key}_{position}"})))
    if not queries:
        raise RankedRetrievalDataError(f"{source}: no question whose answer lies inside a sentence")
    return RetrievalPool({"en": tuple(queries)}, tuple(ids), tuple(texts), tuple(contexts), source)


# --- XQuAD-R -------------------------------------------------------------------------------------------------------


def xquad_r_path(root: PathLike, language: str) -> epath.Path:
    """`{root}/lareqa/xquad-r/{lang}.json`, `{root}/xquad-r/{lang}.json` or `{root}/{lang}.json`, the first present."""
    root = data_path(root)
    candidates = [
        root / "lareqa" / "xquad-r" / f"{language}.json",
        root / "xquad-r" / f"{language}.json",
        root / f"{language}.json",
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise RankedRetrievalDataError(
        f"XQuAD-R {language} not found: none of {', '.join(map(str, candidates))} exists; {LAREQA_HINT}"
    )


def _load_json(path: epath.Path) -> object:
    try:
        return json.loads(read_text(path, RankedRetrievalDataError))
    except json.JSONDecodeError as e:
        raise RankedRetrievalDataError(f"{path}:{e.lineno}:{e.colno}: invalid JSON ({e.msg})") from e


def read_xquad_r(path: PathLike, language: str) -> tuple[list[Query], list[tuple[str, str, str]], dict[str, str]]:
    """One language file: its questions (relevant ids not yet filled), its candidates (id, sentence, paragraph)
    and, per question id (xling_id), the candidate id of its answer sentence."""
    path = data_path(path)
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise RankedRetrievalDataError(f"{path}: not XQuAD-R (expected SQuAD JSON: an object with a 'data' list)")
    questions, candidates, answer_of = [], [], {}
    first_seen: dict[str, str] = {}
    paragraph_number = 0
    for a, article in enumerate(data["data"]):
        for p, paragraph in enumerate(article.get("paragraphs", []) if isinstance(article, dict) else []):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            paragraph_number += 1
            context_id = f"{language}_{paragraph_number}"
            try:
                context = paragraph["context"]
                breaks = [(int(s), int(e)) for s, e in paragraph["sentence_breaks"]]
                qas = paragraph["qas"]
            except (KeyError, TypeError, ValueError) as e:
                raise RankedRetrievalDataError(
                    f"{where}: needs 'context', 'qas' and 'sentence_breaks' ([start, end] pairs); "
                    f"this is not an XQuAD-R file ({type(e).__name__}: {e}). {LAREQA_HINT}"
                ) from e
            for start, end in breaks:
                if not 0 <= start < end <= len(context):
                    raise RankedRetrievalDataError(
                        f"{where}: sentence break [{start}, {end}] lies outside the "
                        f"context of {len(context)} characters"
                    )
            for position, (start, end) in enumerate(breaks):
                candidates.append((f"{context_id}_{position}", context[start:end], context))
            for q, qa in enumerate(qas):
                at = f"{where}.qas[{q}]"
                try:
                    qid, question, answers = str(qa["id"]), str(qa["question"]), qa["answers"]
                    answer_start = int(answers[0]["answer_start"])
                except (KeyError, TypeError, ValueError, IndexError) as e:
                    raise RankedRetrievalDataError(
                        f"{at}: needs 'id', 'question' and one answer with 'answer_start' ({type(e).__name__}: {e})"
                    ) from e
                if len(answers) != 1:
                    raise RankedRetrievalDataError(f"{at}: {len(answers)} answers; XQuAD-R questions have exactly one")
                if qid in first_seen:
                    raise RankedRetrievalDataError(
                        f"{at}: question id {qid!r} is already used by {first_seen[qid]}; "
                        "predictions are keyed by question id, so each needs its own"
                    )
                first_seen[qid] = at.removeprefix(f"{path}: ")
                position = _sentence_of(breaks, answer_start)
                if position is None:  # as xtreme's generate_examples: skipped
                    continue
                answer_of[qid] = f"{context_id}_{position}"
                questions.append(Query(qid, question, frozenset()))
    if not questions:
        raise RankedRetrievalDataError(f"{path}: no questions")
    return questions, candidates, answer_of


def read_lareqa(
    root: PathLike, languages: Sequence[str] = LAREQA_LANGUAGES, pool_languages: Sequence[str] | None = None
) -> RetrievalPool:
    """The LAReQA pool: candidates of every language of `pool_languages` (default: `languages`), the questions of
    `languages`, each relevant to the answer sentences of its id in all pool languages."""
    pool_languages = list(pool_languages or languages)
    for lang in languages:
        if lang not in pool_languages:
            raise RankedRetrievalDataError(f"query language {lang} is not among the pool languages {pool_languages}")
    questions, ids, texts, contexts = {}, [], [], []
    answers_by_xling: dict[str, set[str]] = {}
    for lang in pool_languages:
        lang_questions, lang_candidates, answer_of = read_xquad_r(xquad_r_path(root, lang), lang)
        questions[lang] = lang_questions
        for cid, sentence, context in lang_candidates:
            ids.append(cid)
            texts.append(sentence)
            contexts.append(context)
        for qid, cid in answer_of.items():
            answers_by_xling.setdefault(qid, set()).add(cid)
    queries = {
        lang: tuple(Query(q.id, q.text, frozenset(answers_by_xling[q.id])) for q in questions[lang])
        for lang in languages
    }
    return RetrievalPool(queries, tuple(ids), tuple(texts), tuple(contexts), f"XQuAD-R in {root}")
