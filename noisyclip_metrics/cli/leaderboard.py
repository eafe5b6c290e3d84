"""``noisyclip leaderboard build RESULTS... --out DIR``: results stores -> a static leaderboard (HTML, Markdown,
JSON, CSV); see :mod:`noisyclip_metrics.leaderboard`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..registry import Registry
from . import COMMANDS, Command, OneLineParser


@dataclass(frozen=True)
class Action:
    """A sub-action of ``noisyclip leaderboard``."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


ACTIONS: Registry[Action] = Registry("leaderboard action")
"""Actions of ``noisyclip leaderboard`` (``build``; later ones register here)."""


def _configure_build(p: argparse.ArgumentParser) -> None:
    from ..leaderboard import BuildConfig

    d = BuildConfig()
    p.add_argument("results", nargs="+", type=Path, metavar="RESULTS",
                   help="results folders (written by noisyclip evaluate --out)")  # fmt: skip
    p.add_argument("--out", required=True, type=Path, help="output folder (new or empty unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace the leaderboard files of a non-empty --out")
    p.add_argument("--title", default=d.title, help=f"page title (default: {d.title!r})")
    p.add_argument("--n-resamples", type=int, default=d.n_resamples, help="bootstrap resamples of prompts")
    p.add_argument("--confidence-level", type=float, default=d.confidence_level, help="of the bootstrap intervals")
    p.add_argument("--seed", type=int, default=d.seed, help="bootstrap seed")
    p.add_argument("--within", type=float, default=d.within,
                   help="share of the final improvement over chance for the earliest fraction (0.9: within 10%%)")
    p.add_argument("--reference-fraction", type=float, default=d.reference_fraction,
                   help="step fraction shown in the ranking and skill tables")
    p.add_argument("--no-charts", action="store_true", help="skip the PNG charts of README.md")
    p.epilog = "Example: noisyclip leaderboard build runs/results runs/more-results --out leaderboards/world"


def _run_build(args: argparse.Namespace) -> int:
    from ..leaderboard import BuildConfig, build_leaderboard

    config = BuildConfig(n_resamples=args.n_resamples, confidence_level=args.confidence_level, seed=args.seed,
                         within=args.within, reference_fraction=args.reference_fraction, title=args.title,
                         overwrite=args.overwrite, charts=not args.no_charts)  # fmt: skip
    result = build_leaderboard(args.results, args.out, config)
    print(f"leaderboard of {result.entries} model(s), {result.rows} rows, in {result.out} ({result.seconds:.1f} s): "
          f"{', '.join(p.name for p in result.files if p.parent == result.out)}")  # fmt: skip
    return 0


ACTIONS.register("build", Action("build a leaderboard (index.html, README.md, leaderboard.json/.csv) from results "
                                 "folders", _configure_build, _run_build))  # fmt: skip


def _configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=OneLineParser, required=True)
    for name in ACTIONS:
        action = ACTIONS.get(name)
        q = sub.add_parser(name, help=action.help, description=action.help)
        action.configure(q)
        q.set_defaults(_action=action.run, _prog=q.prog)


def _run(args: argparse.Namespace) -> int:
    return int(args._action(args) or 0)


COMMANDS.register("leaderboard", Command("leaderboard", "build a static leaderboard (HTML, Markdown, JSON, CSV) from "
                                         "results folders", _configure, _run))  # fmt: skip
