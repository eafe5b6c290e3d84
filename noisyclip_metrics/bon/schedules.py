"""Choosing a successive-halving schedule for a cost budget from recorded runs.

:class:`~.policies.HalvingPolicy` keeps the better half of the candidates at each step of its schedule; which steps
work best depends on how fast a scorer's ranking settles along the trajectory. A results store holds every
candidate's score at every step, and a survivor's trajectory is the recorded one, so every schedule can be simulated
exactly, offline (:mod:`.offline`):

* :func:`halving_schedules` lists the schedules: every strictly increasing tuple of steps in ``0..T``, one per
  halving (``6 -> 3 -> 2 -> 1`` takes 3 steps: ``C(T + 1, 3)`` schedules, 1,330 for T = 20).
* :func:`fit_halving_schedule` picks the schedule with the best mean judge score of the pick among those whose cost
  fits a budget (cost as in :func:`~.offline.bon_rows`, scorer cost included), on a run's prompts or a subset of
  them. :meth:`ScheduleFit.policy` is the :class:`~.policies.HalvingPolicy` to run live.
* :func:`crossfit_halving` estimates how that fitted schedule does on prompts it was **not** fitted on: the prompts
  are split at random into ``folds``; each fold's picks come from the schedule fitted on the other folds; this is
  repeated over ``repeats`` random splits and each prompt's judge score of the pick is averaged over them. Fitted and
  scored on the same prompts, the best schedule is an optimistic upper bound of what any halving schedule can do;
  cross-fitted, it is what a user fitting a schedule on their own runs can expect on new prompts.

Only prompts with every score the scorer recorded count (a schedule may read any of those steps); ties between
schedules go to the cheaper one, then to the earlier steps.

Example:
    >>> [s for s in halving_schedules(4, 3)]  # 4 -> 2 -> 1: two halvings
    [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .offline import RunArrays, _simulate, plan_cost, run_costs, x0_scorer
from .policies import HalvingPolicy, halving_counts, schedule_cost

__all__ = ["ScheduleFit", "CrossFit", "halving_schedules", "fit_halving_schedule", "crossfit_halving"]


def halving_schedules(n: int, num_steps: int) -> Iterator[tuple[int, ...]]:
    """Every strictly increasing schedule of ``len(halving_counts(n))`` steps in ``0..num_steps``, in lexicographic
    order (see the module docstring)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise InputError(f"n: expected an int >= 2 (halving needs two candidates), got {n!r}")
    if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
        raise InputError(f"num_steps: expected an int >= 1, got {num_steps!r}")
    return itertools.combinations(range(num_steps + 1), len(halving_counts(n)))


@dataclass(frozen=True)
class ScheduleFit:
    """The halving schedule with the best mean judge score of the pick within a cost budget.

    Attributes:
        scorer: the scorer that takes the decisions.
        n: N.
        budget: the cost budget (fraction of ``N · T`` denoiser calls).
        schedule: the chosen steps.
        cost_fraction: the schedule's cost.
        judge_score: its mean judge score of the pick on the prompts it was fitted on.
        prompts: how many prompts it was fitted on.
    """

    scorer: str
    n: int
    budget: float
    schedule: tuple[int, ...]
    cost_fraction: float
    judge_score: float
    prompts: int

    def policy(self) -> HalvingPolicy:
        """The live policy (:class:`~noisyclip_metrics.bon.EarlyBestOfN`) with this schedule."""
        return HalvingPolicy(self.schedule)


@dataclass(frozen=True)
class CrossFit:
    """Cross-fitted halving at a budget (:func:`crossfit_halving`).

    Attributes:
        values: per prompt (:meth:`~.offline.RunArrays.groups` order), the judge score of the pick under the schedule
            fitted without it, averaged over the repeats; NaN for prompts left out.
        schedules: how often each schedule was chosen, over folds and repeats.
    """

    values: np.ndarray
    schedules: Mapping[tuple[int, ...], int]

    @property
    def judge_score(self) -> float:
        """Mean judge score of the pick over the prompts."""
        return float(np.nanmean(self.values))


@dataclass(frozen=True)
class _Table:
    schedules: list[tuple[int, ...]]
    costs: np.ndarray  # (S,)
    values: np.ndarray  # (S, G') judge score of the pick, complete prompts only
    rows: np.ndarray  # (G',) their indices among the run's groups
    groups: int


def _table(arrays: RunArrays, scorer: str, n: int, budget: float, costs: Mapping[str, float] | None) -> _Table:
    """Every schedule within ``budget``: its cost and per-prompt pick values on the prompts with complete scores."""
    if scorer not in arrays.scores:
        raise InputError(f"scorer: run {arrays.info.run_id} has no scores of {scorer!r}; "
                         f"expected one of {sorted(arrays.scores)}")  # fmt: skip
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget < math.inf:
        raise InputError(f"budget: expected a cost fraction > 0, got {budget!r}")
    steps = arrays.num_steps
    prow, pcol = arrays.groups(n)
    if len(prow) == 0:
        raise InputError(f"n: no prompt of run {arrays.info.run_id} has {n} judged seeds")
    scores = arrays.scores[scorer][prow[:, None], pcol]
    scored = np.flatnonzero(~np.isnan(scores).all(axis=(0, 1)))
    complete = np.flatnonzero(~np.isnan(scores[:, :, scored]).any(axis=(1, 2)))
    judged = arrays.judge[prow[:, None], pcol][complete]
    rows = np.arange(len(complete))
    c = run_costs(arrays, costs).get(scorer, 0.0)
    counts = halving_counts(n)
    chosen, fractions, values = [], [], []
    for schedule in halving_schedules(n, steps):
        if not set(schedule) <= set(scored.tolist()):
            continue
        decisions = list(zip(schedule, counts))
        denoiser, scorings = schedule_cost(n, steps, decisions, needs_model_output=x0_scorer(scorer))
        fraction = plan_cost(n, steps, denoiser, scorings * c)
        if fraction <= budget + 1e-9:
            chosen.append(schedule)
            fractions.append(fraction)
            values.append(judged[rows, _simulate(scores[complete], decisions)])
    if not chosen:
        raise InputError(f"budget: no halving schedule of {scorer!r} for N = {n} costs at most {budget:g}")
    return _Table(chosen, np.asarray(fractions), np.asarray(values), complete, len(prow))


def _best(table: _Table, cols: np.ndarray) -> int:
    """Index of the best schedule on the prompt columns ``cols`` (ties: cheaper, then earlier steps)."""
    means = table.values[:, cols].mean(axis=1)
    top = np.flatnonzero(means >= means.max() - 1e-12)
    return int(min(top, key=lambda i: (table.costs[i], table.schedules[i])))


def fit_halving_schedule(arrays: RunArrays, scorer: str, n: int, budget: float,
                         costs: Mapping[str, float] | None = None, prompts: Sequence[int] | None = None,
                         ) -> ScheduleFit:  # fmt: skip
    """The halving schedule with the best mean judge score of the pick whose cost fits ``budget``.

    Args:
        arrays: a recorded run (:func:`~.offline.load_run`).
        scorer: the scorer that takes the decisions.
        n: N (>= 2).
        budget: cost budget as a fraction of ``N · T`` denoiser calls, scorer cost included.
        costs: scorer cost per scoring in denoiser-call equivalents, overriding the run's timing.
        prompts: fit on these prompts only (indices in :meth:`~.offline.RunArrays.groups` order; default all).

    Raises:
        InputError: for an unknown scorer, a budget no schedule fits, or no usable prompt.
    """
    table = _table(arrays, scorer, n, budget, costs)
    cols = np.arange(len(table.rows))
    if prompts is not None:
        wanted = np.asarray(list(prompts), dtype=np.int64)
        if wanted.size and (wanted.min() < 0 or wanted.max() >= table.groups):
            raise InputError(f"prompts: expected indices in 0..{table.groups - 1}, got {wanted.min()}..{wanted.max()}")
        cols = np.flatnonzero(np.isin(table.rows, wanted))
    if len(cols) == 0:
        raise InputError("prompts: none of them has every score of the scorer")
    i = _best(table, cols)
    return ScheduleFit(scorer, n, float(budget), table.schedules[i], float(table.costs[i]),
                       float(table.values[i, cols].mean()), len(cols))  # fmt: skip


def crossfit_halving(arrays: RunArrays, scorer: str, n: int, budget: float, costs: Mapping[str, float] | None = None,
                     folds: int = 2, repeats: int = 20, seed: int = 0) -> CrossFit:  # fmt: skip
    """Judge score of the pick of a halving schedule fitted on other prompts (see the module docstring).

    Args:
        arrays, scorer, n, budget, costs: as for :func:`fit_halving_schedule`.
        folds: folds per split (>= 2).
        repeats: random splits averaged (>= 1).
        seed: seed of the splits.
    """
    if not isinstance(folds, int) or folds < 2:
        raise InputError(f"folds: expected an int >= 2, got {folds!r}")
    if not isinstance(repeats, int) or repeats < 1:
        raise InputError(f"repeats: expected an int >= 1, got {repeats!r}")
    table = _table(arrays, scorer, n, budget, costs)
    g = len(table.rows)
    if g < folds:
        raise InputError(f"folds: expected at most {g} (prompts with every score), got {folds}")
    rng = np.random.default_rng(seed)
    total = np.zeros(g)
    chosen: dict[tuple[int, ...], int] = {}
    for _ in range(repeats):
        fold = rng.permutation(g) % folds
        for f in range(folds):
            i = _best(table, np.flatnonzero(fold != f))
            held = fold == f
            total[held] += table.values[i, held]
            chosen[table.schedules[i]] = chosen.get(table.schedules[i], 0) + 1
    values = np.full(table.groups, np.nan)
    values[table.rows] = total / repeats
    return CrossFit(values, dict(sorted(chosen.items(), key=lambda kv: (-kv[1], kv[0]))))
