"""``noisyclip correlate``: per-step scores of a results store against final-image judgments (table and JSON)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from noisyclip_metrics.cli import COMMANDS
from noisyclip_metrics.cli.core import settings_command
from noisyclip_metrics.errors import InputError


@dataclass(frozen=True)
class CorrelateSettings:
    """Settings of ``noisyclip correlate`` (flags, or keys of a ``--config`` JSON or YAML file).

    Args:
        results: results store folder (written by noisyclip evaluate).
        scorer: scorer name(s) (default: every scorer in the store).
        steps: step indices k (default: every step).
        fractions: fractions k/T in [0, 1] instead of steps.
        judgments: judgments file (CSV/TSV/JSONL; candidate ids = seeds); default: the stored judgments.
        judge: which judge, when the store or the file holds several.
        gold: correlate with the judge's score or its binary 'fully aligned' verdict.
        group: prompt: compare the seeds of each prompt, then average (GenAI-Bench); none: pool everything.
        model: only runs of this model name (or run id).
        skills: per-skill rows.
        ci: bootstrap 95% confidence intervals (slower).
        resamples: bootstrap resamples with --ci.
        ignore_unmatched: skip judgments that match no stored (prompt, seed) instead of failing.
        allow_partial: use a --judgments file that leaves some stored (prompt, seed) candidates unjudged (they are
            left out, with a warning) instead of failing.
        json: also write the rows as JSON to this file.
    """

    results: Path
    scorer: tuple[str, ...] | None = None
    steps: tuple[int, ...] | None = None
    fractions: tuple[float, ...] | None = None
    judgments: Path | None = None
    judge: str | None = None
    gold: Literal["score", "aligned"] = "score"
    group: Literal["prompt", "none"] = "prompt"
    model: str | None = None
    skills: bool = True
    ci: bool = False
    resamples: int = 1000
    ignore_unmatched: bool = False
    allow_partial: bool = False
    json: Path | None = None

    def __post_init__(self) -> None:
        if self.steps is not None and self.fractions is not None:
            raise InputError("--steps / --fractions: expected one of them, got both")


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def _run(args: CorrelateSettings) -> int:
    from noisyclip_metrics.evaluation.correlate import correlate, format_table
    from noisyclip_metrics.io.files import write_json

    rows = correlate(
        args.results,
        scorer=args.scorer,
        steps=args.steps,
        judgments=args.judgments,
        group=args.group,
        per_skill=args.skills,
        ci=args.ci,
        fractions=args.fractions,
        judge=args.judge,
        gold=args.gold,
        model=args.model,
        unmatched="ignore" if args.ignore_unmatched else "error",
        allow_partial=args.allow_partial,
        n_resamples=args.resamples,
    )
    print(format_table(rows), end="")
    if args.json is not None:
        write_json(
            args.json,
            {
                "results": str(args.results),
                "group": args.group,
                "gold": args.gold,
                "rows": [{k: _clean(v) for k, v in r.items()} for r in rows],
            },
        )
        print(f"wrote {len(rows)} rows to {args.json}")
    return 0


COMMANDS.register(
    "correlate",
    settings_command(
        "correlate",
        "correlate per-step scores of a results store with final-image "
        "judgments (Pearson, Spearman, Kendall, pairwise accuracy)",
        CorrelateSettings,
        _run,
        epilog="Example: noisyclip correlate --results runs/results --scorer noisyclip clip --fractions 0.25 0.5 "
        "--json corr.json",
    ),
)
