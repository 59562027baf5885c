"""One training phase: resume or start, run sharded steps, log, evaluate, checkpoint, stop early or on divergence.

`train()` trains one model on one feature set. The loop itself (`run_phase`) is written against `TrainingData`, which
says which jitted step runs at each step and with which batch; `train()` uses one task's data, and
`stilts_jax.train.multitask` a schedule over several tasks sharing the encoder and the optimizer state.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from tqdm.auto import tqdm

from stilts_jax.core.errors import StiltsError
from stilts_jax.core.paths import as_path
from stilts_jax.train.checkpoints import Checkpoints
from stilts_jax.train.feeding import BatchFeeder
from stilts_jax.train.metrics_log import MetricsLog
from stilts_jax.train.optimizer import OptimizerConfig, make_optimizer
from stilts_jax.train.state import ModelSpec, TrainState, abstract_train_state, init_train_state, state_shardings
from stilts_jax.train.step import GradsFn, LossFn, make_train_step

StepFn = Callable[[TrainState, dict[str, jax.Array]], tuple[TrainState, dict[str, jax.Array]]]

log = logging.getLogger(__name__)


class TrainingDivergedError(StiltsError):
    pass


class TrainingPreempted(StiltsError):
    """SIGTERM arrived (a preemption notice); a checkpoint of the current step was saved."""


class DeviceMemoryError(StiltsError):
    """The train step does not fit in accelerator memory; the message names the settings that make it fit."""


def is_out_of_memory(error: BaseException) -> bool:
    """XLA's allocation failures (GPU, TPU): RESOURCE_EXHAUSTED, whatever the exception class of this jax version."""
    text = str(error)
    return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "out of memory" in text


def out_of_memory_message(config: TrainerConfig, phase: str, num_devices: int) -> str:
    key = f"--config.{phase}" if phase in ("intermediate", "target") else "--config.<phase>"
    per_device = config.global_batch_size / max(config.micro_batches, 1) / num_devices
    return (
        f"the train step does not fit in device memory: batch {config.global_batch_size} in "
        f"{config.micro_batches} micro-batch(es) over {num_devices} device(s) is {per_device:g} sequences per "
        f"device at once. To fit: {key}.train.micro_batches={2 * config.micro_batches} (or more; the same "
        "update from smaller pieces), --config.model.remat=full (recompute activations in the backward pass; "
        "save_dots recomputes less), --config.mesh.fsdp=-1 (shard parameters and optimizer state over the "
        f"devices), or a shorter {key}.max_length. Nothing was saved by this step; rerun to resume."
    )


def progress_line(
    name: str,
    step: int,
    num_steps: int,
    row: dict[str, float],
    examples_per_second: float,
    started_at: tuple[int, float],
    now: float,
) -> str:
    """`[train target] step 120/300 (40%)  loss 0.4234  lr 3.17e-03  38.2 examples/s  ETA 1m52s`."""
    steps_done, elapsed = step - started_at[0], now - started_at[1]
    eta = (num_steps - step) * elapsed / steps_done if steps_done > 0 else float("nan")
    eta_text = (
        "?"
        if not math.isfinite(eta)
        else (
            f"{int(eta // 3600)}h{int(eta % 3600 // 60):02d}m"
            if eta >= 3600
            else f"{int(eta // 60)}m{int(eta % 60):02d}s"
        )
    )
    return (
        f"[train {name}] step {step}/{num_steps} ({100 * step / max(num_steps, 1):.0f}%)  loss {row['loss']:.4f}  "
        f"lr {row['learning_rate']:.2e}  {examples_per_second:.1f} examples/s  ETA {eta_text}"
    )


class _PreemptionWatch:
    """Notices SIGTERM. Across processes, JAX's preemption sync point makes every host stop at the same step."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def should_stop(self, step: int) -> bool:
        if jax.process_count() > 1:
            try:
                return multihost_utils.reached_preemption_sync_point(step)
            except RuntimeError:  # no preemption notifier in this runtime
                return False
        return self.requested

    def close(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    global_batch_size: int = 32
    micro_batches: int = 1  # gradient accumulation: micro-batches per optimizer step
    epochs: float = 2.0
    max_steps: int | None = None  # overrides epochs
    seed: int = 0
    dropout: bool = True
    log_every: int = 50
    checkpoint_every: int = 500
    eval_every: int | None = None  # steps between dev evaluations (None: only at the end)
    keep_checkpoints: int = 2
    async_checkpointing: bool = True
    verify_checkpoints: bool = True
    progress_bar: bool = True
    optimizer: OptimizerConfig = OptimizerConfig()
    # Stop after this many evaluations in a row without a new best `best_metric` (0: never stop early).
    early_stopping_patience: int = 0
    # Cut each batch to a padded width that fits its longest row, grouping rows of similar length (train.feeding).
    length_grouping: bool = False


@dataclasses.dataclass
class TrainResult:
    state: TrainState
    spec: ModelSpec
    steps: int  # the step training ended at (before the planned last one if it stopped early)
    resumed_from: int | None
    best_step: int | None  # by the dev metric; None without evaluation
    best_params: Any  # the parameters of best_step (the final ones without evaluation)
    checkpoints: Checkpoints
    stopped_early: bool = False
    # step -> the dev metrics `evaluate` returned for it: this run's evaluations, and those an earlier run saved with
    # a checkpoint that is still kept. What was scored here need not be scored again (pipeline.common.SelectionScores).
    evaluations: dict[int, dict[str, float]] = dataclasses.field(default_factory=dict)

    def model(self) -> nnx.Module:
        return self.spec.merge(self.state.params)


def total_steps(config: TrainerConfig, steps_per_epoch: float) -> int:
    return config.max_steps if config.max_steps is not None else max(1, math.ceil(config.epochs * steps_per_epoch))


class TrainingData(Protocol):
    """What the loop needs from a phase's data: the step function and the batch of every step, and its position."""

    steps_per_epoch: float  # optimizer steps that make one epoch (turns `epochs` into steps)

    def make_steps(
        self, spec: ModelSpec, tx: Any, schedule: Any, shardings: TrainState, dropout: bool
    ) -> dict[str, StepFn]:
        """The jitted step function(s), by name."""

    def step_name(self, step: int) -> str:
        """Which of `make_steps`' functions trains step `step` (0-based)."""

    def batch(self, step: int) -> dict[str, jax.Array]: ...

    def position(self, step: int) -> dict[str, Any]:
        """The data position before `step`, recorded in checkpoints (JSON)."""

    def check_position(self, saved: dict[str, Any], step: int) -> None:
        """Raise DataPositionError if a checkpoint's position would not reproduce this data's batches."""


class SingleTaskData:
    """One task: a BatchFeeder and its loss (or its own GradsFn, see train.step); the step name is ''."""

    def __init__(self, feeder: BatchFeeder, loss_fn: LossFn, grads_fn: GradsFn | None = None):
        self.feeder, self.loss_fn, self.grads_fn = feeder, loss_fn, grads_fn
        self.steps_per_epoch: float = feeder.steps_per_epoch

    def make_steps(
        self, spec: ModelSpec, tx: Any, schedule: Any, shardings: TrainState, dropout: bool
    ) -> dict[str, StepFn]:
        return {
            "": make_train_step(
                spec,
                tx,
                schedule,
                self.loss_fn,
                shardings,
                self.feeder.shardings,
                dropout=dropout,
                grads_fn=self.grads_fn,
            )
        }

    def step_name(self, step: int) -> str:
        return ""

    def batch(self, step: int) -> dict[str, jax.Array]:
        return self.feeder.batch(step)

    def position(self, step: int) -> dict[str, Any]:
        return self.feeder.position(step)

    def check_position(self, saved: dict[str, Any], step: int) -> None:
        self.feeder.check_position(saved, step)


class EarlyStopping:
    """Counts evaluations since `best_metric` last improved; recorded in every checkpoint so a stop survives a rerun."""

    def __init__(self, patience: int, best_mode: str = "max"):
        if patience < 0:
            raise StiltsError(f"early_stopping_patience must be >= 0 (0: off), got {patience}")
        self.patience, self.best_mode = patience, best_mode
        self.best: float | None = None
        self.best_step: int | None = None
        self.since_best = 0
        self.stopped_at: int | None = None

    def update(self, step: int, score: float, *, can_stop: bool = True) -> bool:
        """Record an evaluation; True when training must stop now (never when `can_stop` is False: the last step)."""
        better = self.best is None or (score > self.best if self.best_mode == "max" else score < self.best)
        if better:
            self.best, self.best_step, self.since_best = score, step, 0
        else:
            self.since_best += 1
        if can_stop and self.patience and self.since_best >= self.patience:
            self.stopped_at = step
        return self.stopped_at is not None

    def state(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_step": self.best_step,
            "since_best": self.since_best,
            "stopped_at": self.stopped_at,
        }

    def restore(self, saved: dict[str, Any] | None) -> None:
        if saved:
            self.best, self.best_step = saved.get("best"), saved.get("best_step")
            self.since_best, self.stopped_at = int(saved.get("since_best", 0)), saved.get("stopped_at")


def train(
    model: nnx.Module,
    loss_fn: LossFn,
    features: dict[str, np.ndarray],
    config: TrainerConfig,
    *,
    workdir: str | Path,
    mesh: Mesh,
    rules: Sequence[tuple[str, Any]],
    evaluate: Callable[[Any], dict[str, float]] | None = None,
    best_metric: str = "dev_score",
    grads_fn: GradsFn | None = None,
) -> TrainResult:
    """Train `model` on `features` in `workdir`, resuming from its latest good checkpoint if there is one.

    `evaluate(params) -> metrics` runs every `eval_every` steps and at the end (params is the pure dict the
    model's `ModelSpec` merges); the checkpoint saved then carries `metrics[best_metric]`, which keep-best ranks by.
    `grads_fn` replaces the step's per-micro-batch gradient accumulation of `loss_fn` (train.step.GradsFn).
    """
    feeder = BatchFeeder(
        features,
        config.global_batch_size,
        config.micro_batches,
        config.seed,
        mesh,
        rules,
        length_grouping=config.length_grouping,
    )
    return run_phase(
        model,
        SingleTaskData(feeder, loss_fn, grads_fn),
        config,
        workdir=workdir,
        mesh=mesh,
        rules=rules,
        evaluate=evaluate,
        best_metric=best_metric,
    )


def run_phase(
    model: nnx.Module,
    data: TrainingData,
    config: TrainerConfig,
    *,
    workdir: str | Path,
    mesh: Mesh,
    rules: Sequence[tuple[str, Any]],
    evaluate: Callable[[Any], dict[str, float]] | None = None,
    best_metric: str = "dev_score",
) -> TrainResult:
    """The training loop over any `TrainingData` (see `train`); also used by multi-task training."""
    workdir = as_path(workdir)  # local or gs://...
    spec = ModelSpec(model, mesh, rules)
    num_steps = total_steps(config, data.steps_per_epoch)
    tx, schedule = make_optimizer(config.optimizer, num_steps)
    shardings = state_shardings(spec, tx)
    checkpoints = Checkpoints(
        workdir / "checkpoints",
        keep_last=config.keep_checkpoints,
        keep_best=1 if evaluate else 0,
        best_metric=best_metric,
        async_save=config.async_checkpointing,
        verify=config.verify_checkpoints,
    )
    metrics_log = MetricsLog(workdir)
    stopping = EarlyStopping(config.early_stopping_patience if evaluate else 0)

    abstract = abstract_train_state(spec, tx, shardings)
    restored = checkpoints.restore_latest(abstract)
    if restored is None:
        state, start, resumed_from = init_train_state(spec, tx, config.seed, shardings), 0, None
    else:
        start, state, saved_position = restored
        data.check_position(saved_position, start)
        stopping.restore(saved_position.get("early_stopping"))
        resumed_from = start
        metrics_log.truncate_after(start)
        log.info("resumed from checkpoint step %d", start)
        if jax.process_index() == 0:
            stopped = " (stopped early there; nothing left to train)" if stopping.stopped_at is not None else ""
            print(f"resuming {workdir} from step {start} of {num_steps}{stopped}", flush=True)

    step_fns = data.make_steps(spec, tx, schedule, shardings, config.dropout)
    pending: list[tuple[int, str, dict[str, jax.Array]]] = []
    last_log = (start, time.perf_counter())
    # A terminal gets a progress bar; a launcher's log file (not a terminal) or progress_bar=false gets a plain line
    # every log_every steps instead, from process 0 (a bar's carriage returns and escape codes garble such logs).
    plain_lines = jax.process_index() == 0 and not (config.progress_bar and sys.stderr.isatty())
    bar = tqdm(
        total=num_steps,
        initial=start,
        desc=f"train {workdir.name}",
        unit="step",
        disable=plain_lines or jax.process_index() != 0,
    )
    started_at = (start, time.perf_counter())

    def flush_metrics() -> None:
        """Fetch the metrics kept on device since the last flush (one host sync), log them, stop on NaN."""
        nonlocal last_log
        if not pending:
            return
        fetched = jax.device_get([m for _, _, m in pending])
        steps = [s for s, _, _ in pending]
        names = [n for _, n, _ in pending]
        pending.clear()
        for step, metrics in zip(steps, fetched):
            if not (math.isfinite(float(metrics["loss"])) and math.isfinite(float(metrics["grad_norm"]))):
                good = checkpoints.all_steps()
                raise TrainingDivergedError(
                    f"loss became {float(metrics['loss'])} (grad norm {float(metrics['grad_norm'])}) at step {step}; "
                    f"stopped without saving. Last good checkpoint: {good[-1] if good else 'none'} in {checkpoints.directory}. "
                    "Lower the learning rate, check the data, or use float32 compute."
                )
        now = time.perf_counter()
        examples_per_second = (steps[-1] - last_log[0]) * config.global_batch_size / max(now - last_log[1], 1e-9)
        last_log = (steps[-1], now)
        row = {k: float(v) for k, v in fetched[-1].items()}
        for name in dict.fromkeys(n for n in names if n):  # per task of a multi-task run: mean loss since the last row
            row[f"{name}/loss"] = float(np.mean([float(m["loss"]) for n, m in zip(names, fetched) if n == name]))
        metrics_log.write(steps[-1], "train", {**row, "examples_per_second": examples_per_second})
        checkpoints.record_finished()  # the manifest of a save finished in the background: resume can verify it
        bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['learning_rate']:.2e}")
        if plain_lines:
            print(
                progress_line(workdir.name, steps[-1], num_steps, row, examples_per_second, started_at, now), flush=True
            )

    def position(step: int) -> dict[str, Any]:
        return {**data.position(step), "early_stopping": stopping.state()}

    preemption = _PreemptionWatch()
    end = start
    evaluations: dict[int, dict[str, float]] = {}
    try:
        for step in range(start, num_steps if stopping.stopped_at is None else start):
            name = data.step_name(step)
            try:
                state, metrics = step_fns[name](state, data.batch(step))
            except Exception as e:
                if is_out_of_memory(e):
                    raise DeviceMemoryError(out_of_memory_message(config, workdir.name, mesh.size)) from e
                raise
            done = end = step + 1
            pending.append((done, name, metrics))
            bar.update(1)
            is_last = done == num_steps
            if done % config.log_every == 0 or is_last:
                flush_metrics()
            evaluate_now = evaluate is not None and (is_last or (config.eval_every and done % config.eval_every == 0))
            if evaluate_now or done % config.checkpoint_every == 0 or is_last:
                flush_metrics()  # never save a diverged state
                scores = None
                if evaluate_now:
                    assert evaluate is not None  # evaluate_now implies it
                    scores = {k: float(v) for k, v in evaluate(state.params).items()}
                    if best_metric not in scores:
                        raise KeyError(f"evaluate() returned {sorted(scores)}, without the best_metric {best_metric!r}")
                    metrics_log.write(done, "dev", scores)
                    evaluations[done] = scores
                    if stopping.update(done, scores[best_metric], can_stop=not is_last):
                        stopping_row: dict[str, Any] = {
                            "best_step": stopping.best_step,
                            "best": stopping.best,
                            "patience": stopping.patience,
                            "evaluations_without_improvement": stopping.since_best,
                        }
                        metrics_log.write(done, "early_stopping", stopping_row)
                metrics_log.flush()  # a remote log is uploaded with each checkpoint, so resuming loses no lines
                checkpoints.save(done, state, position(done), metrics=scores)
                if stopping.stopped_at is not None:
                    if jax.process_index() == 0:
                        print(
                            f"early stopping at step {done}: {best_metric} has not improved on {stopping.best} "
                            f"(step {stopping.best_step}) for {stopping.since_best} evaluations",
                            flush=True,
                        )
                    break
            elif preemption.should_stop(done):
                flush_metrics()
                checkpoints.save(done, state, position(done))
                raise TrainingPreempted(
                    f"stopped by SIGTERM after step {done}; checkpoint saved in {checkpoints.directory}. "
                    "Rerun the same command to resume."
                )
        checkpoints.wait()
        for kept in checkpoints.all_steps():
            if kept not in evaluations and (saved := checkpoints.metrics(kept)) is not None:
                evaluations[kept] = saved
        best_step = checkpoints.best_step()
        best_params = state.params
        if best_step is not None and best_step != int(state.step):
            best_params = checkpoints.restore_state(best_step, abstract).params
    finally:
        preemption.close()
        checkpoints.close()  # waits for an in-flight save: the last good checkpoint is complete
        bar.close()
        metrics_log.close()
    return TrainResult(
        state,
        spec,
        max(end, start),
        resumed_from,
        best_step,
        best_params,
        checkpoints,
        stopped_early=stopping.stopped_at is not None,
        evaluations=dict(sorted(evaluations.items())),
    )
