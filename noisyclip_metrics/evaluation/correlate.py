"""Correlate any scorer's per-step scores in a results store with any judgment source, overall and per skill.

For every run of a results store (:mod:`noisyclip_metrics.evaluation.results`), scorer and step k (fraction k/T) this
computes
how well the scores at step k agree with a judgment of the *final* images: Pearson, Spearman, Kendall tau_b and
tau_c, and the tie-calibrated pairwise accuracy with its threshold epsilon (GenAI-Bench / Deutsch et al. 2023; see
:mod:`noisyclip_metrics.evaluation.stats` for the definitions), optionally with bootstrap confidence intervals.

* **Judgments**: by default the judgment rows stored with each run (its judge, e.g. ``world-oracle``); or a
  judgments file / list of :class:`~noisyclip_metrics.evaluation.judges.Judgment` whose prompt ids are the run's prompt
  ids
  and whose candidate ids are the seeds as strings (``"0"``, ``"1"``...). A judgment whose ``model`` is the name
  of a run of the store applies to that run only; others apply to every run. ``judge=`` picks one judge when
  several are present. ``gold="aligned"`` correlates with the judge's binary verdict instead of its score.
* **Grouping**: ``group="prompt"`` (GenAI-Bench style: rows = prompts, the candidates compared are the seeds of one
  prompt; statistics per prompt, then averaged) or ``group="none"`` (all candidates pooled as one group).
* **Skills**: one row ``skill="overall"`` and, with ``per_skill``, one per skill tag of the run's prompt table.

Steps where a scorer has no rows (``clip-final`` exists only at k = T) are skipped. Each result row is a plain dict
(:data:`ROW_KEYS`, plus ``<stat>_low`` / ``<stat>_high`` with ``ci``) that the leaderboard reuses.

Examples:
    >>> import tempfile
    >>> from noisyclip_metrics.evaluation.results import ResultsStore, RunInfo
    >>> store = ResultsStore.create(tempfile.mkdtemp() + "/r")
    >>> store.write_run(RunInfo("r1", "demo", "bench", {}, (0, 1, 2), {"clip": {}}, {"name": "oracle"}))
    >>> store.write_prompts("r1", ["p0", "p1"], ["a red cube", "two cats"], [["attribute"], ["counting"]])
    >>> rows = {k: [] for k in ("kind", "run_id", "model", "benchmark", "prompt_id", "seed", "step", "num_steps",
    ...                         "timestep", "scorer", "judge", "score", "aligned")}
    >>> def add(kind, pid, seed, step, scorer, judge, score):
    ...     for k, v in zip(rows, (kind, "r1", "demo", "bench", pid, seed, step, 1, None, scorer, judge, score, None)):
    ...         rows[k].append(v)
    >>> for p, gold in (("p0", [1, 2, 3]), ("p1", [3, 1, 2])):
    ...     for seed in range(3):
    ...         add("judgment", p, seed, None, None, "oracle", gold[seed])
    ...         add("score", p, seed, 0, "clip", None, -gold[seed])   # step 0: reversed
    ...         add("score", p, seed, 1, "clip", None, gold[seed])    # step 1: perfect
    >>> _ = store.append("r1", rows, "c0")
    >>> [(r["step"], r["pearson"], r["pairwise_accuracy"]) for r in correlate(store, per_skill=False)]
    [(0, -1.0, 0.0), (1, 1.0, 1.0)]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.evaluation.benchmarks.promptset import SKILLS
from noisyclip_metrics.evaluation.judges.records import Judgment, check_coverage, mean_over_raters, read_judgments
from noisyclip_metrics.evaluation.results import ResultsStore, RunInfo, check_unique_rows, note
from noisyclip_metrics.evaluation.stats import (
    agreement,
    kendall_tau_b,
    kendall_tau_c,
    pairwise_accuracy,
    pearson,
    spearman,
)
from noisyclip_metrics.registry import Registry, did_you_mean

__all__ = ["GROUPINGS", "ROW_KEYS", "STAT_KEYS", "correlate", "format_table"]

STAT_KEYS = ("pearson", "spearman", "kendall_tau_b", "kendall_tau_c", "pairwise_accuracy")
ROW_KEYS = (
    "run_id",
    "model",
    "benchmark",
    "scorer",
    "judge",
    "gold",
    "group",
    "step",
    "num_steps",
    "fraction",
    "skill",
    "n_prompts",
    "n_items",
    *STAT_KEYS,
    "epsilon",
)

GROUPINGS: Registry[Callable[[np.ndarray], np.ndarray]] = Registry("grouping")
"""How a (prompts x seeds) matrix becomes the statistics' input: ``prompt`` (rows = groups) or ``none`` (pooled)."""
GROUPINGS.register("prompt", lambda m: m)
GROUPINGS.register("none", lambda m: m.ravel())

_GOLD_COLUMNS = {"score": "score", "aligned": "aligned"}


@dataclass
class _Run:
    info: RunInfo
    prompt_ids: list[str]
    skills: list[tuple[str, ...]]
    seeds: list[int]
    num_steps: int
    scores: dict[tuple[str, int], np.ndarray]  # (scorer, step) -> (prompts, seeds)
    judgments: dict[str, dict[str, np.ndarray]]  # judge -> {"score" | "aligned": (prompts, seeds)}


def _load_run(store: ResultsStore, info: RunInfo) -> _Run:
    table = store.prompts(info.run_id)
    prompt_ids = table["prompt_id"].to_pylist()
    skills = [tuple(s or ()) for s in table["skills"].to_pylist()]
    seeds = list(info.seeds)
    p_index = {p: i for i, p in enumerate(prompt_ids)}
    s_index = {s: i for i, s in enumerate(seeds)}
    table = store.rows(info.run_id)
    check_unique_rows(table, f"{store.root}: run {info.run_id}")  # a later duplicate would silently win
    rows = table.to_pydict()
    shape = (len(prompt_ids), len(seeds))
    scores: dict[tuple[str, int], np.ndarray] = {}
    judgments: dict[str, dict[str, np.ndarray]] = {}
    num_steps = 0
    for kind, pid, seed, step, steps, scorer, judge, score, aligned in zip(
        rows["kind"],
        rows["prompt_id"],
        rows["seed"],
        rows["step"],
        rows["num_steps"],
        rows["scorer"],
        rows["judge"],
        rows["score"],
        rows["aligned"],
        strict=True,
    ):
        at = (p_index.get(pid), s_index.get(seed))
        if at[0] is None or at[1] is None:
            continue
        if kind == "score":
            num_steps = max(num_steps, int(steps or 0))
            scores.setdefault((scorer, int(step)), np.full(shape, np.nan))[at] = score
        elif kind == "judgment":
            target = judgments.setdefault(judge, {"score": np.full(shape, np.nan), "aligned": np.full(shape, np.nan)})
            target["score"][at] = np.nan if score is None else score
            target["aligned"][at] = np.nan if aligned is None else float(aligned)
    return _Run(info, prompt_ids, skills, seeds, num_steps, scores, judgments)


def _external_gold(
    runs: list[_Run],
    judgments: Iterable[Judgment],
    judge: str | None,
    unmatched: str,
    *,
    source: str = "judgments",
    allow_partial: bool = False,
) -> dict[str, tuple[str, np.ndarray]]:
    """Per run id: (judge name, (prompts, seeds) matrix) from external judgments, which must judge every candidate of
    every run (:func:`~noisyclip_metrics.evaluation.judges.check_coverage`) unless ``allow_partial``."""
    kept = [j for j in judgments if judge is None or j.judge == judge]
    names = sorted({j.judge for j in kept})
    if not kept:
        raise InputError("judgments: none to correlate with" + (f" for judge {judge!r}" if judge else ""))
    if len(names) > 1:
        raise InputError(f"judgments: several judges ({', '.join(names)}); pass judge=... (--judge) to pick one")
    merged = mean_over_raters(kept)
    by_model = {r.info.model for r in runs}
    out: dict[str, tuple[str, np.ndarray]] = {}
    matched: set[int] = set()
    judged: dict[str, list[Judgment]] = {}
    for run in runs:
        p_index = {p: i for i, p in enumerate(run.prompt_ids)}
        s_index = {str(s): i for i, s in enumerate(run.seeds)}
        gold = np.full((len(run.prompt_ids), len(run.seeds)), np.nan)
        judged[run.info.run_id] = []
        for k, j in enumerate(merged):
            if j.model in by_model and j.model != run.info.model:
                continue  # another run's judgment
            r, c = p_index.get(j.prompt_id), s_index.get(j.candidate_id)
            if r is not None and c is not None:
                gold[r, c] = j.score
                matched.add(k)
                judged[run.info.run_id].append(j)
        out[run.info.run_id] = (names[0], gold)
    missing = [j for k, j in enumerate(merged) if k not in matched]
    if missing and (unmatched == "error" or len(matched) == 0):
        examples = ", ".join(f"({j.prompt_id!r}, {j.candidate_id!r})" for j in missing[:3])
        run = runs[0]
        raise InputError(
            f"judgments: {len(missing)} of {len(merged)} (prompt id, candidate id) pairs match no stored trajectory, "
            f"e.g. {examples}; the store has prompt ids like {run.prompt_ids[0]!r} and candidate ids = seeds "
            f"{', '.join(map(str, run.seeds[:6]))}"
            + ("" if len(matched) == 0 else " (unmatched='ignore' to skip them)")
        )
    for run in runs:  # judgments that cover only some candidates would drop the others from every statistic
        check_coverage(
            judged[run.info.run_id],
            [(p, str(seed)) for p in run.prompt_ids for seed in run.seeds],
            source=f"{source} (run {run.info.run_id}, {run.info.model})",
            allow_partial=allow_partial,
        )
    return out


def _stats(
    gold: np.ndarray, pred: np.ndarray, ci: bool, n_resamples: int, confidence_level: float, seed: int
) -> dict[str, Any]:
    nan = float("nan")
    out: dict[str, Any] = dict.fromkeys((*STAT_KEYS, "epsilon"), nan)
    try:
        for name, fn in (
            ("pearson", pearson),
            ("spearman", spearman),
            ("kendall_tau_b", kendall_tau_b),
            ("kendall_tau_c", kendall_tau_c),
        ):
            out[name] = fn(gold, pred)
        out["pairwise_accuracy"], out["epsilon"] = pairwise_accuracy(gold, pred)
    except InputError:  # no group with two usable candidates
        pass
    if ci:
        for name in STAT_KEYS:
            out[f"{name}_low"] = out[f"{name}_high"] = nan
        try:
            est = agreement(gold, pred, n_resamples=n_resamples, confidence_level=confidence_level, seed=seed)
            for name in STAT_KEYS:
                out[f"{name}_low"], out[f"{name}_high"] = getattr(est, name).low, getattr(est, name).high
        except InputError:  # fewer than two resampling units
            pass
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in out.items()}


def _steps_for(run: _Run, scorer: str, steps: Sequence[int] | None, fractions: Sequence[float] | None) -> list[int]:
    available = sorted(k for s, k in run.scores if s == scorer)
    T = run.num_steps
    if fractions is not None:
        bad = [f for f in fractions if not (isinstance(f, (int, float)) and 0.0 <= f <= 1.0)]
        if bad:
            raise InputError(f"fractions: expected values in [0, 1], got {bad}")
        wanted = [math.floor(f * T + 0.5) for f in fractions]
    elif steps is not None:
        bad = [k for k in steps if not 0 <= int(k) <= T]
        if bad:
            raise InputError(f"steps: {bad} outside 0..{T} of run {run.info.run_id} ({run.info.model})")
        wanted = [int(k) for k in steps]
    else:
        return available
    return [k for k in dict.fromkeys(wanted) if k in available]


def _skill_subsets(run: _Run, per_skill: bool) -> list[tuple[str, np.ndarray]]:
    subsets = [("overall", np.ones(len(run.prompt_ids), dtype=bool))]
    if per_skill:
        for skill in SKILLS:
            mask = np.array([skill in s for s in run.skills], dtype=bool)
            if mask.any():
                subsets.append((skill, mask))
    return subsets


def correlate(
    store: ResultsStore | str | Path,
    scorer: str | Sequence[str] | None = None,
    steps: Sequence[int] | None = None,
    judgments: str | Path | Iterable[Judgment] | None = None,
    group: str = "prompt",
    per_skill: bool = True,
    ci: bool = False,
    *,
    fractions: Sequence[float] | None = None,
    judge: str | None = None,
    gold: str = "score",
    model: str | None = None,
    unmatched: str = "error",
    allow_partial: bool = False,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Agreement of per-step scores with final-image judgments, per run, scorer, step and skill.

    Args:
        store: a results store (object or folder).
        scorer: scorer name(s) (default: every scorer of each run).
        steps: step indices k (default: every step a scorer has rows for).
        judgments: a judgments file (CSV/TSV/JSONL) or judgments (candidate ids = seeds as strings); default the
            judgment rows stored with each run.
        group: ``"prompt"`` (within-prompt, candidates = seeds) or ``"none"`` (pooled).
        per_skill: add one row per skill tag of the prompts.
        ci: add bootstrap confidence intervals (``<stat>_low`` / ``<stat>_high``; resampling prompts when grouped).
        fractions: instead of ``steps``, fractions k/T in [0, 1] (rounded to the nearest step of each run).
        judge: the judge to use when the stored rows or the file hold several.
        gold: ``"score"`` (the judge's score) or ``"aligned"`` (its binary verdict, when it has one).
        model: only runs of this model name (or run id).
        unmatched: ``"error"`` (default) or ``"ignore"``: judgments that match no stored (prompt, seed).
        allow_partial: with ``judgments``, correlate even when they leave some stored candidates of a run unjudged
            (a :class:`~noisyclip_metrics.evaluation.judges.PartialJudgmentsWarning` says how many); by default that
            is a ``DataFileError``, since those candidates would drop out of every statistic without a word.
        n_resamples: bootstrap resamples with ``ci``.
        confidence_level: of the intervals.
        seed: seed of the bootstrap.

    Returns:
        One dict per (run, scorer, step, skill) with the keys of :data:`ROW_KEYS` (statistics NaN where undefined).

    Raises:
        InputError: unknown scorer / judge / grouping, steps out of range, judgments that match no trajectory.
        DataFileError: ``judgments`` that leave candidates of a run unjudged, without ``allow_partial``.
        SchemaError: a folder that is not a results store.
    """
    if group not in GROUPINGS:
        raise InputError(f"group: expected one of {', '.join(GROUPINGS.names())}, got {group!r}")
    if gold not in _GOLD_COLUMNS:
        raise InputError(f"gold: expected 'score' or 'aligned', got {gold!r}")
    if unmatched not in ("error", "ignore"):
        raise InputError(f"unmatched: expected 'error' or 'ignore', got {unmatched!r}")
    if steps is not None and fractions is not None:
        raise InputError("steps and fractions: pass one of them, not both")
    if not isinstance(store, ResultsStore):
        store = ResultsStore.open(store)
    infos = [r for r in store.runs() if model is None or model in (r.model, r.run_id)]
    if not infos:
        known = [r.model for r in store.runs()]
        raise InputError(
            f"model: no run of {model!r} in {store.root}{did_you_mean(str(model), known)} "
            f"Runs: {', '.join(known) or 'none'}"
        )
    empty = [info for info in infos if not store.has_rows(info.run_id)]
    if len(empty) == len(infos):
        of = f" of {model!r}" if model else ""
        raise InputError(f"{store.root}: no run{of} has rows yet; run `noisyclip evaluate` first")
    for info in empty:  # just started, or stopped before its first chunk: it never blocks the rest of the store
        note(f"{store.root}: run {info.run_id} ({info.model} on {info.benchmark}) has no rows yet; skipped")
    runs = [_load_run(store, info) for info in infos if info not in empty]
    external = None
    if judgments is not None:
        items = read_judgments(judgments) if isinstance(judgments, (str, Path)) else list(judgments)
        if gold != "score":
            raise InputError("gold: a judgments file holds scores only; use gold='score'")
        source = str(judgments) if isinstance(judgments, (str, Path)) else "judgments"
        external = _external_gold(runs, items, judge, unmatched, source=source, allow_partial=allow_partial)
    wanted = [scorer] if isinstance(scorer, str) else (list(scorer) if scorer is not None else None)
    out: list[dict[str, Any]] = []
    for run in runs:
        judge_name, gold_matrix = external[run.info.run_id] if external else _stored_gold(run, judge, gold)
        scorers = list(dict.fromkeys(s for s, _ in run.scores))
        for name in wanted or scorers:
            if name not in scorers:
                raise InputError(
                    f"scorer: run {run.info.run_id} ({run.info.model}) has no scores of {name!r}"
                    f"{did_you_mean(name, scorers)} Scorers: {', '.join(scorers)}"
                )
            for k in _steps_for(run, name, steps, fractions):
                pred = run.scores[(name, k)]
                for skill, mask in _skill_subsets(run, per_skill):
                    g, p = gold_matrix[mask], pred[mask]
                    usable = ~(np.isnan(g) | np.isnan(p))
                    row: dict[str, Any] = {
                        "run_id": run.info.run_id,
                        "model": run.info.model,
                        "benchmark": run.info.benchmark,
                        "scorer": name,
                        "judge": judge_name,
                        "gold": gold,
                        "group": group,
                        "step": k,
                        "num_steps": run.num_steps,
                        "fraction": k / run.num_steps if run.num_steps else float("nan"),
                        "skill": skill,
                        "n_prompts": int(usable.any(axis=1).sum()),
                        "n_items": int(usable.sum()),
                    }
                    transform = GROUPINGS.get(group)
                    row.update(_stats(transform(g), transform(p), ci, n_resamples, confidence_level, seed))
                    out.append(row)
    return out


def _stored_gold(run: _Run, judge: str | None, gold: str) -> tuple[str, np.ndarray]:
    names = list(run.judgments)
    if not names:
        raise InputError(f"run {run.info.run_id} ({run.info.model}) has no stored judgments; pass judgments=...")
    if judge is None:
        if len(names) > 1:
            raise InputError(
                f"run {run.info.run_id} has judgments of several judges ({', '.join(names)}); pass judge=... (--judge)"
            )
        judge = names[0]
    if judge not in run.judgments:
        raise InputError(
            f"judge: run {run.info.run_id} ({run.info.model}) has no judgments of {judge!r}"
            f"{did_you_mean(judge, names)} Judges: {', '.join(names)}"
        )
    matrix = run.judgments[judge][_GOLD_COLUMNS[gold]]
    if np.isnan(matrix).all():
        raise InputError(f"gold: judge {judge!r} of run {run.info.run_id} records no {gold!r} values")
    return (judge if gold == "score" else f"{judge} (aligned)"), matrix


def _fmt(row: dict[str, Any], key: str, ci: bool) -> str:
    value = row.get(key, float("nan"))
    text = "    nan" if value is None or math.isnan(value) else f"{value:7.3f}"
    if ci and f"{key}_low" in row:
        lo, hi = row[f"{key}_low"], row[f"{key}_high"]
        text += " [  nan,   nan]" if math.isnan(lo) or math.isnan(hi) else f" [{lo:5.2f}, {hi:5.2f}]"
    return text


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Plain-text tables of :func:`correlate` rows: one block per run and step, one line per scorer and skill."""
    if not rows:
        return "no rows (no scores at the requested steps)\n"
    run_order = {run: k for k, run in enumerate(dict.fromkeys(r["run_id"] for r in rows))}
    rows = sorted(rows, key=lambda r: (run_order[r["run_id"]], r["step"]))  # stable: scorer, skill order kept
    ci = any("pearson_low" in r for r in rows)
    names = ("pearson", "spearman", "tau_b", "tau_c", "pair_acc")
    width = 8 + (15 if ci else 0)
    scorer_w = max(6, *(len(r["scorer"]) for r in rows))
    skill_w = max(7, *(len(r["skill"]) for r in rows))
    header = (
        f"  {'scorer':<{scorer_w}}  {'skill':<{skill_w}}  {'prompts':>7}  {'items':>6}  "
        + "  ".join(f"{n:>{width}}" for n in names)
        + "  epsilon"
    )
    lines: list[str] = []
    last_run, last_step = None, None
    for r in rows:
        if r["run_id"] != last_run:
            lines.append(
                f"{'' if last_run is None else chr(10)}run {r['run_id']}: model {r['model']}, benchmark "
                f"{r['benchmark']}, judge {r['judge']}, grouped by {r['group']}"
            )
            last_run, last_step = r["run_id"], None
        if r["step"] != last_step:
            lines.append(f"step {r['step']}/{r['num_steps']} (fraction {r['fraction']:.2f})")
            lines.append(header)
            last_step = r["step"]
        stats = "  ".join(_fmt(r, k, ci).rjust(width) for k in STAT_KEYS)
        eps = "    nan" if math.isnan(r["epsilon"]) else f"{r['epsilon']:7.4f}"
        lines.append(
            f"  {r['scorer']:<{scorer_w}}  {r['skill']:<{skill_w}}  {r['n_prompts']:>7}  {r['n_items']:>6}  "
            f"{stats}  {eps}"
        )
    return "\n".join(lines) + "\n"
