"""Zero-shot evaluation: the target-task model predicts every language's test set; scores, tables, predictions."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import jax

from stilts_jax.pipeline.common import finished_evaluation, make_predictor, publish_results, say, source_of
from stilts_jax.pipeline.language_results import LanguageResults, fingerprint
from stilts_jax.pipeline.protocol import run_protocol
from stilts_jax.tasks.registry import get_task
from stilts_jax.train.checkpoints import load_params
from stilts_jax.train.state import ModelSpec

if TYPE_CHECKING:
    from stilts_jax.pipeline.context import RunContext as Pipeline


def evaluate_zero_shot(pipeline: Pipeline, target: dict[str, Any]) -> dict[str, Any]:
    """Evaluate the target phase's best model in every language; write results.json/.md and XTREME predictions."""
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
    done = LanguageResults(
        workdir / "evaluation" / "languages",
        fingerprint(
            model=target["best_model"],
            task=spec.name,
            split=spec.eval_split,
            evaluation=e.to_dict(),
            source=source_of(phase),
        ),
        root=workdir,
    )
    per_language = {}
    for lang in languages:
        saved = done.get(lang)
        if saved is not None:
            per_language[lang] = saved
            say(f"[evaluation] {spec.name} {lang}: evaluated earlier (scores and predictions kept)")
            continue
        predictions = task.predict(predictor, params, examples[lang], desc=f"zero-shot {lang}")
        scores = task.score(predictions, examples[lang], **({"language": lang} if spec.family == "span_qa" else {}))
        baseline = task.baseline(examples[lang])
        per_language[lang] = {**scores, **baseline, "examples": len(examples[lang])}
        written = []
        if jax.process_index() == 0:
            written.append(task.write_predictions(workdir / "predictions", lang, predictions, examples[lang]))
        done.put(lang, per_language[lang], files=written)  # a later run keeps this language only while they match
        shown = "  ".join(f"{k} {v:.1f}" for k, v in scores.items())
        say(
            f"[evaluation] {spec.name} {lang}: {shown}  (trivial baseline "
            f"{', '.join(f'{v:.1f}' for v in baseline.values())}, {len(examples[lang])} examples)"
        )
        if hasattr(task, "featurization_note"):
            say(f"[evaluation] {spec.name} {lang}: {task.featurization_note()}")
    protocol = run_protocol(
        pipeline.config, split=spec.eval_split, trained_target=True, phases={"target": target, **pipeline.phase_records}
    )
    return publish_results(pipeline, spec, per_language, task.columns, protocol)
