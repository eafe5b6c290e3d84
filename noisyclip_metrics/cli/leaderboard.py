"""``noisyclip leaderboard build RESULTS... --out DIR``: results stores -> a static leaderboard (HTML, Markdown,
JSON, CSV); see :mod:`noisyclip_metrics.leaderboard`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from noisyclip_metrics.cli import COMMANDS, Command, OneLineParser
from noisyclip_metrics.cli.core import add_dataclass_arguments, dataclass_from_args
from noisyclip_metrics.registry import Registry


@dataclass(frozen=True)
class Action:
    """A sub-action of ``noisyclip leaderboard``."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


ACTIONS: Registry[Action] = Registry("leaderboard action")
"""Actions of ``noisyclip leaderboard`` (``build``; later ones register here)."""


def _configure_build(p: argparse.ArgumentParser) -> None:
    from noisyclip_metrics.leaderboard import BuildConfig

    p.add_argument(
        "results", nargs="+", type=Path, metavar="RESULTS", help="results folders (written by noisyclip evaluate --out)"
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (new or empty unless --overwrite)")
    p.add_argument(
        "--search",
        nargs="+",
        type=Path,
        default=[],
        metavar="RESULTS",
        help="more results folders whose budget-matched search documents (noisyclip bon search) to publish",
    )
    add_dataclass_arguments(p, BuildConfig)
    p.epilog = "Example: noisyclip leaderboard build runs/results runs/more-results --out leaderboards/world"


def _run_build(args: argparse.Namespace) -> int:
    from noisyclip_metrics.leaderboard import BuildConfig, build_leaderboard

    config = dataclass_from_args(BuildConfig, args)
    result = build_leaderboard(args.results, args.out, config, search=args.search)
    print(
        f"leaderboard of {result.entries} model(s), {result.rows} rows, in {result.out} ({result.seconds:.1f} s): "
        f"{', '.join(p.name for p in result.files if p.parent == result.out)}"
    )
    return 0


ACTIONS.register(
    "build",
    Action(
        "build a leaderboard (index.html, README.md, leaderboard.json/.csv) from results folders",
        _configure_build,
        _run_build,
    ),
)


def _configure_guard(p: argparse.ArgumentParser) -> None:
    from noisyclip_metrics.leaderboard.guard import GuardConfig

    p.add_argument("results", nargs="+", type=Path, metavar="RESULTS", help="the published results folders")
    p.add_argument(
        "--fresh-seeds",
        nargs="*",
        type=Path,
        default=[],
        metavar="DIR",
        help="results folders of the same models and prompts on other seeds (paired by prompt)",
    )
    p.add_argument(
        "--fresh-prompts",
        nargs="*",
        type=Path,
        default=[],
        metavar="DIR",
        help="results folders of the same models on prompts outside the benchmark and the training data",
    )
    p.add_argument(
        "--scorers",
        nargs="+",
        required=True,
        metavar="SCORER",
        help="the fine-tuned scorers to check (gating), e.g. noisyclip noisyclip-x0",
    )
    p.add_argument(
        "--controls",
        nargs="*",
        default=[],
        metavar="SCORER",
        help="frozen scorers reported beside them (never gating), e.g. clip-x0 clip-final",
    )
    p.add_argument("--out", required=True, type=Path, help="folder for guard.json and guard.md (the leaderboard's)")
    add_dataclass_arguments(p, GuardConfig)
    p.epilog = (
        "Exit status 2 when a fine-tuned scorer's published curve differs from a replicate beyond its "
        "interval. Example: noisyclip leaderboard guard runs/main --fresh-seeds runs/seeds-100 --scorers "
        "noisyclip-x0 --controls clip-x0 --out leaderboards/world"
    )


def _run_guard(args: argparse.Namespace) -> int:
    from noisyclip_metrics.errors import InputError
    from noisyclip_metrics.leaderboard.guard import GuardConfig, replicates_from_results, run_guard, write_guard

    folders = {k: v for k, v in (("fresh-seeds", args.fresh_seeds), ("fresh-prompts", args.fresh_prompts)) if v}
    if not folders:
        raise InputError("--fresh-seeds / --fresh-prompts: expected at least one replicate results folder")
    config = dataclass_from_args(GuardConfig, args)
    pairs, curves = replicates_from_results(args.results, folders)
    report = run_guard(pairs, args.scorers, args.controls, config)
    write_guard(report, curves, args.out)
    gating = [c for c in report.checks if c.gating]
    print(
        f"leakage guard: {len(gating) - len(report.failed)} of {len(gating)} checks within their interval "
        f"(z = {report.z:.2f}); report in {args.out / 'guard.md'}"
    )
    report.raise_on_failure()
    return 0


ACTIONS.register(
    "guard",
    Action(
        "check fine-tuned scorers' published curves against fresh-seed and fresh-prompt "
        "replicates (exit 2 when they differ)",
        _configure_guard,
        _run_guard,
    ),
)


def _configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=OneLineParser, required=True)
    for name in ACTIONS:
        action = ACTIONS.get(name)
        q = sub.add_parser(name, help=action.help, description=action.help)
        action.configure(q)
        q.set_defaults(_action=action.run, _prog=q.prog)


def _run(args: argparse.Namespace) -> int:
    return int(args._action(args) or 0)


COMMANDS.register(
    "leaderboard",
    Command(
        "leaderboard", "build a static leaderboard (HTML, Markdown, JSON, CSV) from results folders", _configure, _run
    ),
)
