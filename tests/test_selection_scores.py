"""The selected model's English dev score: the training loop's evaluation of that step is reused, never recomputed,
when it already covered the whole dev set; a subset's score is completed by one whole-set evaluation."""

from __future__ import annotations

from types import SimpleNamespace

import jax
import numpy as np

from stilts_jax.config.loader import parse_config_args
from stilts_jax.core import distributed
from stilts_jax.models.heads import classification_loss
from stilts_jax.pipeline.common import SelectionScores
from stilts_jax.train.loop import train
from tests.train_harness import synthetic_features, tiny_model, trainer_config


def _phase(eval_subset: int):
    config, _ = parse_config_args(
        [
            "--config=configs/stilts.py:intermediate=squad,target=xnli",
            f"--config.target.train.eval_subset={eval_subset}",
        ]
    )
    assert config.target.train.selection == "best"
    return config.target


class CountingScore:
    """score(params, whole) as the phases pass it; scores drop after the first evaluation, so the best is early."""

    def __init__(self, scores: list[float]):
        self.scores, self.calls = scores, []

    def __call__(self, params, whole: bool) -> dict[str, float]:
        self.calls.append(whole)
        head = float(np.linalg.norm(np.asarray(jax.device_get(params["head"]["output"]))))
        return {"dev_score": self.scores[min(len(self.calls) - 1, len(self.scores) - 1)], "head_norm": head}


def test_a_best_step_before_the_last_is_not_scored_again_when_the_loop_scored_the_whole_dev_set():
    calls = []

    def score(params, whole):
        calls.append((params, whole))
        return {"dev_score": 0.5}

    result = SimpleNamespace(
        state=SimpleNamespace(params="final"),
        steps=3000,
        best_params="best",
        best_step=1000,
        evaluations={1000: {"dev_score": 0.8}, 3000: {"dev_score": 0.7}},
    )
    assert SelectionScores(score, _phase(0), subset_is_whole=True).final(result) == {"dev_score": 0.8}
    assert calls == []
    # Scored on a subset during training: the whole set is still needed, once.
    assert SelectionScores(score, _phase(2), subset_is_whole=False).final(result) == {"dev_score": 0.5}
    assert calls == [("best", True)]


def _train(workdir, evaluate):
    mesh = distributed.make_mesh({"data": -1}, devices=jax.devices()[:1])
    return train(
        tiny_model(),
        classification_loss,
        synthetic_features(),
        trainer_config(4, eval_every=2, checkpoint_every=100, keep_checkpoints=1),
        workdir=workdir,
        mesh=mesh,
        rules=distributed.DEFAULT_LOGICAL_RULES,
        evaluate=evaluate,
        best_metric="dev_score",
    )


def test_the_loop_records_each_evaluated_step_and_the_phase_reuses_the_best_ones_score(tmp_path):
    score = CountingScore([0.9, 0.5])
    selection = SelectionScores(score, _phase(0), subset_is_whole=True)
    result = _train(tmp_path, selection.during_training)
    assert result.best_step == 2 and result.steps == 4 and score.calls == [False, False]
    assert sorted(result.evaluations) == [2, 4]
    assert result.evaluations[2]["dev_score"] == 0.9
    final = selection.final(result)
    assert score.calls == [False, False]  # before: a third, whole-set evaluation of step 2's parameters
    assert final == result.evaluations[2]
    _, selected_step = selection.selected(result)
    assert selected_step == 2

    # A rerun after training finished evaluates nothing: the kept checkpoints' saved metrics stand in.
    again = CountingScore([0.1])
    rerun = _train(tmp_path, SelectionScores(again, _phase(0), subset_is_whole=True).during_training)
    assert rerun.resumed_from == 4 and again.calls == []
    assert rerun.evaluations[2] == final
    assert SelectionScores(again, _phase(0), subset_is_whole=True).final(rerun) == final and again.calls == []
