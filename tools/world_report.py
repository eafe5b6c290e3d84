"""The built-in world's measurement tables, from a finished demo's leaderboard: printed, or written as the generated
results page and the README's headline table.

    python tools/world_report.py [--leaderboard leaderboards/world/leaderboard.json]
                                 [--build noisyclip_metrics/world/weights/BUILD.json]
                                 [--results runs/world-full/results]
    python tools/world_report.py --write     # docs/results/world.md and the README block from leaderboards/world/

``--write`` regenerates ``docs/results/world.md`` (every table below, the leakage guard's verdict and issue 21's
targets from ``guard.json`` / ``targets.md`` beside the leaderboard) and the headline table between the
``<!-- world-results -->`` markers of ``README.md``; ``tests/world/test_world_report.py`` fails when either differs
from what the committed leaderboard gives, so no figure there is typed by hand.

Prints Markdown tables: the VAE, the world CLIP as a judge, every diffusion model's oracle TIFA score and fully-aligned
rate (overall and per skill), each scorer's within-prompt pairwise accuracy against the oracle at step fractions
0.1 ... 1.0 (95% bootstrap intervals over prompts), the earliest fraction within 10% of the final accuracy, and each
scorer's cost per candidate and step next to one denoiser step, and the evaluation runner's throughput per model.
With ``--results`` (the results store the leaderboard was built from): GenAI-Bench's basic and advanced groups
stratified by whether a prompt has a spatial relation, and the advanced rate standardised to the basic group's
relation share (95% bootstrap intervals, prompts resampled within each cell).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

from noisyclip_metrics.evaluation.benchmarks import SKILL_GROUPS

ROOT = Path(__file__).resolve().parents[1]
FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
SCORERS = ("noisyclip", "noisyclip-x0", "clip", "clip-x0", "clip-x0-decoded")


def _point(curve: list[dict[str, Any]], fraction: float) -> dict[str, Any] | None:
    return min(curve, key=lambda p: abs(p["fraction"] - fraction)) if curve else None


def _fmt(v: Any, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _ci(obj: dict[str, Any], key: str) -> str:
    if obj.get(key) is None:
        return "–"
    return f"{obj[key]:.3f} [{obj.get(key + '_low', float('nan')):.2f}, {obj.get(key + '_high', float('nan')):.2f}]"


def build_tables(build: dict[str, Any]) -> None:
    m = build["metrics"]
    vae, clip = m["vae"], m["clip"]
    print("| VAE (4x16x16 latents from 32x32 images) | value |\n|---|---:|")
    print(f"| reconstruction PSNR (dB) | {vae['psnr']:.1f} |")
    print(f"| linear preview R² (held-out images, at latent resolution) | {vae['preview_r2']:.4f} |")
    print(f"| oracle agreement, originals vs reconstructions | {vae['oracle_agreement']:.3f} |\n")
    print("| world CLIP on clean renders | value |\n|---|---:|")
    print(
        f"| top-1 caption retrieval among the 400 benchmark captions (oracle-correct) | {clip['top1_retrieval']:.3f} |"
    )
    for key in sorted(k for k in clip if k.startswith("negatives/") and k != "negatives/min"):
        print(f"| true caption preferred over a hard negative: {key.split('/')[1]} | {clip[key]:.3f} |")
    print()


def model_tables(doc: dict[str, Any]) -> None:
    present = {s for m in doc["models"] for s in m["skills"]}  # GenAI-Bench's skill groups first, then the skills
    skills = [g for g in SKILL_GROUPS if g in present] + sorted(present - set(SKILL_GROUPS))
    print("| model | prompts x seeds | oracle TIFA score | fully aligned | mixed seeds | " + " | ".join(skills) + " |")
    print("|---|---:|---:|---:|---:|" + "---:|" * len(skills))
    for m in doc["models"]:
        per = " | ".join(_fmt(m["skills"].get(s, {}).get("aligned_rate"), 2) for s in skills)
        print(
            f"| {m['name']} | {m['num_prompts']} x {len(m['seeds'])} | {_ci(m, 'final_judge_score')} | "
            f"{_ci(m, 'aligned_rate')} | {_ci(m, 'mixed_rate')} | {per} |"
        )
    print(
        "\n(mixed seeds: share of the prompts with both aligned and misaligned seeds, where choosing among seeds "
        "matters; per-skill columns: fully-aligned rate of the prompts with that skill; `basic`: prompts with basic "
        "skills only, `advanced`: with at least one advanced skill, GenAI-Bench's two groups)\n"
    )
    if any(g in m["skills"] for m in doc["models"] for g in SKILL_GROUPS):
        heads = (f"{g}: prompts | {g}: oracle TIFA score | {g}: fully aligned" for g in SKILL_GROUPS)
        print("| model | " + " | ".join(heads) + " |")
        print("|---|" + "---:|---:|---:|" * len(SKILL_GROUPS))
        for m in doc["models"]:
            cells = []
            for g in SKILL_GROUPS:
                block = m["skills"].get(g, {})
                cells += [
                    str(block.get("num_prompts", "–")),
                    _ci(block, "final_judge_score"),
                    _ci(block, "aligned_rate"),
                ]
            print(f"| {m['name']} | " + " | ".join(cells) + " |")
        print()


def curve_tables(doc: dict[str, Any]) -> None:
    for m in doc["models"]:
        final = m["curves"].get("clip-final", [])
        print(
            f"**{m['name']}**: within-prompt pairwise accuracy against the oracle's TIFA score (95% CI); "
            f"frozen CLIP on the final image (clip-final): {_ci(final[-1], 'pairwise_accuracy') if final else '–'}\n"
        )
        print("| scorer | " + " | ".join(f"{f:.1f}" for f in FRACTIONS) + " | earliest within 10% |")
        print("|---|" + "---:|" * (len(FRACTIONS) + 1))
        for s in SCORERS:
            curve = m["curves"].get(s)
            if not curve:
                continue
            cells = []
            for f in FRACTIONS:
                p = _point(curve, f)
                low, high = p["pairwise_accuracy_low"], p["pairwise_accuracy_high"]
                cells.append(f"{p['pairwise_accuracy']:.3f} [{low:.2f}, {high:.2f}]")
            print(f"| {s} | " + " | ".join(cells) + f" | {_fmt(m['earliest_fraction'].get(s), 2)} |")
        print()


def cost_table(doc: dict[str, Any]) -> None:
    print(
        "| model | denoiser step (ms / candidate) | "
        + " | ".join(f"{s} (ms / candidate / step)" for s in SCORERS)
        + " |"
    )
    print("|---|---:|" + "---:|" * len(SCORERS))
    for run in doc["provenance"]:
        t = run["timing"]
        cand, steps = t["candidates"], t["steps"]
        den = 1000 * t["denoise_seconds"] / (cand * steps)
        cells = [
            _fmt(1000 * t[f"score_seconds/{s}"] / (cand * (steps + 1)), 2) if f"score_seconds/{s}" in t else "–"
            for s in SCORERS
        ]
        print(f"| {run['model']} | {den:.2f} | " + " | ".join(cells) + " |")
    print(
        "\n(denoiser time includes classifier-free guidance and the final VAE decode; scoring time is per scorer "
        "call on a batch, divided by candidates x (T + 1) steps)\n"
    )


def throughput_table(doc: dict[str, Any]) -> None:
    print("| model | candidates / s | denoising s | scoring s (noisyclip alone) | judging s | writing s |")
    print("|---|---:|---:|---:|---:|---:|")
    for run in doc["provenance"]:
        t = run["timing"]
        parts = [t[f"{k}_seconds"] for k in ("denoise", "score", "judge", "write")]
        print(
            f"| {run['model']} | {t['candidates'] / sum(parts):.1f} | {parts[0]:.0f} | {parts[1]:.0f} "
            f"({t.get('score_seconds/noisyclip', float('nan')):.1f}) | {parts[2]:.1f} | {parts[3]:.2f} |"
        )
    print("\n(`noisyclip evaluate`'s own timing of each run, as recorded in the results store)\n")


def stratified_groups(results: Path, resamples: int = 2000) -> None:
    """Fully-aligned rate and TIFA score of the basic / advanced groups within the relation / no-relation strata."""
    import numpy as np

    from noisyclip_metrics.bon.offline import load_run
    from noisyclip_metrics.evaluation.results import ResultsStore
    from noisyclip_metrics.world.vocab import ADVANCED_SKILLS

    store = ResultsStore.open(results)
    rng = np.random.default_rng(0)
    print(
        "| model | group | no relation: prompts | fully aligned | TIFA | with a relation: prompts | fully aligned | "
        "TIFA |\n|---|---|---:|---:|---:|---:|---:|---:|"
    )
    standardised = []
    for info in sorted(store.runs(), key=lambda r: r.model):
        arrays = load_run(store, info.run_id)
        table = store.prompts(info.run_id)
        skills = dict(zip(table["prompt_id"].to_pylist(), table["skills"].to_pylist(), strict=True))
        aligned, tifa = np.nanmean(arrays.aligned, axis=1), np.nanmean(arrays.judge, axis=1)
        cells: dict[tuple[str, bool], np.ndarray] = {}
        for group in ("basic", "advanced"):
            for rel in (False, True):
                cells[group, rel] = np.array(
                    [
                        i
                        for i, pid in enumerate(arrays.prompt_ids)
                        if bool(set(skills[pid]) & set(ADVANCED_SKILLS)) == (group == "advanced")
                        and ("spatial relation" in skills[pid]) == rel
                    ],
                    dtype=np.int64,
                )
        for group in ("basic", "advanced"):
            row = [
                f"{len(cells[group, rel])} | {_mean_ci(aligned[cells[group, rel]], resamples)} | "
                f"{tifa[cells[group, rel]].mean():.3f}"
                for rel in (False, True)
            ]
            print(f"| {info.model} | {group} | " + " | ".join(row) + " |")
        share = len(cells["basic", True]) / (len(cells["basic", True]) + len(cells["basic", False]))
        boot = [
            share * rng.choice(aligned[cells["advanced", True]], len(cells["advanced", True])).mean()
            + (1 - share) * rng.choice(aligned[cells["advanced", False]], len(cells["advanced", False])).mean()
            for _ in range(resamples)
        ]
        value = share * aligned[cells["advanced", True]].mean() + (1 - share) * aligned[cells["advanced", False]].mean()
        basic = aligned[np.concatenate([cells["basic", False], cells["basic", True]])]
        standardised.append(
            f"| {info.model} | {share:.2f} | {_mean_ci(basic, resamples)} | {value:.3f} "
            f"[{np.quantile(boot, 0.025):.2f}, {np.quantile(boot, 0.975):.2f}] |"
        )
    print("\n| model | basic prompts with a relation | basic: fully aligned | advanced, standardised to that share |")
    print("|---|---:|---:|---:|")
    print("\n".join(standardised))
    print("\n(per prompt: the share of its seeds the oracle calls fully aligned, and its mean TIFA score)\n")


def _mean_ci(values: Any, resamples: int) -> str:
    """Mean with its 95% percentile bootstrap interval over the values (prompts)."""
    import numpy as np

    from noisyclip_metrics.evaluation.stats import bootstrap_ratio

    if len(values) == 0:
        return "–"
    value, low, high = bootstrap_ratio(values, np.ones_like(values), n_resamples=resamples)
    return f"{float(value):.3f} [{float(low):.2f}, {float(high):.2f}]"


PAGE = ROOT / "docs" / "results" / "world.md"
README = ROOT / "README.md"
MARKERS = ("<!-- world-results:start (tools/world_report.py --write) -->", "<!-- world-results:end -->")
HEADLINE_FRACTION = 0.3


def _captured(fn: Any, *args: Any) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        fn(*args)
    return out.getvalue().strip() + "\n"


def guard_verdict(guard: dict[str, Any]) -> str:
    """One sentence from ``guard.json``: the verdict and how many gating checks stayed within their interval."""
    gating = [c for c in guard["checks"] if c["gating"]]
    held = sum(not c["fired"] for c in gating)
    return (
        f"Leakage guard: **{'passed' if guard['passed'] else 'failed'}**, {held} of {len(gating)} checks of the "
        "fine-tuned scorers within their interval (`leaderboards/world/guard.md`)."
    )


def headline(doc: dict[str, Any], fraction: float = HEADLINE_FRACTION) -> str:
    """The README's table: per model, pairwise accuracy of the best fine-tuned and the training-free scorers at
    ``fraction`` of the trajectory and of frozen CLIP on the final image, with 95% intervals."""
    cols = ("noisyclip-x0", "noisyclip", "clip-x0")
    lines = [
        f"| model | prompts x seeds | {' | '.join(f'`{c}` at {fraction:g}' for c in cols)} | `clip-final` at 1.0 |",
        "|---|---:|" + "---:|" * (len(cols) + 1),
    ]
    for m in doc["models"]:
        cells = []
        for c in cols:
            point = _point(m["curves"].get(c, []), fraction)
            cells.append(_ci(point, "pairwise_accuracy") if point else "–")
        final = m["curves"].get("clip-final", [])
        cells.append(_ci(final[-1], "pairwise_accuracy") if final else "–")
        lines.append(f"| {m['name']} | {m['num_prompts']} x {len(m['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def live_table(live: dict[str, Any]) -> None:
    """``search-live.json`` (``experiments/search_live.py``): the chosen plans run live against their replay."""
    from noisyclip_metrics.benchmarking import markdown_table

    rows = [
        [
            r["model"],
            f"{r['budget']:g}",
            f"`{r['scorer']}`: {r['plan']}",
            f"{r['same_picks']} / {r['prompts']}",
            f"{r['max_judge_difference']:.1e}",
            f"{r['judge_live']:.3f} / {r['judge_replay']:.3f}",
            f"{r['calls_per_prompt_live']:.1f} / {r['calls_per_prompt_plan']}",
        ]
        for r in live["rows"]
    ]
    head = [
        "model",
        "budget",
        "plan",
        "picks = replay",
        "max judge difference",
        "judge live / replay",
        "calls live / plan",
    ]
    print(markdown_table(head, rows))


def page(
    doc: dict[str, Any],
    build: dict[str, Any] | None,
    guard: dict[str, Any] | None,
    targets: str | None,
    live: dict[str, Any] | None = None,
    recipes: dict[str, Any] | None = None,
    followup: dict[str, Any] | None = None,
) -> str:
    """The generated results page ``docs/results/world.md``."""
    parts = [
        "# Results: the built-in world\n",
        "<!-- Generated by `python tools/world_report.py --write` from leaderboards/world/; do not edit. -->\n",
        f"From the published leaderboard *{doc['title']}* (`leaderboards/world/`), generated "
        f"{doc['generated']}: within-prompt pairwise accuracy of each scorer against the oracle's TIFA score of the "
        "final image, 95% bootstrap intervals over prompts.\n",
    ]
    if guard is not None:
        parts.append(guard_verdict(guard) + "\n")
    if build is not None:
        parts += ["## The world's models\n", _captured(build_tables, build)]
    parts += ["## Diffusion models on the benchmark\n", _captured(model_tables, doc)]
    parts += ["## Timestep versus accuracy\n", _captured(curve_tables, doc)]
    parts += ["## Cost and throughput\n", _captured(cost_table, doc), _captured(throughput_table, doc)]
    if targets is not None:
        body = re.sub(r"^## ", "### ", targets.split("\n", 1)[1].strip(), flags=re.MULTILINE)
        parts += ["## Issue 21's targets on fresh seeds and prompts\n", body + "\n"]
    if recipes is not None:
        study = recipes["study"]
        parts += [
            "## Training recipes\n",
            f"Which fine-tuning recipe ranks candidates best early (issue 21, step 5)? One NoisyCLIP per training "
            f"target, each fine-tuned for {study['fine_tuning_steps']:,} steps on the build's training trajectories "
            f"({study['training_prompts']} prompts, seeds {study['training_seeds'][0]:,}-"
            f"{study['training_seeds'][1]:,}) reading the "
            f"{'x̂0 preview' if study['read'] == 'x0' else 'latent preview'}, then scored on each world model's "
            "benchmark prompts with the benchmark seeds, on the same prompts with fresh seeds, and on as many fresh "
            "prompts (outside the benchmark and the training pool), none of them trained on, against the oracle's "
            "TIFA score; beside frozen CLIP reading the same previews. Nothing is chosen on these data: every "
            f"target is shown (`experiments/noisyclip_variants.py --targets-only`, revision "
            f"`{study['git_revision'][:10]}`).\n",
            _captured(recipes_tables, recipes),
        ]
    if followup is not None:
        study = followup["study"]
        parts += [
            "### Follow-up recipes: noise conditioning, a curriculum, a listwise loss\n",
            "The shipped recipe (`target=judged`) against three changes to it, each fine-tuned from the same start on "
            f"the same trajectories for {study['fine_tuning_steps']:,} steps and scored on "
            f"{', '.join(study['models'])} with {' and '.join(study['replicates'])}: a tower that also reads each "
            "step's noise level (`noise-conditioned`: LRM's timestep-conditioned reward models, `noisyclip train "
            "--noise-conditioned`), the window reached from the clean latent over training (`curriculum`: TTSnap's "
            "clean-to-noisy curriculum, `--step-sampling curriculum:4-10`), and `listwise` (the oracle's choice among "
            "4 seeds read at one step). The evaluations are the ones above, recorded again from the same prompts, "
            "seeds and models, so the shipped recipe's rows repeat its rows above "
            f"(`experiments/noisyclip_variants.py --targets {' '.join(study['targets'])} --targets-only`, revision "
            f"`{study['git_revision'][:10]}`).\n",
            _captured(recipes_tables, followup),
        ]
    if doc.get("search"):
        parts += [
            "## Budget-matched search\n",
            "Judge score of the pick at a budget of B full trajectories (denoiser calls / T, every scoring counted "
            "at its measured cost): full-cost `clip-final` Best-of-B against searches that start up to 24 "
            "candidates and prune them early, chosen and scored on disjoint halves of the prompts "
            "(`noisyclip bon search`; see [the guide](../guides/best-of-n.md#budget-matched-search)). The seeds are "
            "disjoint from every seed a scorer was trained on and from the seeds of the curves above.\n",
            _captured(search_tables, doc),
        ]
    if live is not None:
        parts += [
            "### Live against replay\n",
            "The plan chosen for each budget on all prompts, run live (`EarlyBestOfN.run_batch`) on the first prompts "
            "of each model with the recorded seeds, against its offline replay: the same picks, whose images the run "
            "judged, with the denoiser calls the plan counts (`experiments/search_live.py`).\n",
            _captured(live_table, live),
        ]
    return "\n".join(parts)


def search_tables(doc: dict[str, Any]) -> None:
    """Budget-matched search (the leaderboard's ``search`` key): per model, the reward-versus-budget table, every
    scorer's and family's cross-fitted search at each budget, and issue 24's targets."""
    from noisyclip_metrics.benchmarking import markdown_table
    from noisyclip_metrics.leaderboard.render import SEARCH_HEADER, search_caption, search_summary

    def interval(r: dict[str, Any] | None, key: str, low: str, high: str) -> str:
        return "–" if r is None else f"{_fmt(r[key])} [{_fmt(r[low])}, {_fmt(r[high])}]"

    targets = []
    for d in doc["search"]:
        print(f"### {d['model']}\n\n{search_caption(d)}\n")
        print(markdown_table([h.format(ref=d["reference_n"]) for h in SEARCH_HEADER], search_summary(d)) + "\n")
        searches = [r for r in d["rows"] if r["row"] == "search"]
        budgets = list(dict.fromkeys(r["budget"] for r in searches))
        kinds = list(dict.fromkeys((r["scorer"], r["family"]) for r in searches))
        table = []
        for scorer, family in kinds:
            if (scorer, family) == ("*", "*"):
                continue
            at = {r["budget"]: r for r in searches if (r["scorer"], r["family"]) == (scorer, family)}
            label = f"`{scorer}`, any family" if family == "*" else f"{family}, any scorer"
            table.append([label] + [_fmt(at[b]["judge_score"]) if b in at else "–" for b in budgets])
        print("Cross-fitted search per pruning scorer and per family:\n")
        print(markdown_table(["search"] + [f"B = {b:g}" for b in budgets], table) + "\n")
        best = {r["budget"]: r for r in searches if r["scorer"] == r["family"] == "*"}
        six, three = best.get(6.0), best.get(3.0)
        oracle6 = next((r for r in d["rows"] if r["row"] == "oracle" and r["n"] == 6), None)
        targets.append(
            [
                d["model"],
                interval(six, "vs_best_of_b", "vs_best_of_b_low", "vs_best_of_b_high"),
                "yes" if six and six["vs_best_of_b"] >= 0.02 and six["vs_best_of_b_low"] > 0 else "no",
                interval(three, "ratio_to_reference", "ratio_low", "ratio_high"),
                "yes" if three and three["ratio_to_reference"] >= 1.0 else "no",
                f"{_fmt(six['judge_score'])} / {_fmt(oracle6['judge_score'])}" if six and oracle6 else "–",
            ]
        )
    print("### Issue 24's targets\n")
    print(
        "At budget 6 the best pruned search beats full-cost `clip-final` Best-of-6 by at least +0.02 (95% interval "
        "above 0); at budget 3 it reaches Best-of-6 (ratio at least 1.00). Last column: the search at budget 6 and "
        "the oracle's best of 6.\n"
    )
    head = ["model", "B = 6: search - Best-of-6", "met", "B = 3: search / Best-of-6", "met", "B = 6: search, oracle"]
    print(markdown_table(head, targets))


def readme_block(readme: str, doc: dict[str, Any]) -> str:
    """``readme`` with the text between :data:`MARKERS` replaced by :func:`headline` of ``doc``."""
    start, end = MARKERS
    if start not in readme or end not in readme:
        raise SystemExit(f"README.md: the markers {start!r} ... {end!r} are missing")
    head, rest = readme.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{headline(doc)}{end}{tail}"


#: Optional files of a published folder, by the keyword of :func:`page` they fill.
EXTRAS = {
    "guard": "guard.json",
    "targets": "targets.md",
    "live": "search-live.json",
    "recipes": "recipes.json",
    "followup": "recipes-followup.json",
}


def published(board: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The leaderboard JSON of a published folder, and its optional files (:data:`EXTRAS`; None when absent)."""

    def optional(name: str) -> Any:
        path = board / name
        if not path.is_file():
            return None
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if name.endswith(".json") else text

    doc = json.loads((board / "leaderboard.json").read_text(encoding="utf-8"))
    return doc, {key: optional(name) for key, name in EXTRAS.items()}


#: The recipe the targets are checked for: the shipped one, chosen before these evaluations were recorded.
SHIPPED_RECIPE = "target=judged"
#: Where issue 21's Best-of-N target is read: choosing at 0.3 of the trajectory costs 0.3 + 0.7 / N of N full
#: trajectories (the pick is finished), 0.42 for N = 6, so scoring may cost up to 0.08 within the 0.5 budget.
BON_FRACTION = 0.3


def recipes_tables(recipes: dict[str, Any]) -> None:
    """``recipes.json`` (``experiments/noisyclip_variants.py --publish``): for every (model, replicate), each recipe's
    mean pairwise accuracy over fractions 0.2-0.5 and its Best-of-N pick at :data:`BON_FRACTION`, issue 21's targets
    for the shipped recipe, and the first evaluation's full curves."""
    from noisyclip_metrics.benchmarking import markdown_table

    fractions = recipes["fractions"]
    at = fractions.index(BON_FRACTION)
    evaluations = recipes["evaluations"]
    names = list(evaluations[0]["pairwise"])
    x0 = "frozen CLIP (x0 preview)"

    def label(ev: dict[str, Any]) -> list[str]:
        return [ev["model"], ev["replicate"], f"{ev['prompts']} x {ev['seeds'][0]}-{ev['seeds'][1]}"]

    def middle(points: list[list[float]]) -> float:
        values = [a for f, (a, _, _) in zip(fractions, points, strict=True) if 0.2 <= f <= 0.5]
        return sum(values) / len(values)

    def interval(v: list[float]) -> str:
        value, low, high = (round(x, 3) + 0.0 for x in v)  # + 0.0: no "-0.000"
        return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"

    print("Mean pairwise accuracy over fractions 0.2-0.5 (`clip-final`: frozen CLIP on the final image):\n")
    rows = [
        [*label(ev), *(f"{middle(ev['pairwise'][n]):.3f}" for n in names), f"{ev['pairwise'][x0][-1][0]:.3f}"]
        for ev in evaluations
    ]
    print(markdown_table(["model", "replicate", "prompts x seeds", *names, "clip-final"], rows) + "\n")
    print(
        f"Judge score of the Best-of-N pick when choosing at {BON_FRACTION} (cost {BON_FRACTION} + "
        f"{1 - BON_FRACTION:.1f} / N of N full trajectories, scoring not counted), as a ratio to `clip-final`'s "
        "pick on the final images:\n"
    )
    rows = []
    for ev in evaluations:
        bon = ev["best_of_n"]
        ratios = (f"{bon['scorers'][n][at] / bon['clip-final']:.3f}" for n in names)
        rows.append([*label(ev), *ratios, f"{bon['clip-final']:.3f}", f"{bon['random']:.3f}", f"{bon['oracle']:.3f}"])
    print(markdown_table(["model", "replicate", "prompts x seeds", *names, "clip-final", "random", "oracle"], rows))
    shipped = next((n for n in names if n.split()[0] == SHIPPED_RECIPE), None)
    if shipped is not None:
        print(
            f"\nIssue 21's targets for the shipped recipe (`{shipped}`), chosen before these evaluations: pairwise "
            f"accuracy over 0.2-0.5 at least frozen `clip-x0` + 0.05; at 0.3 at least 0.95 of `clip-final`'s; its "
            f"Best-of-N pick at {BON_FRACTION} at least `clip-final`'s, and above frozen `clip-x0`'s pick at the "
            "same fraction with the paired 95% interval over prompts above 0:\n"
        )
        rows = []
        for ev in evaluations:
            pw, bon = ev["pairwise"], ev["best_of_n"]
            lift = middle(pw[shipped]) - middle(pw[x0])
            share = pw[shipped][fractions.index(0.3)][0] / pw[x0][-1][0]
            ratio = bon["scorers"][shipped][at] / bon["clip-final"]
            vs_x0 = bon["vs_clip_x0"][shipped][at]
            rows.append(
                [
                    *label(ev),
                    f"{lift:+.3f} ({'yes' if lift >= 0.05 else 'no'})",
                    f"{share:.3f} ({'yes' if share >= 0.95 else 'no'})",
                    f"{ratio:.3f} ({'yes' if ratio >= 1.0 else 'no'})",
                    f"{interval(vs_x0)} ({'yes' if vs_x0[1] > 0 else 'no'})",
                ]
            )
        head = ["model", "replicate", "prompts x seeds", "- clip-x0, 0.2-0.5", "/ clip-final at 0.3"]
        print(markdown_table([*head, "Best-of-N / clip-final", "Best-of-N - clip-x0's"], rows))
    first = evaluations[0]
    print(f"\n### Per fraction: {first['model']}, {first['replicate']}\n")
    print("Pairwise accuracy, 95% bootstrap intervals over prompts:\n")
    rows = [
        [
            n,
            *(f"{a:.3f} [{lo:.2f}, {hi:.2f}]" for a, lo, hi in first["pairwise"][n]),
            f"{middle(first['pairwise'][n]):.3f}",
        ]
        for n in names
    ]
    print(markdown_table(["scorer", *(f"{f:.1f}" for f in fractions), "mean 0.2-0.5"], rows) + "\n")
    bon = first["best_of_n"]
    print(
        "Judge score of the Best-of-N pick when choosing at each fraction (no cost counted), and its ratio to "
        f"`clip-final` on the final images ({bon['clip-final']:.3f}; random {bon['random']:.3f}, oracle "
        f"{bon['oracle']:.3f}):\n"
    )
    rows = [[n, *(f"{v:.3f} ({v / bon['clip-final']:.3f})" for v in bon["scorers"][n])] for n in names]
    print(markdown_table(["scorer", *(f"{f:.1f}" for f in fractions)], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leaderboard", type=Path, default=ROOT / "leaderboards" / "world" / "leaderboard.json")
    parser.add_argument("--build", type=Path, default=ROOT / "noisyclip_metrics" / "world" / "weights" / "BUILD.json")
    parser.add_argument("--results", type=Path, default=None, help="results store: the stratified group tables")
    parser.add_argument("--write", action="store_true", help="write docs/results/world.md and the README block")
    args = parser.parse_args()
    if args.write:
        doc, extras = published(args.leaderboard.parent)
        build = json.loads(args.build.read_text(encoding="utf-8")) if args.build.is_file() else None
        PAGE.parent.mkdir(parents=True, exist_ok=True)
        PAGE.write_text(page(doc, build, **extras), encoding="utf-8")
        README.write_text(readme_block(README.read_text(encoding="utf-8"), doc), encoding="utf-8")
        print(f"wrote {PAGE.relative_to(ROOT)} and the headline table of {README.relative_to(ROOT)}")
        return
    if args.build.is_file():
        build_tables(json.loads(args.build.read_text(encoding="utf-8")))
    doc = json.loads(args.leaderboard.read_text(encoding="utf-8"))
    model_tables(doc)
    curve_tables(doc)
    cost_table(doc)
    throughput_table(doc)
    if doc.get("search"):
        search_tables(doc)
    if args.results is not None:
        stratified_groups(args.results)


if __name__ == "__main__":
    main()
