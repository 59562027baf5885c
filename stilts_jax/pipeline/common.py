"""What every phase of the pipeline shares: the done marker, printing on one host, sources, training data and
trainer settings."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from stilts_jax.core.errors import InputError, StiltsError
from stilts_jax.core.io_utils import atomic_write_text
from stilts_jax.core.paths import absolute, as_path
from stilts_jax.data.feature_cache import cache_key, cached_features, examples_fingerprint, tokenizer_fingerprint
from stilts_jax.evaluation.plots import headline_columns, language_bars_png, model_label, write_plot
from stilts_jax.evaluation.predictor import Predictor
from stilts_jax.evaluation.report import summarize, write_results
from stilts_jax.pipeline.translate_train import balanced, training_languages, translation_source
from stilts_jax.train.loop import TrainerConfig
from stilts_jax.train.metrics_log import MetricsLog
from stilts_jax.train.optimizer import OptimizerConfig

DONE = "phase_done.json"


PATH_KEYS = ("best_model", "encoder")


def _read_record(path: Any) -> dict[str, Any] | None:
    """A done marker's record; None (with a message) when it is damaged, as a crash mid-write on some filesystems
    leaves it: the phase is then resumed from its checkpoints and the marker written again."""
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        say(f"warning: {path} is damaged (not a whole JSON object); the phase is resumed from its checkpoints")
        return None
    if not isinstance(record, dict):
        say(f"warning: {path} holds no record; the phase is resumed from its checkpoints")
        return None
    return record


def finished_phase(phase_dir: Any, name: str, task: str) -> dict[str, Any] | None:
    """The record of a phase that finished in an earlier run (its phase_done.json), or None. Paths in the record are
    stored relative to the phase folder (a copied or moved workdir uses its own models) and returned absolute."""
    done = phase_dir / DONE
    if not done.exists():
        return None
    info = _read_record(done)
    if info is None or "dev" not in info:
        return None
    for key in PATH_KEYS:
        if key in info and not str(info[key]).startswith(("/", "gs://")):
            info[key] = str(absolute(phase_dir / info[key]))
    say(f"[{name}] {task}: finished earlier (English dev {info['dev']}), skipping")
    return info


def record_phase(phase_dir: Any, info: dict[str, Any]) -> None:
    """Mark a phase finished (phase_done.json, written whole by process 0): a rerun skips it. The record carries the
    settings the phase ran with (from its settings.json) and paths relative to the phase folder."""
    if jax.process_index() != 0:
        return
    record = dict(info)
    for key in PATH_KEYS:
        if key in record:
            prefix = str(absolute(phase_dir)).rstrip("/") + "/"
            value = str(record[key])
            record[key] = value[len(prefix) :] if value.startswith(prefix) else value
    settings = phase_dir / "settings.json"
    if settings.exists():
        started = _read_record(settings)
        if started is not None:
            record.update(fingerprint=started.get("fingerprint"), settings=started.get("settings"))
    atomic_write_text(phase_dir / DONE, json.dumps(record, indent=2) + "\n")


EARLIER_RESULTS = "earlier"


def finished_evaluation(workdir: Any, fingerprint: str | None = None) -> dict[str, Any] | None:
    """The results of an evaluation that finished in an earlier run with the same `fingerprint` (model and
    evaluation settings), or None. Results of other settings are kept in evaluation/earlier/ and evaluated anew."""
    results = workdir / "results.json"
    marker = workdir / "evaluation" / DONE
    if not (results.exists() and marker.exists()):
        return None
    record = _read_record(marker)
    try:
        summary = json.loads(results.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        say(f"warning: {results} is damaged; the evaluation runs again (languages evaluated earlier are kept)")
        return None
    recorded = None if record is None else record.get("fingerprint")
    if fingerprint is not None and recorded is not None and recorded != fingerprint:
        if jax.process_index() == 0:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            kept = workdir / "evaluation" / EARLIER_RESULTS
            kept.mkdir(parents=True, exist_ok=True)
            for name in ("results.json", "results.md"):
                if (workdir / name).exists():
                    atomic_write_text(
                        kept / f"{Path(name).stem}.{stamp}{Path(name).suffix}", (workdir / name).read_text()
                    )
            marker.unlink()
        say(
            f"[evaluation] the evaluation settings or the model changed: evaluating again (earlier results kept in "
            f"{workdir / 'evaluation' / EARLIER_RESULTS})"
        )
        return None
    say(f"[evaluation] finished earlier: {results}")
    return summary


def record_evaluation(workdir: Any, fingerprint: str | None = None) -> None:
    """Mark the evaluation finished (process 0 only; call after results.json is written)."""
    if jax.process_index() == 0:
        (workdir / "evaluation").mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            workdir / "evaluation" / DONE, json.dumps({"results": "results.json", "fingerprint": fingerprint}) + "\n"
        )


def publish_results(
    pipeline: Any,
    spec: Any,
    per_language: dict[str, dict[str, float]],
    columns: list[tuple[str, str]],
    protocol: dict[str, Any],
    *,
    appendix: str = "",
    plots: Sequence[tuple[str, Callable[[], Any]]] = (),
    **extra: Any,
) -> dict[str, Any]:
    """An evaluation's outputs: results.json/.md (the protocol heading them, `appendix` Markdown after the table), the
    per-language plot and `plots` (file name -> figure maker), the done marker, and the table printed. Without a
    score to tabulate (a test split without gold), results.json alone. Returns the summary (with `extra` keys)."""
    summary = summarize(spec.name, per_language, benchmark_name=spec.xtreme_name, protocol=protocol)
    summary.update(intermediate_task=pipeline.config.intermediate.task or None, **extra)
    if jax.process_index() == 0:
        metric = columns[0][0]
        if not all(metric in row for row in per_language.values()):
            atomic_write_text(pipeline.workdir / "results.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
        else:
            _, md = write_results(pipeline.workdir, summary, columns)
            if appendix:  # rewritten whole: object stores (gs://) cannot append
                atomic_write_text(md, md.read_text() + "\n" + appendix)
            if pipeline.config.evaluation.plots:
                shown = [
                    (key, header)
                    for key, header in headline_columns(columns)
                    if all(key in row for row in per_language.values())
                ]
                write_plot(
                    md.parent / f"{spec.name}_languages.png",
                    lambda: language_bars_png(
                        per_language,
                        shown,
                        task=spec.name,
                        model=model_label(pipeline.config.model.name),
                        intermediate=pipeline.config.intermediate.task,
                    ),
                    report=say,
                )
                for name, figure in plots:
                    write_plot(md.parent / name, figure, report=say)
            print(md.read_text(), flush=True)
        log_scores(pipeline.workdir / "evaluation", per_language, summary)
        record_evaluation(pipeline.workdir, pipeline.evaluation_fingerprint)
    return summary


def log_scores(folder: Any, per_language: dict[str, dict[str, float]], summary: dict[str, Any]) -> None:
    """The zero-shot scores beside the training curves: TensorBoard scalars `zero_shot/<language>/<metric>` and
    `zero_shot/average/<metric>` (and evaluation/metrics.jsonl), step 0."""
    log = MetricsLog(folder)
    for language, row in per_language.items():
        log.write(0, f"zero_shot/{language}", {k: v for k, v in row.items() if isinstance(v, (int, float))})
    averages = summary.get("average", {})
    if isinstance(averages, dict) and averages:
        log.write(0, "zero_shot/average", {k: v for k, v in averages.items() if isinstance(v, (int, float))})
    log.close()


def make_predictor(pipeline: Any, model_spec: Any) -> Predictor:
    """The evaluator of `model_spec` with the config's batch size and length bucketing."""
    e = pipeline.config.evaluation
    return Predictor(model_spec, pipeline.mesh, pipeline.rules, e.batch_size, length_buckets=e.length_buckets)


def say(message: str) -> None:
    """Print once per run (on process 0), unbuffered so logs of long runs stay current."""
    if jax.process_index() == 0:
        print(message, flush=True)


def source_of(phase: ml_collections.ConfigDict) -> dict[str, Any]:
    """The phase's data source with its unset keys dropped."""
    return {k: v for k, v in phase.source.to_dict().items() if v not in ("", None)}


def task_source_of(phase: ml_collections.ConfigDict, task: str) -> dict[str, Any]:
    """The source of one task of a (multi-task) phase: its entry in `task_sources`, else the phase's `source`."""
    overrides = phase.task_sources
    if task in overrides:
        entry = overrides[task]
        entry = entry.to_dict() if isinstance(entry, ml_collections.ConfigDict) else dict(entry)
        return {k: v for k, v in entry.items() if v not in ("", None)}
    return source_of(phase)


def _relabel(example: Any, language: str) -> Any:
    """A translated example: its language set, its id made distinct from the English original's."""
    return dataclasses.replace(example, language=language, id=f"{example.id}-{language}")


def load_training_examples(task: Any, phase: ml_collections.ConfigDict, source: Mapping[str, Any]) -> list[Any]:
    """The phase's training examples: every language of `phase.train_languages` (default English; 'all': English and
    every language of the task), concatenated, or repeated to equal counts with `language_sampling='balanced'`.

    A non-English language comes from `phase.translated_train` when set (a file path template with `{lang}` and
    optionally `{task}`, in the task's own training-file format or XTREME's translate-train rows), else from XTREME's
    translate-train files in an xtreme source's download folder, else from the phase's source, when that source has
    training data in the language (stilts_jax.pipeline.translate_train). `max_train_examples` applies per language.
    """
    languages = training_languages(phase, task.spec.name)
    limit = phase.max_train_examples
    parts: list[list[Any]] = []
    for language in languages:
        translated = None if language == "en" else translation_source(task.spec.name, phase, source, language)
        if translated is not None:
            part = [_relabel(ex, language) for ex in task.load("train", translated, ["en"])["en"]]
        else:
            hint = (
                f"Set --config.<phase>.translated_train to a file template such as "
                f"/data/translate-train/{task.spec.name}.{{lang}}.tsv, or drop {language} from train_languages"
            )
            try:
                loaded = task.load("train", source, [language])
            except InputError as e:
                if language == "en":
                    raise
                raise StiltsError(f"{e}. {hint}") from None
            if language not in loaded:
                raise StiltsError(
                    f"{task.spec.name} has no {language} training data in the source {dict(source)} "
                    f"(its loader serves {', '.join(loaded) or 'nothing'}). {hint}"
                )
            part = loaded[language]
        parts.append(part[:limit] if limit else part)
    if phase.get("language_sampling") == "balanced":
        parts = balanced(parts, languages)
    return [example for part in parts for example in part]


SELECTIONS = ("best", "last")


def selection_of(phase: ml_collections.ConfigDict) -> str:
    """How the phase's model is chosen: "best" English dev score of the periodic evaluations, or the "last" step."""
    selection = phase.train.selection
    if selection not in SELECTIONS:
        raise InputError(f"train.selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")
    return selection


def selection_rule(phase: ml_collections.ConfigDict) -> str:
    """The selection rule in words, for results headers."""
    t = phase.train
    if selection_of(phase) == "last":
        return "last step"
    every = f"every {t.eval_every} steps and at the end" if t.eval_every else "at the end only"
    subset = f"first {t.eval_subset} English dev examples" if t.eval_subset else "English dev set"
    patience = (
        f", early stopping after {t.early_stopping_patience} evaluations without a better score"
        if t.early_stopping_patience and t.eval_every
        else ""
    )
    return f"best checkpoint by the {subset}, evaluated {every}{patience}"


def selection_subset(phase: ml_collections.ConfigDict, dev_examples: list[Any]) -> list[Any]:
    """The dev examples scored during training (jiant's eval_subset_num: the first N); all of them with 0."""
    size = phase.train.eval_subset
    return dev_examples[:size] if size else dev_examples


class SelectionScores:
    """A phase's dev evaluation for model selection: `score(params, whole)` scores the selection subset
    (whole=False, during training) or every dev example (whole=True, the selected model's reported score). When the
    subset is the whole dev set, the training loop's evaluation of the selected step (`TrainResult.evaluations`)
    is that score already and is reused: no model is scored twice on the same examples."""

    def __init__(self, score: Any, phase: ml_collections.ConfigDict, subset_is_whole: bool):
        self.score, self.phase, self.subset_is_whole = score, phase, subset_is_whole

    def during_training(self, params: Any) -> dict[str, float]:
        return self.score(params, False)

    def selected(self, result: Any) -> tuple[Any, int | None]:
        """The parameters the phase hands on, and their step."""
        if selection_of(self.phase) == "last":
            return result.state.params, result.steps
        return result.best_params, result.best_step

    def final(self, result: Any) -> dict[str, float]:
        """The selected model's score on the whole dev set."""
        params, step = self.selected(result)
        scored = getattr(result, "evaluations", {}).get(step)
        if self.subset_is_whole and scored is not None:
            return scored  # the loop scored these parameters on these examples at that step
        return self.score(params, True)


def trainer_config(phase: ml_collections.ConfigDict, seed: int) -> TrainerConfig:
    t = phase.train
    last = selection_of(phase) == "last"
    return TrainerConfig(
        global_batch_size=t.batch_size,
        micro_batches=t.micro_batches,
        epochs=t.epochs,
        max_steps=t.max_steps or None,
        seed=seed,
        dropout=t.dropout,
        log_every=t.log_every,
        checkpoint_every=t.checkpoint_every,
        eval_every=None if last else (t.eval_every or None),
        keep_checkpoints=t.keep_checkpoints,
        progress_bar=t.progress_bar,
        early_stopping_patience=0 if last else t.early_stopping_patience,
        length_grouping=t.length_grouping,
        optimizer=OptimizerConfig(
            learning_rate=t.learning_rate,
            warmup_fraction=t.warmup_fraction,
            weight_decay=t.weight_decay,
            adam_eps=t.adam_eps,
            max_grad_norm=t.max_grad_norm,
        ),
    )


def search_options(evaluation: Any) -> dict[str, Any]:
    """NearestNeighbors' options from the evaluation config (configs/base.py: search_kernel, search_dtype)."""
    return {"kernel": evaluation.search_kernel, "dtype": evaluation.search_dtype}


def training_features(pipeline: Any, task: Any, examples: Sequence[Any]) -> dict[str, np.ndarray]:
    """`task.train_features(examples)`, built once: read from `<workdir>/features/` when the tokenizer, the task's
    featurization settings and the examples are those of an earlier run (a resume, another host of a pod)."""
    settings = {
        "task": task.spec.name,
        "family": task.spec.family,
        "featurizer": type(task).__qualname__,
        "max_length": task.max_length,
        "doc_stride": getattr(task, "doc_stride", None),
        "max_query_length": getattr(task, "max_query_length", None),
        "labels": list(getattr(task, "labels", ()) or ()),
    }
    key = cache_key(tokenizer_fingerprint(task.tokenizer), settings, examples_fingerprint(examples))
    return cached_features(
        lambda: task.train_features(examples),
        folder=as_path(pipeline.config.feature_cache)
        if pipeline.config.feature_cache
        else pipeline.workdir / "features",
        name=task.spec.name,
        key=key,
        say=say,
    )
