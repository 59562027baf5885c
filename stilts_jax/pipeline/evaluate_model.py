"""A fine-tuned model evaluated as it is (`--config.target.evaluate_model=PATH`), and a finished phase's model loaded
whole (encoder and head) for export.

PATH is a finished phase folder (`W/target`, `W/intermediate`, `W/intermediate/1_siqa`), a workdir (its target
phase), or a Hugging Face folder (or hub id) holding a transformers task model: XLMRobertaForQuestionAnswering,
...ForSequenceClassification, ...ForTokenClassification, ...ForMultipleChoice (BERT models likewise). A Hugging
Face model is imported strictly (stilts_jax.models.hf_heads) and saved in the workdir's `evaluated_model/` folder as
the best model the evaluation loads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import TYPE_CHECKING, Any

import jax
import ml_collections
from flax import nnx

from stilts_jax.core.errors import InputError, StiltsError
from stilts_jax.core.io_utils import atomic_write_text
from stilts_jax.core.paths import absolute, as_path
from stilts_jax.models import hf_heads
from stilts_jax.models.config import EncoderConfig
from stilts_jax.models.heads import TaskModel
from stilts_jax.models.hf_files import resolve_model_dir
from stilts_jax.pipeline.common import DONE, PATH_KEYS, say, source_of
from stilts_jax.tasks.registry import TaskSpec, get_task
from stilts_jax.train.checkpoints import load_params, save_params

if TYPE_CHECKING:
    from stilts_jax.pipeline.context import RunContext

# Task family -> the transformers head that holds its head exactly.
FAMILY_HEAD_KINDS = {
    "span_qa": hf_heads.QUESTION_ANSWERING,
    "classification": hf_heads.SEQUENCE_CLASSIFICATION,
    "tagging": hf_heads.TOKEN_CLASSIFICATION,
    "multiple_choice": hf_heads.MULTIPLE_CHOICE,
}
EVALUATED = "evaluated_model"  # the workdir folder of imported Hugging Face models
# EncoderConfig fields that do not change what a trained model computes in evaluation.
_NOT_ARCHITECTURE = ("hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range")


def head_kind(spec: TaskSpec) -> str:
    """The transformers head kind of a task's head; an error for families whose head transformers has no class for."""
    kind = FAMILY_HEAD_KINDS.get(spec.family)
    if kind is None:
        raise InputError(
            f"task {spec.name} ({spec.family}) has no transformers task head (families with one: "
            f"{', '.join(FAMILY_HEAD_KINDS)}); its encoder is what it trains and evaluates"
        )
    return kind


def read_phase(phase_dir: Any) -> dict[str, Any]:
    """A finished phase's record (phase_done.json) with its paths absolute and the settings it ran with."""
    phase_dir = as_path(phase_dir)
    done = phase_dir / DONE
    if not done.exists():
        raise InputError(
            f"{phase_dir} holds no finished phase (no {DONE}): name a phase folder the main command "
            "finished (W/target, W/intermediate, W/intermediate/1_siqa)"
        )
    try:
        record = json.loads(done.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{done} is damaged ({e}); rerun the main command in that workdir to finish the phase") from e
    if not isinstance(record, dict) or "best_model" not in record:
        raise InputError(f"{done} records no best_model; rerun the main command in that workdir to finish the phase")
    for key in PATH_KEYS:
        if key in record and not str(record[key]).startswith(("/", "gs://")):
            record[key] = str(absolute(phase_dir / record[key]))
    if "settings" not in record and (phase_dir / "settings.json").exists():
        record.update(
            {
                k: v
                for k, v in json.loads((phase_dir / "settings.json").read_text()).items()
                if k in ("settings", "fingerprint")
            }
        )
    if "settings" not in record:
        raise InputError(
            f"{done} records no settings (written by an earlier version): the phase's task and model "
            "cannot be rebuilt; rerun it with this version"
        )
    if record.get("tasks"):
        raise InputError(
            f"{phase_dir} is a multi-task phase (tasks {record['tasks']}): its model has one head per "
            "task; export or evaluate a single-task phase"
        )
    return record


def _phase_node(record: dict[str, Any]) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(record["settings"]["phase"])


def phase_task(pipeline: RunContext, record: dict[str, Any]) -> Any:
    """The task object of a finished phase, built from the settings it ran with (its head's labels loaded)."""
    node = _phase_node(record)
    task = pipeline.make_task(get_task(record["task"]), node)
    if getattr(task, "open_tag_set", False) and not task.labels:  # the tag set comes from the training data
        task.load("dev", source_of(node), ["en"])
    return task


def load_phase_model(pipeline: RunContext, record: dict[str, Any], task: Any) -> TaskModel:
    """The phase's best model (encoder and head) with its trained parameters, on this process's first device."""
    graphdef, state = nnx.split(pipeline.abstract_model(task))
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), nnx.to_pure_dict(state))
    return nnx.merge(graphdef, load_params(record["best_model"], target))


def phase_run_config(workdir: Any, record: dict[str, Any]) -> ml_collections.ConfigDict:
    """The config that rebuilds a phase's model: the workdir's config.json with the model settings the phase ran with."""
    path = as_path(workdir) / "config.json"
    if not path.exists():
        raise InputError(f"{path} is missing: name the workdir the main command ran in (--workdir)")
    config = ml_collections.ConfigDict(json.loads(path.read_text()))
    config.model.update(record["settings"]["model"])
    return config


def _locate(path: str) -> tuple[str, Any]:
    """("phase", folder) for a finished phase or a workdir, ("hf", folder or hub id) for a Hugging Face model."""
    local = as_path(path)
    if (local / DONE).exists():
        return "phase", absolute(local)
    if (local / "target" / DONE).exists():
        return "phase", absolute(local / "target")
    if (local / "config.json").exists():
        return "hf", absolute(local)
    if local.exists():
        raise InputError(
            f"target.evaluate_model: {path} is neither a finished phase folder ({DONE}), a workdir "
            f"(target/{DONE}) nor a Hugging Face model folder (config.json and model.safetensors)"
        )
    return "hf", path  # a hub id, fetched like model.name


def model_identity(path: str) -> dict[str, Any]:
    """What identifies the model at `path` for the evaluation fingerprint: a changed model is evaluated again."""
    kind, where = _locate(path)
    if kind == "phase":
        record = json.loads((where / DONE).read_text())
        return {
            "phase": str(where),
            "fingerprint": record.get("fingerprint"),
            "best_step": record.get("best_step"),
            "modified": (where / DONE).stat().mtime,
        }
    if isinstance(where, str):
        return {"hub": where}
    files = sorted(p for p in where.iterdir() if p.name.endswith((".safetensors", ".bin", ".json")))
    return {"folder": str(where), "files": [(p.name, p.stat().length, p.stat().mtime) for p in files]}


def _architecture(config: EncoderConfig) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in _NOT_ARCHITECTURE}


def _same_model(a: str, b: str) -> bool:
    return a == b or (as_path(a).exists() and as_path(b).exists() and str(absolute(a)) == str(absolute(b)))


def evaluated_model_record(pipeline: RunContext, path: str) -> dict[str, Any]:
    """The target record (with "best_model") of the model `target.evaluate_model` names, checked against the run's
    task and model; a Hugging Face model is imported into the workdir first."""
    spec = get_task(pipeline.config.target.task)
    kind = head_kind(spec)
    where_kind, where = _locate(path)
    if where_kind == "phase":
        return _phase_record(pipeline, spec, where)
    try:
        model_dir = resolve_model_dir(where)
    except StiltsError as e:
        raise InputError(f"target.evaluate_model: {e}") from e
    task = pipeline.make_task(spec, pipeline.config.target)
    if getattr(task, "open_tag_set", False) and not task.labels:
        task.load("dev", source_of(pipeline.config.target), ["en"])
    folder = (
        pipeline.workdir
        / EVALUATED
        / hashlib.sha256(json.dumps(model_identity(path), sort_keys=True, default=str).encode()).hexdigest()[:16]
    )
    best_model = folder / "best_model"
    record = {
        "task": spec.name,
        "best_model": str(absolute(best_model)),
        "best_step": None,
        "dev": None,
        "evaluated_model": str(where),
        "selection": f"the fine-tuned model {where}, evaluated as it is (not trained in this run)",
    }
    if (folder / "source.json").exists():
        say(f"[evaluate_model] {where}: imported earlier ({best_model})")
        return record
    config = EncoderConfig.from_json_file(model_dir / "config.json")
    if _architecture(config) != _architecture(pipeline.encoder_config):
        raise InputError(
            f"target.evaluate_model: {where} is not the architecture of this run's model "
            f"{pipeline.config.model.name}; pass --config.model.name={where} (its config and tokenizer)"
        )
    labels = (
        getattr(task, "labels", None)
        if kind in (hf_heads.SEQUENCE_CLASSIFICATION, hf_heads.TOKEN_CLASSIFICATION)
        else None
    )
    model = hf_heads.load_hf_task_model(
        model_dir, kind=kind, head=task.head, labels=labels, scan_layers=pipeline.config.model.scan_layers
    )
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    save_params(best_model, params)
    if jax.process_index() == 0:
        atomic_write_text(folder / "source.json", json.dumps({"model": str(where), "kind": kind}, indent=2) + "\n")
    say(f"[evaluate_model] imported {where} ({hf_heads.architecture_name(config, kind)}) into {best_model}")
    return record


def _phase_record(pipeline: RunContext, spec: TaskSpec, phase_dir: Any) -> dict[str, Any]:
    record = read_phase(phase_dir)
    trained = get_task(record["task"])
    if trained.family != spec.family:
        raise InputError(
            f"target.evaluate_model: {phase_dir} trained {trained.name} ({trained.family}); the target "
            f"task {spec.name} is {spec.family}: its head does not fit"
        )
    if (
        trained.name != spec.name
        and spec.family in ("classification", "tagging")
        and trained.label_names() != spec.label_names()
    ):
        raise InputError(
            f"target.evaluate_model: {phase_dir} trained {trained.name}, whose labels "
            f"{list(trained.label_names())} are not {spec.name}'s {list(spec.label_names())}"
        )
    model = record["settings"]["model"]
    ours = pipeline.config.model
    for key in ("name", "tokenizer"):
        if not _same_model(str(model.get(key, "")), str(ours[key])):
            raise InputError(
                f"target.evaluate_model: {phase_dir} was trained from model.{key} {model.get(key)!r}; "
                f"this run has {ours[key]!r}: pass --config.model.{key}={model.get(key)}"
            )
    dev = (
        f"English dev {record['dev']} (step {record.get('best_step')})"
        if record.get("dev") is not None
        else "no English dev score recorded (an averaged or imported model)"
    )
    say(f"[evaluate_model] {phase_dir}: {trained.name}, {dev}")
    return {
        **record,
        "evaluated_model": str(phase_dir),
        "selection": f"{record.get('selection', 'unrecorded')}; trained in {phase_dir}, evaluated as it is",
    }


def without_intermediate(config: ml_collections.ConfigDict) -> None:
    """A run that evaluates a given model trains no intermediate phase: its results name none (the evaluated model's
    own history is in its record's selection)."""
    if config.intermediate.task or len(config.intermediate.tasks):
        say(
            f"[evaluate_model] target.evaluate_model is set: the intermediate task {config.intermediate.task!r} is "
            "not trained; the given model is evaluated as it is"
        )
    config.intermediate.task = ""
    config.intermediate.tasks = []
