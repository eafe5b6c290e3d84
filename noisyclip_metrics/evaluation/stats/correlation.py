"""Correlation statistics: Pearson, Spearman, Kendall tau_b and tau_c.

Conventions (see :mod:`noisyclip_metrics.evaluation.stats._inputs` for input handling):

- 1-D input: one statistic over the usable items (NaN in gold or pred drops the item).
- 2-D input (rows = groups such as prompts): the statistic is computed **per row, then averaged over the rows where
  it is defined** (``nanmean``). This is t2v-metrics' convention for ``tau_b`` / ``tau_c`` on grouped scores
  (``calc_metric``); we apply it to Pearson and Spearman too. For pooled ("no grouping") statistics pass flattened
  arrays, e.g. ``pearson(gold.ravel(), pred.ravel())``.
- Constant input: a correlation of a constant vector is undefined, so such a row yields NaN and is skipped by the
  average; if no row is defined the result is NaN (scipy's behaviour, without the warning). Inputs where no row has
  two usable items raise :class:`~noisyclip_metrics.errors.InputError`.
- Values are plain correlations in [-1, 1] (t2v-metrics prints Pearson x 100).
- Kendall's tau_b and tau_c match ``scipy.stats.kendalltau(variant="b" | "c")`` (tau_c is Stuart's tau_c,
  ``2 (C - D) / (n^2 (m - 1) / m)`` with ``m = min(#distinct gold, #distinct pred)``).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.stats

from noisyclip_metrics.evaluation.stats._inputs import ScoreMatrix, as_score_matrix

__all__ = ["kendall_tau_b", "kendall_tau_c", "pearson", "spearman"]

_VECTORISED_MAX_ITEMS = 64
"""Rows up to this many items get vectorised pair counting for Kendall; longer rows use scipy's O(n log n)."""


def _rowwise_pearson(g: np.ndarray, p: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Pearson r per row over the valid entries (NaN where undefined)."""
    n = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # shift each row by one of its own values first: differences of nearby floats are exact (Sterbenz), so a row
        # that varies only in its last bits still has centred deviations that sum to zero
        g = g - np.nan_to_num(np.nanmin(np.where(valid, g, np.nan), axis=1))[:, None]
        p = p - np.nan_to_num(np.nanmin(np.where(valid, p, np.nan), axis=1))[:, None]
        gm = np.where(valid, g, 0.0).sum(axis=1) / n
        pm = np.where(valid, p, 0.0).sum(axis=1) / n
        dg = np.where(valid, g - gm[:, None], 0.0)
        dp = np.where(valid, p - pm[:, None], 0.0)
        sgg, spp = (dg * dg).sum(axis=1), (dp * dp).sum(axis=1)
        r = (dg * dp).sum(axis=1) / np.sqrt(sgg * spp)
    # exact constancy test (as scipy): rounding in the mean must not turn a constant row into r ~ 1e-17
    defined = (n >= 2) & (_distinct_per_row(np.where(valid, g, np.nan)) > 1)
    defined &= _distinct_per_row(np.where(valid, p, np.nan)) > 1
    return np.where(defined, np.clip(r, -1.0, 1.0), np.nan)


def _mean_defined(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def pearson(gold: Any, pred: Any) -> float:
    """Pearson correlation of ``pred`` with ``gold`` (per row then averaged for 2-D input).

    Examples:
        >>> round(pearson([1, 2, 3, 4], [1.0, 2.5, 2.9, 4.2]), 4)
        0.9796
        >>> pearson([[1, 2, 3], [1, 1, 1]], [[3, 2, 1], [1, 2, 3]])  # second row constant gold: skipped
        -1.0
    """
    m = as_score_matrix(gold, pred)
    return _mean_defined(_rowwise_pearson(m.gold, m.pred, m.valid))


def spearman(gold: Any, pred: Any) -> float:
    """Spearman rank correlation (Pearson of average ranks; ties get mid-ranks), per row then averaged.

    Examples:
        >>> spearman([1, 2, 3, 4], [10, 20, 30, 25])
        0.8
    """
    m = as_score_matrix(gold, pred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rg = scipy.stats.rankdata(m.gold, axis=1, nan_policy="omit")
        rp = scipy.stats.rankdata(m.pred, axis=1, nan_policy="omit")
    return _mean_defined(_rowwise_pearson(rg, rp, m.valid))


def _kendall_counts(m: ScoreMatrix, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """Vectorised (concordant - discordant, pairs, gold ties, pred ties, n, distinct gold, distinct pred) per row."""
    g, p, valid = m.gold[rows], m.pred[rows], m.valid[rows]
    iu, ju = np.triu_indices(g.shape[1], k=1)
    ok = valid[:, iu] & valid[:, ju]
    sg = np.sign(g[:, ju] - g[:, iu])
    sp = np.sign(p[:, ju] - p[:, iu])
    s = np.where(ok, sg * sp, 0.0).sum(axis=1)
    pairs = ok.sum(axis=1)
    ties_g = (ok & (sg == 0)).sum(axis=1)
    ties_p = (ok & (sp == 0)).sum(axis=1)
    n = valid.sum(axis=1)
    distinct_g = _distinct_per_row(g)
    distinct_p = _distinct_per_row(p)
    return s, pairs, ties_g, ties_p, n, distinct_g, distinct_p


def _distinct_per_row(x: np.ndarray) -> np.ndarray:
    s = np.sort(x, axis=1)  # NaN sorts last
    change = (s[:, 1:] != s[:, :-1]) & ~np.isnan(s[:, 1:])
    return np.where(np.isnan(s[:, 0]), 0, 1 + change.sum(axis=1))


def _kendall(gold: Any, pred: Any, variant: str) -> float:
    m = as_score_matrix(gold, pred)
    counts = m.counts
    rows = np.flatnonzero(counts >= 2)
    values = np.full(m.gold.shape[0], np.nan)
    small = rows[counts[rows] <= _VECTORISED_MAX_ITEMS] if m.gold.shape[0] > 1 else rows[:0]
    if small.size:
        s, pairs, ties_g, ties_p, n, dg, dp = _kendall_counts(m, small)
        with np.errstate(invalid="ignore", divide="ignore"):
            if variant == "b":
                tau = s / np.sqrt((pairs - ties_g) * (pairs - ties_p))
                defined = (pairs > ties_g) & (pairs > ties_p)
            else:
                mins = np.minimum(dg, dp)
                tau = 2.0 * s / (n.astype(float) ** 2 * (mins - 1) / mins)
                defined = mins > 1
        values[small] = np.where(defined, np.clip(tau, -1.0, 1.0), np.nan)
    for r in np.setdiff1d(rows, small):
        ok = m.valid[r]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values[r] = scipy.stats.kendalltau(m.gold[r, ok], m.pred[r, ok], variant=variant).statistic
    return _mean_defined(values)


def kendall_tau_b(gold: Any, pred: Any) -> float:
    """Kendall's tau_b (tie-adjusted), per row then averaged (t2v-metrics ``calc_metric(variant="tau_b")``).

    Examples:
        >>> round(kendall_tau_b([1, 2, 2, 3], [1, 2, 3, 4]), 6)
        0.912871
    """
    return _kendall(gold, pred, "b")


def kendall_tau_c(gold: Any, pred: Any) -> float:
    """Stuart's tau_c, per row then averaged (t2v-metrics ``calc_metric(variant="tau_c")``).

    Examples:
        >>> kendall_tau_c([1, 1, 2, 2], [1, 2, 3, 4])
        1.0
    """
    return _kendall(gold, pred, "c")
