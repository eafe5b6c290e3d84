"""``noisyclip leaderboard build RESULTS... --out DIR``: results stores -> a static leaderboard (HTML, Markdown,
JSON, CSV); see :mod:`noisyclip_metrics.leaderboard`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from noisyclip_metrics.cli import COMMANDS, Command, OneLineParser
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

    d = BuildConfig()
    p.add_argument(
        "results", nargs="+", type=Path, metavar="RESULTS", help="results folders (written by noisyclip evaluate --out)"
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (new or empty unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace the leaderboard files of a non-empty --out")
    p.add_argument("--title", default=d.title, help=f"page title (default: {d.title!r})")
    p.add_argument("--n-resamples", type=int, default=d.n_resamples, help="bootstrap resamples of prompts")
    p.add_argument("--confidence-level", type=float, default=d.confidence_level, help="of the bootstrap intervals")
    p.add_argument("--seed", type=int, default=d.seed, help="bootstrap seed")
    p.add_argument(
        "--within",
        type=float,
        default=d.within,
        help="share of the final improvement over chance for the earliest fraction (0.9: within 10%%)",
    )
    p.add_argument(
        "--reference-fraction",
        type=float,
        default=d.reference_fraction,
        help="step fraction shown in the ranking and skill tables",
    )
    p.add_argument("--no-charts", action="store_true", help="skip the PNG charts of README.md")
    p.add_argument(
        "--search",
        nargs="+",
        type=Path,
        default=[],
        metavar="RESULTS",
        help="more results folders whose budget-matched search documents (noisyclip bon search) to publish",
    )
    p.epilog = "Example: noisyclip leaderboard build runs/results runs/more-results --out leaderboards/world"


def _run_build(args: argparse.Namespace) -> int:
    from noisyclip_metrics.leaderboard import BuildConfig, build_leaderboard

    config = BuildConfig(
        n_resamples=args.n_resamples,
        confidence_level=args.confidence_level,
        seed=args.seed,
        within=args.within,
        reference_fraction=args.reference_fraction,
        title=args.title,
        overwrite=args.overwrite,
        charts=not args.no_charts,
    )
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

    d = GuardConfig()
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
    p.add_argument("--fractions", nargs="+", type=float, default=list(d.fractions), help="fractions checked")
    p.add_argument(
        "--family-alpha",
        type=float,
        default=d.family_alpha,
        help="false-alarm rate of the whole guard (Bonferroni over the gating checks)",
    )
    p.add_argument("--n-resamples", type=int, default=d.n_resamples, help="bootstrap resamples of prompts")
    p.add_argument("--out", required=True, type=Path, help="folder for guard.json and guard.md (the leaderboard's)")
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
    config = GuardConfig(tuple(args.fractions), args.family_alpha, args.n_resamples)
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
