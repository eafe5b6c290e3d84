"""Human-vs-human agreement ceilings on real benchmark judgments, computed with noisyclip_metrics.evaluation.stats.

Run from the repository root::

    .venv/bin/python experiments/human_agreement.py [--data ../shared/data] [--resamples 1000] [--seed 0]
        [--json docs/results/data/human-agreement.json]

Prints Markdown tables (``--json`` also writes them as a report document, from which ``tools/results_pages.py``
renders ``docs/results/human-agreement.md``):

1. GenAI-Bench-527 (3 Likert ratings per image, 6 generators): each rater against the mean of the other two, per
   generator (527 prompts each), overall without grouping (3,162 images) and overall grouped by prompt (527 x 6):
   Pearson, Spearman, Kendall tau_b, tau_c and tie-calibrated pairwise accuracy (with its epsilon), bootstrap 95% CIs.
2. TIFA v1.0 human annotations (800 images, 2 ratings) and DSG's TIFA160 re-annotation (5 workers): inter-annotator
   agreement, per-model means, and the automatic metrics shipped with TIFA against the human mean.
3. GenEval MTurk annotations (3 generators x 400 images, 5 assignments, 1-4 caption fit): each assignment slot
   against the mean of the other four, per-model and per-task means.

The bootstrap resamples prompts for grouped statistics and images otherwise (percentile intervals, seeded).
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from noisyclip_metrics.benchmarking import Report
from noisyclip_metrics.evaluation.benchmarks import load_benchmark
from noisyclip_metrics.evaluation.judges import (
    GENAI_BENCH_MODELS,
    Judgment,
    mean_over_raters,
    read_genai_bench_ratings,
    read_geneval_annotations,
    read_tifa160_dsg_annotations,
    read_tifa_annotations,
    to_matrix,
)
from noisyclip_metrics.evaluation.stats import agreement, bootstrap_ci

STAT_COLUMNS = ("pearson", "spearman", "kendall_tau_b", "kendall_tau_c", "pairwise_accuracy")
HEADER = ["Pearson", "Spearman", "Kendall τ_b", "Kendall τ_c", "pairwise acc.", "ε"]


def rater_cube(judgments: list[Judgment], raters: list[str], rows: list[str], cols: list[str]) -> np.ndarray:
    """(raters, prompts, candidates) array of individual ratings, NaN where missing."""
    index = {(j.rater, j.prompt_id, j.candidate_id): j.score for j in judgments}
    return np.array([[[index.get((r, p, c), np.nan) for c in cols] for p in rows] for r in raters], dtype=float)


def leave_one_out(cube: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(gold, pred): mean of the other raters, and rater k (NaN-aware; NaN where rater k or all others are missing)."""
    others = np.delete(cube, k, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        gold = np.nanmean(others, axis=0)
    return gold, cube[k]


def row(label: str, result, *extra: str) -> list:
    """A table row: the label, ``extra`` cells, each statistic with its interval and the pairwise accuracy's ε."""
    return [label, *extra, *(getattr(result, name) for name in STAT_COLUMNS), f"{result.epsilon:.3g}"]


def mean_row(label: str, results: list, *extra: str) -> list:
    """A row of each statistic's mean over ``results`` (no interval)."""
    return [
        f"**{label}**",
        *extra,
        *(float(np.mean([getattr(r, n).value for r in results])) for n in STAT_COLUMNS),
        "-",
    ]


def genai_section(report: Report, data: Path, resamples: int, seed: int) -> None:
    path = data / "genai-bench" / "genai_image_527.json"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ratings = read_genai_bench_ratings(path)
    prompts = load_benchmark("genai-bench-527", path)
    raters = ["0", "1", "2"]
    cube = rater_cube(ratings, raters, prompts.ids, list(GENAI_BENCH_MODELS))
    report.heading("GenAI-Bench-527: each rater vs the mean of the other two")
    off_scale = "; ".join(str(w.message).split(": ", 1)[-1] for w in caught)
    report.text(
        f"{len(prompts)} prompts x {len(GENAI_BENCH_MODELS)} generators x 3 ratings (1-5 Likert) from {path.name}. "
        f"Off-scale ratings recorded as missing: {len(caught)} ({off_scale}). "
        "gold = mean of the two other raters, pred = the rater; cells: estimate [95% bootstrap CI], "
        f"{resamples} resamples."
    )
    rows_: list[list] = []
    overall: dict[str, list] = defaultdict(list)
    for m, model in enumerate(GENAI_BENCH_MODELS):
        per_model = []
        for k, r in enumerate(raters):
            gold, pred = leave_one_out(cube, k)
            res = agreement(gold[:, m], pred[:, m], n_resamples=resamples, seed=seed)
            per_model.append(res)
            rows_.append(row(model, res, r))
        rows_.append(mean_row(f"{model}, mean of raters", per_model, "-"))
        overall["per-generator mean"].extend(per_model)
    for k, r in enumerate(raters):
        gold, pred = leave_one_out(cube, k)
        res = agreement(gold.ravel(), pred.ravel(), n_resamples=resamples, seed=seed)
        overall["ungrouped"].append(res)
        rows_.append(row("all images, no grouping", res, r))
    rows_.append(mean_row("all images, no grouping, mean of raters", overall["ungrouped"], "-"))
    for k, r in enumerate(raters):
        gold, pred = leave_one_out(cube, k)
        res = agreement(gold, pred, n_resamples=resamples, seed=seed)
        overall["grouped"].append(res)
        rows_.append(row("grouped by prompt (527 x 6)", res, r))
    rows_.append(mean_row("grouped by prompt, mean of raters", overall["grouped"], "-"))
    report.table(["scope", "rater", *HEADER], rows_)
    gold = np.nanmean(cube, axis=0)
    report.text("Mean human rating per generator (mean of 3 raters, then over prompts; 95% bootstrap CI over prompts):")
    rows_ = []
    for m, model in enumerate(GENAI_BENCH_MODELS):
        col = gold[:, m]
        est = bootstrap_ci(lambda g, p: np.nanmean(g), col, col, n_resamples=resamples, seed=seed)[0]
        rows_.append([model, est, float(np.mean(col[~np.isnan(col)] >= 4))])
    report.table(["generator", "mean rating", "share of images with mean >= 4"], rows_)


def pair_table(report: Report, title: str, rows_: list[tuple[str, object]]) -> None:
    report.text(title)
    report.table(["comparison", *HEADER], [row(label, res) for label, res in rows_])


def tifa_section(report: Report, data: Path, resamples: int, seed: int) -> None:
    folder = data / "tifa"
    ann = read_tifa_annotations(
        folder / "human_annotations" / "human_annotations_with_scores.json", include_metrics=True
    )
    human = [j for j in ann if j.judge == "human"]
    prompts = load_benchmark("tifa-v1", folder)
    text_ids = list(dict.fromkeys(j.prompt_id for j in human))
    models = list(dict.fromkeys(j.model for j in human))
    assert all(t in prompts for t in text_ids)
    index = {(j.rater, j.prompt_id, j.model): j.score for j in human}
    cube = np.array([[[index.get((r, t, m), np.nan) for m in models] for t in text_ids] for r in ("0", "1")])
    report.heading("TIFA v1.0 human annotations")
    report.text(
        f"{len(text_ids)} texts x {len(models)} models = {cube[0].size} images, 2 Likert (1-5) ratings each "
        "(human_annotations_with_scores.json)."
    )
    boot = {"n_resamples": resamples, "seed": seed}
    rows_ = [
        ("rater 0 vs rater 1, no grouping (800 images)", agreement(cube[0].ravel(), cube[1].ravel(), **boot)),
        ("rater 0 vs rater 1, grouped by text (160 x 5)", agreement(cube[0], cube[1], **boot)),
    ]
    dsg = read_tifa160_dsg_annotations(folder / "tifa160_t2v_metrics" / "dsg_tifa160_anns.csv")
    workers = sorted({j.rater for j in dsg})
    dindex = {(j.rater, j.prompt_id, j.model): j.score for j in dsg}
    dcube = np.array([[[dindex.get((w, t, m), np.nan) for m in models] for t in text_ids] for w in workers])
    dsg_results = []
    for k, w in enumerate(workers):
        gold, pred = leave_one_out(dcube, k)
        res = agreement(gold.ravel(), pred.ravel(), n_resamples=resamples, seed=seed)
        dsg_results.append(res)
        n_images = int((~np.isnan(pred)).sum())
        rows_.append((f"DSG worker {w} vs mean of the other 4, no grouping ({n_images} images)", res))
    tifa_mean, dsg_mean = cube.mean(axis=0), np.nanmean(dcube, axis=0)
    rows_.append(
        (
            "TIFA mean of 2 vs DSG mean of 5 (same images), no grouping",
            agreement(dsg_mean.ravel(), tifa_mean.ravel(), n_resamples=resamples, seed=seed),
        )
    )
    pair_table(
        report,
        "Inter-annotator agreement (cells: estimate [95% bootstrap CI]); DSG = Cho et al.'s re-annotation "
        "of the same 800 images by 5 workers:",
        rows_,
    )
    report.text(
        "DSG leave-one-out, mean over the 5 workers: "
        + ", ".join(f"{n} {np.mean([getattr(r, n).value for r in dsg_results]):.3f}" for n in STAT_COLUMNS)
    )
    report.text("Per-model mean human rating (mean of the 2 TIFA raters; DSG mean of 5), 95% bootstrap CI over texts:")
    rows_ = []
    for m, model in enumerate(models):
        a = bootstrap_ci(lambda g, p: np.nanmean(g), tifa_mean[:, m], tifa_mean[:, m], **boot)[0]
        b = bootstrap_ci(lambda g, p: np.nanmean(g), dsg_mean[:, m], dsg_mean[:, m], **boot)[0]
        rows_.append([model, a, b])
    report.table(["model", "TIFA human mean", "DSG human mean"], rows_)
    metrics = sorted({j.judge for j in ann} - {"human"})
    rows_ = []
    for name in metrics:
        matrix, _, _ = to_matrix([j for j in ann if j.judge == name], rows=text_ids, cols=models)
        rows_.append((name, agreement(tifa_mean.ravel(), matrix.ravel(), n_resamples=resamples, seed=seed)))
    pair_table(report, "Automatic metrics shipped with TIFA vs the TIFA human mean (800 images, no grouping):", rows_)


def geneval_section(report: Report, data: Path, resamples: int, seed: int) -> None:
    folder = data / "geneval"
    prompts = load_benchmark("geneval", folder)
    report.heading("GenEval MTurk annotations (caption fit, 1-4)")
    report.text(
        "Each image has 5 MTurk assignments; the export has no worker ids, so 'slot k' is the k-th assignment of "
        "each image (different people across images). gold = mean of the other 4 slots."
    )
    rows_, means = [], []
    all_gold, all_pred = defaultdict(list), defaultdict(list)
    for model in ("clip", "if-xl", "sdv2"):
        ann = read_geneval_annotations(folder / "annotations" / f"annotations_{model}.csv")
        cands = list(dict.fromkeys(j.candidate_id for j in ann))
        index = {(j.rater, j.candidate_id): j.score for j in ann}
        cube = np.array([[index.get((str(k), c), np.nan) for c in cands] for k in range(5)])
        slot_results = []
        for k in range(5):
            gold, pred = leave_one_out(cube[:, None, :], k)
            all_gold[k].append(gold.ravel())
            all_pred[k].append(pred.ravel())
            slot_results.append(agreement(gold.ravel(), pred.ravel(), n_resamples=resamples, seed=seed))
        rows_.append((f"{model}: mean over the 5 slots ({len(cands)} images)", slot_results))
        merged = mean_over_raters(ann)
        tags = {p.id: p.category for p in prompts}
        means.append((model, merged, tags))
    table = []
    for label, results in rows_:
        for k, res in enumerate(results):
            table.append(row(label.split(":")[0], res, str(k)))
        table.append(mean_row(label, results, "-"))
    pooled = []
    for k in range(5):
        res = agreement(np.concatenate(all_gold[k]), np.concatenate(all_pred[k]), n_resamples=resamples, seed=seed)
        pooled.append(res)
        table.append(row("all 3 generators (1,200 images)", res, str(k)))
    table.append(mean_row("all 3 generators, mean over slots", pooled, "-"))
    report.table(["scope", "slot", *HEADER], table)
    report.text(
        "Mean caption-fit rating (mean of 5 assignments) per generator and GenEval task, 95% bootstrap CI over images:"
    )
    task_names = list(dict.fromkeys(p.category for p in prompts))
    table = []
    for model, merged, tags in means:
        scores = np.array([j.score for j in merged])
        est = bootstrap_ci(lambda g, p: np.nanmean(g), scores, scores, n_resamples=resamples, seed=seed)[0]
        cells = []
        for tag in task_names:
            sub = np.array([j.score for j in merged if tags[j.prompt_id] == tag])
            cells.append(f"{sub.mean():.2f} (n={sub.size})" if sub.size else "-")
        table.append([model, est, *cells])
    report.table(["generator", "all", *task_names], table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["genai", "tifa", "geneval"], default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the report document here")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: data folder not found (pass --data)")
    start = time.perf_counter()
    command = f"python experiments/human_agreement.py --resamples {args.resamples} --seed {args.seed}"
    command += f" --only {args.only}" if args.only else ""
    report = Report("Human-vs-human agreement ceilings", command)
    report.text(
        "How well one human rating agrees with the others on the real benchmarks' judgments in `../shared/data`: the "
        "ceiling that an automatic judge's agreement with humans should be read against. Computed by this package's "
        "statistics (`noisyclip_metrics.evaluation.stats`); the bootstrap resamples prompts for grouped statistics "
        "and images otherwise (percentile intervals, seeded)."
    )
    sections = {"genai": genai_section, "tifa": tifa_section, "geneval": geneval_section}
    for name, fn in sections.items():
        if args.only in (None, name):
            fn(report, args.data.resolve(), args.resamples, args.seed)
    report.text(
        f"_Computed by `{command}` in {time.perf_counter() - start:.0f} s "
        f"({args.resamples} bootstrap resamples, seed {args.seed})._"
    )
    if args.json is not None:
        report.save(args.json)


if __name__ == "__main__":
    main()
