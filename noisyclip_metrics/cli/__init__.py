"""The ``noisyclip`` command line: one module per subcommand, registered in :data:`COMMANDS`.

Every subcommand has ``--help``. Errors print a single line ``noisyclip <command>: error: <message>`` on stderr and
exit with status 2; heavy libraries are imported only when a subcommand runs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from noisyclip_metrics.errors import NoisyCLIPError
from noisyclip_metrics.registry import Registry

__all__ = ["COMMANDS", "Command", "OneLineParser", "main"]


@dataclass(frozen=True)
class Command:
    """A subcommand: ``configure`` adds its arguments, ``run`` executes it and returns the exit status."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: Registry[Command] = Registry("command")

#: Modules whose import registers subcommands (later capabilities append here).
COMMAND_MODULES = [
    "noisyclip_metrics.cli.core",
    "noisyclip_metrics.cli.evaluate",
    "noisyclip_metrics.cli.correlate",
    "noisyclip_metrics.cli.leaderboard",
    "noisyclip_metrics.cli.bon",
    "noisyclip_metrics.cli.demo",
]


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _load_commands() -> None:
    for module in COMMAND_MODULES:
        importlib.import_module(module)
    from noisyclip_metrics.plugins import load_plugins

    load_plugins()  # plugins add their own subcommands (the world's `noisyclip world`)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every registered subcommand. With ``only``, just that subcommand gets its arguments (the
    others are listed, so ``noisyclip --help`` works, but their possibly heavy ``configure`` is not run)."""
    _load_commands()
    parser = OneLineParser(
        prog="noisyclip",
        description="Prompt alignment from noisy diffusion latents (NoisyCLIP): metrics, curves, early-stopping BoN.",
    )
    from noisyclip_metrics import __version__

    parser.add_argument("--version", action="version", version=f"noisyclip-metrics {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name in COMMANDS:
        cmd = COMMANDS.get(name)
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        if only is None or only == name:
            cmd.configure(p)
        p.set_defaults(_run=cmd.run, _prog=p.prog)
    return parser


def _quiet_libraries() -> None:
    """Keep the output to what the command says: library info/warnings go away unless NOISYCLIP_VERBOSE is set."""
    if os.environ.get("NOISYCLIP_VERBOSE"):
        return
    for name in ("diffusers", "transformers", "huggingface_hub", "open_clip", "root"):
        logging.getLogger(None if name == "root" else name).setLevel(logging.ERROR)
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``noisyclip`` console script."""
    _quiet_libraries()
    argv = list(sys.argv[1:] if argv is None else argv)
    _load_commands()
    first = next((a for a in argv if not a.startswith("-")), "")
    parser = build_parser(only=first)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    previous = warnings.formatwarning  # restored after the command: a caller's later warnings keep their format
    warnings.formatwarning = lambda message, *_, **__: f"{args._prog}: warning: {' '.join(str(message).split())}\n"
    try:
        return int(args._run(args) or 0)
    except (NoisyCLIPError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as err:
        message = " ".join(str(err).split())
        sys.stderr.write(f"{args._prog}: error: {message}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"{args._prog}: interrupted\n")
        return 130
    finally:
        warnings.formatwarning = previous
