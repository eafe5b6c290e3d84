"""Budget-matched search live against its offline replay: the same picks, the same judge scores, the same calls.

    python experiments/search_live.py --results runs/world-search/results [--budgets 3 6] [--prompts 40]
                                      [--batch-prompts 4] [--out leaderboards/world/search-live.json]

The search tables (``noisyclip bon search``) are replayed from recorded trajectories: a survivor's trajectory is the
recorded one, so nothing is regenerated. This script checks that claim end to end on the recorded runs' own models.
For every run of the store and every budget it takes the scorer and plan that
:func:`~noisyclip_metrics.bon.search.fit_search` chooses on all the run's prompts, and runs it live on the first
``--prompts`` prompts with the run's first ``n`` seeds (``EarlyBestOfN.run_batch``, a ``FunnelPolicy`` or
``OneShotPolicy``, ``clip-final`` picking among a cascade's survivors), then judges every pick with the run's judge.
It prints, per run and budget: how many live picks are the replay's seed, the largest difference between a live
pick's judge score and the recorded judge score of the same seed, the mean judge score live and replayed, and the
denoiser calls per prompt live against the plan's count; with ``--out``, the same as JSON.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from noisyclip_metrics.bon.early import EarlyBestOfN
from noisyclip_metrics.bon.offline import load_run, load_run_models, reads_x0
from noisyclip_metrics.bon.policies import schedule_cost
from noisyclip_metrics.bon.search import SearchSpace, fit_search
from noisyclip_metrics.evaluation.judges.live import build_judge
from noisyclip_metrics.evaluation.results import ResultsStore
from noisyclip_metrics.io.files import write_json


def check_run(
    store: ResultsStore, run_id: str, budgets: list[float], prompts: int, batch_prompts: int, max_n: int | None
) -> list[dict[str, Any]]:
    """Live against replay for one run, one row per budget."""
    arrays = load_run(store, run_id)
    info, steps = arrays.info, arrays.num_steps
    judged = (~np.isnan(arrays.judge)).sum(axis=1)
    space = SearchSpace(arrays, max_n=max_n or int(judged.min()))
    texts = dict(zip(*(store.prompts(run_id)[c].to_pylist() for c in ("prompt_id", "prompt")), strict=True))
    take = np.arange(min(prompts, space.prompts))
    chosen = {b: fit_search(space, b) for b in budgets}
    pipe, scorers = load_run_models(info, sorted({f.scorer for f in chosen.values()} | {"clip-final"}))
    judge = build_judge(info.judge["source"], clip=info.scorers.get("clip-final", {}).get("model"))
    sampler = {k: info.sampler.get(k) for k in ("guidance_scale", "height", "width")}
    out = []
    for budget, fit in chosen.items():
        plan = fit.plan
        seeds = [int(s) for s in np.asarray(arrays.seeds)[space.columns[0, : plan.n]]]
        if not (space.columns[:, : plan.n] == space.columns[0, : plan.n]).all():
            raise SystemExit("the run's prompts have different seeds; this script needs the same seeds for all")
        final = scorers["clip-final"] if plan.cascade else None
        bon = EarlyBestOfN(pipe, scorers[fit.scorer], plan.policy(), final_scorer=final)
        prompt_texts = [texts[arrays.prompt_ids[space.rows[i]]] for i in take]
        live_seeds, live_judge, calls, t0 = [], [], 0, time.perf_counter()
        for start in range(0, len(take), batch_prompts):
            chunk = prompt_texts[start : start + batch_prompts]
            with torch.no_grad():
                batch = bon.run_batch(chunk, n=plan.n, seeds=seeds, num_inference_steps=steps, **sampler)
            live_seeds += [int(r.seeds[0]) for r in batch]
            live_judge += [float(v) for v in judge.judge(chunk, torch.cat([r.images for r in batch]))]
            calls += batch.denoiser_evals
        replay_seeds = space.pick_seeds(fit.scorer, plan)[take]
        replay_judge = space.values(fit.scorer, plan)[take]
        column = {int(s): j for j, s in enumerate(arrays.seeds)}
        recorded = np.array([arrays.judge[space.rows[i], column[s]] for i, s in zip(take, live_seeds, strict=True)])
        plan_calls = schedule_cost(plan.n, steps, plan.decisions, needs_model_output=reads_x0(info, fit.scorer))[0]
        out.append(
            {
                "model": info.model,
                "run_id": run_id,
                "budget": budget,
                "scorer": fit.scorer,
                "plan": plan.label,
                "prompts": len(take),
                "same_picks": int(sum(a == b for a, b in zip(live_seeds, replay_seeds, strict=True))),
                "max_judge_difference": float(np.abs(np.array(live_judge) - recorded).max()),
                "judge_live": float(np.mean(live_judge)),
                "judge_replay": float(np.mean(replay_judge)),
                "calls_per_prompt_live": calls / len(take),
                "calls_per_prompt_plan": plan_calls,
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", required=True, type=Path)
    parser.add_argument("--budgets", type=float, nargs="+", default=[3.0, 6.0])
    parser.add_argument("--prompts", type=int, default=40, help="first P prompts of each run (default: 40)")
    parser.add_argument("--batch-prompts", type=int, default=4, help="prompts per live batch (default: 4)")
    parser.add_argument("--max-n", type=int, default=None, help="candidates a plan may start (default: all seeds)")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)

    store = ResultsStore.open(args.results)
    rows = []
    print(
        "| model | budget | scorer: plan | picks = replay | max abs(live judge - recorded) | judge live / replay | "
        "calls per prompt live / plan | live s |\n|---|---:|---|---:|---:|---:|---:|---:|"
    )
    for info in store.runs():
        for r in check_run(store, info.run_id, args.budgets, args.prompts, args.batch_prompts, args.max_n):
            rows.append(r)
            print(
                f"| {r['model']} | {r['budget']:g} | {r['scorer']}: {r['plan']} | {r['same_picks']} / {r['prompts']} | "
                f"{r['max_judge_difference']:.1e} | {r['judge_live']:.3f} / {r['judge_replay']:.3f} | "
                f"{r['calls_per_prompt_live']:.1f} / {r['calls_per_prompt_plan']} | {r['seconds']:.1f} |",
                flush=True,
            )
    if args.out is not None:
        write_json(args.out, {"results": args.results.name, "rows": rows})


if __name__ == "__main__":
    main()
