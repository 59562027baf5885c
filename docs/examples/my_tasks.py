"""A task of your own: does the sentence hold a number? A cross-lingual classification target read from a TSV folder
(`train-en.tsv`, `dev-en.tsv`, `test-{lang}.tsv`: `text TAB label` lines).

    python -m stilts_jax.main --config=configs/stilts.py:intermediate=none,target=has_number \
        --config.task_modules="['docs/examples/my_tasks.py']" \
        --config.target.source.kind=files --config.target.source.path=docs/examples/has_number
"""

from pathlib import Path

from stilts_jax.data.examples import PairExample
from stilts_jax.tasks import TaskDataset, TaskSpec, register_file_format, register_task

LABELS = ("none", "number")
LANGUAGES = ("en", "de", "fr")


def read_text_label_tsv(dataset, name, path, split, language):
    """`text TAB label` lines; a test file may leave the label out."""
    examples = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").split("\n"), start=1):
        if not line.strip():
            continue
        text, _, label = line.partition("\t")
        if label and label not in LABELS:
            raise ValueError(f"line {number}: unknown label {label!r}, expected one of {LABELS}")
        examples.append(
            PairExample(
                id=f"{split}-{language}-{number}",
                text_a=text,
                text_b=None,
                label=LABELS.index(label) if label else None,
                language=language,
            )
        )
    return examples


register_file_format("text_label_tsv", read_text_label_tsv)
register_task(
    TaskSpec(
        name="has_number",
        family="classification",
        dataset="has_number",
        languages=LANGUAGES,
        metric="accuracy",
        eval_split="test",
        prediction_extension="tsv",
        defaults=dict(epochs=3.0, batch_size=32, max_length=128),
        defaults_source="my own choice",
    ),
    data=TaskDataset(
        family="pair",
        labels=LABELS,
        languages=LANGUAGES,
        reader="pair",
        english_train_only=True,
        file_format="text_label_tsv",
        files_layout={"train": ("train-{lang}.tsv",), "dev": ("dev-{lang}.tsv",), "test": ("test-{lang}.tsv",)},
    ),
)
