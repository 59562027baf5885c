"""Rank intermediate encoders for a target task before training on it: LogME on frozen features.

    python -m stilts_jax.select --candidates=workdir/sweeps/stilts --target=xnli
    python -m stilts_jax.select --candidates=pretrained,workdir/anli_run,/models/my-xlmr --target=pawsx \\
        --config=configs/stilts.py:intermediate=anli,target=pawsx --output=workdir/selection

Each candidate encoder reads the target's English training examples (at most --max-examples, a fixed random subset),
featurized as the target task featurizes them; the last layer's first-token (<s>) representation (or the mean over
the tokens, --pooling=mean) is the feature matrix, and LogME (You et al., ICML 2021) scores how well a linear model
on it explains the labels (stilts_jax/evaluation/transferability.py). Higher ranks first. Only forward passes: no
target training.

Candidates (--candidates, comma-separated or repeated):
  pretrained          the config's model.name, the baseline without intermediate training
  a run's workdir     its intermediate encoder (a chain's last stage); a run without an intermediate phase is the
                      pretrained model
  a sweep root        every run folder under it; the runs of --target when it has any
  a model folder      a Hugging Face folder of the same architecture and tokenizer as the config's model

The config (--config=FILE --config.key=value, as for stilts_jax.main) names the model, its tokenizer, the target's
data source, mesh and batch size; without --config, the saved config.json of the first run among the candidates is
used. Where runs of the target have results.json, the table shows their measured zero-shot average (the target's
metric over the evaluated languages other than English) and the agreement: Spearman's rank correlation, regret@1
and regret@3 (how much worse the best measured score among the top 1 or 3 predicted is than the best measured,
relative to the best). Writes selection.md and selection.json into --output.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from stilts_jax.core.errors import InputError, StiltsError
from stilts_jax.core.io_utils import atomic_write_text

SUPPORTED_FAMILIES = ("classification",)
PRETRAINED = "pretrained"
DONE = "phase_done.json"


@dataclasses.dataclass
class Candidate:
    name: str
    kind: str  # "pretrained", "model" (a Hugging Face folder) or "run"
    encoder: str | None = None  # a saved encoder (run) or a model folder; None: the config's pretrained model
    run: Path | None = None
    measured: float | None = None  # the run's measured zero-shot average on the target
    logme: float | None = None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not readable JSON ({e})") from None


def is_run(folder: Path) -> bool:
    """A pipeline workdir: its saved config.json holds a target phase."""
    config = folder / "config.json"
    if not config.is_file():
        return False
    saved = _read_json(config)
    return isinstance(saved, dict) and "target" in saved


def is_model_folder(folder: Path) -> bool:
    config = folder / "config.json"
    weights = any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))
    return config.is_file() and weights and not is_run(folder)


def _encoder_of(phase_dir: Path) -> str | None:
    record = _read_json(phase_dir / DONE) if (phase_dir / DONE).is_file() else None
    if not isinstance(record, dict) or "encoder" not in record:
        return None
    path = str(record["encoder"])
    return path if path.startswith(("/", "gs://")) else str(phase_dir / path)


def run_encoder(run: Path) -> str | None:
    """The encoder the run's intermediate phase handed to its target phase (a chain's last stage), or None for a run
    without an intermediate phase. A run whose intermediate phase has not finished is an error."""
    config = _read_json(run / "config.json")
    if not config.get("intermediate", {}).get("task"):
        return None
    folder = run / "intermediate"
    stages = sorted(
        (p for p in folder.glob("*_*") if p.is_dir() and p.name.split("_", 1)[0].isdigit()),
        key=lambda p: int(p.name.split("_", 1)[0]),
    )
    encoder = _encoder_of(stages[-1]) if stages else _encoder_of(folder)
    if encoder is None:
        raise InputError(
            f"{run}: its intermediate phase has not finished ({(stages[-1] if stages else folder) / DONE} "
            "is missing): finish the run (python -m stilts_jax.main with its config) or leave it out"
        )
    return encoder


def measured_score(run: Path, target: str) -> float | None:
    """The run's zero-shot average (its target's metric over the evaluated non-English languages), when the run's
    target is `target` and it has results."""
    from stilts_jax.experiments.aggregate import language_score

    config = _read_json(run / "config.json")
    if config.get("target", {}).get("task") != target or not (run / "results.json").is_file():
        return None
    summary = _read_json(run / "results.json")
    average = summary.get("average_zero_shot") if isinstance(summary, dict) else None
    return language_score(target, average) if isinstance(average, dict) else None


def _run_candidate(run: Path, target: str) -> Candidate:
    return Candidate(run.name, "run", run_encoder(run), run, measured_score(run, target))


def resolve_candidates(specs: list[str], target: str) -> list[Candidate]:
    """Every candidate named on the command line, sweep roots expanded into their runs."""
    candidates: list[Candidate] = []
    for spec in specs:
        if spec == PRETRAINED:
            candidates.append(Candidate(PRETRAINED, "pretrained"))
            continue
        folder = Path(spec)
        if not folder.is_dir():
            raise InputError(f"--candidates: {spec} is neither '{PRETRAINED}' nor a folder")
        if is_run(folder):
            candidates.append(_run_candidate(folder, target))
        elif is_model_folder(folder):
            candidates.append(Candidate(folder.name, "model", str(folder)))
        else:
            runs = sorted(p for p in folder.iterdir() if p.is_dir() and is_run(p))
            if not runs:
                raise InputError(
                    f"--candidates: {spec} is no run workdir (config.json with a target), sweep root "
                    "(run folders under it) or Hugging Face model folder (config.json and weights)"
                )
            of_target = [r for r in runs if _read_json(r / "config.json").get("target", {}).get("task") == target]
            candidates.extend(_run_candidate(r, target) for r in (of_target or runs))
    names = [c.name for c in candidates]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"--candidates names {', '.join(duplicates)} more than once")
    if not candidates:
        raise InputError("--candidates names no candidate")
    return candidates


def load_config(config_args: list[str], candidates: list[Candidate], target: str) -> ml_collections.ConfigDict:
    """The config from --config (target.task set to `target`), else the first run candidate's saved config."""
    if config_args:
        from stilts_jax.config.loader import parse_config_args

        if not any(a.startswith("--config.target.task") for a in config_args):
            config_args = [*config_args, f"--config.target.task={target}"]
        config, rest = parse_config_args(config_args)
        if rest:
            raise InputError(f"unknown arguments {rest}")
        return config
    run = next((c.run for c in candidates if c.run is not None), None)
    if run is None:
        raise InputError(
            "pass --config=FILE (the recipe the candidates were trained with: its model.name, tokenizer "
            "and the target's data source are used); only a run's saved config.json can stand in for it"
        )
    config = ml_collections.ConfigDict(_read_json(run / "config.json"))
    config.target.task = target
    return config


def score_candidates(
    config: ml_collections.ConfigDict, candidates: list[Candidate], *, max_examples: int, pooling: str
) -> dict[str, Any]:
    """Fill each candidate's LogME on the target's English training examples; returns what was scored on."""
    from stilts_jax.evaluation.transferability import FeatureExtractor, logme
    from stilts_jax.models.hf_weights import load_pretrained
    from stilts_jax.pipeline.common import load_training_examples, say, source_of
    from stilts_jax.pipeline.context import RunContext
    from stilts_jax.tasks.registry import get_task

    spec = get_task(config.target.task)
    if spec.family not in SUPPORTED_FAMILIES:
        raise InputError(
            f"--target={spec.name} is a {spec.family} task; selection by LogME supports "
            f"{', '.join(SUPPORTED_FAMILIES)} targets (sentence or sentence-pair labels: xnli, pawsx)"
        )
    try:
        pipeline = RunContext(config)
    except (AttributeError, KeyError) as e:  # a run's config.json written by an older version lacks a key
        raise InputError(
            f"the config lacks {e}: pass --config=FILE, the recipe the candidates were trained with"
        ) from None
    task = pipeline.make_task(spec, config.target)
    english = config.target.copy_and_resolve_references()
    english.train_languages = ["en"]  # the evidence is measured on English examples whatever the target trains on
    examples = load_training_examples(task, english, source_of(config.target))
    if len(examples) > max_examples:
        keep = np.sort(np.random.default_rng(config.seed).choice(len(examples), max_examples, replace=False))
        examples = [examples[i] for i in keep]
    arrays = task.train_features(examples)
    inputs = {k: arrays[k] for k in ("input_ids", "attention_mask")}
    extractor: FeatureExtractor | None = None
    for candidate in candidates:
        if candidate.kind == "model":
            encoder = load_pretrained(candidate.encoder, **pipeline.encoder_options)[0]  # type: ignore[arg-type]
        else:
            encoder = pipeline.load_encoder(candidate.encoder)
        if extractor is None:  # built on the first encoder; its compiled forward serves all of them
            extractor = FeatureExtractor(
                encoder,
                pooling=pooling,
                batch_size=config.evaluation.batch_size,
                mesh=pipeline.mesh,
                rules=pipeline.rules,
            )
        features = extractor(encoder, inputs)
        candidate.logme = logme(features, arrays["labels"], num_classes=len(task.labels))
        say(f"[select] {candidate.name}: LogME {candidate.logme:.4f}")
    return {"target": spec.name, "examples": len(examples), "pooling": pooling, "model": str(pipeline.model_dir)}


def _ranks_desc(values: list[float | None]) -> list[int | None]:
    """1 for the highest value; equal values share the better rank (1, 1, 3); None stays unranked."""
    present = [v for v in values if v is not None]
    return [None if v is None else 1 + sum(other > v for other in present) for v in values]


def agreement(candidates: list[Candidate]) -> dict[str, Any]:
    """How LogME's ranking agrees with the measured scores, over the candidates that have both."""
    from stilts_jax.evaluation.transferability import regret_at_k, spearman

    pairs = [(c.logme, c.measured) for c in candidates if c.logme is not None and c.measured is not None]
    predicted = [float(p) for p, _ in pairs]
    measured = [float(m) for _, m in pairs]
    return {
        "candidates_measured": len(pairs),
        "spearman": spearman(predicted, measured) if pairs else None,
        "regret@1": regret_at_k(predicted, measured, 1),
        "regret@3": regret_at_k(predicted, measured, 3),
    }


def report(candidates: list[Candidate], info: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """selection.json's object and selection.md's text, candidates in LogME order."""
    ranks = _ranks_desc([c.logme for c in candidates])
    measured_ranks = _ranks_desc([c.measured for c in candidates])
    rows = sorted(zip(candidates, ranks, measured_ranks), key=lambda r: (r[1] is None, r[1] or 0))
    summary = agreement(candidates)
    data = {
        **info,
        "candidates": [
            {
                "name": c.name,
                "kind": c.kind,
                "encoder": c.encoder,
                "run": str(c.run) if c.run else None,
                "logme": c.logme,
                "rank": rank,
                "measured": c.measured,
                "measured_rank": measured_rank,
            }
            for c, rank, measured_rank in rows
        ],
        "agreement": summary,
    }

    def number(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [
        f"### Intermediate encoders for {info['target']}, ranked by LogME",
        "",
        f"LogME of the last layer's {'<s>' if info['pooling'] == 'cls' else 'mean-pooled'} features on "
        f"{info['examples']} English training examples (higher is better). Measured: the run's zero-shot "
        "average on the target (no English).",
        "",
        "| candidate | LogME | rank | measured score | measured rank |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {c.name} | {number(c.logme, 6)} | {rank or '-'} | {number(c.measured, 2)} | {measured_rank or '-'} |"
        for c, rank, measured_rank in rows
    ]
    if summary["candidates_measured"]:
        lines += [
            "",
            f"Agreement over {summary['candidates_measured']} measured candidates: Spearman "
            f"{number(summary['spearman'], 3)}, regret@1 {number(summary['regret@1'], 3)}, regret@3 "
            f"{number(summary['regret@3'], 3)}.",
        ]
    return data, "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m stilts_jax.select", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--candidates",
        action="append",
        required=True,
        help="comma-separated: pretrained, run workdirs, sweep roots, model folders (repeatable)",
    )
    parser.add_argument("--target", required=True, help="the target task (a classification task: xnli, pawsx)")
    parser.add_argument(
        "--max-examples", type=int, default=2000, help="English training examples scored (default 2000)"
    )
    parser.add_argument(
        "--pooling",
        choices=("cls", "mean"),
        default="cls",
        help="the first token's last-layer state (cls, default) or the mean over the tokens",
    )
    parser.add_argument("--output", default="workdir/selection", help="folder for selection.md and selection.json")
    args, rest = parser.parse_known_args(argv)
    if rest and not any(a.startswith("--config") for a in rest):
        parser.error(f"unknown arguments {rest}; config settings are --config=FILE and --config.key=value")
    return args, rest


def main(argv: list[str] | None = None) -> int:
    args, config_args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.max_examples < 2:
            raise InputError(f"--max-examples must be at least 2, got {args.max_examples}")
        specs = [s.strip() for value in args.candidates for s in value.split(",") if s.strip()]
        candidates = resolve_candidates(specs, args.target)
        config = load_config(config_args, candidates, args.target)
        info = score_candidates(config, candidates, max_examples=args.max_examples, pooling=args.pooling)
        data, markdown = report(candidates, info)
        output = Path(args.output)
        output.mkdir(parents=True, exist_ok=True)
        atomic_write_text(output / "selection.json", json.dumps(data, indent=2) + "\n")
        atomic_write_text(output / "selection.md", markdown)
    except StiltsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(markdown, end="")
    print(f"wrote {output / 'selection.md'} and selection.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
