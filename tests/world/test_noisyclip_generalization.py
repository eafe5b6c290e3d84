"""experiments/noisyclip_generalization.py: fresh training-distribution prompts against the benchmark, end to end."""

from __future__ import annotations

from noisyclip_metrics.world.benchmark import world_promptset
from noisyclip_metrics.world.build.presets import PRESETS
from noisyclip_metrics.world.build.stages import noisy_training_prompts


def test_fresh_prompts_are_unused_training_prompts(script):
    module = script("noisyclip_generalization")
    fresh = module.fresh_prompts(60)
    assert len(set(fresh)) == 60 and fresh == module.fresh_prompts(60)
    assert not set(fresh) & set(noisy_training_prompts(PRESETS.get("full")))
    assert not set(fresh) & set(world_promptset().texts)


def test_script_reports_each_prompt_set_and_resumes(script, tmp_path, capsys):
    module = script("noisyclip_generalization")
    args = [
        "--out",
        str(tmp_path),
        "--fresh",
        "2",
        "--benchmark-prompts",
        "3",
        "--seeds",
        "2",
        "--models",
        "sd-small",
        "--scorers",
        "world:noisyclip-x0",
        "world:noisyclip",
        "--steps",
        "4",
        "20",
        "--resamples",
        "50",
        "--wise",
        "1",
    ]
    module.main(args)
    out = capsys.readouterr().out
    rows = [line.strip("| ").split(" | ") for line in out.splitlines() if line.startswith("| sd-small")]
    assert {r[5] for r in rows} == {
        "world:noisyclip-x0",
        "world:noisyclip",
        "world:noisyclip-x0 WiSE-FT 1",
        "world:noisyclip WiSE-FT 1",
    }
    counts = {r[1]: int(r[2]) for r in rows}
    assert counts["fresh"] == 2 and counts["benchmark, all"] == 3
    assert sum(n for part, n in counts.items() if part.startswith("benchmark, ") and part != "benchmark, all") == 3
    cells = {(r[1], r[5]): r[6:] for r in rows}
    assert all(cells[part, f"{name} WiSE-FT 1"] == cells[part, name] for part, name in cells if "WiSE" not in name)
    for row in rows:
        for cell in row[6:]:
            value, interval = cell.split(" [")
            lo, hi = (float(x) for x in interval.rstrip("]").split(", "))
            assert lo <= float(value) <= hi
    shards = sorted(p.name for p in tmp_path.rglob("*.safetensors"))
    assert shards
    module.main(args)
    assert capsys.readouterr().out.split("Best-of-2")[1] == out.split("Best-of-2")[1]  # the same stores, reused
    assert sorted(p.name for p in tmp_path.rglob("*.safetensors")) == shards
