"""Early stopping: stops after `patience` evaluations without a better dev score, keeps the best, survives a rerun."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from stilts_jax.core import distributed
from stilts_jax.models.heads import classification_loss
from stilts_jax.pipeline.common import trainer_config as phase_trainer_config
from stilts_jax.train.loop import EarlyStopping, train
from stilts_jax.train.metrics_log import read_metrics
from tests.train_harness import synthetic_features, tiny_model, trainer_config

RULES = distributed.DEFAULT_LOGICAL_RULES
# Dev scores of the evaluations at steps 2, 4, 6, ...: the best is at step 4, then three evaluations do not beat it.
SCRIPT = [0.50, 0.70, 0.60, 0.65, 0.69, 0.95, 0.99, 0.99, 0.99, 0.99]


class ScriptedDevScore:
    """An evaluate function that reads the parameters it is given and returns the next scripted score."""

    def __init__(self):
        self.steps_seen: list[float] = []

    def __call__(self, params) -> dict[str, float]:
        head_norm = float(np.linalg.norm(np.asarray(jax.device_get(params["head"]["output"]))))
        score = SCRIPT[len(self.steps_seen)]
        self.steps_seen.append(head_norm)
        return {"dev_score": score, "head_norm": head_norm}


def _run(workdir, evaluate, patience, steps=20):
    mesh = distributed.make_mesh({"data": -1}, devices=jax.devices()[:1])  # sharded training: tests/test_training.py
    return train(
        tiny_model(),
        classification_loss,
        synthetic_features(),
        trainer_config(steps, eval_every=2, checkpoint_every=100, keep_checkpoints=1, early_stopping_patience=patience),
        workdir=workdir,
        mesh=mesh,
        rules=RULES,
        evaluate=evaluate,
        best_metric="dev_score",
    )


def test_stops_at_the_patience_th_evaluation_without_improvement_and_stays_stopped(tmp_path):
    evaluate = ScriptedDevScore()
    result = _run(tmp_path, evaluate, patience=3)
    assert result.stopped_early and result.steps == 10 and int(result.state.step) == 10
    assert len(evaluate.steps_seen) == 5  # evaluations at steps 2, 4, 6, 8, 10; the 0.95 of step 12 never came
    assert result.best_step == 4
    assert [r["step"] for r in read_metrics(tmp_path, "dev")] == [2, 4, 6, 8, 10]
    assert max(r["step"] for r in read_metrics(tmp_path, "train")) == 10
    (why,) = read_metrics(tmp_path, "early_stopping")
    assert why == {
        "step": 10,
        "split": "early_stopping",
        "best_step": 4,
        "best": 0.7,
        "patience": 3,
        "evaluations_without_improvement": 3,
    }
    assert result.checkpoints.all_steps() == [4, 10]  # the best and the latest
    best_head = np.asarray(jax.device_get(result.best_params["head"]["output"]))
    assert np.linalg.norm(best_head) == pytest.approx(evaluate.steps_seen[1], rel=1e-6)  # the step-4 parameters

    rerun_evaluate = ScriptedDevScore()
    again = _run(tmp_path, rerun_evaluate, patience=3)
    assert again.resumed_from == 10 and again.stopped_early and again.steps == 10
    assert rerun_evaluate.steps_seen == []  # nothing trained, nothing evaluated
    assert again.best_step == 4
    assert max(r["step"] for r in read_metrics(tmp_path, "train")) == 10
    np.testing.assert_array_equal(np.asarray(jax.device_get(again.best_params["head"]["output"])), best_head)


def test_without_patience_the_run_goes_to_the_end(tmp_path):
    evaluate = ScriptedDevScore()
    result = _run(tmp_path, evaluate, patience=0, steps=12)
    assert not result.stopped_early and result.steps == 12 and len(evaluate.steps_seen) == 6
    assert result.best_step == 12 and read_metrics(tmp_path, "early_stopping") == []


def test_tracker_counts_evaluations_since_the_best():
    tracker = EarlyStopping(patience=2)
    assert [tracker.update(step, score) for step, score in [(1, 0.5), (2, 0.4), (3, 0.6), (4, 0.6)]] == [False] * 4
    assert tracker.update(5, 0.59) and tracker.stopped_at == 5 and tracker.best_step == 3
    last = EarlyStopping(patience=1)
    last.update(1, 1.0)
    assert not last.update(2, 0.0, can_stop=False)  # the last step finishes normally
    restored = EarlyStopping(patience=2)
    restored.restore(tracker.state())
    assert restored.state() == tracker.state()
    minimising = EarlyStopping(patience=1, best_mode="min")
    assert not minimising.update(1, 2.0) and not minimising.update(2, 1.0) and minimising.update(3, 1.5)


def test_the_phase_config_key_reaches_the_trainer():
    from stilts_jax.config.loader import parse_config_args

    config, _ = parse_config_args(["--config=configs/demo.py", "--config.intermediate.train.early_stopping_patience=4"])
    assert phase_trainer_config(config.intermediate, 0).early_stopping_patience == 4
    assert phase_trainer_config(config.target, 0).early_stopping_patience == 30  # jiant e_run_models.sh
