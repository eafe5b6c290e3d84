"""Budget-matched search: start more candidates than full-cost Best-of-B could finish, prune early, pick better.

Full-cost Best-of-B finishes ``B`` candidates and lets ``clip-final`` pick one. With the same compute, a pruned search
starts ``N >= B`` candidates and drops most of them early, on a scorer that reads the noisy latent or its x̂0 preview
(TTSnap, arXiv 2511.22242; the funnel schedules of SMC-based search, arXiv 2508.12361). Whether that picks a better
image depends on how well the scorer ranks early, which recorded runs measure.

**Budget.** ``B`` counts full trajectories: ``B · T`` denoiser calls, with every scoring counted at its cost in
denoiser-call equivalents (as in :mod:`.offline`)::

    spent = (denoiser_evals + scorings · c + final_scorings · c_final) / T

The reference, full-cost ``clip-final`` Best-of-B, spends ``B + B · c_final / T``: its own scorings are not taken
out of its budget, while a search must fit within ``B`` with everything counted (the comparison favours the
reference).

**Plans** (:class:`SearchPlan`): ``n`` candidates; at each decision ``(step, survivors)`` the best ``survivors`` of
those alive are kept (:class:`~.policies.FunnelPolicy` live). Families:

============  ======================================================================================================
``one-shot``  one decision: keep the best 1 of ``n`` at step ``k``
``halving``   keep ``ceil(alive / 2)`` at evenly spaced steps until one is left (``24 → 12 → 6 → 3 → 2 → 1``)
``funnel``    the same with a steeper cut: ``ceil(alive / 3)`` or ``ceil(alive / 4)`` per decision
``cascade``   any of these stopping at ``m >= 2`` survivors, which are finished and picked by ``clip-final``
============  ======================================================================================================

:func:`search_plans` lists them for a number of steps. :class:`SearchSpace` replays any plan on a recorded run
(the picks a live run on the same seeds makes; a prompt's first ``n`` seeds), :func:`fit_search` chooses the scorer
and plan with the best mean judge score of the pick within a budget, and :func:`crossfit_search` measures that
choice on prompts it was not chosen on (:func:`~.fitting._crossfit`: random halves, repeated).

Examples:
    >>> plan = SearchPlan(n=24, decisions=((2, 6), (6, 1)))
    >>> plan.family, plan.label, plan.policy().name
    ('funnel', '24→6@2→1@6', 'funnel')
    >>> round(plan.spent(num_steps=20, scorer_cost=0.0), 2)  # (24·2 + 6·4 + 1·14) / 20
    4.3
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from noisyclip_metrics.bon.fitting import CrossFit, _best, _crossfit, crossfit_splits
from noisyclip_metrics.bon.offline import RunArrays, _simulate, final_only_scorers, reads_x0, run_costs
from noisyclip_metrics.bon.policies import FunnelPolicy, OneShotPolicy, Policy, schedule_cost
from noisyclip_metrics.errors import InputError

__all__ = [
    "BUDGETS",
    "FAMILIES",
    "SEARCH_COLUMNS",
    "SearchFit",
    "SearchPlan",
    "SearchSpace",
    "crossfit_search",
    "fit_search",
    "most_chosen",
    "search_curves",
    "search_document",
    "search_plans",
]

#: The budgets of the reward-versus-budget curves (issue 24): full trajectories.
BUDGETS = (1, 2, 3, 4, 6, 8)
#: Plan families, in the order tables list them.
FAMILIES = ("one-shot", "halving", "funnel", "cascade")
#: Survivors kept per decision: halving keeps half, the funnels a third or a quarter.
_FACTORS = {2: "halving", 3: "funnel", 4: "funnel"}


@dataclass(frozen=True)
class SearchPlan:
    """Start ``n`` candidates; at each ``(step, survivors)`` keep the best ``survivors``; pick the last one.

    Args:
        n: candidates started.
        decisions: ``(step, survivors)`` pairs, steps strictly increasing, survivors strictly decreasing below ``n``.
        cascade: the last survivors (two or more) are finished and the final scorer picks one; otherwise the last
            decision keeps one candidate.
    """

    n: int
    decisions: tuple[tuple[int, int], ...]
    cascade: bool = False

    def __post_init__(self) -> None:
        pairs = tuple((int(k), int(c)) for k, c in self.decisions)
        object.__setattr__(self, "decisions", pairs)
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 2:
            raise InputError(f"n: expected an integer >= 2 (candidates started), got {self.n!r}")
        if not pairs:
            raise InputError("decisions: expected at least one (step, survivors) pair")
        policy = self.policy()
        policy.validate(self.n, max(k for k, _ in pairs))  # steps increasing, counts decreasing and below n
        last = pairs[-1][1]
        if self.cascade != (last > 1):
            want = "two or more survivors at the last decision" if self.cascade else "one survivor at the end"
            raise InputError(f"decisions: a {'cascade' if self.cascade else 'plan'} needs {want}, got {last}")

    @property
    def steps(self) -> tuple[int, ...]:
        """The decision steps."""
        return tuple(k for k, _ in self.decisions)

    @property
    def family(self) -> str:
        """``one-shot``, ``halving`` or ``funnel`` (``cascade`` when the final scorer picks)."""
        if self.cascade:
            return "cascade"
        if len(self.decisions) == 1:
            return "one-shot"
        alive, halving = self.n, True
        for _, count in self.decisions:
            halving &= count == math.ceil(alive / 2)
            alive = count
        return "halving" if halving else "funnel"

    @property
    def label(self) -> str:
        """``n→survivors@step→...``, plus ``+final`` for a cascade (e.g. ``24→6@2→1@6``)."""
        text = f"{self.n}" + "".join(f"→{c}@{k}" for k, c in self.decisions)
        return text + "+final" if self.cascade else text

    def policy(self) -> Policy:
        """The live policy: one-shot for one decision, else a funnel (:class:`~.policies.FunnelPolicy`)."""
        if len(self.decisions) == 1:
            ((k, m),) = self.decisions
            return OneShotPolicy(k=k, m=m)
        return FunnelPolicy(schedule=self.steps, survivors=tuple(c for _, c in self.decisions))

    def spent(self, num_steps: int, scorer_cost: float, final_cost: float = 0.0, reads_x0: bool = False) -> float:
        """Compute spent, in full trajectories (see the module docstring).

        Args:
            num_steps: T.
            scorer_cost: one scoring, in denoiser-call equivalents.
            final_cost: one scoring of the cascade's final scorer.
            reads_x0: the scorer reads x̂0, so a decision at ``k < T`` follows the step-(k+1) denoiser call.
        """
        denoiser, scorings = schedule_cost(self.n, num_steps, self.decisions, needs_model_output=reads_x0)
        finals = self.decisions[-1][1] if self.cascade else 0
        return (denoiser + scorings * scorer_cost + finals * final_cost) / num_steps


def _counts(n: int, factor: int, last: int) -> list[int]:
    counts, alive = [], n
    while alive > last:
        alive = max(last, math.ceil(alive / factor))
        counts.append(alive)
    return counts


def search_plans(
    num_steps: int,
    ns: Iterable[int],
    steps: Iterable[int] | None = None,
    factors: Iterable[int] = tuple(_FACTORS),
    cascade_m: Iterable[int] = (2, 3, 4),
) -> list[SearchPlan]:
    """Every plan of the families (see the module docstring) for ``T = num_steps``.

    One-shot at every step; halving and funnels (``factors``) with decisions at ``k, k + g, k + 2g...`` for every
    first step ``k`` and gap ``g`` whose last decision comes before ``T``; each also as a cascade to ``m`` survivors.

    Args:
        num_steps: T.
        ns: candidates started.
        steps: the steps a decision may use (default ``0..T-1``; a run scored every other step allows those only).
        factors: survivors kept per decision are ``ceil(alive / factor)``.
        cascade_m: survivors finished and picked by the final scorer (``m <= n / 2``).

    Examples:
        >>> sorted({p.family for p in search_plans(8, [6])})
        ['cascade', 'funnel', 'halving', 'one-shot']
        >>> len(search_plans(8, [6], cascade_m=()))  # one-shot 8; 6→3→2→1: 12; 6→2→1 (a third, a quarter): 28
        48
    """
    allowed = sorted({int(k) for k in (range(num_steps) if steps is None else steps) if 0 <= int(k) < num_steps})
    ok, plans = set(allowed), {}
    for n in sorted({int(x) for x in ns}):
        for m in (1, *(int(c) for c in cascade_m if 2 <= int(c) <= n // 2)):
            for k in allowed:
                plans[(n, ((k, m),))] = None
            for factor in factors:
                counts = _counts(n, int(factor), m)
                if len(counts) < 2:
                    continue  # one cut: the one-shot plan
                for k in allowed:
                    for gap in range(1, num_steps):
                        schedule = [k + i * gap for i in range(len(counts))]
                        if schedule[-1] >= num_steps:
                            break
                        if ok.issuperset(schedule):
                            plans[(n, tuple(zip(schedule, counts, strict=True)))] = None
    return [SearchPlan(n, decisions, cascade=decisions[-1][1] > 1) for n, decisions in plans]


@dataclass(frozen=True)
class SearchFit:
    """The scorer and plan with the best mean judge score of the pick within a budget (:func:`fit_search`).

    Attributes:
        scorer: the scorer that prunes.
        plan: the plan.
        budget: the budget (full trajectories).
        spent: what the plan spends.
        judge_score: mean judge score of the pick over the prompts it was chosen on.
        prompts: how many.
    """

    scorer: str
    plan: SearchPlan
    budget: float
    spent: float
    judge_score: float
    prompts: int


@dataclass
class SearchSpace:
    """One recorded run's first ``max_n`` seeds of every prompt that has them, ready to replay plans.

    Prompt ``i`` of the space is prompt ``rows[i]`` of the run; its candidates are the run's seeds at
    ``columns[i]`` (the first ``max_n`` judged ones, ascending).

    Args:
        arrays: the run (:func:`~.offline.load_run`).
        max_n: candidates per prompt available to a plan (its first ``max_n`` judged seeds).
        scorers: the scorers that may prune (default: every scorer that scored before the last step).
        final_scorer: the cascades' final scorer and the reference's (``clip-final``).
        costs: scorer costs per scoring in denoiser-call equivalents, overriding the run's timing.

    Raises:
        InputError: for no prompt with ``max_n`` judged seeds and every score, or a scorer the run lacks.
    """

    arrays: RunArrays
    max_n: int
    scorers: Sequence[str] | None = None
    final_scorer: str = "clip-final"
    costs: Mapping[str, float] | None = None
    rows: np.ndarray = field(init=False)
    columns: np.ndarray = field(init=False)
    judge: np.ndarray = field(init=False)
    _scores: dict[str, np.ndarray] = field(init=False)
    _final: np.ndarray = field(init=False)
    _cost: dict[str, float] = field(init=False)
    _values: dict[tuple[str, SearchPlan], np.ndarray] = field(init=False, default_factory=dict)
    _costed: dict[str, list[tuple[SearchPlan, float]]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        a, steps = self.arrays, self.arrays.num_steps
        final_only = final_only_scorers(a)
        if self.final_scorer not in final_only:
            raise InputError(
                f"final_scorer: run {a.info.run_id} has no final-image scores of {self.final_scorer!r}; "
                f"it has {sorted(final_only) or 'none'}"
            )
        names = list(self.scorers) if self.scorers is not None else sorted(set(a.scores) - final_only)
        missing = [s for s in names if s not in a.scores or s in final_only]
        if missing or not names:
            raise InputError(
                f"scorers: expected scorers run {a.info.run_id} recorded before the last step, got {missing or names}"
            )
        self.scorers = tuple(names)
        prow, pcol = a.groups(self.max_n)
        scores = {s: a.scores[s][prow[:, None], pcol] for s in names}
        final = a.scores[self.final_scorer][prow[:, None], pcol, steps]
        complete = ~np.isnan(final).any(axis=1)
        for s in scores.values():
            scored = ~np.isnan(s).all(axis=(0, 1))
            complete &= ~np.isnan(s[:, :, scored]).any(axis=(1, 2))
        if not complete.any():
            raise InputError(
                f"max_n: no prompt of run {a.info.run_id} has {self.max_n} judged seeds with every score of {names}"
            )
        self.rows, self.columns = prow[complete], pcol[complete]
        self.judge = a.judge[self.rows[:, None], self.columns]
        self._scores = {s: v[complete] for s, v in scores.items()}
        self._final = final[complete]
        self._cost = run_costs(a, dict(self.costs or {}))

    @property
    def num_steps(self) -> int:
        """T."""
        return self.arrays.num_steps

    @property
    def prompts(self) -> int:
        """Prompts replayed."""
        return len(self.rows)

    def scored_steps(self, scorer: str) -> list[int]:
        """Steps at which the run scored ``scorer``."""
        return np.flatnonzero(~np.isnan(self._scores[scorer]).all(axis=(0, 1))).tolist()

    def spent(self, scorer: str, plan: SearchPlan) -> float:
        """What ``plan`` spends with ``scorer`` pruning, in full trajectories."""
        c = self._cost.get(scorer, 0.0)
        final = self._cost.get(self.final_scorer, 0.0)
        return plan.spent(self.num_steps, c, final, reads_x0(self.arrays.info, scorer))

    def picks(self, scorer: str, plan: SearchPlan) -> np.ndarray:
        """Position (among the prompt's first ``n`` seeds) of the pick of every prompt: what a live run picks."""
        if plan.n > self.max_n:
            raise InputError(f"plan: starts {plan.n} candidates, the space has {self.max_n} per prompt")
        if scorer not in self._scores:
            raise InputError(f"scorer: {scorer!r} is not a pruning scorer of this space {list(self.scorers or ())}")
        final = self._final[:, : plan.n] if plan.cascade else None
        return _simulate(self._scores[scorer][:, : plan.n], plan.decisions, final)

    def pick_seeds(self, scorer: str, plan: SearchPlan) -> np.ndarray:
        """Seed of the pick of every prompt."""
        picks = self.picks(scorer, plan)
        return np.asarray(self.arrays.seeds)[self.columns[np.arange(self.prompts), picks]]

    def values(self, scorer: str, plan: SearchPlan) -> np.ndarray:
        """Judge score of the pick for every prompt: what a live run of the plan on its first ``n`` seeds picks."""
        key = (scorer, plan)
        if key not in self._values:
            self._values[key] = self.judge[np.arange(self.prompts), self.picks(scorer, plan)]
        return self._values[key]

    def best_of(self, b: int) -> np.ndarray:
        """Judge score of full-cost Best-of-``b`` (the final scorer picks among the first ``b`` seeds)."""
        if not 1 <= b <= self.max_n:
            raise InputError(f"b: expected 1..{self.max_n} candidates, got {b}")
        return self.judge[np.arange(self.prompts), np.argmax(self._final[:, :b], axis=1)]

    def best_of_spent(self, b: int) -> float:
        """What full-cost Best-of-``b`` spends: ``b`` trajectories plus ``b`` final scorings (one when ``b = 1``)."""
        return b + (b if b > 1 else 0) * self._cost.get(self.final_scorer, 0.0) / self.num_steps

    def oracle(self, n: int) -> np.ndarray:
        """The best judge score among the first ``n`` seeds (the ceiling of any pick among them)."""
        return self.judge[:, :n].max(axis=1)

    def candidates(
        self,
        budget: float,
        scorers: Sequence[str] | None = None,
        families: Sequence[str] | None = None,
        plans: Sequence[SearchPlan] | None = None,
    ) -> list[tuple[str, SearchPlan, float]]:
        """``(scorer, plan, spent)`` of every plan that fits ``budget`` and starts at least ``budget`` candidates.

        Args:
            budget: full trajectories.
            scorers: the pruning scorers (default: the space's).
            families: restrict to these :data:`FAMILIES`.
            plans: the plans to consider (default: :func:`search_plans` for N from ``ceil(budget)`` to ``max_n``).
        """
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget < math.inf:
            raise InputError(f"budget: expected a number of full trajectories > 0, got {budget!r}")
        unknown = sorted(set(families or ()) - set(FAMILIES))
        if unknown:
            raise InputError(f"families: expected some of {list(FAMILIES)}, got {unknown}")
        names = list(scorers) if scorers is not None else list(self.scorers or ())
        out = []
        for scorer in names:
            if scorer not in self._scores:
                raise InputError(f"scorers: {scorer!r} is not a pruning scorer of this space {list(self.scorers)}")
            pool = self._plans(scorer) if plans is None else [(p, self.spent(scorer, p)) for p in plans]
            for plan, spent in pool:
                if plan.n < budget - 1e-9 or spent > budget + 1e-9 or (families and plan.family not in families):
                    continue
                out.append((scorer, plan, spent))
        return out

    def _plans(self, scorer: str) -> list[tuple[SearchPlan, float]]:
        """Every plan of :func:`search_plans` up to ``max_n`` candidates at the steps the scorer scored, with what it
        spends (computed once per scorer)."""
        if scorer not in self._costed:
            plans = search_plans(self.num_steps, range(2, self.max_n + 1), steps=self.scored_steps(scorer))
            self._costed[scorer] = [(p, self.spent(scorer, p)) for p in plans]
        return self._costed[scorer]


def _matrix(space: SearchSpace, found: list[tuple[str, SearchPlan, float]]) -> tuple[np.ndarray, np.ndarray]:
    values = np.stack([space.values(scorer, plan) for scorer, plan, _ in found])
    return values, np.asarray([spent for *_, spent in found])


def fit_search(
    space: SearchSpace,
    budget: float,
    scorers: Sequence[str] | None = None,
    families: Sequence[str] | None = None,
    prompts: Sequence[int] | None = None,
    plans: Sequence[SearchPlan] | None = None,
) -> SearchFit:
    """The scorer and plan with the best mean judge score of the pick among those that fit ``budget``.

    Chosen and scored on the same prompts, it is an optimistic upper bound; :func:`crossfit_search` is what to
    expect on new prompts.

    Args:
        space: the recorded candidates.
        budget: full trajectories.
        scorers: the pruning scorers to choose from (default: the space's).
        families: restrict to these :data:`FAMILIES`.
        prompts: choose on these prompts (positions in the space; default all).
        plans: the plans to consider (default: :meth:`SearchSpace.candidates`'s).

    Raises:
        InputError: when no plan fits the budget.
    """
    found = space.candidates(budget, scorers, families, plans)
    if not found:
        raise InputError(f"budget: no plan of {families or list(FAMILIES)} fits {budget:g} full trajectories")
    cols = np.arange(space.prompts) if prompts is None else np.asarray(list(prompts), dtype=np.int64)
    values, spent = _matrix(space, found)
    i = _best(values[:, cols].mean(axis=1), spent)
    scorer, plan, cost = found[i]
    return SearchFit(scorer, plan, float(budget), float(cost), float(values[i, cols].mean()), len(cols))


def crossfit_search(
    space: SearchSpace,
    budget: float,
    scorers: Sequence[str] | None = None,
    families: Sequence[str] | None = None,
    folds: int = 2,
    repeats: int = 20,
    seed: int = 0,
    plans: Sequence[SearchPlan] | None = None,
) -> CrossFit:
    """Judge score of the pick of the plan :func:`fit_search` chooses on other prompts, per prompt.

    The prompts are split at random into ``folds``; each fold's picks come from the scorer and plan chosen on the
    other folds; repeated over ``repeats`` splits and averaged (as :func:`~.fitting.crossfit_halving`). ``choices``
    counts ``(scorer, plan label)``.

    Raises:
        InputError: when no plan fits the budget, or for bad ``folds`` / ``repeats``.
    """
    found = space.candidates(budget, scorers, families, plans)
    if not found:
        raise InputError(f"budget: no plan of {families or list(FAMILIES)} fits {budget:g} full trajectories")
    values, spent = _matrix(space, found)
    splits = crossfit_splits(space.prompts, folds, repeats, seed)
    weights = np.zeros((space.prompts, len(splits)))
    for j, (train, _) in enumerate(splits):
        weights[train, j] = 1.0 / len(train)
    means = values @ weights  # every fold's training mean of every candidate in one product
    best = iter([_best(means[:, j], spent) for j in range(len(splits))])

    def fold_fit(train: np.ndarray, test: np.ndarray) -> tuple[tuple, np.ndarray, np.ndarray]:
        i = next(best)  # chosen on ``train``: the folds come in the order of the splits
        scorer, plan, _ = found[i]
        return (scorer, plan.label), values[i, test], np.full(len(test), spent[i])

    rows = np.arange(space.prompts)
    return _crossfit(space.prompts, rows, folds, repeats, seed, fold_fit)


def most_chosen(fit: CrossFit) -> dict[str, Any]:
    """The most chosen ``(scorer, plan)`` of a cross-fit and its share of the folds."""
    (scorer, label), count = next(iter(fit.choices.items()))
    return {"scorer": scorer, "plan": label, "share": count / sum(fit.choices.values())}


#: The columns of a row of :func:`search_curves`.
SEARCH_COLUMNS = (
    "budget",
    "row",
    "scorer",
    "family",
    "n",
    "plan",
    "share",
    "spent",
    "judge_score",
    "vs_best_of_b",
    "vs_best_of_b_low",
    "vs_best_of_b_high",
    "ratio_to_reference",
    "ratio_low",
    "ratio_high",
    "prompts",
)


def search_curves(
    space: SearchSpace,
    budgets: Sequence[float] = BUDGETS,
    reference_n: int = 6,
    folds: int = 2,
    repeats: int = 20,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Judge score against budget: full-cost Best-of-B, cross-fitted pruned searches, and the oracle's ceilings.

    For every budget ``B`` (rows with :data:`SEARCH_COLUMNS`; ``row`` says which):

    * ``best-of-b``: full-cost Best-of-B picked by the final scorer (integer ``B`` only), the reference of the row's
      ``vs_best_of_b``;
    * ``search``: :func:`crossfit_search` over every pruning scorer and family (``scorer`` and ``family`` ``"*"``),
      over the families of one scorer (``family`` ``"*"``), and over the scorers of one family (``scorer`` ``"*"``);
      ``plan`` is the most chosen one, ``share`` how often it was;
    * ``oracle``: the best judge score among ``B`` candidates (the ceiling of any pick among them), and one row at
      ``budget = max_n``: the best among all the space's candidates.

    ``vs_best_of_b`` is the difference to Best-of-B's judge score, ``ratio_to_reference`` the ratio to full-cost
    Best-of-``reference_n``'s, each with a 95% paired bootstrap interval over prompts. A search no plan of which fits
    the budget is left out.

    Raises:
        InputError: for a ``reference_n`` above the space's ``max_n``.
    """
    from noisyclip_metrics.evaluation.stats import paired_means

    reference = space.best_of(reference_n)
    out: list[dict[str, Any]] = []

    def row(budget: float, kind: str, values: np.ndarray, spent: float, **extra: Any) -> None:
        b = round(budget)
        against = space.best_of(b) if abs(budget - b) < 1e-9 and 1 <= b <= space.max_n else None
        diff = (math.nan,) * 3 if against is None else paired_means(values, against, difference=True, seed=seed)
        ratio = paired_means(values, reference, seed=seed)
        fields = {"scorer": None, "family": None, "n": None, "plan": None, "share": None, **extra}
        out.append(
            {
                "budget": float(budget),
                "row": kind,
                **fields,
                "spent": float(spent),
                "judge_score": float(np.nanmean(values)),
                "vs_best_of_b": diff[0],
                "vs_best_of_b_low": diff[1],
                "vs_best_of_b_high": diff[2],
                "ratio_to_reference": ratio[0],
                "ratio_low": ratio[1],
                "ratio_high": ratio[2],
                "prompts": int(np.isfinite(values).sum()),
            }
        )

    groups = [("*", None), *((s, None) for s in space.scorers or ()), *(("*", (f,)) for f in FAMILIES)]
    for budget in budgets:
        b = round(budget)
        if abs(budget - b) < 1e-9 and 1 <= b <= space.max_n:
            row(budget, "best-of-b", space.best_of(b), space.best_of_spent(b), scorer=space.final_scorer, n=b)
        for scorer, families in groups:
            try:
                fit = crossfit_search(
                    space, budget, None if scorer == "*" else [scorer], families, folds, repeats, seed
                )
            except InputError:
                continue  # nothing fits this budget
            top = most_chosen(fit)
            n = int(top["plan"].split("→")[0])
            row(
                budget,
                "search",
                fit.values,
                fit.cost_fraction,
                scorer=scorer,
                family=families[0] if families else "*",
                n=n,
                plan=f"{top['scorer']}: {top['plan']}" if scorer == "*" else top["plan"],
                share=top["share"],
            )
        if abs(budget - b) < 1e-9 and 1 <= b <= space.max_n:
            row(budget, "oracle", space.oracle(b), b, n=b)
    if not any(r["row"] == "oracle" and r["n"] == space.max_n for r in out):
        row(space.max_n, "oracle", space.oracle(space.max_n), space.max_n, n=space.max_n)
    return out


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def search_document(
    results: Any,
    run_id: str,
    budgets: Sequence[float] = BUDGETS,
    max_n: int | None = None,
    scorers: Sequence[str] | None = None,
    reference_n: int = 6,
    repeats: int = 20,
    costs: Mapping[str, float] | None = None,
    write: bool = True,
) -> dict[str, Any]:
    """The reward-versus-budget curves of one run of a results store (:func:`search_curves`), with their provenance,
    written atomically to ``<results>/search/<run_id>.json`` (the leaderboard's ``search`` section reads it).

    Args:
        results: a results folder or an open :class:`~noisyclip_metrics.evaluation.results.ResultsStore`.
        run_id: the run.
        budgets: full trajectories.
        max_n: candidates a search may start per prompt (default: the most judged seeds every prompt has).
        scorers: the pruning scorers (default: every scorer the run recorded before the last step).
        reference_n: the ratios' reference, full-cost Best-of-``reference_n``.
        repeats: random halvings of the prompts to cross-fit.
        costs: scorer costs per scoring in denoiser-call equivalents, overriding the run's timing.
        write: write the file.

    Raises:
        InputError: for a run without ``max_n`` judged seeds per prompt, or any argument :class:`SearchSpace`,
            :func:`search_curves` refuse.
    """
    from noisyclip_metrics.bon.offline import load_run
    from noisyclip_metrics.evaluation.results import ResultsStore
    from noisyclip_metrics.io.files import write_json
    from noisyclip_metrics.leaderboard.build import SEARCH_SCHEMA, SEARCH_SCHEMA_VERSION

    store = results if isinstance(results, ResultsStore) else ResultsStore.open(results)
    arrays = load_run(store, run_id)
    judged = (~np.isnan(arrays.judge)).sum(axis=1)
    if max_n is None:
        max_n = int(judged.min()) if len(judged) else 0
    if isinstance(max_n, bool) or not isinstance(max_n, int) or max_n < 2 or max_n < reference_n:
        raise InputError(f"max_n: expected at least 2 and reference_n = {reference_n} candidates, got {max_n!r}")
    space = SearchSpace(arrays, max_n=max_n, scorers=scorers, costs=costs)
    rows = search_curves(space, budgets, reference_n=reference_n, repeats=repeats)
    info = arrays.info
    doc = {
        "schema": SEARCH_SCHEMA,
        "schema_version": SEARCH_SCHEMA_VERSION,
        "run_id": info.run_id,
        "model": info.model,
        "benchmark": info.benchmark,
        "judge": arrays.judge_name,
        "git_revision": info.git_revision,
        "num_steps": space.num_steps,
        "seeds": [int(s) for s in arrays.seeds[:max_n]],
        "max_n": max_n,
        "reference_n": reference_n,
        "prompts": space.prompts,
        "scorers": list(space.scorers or ()),
        "scorer_costs": {k: round(float(v), 6) for k, v in space._cost.items()},
        "settings": {"budgets": [float(b) for b in budgets], "folds": 2, "repeats": repeats, "seed": 0},
        "rows": rows,
    }
    doc["rows"] = [
        {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.items()} for r in rows
    ]
    if write:
        write_json(store.root / "search" / f"{info.run_id}.json", doc)
    return doc
