"""Judgments (human ratings, VQA scores, metric scores), their file readers, and the :class:`Judge` protocol.

Examples:
    >>> from noisyclip_metrics.evaluation.judges import Judgment, to_matrix
    >>> js = [Judgment("p1", m, m, "human", s) for m, s in [("A", 5), ("B", 3)]]
    >>> to_matrix(js)[0].tolist()
    [[5.0, 3.0]]
"""

from __future__ import annotations

from noisyclip_metrics.evaluation.judges.protocol import JUDGES, Judge, PrecomputedJudge
from noisyclip_metrics.evaluation.judges.readers import (
    GENAI_BENCH_MODELS,
    TIFA160_MODELS,
    SkillCorrelation,
    read_genai_bench_ratings,
    read_geneval_annotations,
    read_imagereward_rankings,
    read_t2v_metrics_per_skill,
    read_t2v_metrics_scores,
    read_tifa160_dsg_annotations,
    read_tifa_annotations,
)
from noisyclip_metrics.evaluation.judges.records import (
    Judgment,
    PartialJudgmentsWarning,
    check_coverage,
    check_prompt_ids,
    mean_over_raters,
    merge_judgments,
    read_judgments,
    to_matrix,
    write_judgments,
)

__all__ = [
    "GENAI_BENCH_MODELS",
    "JUDGES",
    "TIFA160_MODELS",
    "Judge",
    "Judgment",
    "PartialJudgmentsWarning",
    "PrecomputedJudge",
    "SkillCorrelation",
    "check_coverage",
    "check_prompt_ids",
    "mean_over_raters",
    "merge_judgments",
    "read_genai_bench_ratings",
    "read_geneval_annotations",
    "read_imagereward_rankings",
    "read_judgments",
    "read_t2v_metrics_per_skill",
    "read_t2v_metrics_scores",
    "read_tifa160_dsg_annotations",
    "read_tifa_annotations",
    "to_matrix",
    "write_judgments",
]
