"""docs/cli.md is generated from the parsers (`python tools/cli_reference.py --write`)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_cli_reference_is_what_the_parsers_say(script):
    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == script("cli_reference").page()


def test_a_new_flag_changes_the_page(script, monkeypatch):
    from noisyclip_metrics.cli import COMMANDS, Command

    module = script("cli_reference")
    before = module.page()

    def configure(p):
        p.add_argument("--shiny", type=int, default=3, help="a flag no command has")

    monkeypatch.setitem(COMMANDS._items, "shiny", Command("shiny", "a command for this test", configure, print))
    after = module.page()
    assert after != before
    assert "| `--shiny` | `SHINY` |  | 3 | a flag no command has |" in after
