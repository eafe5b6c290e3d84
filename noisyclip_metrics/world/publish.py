"""Publishing the world leaderboard: the slice of a published run that a test regenerates from scratch.

``tools/publish_world_leaderboard.py`` writes ``leaderboards/world/slice/leaderboard.json`` with :func:`slice_document`
and ``tests/leaderboard/test_published_leaderboard.py`` rebuilds the same prompts from trajectories and compares.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from noisyclip_metrics.evaluation.results import ResultsStore, restrict_store
from noisyclip_metrics.leaderboard.build import BuildConfig, build_leaderboard
from noisyclip_metrics.world.benchmark import world_promptset

__all__ = ["SLICE_CONFIG", "slice_document", "slice_store"]

SLICE_CONFIG = BuildConfig(
    title="ShapesWorld leaderboard: published slice", n_resamples=200, overwrite=True, charts=False
)


def slice_store(src: Path, dst: Path, n_prompts: int) -> ResultsStore:
    """A results store holding only the rows of the world benchmark's first ``n_prompts`` prompts (the prompts
    ``noisyclip evaluate --prompts n_prompts`` would run) of every run of ``src``."""
    return restrict_store(src, dst, world_promptset(n_prompts).ids)


def slice_document(results: Path, work: Path, n_prompts: int) -> dict[str, Any]:
    """The leaderboard JSON of the first ``n_prompts`` prompts of ``results``."""
    sliced = slice_store(results, work / "slice-results", n_prompts)
    build_leaderboard([sliced.root], work / "slice-board", SLICE_CONFIG)
    return json.loads((work / "slice-board" / "leaderboard.json").read_text(encoding="utf-8"))
