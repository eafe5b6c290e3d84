"""Time tie-calibrated pairwise accuracy against straightforward references, on inputs the size of GenAI-Bench-1600.

Run from the repository root::

    .venv/bin/python benchmarks/pairwise_speed.py [--seed 0] [--repeats 5] [--no-memory]

What is compared, in one run (ratios matter, these machines are noisy):

- ``noisyclip_metrics.evaluation.stats.pairwise_accuracy`` (vectorised; branch-and-bound over thresholds for large
  groups).
- ``numpy reference``: the straightforward baseline, a plain O(n^2) loop over items ``i`` (and rows) vectorised over
  ``j > i`` that materialises every pair whose outcome depends on the threshold, sorts them by metric difference and
  scans the running accuracy. For 9,600 ungrouped scores it allocates about 3 GB.
- ``python reference``: one Python tuple per pair, sorted, then a running scan with exact fractions (the shape of
  mt-metrics-eval's ``tau_optimization`` used by t2v-metrics); run on the grouped input and on a 600-score subset, as
  an independent correctness check.

Two GenAI-Bench-1600-like data sets (1,600 prompts x 6 generators; gold = mean of three 1-5 Likert ratings; pred =
a VQAScore-like probability): a metric as noisy as VQAScore (calibration keeps eps = 0) and a near-ceiling metric
(calibration picks eps > 0, the hard case for the search). Results must be identical: accuracy to 1e-12 and the
threshold bit for bit.
"""

from __future__ import annotations

import argparse
import math
import time
import tracemalloc
from fractions import Fraction

import numpy as np

from noisyclip_metrics.evaluation.stats import pairwise_accuracy


def genai_like(n_prompts: int, n_models: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(gold, pred) matrices of shape (n_prompts, n_models); smaller ``noise`` = a metric closer to the raters."""
    quality = np.clip(rng.normal(3.4, 1.0, size=(n_prompts, n_models)), 1, 5)
    ratings = np.clip(np.rint(quality[..., None] + rng.normal(0, 0.7, size=(n_prompts, n_models, 3))), 1, 5)
    gold = ratings.mean(axis=-1)
    logit = 1.3 * (ratings.mean(axis=-1) - 3.2) + rng.normal(0, noise, size=quality.shape)
    pred = 1.0 / (1.0 + np.exp(-logit))
    return gold, pred


def numpy_reference(gold: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """Straightforward O(n^2): loop over rows and items, vectorised over partners; sort all moving pairs."""
    gold2 = np.atleast_2d(gold)
    pred2 = np.atleast_2d(pred)
    diffs, deltas, base_num, rows = [], [], [], 0
    for g, p in zip(gold2, pred2, strict=True):
        n = g.size
        n_pairs = n * (n - 1) // 2
        correct0 = 0
        row_d, row_w = [], []
        for i in range(n - 1):
            dg = g[i + 1 :] - g[i]
            dp = p[i + 1 :] - p[i]
            gold_tie = dg == 0
            concordant = ((dg > 0) & (dp > 0)) | ((dg < 0) & (dp < 0))
            correct0 += int(concordant.sum() + (gold_tie & (dp == 0)).sum())
            moving = concordant | (gold_tie & (dp != 0))
            row_d.append(np.abs(dp[moving]))
            row_w.append(np.where(gold_tie[moving], 1, -1).astype(np.int8))
        diffs.append(np.concatenate(row_d))
        deltas.append((np.concatenate(row_w), n_pairs))
        base_num.append((correct0, n_pairs))
        rows += 1
    # rows of equal size: exact integer arithmetic (that is the case benchmarked here)
    sizes = {n for _, n in base_num}
    assert len(sizes) == 1
    n_pairs = sizes.pop()
    d = np.concatenate(diffs)
    w = np.concatenate([dw for dw, _ in deltas])
    order = np.argsort(d, kind="stable")
    d = d[order]
    gain = np.cumsum(w[order], dtype=np.int64)
    last = np.flatnonzero(np.append(d[1:] != d[:-1], True))
    vals = np.append(0, gain[last])
    eps = np.append(0.0, d[last])
    k = int(np.argmax(vals))  # first maximum = smallest threshold
    num0 = sum(c for c, _ in base_num)
    return (num0 + int(vals[k])) / (rows * n_pairs), float(eps[k])


def python_reference(gold: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """One Python object per pair, sorted by metric difference, then a running scan (mean over rows)."""
    gold2 = np.atleast_2d(gold).tolist()
    pred2 = np.atleast_2d(pred).tolist()
    pairs = []
    correct = []
    sizes = []
    for r, (g, p) in enumerate(zip(gold2, pred2, strict=True)):
        n = len(g)
        ok = 0
        for i in range(n):
            for j in range(i + 1, n):
                tie_g = g[i] == g[j]
                d = abs(p[i] - p[j])
                con = (g[i] < g[j] and p[i] < p[j]) or (g[i] > g[j] and p[i] > p[j])
                ok += con or (tie_g and d == 0)
                pairs.append((d, r, 1 if tie_g else (-1 if con else 0)))
        correct.append(ok)
        sizes.append(n * (n - 1) // 2)
    pairs.sort(key=lambda t: t[0])
    total = sum(Fraction(c, s) for c, s in zip(correct, sizes, strict=True))
    best, best_eps = total, 0.0
    k = 0
    while k < len(pairs):
        d = pairs[k][0]
        while k < len(pairs) and pairs[k][0] == d:
            _, r, delta = pairs[k]
            total += Fraction(delta, sizes[r])
            k += 1
        if total > best:
            best, best_eps = total, d
    return float(best / len(sizes)), best_eps


def timed(fn, *args, repeats: int = 1) -> tuple[float, object]:
    """(best wall-clock seconds over ``repeats`` runs, result)."""
    best = math.inf
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn(*args)
        best = min(best, time.perf_counter() - start)
    return best, result


def peak_mib(fn, *args) -> float:
    """Peak of the allocations traced by tracemalloc (numpy buffers included) during one untimed call."""
    tracemalloc.start()
    fn(*args)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="runs of the fast implementation (best time kept)")
    parser.add_argument("--no-memory", action="store_true", help="skip the (slow) tracemalloc runs")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print("## Tie-calibrated pairwise accuracy: speed\n")
    print(f"GenAI-Bench-1600-like data (1,600 prompts x 6 generators, seed {args.seed}). Times: best of {args.repeats}")
    print("runs (the 46M-pair numpy reference: one run). Peak = allocations traced by tracemalloc in a separate")
    print("untimed call. Identical = same accuracy to 1e-12 and bit-identical epsilon.\n")
    print("| data | input | implementation | time (ms) | peak MiB | accuracy | epsilon | ours faster by | identical |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    for data_label, noise in (("VQAScore-like metric", 1.1), ("near-ceiling metric", 0.25)):
        gold, pred = genai_like(1600, 6, noise, rng)
        cases = [
            ("ungrouped: 9,600 scores, 46.1M pairs", gold.ravel(), pred.ravel(), numpy_reference),
            ("grouped: 1,600 x 6, 24,000 pairs", gold, pred, numpy_reference),
            ("grouped: 1,600 x 6, 24,000 pairs", gold, pred, python_reference),
            ("ungrouped subset: 600 scores, 179,700 pairs", gold.ravel()[:600], pred.ravel()[:600], python_reference),
        ]
        for label, g, p, reference in cases:
            t_fast, fast = timed(pairwise_accuracy, g, p, repeats=args.repeats)
            ref_repeats = 1 if g.size > 5000 and g.ndim == 1 else args.repeats  # the 46M-pair reference runs once
            t_ref, ref = timed(reference, g, p, repeats=ref_repeats)
            same = abs(fast[0] - ref[0]) <= 1e-12 and fast[1] == ref[1]
            is_numpy = reference is numpy_reference
            name = "numpy reference (loop over i)" if is_numpy else "python reference (pair objects)"
            m_fast = m_ref = "-"
            if not args.no_memory and is_numpy:
                m_fast, m_ref = f"{peak_mib(pairwise_accuracy, g, p):.1f}", f"{peak_mib(reference, g, p):.1f}"
            print(
                f"| {data_label} | {label} | noisyclip_metrics | {t_fast * 1e3:.3g} | {m_fast} | {fast[0]:.12f} | "
                f"{fast[1]:.6g} | {t_ref / t_fast:.0f}x | {'yes' if same else 'NO'} |"
            )
            print(
                f"| {data_label} | {label} | {name} | {t_ref * 1e3:.4g} | {m_ref} | {ref[0]:.12f} | "
                f"{ref[1]:.6g} | - | - |"
            )


if __name__ == "__main__":
    main()
