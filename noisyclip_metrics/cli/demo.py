"""``noisyclip demo``: the main job on the built-in world (evaluate -> BoN -> leaderboard)."""

from __future__ import annotations

import argparse

from . import COMMANDS, Command


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    p.add_argument("--full", action="store_true", help="the whole benchmark split (400 prompts) and every scorer")
    p.add_argument("--prompts", type=int, default=None, help="number of benchmark prompts (default: 40, or all)")
    p.add_argument("--seeds", type=int, default=6, help="candidates per prompt")
    p.add_argument("--batch-size", type=int, default=60)
    p.add_argument("--overwrite", action="store_true", help="write into a folder that holds other files")
    p.add_argument("--no-progress", action="store_true")


def _run(args: argparse.Namespace) -> int:
    from ..demo import DemoConfig, run_demo

    index = run_demo(
        DemoConfig(
            out=args.out,
            full=args.full,
            prompts=args.prompts,
            seeds=args.seeds,
            batch_size=args.batch_size,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    )
    print(f"report: {index}")
    return 0


COMMANDS.register(
    "demo",
    Command("demo", "run the world benchmark for every world model: evaluate, BoN, leaderboard", _configure, _run),
)
