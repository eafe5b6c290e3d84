"""tools/world_report.py on the published world leaderboard."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_model_table_leads_with_the_skill_groups_that_cover_every_prompt(script, capsys):
    doc = json.loads((ROOT / "leaderboards" / "world" / "leaderboard.json").read_text(encoding="utf-8"))
    script("world_report").model_tables(doc)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(
        "| model | prompts x seeds | oracle TIFA score | fully aligned | mixed seeds | basic | advanced |"
    )
    groups = [line for line in lines if line.startswith("| sd-")][len(doc["models"]) :]
    assert len(groups) == len(doc["models"])
    for m, line in zip(doc["models"], groups, strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == m["name"]
        # every world prompt names an object, so each is basic or advanced, never both
        assert int(cells[1]) + int(cells[4]) == m["num_prompts"]


def test_stratified_groups_separate_the_relation_confound(script, tmp_path, capsys):
    """Basic prompts fail on relations, advanced ones elsewhere: the strata and the standardised rate show it."""
    import numpy as np

    from tests.bon.test_offline import make_store

    skills = [["object", "spatial relation"]] * 4 + [["object"]] * 4 + [["object", "counting"]] * 4
    skills += [["object", "counting", "spatial relation"]] * 2
    aligned = np.array([[0.0] * 3] * 4 + [[1.0] * 3] * 4 + [[1.0, 0.0, 0.0]] * 4 + [[0.0] * 3] * 2)
    store = make_store(tmp_path / "r", {"s": np.zeros((14, 3, 5))}, aligned.copy(), aligned, skills=skills)
    script("world_report").stratified_groups(store.root, resamples=50)
    out = capsys.readouterr().out
    rows = {
        tuple(c.strip() for c in line.strip("|").split("|")[:2]): line
        for line in out.splitlines()
        if line.startswith("| toy |")
    }
    assert "| 4 | 1.000 [1.00, 1.00] |" in rows["toy", "basic"] and "| 4 | 0.000 [0.00, 0.00] |" in rows["toy", "basic"]
    assert "| 4 | 0.333 [0.33, 0.33] |" in rows["toy", "advanced"] and "| 2 | 0.000" in rows["toy", "advanced"]
    # basic: half its prompts have a relation -> advanced standardised = 0.5 * 0 + 0.5 * 1/3
    assert "| toy | 0.50 | 0.500" in out and "| 0.167 [0.17, 0.17] |" in out


def test_results_page_and_readme_table_are_what_the_published_leaderboard_gives(script):
    """docs/results/world.md and the README's headline table are generated (`python tools/world_report.py --write`):
    a figure typed by hand, or a leaderboard republished without regenerating them, fails here."""
    module = script("world_report")
    doc, extras = module.published(ROOT / "leaderboards" / "world")
    build = json.loads((ROOT / "noisyclip_metrics" / "world" / "weights" / "BUILD.json").read_text(encoding="utf-8"))
    assert (ROOT / "docs" / "results" / "world.md").read_text(encoding="utf-8") == module.page(doc, build, **extras)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme == module.readme_block(readme, doc)


def test_the_readme_check_sees_an_edited_figure(script):
    module = script("world_report")
    doc, *_ = module.published(ROOT / "leaderboards" / "world")
    start, end = module.MARKERS
    readme = f"intro\n{start}\n{module.headline(doc)}{end}\nrest\n"
    assert module.readme_block(readme, doc) == readme
    edited = readme.replace("0.", "9.", 1)
    assert module.readme_block(edited, doc) != edited


def _evaluation(model: str, replicate: str, judged: list[float], pick: float, vs_x0: list[float]) -> dict:
    return {
        "model": model,
        "replicate": replicate,
        "prompts": 2,
        "seeds": [0, 5] if replicate != "fresh-seeds" else [100, 105],
        "pairwise": {
            "frozen CLIP (x0 preview)": [[0.6, 0.5, 0.7], [0.7, 0.6, 0.8], [0.8, 0.7, 0.9]],
            "target=judged read=x0": [[a, a - 0.1, a + 0.1] for a in judged],
        },
        "best_of_n": {
            "clip-final": 0.8,
            "random": 0.5,
            "oracle": 0.9,
            "scorers": {"frozen CLIP (x0 preview)": [0.6, 0.7, 0.8], "target=judged read=x0": [0.7, pick, 0.88]},
            "vs_clip_x0": {
                "frozen CLIP (x0 preview)": [[0.0, 0.0, 0.0]] * 3,
                "target=judged read=x0": [[0.1, 0.0, 0.2], vs_x0, [0.08, 0.0, 0.1]],
            },
            "vs_clip_final": {},
        },
    }


def test_recipes_section_checks_the_shipped_recipe_on_every_evaluation(script, capsys):
    module = script("world_report")
    recipes = {
        "study": {
            "models": ["sd-base"],
            "replicates": ["benchmark", "fresh-seeds"],
            "training_seeds": [1_000_000_000, 1_999_999_999],
            "training_prompts": 500,
            "fine_tuning_steps": 10,
            "read": "x0",
            "targets": ["judged"],
            "git_revision": "0123456789abcdef",
        },
        "fractions": [0.2, 0.3, 1.0],
        "evaluations": [
            _evaluation("sd-base", "benchmark", [0.7, 0.8, 0.9], 0.84, [0.14, 0.05, 0.2]),
            _evaluation("sd-base", "fresh-seeds", [0.6, 0.7, 0.7], 0.72, [0.02, -0.01, 0.05]),
        ],
    }
    module.recipes_tables(recipes)
    out = capsys.readouterr().out
    # mean over 0.2-0.5: (0.7 + 0.8) / 2 against frozen x0's (0.6 + 0.7) / 2; clip-final = frozen x0 at 1.0
    assert "| sd-base | benchmark | 2 x 0-5 | 0.650 | 0.750 | 0.800 |" in out
    assert "| sd-base | fresh-seeds | 2 x 100-105 | 0.875 | 0.900 | 0.800 | 0.500 | 0.900 |" in out
    assert (
        "| sd-base | benchmark | 2 x 0-5 | +0.100 (yes) | 1.000 (yes) | 1.050 (yes) | +0.140 [+0.050, +0.200] (yes) |"
        in out
    )
    assert (
        "| sd-base | fresh-seeds | 2 x 100-105 | +0.000 (no) | 0.875 (no) | 0.900 (no) | +0.020 [-0.010, +0.050] (no) |"
        in out
    )
    assert "| target=judged read=x0 | 0.700 (0.875) | 0.840 (1.050) | 0.880 (1.100) |" in out
    text = module.page(
        json.loads((ROOT / "leaderboards" / "world" / "leaderboard.json").read_text()),
        None,
        None,
        None,
        recipes=recipes,
    )
    assert "## Training recipes" in text and "500 prompts" in text and "revision `0123456789`" in text
