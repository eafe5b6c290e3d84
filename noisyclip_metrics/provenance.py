"""Provenance helpers: the git revision of the code and hashes of weight folders."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

__all__ = ["git_revision", "weights_hash"]


def git_revision() -> str:
    """``git rev-parse HEAD`` of the source tree (``-dirty`` if tracked files changed), or ``"unknown"``."""
    try:
        root = Path(__file__).resolve().parents[1]
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)  # fmt: skip
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if rev.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def weights_hash(*paths: str | Path | None) -> str:
    """SHA-256 (first 16 hex digits) of every ``*.safetensors`` / ``*.json`` file under ``paths`` (or ``""``).

    Example:
        >>> weights_hash(None)
        ''
    """
    roots = [Path(p) for p in paths if p is not None and Path(p).exists()]
    if not roots:
        return ""
    h = hashlib.sha256()
    for root in roots:
        candidates = [root] if root.is_file() else root.rglob("*")
        for f in sorted(p for p in candidates if p.suffix in (".safetensors", ".json")):
            h.update(str(f.relative_to(root) if root.is_dir() else f.name).encode())
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]
