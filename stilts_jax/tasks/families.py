"""Sentence-pair classification, multiple choice and token tagging: features, heads, predictions, metrics.

Each family offers what the pipeline asks of a task: load a split, build its head and loss, featurize training
examples to fixed shapes, predict with the jitted predictor, score with the one metric implementation, write the
XTREME submission file, and a trivial baseline to print beside the model.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from stilts_jax.core.io_utils import atomic_write_text
from stilts_jax.data.examples import ChoiceExample, PairExample, TaggedSentence
from stilts_jax.data.tagging_features import TaggingFeatures, featurize_tagging
from stilts_jax.evaluation.predictor import Predictor
from stilts_jax.models.heads import ClassificationHead, TaggingHead, classification_loss, tagging_loss
from stilts_jax.tasks.registry import TaskSpec


def _load(spec: TaskSpec, which: str, source: Mapping[str, Any], languages: Sequence[str] | None) -> dict[str, list]:
    from stilts_jax.data.task_sources import load_examples

    dataset, split = spec.dataset_and_split(which)
    return load_examples(dataset, split, source, languages)


def _require_labels(examples: Sequence[Any], what: str) -> None:
    missing = sum(getattr(ex, "label", 0) is None and getattr(ex, "tags", 0) is None for ex in examples)
    if missing:
        raise ValueError(
            f"{missing} {what} examples carry no labels (XTREME's download strips test labels): "
            "evaluate against a labelled source (kind hf or tfds)"
        )


class LastEncoding:
    """The features of the last examples a task predicted on, reused while the same examples come again: a phase's
    dev set is predicted at every evaluation, and tokenizing it each time costs as much as a short evaluation."""

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._value: Any = None

    def get(self, examples: Sequence[Any], build: Any) -> Any:
        key = tuple(examples)  # frozen dataclasses: equal contents, equal key
        if self._key != key:
            self._key, self._value = None, None  # never keep a stale pair if build() raises
            self._value = build()
            self._key = key
        return self._value


class ClassificationTask:
    """XNLI, PAWS-X, MNLI, QQP, ANLI, SNLI, PAWS: the first token's representation, a classifier over labels."""

    columns = [("accuracy", "accuracy"), ("baseline_accuracy", "majority baseline")]  # noqa: RUF012 (an instance may replace it)

    def __init__(self, spec: TaskSpec, tokenizer: Any, *, max_length: int = 256, **_: Any):
        self.spec, self.tokenizer, self.max_length = spec, tokenizer, max_length
        self.labels = spec.label_names()
        self.loss_fn = classification_loss
        self._predicted = LastEncoding()

    def load(self, which: str, source: Mapping[str, Any], languages: Sequence[str] | None) -> dict[str, list]:
        return _load(self.spec, which, source, languages)

    def head(self, hidden_size: int, rngs: nnx.Rngs) -> ClassificationHead:
        return ClassificationHead(hidden_size, len(self.labels), rngs=rngs)

    def _encode(self, examples: Sequence[PairExample]) -> dict[str, np.ndarray]:
        second = [ex.text_b for ex in examples] if any(ex.text_b is not None for ex in examples) else None
        if second is not None:
            second = [s or "" for s in second]
        encoded = self.tokenizer(
            [ex.text_a for ex in examples], second, truncation=True, max_length=self.max_length, padding="max_length"
        )
        return {
            "input_ids": np.asarray(encoded["input_ids"], np.int32),
            "attention_mask": np.asarray(encoded["attention_mask"], np.int32),
        }

    def train_features(self, examples: Sequence[PairExample]) -> dict[str, np.ndarray]:
        _require_labels(examples, self.spec.name)
        return {**self._encode(examples), "labels": np.asarray([ex.label for ex in examples], np.int32)}

    def predict(
        self, predictor: Predictor, params: Any, examples: Sequence[PairExample], *, desc: str = "predict"
    ) -> list[int]:
        arrays = self._predicted.get(examples, lambda: self._encode(examples))
        return predictor.predict(params, arrays, desc=desc).argmax(-1).tolist()

    def score(self, predictions: Sequence[int], examples: Sequence[PairExample]) -> dict[str, float]:
        _require_labels(examples, self.spec.name)
        from stilts_jax.evaluation.metrics import accuracy_score

        return {"accuracy": accuracy_score(list(predictions), [ex.label for ex in examples])}

    def trivial_predictions(self, examples: Sequence[PairExample], train_examples: Sequence[Any] = ()) -> list[int]:
        """The majority label (of the training data when given, else of the examples themselves)."""
        pool = [ex.label for ex in (train_examples or examples) if ex.label is not None]
        majority = Counter(pool).most_common(1)[0][0] if pool else 0
        return [majority] * len(examples)

    def baseline(self, examples: Sequence[Any], train_examples: Sequence[Any] = ()) -> dict[str, float]:
        return {
            "baseline_accuracy": self.score(self.trivial_predictions(examples, train_examples), examples)["accuracy"]
        }

    def write_predictions(
        self, folder: Path, language: str, predictions: Sequence[int], examples: Sequence[Any]
    ) -> Path:
        path = self.spec.submission_path(folder, language)
        atomic_write_text(path, "".join(f"{self.labels[p]}\n" for p in predictions))
        return path


class MultipleChoiceTask(ClassificationTask):
    """XCOPA, COPA, SIQA, CommonsenseQA, Cosmos QA, HellaSwag: one score per (prompt, choice) pair.

    The readers build each example's prompt and choices as the published code does (data/task_sources/records.py).
    Each pair is fed as jiant's `<cls> prompt <sep> [<sep>] choice <sep>` (jiant/tasks/lib/templates/
    multiple_choice.py:53-79; the extra <sep> where the tokenizer's pair template has one, as XLM-R's does), the
    segments tokenized on their own (35-41). A pair longer than max_length loses one token at a time from its longer
    segment, the prompt on a tie (jiant/tasks/utils.py:57-67), from the segment's start (truncate_end=False,
    multiple_choice.py:65-69), so Cosmos QA keeps its question, which ends the prompt. XCOPA keeps XTREME-R's
    truncation side instead: run_xcopa.py calls tokenizer(first, second, truncation=True), which cuts the ends
    (its Rust longest-first split can differ from jiant's by a token, but a COPA pair is far below max_length).
    """

    def load(self, which: str, source: Mapping[str, Any], languages: Sequence[str] | None) -> dict[str, list]:
        from stilts_jax.data.task_sources.records import as_xcopa_example

        loaded = super().load(which, source, languages)
        if self.spec.dataset == "xcopa":
            # Part of XCOPA's English (hub/TFDS train, en of dev/test) is read as the copa dataset, in jiant's wording.
            loaded = {lang: [as_xcopa_example(ex) for ex in examples] for lang, examples in loaded.items()}
        return loaded

    def head(self, hidden_size: int, rngs: nnx.Rngs) -> ClassificationHead:
        return ClassificationHead(hidden_size, 1, rngs=rngs)

    def _pair_ids(self, prompt: list[int], choice: list[int], specials: int) -> list[int]:
        """jiant's truncation of (prompt, choice) token ids to max_length, and the `specials` tokens around them."""
        keep = [len(prompt), len(choice)]
        while sum(keep) > max(self.max_length - specials, 0):
            keep[0 if keep[0] >= keep[1] else 1] -= 1
        if self.spec.dataset == "xcopa":
            prompt, choice = prompt[: keep[0]], choice[: keep[1]]
        else:
            prompt, choice = prompt[len(prompt) - keep[0] :], choice[len(choice) - keep[1] :]
        cls, sep = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        return [cls, *prompt, *([sep, sep] if specials == 4 else [sep]), *choice, sep]

    def _encode(self, examples: Sequence[ChoiceExample]) -> dict[str, np.ndarray]:
        width = max(len(ex.choices) for ex in examples)
        prompts = self.tokenizer([ex.prompt for ex in examples], add_special_tokens=False)["input_ids"]
        choices = self.tokenizer(
            [ex.choices[c] if c < len(ex.choices) else "" for ex in examples for c in range(width)],
            add_special_tokens=False,
        )["input_ids"]
        specials = self.tokenizer.num_special_tokens_to_add(pair=True)
        if specials not in (3, 4):
            raise ValueError(
                f"multiple choice expects a pair template of 3 special tokens (<cls> a <sep> b <sep>) or "
                f"4 (<cls> a <sep><sep> b <sep>); this tokenizer adds {specials}"
            )
        pad = self.tokenizer.pad_token_id
        input_ids = np.full((len(examples) * width, self.max_length), 0 if pad is None else pad, np.int32)
        attention_mask = np.zeros((len(examples) * width, self.max_length), np.int32)
        for row, choice in enumerate(choices):
            ids = self._pair_ids(prompts[row // width], choice, specials)
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        shape = (len(examples), width, self.max_length)
        choice_mask = np.asarray([[c < len(ex.choices) for c in range(width)] for ex in examples], np.int32)
        return {
            "input_ids": input_ids.reshape(shape),
            "attention_mask": attention_mask.reshape(shape),
            "choice_mask": choice_mask,
        }

    def predict(
        self, predictor: Predictor, params: Any, examples: Sequence[ChoiceExample], *, desc: str = "predict"
    ) -> list[int]:
        arrays = self._predicted.get(examples, lambda: self._encode(examples))
        scores = predictor.predict(params, arrays, desc=desc)
        return np.where(arrays["choice_mask"] > 0, scores, -np.inf).argmax(-1).tolist()

    def trivial_predictions(self, examples: Sequence[ChoiceExample], train_examples: Sequence[Any] = ()) -> list[int]:
        """Always the first choice (chance level for balanced choices)."""
        return [0] * len(examples)

    def write_predictions(
        self, folder: Path, language: str, predictions: Sequence[int], examples: Sequence[Any]
    ) -> Path:
        path = self.spec.submission_path(folder, language)
        atomic_write_text(
            path, "".join(json.dumps({"idx": i, "label": int(p)}) + "\n" for i, p in enumerate(predictions))
        )
        return path


def _token_accuracy(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> float:
    """Percentage of words whose predicted tag equals the gold tag (jiant's CCG metric)."""
    pairs = [
        (g, p)
        for gold_tags, predicted_tags in zip(gold, predicted, strict=True)
        for g, p in zip(gold_tags, predicted_tags, strict=True)
    ]
    return 100.0 * sum(g == p for g, p in pairs) / len(pairs) if pairs else 0.0


class TaggingTask:
    """UD-POS, PAN-X, CCG: the first sub-word of each word carries its tag; predictions are mapped back to words.

    UD-POS and PAN-X have fixed tag sets and are scored by seqeval F1. CCG's tag set is open: it is derived from the
    training split when a split is first loaded (also when only an evaluation split is asked for, so a later phase
    rebuilds the same set), and it is scored by token accuracy with gold tags unseen in training read as UNKNOWN_TAG.
    """

    def __init__(self, spec: TaskSpec, tokenizer: Any, *, max_length: int = 256, **_: Any):
        from stilts_jax.data.task_sources import has_open_labels

        self.spec, self.tokenizer, self.max_length = spec, tokenizer, max_length
        self.open_tag_set = has_open_labels(spec.dataset_and_split("train")[0])
        self._predicted = LastEncoding()
        self._set_labels(() if self.open_tag_set else spec.label_names())
        self.loss_fn = tagging_loss
        self.featurization_counts = {"words_without_pieces": 0, "overlong_words": 0, "split_sentences": 0}
        self.by_accuracy = spec.metric == "accuracy"
        self.columns = (
            [("accuracy", "accuracy"), ("baseline_accuracy", "baseline accuracy")]
            if self.by_accuracy
            else [("f1", "F1"), ("baseline_f1", "baseline F1")]
        )

    def _set_labels(self, labels: Sequence[str]) -> None:
        self.labels = tuple(labels)
        self.label_index = {tag: i for i, tag in enumerate(self.labels)}

    def load(self, which: str, source: Mapping[str, Any], languages: Sequence[str] | None) -> dict[str, list]:
        examples = _load(self.spec, which, source, languages)
        if self.open_tag_set and not self.labels:
            from stilts_jax.data.task_sources import derive_tag_set

            train = examples if which == "train" else _load(self.spec, "train", source, ["en"])
            self._set_labels(derive_tag_set(train["en"]))
        return examples

    def head(self, hidden_size: int, rngs: nnx.Rngs) -> TaggingHead:
        if not self.labels:
            raise ValueError(
                f"{self.spec.name}'s tag set comes from its training data: load a split (task.load) "
                "before building the head"
            )
        return TaggingHead(hidden_size, len(self.labels), rngs=rngs)

    def featurize(
        self, sentences: Sequence[TaggedSentence], *, with_labels: bool = False
    ) -> tuple[TaggingFeatures, np.ndarray | None]:
        """Rows of the model's inputs (a long sentence in several parts) and, with labels, the tag ids per token."""
        tags = None
        if with_labels:
            _require_labels(sentences, self.spec.name)
            tags = []
            for sentence in sentences:
                unknown = [tag for tag in sentence.tags if tag not in self.label_index]
                if unknown:
                    raise ValueError(
                        f"{self.spec.name} sentence {sentence.id!r}: unknown tag {unknown[0]!r}; known: {self.labels}"
                    )
                tags.append([self.label_index[tag] for tag in sentence.tags])
        return featurize_tagging(
            [s.tokens for s in sentences], self.tokenizer, max_length=self.max_length, tags_per_sentence=tags
        )

    def train_features(self, sentences: Sequence[TaggedSentence]) -> dict[str, np.ndarray]:
        features, labels = self.featurize(sentences, with_labels=True)
        self.featurization_counts = features.counts()
        return {**features.arrays, "labels": labels}

    def predict(
        self, predictor: Predictor, params: Any, sentences: Sequence[TaggedSentence], *, desc: str = "predict"
    ) -> list[list[str]]:
        """Every word's tag from its first piece; a sentence longer than max_length is predicted in parts."""
        features, _ = self._predicted.get(sentences, lambda: self.featurize(sentences))
        self.featurization_counts = features.counts()
        best = predictor.predict(params, features.arrays, desc=desc).argmax(-1)
        return [[self.labels[t] for t in tags] for tags in features.gather_words(best, len(sentences))]

    def featurization_note(self) -> str:
        """What the last featurization did to fit the sentences: for the evaluation log."""
        counts = self.featurization_counts
        return (
            f"{counts['words_without_pieces']} words without sub-word pieces and {counts['overlong_words']} "
            f"longer than a row (each fed as the unk piece), {counts['split_sentences']} sentences longer than "
            f"max_length {self.max_length} (predicted in parts)"
        )

    def score(self, predictions: Sequence[Sequence[str]], sentences: Sequence[TaggedSentence]) -> dict[str, float]:
        from stilts_jax.evaluation.metrics import seqeval_f1

        _require_labels(sentences, self.spec.name)
        if len(predictions) != len(sentences):
            raise ValueError(
                f"{len(predictions)} predicted tag sequences for {len(sentences)} {self.spec.name} sentences"
            )
        if self.by_accuracy:
            return {"accuracy": _token_accuracy([self.gold_tags(s) for s in sentences], predictions)}
        return seqeval_f1([list(s.tags) for s in sentences], [list(p) for p in predictions])

    def gold_tags(self, sentence: TaggedSentence) -> list[str]:
        """The sentence's tags as scored: in an open tag set, tags training never saw become UNKNOWN_TAG."""
        if not self.open_tag_set:
            return list(sentence.tags)
        from stilts_jax.data.task_sources import UNKNOWN_TAG

        return [tag if tag in self.label_index else UNKNOWN_TAG for tag in sentence.tags]

    def trivial_predictions(
        self, sentences: Sequence[TaggedSentence], train_examples: Sequence[Any] = ()
    ) -> list[list[str]]:
        """Every word gets the most frequent tag of the training data (or of the sentences themselves)."""
        counts = Counter(tag for s in (train_examples or sentences) if s.tags for tag in s.tags)
        common = counts.most_common(1)[0][0] if counts else self.labels[0]
        return [[common] * len(s.tokens) for s in sentences]

    def baseline(self, sentences: Sequence[Any], train_examples: Sequence[Any] = ()) -> dict[str, float]:
        metric = "accuracy" if self.by_accuracy else "f1"
        return {
            f"baseline_{metric}": self.score(self.trivial_predictions(sentences, train_examples), sentences)[metric]
        }

    def write_predictions(
        self, folder: Path, language: str, predictions: Sequence[Sequence[str]], examples: Sequence[Any]
    ) -> Path:
        path = self.spec.submission_path(folder, language)
        atomic_write_text(path, "".join("".join(f"{tag}\n" for tag in tags) + "\n" for tags in predictions))
        return path


def make_task(
    spec: TaskSpec,
    tokenizer: Any,
    *,
    max_length: int,
    doc_stride: int = 128,
    n_best: int = 20,
    max_answer_length: int = 30,
    null_score_diff_threshold: float | str = 0.0,
) -> Any:
    """The family implementation of a task spec."""
    if spec.family == "span_qa":
        from stilts_jax.tasks.span_qa import SpanQATask

        return SpanQATask(
            spec,
            tokenizer,
            max_length=max_length,
            doc_stride=doc_stride,
            n_best=n_best,
            max_answer_length=max_answer_length,
            null_score_diff_threshold=null_score_diff_threshold,
        )
    families = {"classification": ClassificationTask, "multiple_choice": MultipleChoiceTask, "tagging": TaggingTask}
    if spec.family not in families:
        raise ValueError(
            f"task {spec.name} has family {spec.family!r}, which has no trainer; families: "
            f"span_qa, {', '.join(families)}"
        )
    return families[spec.family](spec, tokenizer, max_length=max_length)
