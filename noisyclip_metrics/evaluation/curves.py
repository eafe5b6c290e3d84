"""Timestep-versus-accuracy curves: how well each scorer, at step k, predicts the final judgment.

Terms: a **group** is a prompt, its **candidates** are the seeds (one image each). Step k is the number of denoising
steps completed (k = 0 is pure noise, k = T the final latent); the **fraction** is k / T. The gold value of a
candidate is the judge's score of its final image. Every statistic is computed per model (one results run, or
several compatible ones) and per scorer at every step where the scorer has scores (``clip-final`` only at k = T):

- **pairwise accuracy** (the primary curve): over pairs of candidates of the same prompt whose judge scores differ,
  the share the step-k score orders the same way (score ties count 1/2), pooled over all prompts of the model (every
  pair weighs the same). NaN when there is no such pair. Chance level 0.5.
- **top-1 agreement**: the share of prompts (whose judge scores are not all equal) where the step-k argmax among the
  seeds is one of the judge's argmax seeds (ties in the step-k score count fractionally, as random tie-breaking
  would). Chance level: the same statistic for a constant scorer, ``mean(#judge-best / #seeds)``.
- **Spearman**: the within-prompt Spearman correlation of the step-k scores with the judge scores, averaged over
  prompts where it is defined (NaN-safe). Chance level 0.
- **Confidence intervals**: percentile bootstrap (default 95%, 1,000 resamples, seeded) resampling prompts with
  replacement; all statistics of one model (every scorer, step and metric, the judge score) share the resamples
  (:func:`noisyclip_metrics.evaluation.stats.bootstrap_ratio`).
- **Per skill**: the same curves restricted to the prompts tagged with the skill.
- **Earliest fraction** (``first_within``, "within 10%"): the first fraction at which the scorer's accuracy has
  reached 90% of its **improvement over chance** at its final step, ``acc(k) - c >= 0.9 (acc(T) - c)``; ``None``
  when the final step is not above chance. (For pairwise accuracy 0.8 at T this threshold is 0.77, where a plain
  ``0.9 acc(T)`` = 0.72 would be reached by scorers that have recovered barely two thirds of their signal.)

Everything here is pure numpy on arrays pivoted from a results store's rows (:func:`pivot_rows`); no pandas.

Examples:
    >>> import numpy as np
    >>> judge = np.array([[0.1, 0.9, 0.5], [0.7, 0.2, 0.4]])
    >>> data = ScoreArrays(("p0", "p1"), (0, 1, 2), 2, judge, np.full_like(judge, np.nan),
    ...                    {"good": np.stack([np.zeros_like(judge), judge / 2, judge])})
    >>> curve = compute_curves(data, CurveConfig(n_resamples=20)).overall.curves["good"]
    >>> curve.value["pairwise_accuracy"].tolist()
    [0.5, 1.0, 1.0]
    >>> first_within(curve)
    0.5
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from noisyclip_metrics.errors import InputError, SchemaError
from noisyclip_metrics.evaluation.stats import (
    Estimate,
    bootstrap_ratio,
    pairwise_counts,
    spearman_rows,
    top1_agreement_rows,
)
from noisyclip_metrics.registry import Registry

__all__ = [
    "METRICS",
    "Curve",
    "CurveConfig",
    "CurveSet",
    "ModelCurves",
    "ScoreArrays",
    "compute_curves",
    "first_within",
    "pivot_rows",
]

_PAIR_CELLS = 1 << 22
"""Candidate pairs materialised at once when counting pairs (steps are processed in chunks of this size)."""

Stat = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""Maps gold (P, S) and pred (K, P, S) to per-prompt (numerator, denominator) arrays of shape (K, P)."""

METRICS: Registry[Stat] = Registry("curve metric")
"""The curve statistics by name, in report order; each is a ratio of sums over prompts (see the module docs)."""


def _mean_of_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    defined = ~np.isnan(values)
    return np.where(defined, values, 0.0), defined.astype(np.float64)


@METRICS.register("pairwise_accuracy")
def _pairwise(gold: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    per_step = max(1, _PAIR_CELLS // max(1, gold.size * gold.shape[-1]))
    parts = [pairwise_counts(gold, pred[i : i + per_step]) for i in range(0, pred.shape[0], per_step)]
    return np.concatenate([c for c, _ in parts]), np.concatenate([n for _, n in parts])


METRICS.register("top1_agreement", lambda gold, pred: _mean_of_rows(top1_agreement_rows(gold, pred)))
METRICS.register("spearman", lambda gold, pred: _mean_of_rows(spearman_rows(gold, pred)))


def _top1_chance(gold: np.ndarray) -> float:
    rows = top1_agreement_rows(gold, np.zeros_like(gold))
    return float(np.nanmean(rows)) if np.isfinite(rows).any() else float("nan")


CHANCE: dict[str, Callable[[np.ndarray], float]] = {
    "pairwise_accuracy": lambda gold: 0.5,
    "top1_agreement": _top1_chance,
    "spearman": lambda gold: 0.0,
}
"""Chance level of each metric given the judge scores (a scorer that knows nothing)."""


@dataclass(frozen=True)
class CurveConfig:
    """How curves are estimated.

    Args:
        n_resamples: bootstrap resamples (of prompts).
        confidence_level: of the percentile intervals.
        seed: seed of the bootstrap.
        within: share of the final improvement over chance that :func:`first_within` asks for (0.9: "within 10%").
    """

    n_resamples: int = 1000
    confidence_level: float = 0.95
    seed: int = 0
    within: float = 0.9

    def __post_init__(self) -> None:
        if self.n_resamples < 2:
            raise InputError(f"n_resamples: expected >= 2, got {self.n_resamples}")
        if not 0 < self.confidence_level < 1:
            raise InputError(f"confidence_level: expected a number in (0, 1), got {self.confidence_level}")
        if not 0 < self.within <= 1:
            raise InputError(f"within: expected a number in (0, 1], got {self.within}")


@dataclass(frozen=True, eq=False)
class ScoreArrays:
    """Scores and judgments of one model on one benchmark, as dense arrays (NaN = missing).

    Attributes:
        prompt_ids: P prompt ids (rows).
        seeds: S seeds (columns: the candidates).
        num_steps: T.
        judge: (P, S) judge scores of the final images.
        aligned: (P, S) the judge's binary verdict as 1.0 / 0.0 (NaN when the judge gives none).
        scores: scorer name -> (T + 1, P, S) score at every step k = 0..T.
    """

    prompt_ids: tuple[str, ...]
    seeds: tuple[int, ...]
    num_steps: int
    judge: np.ndarray
    aligned: np.ndarray
    scores: dict[str, np.ndarray]


@dataclass(frozen=True, eq=False)
class Curve:
    """One scorer's curve: every metric at every step where the scorer has scores.

    Attributes:
        scorer: scorer name.
        steps: step indices k.
        fractions: k / T.
        value, low, high: metric name -> array over steps (estimate and bootstrap interval).
        pairs: usable candidate pairs (judge scores differ) per step.
        chance: metric name -> chance level (see :data:`CHANCE`).
    """

    scorer: str
    steps: np.ndarray
    fractions: np.ndarray
    value: dict[str, np.ndarray]
    low: dict[str, np.ndarray]
    high: dict[str, np.ndarray]
    pairs: np.ndarray
    chance: dict[str, float]

    def points(self) -> list[dict[str, Any]]:
        """One dict per step: ``step``, ``fraction``, each metric with ``_low`` / ``_high``, ``pairs``."""
        out = []
        for i, (k, f) in enumerate(zip(self.steps.tolist(), self.fractions.tolist(), strict=True)):
            point: dict[str, Any] = {"step": int(k), "fraction": float(f)}
            for m in self.value:
                point.update(
                    {m: float(self.value[m][i]), f"{m}_low": float(self.low[m][i]), f"{m}_high": float(self.high[m][i])}
                )
            point["pairs"] = int(self.pairs[i])
            out.append(point)
        return out

    def nearest(self, fraction: float) -> int:
        """Index of the step whose fraction is closest to ``fraction`` (the earlier one on a tie)."""
        return int(np.argmin(np.abs(self.fractions - fraction)))


@dataclass(frozen=True, eq=False)
class CurveSet:
    """Curves of every scorer over one set of prompts (all prompts of a model, or one skill's)."""

    prompts: int
    judge_score: Estimate
    aligned_rate: Estimate | None
    curves: dict[str, Curve] = field(default_factory=dict)
    mixed_rate: Estimate | None = None
    """Share of the prompts whose candidates are judged both aligned and misaligned: where choosing among seeds can
    matter (prompts with fewer than two aligned verdicts are left out)."""


@dataclass(frozen=True, eq=False)
class ModelCurves:
    """:attr:`overall` curves of a model and the same curves per skill."""

    overall: CurveSet
    by_skill: dict[str, CurveSet]


def _indices(column: Any, values: Sequence[Any], type_: pa.DataType, what: str) -> np.ndarray:
    found = pc.index_in(column, value_set=pa.array(list(values), type_))
    if found.null_count:
        bad = pc.filter(column, pc.is_null(found)).slice(0, 1).to_pylist()
        raise SchemaError(
            f"rows name a {what} outside the run's {what}s: {bad[0]!r} (expected one of "
            f"{list(values)[:5]}{'...' if len(values) > 5 else ''})"
        )
    return found.to_numpy(zero_copy_only=False).astype(np.int64)


def pivot_rows(
    rows: pa.Table,
    prompt_ids: Sequence[str],
    seeds: Sequence[int],
    num_steps: int,
    scorers: Sequence[str] | None = None,
) -> ScoreArrays:
    """Dense arrays from results rows (:data:`noisyclip_metrics.evaluation.results.ROW_SCHEMA`; other runs' rows
    excluded).

    Rows of several runs may cover the same candidates (merged, compatible runs: the last one's value is kept), but
    one run never has two rows with the same key: those are refused
    (:func:`~noisyclip_metrics.evaluation.results.check_unique_rows`, by ``run_id`` when the rows have that column).

    Args:
        rows: score and judgment rows.
        prompt_ids: the prompts (rows of the arrays).
        seeds: the seeds (columns).
        num_steps: T.
        scorers: scorer order (default: order of first appearance).

    Raises:
        SchemaError: rows of an unknown kind, prompt, seed or scorer, a step outside 0..T, or duplicate rows of a run.

    Examples:
        >>> from noisyclip_metrics.evaluation.results import ROW_SCHEMA
        >>> rows = pa.Table.from_pylist([
        ...     {"kind": "judgment", "prompt_id": "p0", "seed": 1, "score": 0.8},
        ...     {"kind": "score", "prompt_id": "p0", "seed": 1, "step": 2, "scorer": "clip", "score": 0.3}],
        ...     schema=ROW_SCHEMA)
        >>> data = pivot_rows(rows, ["p0"], [0, 1], num_steps=2)
        >>> data.judge.tolist(), data.scores["clip"][2].tolist()
        ([[nan, 0.8]], [[nan, 0.3]])
    """
    from noisyclip_metrics.evaluation.results import check_unique_rows

    check_unique_rows(rows, "rows")
    kinds = set(pc.unique(rows["kind"]).to_pylist())
    if not kinds <= {"score", "judgment"}:
        raise SchemaError(
            f"rows of unknown kind {sorted(k for k in kinds - {'score', 'judgment'} if k)!r}; "
            "expected 'score' or 'judgment'"
        )
    shape = (len(prompt_ids), len(seeds))
    score_rows = rows.filter(pc.equal(rows["kind"], "score"))
    judged = rows.filter(pc.equal(rows["kind"], "judgment"))
    names = list(scorers) if scorers is not None else list(pc.unique(score_rows["scorer"]).to_pylist())
    judge, aligned = np.full(shape, np.nan), np.full(shape, np.nan)
    p = _indices(judged["prompt_id"], prompt_ids, pa.string(), "prompt id")
    s = _indices(judged["seed"], seeds, pa.int64(), "seed")
    judge[p, s] = judged["score"].to_numpy(zero_copy_only=False)
    aligned[p, s] = pc.cast(judged["aligned"], pa.float64()).to_numpy(zero_copy_only=False)
    scores = {name: np.full((num_steps + 1, *shape), np.nan) for name in names}
    if score_rows.num_rows:
        sc = _indices(score_rows["scorer"], names, pa.string(), "scorer")
        p = _indices(score_rows["prompt_id"], prompt_ids, pa.string(), "prompt id")
        s = _indices(score_rows["seed"], seeds, pa.int64(), "seed")
        k = score_rows["step"].to_numpy(zero_copy_only=False)
        if np.isnan(k.astype(np.float64)).any() or k.min() < 0 or k.max() > num_steps:
            raise SchemaError(f"score rows have steps outside 0..{num_steps} (found {np.nanmin(k)}..{np.nanmax(k)})")
        k = k.astype(np.int64)
        values = score_rows["score"].to_numpy(zero_copy_only=False)
        stacked = np.stack([scores[n] for n in names]) if names else np.empty((0,))
        stacked[sc, k, p, s] = values
        scores = {n: stacked[i] for i, n in enumerate(names)}
    return ScoreArrays(tuple(prompt_ids), tuple(int(x) for x in seeds), int(num_steps), judge, aligned, scores)


@dataclass(frozen=True, eq=False)
class _PerPrompt:
    steps: np.ndarray
    num: dict[str, np.ndarray]  # metric -> (P, K)
    den: dict[str, np.ndarray]


def _per_prompt(data: ScoreArrays) -> dict[str, _PerPrompt]:
    out = {}
    for name, arr in data.scores.items():
        steps = np.flatnonzero(~np.isnan(arr).all(axis=(1, 2)))
        num, den = {}, {}
        for metric in METRICS:
            n, d = METRICS.get(metric)(data.judge, arr[steps])
            num[metric], den[metric] = n.T, d.T
        out[name] = _PerPrompt(steps, num, den)
    return out


def _curve_set(data: ScoreArrays, per: dict[str, _PerPrompt], rows: np.ndarray, config: CurveConfig) -> CurveSet:
    judge, aligned = data.judge[rows], data.aligned[rows]
    verdicts = (~np.isnan(aligned)).sum(axis=1)
    mixed = np.nanmax(aligned, axis=1, initial=-np.inf) > np.nanmin(aligned, axis=1, initial=np.inf)
    columns: list[tuple[np.ndarray, np.ndarray]] = [
        (np.nansum(judge, axis=1), (~np.isnan(judge)).sum(axis=1).astype(np.float64)),
        (np.nansum(aligned, axis=1), verdicts.astype(np.float64)),
        (mixed.astype(np.float64), (verdicts > 1).astype(np.float64)),
    ]
    layout: list[tuple[str, str, int]] = []
    for name, pp in per.items():
        for metric in METRICS:
            columns.append((pp.num[metric][rows], pp.den[metric][rows]))
            layout.append((name, metric, len(pp.steps)))
    num = np.concatenate([c[0].reshape(len(rows), -1) for c in columns], axis=1)
    den = np.concatenate([c[1].reshape(len(rows), -1) for c in columns], axis=1)
    value, low, high = bootstrap_ratio(
        num, den, n_resamples=config.n_resamples, confidence_level=config.confidence_level, seed=config.seed
    )
    level = config.confidence_level
    judge_est = Estimate(float(value[0]), float(low[0]), float(high[0]), level)
    aligned_est = Estimate(float(value[1]), float(low[1]), float(high[1]), level) if den[:, 1].any() else None
    mixed_est = Estimate(float(value[2]), float(low[2]), float(high[2]), level) if den[:, 2].any() else None
    chance = {m: CHANCE[m](judge) for m in METRICS}
    curves: dict[str, Curve] = {}
    at = 3
    for name, pp in per.items():
        v, lo, hi = {}, {}, {}
        for metric in METRICS:
            k = len(pp.steps)
            v[metric], lo[metric], hi[metric] = value[at : at + k], low[at : at + k], high[at : at + k]
            at += k
        pairs = pp.den["pairwise_accuracy"][rows].sum(axis=0)
        curves[name] = Curve(name, pp.steps, pp.steps / data.num_steps, v, lo, hi, pairs, chance)
    return CurveSet(len(rows), judge_est, aligned_est, curves, mixed_est)


def compute_curves(
    data: ScoreArrays, config: CurveConfig = CurveConfig(), skills: Sequence[Iterable[str]] | None = None
) -> ModelCurves:
    """Curves of every scorer of ``data`` (see the module docs), overall and per skill.

    Args:
        data: pivoted scores (:func:`pivot_rows`).
        config: bootstrap settings.
        skills: per prompt (row of ``data``), its skill tags; per-skill curves are computed for every tag.

    Returns:
        :class:`ModelCurves`; skills in sorted order.

    Raises:
        InputError: ``skills`` of the wrong length, or no prompts.

    Examples:
        >>> judge = np.array([[0.2, 0.9], [0.7, 0.1]])
        >>> data = ScoreArrays(("a", "b"), (0, 1), 1, judge, (judge > 0.5) * 1.0, {"s": np.stack([-judge, judge])})
        >>> mc = compute_curves(data, CurveConfig(n_resamples=10), skills=[["counting"], []])
        >>> mc.overall.curves["s"].value["pairwise_accuracy"].tolist(), list(mc.by_skill)
        ([0.0, 1.0], ['counting'])
    """
    n = len(data.prompt_ids)
    if n == 0:
        raise InputError("data: no prompts")
    if skills is not None and len(skills) != n:
        raise InputError(f"skills: expected one list per prompt ({n}), got {len(skills)}")
    per = _per_prompt(data)
    overall = _curve_set(data, per, np.arange(n), config)
    by_skill: dict[str, CurveSet] = {}
    if skills is not None:
        tags = [set(t) for t in skills]
        for skill in sorted(set().union(*tags)):
            rows = np.array([i for i, t in enumerate(tags) if skill in t], dtype=np.int64)
            by_skill[skill] = _curve_set(data, per, rows, config)
    return ModelCurves(overall, by_skill)


def first_within(curve: Curve, metric: str = "pairwise_accuracy", share: float = 0.9) -> float | None:
    """The first fraction where ``metric`` reaches ``share`` of its final-step improvement over chance.

    ``None`` when the final step is not above chance (or undefined).

    Examples:
        >>> c = Curve("s", np.arange(5), np.arange(5) / 4, {"pairwise_accuracy": np.array([.5, .6, .8, .9, .9])},
        ...           {}, {}, np.zeros(5), {"pairwise_accuracy": 0.5})
        >>> first_within(c)  # threshold 0.5 + 0.9 * 0.4 = 0.86
        0.75
    """
    values = curve.value[metric]
    chance = curve.chance.get(metric, float("nan"))
    if not len(values) or not np.isfinite(values[-1]) or not np.isfinite(chance) or values[-1] <= chance:
        return None
    threshold = chance + share * (values[-1] - chance)
    hits = np.flatnonzero(values >= threshold - 1e-12)
    return float(curve.fractions[hits[0]])
