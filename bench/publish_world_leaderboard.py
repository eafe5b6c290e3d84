"""Regenerate the published world leaderboard in ``leaderboards/world/`` (run whenever the world models change).

    python bench/publish_world_leaderboard.py [--results runs/world-full/results [--rebuild]] [--slice-prompts 4]

1. runs ``noisyclip demo --full`` into ``runs/world-full`` unless ``--results`` points at a finished full run; with
   ``--rebuild`` the run's leaderboard is rebuilt from its results first (after a change to the leaderboard code: no
   regeneration needed);
2. copies the rendered report (``index.html``, ``README.md``, charts, ``leaderboard.json``, CSVs) and the BoN table
   to ``leaderboards/world/``;
3. writes ``leaderboards/world/slice/``: the leaderboard JSON of the first ``--slice-prompts`` benchmark prompts, built
   from the same rows. ``tests/test_published_leaderboard.py`` regenerates that slice from scratch (trajectories,
   scores, judgments) with the shipped models and checks it equals the published one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from noisyclip_metrics.demo import report_config
from noisyclip_metrics.leaderboard.build import BuildConfig, build_leaderboard
from noisyclip_metrics.results import ResultsStore

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "leaderboards" / "world"
SLICE_CONFIG = BuildConfig(title="ShapesWorld leaderboard: published slice", n_resamples=200, overwrite=True,
                           charts=False)  # fmt: skip


def slice_store(src: Path, dst: Path, n_prompts: int) -> ResultsStore:
    """A results store holding only the rows of the world benchmark's first ``n_prompts`` prompts (the prompts
    ``noisyclip evaluate --prompts n_prompts`` would run) of every run of ``src``."""
    from noisyclip_metrics.world.benchmark import world_promptset

    wanted = world_promptset(n_prompts).ids
    store = ResultsStore.open(src)
    if dst.exists():
        shutil.rmtree(dst)
    out = ResultsStore.create(dst)
    for run in store.runs():
        prompts = store.prompts(run.run_id)
        prompts = prompts.filter(pc.is_in(prompts["prompt_id"], value_set=pa.array(wanted)))
        keep = set(prompts["prompt_id"].to_pylist())
        rows = store.rows(run.run_id)
        rows = rows.filter(pc.is_in(rows["prompt_id"], value_set=prompts["prompt_id"]))
        out.write_run(run.__class__(**{**run.to_json(), "seeds": run.seeds, "num_prompts": len(keep)}))
        out.write_prompts(run.run_id, prompts["prompt_id"].to_pylist(), prompts["prompt"].to_pylist(),
                          prompts["skills"].to_pylist())  # fmt: skip
        out.append(run.run_id, rows.to_pydict(), "slice")
    return out


def slice_document(results: Path, work: Path, n_prompts: int) -> dict:
    """The leaderboard JSON of the first ``n_prompts`` prompts of ``results``."""
    sliced = slice_store(results, work / "slice-results", n_prompts)
    build_leaderboard([sliced.root], work / "slice-board", SLICE_CONFIG)
    return json.loads((work / "slice-board" / "leaderboard.json").read_text(encoding="utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=None, help="a finished full demo's results folder")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the leaderboard of --results first")
    parser.add_argument("--slice-prompts", type=int, default=4)
    args = parser.parse_args()
    results = args.results
    if args.rebuild:
        if results is None:
            parser.error("--rebuild needs --results")
        build_leaderboard([results], results.parent / "leaderboard", report_config(None))
    if results is None:
        out = ROOT / "runs" / "world-full"
        subprocess.run([sys.executable, "-m", "noisyclip_metrics.cli", "demo", "--full", "--out", str(out)], check=True)
        results = out / "results"
    board = results.parent / "leaderboard"
    if PUBLISHED.exists():
        shutil.rmtree(PUBLISHED)
    shutil.copytree(board, PUBLISHED)
    doc = slice_document(results, ROOT / "runs" / "publish-slice", args.slice_prompts)
    (PUBLISHED / "slice").mkdir(parents=True, exist_ok=True)
    (PUBLISHED / "slice" / "leaderboard.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    demo = results.parent / "demo.json"
    if demo.is_file():
        shutil.copy(demo, PUBLISHED / "demo.json")
    print(f"published {PUBLISHED}")


if __name__ == "__main__":
    main()
