"""Early-stopping policies: at which steps candidates are scored and which of them survive.

=============  ================================================================================================
name           rule
=============  ================================================================================================
``one-shot``   score all N candidates at step ``k``, keep the top ``m`` (``m = 1``: cost ``N·k + (T − k)``)
``halving``    at each step of an increasing ``schedule``, keep the better half (rounded up, at least ``m``)
``funnel``     at each step of an increasing ``schedule``, keep the given number of ``survivors`` (strictly
               decreasing; the last is ``m``): a halving or a steeper cut, for budget-matched search
               (:mod:`noisyclip_metrics.bon.search`)
``threshold``  at every step from ``min_step`` on, drop candidates whose score is below the bar that the
               candidate that will end best is predicted to clear (a calibration fitted on a results store,
               :mod:`noisyclip_metrics.bon.calibration`); the leader is never dropped
=============  ================================================================================================

Step index convention: k = number of completed denoising steps (0 = pure noise, T = final latent). Scores are
compared as given (higher is better); ties keep the candidate that came first (lowest seed in a fresh run). If more
than ``m`` candidates survive the last decision, the engine scores them at step T and keeps the top ``m`` (with a
cascade's final scorer, :class:`~noisyclip_metrics.bon.early.EarlyBestOfN` lets it pick one of them instead).

:func:`schedule_cost` is the cost model shared by the live engine and the offline BoN: denoiser evaluations per
candidate are counted once per step (classifier-free guidance's two halves are one call), and a scorer that reads
the x̂0 estimate (``clip-x0``, ``clip-x0-decoded``) needs the denoiser output at its step, so its decision at step
``k < T`` happens after the step-(k+1) denoiser call of every candidate alive (the survivors reuse it).

Examples:
    >>> p = build_policy("one-shot", k=4, m=1)
    >>> p.decision_steps(10), p.keep(4, [0.1, 0.3, 0.2], 10)
    ((4,), [1])
    >>> schedule_cost(6, 10, [(4, 1)])  # N·k + (T − k) denoiser calls, 6 scorings
    (30, 6)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.registry import Registry

__all__ = [
    "POLICIES",
    "FunnelPolicy",
    "HalvingPolicy",
    "OneShotPolicy",
    "Policy",
    "ThresholdPolicy",
    "build_policy",
    "halving_counts",
    "rank",
    "schedule_cost",
]


def rank(scores: Sequence[float] | torch.Tensor) -> list[int]:
    """Positions sorted best first (higher score first; ties: lower position first).

    Raises:
        InputError: for NaN scores.
    """
    values = [float(s) for s in (scores.tolist() if isinstance(scores, torch.Tensor) else scores)]
    if any(math.isnan(v) for v in values):
        raise InputError(f"scores: expected numbers, got NaN in {values}")
    return sorted(range(len(values)), key=lambda i: (-values[i], i))


def _check_m(m: int) -> int:
    if not isinstance(m, int) or isinstance(m, bool) or m < 1:
        raise InputError(f"m: expected an integer >= 1 (candidates kept), got {m!r}")
    return m


def _check_step(k: int, num_steps: int, name: str = "k") -> None:
    if not 0 <= k <= num_steps:
        raise InputError(f"{name}: expected a step in [0, T] = [0, {num_steps}], got {k}")


@runtime_checkable
class Policy(Protocol):
    """Decides at which steps to score and which candidates survive."""

    name: str
    m: int

    def validate(self, n: int, num_steps: int) -> None:
        """Raise :class:`InputError` if the policy cannot run with ``n`` candidates and ``num_steps`` steps."""
        ...

    def decision_steps(self, num_steps: int) -> tuple[int, ...]:
        """Increasing steps k at which the alive candidates are scored."""
        ...

    def keep(self, step: int, scores: Sequence[float] | torch.Tensor, num_steps: int) -> list[int]:
        """Positions (in ``scores``) of the survivors, best first."""
        ...


def _check_n(n: int, m: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InputError(f"n: expected an integer >= 1 (candidates), got {n!r}")
    if m > n:
        raise InputError(f"m: expected at most n = {n} candidates kept, got {m}")


#: A policy field's entry in ``noisyclip bon run``: ``help``; ``fallback`` (the value from T when the flag is not
#: given); ``missing`` (what to ask for when a required flag is not given); ``path`` (the flag names a file).
_M = "candidates kept and finished"


@dataclass(frozen=True)
class OneShotPolicy:
    """Score every candidate once at step ``k`` and keep the top ``m``."""

    k: int = field(metadata={"help": "decision step k (default: about T/2)", "fallback": lambda t: max(1, t // 2)})
    m: int = field(default=1, metadata={"help": _M})
    name: str = "one-shot"

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 0:
            raise InputError(f"k: expected a step >= 0, got {self.k!r}")
        _check_m(self.m)

    def validate(self, n: int, num_steps: int) -> None:
        _check_n(n, self.m)
        _check_step(self.k, num_steps)

    def decision_steps(self, num_steps: int) -> tuple[int, ...]:
        return (self.k,)

    def keep(self, step: int, scores: Sequence[float] | torch.Tensor, num_steps: int) -> list[int]:
        return rank(scores)[: self.m]


def _check_schedule(schedule: Sequence[int]) -> tuple[int, ...]:
    steps = tuple(int(k) for k in schedule)
    if not steps:
        raise InputError("schedule: expected at least one step")
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise InputError(f"schedule: expected strictly increasing steps, got {list(steps)}")
    if steps[0] < 0:
        raise InputError(f"schedule: expected steps >= 0, got {list(steps)}")
    return steps


def halving_counts(n: int, m: int = 1) -> list[int]:
    """Survivors after each halving of ``n`` candidates down to ``m`` (``[3, 2, 1]`` for ``n = 6``)."""
    counts, alive = [], n
    while alive > m:
        alive = max(m, math.ceil(alive / 2))
        counts.append(alive)
    return counts


@dataclass(frozen=True)
class HalvingPolicy:
    """Successive halving: at each step of ``schedule`` keep ``max(m, ceil(alive / 2))`` candidates."""

    schedule: tuple[int, ...] = field(
        metadata={"help": "increasing decision steps", "missing": "increasing decision steps, e.g. --schedule 4 8 12"}
    )
    m: int = field(default=1, metadata={"help": _M})
    name: str = "halving"

    def __post_init__(self) -> None:
        object.__setattr__(self, "schedule", _check_schedule(self.schedule))
        _check_m(self.m)

    def validate(self, n: int, num_steps: int) -> None:
        _check_n(n, self.m)
        for k in self.schedule:
            _check_step(k, num_steps, "schedule")

    def decision_steps(self, num_steps: int) -> tuple[int, ...]:
        return self.schedule

    def keep(self, step: int, scores: Sequence[float] | torch.Tensor, num_steps: int) -> list[int]:
        order = rank(scores)
        return order[: max(self.m, math.ceil(len(order) / 2))]


@dataclass(frozen=True)
class FunnelPolicy:
    """At step ``schedule[i]`` keep the best ``survivors[i]`` candidates; ``m`` is the last count.

    Examples:
        >>> p = FunnelPolicy(schedule=(2, 5), survivors=(4, 1))
        >>> p.m, p.keep(2, [0.1, 0.5, 0.3, 0.2, 0.4, 0.0], 10), p.keep(5, [0.2, 0.9, 0.1, 0.3], 10)
        (1, [1, 4, 2, 3], [1])
    """

    schedule: tuple[int, ...] = field(
        metadata={"help": "increasing decision steps", "missing": "increasing decision steps, e.g. --schedule 4 8 12"}
    )
    survivors: tuple[int, ...] = field(
        metadata={
            "help": "candidates kept at each step of --schedule (strictly decreasing)",
            "missing": "the candidates kept at each decision, e.g. --survivors 12 3 1",
        }
    )
    name: str = "funnel"

    def __post_init__(self) -> None:
        steps, counts = _check_schedule(self.schedule), tuple(int(c) for c in self.survivors)
        object.__setattr__(self, "schedule", steps)
        object.__setattr__(self, "survivors", counts)
        if len(counts) != len(steps):
            raise InputError(f"survivors: expected one count per step of schedule {list(steps)}, got {list(counts)}")
        if counts[-1] < 1 or any(b >= a for a, b in itertools.pairwise(counts)):
            raise InputError(f"survivors: expected strictly decreasing counts >= 1, got {list(counts)}")

    @property
    def m(self) -> int:
        """Candidates kept and finished: the last count."""
        return self.survivors[-1]

    def validate(self, n: int, num_steps: int) -> None:
        _check_n(n, self.m)
        if self.survivors[0] >= n:
            raise InputError(f"survivors: the first count must be below n = {n} candidates, got {self.survivors[0]}")
        for k in self.schedule:
            _check_step(k, num_steps, "schedule")

    def decision_steps(self, num_steps: int) -> tuple[int, ...]:
        return self.schedule

    def keep(self, step: int, scores: Sequence[float] | torch.Tensor, num_steps: int) -> list[int]:
        if step not in self.schedule:
            raise InputError(f"step: expected one of the schedule's steps {list(self.schedule)}, got {step}")
        return rank(scores)[: self.survivors[self.schedule.index(step)]]


@dataclass(frozen=True)
class ThresholdPolicy:
    """Drop candidates below the calibrated bar of the eventual best candidate (see the module docstring).

    Args:
        calibration: a fitted :class:`~noisyclip_metrics.bon.calibration.ThresholdCalibration` (or its JSON path).
        m: candidates kept at least (the top ``m`` are never dropped).
        min_step: first step at which candidates may be dropped.
        every: score every ``every`` steps.
    """

    calibration: Any = field(
        metadata={
            "help": "calibration JSON (bon calibrate / fit)",
            "missing": "a calibration file (noisyclip bon calibrate)",
            "path": True,
        }
    )
    m: int = field(default=1, metadata={"help": _M})
    min_step: int = field(default=1, metadata={"help": "first step that may drop candidates"})
    every: int = field(default=1, metadata={"help": "steps between decisions"})
    name: str = "threshold"

    def __post_init__(self) -> None:
        from noisyclip_metrics.bon.calibration import ThresholdCalibration

        if not isinstance(self.calibration, ThresholdCalibration):
            object.__setattr__(self, "calibration", ThresholdCalibration.load(self.calibration))
        _check_m(self.m)
        if self.every < 1:
            raise InputError(f"every: expected >= 1, got {self.every}")
        if self.min_step < 0:
            raise InputError(f"min_step: expected >= 0, got {self.min_step}")

    def validate(self, n: int, num_steps: int) -> None:
        _check_n(n, self.m)
        _check_step(self.min_step, num_steps, "min_step")

    def decision_steps(self, num_steps: int) -> tuple[int, ...]:
        return tuple(range(self.min_step, num_steps, self.every))

    def keep(self, step: int, scores: Sequence[float] | torch.Tensor, num_steps: int) -> list[int]:
        values = torch.as_tensor(scores, dtype=torch.float64).flatten()
        order = rank(values)
        bar = self.calibration.bar(values, step, num_steps)
        kept = [i for i in order if float(values[i]) >= bar]
        return order[: max(self.m, len(kept))]


PolicyFactory = Callable[..., Policy]
POLICIES: Registry[PolicyFactory] = Registry("BoN policy")
POLICIES.register("one-shot", OneShotPolicy)
POLICIES.register("halving", HalvingPolicy)
POLICIES.register("funnel", FunnelPolicy)
POLICIES.register("threshold", ThresholdPolicy)


def build_policy(name: str, **params: Any) -> Policy:
    """A registered policy by name: ``one-shot`` (k, m), ``halving`` (schedule, m), ``threshold`` (calibration...).

    Raises:
        UnknownNameError: for an unknown policy name.
        InputError: for missing or bad parameters.
    """
    factory = POLICIES.get(name)
    try:
        return factory(**params)
    except TypeError as err:
        raise InputError(f"policy {name!r}: bad parameters {sorted(params)} ({err})") from None


def schedule_cost(
    n: int,
    num_steps: int,
    decisions: Sequence[tuple[int, int]],
    needs_model_output: bool = False,
) -> tuple[int, int]:
    """(denoiser evaluations, scorer evaluations) of a run of ``n`` candidates.

    Args:
        n: candidates at the start.
        num_steps: T.
        decisions: ``(step, survivors)`` in step order; each scores every candidate alive.
        needs_model_output: the scorer reads x̂0, so a decision at ``k < T`` is taken after the step-(k+1) call.
    """
    denoiser = scorer = 0
    alive, done = n, 0
    for step, survivors in decisions:
        at = min(step + 1, num_steps) if needs_model_output else step
        denoiser += alive * max(0, at - done)
        done = max(done, at)
        scorer += alive
        alive = survivors
    return denoiser + alive * (num_steps - done), scorer
