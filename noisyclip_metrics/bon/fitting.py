"""Early-stopping policies fitted on recorded runs: halving schedules and threshold settings for a cost budget.

A results store holds every candidate's score at every step, and a survivor's trajectory is the recorded one, so a
policy's run can be simulated exactly, offline (:mod:`.offline`), and its settings chosen for a budget:

* **Halving** (:class:`~.policies.HalvingPolicy`): :func:`halving_schedules` lists every strictly increasing tuple of
  steps in ``0..T``, one per halving (``6 -> 3 -> 2 -> 1`` takes 3 steps: ``C(T + 1, 3)`` schedules, 1,330 for
  T = 20); :func:`fit_halving_schedule` keeps the one with the best mean judge score of the pick among those whose
  cost fits the budget (cost as in :func:`~.offline.bon_rows`, scorer cost included).
* **Threshold** (:class:`~.policies.ThresholdPolicy`): :func:`~.calibration.simulate_threshold` replays the policy
  on recorded scores (the same decisions and account as :class:`~.early.EarlyBestOfN` live);
  :func:`fit_threshold_policy` calibrates it on the prompts (:func:`fit_threshold_calibration`'s gaps
  at each quantile of a :class:`ThresholdGrid`) and keeps the quantile, first step and interval with the best mean
  judge score of the pick among those whose **mean** cost over the prompts fits the budget (a threshold run's cost
  depends on the prompt).
* **Cross-fitting** (:func:`crossfit_halving`, :func:`crossfit_threshold`): the prompts are split at random into
  ``folds``; each fold's picks come from the policy fitted on the other folds; this is repeated over ``repeats``
  random splits and each prompt's judge score of the pick (and cost) is averaged over them. Fitted and scored on the
  same prompts, the best settings are an optimistic upper bound; cross-fitted, they are what a user fitting a policy
  on their own runs can expect on new prompts.

Only prompts with every score the scorer recorded count. Ties between settings go to the cheaper one, then to the
first in order.

Examples:
    >>> [s for s in halving_schedules(4, 3)]  # 4 -> 2 -> 1: two halvings
    [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from noisyclip_metrics.bon.calibration import ThresholdCalibration, gap_quantiles, normalised_gaps, simulate_threshold
from noisyclip_metrics.bon.offline import RunArrays, _simulate, load_run, plan_cost, reads_x0, run_costs
from noisyclip_metrics.bon.policies import HalvingPolicy, ThresholdPolicy, halving_counts, schedule_cost
from noisyclip_metrics.errors import InputError
from noisyclip_metrics.evaluation.results import ResultsStore

__all__ = [
    "FITTERS",
    "CrossFit",
    "ScheduleFit",
    "ThresholdFit",
    "ThresholdGrid",
    "crossfit_halving",
    "crossfit_threshold",
    "fit_halving_schedule",
    "fit_threshold_calibration",
    "fit_threshold_policy",
    "halving_schedules",
]


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
class ThresholdGrid:
    """Settings :func:`fit_threshold_policy` chooses among (steps at or beyond T are skipped).

    Attributes:
        quantiles: calibration quantiles (chance that the eventual best falls below the bar at a step).
        min_steps: first steps at which candidates may be dropped.
        every: intervals between decisions.
    """

    quantiles: tuple[float, ...] = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4)
    min_steps: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8)
    every: tuple[int, ...] = (1, 2)

    def __post_init__(self) -> None:
        if not self.quantiles or any(not 0 < q < 1 for q in self.quantiles):
            raise InputError(f"quantiles: expected values in (0, 1), got {self.quantiles!r}")
        if not self.min_steps or any(int(k) < 0 for k in self.min_steps):
            raise InputError(f"min_steps: expected steps >= 0, got {self.min_steps!r}")
        if not self.every or any(int(e) < 1 for e in self.every):
            raise InputError(f"every: expected intervals >= 1, got {self.every!r}")


@dataclass(frozen=True)
class ThresholdFit:
    """The threshold settings with the best mean judge score of the pick whose mean cost fits a budget.

    Attributes:
        scorer, n, budget, judge_score, prompts: as for :class:`ScheduleFit`.
        calibration: the calibration fitted on the prompts at the chosen quantile.
        min_step: first step at which candidates may be dropped.
        every: interval between decisions.
        cost_fraction: mean cost over the prompts.
    """

    scorer: str
    n: int
    budget: float
    calibration: ThresholdCalibration
    min_step: int
    every: int
    cost_fraction: float
    judge_score: float
    prompts: int

    def policy(self) -> ThresholdPolicy:
        """The live policy with these settings."""
        return ThresholdPolicy(self.calibration, min_step=self.min_step, every=self.every)


@dataclass(frozen=True)
class CrossFit:
    """A policy fitted on other prompts (:func:`crossfit_halving`, :func:`crossfit_threshold`).

    Attributes:
        values: per prompt (:meth:`~.offline.RunArrays.groups` order), the judge score of the pick under the policy
            fitted without it, averaged over the repeats; NaN for prompts left out.
        costs: per prompt, the cost of its run, averaged likewise.
        choices: how often each setting was chosen over folds and repeats (a schedule, or ``(quantile, min_step,
            every)``), most chosen first.
    """

    values: np.ndarray
    costs: np.ndarray
    choices: Mapping[tuple, int] = field(default_factory=dict)

    @property
    def judge_score(self) -> float:
        """Mean judge score of the pick over the prompts."""
        return float(np.nanmean(self.values))

    @property
    def cost_fraction(self) -> float:
        """Mean cost over the prompts."""
        return float(np.nanmean(self.costs))


@dataclass(frozen=True)
class _Run:
    """The complete prompts of one scorer and N: scores (G', n, T+1), judge scores (G', n), their group rows."""

    scorer: str
    scores: np.ndarray
    judge: np.ndarray
    rows: np.ndarray
    groups: int
    scored: np.ndarray  # steps the scorer scored
    cost_eq: float
    x0: bool


def _run(arrays: RunArrays, scorer: str, n: int, budget: float, costs: Mapping[str, float] | None) -> _Run:
    if scorer not in arrays.scores:
        raise InputError(
            f"scorer: run {arrays.info.run_id} has no scores of {scorer!r}; expected one of {sorted(arrays.scores)}"
        )
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget < math.inf:
        raise InputError(f"budget: expected a cost fraction > 0, got {budget!r}")
    prow, pcol = arrays.groups(n)
    if len(prow) == 0:
        raise InputError(f"n: no prompt of run {arrays.info.run_id} has {n} judged seeds")
    scores = arrays.scores[scorer][prow[:, None], pcol]
    scored = np.flatnonzero(~np.isnan(scores).all(axis=(0, 1)))
    complete = np.flatnonzero(~np.isnan(scores[:, :, scored]).any(axis=(1, 2)))
    if len(complete) == 0:
        raise InputError(f"scorer: no prompt of run {arrays.info.run_id} has every {scorer!r} score")
    return _Run(
        scorer,
        scores[complete],
        arrays.judge[prow[:, None], pcol][complete],
        complete,
        len(prow),
        scored,
        run_costs(arrays, costs).get(scorer, 0.0),
        reads_x0(arrays.info, scorer),
    )


def _columns(run: _Run, prompts: Sequence[int] | None) -> np.ndarray:
    """Positions among the complete prompts of ``prompts`` (indices in group order; all when ``None``)."""
    if prompts is None:
        return np.arange(len(run.rows))
    wanted = np.asarray(list(prompts), dtype=np.int64)
    if wanted.size and (wanted.min() < 0 or wanted.max() >= run.groups):
        raise InputError(f"prompts: expected indices in 0..{run.groups - 1}, got {wanted.min()}..{wanted.max()}")
    cols = np.flatnonzero(np.isin(run.rows, wanted))
    if len(cols) == 0:
        raise InputError("prompts: none of them has every score of the scorer")
    return cols


def _best(means: np.ndarray, costs: np.ndarray) -> int:
    """Index of the best mean (ties: the cheaper, then the first)."""
    top = np.flatnonzero(means >= means.max() - 1e-12)
    return int(min(top, key=lambda i: (costs[i], i)))


FoldFit = Callable[[np.ndarray, np.ndarray], tuple[tuple, np.ndarray, np.ndarray]]


def crossfit_splits(g: int, folds: int, repeats: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``(train, test)`` positions of every fold of every repeat, in the order :func:`_crossfit` visits them:
    each repeat deals the ``g`` prompts into ``folds`` at random.

    Raises:
        InputError: for ``folds < 2``, ``repeats < 1`` or fewer prompts than folds.
    """
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 2:
        raise InputError(f"folds: expected an int >= 2, got {folds!r}")
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise InputError(f"repeats: expected an int >= 1, got {repeats!r}")
    if g < folds:
        raise InputError(f"folds: expected at most {g} (prompts with every score), got {folds}")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(repeats):
        fold = rng.permutation(g) % folds
        out += [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(folds)]
    return out


def _crossfit(groups: int, rows: np.ndarray, folds: int, repeats: int, seed: int, fold_fit: FoldFit) -> CrossFit:
    """Average over ``repeats`` random splits (:func:`crossfit_splits`) of ``fold_fit(train, test) -> (choice,
    values, costs)`` on test."""
    g = len(rows)
    values, costs = np.zeros(g), np.zeros(g)
    chosen: dict[tuple, int] = {}
    for train, test in crossfit_splits(g, folds, repeats, seed):
        choice, v, c = fold_fit(train, test)
        values[test] += v
        costs[test] += c
        chosen[choice] = chosen.get(choice, 0) + 1
    out_v, out_c = np.full(groups, np.nan), np.full(groups, np.nan)
    out_v[rows], out_c[rows] = values / repeats, costs / repeats
    return CrossFit(out_v, out_c, dict(sorted(chosen.items(), key=lambda kv: (-kv[1], kv[0]))))


# ------------------------------------------------------------------------------------------------------------ halving
@dataclass(frozen=True)
class _Schedules:
    schedules: list[tuple[int, ...]]
    costs: np.ndarray  # (S,)
    values: np.ndarray  # (S, G') judge score of the pick


def _schedules(run: _Run, n: int, budget: float) -> _Schedules:
    """Every halving schedule within ``budget``: its cost and per-prompt pick values."""
    steps = run.scores.shape[2] - 1
    counts, scored = halving_counts(n), set(run.scored.tolist())
    rows = np.arange(len(run.rows))
    chosen, fractions, values = [], [], []
    for schedule in halving_schedules(n, steps):
        if not set(schedule) <= scored:
            continue
        decisions = list(zip(schedule, counts, strict=True))
        denoiser, scorings = schedule_cost(n, steps, decisions, needs_model_output=run.x0)
        fraction = plan_cost(n, steps, denoiser, scorings * run.cost_eq)
        if fraction <= budget + 1e-9:
            chosen.append(schedule)
            fractions.append(fraction)
            values.append(run.judge[rows, _simulate(run.scores, decisions)])
    if not chosen:
        raise InputError(f"budget: no halving schedule of {run.scorer!r} for N = {n} costs at most {budget:g}")
    return _Schedules(chosen, np.asarray(fractions), np.asarray(values))


def fit_halving_schedule(
    arrays: RunArrays,
    scorer: str,
    n: int,
    budget: float,
    costs: Mapping[str, float] | None = None,
    prompts: Sequence[int] | None = None,
) -> ScheduleFit:
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
    run = _run(arrays, scorer, n, budget, costs)
    cols = _columns(run, prompts)
    table = _schedules(run, n, budget)
    i = _best(table.values[:, cols].mean(axis=1), table.costs)
    return ScheduleFit(
        scorer,
        n,
        float(budget),
        table.schedules[i],
        float(table.costs[i]),
        float(table.values[i, cols].mean()),
        len(cols),
    )


def crossfit_halving(
    arrays: RunArrays,
    scorer: str,
    n: int,
    budget: float,
    costs: Mapping[str, float] | None = None,
    folds: int = 2,
    repeats: int = 20,
    seed: int = 0,
) -> CrossFit:
    """Judge score of the pick of a halving schedule fitted on other prompts (see the module docstring).

    Args:
        arrays: as for :func:`fit_halving_schedule`.
        scorer: as for :func:`fit_halving_schedule`.
        n: as for :func:`fit_halving_schedule`.
        budget: as for :func:`fit_halving_schedule`.
        costs: as for :func:`fit_halving_schedule`.
        folds: folds per split (>= 2).
        repeats: random splits averaged (>= 1).
        seed: seed of the splits.
    """
    run = _run(arrays, scorer, n, budget, costs)
    table = _schedules(run, n, budget)

    def fold_fit(train: np.ndarray, test: np.ndarray) -> tuple[tuple, np.ndarray, np.ndarray]:
        i = _best(table.values[:, train].mean(axis=1), table.costs)
        return table.schedules[i], table.values[i, test], np.full(len(test), table.costs[i])

    return _crossfit(run.groups, run.rows, folds, repeats, seed, fold_fit)


# ---------------------------------------------------------------------------------------------------------- threshold
def _threshold_settings(grid: ThresholdGrid, steps: int) -> list[tuple[int, int]]:
    return [(int(k), int(e)) for k in grid.min_steps for e in grid.every if int(k) < steps]


def _threshold_candidates(
    run: _Run,
    n: int,
    cols: np.ndarray,
    grid: ThresholdGrid,
) -> list[tuple[tuple[float, int, int], tuple[float, ...], float, float]]:
    """Every grid setting calibrated and replayed on the prompts ``cols``: (setting, gaps, mean cost, mean judge)."""
    steps = run.scores.shape[2] - 1
    if len(run.scored) != steps + 1:
        raise InputError("scorer: the threshold policy needs scores at every step")
    z = normalised_gaps(run.scores[cols], run.judge[cols])
    out = []
    for q in grid.quantiles:
        gaps = gap_quantiles(z, q)
        for min_step, every in _threshold_settings(grid, steps):
            pick, den, sc = simulate_threshold(run.scores[cols], gaps, min_step, every, 1, run.x0)
            cost = plan_cost(n, steps, den, sc * run.cost_eq)
            out.append(
                (
                    (float(q), min_step, every),
                    gaps,
                    float(cost.mean()),
                    float(run.judge[cols][np.arange(len(cols)), pick].mean()),
                )
            )
    return out


def _choose(candidates: list, budget: float, scorer: str) -> tuple:
    fit = [c for c in candidates if c[2] <= budget + 1e-9]
    if not fit:
        cheapest = min(c[2] for c in candidates)
        raise InputError(
            f"budget: no threshold setting of {scorer!r} has a mean cost at most {budget:g} "
            f"(the cheapest: {cheapest:.3f})"
        )
    return fit[_best(np.asarray([c[3] for c in fit]), np.asarray([c[2] for c in fit]))]


def fit_threshold_policy(
    arrays: RunArrays,
    scorer: str,
    n: int,
    budget: float,
    grid: ThresholdGrid | None = None,
    costs: Mapping[str, float] | None = None,
    prompts: Sequence[int] | None = None,
) -> ThresholdFit:
    """The calibrated threshold settings with the best mean judge score of the pick whose mean cost fits ``budget``.

    Args:
        arrays: as for :func:`fit_halving_schedule`.
        scorer: as for :func:`fit_halving_schedule`.
        n: as for :func:`fit_halving_schedule`.
        budget: as for :func:`fit_halving_schedule`.
        costs: as for :func:`fit_halving_schedule`.
        prompts: as for :func:`fit_halving_schedule`.
        grid: the settings to choose among (default :class:`ThresholdGrid`).

    Raises:
        InputError: for an unknown scorer, a scorer without scores at every step, a budget no setting fits, or no
            usable prompt.
    """
    run = _run(arrays, scorer, n, budget, costs)
    cols = _columns(run, prompts)
    candidates = _threshold_candidates(run, n, cols, grid or ThresholdGrid())
    (q, min_step, every), gaps, cost, judge = _choose(candidates, budget, scorer)
    cal = ThresholdCalibration(
        scorer=scorer,
        n=n,
        quantile=q,
        num_steps=run.scores.shape[2] - 1,
        gaps=gaps,
        judge=arrays.judge_name,
        runs=(arrays.info.run_id,),
        groups=len(cols),
    )
    return ThresholdFit(scorer, n, float(budget), cal, min_step, every, cost, judge, len(cols))


def crossfit_threshold(
    arrays: RunArrays,
    scorer: str,
    n: int,
    budget: float,
    grid: ThresholdGrid | None = None,
    costs: Mapping[str, float] | None = None,
    folds: int = 2,
    repeats: int = 20,
    seed: int = 0,
) -> CrossFit:
    """Judge score of the pick (and cost) of the threshold policy calibrated and fitted on other prompts.

    The budget binds the mean cost on the prompts fitted on; on the held-out prompts it can come out a little
    higher or lower (:attr:`CrossFit.cost_fraction`).
    """
    run = _run(arrays, scorer, n, budget, costs)
    grid = grid or ThresholdGrid()
    steps = run.scores.shape[2] - 1

    def fold_fit(train: np.ndarray, test: np.ndarray) -> tuple[tuple, np.ndarray, np.ndarray]:
        (q, min_step, every), gaps, _, _ = _choose(_threshold_candidates(run, n, train, grid), budget, scorer)
        pick, den, sc = simulate_threshold(run.scores[test], gaps, min_step, every, 1, run.x0)
        return (
            (q, min_step, every),
            run.judge[test][np.arange(len(test)), pick],
            plan_cost(n, steps, den, sc * run.cost_eq),
        )

    return _crossfit(run.groups, run.rows, folds, repeats, seed, fold_fit)


#: Fitted policies by name: (fit on prompts, cross-fitted estimate); ``noisyclip bon fit --policy`` and the benchmark.
FITTERS: dict[str, tuple[Callable[..., ScheduleFit | ThresholdFit], Callable[..., CrossFit]]] = {
    "halving": (fit_halving_schedule, crossfit_halving),
    "threshold": (fit_threshold_policy, crossfit_threshold),
}


def fit_threshold_calibration(
    results: str | Path | ResultsStore, scorer: str, n: int = 6, quantile: float = 0.1, run_id: str | None = None
) -> ThresholdCalibration:
    """Fit a :class:`ThresholdCalibration` on the runs of a results store (all runs with the same T, or one run).

    Raises:
        InputError: when no run has ``scorer`` scores at every step and prompts with ``n`` judged seeds, or runs
            with different T are mixed.
    """
    store = results if isinstance(results, ResultsStore) else ResultsStore.open(results)
    runs = [store.run(run_id)] if run_id else store.runs()
    gaps: list[np.ndarray] = []
    used, judges, steps_seen = [], set(), set()
    for info in runs:
        arrays = load_run(store, info.run_id)
        if scorer not in arrays.scores:
            continue
        rows, cols = arrays.groups(n)
        if len(rows) == 0:
            continue
        s = arrays.scores[scorer][rows[:, None], cols]  # (G, n, T+1)
        if np.isnan(s).any():
            continue
        gaps.append(normalised_gaps(s, arrays.judge[rows[:, None], cols]))
        used.append(info.run_id)
        judges.add(arrays.judge_name)
        steps_seen.add(arrays.num_steps)
    if not gaps:
        raise InputError(
            f"scorer: no run of {store.root} has {scorer!r} scores at every step for prompts with {n} judged seeds"
        )
    if len(steps_seen) > 1:
        raise InputError(f"run_id: runs have different numbers of steps {sorted(steps_seen)}; pick one with run_id")
    z = np.concatenate(gaps)
    return ThresholdCalibration(
        scorer=scorer,
        n=n,
        quantile=quantile,
        num_steps=steps_seen.pop(),
        gaps=gap_quantiles(z, quantile),
        judge=",".join(sorted(judges)),
        runs=tuple(used),
        groups=int(z.shape[0]),
    )
