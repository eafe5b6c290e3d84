"""The results store: Parquet rows of per-step scores and final judgments, with provenance, appended atomically.

Layout of a results folder::

    store.json                     {"schema": "noisyclip-results", "schema_version": 1}
    runs/<run_id>.json             provenance of one run (see :class:`RunInfo`)
    rows/<run_id>/<chunk>.parquet  rows of one chunk of (prompt, seed) work items, written atomically
    prompts/<run_id>.parquet       prompt id, text and skill tags of the run's benchmark prompts
    locks/<run_id>.lock            the writer's exclusive lock (:meth:`ResultsStore.lock_run`)
    locks/<run_id>.holder.json     who holds it (pid, host, since when)

Every row (:data:`ROW_SCHEMA`) is either a **score** (``kind="score"``: one per model, benchmark, prompt, seed, step
and scorer; ``score`` is the raw cosine) or a **judgment** (``kind="judgment"``: one per prompt and seed; ``score``
is the judge's score of the final image, ``aligned`` its binary verdict when it has one). A chunk file is complete
or absent (temporary file, fsync, rename); a run restarted with the same settings skips the (prompt, seed) items
already present, so a killed and resumed run ends with exactly the rows of an uninterrupted one.

The run id is a hash of everything that determines the rows (model and its weights, benchmark prompts, sampler,
seeds, scorers, judge), so the same command always resumes the same run and different settings never mix.

Reruns, resumes and concurrent runs:

* the run record's provenance (``created``, versions, ...) is written once; every invocation that evaluates
  something adds a timing **segment** (:attr:`RunInfo.segments`, updated after each chunk, so a killed invocation
  keeps what it did) and ``timing`` holds their totals (what the BoN cost model reads); records written before
  segments existed have ``timing`` only, which reads as one segment;
* one writer per run: :meth:`ResultsStore.lock_run` takes an exclusive lock (``filelock``) and refuses a second
  writer at once, naming the holder; a chunk is identified by its (prompt, seed) items, whatever the batch size, and
  :meth:`ResultsStore.append` refuses rows of items another chunk of the run already holds;
* readers refuse duplicate rows of a run (:func:`check_unique_rows`) and skip runs that have no rows yet;
* a chunk file that cannot be read (a truncated file after a crash) is discarded by the next writer of the run
  (:meth:`ResultsStore.discard_unreadable_chunks`), whose items are then evaluated again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from noisyclip_metrics.errors import InputError, SchemaError
from noisyclip_metrics.io.files import new_file_mode, read_manifest, write_json
from noisyclip_metrics.io.jsonfile import read_run_record

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "PROMPT_SCHEMA",
    "ROW_KEY",
    "ROW_SCHEMA",
    "SCHEMA",
    "SCHEMA_VERSION",
    "ResultsStore",
    "RunInfo",
    "RunLock",
    "RunLockedError",
    "check_unique_rows",
    "note",
    "restrict_store",
    "run_id_for",
    "timing_totals",
]

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
#: Columns that identify a row within a run: a run has at most one row per key.
ROW_KEY = ("kind", "prompt_id", "seed", "step", "scorer", "judge")
_COUNTS = ("candidates",)  # timing entries summed over segments besides the *_seconds ones


def note(message: str) -> None:
    """One line on stderr for something the user should know that is not an error (a skipped run, a discarded
    chunk file)."""
    sys.stderr.write(f"noisyclip: note: {' '.join(message.split())}\n")
    sys.stderr.flush()


def timing_totals(segments: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Totals of timing segments: every ``*_seconds`` and ``score_seconds/<scorer>`` entry and ``candidates`` summed;
    ``steps`` (T, the same in every segment) from the last segment that has it."""
    totals: dict[str, float] = {}
    for seg in segments:
        for key, value in seg.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if key.endswith("_seconds") or key.startswith("score_seconds/"):
                totals[key] = round(totals.get(key, 0.0) + float(value), 3)
            elif key in _COUNTS:
                totals[key] = int(totals.get(key, 0)) + int(value)
            elif key == "steps":
                totals[key] = int(value)
    return totals


@dataclass(frozen=True)
class RunInfo:
    """Provenance of one evaluation run (``runs/<run_id>.json``).

    ``scorers`` maps each scorer name to its ``model`` id, the ``weights`` hash and the inputs it ``requires``
    (``latents``, ``x0``, ``vae``, ``images``; the BoN cost model reads them).

    The provenance (everything but the timing) is written when the run starts and never rewritten. ``segments`` has
    one entry per invocation that evaluated candidates of the run (``started``, ``updated``, ``host``, ``pid``,
    ``world_size``, ``candidates`` and the ``*_seconds`` it spent); ``timing`` is their total
    (:func:`timing_totals`). A record written before segments existed reads as one segment, its ``timing``.
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
    segments: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["seeds"] = list(self.seeds)
        data["segments"] = [dict(s) for s in self.segments]
        return data

    def provenance(self) -> dict[str, Any]:
        """The record without its timing (what two copies of the same run must agree on)."""
        return {k: v for k, v in self.to_json().items() if k not in ("timing", "segments")}

    def with_segment(self, segment: Mapping[str, Any], index: int | None = None) -> RunInfo:
        """This record with ``segment`` appended (or replacing segment ``index``) and ``timing`` their totals."""
        segments = list(self.segments)
        if index is None or index >= len(segments):
            segments.append(dict(segment))
        else:
            segments[index] = dict(segment)
        data = {**self.to_json(), "seeds": self.seeds, "segments": tuple(segments)}
        data["timing"] = timing_totals(segments)
        return RunInfo(**data)

    @classmethod
    def from_json(cls, data: dict[str, Any], path: Path) -> RunInfo:
        try:
            data = dict(data)
            data["seeds"] = tuple(int(s) for s in data["seeds"])
            segments = data.get("segments")
            if segments is None:  # written before segments: its timing is the one segment
                segments = [data["timing"]] if data.get("timing") else []
            if not isinstance(segments, list) or not all(isinstance(s, dict) for s in segments):
                raise ValueError("'segments' must be a list of objects")
            data["segments"] = tuple(segments)
            return cls(**data)
        except (KeyError, TypeError, ValueError) as err:
            raise SchemaError(f"{path}: malformed run record ({err})") from None


def run_id_for(identity: dict[str, Any]) -> str:
    """A short stable hash of what determines a run's rows."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _atomic_parquet(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path``: a temporary file in the same folder, fsync, then an atomic rename. The file gets
    the mode the umask gives new files (not ``mkstemp``'s ``0o600``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), new_file_mode())
            pq.write_table(table, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class ResultsStore:
    """A results folder. :meth:`create` makes or reopens one for writing; :meth:`open` reads an existing one."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._items: dict[str, tuple[set[Path], set[tuple[str, int]]]] = {}  # run -> (chunk files read, their items)

    def _known_items(self, run_id: str) -> set[tuple[str, int]]:
        """(prompt id, seed) items of the run's chunk files, reading only the files not read before."""
        files, items = self._items.setdefault(run_id, (set(), set()))
        for f in self.chunk_files(run_id):
            if f not in files:
                try:
                    items.update(_read_items(f))
                except _UNREADABLE as err:
                    raise SchemaError(f"{f}: unreadable chunk file ({' '.join(str(err).split())})") from None
                files.add(f)
        return items

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
        # another process creating the same store at this moment has only its temporary store.json here
        if root.exists() and any(not p.name.startswith(".store.json.") for p in root.iterdir()):
            raise InputError(f"{root}: folder exists and is not a results store; choose a new or empty folder")
        try:
            root.mkdir(parents=True, exist_ok=True)
            write_json(root / "store.json", {"schema": SCHEMA, "schema_version": SCHEMA_VERSION})
        except PermissionError:
            raise InputError(f"{root}: cannot write here (permission denied)") from None
        return cls(root)

    # ----------------------------------------------------------------------------------------------------- writing
    def write_run(self, info: RunInfo) -> None:
        """Write a run's record, once: a run already recorded must have the same identity, and keeps its record
        (provenance and timing: a rerun never rewrites ``created``, and timing grows by :meth:`record_segment`)."""
        path = self.root / "runs" / f"{info.run_id}.json"
        if path.is_file():
            old = RunInfo.from_json(read_run_record(path), path)
            if (old.model, old.benchmark, old.seeds, old.sampler) != (
                info.model,
                info.benchmark,
                info.seeds,
                info.sampler,
            ):
                raise SchemaError(f"{path}: a different run already uses this id")
            return
        write_json(path, info.to_json())

    def record_segment(self, run_id: str, segment: Mapping[str, Any], index: int | None = None) -> int:
        """Add a timing segment to a run's record (or replace segment ``index``, the writer's own, as it goes);
        returns the segment's index. Only the run's writer (who holds :meth:`lock_run`) calls this."""
        info = self.run(run_id)
        index = len(info.segments) if index is None else index
        write_json(self.root / "runs" / f"{run_id}.json", info.with_segment(segment, index).to_json())
        return index

    def write_prompts(
        self, run_id: str, prompt_ids: Sequence[str], prompts: Sequence[str], skills: Sequence[Sequence[str]]
    ) -> None:
        """Write the run's prompt table."""
        table = pa.table(
            {"prompt_id": list(prompt_ids), "prompt": list(prompts), "skills": [list(s) for s in skills]},
            schema=PROMPT_SCHEMA,
        )
        _atomic_parquet(table, self.root / "prompts" / f"{run_id}.parquet")

    def lock_run(self, run_id: str) -> RunLock:
        """Take the exclusive writer's lock of a run (use as a context manager, or call ``release()``).

        Raises:
            RunLockedError: at once, when another process holds it; the message names that process (pid, host).
        """
        return RunLock(self.root, run_id).acquire()

    def append(self, run_id: str, rows: dict[str, list[Any]], chunk: str) -> Path:
        """Write one chunk of rows atomically (columns of :data:`ROW_SCHEMA`).

        Raises:
            InputError: the chunk file exists, or a (prompt, seed) candidate of these rows already has rows in
                another chunk file of the run (however the work was cut into chunks): the store keeps one copy of
                every candidate.
        """
        table = pa.table(rows, schema=ROW_SCHEMA)
        path = self.root / "rows" / run_id / f"{chunk}.parquet"
        if path.exists():
            raise InputError(f"{path}: chunk already written")
        check_unique_rows(table, f"{path}: new chunk")
        items = set(zip(table["prompt_id"].to_pylist(), table["seed"].to_pylist(), strict=True))
        clash = sorted(items & self._known_items(run_id), key=str)
        if clash:
            raise InputError(
                f"{path.parent}: {len(clash)} candidate(s) of this chunk already have rows in another chunk file of "
                f"run {run_id} (e.g. prompt {clash[0][0]!r} seed {clash[0][1]}); was the run written by two processes "
                "at once?"
            )
        _atomic_parquet(table, path)
        files, known = self._items.setdefault(run_id, (set(), set()))
        files.add(path)
        known.update(items)
        return path

    def discard_unreadable_chunks(self, run_id: str) -> list[Path]:
        """Remove a run's leftovers of killed writers: temporary files, and chunk files that cannot be read (a file
        truncated by a crash or a full disk); returns the chunk files discarded, whose candidates then count as not
        evaluated. Only the run's writer (who holds :meth:`lock_run`) calls this."""
        folder = self.root / "rows" / run_id
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        bad = []
        for f in self.chunk_files(run_id):
            try:
                _read_items(f)
            except _UNREADABLE:
                f.unlink(missing_ok=True)
                bad.append(f)
        self._items.pop(run_id, None)
        return bad

    # ----------------------------------------------------------------------------------------------------- reading
    def runs(self) -> list[RunInfo]:
        """Every run's provenance."""
        out = []
        for path in sorted((self.root / "runs").glob("*.json")):
            out.append(RunInfo.from_json(read_run_record(path), path))
        return out

    def run(self, run_id: str) -> RunInfo:
        """One run's provenance."""
        path = self.root / "runs" / f"{run_id}.json"
        if not path.is_file():
            raise SchemaError(f"{self.root}: no run {run_id!r}")
        return RunInfo.from_json(read_run_record(path), path)

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
        """(prompt id, seed) items of a run that already have rows.

        Raises:
            SchemaError: a chunk file cannot be read (:meth:`discard_unreadable_chunks` removes such files).
        """
        return set(self._known_items(run_id))

    def has_rows(self, run_id: str) -> bool:
        """Whether a run has written any chunk file (a run whose invocation failed before its first chunk, or that
        is just starting, has none; readers skip it)."""
        return bool(self.chunk_files(run_id))

    def prompts(self, run_id: str) -> pa.Table:
        """The run's prompt table."""
        path = self.root / "prompts" / f"{run_id}.parquet"
        if not path.is_file():
            raise SchemaError(f"{path}: missing prompt table of run {run_id}")
        try:
            return pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as err:
            raise SchemaError(
                f"{path}: unreadable prompt table of run {run_id} ({' '.join(str(err).split())[:200]})"
            ) from None

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
        for run_id in sorted(row_runs):
            check_unique_rows(self.rows(run_id, columns=list(ROW_KEY)), f"{self.root}: run {run_id}")
        return list(runs.values())


_UNREADABLE = (pa.ArrowInvalid, OSError, EOFError)


def _read_items(path: Path) -> set[tuple[str, int]]:
    """The (prompt id, seed) items of one chunk file (reading its footer and those two columns)."""
    t = pq.read_table(path, columns=["prompt_id", "seed"])
    return set(zip(t["prompt_id"].to_pylist(), t["seed"].to_pylist(), strict=True))


def check_unique_rows(table: pa.Table, where: str) -> None:
    """Refuse rows with the same key (:data:`ROW_KEY`, and ``run_id`` when the table has it): one run has one row per
    kind, prompt, seed, step, scorer and judge. Every reader of a store calls this on a run's rows.

    Raises:
        SchemaError: ``"<where>: N duplicate rows ..."``, naming one duplicated key.

    Examples:
        >>> rows = pa.Table.from_pylist([{"kind": "judgment", "prompt_id": "p0", "seed": 1, "score": 0.5}] * 2,
        ...                             schema=ROW_SCHEMA)
        >>> check_unique_rows(rows, "store: run r1")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        noisyclip_metrics.errors.SchemaError: store: run r1: 1 duplicate rows (e.g. judgment of prompt 'p0' seed 1...
    """
    keys = [c for c in ("run_id", *ROW_KEY) if c in table.column_names]
    if table.num_rows < 2 or not keys:
        return
    counts = table.select(keys).group_by(keys).aggregate([([], "count_all")])
    dups = counts.filter(pc.greater(counts["count_all"], 1))
    if not dups.num_rows:
        return
    extra = int(pc.sum(dups["count_all"]).as_py()) - dups.num_rows
    key = dups.slice(0, 1).to_pylist()[0]
    what = f"{key.get('kind') or 'row'} of prompt {key.get('prompt_id')!r} seed {key.get('seed')}"
    what += "".join(f" {k} {key[k]!r}" for k in ("step", "scorer", "judge") if key.get(k) is not None)
    raise SchemaError(
        f"{where}: {extra} duplicate rows (e.g. {what}): its candidates were written more than once (two writers at "
        "once?); delete the later of the chunk files holding the same candidates, or evaluate again into a new folder"
    )


class RunLockedError(InputError):
    """Another process is writing the run (holds its :class:`RunLock`)."""


class RunLock:
    """The exclusive lock of one run of a results store, held by the process that writes the run.

    ``locks/<run_id>.lock`` is locked with :mod:`filelock` (released by the system when the process ends, even when it
    is killed); ``locks/<run_id>.holder.json`` beside it says who holds it (pid, host, since when, command).
    """

    def __init__(self, root: str | Path, run_id: str) -> None:
        self.root = Path(root)
        self.run_id = run_id
        self.path = self.root / "locks" / f"{run_id}.lock"
        self.holder_path = self.root / "locks" / f"{run_id}.holder.json"
        self._lock: Any = None

    def acquire(self) -> RunLock:
        """Take the lock, or refuse at once.

        Raises:
            RunLockedError: another process holds it (the message names it).
        """
        from filelock import FileLock, Timeout

        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise RunLockedError(
                f"{self.root}: run {self.run_id} is being written by {self.holder()}; wait for it to finish or stop "
                f"it (the lock {self.path} is released when that process ends)"
            ) from None
        self._lock = lock
        write_json(
            self.holder_path,
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "command": " ".join(sys.argv)[:500],
            },
        )
        return self

    def holder(self) -> str:
        """Who holds the lock, as written beside it (waits a moment for a holder that is just writing it)."""
        for _ in range(20):
            try:
                data = json.loads(self.holder_path.read_text(encoding="utf-8"))
                return f"pid {int(data['pid'])} on host {data['host']} (since {data.get('since', '?')})"
            except (OSError, ValueError, KeyError, TypeError):
                time.sleep(0.05)
        return "another process (pid and host unknown)"

    def release(self) -> None:
        """Release the lock (and remove the holder note)."""
        if self._lock is None:
            return
        try:
            self.holder_path.unlink(missing_ok=True)
        finally:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Self:
        return self if self._lock is not None else self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def merge_runs(stores: Iterable[ResultsStore]) -> list[tuple[ResultsStore, RunInfo]]:
    """Runs of several stores; the same run id in two stores must describe the same run (timing aside)."""
    seen: dict[str, RunInfo] = {}
    out = []
    for store in stores:
        for run in store.validate():
            if run.run_id in seen and seen[run.run_id].provenance() != run.provenance():
                raise SchemaError(f"{store.root}: run {run.run_id} conflicts with another store's run of the same id")
            seen[run.run_id] = run
            out.append((store, run))
    return out


def restrict_store(src: str | Path, dst: str | Path, prompt_ids: Iterable[str]) -> ResultsStore:
    """A new results store at ``dst`` (replaced if it exists) holding every run of ``src`` restricted to the prompts
    ``prompt_ids`` (their prompts and rows; ``num_prompts`` says how many of them each run has)."""
    wanted = pa.array(list(prompt_ids), type=pa.string())
    store = ResultsStore.open(src)
    if Path(dst).exists():
        shutil.rmtree(dst)
    out = ResultsStore.create(dst)
    for run in store.runs():
        prompts = store.prompts(run.run_id)
        prompts = prompts.filter(pc.is_in(prompts["prompt_id"], value_set=wanted))
        rows = store.rows(run.run_id)
        rows = rows.filter(pc.is_in(rows["prompt_id"], value_set=prompts["prompt_id"]))
        out.write_run(replace(run, num_prompts=prompts.num_rows))
        out.write_prompts(
            run.run_id, prompts["prompt_id"].to_pylist(), prompts["prompt"].to_pylist(), prompts["skills"].to_pylist()
        )
        out.append(run.run_id, rows.to_pydict(), "slice")
    return out
