"""Agreement of a scorer with a judge among the candidates of one group, vectorised over groups.

Layout: ``gold`` is a ``(R, M)`` matrix (rows = groups such as prompts, columns = candidates such as seeds; NaN =
missing) and ``pred`` is ``(..., R, M)``: the leading axes (e.g. denoising steps) are broadcast, so one call scores
every step. A candidate is used only where both its gold and its pred score are present.

- :func:`pairwise_counts` -- per group, over pairs of candidates whose gold scores differ: the pairs ``pred`` orders
  the same way (pred ties count 1/2) and the number of such pairs. :func:`within_group_pairwise_accuracy` pools them
  over groups (every pair weighs the same; NaN when no group has such a pair). Unlike :func:`pairwise_accuracy`
  there is no tie calibration and gold-tied pairs are left out: this is the ranking question of Best-of-N.
- :func:`top1_agreement_rows` -- per group (whose gold scores are not all equal): the share of ``pred``'s argmax
  candidates that are among gold's argmax candidates (1 or 0 without pred ties; ties are broken at random in
  expectation, so a constant scorer gets ``#gold best / #candidates``). NaN for other groups.
- :func:`spearman_rows` -- per group Spearman (mid-ranks), NaN where undefined (a constant row).
- :func:`bootstrap_ratio` -- percentile bootstrap of ratio-of-sums statistics ``sum(num) / sum(den)`` over
  resampled groups, for many statistics at once with the same resamples. A pooled pairwise accuracy is
  ``(correct, pairs)``; a mean of per-group values is ``(nan_to_num(values), defined)``. :func:`ratio_difference`
  is the paired difference of two such statistics (two models on the same prompts).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.stats

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.evaluation.stats._inputs import _to_float_array
from noisyclip_metrics.evaluation.stats.correlation import _rowwise_pearson

__all__ = [
    "bootstrap_ratio",
    "group_matrix",
    "paired_means",
    "pairwise_counts",
    "ratio_difference",
    "spearman_rows",
    "top1_agreement_rows",
    "within_group_pairwise_accuracy",
]

_BOOTSTRAP_CELLS = 1 << 23
"""Resample weights materialised at once (resamples x groups) by :func:`bootstrap_ratio`."""


def group_matrix(values: Any, groups: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
    """Pivot flat ``values`` labelled by ``groups`` into a ``(groups, max size)`` matrix padded with NaN.

    Examples:
        >>> m, keys = group_matrix([1.0, 2.0, 3.0], "aba")
        >>> m.tolist(), keys
        ([[1.0, 3.0], [2.0, nan]], ['a', 'b'])
    """
    flat = _to_float_array(values, "values")
    keys = list(groups)
    if flat.ndim != 1 or len(keys) != flat.shape[0]:
        raise InputError(f"groups: expected one label per value ({flat.shape[0]}), got {len(keys)}")
    order = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    rows = np.fromiter((order[k] for k in keys), dtype=np.int64, count=len(keys))
    counts = np.bincount(rows, minlength=len(order))
    sorted_rows = np.argsort(rows, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    cols = np.empty_like(rows)
    cols[sorted_rows] = np.arange(len(keys)) - np.repeat(starts, counts)
    out = np.full((len(order), int(counts.max()) if len(keys) else 0), np.nan)
    out[rows, cols] = flat
    return out, list(order)


def _pair(gold: Any, pred: Any) -> tuple[np.ndarray, np.ndarray]:
    g = gold if isinstance(gold, np.ndarray) and gold.dtype == np.float64 else _to_float_array(gold, "gold")
    p = np.asarray(pred.detach().cpu().numpy() if hasattr(pred, "detach") else pred, dtype=np.float64)
    if g.ndim != 2 or p.shape[-2:] != g.shape:
        raise InputError(
            f"gold must be (groups, candidates) and pred (..., groups, candidates); got {g.shape} and {p.shape}"
        )
    g = np.broadcast_to(g, p.shape)
    missing = np.isnan(g) | np.isnan(p)
    return np.where(missing, np.nan, g), np.where(missing, np.nan, p)


def pairwise_counts(gold: Any, pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per group: (pairs ordered like gold + 1/2 per pred tie, pairs whose gold scores differ).

    Args:
        gold: ``(R, M)`` gold scores (NaN = missing).
        pred: ``(..., R, M)`` predicted scores.

    Returns:
        Two float arrays of shape ``(..., R)``.

    Examples:
        >>> correct, pairs = pairwise_counts([[1, 0, 2], [1, 1, 1]], [[0.5, 0.5, 0.9], [0.1, 0.2, 0.3]])
        >>> correct.tolist(), pairs.tolist()
        ([2.5, 0.0], [3.0, 0.0])
    """
    g, p = _pair(gold, pred)
    with np.errstate(invalid="ignore"):
        dg = g[..., :, None] - g[..., None, :]
        dp = p[..., :, None] - p[..., None, :]
        usable = dg > 0  # NaN compares False: pairs with a missing score drop out
        correct = (usable & (dp > 0)).sum(axis=(-1, -2)) + 0.5 * (usable & (dp == 0)).sum(axis=(-1, -2))
    return correct.astype(np.float64), usable.sum(axis=(-1, -2)).astype(np.float64)


def within_group_pairwise_accuracy(gold: Any, pred: Any, groups: Sequence[Any] | None = None) -> float:
    """Share of same-group pairs with different ``gold`` that ``pred`` orders the same way (ties in ``pred`` = 1/2).

    Pairs are pooled over groups (each pair weighs the same). Returns NaN when no group has two items with different
    gold values.

    Args:
        gold: flat scores with ``groups`` labels, or a ``(groups, candidates)`` matrix (NaN = missing).
        pred: scores of the same shape (torch tensors are accepted).
        groups: one label per item for flat input; ``None`` for matrix input.

    Examples:
        >>> within_group_pairwise_accuracy([1., 0, 1, 0], [.9, .1, .2, .2], "aabb")
        0.75
        >>> within_group_pairwise_accuracy([[1, 0], [1, 0]], [[.9, .1], [.2, .2]])
        0.75
    """
    if groups is not None:
        g, keys = group_matrix(gold, groups)
        p, _ = group_matrix(pred, groups)
        if len(keys) == 0:
            return float("nan")
    else:
        g, p = _to_float_array(gold, "gold"), _to_float_array(pred, "pred")
        if g.ndim == 1 and p.ndim == 1:
            g, p = g[None, :], p[None, :]
    correct, pairs = pairwise_counts(g, p)
    total = pairs.sum()
    return float(correct.sum() / total) if total else float("nan")


def top1_agreement_rows(gold: Any, pred: Any) -> np.ndarray:
    """Per group: share of ``pred``'s best candidates that are among gold's best (NaN if gold is constant).

    Examples:
        >>> top1_agreement_rows([[1, 0, 2], [1, 1, 1], [3, 1, 0]], [[0, 1, 5], [1, 2, 3], [1, 1, 1]]).tolist()
        [1.0, nan, 0.3333333333333333]
    """
    g, p = _pair(gold, pred)
    valid = ~np.isnan(g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
        gmax, gmin, pmax = np.nanmax(g, axis=-1), np.nanmin(g, axis=-1), np.nanmax(p, axis=-1)
    gbest = valid & (g == gmax[..., None])
    pbest = valid & (p == pmax[..., None])
    defined = (valid.sum(axis=-1) >= 2) & (gmax > gmin)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (gbest & pbest).sum(axis=-1) / pbest.sum(axis=-1)
    return np.where(defined, share, np.nan)


def spearman_rows(gold: Any, pred: Any) -> np.ndarray:
    """Per group Spearman correlation (NaN where a row is constant or has fewer than two candidates).

    ``np.nanmean`` of the result equals :func:`noisyclip_metrics.evaluation.stats.spearman` on the same matrix.

    Examples:
        >>> spearman_rows([[1, 2, 3, 4], [1, 1, 1, 1]], [[10, 20, 30, 25], [1, 2, 3, 4]]).tolist()
        [0.8, nan]
    """
    g, p = _pair(gold, pred)
    shape = p.shape[:-1]
    g2, p2 = g.reshape(-1, g.shape[-1]), p.reshape(-1, p.shape[-1])
    if g2.size == 0:
        return np.full(shape, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rg = scipy.stats.rankdata(g2, axis=1, nan_policy="omit")
        rp = scipy.stats.rankdata(p2, axis=1, nan_policy="omit")
    return _rowwise_pearson(rg, rp, ~np.isnan(g2)).reshape(shape)


def bootstrap_ratio(
    num: Any,
    den: Any,
    *,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile bootstrap of ``sum(num) / sum(den)`` over resampled groups (axis 0), for every other index at once.

    Every statistic sees the same resamples (multinomial group counts from ``numpy.random.default_rng(seed)``).
    A statistic undefined on some resample (zero denominator) gets a NaN interval, as in :func:`bootstrap_ci`; with
    fewer than two groups the interval is NaN.

    Args:
        num: ``(R, ...)`` per-group numerators.
        den: ``(R, ...)`` per-group denominators (same shape).
        n_resamples: bootstrap resamples (>= 2).
        confidence_level: e.g. 0.95.
        seed: seed of the resampling generator.

    Returns:
        ``(value, low, high)`` arrays of shape ``num.shape[1:]`` (``value`` on the full data).

    Examples:
        >>> v, lo, hi = bootstrap_ratio([[3.0], [1.0], [2.0]], [[4.0], [2.0], [2.0]], n_resamples=200)
        >>> round(float(v[0]), 3), bool(lo[0] <= v[0] <= hi[0])
        (0.75, True)
    """
    n = np.asarray(num, dtype=np.float64)
    d = np.asarray(den, dtype=np.float64)
    if n.shape != d.shape or n.ndim < 1:
        raise InputError(f"num and den must have the same shape (groups first), got {n.shape} and {d.shape}")
    groups, rest = n.shape[0], n.shape[1:]
    value, low, high = _percentile_bootstrap(
        _ratio, [n.reshape(groups, -1), d.reshape(groups, -1)], n_resamples, confidence_level, seed
    )
    return value.reshape(rest), low.reshape(rest), high.reshape(rest)


def _ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(bottom > 0, top / bottom, np.nan)


def _percentile_bootstrap(
    statistic: Any, columns: list[np.ndarray], n_resamples: int, confidence_level: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``statistic`` of the column sums of ``columns`` (each ``(groups, K)``), on the full data and its percentile
    interval over multinomial resamples of the groups (the same resamples for every column: paired)."""
    if n_resamples < 2 or not 0 < confidence_level < 1:
        raise InputError(
            f"bootstrap needs n_resamples >= 2 and 0 < confidence_level < 1; got {n_resamples}, {confidence_level}"
        )
    groups = columns[0].shape[0]
    value = statistic(*(c.sum(axis=0) for c in columns))
    if groups < 2:
        nan = np.full(value.shape, np.nan)
        return value, nan, nan.copy()
    rng = np.random.default_rng(seed)
    probs = np.full(groups, 1.0 / groups)
    per_chunk = max(1, _BOOTSTRAP_CELLS // groups)
    draws = []
    for start in range(0, n_resamples, per_chunk):
        w = rng.multinomial(groups, probs, size=min(per_chunk, n_resamples - start)).astype(np.float64)
        draws.append(statistic(*(w @ c for c in columns)))
    stats = np.concatenate(draws)
    alpha = (1 - confidence_level) / 2
    low, high = np.percentile(stats, [100 * alpha, 100 * (1 - alpha)], axis=0)  # NaN draws propagate
    return value, low, high


def ratio_difference(
    num_a: Any,
    den_a: Any,
    num_b: Any,
    den_b: Any,
    *,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``sum(num_a) / sum(den_a) - sum(num_b) / sum(den_b)`` over paired groups (row i of a and of b: the same
    prompt), with a percentile bootstrap that resamples the groups of both sides together; as :func:`bootstrap_ratio`
    for every other index at once.

    Examples:
        >>> v, lo, hi = ratio_difference([[3.0], [2.0], [4.0]], [[4.0]] * 3, [[1.0], [2.0], [1.0]], [[4.0]] * 3,
        ...                              n_resamples=200)
        >>> round(float(v[0]), 3), bool(0 < lo[0] <= v[0] <= hi[0])
        (0.417, True)
    """
    arrays = [np.asarray(x, dtype=np.float64) for x in (num_a, den_a, num_b, den_b)]
    if len({a.shape for a in arrays}) != 1 or arrays[0].ndim < 1:
        raise InputError(
            f"num_a, den_a, num_b, den_b: expected one shape (groups first), got {[a.shape for a in arrays]}"
        )
    groups, rest = arrays[0].shape[0], arrays[0].shape[1:]
    value, low, high = _percentile_bootstrap(
        lambda na, da, nb, db: _ratio(na, da) - _ratio(nb, db),
        [a.reshape(groups, -1) for a in arrays],
        n_resamples,
        confidence_level,
        seed,
    )
    return value.reshape(rest), low.reshape(rest), high.reshape(rest)


def paired_means(
    a: Any, b: Any, *, difference: bool = False, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Ratio ``mean(a) / mean(b)`` (or difference ``mean(a - b)``) of two per-prompt arrays, with a 95% percentile
    bootstrap interval that resamples prompts (a prompt's two values together); prompts missing (NaN) from either
    are dropped.

    Examples:
        >>> value, low, high = paired_means([1.0, 0.5, 0.9, float("nan")], [0.5, 0.5, 0.6, 0.7], difference=True)
        >>> round(value, 3), low <= value <= high
        (0.267, True)
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise InputError(f"a and b: expected two 1-D arrays of one length, got shapes {x.shape} and {y.shape}")
    both = ~(np.isnan(x) | np.isnan(y))
    x, y = x[both], y[both]
    top, bottom = (x - y, np.ones_like(x)) if difference else (x, y)
    value, low, high = bootstrap_ratio(top, bottom, n_resamples=n_resamples, seed=seed)
    return float(value), float(low), float(high)
