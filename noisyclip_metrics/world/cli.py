"""``noisyclip world``: build (retrain) the built-in world, list its ids, show how the shipped weights were made."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from noisyclip_metrics.cli import COMMANDS, Command
from noisyclip_metrics.cli.core import add_dataclass_arguments, dataclass_from_args


@dataclass(frozen=True)
class BuildSettings:
    """Settings of ``noisyclip world build``.

    Args:
        work: work folder (checkpoints; rerun to resume).
        out: weights folder to write (fp16 safetensors).
        preset: build preset: 'full' (the shipped weights) or 'ci' (tiny).
        stages: run only these stages (default: all).
        threads: torch threads (default: the preset's).
        from_weights: take the stages before 'trajectories' from a packaged weights folder (e.g. the shipped
            noisyclip_metrics/world/weights) instead of training them: rebuilds only the NoisyCLIPs.
        progress: show progress.
    """

    work: Path
    out: Path
    preset: str = "full"
    stages: tuple[str, ...] | None = None
    threads: int | None = None
    from_weights: Path | None = None
    progress: bool = True


def _configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="world_command", metavar="ACTION", required=True, parser_class=type(p))
    build = sub.add_parser("build", help="retrain every world model from nothing (deterministic, resumable)")
    add_dataclass_arguments(build, BuildSettings)
    sub.add_parser("list", help="list the world ids")
    sub.add_parser("info", help="print BUILD.json of the installed world weights")


def _run(args: argparse.Namespace) -> int:
    import dataclasses

    from noisyclip_metrics.world.assets import WORLD_IDS, world_build_info, world_weights_dir

    if args.world_command == "list":
        for name in WORLD_IDS:
            asset = WORLD_IDS.get(name)
            print(f"{name:<18} {asset.kind:<9} {asset.description}")
        print(f"weights: {world_weights_dir()}")
        return 0
    if args.world_command == "info":
        print(json.dumps(world_build_info(), indent=2))
        return 0
    from noisyclip_metrics.world.build.driver import build_world
    from noisyclip_metrics.world.build.presets import PRESETS

    settings = dataclass_from_args(BuildSettings, args)
    config = PRESETS.get(settings.preset)
    if settings.threads is not None:
        config = dataclasses.replace(config, threads=settings.threads)
    command = "noisyclip " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else None
    metrics = build_world(
        settings.work,
        settings.out,
        config,
        stages=list(settings.stages) if settings.stages else None,
        progress=settings.progress,
        command=command,
        from_weights=settings.from_weights,
    )
    for stage, values in metrics.items():
        shown = {
            k: v for k, v in values.items() if not isinstance(v, (list, dict)) and k not in ("command", "git_revision")
        }
        print(f"{stage:<14} {json.dumps(shown)}")
    return 0


COMMANDS.register(
    "world", Command("world", "the built-in world: build (retrain), list ids, build info", _configure, _run)
)
