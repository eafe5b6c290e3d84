"""The main job at its smallest: one world model, two prompts, two seeds, with pictures in the drill-down."""

from __future__ import annotations

import json

from noisyclip_metrics.cli import main


def test_demo_writes_a_leaderboard_whose_drill_down_shows_each_candidates_pictures(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--prompts", "2", "--seeds", "2", "--models", "world:sd-small"]
    assert main([*argv, "--batch-size", "4", "--no-progress"]) == 0
    assert "report:" in capsys.readouterr().out
    images = sorted(p.relative_to(out / "images" / "sd-small").as_posix() for p in (out / "images").rglob("*.png"))
    assert len(images) == 2 * 2 * 3 and {p.split("/")[1] for p in images} == {
        f"{s}{k}.png" for s in (0, 1) for k in ("", ".step4", ".step10")
    }
    html = (out / "leaderboard" / "index.html").read_text()
    drill = json.loads(html.split('id="drill-data">')[1].split("</script>")[0])
    (model,) = drill["models"]
    for prompt in model["prompts"]:
        assert all(uri.startswith("data:image/png;base64,") for uri in prompt["images"])
        assert prompt["preview_columns"] == ["x̂0 at 0.20 (k=4)", "x̂0 at 0.50 (k=10)"]
        assert all(u.startswith("data:image/png;base64,") for row in prompt["previews"] for u in row)
    assert str(tmp_path) not in (out / "leaderboard" / "leaderboard.json").read_text()  # folders are not recorded
    # without pictures: no images saved, none shown
    assert main([*argv, "--out", str(tmp_path / "plain"), "--no-pictures", "--batch-size", "4", "--no-progress"]) == 0
    assert not (tmp_path / "plain" / "images").exists()
    assert '"images"' not in (tmp_path / "plain" / "leaderboard" / "index.html").read_text()
