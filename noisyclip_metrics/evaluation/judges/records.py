"""The :class:`Judgment` record and operations on lists of judgments (aggregation, matrices, id checks, CSV/JSONL).

A judgment is one score given by one judge (a human rater, a VQA model, a metric) to one candidate image of one
prompt. Conventions: higher scores are better (rankings are stored negated); ``rater`` identifies an individual
annotator when the source has several per image (``None`` for aggregated or automatic scores).
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from noisyclip_metrics.errors import DataFileError, InputError
from noisyclip_metrics.evaluation.benchmarks._files import as_number, read_jsonl, read_table, short_repr, where
from noisyclip_metrics.evaluation.benchmarks.promptset import PromptSet
from noisyclip_metrics.registry import did_you_mean

__all__ = [
    "Judgment",
    "PartialJudgmentsWarning",
    "check_coverage",
    "check_prompt_ids",
    "mean_over_raters",
    "merge_judgments",
    "read_judgments",
    "to_matrix",
    "write_judgments",
]

_COLUMNS = ("prompt_id", "candidate_id", "model", "judge", "score", "rater")


@dataclass(frozen=True)
class Judgment:
    """One score of one candidate image of one prompt.

    Attributes:
        prompt_id: id of the prompt in its benchmark (see :class:`~noisyclip_metrics.evaluation.benchmarks.PromptSet`).
        candidate_id: the image, unique within the prompt (a generator name, a file name, ``"00220/00002"``...).
        model: the generator that made the image, when known.
        judge: who scored (``"human"``, ``"vqascore:clip-flant5-xxl"``, ``"noisyclip@k=20"``...).
        score: the score, higher = better; NaN = missing.
        rater: the individual annotator, when the source keeps them apart.

    Examples:
        >>> Judgment("00001", "DALLE_3", "DALLE_3", "human", 5.0, rater="0").score
        5.0
    """

    prompt_id: str
    candidate_id: str
    model: str | None
    judge: str
    score: float
    rater: str | None = None

    def __post_init__(self) -> None:
        for name in ("prompt_id", "candidate_id", "judge"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InputError(f"Judgment.{name} must be a non-empty string, got {value!r}")
        if isinstance(self.score, bool) or not isinstance(self.score, (int, float, np.number)):
            raise InputError(f"Judgment.score must be a number, got {self.score!r}")
        object.__setattr__(self, "score", float(self.score))
        if math.isinf(self.score):
            raise InputError(f"Judgment.score must be finite or NaN, got {self.score}")


def mean_over_raters(judgments: Iterable[Judgment]) -> list[Judgment]:
    """One judgment per (judge, prompt, candidate): the mean over raters (NaN ignored), ``rater=None``.

    Examples:
        >>> js = [Judgment("p", "a", None, "human", s, rater=str(k)) for k, s in enumerate([5, 4, float("nan")])]
        >>> mean_over_raters(js)[0].score
        4.5
    """
    groups: dict[tuple[str, str, str], list[Judgment]] = defaultdict(list)
    for j in judgments:
        groups[(j.judge, j.prompt_id, j.candidate_id)].append(j)
    out = []
    for (judge, prompt_id, candidate_id), items in groups.items():
        scores = np.array([j.score for j in items])
        value = float(np.nanmean(scores)) if (~np.isnan(scores)).any() else float("nan")
        out.append(Judgment(prompt_id, candidate_id, items[0].model, judge, value))
    return out


def to_matrix(
    judgments: Iterable[Judgment],
    *,
    columns: str = "model",
    judge: str | None = None,
    rows: Sequence[str] | None = None,
    cols: Sequence[str] | None = None,
) -> tuple[np.ndarray, list[str], list[str]]:
    """A (prompts x columns) score matrix for :mod:`noisyclip_metrics.evaluation.stats`, averaging raters; NaN where
    missing.

    Args:
        judgments: the judgments (of one judge, or pass ``judge``).
        columns: ``"model"`` or ``"candidate_id"``: what the matrix columns are.
        judge: keep only this judge.
        rows: prompt ids in the wanted order (default: order of first appearance).
        cols: column labels in the wanted order (default: order of first appearance).

    Returns:
        ``(matrix, row ids, column labels)``.

    Raises:
        InputError: several judges mixed without ``judge``, or an unknown ``columns``.
    """
    if columns not in ("model", "candidate_id"):
        raise InputError(f"columns must be 'model' or 'candidate_id', got {columns!r}")
    kept = [j for j in judgments if judge is None or j.judge == judge]
    judges = sorted({j.judge for j in kept})
    if len(judges) > 1:
        raise InputError(f"judgments of several judges ({', '.join(judges)}): pass judge=...")
    merged = mean_over_raters(kept)
    row_ids = list(rows) if rows is not None else list(dict.fromkeys(j.prompt_id for j in merged))
    col_ids = list(cols) if cols is not None else list(dict.fromkeys(str(getattr(j, columns)) for j in merged))
    r_index = {r: k for k, r in enumerate(row_ids)}
    c_index = {c: k for k, c in enumerate(col_ids)}
    matrix = np.full((len(row_ids), len(col_ids)), np.nan)
    for j in merged:
        r, c = r_index.get(j.prompt_id), c_index.get(str(getattr(j, columns)))
        if r is not None and c is not None:
            matrix[r, c] = j.score
    return matrix, row_ids, col_ids


def check_prompt_ids(judgments: Iterable[Judgment], prompts: PromptSet, *, source: str = "judgments") -> int:
    """Check every judgment refers to a prompt of ``prompts``; returns how many prompts are covered.

    Raises:
        DataFileError: unknown prompt ids (judgments and prompts come from different releases or benchmarks).

    Examples:
        >>> from noisyclip_metrics.evaluation.benchmarks import Prompt, PromptSet
        >>> check_prompt_ids([Judgment("1", "a", None, "h", 3)], PromptSet("demo", (Prompt("1", "a cat"),)))
        1
    """
    ids = {j.prompt_id for j in judgments}
    unknown = sorted(i for i in ids if i not in prompts)
    if unknown:
        hint = did_you_mean(unknown[0], prompts.ids[:5000])
        raise DataFileError(
            f"{source}: {len(unknown)} prompt id(s) not in {prompts.name} (e.g. {unknown[0]!r}{hint}); the judgments "
            "and the prompt file do not belong together"
        )
    return len(ids)


class PartialJudgmentsWarning(Warning):
    """Some candidates have no judgment and the caller allowed it (``allow_partial``); they are left out.

    Not a ``UserWarning``, so the CLI, which silences libraries' user warnings, prints it.
    """


def check_coverage(
    judgments: Iterable[Judgment],
    candidates: Iterable[tuple[str, str]],
    *,
    source: str = "judgments",
    allow_partial: bool = False,
) -> list[tuple[str, str]]:
    """The (prompt id, candidate id) pairs of ``candidates`` that no judgment scores.

    A judgments file that covers only some candidates would otherwise be used silently (the others dropping out of
    every statistic), so by default that is an error naming how many lack a judgment; with ``allow_partial`` it is a
    :class:`PartialJudgmentsWarning` and the pairs are returned. A judgment whose score is NaN counts as given.

    Raises:
        DataFileError: some candidates have no judgment and ``allow_partial`` is false.

    Examples:
        >>> js = [Judgment("p1", "0", None, "human", 4.0)]
        >>> check_coverage(js, [("p1", "0"), ("p1", "1")], source="h.csv")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        noisyclip_metrics.errors.DataFileError: h.csv: 1 of 2 candidates have no judgment (e.g. p1/1); ...
    """
    have = {(j.prompt_id, j.candidate_id) for j in judgments}
    wanted = list(dict.fromkeys((str(p), str(c)) for p, c in candidates))
    missing = [pair for pair in wanted if pair not in have]
    if missing:
        shown = ", ".join(f"{p}/{c}" for p, c in missing[:3])
        message = f"{source}: {len(missing)} of {len(wanted)} candidates have no judgment (e.g. {shown})"
        if not allow_partial:
            raise DataFileError(f"{message}; pass --allow-partial (allow_partial=True) to leave them out")
        warnings.warn(f"{message}; left out (--allow-partial)", PartialJudgmentsWarning, stacklevel=2)
    return missing


def merge_judgments(*groups: Iterable[Judgment]) -> list[Judgment]:
    """Concatenate judgments; the same (judge, prompt, candidate, rater) twice with different scores is an error."""
    seen: dict[tuple[str, str, str, str | None], float] = {}
    out = []
    for group in groups:
        for j in group:
            key = (j.judge, j.prompt_id, j.candidate_id, j.rater)
            if key in seen:
                if not (seen[key] == j.score or (math.isnan(seen[key]) and math.isnan(j.score))):
                    raise DataFileError(f"conflicting judgments for {key}: {seen[key]} and {j.score}")
                continue
            seen[key] = j.score
            out.append(j)
    return out


def _optional(value: object) -> str | None:
    return None if value is None or (isinstance(value, str) and not value.strip()) else str(value)


def read_judgments(path: str | Path, *, judge: str | None = None) -> list[Judgment]:
    """Read judgments from CSV / TSV (header ``prompt_id,candidate_id,model,judge,score[,rater]``) or JSON Lines.

    Args:
        path: ``.csv``, ``.tsv`` or ``.jsonl`` file.
        judge: default judge name for files without a ``judge`` column / key.

    Raises:
        DataFileError: missing columns, non-numeric scores, duplicate keys; messages name file, line and field.

    Examples:
        >>> import tempfile, pathlib
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = pathlib.Path(tmp.name) / "scores.csv"
        >>> _ = write_judgments(path, [Judgment("00001", "DALLE_3", "DALLE_3", "clip", 0.31)])
        >>> read_judgments(path)
        [Judgment(prompt_id='00001', candidate_id='DALLE_3', model='DALLE_3', judge='clip', score=0.31, rater=None)]
        >>> tmp.cleanup()
    """
    path = Path(path)
    required = ["prompt_id", "candidate_id", "score"] + ([] if judge else ["judge"])
    records: list[tuple[int, dict]] = []
    if path.suffix == ".jsonl":
        for line, obj in read_jsonl(path):
            if not isinstance(obj, dict):
                raise DataFileError(f"{where(path, line)}: expected a JSON object")
            missing = [c for c in required if c not in obj]
            if missing:
                raise DataFileError(f"{where(path, line, missing[0])}: missing{did_you_mean(missing[0], list(obj))}")
            for key in ("prompt_id", "candidate_id", "model", "judge", "rater"):
                value = obj.get(key)
                if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int))):
                    raise DataFileError(
                        f"{where(path, line, key)}: expected a string or an integer, found {short_repr(value)}"
                    )
            records.append((line, obj))
    elif path.suffix in (".csv", ".tsv"):
        _, rows = read_table(path, required, delimiter="\t" if path.suffix == ".tsv" else ",")
        records = [(line, dict(row)) for line, row in rows]
    else:
        raise InputError(f"{path}: unknown judgment file type {path.suffix!r}; use .csv, .tsv or .jsonl")
    out = []
    for line, rec in records:
        raw = rec["score"]
        score = (
            float("nan")
            if raw is None or (isinstance(raw, str) and not raw.strip())
            else as_number(raw, path, line, "score")
        )
        name = _optional(rec.get("judge")) or judge
        for field in ("prompt_id", "candidate_id"):
            if _optional(rec.get(field)) is None:
                raise DataFileError(f"{where(path, line, field)}: empty")
        if name is None:
            raise DataFileError(f"{where(path, line, 'judge')}: empty (pass judge=... for a default)")
        out.append(
            Judgment(
                str(rec["prompt_id"]),
                str(rec["candidate_id"]),
                _optional(rec.get("model")),
                name,
                score,
                _optional(rec.get("rater")),
            )
        )
    try:
        return merge_judgments(out)
    except DataFileError as exc:
        raise DataFileError(f"{path}: {exc}") from None


def write_judgments(path: str | Path, judgments: Iterable[Judgment]) -> Path:
    """Write judgments as CSV or JSON Lines (by suffix); :func:`read_judgments` reads them back."""
    path = Path(path)
    rows = [asdict(j) for j in judgments]
    if path.suffix == ".jsonl":
        text = "".join(
            json.dumps({k: (None if k == "score" and math.isnan(v) else v) for k, v in r.items()}) + "\n" for r in rows
        )
    elif path.suffix in (".csv", ".tsv"):
        buffer = io.StringIO()
        writer = csv.DictWriter(
            buffer, fieldnames=_COLUMNS, delimiter="\t" if path.suffix == ".tsv" else ",", lineterminator="\n"
        )
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if v is None or (k == "score" and math.isnan(v)) else v) for k, v in r.items()})
        text = buffer.getvalue()
    else:
        raise InputError(f"{path}: unknown judgment file type {path.suffix!r}; use .csv, .tsv or .jsonl")
    path.write_text(text, encoding="utf-8")
    return path
