"""benchmarks/world_build_time.py: a stage's idle-machine estimate from the median pace of its step log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def bench(script):
    return script("world_build_time")


def _stage(folder: Path, seconds: float, steps: int | None = None, log: list[tuple[int, float]] = ()) -> Path:
    folder.mkdir(parents=True)
    (folder / "DONE.json").write_text(json.dumps({"seconds": seconds}))
    if steps is not None:
        (folder / "run").mkdir()
        (folder / "run" / "config.json").write_text(json.dumps({"steps": steps}))
        lines = [json.dumps({"step": s, "seconds": t}) for s, t in log]
        (folder / "run" / "log.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_median_pace_ignores_slowed_intervals_and_adds_the_untimed_work(bench, tmp_path):
    # 0.5 s/step except one interval slowed 4x by other work; 30 s around the training
    log = [(50, 25.0), (100, 50.0), (150, 150.0), (200, 175.0), (250, 200.0)]
    row = bench.stage_row(_stage(tmp_path / "vae", 230.0, steps=250, log=log))
    assert row["median"] == pytest.approx(0.5) and row["fastest"] == pytest.approx(0.5)
    assert row["estimate"] == pytest.approx(0.5 * 250 + 30.0) and row["basis"] == "log"


def test_a_resumed_stage_counts_training_only_and_a_stage_without_log_as_recorded(bench, tmp_path):
    resumed = [(50, 50.0), (100, 100.0), (150, 40.0), (200, 90.0)]  # elapsed time restarts after step 100
    row = bench.stage_row(_stage(tmp_path / "unet", 90.0, steps=200, log=resumed))
    assert row["median"] == pytest.approx(1.0) and row["estimate"] == pytest.approx(200.0)
    assert row["basis"] == "resumed: training only"
    plain = bench.stage_row(_stage(tmp_path / "trajectories", 614.0))
    assert plain["estimate"] == 614.0 and plain["steps"] is None
    short = bench.stage_row(_stage(tmp_path / "ci", 3.0, steps=8, log=[(8, 2.5)]))  # one log line: as recorded
    assert short["estimate"] == 3.0


def test_prints_every_stage_and_the_total(bench, tmp_path, capsys):
    work = tmp_path / "work"
    _stage(work / "vae", 230.0, steps=250, log=[(50, 25.0), (100, 50.0), (150, 75.0), (200, 100.0), (250, 125.0)])
    _stage(work / "trajectories", 614.0)
    bench.main(["--work", str(work)])
    out = capsys.readouterr().out
    assert "| vae | 230 | 250 | 0.500 | 0.500 | 230 | log |" in out
    assert "| clip | — | | | | | not built |" in out
    assert "| **total** | **844** | | | | **844 (0.23 h)** | |" in out
