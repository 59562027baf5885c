"""The order of a run's phases: intermediate training, the encoder hand-off, the target phase, evaluation.

Each phase works in its own folder under the workdir and leaves `phase_done.json` when finished; a rerun with
the same workdir skips finished phases and resumes an unfinished one from its latest good checkpoint.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import ml_collections

from stilts_jax.config.loader import config_to_json
from stilts_jax.core.io_utils import atomic_write_text
from stilts_jax.core.paths import check_workdir_writable
from stilts_jax.core.workdir_lock import lock_workdir
from stilts_jax.pipeline.chain import run_chain
from stilts_jax.pipeline.context import Phase, RunContext
from stilts_jax.pipeline.dry_run import describe
from stilts_jax.pipeline.dual_encoder import run_dual_encoder
from stilts_jax.pipeline.evaluate_model import evaluated_model_record, without_intermediate
from stilts_jax.pipeline.preflight import check_config, check_model_limits
from stilts_jax.pipeline.retrieval import evaluate_retrieval
from stilts_jax.pipeline.reuse import check_reuse, evaluation_fingerprint, finished_run, plan
from stilts_jax.pipeline.training import run_training_phase
from stilts_jax.pipeline.wandb_log import wandb_run
from stilts_jax.pipeline.zero_shot import evaluate_zero_shot
from stilts_jax.tasks.registry import ENCODER_ONLY_FAMILIES, get_task


class Pipeline(RunContext):
    """A whole run: the shared context (pipeline.context.RunContext) and the phases in order."""

    def run(self) -> dict[str, Any]:
        lock = lock_workdir(self.workdir)  # one run per workdir: a second one is refused here, before any work
        try:
            with wandb_run(self.config, self.workdir):  # logging.wandb: the records go to W&B too
                return self._run_phases()
        finally:
            if lock is not None:
                lock.release()

    def _run_phases(self) -> dict[str, Any]:
        if self.config.target.evaluate_model:
            without_intermediate(self.config)  # the results name no intermediate phase: none runs
        phases = plan(self.config)
        check_model_limits(self.config, self.encoder_config.max_sequence_length, [(p.folder, p.config) for p in phases])
        check_reuse(self.config, self.workdir, phases)
        self.planned = {phase.folder: phase for phase in phases}
        self.evaluation_fingerprint = evaluation_fingerprint(self.config, phases)
        if jax.process_index() == 0 and not finished_run(self.workdir, phases, self.evaluation_fingerprint):
            check_workdir_writable(self.workdir)
            # config.json is the config of the latest invocation that ran; every invocation keeps its own.
            text = config_to_json(self.config)
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            atomic_write_text(self.workdir / "invocations" / f"config.{stamp}.json", text)
            atomic_write_text(self.workdir / "config.json", text)
        if self.config.target.evaluate_model:  # a fine-tuned model evaluated as it is: nothing is trained
            self.phase_records["target"] = evaluated_model_record(self, self.config.target.evaluate_model)
            return evaluate_zero_shot(self, self.phase_records["target"])
        handoff = run_chain(
            self, lambda folder, stage, previous: run_training_phase(self, folder, stage, handoff=previous)
        )
        target_spec = get_task(self.config.target.task)
        if target_spec.family == "dual_encoder":  # LAReQA, Mewsli-X
            return run_dual_encoder(self, handoff)
        if target_spec.family in ENCODER_ONLY_FAMILIES:  # BUCC, Tatoeba: no target training, the encoder is evaluated
            return evaluate_retrieval(self, handoff)
        target = run_training_phase(self, Phase.TARGET, self.config.target, handoff=handoff)
        self.phase_records["target"] = target
        return evaluate_zero_shot(self, target)


def run(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Check the whole config and the data it names, then run (nothing is trained, read or written before)."""
    check_config(config)
    if config.dry_run:
        print(describe(config), end="", flush=True)
        return {"dry_run": True}
    return Pipeline(config).run()
