"""What the world build's stages share: the :class:`Stage` record, the :class:`BuildContext` they run in, the
:data:`STAGES` registry they add themselves to (:mod:`.stages`), and the provenance written to ``BUILD.json``."""

from __future__ import annotations

import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from noisyclip_metrics.registry import Registry
from noisyclip_metrics.world.build.presets import WorldBuildConfig

__all__ = ["STAGES", "BuildContext", "Stage", "build_record", "copy_tree"]


@dataclass(frozen=True)
class Stage:
    """One step of the build: ``run(ctx)`` returns the metrics recorded in ``DONE.json``."""

    name: str
    run: Callable[[BuildContext], dict[str, Any]]


@dataclass
class BuildContext:
    """What stages share: folders, configuration, progress flag, and the command line and source revision the build
    started from (read once at the start: edits or commits made while a build runs for hours must not change its
    record)."""

    work: Path
    out: Path
    config: WorldBuildConfig
    progress: bool
    command: str = ""
    revision: str = "unknown"

    def folder(self, stage: str) -> Path:
        path = self.work / stage
        path.mkdir(parents=True, exist_ok=True)
        return path


STAGES: Registry[Stage] = Registry("world build stage")


def _register(name: str) -> Callable[[Callable[[BuildContext], dict[str, Any]]], Callable[..., Any]]:
    def deco(fn: Callable[[BuildContext], dict[str, Any]]) -> Callable[..., Any]:
        STAGES.register(name, Stage(name, fn))
        return fn

    return deco


def build_record(ctx: BuildContext, metrics: dict[str, Any]) -> dict[str, Any]:
    """The provenance written to ``BUILD.json``."""
    from noisyclip_metrics import __version__

    return {
        "command": ctx.command,
        "git_revision": ctx.revision,
        "noisyclip_metrics": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": ctx.config.threads,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": ctx.config.to_json(),
        "metrics": {k: v for k, v in metrics.items() if k != "package"},
        "total_seconds": round(sum(float(v.get("seconds", 0)) for k, v in metrics.items() if k != "package"), 1),
    }


def copy_tree(src: Path, dst: Path) -> None:
    """Replace ``dst`` with a copy of ``src``."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
