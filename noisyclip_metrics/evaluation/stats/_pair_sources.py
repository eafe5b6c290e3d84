"""Pair sources for tie-calibrated pairwise accuracy: threshold queries without one Python object per pair.

Notation (see :mod:`._pair_search`): a pair of usable items of one row has a metric difference ``d`` (float64
``|pred_i - pred_j|``). Raising the tie threshold past ``d`` changes the pair's contribution by +1 (gold tie, d > 0),
-1 (concordant pair) or 0 (discordant pair). A source answers, for thresholds ``x``: the weighted number ``A(x)`` of
gold-tied pairs with ``0 < d <= x``, the weighted number ``B(x)`` of concordant pairs with ``d <= x``, and the number
of pairs with ``0 < d <= x``; it can also list or sample the pairs with ``lo < d <= hi``.

- :class:`EnumeratedPairs` holds the pairs of small rows (only those whose contribution can change).
- :class:`RowIndex` indexes one large row in O(n) memory: items sorted by pred, gold reduced to level ranks and a
  prefix-count table ``#{j < t : level_j >= k}``, so a threshold query costs O(n log n) and never materialises the
  O(n^2) pairs. Boundaries are fixed up against the exact float predicate ``fl(m_j - m_i) <= x``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["EnumeratedPairs", "RowIndex", "cumsum0"]

QUERY_CHUNK = 1 << 22
"""(threshold x item x block) elements processed at once by :class:`RowIndex`."""
TABLE_MAX = 1 << 23
"""Entries of a :class:`RowIndex` prefix-count table (int32); more gold levels make the table coarser (blocks)."""

Number = int | float


def cumsum0(values: np.ndarray) -> np.ndarray:
    """Cumulative sum with a leading zero; float input is summed in blocks to keep the rounding error small."""
    out = np.zeros(values.size + 1, dtype=values.dtype)
    if values.dtype.kind != "f" or values.size <= 4096:
        np.cumsum(values, out=out[1:])
        return out
    block = 1024
    padded = np.zeros(-(-values.size // block) * block, dtype=values.dtype)
    padded[: values.size] = values
    inner = np.cumsum(padded.reshape(-1, block), axis=1)
    offsets = np.concatenate([[0.0], np.cumsum(inner[:, -1])[:-1]])
    out[1:] = (inner + offsets[:, None]).ravel()[: values.size]
    return out


def _increasing_pairs(lev: np.ndarray, n_levels: int) -> int:
    """``#{(i, j) : i < j, lev[j] > lev[i]}`` by bottom-up merging, O(n log^2 n) without an O(n^2) step."""
    n = lev.size
    idx = np.arange(n)
    total = 0
    width = 1
    while width < n:
        block = idx // (2 * width)
        right = (idx // width) % 2 == 1
        keys = np.sort(block[right] * (n_levels + 1) + lev[right])
        left_block = block[~right] * (n_levels + 1)
        ends = np.searchsorted(keys, left_block + n_levels, side="left")
        above = np.searchsorted(keys, left_block + lev[~right], side="right")
        total += int((ends - above).sum())
        width *= 2
    return total


class EnumeratedPairs:
    """The pairs of small rows whose contribution changes with ``eps`` (gold ties and concordant pairs).

    Args:
        key: one value per enumerated pair: ``d`` for a concordant pair (-weight once tied), ``-d`` for a gold-tied
            pair with ``d > 0`` (+weight once tied), NaN for a pair whose contribution never changes. One array
            sorts both kinds at once.
        weight: the pairs' row weight: one number (all rows of equal size) or an array aligned with ``key``.
    """

    def __init__(self, key: np.ndarray, weight: Number | np.ndarray) -> None:
        self.key = key
        self.weight = weight
        self.top = float(np.fmax.reduce(np.abs(key))) if key.size else 0.0
        if np.isnan(self.top):
            self.top = 0.0
        self._sorted = False

    @property
    def uniform(self) -> bool:
        """Whether every pair has the same weight."""
        return np.ndim(self.weight) == 0

    def moving(self) -> tuple[np.ndarray, np.ndarray]:
        """``(diff, wdelta)`` of the pairs whose contribution changes, in input order."""
        valid = ~np.isnan(self.key)
        key = self.key[valid]
        weight = self.weight if self.uniform else self.weight[valid]
        return np.abs(key), np.where(key < 0, weight, -weight)

    def _sort(self) -> None:
        """Sort by difference and build cumulative weights (only needed when mixed with large rows)."""
        diff, wdelta = self.moving()
        order = np.argsort(diff, kind="stable")
        self.diff = diff[order]
        self.wdelta = wdelta[order]
        zero = np.zeros(1, dtype=self.wdelta.dtype)[0]
        self.cum_a = cumsum0(np.where(self.wdelta > 0, self.wdelta, zero))
        self.cum_b = cumsum0(np.where(self.wdelta < 0, -self.wdelta, zero))
        self._sorted = True

    def counts(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self._sorted:
            self._sort()
        t = np.searchsorted(self.diff, xs, side="right")
        return self.cum_a[t], self.cum_b[t], t.astype(np.int64)

    def pairs(self, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
        if not self._sorted:
            self._sort()
        a, b = np.searchsorted(self.diff, [lo, hi], side="right")
        return self.diff[a:b], self.wdelta[a:b]

    def sample(self, lo: float, hi: float, k: int, rng: np.random.Generator) -> np.ndarray:
        if not self._sorted:
            self._sort()
        a, b = np.searchsorted(self.diff, [lo, hi], side="right")
        return self.diff[rng.integers(a, b, size=k)] if b > a else self.diff[:0]


class RowIndex:
    """Counting index over the pairs of one large row (see module docstring).

    Args:
        gold: usable gold scores of the row (1-D, no NaN).
        pred: usable predicted scores of the row.
        weight: the row's weight (int when exact, float otherwise).
    """

    def __init__(self, gold: np.ndarray, pred: np.ndarray, weight: Number) -> None:
        n = pred.size
        _, lev = np.unique(gold, return_inverse=True)
        lev = lev.astype(np.int64).ravel()
        order = np.lexsort((-lev, pred))  # by pred; equal preds by decreasing gold (see _increasing_pairs)
        self.n = n
        self.weight = weight
        self.m = pred[order]
        self.lev = lev[order]
        self.n_levels = int(self.lev.max()) + 1
        self.u, first = np.unique(self.m, return_index=True)
        self.starts = np.append(first, n).astype(np.int64)
        uid = np.repeat(np.arange(self.u.size), np.diff(self.starts))
        self.lo = self.starts[uid + 1]  # first sorted position with a strictly larger pred
        self.lo_sum = int(self.lo.sum())
        _, same = np.unique(uid * self.n_levels + self.lev, return_counts=True)
        self.tied_both = int((same * (same - 1) // 2).sum())
        level_sizes = np.bincount(self.lev)
        self.gold_tied_moving = int((level_sizes * (level_sizes - 1) // 2).sum()) - self.tied_both
        self.concordant = _increasing_pairs(self.lev, self.n_levels)
        self.moving = n * n - self.lo_sum  # pairs with d > 0
        self.top = float(self.u[-1] - self.u[0]) if self.u.size > 1 else 0.0
        self._table_ready = False

    def _build_table(self) -> None:
        """Prefix counts ``#{j < t : lev_j >= k}`` stored every ``bs`` positions (bs > 1 only for many levels)."""
        n, n_levels = self.n, self.n_levels
        self.bs = max(1, -(-(n + 1) * (n_levels + 1) // TABLE_MAX))
        n_blocks = n // self.bs + 1
        self.n_cols = n_levels + 1
        flat = (np.arange(n) // self.bs + 1) * self.n_cols + self.lev
        hist = np.bincount(flat, minlength=(n_blocks + 1) * self.n_cols).reshape(n_blocks + 1, self.n_cols)
        below = np.cumsum(hist, axis=0)[:n_blocks]
        table = np.cumsum(below[:, ::-1], axis=1)[:, ::-1]
        self.flat_table = np.ascontiguousarray(table, dtype=np.int32).ravel()
        self.levpad = np.concatenate([self.lev, np.full(self.bs, -1, dtype=np.int64)])
        self._table_ready = True
        a_lo, b_lo = self._ab_items(self.lo[None, :])
        self.a_lo, self.b_lo = int(a_lo[0]), int(b_lo[0])

    def _f_ge(self, t: np.ndarray, k: np.ndarray) -> np.ndarray:
        """``#{j < t : lev_j >= k}`` elementwise."""
        base = t // self.bs if self.bs > 1 else t
        out = self.flat_table[base * self.n_cols + k].astype(np.int64)
        if self.bs > 1:
            start = base * self.bs
            offs = np.arange(self.bs)
            window = self.levpad[start[..., None] + offs]
            out += ((window >= k[..., None]) & (offs < (t - start)[..., None])).sum(axis=-1)
        return out

    def _ab_items(self, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per query row of boundaries ``b`` (q, n): sums over items of (same-level, higher-level) counts below b."""
        k0 = np.broadcast_to(self.lev, b.shape)
        ge1 = self._f_ge(b, k0 + 1)
        ge0 = self._f_ge(b, k0)
        return (ge0 - ge1).sum(axis=1), ge1.sum(axis=1)

    def bounds(self, xs: np.ndarray) -> np.ndarray:
        """(q, n) array: for each threshold and sorted item i, ``#{j : fl(m_j - m_i) <= x}`` (a prefix length)."""
        u, m, size, n = self.u, self.m, self.u.size, self.n
        x = np.asarray(xs, dtype=np.float64)[:, None]
        kb = np.searchsorted(u, m[None, :] + x, side="right")
        # The float sum m_i + x can round across a value of u: fix up against the exact predicate, with one
        # broadcast pass per direction, then only over the few entries that moved.
        up = np.flatnonzero((kb < size) & (u[np.minimum(kb, size - 1)] - m <= x))
        down = np.flatnonzero((kb > 0) & (u[np.maximum(kb - 1, 0)] - m > x))
        kb = kb.ravel()
        x = x.ravel()
        for todo, step in ((up, 1), (down, -1)):
            while todo.size:
                kb[todo] += step
                k = kb[todo]
                if step > 0:
                    move = (k < size) & (u[np.minimum(k, size - 1)] - m[todo % n] <= x[todo // n])
                else:
                    move = (k > 0) & (u[np.maximum(k - 1, 0)] - m[todo % n] > x[todo // n])
                todo = todo[move]
        return self.starts[kb].reshape(x.size, n)

    def counts(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        xs = np.asarray(xs, dtype=np.float64)
        a = np.full(xs.size, self.gold_tied_moving, dtype=np.int64)
        b = np.full(xs.size, self.concordant, dtype=np.int64)
        n = np.full(xs.size, self.moving, dtype=np.int64)
        inside = np.flatnonzero(xs < self.top)
        if inside.size:
            if not self._table_ready:
                self._build_table()
            step = max(1, QUERY_CHUNK // (self.n * self.bs))
            for s in range(0, inside.size, step):
                part = inside[s : s + step]
                bounds = self.bounds(xs[part])
                sa, sb = self._ab_items(bounds)
                a[part] = sa - self.a_lo
                b[part] = sb - self.b_lo
                n[part] = bounds.sum(axis=1) - self.lo_sum
        return a * self.weight, b * self.weight, n

    def _ranges(self, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
        b = self.bounds(np.array([lo, hi]))
        return b[0], b[1] - b[0]

    def pairs(self, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
        start, cnt = self._ranges(lo, hi)
        total = int(cnt.sum())
        # pair k belongs to item i = repeat(arange(n), cnt)[k]; its partner is start[i] + (k - first pair of i)
        j = np.arange(total, dtype=np.int64) + np.repeat(start - (np.cumsum(cnt) - cnt), cnt)
        li = np.repeat(self.lev, cnt)
        lj = self.lev[j]
        up = lj == li
        keep = up | (lj > li)
        diff = self.m[j[keep]] - np.repeat(self.m, cnt)[keep]
        return diff, np.where(up[keep], self.weight, -self.weight)

    def sample(self, lo: float, hi: float, k: int, rng: np.random.Generator) -> np.ndarray:
        start, cnt = self._ranges(lo, hi)
        ends = np.cumsum(cnt)
        if ends[-1] == 0:
            return self.m[:0]
        r = rng.integers(0, ends[-1], size=k)
        i = np.searchsorted(ends, r, side="right")
        j = start[i] + r - (ends[i] - cnt[i])
        return self.m[j] - self.m[i]
