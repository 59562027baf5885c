"""The catalog of task datasets: where each dataset lives in each kind of source (`DATASETS`), its label list
(`labels`), and the open tag set of CCG (`derive_tag_set`).

English training: XNLI, PAWS-X, UD-POS, PAN-X, XCOPA and TyDiQA-GoldP train on English only (MNLI; PAWS en; UD English;
WikiANN en; COPA; TyDiQA's `english-` ids), whatever `languages` asks. XCOPA's train split is COPA's; XNLI's from TFDS
is multi_nli's. XCOPA's English dev and test sets (asked for explicitly: English is no XCOPA evaluation language) are
COPA's.

CCG (CCGbank, LDC2005T13) is LDC-licensed: no hub, TFDS or XTREME copy exists, so it is read from user files only
(file_formats.py). Its tag set is open (about 1,300 supertags): `derive_tag_set` builds it from the training sentences
(sorted, with the reserved UNKNOWN_TAG first, to which evaluation maps tags training never saw).

Span QA (family "qa": SQuAD v1.1/v2.0, TyDiQA-GoldP, XQuAD, MLQA; examples are data/qa.py's QAExample) is SQuAD-format
JSON in files and one row per question on the hub and in TFDS. Layouts (checked against the sources' own code):
- xtreme: google-research/xtreme `scripts/download_data.sh` writes `squad/{train,dev}-v1.1.json`;
  `tydiqa/tydiqa-goldp-v1.1-train/` holds the original multi-language `tydiqa-goldp-v1.1-train.json` (read whole: its
  full `english-...` ids give each question its language) plus per-language `tydiqa.goldp.{lang}.train.json` (ids cut
  to their last field by utils_preprocess.py); `tydiqa/tydiqa-goldp-v1.1-dev/tydiqa.goldp.{lang}.dev.json`;
  `xquad/xquad.{lang}.json`; `mlqa/MLQA_V1/{dev,test}/{dev,test}-context-{lang}-question-{lang}.json`. The current
  utils_preprocess.py blanks the answers of the TyDiQA dev, XQuAD and MLQA test files (remove_qa_test_annotations):
  blanked files are refused, naming the labelled originals (`originals`). XTREME does not download SQuAD v2.0; its
  files (`train-v2.0.json`, `dev-v2.0.json` from the SQuAD site) are looked for beside v1.1 in `squad/`.
- hf: `rajpurkar/squad` (config plain_text), `rajpurkar/squad_v2` (config squad_v2), `google/xtreme` (config tydiqa),
  parquet under `{config}/{train,validation}-*.parquet`; `google/xquad` (configs `xquad.{lang}`, split validation);
  `facebook/mlqa` at revision refs/convert/parquet (configs `mlqa.{lang}.{lang}`, `{config}/{split}/*.parquet`,
  splits validation and test). Columns id, title (not in XQuAD/MLQA), context, question, answers{text,
  answer_start}; an unanswerable SQuAD v2.0 question has empty answer lists.
- tfds: `squad/v1.1`, `squad/v2.0` (adds is_impossible), `tydi_qa/goldp` (splits train / validation);
  `xquad/{lang}` (split test; XQuAD's original 11 languages, no ro); `mlqa/{lang}` (splits validation / test).
  Same feature names; strings come as bytes.
XQuAD and MLQA have no training split: their tasks train on SQuAD (tasks/registry.py). MLQA is read with context
language = question language, as XTREME evaluates it.

English reasoning datasets (multiple choice; docs/DATASETS.md), where each one lives (records.py cites the code each
reader's prompt and choices follow):
- piqa: the original physicaliqa-train-dev.zip holds `{train,dev}.jsonl` (id, goal, sol1, sol2) with the labels (0/1,
  one a line) in `{train,dev}-labels.lst` beside them; the test set (`tests.jsonl`) has no labels. Hub: ybisk/piqa
  (a loading script; refs/convert/parquet `plain_text/{split}/`, label -1 in test). TFDS: `piqa` (train, validation).
- winogrande: winogrande_1.1.zip holds `train_{xs,s,m,l,xl}.jsonl` and `dev.jsonl` (qID, sentence, option1, option2,
  answer "1"/"2"; the same labels again in `*-labels.lst`) and `test.jsonl` without `answer`. Hub: allenai/winogrande,
  configs winogrande_{xs,s,m,l,xl,debiased} (answer "" in test); read with winogrande_xl, the full training set. TFDS:
  `winogrande` (splits train_xs ... train_xl, validation, test; label a class index of ('1', '2'), -1 in test).
- reclor: the original `train.json`, `val.json`, `test.json` are each one JSON list of {context, question, answers[4],
  label, id_string}; test.json has no label. Hub: tasksource/reclor (= metaeval/reclor; the original train.json and
  val.json, parquet at refs/convert/parquet `default/{train,validation}/`); community-datasets/reclor needs the files
  downloaded by hand. No TFDS copy.
- logiqa2: csitfun/LogiQA2.0 `logiqa/DATA/LOGIQA/{train,dev,test}.txt` are JSON lines (id, text, question, options[4],
  answer index, type), the test set labelled. Hub: baber/logiqa2 config logiqa2 (a loading script over those files;
  refs/convert/parquet `logiqa2/{split}/`, `type` as a string). No TFDS copy.
- art (alphaNLI, the abductive NLI task of ART): alphanli-train-dev.zip holds `{train,dev}.jsonl` (story_id,
  obs1, obs2, hyp1, hyp2) with the labels (1/2, the plausible hypothesis) in `{train,dev}-labels.lst`; the test
  labels are not public. Hub: allenai/art config anli (a loading script; refs/convert/parquet `anli/{split}/`, columns
  observation_1, observation_2, hypothesis_1, hypothesis_2, label 1/2). No TFDS copy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from stilts_jax.core.errors import InputError
from stilts_jax.data.examples import ChoiceExample, PairExample, TaggedSentence
from stilts_jax.data.qa import QAExample
from stilts_jax.data.task_sources.vocabulary import (
    _NLI_ALIASES,
    MLQA_LANGUAGES,
    NLI_LABELS,
    PANX_LANGUAGES,
    PANX_TAGS,
    PAWS_LABELS,
    PAWSX_LANGUAGES,
    QQP_LABELS,
    TYDIQA_LANGUAGES,
    UDPOS_LANGUAGES,
    UDPOS_NO_DEV,
    UDPOS_XTREME_LANGUAGES,
    UNKNOWN_TAG,
    UPOS_TAGS,
    XCOPA_LANGUAGES,
    XNLI_LANGUAGES,
    XQUAD_LANGUAGES,
)

Example = PairExample | ChoiceExample | TaggedSentence | QAExample
FAMILIES = ("pair", "choice", "tagging", "qa")  # examples: PairExample, ChoiceExample, TaggedSentence, QAExample

SPLITS = ("train", "dev", "test")
CONVERTED = "refs/convert/parquet"  # the hub's parquet export branch: {config}/{split}/NNNN.parquet


class TaskDataError(InputError):
    """A record of a task dataset is unusable; the message names the file and line (or repo and row)."""


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

    family: str  # pair, choice, tagging or qa (span QA: SQuAD-format data, QAExample)
    labels: tuple[str, ...]  # () for qa: answers are spans of the context
    languages: tuple[str, ...]
    # the record reader for hf/tfds/jsonl rows: pair, copa, siqa, csqa, cosmos, hellaswag, piqa, winogrande, reclor,
    # logiqa2, art, tags, squad
    reader: str
    # split -> path templates; a template without {lang} in a dataset of several languages is one file holding them
    # all, whose records name their language (`language_in_ids`).
    xtreme: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    xtreme_format: str = ""  # pair_tsv, tags_tsv, copa_jsonl, siqa_jsonl or squad_json
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
    # split -> file names under a 'files' source's `path` (the first that exists); a name may hold {lang}.
    files_layout: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    tag_formats: tuple[str, ...] = ("conll",)  # tagging file formats read: conll (token TAB tag), jiant (line/sentence)
    # A registered file format (register_file_format) that reads every file of this dataset, whatever its suffix.
    file_format: str = ""
    # Ids start with the language's English name (TyDiQA-GoldP: `english-...`): a file, hub config or TFDS dataset
    # holding every language gives each record the language of its id.
    language_in_ids: bool = False
    unanswerable: bool = False  # qa: questions without an answer are part of the data (SQuAD v2.0)
    # Files of the AI2 leaderboard releases (Social IQa, PIQA, alphaNLI; WinoGrande repeats its records' answers there)
    # keep the labels of `{name}.jsonl`, one a line, in `{name}-labels.lst` beside it; read where the records carry no
    # label of their own.
    labels_lst: bool = False
    originals: str = ""  # where the labelled original files are (XTREME blanks the answers of its evaluation files)
    # Machine translations of the English training set in an XTREME download folder, `{lang}` the language, as
    # google-research/xtreme's run_classify.py reads them (third_party/processors/xnli.py and pawsx.py,
    # get_translate_train_examples); the rows are those of XTREME's translations bucket (README "Translations").
    xtreme_translate_train: tuple[str, ...] = ()

    @property
    def monolingual(self) -> str | None:
        return self.languages[0] if len(self.languages) == 1 else None

    def split_languages(self, split: str) -> tuple[str, ...]:
        if split == "train" and self.english_train_only:
            return ("en",)
        lacking = self.no_data.get(split, frozenset())
        return tuple(lang for lang in self.languages if lang not in lacking)

    @property
    def one_source_per_language(self) -> bool:
        """Whether each language is a file, hub config or TFDS dataset of its own (nothing else names it)."""
        return self.monolingual is None and not self.language_in_ids


def _splits(train=("train",), dev=("validation",), test=("test",)) -> dict[str, tuple[str, ...]]:
    return {k: v for k, v in (("train", train), ("dev", dev), ("test", test)) if v}


DATASETS: dict[str, TaskDataset] = {
    # --- sentence pairs ---
    "xnli": TaskDataset(
        family="pair",
        labels=NLI_LABELS,
        languages=XNLI_LANGUAGES,
        reader="pair",
        english_train_only=True,
        xtreme={
            "train": ("xnli/train-{lang}.tsv",),
            "dev": ("xnli/dev-{lang}.tsv",),
            "test": ("xnli/test-{lang}.tsv",),
        },
        xtreme_format="pair_tsv",
        xtreme_translate_train=("xnli/XNLI-Translated/en-{lang}-translated.tsv",),
        label_aliases=_NLI_ALIASES,
        hf=HfLocation("facebook/xnli", "{lang}", _splits()),  # config en's train split is MNLI's (XNLI-MT)
        tfds=TfdsLocation(("xnli",), {"dev": "validation", "test": "test"}),
        train_from={"tfds": "mnli"},
    ),
    "mnli": TaskDataset(  # pairs without a gold label ('-') are dropped, as GLUE and TFDS do
        family="pair",
        labels=NLI_LABELS,
        languages=("en",),
        reader="pair",
        splits=("train", "dev"),
        drop_unlabeled=True,
        xtreme={"train": ("xnli/train-en.tsv",)},
        xtreme_format="pair_tsv",
        label_aliases=_NLI_ALIASES,
        hf=HfLocation("nyu-mll/glue", "mnli", _splits(dev=("validation_matched",), test=())),
        tfds=TfdsLocation(("multi_nli",), {"train": "train", "dev": "validation_matched"}),
    ),
    "pawsx": TaskDataset(
        family="pair",
        labels=PAWS_LABELS,
        languages=PAWSX_LANGUAGES,
        reader="pair",
        english_train_only=True,
        xtreme={
            "train": ("pawsx/train-{lang}.tsv",),
            "dev": ("pawsx/dev-{lang}.tsv",),
            "test": ("pawsx/test-{lang}.tsv",),
        },
        xtreme_format="pair_tsv",
        xtreme_translate_train=("pawsx/translated/en-{lang}-translated.tsv",),
        label_aliases={"different_meaning": "0", "paraphrase": "1"},
        hf=HfLocation("google/xtreme", "PAWS-X.{lang}", _splits()),
        tfds=TfdsLocation(("paws_x_wiki/{lang}",), {"train": "train", "dev": "validation", "test": "test"}),
    ),
    "paws": TaskDataset(
        family="pair",
        labels=PAWS_LABELS,
        languages=("en",),
        reader="pair",
        xtreme={"train": ("pawsx/train-en.tsv",)},
        xtreme_format="pair_tsv",
        label_aliases={"different_meaning": "0", "paraphrase": "1"},
        hf=HfLocation("google-research-datasets/paws", "labeled_final", _splits()),
        tfds=TfdsLocation(("paws_wiki/labeled_final_raw",), {"train": "train", "dev": "validation", "test": "test"}),
    ),
    "qqp": TaskDataset(
        family="pair",
        labels=QQP_LABELS,
        languages=("en",),
        reader="pair",
        label_aliases={"0": "not_duplicate", "1": "duplicate"},
        hf=HfLocation("nyu-mll/glue", "qqp", _splits()),
        tfds=TfdsLocation(("glue/qqp",), {"train": "train", "dev": "validation", "test": "test"}),
    ),
    "anli": TaskDataset(
        family="pair",
        labels=NLI_LABELS,
        languages=("en",),
        reader="pair",
        label_aliases=_NLI_ALIASES,
        hf=HfLocation(
            "facebook/anli",
            "plain_text",
            _splits(
                ("train_r1", "train_r2", "train_r3"), ("dev_r1", "dev_r2", "dev_r3"), ("test_r1", "test_r2", "test_r3")
            ),
        ),
        tfds=TfdsLocation(("anli/r1", "anli/r2", "anli/r3"), {"train": "train", "dev": "validation", "test": "test"}),
    ),
    "snli": TaskDataset(
        family="pair",
        labels=NLI_LABELS,
        languages=("en",),
        reader="pair",
        label_aliases=_NLI_ALIASES,
        drop_unlabeled=True,
        hf=HfLocation("stanfordnlp/snli", "plain_text", _splits()),
        tfds=TfdsLocation(("snli",), {"train": "train", "dev": "validation", "test": "test"}),
    ),
    # ANLI+ (the paper's intermediate task): ANLI rounds 1-3 + MNLI + SNLI for training; ANLI's dev and test sets.
    "anli_plus": TaskDataset(
        family="pair",
        labels=NLI_LABELS,
        languages=("en",),
        reader="pair",
        parts={"train": ("anli", "mnli", "snli"), "dev": ("anli",), "test": ("anli",)},
    ),
    # --- multiple choice ---
    "xcopa": TaskDataset(
        family="choice",
        labels=("0", "1"),
        languages=XCOPA_LANGUAGES,
        reader="copa",
        english_train_only=True,
        xtreme={
            "train": ("xcopa/train-{lang}.jsonl", "xcopa/train.{lang}.jsonl"),
            "dev": ("xcopa/val-{lang}.jsonl", "xcopa/val.{lang}.jsonl"),
            "test": ("xcopa/test-{lang}.jsonl", "xcopa/test.{lang}.jsonl"),
        },
        xtreme_format="copa_jsonl",
        hf=HfLocation("cambridgeltl/xcopa", "{lang}", _splits(train=())),
        train_from={"hf": "copa", "tfds": "copa"},
        english_from="copa",
    ),
    "copa": TaskDataset(
        family="choice",
        labels=("0", "1"),
        languages=("en",),
        reader="copa",
        xtreme={
            "train": ("xcopa/train-en.jsonl", "xcopa/train.en.jsonl"),
            "dev": ("xcopa/val-en.jsonl", "xcopa/val.en.jsonl"),
            "test": ("xcopa/test-en.jsonl", "xcopa/test.en.jsonl"),
        },
        xtreme_format="copa_jsonl",
        hf=HfLocation("aps/super_glue", "copa", _splits(), revision=CONVERTED),
        tfds=TfdsLocation(("super_glue/copa",), {"train": "train", "dev": "validation", "test": "test"}),
    ),
    "siqa": TaskDataset(
        family="choice",
        labels=("A", "B", "C"),
        languages=("en",),
        reader="siqa",
        label_aliases={"1": "A", "2": "B", "3": "C"},
        xtreme={
            "train": ("siqa/socialIQa_v1.4_trn.jsonl",),
            "dev": ("siqa/socialIQa_v1.4_dev.jsonl",),
            "test": ("siqa/socialIQa_v1.4_tst.jsonl",),
        },
        xtreme_format="siqa_jsonl",
        labels_lst=True,
        hf=HfLocation("allenai/social_i_qa", None, _splits(test=()), revision=CONVERTED),
    ),
    "commonsenseqa": TaskDataset(
        family="choice",
        labels=("A", "B", "C", "D", "E"),
        languages=("en",),
        reader="csqa",
        hf=HfLocation("tau/commonsense_qa", None, _splits()),
        tfds=TfdsLocation(("cos_e",), {"train": "train", "dev": "validation"}),
    ),  # CoS-E v1.11 carries CSQA v1.11
    "cosmosqa": TaskDataset(
        family="choice",
        labels=("0", "1", "2", "3"),
        languages=("en",),
        reader="cosmos",
        hf=HfLocation("allenai/cosmos_qa", None, _splits(), revision=CONVERTED),
        tfds=TfdsLocation(("cosmos_qa",), {"train": "train", "dev": "validation", "test": "test"}),
    ),
    "hellaswag": TaskDataset(
        family="choice",
        labels=("0", "1", "2", "3"),
        languages=("en",),
        reader="hellaswag",
        hf=HfLocation("Rowan/hellaswag", None, _splits(), revision=CONVERTED),
        tfds=TfdsLocation(("hellaswag",), {"train": "train", "dev": "validation", "test": "test"}),
    ),
    # --- English reasoning (multiple choice; where each lives: the module docstring, docs/DATASETS.md) ---
    "piqa": TaskDataset(
        family="choice",
        labels=("0", "1"),
        languages=("en",),
        reader="piqa",
        labels_lst=True,
        hf=HfLocation("ybisk/piqa", "plain_text", _splits(), revision=CONVERTED),
        tfds=TfdsLocation(("piqa",), {"train": "train", "dev": "validation"}),
    ),
    "winogrande": TaskDataset(
        family="choice",
        labels=("1", "2"),
        languages=("en",),
        reader="winogrande",
        labels_lst=True,
        hf=HfLocation("allenai/winogrande", "winogrande_xl", _splits(), revision=CONVERTED),
        tfds=TfdsLocation(("winogrande",), {"train": "train_xl", "dev": "validation", "test": "test"}),
    ),
    "reclor": TaskDataset(
        family="choice",
        labels=("0", "1", "2", "3"),
        languages=("en",),
        reader="reclor",
        hf=HfLocation("tasksource/reclor", None, _splits(test=()), revision=CONVERTED),
        hint="ReClor's files (train.json, val.json, test.json) come through the form linked from "
        "http://whyu.me/reclor (github.com/yuweihao/reclor README), for non-commercial research",
    ),
    "logiqa2": TaskDataset(
        family="choice",
        labels=("0", "1", "2", "3"),
        languages=("en",),
        reader="logiqa2",
        hf=HfLocation("baber/logiqa2", "logiqa2", _splits(), revision=CONVERTED),
        hint="LogiQA 2.0's files are logiqa/DATA/LOGIQA/{train,dev,test}.txt of https://github.com/csitfun/LogiQA2.0",
    ),
    "art": TaskDataset(
        family="choice",
        labels=("1", "2"),
        languages=("en",),
        reader="art",
        labels_lst=True,
        hf=HfLocation("allenai/art", "anli", _splits(test=()), revision=CONVERTED),
        hint="alphaNLI's test labels are not public (AI2 leaderboard); its files come from "
        "https://storage.googleapis.com/ai2-mosaic/public/alphanli/alphanli-train-dev.zip",
    ),
    # --- tagging ---
    "udpos": TaskDataset(
        family="tagging",
        labels=UPOS_TAGS,
        languages=UDPOS_LANGUAGES,
        reader="tags",
        english_train_only=True,
        no_data={"dev": UDPOS_NO_DEV},
        xtreme={
            "train": ("udpos/train-{lang}.tsv",),
            "dev": ("udpos/dev-{lang}.tsv",),
            "test": ("udpos/test-{lang}.tsv",),
        },
        xtreme_format="tags_tsv",
        hf=HfLocation("google/xtreme", "udpos.{name}", _splits(), languages=UDPOS_XTREME_LANGUAGES),
        tfds=TfdsLocation(
            ("xtreme_pos/xtreme_pos_{lang}",),
            {"train": "train", "dev": "dev", "test": "test"},
            languages=UDPOS_XTREME_LANGUAGES,
        ),
        hint="google/xtreme and TFDS hold UD v2.5's 33 XTREME languages; XTREME-R's lt pl uk wo ro (UD v2.7) come "
        "with the XTREME download",
    ),
    "panx": TaskDataset(
        family="tagging",
        labels=PANX_TAGS,
        languages=PANX_LANGUAGES,
        reader="tags",
        english_train_only=True,
        xtreme={
            "train": ("panx/train-{lang}.tsv",),
            "dev": ("panx/dev-{lang}.tsv",),
            "test": ("panx/test-{lang}.tsv",),
        },
        xtreme_format="tags_tsv",
        hf=HfLocation("unimelb-nlp/wikiann", "{lang}", _splits(), revision=CONVERTED),
        tfds=TfdsLocation(("wikiann/{lang}",), {"train": "train", "dev": "validation", "test": "test"}),
        hint="the XTREME download script needs AmazonPhotos.zip (the PAN-X release) saved by hand in download/ first; "
        "google/xtreme's configs PAN-X.{lang} hold XTREME's 40 languages",
    ),
    "ccg": TaskDataset(
        family="tagging",
        labels=(),
        languages=("en",),
        reader="tags",
        open_labels=True,
        files_layout={
            "train": ("ccg.train", "train.tsv"),
            "dev": ("ccg.dev", "dev.tsv"),
            "test": ("ccg.test", "test.tsv"),
        },
        tag_formats=("jiant", "conll"),
        files_only="CCGbank (LDC2005T13) is licensed by the LDC, so no hub, TFDS or XTREME copy exists. Convert your "
        "copy with jiant's scripts/ccg (ccg.train/ccg.dev/ccg.test) or to token<TAB>tag lines, and use "
        "source kind 'files' with 'path' (that folder, or jiant's task config JSON) or 'paths' "
        "(split -> file)",
    ),
    # --- span QA (SQuAD format) ---
    "squad": TaskDataset(
        family="qa",
        labels=(),
        languages=("en",),
        reader="squad",
        splits=("train", "dev"),
        xtreme={"train": ("squad/train-v1.1.json",), "dev": ("squad/dev-v1.1.json",)},
        xtreme_format="squad_json",
        hf=HfLocation("rajpurkar/squad", "plain_text", _splits(test=())),
        tfds=TfdsLocation(("squad/v1.1",), {"train": "train", "dev": "validation"}),
    ),
    "squad_v2": TaskDataset(
        family="qa",
        labels=(),
        languages=("en",),
        reader="squad",
        splits=("train", "dev"),
        unanswerable=True,
        xtreme={"train": ("squad/train-v2.0.json",), "dev": ("squad/dev-v2.0.json",)},
        xtreme_format="squad_json",
        hf=HfLocation("rajpurkar/squad_v2", "squad_v2", _splits(test=())),
        tfds=TfdsLocation(("squad/v2.0",), {"train": "train", "dev": "validation"}),
    ),
    # TyDiQA-GoldP trains on English only (XTREME's protocol; the hf/tfds train splits mix all nine languages); its
    # dev set is XTREME's test set. The original train file keeps the full `english-...` ids (one file, every
    # language); the per-language dev files are what utils_preprocess.py writes.
    "tydiqa": TaskDataset(
        family="qa",
        labels=(),
        languages=TYDIQA_LANGUAGES,
        reader="squad",
        splits=("train", "dev"),
        english_train_only=True,
        language_in_ids=True,
        xtreme={
            "train": ("tydiqa/tydiqa-goldp-v1.1-train/tydiqa-goldp-v1.1-train.json",),
            "dev": ("tydiqa/tydiqa-goldp-v1.1-dev/tydiqa.goldp.{lang}.dev.json",),
        },
        xtreme_format="squad_json",
        hf=HfLocation("google/xtreme", "tydiqa", _splits(test=())),
        tfds=TfdsLocation(("tydi_qa/goldp",), {"train": "train", "dev": "validation"}),
        originals="https://storage.googleapis.com/tydiqa/v1.1/tydiqa-goldp-v1.1-dev.tgz",
    ),
    # XQuAD has one split, the test set (1190 questions per language, the same ids in every language).
    "xquad": TaskDataset(
        family="qa",
        labels=(),
        languages=XQUAD_LANGUAGES,
        reader="squad",
        splits=("test",),
        xtreme={"test": ("xquad/xquad.{lang}.json",)},
        xtreme_format="squad_json",
        hf=HfLocation("google/xquad", "xquad.{lang}", {"test": ("validation",)}),
        tfds=TfdsLocation(("xquad/{lang}",), {"test": "test"}, languages=XQUAD_LANGUAGES[:-1]),
        originals="https://github.com/google-deepmind/xquad (xquad.{lang}.json)",
    ),
    "mlqa": TaskDataset(
        family="qa",
        labels=(),
        languages=MLQA_LANGUAGES,
        reader="squad",
        splits=("dev", "test"),
        xtreme={
            split: (f"mlqa/MLQA_V1/{split}/{split}-context-{{lang}}-question-{{lang}}.json",)
            for split in ("dev", "test")
        },
        xtreme_format="squad_json",
        hf=HfLocation("facebook/mlqa", "mlqa.{lang}.{lang}", _splits(train=()), revision=CONVERTED),
        tfds=TfdsLocation(("mlqa/{lang}",), {"dev": "validation", "test": "test"}),
        originals="https://dl.fbaipublicfiles.com/MLQA/MLQA_V1.zip (MLQA_V1/{dev,test}/)",
    ),
}


def register_dataset(name: str, dataset: TaskDataset, *, replace: bool = False) -> None:
    """Add a dataset to the catalog (a user's own, from a task module); a taken name needs `replace`."""
    if not isinstance(dataset, TaskDataset):
        raise InputError(f"dataset {name!r} must be a TaskDataset, got {type(dataset).__name__}")
    if name in DATASETS and not replace and DATASETS[name] != dataset:
        raise InputError(f"dataset {name!r} is already in the catalog; choose another name or pass replace=True")
    if dataset.family not in FAMILIES:
        raise InputError(
            f"dataset {name!r}: family must be {', '.join(FAMILIES[:-1])} or {FAMILIES[-1]}, got {dataset.family!r}"
        )
    if dataset.family == "qa" and (dataset.reader != "squad" or dataset.labels):
        raise InputError(
            f"dataset {name!r}: a qa dataset reads SQuAD-format records (reader='squad') and has no "
            "labels (labels=()): its answers are spans of the context"
        )
    if not dataset.languages:
        raise InputError(f"dataset {name!r} names no languages")
    DATASETS[name] = dataset


def labels(dataset: str) -> tuple[str, ...]:
    """The label list of `dataset` (tag set for tagging datasets); example labels are indices into it."""
    spec = _dataset(dataset)
    if spec.family == "qa":
        labelled = sorted(name for name, d in DATASETS.items() if d.family != "qa")
        raise InputError(
            f"unknown dataset {dataset!r} for labels: {dataset} is a span QA dataset, whose answers are "
            f"spans of the context; datasets with labels: {', '.join(labelled)}"
        )
    if spec.open_labels:
        raise InputError(
            f"{dataset}'s tag set is open: it comes from the training data (derive_tag_set of its train "
            "split), not from a fixed list"
        )
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
        raise InputError(
            f"sentence {first.id!r} uses the tag {UNKNOWN_TAG!r}, which is reserved for tags unseen in "
            "training; rename it in the data"
        )
    if not seen:
        raise InputError("no tagged sentences to take the tag set from")
    return (UNKNOWN_TAG, *sorted(seen))


def _dataset(name: str) -> TaskDataset:
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; valid datasets: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def _ordered(found: Iterable[str], preferred: Sequence[str]) -> list[str]:
    found = list(found)
    return [lang for lang in preferred if lang in found] + sorted(lang for lang in found if lang not in preferred)
