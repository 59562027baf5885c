"""Compile every program a run would compile for a TPU slice, on this host, without a TPU, weights or data.

    python -m stilts_jax.aot --config=configs/squad_to_tydiqa.py --topology=v5e:2x2 --output=report.json
    python -m stilts_jax.aot --config=configs/stilts.py --config.mesh.fsdp=-1 --config.mesh.data=1 --topology=v4:2x2x4

For each training phase: the train step at the phase's batch size, max_length and micro-batches; the evaluation
forward at every length bucket it may use; for retrieval targets the sentence-embedding forward. The mesh is
config.mesh over the slice's devices with config.logical_rules. The model's shapes come from its config.json: a
model folder, or one of the configs shipped for xlm-roberta-base, xlm-roberta-large, bert-base-multilingual-cased
(model.make_tiny: the demo's tiny model). Needs libtpu (pip install "jax[tpu]"); the figures in the report are the
TPU compiler's estimates for one device, not measurements of a run.

Writes the report as JSON (--output) and as a Markdown table beside it (.md).
"""

from __future__ import annotations

import os

# This host's own accelerator is never used: only the described slice's devices. Set before jax is imported.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse
import dataclasses
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from stilts_jax.config.loader import parse_config_args
from stilts_jax.core.errors import InputError, StiltsError, run_tool

MODEL_CONFIGS_DIR = Path(__file__).parent / "assets" / "model_configs"
# Choices per example of the multiple-choice datasets (the feature width); any other: DEFAULT_CHOICES.
CHOICES = {
    "xcopa": 2,
    "copa": 2,
    "siqa": 3,
    "commonsenseqa": 5,
    "cosmosqa": 4,
    "hellaswag": 4,
    "piqa": 2,
    "winogrande": 2,
    "reclor": 4,
    "logiqa2": 4,
    "art": 2,
}
DEFAULT_CHOICES = 4
# An open tag set (CCG) is derived from the training data, which the compilation does not read.
OPEN_TAG_SET_SIZE = 500


def shipped_model_names() -> list[str]:
    return sorted(p.name for p in MODEL_CONFIGS_DIR.iterdir() if (p / "config.json").is_file())


def model_config_dir(model: ml_collections.ConfigDict, longest: int, seed: int, scratch: Path) -> Path:
    """The folder whose config.json gives the model's shapes (no weights are read)."""
    name = str(model.name)
    if (Path(name) / "config.json").is_file():
        return Path(name)
    if model.make_tiny:  # what the run would create (pipeline.context.RunContext), written to a scratch folder
        from stilts_jax.demo.tiny_model import make_tiny_model

        return make_tiny_model(scratch / "tiny-model", seed=seed, max_length=longest)
    shipped = MODEL_CONFIGS_DIR / name.rstrip("/").split("/")[-1]
    if (shipped / "config.json").is_file():
        return shipped
    raise InputError(
        f"model.name {name!r} is neither a folder with a config.json nor a model whose config ships with "
        f"stilts_jax ({', '.join(shipped_model_names())}); pass --config.model.name=<folder or one of those>"
    )


def tile(features: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """`rows` copies of the first feature row: enough examples for a batch of that size, with the real shapes."""
    return {name: np.repeat(array[:1], rows, axis=0) for name, array in features.items()}


def example_features(task: Any, spec: Any) -> dict[str, np.ndarray]:
    """The task's own featurization of one made-up training example: feature names, dtypes and shapes."""
    from stilts_jax.data.examples import ChoiceExample, PairExample, TaggedSentence
    from stilts_jax.data.qa import Answer, QAExample

    if spec.family == "classification":
        return task.train_features([PairExample("0", "a first sentence", "a second one", 0, "en")])
    if spec.family == "multiple_choice":
        width = CHOICES.get(spec.dataset, DEFAULT_CHOICES)
        return task.train_features(
            [ChoiceExample("0", "a prompt", tuple(f"choice {i}" for i in range(width)), 0, "en")]
        )
    if spec.family == "tagging":
        if not task.labels:
            task._set_labels(tuple(f"TAG{i}" for i in range(OPEN_TAG_SET_SIZE)))
        return task.train_features([TaggedSentence("0", ("a", "sentence"), (task.labels[0],) * 2, "en")])
    if spec.family == "span_qa":
        context = "the answer is here"
        return task.train_features([QAExample("0", "where is the answer?", context, (Answer("here", 14),), "en")])
    raise InputError(f"task {spec.name} has family {spec.family!r}, which has no train step to compile")


def bucket_lengths(width: int, length_buckets: bool) -> list[int]:
    """Every sequence length the Predictor may cut a batch to (evaluation.predictor.bucket_length)."""
    from stilts_jax.evaluation.predictor import bucket_length

    if not length_buckets:
        return [width]
    lengths, length = [], 1
    while not lengths or lengths[-1] < width:
        lengths.append(bucket_length(length, width))
        length = max(2 * length, lengths[-1] + 1)
    return sorted(set(lengths))


class RunCompiler:
    """Builds each program of a run as the pipeline does, and compiles it for the slice."""

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        tpu_slice: Any,
        buckets: str,
        hlo_sink: Callable[[str, str], None] | None,
        scratch: Path,
        layers: int | None = None,
    ):
        """`layers` overrides the model's depth and unrolls scanned layers' loop: scanned programs' costs are
        extrapolated from compiles of 1 and 2 layers whose scan is unrolled, the same computation per layer
        (checkpoint policy included) without the loop (`extrapolate_scanned_costs`)."""
        from stilts_jax.core.distributed import make_mesh
        from stilts_jax.core.tokenization import load_demo_tokenizer, load_tokenizer
        from stilts_jax.models.config import EncoderConfig
        from stilts_jax.pipeline.context import run_mesh_shape

        self.config, self.slice, self.buckets, self.hlo_sink = config, tpu_slice, buckets, hlo_sink
        self.rules = tuple(
            (name, tuple(axes) if isinstance(axes, list) else axes) for name, axes in config.logical_rules
        )
        self.dtype = config.model.dtype if config.model.dtype != "auto" else "bfloat16"
        longest = max(config.intermediate.max_length, config.target.max_length)
        self.model_dir = model_config_dir(config.model, longest, config.seed, scratch)
        self.encoder_config = EncoderConfig.from_json_file(self.model_dir / "config.json")
        # The mesh a run on this slice would build (the devices a small training batch cannot use split the heads).
        shape, self.mesh_note = run_mesh_shape(config, len(tpu_slice.devices), self.encoder_config)
        self.mesh = make_mesh(shape, devices=tpu_slice.devices)
        self.scan_layers = bool(config.model.scan_layers)
        self.unroll_scan = self.scan_layers and layers is not None
        if layers is not None:
            self.encoder_config = dataclasses.replace(self.encoder_config, num_hidden_layers=layers)
        # Feature shapes do not depend on the vocabulary: any tokenizer of the model's kind serves.
        tokenizer_source = config.model.tokenizer or (
            self.model_dir if (self.model_dir / "tokenizer_config.json").exists() else None
        )
        self.tokenizer = load_tokenizer(tokenizer_source) if tokenizer_source else load_demo_tokenizer()
        self.programs: list[dict[str, Any]] = []
        self.skipped: list[str] = []
        self.seen: dict[str, dict[str, Any]] = {}  # lowered program -> its report: identical programs compile once

    # --- building blocks ------------------------------------------------------------------------------------------

    def encoder(self) -> Any:
        from flax import nnx

        from stilts_jax.models.encoder import Encoder

        model = self.config.model
        return Encoder(
            self.encoder_config,
            rngs=nnx.Rngs(0),
            dtype=self.dtype,
            attention=model.attention,
            remat=model.remat,
            attention_dropout=model.attention_dropout,
            scan_layers=self.scan_layers,
            unroll_scan=self.unroll_scan,
        )

    def compile(self, name: str, function: Any, args: list[Any], details: dict[str, Any]) -> None:
        from stilts_jax.train.aot import compile_program

        print(f"compiling {name} ...", file=sys.stderr, flush=True)
        self.programs.append(
            compile_program(name, function, args, self.slice, details=details, hlo_sink=self.hlo_sink, seen=self.seen)
        )

    def check_length(self, phase: ml_collections.ConfigDict, folder: str, *lengths: int) -> None:
        limit = self.encoder_config.max_sequence_length
        if max(lengths) > limit:
            raise StiltsError(
                f"max_length {max(lengths)} of phase {folder} exceeds the model's maximum of {limit} "
                f"tokens; lower --config.{folder.split('/')[0]}.max_length"
            )

    def train_step(
        self,
        folder: str,
        phase: ml_collections.ConfigDict,
        model: Any,
        features: dict[str, np.ndarray],
        loss_fn: Any,
        grads_fn: Any = None,
    ) -> Any:
        """Compile the phase's train step (as train.loop builds it); returns the ModelSpec."""
        import jax

        from stilts_jax.pipeline.common import trainer_config
        from stilts_jax.train.feeding import BatchFeeder
        from stilts_jax.train.loop import SingleTaskData
        from stilts_jax.train.optimizer import make_optimizer
        from stilts_jax.train.state import ModelSpec, abstract_train_state, state_shardings

        trainer = trainer_config(phase, self.config.seed)
        spec = ModelSpec(model, self.mesh, self.rules)
        feeder = BatchFeeder(
            tile(features, trainer.global_batch_size),
            trainer.global_batch_size,
            trainer.micro_batches,
            trainer.seed,
            self.mesh,
            self.rules,
        )
        tx, schedule = make_optimizer(trainer.optimizer, total_steps=1000)  # the schedule's length changes no shape
        shardings = state_shardings(spec, tx)
        step = SingleTaskData(feeder, loss_fn, grads_fn).make_steps(spec, tx, schedule, shardings, trainer.dropout)[""]
        batch = {
            name: jax.ShapeDtypeStruct(
                (trainer.micro_batches, feeder.micro_batch_size, *array.shape[1:]),
                array.dtype,
                sharding=feeder.shardings[name],
            )
            for name, array in features.items()
        }
        details = {
            "kind": "train_step",
            "phase": folder,
            "batch_size": trainer.global_batch_size,
            "micro_batches": trainer.micro_batches,
            "inputs": {name: list(s.shape) for name, s in batch.items()},
        }
        self.compile(f"{folder}/train_step", step, [abstract_train_state(spec, tx, shardings), batch], details)
        return spec

    def forwards(self, label: str, spec: Any, inputs: dict[str, np.ndarray], lengths: list[int]) -> None:
        """Compile the Predictor's forward at each sequence length (evaluation.predictor)."""
        import jax

        from stilts_jax.core.distributed import batch_sharding
        from stilts_jax.evaluation.predictor import MODEL_INPUTS, TOKEN_INPUTS, Predictor

        e = self.config.evaluation
        predictor = Predictor(spec, self.mesh, self.rules, e.batch_size, length_buckets=e.length_buckets)
        params = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), spec.abstract_params, spec.param_shardings
        )
        model_inputs = {k: v for k, v in inputs.items() if k in MODEL_INPUTS}
        if self.buckets == "longest":
            lengths = lengths[-1:]
        for length in lengths:
            batch = {}
            for name, array in model_inputs.items():
                shape = (predictor.batch_size, *array.shape[1:])
                if name in TOKEN_INPUTS:
                    shape = (*shape[:-1], length)
                batch[name] = jax.ShapeDtypeStruct(
                    shape, array.dtype, sharding=batch_sharding(self.mesh, self.rules, ndim=array.ndim)
                )
            details = {
                "kind": "forward",
                "phase": label.split("/")[0],
                "batch_size": predictor.batch_size,
                "length": length,
                "inputs": {name: list(s.shape) for name, s in batch.items()},
            }
            self.compile(f"{label}@{length}", predictor._forward, [params, batch], details)

    # --- the run's programs ----------------------------------------------------------------------------------------

    def task_phase(self, folder: str, phase: ml_collections.ConfigDict) -> None:
        from flax import nnx

        from stilts_jax.models.heads import TaskModel
        from stilts_jax.tasks.families import make_task
        from stilts_jax.tasks.registry import get_task

        spec = get_task(phase.task)
        self.check_length(phase, folder, phase.max_length)
        task = make_task(spec, self.tokenizer, max_length=phase.max_length, doc_stride=phase.doc_stride)
        features = example_features(task, spec)
        hidden = self.encoder_config.hidden_size
        model = nnx.eval_shape(lambda: TaskModel(self.encoder(), task.head(hidden, nnx.Rngs(0))))
        model_spec = self.train_step(folder, phase, model, features, task.loss_fn)
        # The dev evaluation of the phase; the target's zero-shot evaluation runs these same programs.
        self.forwards(
            f"{folder}/eval_forward",
            model_spec,
            features,
            bucket_lengths(phase.max_length, self.config.evaluation.length_buckets),
        )

    def dual_encoder_phase(self, phase: ml_collections.ConfigDict) -> None:
        from flax import nnx

        from stilts_jax.data.ranked_retrieval import DualPair
        from stilts_jax.tasks.dual_encoder import DualEncoder, DualEncoderTask
        from stilts_jax.tasks.registry import get_task

        d = self.config.dual_encoder
        self.check_length(phase, "target", phase.max_length, d.query_max_length)
        task = DualEncoderTask(
            get_task(phase.task), self.tokenizer, max_length=phase.max_length, query_max_length=d.query_max_length
        )
        features = task.train_features([DualPair("a question", "an answer", "its context", "0")])
        model = nnx.eval_shape(
            lambda: DualEncoder(
                self.encoder(), d.pooling, scale=d.scale, learned_scale=d.learned_scale, rngs=nnx.Rngs(0)
            )
        )
        grads_fn = task.full_batch_grads if d.full_batch_negatives and phase.train.micro_batches > 1 else None
        spec = self.train_step("target", phase, model, features, task.loss_fn, grads_fn)
        inputs = {"input_ids": features["candidate_input_ids"], "attention_mask": features["candidate_attention_mask"]}
        lengths = sorted(
            set(
                bucket_lengths(task.query_max_length, self.config.evaluation.length_buckets)
                + bucket_lengths(task.max_length, self.config.evaluation.length_buckets)
            )
        )
        self.forwards("evaluation/embed_forward", spec, inputs, lengths)

    def retrieval_evaluation(self) -> None:
        from flax import nnx

        from stilts_jax.evaluation.embedding import SentenceEmbedder, default_retrieval_layer
        from stilts_jax.train.state import ModelSpec

        e, phase = self.config.evaluation, self.config.target
        depth = self.encoder_config.num_hidden_layers
        primary = default_retrieval_layer(depth) if e.layer < 0 else e.layer
        layer: int | list[int] = list(range(depth + 1)) if e.all_layers else primary
        model = nnx.eval_shape(lambda: SentenceEmbedder(self.encoder(), layer))
        width = min(phase.max_length, self.encoder_config.max_sequence_length)
        inputs = {"input_ids": np.zeros((1, width), np.int32), "attention_mask": np.ones((1, width), np.int32)}
        self.forwards(
            "evaluation/embed_forward",
            ModelSpec(model, self.mesh, self.rules),
            inputs,
            bucket_lengths(width, e.length_buckets),
        )

    def run(self) -> None:
        from stilts_jax.pipeline.reuse import plan
        from stilts_jax.pipeline.training import is_multitask
        from stilts_jax.tasks.registry import ENCODER_ONLY_FAMILIES, get_task

        target_family = get_task(self.config.target.task).family
        for planned in plan(self.config):
            folder, phase = planned.folder, planned.config
            try:
                if is_multitask(phase):
                    self.skipped.append(
                        f"{folder}: a multi-task phase (several tasks or MLM) is not compiled by this tool"
                    )
                elif folder == "target" and target_family == "dual_encoder":
                    self.dual_encoder_phase(phase)
                else:
                    self.task_phase(folder, phase)
            except ValueError as error:  # the task's featurization refuses the phase's settings, as the run would
                raise InputError(f"phase {folder} ({phase.task}): {error}") from None
        if target_family in ENCODER_ONLY_FAMILIES:
            self.retrieval_evaluation()


def extrapolate_scanned_costs(
    programs: list[dict[str, Any]], one: list[dict[str, Any]], two: list[dict[str, Any]], layers: int, tpu_slice: Any
) -> None:
    """Replace the cost analysis' FLOPs and bytes of scanned programs by those of their layers unrolled, in place.

    The compiler's cost analysis counts a loop body once, so a program whose layers run in `jax.lax.scan` reports
    about one layer's cost. With the same program compiled for 1 and 2 layers with the scan unrolled (the same
    per-layer computation, checkpoint policy included, without the loop), the cost of L layers is
    cost(1) + (L - 1) * (cost(2) - cost(1)): the layers are identical, and what is outside them (embeddings, head,
    optimizer update) is in cost(1). The HBM bytes and kernel FLOPs stay the scanned program's own: they are read
    from its HLO with every loop trip counted (`hlo_bytes.computation_executions`), so they include what the loop
    itself moves (its stacked residuals written and read back), which the unrolled compiles do not have; the
    extrapolated HBM bytes are kept beside them as `hbm_bytes_accessed_without_loop`. Memory, compile time and
    collectives stay the scanned program's own."""
    from stilts_jax.train.aot import roofline_mfu

    by_name = [{p["name"]: p for p in group} for group in (one, two)]
    for program in programs:
        first, second = by_name[0].get(program["name"]), by_name[1].get(program["name"])
        if first is None or second is None:
            continue

        extrapolated = {
            key: first.get(key, 0.0) + (layers - 1) * (second.get(key, 0.0) - first.get(key, 0.0))
            for key in ("flops", "bytes_accessed", "hbm_bytes_accessed")
        }
        for key in ("flops", "bytes_accessed"):
            program[f"scanned_{key}"] = program.get(key, 0.0)
            program[key] = extrapolated[key]
        program["hbm_bytes_accessed_without_loop"] = extrapolated["hbm_bytes_accessed"]
        program["cost_from"] = (
            "flops and bytes_accessed: 1 and 2 layers, scan unrolled, extrapolated (the cost analysis counts a loop "
            "once); hbm_bytes_accessed and kernel_flops: the scanned program's HLO, every loop trip counted"
        )
        peak, bandwidth = tpu_slice.device_peak_flops, tpu_slice.device_hbm_bandwidth
        flops = program["flops"] + program["kernel_flops"]
        program["roofline_mfu"] = round(roofline_mfu(flops, program["hbm_bytes_accessed"], peak, bandwidth), 4)
        program["roofline_mfu_all_memories"] = round(roofline_mfu(flops, program["bytes_accessed"], peak, bandwidth), 4)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stilts_jax.aot", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--topology", required=True, help="the TPU slice, e.g. v5e:2x2, v4:2x2x4, v5p:2x2x1, v6e:2x2")
    parser.add_argument("--output", default="aot_report.json", help="the JSON report (a Markdown table goes beside it)")
    parser.add_argument(
        "--buckets",
        choices=("all", "longest"),
        default="all",
        help="evaluation forwards at every length bucket, or only at the longest",
    )
    parser.add_argument("--hlo-dir", default="", help="also write each program's optimized HLO to this folder")
    return parser


def parse_args(argv: list[str]) -> tuple[ml_collections.ConfigDict, argparse.Namespace]:
    config, rest = parse_config_args(argv)
    return config, build_parser().parse_args(rest)


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args_in):
        print(
            build_parser()
            .format_help()
            .replace(
                "usage: python -m stilts_jax.aot",
                "usage: python -m stilts_jax.aot --config=FILE [--config.key=value ...]",
                1,
            )
        )
        return 0

    def body() -> None:
        config, args = parse_args(args_in)
        from stilts_jax.core.io_utils import atomic_write_text
        from stilts_jax.train.aot import get_slice, markdown_table, report_header

        tpu_slice = get_slice(args.topology)
        print(tpu_slice.describe(), file=sys.stderr, flush=True)
        sink = None
        if args.hlo_dir:
            hlo_dir = Path(args.hlo_dir)
            hlo_dir.mkdir(parents=True, exist_ok=True)
            sink = lambda name, text: (hlo_dir / f"{name.replace('/', '__')}.hlo.txt").write_text(text)  # noqa: E731
        with tempfile.TemporaryDirectory(prefix="stilts-aot-") as scratch:
            compiler = RunCompiler(config, tpu_slice, args.buckets, sink, Path(scratch))
            if compiler.mesh_note:
                print(compiler.mesh_note, file=sys.stderr, flush=True)
            compiler.run()
            if compiler.scan_layers:
                shallow = []
                for layers in (1, 2):
                    print(
                        f"compiling with {layers} unrolled layer(s) for the scanned programs' costs ...",
                        file=sys.stderr,
                    )
                    small = RunCompiler(config, tpu_slice, args.buckets, None, Path(scratch), layers=layers)
                    small.run()
                    shallow.append(small.programs)
                extrapolate_scanned_costs(
                    compiler.programs, shallow[0], shallow[1], compiler.encoder_config.num_hidden_layers, tpu_slice
                )
        report = {
            **report_header(tpu_slice, compiler.mesh),
            "model": str(config.model.name),
            "dtype": compiler.dtype,
            "remat": config.model.remat,
            "scan_layers": config.model.scan_layers,
            "programs": compiler.programs,
            "skipped": compiler.skipped,
            **({"mesh_note": compiler.mesh_note} if compiler.mesh_note else {}),
        }
        output = Path(args.output)
        atomic_write_text(output, json.dumps(report, indent=2) + "\n")
        atomic_write_text(output.with_suffix(".md"), markdown_table(report))
        print(markdown_table(report))

    return run_tool(body)


if __name__ == "__main__":
    sys.exit(main())
