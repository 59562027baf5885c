"""Every configuration key's type and valid values, checked on the whole resolved config before a run spends anything.

`validate(config)` returns every problem at once, each naming its key (`target.train.batch_size must be an integer
>= 1, got 0`); `check(config)` raises them together as one ConfigError. Phase keys are declared once and apply to
`intermediate.*` and `target.*` alike. Keys that hold names of things outside the config (tasks, languages, files)
are checked by the tasks and data layers (stilts_jax.pipeline.preflight), not here.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import ml_collections

from stilts_jax.config.loader import ConfigError
from stilts_jax.tasks.registry import ENCODER_ONLY_FAMILIES, TASKS


@dataclasses.dataclass(frozen=True)
class Rule:
    """What a key accepts: `accepts(value)` is True for a valid value; `expect` says so in words."""

    accepts: Callable[[Any], bool]
    expect: str


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def integer(minimum: int | None = None, maximum: int | None = None, *, also: tuple[int, ...] = ()) -> Rule:
    def accepts(value: Any) -> bool:
        if not _is_int(value):
            return False
        if value in also:
            return True
        return (minimum is None or value >= minimum) and (maximum is None or value <= maximum)

    bounds = [f">= {minimum}" if minimum is not None else "", f"<= {maximum}" if maximum is not None else ""]
    text = "an integer" + (" " + " and ".join(b for b in bounds if b) if any(bounds) else "")
    if also:
        text += f" (or {', '.join(map(str, also))})"
    return Rule(accepts, text)


def number(
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    above: float | None = None,
    below: float | None = None,
) -> Rule:
    def accepts(value: Any) -> bool:
        if not _is_number(value):
            return False
        return (
            (minimum is None or value >= minimum)
            and (maximum is None or value <= maximum)
            and (above is None or value > above)
            and (below is None or value < below)
        )

    bounds = [
        f">= {minimum:g}" if minimum is not None else "",
        f"<= {maximum:g}" if maximum is not None else "",
        f"> {above:g}" if above is not None else "",
        f"< {below:g}" if below is not None else "",
    ]
    return Rule(accepts, "a finite number" + (" " + " and ".join(b for b in bounds if b) if any(bounds) else ""))


def choice(*values: Any) -> Rule:
    return Rule(lambda value: value in values, "one of " + ", ".join(repr(v) for v in values))


BOOLEAN = Rule(lambda value: isinstance(value, bool), "true or false")
TEXT = Rule(lambda value: isinstance(value, str), "a string")
TEXT_LIST = Rule(
    lambda value: isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value), "a list of strings"
)
MAPPING = Rule(lambda value: isinstance(value, (Mapping, ml_collections.ConfigDict)), "a mapping")
ATTENTION_DROPOUT = Rule(
    lambda value: (
        (isinstance(value, str) and value.strip().lower() in ("config", "off"))
        or (_is_number(value) and 0.0 <= value < 1.0)
        or _rate_text(value)
    ),
    "'config', 'off' or a rate in [0, 1)",
)

# W&B refuses project names with these characters (its URLs and file names use them).
WANDB_PROJECT = Rule(
    lambda value: isinstance(value, str) and not any(c in value for c in "/\\#?%:"),
    '"" (off) or a W&B project name (none of / \\ # ? % :)',
)


def _rate_text(value: Any) -> bool:
    try:
        return isinstance(value, str) and 0.0 <= float(value) < 1.0
    except ValueError:
        return False


# The keys of a training phase (configs/base.py phase()), for `intermediate.` and `target.` alike.
PHASE_KEYS: dict[str, Rule] = {
    "task": TEXT,
    "source": MAPPING,
    "max_length": integer(8),
    "doc_stride": integer(1),
    "max_train_examples": integer(0),
    "max_dev_examples": integer(0),
    "train_languages": TEXT_LIST,
    "translated_train": TEXT,
    # How the training languages mix: concatenated, or each drawn equally often (translate-train-all).
    "language_sampling": choice("concatenate", "balanced"),
    "evaluate_model": TEXT,
    "tasks": TEXT_LIST,
    "task_sources": MAPPING,
    "sampling": choice("proportional", "temperature"),
    "temperature": number(above=0.0),
    "cap": integer(0),
    "stage_overrides": MAPPING,
    "mlm.files": TEXT_LIST,
    "mlm.share": number(above=0.0, below=1.0),
    "mlm.max_length": integer(8),
    "mlm.mask_probability": number(above=0.0, below=1.0),
    "mlm.init_from_checkpoint": BOOLEAN,
    "train.batch_size": integer(1),
    "train.micro_batches": integer(1),
    "train.epochs": number(0.0),
    "train.max_steps": integer(0),
    "train.learning_rate": number(above=0.0),
    "train.warmup_fraction": number(0.0, 1.0),
    "train.weight_decay": number(0.0),
    "train.adam_eps": number(above=0.0),
    "train.max_grad_norm": number(above=0.0),
    "train.dropout": BOOLEAN,
    "train.log_every": integer(1),
    "train.checkpoint_every": integer(1),
    "train.selection": choice("best", "last"),
    "train.eval_every": integer(0),
    "train.eval_subset": integer(0),
    "train.keep_checkpoints": integer(1),
    "train.progress_bar": BOOLEAN,
    "train.early_stopping_patience": integer(0),
    "train.length_grouping": BOOLEAN,
}

TOP_KEYS: dict[str, Rule] = {
    "task_modules": TEXT_LIST,
    "workdir": Rule(lambda value: isinstance(value, str) and bool(value.strip()), "a folder (local or gs://)"),
    "seed": integer(0),
    "on_change": choice("refuse", "restart"),
    "dry_run": BOOLEAN,
    "compilation_cache": TEXT,
    # Where training features are kept: "" is <workdir>/features; a folder (local or gs://) is shared by every run
    # that names it (a sweep tokenizes each dataset once). Files are keyed by tokenizer, settings and data.
    "feature_cache": TEXT,
    "model.name": Rule(lambda value: isinstance(value, str) and bool(value.strip()), "a hub id or a model folder"),
    "model.tokenizer": TEXT,
    "model.dtype": choice("auto", "float32", "bfloat16", "float16"),
    "model.attention": choice("auto", "xla", "cudnn", "splash"),
    "model.remat": choice("none", "save_dots", "full"),
    "model.make_tiny": BOOLEAN,
    # Random weights in the model's shapes (model.name's folder or shipped config.json); no weights are downloaded.
    "model.random_init": BOOLEAN,
    "model.attention_dropout": ATTENTION_DROPOUT,
    # Layers stored stacked and run with jax.lax.scan (compiles one layer, not all); results equal unrolled layers'.
    "model.scan_layers": BOOLEAN,
    "logical_rules": Rule(
        lambda value: (
            isinstance(value, (list, tuple))
            and all(isinstance(rule, (list, tuple)) and len(rule) == 2 and isinstance(rule[0], str) for rule in value)
        ),
        "a list of [logical axis, mesh axis or axes or None] pairs",
    ),
    "mesh.data": integer(1, also=(-1,)),
    "mesh.fsdp": integer(1, also=(-1,)),
    "mesh.tensor": integer(1, also=(-1,)),
    "distributed.coordinator_address": TEXT,
    "distributed.num_processes": integer(1),
    "distributed.process_id": integer(0),
    "dual_encoder.pooling": choice("pooler", "cls", "mean"),
    "dual_encoder.scale": number(above=0.0),
    "dual_encoder.learned_scale": BOOLEAN,
    "dual_encoder.allow_random_pooler": BOOLEAN,
    "dual_encoder.query_max_length": integer(0),
    "dual_encoder.eval_path": TEXT,
    "dual_encoder.full_batch_negatives": BOOLEAN,
    "evaluation.batch_size": integer(1),
    "evaluation.n_best": integer(1),
    "evaluation.max_answer_length": integer(1),
    "evaluation.languages": TEXT_LIST,
    "evaluation.layer": integer(-1),
    "evaluation.all_layers": BOOLEAN,
    "evaluation.margin_k": integer(1),
    "evaluation.split": choice("", "train", "dev", "test"),
    "evaluation.null_score_diff_threshold": number(),
    "evaluation.tune_null_score_diff_threshold": BOOLEAN,
    "evaluation.plots": BOOLEAN,
    "evaluation.length_buckets": BOOLEAN,
    "evaluation.search_kernel": choice("xla", "fused"),
    "evaluation.search_dtype": choice("float32", "bfloat16"),
    "evaluation.bucc_threshold": choice("dev", "oracle"),
    # Also evaluate the uniform average of the target phase's last k kept checkpoints (0: off); at most
    # target.train.keep_checkpoints, for targets evaluated per language from a trained model (not retrieval).
    "evaluation.average_checkpoints": integer(0),
    # Weights & Biases (off when logging.wandb is ""): the project, and the run's entity, group, name and mode.
    "logging.wandb": WANDB_PROJECT,
    "logging.wandb_entity": TEXT,
    "logging.wandb_group": TEXT,
    "logging.wandb_name": TEXT,
    "logging.wandb_mode": choice("", "online", "offline"),
}

PHASES = ("intermediate", "target")


def schema() -> Iterator[tuple[str, Rule]]:
    """Every declared key (dotted, from the top) with its rule."""
    yield from TOP_KEYS.items()
    for phase in PHASES:
        for key, rule in PHASE_KEYS.items():
            yield f"{phase}.{key}", rule


def _lookup(config: Any, dotted: str) -> tuple[bool, Any]:
    node = config
    for part in dotted.split("."):
        if not isinstance(node, (Mapping, ml_collections.ConfigDict)) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _shown(value: Any) -> str:
    text = repr(value.to_dict() if isinstance(value, ml_collections.ConfigDict) else value)
    return text if len(text) <= 80 else text[:77] + "..."


def _task_names_and_families(node: ml_collections.ConfigDict) -> tuple[list[str], set[str]]:
    """A phase's task names (`task`, with its chain "+" and multi-task "&" parts, and `tasks`) and their families."""
    names = [name.strip() for name in re.split(r"[+&]", node.task or "") + list(node.tasks) if name.strip()]
    return names, {TASKS[name].family for name in names if name in TASKS}


def _evaluates_the_encoder_only(families: set[str]) -> bool:
    """BUCC and Tatoeba evaluate the encoder as it is: a phase of only those trains nothing."""
    return bool(families) and families <= set(ENCODER_ONLY_FAMILIES)


def validate_phase(node: ml_collections.ConfigDict, phase: str, *, trains: bool = True) -> list[str]:
    """The problems of one phase's keys (`phase` names it in the messages: "target", "intermediate/1_siqa"); a phase
    that `trains` must train at least one step."""
    problems = []
    for key, rule in PHASE_KEYS.items():
        present, value = _lookup(node, key)
        if not present:
            problems.append(
                f"{phase}.{key} is missing (recipes build on configs/base.py get_config, which sets every key)"
            )
        elif not rule.accepts(value):
            problems.append(f"{phase}.{key} must be {rule.expect}, got {_shown(value)}")
    if problems:  # the relations below read keys that must be valid first
        return problems
    train = node.train
    _, families = _task_names_and_families(node)
    if _evaluates_the_encoder_only(families):
        trains = False
    if trains and train.epochs <= 0 and train.max_steps <= 0:
        problems.append(
            f"{phase}.train: epochs {train.epochs!r} and max_steps {train.max_steps!r} train nothing; "
            f"set {phase}.train.epochs > 0 (or {phase}.train.max_steps > 0)"
        )
    if train.batch_size % train.micro_batches:
        problems.append(
            f"{phase}.train.batch_size {train.batch_size} is not divisible by {phase}.train.micro_batches "
            f"{train.micro_batches}; the batch is cut into equal micro-batches"
        )
    if "span_qa" in families and node.doc_stride >= node.max_length:
        problems.append(
            f"{phase}.doc_stride {node.doc_stride} must be below {phase}.max_length {node.max_length} "
            "(it is the step between a long context's windows)"
        )
    return problems


def smallest_training_micro_batch(config: ml_collections.ConfigDict) -> int | None:
    """The fewest rows a training micro-batch of the run has (batch_size / micro_batches over the phases that train),
    or None when no phase trains (an evaluation of a given model, or BUCC / Tatoeba alone)."""
    rows = []
    for phase in PHASES:
        node = config[phase]
        names, families = _task_names_and_families(node)
        if not names or _evaluates_the_encoder_only(families) or node.evaluate_model:
            continue
        rows.append(node.train.batch_size // max(node.train.micro_batches, 1))
    return min(rows) if rows else None


def validate(config: ml_collections.ConfigDict) -> list[str]:
    """Every problem of the resolved config (empty when it is valid), each naming its key."""
    problems = []
    for dotted, rule in TOP_KEYS.items():
        present, value = _lookup(config, dotted)
        if not present:
            problems.append(f"{dotted} is missing (recipes build on configs/base.py get_config, which sets every key)")
        elif not rule.accepts(value):
            problems.append(f"{dotted} must be {rule.expect}, got {_shown(value)}")
    for phase in PHASES:
        if phase not in config:
            problems.append(f"{phase} is missing (recipes build on configs/base.py get_config)")
        else:  # the baseline (no intermediate task) trains no intermediate phase
            problems.extend(validate_phase(config[phase], phase, trains=phase == "target" or bool(config[phase].task)))
    if problems:  # the relations below read keys that must be valid first
        return problems
    if config.intermediate.evaluate_model:
        problems.append("intermediate.evaluate_model: a model to evaluate is given as target.evaluate_model")
    problems.extend(_averaging_problems(config))
    distributed = config.distributed
    if distributed.process_id >= distributed.num_processes:
        problems.append(
            f"distributed.process_id {distributed.process_id} must be below distributed.num_processes "
            f"{distributed.num_processes}"
        )
    if sum(size == -1 for size in config.mesh.values()) > 1:
        problems.append(f"mesh: at most one axis may be -1 (the devices left over); got {dict(config.mesh.to_dict())}")
    return problems


def _averaging_problems(config: ml_collections.ConfigDict) -> list[str]:
    """evaluation.average_checkpoints=k needs k kept checkpoints of a target phase this run trains."""
    k = config.evaluation.average_checkpoints
    if not k:
        return []
    key, target = "evaluation.average_checkpoints", config.target
    if target.evaluate_model:
        return [
            f"{key}={k} averages the checkpoints of a target phase this run trains; target.evaluate_model "
            f"trains none: set {key}=0 (average finished runs with python -m stilts_jax.average)"
        ]
    spec = TASKS.get(target.task)
    if spec is not None and (spec.family in ENCODER_ONLY_FAMILIES or spec.family == "dual_encoder"):
        return [
            f"{key}={k}: {target.task} ({spec.family}) is not evaluated from a trained target model per "
            f"language; set {key}=0"
        ]
    if k > target.train.keep_checkpoints:
        return [
            f"{key}={k} exceeds target.train.keep_checkpoints={target.train.keep_checkpoints} (only that many "
            f"of the last checkpoints are kept); set --config.target.train.keep_checkpoints={k} or more"
        ]
    return []


def check(config: ml_collections.ConfigDict) -> None:
    """Raise one ConfigError listing every problem of `config`, or return."""
    problems = validate(config)
    if problems:
        raise ConfigError(
            "the config has {} problem{}:\n  - {}".format(
                len(problems), "s" if len(problems) > 1 else "", "\n  - ".join(problems)
            )
        )
