"""Early-stopping Best-of-N on recorded runs: judge score of the pick versus cost, NoisyCLIP against the baselines.

    python experiments/bon_world.py --results runs/results [--run RUN_ID] [--n 6] [--fractions 0.3 0.4 0.5 0.6]
                              [--no-live] [--repeats 3] [--threads N]

Input: a results store written by ``noisyclip evaluate`` with scorers ``noisyclip clip clip-x0 clip-x0-decoded
clip-final`` (e.g. on a world model with the ``world-oracle`` judge). For every run it prints Markdown tables:

1. **Best-of-N, one-shot policy, at cost fractions** (default 0.3-0.6): judge score of the pick for each scorer and
   random choice, next to full-cost ``clip-final`` BoN and the oracle-best pick. The cost of a setting is
   ``(N·k + (T − k) + N·c) / (N·T)`` with ``c`` the scorer's cost per scoring in denoiser-call equivalents (x̂0
   scorers decide after the step-(k+1) call; see ``noisyclip_metrics.bon.offline``); at a budget the largest k
   whose cost fits is used. Two ratios against full-cost ``clip-final`` BoN: the raw ratio of judge scores and the
   share of its gain over random that is kept, ``(J − J_random) / (J_clip-final − J_random)``. The raw ratio comes
   with a 95% paired bootstrap interval over prompts (both picks of a prompt resampled together).
1b. **Successive halving** (schedule k, 2k, 3k... until one candidate is left; column k is its first step): the
   same tables.
1c. **Cascade** ``one-shot top-2 + clip-final``: the same at the same budgets, when the two best candidates at step
   k are both finished and ``clip-final`` picks one of them (its two scorings are counted in the cost).
2. **Successive halving vs one-shot at equal cost** (halving schedule k, 2k, 3k... until one candidate is left),
   with the difference of their judge scores and its 95% paired bootstrap interval over prompts.
2b. **Policies fitted on the recorded trajectories** (``noisyclip_metrics.bon.fitting``), for the two strongest
   scorers: the halving schedule (every schedule that fits the budget) and the calibrated threshold policy's
   settings (quantile, first step, interval; its cost is a mean over prompts), each chosen on the same prompts it is
   scored on (an optimistic upper bound) and cross-fitted (chosen, and the threshold calibrated, on half the
   prompts, scored on the other half, averaged over 20 random halvings), against one-shot with the cross-fitted
   difference's interval; the summary adds the cross-fitted policies' raw ratios to the policies table.
3. **Summary over all runs** (the README's tables): per model and scorer, the one-shot judge score at each budget
   with its raw ratio / gain kept; for the two strongest scorers every policy's raw ratio [95% CI] / gain kept, and
   their ceiling: the one-shot pick at the last step (full cost), i.e. how good a judge of the final image each is.
4. **Live overhead**: an ``EarlyBestOfN`` run of the run's own pipeline and scorers (one-shot at the 0.5 budget)
   against a full-cost run: seconds spent scoring inside the loop relative to the denoising seconds saved.

Scorer costs ``c`` are measured here, on this machine, side by side with one guided denoiser call on a batch of N
(``--no-live`` takes them from the run's recorded timing instead and skips table 3). BoN outcomes come from the
recorded trajectories (no regeneration: a survivor's trajectory is the one recorded in the full run).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import torch

from noisyclip_metrics.benchmarking import apply_threads, script_parser, timed
from noisyclip_metrics.bon.early import EarlyBestOfN
from noisyclip_metrics.bon.families import loop_adapter
from noisyclip_metrics.bon.fitting import FITTERS
from noisyclip_metrics.bon.loops import LoopSettings, advance
from noisyclip_metrics.bon.offline import (
    BON_SCHEMA,
    RunArrays,
    at_budget,
    bon_rows,
    cascade_label,
    load_run,
    load_run_models,
    pick_scores,
)
from noisyclip_metrics.bon.policies import OneShotPolicy
from noisyclip_metrics.errors import InputError
from noisyclip_metrics.evaluation.results import ResultsStore, RunInfo
from noisyclip_metrics.evaluation.stats import paired_means
from noisyclip_metrics.scoring.scorers import ScoreInputs

SCORERS = ("noisyclip", "noisyclip-x0", "clip", "clip-x0", "clip-x0-decoded")


def measure_costs(
    pipe: Any,
    scorers: dict[str, Any],
    info: RunInfo,
    n: int,
    prompt: str,
    repeats: int,
) -> dict[str, float]:
    """Seconds of one scoring of N candidates / seconds of one guided denoiser call on N candidates, per scorer."""
    _, adapter = loop_adapter(pipe)
    s = info.sampler
    settings = LoopSettings(
        num_inference_steps=s.get("num_inference_steps"),
        guidance_scale=s.get("guidance_scale"),
        height=s.get("height"),
        width=s.get("width"),
    )
    with torch.no_grad():
        state = adapter.prepare(pipe, [prompt] * n, list(range(n)), settings)
        for _ in range(state.num_steps // 2):
            advance(state, adapter.model_output(state))
        denoise = timed(lambda: adapter.model_output(state), repeats)
        output = adapter.model_output(state)
        images = adapter.decode(state)
        latents = adapter.unpack(state, state.latents)
        t = torch.full((n,), state.timestep_at(state.step))
        inputs = ScoreInputs(
            prompts=[prompt] * n,
            latents=latents,
            timesteps=t,
            scheduler=pipe.scheduler,
            model_output=adapter.unpack(state, output),
            images=images,
            step=state.step,
        )
        return {name: timed(lambda sc=sc: sc.score(inputs), repeats) / denoise for name, sc in scorers.items()}


def _fmt(x: float | None, digits: int = 4) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


CASCADE = cascade_label("one-shot", 2, "clip-final")


def paired_interval(
    arrays: RunArrays, num: dict[str, Any], den: dict[str, Any], difference: bool = False, resamples: int = 2000
) -> tuple[float, float, float]:
    """Ratio (or difference) of two rows' mean judge scores of the pick, with a 95% bootstrap interval resampling
    prompts (a prompt's two picks together); prompts that either row leaves out are dropped."""
    return paired_means(
        pick_scores(arrays, num), pick_scores(arrays, den), difference=difference, n_resamples=resamples
    )


def _gain(judge: float, random: float, final: float) -> float:
    """Share of full-cost clip-final BoN's gain over random that a judge score keeps (NaN when there is none)."""
    return (judge - random) / (final - random) if abs(final - random) > 1e-12 else float("nan")


def bon_tables(rows: list[dict[str, Any]], n: int, fractions: Sequence[float], arrays: RunArrays | None = None) -> str:
    """Tables 1, 1b, 1c and 2 (Markdown) from the BoN rows of one run (with ``arrays``: paired bootstrap intervals)."""
    rows = [r for r in rows if r["n"] == n]
    rand = next(r for r in rows if r["policy"] == "random")
    oracle = next(r for r in rows if r["policy"] == "oracle")
    final = next((r for r in rows if r["scorer"] == "clip-final" and r["policy"] == "one-shot"), None)
    jr, jf = rand["judge_score"], final["judge_score"] if final else None
    scorers = [s for s in SCORERS if any(r["scorer"] == s for r in rows)]
    out = policy_tables(rows, n, fractions, "one-shot", scorers, rand, final, arrays)
    out += [
        "",
        f"Full-cost `clip-final` BoN (cost {_fmt(final and final['cost_fraction'], 3)}): judge {_fmt(jf)}; "
        f"oracle-best pick: {oracle['judge_score']:.4f}; random: {jr:.4f} "
        f"({rand['prompts']} prompts, T = {rand['num_steps']}).",
    ]
    for policy in ("halving", CASCADE):
        if any(r["policy"] == policy for r in rows):
            out += ["", *policy_tables(rows, n, fractions, policy, scorers, rand, final, arrays)]
    out += [
        "",
        f"### Best-of-{n}: successive halving vs one-shot at equal cost (judge score; k or schedule)",
        "",
        "| scorer | cost ≤ | one-shot | halving | halving − one-shot [95% CI] |",
        "|---|---|---|---|---|",
    ]
    for s in scorers:
        for f in fractions:
            one, half = at_budget(rows, s, "one-shot", f), at_budget(rows, s, "halving", f)
            diff = "—"
            if one and half and arrays is not None:
                d, lo, hi = paired_interval(arrays, half, one, difference=True)
                diff = f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]"
            out.append(
                f"| {s} | {f:g} | "
                + (f"{one['judge_score']:.4f} (k={one['k']})" if one else "—")
                + " | "
                + (f"{half['judge_score']:.4f} ({half['schedule']})" if half else "—")
                + f" | {diff} |"
            )
    return "\n".join(out)


def _label(fit: Any) -> str:
    """A fitted policy's settings, short (as :func:`_choice` writes a cross-fit's)."""
    if hasattr(fit, "schedule"):
        return _choice(fit.schedule)
    return _choice((float(fit.calibration.quantile), fit.min_step, fit.every))


def _choice(choice: tuple) -> str:
    """A cross-fit choice (a schedule, or quantile / min_step / every), short."""
    if len(choice) == 3 and isinstance(choice[0], float):
        return f"q {choice[0]:g}, from {choice[1]}, every {choice[2]}"
    return ",".join(map(str, choice))


FITTED = {f"{name}, fitted": fns for name, fns in FITTERS.items()}


def fitted_rows(
    rows: list[dict[str, Any]],
    arrays: RunArrays,
    n: int,
    fractions: Sequence[float],
    costs: dict[str, float] | None,
    scorers: Sequence[str] = ("noisyclip-x0", "clip-x0-decoded"),
) -> list[dict[str, Any]]:
    """Per scorer, fitted policy and budget: one-shot, the in-sample best settings and the cross-fitted policy, with
    the cross-fitted pick's difference to one-shot and its raw ratio to full-cost clip-final (95% paired intervals)."""
    final = next((r for r in rows if r["n"] == n and r["scorer"] == "clip-final" and r["policy"] == "one-shot"), None)
    rand = next(r for r in rows if r["n"] == n and r["policy"] == "random")
    out = []
    for s in scorers:
        if s not in arrays.scores:
            continue
        for policy, (fit_fn, cross_fn) in FITTED.items():
            for f in fractions:
                try:
                    best = fit_fn(arrays, s, n, f, costs=costs)
                    cross = cross_fn(arrays, s, n, f, costs=costs)
                except InputError:  # nothing fits the budget, or too few prompts to split
                    continue
                one = at_budget(rows, s, "one-shot", f)
                entry = {
                    "scorer": s,
                    "policy": policy,
                    "budget": f,
                    "one": one,
                    "best": best,
                    "cross": cross,
                    "diff": None,
                    "ratio": None,
                }
                if one is not None:
                    entry["diff"] = paired_means(cross.values, pick_scores(arrays, one), difference=True)
                if final is not None:
                    v, lo, hi = paired_means(cross.values, pick_scores(arrays, final))
                    entry["ratio"] = (v, lo, hi, _gain(cross.judge_score, rand["judge_score"], final["judge_score"]))
                out.append(entry)
    return out


def fitted_table(entries: list[dict[str, Any]], n: int) -> str:
    """Table 2b (Markdown) from :func:`fitted_rows`."""
    out = [
        f"### Best-of-{n}: halving schedules and threshold settings fitted on the recorded trajectories "
        "(judge score; settings; cost)",
        "",
        "| scorer | policy | cost ≤ | one-shot | in-sample best (upper bound) | cross-fitted (most chosen) | "
        "cross-fitted − one-shot [95% CI] |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        one, best, cross = e["one"], e["best"], e["cross"]
        diff = "—" if e["diff"] is None else "{:+.4f} [{:+.4f}, {:+.4f}]".format(*e["diff"])
        out.append(
            f"| {e['scorer']} | {e['policy']} | {e['budget']:g} | "
            + (f"{one['judge_score']:.4f} (k={one['k']})" if one else "—")
            + " | "
            + f"{best.judge_score:.4f} ({_label(best)}; {best.cost_fraction:.3f}) | "
            + f"{cross.judge_score:.4f} ({_choice(next(iter(cross.choices)))}; {cross.cost_fraction:.3f}) | "
            + f"{diff} |"
        )
    return "\n".join(out)


def policy_tables(
    rows: list[dict[str, Any]],
    n: int,
    fractions: Sequence[float],
    policy: str,
    scorers: Sequence[str],
    rand: dict[str, Any],
    final: dict[str, Any] | None,
    arrays: RunArrays | None = None,
) -> list[str]:
    """Judge score of the pick at each budget for one policy, and its two ratios against full-cost clip-final (with
    ``arrays``: the raw ratio's paired bootstrap interval)."""
    jr, jf = rand["judge_score"], final["judge_score"] if final else None
    head = "| scorer | " + " | ".join(f"cost ≤ {f:g}: judge (k)" for f in fractions) + " |"
    out = [f"### Best-of-{n}, {policy}: judge score of the pick", "", head, "|" + "---|" * (len(fractions) + 1)]
    ci = " [95% CI]" if arrays is not None else ""
    ratio = [
        "",
        f"Against full-cost `clip-final` BoN: raw ratio of judge scores{ci} / share of its gain over random kept",
        "",
        "| scorer | " + " | ".join(f"cost ≤ {f:g}" for f in fractions) + " |",
        "|" + "---|" * (len(fractions) + 1),
    ]
    for s in scorers:
        cells, rcells = [], []
        for f in fractions:
            r = at_budget(rows, s, policy, f)
            cells.append("—" if r is None else f"{r['judge_score']:.4f} ({r['k']})")
            rcells.append("—" if final is None else _ratio_cell(arrays, r, final, jr))
        out.append(f"| {s} | " + " | ".join(cells) + " |")
        ratio.append(f"| {s} | " + " | ".join(rcells) + " |")
    out.append(f"| random (cost {rand['cost_fraction']:.2f}) | " + " | ".join(f"{jr:.4f}" for _ in fractions) + " |")
    ratio.append("| random | " + " | ".join("—" if jf is None else f"{jr / jf:.3f} / 0.00" for _ in fractions) + " |")
    return out + ratio


def _ratio_cell(arrays: RunArrays | None, row: dict[str, Any] | None, final: dict[str, Any], jr: float) -> str:
    """``raw / gain`` of one row against full-cost clip-final, with the raw ratio's paired interval when ``arrays``
    are given (``—`` when no row fits)."""
    if row is None:
        return "—"
    jf = final["judge_score"]
    gain = _gain(row["judge_score"], jr, jf)
    ci = ""
    if arrays is not None:
        _, lo, hi = paired_interval(arrays, row, final)
        ci = f" [{lo:.3f}, {hi:.3f}]"
    return f"{row['judge_score'] / jf:.3f}{ci} / {gain:.2f}"


def summary_tables(
    runs: Sequence[tuple[str, list[dict[str, Any]], RunArrays]],
    n: int,
    fractions: Sequence[float],
    strongest: Sequence[str] = ("noisyclip-x0", "clip-x0-decoded"),
    fits: Sequence[tuple[str, list[dict[str, Any]]]] = (),
) -> str:
    """Table 3: every run side by side (one-shot for every scorer; every policy for the ``strongest`` scorers; with
    ``fits`` (model, :func:`fitted_rows`): the cross-fitted policies too, and against one-shot)."""
    cost_head = " | ".join(f"cost ≤ {f:g}" for f in fractions)
    one = [
        f"### Summary: Best-of-{n}, one-shot, judge score of the pick (raw ratio / share of the gain kept)",
        "",
        f"| model | scorer | {cost_head} |",
        "|---|---|" + "---|" * len(fractions),
    ]
    pol = [
        f"### Summary: Best-of-{n}, policies of the strongest scorers (raw ratio [95% CI] / share of the gain kept)",
        "",
        f"| model | scorer | policy | {cost_head} |",
        "|---|---|---|" + "---|" * len(fractions),
    ]
    ceiling = [
        f"### Summary: each scorer's own ceiling, Best-of-{n} picked at the last step k = T (cost >= 1): raw "
        "ratio [95% CI] / share of the gain kept",
        "",
        "| model | " + " | ".join(strongest) + " |",
        "|---|" + "---|" * len(strongest),
    ]
    for model, all_rows, arrays in runs:
        rows = [r for r in all_rows if r["n"] == n]
        rand = next(r for r in rows if r["policy"] == "random")
        oracle = next(r for r in rows if r["policy"] == "oracle")
        final = next((r for r in rows if r["scorer"] == "clip-final" and r["policy"] == "one-shot"), None)
        if final is None:
            continue
        jr = rand["judge_score"]
        for s in [s for s in SCORERS if any(r["scorer"] == s for r in rows)]:
            cells = []
            for f in fractions:
                r = at_budget(rows, s, "one-shot", f)
                ratio = _ratio_cell(None, r, final, jr)
                cells.append("—" if r is None else f"{r['judge_score']:.3f} ({ratio})")
            one.append(f"| {model} | {s} | " + " | ".join(cells) + " |")
        one.append(
            f"| {model} | reference: random {jr:.3f}, full-cost `clip-final` BoN {final['judge_score']:.3f}, "
            f"oracle-best pick {oracle['judge_score']:.3f} |" + " |" * len(fractions)
        )
        for s in strongest:
            for policy in ("one-shot", "halving", CASCADE):
                if not any(r["scorer"] == s and r["policy"] == policy for r in rows):
                    continue
                cells = [_ratio_cell(arrays, at_budget(rows, s, policy, f), final, jr) for f in fractions]
                pol.append(f"| {model} | {s} | {policy} | " + " | ".join(cells) + " |")
            for policy in FITTED:
                entries = {
                    e["budget"]: e for e in dict(fits).get(model, []) if (e["scorer"], e["policy"]) == (s, policy)
                }
                if entries:
                    cells = [_fitted_cell(entries.get(f)) for f in fractions]
                    pol.append(f"| {model} | {s} | {policy} (cross-fitted) | " + " | ".join(cells) + " |")
        last = [
            next((r for r in rows if r["scorer"] == s and r["policy"] == "one-shot" and r["k"] == r["num_steps"]), None)
            for s in strongest
        ]
        ceiling.append(f"| {model} | " + " | ".join(_ratio_cell(arrays, r, final, jr) for r in last) + " |")
    out = [*one, "", *pol, "", *ceiling]
    if fits:
        out += [
            "",
            f"### Summary: Best-of-{n}, fitted policies minus one-shot at equal cost: cross-fitted [95% CI] "
            "(in-sample best, an upper bound)",
            "",
            f"| model | scorer | policy | {cost_head} |",
            "|---|---|---|" + "---|" * len(fractions),
        ]
        for model, entries in fits:
            for s, policy in dict.fromkeys((e["scorer"], e["policy"]) for e in entries):
                cells = []
                for f in fractions:
                    e = next((e for e in entries if (e["scorer"], e["policy"], e["budget"]) == (s, policy, f)), None)
                    if e is None or e["one"] is None or e["diff"] is None:
                        cells.append("—")
                        continue
                    d, lo, hi = e["diff"]
                    bound = e["best"].judge_score - e["one"]["judge_score"]
                    cells.append(f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}] ({bound:+.3f})")
                out.append(f"| {model} | {s} | {policy} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _fitted_cell(entry: dict[str, Any] | None) -> str:
    """``raw [CI] / gain (mean cost)`` of a cross-fitted policy against full-cost clip-final."""
    if entry is None or entry["ratio"] is None:
        return "—"
    v, lo, hi, gain = entry["ratio"]
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}] / {gain:.2f} (cost {entry['cross'].cost_fraction:.2f})"


def overhead_table(pipe: Any, scorers: dict[str, Any], info: RunInfo, n: int, prompt: str, repeats: int = 1) -> str:
    """Table 3: scoring seconds inside the loop vs denoising seconds saved (one-shot at the 0.5 budget; medians)."""
    s = info.sampler
    kwargs = {
        "num_inference_steps": s.get("num_inference_steps"),
        "guidance_scale": s.get("guidance_scale"),
        "height": s.get("height"),
        "width": s.get("width"),
    }
    steps = int(s.get("num_inference_steps") or 20)
    k = max(k for k in range(steps + 1) if (n * k + steps - k) <= 0.5 * n * steps)
    out = [
        f"### Live overhead: Best-of-{n}, one-shot at k = {k} of T = {steps}, `{type(pipe).__name__}`",
        "",
        "| scorer | denoise s (early) | denoise s (full) | saved s | scoring s | scoring / saved |",
        "|---|---|---|---|---|---|",
    ]
    for name, scorer in scorers.items():
        if name == "clip-final":
            continue
        runs = [
            (
                EarlyBestOfN(pipe, scorer, OneShotPolicy(k=steps))(prompt, n=n, **kwargs).seconds,
                EarlyBestOfN(pipe, scorer, OneShotPolicy(k=k))(prompt, n=n, **kwargs).seconds,
            )
            for _ in range(max(1, repeats))
        ]
        full = statistics.median(f["denoise"] for f, _ in runs)
        early = statistics.median(e["denoise"] for _, e in runs)
        sc = statistics.median(e["score"] for _, e in runs)
        saved = full - early
        out.append(
            f"| {name} | {early:.3f} | {full:.3f} | {saved:.3f} | {sc:.3f} | "
            f"{sc / saved if saved > 0 else float('nan'):.3f} |"
        )
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> None:
    parser = script_parser(__doc__, repeats=3)
    parser.add_argument("--results", required=True, help="results store (noisyclip evaluate --out)")
    parser.add_argument("--run", default=None, help="one run id (default: every run)")
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6])
    parser.add_argument("--no-live", action="store_true", help="scorer costs from the run's timing; no table 3")
    args = parser.parse_args(argv)
    apply_threads(args)
    store = ResultsStore.open(args.results)
    runs = [store.run(args.run)] if args.run else store.runs()
    done: list[tuple[str, list[dict[str, Any]], RunArrays]] = []
    fits: list[tuple[str, list[dict[str, Any]]]] = []
    for info in runs:
        prompt = store.prompts(info.run_id)["prompt"][0].as_py()
        print(f"## {info.model} on {info.benchmark} (run {info.run_id}, judge {info.judge.get('name')})\n")
        costs, live = None, None
        if not args.no_live:
            live = load_run_models(info, [*SCORERS, "clip-final"])
            costs = measure_costs(*live, info, args.n, prompt, args.repeats)
            print(
                "Scorer cost per scoring, in denoiser-call equivalents measured here: "
                + ", ".join(f"{k} {v:.3f}" for k, v in costs.items())
                + "\n"
            )
        arrays = load_run(store, info.run_id)  # read once: the BoN rows and their paired intervals both need it
        rows = pa.table(bon_rows(arrays, [args.n], costs), schema=BON_SCHEMA).to_pylist()
        if not any(r["n"] == args.n for r in rows):
            print(f"(no prompt has {args.n} judged seeds)\n")
            continue
        print(bon_tables(rows, args.n, args.fractions, arrays) + "\n")
        fitted = fitted_rows(rows, arrays, args.n, args.fractions, costs)
        if fitted:
            print(fitted_table(fitted, args.n) + "\n")
        done.append((info.model, rows, arrays))
        fits.append((info.model, fitted))
        if live is not None:
            scorers = {k: v for k, v in live[1].items() if k in SCORERS}
            print(overhead_table(live[0], scorers, info, args.n, prompt, args.repeats) + "\n")
    if done:
        print(summary_tables(done, args.n, args.fractions, fits=fits) + "\n")


if __name__ == "__main__":
    main()
