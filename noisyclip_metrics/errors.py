"""Exceptions raised by noisyclip-metrics.

Every error the library raises for bad input derives from :class:`NoisyCLIPError`, so the CLI can turn it into a
one-line message and exit status 2. The concrete classes also derive from the matching builtin (``ValueError``,
``KeyError``, ``FileNotFoundError``, ...) so that ordinary ``except ValueError`` code keeps working.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigMismatchError",
    "DataFileError",
    "InputError",
    "LeakageError",
    "LeakageWarning",
    "NoisyCLIPError",
    "SchemaError",
    "UnknownNameError",
]


class NoisyCLIPError(Exception):
    """Base class of every error raised on purpose by noisyclip-metrics."""


class InputError(NoisyCLIPError, ValueError):
    """An argument has the wrong shape, dtype, length, range or type.

    The message names the argument and says what was expected and what was received.
    """


class UnknownNameError(NoisyCLIPError, KeyError):
    """A name (scorer, preview map, architecture, benchmark, world id, ...) is not registered."""

    def __str__(self) -> str:  # KeyError would otherwise wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class CheckpointError(NoisyCLIPError, FileNotFoundError):
    """A checkpoint folder or weight file is missing, incomplete, unsafe or inconsistent with its config."""


class SchemaError(NoisyCLIPError, ValueError):
    """A store (trajectories, results) was written with another schema version or is malformed."""


class ConfigMismatchError(NoisyCLIPError, ValueError):
    """A resumed run was started with a configuration that differs from the one on disk."""


class DataFileError(NoisyCLIPError, ValueError):
    """A data file (benchmark, judgments) is missing, truncated or malformed; the message names file, line, field."""


class LeakageError(NoisyCLIPError, ValueError):
    """A scorer would be evaluated on seeds or prompts it was trained on, where disjoint data is required."""


class LeakageWarning(Warning):
    """A scorer is evaluated on seeds or prompts it was trained on (its scores there overstate it).

    Not a ``UserWarning``: the CLI silences libraries' user warnings but always prints this one, on one line.
    """
