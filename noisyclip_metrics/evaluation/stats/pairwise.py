"""Pairwise accuracy with tie calibration (Deutsch et al. 2023, "Ties Matter"), as used by GenAI-Bench / t2v-metrics.

Definition (identical to mt-metrics-eval's ``tau_optimization(..., acc_23)`` that t2v-metrics calls):

- Within each row (group), every pair of items with both scores present is compared. A pair is a *gold tie* when
  the gold scores are equal and a *metric tie* when ``|pred_i - pred_j| <= eps``.
- ``acc_23 = (concordant + tied in both) / pairs`` per row; pairs tied in only one of gold / metric, and discordant
  pairs, count as errors.
- With several rows the accuracy is the **unweighted mean of the per-row accuracies** (not pooled over pairs), over
  rows with at least one pair. A 1-D input is one row ("no grouping" in GenAI-Bench).
- Tie calibration searches one threshold ``eps`` shared by all rows over ``{0} U {|pred_i - pred_j|}`` and returns
  the maximal accuracy with the **smallest** ``eps`` reaching it (mt-metrics-eval keeps the first maximum of an
  ascending scan).

Differences are computed in float64. Inputs with a huge least common multiple of the per-row pair counts (many
different row sizes) fall back to float weights; accuracies within 1e-12 of the maximum then count as ties.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.evaluation.stats import _pair_search
from noisyclip_metrics.evaluation.stats._inputs import as_score_matrix

__all__ = ["PairwiseAccuracy", "pairwise_accuracy"]


class PairwiseAccuracy(NamedTuple):
    """Result of :func:`pairwise_accuracy`: a plain ``(accuracy, epsilon)`` tuple with names."""

    accuracy: float
    epsilon: float


def pairwise_accuracy(
    gold: Any,
    pred: Any,
    tie_calibration: bool = True,
    *,
    epsilon: float = 0.0,
) -> PairwiseAccuracy:
    """Pairwise accuracy ``acc_23`` of ``pred`` against ``gold``, optionally with the tie threshold calibrated.

    Runs in O(P log P) for P pairs of small rows and, for large rows (more than 256 usable items), in about
    O(n log n) per threshold query with a branch-and-bound search over thresholds: the n^2 pairs of an ungrouped
    GenAI-Bench-1600 run (9,600 scores) are never materialised.

    Args:
        gold: gold scores (e.g. mean human Likert ratings), 1-D or 2-D (rows = groups such as prompts; NaN = missing).
        pred: metric scores of the same shape.
        tie_calibration: search the metric tie threshold ``eps`` that maximises accuracy (GenAI-Bench's
            "pairwise accuracy with tie calibration"). When False, ``epsilon`` is used as given.
        epsilon: the fixed metric tie threshold used when ``tie_calibration`` is False (0.0: only exactly equal
            metric scores are ties).

    Returns:
        ``(accuracy, epsilon)``: accuracy in [0, 1] and the threshold used (the smallest maximiser when calibrated).

    Raises:
        InputError: mismatched shapes, non-numeric or infinite scores, a negative ``epsilon``, or no row with two
            usable items. Constant inputs are fine: constant gold makes every pair a gold tie (calibration then
            finds ``eps`` = the largest difference and accuracy 1.0); constant pred makes every pair a metric tie.

    Examples:
        >>> pairwise_accuracy([1, 2, 3, 3], [0.1, 0.2, 0.35, 0.3])
        PairwiseAccuracy(accuracy=1.0, epsilon=0.04999999999999999)
        >>> pairwise_accuracy([1, 2, 3, 3], [0.1, 0.2, 0.35, 0.3], tie_calibration=False)
        PairwiseAccuracy(accuracy=0.8333333333333334, epsilon=0.0)
        >>> pairwise_accuracy([[1, 2, 2], [3, 1, float("nan")]], [[0.5, 0.7, 0.6], [0.2, 0.1, 0.9]])
        PairwiseAccuracy(accuracy=0.8333333333333334, epsilon=0.0)
    """
    matrix = as_score_matrix(gold, pred)
    if np.isfinite(matrix.pred).any() and not np.isfinite(np.nanmax(matrix.pred) - np.nanmin(matrix.pred)):
        raise InputError("pred differences overflow float64; rescale the scores")
    problem = _pair_search.build_problem(matrix)
    if tie_calibration:
        gain, eps = _pair_search.search(problem)
        return PairwiseAccuracy(problem.accuracy(gain), eps)
    eps = float(epsilon)
    if not np.isfinite(eps) or eps < 0:
        raise InputError(f"epsilon must be a finite number >= 0, got {epsilon!r}")
    return PairwiseAccuracy(problem.accuracy(_pair_search.value_at(problem, eps)), eps)
