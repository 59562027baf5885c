r"""Show what the model sees: the features of a phase's task, exactly as training and evaluation build them.

    python -m stilts_jax.inspect --config=configs/demo.py --phase=target --split=test --language=sw --limit=20 \
        --output=features.jsonl

One JSON object per feature (a QA window, a part of a long tagged sentence, an example otherwise):
  example_id  the example's id in its source;  language;  feature  the window/part index within the example;
  tokens      the pieces as strings, special tokens included (multiple choice: one list per choice);
  tagging     labels: per token, the gold tag at each word's first piece, null elsewhere;
  span QA     answer_tokens: [start, end] token indices, null when the answer is not in this window (the model is
              taught <s> there); answer_text: the context text those tokens cover;
  classification, multiple choice  label: the gold label (a label name; for multiple choice the choice index).
Features come from the task objects the pipeline trains and evaluates with (no second featurizer); the data from
every source kind the pipeline reads (hf, xtreme, tfds, files), with the phase's `source` settings.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from stilts_jax.config.loader import parse_config_args
from stilts_jax.core.errors import InputError, StiltsError

SPLITS = {"train": "train", "dev": "dev", "test": "eval"}


def _tokens(tokenizer: Any, ids: np.ndarray, mask: np.ndarray) -> list[str]:
    return tokenizer.convert_ids_to_tokens([int(i) for i in ids[: int(mask.sum())]])


def _examples(
    pipeline: Any, task: Any, phase: Any, split: str, languages: Sequence[str] | None, source: dict[str, Any]
) -> list[Any]:
    """The split's examples as the pipeline loads them (training languages and limits included)."""
    from stilts_jax.pipeline.common import load_training_examples

    if split == "train":
        examples = load_training_examples(task, phase, source)
        return [ex for ex in examples if not languages or ex.language in languages]
    if split == "dev":
        examples = task.load("dev", source, ["en"])["en"]
        return examples[: phase.max_dev_examples] if phase.max_dev_examples else examples
    wanted = list(languages or task.spec.languages)
    loaded = task.load("eval", source, wanted)
    return [ex for lang in wanted for ex in loaded.get(lang, [])]


def _span_qa(task: Any, examples: Sequence[Any]) -> Iterator[dict[str, Any]]:
    from stilts_jax.data.qa_features import featurize_qa

    features = featurize_qa(
        examples, task.tokenizer, max_length=task.max_length, doc_stride=task.doc_stride, with_labels=True
    )
    arrays, windows = features.arrays, {}
    for f, e in enumerate(features.example_index):
        example = examples[int(e)]
        start, end = int(arrays["start_positions"][f]), int(arrays["end_positions"][f])
        answered = not (start == 0 and end == 0)
        window = windows[int(e)] = windows.get(int(e), -1) + 1
        offsets = features.offsets[f]
        yield {
            "example_id": example.id,
            "language": example.language,
            "feature": window,
            "tokens": _tokens(task.tokenizer, arrays["input_ids"][f], arrays["attention_mask"][f]),
            "answer_tokens": [start, end] if answered else None,
            "answer_text": example.context[offsets[start, 0] : offsets[end, 1]] if answered else None,
        }


def _tagging(task: Any, examples: Sequence[Any]) -> Iterator[dict[str, Any]]:
    labelled = all(ex.tags is not None for ex in examples)
    features, labels = task.featurize(examples, with_labels=labelled)
    arrays = features.arrays
    for row, (s, first) in enumerate(zip(features.sentence_index, features.first_word)):
        example = examples[int(s)]
        tokens = _tokens(task.tokenizer, arrays["input_ids"][row], arrays["attention_mask"][row])
        row_labels: list[str | None] = [None] * len(tokens)
        for position in features.word_positions[row]:
            if labelled:
                row_labels[position] = task.labels[int(labels[row, position])]
        part = int(np.sum(features.sentence_index[:row] == s))
        yield {
            "example_id": example.id,
            "language": example.language,
            "feature": part,
            "first_word": int(first),
            "tokens": tokens,
            "labels": row_labels,
        }


def _classification(task: Any, examples: Sequence[Any], multiple_choice: bool) -> Iterator[dict[str, Any]]:
    arrays = task._encode(examples)
    for i, example in enumerate(examples):
        if multiple_choice:
            tokens: Any = [
                _tokens(task.tokenizer, arrays["input_ids"][i, c], arrays["attention_mask"][i, c])
                for c in range(arrays["input_ids"].shape[1])
                if arrays["choice_mask"][i, c]
            ]
            label: Any = example.label
        else:
            tokens = _tokens(task.tokenizer, arrays["input_ids"][i], arrays["attention_mask"][i])
            label = task.labels[example.label] if example.label is not None else None
        yield {"example_id": example.id, "language": example.language, "feature": 0, "tokens": tokens, "label": label}


def features_of(task: Any, examples: Sequence[Any]) -> Iterator[dict[str, Any]]:
    """The inspection records of `examples` under `task` (a task object of stilts_jax.tasks)."""
    family = task.spec.family
    if family == "span_qa":
        return _span_qa(task, examples)
    if family == "tagging":
        return _tagging(task, examples)
    if family in ("classification", "multiple_choice"):
        return _classification(task, examples, family == "multiple_choice")
    raise InputError(
        f"{task.spec.name} is a {family} task; inspect shows the features of classification, multiple "
        "choice, tagging and span QA tasks"
    )


def inspect_features(
    config: Any,
    *,
    phase_name: str,
    split: str,
    languages: Sequence[str] | None = None,
    limit: int = 0,
    task_name: str | None = None,
) -> list[dict[str, Any]]:
    import dataclasses

    from stilts_jax.pipeline.common import task_source_of
    from stilts_jax.pipeline.runner import Pipeline
    from stilts_jax.tasks.registry import get_task

    if phase_name not in ("intermediate", "target"):
        raise InputError(f"--phase must be intermediate or target, got {phase_name!r}")
    if split not in SPLITS:
        raise InputError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    phase = config[phase_name]
    names = list(phase.get("tasks") or []) or [phase.task]
    if not names or not names[0]:
        raise InputError(f"the {phase_name} phase has no task in this config (the baseline skips it)")
    name = task_name or names[0]
    if name not in names:
        raise InputError(f"task {name!r} is not in the {phase_name} phase; it trains {', '.join(names)}")
    if len(names) > 1 and task_name is None:
        raise InputError(f"the {phase_name} phase trains several tasks ({', '.join(names)}): choose one with --task")
    pipeline = Pipeline(config)
    spec = get_task(name)
    if split == "test" and config.evaluation.split:
        spec = dataclasses.replace(spec, eval_split=config.evaluation.split)
    task = pipeline.make_task(spec, phase)
    examples = _examples(pipeline, task, phase, split, languages, task_source_of(phase, name))
    if limit:
        examples = examples[:limit]
    if not examples:
        raise InputError(f"no {split} examples of {name} for languages {list(languages or [])}")
    return list(features_of(task, examples))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m stilts_jax.inspect",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--phase", default="target", help="intermediate or target (default target)")
    parser.add_argument(
        "--split",
        default="train",
        help="train, dev (English, model selection) or test (the "
        "zero-shot split, evaluation.split when set); default train",
    )
    parser.add_argument(
        "--language",
        action="append",
        default=None,
        help="a language to show (repeatable; default: every language of the split)",
    )
    parser.add_argument("--limit", type=int, default=0, help="the first N examples only (0: all)")
    parser.add_argument("--task", default=None, help="the task of a multi-task phase")
    parser.add_argument("--output", required=True, help="JSON Lines file (local or gs://)")
    if any(a in ("-h", "--help") for a in args):
        parser.print_help()
        return 0
    try:
        config, rest = parse_config_args(args)
        options = parser.parse_args(rest)
        if options.limit < 0:
            raise InputError(f"--limit must be >= 0, got {options.limit}")
        records = inspect_features(
            config,
            phase_name=options.phase,
            split=options.split,
            languages=options.language,
            limit=options.limit,
            task_name=options.task,
        )
        from stilts_jax.core.io_utils import atomic_write_text
        from stilts_jax.core.paths import as_path

        atomic_write_text(as_path(options.output), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        print(f"{len(records)} features written to {options.output}")
    except (StiltsError, ValueError) as e:  # ValueError: featurization settings that cannot work (named in it)
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
