"""Rank intermediate encoders for a target task before training on it: LogME on frozen features, and SEmb, the
similarity of the intermediate and target datasets.

    python -m stilts_jax.select --candidates=workdir/sweeps/stilts --target=xnli
    python -m stilts_jax.select --candidates=pretrained,workdir/anli_run,/models/my-xlmr --target=pawsx \\
        --config=configs/stilts.py:intermediate=anli,target=pawsx --output=workdir/selection

Each candidate encoder reads the target's English training examples (at most --max-examples, a fixed random subset),
featurized as the target task featurizes them; the last layer's first-token (<s>) representation (or the mean over
the tokens, --pooling=mean) is the feature matrix, and LogME (You et al., ICML 2021) scores how well a linear model
on it explains the labels (stilts_jax/evaluation/transferability.py). A multiple-choice target (xcopa) enters each
choice's feature relative to its example's other choices, regressed on whether it is the correct one. SEmb (Vu et
al. 2020; Poth et al. 2021) embeds the English training data of a run's intermediate task(s) and of the target with
one fixed encoder (--semb-model, default the config's pretrained model: the mean over examples of the mean-pooled
last layer) and scores their cosine similarity; candidates without an intermediate task get none. Higher ranks
first. Only forward passes: no target training.

Candidates (--candidates, comma-separated or repeated):
  pretrained          the config's model.name, the baseline without intermediate training
  a run's workdir     its intermediate encoder (a chain's last stage); a run without an intermediate phase is the
                      pretrained model
  a sweep root        every run folder under it; the runs of --target when it has any
  a model folder      a Hugging Face folder of the same architecture and tokenizer as the config's model

The config (--config=FILE --config.key=value, as for stilts_jax.main) names the model, its tokenizer, the target's
data source, mesh and batch size; without --config, the saved config.json of the first run among the candidates is
used. Where runs of the target have results.json, the table shows their measured zero-shot average (the target's
metric over the evaluated languages other than English) and each method's agreement with it: Spearman's rank
correlation, regret@1 and regret@3 (how much worse the best measured score among the top 1 or 3 predicted is than
the best measured, relative to the best). Writes selection.md and selection.json into --output.
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

SUPPORTED_FAMILIES = ("classification", "multiple_choice")
METHODS = ("logme", "semb")
METHOD_NAMES = {"logme": "LogME", "semb": "SEmb"}
PRETRAINED = "pretrained"
DONE = "phase_done.json"


@dataclasses.dataclass
class Candidate:
    name: str
    kind: str  # "pretrained", "model" (a Hugging Face folder) or "run"
    encoder: str | None = None  # a saved encoder (run) or a model folder; None: the config's pretrained model
    run: Path | None = None
    measured: float | None = None  # the run's measured zero-shot average on the target
    intermediate: str | None = None  # a run's intermediate task as spelled (a+b: a chain, a&b: together); None: none
    logme: float | None = None
    semb: float | None = None  # None: no intermediate task to compare (pretrained, a baseline run, a model folder)

    def score(self, method: str) -> float | None:
        value: float | None = getattr(self, method)
        return value


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
    task = _read_json(run / "config.json").get("intermediate", {}).get("task") or None
    return Candidate(run.name, "run", run_encoder(run), run, measured_score(run, target), intermediate=task)


def intermediate_datasets(run: Path) -> list[tuple[str, ml_collections.ConfigDict, dict[str, Any]]]:
    """(task, stage config, data source) of every task the run's intermediate phase trained, in stage order: each
    stage of a chain, each task of a multi-task stage, with the settings (max_length, source) it trained with."""
    from stilts_jax.pipeline.chain import chain_stages, stage_tasks
    from stilts_jax.pipeline.common import task_source_of

    phase = ml_collections.ConfigDict(_read_json(run / "config.json").get("intermediate", {}))
    return [
        (task, stage, task_source_of(stage, task)) for _, stage in chain_stages(phase) for task in stage_tasks(stage)
    ]


def text_parts(arrays: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The token rows of a task's featurized arrays, whatever its family: {input_ids, attention_mask} [rows, length]
    per kind of text (a dual-encoder task's queries and candidates are two); a multiple-choice example's choices are
    rows of their own, padded choices (no tokens) left out."""
    parts = []
    for key in sorted(k for k in arrays if k.endswith("input_ids")):
        mask_key = key[: -len("input_ids")] + "attention_mask"
        if mask_key not in arrays:
            continue
        ids = arrays[key].reshape(-1, arrays[key].shape[-1])
        mask = arrays[mask_key].reshape(-1, arrays[mask_key].shape[-1])
        keep = mask.sum(axis=1) > 0
        parts.append({"input_ids": ids[keep], "attention_mask": mask[keep]})
    if not parts:
        raise InputError(f"featurized arrays {sorted(arrays)} hold no input_ids and attention_mask to embed")
    return parts


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


def _english_subset(task: Any, phase: ml_collections.ConfigDict, source: dict[str, Any], limit: int, seed: int) -> list:
    """At most `limit` English training examples of the phase's task, a fixed random subset (in file order)."""
    from stilts_jax.pipeline.common import load_training_examples

    english = phase.copy_and_resolve_references()
    with english.unlocked():
        english.train_languages = ["en"]  # the scores are measured on English examples whatever the phase trains on
    examples = load_training_examples(task, english, source)
    if len(examples) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(examples), limit, replace=False))
        examples = [examples[i] for i in keep]
    return examples


def score_candidates(
    config: ml_collections.ConfigDict,
    candidates: list[Candidate],
    *,
    max_examples: int,
    pooling: str,
    semb_model: str = PRETRAINED,
    layer: str = "last",
) -> dict[str, Any]:
    """Fill each candidate's LogME on the target's English training examples, and each run's SEmb; returns what
    was scored on."""
    from stilts_jax.evaluation.transferability import (
        FeatureExtractor,
        dataset_embedding,
        logme,
        multiple_choice_logme,
        semb,
    )
    from stilts_jax.models.encoder import Encoder
    from stilts_jax.models.hf_weights import load_pretrained
    from stilts_jax.pipeline.common import say, source_of
    from stilts_jax.pipeline.context import RunContext
    from stilts_jax.tasks.registry import get_task

    if semb_model != PRETRAINED and not is_model_folder(Path(semb_model)):
        raise InputError(
            f"--semb-model={semb_model} is neither '{PRETRAINED}' nor a Hugging Face model folder (config.json and "
            "weights) of the config's architecture and tokenizer"
        )
    spec = get_task(config.target.task)
    if spec.family not in SUPPORTED_FAMILIES:
        raise InputError(
            f"--target={spec.name} is a {spec.family} task; selection by LogME supports "
            f"{', '.join(SUPPORTED_FAMILIES)} targets (sentence or sentence-pair labels: xnli, pawsx; choices: "
            "xcopa)"
        )
    try:
        pipeline = RunContext(config)
    except (AttributeError, KeyError) as e:  # a run's config.json written by an older version lacks a key
        raise InputError(
            f"the config lacks {e}: pass --config=FILE, the recipe the candidates were trained with"
        ) from None
    task = pipeline.make_task(spec, config.target)
    examples = _english_subset(task, config.target, source_of(config.target), max_examples, config.seed)
    arrays = task.train_features(examples)
    multiple_choice = spec.family == "multiple_choice"
    inputs = {k: arrays[k].reshape(-1, arrays[k].shape[-1]) for k in ("input_ids", "attention_mask")}

    def load(encoder: str | None, folder: bool) -> Encoder:
        if folder:
            return load_pretrained(encoder, **pipeline.encoder_options)[0]  # type: ignore[arg-type]
        return pipeline.load_encoder(encoder)

    extractor: FeatureExtractor | None = None
    layer_index = 0
    for candidate in candidates:
        encoder = load(candidate.encoder, candidate.kind == "model")
        if extractor is None:  # built on the first encoder; its compiled forward serves all of them
            layer_index = feature_layer(layer, encoder.config.num_hidden_layers)
            extractor = FeatureExtractor(
                encoder,
                pooling=pooling,
                batch_size=config.evaluation.batch_size,
                mesh=pipeline.mesh,
                rules=pipeline.rules,
                layer=layer_index,
            )
        features = extractor(encoder, inputs)
        if multiple_choice:
            shape = arrays["input_ids"].shape[:2]
            candidate.logme = multiple_choice_logme(
                features.reshape(*shape, -1), arrays["labels"], arrays.get("choice_mask")
            )
        else:
            candidate.logme = logme(features, arrays["labels"], num_classes=len(task.labels))
        say(f"[select] {candidate.name}: LogME {candidate.logme:.4f}")

    semb_examples: dict[str, int] = {}
    runs = [c for c in candidates if c.run is not None and c.intermediate]
    if runs:
        semb_folder = semb_model != PRETRAINED
        embedder = load(semb_model if semb_folder else None, semb_folder)
        embed = FeatureExtractor(
            embedder, pooling="mean", batch_size=config.evaluation.batch_size, mesh=pipeline.mesh, rules=pipeline.rules
        )

        def embedding(arrays: dict[str, np.ndarray]) -> np.ndarray:
            return dataset_embedding(np.concatenate([embed(embedder, part) for part in text_parts(arrays)]))

        target_embedding = embedding(arrays)
        cache: dict[str, np.ndarray] = {}  # a dataset's embedding, by task, length and source
        for candidate in runs:
            assert candidate.run is not None
            parts = []
            for name, stage, source in intermediate_datasets(candidate.run):
                key = json.dumps([name, stage.max_length, stage.get("doc_stride"), source], sort_keys=True)
                if key not in cache:
                    stage_task = pipeline.make_task(get_task(name), stage)
                    subset = _english_subset(stage_task, stage, source, max_examples, config.seed)
                    semb_examples[name] = len(subset)
                    cache[key] = embedding(stage_task.train_features(subset))
                    say(f"[select] SEmb: embedded {len(subset)} English {name} training examples")
                parts.append(cache[key])
            # A chain or multi-task stage trained on several datasets: their embeddings weigh equally.
            candidate.semb = semb(np.mean(parts, axis=0), target_embedding)
            say(f"[select] {candidate.name}: SEmb {candidate.semb:.4f}")
    return {
        "target": spec.name,
        "family": spec.family,
        "examples": len(examples),
        "pooling": pooling,
        "layer": layer_index,
        "layer_choice": layer,
        "model": str(pipeline.model_dir),
        "semb_model": str(pipeline.model_dir) if semb_model == PRETRAINED else semb_model,
        "semb_examples": semb_examples,
    }


def _layer_words(info: dict[str, Any]) -> str:
    choice, index = info.get("layer_choice", "last"), info.get("layer")
    if choice == "last" or index is None:
        return "last-layer"
    if choice == "retrieval":
        return f"layer-{index} (XTREME's retrieval layer)"
    return f"layer-{index}"


def feature_layer(choice: str, depth: int) -> int:
    """The hidden-states index LogME reads (--layer): 'last' (the classification head's input), 'retrieval' (the
    layer XTREME's retrieval tasks embed with: 14 of XLM-R large's 24, 8 of base's 12; the last for other depths) or
    an index, 0 being the embeddings' output."""
    from stilts_jax.evaluation.embedding import default_retrieval_layer

    if choice == "last":
        return depth
    if choice == "retrieval":
        return default_retrieval_layer(depth)
    if choice.isdigit() and int(choice) <= depth:
        return int(choice)
    raise InputError(f"--layer={choice}: use last, retrieval or a hidden-states index from 0 to {depth}")


TIE_DIGITS = 10  # scores equal to 10 decimals are equal: LogME's noise-only evidence differs in the 15th


def _comparable(value: float) -> float:
    return round(value, TIE_DIGITS)


def _ranks_desc(values: list[float | None]) -> list[int | None]:
    """1 for the highest value; equal values (to TIE_DIGITS decimals) share the better rank (1, 1, 3); None stays
    unranked."""
    present = [_comparable(v) for v in values if v is not None]
    return [None if v is None else 1 + sum(other > _comparable(v) for other in present) for v in values]


def agreement(candidates: list[Candidate], method: str = "logme") -> dict[str, Any]:
    """How one method's ranking agrees with the measured scores, over the candidates that have both."""
    from stilts_jax.evaluation.transferability import regret_at_k, spearman

    pairs = [
        (c.score(method), c.measured) for c in candidates if c.score(method) is not None and c.measured is not None
    ]
    predicted = [_comparable(float(p)) for p, _ in pairs]  # type: ignore[arg-type]
    measured = [float(m) for _, m in pairs]
    return {
        "candidates_measured": len(pairs),
        "spearman": spearman(predicted, measured) if pairs else None,
        "regret@1": regret_at_k(predicted, measured, 1),
        "regret@3": regret_at_k(predicted, measured, 3),
    }


def report(candidates: list[Candidate], info: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """selection.json's object and selection.md's text, candidates in LogME order, each method's rank beside the
    measured one."""
    ranks = {method: _ranks_desc([c.score(method) for c in candidates]) for method in METHODS}
    measured_ranks = _ranks_desc([c.measured for c in candidates])
    rows = sorted(
        range(len(candidates)),
        key=lambda i: (ranks["logme"][i] is None, ranks["logme"][i] or 0, measured_ranks[i] or len(candidates) + 1),
    )
    summary = {method: agreement(candidates, method) for method in METHODS}
    data = {
        **info,
        "candidates": [
            {
                "name": candidates[i].name,
                "kind": candidates[i].kind,
                "intermediate": candidates[i].intermediate,
                "encoder": candidates[i].encoder,
                "run": str(candidates[i].run) if candidates[i].run else None,
                **{
                    key: value
                    for method in METHODS
                    for key, value in ((method, candidates[i].score(method)), (f"{method}_rank", ranks[method][i]))
                },
                "measured": candidates[i].measured,
                "measured_rank": measured_ranks[i],
            }
            for i in rows
        ],
        "agreement": summary,
    }

    def number(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    features = "`<s>`" if info["pooling"] == "cls" else "mean-pooled"
    if info.get("family") == "multiple_choice":
        features += " features of each choice, relative to the mean of its example's choices, against which is correct"
    else:
        features += " features"
    lines = [
        f"### Intermediate encoders for {info['target']}: predicted and measured ranks",
        "",
        f"LogME: the candidate's {_layer_words(info)} {features}, on {info['examples']} English training examples "
        "of the "
        f"target. SEmb: the cosine similarity of the candidate's intermediate training data to the target's, each "
        f"the mean over English training examples of the mean-pooled last layer of {Path(info['semb_model']).name}. "
        "Higher is better for both. Measured: the run's zero-shot average on the target (no English).",
        "",
        "| candidate | intermediate | LogME | LogME rank | SEmb | SEmb rank | measured score | measured rank |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    no_task = False
    for i in rows:
        c = candidates[i]
        if c.semb is None:
            no_task = True
        lines.append(
            f"| {c.name} | {c.intermediate or '-'} | {number(c.logme, 6)} | {ranks['logme'][i] or '-'} | "
            f"{number(c.semb, 6) if c.semb is not None else 'no task'} | {ranks['semb'][i] or '-'} | "
            f"{number(c.measured, 2)} | {measured_ranks[i] or '-'} |"
        )
    if no_task:
        lines += [
            "",
            "SEmb compares an intermediate task's data with the target's: a candidate without an intermediate task "
            "(the pretrained model, a baseline run, a model folder) has none (no task).",
        ]
    if any(summary[m]["candidates_measured"] for m in METHODS):
        lines += [
            "",
            "| method | measured candidates | Spearman | regret@1 | regret@3 |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {METHOD_NAMES[m]} | {summary[m]['candidates_measured']} | {number(summary[m]['spearman'], 3)} | "
            f"{number(summary[m]['regret@1'], 3)} | {number(summary[m]['regret@3'], 3)} |"
            for m in METHODS
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
    parser.add_argument(
        "--target", required=True, help="the target task (classification: xnli, pawsx; multiple choice: xcopa)"
    )
    parser.add_argument(
        "--max-examples", type=int, default=2000, help="English training examples scored (default 2000)"
    )
    parser.add_argument(
        "--pooling",
        choices=("cls", "mean"),
        default="cls",
        help="the first token's last-layer state (cls, default) or the mean over the tokens",
    )
    parser.add_argument(
        "--layer",
        default="last",
        help="the layer LogME's features come from: last (default), retrieval (XTREME's retrieval layer: 14 of XLM-R "
        "large's 24 layers, 8 of base's 12) or a hidden-states index (0: the embeddings' output)",
    )
    parser.add_argument(
        "--semb-model",
        default=PRETRAINED,
        help="the encoder SEmb embeds both datasets with: 'pretrained' (the config's model.name, default) or a "
        "Hugging Face model folder of the same architecture and tokenizer (a sentence-embedding model, as Poth et "
        "al. use)",
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
        info = score_candidates(
            config,
            candidates,
            max_examples=args.max_examples,
            pooling=args.pooling,
            semb_model=args.semb_model,
            layer=args.layer,
        )
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
