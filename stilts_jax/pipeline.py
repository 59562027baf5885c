"""The STILTs pipeline: intermediate task -> encoder hand-off -> English target task -> zero-shot evaluation.

Each phase works in its own folder under the workdir and leaves `phase_done.json` when finished; a rerun with
the same workdir skips finished phases and resumes an unfinished one from its latest good checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from stilts_jax import distributed
from stilts_jax.config_loader import config_to_json
from stilts_jax.data.retrieval import read_bucc, read_tatoeba
from stilts_jax.embedding import SentenceEncoder, default_retrieval_layer
from stilts_jax.errors import StiltsError
from stilts_jax.evaluation.predictor import Predictor
from stilts_jax.evaluation.report import summarize, write_results
from stilts_jax.io_utils import atomic_write_text
from stilts_jax.models.config import EncoderConfig
from stilts_jax.models.encoder import Encoder
from stilts_jax.models.heads import TaskModel
from stilts_jax.models.hf_files import resolve_model_dir
from stilts_jax.models.hf_weights import load_pretrained
from stilts_jax.tasks.registry import TaskSpec, get_task
from stilts_jax.tasks.retrieval import RetrievalEvaluator
from stilts_jax.tasks.families import make_task
from stilts_jax.tiny_model import make_tiny_model
from stilts_jax.tokenization import load_tokenizer
from stilts_jax.train.checkpoints import load_params, save_params, transplant_encoder
from stilts_jax.train.loop import TrainerConfig, train
from stilts_jax.train.optimizer import OptimizerConfig
from stilts_jax.train.state import ModelSpec

log = logging.getLogger(__name__)
DONE = "phase_done.json"


def _say(message: str) -> None:
    if jax.process_index() == 0:
        print(message, flush=True)


def _source(phase: ml_collections.ConfigDict) -> dict[str, Any]:
    return {k: v for k, v in phase.source.to_dict().items() if v not in ("", None)}


def _trainer_config(phase: ml_collections.ConfigDict, seed: int) -> TrainerConfig:
    t = phase.train
    return TrainerConfig(
        global_batch_size=t.batch_size, micro_batches=t.micro_batches, epochs=t.epochs, max_steps=t.max_steps or None,
        seed=seed, dropout=t.dropout, log_every=t.log_every, checkpoint_every=t.checkpoint_every,
        eval_every=t.eval_every or None, keep_checkpoints=t.keep_checkpoints, progress_bar=t.progress_bar,
        optimizer=OptimizerConfig(learning_rate=t.learning_rate, warmup_fraction=t.warmup_fraction,
                                  weight_decay=t.weight_decay, adam_eps=t.adam_eps, max_grad_norm=t.max_grad_norm),
    )


class Pipeline:
    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.workdir = Path(config.workdir)
        distributed.initialize(config.distributed.coordinator_address or None, config.distributed.num_processes,
                               config.distributed.process_id)
        self.mesh = distributed.make_mesh(config.mesh.to_dict())
        self.rules = tuple((name, tuple(axes) if isinstance(axes, list) else axes) for name, axes in config.logical_rules)
        self.dtype = config.model.dtype if config.model.dtype != "auto" else (
            "float32" if jax.default_backend() == "cpu" else "bfloat16")
        self.model_dir = self._model_dir()
        self.tokenizer = load_tokenizer(config.model.tokenizer or self.model_dir)

    def _model_dir(self) -> Path:
        name = self.config.model.name
        if self.config.model.make_tiny and not (Path(name) / "config.json").exists():
            if jax.process_index() == 0:
                longest = max(self.config.intermediate.max_length, self.config.target.max_length)
                make_tiny_model(name, seed=self.config.seed, max_length=longest)
            _say(f"created the tiny offline model in {name}")
        return resolve_model_dir(name)

    def _task(self, spec: TaskSpec, phase: ml_collections.ConfigDict) -> Any:
        limit = EncoderConfig.from_json_file(self.model_dir / "config.json").max_sequence_length
        if phase.max_length > limit:
            raise StiltsError(f"max_length {phase.max_length} of task {spec.name} exceeds the model's maximum of {limit} "
                              f"tokens; lower --config.<phase>.max_length")
        e = self.config.evaluation
        return make_task(spec, self.tokenizer, max_length=phase.max_length, doc_stride=phase.doc_stride,
                         n_best=e.n_best, max_answer_length=e.max_answer_length)

    def _model(self, task: Any, seed: int) -> TaskModel:
        encoder, _ = load_pretrained(self.model_dir, dtype=self.dtype, attention=self.config.model.attention)
        return TaskModel(encoder, task.head(encoder.config.hidden_size, nnx.Rngs(seed)))

    def _abstract_model(self, task: Any) -> TaskModel:
        """The model's structure without weights (they come from a checkpoint)."""
        config = EncoderConfig.from_json_file(self.model_dir / "config.json")
        return nnx.eval_shape(lambda: TaskModel(
            Encoder(config, rngs=nnx.Rngs(0), dtype=self.dtype, attention=self.config.model.attention),
            task.head(config.hidden_size, nnx.Rngs(0))))

    def run(self) -> dict[str, Any]:
        if jax.process_index() == 0:
            self.workdir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.workdir / "config.json", config_to_json(self.config))
        handoff = None
        if self.config.intermediate.task:
            handoff = self.run_phase("intermediate", self.config.intermediate)["encoder"]
        if get_task(self.config.target.task).family == "retrieval":
            return self.evaluate_retrieval(handoff)  # no target training: the encoder itself is evaluated
        target = self.run_phase("target", self.config.target, handoff=handoff)
        return self.evaluate_zero_shot(target)

    def run_phase(self, name: str, phase: ml_collections.ConfigDict, handoff: str | None = None) -> dict[str, Any]:
        phase_dir = self.workdir / name
        done = phase_dir / DONE
        if done.exists():
            info = json.loads(done.read_text())
            _say(f"[{name}] {phase.task}: finished earlier (best dev {info['dev']}), skipping")
            return info
        spec = get_task(phase.task)
        task = self._task(spec, phase)
        _say(f"[{name}] {spec.name}: loading English data")
        train_examples = task.load("train", _source(phase), ["en"])["en"]
        dev_examples = task.load("dev", _source(phase), ["en"])["en"]
        if phase.max_train_examples:
            train_examples = train_examples[: phase.max_train_examples]
        if phase.max_dev_examples:
            dev_examples = dev_examples[: phase.max_dev_examples]
        model = self._model(task, self.config.seed + (0 if name == "intermediate" else 1))
        if handoff is not None:
            transplant_encoder(model, handoff)
            _say(f"[{name}] encoder carried over from {handoff}; new {spec.name} head")
        features = task.train_features(train_examples)
        _say(f"[{name}] {len(train_examples)} training examples -> {len(features['input_ids'])} features, "
             f"{len(dev_examples)} dev examples")
        model_spec = ModelSpec(model, self.mesh, self.rules)
        predictor = Predictor(model_spec, self.mesh, self.rules, self.config.evaluation.batch_size)

        def evaluate(params: Any) -> dict[str, float]:
            scores = task.score(task.predict(predictor, params, dev_examples, desc=f"{name} dev"), dev_examples)
            return {"dev_score": scores[spec.metric], **scores}

        result = train(model, task.loss_fn, features, _trainer_config(phase, self.config.seed), workdir=phase_dir,
                       mesh=self.mesh, rules=self.rules, evaluate=evaluate, best_metric="dev_score")
        save_params(phase_dir / "best_model", result.best_params)
        info: dict[str, Any] = {"task": spec.name, "best_step": result.best_step, "steps": result.steps,
                                "best_model": str((phase_dir / "best_model").absolute())}
        if name == "intermediate":
            save_params(phase_dir / "encoder", result.best_params["encoder"])
            info["encoder"] = str((phase_dir / "encoder").absolute())
        info["dev"] = round(evaluate(result.best_params)["dev_score"], 2)
        if jax.process_index() == 0:
            atomic_write_text(done, json.dumps(info, indent=2) + "\n")
        _say(f"[{name}] {spec.name}: done, best dev {spec.metric} {info['dev']} at step {result.best_step}")
        return info

    def evaluate_zero_shot(self, target: dict[str, Any]) -> dict[str, Any]:
        results = self.workdir / "results.json"
        if results.exists() and (self.workdir / "evaluation" / DONE).exists():
            _say(f"[evaluation] finished earlier: {results}")
            return json.loads(results.read_text())
        phase = self.config.target
        spec = get_task(phase.task)
        if self.config.evaluation.split:
            spec = dataclasses.replace(spec, eval_split=self.config.evaluation.split)
        task = self._task(spec, phase)
        languages = list(self.config.evaluation.languages) or list(spec.languages)
        examples = task.load("eval", _source(phase), languages)
        model_spec = ModelSpec(self._abstract_model(task), self.mesh, self.rules)
        abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                model_spec.abstract_params, model_spec.param_shardings)
        params = load_params(target["best_model"], abstract)
        predictor = Predictor(model_spec, self.mesh, self.rules, self.config.evaluation.batch_size)
        per_language = {}
        for lang in languages:
            predictions = task.predict(predictor, params, examples[lang], desc=f"zero-shot {lang}")
            scores = task.score(predictions, examples[lang])
            baseline = task.baseline(examples[lang])
            per_language[lang] = {**scores, **baseline, "examples": len(examples[lang])}
            if jax.process_index() == 0:
                task.write_predictions(self.workdir / "predictions", lang, predictions, examples[lang])
            shown = "  ".join(f"{k} {v:.1f}" for k, v in scores.items())
            _say(f"[evaluation] {spec.name} {lang}: {shown}  (trivial baseline {', '.join(f'{v:.1f}' for v in baseline.values())}, "
                 f"{len(examples[lang])} examples)")
        summary = summarize(spec.name, per_language)
        summary["intermediate_task"] = self.config.intermediate.task or None
        if jax.process_index() == 0:
            _, md = write_results(self.workdir, summary, task.columns)
            (self.workdir / "evaluation").mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.workdir / "evaluation" / DONE, json.dumps({"results": str(results)}) + "\n")
            print(md.read_text(), flush=True)
        return summary


    def _encoder(self, saved_encoder: str | None) -> Encoder:
        """The encoder to evaluate: the one the intermediate phase handed off, or the pretrained one."""
        if saved_encoder is None:
            return load_pretrained(self.model_dir, dtype=self.dtype, attention=self.config.model.attention)[0]
        config = EncoderConfig.from_json_file(self.model_dir / "config.json")
        abstract = nnx.eval_shape(lambda: Encoder(config, rngs=nnx.Rngs(0), dtype=self.dtype,
                                                  attention=self.config.model.attention))
        graphdef, state = nnx.split(abstract)
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), nnx.to_pure_dict(state))
        return nnx.merge(graphdef, load_params(saved_encoder, target))

    def evaluate_retrieval(self, saved_encoder: str | None) -> dict[str, Any]:
        results = self.workdir / "results.json"
        if results.exists() and (self.workdir / "evaluation" / DONE).exists():
            _say(f"[evaluation] finished earlier: {results}")
            return json.loads(results.read_text())
        phase, e = self.config.target, self.config.evaluation
        spec = get_task(phase.task)
        encoder = self._encoder(saved_encoder)
        depth = encoder.config.num_hidden_layers
        primary = default_retrieval_layer(depth) if e.layer < 0 else e.layer
        layers = list(range(depth + 1)) if e.all_layers else [primary]
        sentence_encoder = SentenceEncoder(encoder, self.tokenizer, layer=layers if e.all_layers else primary,
                                           batch_size=e.batch_size, max_length=phase.max_length)
        evaluator = RetrievalEvaluator(sentence_encoder, layers, primary, k=e.margin_k)
        source = _source(phase)
        root = Path(source.get("path", ""))
        languages = list(e.languages) or list(spec.languages)
        per_language, per_layer = {}, {}
        for lang in languages:
            if spec.name == "tatoeba":
                labels = Path(source["labels"]) / "tatoeba" / f"test-{lang}.tsv" if "labels" in source else None
                if labels is not None and not labels.exists():
                    labels = Path(source["labels"]) / f"test-{lang}.tsv"
                result = evaluator.tatoeba(read_tatoeba(root, lang, labels=labels))
                lines = [str(i) for i in result.predictions]
            else:
                original = (root / f"{lang}-en").is_dir() or (root / "bucc2018" / f"{lang}-en").is_dir()
                dev_split, test_split = ("sample", "training") if original else ("dev", "test")
                result = evaluator.bucc(read_bucc(root, lang, dev_split, require_gold=True), read_bucc(root, lang, test_split))
                lines = [f"{src}\t{en}" for src, en in result.predictions]
            per_language[lang] = {**result.scores[primary]}
            for layer, row in result.scores.items():
                per_layer.setdefault(layer, {})[lang] = row
            if jax.process_index() == 0:
                path = self.workdir / "predictions" / (spec.xtreme_name or spec.name) / f"test-{lang}.{spec.prediction_extension}"
                atomic_write_text(path, "".join(line + "\n" for line in lines))
            shown = ", ".join(f"{k} {v:.1f}" for k, v in result.scores[primary].items() if k != "threshold")
            _say(f"[evaluation] {spec.name} {lang} (layer {primary}): {shown or 'no gold: predictions written'}")
        summary = summarize(spec.name, per_language)
        summary.update(intermediate_task=self.config.intermediate.task or None, layer=primary)
        if e.all_layers:
            summary["per_layer"] = {str(layer): rows for layer, rows in per_layer.items()}
        metric = "accuracy" if spec.name == "tatoeba" else "f1"
        columns = [(metric, metric)] + ([("accuracy_reverse", "accuracy (xx->en)")] if spec.name == "tatoeba" else
                                        [("precision", "precision"), ("recall", "recall")])
        if jax.process_index() == 0:
            if all(metric in row for row in per_language.values()):
                _, md = write_results(self.workdir, summary, columns)
                if e.all_layers:
                    with open(md, "a") as f:
                        f.write("\n" + layer_table(spec.name, per_layer, metric))
                print(md.read_text(), flush=True)
            else:
                atomic_write_text(results, json.dumps(summary, indent=2, sort_keys=True) + "\n")
            (self.workdir / "evaluation").mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.workdir / "evaluation" / DONE, json.dumps({"results": str(results)}) + "\n")
        return summary


def layer_table(task: str, per_layer: dict[int, dict[str, dict[str, float]]], metric: str) -> str:
    """Rows: layers; columns: languages and their mean. Which layer transfers best, at a glance."""
    languages = sorted({lang for rows in per_layer.values() for lang in rows})
    lines = [f"### {task}: {metric} per layer", "", "| layer | " + " | ".join(languages) + " | mean |",
             "|" + "---|" * (len(languages) + 2)]
    for layer in sorted(per_layer):
        values = [per_layer[layer][lang].get(metric, float("nan")) for lang in languages]
        lines.append(f"| {layer} | " + " | ".join(f"{v:.1f}" for v in values) + f" | {np.mean(values):.1f} |")
    return "\n".join(lines) + "\n"


def run(config: ml_collections.ConfigDict) -> dict[str, Any]:
    return Pipeline(config).run()
