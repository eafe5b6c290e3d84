"""Reading text and JSON files that users (or a crashed disk) hand us, with one-line errors naming the file and field.

:func:`read_text_file` is the one place that reads and decodes a user's file: every way it can be unreadable
(missing, a folder, unreadable, not UTF-8) becomes the caller's error class, naming the line of a bad byte.
:func:`read_json_file` adds JSON's ways (truncated, invalid, nested too deeply for Python's parser);
:func:`read_run_record` also checks a results store's ``runs/<run_id>.json`` against the fields and types of
:class:`~noisyclip_metrics.evaluation.results.RunInfo`, and that its ``run_id``, which names files of the store, is a
safe file
name equal to the file's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from noisyclip_metrics.errors import DataFileError, NoisyCLIPError, SchemaError
from noisyclip_metrics.io.safepath import name_problem

__all__ = ["read_json_file", "read_run_record", "read_text_file", "type_name"]


def type_name(value: Any) -> str:
    """The JSON name of a parsed value's type (``object``, ``array``, ``string``, ``number``, ``boolean``, ``null``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {dict: "object", list: "array", str: "string"}.get(type(value), type(value).__name__)


def read_text_file(path: str | Path, what: str = "file", error: type[NoisyCLIPError] = DataFileError) -> str:
    """The text of ``path`` decoded as UTF-8 (a byte-order mark is dropped); any failure raises ``error`` on one line.

    Examples:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "prompts.txt"
        >>> _ = p.write_bytes(b"a red circle\\n\\xff")
        >>> read_text_file(p, "prompt file")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        noisyclip_metrics.errors.DataFileError: .../prompts.txt:2: prompt file is not valid UTF-8 (byte 0xff ...
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise error(
            f"{path}:{line}: {what} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "re-save it as UTF-8"
        ) from None


def read_json_file(path: str | Path, what: str = "JSON file", error: type[NoisyCLIPError] = SchemaError) -> Any:
    """Parse the JSON file ``path``; any failure raises ``error`` with ``"<path>: <what> ..."`` on one line.

    Examples:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "run.json"
        >>> _ = p.write_text('{"a": [1, 2')
        >>> read_json_file(p, "run record")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        noisyclip_metrics.errors.SchemaError: .../run.json: run record is not valid JSON (line 1, ...
    """
    text = read_text_file(path, what, error)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        truncated = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated")
        hint = " (file truncated?)" if truncated else ""
        raise error(
            f"{path}: {what} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}){hint}"
        ) from None
    except RecursionError:
        raise error(f"{path}: {what} is nested too deeply to read (a corrupt file?)") from None


#: Fields of ``runs/<run_id>.json`` (:class:`~noisyclip_metrics.evaluation.results.RunInfo`), the JSON type each must
#: have,
#: and whether it is required.
_RUN_FIELDS: dict[str, tuple[type | tuple[type, ...], bool]] = {
    "run_id": (str, True),
    "model": (str, True),
    "benchmark": (str, True),
    "sampler": (dict, True),
    "seeds": (list, True),
    "scorers": (dict, True),
    "judge": (dict, True),
    "model_info": (dict, False),
    "package_version": (str, False),
    "git_revision": (str, False),
    "created": (str, False),
    "num_prompts": (int, False),
    "timing": (dict, False),
}
_JSON_NAMES = {str: "string", dict: "object", list: "array", int: "integer"}


def read_run_record(path: str | Path) -> dict[str, Any]:
    """``runs/<run_id>.json`` of a results store as a dict whose known fields have the right JSON types.

    Raises:
        SchemaError: unreadable or invalid JSON, not an object, a missing field or one of the wrong type, a seed that
            is not an integer, a scorer entry that is not an object, or a ``run_id`` that is not the file's name (run
            ids name the store's files, so one like ``../x`` must never be used).
    """
    path = Path(path)
    data = read_json_file(path, "run record", SchemaError)
    if not isinstance(data, dict):
        raise SchemaError(f"{path}: run record must be a JSON object, found {type_name(data)}")
    for name, (kind, required) in _RUN_FIELDS.items():
        if name not in data:
            if required:
                raise SchemaError(f"{path}: run record field {name!r}: missing")
            continue
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, kind):
            expected = _JSON_NAMES[kind] if isinstance(kind, type) else "/".join(_JSON_NAMES[k] for k in kind)
            raise SchemaError(f"{path}: run record field {name!r}: expected {expected}, found {type_name(value)}")
    seeds = data["seeds"]
    bad_seed = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int)]
    if bad_seed:
        raise SchemaError(f"{path}: run record field 'seeds': expected integers, found {type_name(bad_seed[0])}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise SchemaError(f"{path}: run record field 'seeds': expected distinct integers, at least one")
    bad = [k for k, v in data["scorers"].items() if not isinstance(v, dict)]
    if bad:
        raise SchemaError(f"{path}: run record field 'scorers.{bad[0][:40]}': expected object")
    problem = name_problem(data["run_id"])
    if problem is not None:
        raise SchemaError(f"{path}: run record field 'run_id': {data['run_id'][:40]!r} {problem}")
    if data["run_id"] != path.stem:
        raise SchemaError(f"{path}: run record field 'run_id': {data['run_id'][:40]!r} is not the file's name")
    return data
