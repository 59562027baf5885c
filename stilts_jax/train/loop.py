"""One training phase: resume or start, run sharded steps, log, evaluate, checkpoint, stop on divergence."""

from __future__ import annotations

import dataclasses
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from tqdm.auto import tqdm

from stilts_jax.errors import StiltsError
from stilts_jax.train.checkpoints import Checkpoints
from stilts_jax.train.feeding import BatchFeeder
from stilts_jax.train.metrics_log import MetricsLog
from stilts_jax.train.optimizer import OptimizerConfig, make_optimizer
from stilts_jax.train.state import ModelSpec, TrainState, abstract_train_state, init_train_state, state_shardings
from stilts_jax.train.step import LossFn, make_train_step

log = logging.getLogger(__name__)


class TrainingDivergedError(StiltsError):
    pass


class TrainingPreempted(StiltsError):
    """SIGTERM arrived (a preemption notice); a checkpoint of the current step was saved."""


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


@dataclasses.dataclass
class TrainResult:
    state: TrainState
    spec: ModelSpec
    steps: int
    resumed_from: int | None
    best_step: int | None  # by the dev metric; None without evaluation
    best_params: Any  # the parameters of best_step (the final ones without evaluation)
    checkpoints: Checkpoints

    def model(self) -> nnx.Module:
        return self.spec.merge(self.state.params)


def total_steps(config: TrainerConfig, steps_per_epoch: int) -> int:
    return config.max_steps if config.max_steps is not None else max(1, math.ceil(config.epochs * steps_per_epoch))


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
) -> TrainResult:
    """Train `model` on `features` in `workdir`, resuming from its latest good checkpoint if there is one.

    `evaluate(params) -> metrics` runs every `eval_every` steps and at the end (params is the pure dict the
    model's `ModelSpec` merges); the checkpoint saved then carries `metrics[best_metric]`, which keep-best ranks by.
    """
    workdir = Path(workdir)
    spec = ModelSpec(model, mesh, rules)
    feeder = BatchFeeder(features, config.global_batch_size, config.micro_batches, config.seed, mesh, rules)
    num_steps = total_steps(config, feeder.steps_per_epoch)
    tx, schedule = make_optimizer(config.optimizer, num_steps)
    shardings = state_shardings(spec, tx)
    checkpoints = Checkpoints(workdir / "checkpoints", keep_last=config.keep_checkpoints, keep_best=1 if evaluate else 0,
                              best_metric=best_metric, async_save=config.async_checkpointing, verify=config.verify_checkpoints)
    metrics_log = MetricsLog(workdir)

    abstract = abstract_train_state(spec, tx, shardings)
    restored = checkpoints.restore_latest(abstract)
    if restored is None:
        state, start, resumed_from = init_train_state(spec, tx, config.seed, shardings), 0, None
    else:
        start, state, position = restored
        feeder.check_position(position, start)
        resumed_from = start
        metrics_log.truncate_after(start)
        log.info("resumed from checkpoint step %d", start)
        if jax.process_index() == 0:
            print(f"resuming {workdir} from step {start} of {num_steps}", flush=True)

    train_step = make_train_step(spec, tx, schedule, loss_fn, shardings, feeder.shardings, dropout=config.dropout)
    pending: list[tuple[int, dict[str, jax.Array]]] = []
    last_log = (start, time.perf_counter())
    bar = tqdm(total=num_steps, initial=start, desc=f"train {workdir.name}", unit="step",
               disable=not config.progress_bar or jax.process_index() != 0)

    def flush_metrics() -> None:
        """Fetch the metrics kept on device since the last flush (one host sync), log them, stop on NaN."""
        nonlocal last_log
        if not pending:
            return
        fetched = jax.device_get([m for _, m in pending])
        steps = [s for s, _ in pending]
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
        last = {k: float(v) for k, v in fetched[-1].items()}
        metrics_log.write(steps[-1], "train", {**last, "examples_per_second": examples_per_second})
        bar.set_postfix(loss=f"{last['loss']:.4f}", lr=f"{last['learning_rate']:.2e}")

    preemption = _PreemptionWatch()
    try:
        for step in range(start, num_steps):
            state, metrics = train_step(state, feeder.batch(step))
            done = step + 1
            pending.append((done, metrics))
            bar.update(1)
            is_last = done == num_steps
            if done % config.log_every == 0 or is_last:
                flush_metrics()
            evaluate_now = evaluate is not None and (is_last or (config.eval_every and done % config.eval_every == 0))
            if evaluate_now or done % config.checkpoint_every == 0 or is_last:
                flush_metrics()  # never save a diverged state
                scores = None
                if evaluate_now:
                    scores = {k: float(v) for k, v in evaluate(state.params).items()}
                    if best_metric not in scores:
                        raise KeyError(f"evaluate() returned {sorted(scores)}, without the best_metric {best_metric!r}")
                    metrics_log.write(done, "dev", scores)
                checkpoints.save(done, state, feeder.position(done), metrics=scores)
            elif preemption.should_stop(done):
                flush_metrics()
                checkpoints.save(done, state, feeder.position(done))
                raise TrainingPreempted(
                    f"stopped by SIGTERM after step {done}; checkpoint saved in {checkpoints.directory}. "
                    "Rerun the same command to resume."
                )
        checkpoints.wait()
        best_step = checkpoints.best_step()
        best_params = state.params
        if best_step is not None and best_step != int(state.step):
            best_params = checkpoints.restore_state(best_step, abstract).params
    finally:
        preemption.close()
        checkpoints.close()  # waits for an in-flight save: the last good checkpoint is complete
        bar.close()
        metrics_log.close()
    return TrainResult(state, spec, num_steps, resumed_from, best_step, best_params, checkpoints)
