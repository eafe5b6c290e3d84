"""Time ``noisyclip leaderboard build`` end to end on a synthetic results store of about one million score rows.

Run from the repository root::

    .venv/bin/python benchmarks/leaderboard_build.py [--sizes 100000 1000000] [--n-resamples 1000] [--workdir DIR]

The store is written the way ``noisyclip evaluate`` writes one: per model one run, chunk files of 32 candidates
(prompt x seed), score rows for every scorer at every step k = 0..T and one judgment row per candidate. Defaults:
3 models x 3 scorers x 21 steps (T = 20) x 6 seeds, with the prompt count chosen to reach the requested number of
score rows (1,000,188 score rows = 882 prompts), prompts tagged with 1-3 of the 7 GenAI-Bench skills. Scores are a
noisy, step-dependent function of the judge score, so curves are non-trivial.

Each size is built by the CLI in a fresh subprocess (``python -m noisyclip_metrics.cli leaderboard build``: imports,
store checks, curves with 1,000 bootstrap resamples overall and per skill, HTML, README with PNG charts, JSON, CSV);
the table shows its wall time and peak resident memory, then an in-process breakdown by phase. Prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from noisyclip_metrics.evaluation.results import ROW_SCHEMA, ResultsStore, RunInfo

SKILLS = ("object", "attribute", "spatial", "counting", "comparison", "negation", "universal")
SCORERS = {"noisyclip": 1.0, "clip": 0.6, "clip-x0": 0.8}  # signal strength at the final step


def synthesise(
    root: Path, score_rows: int, models: int = 3, steps: int = 20, seeds: int = 6, seed: int = 0, chunk: int = 32
) -> tuple[int, int]:
    """Write a store with at least ``score_rows`` score rows; returns (score rows, all rows) written."""
    rng = np.random.default_rng(seed)
    per_candidate = len(SCORERS) * (steps + 1)
    prompts = -(-score_rows // (models * per_candidate * seeds))
    store = ResultsStore.create(root)
    scores = total = 0
    for m in range(models):
        model, run_id = f"world:sd-{m}", f"{m:016x}"
        store.write_run(
            RunInfo(
                run_id=run_id,
                model=model,
                benchmark="world",
                seeds=tuple(range(seeds)),
                sampler={"num_inference_steps": steps},
                scorers={s: {} for s in SCORERS},
                judge={"name": "world-oracle"},
                num_prompts=prompts,
            )
        )
        ids = [f"w{i:05d}" for i in range(prompts)]
        tags = [list(rng.choice(SKILLS, size=int(rng.integers(1, 4)), replace=False)) for _ in ids]
        store.write_prompts(run_id, ids, [f"prompt {i} of the world" for i in range(prompts)], tags)
        judge = np.clip(rng.normal(0.55 + 0.1 * m, 0.25, size=(prompts, seeds)), 0, 1).round(2)  # ties, like a VQA
        items = [(p, s) for p in range(prompts) for s in range(seeds)]
        for c in range(0, len(items), chunk):
            part = items[c : c + chunk]
            p_idx = np.array([p for p, _ in part])
            s_idx = np.array([s for _, s in part])
            j = judge[p_idx, s_idx]
            k = np.arange(steps + 1)
            cols: dict[str, list] = {"scorer": [], "step": [], "score": [], "p": [], "s": []}
            for name, strength in SCORERS.items():
                signal = strength * (k / steps) ** 1.5
                score = signal[:, None] * j[None, :] + rng.normal(0, 0.15, size=(steps + 1, len(part)))
                cols["scorer"] += [name] * score.size
                cols["step"].append(np.repeat(k, len(part)))
                cols["score"].append(score.ravel())
                cols["p"].append(np.tile(p_idx, steps + 1))
                cols["s"].append(np.tile(s_idx, steps + 1))
            n, nj = len(cols["scorer"]), len(part)
            p_all = np.concatenate([np.concatenate(cols["p"]), p_idx])
            table = pa.table(
                {
                    "kind": ["score"] * n + ["judgment"] * nj,
                    "run_id": [run_id] * (n + nj),
                    "model": [model] * (n + nj),
                    "benchmark": ["world"] * (n + nj),
                    "prompt_id": [ids[i] for i in p_all],
                    "seed": np.concatenate([np.concatenate(cols["s"]), s_idx]),
                    "step": pa.array(list(np.concatenate(cols["step"])) + [None] * nj, pa.int32()),
                    "num_steps": pa.array([steps] * n + [None] * nj, pa.int32()),
                    "timestep": pa.nulls(n + nj, pa.float64()),
                    "scorer": cols["scorer"] + [None] * nj,
                    "judge": [None] * n + ["world-oracle"] * nj,
                    "score": np.concatenate([np.concatenate(cols["score"]), j]),
                    "aligned": pa.array([None] * n + list(j > 0.7), pa.bool_()),
                },
                schema=ROW_SCHEMA,
            )
            store.append(run_id, {c: table[c] for c in table.column_names}, f"chunk-{c // chunk:05d}")
            scores += n
            total += n + nj
    return scores, total


def run_cli(results: Path, out: Path, n_resamples: int) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of the CLI build in a fresh subprocess."""
    code = (
        "import resource, sys; from noisyclip_metrics.cli import main; rc = main(sys.argv[1:]); "
        "print('maxrss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
    )
    cmd = [
        sys.executable,
        "-c",
        code,
        "leaderboard",
        "build",
        str(results),
        "--out",
        str(out),
        "--n-resamples",
        str(n_resamples),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"build failed: {proc.stderr.strip()}")
    rss = next(int(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("maxrss_kib"))
    return wall, rss / 1024


def phases(results: Path, out: Path, n_resamples: int) -> dict[str, float]:
    """In-process seconds of each phase of the build."""
    from noisyclip_metrics.evaluation.curves import compute_curves
    from noisyclip_metrics.leaderboard import BuildConfig, leaderboard_document, load_entries
    from noisyclip_metrics.leaderboard.render import write_outputs

    config = BuildConfig(n_resamples=n_resamples)
    t = [time.perf_counter()]
    entries = load_entries([results])
    t.append(time.perf_counter())
    curves = [compute_curves(e.data, config.curve_config(), e.skills) for e in entries]
    t.append(time.perf_counter())
    doc = leaderboard_document(entries, curves, None, config)
    out.mkdir(parents=True, exist_ok=True)
    write_outputs(doc, entries, out, config)
    t.append(time.perf_counter())
    return {"read + check store": t[1] - t[0], "curves + bootstrap": t[2] - t[1], "render + write": t[3] - t[2]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="score rows per store")
    ap.add_argument("--n-resamples", type=int, default=1000)
    ap.add_argument("--workdir", type=Path, default=None, help="where to write the stores (default: a temp folder)")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="lb-bench-"))
    print(f"CPU threads: {len(os.sched_getaffinity(0))}; bootstrap resamples: {args.n_resamples}\n")
    table = [
        "| score rows | all rows | chunk files | store MB | build wall s | peak RSS MB |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    breakdown = []
    for size in args.sizes:
        root = work / f"store-{size}"
        shutil.rmtree(root, ignore_errors=True)
        t0 = time.perf_counter()
        score_rows, total = synthesise(root, size)
        made = time.perf_counter() - t0
        files = list(root.rglob("*.parquet"))
        mb = sum(f.stat().st_size for f in files) / 2**20
        shutil.rmtree(work / f"out-{size}", ignore_errors=True)
        wall, rss = run_cli(root, work / f"out-{size}", args.n_resamples)
        table.append(f"| {score_rows:,} | {total:,} | {len(files):,} | {mb:.1f} | {wall:.2f} | {rss:.0f} |")
        shutil.rmtree(work / f"phases-{size}", ignore_errors=True)
        breakdown.append((score_rows, phases(root, work / f"phases-{size}", args.n_resamples), made))
    print("\n".join(table))
    print("\nIn-process phases (seconds):\n")
    names = list(breakdown[0][1])
    print("| score rows | " + " | ".join(names) + " | (synthesising the store) |")
    print("|---:|" + "---:|" * (len(names) + 1))
    for rows, ph, made in breakdown:
        print(f"| {rows:,} | " + " | ".join(f"{ph[n]:.2f}" for n in names) + f" | {made:.1f} |")
    print(f"\nstores and outputs in {work}")


if __name__ == "__main__":
    main()
