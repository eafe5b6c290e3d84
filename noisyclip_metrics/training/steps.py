"""Which trajectory steps training shows the model: step-sampling strategies and weighted mixtures.

A strategy is written as a string, used verbatim in configs and on the command line:

* ``window:a-b``: uniform over step indices ``a..b`` inclusive (the paper's best SDXL window is ``window:20-29``
  of 50). With decimals (``window:0.4-0.6``) the bounds are fractions of ``T``.
* ``uniform``: uniform over ``0..T``.
* ``final``: only ``k = T`` (the clean latent: a control for preview-domain adaptation without noise).
* ``step:k``: always step ``k``.
* ``curriculum:a-b``: from clean to noisy (TTSnap's curriculum, arXiv 2511.22242): at training progress ``p`` (0 at the
  first step, 1 at the last) uniform over the window whose bounds move linearly from ``T`` (the clean latent only)
  to ``a..b``. A strategy sees the progress when its function takes a third argument.
* mixtures: ``0.7*window:6-12+0.3*uniform`` draws each sample's strategy with the given weights.

Examples:
    >>> import torch
    >>> s = parse_step_sampler("0.5*window:2-4+0.5*final")
    >>> ks = s.sample(1000, num_steps=10, generator=torch.Generator().manual_seed(0))
    >>> sorted(set(ks.tolist()))
    [2, 3, 4, 10]
    >>> c = parse_step_sampler("curriculum:2-4")
    >>> [c.ranges(10, progress=p)[0][1:] for p in (0.0, 0.5, 1.0)]
    [(10, 10), (6, 7), (2, 4)]
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.registry import Registry

__all__ = ["STEP_STRATEGIES", "StepSampler", "parse_step_sampler"]

#: Each entry turns the text after ``name:`` and T (and, when it takes a third argument, the training progress in
#: [0, 1]) into the inclusive range of steps to draw from.
STEP_STRATEGIES: Registry[Callable[..., tuple[int, int]]] = Registry("step-sampling strategy")


def _bound(text: str, num_steps: int) -> int:
    value = float(text)
    return round(value * num_steps) if "." in text else int(value)


def _window(arg: str, num_steps: int) -> tuple[int, int]:
    try:
        lo_text, hi_text = arg.split("-")
        lo, hi = _bound(lo_text, num_steps), _bound(hi_text, num_steps)
    except ValueError:
        raise InputError(f"step sampling: expected 'window:a-b', got 'window:{arg}'") from None
    return lo, hi


STEP_STRATEGIES.register("window", _window)
STEP_STRATEGIES.register("uniform", lambda arg, t: (0, t))
STEP_STRATEGIES.register("final", lambda arg, t: (t, t))
STEP_STRATEGIES.register("step", lambda arg, t: (_bound(arg, t), _bound(arg, t)))


def _curriculum(arg: str, num_steps: int, progress: float) -> tuple[int, int]:
    """``window:a-b`` reached from the clean latent: bounds ``T + p (a - T)`` and ``T + p (b - T)``, rounded."""
    lo, hi = _window(arg, num_steps)
    return round(num_steps + progress * (lo - num_steps)), round(num_steps + progress * (hi - num_steps))


STEP_STRATEGIES.register("curriculum", _curriculum)


def _takes_progress(fn: Callable[..., tuple[int, int]]) -> bool:
    try:
        return len(inspect.signature(fn).parameters) >= 3
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class StepSampler:
    """A weighted mixture of step ranges parsed from a strategy string."""

    spec: str
    terms: tuple[tuple[float, str, str], ...]  # (weight, strategy name, argument)

    @property
    def uses_progress(self) -> bool:
        """Whether a term's range depends on the training progress (a curriculum)."""
        return any(_takes_progress(STEP_STRATEGIES.get(name)) for _, name, _ in self.terms)

    def ranges(self, num_steps: int, progress: float = 1.0) -> list[tuple[float, int, int]]:
        """``(weight, lo, hi)`` per term for trajectories of ``num_steps`` steps at training ``progress`` in [0, 1]
        (validated against ``0..T``)."""
        if not 0.0 <= progress <= 1.0:
            raise InputError(f"step sampling: progress must be in [0, 1], got {progress}")
        out = []
        for weight, name, arg in self.terms:
            fn = STEP_STRATEGIES.get(name)
            lo, hi = fn(arg, num_steps, progress) if _takes_progress(fn) else fn(arg, num_steps)
            if not 0 <= lo <= hi <= num_steps:
                raise InputError(f"step sampling: {self.spec!r} gives steps {lo}..{hi}, outside 0..{num_steps}")
            out.append((weight, lo, hi))
        return out

    def sample(self, n: int, num_steps: int, generator: torch.Generator, progress: float = 1.0) -> torch.Tensor:
        """Draw ``n`` step indices (``LongTensor``) with ``generator`` at training ``progress`` (see :meth:`ranges`;
        the draws of a strategy without a curriculum do not depend on it)."""
        ranges = self.ranges(num_steps, progress)
        weights = torch.tensor([w for w, _, _ in ranges], dtype=torch.float64)
        which = torch.multinomial(weights, n, replacement=True, generator=generator)
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        lo = torch.tensor([r[1] for r in ranges])[which]
        hi = torch.tensor([r[2] for r in ranges])[which]
        return lo + (u * (hi - lo + 1).double()).floor().long().clamp(max=(hi - lo))


def parse_step_sampler(spec: str) -> StepSampler:
    """Parse a strategy string (see the module docstring).

    Raises:
        InputError: for malformed weights; UnknownNameError (with a did-you-mean) for unknown strategy names.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"step sampling: expected a strategy string such as 'window:20-29', got {spec!r}")
    terms = []
    for part in spec.replace(" ", "").split("+"):
        weight_text, _, body = part.rpartition("*")
        try:
            weight = float(weight_text) if weight_text else 1.0
        except ValueError:
            raise InputError(f"step sampling: bad weight {weight_text!r} in {spec!r}") from None
        if weight <= 0:
            raise InputError(f"step sampling: weights must be positive, got {weight} in {spec!r}")
        name, _, arg = body.partition(":")
        STEP_STRATEGIES.get(name)
        terms.append((weight, name, arg))
    return StepSampler(spec, tuple(terms))
