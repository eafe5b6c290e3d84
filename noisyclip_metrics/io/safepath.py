"""File names made from data: prompt ids, run ids and file names read from benchmark files, specs and stores.

Anything read from a file that becomes part of a path goes through :func:`check_name` (one path component: no
separator, no ``.``/``..``, no drive or absolute path, no NUL or other control character, at most
:data:`MAX_NAME_BYTES` bytes of UTF-8) and is joined with :func:`safe_join`, which also refuses a result that would
land outside its folder (through a symbolic link, say). Errors name what the value is and where it came from.

Examples:
    >>> check_name("coco_301091", "prompt id")
    'coco_301091'
    >>> check_name("../../ESCAPED", "prompt id")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    noisyclip_metrics.io.safepath.UnsafePathError: prompt id '../../ESCAPED': contains a path separator ...
"""

from __future__ import annotations

import os
from pathlib import Path, PureWindowsPath

from noisyclip_metrics.errors import InputError

__all__ = ["MAX_NAME_BYTES", "UnsafePathError", "check_name", "check_relative", "name_problem", "safe_join"]

#: Longest name accepted, in bytes of UTF-8 (file systems allow 255; room is left for suffixes such as ``.png``).
MAX_NAME_BYTES = 200


class UnsafePathError(InputError):
    """A name taken from data cannot be used as a file name, or a path would leave its folder."""


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be one path component, or ``None`` when it can.

    Examples:
        >>> name_problem("00001"), name_problem(".."), name_problem("a\\x00b")
        (None, "is '.' or '..'", 'contains a NUL or control character')
    """
    if not isinstance(name, str):
        return f"expected a string, got {type(name).__name__}"
    if not name:
        return "is empty"
    if any(sep in name for sep in ("/", "\\", os.sep, os.altsep) if sep):
        return "contains a path separator ('/' or '\\')"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return "contains a NUL or control character"
    if name in (".", ".."):
        return "is '.' or '..'"
    if PureWindowsPath(name).anchor or Path(name).is_absolute():
        return "is an absolute path or names a drive"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not encodable as UTF-8 (lone surrogate)"
    if size > MAX_NAME_BYTES:
        return f"is {size} bytes long, more than {MAX_NAME_BYTES}"
    return None


def check_name(name: object, what: str, where: str = "") -> str:
    """``name`` if it is a safe single path component; :class:`UnsafePathError` naming ``what`` otherwise.

    Args:
        name: the value (a prompt id, a run id, a file name).
        what: what it is, for the message (``"prompt id"``).
        where: where it came from (``"prompts.json:12"``), put in front of the message.
    """
    problem = name_problem(name)
    if problem is not None:
        shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:77] + "..."
        prefix = f"{where}: " if where else ""
        raise UnsafePathError(f"{prefix}{what} {shown}: {problem}; it cannot be used as a file name")
    return name  # type: ignore[return-value]


def check_relative(path: object, what: str, where: str = "") -> str:
    """A relative path of safe components separated by ``/`` (a file named in a spec); error otherwise."""
    if not isinstance(path, str) or not path:
        return check_name(path, what, where)
    for part in path.split("/"):
        problem = name_problem(part)
        if problem is not None:
            shown = repr(path) if len(repr(path)) <= 80 else repr(path)[:77] + "..."
            prefix = f"{where}: " if where else ""
            raise UnsafePathError(
                f"{prefix}{what} {shown}: a part {problem}; expected a relative path inside its folder"
            )
    return path


def safe_join(folder: str | Path, *names: str, what: str = "name") -> Path:
    """``folder / name / ...`` after :func:`check_name` on each name; refused if it resolves outside ``folder``.

    Examples:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> safe_join(root, "00001", "0.png", what="prompt id") == root / "00001" / "0.png"
        True
    """
    folder = Path(folder)
    for name in names:
        check_name(name, what)
    path = folder.joinpath(*names)
    base = folder.resolve()
    target = path.resolve()
    if target != base and base not in target.parents:
        raise UnsafePathError(
            f"{path}: resolves to {target}, outside {base} (a symbolic link?); refused to write there"
        )
    return path
