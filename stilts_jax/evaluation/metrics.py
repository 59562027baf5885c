"""Sequence-labelling F1 (seqeval), MLQA and SQuAD v2.0 EM/F1, accuracy and ranked-retrieval mAP@k, in percent.

One implementation each, pure Python. SQuAD v1.1 (XQuAD, TyDiQA-GoldP) lives in squad_metric.py and BUCC, Tatoeba
and the per-query AP@k in retrieval_metrics.py; this module reuses them rather than repeating them.

Sources read for each definition:
- seqeval_f1: seqeval 0.0.12 `seqeval/metrics/sequence_labeling.py` (get_entities, end_of_chunk, start_of_chunk,
  f1/precision/recall_score) and seqeval 1.2.2 (same file plus metrics/v1.py, default mode), called by
  google-research/xtreme evaluate.py `f1()` for both PAN-X and UD-POS.
- mlqa_*: facebookresearch/MLQA mlqa_evaluation_v1.py, which xtreme's install_tools.sh downloads as
  third_party/evaluate_mlqa.py.
- squad_v2_scores: the official SQuAD v2.0 script (evaluate-v2.0.py): get_raw_scores, compute_exact, compute_f1,
  make_eval_dict, merge_eval; squad_v2_best_thresholds: its find_best_thresh and find_all_best_thresh.
- map_at_k_by_id: xtreme third_party/utils_mewslix.py evaluate/mean_reciprocal_rank (Mewsli-X, k=20).
"""

from __future__ import annotations

import functools
import math
import re
import string
import sys
import unicodedata
from collections import Counter
from collections.abc import Collection, Mapping, Sequence

from stilts_jax.evaluation.retrieval_metrics import MetricInputError, count_accuracy, mean_average_precision_at_k
from stilts_jax.evaluation.squad_metric import normalize_answer as squad_normalize_answer

# ---------------------------------------------------------------------------------------------------------------------
# seqeval

SEQEVAL_VERSIONS = ("0.0.12", "1.2.2")
DEFAULT_SEQEVAL_VERSION = "0.0.12"

Entity = tuple[str, int, int]  # (type, first token, last token), token positions in the flattened sequence


def _tag_and_type(chunk: str, seqeval_version: str) -> tuple[str, str]:
    """The chunk tag (first character) and entity type of one label, as seqeval's get_entities (suffix=False)."""
    if seqeval_version == "0.0.12":
        return chunk[0], chunk.split("-")[-1]
    return chunk[0], chunk[1:].split("-", 1)[-1] or "_"


def _end_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag != "O" and prev_tag != "." and prev_type != type_


def _start_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if tag in ("B", "S"):
        return True
    if prev_tag in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag != "O" and tag != "." and prev_type != type_


def _check_seqeval_version(seqeval_version: str) -> None:
    if seqeval_version not in SEQEVAL_VERSIONS:
        raise MetricInputError(f"unknown seqeval version {seqeval_version!r}; choose one of {SEQEVAL_VERSIONS}")


def seqeval_entities(
    sentences: Sequence[Sequence[str]], *, seqeval_version: str = DEFAULT_SEQEVAL_VERSION
) -> list[Entity]:
    """The chunks seqeval's get_entities finds in a list of tagged sentences (conlleval-compatible default mode).

    The sentences are concatenated with an "O" after each one, so positions count those separators too and no chunk
    crosses a sentence end. Each label's first character is its chunk tag (B, I, E, S, O, or anything else) and its
    type is what follows the hyphen. A chunk ends before a token when the previous tag was E or S, when a B or I is
    followed by B, S or O, or when the type changes after a tag other than O; one starts at B and S, at E or I after
    E, S or O, and wherever the type changes on a tag other than O. So an I- tag after O or after another type opens
    a new entity, a B- after B-/I- closes the previous one, and E-/S- (IOBES) work in this mode as well.
    `seqeval_version` picks how the type is read (see seqeval_f1).
    """
    _check_seqeval_version(seqeval_version)
    flat: list[str] = []
    for n, sentence in enumerate(sentences):
        for tag in sentence:
            if not isinstance(tag, str) or not tag:
                raise MetricInputError(f"sentence {n} has a tag that is not a non-empty string: {tag!r}")
        flat.extend(sentence)
        flat.append("O")
    chunks: list[Entity] = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, chunk in enumerate(flat + ["O"]):
        tag, type_ = _tag_and_type(chunk, seqeval_version)
        if _end_of_chunk(prev_tag, tag, prev_type, type_):
            chunks.append((prev_type, begin, i - 1))
        if _start_of_chunk(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return chunks


def seqeval_f1(
    gold_tag_sequences: Sequence[Sequence[str]],
    predicted_tag_sequences: Sequence[Sequence[str]],
    *,
    seqeval_version: str = DEFAULT_SEQEVAL_VERSION,
) -> dict[str, float]:
    """Micro entity {"f1", "precision", "recall"} in percent, as xtreme evaluate.py's f1() gets them from seqeval.

    Entities are the (type, start, end) chunks of seqeval_entities, compared as sets: precision = correct/predicted,
    recall = correct/gold (each 0 when its denominator is 0), F1 = 2PR/(P+R) (0 when P+R = 0).

    PAN-X: BIO tags (B-PER, I-LOC, O ...); every seqeval version reads them alike.

    UD-POS: evaluate.py hands the raw UPOS tags to seqeval without converting them, so seqeval treats each POS tag as
    a chunk label. Its first letter becomes the chunk tag; how the type is read depends on the seqeval version.
    With seqeval 0.0.12 (0.0.10-0.0.13 alike; the default here) the type is the whole tag ("NOUN"), so a
    POS "entity" is a maximal run of equal tags inside a sentence ("DET NOUN NOUN VERB" has three: DET, NOUN NOUN,
    VERB), except SCONJ and SYM, whose first letter S makes every such token an entity of its own. INTJ (first letter
    I) and X behave like the rest. Predicting one token of a run wrong therefore also costs its neighbours.
    seqeval >= 0.0.18 (and 1.x, what an unpinned `pip install seqeval` gives today) reads the type as the tag minus its
    first letter: CCONJ and SCONJ then share type "CONJ", and X gets the type "_" of the sentence separator, which
    changes some scores (seqeval_version="1.2.2" reproduces that; 0.0.15-0.0.17 raise ValueError on POS tags).
    xtreme's own evaluate_test.py expects UD-POS avg F1 70.21746048354693 on its mock submission: seqeval 0.0.12
    gives exactly that, 1.2.2 gives 70.398 (checked by running both versions on that data).

    Sentences must pair up one to one and have equal lengths (seqeval 0.0.12 would silently misalign them).
    """
    _check_seqeval_version(seqeval_version)
    if len(gold_tag_sequences) != len(predicted_tag_sequences):
        raise MetricInputError(
            f"{len(predicted_tag_sequences)} predicted sentences but {len(gold_tag_sequences)} gold "
            f"sentences; one prediction per sentence is expected"
        )
    if not gold_tag_sequences:
        raise MetricInputError("no sentences to score")
    for n, (gold, predicted) in enumerate(zip(gold_tag_sequences, predicted_tag_sequences)):
        if len(gold) != len(predicted):
            raise MetricInputError(f"sentence {n} has {len(predicted)} predicted tags but {len(gold)} gold tags")
    gold_entities = set(seqeval_entities(gold_tag_sequences, seqeval_version=seqeval_version))
    predicted_entities = set(seqeval_entities(predicted_tag_sequences, seqeval_version=seqeval_version))
    correct = len(gold_entities & predicted_entities)
    precision = correct / len(predicted_entities) if predicted_entities else 0.0
    recall = correct / len(gold_entities) if gold_entities else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"f1": f1 * 100, "precision": precision * 100, "recall": recall * 100}


# ---------------------------------------------------------------------------------------------------------------------
# MLQA

MLQA_WHITESPACE_LANGUAGES = ("en", "es", "hi", "vi", "de", "ar")
MLQA_MIXED_SEGMENTATION_LANGUAGES = ("zh",)
MLQA_LANGUAGES = MLQA_WHITESPACE_LANGUAGES + MLQA_MIXED_SEGMENTATION_LANGUAGES

# Articles removed per language (whole words; Hindi and Chinese have none). Arabic is handled apart: see below.
_MLQA_ARTICLES = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
}
_ARABIC_ARTICLE = "ال"


@functools.lru_cache(maxsize=1)
def mlqa_punctuation() -> frozenset[str]:
    """Every code point below sys.maxunicode whose Unicode category starts with P, plus string.punctuation.

    The ASCII set adds symbols that are not Unicode punctuation ($ + < = > ^ ` | ~); other symbols (€, °) stay.
    """
    unicode_punctuation = {chr(i) for i in range(sys.maxunicode) if unicodedata.category(chr(i)).startswith("P")}
    return frozenset(unicode_punctuation | set(string.punctuation))


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fa5"  # the range evaluate_mlqa.py tests; later CJK code points are not split


def mlqa_mixed_segmentation(text: str) -> list[str]:
    """Chinese tokens: each CJK ideograph (U+4E00-U+9FA5) and punctuation mark alone, other runs split on spaces."""
    punctuation = mlqa_punctuation()
    tokens: list[str] = []
    pending = ""
    for ch in text:
        if _is_cjk(ch) or ch in punctuation:
            tokens.extend(pending.split())
            pending = ""
            tokens.append(ch)
        else:
            pending += ch
    tokens.extend(pending.split())
    return tokens


def _check_mlqa_language(language: str) -> None:
    if language not in MLQA_LANGUAGES:
        raise MetricInputError(
            f"MLQA has no answer normalisation for language {language!r}; known: {', '.join(MLQA_LANGUAGES)}"
        )


def mlqa_normalize_answer(text: str, language: str) -> str:
    """MLQA's normalisation: lower case, drop punctuation (mlqa_punctuation), drop articles, re-tokenise and join.

    Articles: en a/an/the; es un/una/unos/unas/el/la/los/las; de ein/eine/einen/einem/eines/einer/der/die/das/den/
    dem/des; vi của/là/cái/chiếc/những (whole words, Unicode word boundaries); hi and zh none. For ar the script
    substitutes the regex '\\sال^|ال'; its first alternative can never match ('^' after consumed text), so every
    occurrence of "ال" is replaced by a space, also inside words ("جمال" becomes "جم"). Tokens: white-space split,
    except zh (mlqa_mixed_segmentation); they are joined with single spaces.
    """
    _check_mlqa_language(language)
    punctuation = mlqa_punctuation()
    text = "".join(ch for ch in text.lower() if ch not in punctuation)
    if language == "ar":
        text = text.replace(_ARABIC_ARTICLE, " ")
    elif language in _MLQA_ARTICLES:
        text = _MLQA_ARTICLES[language].sub(" ", text)
    tokens = mlqa_mixed_segmentation(text) if language in MLQA_MIXED_SEGMENTATION_LANGUAGES else text.split()
    return " ".join(t for t in tokens if t.strip())


def mlqa_exact_match(prediction: str, truth: str, language: str) -> float:
    return float(mlqa_normalize_answer(prediction, language) == mlqa_normalize_answer(truth, language))


def mlqa_f1(prediction: str, truth: str, language: str) -> float:
    """Token F1 over the normalised answers (characters for Chinese ideographs); 0 when nothing is shared."""
    predicted = mlqa_normalize_answer(prediction, language).split()
    gold = mlqa_normalize_answer(truth, language).split()
    same = sum((Counter(predicted) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def mlqa_scores(
    predictions: Mapping[str, str], references: Mapping[str, Sequence[str]], language: str
) -> dict[str, float]:
    """{"exact_match", "f1"} in percent over every referenced question, best reference per question; a question
    without a prediction scores 0 (the script warns and counts it). `language` is the answer (context) language."""
    _check_mlqa_language(language)
    if not references:
        raise MetricInputError("no reference answers to score against")
    em = f1_total = 0.0
    for qid, truths in references.items():
        if not truths:
            raise MetricInputError(f"question {qid!r} has no reference answer")
        if qid not in predictions:
            continue
        prediction = predictions[qid]
        em += max(mlqa_exact_match(prediction, t, language) for t in truths)
        f1_total += max(mlqa_f1(prediction, t, language) for t in truths)
    return {"exact_match": 100.0 * em / len(references), "f1": 100.0 * f1_total / len(references)}


# ---------------------------------------------------------------------------------------------------------------------
# SQuAD v2.0


def _squad_v2_f1(truth: str, prediction: str) -> float:
    gold, predicted = squad_normalize_answer(truth).split(), squad_normalize_answer(prediction).split()
    if not gold or not predicted:
        return float(gold == predicted)  # a no-answer on either side: 1 if both are, else 0
    same = sum((Counter(gold) & Counter(predicted)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def _check_squad_v2_inputs(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> None:
    if not references:
        raise MetricInputError("no reference answers to score against")
    missing = [qid for qid in references if qid not in predictions]
    if missing:
        raise MetricInputError(
            f'{len(missing)} questions have no prediction (first: {missing[0]!r}); predict "" for no answer'
        )


def _squad_v2_raw_scores(
    predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]
) -> tuple[dict[str, float], dict[str, float]]:
    """Per-question exact match and F1 (0 or 1, and 0..1) of the predictions, as the script's get_raw_scores."""
    exact: dict[str, float] = {}
    f1: dict[str, float] = {}
    for qid, answers in references.items():
        truths = [a for a in answers if squad_normalize_answer(a)] or [""]
        prediction = predictions[qid]
        exact[qid] = max(float(squad_normalize_answer(t) == squad_normalize_answer(prediction)) for t in truths)
        f1[qid] = max(_squad_v2_f1(t, prediction) for t in truths)
    return exact, f1


def _check_no_answer_scores(no_answer_scores: Mapping[str, float], references: Mapping[str, Sequence[str]]) -> None:
    missing = [qid for qid in references if qid not in no_answer_scores]
    if missing:
        raise MetricInputError(
            f"{len(missing)} questions have no no-answer score (first: {missing[0]!r}); the "
            f"threshold search needs one per question (null score - best span score)"
        )
    not_a_number = [qid for qid in references if math.isnan(no_answer_scores[qid])]
    if not_a_number:
        raise MetricInputError(
            f"{len(not_a_number)} no-answer scores are NaN (first: {not_a_number[0]!r}); "
            f"they cannot be ordered, so no threshold can be searched"
        )


def _running_totals(
    predictions: Mapping[str, str],
    scores: Mapping[str, float],
    no_answer_scores: Mapping[str, float],
    references: Mapping[str, Sequence[str]],
) -> tuple[int, list[tuple[float, float]]]:
    """The script's find_best_thresh walk: the total when nothing is answered, then (question's no-answer score,
    total) after answering each question in turn, by ascending no-answer score."""
    # Nothing answered: exactly the unanswerable questions are right.
    current = sum(1 for answers in references.values() if not answers)
    start, steps = current, []
    # Python's sort is stable, so ties keep the mapping's order. Scores of unreferenced questions are left out before
    # sorting (the script skips them inside the loop: the same order).
    for qid in sorted((q for q in no_answer_scores if q in scores), key=lambda q: no_answer_scores[q]):
        if references[qid]:
            current += scores[qid]
        elif predictions[qid]:
            current -= 1  # answering an unanswerable question with a non-empty span loses its point
        steps.append((no_answer_scores[qid], current))
    return start, steps


def _best_threshold(
    predictions: Mapping[str, str],
    scores: Mapping[str, float],
    no_answer_scores: Mapping[str, float],
    references: Mapping[str, Sequence[str]],
) -> tuple[float, float]:
    """The script's find_best_thresh: (best score in percent, the no-answer score it was first reached at)."""
    best, steps = _running_totals(predictions, scores, no_answer_scores, references)
    best_threshold = 0.0  # 0.0 also when answering nothing is best, as the script reports it
    for threshold, total in steps:
        if total > best:
            best, best_threshold = total, threshold
    return 100.0 * best / len(scores), best_threshold


def squad_v2_reachable_f1_threshold(
    predictions: Mapping[str, str], references: Mapping[str, Sequence[str]], no_answer_scores: Mapping[str, float]
) -> float:
    """A threshold t at which answering every question scored <= t (predicting "" for the others) gives the best F1.

    The official search (squad_v2_best_thresholds) taken only at the ends of runs of tied scores, since a threshold
    answers a whole run or none of it; the first (smallest) best one wins, as in the script. Unlike the script's
    best_f1_thresh, which is 0.0 when answering nothing is best and may sit inside a run, this one is reachable:
    when answering nothing is best it is the largest float below every score. Its F1 equals best_f1 unless the
    script's best lay inside a tied run.
    """
    _check_squad_v2_inputs(predictions, references)
    _check_no_answer_scores(no_answer_scores, references)
    _, f1 = _squad_v2_raw_scores(predictions, references)
    best, steps = _running_totals(predictions, f1, no_answer_scores, references)
    threshold = math.nextafter(min(no_answer_scores[q] for q in references), -math.inf)
    for i, (score, total) in enumerate(steps):
        ends_a_run = i + 1 == len(steps) or steps[i + 1][0] != score
        if ends_a_run and total > best:
            best, threshold = total, score
    return threshold


def squad_v2_best_thresholds(
    predictions: Mapping[str, str], references: Mapping[str, Sequence[str]], no_answer_scores: Mapping[str, float]
) -> dict[str, float]:
    """{"best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"}, as evaluate-v2.0.py with --na-prob-file.

    `no_answer_scores` is the script's no-answer probability per question; any ordered score works (here: null
    score - best span score), since a question counts as answered at threshold t when its score is <= t. The search,
    exactly as the script's find_best_thresh: start from answering nothing (the unanswerable questions' count),
    walk the questions by ascending score (ties in the mapping's order), add each one's raw exact/F1 if it has an
    answer, subtract 1 if it has none and its prediction is non-empty (0 if it is empty: "" is right there), and keep
    the first strictly best running total and the score of the question that reached it. So the threshold is 0.0 when
    no prefix beats answering nothing, the best score may be reached inside a run of tied scores, and a prediction
    of "" on an answerable question adds its raw score (0 unless every reference normalises to ""). Scores of
    questions outside `references` are ignored, as the script does; every referenced question needs a prediction and
    a score. The totals are divided by the number of questions.
    """
    _check_squad_v2_inputs(predictions, references)
    _check_no_answer_scores(no_answer_scores, references)
    return _best_thresholds(predictions, references, no_answer_scores, *_squad_v2_raw_scores(predictions, references))


def _best_thresholds(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    no_answer_scores: Mapping[str, float],
    exact: Mapping[str, float],
    f1: Mapping[str, float],
) -> dict[str, float]:
    best_exact, exact_threshold = _best_threshold(predictions, exact, no_answer_scores, references)
    best_f1, f1_threshold = _best_threshold(predictions, f1, no_answer_scores, references)
    return {
        "best_exact": best_exact,
        "best_exact_thresh": exact_threshold,
        "best_f1": best_f1,
        "best_f1_thresh": f1_threshold,
    }


def squad_v2_scores(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    no_answer_scores: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """SQuAD v2.0 {"exact", "f1", "total"} in percent, plus HasAns_* and NoAns_* for the questions of each kind.

    An empty reference list marks an unanswerable question and "" is the prediction "no answer". As the official
    script: normalisation is SQuAD v1.1's; references that normalise to "" are dropped and a question left without
    any is scored against [""] (only "" or an answer normalising to "" is right); F1 is 1 when both sides are empty
    and 0 when only one is; HasAns/NoAns follow whether the raw reference list is empty and appear only when there
    are such questions. The script crashes on a question without prediction when it splits HasAns/NoAns, so every
    referenced question needs a prediction here.

    With `no_answer_scores` (the script's --na-prob-file), the result adds squad_v2_best_thresholds of the same
    predictions. The script would then also apply --na-prob-thresh (default 1.0) to exact/f1, turning every question
    scored above it into "no answer"; here exact/f1 stay those of the predictions as given (the script's with a
    threshold above every score), since the predictions are already thresholded where they are made.
    """
    _check_squad_v2_inputs(predictions, references)
    exact, f1 = _squad_v2_raw_scores(predictions, references)

    def summary(qids: list[str]) -> dict[str, float]:
        return {
            "exact": 100.0 * sum(exact[q] for q in qids) / len(qids),
            "f1": 100.0 * sum(f1[q] for q in qids) / len(qids),
            "total": len(qids),
        }

    result = summary(list(references))
    for prefix, qids in (
        ("HasAns", [q for q, a in references.items() if a]),
        ("NoAns", [q for q, a in references.items() if not a]),
    ):
        if qids:
            result.update({f"{prefix}_{k}": v for k, v in summary(qids).items()})
    if no_answer_scores is not None:
        _check_no_answer_scores(no_answer_scores, references)
        result.update(_best_thresholds(predictions, references, no_answer_scores, exact, f1))
    return result


# ---------------------------------------------------------------------------------------------------------------------
# Accuracy and ranked retrieval


def accuracy_score(predictions: Sequence[object], labels: Sequence[object]) -> float:
    """Percentage of positions where the prediction equals the label (XNLI, PAWS-X, XCOPA; evaluate.py accuracy)."""
    return count_accuracy(predictions, labels, gold_name="labels", unit="example")


def map_at_k_by_id(
    predictions: Mapping[str, Sequence[str]], relevant: Mapping[str, Collection[str]], k: int = 20
) -> float:
    """mAP@k in percent over the queries of `relevant`, each ranked by predictions[query] (ids, best first).

    A query without a prediction scores 0 and predictions for unknown queries are ignored, as xtreme's
    utils_mewslix.evaluate. Per-query AP@k is retrieval_metrics.average_precision_at_k; with one relevant id (Mewsli-X)
    it is the reciprocal rank of that id within the top k, i.e. utils_mewslix's MRR ("MAP@20"). The mean is taken
    as that script does (sum / count, then * 100).
    """
    queries = list(relevant)
    return mean_average_precision_at_k(
        [list(predictions.get(q, ()))[:k] for q in queries], [relevant[q] for q in queries], k
    )
