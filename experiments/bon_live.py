"""Early-stopping Best-of-N live against the offline BoN of the same run: the same picks, the same judge scores.

    python experiments/bon_live.py --results runs/world-full/results [--prompts 40] [--batch-prompts 8] [--scorer S]
                             [--n 6] [--budget 0.5]

The BoN tables of the README are computed offline, from the trajectories an evaluation run recorded: a survivor's
trajectory is the same as in the full run, so no regeneration is needed. This script checks that claim end to end
on real world models. For every run of the store it takes the first ``--prompts`` prompts and the run's first N
seeds, and runs ``EarlyBestOfN.run_batch`` live (``--batch-prompts`` prompts per batch) with

* the one-shot and the halving row that the offline BoN picks at ``--budget`` for ``--scorer``, and
* full-cost ``clip-final`` BoN (one-shot at k = T), the reference of the ratios (``--no-reference`` skips it);

then judges every chosen image with the run's judge, and prints per policy: how many live picks are the offline
pick's seed, the largest difference between a live pick's judge score and the recorded judge score of the same seed
(its image is the full run's image), the mean judge score live and offline over the same prompts, and the denoiser
calls per prompt live against the offline plan's count.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from noisyclip_metrics.bon.early import EarlyBestOfN
from noisyclip_metrics.bon.offline import (
    at_budget,
    bon_rows,
    load_run,
    load_run_models,
    plan_picks,
    plan_scores,
    reads_x0,
)
from noisyclip_metrics.bon.policies import (
    HalvingPolicy,
    OneShotPolicy,
    Policy,
    halving_counts,
    schedule_cost,
)
from noisyclip_metrics.evaluation.judges.live import build_judge
from noisyclip_metrics.evaluation.results import ResultsStore


def policies(
    rows: dict[str, list], scorer: str, n: int, budget: float, steps: int, reference: bool = True
) -> list[tuple[str, str, Policy]]:
    """(label, scorer, live policy) of the offline rows at the budget, and full-cost ``clip-final`` BoN unless not
    ``reference``."""
    table = [dict(zip(rows, values, strict=True)) for values in zip(*rows.values(), strict=True)]
    table = [r for r in table if r["n"] == n and r["m"] == 1]
    out = []
    for name in ("one-shot", "halving"):
        row = at_budget(table, scorer, name, budget)
        if row is None:
            continue
        schedule = tuple(int(k) for k in row["schedule"].split(","))
        policy = OneShotPolicy(k=schedule[0]) if name == "one-shot" else HalvingPolicy(schedule)
        out.append((f"{name} {row['schedule']} (cost {row['cost_fraction']:.2f})", scorer, policy))
    if reference:
        out.append(("full-cost BoN (k = T)", "clip-final", OneShotPolicy(k=steps)))
    return out


def decisions_of(policy: Policy, n: int, steps: int) -> list[tuple[int, int]]:
    """The (step, survivors) plan of a one-shot or halving policy, as the offline BoN simulates it."""
    if isinstance(policy, OneShotPolicy):
        return [(policy.k, policy.m)]
    # an offline halving schedule collapsed at T is shorter than halving_counts: the live policy stops halving there
    return list(zip(policy.schedule, halving_counts(n, policy.m), strict=False))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", required=True, type=Path)
    parser.add_argument("--prompts", type=int, default=40, help="first P prompts of each run (default: 40)")
    parser.add_argument("--batch-prompts", type=int, default=8, help="prompts per live batch (default: 8)")
    parser.add_argument("--scorer", default="noisyclip-x0")
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument(
        "--no-reference",
        action="store_true",
        help="skip full-cost clip-final BoN (it does not depend on --scorer: after a scorer changes, "
        "only the scorer's rows need rerunning)",
    )
    args = parser.parse_args(argv)

    store = ResultsStore.open(args.results)
    print(
        f"Best-of-{args.n} live (EarlyBestOfN.run_batch, {args.batch_prompts} prompts per batch) against the offline "
        f"BoN of the same run, first {args.prompts} prompts, the run's first {args.n} seeds\n"
    )
    print(
        "| model | policy | picks = offline | max abs(live judge - recorded judge) | judge score live / offline | "
        "denoiser calls / prompt live / offline | live s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for info in store.runs():
        arrays = load_run(store, info.run_id)
        steps, n = arrays.num_steps, args.n
        prow, pcol = arrays.groups(n)
        prow, pcol = prow[: args.prompts], pcol[: args.prompts]
        texts = dict(zip(*(store.prompts(info.run_id)[c].to_pylist() for c in ("prompt_id", "prompt")), strict=True))
        prompts = [texts[arrays.prompt_ids[p]] for p in prow]
        pipe, scorers = load_run_models(info, [args.scorer, "clip-final"])
        judge = build_judge(info.judge["source"], clip=info.scorers.get("clip-final", {}).get("model"))
        if not (pcol == pcol[0]).all():
            raise SystemExit("the run's prompts have different seeds; this script needs the same N for all")
        column = {int(arrays.seeds[j]): int(j) for j in pcol[0]}  # seed -> its judge column
        seeds = list(column)
        rows = bon_rows(arrays, ns=[n])
        sampler = {k: info.sampler.get(k) for k in ("guidance_scale", "height", "width")}
        for label, name, policy in policies(rows, args.scorer, n, args.budget, steps, not args.no_reference):
            plan = decisions_of(policy, n, steps)
            offline, offline_judge = (f(arrays, name, n, plan)[: len(prow)] for f in (plan_picks, plan_scores))
            bon = EarlyBestOfN(pipe, scorers[name], policy)
            live_seeds, live_judge, calls, t0 = [], [], 0, time.perf_counter()
            for start in range(0, len(prompts), args.batch_prompts):
                chunk = prompts[start : start + args.batch_prompts]
                with torch.no_grad():
                    batch = bon.run_batch(chunk, n=n, seeds=seeds, num_inference_steps=steps, **sampler)
                live_seeds += [r.seeds[0] for r in batch]
                live_judge += judge.judge(chunk, torch.cat([r.images for r in batch]))
                calls += batch.denoiser_evals
            seconds = time.perf_counter() - t0
            recorded = np.array([arrays.judge[p, column[s]] for p, s in zip(prow, live_seeds, strict=True)])
            same = int(sum(int(a) == int(b) for a, b in zip(live_seeds, offline, strict=True)))
            plan_calls = schedule_cost(n, steps, plan, needs_model_output=reads_x0(info, name))[0]
            print(
                f"| {info.model} | {name} {label} | {same} / {len(prompts)} | "
                f"{float(np.abs(np.array(live_judge) - recorded).max()):.1e} | "
                f"{np.mean(live_judge):.3f} / {offline_judge.mean():.3f} | {calls / len(prompts):.1f} / {plan_calls} | "
                f"{seconds:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
