"""Build a leaderboard from results stores: load and check the runs, compute curves, write the four outputs.

A **leaderboard entry** is one model on one benchmark. Runs of the same model name and benchmark (in one or several
results folders) are merged into one entry when they are compatible: same seeds, sampler, judge, model weights and,
for the scorers they share, the same scorer weights; otherwise :class:`SchemaError`. An entry is named after its
model, or ``model @ benchmark`` when the model appears on several benchmarks.

Best-of-N results are optional: Parquet files ``bon/*.parquet`` under a results folder with at least the columns
:data:`BON_COLUMNS` (as :mod:`noisyclip_metrics.bon.offline` writes them: one row per run, scorer, policy, N and k,
with an optional ``prompts`` count; or one row per prompt). Rows with the same ``(run_id, scorer, policy, n, k)`` are
averaged, weighted by ``prompts`` when the column is there.

A run without rows yet (just started, or stopped before its first chunk) is skipped with a note; rows with duplicate
keys in a run refuse the build (:func:`~noisyclip_metrics.evaluation.results.check_unique_rows`). The same run found in
several
folders (copies) counts once: each candidate's rows are taken from the first folder that has them.

The outputs are built in a temporary folder beside ``out`` and then moved in: a build that fails leaves the previous
leaderboard as it was.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from noisyclip_metrics.errors import InputError, SchemaError
from noisyclip_metrics.evaluation.benchmarks.promptset import with_skill_groups
from noisyclip_metrics.evaluation.curves import (
    METRICS,
    CurveConfig,
    CurveSet,
    ModelCurves,
    ScoreArrays,
    compute_curves,
    first_within,
    pivot_rows,
)
from noisyclip_metrics.evaluation.results import ResultsStore, RunInfo, check_unique_rows, merge_runs, note
from noisyclip_metrics.io.files import new_dir_mode

__all__ = [
    "BON_COLUMNS",
    "LEADERBOARD_SCHEMA",
    "LEADERBOARD_SCHEMA_VERSION",
    "OUTPUT_FILES",
    "SEARCH_SCHEMA",
    "SEARCH_SCHEMA_VERSION",
    "BuildConfig",
    "BuildResult",
    "Entry",
    "build_leaderboard",
    "image_folders",
    "leaderboard_document",
    "load_entries",
    "portable_path",
    "read_bon",
    "read_search",
    "unpublishable_runs",
]

LEADERBOARD_SCHEMA = "noisyclip-leaderboard"
LEADERBOARD_SCHEMA_VERSION = 1
BON_COLUMNS = ("run_id", "scorer", "policy", "n", "k", "cost_fraction", "judge_score")
OUTPUT_FILES = ("index.html", "README.md", "leaderboard.json", "leaderboard.csv", "curves.csv")
_ROW_COLUMNS = [
    "run_id",
    "kind",
    "model",
    "benchmark",
    "prompt_id",
    "seed",
    "step",
    "num_steps",
    "scorer",
    "score",
    "aligned",
]


@dataclass(frozen=True)
class BuildConfig:
    """Settings of ``noisyclip leaderboard build``.

    Args:
        n_resamples: bootstrap resamples of prompts.
        confidence_level: of the intervals.
        seed: bootstrap seed.
        within: share of the final improvement over chance for the earliest fraction (0.9 = "within 10%").
        reference_fraction: the fraction whose accuracy the ranking and skill tables show (nearest step).
        drill_fractions: fractions shown per seed in the per-prompt drill-down (nearest steps).
        title: page title.
        overwrite: replace the leaderboard files of an output folder that is not empty.
        charts: draw the PNG charts of README.md (needs matplotlib).
        images: MODEL=DIR items: the folder ``noisyclip evaluate --save-images`` wrote for a model
            (``<prompt_id>/<seed>.png``); the drill-down then shows each seed's final image, and the x̂0 previews
            that ``--save-previews`` saved beside it (``<seed>.step<k>.png``), embedded as thumbnails so that the
            page stays self-contained.
        thumbnail: largest side in pixels of the drill-down's images.
    """

    n_resamples: int = 1000
    confidence_level: float = 0.95
    seed: int = 0
    within: float = 0.9
    reference_fraction: float = 0.5
    drill_fractions: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    title: str = "NoisyCLIP leaderboard"
    overwrite: bool = False
    charts: bool = True
    images: tuple[str, ...] = ()
    thumbnail: int = 96

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", tuple(self.images))
        for item in self.images:
            model, _, folder = str(item).partition("=")
            if not model or not folder:
                raise InputError(
                    f"images: expected MODEL=DIR (a model name and its --save-images folder), got {item!r}"
                )
        if isinstance(self.thumbnail, bool) or not isinstance(self.thumbnail, int) or not 8 <= self.thumbnail <= 512:
            raise InputError(f"thumbnail: expected an int in [8, 512] (pixels), got {self.thumbnail!r}")
        object.__setattr__(self, "drill_fractions", tuple(float(f) for f in self.drill_fractions))
        bad = [f for f in (self.reference_fraction, *self.drill_fractions) if not 0 <= f <= 1]  # NaN fails too
        if bad:
            raise InputError(f"reference_fraction / drill_fractions: expected fractions in [0, 1], got {bad}")
        for name in ("n_resamples", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (2 if name == "n_resamples" else 0):
                want = "an int >= 2 (bootstrap resamples)" if name == "n_resamples" else "an int >= 0"
                raise InputError(f"{name}: expected {want}, got {value!r}")
        for name in ("confidence_level", "within"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"{name}: expected a finite number, got {value!r}")
        self.curve_config()  # validates the bootstrap settings' ranges

    def curve_config(self) -> CurveConfig:
        return CurveConfig(self.n_resamples, self.confidence_level, self.seed, self.within)


@dataclass(frozen=True, eq=False)
class Entry:
    """One leaderboard entry: a model on a benchmark, with its (merged) runs and pivoted scores."""

    name: str
    model: str
    benchmark: str
    runs: tuple[RunInfo, ...]
    sources: tuple[str, ...]
    judge: str
    data: ScoreArrays
    prompts: tuple[str, ...]
    skills: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class BuildResult:
    """Paths written by :func:`build_leaderboard` and its timing."""

    out: Path
    files: tuple[Path, ...]
    entries: int
    rows: int
    seconds: float


def _compatibility(run: RunInfo) -> dict[str, Any]:
    return {
        "seeds": list(run.seeds),
        "sampler": run.sampler,
        "judge": run.judge,
        "model weights": run.model_info.get("weights", ""),
    }


def _check_compatible(group: list[tuple[ResultsStore, RunInfo]]) -> None:
    (first_store, first), *rest = group
    want = _compatibility(first)
    for store, run in rest:
        got = _compatibility(run)
        fields = [k for k in want if want[k] != got[k]]
        fields += [
            f"scorer {s!r}"
            for s in set(first.scorers) & set(run.scorers)
            if first.scorers[s].get("weights") != run.scorers[s].get("weights")
        ]
        if fields:
            f = fields[0]
            detail = f" ({want[f]!r} vs {got[f]!r})" if f in want else ""
            raise SchemaError(
                f"{store.root}: run {run.run_id} and run {first.run_id} ({first_store.root}) are both model "
                f"{run.model!r} on benchmark {run.benchmark!r} but are incompatible: {', '.join(fields)} differ"
                f"{detail}; give them different model names (--name) or build them separately"
            )


def _merged_prompts(group: list[tuple[ResultsStore, RunInfo]]) -> tuple[list[str], list[str], list[tuple[str, ...]]]:
    texts: dict[str, tuple[str, tuple[str, ...]]] = {}
    for store, run in group:
        table = store.prompts(run.run_id)
        for pid, text, skills in zip(*(table[c].to_pylist() for c in ("prompt_id", "prompt", "skills")), strict=True):
            entry = (text, with_skill_groups(skills or ()))
            if texts.setdefault(pid, entry)[0] != text:
                raise SchemaError(
                    f"{store.root}: prompt {pid!r} of run {run.run_id} has another text than in a "
                    "merged run of the same model and benchmark"
                )
    ids = sorted(texts)  # canonical order: curves and their bootstrap do not depend on the order rows were written
    return ids, [texts[i][0] for i in ids], [texts[i][1] for i in ids]


def _item_keys(table: pa.Table) -> Any:
    return pc.binary_join_element_wise(table["prompt_id"], pc.cast(table["seed"], pa.string()), "#")


def _run_tables(group: list[tuple[ResultsStore, RunInfo]]) -> list[pa.Table]:
    """Each run's rows, checked for duplicate keys; a run found in several folders (copies) gives each candidate's rows
    from the first folder that has the candidate."""
    tables: list[pa.Table] = []
    taken: dict[str, list[pa.Array]] = {}  # run id -> "prompt#seed" keys of the candidates taken so far
    for store, run in group:
        table = store.rows(run.run_id, columns=_ROW_COLUMNS)
        check_unique_rows(table, f"{store.root}: run {run.run_id}")
        earlier = taken.setdefault(run.run_id, [])
        if earlier:
            table = table.filter(pc.invert(pc.is_in(_item_keys(table), value_set=pa.concat_arrays(earlier))))
        earlier.append(pc.unique(_item_keys(table)))
        tables.append(table)
    return tables


def _entry(group: list[tuple[ResultsStore, RunInfo]], name: str) -> Entry:
    _check_compatible(group)
    first = group[0][1]
    rows = pa.concat_tables(_run_tables(group))
    where = ", ".join(sorted({str(s.root) for s, _ in group}))
    if not rows.num_rows:
        raise SchemaError(f"{where}: model {first.model!r} on {first.benchmark!r} has no rows (not evaluated yet?)")
    for column, want in (("model", first.model), ("benchmark", first.benchmark)):
        found = set(pc.unique(rows[column]).to_pylist())
        if found != {want}:
            raise SchemaError(
                f"{where}: rows of model {first.model!r} name {column} {sorted(map(str, found))}, "
                f"expected {want!r} as in the run record"
            )
    recorded = first.sampler.get("num_inference_steps")
    num_steps = int(pc.max(rows["num_steps"]).as_py() if recorded is None else recorded)
    steps_seen = set(pc.unique(rows.filter(pc.equal(rows["kind"], "score"))["num_steps"]).to_pylist())
    if steps_seen - {num_steps}:
        raise SchemaError(
            f"{where}: rows of model {first.model!r} have num_steps {sorted(steps_seen)}, the run "
            f"record says {num_steps}"
        )
    ids, texts, skills = _merged_prompts(group)
    scorers = list(dict.fromkeys(s for _, run in group for s in run.scorers))
    extra = set(pc.unique(rows["scorer"]).drop_null().to_pylist()) - set(scorers)
    scorers += sorted(extra)
    data = pivot_rows(rows, ids, first.seeds, num_steps, scorers)
    keep = np.flatnonzero(~np.isnan(data.judge).all(axis=1))
    if not len(keep):
        raise SchemaError(f"{where}: model {first.model!r} on {first.benchmark!r} has no judgment rows")
    data = ScoreArrays(
        tuple(ids[i] for i in keep),
        data.seeds,
        num_steps,
        data.judge[keep],
        data.aligned[keep],
        {s: a[:, keep] for s, a in data.scores.items()},
    )
    judge = str(first.judge.get("name") or first.judge.get("source") or "judge")
    return Entry(
        name,
        first.model,
        first.benchmark,
        tuple(r for _, r in group),
        tuple(str(s.root) for s, _ in group),
        judge,
        data,
        tuple(texts[i] for i in keep),
        tuple(skills[i] for i in keep),
    )


def portable_path(path: str | Path) -> str:
    """A results folder as a leaderboard may show it: a relative path as given, an absolute one relative to the
    working directory when it is inside it, else its name only, so that no published file names a folder of the
    machine that built it.

    Examples:
        >>> portable_path("runs/results"), portable_path("/somewhere/else/results")
        ('runs/results', 'results')
    """
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return p.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return p.name


def unpublishable_runs(doc: dict[str, Any]) -> list[str]:
    """The runs of a leaderboard document whose code cannot be named: a ``-dirty`` git revision (an uncommitted
    working tree) or none (``unknown``), as ``"<model> (<run id>): <revision>"``.

    Examples:
        >>> unpublishable_runs({"provenance": [{"model": "m", "run_id": "r1", "git_revision": "abc-dirty"},
        ...                                     {"model": "m", "run_id": "r2", "git_revision": "abc"}]})
        ['m (r1): abc-dirty']
    """
    bad = []
    for run in doc.get("provenance", []):
        revision = str(run.get("git_revision", "unknown"))
        if revision.endswith("-dirty") or revision in ("", "unknown"):
            bad.append(f"{run.get('model')} ({run.get('run_id')}): {revision}")
    return bad


def image_folders(items: Sequence[str], entries: list[Entry]) -> dict[str, Path]:
    """``MODEL=DIR`` items (:attr:`BuildConfig.images`) as entry name -> folder; a model may be named by its entry
    name or its model name.

    Raises:
        InputError: for a model that no entry has, or a folder that does not exist.
    """
    names = {n: e.name for e in entries for n in (e.model, e.name)}
    out = {}
    for item in items:
        model, _, folder = str(item).partition("=")
        if model not in names:
            raise InputError(f"images: no model {model!r} on the leaderboard (models: {', '.join(sorted(names))})")
        if not Path(folder).is_dir():
            raise InputError(f"images: {folder} is not a folder (the --save-images folder of {model})")
        out[names[model]] = Path(folder)
    return out


def load_entries(results: Sequence[str | Path]) -> list[Entry]:
    """Open and check the results folders and group their runs into leaderboard entries.

    Raises:
        SchemaError: a folder that is not a results store, has another schema version, is malformed, or holds runs
            that cannot be merged.
        InputError: no folder given.
    """
    if not results:
        raise InputError("RESULTS: expected at least one results folder")
    stores = [ResultsStore.open(r) for r in results]
    merged = merge_runs(stores)
    if not merged:
        raise SchemaError(f"{', '.join(str(s.root) for s in stores)}: no runs in the results store(s)")
    runs = [(store, run) for store, run in merged if store.has_rows(run.run_id)]
    if not runs:
        ids = ", ".join(sorted({run.run_id for _, run in merged}))
        raise SchemaError(
            f"{', '.join(str(s.root) for s in stores)}: every run has no rows (not evaluated yet?): {ids}"
        )
    for store, run in merged:  # just started, or stopped before its first chunk: it never blocks the rest
        if not store.has_rows(run.run_id):
            note(f"{store.root}: run {run.run_id} ({run.model} on {run.benchmark}) has no rows yet; skipped")
    groups: dict[tuple[str, str], list[tuple[ResultsStore, RunInfo]]] = {}
    seen: set[tuple[str, str]] = set()
    for store, run in runs:
        if (str(store.root.resolve()), run.run_id) not in seen:
            seen.add((str(store.root.resolve()), run.run_id))
            groups.setdefault((run.model, run.benchmark), []).append((store, run))
    benchmarks: dict[str, set[str]] = {}
    for model, bench in groups:
        benchmarks.setdefault(model, set()).add(bench)
    return [_entry(g, m if len(benchmarks[m]) == 1 else f"{m} @ {b}") for (m, b), g in groups.items()]


#: Schema name and version of budget-matched search documents, ``<results>/search/<run_id>.json`` (written by
#: :func:`noisyclip_metrics.bon.search.search_document`).
SEARCH_SCHEMA, SEARCH_SCHEMA_VERSION = "noisyclip-search", 1


def read_search(root: str | Path) -> list[dict[str, Any]]:
    """Every budget-matched search document of a results folder (``search/*.json``, schema checked), in file-name
    order; ``[]`` when there are none.

    Raises:
        SchemaError: for a file that is not JSON or of another schema or version.
    """
    from noisyclip_metrics.io.files import read_manifest

    return [
        read_manifest(path, SEARCH_SCHEMA, SEARCH_SCHEMA_VERSION, "budget-matched search document")
        for path in sorted((Path(root) / "search").glob("*.json"))
    ]


def read_bon(root: str | Path) -> pa.Table | None:
    """Best-of-N rows of a results folder (``bon/*.parquet``), or ``None`` when there are none.

    Raises:
        SchemaError: a file that cannot be read or lacks a column of :data:`BON_COLUMNS`.

    Examples:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> read_bon(root) is None
        True
        >>> (root / "bon").mkdir()
        >>> bon = pa.table({"run_id": ["r1"], "scorer": ["noisyclip"], "policy": ["one-shot"], "n": [6], "k": [10],
        ...                 "cost_fraction": [0.37], "judge_score": [0.81]})
        >>> pq.write_table(bon, root / "bon" / "a.parquet")
        >>> read_bon(root).to_pylist()[0]["judge_score"]
        0.81
    """
    files = sorted((Path(root) / "bon").glob("*.parquet"))
    if not files:
        return None
    types = {
        "run_id": pa.string(),
        "scorer": pa.string(),
        "policy": pa.string(),
        "n": pa.int64(),
        "k": pa.int64(),
        "cost_fraction": pa.float64(),
        "judge_score": pa.float64(),
    }
    tables = []
    for f in files:
        try:
            t = pq.read_table(f)
        except (pa.ArrowInvalid, OSError) as err:
            raise SchemaError(f"{f}: unreadable BoN file ({err})") from None
        missing = [c for c in BON_COLUMNS if c not in t.column_names]
        if missing:
            raise SchemaError(f"{f}: BoN file lacks columns {missing}; expected at least {list(BON_COLUMNS)}")
        nulls = [c for c in BON_COLUMNS if c != "policy" and t[c].null_count]
        if nulls:
            raise SchemaError(f"{f}: BoN columns {nulls} have missing values")
        weight = pc.cast(t["prompts"], pa.float64()) if "prompts" in t.column_names else pa.array(np.ones(t.num_rows))
        m = t["m"] if "m" in t.column_names else pa.array(np.ones(t.num_rows, dtype=np.int64))  # cascades: m > 1
        try:
            tables.append(
                pa.table(
                    {
                        **{c: pc.cast(t[c], types[c]) for c in BON_COLUMNS},
                        "prompts": weight,
                        "m": pc.cast(m, pa.int64()),
                    }
                )
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise SchemaError(f"{f}: BoN column of the wrong type ({err})") from None
    return pa.concat_tables(tables)


def _estimate(prefix: str, est: Any) -> dict[str, Any]:
    if est is None:
        return {prefix: None, f"{prefix}_low": None, f"{prefix}_high": None}
    return {prefix: est.value, f"{prefix}_low": est.low, f"{prefix}_high": est.high}


def _curve_block(cs: CurveSet, config: BuildConfig) -> dict[str, Any]:
    return {
        "num_prompts": cs.prompts,
        **_estimate("final_judge_score", cs.judge_score),
        **_estimate("aligned_rate", cs.aligned_rate),
        **_estimate("mixed_rate", cs.mixed_rate),
        "curves": {s: c.points() for s, c in cs.curves.items()},
        "chance": next((c.chance for c in cs.curves.values()), {}),
        "earliest_fraction": {s: first_within(c, "pairwise_accuracy", config.within) for s, c in cs.curves.items()},
    }


def _bon_rows(bon: pa.Table | None, entries: list[Entry]) -> list[dict[str, Any]]:
    if bon is None or not bon.num_rows:
        return []
    owner = {r.run_id: e.name for e in entries for r in e.runs}
    unknown = sorted(set(bon["run_id"].to_pylist()) - set(owner))
    if unknown:
        raise SchemaError(f"BoN rows name runs that are not in the results stores: {unknown[:3]}")
    keys = ["run_id", "scorer", "policy", "n", "k", "m"]
    w = bon["prompts"]
    bon = bon.append_column("wc", pc.multiply(bon["cost_fraction"], w)).append_column(
        "wj", pc.multiply(bon["judge_score"], w)
    )
    agg = bon.group_by(keys).aggregate([("wc", "sum"), ("wj", "sum"), ("prompts", "sum")])
    out = [
        {
            "model": owner[r["run_id"]],
            "scorer": r["scorer"],
            "policy": r["policy"],
            "n": r["n"],
            "k": r["k"],
            "m": r["m"],
            "cost_fraction": r["wc_sum"] / r["prompts_sum"] if r["prompts_sum"] else None,
            "judge_score": r["wj_sum"] / r["prompts_sum"] if r["prompts_sum"] else None,
            "prompts": int(r["prompts_sum"]),
        }
        for r in agg.to_pylist()
    ]
    # group_by's output order is not stable (hashing, threads): k and m break ties of cost so the order is
    return sorted(
        out, key=lambda r: (r["model"], r["n"], r["scorer"], str(r["policy"]), _num(r["cost_fraction"]), r["k"], r["m"])
    )


def _nearest_step(scores: np.ndarray, fraction: float, num_steps: int) -> int | None:
    """The scored step whose k / T is nearest ``fraction`` (the earlier on a tie), as :meth:`Curve.nearest`."""
    steps = np.flatnonzero(~np.isnan(scores).all(axis=(1, 2)))
    return None if not len(steps) else int(steps[np.argmin(np.abs(steps / num_steps - fraction))])


def _comparisons(entries: list[Entry], config: BuildConfig) -> list[dict[str, Any]]:
    """Every pair of entries on one benchmark with at least two shared prompts: A's mean judge score minus B's, and
    for each scorer both have, its pairwise accuracy at the step nearest ``reference_fraction`` in A minus in B, on
    the shared prompts, with paired bootstrap intervals (the prompts resampled for both models together)."""
    from noisyclip_metrics.evaluation.stats import pairwise_counts, ratio_difference

    def interval(value: np.ndarray, low: np.ndarray, high: np.ndarray) -> dict[str, float]:
        return {"difference": float(value[0]), "low": float(low[0]), "high": float(high[0])}

    out = []
    for i, a in enumerate(entries):
        for b in entries[i + 1 :]:
            rows_b = {p: r for r, p in enumerate(b.data.prompt_ids)}
            shared = [(r, rows_b[p]) for r, p in enumerate(a.data.prompt_ids) if p in rows_b]
            if a.benchmark != b.benchmark or len(shared) < 2:
                continue
            ra, rb = (np.array(x) for x in zip(*shared, strict=True))
            ja, jb = a.data.judge[ra], b.data.judge[rb]
            counts = [np.nansum(ja, axis=1), (~np.isnan(ja)).sum(axis=1), np.nansum(jb, axis=1)]
            counts.append((~np.isnan(jb)).sum(axis=1))
            boot = {"n_resamples": config.n_resamples, "confidence_level": config.confidence_level, "seed": config.seed}
            judge = interval(*ratio_difference(*(c[:, None] for c in counts), **boot))
            accuracy = {}
            for scorer in (s for s in a.data.scores if s in b.data.scores):
                ka = _nearest_step(a.data.scores[scorer], config.reference_fraction, a.data.num_steps)
                kb = _nearest_step(b.data.scores[scorer], config.reference_fraction, b.data.num_steps)
                if ka is None or kb is None:
                    continue
                ca, pa_ = pairwise_counts(ja, a.data.scores[scorer][ka][ra])
                cb, pb_ = pairwise_counts(jb, b.data.scores[scorer][kb][rb])
                if pa_.sum() and pb_.sum():
                    accuracy[scorer] = interval(
                        *ratio_difference(ca[:, None], pa_[:, None], cb[:, None], pb_[:, None], **boot)
                    )
            out.append(
                {"a": a.name, "b": b.name, "prompts": len(shared), "judge_score": judge, "pairwise_accuracy": accuracy}
            )
    return out


def leaderboard_document(
    entries: list[Entry],
    curves: list[ModelCurves],
    bon: pa.Table | None,
    config: BuildConfig,
    search: Sequence[tuple[dict[str, Any], Path]] = (),
) -> dict[str, Any]:
    """The ``leaderboard.json`` document (NaN as ``None``); models ranked by mean judge score (best first).

    ``search``: budget-matched search documents (:func:`read_search`) and the folders they were read from; they go
    to the ``search`` key, each with its ``source``, when their model is one of the entries'.

    Raises:
        SchemaError: for a search document of a model that no entry has.
    """
    from noisyclip_metrics import __version__

    bon_rows = _bon_rows(bon, entries)
    models = []
    for e, mc in zip(entries, curves, strict=True):
        block = _curve_block(mc.overall, config)
        models.append(
            {
                "name": e.name,
                "model": e.model,
                "benchmark": e.benchmark,
                "judge": e.judge,
                "run_ids": list(dict.fromkeys(r.run_id for r in e.runs)),
                "seeds": list(e.data.seeds),
                "num_steps": e.data.num_steps,
                "scorers": list(e.data.scores),
                **block,
                "skills": {s: _curve_block(cs, config) for s, cs in mc.by_skill.items()},
                "bon": [{k: v for k, v in r.items() if k != "model"} for r in bon_rows if r["model"] == e.name],
            }
        )
    order = sorted(range(len(models)), key=lambda i: (-_num(models[i]["final_judge_score"]), models[i]["name"]))
    models = [dict(models[i], rank=r + 1) for r, i in enumerate(order)]
    provenance = [
        dict(run.to_json(), source=portable_path(src))
        for e in entries
        for run, src in zip(e.runs, e.sources, strict=True)
    ]
    doc: dict[str, Any] = {
        "schema": LEADERBOARD_SCHEMA,
        "schema_version": LEADERBOARD_SCHEMA_VERSION,
        "title": config.title,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "package_version": __version__,
        "settings": {  # not the image folders: paths of the machine that built it
            k: v for k, v in asdict(config).items() if k not in ("overwrite", "charts", "title", "images", "thumbnail")
        },
        "metrics": METRICS.names(),
        "models": models,
        "provenance": provenance,
    }
    if bon_rows:
        doc["bon"] = bon_rows
    compare = _comparisons([entries[i] for i in order], config)  # the higher-ranked model of a pair first
    if compare:  # A minus B for every pair of models on shared prompts, each pair once (B minus A: negated)
        doc["compare"] = {"reference_fraction": config.reference_fraction, "pairs": compare}
    names = {n for e in entries for n in (e.name, e.model)}
    stray = sorted({d["model"] for d, _ in search} - names)
    if stray:
        raise SchemaError(f"search documents of models that are not on the leaderboard: {stray}")
    if search:
        doc["search"] = [dict(d, source=portable_path(src)) for d, src in search]
    return _clean(doc)


def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and np.isfinite(x) else float("-inf")


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out: {out} is a file; expected a folder for the leaderboard")
    if (out / "store.json").exists():
        raise InputError(f"--out: {out} is a results store; write the leaderboard to another folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"--out: {out} exists and is not empty; choose a new folder or pass --overwrite")


def _write_and_swap(out: Path, write: Callable[[Path], Sequence[Path]]) -> list[Path]:
    """Run ``write(folder)`` on a temporary folder beside ``out``, then move its outputs into ``out`` in place of the
    old ones (which are put back if a move fails). Until the new outputs are complete, ``out`` is not touched."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.build-", dir=out.parent))
    try:
        files = [Path(f) for f in write(tmp)]
        if not out.exists():
            tmp.chmod(new_dir_mode())  # mkdtemp makes it private; the leaderboard is a page to publish
            os.replace(tmp, out)
        else:
            _swap_outputs(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [out / f.relative_to(tmp) for f in files]


def _swap_outputs(new: Path, out: Path) -> None:
    """Move the outputs of ``new`` into ``out``; the old ones go aside first and come back if anything fails."""
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    names = [*OUTPUT_FILES, "charts"]
    moved: list[str] = []  # old outputs set aside
    placed: list[str] = []  # new outputs moved in
    try:
        for name in names:
            if (out / name).exists() or (out / name).is_symlink():
                os.replace(out / name, old / name)
                moved.append(name)
        for name in names:
            if (new / name).exists():
                os.replace(new / name, out / name)
                placed.append(name)
    except BaseException:
        for name in placed:
            target = out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        for name in moved:
            os.replace(old / name, out / name)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def build_leaderboard(
    results: Sequence[str | Path],
    out: str | Path,
    config: BuildConfig = BuildConfig(),
    search: Sequence[str | Path] = (),
) -> BuildResult:
    """Build ``index.html``, ``README.md`` (+ ``charts/*.png``), ``leaderboard.json``, ``leaderboard.csv`` and
    ``curves.csv`` in ``out`` from one or more results folders.

    Budget-matched search documents (``noisyclip bon search``) are read from the results folders and from the
    folders ``search`` (results stores of other runs of the same models, e.g. with more seeds per prompt).

    With ``overwrite`` only these files and ``charts/`` are replaced; other files in ``out`` are left alone. The new
    files are written into a temporary folder beside ``out`` first: a build that fails leaves ``out`` as it was.

    Raises:
        InputError: ``out`` is a file, a results store, or a non-empty folder without ``overwrite``.
        SchemaError: see :func:`load_entries` and :func:`read_bon`.
    """
    from noisyclip_metrics.leaderboard import render

    t0 = time.perf_counter()
    out = Path(out)
    _prepare_out(out, config.overwrite)
    results = list({Path(r).resolve(): Path(r) for r in results}.values())  # a folder named twice counts once
    entries = load_entries(results)
    images = image_folders(config.images, entries)  # checked before anything is computed or written
    bons = [b for b in (read_bon(r) for r in results) if b is not None]
    bon = pa.concat_tables(bons) if bons else None
    curves = [compute_curves(e.data, config.curve_config(), e.skills) for e in entries]
    folders = list({Path(r).resolve(): Path(r) for r in [*results, *search]}.values())
    searches = [(d, folder) for folder in folders for d in read_search(folder)]
    doc = leaderboard_document(entries, curves, bon, config, searches)
    files = _write_and_swap(out, lambda folder: render.write_outputs(doc, entries, folder, config, images))
    rows = sum(int(np.isfinite(a).sum()) for e in entries for a in e.data.scores.values())
    rows += sum(int(np.isfinite(e.data.judge).sum()) for e in entries)
    return BuildResult(out, tuple(files), len(entries), rows, time.perf_counter() - t0)
