"""Multi-task training: one shared encoder, one head per task, one task per optimizer step.

Design (the paper's multi-task intermediate phase, as jiant runs it):
- The model is `MultiTaskModel(encoder, heads)`; its parameters are `{"encoder": ..., "heads": {task: ...}}`, so the
  hand-off to the target phase is `params["encoder"]`, exactly as after single-task training.
- Every optimizer step trains ONE task. `TaskSchedule` picks it as a pure function of (seed, step) with probabilities
  from `task_probabilities` (examples-proportional with an optional cap, or temperature-scaled); tasks given a fixed
  share (the MLM auxiliary) get exactly that share.
- Each task has its own `BatchFeeder` (its own shapes and shuffle, seeded from (seed, task name)); its data position
  at step s is the number of earlier steps that chose it. Resuming at any step therefore reproduces the batches of an
  uninterrupted run, and a checkpoint records the schedule and every task's position, which a resume checks.
- One jitted step per task (the shapes differ), all sharing one TrainState and so one optimizer state. A step
  updates the encoder and its own head; the other heads and their Adam moments stay exactly as they were (as
  PyTorch's AdamW skips parameters without gradients). Adam's step count, which drives bias correction, is shared.
- Length: `max_steps`, or `epochs` times one pass over the mixed tasks' (capped) data,
  sum_i min(n_i, cap) / batch, divided by the share the fixed-share tasks leave.
- Dev selection (`evaluate`) is the caller's: the pipeline ranks checkpoints by the mean of the tasks' dev scores.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from stilts_jax.core.errors import StiltsError
from stilts_jax.models.encoder import Encoder
from stilts_jax.models.heads import TaskModel
from stilts_jax.train.feeding import BatchFeeder, DataPositionError
from stilts_jax.train.loop import StepFn, TrainerConfig, TrainResult, run_phase
from stilts_jax.train.sampling import TaskSchedule, task_probabilities
from stilts_jax.train.state import ModelSpec, TrainState
from stilts_jax.train.step import LossFn, make_train_step

BatchTransform = Callable[[dict[str, np.ndarray], int], dict[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    method: str = "proportional"  # or "temperature"
    temperature: float = 1.0
    cap: int = 0  # the most examples a task counts with (0: no cap)


@dataclasses.dataclass(frozen=True)
class TaskData:
    """One task of a multi-task run.

    Args:
      name: the task's name (its head's key in `MultiTaskModel.heads`).
      loss_fn: the task's loss, called with `TaskModel(shared encoder, this task's head)`.
      features: name -> array [num_examples, ...].
      transform: optional host-side batch transform `(batch, position) -> batch` (MLM masking).
      share: a fixed sampling probability instead of the mixing rule (auxiliary objectives).
    """

    name: str
    loss_fn: LossFn
    features: dict[str, np.ndarray]
    transform: BatchTransform | None = None
    share: float | None = None

    @property
    def num_examples(self) -> int:
        return len(next(iter(self.features.values())))


class MultiTaskModel(nnx.Module):
    """A shared encoder and one head per task; `task_model(name)` is the TaskModel a task's loss and predictor use."""

    def __init__(self, encoder: Encoder, heads: Mapping[str, nnx.Module]):
        if not heads:
            raise ValueError("a multi-task model needs at least one head")
        self.encoder = encoder
        self.heads = nnx.Dict(dict(heads))

    def task_model(self, name: str) -> TaskModel:
        return TaskModel(self.encoder, self.heads[name])


def task_params(params: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The parameters of `MultiTaskModel.task_model(name)` out of the multi-task model's parameters."""
    return {"encoder": params["encoder"], "head": params["heads"][name]}


def task_seed(seed: int, name: str) -> int:
    """Each task's shuffling seed: from the run's seed and the task's name, not its place in the list."""
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode())]).generate_state(1)[0])


def _keep_other_heads(name: str) -> Callable[[Any, Any], Any]:
    def keep(new: Any, old: Any) -> Any:
        return {
            **new,
            "heads": {task: (new["heads"][task] if task == name else old["heads"][task]) for task in new["heads"]},
        }

    return keep


def _task_loss(name: str, loss_fn: LossFn) -> LossFn:
    def loss(model: MultiTaskModel, batch: dict[str, jax.Array], rng: jax.Array | None) -> tuple[jax.Array, jax.Array]:
        return loss_fn(model.task_model(name), batch, rng)

    return loss


class MultiTaskData:
    """`TrainingData` for several tasks: the schedule says which task (and which of its batches) each step takes."""

    def __init__(
        self,
        tasks: Sequence[TaskData],
        config: TrainerConfig,
        mesh: Mesh,
        rules: Any,
        sampling: SamplingConfig = SamplingConfig(),
    ):
        names = [task.name for task in tasks]
        if not tasks or len(set(names)) != len(names):
            raise StiltsError(f"a multi-task run needs distinct task names, got {names}")
        self.tasks = {task.name: task for task in tasks}
        self.feeders: dict[str, BatchFeeder] = {}
        for task in tasks:
            try:
                self.feeders[task.name] = BatchFeeder(
                    task.features,
                    config.global_batch_size,
                    config.micro_batches,
                    task_seed(config.seed, task.name),
                    mesh,
                    rules,
                    task.transform,
                    length_grouping=config.length_grouping,
                )
            except StiltsError as e:
                raise StiltsError(f"task {task.name}: {e}") from None
        mixed = {task.name: task.num_examples for task in tasks if task.share is None}
        if not mixed:
            raise StiltsError(f"every task of {names} has a fixed share; at least one must be sampled by size")
        fixed = {task.name: task.share for task in tasks if task.share is not None}
        self.probabilities = task_probabilities(
            mixed, method=sampling.method, temperature=sampling.temperature, cap=sampling.cap, fixed=fixed
        )
        self.schedule = TaskSchedule(names, [self.probabilities[name] for name in names], config.seed)
        counted = sum(min(n, sampling.cap) if sampling.cap else n for n in mixed.values())
        self.steps_per_epoch = counted / config.global_batch_size / (1.0 - sum(fixed.values()))

    def make_steps(
        self, spec: ModelSpec, tx: Any, schedule: Any, shardings: TrainState, dropout: bool
    ) -> dict[str, StepFn]:
        return {
            name: make_train_step(
                spec,
                tx,
                schedule,
                _task_loss(name, task.loss_fn),
                shardings,
                self.feeders[name].shardings,
                dropout=dropout,
                keep=_keep_other_heads(name),
            )
            for name, task in self.tasks.items()
        }

    def step_name(self, step: int) -> str:
        return self.schedule.task(step)

    def batch(self, step: int) -> dict[str, jax.Array]:
        return self.feeders[self.schedule.task(step)].batch(self.schedule.task_position(step))

    def position(self, step: int) -> dict[str, Any]:
        at = self.schedule.positions_at(step)
        return {
            "step": step,
            "schedule": self.schedule.describe(),
            "tasks": {name: self.feeders[name].position(at[name]) for name in self.tasks},
        }

    def check_position(self, saved: dict[str, Any], step: int) -> None:
        if "schedule" not in saved or "tasks" not in saved:
            raise DataPositionError(
                f"the checkpoint at step {step} was written by a single-task run; use a new workdir "
                "for multi-task training"
            )
        if saved["schedule"] != self.schedule.describe():
            raise DataPositionError(
                f"the checkpoint at step {step} was written with another task schedule ({saved['schedule']}, now "
                f"{self.schedule.describe()}): the tasks, their sizes, the sampling settings or the seed changed. Use a "
                "new workdir, or restore the original settings"
            )
        at = self.schedule.positions_at(step)
        for name, feeder in self.feeders.items():
            try:
                feeder.check_position(saved["tasks"].get(name, {}), at[name])
            except DataPositionError as e:
                raise DataPositionError(f"task {name}: {e}") from None


def train_multitask(
    model: MultiTaskModel,
    tasks: Sequence[TaskData],
    config: TrainerConfig,
    *,
    workdir: str | Path,
    mesh: Mesh,
    rules: Sequence[tuple[str, Any]],
    sampling: SamplingConfig = SamplingConfig(),
    evaluate: Callable[[Any], dict[str, float]] | None = None,
    best_metric: str = "dev_score",
) -> TrainResult:
    """Train `model`'s encoder and heads on `tasks` in `workdir`, resuming from its latest good checkpoint.

    Everything else (checkpoints, keep-best, early stopping, SIGTERM, NaN checks, logs) is `train()`'s; the train
    rows of metrics.jsonl also carry `<task>/loss`, the mean loss of each task's steps since the previous row.
    """
    heads = set(model.heads.keys())
    names = {task.name for task in tasks}
    if heads != names:
        raise StiltsError(
            f"the model's heads {sorted(heads)} and the tasks {sorted(names)} differ; build one head per task"
        )
    data = MultiTaskData(tasks, config, mesh, rules, sampling)
    return run_phase(
        model, data, config, workdir=workdir, mesh=mesh, rules=rules, evaluate=evaluate, best_metric=best_metric
    )
