"""Every ``noisyclip`` command in a ```bash block of the README and of the documentation pages names subcommands,
flags and values that the CLI accepts: a renamed flag, a removed choice or a mistyped value in the docs fails here.

The commands are parsed by the real parser, not run: most need a real pipeline, a GPU or hours of CPU. The two
commands of the README (``scripts/run.sh demo`` and ``scripts/run.sh test``) are run by CI and the demo themselves.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: How a documented line starts the CLI: the console script (maybe from the venv) or ``-m noisyclip_metrics.cli``.
PROGRAMS = ("noisyclip", ".venv/bin/noisyclip")


def cli_argv(line: str) -> list[str] | None:
    """The CLI arguments of one shell line (comments dropped), or None when it does not run the CLI.

    Examples:
        >>> cli_argv("noisyclip bon offline --results runs/r   # tables")
        ['bon', 'offline', '--results', 'runs/r']
        >>> cli_argv("torchrun --nproc-per-node=2 -m noisyclip_metrics.cli evaluate --model m")
        ['evaluate', '--model', 'm']
        >>> cli_argv("python3 -m venv .venv") is None
        True
    """
    words = shlex.split(line, comments=True)
    if words and words[0] in PROGRAMS:
        return words[1:]
    if "-m" in words and words[words.index("-m") + 1 : words.index("-m") + 2] == ["noisyclip_metrics.cli"]:
        return words[words.index("-m") + 2 :]
    return None


def documented_commands(text: str) -> list[list[str]]:
    """The CLI arguments of every command in ``text``'s ```bash blocks (continuation lines joined)."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            argv = cli_argv(line)
            if argv is not None:
                found.append(argv)
    return found


COMMANDS = [
    (page.relative_to(ROOT).as_posix(), argv)
    for page in PAGES
    for argv in documented_commands(page.read_text(encoding="utf-8"))
]


def parse_error(argv: list[str]) -> str | None:
    """The parser's error for ``argv`` (None when it parses), as ``noisyclip`` would print it."""
    from noisyclip_metrics.cli import build_parser

    first = next((a for a in argv if not a.startswith("-")), "")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            build_parser(only=first).parse_args(argv)
        except SystemExit:
            return err.getvalue().strip() or "exit"
    return None


def test_the_docs_document_commands():
    pages = {page for page, _ in COMMANDS}
    assert {"README.md", "docs/guides/evaluation.md", "docs/guides/best-of-n.md", "docs/guides/training.md"} <= pages
    assert len(COMMANDS) >= 20


@pytest.mark.parametrize(
    ("page", "argv"), COMMANDS, ids=[f"{p}:{' '.join(a[:2])}[{i}]" for i, (p, a) in enumerate(COMMANDS)]
)
def test_documented_command_parses(page, argv):
    argv = [a for a in argv if a != "..."]  # "noisyclip evaluate ... --judge FILE": the flags beside the elision
    assert parse_error(argv) is None, f"{page}: `noisyclip {shlex.join(argv)}`: {parse_error(argv)}"


def test_the_check_fails_on_a_renamed_flag_a_bad_choice_and_a_bad_value():
    ok = documented_commands("```bash\nnoisyclip bon offline --results runs/r --n 2 4\n```\n")
    assert ok == [["bon", "offline", "--results", "runs/r", "--n", "2", "4"]] and parse_error(ok[0]) is None
    assert "unrecognized arguments: --modle" in parse_error(["evaluate", "--modle", "m"])
    assert "invalid choice" in parse_error(["leaderboard", "nope"])
    assert "invalid int value" in parse_error(["bon", "offline", "--results", "r", "--n", "two"])
