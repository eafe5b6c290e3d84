"""Tie-calibrated pairwise accuracy: indexing the pairs of a score matrix and searching the best threshold.

``accuracy(eps) = (num0 + G(eps)) / denom`` with ``G(eps) = A(eps) - B(eps)`` (see :mod:`._pair_sources`). Rows
are weighted ``1 / (pairs in row)`` and averaged (mt-metrics-eval); the weights are exact integers
(``lcm / pairs``) whenever ``rows * lcm`` fits in 2**53, so ties between thresholds are exact.

:func:`search` finds the smallest ``eps`` maximising ``G``: with only enumerated pairs it scans them once; otherwise
it runs a branch-and-bound over threshold bins. A bin ``(lo, hi]`` holds nothing better than
``min(A(hi) - B(lo), G(hi) + B(hi) - B(lo))``; bins whose bound is below the best value seen are dropped, others are
split at sampled pair differences (plus the float just below a repeated one, so single-valued bins resolve at once)
until they are small enough to enumerate. Only thresholds at differences of gold-tied pairs (and 0) can start a
maximum, which is all that enumeration needs to evaluate; large enumerated sets are first counted in value buckets
so that only buckets able to reach the best value are sorted.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from noisyclip_metrics.evaluation.stats._inputs import ScoreMatrix
from noisyclip_metrics.evaluation.stats._pair_sources import EnumeratedPairs, Number, RowIndex, cumsum0

__all__ = ["PairProblem", "build_problem", "search", "value_at"]

LARGE_ROW_ITEMS = 256
"""Rows with more usable items than this are indexed (:class:`RowIndex`) instead of enumerated."""
ENUMERATION_CHUNK = 1 << 22
"""Pairs materialised at once while enumerating small rows."""
BIN_ENUMERATE_MAX = 1 << 15
"""A search bin holding at most this many pairs is enumerated instead of split."""
ENUMERATE_PER_ITEM = 32
"""A bin is also enumerated when it holds at most this many pairs per item of the indexed (large) rows."""
SPLIT_SAMPLES = 512
"""Pairs sampled from a bin to choose its split points."""
SPLIT_EDGES = 8
"""Quantiles of the sample used as split points."""
EXACT_LIMIT = 1 << 53
"""Integer (exact) row weights are used while ``rows x lcm(pairs per row)`` stays below this."""
BUCKETS = 64
"""Value buckets used to prune the pairs of an enumerated bin before sorting them."""
BUCKET_MIN = 32768
"""Enumerated bins with more pairs than this are bucketed first."""
FLOAT_TIE_TOLERANCE = 1e-12
"""With float weights (huge lcm of row sizes), accuracies this close to the maximum count as ties."""


Source = EnumeratedPairs | RowIndex


@dataclass
class PairProblem:
    """All pairs of a (gold, pred) matrix, ready for threshold queries.

    Attributes:
        sources: pair sources (enumerated small rows, indexed large rows).
        num0: weighted number of correct pairs at ``eps = 0``.
        denom: ``accuracy = (num0 + G) / denom``.
        exact: whether weights are exact integers.
        top: the largest metric difference of any pair (0.0 when all preds within a row are equal).
    """

    sources: list[Source] = field(default_factory=list)
    num0: Number = 0
    denom: Number = 1
    exact: bool = True
    top: float = 0.0

    def counts(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dtype = np.int64 if self.exact else np.float64
        a = np.zeros(xs.size, dtype=dtype)
        b = np.zeros(xs.size, dtype=dtype)
        n = np.zeros(xs.size, dtype=np.int64)
        for source in self.sources:
            sa, sb, sn = source.counts(xs)
            a += sa
            b += sb
            n += sn
        return a, b, n

    def pairs(self, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
        parts = [source.pairs(lo, hi) for source in self.sources]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def accuracy(self, gain: Number) -> float:
        return float((self.num0 + gain) / self.denom)


def _row_weights(counts: np.ndarray) -> tuple[np.ndarray, Number, bool]:
    pairs = counts * (counts - 1) // 2
    used = pairs > 0
    n_rows = int(used.sum())
    sizes = pairs[used]
    lcm = int(sizes[0]) if (sizes == sizes[0]).all() else math.lcm(*np.unique(sizes).tolist())
    if n_rows * lcm <= EXACT_LIMIT:
        weights = np.where(used, lcm // np.maximum(pairs, 1), 0).astype(np.int64)
        return weights, n_rows * lcm, True
    weights = np.where(used, 1.0 / np.maximum(pairs, 1), 0.0)
    return weights, float(n_rows), False


@functools.lru_cache(maxsize=64)
def _pair_indices(width: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.triu_indices(width, 1)``, cached (the same group size comes back on every call)."""
    iu, ju = np.triu_indices(width, k=1)
    iu.setflags(write=False)
    ju.setflags(write=False)
    return iu, ju


def _enumerate_small(matrix: ScoreMatrix, rows: np.ndarray, weights: np.ndarray) -> tuple[list[Source], Number]:
    """Enumerate the pairs of the given rows (usable items compacted to the left), vectorised over rows."""
    if rows.size == matrix.gold.shape[0]:  # every row (the common case): no copies
        valid, g, p, w = matrix.valid, matrix.gold, matrix.pred, weights
    else:
        valid, g, p, w = matrix.valid[rows], matrix.gold[rows], matrix.pred[rows], weights[rows]
    padded = not bool(valid.all())
    if padded:
        width = int(valid.sum(axis=1).max())
        pick = np.argsort(~valid, axis=1, kind="stable")[:, :width]
        g = np.take_along_axis(g, pick, axis=1)
        p = np.take_along_axis(p, pick, axis=1)
    uniform = bool((w == w[0]).all())  # rows of equal size: one weight for every pair
    iu, ju = _pair_indices(g.shape[1])
    g_t, p_t = np.ascontiguousarray(g.T), np.ascontiguousarray(p.T)  # (items, rows): gathers copy whole rows
    step = max(1, ENUMERATION_CHUNK // max(1, iu.size))
    keys, weights_out, num0 = [], [], 0
    for s in range(0, g.shape[0], step):
        dp = p_t[ju, s : s + step] - p_t[iu, s : s + step]  # (pairs, rows); exact: x - y == 0 iff x == y
        sg = np.sign(g_t[ju, s : s + step] - g_t[iu, s : s + step])
        sp = np.sign(dp)
        concordant = sg * sp > 0  # NaN padding: never concordant ...
        gold_tie = sg == 0  # ... and never tied
        tied_both = gold_tie & (sp == 0)
        correct0 = concordant | tied_both
        abs_dp = np.abs(dp)
        keys.append(np.where(concordant, abs_dp, np.where(gold_tie ^ tied_both, -abs_dp, np.nan)).ravel())
        if uniform:
            num0 += w[0] * int(np.count_nonzero(correct0))
        else:
            wr = np.broadcast_to(w[None, s : s + step], dp.shape)
            num0 += wr[correct0].sum()
            weights_out.append(wr.ravel())
    key = np.concatenate(keys)
    num0 = num0.item() if hasattr(num0, "item") else num0
    if not key.size:
        return [], num0
    return [EnumeratedPairs(key, w[0].item() if uniform else np.concatenate(weights_out))], num0


def build_problem(matrix: ScoreMatrix) -> PairProblem:
    """Index the pairs of ``matrix`` (rows with fewer than two usable items are ignored)."""
    counts = matrix.counts
    weights, denom, exact = _row_weights(counts)
    used = counts >= 2
    small = used & (counts <= LARGE_ROW_ITEMS)
    problem = PairProblem(denom=denom, exact=exact)
    if small.any():
        problem.sources, problem.num0 = _enumerate_small(matrix, np.flatnonzero(small), weights)
    for r in np.flatnonzero(used & ~small):
        ok = matrix.valid[r]
        weight = weights[r].item()
        index = RowIndex(matrix.gold[r, ok], matrix.pred[r, ok], weight)
        problem.num0 += weight * (index.concordant + index.tied_both)
        if index.top > 0:
            problem.sources.append(index)
    problem.top = max((s.top for s in problem.sources), default=0.0)
    return problem


def value_at(problem: PairProblem, eps: float) -> Number:
    """``G(eps)``: the weighted gain over ``eps = 0`` of using tie threshold ``eps``."""
    if eps <= 0 or not problem.sources:
        return 0
    a, b, _ = problem.counts(np.array([eps], dtype=np.float64))
    return (a[0] - b[0]).item()


def _choose(eps: np.ndarray, vals: np.ndarray, exact: bool) -> tuple[Number, float]:
    """Smallest threshold whose value is the maximum (with a float tolerance when weights are not exact)."""
    best = vals.max()
    ok = vals >= best if exact else vals >= best - FLOAT_TIE_TOLERANCE
    k = np.flatnonzero(ok)
    k = k[np.argmin(eps[k])]
    return vals[k].item(), float(eps[k])


def _distinct_ends(diff: np.ndarray, gains: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The value after the last pair of each run of equal differences (``diff`` sorted ascending)."""
    if diff.size == 0:
        return diff, gains
    last = np.flatnonzero(np.append(diff[1:] != diff[:-1], True))
    return diff[last], gains[last]


def _key_gains(key: np.ndarray, weight: Number, base: Number) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_uniform_gains` from an :class:`EnumeratedPairs` key array, with a single sort and no masking."""
    s = np.sort(key)  # gold ties (negated) first, descending in d; then concordant pairs ascending; NaN last
    n_up = int(np.searchsorted(s, 0.0))
    n_moving = int(np.searchsorted(s, np.inf, side="right"))
    ups, downs = -s[:n_up][::-1], s[n_up:n_moving]
    if ups.size == 0:
        return ups, np.zeros(0, dtype=np.asarray(base + weight).dtype)
    last = np.flatnonzero(np.append(ups[1:] != ups[:-1], True))
    eps = ups[last]
    return eps, base + weight * ((last + 1) - np.searchsorted(downs, eps, side="right"))


def _uniform_gains(diff: np.ndarray, plus: np.ndarray, weight: Number, base: Number) -> tuple[np.ndarray, np.ndarray]:
    """``G`` at each distinct difference of a gold-tied pair when all pairs weigh the same (sorting values only)."""
    ups, downs = np.sort(diff[plus]), np.sort(diff[~plus])
    if ups.size == 0:  # only gold-tied pairs can start a maximum
        return ups, np.zeros(0, dtype=np.asarray(base + weight).dtype)
    last = np.flatnonzero(np.append(ups[1:] != ups[:-1], True))
    eps = ups[last]
    return eps, base + weight * ((last + 1) - np.searchsorted(downs, eps, side="right"))


def _sorted_gains(diff: np.ndarray, wd: np.ndarray, base: Number) -> tuple[np.ndarray, np.ndarray]:
    """``G`` after each distinct difference, walking the pairs in order of difference from ``G = base``."""
    weight = np.abs(wd)
    if weight.size and (weight == weight[0]).all():  # one weight: sorting the values is enough (no argsort)
        return _uniform_gains(diff, wd > 0, weight[0], base)
    order = np.argsort(diff, kind="stable")
    return _distinct_ends(diff[order], base + cumsum0(wd[order])[1:])


def _bin_candidates(
    diff: np.ndarray, wd: np.ndarray, base: Number, best: Number, slack: float
) -> tuple[np.ndarray, np.ndarray, Number]:
    """Gains ``G`` at the thresholds of a bin's pairs that may reach the maximum, given ``G`` at the bin's lower edge.

    Large bins are first counted in :data:`BUCKETS` value buckets (the bucket is a monotone function of the
    difference, so buckets respect the order): ``G`` at each bucket end is exact and is reached, and a bucket can
    hold nothing above ``G(bucket start) + gold ties inside``. Only the buckets that can reach the best value are
    sorted.

    Returns:
        ``(eps, gains, best)``: candidate thresholds, their gains, and the best value known to be reached.
    """
    low, high = (float(diff.min()), float(diff.max())) if diff.size else (0.0, 0.0)
    if diff.size <= BUCKET_MIN or high <= low:
        eps, gains = _sorted_gains(diff, wd, base)
        return eps, gains, max(best, gains.max()) if gains.size else best
    scale = BUCKETS / (high - low)

    def bucket_of(values: np.ndarray) -> np.ndarray:  # monotone in the value: the same value, the same bucket
        return np.minimum(((values - low) * scale).astype(np.int64), BUCKETS - 1)

    plus = wd > 0
    weight = np.abs(wd)
    if (weight == weight[0]).all():  # one weight: count and sort values only
        w = weight[0]
        ups, downs = diff[plus], diff[~plus]
        bu, bd = bucket_of(ups), bucket_of(downs)
        n_up = np.bincount(bu, minlength=BUCKETS)
        ends = base + w * np.cumsum(n_up - np.bincount(bd, minlength=BUCKETS))
        starts = np.concatenate([np.array([base], dtype=ends.dtype), ends[:-1]])
        best = max(best, ends.max())
        keep = starts + w * n_up >= best - slack
        ups, downs = np.sort(ups[keep[bu]]), np.sort(downs[keep[bd]])
        if ups.size == 0:
            return ups, wd[:0], best
        last = np.flatnonzero(np.append(ups[1:] != ups[:-1], True))
        eps = ups[last]
        b_eps = bucket_of(eps)
        first_up = np.searchsorted(bucket_of(ups), b_eps, side="left")
        first_down = np.searchsorted(bucket_of(downs), b_eps, side="left")
        n_up = last + 1 - first_up
        n_down = np.searchsorted(downs, eps, side="right") - first_down
        gains = starts[b_eps] + w * (n_up - n_down)
        return eps, gains, max(best, gains.max())
    bucket = bucket_of(diff)
    ups_w = np.bincount(bucket[plus], weights=wd[plus], minlength=BUCKETS)
    downs_w = np.bincount(bucket[~plus], weights=-wd[~plus], minlength=BUCKETS)
    if wd.dtype.kind != "f":  # integer weights: every partial sum is an integer below 2**53, exact in float
        ups_w, downs_w = ups_w.astype(wd.dtype), downs_w.astype(wd.dtype)
    ends = base + np.cumsum(ups_w - downs_w)
    starts = np.concatenate([np.array([base], dtype=ends.dtype), ends[:-1]])
    best = max(best, ends.max())
    keep = (starts + ups_w >= best - slack)[bucket]
    d, w_, b_ = diff[keep], wd[keep], bucket[keep]
    order = np.argsort(d, kind="stable")
    d, w_, b_ = d[order], w_[order], b_[order]  # buckets are sorted too: they are monotone in d
    cum = cumsum0(w_)
    eps, gains = _distinct_ends(d, starts[b_] - cum[np.searchsorted(b_, b_, side="left")] + cum[1:])
    return eps, gains, max(best, gains.max()) if gains.size else best


def search(problem: PairProblem, seed: int = 0) -> tuple[Number, float]:
    """Return ``(G, eps)``: the largest gain over ``eps = 0`` and the smallest threshold reaching it."""
    zero = 0 if problem.exact else 0.0
    if not problem.sources or problem.top <= 0:
        return zero, 0.0
    if len(problem.sources) == 1 and isinstance(problem.sources[0], EnumeratedPairs):
        src = problem.sources[0]
        if src.uniform:
            eps, vals = _key_gains(src.key, src.weight, zero)
        else:
            eps, vals, _ = _bin_candidates(*src.moving(), zero, zero, 0 if problem.exact else 1e-9)
        return _choose(np.append(0.0, eps), np.append(np.array(zero, dtype=vals.dtype), vals), problem.exact)
    return _branch_and_bound(problem, np.random.default_rng(seed))


def _branch_and_bound(problem: PairProblem, rng: np.random.Generator) -> tuple[Number, float]:
    exact = problem.exact
    slack = 0 if exact else 1e-9
    a_top, b_top, n_top = problem.counts(np.array([problem.top]))
    zero = a_top[0] * 0
    g_top = a_top[0] - b_top[0]
    cand_eps: list[np.ndarray] = [np.array([0.0, problem.top])]
    cand_val: list[np.ndarray] = [np.array([zero, g_top])]
    best = max(zero, g_top)  # best value known to be reached somewhere (maybe at an unknown threshold)
    known, known_eps = (g_top, problem.top) if g_top > zero else (zero, 0.0)  # best value at a known threshold
    indexed_items = sum(s.n for s in problem.sources if isinstance(s, RowIndex))
    enumerate_max = max(BIN_ENUMERATE_MAX, ENUMERATE_PER_ITEM * indexed_items)
    # A bin is (lo, hi, A(lo), B(lo), N(lo), A(hi), B(hi), N(hi)); N counts pairs with 0 < d <= x.
    bins = [(0.0, problem.top, zero, zero, 0, a_top[0], b_top[0], int(n_top[0]))]
    while bins:
        to_split = []
        for lo, hi, a_lo, b_lo, n_lo, a_hi, b_hi, n_hi in bins:
            # G on (lo, hi] is at most G(lo) + gold ties inside, and at most G(hi) + concordant pairs inside.
            bound = min(a_hi - b_lo, a_hi - b_hi + (b_hi - b_lo))
            if n_hi == n_lo or bound < best - slack or (exact and bound <= known and lo >= known_eps):
                continue  # empty, or nothing inside can beat (or tie at a smaller threshold) what is known
            if np.nextafter(lo, np.inf) >= hi:  # every pair inside has d == hi
                eps, gains = np.array([hi]), np.array([a_hi - b_hi])
            elif n_hi - n_lo <= enumerate_max:
                eps, gains, best = _bin_candidates(*problem.pairs(lo, hi), a_lo - b_lo, best, slack)
            else:
                to_split.append((lo, hi, a_lo, b_lo, n_lo, a_hi, b_hi, n_hi))
                continue
            if eps.size:
                cand_eps.append(eps)
                cand_val.append(gains)
                k = int(np.argmax(gains))
                if gains[k] > known or (gains[k] == known and eps[k] < known_eps):
                    known, known_eps = gains[k], float(eps[k])
                best = max(best, known)
        bins = []
        if not to_split:
            break
        inner = [_split_points(problem, b[0], b[1], rng) for b in to_split]
        a_e, b_e, n_e = problem.counts(np.concatenate(inner))
        if a_e.size:
            best = max(best, (a_e - b_e).max())
        pos = 0
        for (lo, hi, a_lo, b_lo, n_lo, a_hi, b_hi, n_hi), edges in zip(to_split, inner, strict=True):
            k = edges.size
            xs = np.concatenate([[lo], edges, [hi]])
            a_s = np.concatenate([[a_lo], a_e[pos : pos + k], [a_hi]])
            b_s = np.concatenate([[b_lo], b_e[pos : pos + k], [b_hi]])
            n_s = np.concatenate([[n_lo], n_e[pos : pos + k], [n_hi]])
            pos += k
            bins.extend(
                (float(xs[t]), float(xs[t + 1]), a_s[t], b_s[t], int(n_s[t]), a_s[t + 1], b_s[t + 1], int(n_s[t + 1]))
                for t in range(k + 1)
            )
    return _choose(np.concatenate(cand_eps), np.concatenate(cand_val), exact)


def _split_points(problem: PairProblem, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    """Inner split points of (lo, hi]: quantiles of sampled pair differences.

    A difference drawn more than once (many pairs share it) also gets the float just below it as a split point, so
    the bin ``(prev(d), d]`` holding exactly those pairs is resolved without enumerating them.
    """
    sample = np.sort(np.concatenate([s.sample(lo, hi, SPLIT_SAMPLES, rng) for s in problem.sources]))
    values, counts = np.unique(sample, return_counts=True)
    picks = np.unique(sample[np.linspace(0, sample.size - 1, min(SPLIT_EDGES, sample.size)).astype(int)])
    repeated = values[counts > 1]
    edges = np.unique(np.concatenate([picks, repeated[:SPLIT_EDGES], np.nextafter(repeated[:SPLIT_EDGES], -np.inf)]))
    edges = edges[(edges > lo) & (edges < hi)]
    return edges if edges.size else np.array([np.nextafter(hi, -np.inf)])
