"""Best-of-N outcomes from recorded trajectories: no regeneration, since a survivor's trajectory is the same as in the
full run (see :mod:`noisyclip_metrics.bon.loops`), so its final judgment is the recorded one.

For one run of a results store (:mod:`noisyclip_metrics.evaluation.results`), every prompt with at least ``N`` judged
seeds
contributes its **first N seeds in seed order**. For each scorer, ``N`` and step ``k``:

* ``one-shot``: the pick is the argmax of the step-k scores among the N (ties: lowest seed);
* ``halving``: successive halving with the linear schedule ``k, 2k, 3k, ...`` (clipped to T) until one candidate is
  left (``halving_counts(N)``: 6 -> 3 -> 2 -> 1); column ``k`` is the first decision step;
* ``random`` (floor, one row per N): the expected judge score of a uniformly random pick (mean over the N), cost
  ``1/N`` (one candidate generated, nothing scored);
* ``oracle`` (ceiling, one row per N): the best judge score among the N, cost 1.

A prompt whose scores are missing at a step a row needs is left out of that row (column ``prompts`` counts the
prompts of each row). ``judge_score`` is the judge score of the pick averaged over prompts, ``aligned_rate`` the
fraction of picks the judge calls fully aligned (null when the judge gives no verdict). Cost, in denoiser calls per
candidate-step::

    cost_fraction = (denoiser_evals + scorer_evals * scorer_cost_eq) / (N * T)

with ``denoiser_evals``/``scorer_evals`` from :func:`~noisyclip_metrics.bon.policies.schedule_cost` (one-shot
top-1: ``N·k + (T − k)`` and ``N``; x̂0 scorers decide after the next denoiser call) and ``scorer_cost_eq`` the cost
of scoring one candidate once, in denoiser-call equivalents, from the run's timing (:func:`scorer_costs`), or given.
``clip-final`` only scores final images: one row, ``k = T`` (full-cost BoN).

**Cascades** (``final_scorer``, default ``clip-final`` when the run scored it): the policy keeps the top ``m``
(``2 <= m <= N/2``) instead of one, all ``m`` are finished, and the final scorer picks among them at step T
(policy ``"one-shot top-m + clip-final"``, ``"halving top-m + clip-final"``). Their cost adds the final scorings::

    cost_fraction = (denoiser_evals + scorer_evals * scorer_cost_eq + final_evals * final_cost_eq) / (N * T)

Columns ``m``, ``final_scorer``, ``final_evals`` and ``final_cost_eq`` are ``1``, null, ``0`` and ``0`` on the other
rows (and when reading files written before they existed).

Rows go to ``<results>/bon/<run_id>.parquet`` (:data:`BON_SCHEMA`), written atomically. :func:`pick_scores` gives
a row's per-prompt judge scores of the pick back (its mean is the row's ``judge_score``), for paired comparisons of
two rows with a bootstrap over prompts (:func:`~noisyclip_metrics.evaluation.stats.bootstrap_ratio`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from noisyclip_metrics.bon.policies import halving_counts, schedule_cost
from noisyclip_metrics.errors import InputError, SchemaError
from noisyclip_metrics.evaluation.results import ResultsStore, RunInfo, _atomic_parquet, check_unique_rows

__all__ = [
    "BON_SCHEMA",
    "DEFAULT_NS",
    "RunArrays",
    "at_budget",
    "bon_rows",
    "cascade_label",
    "compute_bon",
    "final_only_scorers",
    "load_run",
    "load_run_models",
    "pick_scores",
    "plan_cost",
    "plan_picks",
    "plan_scores",
    "read_bon",
    "reads_x0",
    "run_costs",
    "scorer_costs",
]

DEFAULT_NS = (2, 4, 6, 8)
DEFAULT_FINAL = "clip-final"
BON_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("model", pa.string()),
        ("benchmark", pa.string()),
        ("judge", pa.string()),
        ("scorer", pa.string()),
        ("policy", pa.string()),
        ("n", pa.int32()),
        ("k", pa.int32()),
        ("schedule", pa.string()),
        ("num_steps", pa.int32()),
        ("cost_fraction", pa.float64()),
        ("denoiser_evals", pa.int64()),
        ("scorer_evals", pa.int64()),
        ("scorer_cost_eq", pa.float64()),
        ("judge_score", pa.float64()),
        ("aligned_rate", pa.float64()),
        ("prompts", pa.int32()),
        ("m", pa.int32()),
        ("final_scorer", pa.string()),
        ("final_evals", pa.int64()),
        ("final_cost_eq", pa.float64()),
    ]
)
_CASCADE_DEFAULTS = {"m": 1, "final_scorer": None, "final_evals": 0, "final_cost_eq": 0.0}


def cascade_label(policy: str, m: int, final_scorer: str) -> str:
    """Policy name of a cascade row: ``cascade_label("one-shot", 2, "clip-final") == "one-shot top-2 + clip-final"``."""
    return f"{policy} top-{m} + {final_scorer}"


def reads_x0(info: RunInfo, name: str) -> bool:
    """Whether a run's scorer reads the x̂0 estimate, so that it needs the denoiser output at its step: from the inputs
    the run recorded it ``requires``; runs recorded before those were kept fall back to the name (``"x0"`` in it)."""
    requires = (info.scorers.get(name) or {}).get("requires")
    return "x0" in requires if requires is not None else "x0" in name


@dataclass(frozen=True)
class RunArrays:
    """One run's scores and judgments as arrays over (prompt, seed[, step]); NaN where a row is missing."""

    info: RunInfo
    prompt_ids: tuple[str, ...]
    seeds: tuple[int, ...]
    scores: dict[str, np.ndarray]  # scorer -> (P, S, T+1)
    judge: np.ndarray  # (P, S)
    aligned: np.ndarray  # (P, S), 1/0, NaN when unknown
    judge_name: str

    @property
    def num_steps(self) -> int:
        """T."""
        return int(next(iter(self.scores.values())).shape[2]) - 1 if self.scores else 0

    def groups(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(prompt rows, seed columns ``(P', n)``): prompts with >= n judged seeds, their first n seeds in order."""
        rows, cols = [], []
        for p in range(len(self.prompt_ids)):
            judged = np.flatnonzero(~np.isnan(self.judge[p]))
            if len(judged) >= n:
                rows.append(p)
                cols.append(judged[:n])
        return np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64).reshape(len(rows), n)


def load_run(store: ResultsStore, run_id: str) -> RunArrays:
    """Read a run's score and judgment rows into :class:`RunArrays` (seeds sorted ascending)."""
    info = store.run(run_id)
    table = store.rows(
        run_id, columns=["kind", "prompt_id", "seed", "step", "num_steps", "scorer", "judge", "score", "aligned"]
    )
    check_unique_rows(table, f"{store.root}: run {run_id}")  # a candidate written twice would count twice
    cols = {c: table[c].to_pylist() for c in table.column_names}
    prompt_ids = tuple(dict.fromkeys(cols["prompt_id"]))
    seeds = tuple(sorted({int(s) for s in cols["seed"]}))
    pidx = {p: i for i, p in enumerate(prompt_ids)}
    sidx = {s: i for i, s in enumerate(seeds)}
    steps = {int(t) for t in cols["num_steps"] if t is not None}
    if len(steps) > 1:
        raise SchemaError(f"{store.root}: run {run_id} mixes numbers of steps {sorted(steps)}")
    num_steps = steps.pop() if steps else int(info.sampler.get("num_inference_steps", 0))
    scores: dict[str, np.ndarray] = {}
    judge = np.full((len(prompt_ids), len(seeds)), np.nan)
    aligned = np.full_like(judge, np.nan)
    judge_names = set()
    for kind, p, s, k, scorer, jname, value, al in zip(
        cols["kind"],
        cols["prompt_id"],
        cols["seed"],
        cols["step"],
        cols["scorer"],
        cols["judge"],
        cols["score"],
        cols["aligned"],
        strict=True,
    ):
        i, j = pidx[p], sidx[int(s)]
        if kind == "judgment":
            judge[i, j] = value
            aligned[i, j] = np.nan if al is None else float(al)
            judge_names.add(jname)
        elif kind == "score":
            if scorer not in scores:
                scores[scorer] = np.full((len(prompt_ids), len(seeds), num_steps + 1), np.nan)
            scores[scorer][i, j, int(k)] = value
    judge_name = ",".join(sorted(n for n in judge_names if n)) or str(info.judge.get("name", ""))
    return RunArrays(info, prompt_ids, seeds, scores, judge, aligned, judge_name)


def scorer_costs(info: RunInfo, scored_steps: dict[str, int]) -> dict[str, float]:
    """Cost of scoring one candidate once, in denoiser-call equivalents, from the run's timing.

    ``(score_seconds/<scorer> / (candidates · scored_steps)) / (denoise_seconds / (candidates · T))``, where
    ``scored_steps`` is how many steps the scorer scored per candidate (T + 1, or 1 for ``clip-final``). The run's
    ``denoise_seconds`` covers the whole generation (denoiser calls, scheduler, final VAE decode), so this slightly
    underestimates scorer costs relative to a bare denoiser call. 0 when the timing is missing.
    """
    timing = info.timing or {}
    denoise, cands, steps = (float(timing.get(k, 0) or 0) for k in ("denoise_seconds", "candidates", "steps"))
    out = {}
    for name, count in scored_steps.items():
        seconds = float(timing.get(f"score_seconds/{name}", 0) or 0)
        ok = denoise > 0 and cands > 0 and steps > 0 and count > 0
        out[name] = (seconds / (cands * count)) / (denoise / (cands * steps)) if ok else 0.0
    return out


def run_costs(arrays: RunArrays, costs: Mapping[str, float] | None = None) -> dict[str, float]:
    """Every scorer's cost per scoring in denoiser-call equivalents: the run's timing (:func:`scorer_costs`, counting
    the steps each scorer scored), overridden by ``costs``."""
    scored = {name: int((~np.isnan(a).all(axis=(0, 1))).sum()) for name, a in arrays.scores.items()}
    return {**scorer_costs(arrays.info, scored), **(costs or {})}


def plan_cost(n: int, num_steps: int, denoiser_evals: int, scoring_eq: float) -> float:
    """``cost_fraction`` of a plan: ``(denoiser_evals + scoring_eq) / (n · T)``, with ``scoring_eq`` its scorings in
    denoiser-call equivalents (scorings × the scorer's cost, plus a cascade's final scorings × theirs)."""
    return (denoiser_evals + scoring_eq) / (n * num_steps)


def _simulate(s: np.ndarray, decisions: Sequence[tuple[int, int]], final: np.ndarray | None = None) -> np.ndarray:
    """Pick per group: ``s`` (G, N, T+1) scores; each decision keeps the top ``survivors`` of the alive ones.

    With ``final`` ((G, N) final-scorer scores), the pick is the survivor the final scorer ranks first instead.
    """
    g, n, _ = s.shape
    alive = np.ones((g, n), dtype=bool)
    last = None
    for step, survivors in decisions:
        masked = np.where(alive, s[:, :, step], -np.inf)
        order = np.argsort(-masked, axis=1, kind="stable")  # ties: lower seed first
        alive = np.zeros_like(alive)
        np.put_along_axis(alive, order[:, :survivors], True, axis=1)
        last = order
    if last is None:
        raise InputError("decisions: expected at least one decision")
    if final is None:
        return last[:, 0]
    return np.argmax(np.where(alive, final, -np.inf), axis=1)  # ties: lower seed first


def _halving_decisions(k: int, n: int, num_steps: int, m: int = 1) -> list[tuple[int, int]]:
    decisions: list[tuple[int, int]] = []
    for j, count in enumerate(halving_counts(n, m)):
        step = min(num_steps, (j + 1) * k)
        if decisions and decisions[-1][0] == step:
            decisions[-1] = (step, count)  # decisions collapsed at T: one scoring, keep the final count
        else:
            decisions.append((step, count))
    return decisions


def final_only_scorers(arrays: RunArrays) -> set[str]:
    """Scorers of a run that scored only the final image (``clip-final``): the run's rows have them at k = T alone."""
    steps = arrays.num_steps
    return {name for name, a in arrays.scores.items() if np.isnan(a[:, :, :steps]).all()}


def _plans(
    name: str, n: int, k: int, steps: int, final: str | None, final_only: bool
) -> list[tuple[str, int, list[tuple[int, int]]]]:
    """(policy, m, decisions) simulated for one scorer, N and first decision step k; a ``final_only`` scorer (one
    that scored only the final image, such as ``clip-final``) has just the full-cost pick."""
    if final_only:
        return [("one-shot", 1, [(k, 1)])] if k == steps else []
    plans = [("one-shot", 1, [(k, 1)])]
    if k >= 1 and n > 2:
        plans.append(("halving", 1, _halving_decisions(k, n, steps)))
    if final is None or name == final or k >= steps:
        return plans
    for m in range(2, n // 2 + 1):
        plans.append(("one-shot", m, [(k, m)]))
        halving = _halving_decisions(k, n, steps, m) if k >= 1 else []
        if len(halving) > 1:  # one halving to m is the one-shot plan
            plans.append(("halving", m, halving))
    return plans


def bon_rows(
    arrays: RunArrays,
    ns: Iterable[int] = DEFAULT_NS,
    costs: dict[str, float] | None = None,
    final_scorer: str | None = DEFAULT_FINAL,
) -> dict[str, list]:
    """BoN outcome rows (columns of :data:`BON_SCHEMA`) of one run; see the module docstring.

    Args:
        arrays: the run (:func:`load_run`).
        ns: values of N.
        costs: scorer cost per scoring in denoiser-call equivalents, overriding the run's timing.
        final_scorer: the scorer that picks among the ``m`` survivors of cascade rows (none when ``None`` or when
            the run has no step-T scores of it).
    """
    info, steps = arrays.info, arrays.num_steps
    if steps < 1:
        raise InputError(f"run {info.run_id}: expected score rows with at least one step, got none")
    costs = run_costs(arrays, costs)
    if final_scorer is not None and (
        final_scorer not in arrays.scores or np.isnan(arrays.scores[final_scorer][:, :, steps]).all()
    ):
        final_scorer = None
    c_final = costs.get(final_scorer, 0.0) if final_scorer else 0.0
    out: dict[str, list] = {f.name: [] for f in BON_SCHEMA}

    def add(
        scorer: str,
        policy: str,
        n: int,
        k: int,
        schedule: str,
        denoiser: int,
        scorings: int,
        judged: np.ndarray,
        aligned: np.ndarray,
        m: int = 1,
    ) -> None:
        """One row; ``judged``/``aligned``: the pick's judge score / verdict per prompt; ``m > 1``: a cascade."""
        c = costs.get(scorer, 0.0)
        finals = m if m > 1 else 0
        fraction = plan_cost(n, steps, denoiser, scorings * c + finals * c_final)
        values = {
            "run_id": info.run_id,
            "model": info.model,
            "benchmark": info.benchmark,
            "judge": arrays.judge_name,
            "scorer": scorer,
            "policy": cascade_label(policy, m, str(final_scorer)) if finals else policy,
            "n": n,
            "k": k,
            "schedule": schedule,
            "num_steps": steps,
            "cost_fraction": fraction,
            "denoiser_evals": denoiser,
            "scorer_evals": scorings,
            "scorer_cost_eq": c,
            "judge_score": float(judged.mean()),
            "aligned_rate": None if np.isnan(aligned).any() else float(aligned.mean()),
            "prompts": len(judged),
            "m": m,
            "final_scorer": final_scorer if finals else None,
            "final_evals": finals,
            "final_cost_eq": c_final if finals else 0.0,
        }
        for key, v in values.items():
            out[key].append(v)

    final_only = final_only_scorers(arrays)
    for n in ns:
        prow, pcol = arrays.groups(int(n))
        if len(prow) == 0:
            continue
        jsel, asel = arrays.judge[prow[:, None], pcol], arrays.aligned[prow[:, None], pcol]
        add("random", "random", n, 0, "", steps, 0, jsel.mean(axis=1), asel.mean(axis=1))
        best = np.argmax(jsel, axis=1)
        rows = np.arange(len(jsel))
        add("oracle", "oracle", n, steps, "", n * steps, 0, jsel[rows, best], asel[rows, best])
        fsel = arrays.scores[final_scorer][prow[:, None], pcol, steps] if final_scorer else None
        for name, a in arrays.scores.items():
            s = a[prow[:, None], pcol]  # (G, n, T+1)
            for k in range(steps + 1):
                for policy, m, decisions in _plans(name, n, k, steps, final_scorer, name in final_only):
                    valid, picks = _plan_picks(s, decisions, fsel if m > 1 else None)
                    if not valid.any():
                        continue
                    den, sc = schedule_cost(n, steps, decisions, needs_model_output=reads_x0(info, name))
                    vrows = np.arange(int(valid.sum()))
                    add(
                        name,
                        policy,
                        n,
                        k,
                        ",".join(str(d) for d, _ in decisions),
                        den,
                        sc,
                        jsel[valid][vrows, picks],
                        asel[valid][vrows, picks],
                        m,
                    )
    return out


def _plan_picks(
    s: np.ndarray,
    decisions: Sequence[tuple[int, int]],
    final: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """(groups with every score the plan reads, the pick of each of them); ``final`` only for cascades."""
    need = sorted({d for d, _ in decisions})
    valid = ~np.isnan(s[:, :, need]).any(axis=(1, 2))
    if final is not None:
        valid &= ~np.isnan(final).any(axis=1)
    if not valid.any():
        return valid, np.zeros(0, dtype=np.int64)
    return valid, _simulate(s[valid], decisions, None if final is None else final[valid])


def pick_scores(arrays: RunArrays, row: Mapping[str, Any]) -> np.ndarray:
    """Judge score of the pick of one BoN row (a dict of :data:`BON_SCHEMA` columns) for every prompt with ``n``
    judged seeds, in :meth:`RunArrays.groups` order; NaN for a prompt the row leaves out. ``nanmean`` of the result
    is the row's ``judge_score`` (``random``: the mean over the N, ``oracle``: the best).

    Raises:
        InputError: for a row of another run, or a scorer or policy the run cannot reproduce.
    """
    if row["run_id"] != arrays.info.run_id:
        raise InputError(f"row: expected a row of run {arrays.info.run_id}, got run {row['run_id']}")
    n, k, m, steps = int(row["n"]), int(row["k"]), int(row.get("m") or 1), arrays.num_steps
    prow, pcol = arrays.groups(n)
    jsel = arrays.judge[prow[:, None], pcol]
    if row["policy"] == "random":
        return jsel.mean(axis=1)
    if row["policy"] == "oracle":
        return jsel.max(axis=1)
    if row["scorer"] not in arrays.scores:
        raise InputError(f"row: run {arrays.info.run_id} has no scores of {row['scorer']!r}")
    final_name = row.get("final_scorer") if m > 1 else None
    base = row["policy"].split(" top-")[0] if final_name else row["policy"]
    plans = {"one-shot": [(k, m)], "halving": _halving_decisions(k, n, steps, m)}
    if base not in plans or (final_name and final_name not in arrays.scores):
        raise InputError(f"row: cannot reproduce policy {row['policy']!r} of scorer {row['scorer']!r}")
    return plan_scores(arrays, row["scorer"], n, plans[base], final_name)


def plan_picks(
    arrays: RunArrays, scorer: str, n: int, decisions: Sequence[tuple[int, int]], final_scorer: str | None = None
) -> np.ndarray:
    """Seed of the pick of one plan for every prompt with ``n`` judged seeds (:meth:`RunArrays.groups` order), -1 for a
    prompt missing a score the plan reads. What a live run of the plan on the same seeds chooses.

    Args:
        arrays: the run.
        scorer: the scorer that takes the decisions.
        n: N.
        decisions: ``(step, survivors)`` in step order, each keeping the top ``survivors`` of the candidates alive.
        final_scorer: picks among the last survivors at step T (a cascade); ``None``: the last decision's best.
    """
    if scorer not in arrays.scores:
        raise InputError(f"scorer: run {arrays.info.run_id} has no scores of {scorer!r}")
    prow, pcol = arrays.groups(n)
    s = arrays.scores[scorer][prow[:, None], pcol]
    final = arrays.scores[final_scorer][prow[:, None], pcol, arrays.num_steps] if final_scorer else None
    valid, picks = _plan_picks(s, decisions, final)
    out = np.full(len(prow), -1, dtype=np.int64)
    out[valid] = np.asarray(arrays.seeds)[pcol[valid][np.arange(int(valid.sum())), picks]]
    return out


def plan_scores(
    arrays: RunArrays, scorer: str, n: int, decisions: Sequence[tuple[int, int]], final_scorer: str | None = None
) -> np.ndarray:
    """Judge score of the pick of one plan (:func:`plan_picks`) for every prompt with ``n`` judged seeds, NaN for a
    prompt missing a score the plan reads."""
    picks = plan_picks(arrays, scorer, n, decisions, final_scorer)
    prow, _ = arrays.groups(n)
    seeds = np.asarray(arrays.seeds)  # ascending (load_run)
    out = arrays.judge[prow, np.searchsorted(seeds, np.where(picks >= 0, picks, seeds[0]))]
    return np.where(picks >= 0, out, np.nan)


def compute_bon(
    results: str | Path | ResultsStore,
    run_id: str | None = None,
    ns: Iterable[int] = DEFAULT_NS,
    costs: dict[str, float] | None = None,
    write: bool = True,
    final_scorer: str | None = DEFAULT_FINAL,
) -> pa.Table:
    """BoN outcomes of one run (or every run) of a results store, written to ``<results>/bon/<run_id>.parquet``.

    Args:
        results: a results folder or an open :class:`ResultsStore`.
        run_id: one run (all runs of the store when ``None``).
        ns: values of N.
        costs: scorer cost per scoring in denoiser-call equivalents, overriding the run's timing.
        write: write the Parquet files.
        final_scorer: the final judge of cascade rows (``None``: no cascade rows; the default is skipped for runs
            that did not score it, another name must have been scored by some run).
    """
    store = results if isinstance(results, ResultsStore) else ResultsStore.open(results)
    ns = [int(n) for n in ns]
    if not ns or any(n < 1 for n in ns):
        raise InputError(f"ns: expected values of N >= 1, got {ns}")
    bad = {k: v for k, v in (costs or {}).items() if not (isinstance(v, (int, float)) and 0 <= v < float("inf"))}
    if bad:
        raise InputError(f"costs: expected finite costs >= 0 (denoiser-call equivalents), got {bad}")
    runs = [store.run(run_id)] if run_id else store.runs()
    tables, scored = [], set()
    for info in runs:
        arrays = load_run(store, info.run_id)
        if run_id is None and not arrays.scores:
            continue  # a run that has not written rows yet
        scored |= set(arrays.scores)
        table = pa.table(bon_rows(arrays, ns, costs, final_scorer), schema=BON_SCHEMA)
        if write:
            _atomic_parquet(table, store.root / "bon" / f"{info.run_id}.parquet")
        tables.append(table)
    if not tables:
        raise InputError(f"results: {store.root} has no run with score rows; run `noisyclip evaluate` first")
    if final_scorer not in (None, DEFAULT_FINAL) and final_scorer not in scored:
        raise InputError(f"final_scorer: no run scored {final_scorer!r}; expected one of {sorted(scored)} or None")
    return pa.concat_tables(tables)


def read_bon(results: str | Path) -> pa.Table:
    """Every ``bon/*.parquet`` of a results folder (empty table with :data:`BON_SCHEMA` when none)."""
    files = sorted((Path(results) / "bon").glob("*.parquet"))
    if not files:
        return BON_SCHEMA.empty_table()
    return pa.concat_tables([_with_cascade_columns(pq.read_table(f)).cast(BON_SCHEMA) for f in files])


def _with_cascade_columns(table: pa.Table) -> pa.Table:
    """Files written before cascades lack their columns: add them with the values of a non-cascade row."""
    for name, value in _CASCADE_DEFAULTS.items():
        if name not in table.column_names:
            field = BON_SCHEMA.field(name)
            table = table.append_column(field, pa.array([value] * table.num_rows, type=field.type))
    return table.select(BON_SCHEMA.names)


def at_budget(rows: Sequence[Mapping[str, Any]], scorer: str, policy: str, fraction: float) -> Mapping[str, Any] | None:
    """The BoN row (:func:`bon_rows`) of ``scorer`` and ``policy`` with the largest cost within ``fraction`` of full
    cost (ties: the larger ``k``), or ``None`` when every row costs more.

    Examples:
        >>> rows = [{"scorer": "s", "policy": "p", "cost_fraction": c, "k": k} for c, k in [(0.3, 2), (0.6, 4)]]
        >>> at_budget(rows, "s", "p", 0.5)["k"], at_budget(rows, "s", "p", 0.1)
        (2, None)
    """
    fit = [r for r in rows if r["scorer"] == scorer and r["policy"] == policy and r["cost_fraction"] <= fraction + 1e-9]
    return max(fit, key=lambda r: (r["cost_fraction"], r["k"])) if fit else None


def load_run_models(info: RunInfo, names: Sequence[str]) -> tuple[Any, dict[str, Any]]:
    """The pipeline of a recorded run and its scorers ``names``, loaded from the ids the run recorded, to replay the
    run live (any frozen-CLIP scorer may use the run's ``clip``)."""
    from noisyclip_metrics.diffusion.pipelines import load_pipeline
    from noisyclip_metrics.scoring.factory import resolve_model
    from noisyclip_metrics.scoring.scorers import build_scorer, model_resource

    pipe = load_pipeline(info.model_info.get("id") or info.model)
    scorers = {}
    for name in names:
        ref = info.scorers.get(name, {}).get("model")
        if ref is None and model_resource(name) == "clip":
            ref = info.scorers.get("clip", {}).get("model")
        if ref:
            scorers[name] = build_scorer(name, model=resolve_model(ref), vae=pipe.vae)
    return pipe, scorers
