"""Bootstrap confidence intervals (``scipy.stats.bootstrap``) and a one-call agreement summary.

The resampling unit is the **group** for 2-D input (rows, e.g. prompts: items of one prompt stay together) and the
item for 1-D input. Every statistic is recomputed on each resample, including the tie threshold of the calibrated
pairwise accuracy. Resamples where a statistic is undefined (e.g. all-constant) give NaN and, with the default
percentile method, a NaN interval: report it rather than hide it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.evaluation.stats._inputs import as_score_matrix
from noisyclip_metrics.evaluation.stats.correlation import kendall_tau_b, kendall_tau_c, pearson, spearman
from noisyclip_metrics.evaluation.stats.pairwise import pairwise_accuracy

__all__ = ["STATISTICS", "Agreement", "Estimate", "agreement", "bootstrap_ci"]


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a bootstrap confidence interval.

    Examples:
        >>> str(Estimate(0.71234, 0.69, 0.73, 0.95))
        '0.712 [0.690, 0.730]'
    """

    value: float
    low: float
    high: float
    confidence_level: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


STATISTICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "pearson": pearson,
    "spearman": spearman,
    "kendall_tau_b": kendall_tau_b,
    "kendall_tau_c": kendall_tau_c,
    "pairwise_accuracy": lambda g, p: pairwise_accuracy(g, p)[0],
}
"""The statistics of :func:`agreement`, by name: each maps (gold, pred) to a float."""


def bootstrap_ci(
    statistic: Callable[[np.ndarray, np.ndarray], float | Sequence[float]],
    gold: Any,
    pred: Any,
    *,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    method: str = "percentile",
    seed: int = 0,
) -> tuple[Estimate, ...]:
    """Bootstrap one or several statistics of (gold, pred), resampling groups (2-D) or items (1-D).

    Args:
        statistic: maps (gold, pred) arrays (same layout as the inputs) to a float or a sequence of floats.
        gold: gold scores, 1-D or 2-D with rows = groups (NaN = missing).
        pred: metric scores of the same shape.
        n_resamples: bootstrap resamples.
        confidence_level: e.g. 0.95.
        method: ``"percentile"`` (default, cheap), ``"basic"`` or ``"BCa"`` (needs one jackknife pass: n extra calls).
        seed: seed of the resampling generator (results are reproducible).

    Returns:
        One :class:`Estimate` per output of ``statistic`` (the value is the statistic on the full data).

    Raises:
        InputError: invalid inputs (see :mod:`noisyclip_metrics.evaluation.stats`), ``n_resamples < 2`` or fewer
            than 2 units.

    Examples:
        >>> est, = bootstrap_ci(pearson, [1, 2, 3, 4, 5, 6], [1.1, 1.9, 3.2, 3.9, 5.3, 5.8], n_resamples=50)
        >>> round(est.value, 3), est.low <= est.value <= est.high
        (0.994, True)
    """
    m = as_score_matrix(gold, pred)
    g, p = (m.gold[0], m.pred[0]) if m.one_d else (m.gold, m.pred)
    n_units = g.shape[0]
    if n_resamples < 2 or n_units < 2:
        raise InputError(f"bootstrap needs n_resamples >= 2 and at least 2 units; got {n_resamples} and {n_units}")

    def on_units(index: np.ndarray) -> np.ndarray:
        return np.atleast_1d(np.asarray(statistic(g[index], p[index]), dtype=np.float64))

    full = on_units(np.arange(n_units))
    with np.errstate(invalid="ignore"):
        res = scipy.stats.bootstrap(
            (np.arange(n_units),),
            on_units,
            vectorized=False,
            n_resamples=n_resamples,
            confidence_level=confidence_level,
            method=method,
            rng=np.random.default_rng(seed),
        )
    low = np.atleast_1d(res.confidence_interval.low)
    high = np.atleast_1d(res.confidence_interval.high)
    return tuple(
        Estimate(float(v), float(lo), float(hi), confidence_level) for v, lo, hi in zip(full, low, high, strict=True)
    )


@dataclass(frozen=True)
class Agreement:
    """All agreement statistics of :func:`agreement`, each with its bootstrap interval.

    Attributes:
        pearson, spearman, kendall_tau_b, kendall_tau_c, pairwise_accuracy: estimates (see the module docs of
            :mod:`noisyclip_metrics.evaluation.stats` for their definitions).
        epsilon: the tie threshold found by calibration on the full data.
        n_items: usable (gold, pred) items.
        n_groups: rows with at least two usable items (1 for 1-D input).
    """

    pearson: Estimate
    spearman: Estimate
    kendall_tau_b: Estimate
    kendall_tau_c: Estimate
    pairwise_accuracy: Estimate
    epsilon: float
    n_items: int
    n_groups: int

    def as_dict(self) -> dict[str, Any]:
        """Flat dictionary (``pearson``, ``pearson_low``, ``pearson_high``, ..., ``epsilon``, counts)."""
        out: dict[str, Any] = {}
        for name in STATISTICS:
            est: Estimate = getattr(self, name)
            out.update({name: est.value, f"{name}_low": est.low, f"{name}_high": est.high})
        out.update(epsilon=self.epsilon, n_items=self.n_items, n_groups=self.n_groups)
        return out


def agreement(
    gold: Any,
    pred: Any,
    *,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    method: str = "percentile",
    seed: int = 0,
) -> Agreement:
    """Pearson, Spearman, Kendall tau_b / tau_c and tie-calibrated pairwise accuracy, with bootstrap intervals.

    One bootstrap draws the same resamples for all five statistics.

    Examples:
        >>> a = agreement([1, 2, 2, 3, 4, 5], [0.1, 0.3, 0.2, 0.5, 0.4, 0.9], n_resamples=30)
        >>> round(a.pairwise_accuracy.value, 3), a.n_items
        (0.933, 6)
    """
    m = as_score_matrix(gold, pred)
    names = list(STATISTICS)

    def all_stats(g: np.ndarray, p: np.ndarray) -> list[float]:
        try:
            return [STATISTICS[name](g, p) for name in names]
        except InputError:  # a resample without any usable pair
            return [float("nan")] * len(names)

    estimates = bootstrap_ci(
        all_stats, gold, pred, n_resamples=n_resamples, confidence_level=confidence_level, method=method, seed=seed
    )
    return Agreement(
        **dict(zip(names, estimates, strict=True)),
        epsilon=pairwise_accuracy(gold, pred).epsilon,
        n_items=int(m.valid.sum()),
        n_groups=int((m.counts >= 2).sum()),
    )
