"""The published world leaderboard is what the code produces: a slice of it is regenerated from scratch.

``leaderboards/world/slice/leaderboard.json`` was built by ``tools/publish_world_leaderboard.py`` from the rows of the
published full run restricted to the first prompts of the world benchmark. Here the same prompts are generated again
with the shipped world models, scored, judged and summarised; the curves, judge scores and ranking must be equal.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "leaderboards" / "world"

pytestmark = pytest.mark.slow


def _close(a: object, b: object, path: str = "") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, (int, float)):
        assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-4, f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


@pytest.mark.skipif(not (PUBLISHED / "slice" / "leaderboard.json").is_file(), reason="no published leaderboard")
def test_published_slice_is_reproduced(tmp_path):
    from noisyclip_metrics.cli.demo import demo_scorers
    from noisyclip_metrics.evaluation.runner import EvalConfig, evaluate
    from noisyclip_metrics.world.publish import slice_document

    published = json.loads((PUBLISHED / "slice" / "leaderboard.json").read_text(encoding="utf-8"))
    full = json.loads((PUBLISHED / "demo.json").read_text(encoding="utf-8"))["settings"]
    n_prompts = published["models"][0]["num_prompts"]
    for model in full["models"]:
        evaluate(
            EvalConfig(
                model=model,
                out=str(tmp_path / "results"),
                benchmark="world",
                prompts=n_prompts,
                seeds=tuple(range(full["seeds"])),
                scorers=demo_scorers(full=True),
                batch_size=full["batch_size"],
                name=model.split(":")[-1],
                progress=False,
            )
        )
    mine = slice_document(tmp_path / "results", tmp_path / "work", n_prompts)
    keep = (
        "name",
        "model",
        "benchmark",
        "judge",
        "seeds",
        "num_steps",
        "scorers",
        "num_prompts",
        "final_judge_score",
        "aligned_rate",
        "curves",
        "rank",
    )
    assert [m["name"] for m in mine["models"]] == [m["name"] for m in published["models"]]
    for ours, theirs in zip(mine["models"], published["models"], strict=True):
        _close({k: ours.get(k) for k in keep}, {k: theirs.get(k) for k in keep}, ours["name"])


def test_the_published_runs_name_committed_code():
    """Every published run records a clean git revision (the 100-prompt publication recorded `-dirty`)."""
    from noisyclip_metrics.leaderboard.build import unpublishable_runs

    for path in (PUBLISHED / "leaderboard.json", PUBLISHED / "slice" / "leaderboard.json"):
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert doc["provenance"] and unpublishable_runs(doc) == [], path
    dirty = {"provenance": [{**doc["provenance"][0], "git_revision": "0123abc-dirty"}]}
    assert unpublishable_runs(dirty) != []
