"""Reading benchmark and judgment files with errors that name the file, the line and the field.

Every reader decodes strict UTF-8 (a leading byte-order mark is accepted) and raises
:class:`~noisyclip_metrics.errors.DataFileError` on anything malformed: wrong encoding, truncated JSON, missing CSV
columns, short rows, bad values. Messages have the form ``"<path>:<line>: field 'x': <problem>"``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import reprlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from noisyclip_metrics.errors import DataFileError
from noisyclip_metrics.io.jsonfile import read_text_file
from noisyclip_metrics.registry import did_you_mean

__all__ = [
    "as_number",
    "json_entry_line",
    "read_json",
    "read_jsonl",
    "read_lines",
    "read_table",
    "read_text",
    "require",
    "short_repr",
    "where",
]


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict = 3, 60, 60, 4, 4


def short_repr(value: Any) -> str:
    """``repr`` cut to a few dozen characters and three levels of nesting (safe on deeply nested values)."""
    return _REPR.repr(value)


def where(path: Path | str, line: int | None = None, field: str | None = None) -> str:
    """``"path:line: field 'x'"`` prefix for error messages (parts that are unknown are left out)."""
    text = str(path)
    if line is not None:
        text += f":{line}"
    if field is not None:
        text += f": field {field!r}"
    return text


def read_text(path: Path | str) -> str:
    """Decode a file as UTF-8 (BOM allowed); name the line of the first undecodable byte otherwise."""
    return read_text_file(path, "file", DataFileError)


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def read_json(path: Path | str) -> Any:
    """Parse a JSON document; truncation, syntax errors and duplicate object keys name the line."""
    text = read_text(path)
    if not text.strip():
        raise DataFileError(f"{where(path, 1)}: empty file, expected a JSON document")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        hint = " (file truncated?)" if exc.pos >= len(text.rstrip()) else ""
        raise DataFileError(f"{where(path, exc.lineno)}: invalid JSON at column {exc.colno}: {exc.msg}{hint}") from None
    except RecursionError:
        raise DataFileError(f"{where(path)}: JSON nested too deeply to read (a corrupt or hostile file?)") from None
    except _DuplicateKey as exc:
        key = str(exc.args[0])
        hits = [m.start() for m in re.finditer(re.escape(json.dumps(key)) + r"\s*:", text)]
        line = text.count("\n", 0, hits[1]) + 1 if len(hits) > 1 else None
        raise DataFileError(f"{where(path, line, key)}: duplicate key (the same id appears twice)") from None


def read_jsonl(path: Path | str) -> list[tuple[int, Any]]:
    """Parse JSON Lines; returns ``(line number, object)`` pairs, blank lines skipped."""
    out = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise DataFileError(f"{where(path, number)}: invalid JSON at column {exc.colno}: {exc.msg}") from None
        except RecursionError:
            raise DataFileError(f"{where(path, number)}: JSON nested too deeply to read (a corrupt line?)") from None
    return out


def read_lines(path: Path | str) -> list[tuple[int, str]]:
    """Non-blank lines with their numbers, outer whitespace (and CR of CRLF files) stripped."""
    return [(n, line.strip()) for n, line in enumerate(read_text(path).splitlines(), start=1) if line.strip()]


def read_table(
    path: Path | str,
    required: Sequence[str],
    *,
    delimiter: str = ",",
    rejoin_split_rows: bool = False,
) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Read a delimited file with a header row.

    Args:
        path: the file.
        required: columns that must be present (a missing one is reported with a did-you-mean).
        delimiter: ``","`` or ``"\\t"``.
        rejoin_split_rows: repair records cut in two by an unquoted line break inside a free-text field (a known
            defect of MTurk exports): a short record whose field count plus the next record's, minus one, equals
            the header's is joined with ``"\\n"``.

    Returns:
        The header and ``(line number, {column: value})`` for each record.

    Raises:
        DataFileError: missing columns, or records with the wrong number of fields.
    """
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    records: list[tuple[int, list[str]]] = []
    try:
        header = next(reader)
        start = reader.line_num + 1
        for record in reader:
            records.append((start, record))
            start = reader.line_num + 1
    except StopIteration:
        raise DataFileError(f"{where(path, 1)}: empty file, expected a header row") from None
    except csv.Error as exc:
        raise DataFileError(f"{where(path, reader.line_num)}: malformed delimited text: {exc}") from None
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        hints = "".join(did_you_mean(c, header) for c in missing[:1])
        raise DataFileError(
            f"{where(path, 1)}: missing column(s) {', '.join(map(repr, missing))}{hints} (found: {', '.join(header)})"
        )
    rows: list[tuple[int, dict[str, str]]] = []
    k = 0
    while k < len(records):
        line, record = records[k]
        if not any(cell.strip() for cell in record):
            k += 1
            continue
        if (
            rejoin_split_rows
            and len(record) < len(header)
            and k + 1 < len(records)
            and len(record) + len(records[k + 1][1]) - 1 == len(header)
        ):
            nxt = records[k + 1][1]
            record = [*record[:-1], record[-1] + "\n" + nxt[0], *nxt[1:]]
            k += 1
        if len(record) != len(header):
            raise DataFileError(
                f"{where(path, line)}: expected {len(header)} fields as in the header, found {len(record)}"
            )
        rows.append((line, dict(zip(header, record, strict=True))))
        k += 1
    return header, rows


def _iter_top_level(text: str) -> Iterator[tuple[int, int]]:
    """Yield ``(character offset, line)`` of each top-level element (list item or object key) of a JSON text."""
    depth = 0
    in_string = False
    escape = False
    line = 1
    expect_item = False
    for pos, ch in enumerate(text):
        if ch == "\n":
            line += 1
        if in_string:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_string = False
            continue
        if depth == 1 and expect_item and not ch.isspace():
            yield pos, line
            expect_item = False
        if ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth == 1:
                expect_item = True
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 1:
            expect_item = True
        elif ch == ":" and depth == 1:
            expect_item = False


def json_entry_line(path: Path | str, index: int) -> int | None:
    """Line where the ``index``-th top-level entry (list item, or object member) of a JSON file starts.

    Only called to decorate an error message, so the extra pass over the text costs nothing in the normal case.
    """
    try:
        text = read_text(path)
    except DataFileError:
        return None
    for k, (_, line) in enumerate(_iter_top_level(text)):
        if k == index:
            return line
    return None


def require(entry: Any, field: str, kind: type | tuple[type, ...], path: Path | str, line: int | None) -> Any:
    """``entry[field]`` checked to exist and have type ``kind``."""
    if not isinstance(entry, dict):
        raise DataFileError(f"{where(path, line)}: expected a JSON object, found {type(entry).__name__}")
    if field not in entry:
        hint = did_you_mean(field, list(entry))
        raise DataFileError(f"{where(path, line, field)}: missing{hint} (entry has: {', '.join(map(str, entry))})")
    value = entry[field]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise DataFileError(f"{where(path, line, field)}: expected {names}, found {short_repr(value)}")
    return value


def as_number(value: Any, path: Path | str, line: int | None, field: str) -> float:
    """A finite rating as float; strings like ``"4"`` or ``"3.0"`` are accepted, anything else is an error."""
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number):
        raise DataFileError(f"{where(path, line, field)}: expected a finite number, found {short_repr(value)}")
    return number
