"""Sentence-pair, multiple-choice and tagging datasets from real sources: an XTREME download folder, the Hugging Face
hub (or a local copy in its layout), prepared TFDS data, or plain files.

`load_examples(dataset, split, source)` returns language -> examples (PairExample, ChoiceExample or TaggedSentence of
data/examples.py); `labels(dataset)` is the dataset's label list (tag set for tagging) that example labels index.
Where each dataset lives in each kind of source is one entry of `DATASETS`. Splits are train, dev and test.

Layouts (checked against the sources' own code; see tests/fixtures/tasks/README.md):
- xtreme: google-research/xtreme `scripts/download_data.sh` + `utils_preprocess.py` write `./download/`:
  `xnli/train-en.tsv` (MNLI train, from XNLI-MT's multinli.train.en.tsv), `xnli/{dev,test}-{lang}.tsv`,
  `pawsx/train-en.tsv` (PAWS-Wiki labeled_final train), `pawsx/{dev,test}-{lang}.tsv`: rows `sentence1 TAB sentence2
  TAB label` written by Python's csv.writer (so quoted where a field holds a quote; read back with csv); test files have
  no label column. `udpos/` and `panx/` `{split}-{lang}.tsv`: `token TAB tag` lines, a blank line between sentences;
  test files hold tokens only. `xcopa/{train,val,test}-en.jsonl` (SuperGLUE COPA) and `xcopa/{val,test}-{lang}.jsonl`
  (XCOPA); utils_preprocess.py sets the label of every test record to 0, so test labels are read as missing. Older
  versions of the script wrote `xcopa/{split}.{lang}.jsonl` without touching labels; those names are read too.
  `siqa/socialIQa_v1.4_{trn,dev,tst}.jsonl` (answers `answerA..C`, label letter in `correct`).
  The download never holds test labels: such examples get label/tags None, and `require_labels=True` (always on for
  train) raises an error pointing to a labelled source.
- hf: parquet from the hub repos in `DATASETS`: facebook/xnli, google/xtreme, nyu-mll/glue,
  google-research-datasets/paws, facebook/anli, stanfordnlp/snli, tau/commonsense_qa and cambridgeltl/xcopa from their
  main branch; Rowan/hellaswag, allenai/cosmos_qa, allenai/social_i_qa and aps/super_glue (main: a loading script
  only) and unimelb-nlp/wikiann from the parquet export, revision refs/convert/parquet. `repo` may be a local folder in
  the hub layout: `{config}/{split}-*.parquet`, `{config}/{split}/*.parquet` (refs/convert/parquet),
  `data/{split}-*.parquet` or `default/{split}/*.parquet`.
  A `config` may contain `{lang}` (and `{name}`, the UD language name google/xtreme's udpos configs use).
- tfds: prepared ArrayRecord data read with `tfds.data_source(..., download=False)` (no TensorFlow needed).
  TFDS's `xtreme_pos` swaps Tamil and Tagalog: its `_LANGS` maps "ta" to "Tagalog" and "tl" to "Tamil", so config
  `xtreme_pos_ta` holds the Tagalog treebank and `xtreme_pos_tl` the Tamil one. Tamil is read from `xtreme_pos_tl` and
  Tagalog from `xtreme_pos_ta` (as long as the installed TFDS still has the swap).
- files: `paths`: split -> path, or split -> {language: path}; `.tsv` in the XTREME formats above or with a header row
  (GLUE's QQP/MNLI `train.tsv`, PAWS's original `train.tsv`), `.jsonl` records with the hub's field names or the
  original releases' (ANLI, SNLI, MNLI, COPA, XCOPA, CommonsenseQA, HellaSwag, Social IQa with its
  `{split}-labels.lst` next to it), `.csv` for Cosmos QA's original train/valid files. Datasets with a `files_layout`
  (CCG) also take `path`: a folder holding those file names, or a jiant task config JSON (`{"paths": {"train", "val",
  "test"}}`, relative paths taken from the config's folder).
- CCG (CCGbank, LDC2005T13) is LDC-licensed: no hub, TFDS or XTREME copy exists, so it is read from user files only, in
  jiant's format (`ccg.{train,dev,test}`: space-separated words TAB space-separated supertags, one sentence a line; a
  `tags_to_id.json` beside them is not needed) or CoNLL-like (`token TAB tag` lines, a blank line between sentences).
  Its tag set is open (about 1,300 supertags): `derive_tag_set` builds it from the training sentences (sorted, with the
  reserved UNKNOWN_TAG first, to which evaluation maps tags training never saw).

English training: XNLI, PAWS-X, UD-POS, PAN-X and XCOPA train on English only (MNLI; PAWS en; UD English; WikiANN en;
COPA), whatever `languages` asks. XCOPA's train split is COPA's; XNLI's from TFDS is multi_nli's. XCOPA's English dev
and test sets (asked for explicitly: English is no XCOPA evaluation language) are COPA's.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

from stilts_jax.data.examples import ChoiceExample, PairExample, TaggedSentence
from stilts_jax.data.sources import XTREME_HINT
from stilts_jax.data.tfds_reader import tfds_data_dir, tfds_records
from stilts_jax.errors import InputError

log = logging.getLogger(__name__)

Example = Union[PairExample, ChoiceExample, TaggedSentence]

SPLITS = ("train", "dev", "test")
KINDS = ("xtreme", "hf", "tfds", "files")
_KIND_KEYS = {
    "xtreme": {"path"},
    "hf": {"repo", "config", "revision", "cache_dir"},
    "tfds": {"name", "data_dir"},
    "files": {"paths", "path"},
}
CONVERTED = "refs/convert/parquet"  # the hub's parquet export branch: {config}/{split}/NNNN.parquet


class TaskDataError(InputError):
    """A record of a task dataset is unusable; the message names the file and line (or repo and row)."""


# --- label sets and languages ----------------------------------------------------------------------------------

NLI_LABELS = ("entailment", "neutral", "contradiction")  # the order of the HF, TFDS and GLUE class labels
PAWS_LABELS = ("0", "1")  # 1: paraphrase; XTREME's files and submissions use "0"/"1"
QQP_LABELS = ("not_duplicate", "duplicate")
UPOS_TAGS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
             "SCONJ", "SYM", "VERB", "X")  # the 17 UD tags, in the order of google/xtreme's and TFDS's class labels
PANX_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")  # the order of the HF and TFDS class labels

UNKNOWN_TAG = "<unk>"  # open tag sets (CCG): gold tags unseen in training are scored as this tag

_NLI_ALIASES = {"contradictory": "contradiction", "e": "entailment", "n": "neutral", "c": "contradiction"}

# google-research/xtreme evaluate.py TASK2LANGS (XTREME) and utils_preprocess.py (XTREME-R additions).
XNLI_LANGUAGES = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
PAWSX_LANGUAGES = ("de", "en", "es", "fr", "ja", "ko", "zh")
XCOPA_LANGUAGES = ("et", "ht", "id", "it", "qu", "sw", "ta", "th", "tr", "vi", "zh")
UDPOS_XTREME_LANGUAGES = ("af", "ar", "bg", "de", "el", "en", "es", "et", "eu", "fa", "fi", "fr", "he", "hi", "hu",
                          "id", "it", "ja", "kk", "ko", "mr", "nl", "pt", "ru", "ta", "te", "th", "tl", "tr", "ur",
                          "vi", "yo", "zh")
UDPOS_LANGUAGES = UDPOS_XTREME_LANGUAGES + ("lt", "pl", "uk", "wo", "ro")  # XTREME-R: 38 (UD v2.7 for the new five)
PANX_XTREME_LANGUAGES = ("ar", "he", "vi", "id", "jv", "ms", "tl", "eu", "ml", "ta", "te", "af", "nl", "en", "de", "el",
                         "bn", "hi", "mr", "ur", "fa", "fr", "it", "pt", "es", "bg", "ru", "ja", "ka", "ko", "th", "sw",
                         "yo", "my", "zh", "kk", "tr", "et", "fi", "hu")
PANX_LANGUAGES = PANX_XTREME_LANGUAGES + ("qu", "pl", "uk", "az", "lt", "pa", "gu", "ro")  # XTREME-R: 48
# UD treebanks (v2.5) without a dev set: Kazakh has train+test, Tagalog, Thai and Yoruba test only.
UDPOS_NO_DEV = frozenset({"kk", "tl", "th", "yo"})
# google/xtreme's udpos configs are named after the language.
UD_NAMES = {"af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "de": "German", "el": "Greek", "en": "English",
            "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fr": "French",
            "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese",
            "kk": "Kazakh", "ko": "Korean", "mr": "Marathi", "nl": "Dutch", "pt": "Portuguese", "ru": "Russian",
            "ta": "Tamil", "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "ur": "Urdu",
            "vi": "Vietnamese", "yo": "Yoruba", "zh": "Chinese"}
# COPA's `question` field names the relation; the question text is the one jiant (the paper's code) uses.
COPA_QUESTIONS = {"cause": "What was the cause of this?", "effect": "What happened as a result?"}


# --- where each dataset lives ----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class HfLocation:
    repo: str
    config: str | None  # may hold {lang} / {name}: one config per language
    splits: Mapping[str, tuple[str, ...]]  # our split -> hub split names (several are concatenated)
    revision: str | None = None
    languages: tuple[str, ...] | None = None  # languages the repo has, where fewer than the dataset's


@dataclasses.dataclass(frozen=True)
class TfdsLocation:
    names: tuple[str, ...]  # builder[/config] names, may hold {lang}; several are concatenated
    splits: Mapping[str, str]  # our split -> TFDS split
    languages: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class TaskDataset:
    """One dataset: its labels and languages, and where it lives in each kind of source."""

    family: str  # pair, choice or tagging
    labels: tuple[str, ...]
    languages: tuple[str, ...]
    reader: str  # the record reader for hf/tfds/jsonl rows: pair, copa, siqa, csqa, cosmos, hellaswag, tags
    xtreme: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)  # split -> path templates
    xtreme_format: str = ""  # pair_tsv, tags_tsv, copa_jsonl or siqa_jsonl
    hf: HfLocation | None = None
    tfds: TfdsLocation | None = None
    splits: tuple[str, ...] = SPLITS
    english_train_only: bool = False
    no_data: Mapping[str, frozenset[str]] = dataclasses.field(default_factory=dict)  # split -> languages lacking it
    label_aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)
    drop_unlabeled: bool = False  # SNLI: pairs without a gold label are not examples
    train_from: Mapping[str, str] = dataclasses.field(default_factory=dict)  # kind -> dataset holding train data
    parts: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)  # split -> combined datasets
    english_from: str | None = None  # the dataset serving English dev/test where English is no evaluation language
    hint: str = ""  # how to get the data, added to missing-source errors
    open_labels: bool = False  # the tag set comes from the training data (derive_tag_set), not from `labels`
    files_only: str = ""  # why only a 'files' source can hold this dataset (a license, no public copy)
    files_layout: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)  # split -> names under `path`
    tag_formats: tuple[str, ...] = ("conll",)  # tagging file formats read: conll (token TAB tag), jiant (line/sentence)

    @property
    def monolingual(self) -> str | None:
        return self.languages[0] if len(self.languages) == 1 else None

    def split_languages(self, split: str) -> tuple[str, ...]:
        if split == "train" and self.english_train_only:
            return ("en",)
        lacking = self.no_data.get(split, frozenset())
        return tuple(lang for lang in self.languages if lang not in lacking)


def _splits(train=("train",), dev=("validation",), test=("test",)) -> dict[str, tuple[str, ...]]:
    return {k: v for k, v in (("train", train), ("dev", dev), ("test", test)) if v}


DATASETS: dict[str, TaskDataset] = {
    # --- sentence pairs ---
    "xnli": TaskDataset(
        family="pair", labels=NLI_LABELS, languages=XNLI_LANGUAGES, reader="pair", english_train_only=True,
        xtreme={"train": ("xnli/train-{lang}.tsv",), "dev": ("xnli/dev-{lang}.tsv",),
                "test": ("xnli/test-{lang}.tsv",)},
        xtreme_format="pair_tsv", label_aliases=_NLI_ALIASES,
        hf=HfLocation("facebook/xnli", "{lang}", _splits()),  # config en's train split is MNLI's (XNLI-MT)
        tfds=TfdsLocation(("xnli",), {"dev": "validation", "test": "test"}),
        train_from={"tfds": "mnli"}),
    "mnli": TaskDataset(  # pairs without a gold label ('-') are dropped, as GLUE and TFDS do
        family="pair", labels=NLI_LABELS, languages=("en",), reader="pair", splits=("train", "dev"),
        drop_unlabeled=True,
        xtreme={"train": ("xnli/train-en.tsv",)}, xtreme_format="pair_tsv", label_aliases=_NLI_ALIASES,
        hf=HfLocation("nyu-mll/glue", "mnli", _splits(dev=("validation_matched",), test=())),
        tfds=TfdsLocation(("multi_nli",), {"train": "train", "dev": "validation_matched"})),
    "pawsx": TaskDataset(
        family="pair", labels=PAWS_LABELS, languages=PAWSX_LANGUAGES, reader="pair", english_train_only=True,
        xtreme={"train": ("pawsx/train-{lang}.tsv",), "dev": ("pawsx/dev-{lang}.tsv",),
                "test": ("pawsx/test-{lang}.tsv",)},
        xtreme_format="pair_tsv", label_aliases={"different_meaning": "0", "paraphrase": "1"},
        hf=HfLocation("google/xtreme", "PAWS-X.{lang}", _splits()),
        tfds=TfdsLocation(("paws_x_wiki/{lang}",), {"train": "train", "dev": "validation", "test": "test"})),
    "paws": TaskDataset(
        family="pair", labels=PAWS_LABELS, languages=("en",), reader="pair",
        xtreme={"train": ("pawsx/train-en.tsv",)}, xtreme_format="pair_tsv",
        label_aliases={"different_meaning": "0", "paraphrase": "1"},
        hf=HfLocation("google-research-datasets/paws", "labeled_final", _splits()),
        tfds=TfdsLocation(("paws_wiki/labeled_final_raw",), {"train": "train", "dev": "validation", "test": "test"})),
    "qqp": TaskDataset(
        family="pair", labels=QQP_LABELS, languages=("en",), reader="pair",
        label_aliases={"0": "not_duplicate", "1": "duplicate"},
        hf=HfLocation("nyu-mll/glue", "qqp", _splits()),
        tfds=TfdsLocation(("glue/qqp",), {"train": "train", "dev": "validation", "test": "test"})),
    "anli": TaskDataset(
        family="pair", labels=NLI_LABELS, languages=("en",), reader="pair", label_aliases=_NLI_ALIASES,
        hf=HfLocation("facebook/anli", "plain_text", _splits(("train_r1", "train_r2", "train_r3"),
                                                             ("dev_r1", "dev_r2", "dev_r3"),
                                                             ("test_r1", "test_r2", "test_r3"))),
        tfds=TfdsLocation(("anli/r1", "anli/r2", "anli/r3"), {"train": "train", "dev": "validation", "test": "test"})),
    "snli": TaskDataset(
        family="pair", labels=NLI_LABELS, languages=("en",), reader="pair", label_aliases=_NLI_ALIASES,
        drop_unlabeled=True,
        hf=HfLocation("stanfordnlp/snli", "plain_text", _splits()),
        tfds=TfdsLocation(("snli",), {"train": "train", "dev": "validation", "test": "test"})),
    # ANLI+ (the paper's intermediate task): ANLI rounds 1-3 + MNLI + SNLI for training; ANLI's dev and test sets.
    "anli_plus": TaskDataset(
        family="pair", labels=NLI_LABELS, languages=("en",), reader="pair",
        parts={"train": ("anli", "mnli", "snli"), "dev": ("anli",), "test": ("anli",)}),
    # --- multiple choice ---
    "xcopa": TaskDataset(
        family="choice", labels=("0", "1"), languages=XCOPA_LANGUAGES, reader="copa", english_train_only=True,
        xtreme={"train": ("xcopa/train-{lang}.jsonl", "xcopa/train.{lang}.jsonl"),
                "dev": ("xcopa/val-{lang}.jsonl", "xcopa/val.{lang}.jsonl"),
                "test": ("xcopa/test-{lang}.jsonl", "xcopa/test.{lang}.jsonl")},
        xtreme_format="copa_jsonl",
        hf=HfLocation("cambridgeltl/xcopa", "{lang}", _splits(train=())),
        train_from={"hf": "copa", "tfds": "copa"}, english_from="copa"),
    "copa": TaskDataset(
        family="choice", labels=("0", "1"), languages=("en",), reader="copa",
        xtreme={"train": ("xcopa/train-en.jsonl", "xcopa/train.en.jsonl"),
                "dev": ("xcopa/val-en.jsonl", "xcopa/val.en.jsonl"),
                "test": ("xcopa/test-en.jsonl", "xcopa/test.en.jsonl")},
        xtreme_format="copa_jsonl",
        hf=HfLocation("aps/super_glue", "copa", _splits(), revision=CONVERTED),
        tfds=TfdsLocation(("super_glue/copa",), {"train": "train", "dev": "validation", "test": "test"})),
    "siqa": TaskDataset(
        family="choice", labels=("A", "B", "C"), languages=("en",), reader="siqa",
        label_aliases={"1": "A", "2": "B", "3": "C"},
        xtreme={"train": ("siqa/socialIQa_v1.4_trn.jsonl",), "dev": ("siqa/socialIQa_v1.4_dev.jsonl",),
                "test": ("siqa/socialIQa_v1.4_tst.jsonl",)},
        xtreme_format="siqa_jsonl",
        hf=HfLocation("allenai/social_i_qa", None, _splits(test=()), revision=CONVERTED)),
    "commonsenseqa": TaskDataset(
        family="choice", labels=("A", "B", "C", "D", "E"), languages=("en",), reader="csqa",
        hf=HfLocation("tau/commonsense_qa", None, _splits()),
        tfds=TfdsLocation(("cos_e",), {"train": "train", "dev": "validation"})),  # CoS-E v1.11 carries CSQA v1.11
    "cosmosqa": TaskDataset(
        family="choice", labels=("0", "1", "2", "3"), languages=("en",), reader="cosmos",
        hf=HfLocation("allenai/cosmos_qa", None, _splits(), revision=CONVERTED),
        tfds=TfdsLocation(("cosmos_qa",), {"train": "train", "dev": "validation", "test": "test"})),
    "hellaswag": TaskDataset(
        family="choice", labels=("0", "1", "2", "3"), languages=("en",), reader="hellaswag",
        hf=HfLocation("Rowan/hellaswag", None, _splits(), revision=CONVERTED),
        tfds=TfdsLocation(("hellaswag",), {"train": "train", "dev": "validation", "test": "test"})),
    # --- tagging ---
    "udpos": TaskDataset(
        family="tagging", labels=UPOS_TAGS, languages=UDPOS_LANGUAGES, reader="tags", english_train_only=True,
        no_data={"dev": UDPOS_NO_DEV},
        xtreme={"train": ("udpos/train-{lang}.tsv",), "dev": ("udpos/dev-{lang}.tsv",),
                "test": ("udpos/test-{lang}.tsv",)},
        xtreme_format="tags_tsv",
        hf=HfLocation("google/xtreme", "udpos.{name}", _splits(), languages=UDPOS_XTREME_LANGUAGES),
        tfds=TfdsLocation(("xtreme_pos/xtreme_pos_{lang}",), {"train": "train", "dev": "dev", "test": "test"},
                          languages=UDPOS_XTREME_LANGUAGES),
        hint="google/xtreme and TFDS hold UD v2.5's 33 XTREME languages; XTREME-R's lt pl uk wo ro (UD v2.7) come "
             "with the XTREME download"),
    "panx": TaskDataset(
        family="tagging", labels=PANX_TAGS, languages=PANX_LANGUAGES, reader="tags", english_train_only=True,
        xtreme={"train": ("panx/train-{lang}.tsv",), "dev": ("panx/dev-{lang}.tsv",),
                "test": ("panx/test-{lang}.tsv",)},
        xtreme_format="tags_tsv",
        hf=HfLocation("unimelb-nlp/wikiann", "{lang}", _splits(), revision=CONVERTED),
        tfds=TfdsLocation(("wikiann/{lang}",), {"train": "train", "dev": "validation", "test": "test"}),
        hint="the XTREME download script needs AmazonPhotos.zip (the PAN-X release) saved by hand in download/ first; "
             "google/xtreme's configs PAN-X.{lang} hold XTREME's 40 languages"),
    "ccg": TaskDataset(
        family="tagging", labels=(), languages=("en",), reader="tags", open_labels=True,
        files_layout={"train": ("ccg.train", "train.tsv"), "dev": ("ccg.dev", "dev.tsv"),
                      "test": ("ccg.test", "test.tsv")},
        tag_formats=("jiant", "conll"),
        files_only="CCGbank (LDC2005T13) is licensed by the LDC, so no hub, TFDS or XTREME copy exists. Convert your "
                   "copy with jiant's scripts/ccg (ccg.train/ccg.dev/ccg.test) or to token<TAB>tag lines, and use "
                   "source kind 'files' with 'path' (that folder, or jiant's task config JSON) or 'paths' "
                   "(split -> file)"),
}


def labels(dataset: str) -> tuple[str, ...]:
    """The label list of `dataset` (tag set for tagging datasets); example labels are indices into it."""
    spec = _dataset(dataset)
    if spec.open_labels:
        raise InputError(f"{dataset}'s tag set is open: it comes from the training data (derive_tag_set of its train "
                         "split), not from a fixed list")
    return spec.labels


def has_open_labels(dataset: str) -> bool:
    """Whether `dataset`'s tag set comes from its training data (CCG) rather than a fixed list."""
    return _dataset(dataset).open_labels


def derive_tag_set(sentences: Sequence[TaggedSentence]) -> tuple[str, ...]:
    """An open tag set from training sentences: UNKNOWN_TAG, then every tag seen, sorted (the same on every run)."""
    seen: set[str] = set()
    for sentence in sentences:
        if sentence.tags is None:
            raise InputError(f"sentence {sentence.id!r} has no tags; the tag set comes from labelled training data")
        seen.update(sentence.tags)
    if UNKNOWN_TAG in seen:
        first = next(s for s in sentences if UNKNOWN_TAG in (s.tags or ()))
        raise InputError(f"sentence {first.id!r} uses the tag {UNKNOWN_TAG!r}, which is reserved for tags unseen in "
                         "training; rename it in the data")
    if not seen:
        raise InputError("no tagged sentences to take the tag set from")
    return (UNKNOWN_TAG, *sorted(seen))


def _dataset(name: str) -> TaskDataset:
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; valid datasets: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


# --- entry point -----------------------------------------------------------------------------------------------

def load_examples(dataset: str, split: str, source: Mapping[str, Any], languages: Sequence[str] | None = None, *,
                  require_labels: bool = False) -> dict[str, list[Example]]:
    """Language -> examples of `dataset`'s `split` (train, dev or test) read from `source`.

    `source["kind"]` is xtreme (`path`), hf (`repo`, `config`, `revision`, `cache_dir`), tfds (`name`, `data_dir`) or
    files (`paths`: split -> path, or split -> {language: path}). For anli_plus, `source` may also map each part
    (anli, mnli, snli) to its own source. `languages` restricts (and orders) the result; a language without data for
    the split is an error listing those that have it. English-trained datasets return {"en": ...} for train whatever
    `languages` asks. Examples without a label (XTREME's test files, hub test splits) carry label/tags None;
    `require_labels=True` (always on for train) makes them an error that says where labelled data is.
    Bad records raise TaskDataError naming the file and line; a missing source raises InputError saying how to get it.
    """
    spec = _dataset(dataset)
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r} for {dataset}; valid splits: {', '.join(SPLITS)}")
    if split not in spec.splits:
        raise InputError(f"{dataset} has no {split} split; its splits: {', '.join(spec.splits)}")
    if not isinstance(source, Mapping):
        raise InputError(f"a data source must be a mapping with a 'kind' key ({', '.join(KINDS)}), got {source!r}")
    requested = None if languages is None else (languages,) if isinstance(languages, str) else tuple(languages)
    requested = None if requested is None else tuple(dict.fromkeys(requested))
    available = spec.split_languages(split)
    english_only = split == "train" and spec.english_train_only
    if requested is not None and not requested:
        raise InputError(f"empty language list for {dataset} {split}; leave it out to load every language")
    if english_only:
        if requested is not None and requested != ("en",):
            log.info("%s train is English only; ignoring languages=%s", dataset, list(requested))
        wanted = ("en",)
    else:
        wanted = requested or available
        _check_languages(spec, dataset, split, wanted)
        if "en" in wanted and spec.english_from and "en" not in spec.languages and source.get("kind") != "files":
            # XCOPA's English is COPA (XTREME's download keeps it as xcopa/{split}-en.jsonl).
            kept = {k: v for k, v in source.items() if k in ("kind", "path", "cache_dir", "data_dir")}
            english = load_examples(spec.english_from, split, kept, ["en"], require_labels=require_labels)
            others = [lang for lang in wanted if lang != "en"]
            rest = load_examples(dataset, split, source, others, require_labels=require_labels) if others else {}
            return {lang: english["en"] if lang == "en" else rest[lang] for lang in wanted}

    if spec.parts:
        examples, where = _load_parts(spec, dataset, split, source)
    else:
        kind = _check_source(source)
        if spec.files_only and kind != "files":
            raise InputError(f"{dataset} cannot be read from a {kind!r} source: {spec.files_only}")
        delegate = spec.train_from.get(kind) if split == "train" else None
        if delegate:
            log.info("%s train from a %s source is %s's train split", dataset, kind, delegate)
            kept = {k: v for k, v in source.items() if k in ("kind", "cache_dir", "data_dir")}
            return load_examples(delegate, "train", kept, require_labels=require_labels)
        loader = {"xtreme": _from_xtreme, "hf": _from_hf, "tfds": _from_tfds, "files": _from_files}[kind]
        examples, where = loader(spec, dataset, split, source, wanted)

    if spec.drop_unlabeled:
        kept_examples = [ex for ex in examples if ex.label is not None]
        if len(kept_examples) < len(examples):
            log.info("%s %s: dropped %d pairs without a gold label", dataset, split, len(examples) - len(kept_examples))
        examples = kept_examples
    by_language: dict[str, list[Example]] = {}
    for ex in examples:
        by_language.setdefault(ex.language, []).append(ex)
    missing = [lang for lang in wanted if lang not in by_language]
    if missing:
        raise InputError(f"{where}: no {dataset} {split} data for language(s) {', '.join(missing)}; "
                         f"available: {', '.join(_ordered(by_language, spec.languages)) or 'none'}")
    result = {lang: by_language[lang] for lang in wanted}
    if require_labels or split == "train":
        _check_labels(spec, dataset, split, source, result, where)
    return result


def _check_source(source: Mapping[str, Any]) -> str:
    if "kind" not in source:
        raise InputError(f"a data source must be a mapping with a 'kind' key ({', '.join(KINDS)}), "
                         f"got {dict(source)!r}")
    kind = source["kind"]
    if kind not in KINDS:
        raise InputError(f"unknown source kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    unknown = set(source) - {"kind"} - _KIND_KEYS[kind]
    if unknown:
        raise InputError(f"unknown key(s) {', '.join(sorted(unknown))} for a {kind!r} source; "
                         f"valid keys: kind, {', '.join(sorted(_KIND_KEYS[kind]))}")
    return kind


def _check_languages(spec: TaskDataset, dataset: str, split: str, wanted: Sequence[str]) -> None:
    unknown = [lang for lang in wanted if lang not in spec.languages and not (lang == "en" and spec.english_from)]
    if unknown:
        raise InputError(f"{dataset} has no data for language(s) {', '.join(unknown)}; "
                         f"available: {', '.join(spec.languages)}")
    lacking = [lang for lang in wanted if lang not in spec.split_languages(split) and lang in spec.languages]
    if lacking:
        raise InputError(f"{dataset} has no {split} data for language(s) {', '.join(lacking)} (their treebanks have "
                         f"no {split} set); languages with {split} data: {', '.join(spec.split_languages(split))}")


def _ordered(found: Iterable[str], preferred: Sequence[str]) -> list[str]:
    found = list(found)
    return [lang for lang in preferred if lang in found] + sorted(lang for lang in found if lang not in preferred)


def _has_labels(ex: Example) -> bool:
    return (ex.tags if isinstance(ex, TaggedSentence) else ex.label) is not None


def _check_labels(spec: TaskDataset, dataset: str, split: str, source: Mapping[str, Any],
                  result: Mapping[str, list[Example]], where: str) -> None:
    unlabeled = [ex for examples in result.values() for ex in examples if not _has_labels(ex)]
    if not unlabeled:
        return
    total = sum(len(v) for v in result.values())
    first = unlabeled[0]
    why = ""
    if source.get("kind") == "xtreme":
        why = (" google-research/xtreme's download strips the labels of its test files (utils_preprocess.py; it sets "
               "every XCOPA test label to 0).")
    others = [f"kind hf (repo {spec.hf.repo})" if spec.hf else "",
              f"kind tfds ({spec.tfds.names[0]})" if spec.tfds else "", "kind files with the original labelled release"]
    raise InputError(f"{where}: {len(unlabeled)} of {total} {dataset} {split} examples carry no labels (first: "
                     f"{first.language} {first.id!r}).{why} {'Training' if split == 'train' else 'Scoring'} needs "
                     f"labels: evaluate against a labelled source: {'; '.join(o for o in others if o)}")


# --- label decoding --------------------------------------------------------------------------------------------

def _label_index(spec: TaskDataset, dataset: str, value: Any, where: str) -> int | None:
    """Index into spec.labels of a raw label: a class-label integer (negative: none), a label name or alias."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8")
    if isinstance(value, str):
        text = value.strip()
        if text in ("", "-"):  # '-': no gold label (MNLI/SNLI originals); '': hub test splits
            return None
        name = spec.label_aliases.get(text, text)
        if name in spec.labels:
            return spec.labels.index(name)
        raise TaskDataError(f"{where}: unknown label {value!r}; {dataset} labels: {', '.join(spec.labels)}")
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        index = int(value)
        if index < 0:
            return None
        if index >= len(spec.labels):
            raise TaskDataError(f"{where}: label {index} is out of range for {dataset}'s {len(spec.labels)} labels "
                                f"({', '.join(spec.labels)})")
        return index
    raise TaskDataError(f"{where}: label {value!r} is neither a label name nor a class index")


def _tag_names(spec: TaskDataset, dataset: str, values: Sequence[Any], where: str) -> tuple[str, ...]:
    tags = []
    for value in values:
        index = _label_index(spec, dataset, value, where)
        if index is None:
            raise TaskDataError(f"{where}: missing tag {value!r} in a tagged sentence")
        tags.append(spec.labels[index])
    return tuple(tags)


# --- field access for dict records (hf rows, TFDS records, jsonl lines) ----------------------------------------

def _text(value: Any, field: str, where: str) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8")
    if isinstance(value, str):
        return str(value)
    raise TaskDataError(f"{where}: field {field!r} holds {type(value).__name__}, not text")


def _seq(value: Any, field: str, where: str) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return list(value.tolist()) if getattr(value, "ndim", 1) else [value.tolist()]
    raise TaskDataError(f"{where}: field {field!r} holds {type(value).__name__}, not a list")


def _get(row: Mapping[str, Any], names: Sequence[str], where: str, required: bool = True) -> Any:
    for name in names:
        if name in row:
            return row[name]
    if required:
        raise TaskDataError(f"{where}: no {'/'.join(names)} field; the record has {', '.join(sorted(map(str, row)))}")
    return None


def _record_id(row: Mapping[str, Any], names: Sequence[str], default: str) -> str:
    value = _get(row, names, "", required=False)
    if value is None or value == "":
        return default
    return bytes(value).decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


# Each reader turns one record into an example of `language`; `index` numbers records for default ids.
Reader = Callable[[TaskDataset, str, Mapping[str, Any], str, str, str], Example]


def _read_pair(spec: TaskDataset, dataset: str, row: Mapping[str, Any], language: str, default_id: str,
               where: str) -> PairExample:
    text_a = _text(_get(row, ("premise", "sentence1", "question1", "context"), where), "premise", where)
    text_b = _text(_get(row, ("hypothesis", "sentence2", "question2"), where), "hypothesis", where)
    raw = _get(row, ("label", "gold_label", "is_duplicate"), where, required=False)
    return PairExample(id=_record_id(row, ("id", "uid", "pairID", "idx"), default_id), text_a=text_a, text_b=text_b,
                       label=_label_index(spec, dataset, raw, where), language=language)


def _read_copa(spec: TaskDataset, dataset: str, row: Mapping[str, Any], language: str, default_id: str,
               where: str) -> ChoiceExample:
    relation = _text(_get(row, ("question",), where), "question", where).strip()
    if relation not in COPA_QUESTIONS:
        raise TaskDataError(f"{where}: question {relation!r} is neither 'cause' nor 'effect'")
    choices = tuple(_text(_get(row, (f"choice{i}",), where), f"choice{i}", where) for i in (1, 2))
    return ChoiceExample(id=_record_id(row, ("idx", "id"), default_id),
                         context=_text(_get(row, ("premise",), where), "premise", where),
                         question=COPA_QUESTIONS[relation], choices=choices,
                         label=_label_index(spec, dataset, _get(row, ("label",), where, required=False), where),
                         language=language)


def _read_siqa(spec: TaskDataset, dataset: str, row: Mapping[str, Any], language: str, default_id: str,
               where: str) -> ChoiceExample:
    raw = _get(row, ("correct", "label"), where, required=False)  # correct: A-C (XTREME's v1.4); label: 1-3
    if isinstance(raw, numbers.Integral) and not isinstance(raw, bool):
        raw = str(int(raw))
    return ChoiceExample(id=_record_id(row, ("id",), default_id),
                         context=_text(_get(row, ("context",), where), "context", where),
                         question=_text(_get(row, ("question",), where), "question", where),
                         choices=tuple(_text(_get(row, (f"answer{c}",), where), f"answer{c}", where) for c in "ABC"),
                         label=_label_index(spec, dataset, raw, where), language=language)


def _read_csqa(spec: TaskDataset, dataset: str, row: Mapping[str, Any], language: str, default_id: str,
               where: str) -> ChoiceExample:
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
            keys = list(spec.labels[:len(texts)])
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
    return ChoiceExample(id=_record_id(row, ("id",), default_id), context=question, question="",
                         choices=tuple(texts), label=label, language=language)


def _read_cosmos(spec: TaskDataset, dataset: str, row: Mapping[str, Any], language: str, default_id: str,
                 where: str) -> ChoiceExample:
    raw = _get(row, ("label",), where, required=False)
    if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
        raw = int(raw)  # the original CSV files
    return ChoiceExample(id=_record_id(row, ("id",), default_id),
                         context=_text(_get(row, ("context",), where), "context", where),
                         question=_text(_get(row, ("question",), where), "question", where),
                         choices=tuple(_text(_get(row, (f"answer{i}",), where), f"answer{i}", where) for i in range(4)),
                         label=_label_index(spec, dataset, raw, where), language=language)


def _read_hellaswag(spec: TaskDataset, dataset: str, row: Mapping[str, Any], language: str, default_id: str,
                    where: str) -> ChoiceExample:
    if "ctx_a" in row:  # hub and original: the context is ctx_a followed by ctx_b (the start of the ending)
        parts = [_text(row["ctx_a"], "ctx_a", where).strip(), _text(row.get("ctx_b") or "", "ctx_b", where).strip()]
        context = " ".join(p for p in parts if p)
    else:  # TFDS: ctx, already joined
        context = _text(_get(row, ("ctx", "context"), where), "ctx", where).strip()
    endings = tuple(_text(e, "endings", where) for e in _seq(_get(row, ("endings",), where), "endings", where))
    return ChoiceExample(id=_record_id(row, ("ind", "id"), default_id), context=context, question="", choices=endings,
                         label=_label_index(spec, dataset, _get(row, ("label",), where, required=False), where),
                         language=language)


def _read_tags(spec: TaskDataset, dataset: str, row: Mapping[str, Any], language: str, default_id: str,
               where: str) -> TaggedSentence:
    tokens = tuple(_text(t, "tokens", where) for t in _seq(_get(row, ("tokens", "words"), where), "tokens", where))
    raw = _get(row, ("ner_tags", "pos_tags", "upos", "tags", "ner"), where, required=False)
    tags = None if raw is None else _tag_names(spec, dataset, _seq(raw, "tags", where), where)
    if tags is not None and len(tags) != len(tokens):
        raise TaskDataError(f"{where}: {len(tokens)} tokens but {len(tags)} tags")
    return TaggedSentence(id=_record_id(row, ("id",), default_id), tokens=tokens, tags=tags, language=language)


READERS: dict[str, Reader] = {"pair": _read_pair, "copa": _read_copa, "siqa": _read_siqa, "csqa": _read_csqa,
                              "cosmos": _read_cosmos, "hellaswag": _read_hellaswag, "tags": _read_tags}


def _read_record(spec: TaskDataset, dataset: str, row: Mapping[str, Any], language: str, default_id: str,
                 where: str) -> Example:
    try:
        return READERS[spec.reader](spec, dataset, row, language, default_id, where)
    except TaskDataError:
        raise
    except (KeyError, TypeError, ValueError, UnicodeDecodeError, AttributeError) as e:
        raise TaskDataError(f"{where}: malformed record ({type(e).__name__}: {e})") from e


# --- XTREME file formats (xtreme and files) --------------------------------------------------------------------

def _read_pair_tsv(spec: TaskDataset, dataset: str, path: Path, split: str, language: str) -> list[PairExample]:
    """sentence1 TAB sentence2 [TAB label], as utils_preprocess.py writes it with csv.writer (quoting included)."""
    examples: list[PairExample] = []
    columns = first_line = None
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        while True:
            line = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                raise TaskDataError(f"{path} line {line}: {e}") from e
            if not row:
                continue
            if len(row) not in (2, 3):
                raise TaskDataError(f"{path} line {line}: expected 3 tab-separated columns (sentence1, sentence2, "
                                    f"label), or 2 in a test file without labels; got {len(row)}")
            if columns is None:
                columns, first_line = len(row), line
            elif len(row) != columns:
                raise TaskDataError(f"{path} line {line}: {len(row)} columns, but line {first_line} has {columns}")
            label = _label_index(spec, dataset, row[2], f"{path} line {line}") if len(row) == 3 else None
            if len(row) == 3 and label is None:
                raise TaskDataError(f"{path} line {line}: empty label")
            examples.append(PairExample(id=f"{split}-{language}-{len(examples)}", text_a=row[0], text_b=row[1],
                                        label=label, language=language))
    return examples


def _read_tags_tsv(spec: TaskDataset, dataset: str, path: Path, split: str, language: str) -> list[TaggedSentence]:
    """token TAB tag lines, a blank line between sentences; test files hold tokens only (tags None)."""
    sentences: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    tagged = first_token_line = None

    def close() -> None:
        if tokens:
            sentences.append(TaggedSentence(id=f"{split}-{language}-{len(sentences)}", tokens=tuple(tokens),
                                            tags=tuple(tags) if tagged else None, language=language))
            tokens.clear()
            tags.clear()

    with path.open(encoding="utf-8") as f:
        for number, raw in enumerate(f, 1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                close()
                continue
            fields = line.split("\t")
            if len(fields) > 2:
                raise TaskDataError(f"{path} line {number}: expected token<TAB>tag, got {len(fields)} tab-separated "
                                    "columns")
            # A token may be empty: utils_preprocess.py strips PAN-X tokens, and XTREME's reader keeps the word.
            has_tag = len(fields) == 2
            if tagged is None:
                tagged, first_token_line = has_tag, number
            elif has_tag != tagged:
                if tagged:
                    raise TaskDataError(f"{path} line {number}: token {fields[0]!r} without a tag (expected "
                                        "token<TAB>tag like the file's other lines)")
                raise TaskDataError(f"{path} line {number}: a tagged token in a file whose tokens have no tags (line "
                                    f"{first_token_line} has none)")
            tokens.append(fields[0])
            if has_tag:
                tag = fields[1].strip()
                if spec.open_labels and not tag:
                    raise TaskDataError(f"{path} line {number}: empty tag after the tab")
                if not spec.open_labels and tag not in spec.labels:
                    raise TaskDataError(f"{path} line {number}: unknown tag {tag!r}; {dataset} tags: "
                                        f"{', '.join(spec.labels)}")
                tags.append(tag)
        close()
    return sentences


def _read_jiant_tags(spec: TaskDataset, dataset: str, path: Path, split: str, language: str) -> list[TaggedSentence]:
    """jiant's tagging files (CCG: ccg.train, ...): one sentence a line, space-separated words TAB space-separated
    tags, one tag per word (written by jiant's scripts/ccg/ccg_proc.py)."""
    sentences = []
    with path.open(encoding="utf-8") as f:
        for number, raw in enumerate(f, 1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != 2:
                raise TaskDataError(f"{path} line {number}: expected `words<TAB>tags` (jiant's CCG format: the "
                                    f"sentence's words, a tab, one tag per word), got {len(fields)} tab-separated "
                                    "fields")
            words, tags = fields[0].split(), fields[1].split()
            if not words or len(words) != len(tags):
                raise TaskDataError(f"{path} line {number}: {len(words)} words but {len(tags)} tags; jiant's format "
                                    "has one space-separated tag per word")
            sentences.append(TaggedSentence(id=f"{split}-{language}-{len(sentences)}", tokens=tuple(words),
                                            tags=tuple(tags), language=language))
    return sentences


def _tag_file_format(spec: TaskDataset, path: Path) -> str:
    """jiant (a sentence a line: its words hold spaces) or conll (a token a line), from the first non-blank line."""
    if "jiant" not in spec.tag_formats:
        return "conll"
    with path.open(encoding="utf-8") as f:
        for raw in f:
            if raw.strip():
                return "jiant" if " " in raw.split("\t")[0].strip() else "conll"
    return "conll"


_HEADER_TEXT_COLUMNS = ({"sentence1", "question1", "premise"}, {"sentence2", "question2", "hypothesis"})


def _header_tsv_columns(path: Path) -> list[str] | None:
    """The column names of a TSV whose first row is a header (GLUE's QQP/MNLI, PAWS's original release), else None."""
    with path.open(encoding="utf-8", newline="") as f:
        first = f.readline().rstrip("\r\n").split("\t")
    names = {c.strip() for c in first}
    return [c.strip() for c in first] if all(names & group for group in _HEADER_TEXT_COLUMNS) else None


def _read_header_tsv(spec: TaskDataset, dataset: str, path: Path, split: str, language: str,
                     columns: list[str]) -> list[Example]:
    """Rows under a header, fields not quoted (csv.QUOTE_NONE, as GLUE's and PAWS's own readers take them)."""
    examples = []
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        for row in reader:
            where = f"{path} line {reader.line_num}"
            if not row:
                continue
            if len(row) != len(columns):
                raise TaskDataError(f"{where}: {len(row)} tab-separated fields, but the header (line 1) names "
                                    f"{len(columns)}: {', '.join(columns)}")
            record = dict(zip(columns, row))
            examples.append(_read_record(spec, dataset, record, language, f"{split}-{language}-{len(examples)}", where))
    return examples


def _read_jsonl(spec: TaskDataset, dataset: str, path: Path, split: str, language: str,
                labels_zeroed: bool = False) -> list[Example]:
    """One JSON record per line, read with the dataset's record reader. Social IQa's original release keeps its
    labels (1-3) in `{name}-labels.lst` next to `{name}.jsonl`; `labels_zeroed`: XTREME's XCOPA test files."""
    records = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise TaskDataError(f"{path} line {number}: not a JSON record ({e})") from e
            if not isinstance(row, dict):
                raise TaskDataError(f"{path} line {number}: a JSON record must be an object")
            records.append((number, row))
    labels_file = path.with_name(f"{path.stem}-labels.lst")
    if spec.reader == "siqa" and labels_file.is_file() and not any("correct" in r or "label" in r for _, r in records):
        values = [v.strip() for v in labels_file.read_text(encoding="utf-8").splitlines() if v.strip()]
        if len(values) != len(records):
            raise TaskDataError(f"{labels_file}: {len(values)} labels for the {len(records)} records of {path}")
        records = [(n, {**r, "label": v}) for (n, r), v in zip(records, values)]
    examples = []
    for i, (number, row) in enumerate(records):
        if labels_zeroed:
            row = {k: v for k, v in row.items() if k != "label"}
        examples.append(_read_record(spec, dataset, row, language, f"{split}-{language}-{i}", f"{path} line {number}"))
    return examples


def _read_csv(spec: TaskDataset, dataset: str, path: Path, split: str, language: str) -> list[Example]:
    """A CSV file with a header row (Cosmos QA's original train.csv / valid.csv)."""
    examples = []
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        for i, row in enumerate(reader):
            where = f"{path} line {reader.line_num}"
            if None in row:
                raise TaskDataError(f"{where}: more fields than the header's {len(reader.fieldnames or [])}")
            examples.append(_read_record(spec, dataset, row, language, f"{split}-{language}-{i}", where))
    return examples


def _read_file(spec: TaskDataset, dataset: str, path: Path, split: str, language: str,
               labels_zeroed: bool = False) -> list[Example]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return _read_jsonl(spec, dataset, path, split, language, labels_zeroed)
    if suffix == ".csv":
        return _read_csv(spec, dataset, path, split, language)
    if spec.family == "pair":
        columns = _header_tsv_columns(path)
        if columns is not None:
            return _read_header_tsv(spec, dataset, path, split, language, columns)
        return _read_pair_tsv(spec, dataset, path, split, language)
    if spec.family == "tagging":
        if _tag_file_format(spec, path) == "jiant":
            return _read_jiant_tags(spec, dataset, path, split, language)
        return _read_tags_tsv(spec, dataset, path, split, language)
    raise InputError(f"{path}: {dataset} files are .jsonl (or .csv for Cosmos QA's originals), "
                     f"not {suffix or 'no suffix'}")


def _from_xtreme(spec: TaskDataset, dataset: str, split: str, source: Mapping[str, Any],
                 wanted: Sequence[str]) -> tuple[list[Example], str]:
    hint = XTREME_HINT + (f" ({spec.hint})" if spec.hint else "")
    if not source.get("path"):
        raise InputError(f"an 'xtreme' source needs 'path', the folder written by scripts/download_data.sh: {hint}")
    root = Path(source["path"]).expanduser()
    templates = spec.xtreme.get(split)
    if not templates:
        others = [k for k, loc in (("hf", spec.hf), ("tfds", spec.tfds)) if loc and split in loc.splits]
        raise InputError(f"the XTREME download has no {dataset} {split} data; use a source of kind "
                         f"{' or '.join(others + ['files'])}")
    where = f"XTREME download {root}"
    examples: list[Example] = []
    for lang in wanted:
        candidates = [root / t.format(lang=lang) for t in templates]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            folder = "" if root.is_dir() else f" (the XTREME download folder {root} does not exist)"
            raise InputError(f"{dataset} {split} data not found: {candidates[0]} is missing{folder}; that is where "
                             f"google-research/xtreme scripts/download_data.sh puts it. To get it, {hint}.")
        # utils_preprocess.py sets every label of the current layout's XCOPA test files to 0.
        zeroed = spec.xtreme_format == "copa_jsonl" and split == "test" and path == candidates[0]
        examples.extend(_read_file(spec, dataset, path, split, lang, labels_zeroed=zeroed))
    return examples, where


def _jiant_config_paths(config: Path) -> dict[str, str]:
    """split -> file of a jiant task config JSON ({"task", "paths": {"train", "val", "test", ...}, "name"})."""
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{config}: cannot read it as a jiant task config JSON ({type(e).__name__}: {e})") from e
    paths = data.get("paths") if isinstance(data, dict) else None
    if not isinstance(paths, dict):
        raise InputError(f"{config}: a jiant task config needs a \"paths\" object (train, val, test)")
    resolved = {}
    for split, key in (("train", "train"), ("dev", "val"), ("test", "test")):
        if isinstance(paths.get(key), str):
            file = Path(paths[key]).expanduser()
            resolved[split] = str(file if file.is_absolute() else config.parent / file)
    return resolved


def _paths_under(spec: TaskDataset, dataset: str, split: str, root: Path) -> dict[str, str]:
    """split -> file for a 'files' source's `path`: a folder in `files_layout`, or a jiant task config JSON."""
    if not spec.files_layout:
        raise InputError(f"a 'files' source of {dataset} needs 'paths' (split -> file); 'path' works for datasets with "
                         "a known folder layout (ccg)")
    if root.is_file():
        return _jiant_config_paths(root)
    if not root.is_dir():
        raise InputError(f"the 'files' source's path {root} does not exist; give the folder holding "
                         f"{' or '.join(spec.files_layout.get('train', ()))} or a jiant task config JSON")
    found = {}
    for name, candidates in spec.files_layout.items():
        hit = next((root / c for c in candidates if (root / c).is_file()), None)
        if hit is not None:
            found[name] = str(hit)
    if split not in found:
        wanted = spec.files_layout.get(split, ())
        raise InputError(f"{dataset} {split} file not found in {root}: expected {' or '.join(wanted) or 'nothing'} "
                         f"there (jiant's names, or CoNLL-like split files)")
    return found


def _from_files(spec: TaskDataset, dataset: str, split: str, source: Mapping[str, Any],
                wanted: Sequence[str]) -> tuple[list[Example], str]:
    paths = source.get("paths")
    if source.get("path") and not paths:
        paths = _paths_under(spec, dataset, split, Path(str(source["path"])).expanduser())
    if not isinstance(paths, Mapping) or not paths:
        raise InputError("a 'files' source needs 'paths': a mapping split -> path, or split -> {language: path}")
    if split not in paths:
        raise InputError(f"the 'files' source has no {split!r} entry (it has: {', '.join(map(str, paths))}); "
                         f"valid splits: {', '.join(SPLITS)}")
    entry = paths[split]
    if isinstance(entry, Mapping):
        bad = [lang for lang in entry if lang not in spec.languages
               and not (lang == "en" and (split == "train" or spec.english_from))]
        if bad:
            raise InputError(f"'files' {split} paths name language(s) {', '.join(map(str, bad))} that {dataset} does "
                             f"not have; its languages: {', '.join(spec.languages)}")
        absent = [lang for lang in wanted if lang not in entry]
        if absent:
            raise InputError(f"the 'files' source has no {dataset} {split} file for language(s) {', '.join(absent)}; "
                             f"available: {', '.join(_ordered(entry, spec.languages))}")
        chosen = {lang: entry[lang] for lang in wanted}
    else:
        if len(wanted) != 1:
            raise InputError(f"{dataset} has several languages: give 'files' {split} paths as {{language: path}}")
        chosen = {wanted[0]: entry}
    examples: list[Example] = []
    for lang, p in chosen.items():
        path = Path(p).expanduser()
        if not path.is_file():
            raise InputError(f"{dataset} {split} file {path} does not exist (from the 'files' source's paths)")
        examples.extend(_read_file(spec, dataset, path, split, lang))
    return examples, "files " + ", ".join(str(p) for p in chosen.values())


# --- Hugging Face ----------------------------------------------------------------------------------------------

def _local_parquet(folder: Path, config: str | None, split: str) -> list[Path]:
    """Parquet files of `split` in a local copy of a hub repo, in the layouts the hub uses."""
    base = folder / config if config else folder
    patterns = [(base, f"{split}-*.parquet"), (base / split, "*.parquet"), (base, f"*-{split}.parquet")]
    if not config:
        patterns += [(folder / "data", f"{split}-*.parquet"), (folder / "default" / split, "*.parquet"),
                     (folder / "default", f"*-{split}.parquet")]
    for directory, pattern in patterns:
        files = sorted(directory.glob(pattern)) if directory.is_dir() else []
        if files:
            return files
    return []


def _parquet_rows(files: Sequence[Path]) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    for path in files:
        try:
            batches = pq.ParquetFile(path).iter_batches(batch_size=4096)
        except Exception as e:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ...
            raise InputError(f"cannot read {path} as parquet ({type(e).__name__}: {e}); a Git LFS pointer instead of "
                             "the file? Download the repo with `hf download` or `git lfs pull`") from e
        for batch in batches:
            yield from batch.to_pylist()


def _dataset_rows(ds: Any) -> Iterator[dict[str, Any]]:
    for batch in ds.iter(batch_size=1024):
        names = list(batch)
        for i in range(len(batch[names[0]]) if names else 0):
            yield {name: batch[name][i] for name in names}


def _hf_rows(repo: str, config: str | None, hf_split: str, revision: str | None, explicit_revision: bool,
             cache_dir: str | None) -> tuple[Iterator[dict[str, Any]], str]:
    folder = Path(repo).expanduser()
    where = f"Hugging Face dataset {repo} (config {config}, split {hf_split})"
    if folder.is_dir():
        if explicit_revision:
            raise InputError(f"'revision' applies to hub repos, not to the local folder {folder}")
        files = _local_parquet(folder, config, hf_split)
        if files:
            return _parquet_rows(files), where
        if not (folder / "README.md").is_file():
            layout = f"{config}/{hf_split}-*.parquet" if config else f"data/{hf_split}-*.parquet"
            raise InputError(f"{where}: the local folder {folder} holds no parquet files for this split; it should "
                             f"hold the hub repo's files, e.g. {layout} (or {config or 'default'}/{hf_split}/*.parquet "
                             f"from {CONVERTED})")
    elif repo.startswith(("/", "./", "../", "~")):
        raise InputError(f"the 'hf' source's repo {repo!r} looks like a local folder but {folder} does not exist")
    try:
        import datasets
    except ImportError as e:
        raise InputError(f"the 'hf' source needs the `datasets` package (pip install datasets): {e}") from e
    try:
        if folder.is_dir():  # the folder's README.md (dataset card) maps configs and splits to files
            ds = datasets.load_dataset(str(folder), config, split=hf_split, cache_dir=cache_dir)
        elif revision == CONVERTED:  # the export branch: {config}/{split}/NNNN.parquet, no dataset card configs
            ds = datasets.load_dataset(repo, revision=revision, cache_dir=cache_dir, split=hf_split,
                                       data_files={hf_split: f"{config or 'default'}/{hf_split}/*.parquet"})
        else:
            ds = datasets.load_dataset(repo, config, split=hf_split, revision=revision, cache_dir=cache_dir)
    except Exception as e:  # datasets raises many types (ConnectionError, DatasetNotFoundError, ValueError, ...)
        if folder.is_dir():
            raise InputError(f"could not load {where} from the local folder {folder}: {type(e).__name__}: {e}") from e
        other = CONVERTED if revision != CONVERTED else "main"
        raise InputError(
            f"could not load {where} (revision {revision or 'main'}): {type(e).__name__}: {e}. Without network access, "
            f"copy the repo elsewhere (`hf download {repo} --repo-type dataset --local-dir DIR`, adding "
            f"`--revision {CONVERTED}` for the parquet export) and set repo to that local folder, try revision "
            f"{other!r}, or use the 'xtreme' or 'tfds' source") from e
    return _dataset_rows(ds), where


def _from_hf(spec: TaskDataset, dataset: str, split: str, source: Mapping[str, Any],
             wanted: Sequence[str]) -> tuple[list[Example], str]:
    loc = spec.hf
    if loc is None or split not in loc.splits:
        raise InputError(f"the Hugging Face hub has no {dataset} {split} data known to this loader; use a source of "
                         f"kind {'xtreme or ' if split in spec.xtreme else ''}files")
    repo = str(source.get("repo") or loc.repo)
    config = source.get("config", loc.config)
    explicit = source.get("revision") is not None
    revision = source.get("revision") if explicit else (loc.revision if repo == loc.repo else None)
    per_language = config is not None and "{" in str(config)
    if per_language and loc.languages is not None and repo == loc.repo:
        absent = [lang for lang in wanted if lang not in loc.languages]
        if absent:
            raise InputError(f"{loc.repo} has no {dataset} data for language(s) {', '.join(absent)}"
                             f"{'; ' + spec.hint if spec.hint else ''}")
    examples: list[Example] = []
    wheres = []
    groups = [(lang, str(config).format(lang=lang, name=UD_NAMES.get(lang, lang))) for lang in wanted] \
        if per_language else [(spec.monolingual, config)]
    for lang, cfg in groups:
        for hf_split in loc.splits[split]:
            rows, where = _hf_rows(repo, cfg, hf_split, revision, explicit, source.get("cache_dir"))
            wheres.append(where)
            examples.extend(_rows_to_examples(spec, dataset, split, rows, lang, wanted, where, "row"))
    return examples, wheres[0] if len(wheres) == 1 else f"Hugging Face dataset {repo} ({len(wheres)} configs/splits)"


def _rows_to_examples(spec: TaskDataset, dataset: str, split: str, rows: Iterable[Mapping[str, Any]],
                      language: str | None, wanted: Sequence[str], where: str, unit: str) -> list[Example]:
    """Examples of dict records; rows carrying a `language` column (google/xtreme's XNLI) give their own language."""
    examples = []
    for index, row in enumerate(rows):
        lang = language
        if "language" in row and isinstance(row["language"], (str, bytes)):
            lang = _text(row["language"], "language", where)
            if lang not in wanted:
                continue
        if lang is None:
            raise TaskDataError(f"{where}: {dataset} has several languages but its records carry none; name one "
                                "language's data (an hf config or a TFDS name holding {lang})")
        examples.append(_read_record(spec, dataset, row, lang, f"{split}-{lang}-{index}", f"{where} {unit} {index}"))
    return examples


# --- TFDS ------------------------------------------------------------------------------------------------------

def _xtreme_pos_swapped() -> bool:
    """Whether the installed TFDS still files Tagalog under xtreme_pos_ta and Tamil under xtreme_pos_tl."""
    try:
        from tensorflow_datasets.datasets.xtreme_pos import xtreme_pos_dataset_builder as builder
    except Exception:  # noqa: BLE001 - an unimportable builder: assume the release this code was checked against
        return True
    return getattr(builder, "_LANGS", {}).get("ta") == "Tagalog"


def _tfds_name(template: str, lang: str | None) -> str:
    if lang is not None and template.startswith("xtreme_pos/") and lang in ("ta", "tl") and _xtreme_pos_swapped():
        lang = {"ta": "tl", "tl": "ta"}[lang]  # TFDS's swap, undone
    return template.format(lang=lang)


def _xnli_tfds_rows(rows: Iterable[Mapping[str, Any]], split: str, wanted: Sequence[str],
                    where: str) -> Iterator[dict[str, Any]]:
    """TFDS xnli holds each pair in all 15 languages: premise {lang: text}, hypothesis {language: [],
    translation: []}."""
    for index, row in enumerate(rows):
        premise, hypothesis = row["premise"], row["hypothesis"]
        hyp_languages = [_text(v, "hypothesis.language", where)
                         for v in _seq(hypothesis["language"], "language", where)]
        translations = _seq(hypothesis["translation"], "translation", where)
        for lang in wanted:
            if lang not in premise or lang not in hyp_languages:
                raise TaskDataError(f"{where} record {index}: no {lang} text")
            yield {"premise": premise[lang], "hypothesis": translations[hyp_languages.index(lang)],
                   "label": row["label"], "language": lang, "id": f"{split}-{lang}-{index}"}


def _from_tfds(spec: TaskDataset, dataset: str, split: str, source: Mapping[str, Any],
               wanted: Sequence[str]) -> tuple[list[Example], str]:
    loc = spec.tfds
    if loc is None or split not in loc.splits:
        raise InputError(f"TFDS has no {dataset} {split} data known to this loader; use a source of kind "
                         f"{'xtreme, ' if split in spec.xtreme else ''}{'hf or ' if spec.hf else ''}files")
    data_dir = tfds_data_dir(source)
    names = (str(source["name"]),) if source.get("name") else loc.names
    per_language = "{" in names[0]
    if per_language and loc.languages is not None and not source.get("name"):
        absent = [lang for lang in wanted if lang not in loc.languages]
        if absent:
            raise InputError(f"TFDS {names[0].split('/')[0]} has no {dataset} data for language(s) {', '.join(absent)}"
                             f"{'; ' + spec.hint if spec.hint else ''}")
    examples: list[Example] = []
    wheres = []
    groups = [(lang, _tfds_name(n, lang)) for lang in wanted for n in names] if per_language \
        else [(spec.monolingual, n) for n in names]
    for lang, name in groups:
        rows, where = tfds_records(name, loc.splits[split], data_dir)
        wheres.append(where)
        if name.split("/")[0].split(":")[0] == "xnli":
            rows = _xnli_tfds_rows(rows, split, wanted, where)
        examples.extend(_rows_to_examples(spec, dataset, split, rows, lang, wanted, where, "record"))
    return examples, wheres[0] if len(wheres) == 1 else f"TFDS {', '.join(names)} in {data_dir}"


# --- combinations (ANLI+) ------------------------------------------------------------------------------------

def _load_parts(spec: TaskDataset, dataset: str, split: str,
                source: Mapping[str, Any]) -> tuple[list[Example], str]:
    parts = spec.parts[split]
    all_parts = sorted({p for ps in spec.parts.values() for p in ps})
    if "kind" in source:
        specific = sorted(set(source) & {"repo", "config", "revision", "name", "paths"})
        if specific:
            per_part = ", ".join(f"{p!r}: {{...}}" for p in all_parts)
            raise InputError(f"{dataset} combines {', '.join(all_parts)}: key(s) {', '.join(specific)} cannot apply "
                             f"to all of them; give one source per part: {{{per_part}}}")
        sources = {part: source for part in parts}
    else:
        unknown = sorted(set(source) - set(all_parts))
        if unknown:
            raise InputError(f"{dataset} sources are keyed by part ({', '.join(all_parts)}); "
                             f"unknown: {', '.join(unknown)}")
        absent = [part for part in parts if part not in source]
        if absent:
            raise InputError(f"{dataset} {split} needs a source for part(s) {', '.join(absent)}")
        sources = {part: source[part] for part in parts}
    examples: list[Example] = []
    counts = []
    for part in parts:
        loaded = load_examples(part, split, sources[part], require_labels=split == "train")["en"]
        counts.append(f"{part} {len(loaded)}")
        examples.extend(dataclasses.replace(ex, id=f"{part}/{ex.id}") for ex in loaded)
    log.info("%s %s: %s", dataset, split, ", ".join(counts))
    return examples, f"{dataset} ({', '.join(counts)})"
