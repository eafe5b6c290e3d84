"""The results store: Parquet rows of per-step scores and final judgments, with provenance, appended atomically.

Layout of a results folder::

    store.json                     {"schema": "noisyclip-results", "schema_version": 1}
    runs/<run_id>.json             provenance of one run (see :class:`RunInfo`)
    rows/<run_id>/<chunk>.parquet  rows of one chunk of (prompt, seed) work items, written atomically
    prompts/<run_id>.parquet       prompt id, text and skill tags of the run's benchmark prompts

Every row (:data:`ROW_SCHEMA`) is either a **score** (``kind="score"``: one per model, benchmark, prompt, seed, step
and scorer; ``score`` is the raw cosine) or a **judgment** (``kind="judgment"``: one per prompt and seed; ``score``
is the judge's score of the final image, ``aligned`` its binary verdict when it has one). A chunk file is complete
or absent (temporary file + rename); a run restarted with the same settings skips the (prompt, seed) items already
present, so a killed and resumed run ends with exactly the rows of an uninterrupted one.

The run id is a hash of everything that determines the rows (model and its weights, benchmark prompts, sampler,
seeds, scorers, judge), so the same command always resumes the same run and different settings never mix.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import InputError, SchemaError
from .io import read_manifest, write_json

__all__ = ["ResultsStore", "RunInfo", "ROW_SCHEMA", "PROMPT_SCHEMA", "SCHEMA", "SCHEMA_VERSION", "run_id_for"]

SCHEMA = "noisyclip-results"
SCHEMA_VERSION = 1

ROW_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),
        ("run_id", pa.string()),
        ("model", pa.string()),
        ("benchmark", pa.string()),
        ("prompt_id", pa.string()),
        ("seed", pa.int64()),
        ("step", pa.int32()),
        ("num_steps", pa.int32()),
        ("timestep", pa.float64()),
        ("scorer", pa.string()),
        ("judge", pa.string()),
        ("score", pa.float64()),
        ("aligned", pa.bool_()),
    ]
)
PROMPT_SCHEMA = pa.schema([("prompt_id", pa.string()), ("prompt", pa.string()), ("skills", pa.list_(pa.string()))])


@dataclass(frozen=True)
class RunInfo:
    """Provenance of one evaluation run (``runs/<run_id>.json``).

    ``scorers`` maps each scorer name to its ``model`` id, the ``weights`` hash and the inputs it ``requires``
    (``latents``, ``x0``, ``vae``, ``images``; the BoN cost model reads them).
    """

    run_id: str
    model: str
    benchmark: str
    sampler: dict[str, Any]
    seeds: tuple[int, ...]
    scorers: dict[str, dict[str, Any]]
    judge: dict[str, Any]
    model_info: dict[str, Any] = field(default_factory=dict)
    package_version: str = ""
    git_revision: str = ""
    created: str = ""
    num_prompts: int = 0
    timing: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["seeds"] = list(self.seeds)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], path: Path) -> RunInfo:
        try:
            data = dict(data)
            data["seeds"] = tuple(int(s) for s in data["seeds"])
            return cls(**data)
        except (KeyError, TypeError, ValueError) as err:
            raise SchemaError(f"{path}: malformed run record ({err})") from None


def run_id_for(identity: dict[str, Any]) -> str:
    """A short stable hash of what determines a run's rows."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _atomic_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class ResultsStore:
    """A results folder. :meth:`create` makes or reopens one for writing; :meth:`open` reads an existing one."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # ---------------------------------------------------------------------------------------------------- opening
    @classmethod
    def open(cls, root: str | Path) -> ResultsStore:
        """Open an existing store.

        Raises:
            SchemaError: if the folder is not a results store or has another schema version.
        """
        root = Path(root)
        if not root.is_dir():
            raise SchemaError(f"{root}: results folder not found")
        read_manifest(root / "store.json", SCHEMA, SCHEMA_VERSION, "results store")
        return cls(root)

    @classmethod
    def create(cls, root: str | Path) -> ResultsStore:
        """Create a store (or reopen an existing one).

        Raises:
            InputError: if the folder exists with other content, or cannot be written.
        """
        root = Path(root)
        if (root / "store.json").is_file():
            return cls.open(root)
        if root.exists() and any(root.iterdir()):
            raise InputError(f"{root}: folder exists and is not a results store; choose a new or empty folder")
        try:
            root.mkdir(parents=True, exist_ok=True)
            write_json(root / "store.json", {"schema": SCHEMA, "schema_version": SCHEMA_VERSION})
        except PermissionError:
            raise InputError(f"{root}: cannot write here (permission denied)") from None
        return cls(root)

    # ----------------------------------------------------------------------------------------------------- writing
    def write_run(self, info: RunInfo) -> None:
        """Write (or update) a run's provenance; an existing run must have the same identity."""
        path = self.root / "runs" / f"{info.run_id}.json"
        if path.is_file():
            old = RunInfo.from_json(json.loads(path.read_text(encoding="utf-8")), path)
            if (old.model, old.benchmark, old.seeds, old.sampler) != (info.model, info.benchmark, info.seeds,
                                                                       info.sampler):  # fmt: skip
                raise SchemaError(f"{path}: a different run already uses this id")
        write_json(path, info.to_json())

    def write_prompts(self, run_id: str, prompt_ids: Sequence[str], prompts: Sequence[str],
                      skills: Sequence[Sequence[str]]) -> None:  # fmt: skip
        """Write the run's prompt table."""
        table = pa.table(
            {"prompt_id": list(prompt_ids), "prompt": list(prompts), "skills": [list(s) for s in skills]},
            schema=PROMPT_SCHEMA,
        )
        _atomic_parquet(table, self.root / "prompts" / f"{run_id}.parquet")

    def append(self, run_id: str, rows: dict[str, list[Any]], chunk: str) -> Path:
        """Write one chunk of rows atomically (columns of :data:`ROW_SCHEMA`)."""
        table = pa.table(rows, schema=ROW_SCHEMA)
        path = self.root / "rows" / run_id / f"{chunk}.parquet"
        if path.exists():
            raise InputError(f"{path}: chunk already written")
        _atomic_parquet(table, path)
        return path

    # ----------------------------------------------------------------------------------------------------- reading
    def runs(self) -> list[RunInfo]:
        """Every run's provenance."""
        out = []
        for path in sorted((self.root / "runs").glob("*.json")):
            out.append(RunInfo.from_json(json.loads(path.read_text(encoding="utf-8")), path))
        return out

    def run(self, run_id: str) -> RunInfo:
        """One run's provenance."""
        path = self.root / "runs" / f"{run_id}.json"
        if not path.is_file():
            raise SchemaError(f"{self.root}: no run {run_id!r}")
        return RunInfo.from_json(json.loads(path.read_text(encoding="utf-8")), path)

    def chunk_files(self, run_id: str | None = None) -> list[Path]:
        """Complete chunk files (of one run or all)."""
        base = self.root / "rows"
        pattern = f"{run_id}/*.parquet" if run_id else "*/*.parquet"
        return sorted(base.glob(pattern))

    def rows(self, run_id: str | None = None, kind: str | None = None, columns: list[str] | None = None) -> pa.Table:
        """All rows (of one run and/or kind) as a pyarrow Table (empty with the schema if none)."""
        files = self.chunk_files(run_id)
        if not files:
            table = ROW_SCHEMA.empty_table()
        else:
            try:
                table = pa.concat_tables([pq.read_table(f) for f in files])
            except (pa.ArrowInvalid, OSError) as err:
                raise SchemaError(f"{self.root}: unreadable chunk file ({err})") from None
            if table.schema != ROW_SCHEMA:
                raise SchemaError(f"{self.root}: rows have schema {table.schema}, expected {ROW_SCHEMA}")
        if kind is not None:
            table = table.filter(pc.equal(table["kind"], kind))
        return table.select(columns) if columns else table

    def done_items(self, run_id: str) -> set[tuple[str, int]]:
        """(prompt id, seed) items of a run that already have rows."""
        done: set[tuple[str, int]] = set()
        for f in self.chunk_files(run_id):
            t = pq.read_table(f, columns=["prompt_id", "seed"])
            done.update(zip(t["prompt_id"].to_pylist(), t["seed"].to_pylist()))
        return done

    def prompts(self, run_id: str) -> pa.Table:
        """The run's prompt table."""
        path = self.root / "prompts" / f"{run_id}.parquet"
        if not path.is_file():
            raise SchemaError(f"{path}: missing prompt table of run {run_id}")
        return pq.read_table(path)

    def validate(self) -> list[RunInfo]:
        """Check the whole store: schema, provenance of every run with rows, no duplicate rows.

        Raises:
            SchemaError: naming what is wrong.
        """
        runs = {r.run_id: r for r in self.runs()}
        row_runs = {p.name for p in (self.root / "rows").glob("*") if p.is_dir()}
        orphans = sorted(row_runs - set(runs))
        if orphans:
            raise SchemaError(f"{self.root}: rows of runs without provenance: {orphans}")
        for run_id in row_runs:
            keys = ["kind", "prompt_id", "seed", "step", "scorer", "judge"]
            counts = self.rows(run_id, columns=keys).group_by(keys).aggregate([([], "count_all")])
            if counts.num_rows and pc.max(counts["count_all"]).as_py() > 1:
                raise SchemaError(f"{self.root}: run {run_id} has duplicate rows")
        return list(runs.values())


def merge_runs(stores: Iterable[ResultsStore]) -> list[tuple[ResultsStore, RunInfo]]:
    """Runs of several stores; the same run id in two stores must describe the same run."""
    seen: dict[str, RunInfo] = {}
    out = []
    for store in stores:
        for run in store.validate():
            if run.run_id in seen and seen[run.run_id].to_json() | {"timing": {}} != run.to_json() | {"timing": {}}:
                raise SchemaError(f"{store.root}: run {run.run_id} conflicts with another store's run of the same id")
            seen[run.run_id] = run
            out.append((store, run))
    return out
