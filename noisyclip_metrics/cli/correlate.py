"""``noisyclip correlate``: per-step scores of a results store against final-image judgments (table and JSON)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from noisyclip_metrics.cli import COMMANDS, Command


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", required=True, type=Path, help="results store folder (written by noisyclip evaluate)")
    p.add_argument("--scorer", nargs="+", default=None, help="scorer name(s) (default: every scorer in the store)")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--steps", type=int, nargs="+", default=None, help="step indices k (default: every step)")
    when.add_argument("--fractions", type=float, nargs="+", default=None, help="fractions k/T in [0, 1] instead")
    p.add_argument(
        "--judgments",
        type=Path,
        default=None,
        help="judgments file (CSV/TSV/JSONL; candidate ids = seeds); default: the stored judgments",
    )
    p.add_argument("--judge", default=None, help="which judge, when the store or the file holds several")
    p.add_argument(
        "--gold",
        choices=["score", "aligned"],
        default="score",
        help="correlate with the judge's score (default) or its binary 'fully aligned' verdict",
    )
    p.add_argument(
        "--group",
        choices=["prompt", "none"],
        default="prompt",
        help="prompt: compare the seeds of each prompt, then average (GenAI-Bench); none: pool everything",
    )
    p.add_argument("--model", default=None, help="only runs of this model name (or run id)")
    p.add_argument("--skills", action=argparse.BooleanOptionalAction, default=True, help="per-skill rows (default on)")
    p.add_argument("--ci", action="store_true", help="bootstrap 95%% confidence intervals (slower)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples with --ci")
    p.add_argument(
        "--ignore-unmatched",
        action="store_true",
        help="skip judgments that match no stored (prompt, seed) instead of failing",
    )
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="use a --judgments file that leaves some stored (prompt, seed) candidates unjudged (they are "
        "left out, with a warning) instead of failing",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON to this file")
    p.epilog = (
        "Example: noisyclip correlate --results runs/results --scorer noisyclip clip --fractions 0.25 0.5 "
        "--json corr.json"
    )


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def _run(args: argparse.Namespace) -> int:
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
    Command(
        "correlate",
        "correlate per-step scores of a results store with final-image "
        "judgments (Pearson, Spearman, Kendall, pairwise accuracy)",
        _configure,
        _run,
    ),
)
