"""Issue 21's targets, measured on seeds and prompts no scorer was trained on: do the world's NoisyCLIPs beat the
training-free baselines honestly?

    python experiments/honest_targets.py [--board leaderboards/world] [--main runs/world-full/results]
                                   [--replicates runs/world-replicates] [--budget 0.5] [--n 6]

Reads what ``tools/publish_world_leaderboard.py`` leaves: the guard's report ``guard.json`` in ``--board`` (pairwise
accuracy of every scorer on the published runs and on the ``fresh-seeds`` / ``fresh-prompts`` replicates) and the
results stores (``--main`` and ``--replicates/<kind>``). Prints Markdown and writes ``targets.json`` into ``--board``:

1. **Ranking early**, per model and replicate: within-prompt pairwise accuracy at fractions 0.1-0.5 of each NoisyCLIP,
   ``clip-x0`` and ``clip-final`` (at 1.0). Targets: the best NoisyCLIP's mean over 0.2-0.5 is at least ``clip-x0``'s
   + 0.05, and at 0.3 at least 95% of ``clip-final``'s.
2. **Best-of-N at a budget** (default Best-of-6 at cost ≤ 0.5; costs from each run's recorded timing): for each
   scorer the policy (one-shot or successive halving) and step are **chosen on the published runs** and applied
   unchanged to each replicate, so nothing is tuned on the data it is scored on. The judge score of the pick against
   full-cost ``clip-final`` Best-of-N (raw ratio, 95% paired bootstrap interval over prompts) and against ``clip-x0``
   at the same budget (difference, 95% paired interval). Targets: ratio ≥ 1.00, and the difference's interval above 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from noisyclip_metrics.bon.offline import bon_rows, load_run, pick_scores
from noisyclip_metrics.evaluation.results import ResultsStore
from noisyclip_metrics.evaluation.stats import paired_means
from noisyclip_metrics.leaderboard.render import fmt

NOISYCLIPS = ("noisyclip", "noisyclip-x0")
EARLY = (0.1, 0.2, 0.3, 0.4, 0.5)
POLICIES = ("one-shot", "halving")


def _mean(values: dict[tuple[str, str, str, float], float], model: str, kind: str, scorer: str) -> float:
    """Mean over the fractions 0.2-0.5 the guard checked (the publisher has it check 0.2, 0.3, 0.4 and 0.5)."""
    got = [v for f in (0.2, 0.3, 0.4, 0.5) if (v := values.get((model, kind, scorer, f))) is not None]
    return float(np.mean(got)) if len(got) >= 2 else float("nan")


def accuracy_tables(guard: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Table 1 and its target rows from ``guard.json``."""
    values: dict[tuple[str, str, str, float], float] = {}
    for c in guard["checks"]:
        values[(c["model"], c["replicate"], c["scorer"], round(c["fraction"], 4))] = c["replicate_value"]
        values[(c["model"], "published", c["scorer"], round(c["fraction"], 4))] = c["main"]
    models = sorted({m for m, *_ in values})
    kinds = ["published", *sorted({k for _, k, *_ in values if k != "published"})]
    head = " | ".join(f"{f:g}" for f in EARLY)
    out = [f"| model | seeds / prompts | scorer | {head} |", "|---|---|---|" + "---:|" * len(EARLY)]
    targets = []
    for model in models:
        for kind in kinds:
            for scorer in (*NOISYCLIPS, "clip-x0"):
                cells = [fmt(values.get((model, kind, scorer, f))) for f in EARLY]
                out.append(f"| {model} | {kind} | {scorer} | " + " | ".join(cells) + " |")
            final = values.get((model, kind, "clip-final", 1.0))
            out.append(f"| {model} | {kind} | clip-final (at 1.0) | {fmt(final)} |" + " |" * (len(EARLY) - 1))
            means = {s: _mean(values, model, kind, s) for s in (*NOISYCLIPS, "clip-x0")}
            best = max(NOISYCLIPS, key=lambda s: means[s] if np.isfinite(means[s]) else -1.0)
            at3 = values.get((model, kind, best, 0.3))
            targets.append(
                {
                    "model": model,
                    "data": kind,
                    "best_noisyclip": best,
                    "mean_0.2_0.5": means[best],
                    "clip_x0_mean_0.2_0.5": means["clip-x0"],
                    "margin_over_clip_x0": means[best] - means["clip-x0"],
                    "at_0.3_over_clip_final": (at3 / final) if at3 is not None and final else None,
                }
            )
    rows = [
        "| model | data | best NoisyCLIP | mean 0.2-0.5 - clip-x0 (target ≥ +0.05) "
        "| at 0.3 / clip-final (target ≥ 0.95) |",
        "|---|---|---|---:|---:|",
    ]
    for t in targets:
        ok1 = "met" if t["margin_over_clip_x0"] >= 0.05 else "missed"
        r = t["at_0.3_over_clip_final"]
        ok2 = "met" if r is not None and r >= 0.95 else "missed"
        rows.append(
            f"| {t['model']} | {t['data']} | {t['best_noisyclip']} | {t['margin_over_clip_x0']:+.3f} ({ok1}) "
            f"| {fmt(r)} ({ok2}) |"
        )
    return "\n".join([*out, "", *rows]), targets


def _rows(store: ResultsStore, run_id: str, n: int) -> tuple[Any, list[dict[str, Any]]]:
    arrays = load_run(store, run_id)
    table = bon_rows(arrays, ns=[n], final_scorer=None)
    return arrays, [dict(zip(table, vals, strict=True)) for vals in zip(*table.values(), strict=True)]


def _choose(rows: list[dict[str, Any]], scorer: str, budget: float) -> dict[str, Any] | None:
    fit = [r for r in rows if r["scorer"] == scorer and r["policy"] in POLICIES and r["cost_fraction"] <= budget]
    return max(fit, key=lambda r: (r["judge_score"], -r["cost_fraction"])) if fit else None


def _same(rows: list[dict[str, Any]], choice: dict[str, Any]) -> dict[str, Any] | None:
    keys = ("scorer", "policy", "k")
    return next((r for r in rows if all(r[k] == choice[k] for k in keys)), None)


def bon_table(main: Path, replicates: dict[str, Path], n: int, budget: float) -> tuple[str, list[dict[str, Any]]]:
    """Table 2: policies chosen on ``main``, scored on each replicate (and on ``main``, in-sample, for reference)."""
    main_store = ResultsStore.open(main)
    chosen: dict[str, dict[str, dict[str, Any]]] = {}
    for run in main_store.runs():
        _, rows = _rows(main_store, run.run_id, n)
        chosen[run.model] = {s: c for s in (*NOISYCLIPS, "clip-x0") if (c := _choose(rows, s, budget)) is not None}
    head = (
        f"| model | data | scorer | policy, k (chosen on the published runs) | cost | judge score | "
        f"/ full-cost clip-final Best-of-{n} [95% CI] (target ≥ 1.00) | - clip-x0 at the same budget [95% CI] "
        "(target > 0) |"
    )
    out = [head, "|---|---|---|---|---:|---:|---:|---:|"]
    results = []
    for kind, folder in {"published (in-sample)": main, **replicates}.items():
        store = ResultsStore.open(folder)
        for run in store.runs():
            if run.model not in chosen:
                continue
            arrays, rows = _rows(store, run.run_id, n)
            final = next(
                r
                for r in rows
                if r["scorer"] == "clip-final" and r["policy"] == "one-shot" and r["k"] == r["num_steps"]
            )
            base = _same(rows, chosen[run.model]["clip-x0"]) if "clip-x0" in chosen[run.model] else None
            for scorer in NOISYCLIPS:
                choice = chosen[run.model].get(scorer)
                row = _same(rows, choice) if choice else None
                if row is None:
                    continue
                picks = pick_scores(arrays, row)
                ratio = paired_means(picks, pick_scores(arrays, final), difference=False)
                diff = paired_means(picks, pick_scores(arrays, base), difference=True) if base else (np.nan,) * 3
                results.append(
                    {
                        "model": run.model,
                        "data": kind,
                        "scorer": scorer,
                        "policy": row["policy"],
                        "k": row["k"],
                        "cost_fraction": row["cost_fraction"],
                        "judge_score": row["judge_score"],
                        "ratio": ratio,
                        "minus_clip_x0": diff,
                    }
                )
                out.append(
                    f"| {run.model} | {kind} | {scorer} | {row['policy']}, k = {row['k']} | "
                    f"{row['cost_fraction']:.3f} | {row['judge_score']:.3f} | {ratio[0]:.3f} [{ratio[1]:.3f}, "
                    f"{ratio[2]:.3f}] | {diff[0]:+.3f} [{diff[1]:+.3f}, {diff[2]:+.3f}] |"
                )
    return "\n".join(out), results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--board", type=Path, default=Path("leaderboards/world"))
    parser.add_argument("--main", type=Path, default=Path("runs/world-full/results"))
    parser.add_argument("--replicates", type=Path, default=Path("runs/world-replicates"))
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument("--n", type=int, default=6)
    args = parser.parse_args(argv)
    guard = json.loads((args.board / "guard.json").read_text(encoding="utf-8"))
    acc, acc_targets = accuracy_tables(guard)
    replicates = {k: args.replicates / k for k in ("fresh-seeds", "fresh-prompts") if (args.replicates / k).is_dir()}
    bon, bon_results = bon_table(args.main, replicates, args.n, args.budget)
    text = (
        f"## Ranking early: within-prompt pairwise accuracy\n\n{acc}\n\n## Best-of-{args.n} at cost ≤ "
        f"{args.budget:g}\n\n{bon}\n"
    )
    sys.stdout.write(text)
    doc = {
        "command": "python experiments/honest_targets.py",
        "budget": args.budget,
        "n": args.n,
        "accuracy": acc_targets,
        "bon": bon_results,
    }
    (args.board / "targets.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (args.board / "targets.md").write_text("# Issue 21's targets on fresh seeds and prompts\n\n" + text, "utf-8")


if __name__ == "__main__":
    main()
