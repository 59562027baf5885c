"""Task datasets from real sources: an XTREME download folder, the Hugging Face hub (or a local copy in its layout),
prepared TFDS data, or plain files. One stack for every family: sentence pairs, multiple choice, tagging and span QA.

`load_examples(dataset, split, source, languages)` returns language -> examples (PairExample, ChoiceExample or
TaggedSentence of data/examples.py; QAExample of data/qa.py for span QA: SQuAD v1.1/v2.0, TyDiQA-GoldP, XQuAD, MLQA);
`labels(dataset)` is the dataset's label list (tag set for tagging) that example labels index; `load_qa` is
`load_examples` restricted to the span QA datasets. Where each dataset lives in each kind of source is one entry of
`DATASETS`. Splits are train, dev and test.

Layouts are checked against the sources' own code (see tests/fixtures/tasks/README.md and tests/fixtures/qa/README.md).
The modules, one job each:
- vocabulary.py: label sets and language lists.
- catalog.py: `DATASETS` (where each dataset lives, which languages train on English only, which have unanswerable
  questions), `labels`, `derive_tag_set` for open tag sets (CCG), TaskDataError.
- fields.py: field access and label decoding for dict records; records.py: the per-dataset record readers (span QA
  rows included).
- file_formats.py: reading one file (XTREME's TSVs, header TSVs, jsonl, CSV, jiant's CCG files, SQuAD-format JSON).
- file_sources.py: the 'xtreme' (download folder) and 'files' source kinds; hub_source.py: 'hf';
  tfds_source.py: 'tfds' (with TFDS xtreme_pos's Tamil/Tagalog swap undone).
- loading.py: `load_examples`, its source, language and label checks, and combinations (ANLI+); `load_qa`.
"""

from stilts_jax.data.task_sources.catalog import (
    CONVERTED,
    DATASETS,
    FAMILIES,
    SPLITS,
    Example,
    HfLocation,
    TaskDataError,
    TaskDataset,
    TfdsLocation,
    derive_tag_set,
    has_open_labels,
    labels,
    register_dataset,
)
from stilts_jax.data.task_sources.file_formats import FILE_FORMATS, register_file_format
from stilts_jax.data.task_sources.file_sources import XTREME_HINT, XTREME_REPO
from stilts_jax.data.task_sources.loading import KINDS, load_examples, load_qa
from stilts_jax.data.task_sources.records import COPA_QUESTIONS, READERS, Reader
from stilts_jax.data.task_sources.vocabulary import (
    MLQA_LANGUAGES,
    NLI_LABELS,
    PANX_LANGUAGES,
    PANX_TAGS,
    PANX_XTREME_LANGUAGES,
    PAWS_LABELS,
    PAWSX_LANGUAGES,
    QQP_LABELS,
    TYDIQA_LANGUAGES,
    UD_NAMES,
    UDPOS_LANGUAGES,
    UDPOS_NO_DEV,
    UDPOS_XTREME_LANGUAGES,
    UNKNOWN_TAG,
    UPOS_TAGS,
    XCOPA_LANGUAGES,
    XNLI_LANGUAGES,
    XQUAD_LANGUAGES,
)

__all__ = [
    "CONVERTED",
    "COPA_QUESTIONS",
    "DATASETS",
    "FAMILIES",
    "FILE_FORMATS",
    "KINDS",
    "MLQA_LANGUAGES",
    "NLI_LABELS",
    "PANX_LANGUAGES",
    "PANX_TAGS",
    "PANX_XTREME_LANGUAGES",
    "PAWSX_LANGUAGES",
    "PAWS_LABELS",
    "QQP_LABELS",
    "READERS",
    "SPLITS",
    "TYDIQA_LANGUAGES",
    "UDPOS_LANGUAGES",
    "UDPOS_NO_DEV",
    "UDPOS_XTREME_LANGUAGES",
    "UD_NAMES",
    "UNKNOWN_TAG",
    "UPOS_TAGS",
    "XCOPA_LANGUAGES",
    "XNLI_LANGUAGES",
    "XQUAD_LANGUAGES",
    "XTREME_HINT",
    "XTREME_REPO",
    "Example",
    "HfLocation",
    "Reader",
    "TaskDataError",
    "TaskDataset",
    "TfdsLocation",
    "derive_tag_set",
    "has_open_labels",
    "labels",
    "load_examples",
    "load_qa",
    "register_dataset",
    "register_file_format",
]
