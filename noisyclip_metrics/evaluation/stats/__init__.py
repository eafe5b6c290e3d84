"""Agreement statistics between gold judgments (human, VQA judge) and metric scores.

All functions take ``gold, pred`` array-likes of the same shape: 1-D (one group) or 2-D (rows = groups such as
prompts, columns = the items compared within a group; NaN = missing). See :mod:`._inputs` for validation rules.

- :func:`pearson`, :func:`spearman`, :func:`kendall_tau_b`, :func:`kendall_tau_c` -- 2-D input: per row, then the
  mean over rows where defined (t2v-metrics' convention for tau); constant rows are undefined (NaN) and skipped.
- :func:`pairwise_accuracy` -- Deutsch et al. 2023 ``acc_23`` with tie calibration, returns ``(accuracy, epsilon)``;
  2-D input: mean of per-row accuracies with one shared threshold (mt-metrics-eval / t2v-metrics).
- :func:`bootstrap_ci`, :func:`agreement` -- ``scipy.stats.bootstrap`` intervals, resampling rows (2-D) or items.
- :func:`within_group_pairwise_accuracy`, :func:`pairwise_counts`, :func:`top1_agreement_rows`,
  :func:`spearman_rows`, :func:`bootstrap_ratio` -- candidates ranked within a group (prompt), vectorised over groups
  and steps, with a vectorised group bootstrap (:mod:`.grouped`).

Examples:
    >>> from noisyclip_metrics.evaluation.stats import pairwise_accuracy, kendall_tau_b
    >>> gold = [[5, 3, 3], [2, 4, 1]]
    >>> pred = [[0.9, 0.4, 0.5], [0.3, 0.8, 0.1]]
    >>> pairwise_accuracy(gold, pred)
    PairwiseAccuracy(accuracy=1.0, epsilon=0.09999999999999998)
    >>> kendall_tau_b(gold, pred)
    0.9082482904638631
"""

from __future__ import annotations

from noisyclip_metrics.evaluation.stats.bootstrap import STATISTICS, Agreement, Estimate, agreement, bootstrap_ci
from noisyclip_metrics.evaluation.stats.correlation import kendall_tau_b, kendall_tau_c, pearson, spearman
from noisyclip_metrics.evaluation.stats.grouped import (
    bootstrap_ratio,
    group_matrix,
    paired_means,
    pairwise_counts,
    ratio_difference,
    spearman_rows,
    top1_agreement_rows,
    within_group_pairwise_accuracy,
)
from noisyclip_metrics.evaluation.stats.pairwise import PairwiseAccuracy, pairwise_accuracy

__all__ = [
    "STATISTICS",
    "Agreement",
    "Estimate",
    "PairwiseAccuracy",
    "agreement",
    "bootstrap_ci",
    "bootstrap_ratio",
    "group_matrix",
    "kendall_tau_b",
    "kendall_tau_c",
    "paired_means",
    "pairwise_accuracy",
    "pairwise_counts",
    "pearson",
    "ratio_difference",
    "spearman",
    "spearman_rows",
    "top1_agreement_rows",
    "within_group_pairwise_accuracy",
]
