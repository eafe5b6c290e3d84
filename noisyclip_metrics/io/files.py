"""Small, strict readers and atomic writers shared by the CLI and the runners."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from noisyclip_metrics.errors import DataFileError, SchemaError
from noisyclip_metrics.io.jsonfile import read_json_file, read_text_file

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "current_umask",
    "fsync_file",
    "new_dir_mode",
    "new_file_mode",
    "read_manifest",
    "read_prompt_file",
    "save_safetensors",
    "write_json",
]


def read_prompt_file(path: str | Path) -> list[str]:
    """Prompts from a UTF-8 text file, one per line.

    Raises:
        DataFileError: for a missing file, bytes that are not UTF-8, a blank line or a duplicate prompt (naming the
            file and the line numbers).

    Examples:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "prompts.txt"
        >>> _ = p.write_text("a red circle\\ntwo blue squares\\n", encoding="utf-8")
        >>> read_prompt_file(p)
        ['a red circle', 'two blue squares']
    """
    path = Path(path)
    lines = read_text_file(path, "prompt file", DataFileError).split("\n")
    prompts: list[str] = []
    first_seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        text = line.rstrip("\r")
        if not text.strip():
            if number == len(lines) and not text:  # the newline at the end of the file
                continue
            raise DataFileError(f"{path}, line {number}: blank line; expected one prompt per line")
        text = text.strip()
        if text in first_seen:
            raise DataFileError(f"{path}, line {number}: duplicate of line {first_seen[text]} ({text!r})")
        first_seen[text] = number
        prompts.append(text)
    if not prompts:
        raise DataFileError(f"{path}: no prompts")
    return prompts


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (``/proc/self/status``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but only where /proc is missing)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode ``open()`` would give a new file: ``0o666`` less the umask (``0o644`` under the usual ``022``).

    Temporary files (``tempfile.mkstemp``) are created ``0o600`` whatever the umask; the atomic writers give the
    final file this mode instead, so a store written by one user can be read by others as the umask intends.
    """
    return 0o666 & ~current_umask()


def new_dir_mode() -> int:
    """The mode ``mkdir()`` would give a new folder: ``0o777`` less the umask (``0o755`` under the usual ``022``).

    ``tempfile.mkdtemp`` makes its folder ``0o700`` whatever the umask; a folder that is written as a temporary and
    then renamed into place (a checkpoint, a leaderboard) gets this mode instead.
    """
    return 0o777 & ~current_umask()


def save_safetensors(tensors: dict[str, Any], path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """``safetensors.torch.save_file``, giving the file :func:`new_file_mode` (safetensors writes ``0o600``).

    Examples:
        >>> import tempfile, pathlib, torch
        >>> p = save_safetensors({"w": torch.zeros(2)}, pathlib.Path(tempfile.mkdtemp()) / "w.safetensors")
        >>> oct(p.stat().st_mode & 0o777) == oct(new_file_mode())
        True
    """
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata)
    os.chmod(path, new_file_mode())
    return Path(path)


def fsync_file(path: str | Path) -> None:
    """Flush a written file's data to disk (before it is renamed into place), and give it :func:`new_file_mode`."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fchmod(fd, new_file_mode())
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsync and an atomic rename.

    The file gets the mode a plain ``open()`` would give it (``0o666`` less the umask), not ``mkstemp``'s ``0o600``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), new_file_mode())
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: Any) -> Path:
    """Atomically write ``data`` as indented JSON."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_manifest(path: Path, schema: str, version: int, what: str, hint: str = "") -> dict[str, Any]:
    """Read a store's JSON manifest and check its ``schema`` and ``schema_version``.

    Raises:
        SchemaError: the file is missing (``<folder>: not a <what>``), not JSON, or of another schema or version.
    """
    if not path.is_file():
        raise SchemaError(f"{path.parent}: not a {what} (no {path.name})")

    meta = read_json_file(path, what, SchemaError)
    if not isinstance(meta, dict) or meta.get("schema") != schema:
        found = meta.get("schema") if isinstance(meta, dict) else type(meta).__name__
        raise SchemaError(f"{path}: schema {found!r}, expected {schema!r}")
    if meta.get("schema_version") != version:
        raise SchemaError(f"{path}: schema_version {meta.get('schema_version')!r}, this library reads {version}{hint}")
    return meta
