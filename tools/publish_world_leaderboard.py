"""Regenerate the published world leaderboard in ``leaderboards/world/`` (run whenever the world models change).

    python tools/publish_world_leaderboard.py [--results runs/world-full/results [--rebuild]] [--slice-prompts 4]
                                              [--replicate-prompts 96] [--fresh-prompts N] [--prompts N]
                                              [--search runs/world-search/results [--search-live-prompts 40]]

1. runs ``noisyclip demo --full`` into ``runs/world-full`` unless ``--results`` points at a finished full run (the full
   demo refuses a fine-tuned scorer trained on its seeds or prompts); with ``--rebuild`` the run's leaderboard is
   rebuilt from its results first (after a change to the leaderboard code: no regeneration needed);
2. runs the two replicates of the leakage guard (:mod:`noisyclip_metrics.leaderboard.guard`) into
   ``runs/world-replicates``: the first ``--replicate-prompts`` benchmark prompts on seeds 100-105 (``fresh-seeds``)
   and ``--fresh-prompts`` (default: as many) prompts outside the benchmark and the NoisyCLIPs' training prompts on
   seeds 0-5 (``fresh-prompts``), with the fine-tuned scorers and the frozen ones as controls; then ``noisyclip
   leaderboard guard``, which writes ``guard.json`` / ``guard.md`` beside the leaderboard and **fails the
   publication** when a fine-tuned scorer's published curve differs from a replicate beyond its interval;
2b. with ``--search`` (a results store of the world models with many seeds per prompt, recorded with ``noisyclip
   evaluate --seeds 200 ... 223``): ``noisyclip bon search`` writes its budget-matched search documents, the
   leaderboard is rebuilt with them (its ``search`` section), and ``experiments/search_live.py`` runs the chosen
   plans live on the first ``--search-live-prompts`` prompts of each model against their replay
   (``search-live.json`` beside the leaderboard);
3. refuses runs whose code cannot be named (a ``-dirty`` or unknown git revision), then copies the rendered report
   (``index.html``, ``README.md``, charts, ``leaderboard.json``, CSVs, the guard's report)
   and the BoN table to ``leaderboards/world/``;
4. writes ``leaderboards/world/slice/``: the leaderboard JSON of the first ``--slice-prompts`` benchmark prompts, built
   from the same rows. ``tests/leaderboard/test_published_leaderboard.py`` regenerates that slice from scratch
   (trajectories, scores, judgments) with the shipped models and checks it equals the published one.

Paths are given relative to the repository root, so that no published file names a folder of this machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from noisyclip_metrics.cli.demo import report_config
from noisyclip_metrics.leaderboard.build import build_leaderboard, unpublishable_runs
from noisyclip_metrics.world.publish import slice_document

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "leaderboards" / "world"
#: Scorers of the replicates: the fine-tuned ones (gating) and the frozen controls.
GUARDED, CONTROLS = ("noisyclip", "noisyclip-x0"), ("clip", "clip-x0", "clip-final")
FRESH_SEEDS = (100, 101, 102, 103, 104, 105)
#: Fractions the guard checks: every fraction the honest targets (``experiments/honest_targets.py``) average over,
#: and 1.0.
GUARD_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 1.0)


def run_replicates(
    out: Path, n_prompts: int, models: list[str], seeds: int, batch_size: int, n_fresh_prompts: int | None = None
) -> dict[str, Path]:
    """Evaluate the fresh-seed and fresh-prompt replicates of every model into ``out``; returns kind -> results.

    The fresh-seed replicate takes the first ``n_prompts`` benchmark prompts (paired with the published run); the
    fresh-prompt one draws ``n_fresh_prompts`` new prompts (default: as many).
    """
    n_fresh_prompts = n_fresh_prompts or n_prompts
    from noisyclip_metrics.evaluation.runner import EvalConfig, evaluate
    from noisyclip_metrics.world.benchmark import fresh_world_prompts
    from noisyclip_metrics.world.build.presets import PRESETS
    from noisyclip_metrics.world.build.stages import noisy_training_prompts

    trained = frozenset(noisy_training_prompts(PRESETS.get("full")))
    prompt_file = out / "fresh-prompts.txt"
    text = "\n".join(fresh_world_prompts(n_fresh_prompts, trained)) + "\n"
    if not prompt_file.is_file() or prompt_file.read_text(encoding="utf-8") != text:
        out.mkdir(parents=True, exist_ok=True)
        prompt_file.write_text(text, encoding="utf-8")
    runs = {
        "fresh-seeds": {"benchmark": "world", "prompts": n_prompts, "seeds": FRESH_SEEDS},
        "fresh-prompts": {"benchmark": str(prompt_file), "seeds": tuple(range(seeds))},
    }
    for kind, settings in runs.items():
        for model in models:
            evaluate(
                EvalConfig(
                    model=model,
                    out=str(out / kind),
                    scorers=GUARDED + CONTROLS,
                    batch_size=batch_size,
                    name=model.split(":")[-1],
                    progress=True,
                    require_disjoint=True,
                    **settings,
                )
            )
    return {kind: out / kind for kind in runs}


def main() -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=None, help="a finished full demo's results folder")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the leaderboard of --results first")
    parser.add_argument("--slice-prompts", type=int, default=4)
    parser.add_argument(
        "--replicate-prompts", type=int, default=96, help="benchmark prompts of the fresh-seed replicate"
    )
    parser.add_argument(
        "--fresh-prompts",
        type=int,
        default=None,
        help="prompts of the fresh-prompt replicate (default: --replicate-prompts)",
    )
    parser.add_argument(
        "--prompts",
        type=int,
        default=None,
        help="publish the first N benchmark prompts instead of all 400 (the title says so)",
    )
    parser.add_argument(
        "--search",
        type=Path,
        default=None,
        help="results store with many seeds per prompt: publish its budget-matched search (implies --rebuild)",
    )
    parser.add_argument("--search-live-prompts", type=int, default=40, help="prompts of the live search check")
    args = parser.parse_args()
    os.chdir(ROOT)  # relative paths from here on: published files name no folder of this machine
    results = args.results
    if args.search is not None:
        cli = [sys.executable, "-m", "noisyclip_metrics.cli"]
        subprocess.run([*cli, "bon", "search", "--results", str(args.search)], check=True)
    if args.rebuild or args.search is not None:
        if results is None:
            parser.error("--rebuild and --search need --results")
        settings = json.loads((results.parent / "demo.json").read_text(encoding="utf-8"))["settings"]
        config = report_config(settings.get("prompts"))
        search = [args.search] if args.search is not None else []
        build_leaderboard([results], results.parent / "leaderboard", config, search=search)
    if results is None:
        out = Path("runs") / "world-full"
        command = [sys.executable, "-m", "noisyclip_metrics.cli", "demo", "--full", "--out", str(out)]
        subprocess.run(command + (["--prompts", str(args.prompts)] if args.prompts else []), check=True)
        results = out / "results"
    demo = json.loads((results.parent / "demo.json").read_text(encoding="utf-8"))["settings"]
    replicates = run_replicates(
        Path("runs") / "world-replicates",
        args.replicate_prompts,
        demo["models"],
        demo["seeds"],
        demo["batch_size"],
        n_fresh_prompts=args.fresh_prompts,
    )
    board = results.parent / "leaderboard"
    guard = [
        sys.executable,
        "-m",
        "noisyclip_metrics.cli",
        "leaderboard",
        "guard",
        str(results),
        "--fresh-seeds",
        str(replicates["fresh-seeds"]),
        "--fresh-prompts",
        str(replicates["fresh-prompts"]),
        "--scorers",
        *GUARDED,
        "--controls",
        *CONTROLS,
        "--fractions",
        *map(str, GUARD_FRACTIONS),
        "--out",
        str(board),
    ]
    if subprocess.run(guard, check=False).returncode != 0:
        sys.exit(f"not published: the leakage guard failed (see {board / 'guard.md'})")
    doc = json.loads((board / "leaderboard.json").read_text(encoding="utf-8"))
    if args.search is not None:
        live = ["experiments/search_live.py", "--results", str(args.search), "--out", str(board / "search-live.json")]
        subprocess.run([sys.executable, *live, "--prompts", str(args.search_live_prompts)], check=True)
        if bad := unpublishable_runs({"provenance": doc.get("search", [])}):  # documents name their run's revision
            sys.exit(f"not published: search runs of uncommitted or unknown code: {'; '.join(bad)}")
    if bad := unpublishable_runs(doc):
        sys.exit(f"not published: runs made from an uncommitted working tree or unknown code: {'; '.join(bad)}")
    if PUBLISHED.exists():
        shutil.rmtree(PUBLISHED)
    shutil.copytree(board, PUBLISHED)
    doc = slice_document(results, Path("runs") / "publish-slice", args.slice_prompts)
    (PUBLISHED / "slice").mkdir(parents=True, exist_ok=True)
    (PUBLISHED / "slice" / "leaderboard.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    shutil.copy(results.parent / "demo.json", PUBLISHED / "demo.json")
    print(f"published {PUBLISHED}")


if __name__ == "__main__":
    main()
