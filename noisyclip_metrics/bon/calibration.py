"""Calibration of the ``threshold`` policy: how far below the leader the eventual best candidate may score at step k.

Fitted on a results store (:mod:`noisyclip_metrics.evaluation.results`): for every prompt with at least ``n`` judged
seeds
(its first ``n`` seeds), let ``b`` be the candidate the judge scores best (ties: lowest seed) and, at step k, ``s``
the scorer's scores of the ``n`` candidates. The *normalised gap* of the eventual best is

    z_k = (s_b - max(s)) / std(s)        (population std over the n; z_k = 0 when std = 0)

which is <= 0. The calibration stores, for every k = 0..T, the ``quantile`` (default 0.1) of z_k over prompts. At
run time the threshold policy keeps candidates with

    score >= max(scores) + gap_k * std(scores)

so that, on the calibration data, the eventual best clears the bar at step k with probability ``1 - quantile``.
Runs with another T are mapped by the fraction k/T (nearest calibrated step). The calibration is a small JSON file
(:meth:`ThresholdCalibration.save`).

Examples:
    >>> cal = ThresholdCalibration(scorer="noisyclip", n=4, quantile=0.1, num_steps=2, gaps=(-9.0, -1.0, 0.0))
    >>> import torch
    >>> round(cal.bar(torch.tensor([0.0, 1.0, 2.0, 3.0]), 1, 2), 3)  # 3 - 1 * std
    1.882

:func:`simulate_threshold` replays the policy on recorded scores, with the decisions and account of a live run:

    >>> import numpy as np
    >>> scores = np.array([[[0.0, 0.1, 0.9], [0.0, 0.5, 0.2], [0.0, 0.4, 0.3]]])  # 1 prompt, 3 candidates, T = 2
    >>> simulate_threshold(scores, gaps=(0.0, -1.0, 0.0), min_step=1)  # step 1 keeps 0.5 and 0.4; T picks 0.3
    (array([2]), array([5.]), array([5.]))
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from noisyclip_metrics.errors import DataFileError, InputError
from noisyclip_metrics.io.files import write_json

__all__ = [
    "ThresholdCalibration",
    "gap_quantiles",
    "normalised_gaps",
    "simulate_threshold",
]

FORMAT = "noisyclip-bon-threshold"


@dataclass(frozen=True)
class ThresholdCalibration:
    """Per-step quantiles of the eventual best candidate's normalised gap to the leader (see the module docstring).

    Args:
        scorer: scorer the calibration was fitted for.
        n: candidates per group in the fit.
        quantile: the quantile stored (probability that the eventual best falls below the bar at a step).
        num_steps: T of the fitted runs.
        gaps: ``T + 1`` normalised gaps (<= 0), one per step k.
        judge: judge that defined the eventual best.
        runs: run ids fitted on.
        groups: prompts (groups of n candidates) fitted on.
    """

    scorer: str
    n: int
    quantile: float
    num_steps: int
    gaps: tuple[float, ...]
    judge: str = ""
    runs: tuple[str, ...] = field(default_factory=tuple)
    groups: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "gaps", tuple(float(g) for g in self.gaps))
        object.__setattr__(self, "runs", tuple(self.runs))
        if len(self.gaps) != self.num_steps + 1:
            raise InputError(f"gaps: expected T + 1 = {self.num_steps + 1} values, got {len(self.gaps)}")
        if not 0.0 < self.quantile < 1.0:
            raise InputError(f"quantile: expected a value in (0, 1), got {self.quantile}")

    def gap(self, step: int, num_steps: int) -> float:
        """Calibrated gap at step ``step`` of a ``num_steps``-step run (nearest calibrated fraction)."""
        if num_steps < 1 or not 0 <= step <= num_steps:
            raise InputError(f"step: expected a step in [0, {num_steps}], got {step}")
        return self.gaps[round(step / num_steps * self.num_steps)]

    def bar(self, scores: torch.Tensor, step: int, num_steps: int) -> float:
        """The score a candidate needs at ``step`` to survive: ``max + gap * std`` of ``scores``."""
        values = torch.as_tensor(scores, dtype=torch.float64).flatten()
        std = float(values.std(unbiased=False)) if values.numel() > 1 else 0.0
        return float(values.max()) + self.gap(step, num_steps) * std

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable dict (with a format tag)."""
        return {"format": FORMAT, **asdict(self), "gaps": list(self.gaps), "runs": list(self.runs)}

    def save(self, path: str | Path) -> Path:
        """Write the calibration as JSON."""
        return write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path | dict[str, Any]) -> ThresholdCalibration:
        """Read a calibration written by :meth:`save` (or its dict).

        Raises:
            DataFileError: for a missing or malformed file.
        """
        if isinstance(path, dict):
            data = dict(path)
        else:
            try:
                data = json.loads(Path(path).read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise DataFileError(f"{path}: calibration file not found") from None
            except (json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError) as err:
                raise DataFileError(f"{path}: not a JSON calibration ({err})") from None
        if not isinstance(data, dict) or data.pop("format", None) != FORMAT:
            raise DataFileError(f"{path}: not a threshold calibration (expected format {FORMAT!r})")
        try:
            return cls(**data)
        except TypeError as err:
            raise DataFileError(f"{path}: malformed calibration ({err})") from None


def normalised_gaps(scores: np.ndarray, judge: np.ndarray) -> np.ndarray:
    """``z_k`` of the module docstring for every group and step: ``scores`` (G, n, T+1), ``judge`` (G, n) -> (G, T+1).

    The eventual best is the judge's best candidate (ties: the first).
    """
    best = np.argmax(judge, axis=1)
    sb = np.take_along_axis(scores, best[:, None, None], axis=1)[:, 0]  # (G, T+1)
    std = scores.std(axis=1)
    return np.where(std > 0, (sb - scores.max(axis=1)) / np.where(std > 0, std, 1.0), 0.0)


def gap_quantiles(z: np.ndarray, quantile: float) -> tuple[float, ...]:
    """Per-step ``quantile`` of normalised gaps ``z`` (G, T+1), capped at 0: a calibration's ``gaps``."""
    return tuple(float(min(0.0, v)) for v in np.quantile(z, quantile, axis=0))


def simulate_threshold(
    scores: np.ndarray,
    gaps: Sequence[float],
    min_step: int = 1,
    every: int = 1,
    m: int = 1,
    needs_model_output: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Replay the threshold policy on recorded scores, as :class:`~.early.EarlyBestOfN` runs it live.

    At each decision step ``k`` in ``range(min_step, T, every)`` with more than ``m`` candidates alive, every alive
    candidate is scored and those below ``max + gaps[k] · std`` of the alive scores are dropped (the top ``m`` are
    always kept); at T the top ``m`` of those left are kept.

    Args:
        scores: ``(G, N, T + 1)`` recorded scores of G groups of N candidates.
        gaps: ``T + 1`` calibrated gaps (:attr:`~.calibration.ThresholdCalibration.gaps` of a calibration with the
            same T).
        min_step, every, m: the policy's settings.
        needs_model_output: the scorer reads x̂0: a decision at ``k < T`` uses the step-(k+1) denoiser call of every
            candidate alive before it (which the survivors reuse).

    Returns:
        ``(pick, denoiser_evals, scorer_evals)`` per group: the first candidate kept at T (the best with ``m = 1``),
        and the run's account.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 3 or s.shape[2] < 2 or np.isnan(s).any():
        raise InputError(f"scores: expected a (G, N, T + 1) array of numbers with T >= 1, got shape {s.shape}")
    g, n, steps = s.shape[0], s.shape[1], s.shape[2] - 1
    if len(gaps) != steps + 1:
        raise InputError(f"gaps: expected T + 1 = {steps + 1} values, got {len(gaps)}")
    if min_step < 0 or every < 1 or m < 1:
        raise InputError(f"min_step, every, m: expected >= 0, >= 1 and >= 1, got {min_step}, {every}, {m}")
    decisions = set(range(min_step, steps, every))
    alive = np.ones((g, n), dtype=bool)
    denoiser, scorings = np.zeros(g), np.zeros(g)
    for k in range(steps + 1):
        count = alive.sum(axis=1)
        deciding = count > m if (k in decisions or k == steps) else np.zeros(g, dtype=bool)
        if deciding.any():
            masked = np.where(alive, s[:, :, k], -np.inf)
            order = np.argsort(-masked, axis=1, kind="stable")  # ties: lower position first
            keep = np.zeros_like(alive)
            np.put_along_axis(keep, order[:, :m], True, axis=1)
            if k < steps:
                values = np.where(alive, s[:, :, k], np.nan)
                bar = np.nanmax(values, axis=1) + np.asarray(gaps, dtype=np.float64)[k] * np.nanstd(values, axis=1)
                keep |= alive & (masked >= bar[:, None])
            scorings += np.where(deciding, count, 0)
            if needs_model_output and k < steps:
                denoiser += np.where(deciding, count, 0)  # the step-(k+1) call of the candidates alive before
            alive = np.where(deciding[:, None], keep, alive)
            count_after = alive.sum(axis=1)
            if k < steps:
                denoiser += np.where(deciding & needs_model_output, 0, count_after)
        elif k < steps:
            denoiser += count
    return np.argmax(alive, axis=1), denoiser, scorings
