"""Which task each optimizer step of a multi-task run trains on: sampling probabilities and the step schedule.

Probabilities (T5's and jiant's mixing rules), with n_i the number of training features of task i (its examples;
for span QA, its document windows) and an optional cap C:
- "proportional": p_i proportional to min(n_i, C);
- "temperature": p_i proportional to min(n_i, C) ** (1 / T); T = 1 is "proportional", large T tends to uniform.
Tasks given a fixed share (an auxiliary objective such as MLM, whose "size" is text lines and not comparable) get
exactly that probability; the others share the rest by the rule above.

The schedule is a pure function of (seed, step): step s draws u_s from the generator seeded with
(seed, salt, s // block) and picks the task whose cumulative probability interval holds u_s. A resumed run, or a
run with more steps, sees the same task at every step. A task's own data position at step s is the number of
earlier steps that chose it, so each task's batches are also a pure function of (seed, step).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from stilts_jax.core.errors import StiltsError

SAMPLING_METHODS = ("proportional", "temperature")
_SALT = 0x5A3D1E  # keeps the schedule's draws apart from the data shuffles drawn from the same seed
_BLOCK = 4096


def task_probabilities(
    sizes: Mapping[str, int],
    *,
    method: str = "proportional",
    temperature: float = 1.0,
    cap: int = 0,
    fixed: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Sampling probability of every task in `sizes` (and in `fixed`), in the order of `sizes` then `fixed`.

    Args:
      sizes: task -> number of training examples (or features) of the tasks mixed by the rule.
      method: "proportional" or "temperature".
      temperature: T of the temperature rule (ignored by "proportional").
      cap: the most examples a task counts with (0: no cap).
      fixed: task -> probability for tasks outside the rule (e.g. an MLM auxiliary); their sum must be < 1.
    """
    fixed = dict(fixed or {})
    if method not in SAMPLING_METHODS:
        raise StiltsError(f"unknown sampling method {method!r}; use one of {', '.join(SAMPLING_METHODS)}")
    if method == "temperature" and not temperature > 0:
        raise StiltsError(f"the sampling temperature must be > 0, got {temperature}")
    if cap < 0:
        raise StiltsError(f"the sampling cap must be >= 0 (0: no cap), got {cap}")
    overlap = sorted(set(sizes) & set(fixed))
    if overlap:
        raise StiltsError(f"tasks {overlap} have both a size and a fixed share; give each task one of them")
    bad = {name: p for name, p in fixed.items() if not 0 < p < 1}
    if bad:
        raise StiltsError(f"fixed task shares must be in (0, 1), got {bad}")
    rest = 1.0 - sum(fixed.values())
    if sizes and rest <= 0:
        raise StiltsError(f"the fixed shares {fixed} leave nothing for the tasks {sorted(sizes)}; lower them")
    empty = sorted(name for name, n in sizes.items() if n <= 0)
    if empty:
        raise StiltsError(f"tasks {empty} have no training examples")
    counts = np.asarray([min(n, cap) if cap else n for n in sizes.values()], np.float64)
    if method == "temperature":
        # In log space: n ** (1/T) over-/underflows for large sizes and small T.
        logs = np.log(counts) / temperature
        weights = np.exp(logs - logs.max())
    else:
        weights = counts
    shares = rest * weights / weights.sum() if len(counts) else weights
    result = dict(zip(sizes, (float(p) for p in shares)))
    result.update(fixed)
    if not sizes and abs(sum(fixed.values()) - 1.0) > 1e-9:
        raise StiltsError(f"fixed shares {fixed} alone must sum to 1")
    return result


class TaskSchedule:
    """The task of every step and each task's own step count (its data position), from (seed, probabilities)."""

    def __init__(self, names: Sequence[str], probabilities: Sequence[float], seed: int):
        if len(names) != len(probabilities) or not names:
            raise ValueError(f"need one probability per task, got {list(names)} and {list(probabilities)}")
        if len(set(names)) != len(names):
            raise ValueError(f"task names repeat: {list(names)}")
        p = np.asarray(probabilities, np.float64)
        if (p < 0).any() or abs(p.sum() - 1.0) > 1e-6:
            raise ValueError(f"probabilities must be >= 0 and sum to 1, got {list(probabilities)}")
        self.names = tuple(names)
        self.probabilities = tuple(float(x) for x in p / p.sum())
        self.seed = seed
        self._edges = np.cumsum(self.probabilities)
        self._edges[-1] = 1.0  # u < 1 always lands in a task despite rounding
        self._tasks = np.zeros(0, np.int32)
        self._positions = np.zeros(0, np.int64)

    def _draws(self, block: int) -> np.ndarray:
        return np.random.default_rng([self.seed, _SALT, block]).random(_BLOCK)

    def _extend(self, steps: int) -> None:
        """Compute tasks and positions for every step below `steps` (in whole blocks)."""
        have = len(self._tasks)
        if steps <= have:
            return
        blocks = range(have // _BLOCK, -(-steps // _BLOCK))
        draws = np.concatenate([self._draws(b) for b in blocks])
        new_tasks = np.searchsorted(self._edges, draws, side="right").astype(np.int32)
        counts = np.bincount(self._tasks, minlength=len(self.names)) if have else np.zeros(len(self.names), np.int64)
        new_positions = np.zeros(len(new_tasks), np.int64)
        for index in range(len(self.names)):
            chosen = np.nonzero(new_tasks == index)[0]
            new_positions[chosen] = counts[index] + np.arange(len(chosen))
        self._tasks = np.concatenate([self._tasks, new_tasks])
        self._positions = np.concatenate([self._positions, new_positions])

    def task_index(self, step: int) -> int:
        self._extend(step + 1)
        return int(self._tasks[step])

    def task(self, step: int) -> str:
        return self.names[self.task_index(step)]

    def task_position(self, step: int) -> int:
        """How many earlier steps trained this step's task: the batch index within that task's data."""
        self._extend(step + 1)
        return int(self._positions[step])

    def positions_at(self, step: int) -> dict[str, int]:
        """Each task's number of steps among steps [0, step): where every task's data stands before `step`."""
        if step == 0:
            return {name: 0 for name in self.names}
        self._extend(step)
        counts = np.bincount(self._tasks[:step], minlength=len(self.names))
        return {name: int(c) for name, c in zip(self.names, counts)}

    def tasks(self, steps: int) -> np.ndarray:
        """Task indices of steps [0, steps)."""
        self._extend(steps)
        return self._tasks[:steps].copy()

    def describe(self) -> dict[str, object]:
        """What a checkpoint records so that a resumed run can check it would see the same schedule."""
        return {
            "seed": self.seed,
            "tasks": list(self.names),
            "probabilities": [round(p, 12) for p in self.probabilities],
        }
