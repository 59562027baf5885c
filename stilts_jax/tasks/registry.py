"""Tasks as data: what each one trains on, where its languages are evaluated, and how it is scored.

Adding an English dataset of a known family is one entry here (plus, at most, a loader in stilts_jax/data).
"""

from __future__ import annotations

import dataclasses

from stilts_jax.data import task_sources as _sources
from stilts_jax.data.lareqa import LAREQA_LANGUAGES
from stilts_jax.data.mewslix import MEWSLIX_LANGUAGES
from stilts_jax.errors import StiltsError

TYDIQA_LANGUAGES = ("ar", "bn", "en", "fi", "id", "ko", "ru", "sw", "te")
# google-research/xtreme evaluate.py: XTREME_R_TASK2LANGS (XTREME's 36 plus az, lt, pl, uk, ro), like the other
# targets, whose lists are XTREME-R's (XTREME's are subsets); the sweep report averages each benchmark's own list.
TATOEBA_LANGUAGES = ("af", "ar", "az", "bg", "bn", "de", "el", "es", "et", "eu", "fa", "fi", "fr", "he", "hi", "hu", "id",
                     "it", "ja", "jv", "ka", "kk", "ko", "lt", "ml", "mr", "nl", "pl", "pt", "ro", "ru", "sw", "ta", "te",
                     "th", "tl", "tr", "uk", "ur", "vi", "zh")
BUCC_LANGUAGES = ("de", "fr", "ru", "zh")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    name: str
    family: str  # span_qa or retrieval (more families: classification, multiple_choice, tagging)
    dataset: str  # the dataset name the sources know
    languages: tuple[str, ...]  # evaluation languages
    train_split: str = "train"
    dev_split: str = "dev"  # English dev set for model selection
    eval_split: str = "dev"  # the split evaluated zero-shot in every language
    metric: str = "f1"  # the dev metric that selects the best checkpoint
    xtreme_name: str | None = None  # folder name in the XTREME submission layout
    prediction_extension: str = "json"
    train_dataset: str | None = None  # English training data when it is another dataset (XNLI trains on MNLI)
    dev_dataset: str | None = None  # English dev data for model selection, if not `dataset`'s
    default_max_length: int = 256

    def dataset_and_split(self, which: str) -> tuple[str, str]:
        """(dataset, split) that serves `which` of train, dev (English model selection) and eval (zero-shot)."""
        if which == "train":
            return self.train_dataset or self.dataset, self.train_split
        if which == "dev":
            return self.dev_dataset or self.dataset, self.dev_split
        if which == "eval":
            return self.dataset, self.eval_split
        raise ValueError(f"unknown split role {which!r}; use train, dev or eval")

    def label_names(self) -> tuple[str, ...]:
        from stilts_jax.data.task_sources import labels

        return tuple(labels(self.dataset))


def _english(name: str, family: str, metric: str = "accuracy", max_length: int = 256) -> TaskSpec:
    """An English intermediate task: trained on train, selected on dev."""
    return TaskSpec(name=name, family=family, dataset=name, languages=("en",), metric=metric, default_max_length=max_length)


def _target(name: str, family: str, languages: tuple[str, ...], metric: str, xtreme_name: str, extension: str) -> TaskSpec:
    """A cross-lingual target: English train/dev, zero-shot on every language's test split."""
    return TaskSpec(name=name, family=family, dataset=name, languages=languages, metric=metric, eval_split="test",
                    xtreme_name=xtreme_name, prediction_extension=extension)


TASKS: dict[str, TaskSpec] = {
    "squad": TaskSpec(name="squad", family="span_qa", dataset="squad", languages=("en",), default_max_length=384),
    # TyDiQA-GoldP: train on the English training examples only; its dev set is XTREME's test set.
    "tydiqa": TaskSpec(name="tydiqa", family="span_qa", dataset="tydiqa", languages=TYDIQA_LANGUAGES, xtreme_name="tydiqa"),
    # SQuAD v2.0: an English intermediate task with unanswerable questions ("no answer" predictions, v2.0 script).
    "squad_v2": TaskSpec(name="squad_v2", family="span_qa", dataset="squad_v2", languages=("en",), default_max_length=384),
    # XQuAD and MLQA train on SQuAD v1.1, select on its dev set, and are evaluated zero-shot on their test sets.
    # Languages: google-research/xtreme evaluate.py XTREME_R_TASK2LANGS (XQuAD: XTREME's 11 + ro; MLQA: 7 in both,
    # context language == question language).
    "xquad": TaskSpec(name="xquad", family="span_qa", dataset="xquad",
                      languages=("en", "es", "de", "el", "ru", "tr", "ar", "vi", "th", "zh", "hi", "ro"),
                      eval_split="test", xtreme_name="xquad", train_dataset="squad", dev_dataset="squad",
                      default_max_length=384),
    "mlqa": TaskSpec(name="mlqa", family="span_qa", dataset="mlqa", languages=("en", "es", "de", "ar", "hi", "vi", "zh"),
                     eval_split="test", xtreme_name="mlqa", train_dataset="squad", dev_dataset="squad",
                     default_max_length=384),
    # Intermediate tasks of the paper (and XTREME-R's SIQA -> COPA chain, English PAWS).
    **{name: _english(name, "classification") for name in ("mnli", "anli_plus", "anli", "snli", "qqp", "paws")},
    **{name: _english(name, "multiple_choice") for name in ("commonsenseqa", "cosmosqa", "hellaswag", "siqa", "copa")},
    # CCG supertagging: CCGbank from user-supplied files; open tag set; token accuracy, as jiant reports it.
    "ccg": _english("ccg", "tagging"),
    # Targets, evaluated zero-shot in every language of XTREME-R (XTREME's lists are subsets).
    "xnli": _target("xnli", "classification", _sources.XNLI_LANGUAGES, "accuracy", "xnli", "tsv"),
    "pawsx": _target("pawsx", "classification", _sources.PAWSX_LANGUAGES, "accuracy", "pawsx", "tsv"),
    "xcopa": _target("xcopa", "multiple_choice", _sources.XCOPA_LANGUAGES, "accuracy", "xcopa", "jsonl"),
    "udpos": _target("udpos", "tagging", _sources.UDPOS_LANGUAGES, "f1", "udpos", "tsv"),
    "panx": _target("panx", "tagging", _sources.PANX_LANGUAGES, "f1", "panx", "tsv"),
    # Retrieval: no training data; the intermediate model's encoder is evaluated directly.
    "tatoeba": TaskSpec(name="tatoeba", family="retrieval", dataset="tatoeba", languages=TATOEBA_LANGUAGES,
                        metric="accuracy", xtreme_name="tatoeba", prediction_extension="tsv"),
    "bucc": TaskSpec(name="bucc", family="retrieval", dataset="bucc", languages=BUCC_LANGUAGES, metric="f1",
                     xtreme_name="bucc2018", prediction_extension="tsv"),
    # Retrieval with English training data: a dual encoder (tasks/dual_encoder.py), selected by English dev mAP@20.
    # LAReQA trains on SQuAD v1.1 question -> answer sentence pairs and searches the 11-language XQuAD-R pool;
    # Mewsli-X trains on English Wikipedia mention -> entity pairs and searches ~1M entities in 50 languages.
    "lareqa": TaskSpec(name="lareqa", family="retrieval", dataset="lareqa", languages=LAREQA_LANGUAGES, metric="map@20",
                       eval_split="test", xtreme_name="lareqa", train_dataset="squad", dev_dataset="squad"),
    "mewslix": TaskSpec(name="mewslix", family="retrieval", dataset="mewslix", languages=MEWSLIX_LANGUAGES,
                        metric="map@20", eval_split="test", xtreme_name="mewslix", default_max_length=64,
                        train_dataset="wikipedia_pairs", dev_dataset="wikipedia_pairs"),
}


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise StiltsError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]
