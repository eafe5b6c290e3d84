"""bench/world_report.py on the published world leaderboard."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_model_table_leads_with_the_skill_groups_that_cover_every_prompt(bench_script, capsys):
    doc = json.loads((ROOT / "leaderboards" / "world" / "leaderboard.json").read_text(encoding="utf-8"))
    bench_script("world_report").model_tables(doc)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| model | prompts x seeds | oracle TIFA score | fully aligned | mixed seeds | basic | "
                               "advanced |")  # fmt: skip
    groups = [line for line in lines if line.startswith("| sd-")][len(doc["models"]):]
    assert len(groups) == len(doc["models"])
    for m, line in zip(doc["models"], groups):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == m["name"]
        # every world prompt names an object, so each is basic or advanced, never both
        assert int(cells[1]) + int(cells[4]) == m["num_prompts"]
