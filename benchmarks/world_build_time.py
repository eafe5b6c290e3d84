"""How long a full world build takes on this machine, from a finished build's work folder.

    python benchmarks/world_build_time.py --work runs/world-build

Each stage's ``DONE.json`` records the seconds it took, but a stage that ran beside other jobs, or was resumed, records
a slowed or partial time. The training stages also log their elapsed time every 50 steps (``run/log.jsonl``), so the
*median* pace per step of a stage's log intervals is robust to the intervals slowed by other work. The table prints,
per stage: the recorded seconds, the steps, the median and fastest pace, and an estimate of the stage on an otherwise
idle machine: ``median pace x steps`` plus the stage's untimed work around training (recorded seconds minus the log's
last elapsed time, when the log was written in one uninterrupted run). Stages without a step log count as recorded.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path

from noisyclip_metrics.world.build import stages as _stages  # noqa: F401  (registers the stages)
from noisyclip_metrics.world.build.driver import STAGES


def stage_row(folder: Path) -> dict[str, float | int | str | None]:
    """Recorded seconds, steps, median / fastest pace and the estimate for one stage folder."""
    done = json.loads((folder / "DONE.json").read_text(encoding="utf-8"))
    recorded = float(done.get("seconds", 0.0))
    as_recorded = {
        "recorded": recorded,
        "steps": None,
        "median": None,
        "fastest": None,
        "estimate": recorded,
        "basis": "recorded",
    }
    log, config = folder / "run" / "log.jsonl", folder / "run" / "config.json"
    if not log.is_file() or not config.is_file():
        return as_recorded
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    steps = int(json.loads(config.read_text(encoding="utf-8"))["steps"])
    paces, resumed = [], False
    for a, b in itertools.pairwise(rows):
        if b["step"] > a["step"] and b["seconds"] > a["seconds"]:
            paces.append((b["seconds"] - a["seconds"]) / (b["step"] - a["step"]))
        else:
            resumed = True  # elapsed time restarts when a stage resumes
    if not paces:  # fewer than two log lines (a short run)
        return as_recorded
    median = statistics.median(paces)
    around = 0.0 if resumed else max(0.0, recorded - float(rows[-1]["seconds"]))
    return {
        "recorded": recorded,
        "steps": steps,
        "median": median,
        "fastest": min(paces),
        "estimate": median * steps + around,
        "basis": "resumed: training only" if resumed else "log",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="a finished world build's work folder")
    args = parser.parse_args(argv)
    print("| stage | recorded s | steps | median s/step | fastest s/step | estimate s (idle machine) | basis |")
    print("|---|---:|---:|---:|---:|---:|---|")
    total_recorded = total_estimate = 0.0
    for name in STAGES.names():
        folder = args.work / name
        if not (folder / "DONE.json").is_file():
            print(f"| {name} | — | | | | | not built |")
            continue
        r = stage_row(folder)
        total_recorded += float(r["recorded"])  # type: ignore[arg-type]
        total_estimate += float(r["estimate"])  # type: ignore[arg-type]
        pace = f"{r['median']:.3f} | {r['fastest']:.3f}" if r["median"] is not None else " | "
        print(f"| {name} | {r['recorded']:,.0f} | {r['steps'] or ''} | {pace} | {r['estimate']:,.0f} | {r['basis']} |")
    print(
        f"| **total** | **{total_recorded:,.0f}** | | | | **{total_estimate:,.0f} ({total_estimate / 3600:.2f} h)** | |"
    )


if __name__ == "__main__":
    main()
