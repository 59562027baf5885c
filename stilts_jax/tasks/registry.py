"""Tasks as data: what each one trains on, where its languages are evaluated, how it is scored, and the default
hyperparameters of its target phase (with the file they come from).

A task of a known family is one `register_task` call, here for the built-in tasks or in a user's own Python file
loaded with `--config.task_modules` (see "Add your own task" in the README): its TaskSpec, and, for a dataset the
package does not know, the TaskDataset that says where its files are and how to read them (`register_file_format`
adds a reader for a new file format).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from stilts_jax.core.errors import StiltsError
from stilts_jax.data import task_sources as _sources
from stilts_jax.data.lareqa import LAREQA_LANGUAGES
from stilts_jax.data.mewslix import MEWSLIX_LANGUAGES

TYDIQA_LANGUAGES = ("ar", "bn", "en", "fi", "id", "ko", "ru", "sw", "te")
# google-research/xtreme evaluate.py: XTREME_R_TASK2LANGS (XTREME's 36 plus az, lt, pl, uk, ro), like the other
# targets, whose lists are XTREME-R's (XTREME's are subsets); the sweep report averages each benchmark's own list.
TATOEBA_LANGUAGES = (
    "af",
    "ar",
    "az",
    "bg",
    "bn",
    "de",
    "el",
    "es",
    "et",
    "eu",
    "fa",
    "fi",
    "fr",
    "he",
    "hi",
    "hu",
    "id",
    "it",
    "ja",
    "jv",
    "ka",
    "kk",
    "ko",
    "lt",
    "ml",
    "mr",
    "nl",
    "pl",
    "pt",
    "ro",
    "ru",
    "sw",
    "ta",
    "te",
    "th",
    "tl",
    "tr",
    "uk",
    "ur",
    "vi",
    "zh",
)
BUCC_LANGUAGES = ("de", "fr", "ru", "zh")


# The submission file of each family, as google-research/xtreme evaluate.py reads them (get_suffix).
SUBMISSION_EXTENSIONS = {
    "span_qa": "json",
    "classification": "tsv",
    "multiple_choice": "jsonl",
    "tagging": "tsv",
    "sentence_retrieval": "tsv",
    "bitext_mining": "tsv",
    "dual_encoder": "json",
}


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    name: str
    family: str  # one of FAMILIES
    dataset: str  # the dataset name the sources know
    languages: tuple[str, ...]  # evaluation languages
    train_split: str = "train"
    dev_split: str = "dev"  # English dev set for model selection
    eval_split: str = "dev"  # the split evaluated zero-shot in every language
    metric: str = "f1"  # the dev metric that selects the best checkpoint
    xtreme_name: str | None = None  # folder name in the XTREME submission layout
    prediction_extension: str = ""  # "" : the family's (SUBMISSION_EXTENSIONS)
    train_dataset: str | None = None  # English training data when it is another dataset (XNLI trains on MNLI)
    dev_dataset: str | None = None  # English dev data for model selection, if not `dataset`'s
    default_max_length: int = 256
    # The target phase's defaults in the published preset (configs/base.py): epochs, batch_size (effective),
    # max_length, and optionally learning_rate, warmup_fraction, weight_decay, micro_batches, selection;
    # `defaults_source` names the file they follow.
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    defaults_source: str = ""

    def dataset_and_split(self, which: str) -> tuple[str, str]:
        """(dataset, split) that serves `which` of train, dev (English model selection) and eval (zero-shot)."""
        if which == "train":
            return self.train_dataset or self.dataset, self.train_split
        if which == "dev":
            return self.dev_dataset or self.dataset, self.dev_split
        if which == "eval":
            return self.dataset, self.eval_split
        raise ValueError(f"unknown split role {which!r}; use train, dev or eval")

    @property
    def submission_folder(self) -> str:
        """The task's folder in the XTREME submission layout (`predictions/{folder}/test-{lang}.{ext}`)."""
        return self.xtreme_name or self.name

    def submission_path(self, root: Any, language: str) -> Any:
        """`{root}/{folder}/test-{language}.{prediction_extension}`: where a language's predictions go (local or
        gs://), as google-research/xtreme evaluate.py reads them."""
        from stilts_jax.core.paths import as_path

        extension = self.prediction_extension or SUBMISSION_EXTENSIONS[self.family]
        return as_path(root) / self.submission_folder / f"test-{language}.{extension}"

    def label_names(self) -> tuple[str, ...]:
        from stilts_jax.data.task_sources import labels

        return tuple(labels(self.dataset))


def _target(
    name: str, family: str, languages: tuple[str, ...], metric: str, xtreme_name: str, extension: str, **defaults: Any
) -> TaskSpec:
    """A cross-lingual target: English train/dev, zero-shot on every language's test split."""
    return TaskSpec(
        name=name,
        family=family,
        dataset=name,
        languages=languages,
        metric=metric,
        eval_split="test",
        xtreme_name=xtreme_name,
        prediction_extension=extension,
        **defaults,
    )


def _english(name: str, family: str, metric: str = "accuracy", max_length: int = 256) -> TaskSpec:
    """An English intermediate task: trained on train, selected on dev."""
    return TaskSpec(
        name=name, family=family, dataset=name, languages=("en",), metric=metric, default_max_length=max_length
    )


# Sources of the target defaults below (the published preset).
JIANT_XTREME = "nyu-mll/jiant jiant/scripts/benchmarks/xtreme/subscripts"
XTREME_SCRIPTS = "google-research/xtreme scripts"


def _jiant(epochs: float, batch_size: int, max_length: int, where: str) -> dict[str, Any]:
    """A row of jiant's XTREME scripts: d_write_configs.sh (epochs; batch 4 x accumulation), c_tokenize_and_cache.sh
    (max_seq_length); lr 1e-5 and the evaluation cadence come from e_run_models.sh (configs/base.py)."""
    return {
        "defaults": dict(epochs=epochs, batch_size=batch_size, max_length=max_length),
        "defaults_source": f"paper ({JIANT_XTREME}: {where})",
    }


_QA = _jiant(2.0, 16, 384, "d_write_configs.sh:47-63, c_tokenize_and_cache.sh:98-121")

TASKS: dict[str, TaskSpec] = {
    "squad": TaskSpec(
        name="squad", family="span_qa", dataset="squad", languages=("en",), default_max_length=384, **_QA
    ),
    # TyDiQA-GoldP: train on the English training examples only; its dev set is XTREME's test set.
    "tydiqa": TaskSpec(
        name="tydiqa", family="span_qa", dataset="tydiqa", languages=TYDIQA_LANGUAGES, xtreme_name="tydiqa", **_QA
    ),
    # SQuAD v2.0: an English intermediate task with unanswerable questions ("no answer" predictions, v2.0 script).
    "squad_v2": TaskSpec(
        name="squad_v2", family="span_qa", dataset="squad_v2", languages=("en",), default_max_length=384
    ),
    # XQuAD and MLQA train on SQuAD v1.1, select on its dev set, and are evaluated zero-shot on their test sets.
    # Languages: google-research/xtreme evaluate.py XTREME_R_TASK2LANGS (XQuAD: XTREME's 11 + ro; MLQA: 7 in both,
    # context language == question language).
    "xquad": TaskSpec(
        name="xquad",
        family="span_qa",
        dataset="xquad",
        languages=("en", "es", "de", "el", "ru", "tr", "ar", "vi", "th", "zh", "hi", "ro"),
        eval_split="test",
        xtreme_name="xquad",
        train_dataset="squad",
        dev_dataset="squad",
        default_max_length=384,
        **_QA,
    ),
    "mlqa": TaskSpec(
        name="mlqa",
        family="span_qa",
        dataset="mlqa",
        languages=("en", "es", "de", "ar", "hi", "vi", "zh"),
        eval_split="test",
        xtreme_name="mlqa",
        train_dataset="squad",
        dev_dataset="squad",
        default_max_length=384,
        **_QA,
    ),
    # Intermediate tasks of the paper (and XTREME-R's SIQA -> COPA chain, English PAWS).
    **{name: _english(name, "classification") for name in ("mnli", "anli_plus", "anli", "snli", "qqp", "paws")},
    **{name: _english(name, "multiple_choice") for name in ("commonsenseqa", "cosmosqa", "hellaswag", "siqa", "copa")},
    # English reasoning tasks for intermediate-task chains (docs/DATASETS.md): PIQA, WinoGrande, ReClor, LogiQA 2.0 and
    # ART's alphaNLI (abductive NLI: the more plausible of two hypotheses), each multiple choice.
    **{name: _english(name, "multiple_choice") for name in ("piqa", "winogrande", "reclor", "logiqa2", "art")},
    # CCG supertagging: CCGbank from user-supplied files; open tag set; token accuracy, as jiant reports it.
    "ccg": _english("ccg", "tagging"),
    # Targets, evaluated zero-shot in every language of XTREME-R (XTREME's lists are subsets).
    "xnli": _target(
        "xnli",
        "classification",
        _sources.XNLI_LANGUAGES,
        "accuracy",
        "xnli",
        "tsv",
        **_jiant(2.0, 32, 256, "d_write_configs.sh:15, c_tokenize_and_cache.sh:16"),
    ),
    "pawsx": _target(
        "pawsx",
        "classification",
        _sources.PAWSX_LANGUAGES,
        "accuracy",
        "pawsx",
        "tsv",
        **_jiant(5.0, 32, 256, "d_write_configs.sh:23, c_tokenize_and_cache.sh:27"),
    ),
    # XTREME-R's chain, XLM-R large row (scripts/train_xcopa.sh L44-54: lr 3e-5, batch 2 x 16, 128 tokens, 5 epochs
    # per stage; the rest are transformers Trainer 4.9.2 defaults: no warmup or weight decay, the final model).
    "xcopa": _target(
        "xcopa",
        "multiple_choice",
        _sources.XCOPA_LANGUAGES,
        "accuracy",
        "xcopa",
        "jsonl",
        defaults=dict(
            epochs=5.0,
            batch_size=32,
            max_length=128,
            learning_rate=3e-5,
            warmup_fraction=0.0,
            weight_decay=0.0,
            selection="last",
        ),
        defaults_source=f"XTREME-R ({XTREME_SCRIPTS}/train_xcopa.sh)",
    ),
    "udpos": _target(
        "udpos",
        "tagging",
        _sources.UDPOS_LANGUAGES,
        "f1",
        "udpos",
        "tsv",
        **_jiant(10.0, 32, 256, "d_write_configs.sh:31, c_tokenize_and_cache.sh:47"),
    ),
    "panx": _target(
        "panx",
        "tagging",
        _sources.PANX_LANGUAGES,
        "f1",
        "panx",
        "tsv",
        **_jiant(10.0, 32, 256, "d_write_configs.sh:39, c_tokenize_and_cache.sh:77"),
    ),
    # Retrieval: no training data; the intermediate model's encoder is evaluated directly.
    "tatoeba": TaskSpec(
        name="tatoeba",
        family="sentence_retrieval",
        dataset="tatoeba",
        languages=TATOEBA_LANGUAGES,
        metric="accuracy",
        xtreme_name="tatoeba",
        prediction_extension="tsv",
        **_jiant(0.0, 32, 512, "c_tokenize_and_cache.sh:154"),
    ),
    "bucc": TaskSpec(
        name="bucc",
        family="bitext_mining",
        dataset="bucc",
        languages=BUCC_LANGUAGES,
        metric="f1",
        xtreme_name="bucc2018",
        prediction_extension="tsv",
        **_jiant(0.0, 32, 512, "c_tokenize_and_cache.sh:142"),
    ),
    # Retrieval with English training data: a dual encoder (tasks/dual_encoder.py), selected by English dev mAP@20.
    # LAReQA trains on SQuAD v1.1 question -> answer sentence pairs and searches the 11-language XQuAD-R pool;
    # Mewsli-X trains on English Wikipedia mention -> entity pairs and searches ~1M entities in 50 languages.
    "lareqa": TaskSpec(
        name="lareqa",
        family="dual_encoder",
        dataset="lareqa",
        languages=LAREQA_LANGUAGES,
        metric="map@20",
        eval_split="test",
        xtreme_name="lareqa",
        train_dataset="squad",
        dev_dataset="squad",
        # scripts/train_lareqa.sh L27-34: lr 2e-5, 3 epochs, batch 4 x accumulation 4, no warmup or
        # weight decay, candidates 256 tokens; checkpoints picked by hand in the paper: the final one.
        defaults=dict(
            epochs=3.0,
            batch_size=16,
            max_length=256,
            learning_rate=2e-5,
            warmup_fraction=0.0,
            weight_decay=0.0,
            micro_batches=4,
            selection="last",
        ),
        defaults_source=f"XTREME-R ({XTREME_SCRIPTS}/train_lareqa.sh)",
    ),
    "mewslix": TaskSpec(
        name="mewslix",
        family="dual_encoder",
        dataset="mewslix",
        languages=MEWSLIX_LANGUAGES,
        metric="map@20",
        eval_split="test",
        xtreme_name="mewslix",
        default_max_length=64,
        train_dataset="wikipedia_pairs",
        dev_dataset="wikipedia_pairs",
        # scripts/train_mewslix.sh L27-29, L40-46 (XLM-R large): lr 1e-5, 2 epochs, batch 8 x 4,
        # 64 tokens, no warmup or weight decay, the final model.
        defaults=dict(
            epochs=2.0,
            batch_size=32,
            max_length=64,
            learning_rate=1e-5,
            warmup_fraction=0.0,
            weight_decay=0.0,
            micro_batches=4,
            selection="last",
        ),
        defaults_source=f"XTREME-R ({XTREME_SCRIPTS}/train_mewslix.sh)",
    ),
}


# sentence_retrieval (Tatoeba: nearest neighbour of each sentence) and bitext_mining (BUCC: margin mining with a
# threshold) evaluate an encoder without training; dual_encoder (LAReQA, Mewsli-X) trains one on English pairs.
FAMILIES = (
    "span_qa",
    "classification",
    "multiple_choice",
    "tagging",
    "sentence_retrieval",
    "bitext_mining",
    "dual_encoder",
)
ENCODER_ONLY_FAMILIES = ("sentence_retrieval", "bitext_mining")
TRAINABLE_FAMILIES = ("span_qa", "classification", "multiple_choice", "tagging")
# The dataset family (data/task_sources) each task family reads its examples as.
_DATA_FAMILIES = {"classification": "pair", "multiple_choice": "choice", "tagging": "tagging", "span_qa": "qa"}


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise StiltsError(
            f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}. A task of your own is one "
            "register_task call in a Python file passed with --config.task_modules (README: "
            '"Add your own task")'
        )
    return TASKS[name]


def register_task(spec: TaskSpec, data: Any = None, *, replace: bool = False) -> TaskSpec:
    """Add a task (and, for a dataset the package does not know, its `data`: a task_sources.TaskDataset).

    Checks what would otherwise fail hours later: the family, the dataset's existence and family, a cross-lingual
    target's defaults (epochs, batch_size, max_length), and a name already taken (unless `replace`).
    """
    if not isinstance(spec, TaskSpec):
        raise StiltsError(f"register_task takes a TaskSpec, got {type(spec).__name__}")
    if spec.name in TASKS and not replace and TASKS[spec.name] != spec:
        raise StiltsError(f"task {spec.name!r} is already registered; choose another name or pass replace=True")
    if spec.family not in FAMILIES:
        raise StiltsError(f"task {spec.name!r}: unknown family {spec.family!r}; families: {', '.join(FAMILIES)}")
    if data is not None:
        _sources.register_dataset(spec.dataset, data, replace=replace)
    if spec.family in _DATA_FAMILIES:
        # The evaluated dataset, and those it trains and selects on (a QA target may train on squad).
        for name in dict.fromkeys(spec.dataset_and_split(which)[0] for which in ("eval", "train", "dev")):
            dataset = _sources.DATASETS.get(name)
            if dataset is None:
                how = (
                    "pass its TaskDataset as register_task(spec, data=...)"
                    if name == spec.dataset
                    else "add its TaskDataset with stilts_jax.data.task_sources.register_dataset first"
                )
                raise StiltsError(f"task {spec.name!r} reads dataset {name!r}, which is not known: {how}")
            if dataset.family != _DATA_FAMILIES[spec.family]:
                raise StiltsError(
                    f"task {spec.name!r} is {spec.family} but dataset {name!r} holds "
                    f"{dataset.family} examples (a {spec.family} task reads "
                    f"{_DATA_FAMILIES[spec.family]})"
                )
    if set(spec.languages) != {"en"}:
        missing = [key for key in ("epochs", "batch_size", "max_length") if key not in spec.defaults]
        if missing:
            raise StiltsError(
                f"task {spec.name!r} is a cross-lingual target: give its target-phase defaults, "
                f"TaskSpec(defaults=dict(epochs=..., batch_size=..., max_length=...), defaults_source="
                f"'where they come from'); missing: {', '.join(missing)}"
            )
    TASKS[spec.name] = spec
    return spec


def register_file_format(name: str, reader: Callable[..., list]) -> None:
    """A reader for a new file format: `reader(dataset: TaskDataset, name: str, path: pathlib.Path, split: str,
    language: str) -> list of examples` (PairExample, ChoiceExample or TaggedSentence); a TaskDataset selects it
    with `file_format=name`."""
    _sources.register_file_format(name, reader)
