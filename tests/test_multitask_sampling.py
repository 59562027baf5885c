"""Multi-task sampling: the mixing formulas, the empirical frequencies of the schedule, its purity in (seed, step)."""

from __future__ import annotations

import numpy as np
import pytest

from stilts_jax.core.errors import StiltsError
from stilts_jax.train.sampling import TaskSchedule, task_probabilities

SIZES = {"mnli": 3927, "squad": 876, "copa": 40}


def _schedule(probabilities: dict[str, float], seed: int = 0) -> TaskSchedule:
    return TaskSchedule(list(probabilities), list(probabilities.values()), seed)


def test_proportional_probabilities_and_empirical_frequencies():
    probabilities = task_probabilities(SIZES, method="proportional")
    total = sum(SIZES.values())
    for name, n in SIZES.items():
        assert probabilities[name] == pytest.approx(n / total, rel=1e-12)
    steps = 200_000
    counts = np.bincount(_schedule(probabilities).tasks(steps), minlength=3)
    for count, p in zip(counts, probabilities.values()):
        # Within 5 binomial standard deviations of the expected count.
        assert abs(count - steps * p) < 5 * np.sqrt(steps * p * (1 - p)), (count, steps * p)


def test_temperature_one_is_proportional_and_higher_temperatures_flatten():
    proportional = task_probabilities(SIZES, method="proportional")
    assert task_probabilities(SIZES, method="temperature", temperature=1.0) == pytest.approx(proportional, rel=1e-12)
    for temperature in (2.0, 5.0):
        p = task_probabilities(SIZES, method="temperature", temperature=temperature)
        scaled = {name: n ** (1.0 / temperature) for name, n in SIZES.items()}
        for name in SIZES:
            assert p[name] == pytest.approx(scaled[name] / sum(scaled.values()), rel=1e-9)
    assert task_probabilities(SIZES, method="temperature", temperature=1e6)["copa"] == pytest.approx(1 / 3, rel=1e-4)
    # Huge datasets and a small temperature neither overflow nor underflow.
    extreme = task_probabilities({"a": 10**9, "b": 10**8}, method="temperature", temperature=0.05)
    assert extreme["a"] == pytest.approx(1.0) and 0.0 <= extreme["b"] < 1e-10


def test_cap_limits_the_count_of_large_tasks_and_fixed_shares_are_exact():
    capped = task_probabilities(SIZES, method="proportional", cap=500)
    assert capped == pytest.approx({"mnli": 500 / 1040, "squad": 500 / 1040, "copa": 40 / 1040}, rel=1e-12)
    with_mlm = task_probabilities(SIZES, fixed={"mlm": 0.2})
    assert with_mlm["mlm"] == 0.2
    assert with_mlm["squad"] == pytest.approx(0.8 * 876 / sum(SIZES.values()), rel=1e-12)
    assert sum(with_mlm.values()) == pytest.approx(1.0)
    steps = 100_000
    counts = np.bincount(_schedule(with_mlm, seed=3).tasks(steps), minlength=4)
    assert abs(counts[3] / steps - 0.2) < 5 * np.sqrt(0.2 * 0.8 / steps)


def test_schedule_is_a_pure_function_of_seed_and_step():
    p = task_probabilities(SIZES)
    full = _schedule(p).tasks(10_000)
    fresh = _schedule(p)
    # Asking for a late step first (as a resumed run does) gives the same tasks and positions.
    assert fresh.task_index(9_000) == full[9_000]
    naive_counts = {name: 0 for name in SIZES}
    for step in range(10_000):
        name = fresh.task(step)
        assert name == list(SIZES)[full[step]]
        assert fresh.task_position(step) == naive_counts[name]
        naive_counts[name] += 1
    assert fresh.positions_at(10_000) == naive_counts
    assert fresh.positions_at(0) == {name: 0 for name in SIZES}
    assert not np.array_equal(_schedule(p, seed=1).tasks(10_000), full)  # the seed matters
    # A longer run keeps the schedule of a shorter one: it depends on the step, not on the length.
    np.testing.assert_array_equal(_schedule(p).tasks(20_000)[:10_000], full)


def test_bad_settings_name_the_fix():
    with pytest.raises(StiltsError, match="unknown sampling method 'uniform'"):
        task_probabilities(SIZES, method="uniform")
    with pytest.raises(StiltsError, match="temperature must be > 0"):
        task_probabilities(SIZES, method="temperature", temperature=0.0)
    with pytest.raises(StiltsError, match="fixed task shares must be in"):
        task_probabilities(SIZES, fixed={"mlm": 1.0})
    with pytest.raises(StiltsError, match=r"tasks \['copa'\] have no training examples"):
        task_probabilities({**SIZES, "copa": 0})
    with pytest.raises(StiltsError, match="leave nothing"):
        task_probabilities(SIZES, fixed={"mlm": 0.6, "tlm": 0.4})
