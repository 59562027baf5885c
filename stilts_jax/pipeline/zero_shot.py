"""Zero-shot evaluation: the target-task model predicts every language's test set; scores, tables, predictions."""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any

import jax

from stilts_jax.core.errors import InputError
from stilts_jax.core.paths import absolute
from stilts_jax.evaluation.report import summarize
from stilts_jax.pipeline.common import finished_evaluation, make_predictor, publish_results, say, source_of
from stilts_jax.pipeline.language_results import LanguageResults, fingerprint
from stilts_jax.pipeline.protocol import run_protocol
from stilts_jax.tasks.registry import get_task
from stilts_jax.train.averaging import average_params, checkpoint_params, kept_steps
from stilts_jax.train.checkpoints import load_params
from stilts_jax.train.state import ModelSpec

if TYPE_CHECKING:
    from stilts_jax.pipeline.context import RunContext as Pipeline


AVERAGED = "average_checkpoints"  # the evaluation key, and the results.json entry of the averaged model


def averaged_label(k: int) -> str:
    """The label of the uniform average of the last k kept checkpoints in results tables."""
    return f"avg-last-{k}"


def _selected_settings(e: Any) -> dict[str, Any]:
    """The evaluation settings that determine the selected model's scores (not the averaging, a second model)."""
    return {key: value for key, value in e.to_dict().items() if key != AVERAGED}


def _evaluate_languages(
    task: Any,
    spec: Any,
    predictor: Any,
    params: Any,
    examples: dict[str, list[Any]],
    languages: list[str],
    done: LanguageResults,
    *,
    predictions: Any,
    label: str = "",
) -> dict[str, dict[str, Any]]:
    """Each language's scores (reusing those saved earlier by `done`), predictions written under `predictions`."""
    shown_label = f" ({label})" if label else ""
    per_language = {}
    for lang in languages:
        saved = done.get(lang)
        if saved is not None:
            per_language[lang] = saved
            say(f"[evaluation] {spec.name} {lang}{shown_label}: evaluated earlier (scores and predictions kept)")
            continue
        predicted = task.predict(predictor, params, examples[lang], desc=f"zero-shot {lang}{shown_label}")
        scores = task.score(predicted, examples[lang], **({"language": lang} if spec.family == "span_qa" else {}))
        baseline = task.baseline(examples[lang])
        per_language[lang] = {**scores, **baseline, "examples": len(examples[lang])}
        written = []
        if jax.process_index() == 0:
            written.append(task.write_predictions(predictions, lang, predicted, examples[lang]))
        done.put(lang, per_language[lang], files=written)  # a later run keeps this language only while they match
        shown = "  ".join(f"{k} {v:.1f}" for k, v in scores.items())
        say(
            f"[evaluation] {spec.name} {lang}{shown_label}: {shown}  (trivial baseline "
            f"{', '.join(f'{v:.1f}' for v in baseline.values())}, {len(examples[lang])} examples)"
        )
        if hasattr(task, "featurization_note"):
            say(f"[evaluation] {spec.name} {lang}: {task.featurization_note()}")
    return per_language


def evaluate_zero_shot(pipeline: Pipeline, target: dict[str, Any]) -> dict[str, Any]:
    """Evaluate the target phase's best model in every language; write results.json/.md and XTREME predictions.
    With evaluation.average_checkpoints=k, the uniform average of the last k kept checkpoints of the target phase is
    evaluated too and reported beside it (results.json `average_checkpoints`, labelled avg-last-k)."""
    workdir = pipeline.workdir
    earlier = finished_evaluation(workdir, pipeline.evaluation_fingerprint)
    if earlier is not None:
        return earlier
    phase, e = pipeline.config.target, pipeline.config.evaluation
    spec = get_task(phase.task)
    if e.split:
        spec = dataclasses.replace(spec, eval_split=e.split)
    task = pipeline.make_task(spec, phase)
    languages = list(e.languages) or list(spec.languages)
    examples = task.load("eval", source_of(phase), languages)
    model_spec = ModelSpec(pipeline.abstract_model(task), pipeline.mesh, pipeline.rules)
    abstract = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        model_spec.abstract_params,
        model_spec.param_shardings,
    )
    params = load_params(target["best_model"], abstract)
    predictor = make_predictor(pipeline, model_spec)
    settings = dict(task=spec.name, split=spec.eval_split, evaluation=_selected_settings(e), source=source_of(phase))
    done = LanguageResults(
        workdir / "evaluation" / "languages", fingerprint(model=target["best_model"], **settings), root=workdir
    )
    per_language = _evaluate_languages(
        task, spec, predictor, params, examples, languages, done, predictions=workdir / "predictions"
    )
    extra: dict[str, Any] = {}
    if e.average_checkpoints:
        del params
        extra[AVERAGED] = _evaluate_average(
            pipeline, task, spec, predictor, abstract, examples, languages, target, settings
        )
    protocol = run_protocol(
        pipeline.config, split=spec.eval_split, trained_target=True, phases={"target": target, **pipeline.phase_records}
    )
    return publish_results(pipeline, spec, per_language, task.columns, protocol, **extra)


def _evaluate_average(
    pipeline: Pipeline,
    task: Any,
    spec: Any,
    predictor: Any,
    abstract: Any,
    examples: dict[str, list[Any]],
    languages: list[str],
    target: dict[str, Any],
    settings: dict[str, Any],
) -> dict[str, Any]:
    """The uniform average of the last `evaluation.average_checkpoints` kept checkpoints of the target phase,
    evaluated in every language: its label, the averaged steps and its summary (per language and averages)."""
    k = pipeline.config.evaluation.average_checkpoints
    folder = absolute(target["best_model"]).parent / "checkpoints"
    steps = kept_steps(folder)[-k:]
    if not steps:
        raise InputError(
            f"evaluation.average_checkpoints={k}: the target phase kept no checkpoints in {folder}; train it again "
            "in a new workdir (or set evaluation.average_checkpoints=0)"
        )
    label = averaged_label(k)
    if len(steps) < k:
        say(
            f"warning: evaluation.average_checkpoints={k}, but the target phase kept only {len(steps)} "
            f"checkpoint(s) ({folder}: steps {', '.join(map(str, steps))}); those are averaged. For {k}, save more "
            f"often (target.train.checkpoint_every) and keep them (target.train.keep_checkpoints >= {k})"
        )
    say(f"[evaluation] {label}: the uniform average of the target checkpoints of steps {', '.join(map(str, steps))}")
    params = average_params([functools.partial(checkpoint_params, folder, step, abstract) for step in steps])
    done = LanguageResults(
        pipeline.workdir / "evaluation" / label,
        fingerprint(model={"checkpoints": str(folder), "steps": steps}, **settings),
        root=pipeline.workdir,
    )
    per_language = _evaluate_languages(
        task,
        spec,
        predictor,
        params,
        examples,
        languages,
        done,
        predictions=pipeline.workdir / "predictions" / label,
        label=label,
    )
    summary = summarize(spec.name, per_language, benchmark_name=spec.xtreme_name)
    return {
        "label": label,
        "description": (
            f"uniform average of the parameters of the last {len(steps)} kept checkpoints of the target phase"
        ),
        "steps": steps,
        **{key: summary[key] for key in ("per_language", "average", "average_zero_shot", "benchmark_averages")},
    }
