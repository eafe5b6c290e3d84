"""The leakage guard: do a fine-tuned scorer's curves hold on seeds and prompts that nothing was trained on?

A scorer fine-tuned on trajectories of the evaluation's seeds (or prompts) can recognise the noise instead of
reading the latent; its published curve then overstates it. The guard compares each fine-tuned scorer's pairwise
accuracy on the published runs (*main*) with the same statistic on **replicates**:

- ``fresh-seeds``: the same model and prompts (or a subset) with other seeds. Paired: main and replicate are
  resampled with the same prompt weights.
- ``fresh-prompts``: the same model on prompts outside the benchmark and the training data. Unpaired: each side is
  resampled on its own.

At every checked fraction (nearest step) the difference main - replicate gets a bootstrap standard error
(``n_resamples`` resamples of prompts) and an interval ``difference ± z · se`` whose level is corrected for the number
of checks (Bonferroni: ``z = Φ⁻¹(1 - family_alpha / (2 · checks))``), so the guard's false-alarm rate over the whole
leaderboard stays near ``family_alpha`` however many models, scorers and fractions it checks. A check **fires** when
its interval excludes 0 (in either direction: the published figure does not reproduce). Frozen scorers can be listed
as ``controls``: their checks are reported, never gating (a frozen CLIP has seen no trajectory, so a difference there
measures the replicate, not leakage).

Examples:
    >>> import numpy as np
    >>> from noisyclip_metrics.evaluation.curves import ScoreArrays
    >>> rng = np.random.default_rng(0)
    >>> def arrays(seeds, noise):  # a scorer that knows the judge's verdict up to some noise
    ...     judge = rng.random((60, 4))
    ...     scores = judge + noise * rng.random((3, 60, 4))
    ...     return ScoreArrays(tuple(f"p{i}" for i in range(60)), seeds, 2, judge, judge > 0.5, {"tuned": scores})
    >>> leaky = Replicate("m", "fresh-seeds", arrays((0, 1, 2, 3), 0.1), arrays((7, 8, 9, 10), 10.0))
    >>> report = run_guard([leaky], ["tuned"], config=GuardConfig(fractions=(0.5,), n_resamples=200))
    >>> report.failed[0].scorer, report.passed
    ('tuned', False)
    >>> honest = Replicate("m", "fresh-seeds", arrays((0, 1, 2, 3), 1.0), arrays((7, 8, 9, 10), 1.0))
    >>> run_guard([honest], ["tuned"], config=GuardConfig(fractions=(0.5,), n_resamples=200)).passed
    True
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import norm

from noisyclip_metrics.errors import InputError, LeakageError
from noisyclip_metrics.evaluation.curves import METRICS, ScoreArrays
from noisyclip_metrics.leaderboard.render import fmt

__all__ = [
    "REPLICATE_KINDS",
    "GuardCheck",
    "GuardConfig",
    "GuardReport",
    "Replicate",
    "replicates_from_results",
    "run_guard",
    "write_guard",
]

#: Replicate kinds: how the replicate differs from the published runs (and whether it can be paired by prompt).
REPLICATE_KINDS = {"fresh-seeds": True, "fresh-prompts": False}


@dataclass(frozen=True)
class GuardConfig:
    """Settings of :func:`run_guard`.

    Args:
        fractions: fractions of the trajectory checked (nearest step of each).
        family_alpha: false-alarm rate of the whole guard (Bonferroni over every gating check).
        n_resamples: bootstrap resamples of prompts for each standard error.
        seed: bootstrap seed.
    """

    fractions: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 1.0)
    family_alpha: float = 0.05
    n_resamples: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "fractions", tuple(float(f) for f in self.fractions))
        if not self.fractions or any(not 0 <= f <= 1 for f in self.fractions):
            raise InputError(f"fractions: expected fractions in [0, 1], got {list(self.fractions)}")
        if not 0 < self.family_alpha < 1:
            raise InputError(f"family_alpha: expected a value in (0, 1), got {self.family_alpha}")
        if not isinstance(self.n_resamples, int) or self.n_resamples < 100:
            raise InputError(f"n_resamples: expected an int >= 100, got {self.n_resamples!r}")


@dataclass(frozen=True, eq=False)
class Replicate:
    """One model's published data and one replicate of it."""

    model: str
    kind: str
    main: ScoreArrays
    replicate: ScoreArrays
    paired: bool = True

    def __post_init__(self) -> None:
        if self.kind not in REPLICATE_KINDS:
            raise InputError(f"kind: expected one of {sorted(REPLICATE_KINDS)}, got {self.kind!r}")
        if self.main.num_steps != self.replicate.num_steps:
            raise InputError(
                f"{self.model}: the {self.kind} replicate has {self.replicate.num_steps} steps, the "
                f"published runs {self.main.num_steps}"
            )
        overlap = set(self.main.seeds) & set(self.replicate.seeds)
        if self.kind == "fresh-seeds" and overlap:
            raise InputError(
                f"{self.model}: the fresh-seeds replicate shares seeds {sorted(overlap)} with the published runs"
            )
        if self.kind == "fresh-prompts" and set(self.main.prompt_ids) & set(self.replicate.prompt_ids):
            raise InputError(f"{self.model}: the fresh-prompts replicate shares prompt ids with the published runs")


@dataclass(frozen=True)
class GuardCheck:
    """One comparison: a scorer's pairwise accuracy at one step, published runs against a replicate."""

    model: str
    replicate: str
    scorer: str
    gating: bool
    step: int
    fraction: float
    main: float
    replicate_value: float
    difference: float
    low: float
    high: float
    fired: bool


@dataclass(frozen=True)
class GuardReport:
    """Every check of a guard run and its settings."""

    config: GuardConfig
    z: float
    checks: tuple[GuardCheck, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> list[GuardCheck]:
        """The gating checks that fired."""
        return [c for c in self.checks if c.gating and c.fired]

    @property
    def passed(self) -> bool:
        """Whether no gating check fired."""
        return not self.failed

    def raise_on_failure(self) -> None:
        """Raise :class:`~noisyclip_metrics.errors.LeakageError` naming the checks that fired."""
        if self.failed:
            worst = ", ".join(
                f"{c.model}/{c.scorer} @ {c.fraction:g} ({c.replicate}: {c.main:.3f} vs {c.replicate_value:.3f})"
                for c in self.failed[:4]
            )
            raise LeakageError(f"leakage guard: {len(self.failed)} check(s) differ beyond their interval: {worst}")

    def to_json(self) -> dict[str, Any]:
        """JSON form (``guard.json``; NaN as ``None``)."""

        def clean(v: Any) -> Any:
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return {
            "settings": {**asdict(self.config), "fractions": list(self.config.fractions), "z": self.z},
            "passed": self.passed,
            "checks": [{k: clean(v) for k, v in asdict(c).items()} for c in self.checks],
        }


def _per_prompt_pairs(data: ScoreArrays, scorer: str, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-prompt (concordant pairs, usable pairs) of ``scorer`` at ``step`` (each of shape ``(P,)``)."""
    num, den = METRICS.get("pairwise_accuracy")(data.judge, data.scores[scorer][step : step + 1])
    return num[0], den[0]


def _ratio(weights: np.ndarray, num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        bottom = weights @ den
        return np.where(bottom > 0, (weights @ num) / bottom, np.nan)


def _difference(
    rep: Replicate, scorer: str, step: int, n_resamples: int, seed: int
) -> tuple[float, float, float, float]:
    """(main value, replicate value, difference, bootstrap standard error of the difference)."""
    nm, dm = _per_prompt_pairs(rep.main, scorer, step)
    nr, dr = _per_prompt_pairs(rep.replicate, scorer, step)
    rng = np.random.default_rng(seed)
    if rep.paired:
        shared = sorted(set(rep.main.prompt_ids) & set(rep.replicate.prompt_ids))
        if len(shared) < 2:
            raise InputError(
                f"{rep.model}: the {rep.kind} replicate shares {len(shared)} prompts with the published "
                "runs; a paired check needs at least 2"
            )
        im = {p: i for i, p in enumerate(rep.main.prompt_ids)}
        ir = {p: i for i, p in enumerate(rep.replicate.prompt_ids)}
        rows_m, rows_r = [im[p] for p in shared], [ir[p] for p in shared]
        nm, dm, nr, dr = nm[rows_m], dm[rows_m], nr[rows_r], dr[rows_r]
        w = rng.multinomial(len(shared), np.full(len(shared), 1 / len(shared)), size=n_resamples).astype(float)
        draws = _ratio(w, nm, dm) - _ratio(w, nr, dr)
    else:
        wm = rng.multinomial(len(nm), np.full(len(nm), 1 / len(nm)), size=n_resamples).astype(float)
        wr = rng.multinomial(len(nr), np.full(len(nr), 1 / len(nr)), size=n_resamples).astype(float)
        draws = _ratio(wm, nm, dm) - _ratio(wr, nr, dr)
    main, repl = _ratio(np.ones((1, len(nm))), nm, dm)[0], _ratio(np.ones((1, len(nr))), nr, dr)[0]
    se = float(np.nanstd(draws, ddof=1)) if np.isfinite(draws).sum() > 1 else math.nan
    return float(main), float(repl), float(main - repl), se


def run_guard(
    replicates: Sequence[Replicate],
    scorers: Sequence[str],
    controls: Sequence[str] = (),
    config: GuardConfig = GuardConfig(),
) -> GuardReport:
    """Compare every fine-tuned scorer in ``scorers`` (gating) and every scorer in ``controls`` (reported only) on
    each replicate, at every fraction of ``config``; see the module docs.

    Raises:
        InputError: a scorer missing from a model's published runs or its replicate, or no gating check at all.
    """
    plan = []
    for rep in replicates:
        for scorer, gating in [(s, True) for s in scorers] + [(s, False) for s in controls]:
            for data, side in ((rep.main, "published runs"), (rep.replicate, f"{rep.kind} replicate")):
                if scorer not in data.scores:
                    raise InputError(f"{rep.model}: scorer {scorer!r} is not in the {side}")
            steps = np.flatnonzero(~np.isnan(rep.main.scores[scorer]).all(axis=(1, 2)))
            fractions = steps / rep.main.num_steps
            for f in dict.fromkeys(int(steps[np.argmin(np.abs(fractions - f))]) for f in config.fractions):
                plan.append((rep, scorer, gating, f))
    gating = sum(1 for p in plan if p[2])
    if not gating:
        raise InputError("scorers: expected at least one fine-tuned scorer and one replicate to check")
    z = float(norm.ppf(1 - config.family_alpha / (2 * gating)))
    checks = []
    for i, (rep, scorer, is_gating, step) in enumerate(plan):
        main, repl, diff, se = _difference(rep, scorer, step, config.n_resamples, config.seed + i)
        low, high = diff - z * se, diff + z * se
        fired = bool(math.isfinite(low) and (low > 0 or high < 0))
        checks.append(
            GuardCheck(
                rep.model,
                rep.kind,
                scorer,
                is_gating,
                step,
                step / rep.main.num_steps,
                main,
                repl,
                diff,
                low,
                high,
                fired,
            )
        )
    return GuardReport(config, z, tuple(checks))


def replicates_from_results(
    main: Sequence[str | Path], replicates: dict[str, Sequence[str | Path]]
) -> tuple[list[Replicate], dict[str, dict[str, Any]]]:
    """Pair each model of the ``main`` results folders with its runs in the replicate folders (by model name).

    Args:
        main: the published results folders.
        replicates: replicate kind (:data:`REPLICATE_KINDS`) -> its results folders.

    Returns:
        The :class:`Replicate` pairs, and per kind and model the replicate's own curves (leaderboard JSON form) to
        publish beside the main ones.

    Raises:
        InputError: a replicate with no model of the main folders.
    """
    from noisyclip_metrics.evaluation.curves import compute_curves
    from noisyclip_metrics.leaderboard.build import BuildConfig, _curve_block, load_entries

    by_model = {e.model: e for e in load_entries(list(main))}
    pairs: list[Replicate] = []
    curves: dict[str, dict[str, Any]] = {}
    for kind, folders in replicates.items():
        if kind not in REPLICATE_KINDS:
            raise InputError(f"replicates: expected kinds among {sorted(REPLICATE_KINDS)}, got {kind!r}")
        entries = [e for e in load_entries(list(folders)) if e.model in by_model]
        if not entries:
            raise InputError(
                f"{kind}: no model of the published runs ({sorted(by_model)}) in {list(map(str, folders))}"
            )
        for e in entries:
            pairs.append(Replicate(e.model, kind, by_model[e.model].data, e.data, REPLICATE_KINDS[kind]))
            block = _curve_block(compute_curves(e.data, BuildConfig().curve_config()).overall, BuildConfig())
            curves.setdefault(kind, {})[e.model] = {"seeds": list(e.data.seeds), **block}
    return pairs, curves


def guard_markdown(doc: dict[str, Any]) -> str:
    """``guard.md``: the checks as a table, then each replicate's seeds and prompts (from ``guard.json``)."""
    st = doc["settings"]
    verdict = "passed" if doc["passed"] else "FAILED"
    lines = [
        "# Leakage guard: published curves against fresh replicates",
        "",
        (
            f"Verdict: **{verdict}**. Pairwise accuracy of each scorer on the published runs against a replicate on "
            "fresh seeds (paired by prompt) or fresh prompts; an interval is the difference "
            f"± {st['z']:.2f} bootstrap standard errors ({st['n_resamples']} resamples), the level corrected for the "
            f"number of gating checks (family-wise α = {st['family_alpha']:g}). Gating: fine-tuned scorers; the others "
            "are controls (reported, never gating)."
        ),
        "",
        "| Model | Scorer | Replicate | Fraction | Published | Replicate | Difference [interval] | Gating | Fired |",
        "|---|---|---|---:|---:|---:|---:|---|---|",
    ]
    for c in doc["checks"]:
        lines.append(
            f"| {c['model']} | {c['scorer']} | {c['replicate']} | {c['fraction']:g} | {fmt(c['main'])} | "
            f"{fmt(c['replicate_value'])} | {fmt(c['difference'])} [{fmt(c['low'])}, {fmt(c['high'])}] | "
            f"{'yes' if c['gating'] else 'control'} | {'**yes**' if c['fired'] else 'no'} |"
        )
    lines += ["", "| Replicate | Model | Seeds | Prompts |", "|---|---|---|---:|"]
    for kind, models in doc.get("replicates", {}).items():
        for model, block in models.items():
            lines.append(f"| {kind} | {model} | {' '.join(map(str, block['seeds']))} | {block['num_prompts']} |")
    return "\n".join(lines) + "\n"


def write_guard(report: GuardReport, curves: dict[str, dict[str, Any]], out: str | Path) -> list[Path]:
    """Write ``guard.json`` (checks, settings, the replicates' own curves) and ``guard.md`` into ``out``."""
    from noisyclip_metrics.io.files import atomic_write_text
    from noisyclip_metrics.leaderboard.build import _clean

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    doc = _clean({**report.to_json(), "replicates": curves})
    paths = [out / "guard.json", out / "guard.md"]
    atomic_write_text(paths[0], json.dumps(doc, indent=2) + "\n")
    atomic_write_text(paths[1], guard_markdown(doc))
    return paths
