"""What every phase of a run shares: the config, the device mesh and sharding rules, the model folder and tokenizer,
and the one place encoders, task models and tasks are built. Phases import this module; only the runner imports
the phases.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

import jax
import ml_collections
from flax import nnx

from stilts_jax.config.schema import smallest_training_micro_batch
from stilts_jax.core import distributed
from stilts_jax.core.compilation_cache import enable_compilation_cache
from stilts_jax.core.errors import InputError, StiltsError, WeightsError
from stilts_jax.core.paths import as_path
from stilts_jax.core.tokenization import DEMO_TOKENIZER_DIR, load_tokenizer
from stilts_jax.demo.tiny_model import make_tiny_model
from stilts_jax.models.config import SHIPPED_CONFIGS_DIR, EncoderConfig, shipped_config_dir, shipped_config_names
from stilts_jax.models.encoder import Encoder
from stilts_jax.models.heads import TaskModel
from stilts_jax.models.hf_files import resolve_model_dir
from stilts_jax.models.hf_weights import load_pretrained
from stilts_jax.pipeline.common import say
from stilts_jax.tasks.families import make_task
from stilts_jax.tasks.registry import TaskSpec
from stilts_jax.tasks.span_qa import BEST_THRESHOLD
from stilts_jax.tasks.user_modules import load_task_modules
from stilts_jax.train.checkpoints import load_params


class Phase(enum.StrEnum):
    """The role of a training phase: its folder under the workdir, its seed offset, whether it hands on an encoder."""

    INTERMEDIATE = "intermediate"
    TARGET = "target"

    @classmethod
    def of(cls, folder: str) -> Phase:
        """The role of a phase folder: "intermediate", a chain stage "intermediate/1_hellaswag", or "target"."""
        return cls(str(folder).split("/")[0])

    @property
    def seed_offset(self) -> int:
        return 0 if self is Phase.INTERMEDIATE else 1

    @property
    def hands_on_encoder(self) -> bool:
        return self is Phase.INTERMEDIATE


def random_init_model_dir(name: str) -> Path:
    """model.random_init: the folder whose config.json gives the shapes: `name` itself when it is a folder with one,
    else the config shipped for that hub model. No weights are read, nothing is downloaded."""
    if (Path(name) / "config.json").is_file():
        return Path(name)
    shipped = shipped_config_dir(name)
    if shipped is None:
        raise InputError(
            f"model.random_init: model.name {name!r} is neither a folder with a config.json nor a model whose config "
            f"ships with stilts_jax ({', '.join(shipped_config_names())}); pass --config.model.name=<one of those or "
            f"a folder with config.json>"
        )
    return shipped


def run_mesh_shape(
    config: ml_collections.ConfigDict, num_devices: int, encoder: EncoderConfig
) -> tuple[dict[str, int], str | None]:
    """The mesh a run builds over `num_devices`: config.mesh, fitted to its smallest training micro-batch
    (`distributed.fit_mesh_to_batch`), and the line saying so when it was changed."""
    return distributed.fit_mesh_to_batch(
        config.mesh.to_dict(),
        num_devices,
        smallest_training_micro_batch(config),
        (encoder.num_attention_heads, encoder.intermediate_size),
    )


class RunContext:
    """The run's shared state and builders (a phase receives it as `pipeline`)."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        load_task_modules(config.task_modules)  # a no-op when the command line loaded them already
        self.workdir = as_path(config.workdir)  # local or gs://...: an etils.epath.Path
        enable_compilation_cache(config.compilation_cache)
        distributed.initialize(
            config.distributed.coordinator_address or None,
            config.distributed.num_processes,
            config.distributed.process_id,
        )
        self.model_dir = self._model_dir()
        self.mesh = distributed.make_mesh(self._mesh_shape())
        self.rules = tuple(
            (name, tuple(axes) if isinstance(axes, list) else axes) for name, axes in config.logical_rules
        )
        self.dtype = (
            config.model.dtype
            if config.model.dtype != "auto"
            else ("float32" if jax.default_backend() == "cpu" else "bfloat16")
        )
        self.tokenizer = load_tokenizer(config.model.tokenizer or self._tokenizer_dir())
        self.phase_records: dict[str, dict[str, Any]] = {}  # phase name -> its phase_done record, as phases finish
        self.planned: dict[str, Any] = {}  # phase folder -> its PlannedPhase (settings, fingerprint): set by the runner
        self.evaluation_fingerprint: str | None = None  # what the evaluation's results are keyed by

    def _mesh_shape(self) -> dict[str, int]:
        """config.mesh, with the devices a small training batch cannot use given to the tensor axis."""
        shape, note = run_mesh_shape(self.config, jax.device_count(), self.encoder_config)
        if note:
            say(note)
        return shape

    def _model_dir(self) -> Path:
        name = self.config.model.name
        if self.config.model.make_tiny:
            if jax.process_index() == 0 and not (Path(name) / "config.json").exists():
                longest = max(self.config.intermediate.max_length, self.config.target.max_length)
                make_tiny_model(name, seed=self.config.seed, max_length=longest)
                say(f"created the tiny offline model in {name}")
            if jax.process_count() > 1:  # the other processes read what process 0 wrote: wait until it is there
                from jax.experimental import multihost_utils

                multihost_utils.sync_global_devices("stilts_jax tiny model written")
        if self.config.model.random_init:
            return random_init_model_dir(name)
        return resolve_model_dir(name)

    def _tokenizer_dir(self) -> Path:
        if self.config.model.random_init and self.model_dir.parent == SHIPPED_CONFIGS_DIR:
            raise InputError(
                f"model.random_init builds {self.config.model.name} from the config.json shipped in {self.model_dir}, "
                f"which has no tokenizer: pass --config.model.tokenizer=<hub id or folder>, e.g. "
                f"--config.model.tokenizer={DEMO_TOKENIZER_DIR} (the shipped demo tokenizer, offline)"
            )
        return self.model_dir

    @property
    def encoder_config(self) -> EncoderConfig:
        return EncoderConfig.from_json_file(self.model_dir / "config.json")

    def make_task(self, spec: TaskSpec, phase: ml_collections.ConfigDict) -> Any:
        limit = self.encoder_config.max_sequence_length
        if phase.max_length > limit:
            raise StiltsError(
                f"max_length {phase.max_length} of task {spec.name} exceeds the model's maximum of {limit} "
                f"tokens; lower --config.<phase>.max_length"
            )
        e = self.config.evaluation
        threshold = BEST_THRESHOLD if e.tune_null_score_diff_threshold else e.null_score_diff_threshold
        return make_task(
            spec,
            self.tokenizer,
            max_length=phase.max_length,
            doc_stride=phase.doc_stride,
            n_best=e.n_best,
            max_answer_length=e.max_answer_length,
            null_score_diff_threshold=threshold,
        )

    @property
    def encoder_options(self) -> dict[str, Any]:
        """How every encoder of the run is built: compute dtype, attention implementation, activation remat,
        attention-probability dropout in training, stacked (scanned) or unrolled layers."""
        model = self.config.model
        return {
            "dtype": self.dtype,
            "attention": model.attention,
            "remat": model.remat,
            "attention_dropout": model.attention_dropout,
            "scan_layers": model.scan_layers,
        }

    def pretrained_encoder(self) -> Encoder:
        """The model folder's encoder with its weights, built as every encoder of the run is (encoder_options).

        With model.random_init, the weights are random (seeded by config.seed, the same at every call): nothing is
        read but config.json."""
        if self.config.model.random_init:
            return Encoder(self.encoder_config, rngs=nnx.Rngs(self.config.seed), **self.encoder_options)
        return load_pretrained(self.model_dir, **self.encoder_options)[0]

    def abstract_encoder(self) -> Encoder:
        """The encoder's structure without weights (they come from a checkpoint)."""
        config = self.encoder_config
        return nnx.eval_shape(lambda: Encoder(config, rngs=nnx.Rngs(0), **self.encoder_options))

    def make_model(self, task: Any, seed: int, encoder_from: str | None = None) -> TaskModel:
        """The task's new head on the pretrained encoder, or on the encoder a previous phase saved (`encoder_from`),
        built straight from it: the pretrained weights are not loaded only to be replaced (2.2 GB for XLM-R large)."""
        encoder = self.pretrained_encoder() if encoder_from is None else self.load_encoder(encoder_from)
        return TaskModel(encoder, task.head(encoder.config.hidden_size, nnx.Rngs(seed)))

    def abstract_model(self, task: Any) -> TaskModel:
        """The model's structure without weights (they come from a checkpoint)."""
        hidden = self.encoder_config.hidden_size
        return nnx.eval_shape(lambda: TaskModel(self.abstract_encoder(), task.head(hidden, nnx.Rngs(0))))

    def load_encoder(self, saved_encoder: str | None) -> Encoder:
        """The encoder to evaluate: the one the intermediate phase handed off, or the pretrained one."""
        if saved_encoder is None:
            return self.pretrained_encoder()
        if not as_path(saved_encoder).exists():
            raise WeightsError(
                f"no saved encoder at {saved_encoder}: run the intermediate phase first (or point to its workdir)"
            )
        graphdef, state = nnx.split(self.abstract_encoder())
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), nnx.to_pure_dict(state)
        )
        # Uncommitted arrays, as load_pretrained gives: the evaluation may lay them out on a mesh spanning several
        # processes, and JAX refuses to move arrays committed to this process's first device to other hosts.
        loaded = jax.tree.map(lambda x: jax.numpy.asarray(jax.device_get(x)), load_params(saved_encoder, target))
        return nnx.merge(graphdef, loaded)
