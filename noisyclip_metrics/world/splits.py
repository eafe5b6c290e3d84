"""Train / benchmark splits of ShapesWorld prompts with held-out compositions.

A split (:func:`make_split`) is fully determined by a seed and a :class:`SplitConfig`:

* **Held-out compositions** (:class:`HeldOut`): ``n_heldout_pairs`` colour-shape pairs (3 of the 15 by default,
  with distinct colours and distinct shapes, so every colour and every shape still occurs in training) and
  ``n_heldout_relations`` shape-relation-shape triples (3 by default, drawn among ``(s1, "left of" | "above", s2)``
  with ``s1 != s2``; each also holds out its converse, e.g. ("circle", "above", "triangle") holds out
  ("triangle", "below", "circle")). A prompt *touches* a held-out composition when one of its objects, or its
  negated kind when that names both colour and shape, is a held-out pair, or its relation is a held-out triple.
  No training prompt touches one.
* **Benchmark**: a pool of ``benchmark_size`` (400) distinct prompts, ``ceil(p_t * size)`` per template ``t`` for
  the probabilities of ``benchmark_mix``; within each template every ``1 / heldout_share``-th prompt (25%)
  touches a held-out composition (a template with too few distinct prompts raises). ``benchmark(n)`` takes the
  first prompts of each template's pool in the mix's proportions (largest remainder), so smaller benchmarks are
  prefixes of larger ones and stay stratified.
* **Training prompts**: templates drawn from ``train_mix``, prompts drawn by :func:`~.sampling.sample_spec`,
  rejected when they touch a held-out composition or belong to the benchmark pool (whatever ``n`` the benchmark
  is used with). Repeats are allowed.

Default mixes (probabilities), balanced between basic and advanced skills as GenAI-Bench is; with the world's
generators the hard templates (relations, comparison) are the ones they fail most:

=============  ======  =====
template       bench   train
=============  ======  =====
single         0.075   0.100
conjunction    0.200   0.150
counting       0.125   0.150
relation       0.200   0.250
comparison     0.100   0.125
negation       0.175   0.125
universal      0.125   0.100
=============  ======  =====

Examples:
    >>> split = make_split(seed=0)
    >>> bench = split.benchmark(300)
    >>> len(bench), len({p.text for p in bench})
    (300, 300)
    >>> train = split.train(200, seed=1)
    >>> any(split.touches_heldout(p) for p in train), {p.text for p in train} & {p.text for p in bench}
    (False, set())
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.world.grammar import describe
from noisyclip_metrics.world.sampling import TemplateMix, sample_spec
from noisyclip_metrics.world.spec import Prompt, SceneSpec
from noisyclip_metrics.world.vocab import COLOUR_NAMES, SHAPES, TEMPLATES, converse_relation

__all__ = [
    "HeldOut",
    "SplitConfig",
    "WorldSplit",
    "benchmark_prompts",
    "heldout_compositions",
    "make_split",
    "train_prompts",
]

_MAX_DRAWS = 20000
T = TypeVar("T")


@dataclass(frozen=True)
class HeldOut:
    """Compositions that never occur in training prompts.

    Attributes:
        colour_shapes: held-out ``(colour, shape)`` pairs.
        relations: held-out ``(shape, relation, shape)`` triples, converses included.
    """

    colour_shapes: frozenset[tuple[str, str]]
    relations: frozenset[tuple[str, str, str]]

    def touches(self, spec: SceneSpec) -> bool:
        """Whether a scene specification uses a held-out composition."""
        if any(o.key in self.colour_shapes for o in spec.objects):
            return True
        a = spec.absent
        if a is not None and a.colour is not None and a.shape is not None and (a.colour, a.shape) in self.colour_shapes:
            return True
        if spec.relation is not None:
            return (spec.objects[0].shape, spec.relation, spec.objects[1].shape) in self.relations
        return False


def heldout_compositions(seed: int = 0, n_pairs: int = 3, n_relations: int = 3) -> HeldOut:
    """Draw the held-out compositions of a split (see the module docstring).

    Examples:
        >>> h = heldout_compositions(seed=0)
        >>> len(h.colour_shapes), len(h.relations), len({s for _, s in h.colour_shapes})
        (3, 6, 3)
    """
    if not 0 <= n_pairs <= len(SHAPES):
        raise InputError(f"n_pairs: expected 0..{len(SHAPES)} (distinct colours and shapes), got {n_pairs!r}")
    canonical = [(a, r, b) for a in SHAPES for r in ("left of", "above") for b in SHAPES if a != b]
    if not 0 <= n_relations <= len(canonical):
        raise InputError(f"n_relations: expected 0..{len(canonical)}, got {n_relations!r}")
    rng = np.random.default_rng([seed, 1009])
    colours = [COLOUR_NAMES[int(i)] for i in rng.choice(len(COLOUR_NAMES), size=n_pairs, replace=False)]
    shapes = [SHAPES[int(i)] for i in rng.choice(len(SHAPES), size=n_pairs, replace=False)]
    triples = [canonical[int(i)] for i in rng.choice(len(canonical), size=n_relations, replace=False)]
    relations = {t for a, r, b in triples for t in ((a, r, b), (b, converse_relation(r), a))}
    return HeldOut(frozenset(zip(colours, shapes, strict=True)), frozenset(relations))


_BENCH_MIX = TemplateMix(
    single=0.075, conjunction=0.2, counting=0.125, relation=0.2, comparison=0.1, negation=0.175, universal=0.125
)
_TRAIN_MIX = TemplateMix(
    single=0.1, conjunction=0.15, counting=0.15, relation=0.25, comparison=0.125, negation=0.125, universal=0.1
)


@dataclass(frozen=True)
class SplitConfig:
    """Structure of a split (the randomness is the seed given to :func:`make_split`).

    Attributes:
        n_heldout_pairs: held-out colour-shape pairs (0-3).
        n_heldout_relations: held-out shape-relation-shape triples (each with its converse).
        benchmark_size: size of the benchmark pool (the most prompts :meth:`WorldSplit.benchmark` returns).
        heldout_share: share of benchmark prompts (per template) that touch a held-out composition.
        benchmark_mix: template mix of the benchmark.
        train_mix: template mix of the training prompts.
    """

    n_heldout_pairs: int = 3
    n_heldout_relations: int = 3
    benchmark_size: int = 400
    heldout_share: float = 0.25
    benchmark_mix: TemplateMix = field(default_factory=lambda: _BENCH_MIX)
    train_mix: TemplateMix = field(default_factory=lambda: _TRAIN_MIX)

    def __post_init__(self) -> None:
        if not isinstance(self.benchmark_size, int) or self.benchmark_size < 1:
            raise InputError(f"benchmark_size: expected an int >= 1, got {self.benchmark_size!r}")
        if not 0 <= self.heldout_share <= 1:
            raise InputError(f"heldout_share: expected a fraction in [0, 1], got {self.heldout_share!r}")


def _quotas(probs: Mapping[str, float], n: int) -> dict[str, int]:
    raw = {t: p * n for t, p in probs.items()}
    out = {t: math.floor(v) for t, v in raw.items()}
    order = sorted(raw, key=lambda t: (-(raw[t] - out[t]), TEMPLATES.index(t)))
    for t in order[: n - sum(out.values())]:
        out[t] += 1
    return out


def interleave(pools: Mapping[str, Sequence[T]]) -> list[T]:
    """The items of per-template lists, interleaved so that every prefix is roughly stratified: item ``i`` of a list
    of ``q`` sits at ``(i + 0.5) / q``, ties broken by template order.

    Examples:
        >>> interleave({"single": ["s0", "s1"], "counting": ["c0", "c1", "c2", "c3"]})
        ['c0', 's0', 'c1', 'c2', 's1', 'c3']
    """
    keyed = [((i + 0.5) / len(v), TEMPLATES.index(t), p) for t, v in pools.items() for i, p in enumerate(v)]
    return [p for *_, p in sorted(keyed, key=lambda k: (k[0], k[1]))]


def _is_heldout_slot(i: int, share: float) -> bool:
    return math.floor((i + 1) * share + 1e-9) > math.floor(i * share + 1e-9)


@dataclass(frozen=True)
class WorldSplit:
    """A split: held-out compositions, the benchmark pool (per template, in order) and the training sampler."""

    seed: int
    config: SplitConfig
    heldout: HeldOut
    pools: Mapping[str, tuple[Prompt, ...]]
    pool_texts: frozenset[str]

    def touches_heldout(self, prompt: Prompt | SceneSpec) -> bool:
        """Whether a prompt uses a held-out composition."""
        return self.heldout.touches(prompt.spec if isinstance(prompt, Prompt) else prompt)

    def benchmark(self, n: int | None = None) -> list[Prompt]:
        """The first ``n`` benchmark prompts (default: the whole pool), stratified by template.

        The list interleaves templates so that its own prefixes are roughly stratified too.
        """
        size = self.config.benchmark_size
        n = size if n is None else n
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= size:
            raise InputError(f"n: expected an int in 0..{size} (the benchmark pool size), got {n!r}")
        quotas = _quotas(self.config.benchmark_mix.probabilities(), n)
        return interleave({t: self.pools[t][:q] for t, q in quotas.items()})

    def allowed_in_train(self, prompt: Prompt) -> bool:
        """Whether a prompt may appear in training (no held-out composition, not in the benchmark pool)."""
        return not self.heldout.touches(prompt.spec) and prompt.text not in self.pool_texts

    def train(self, n: int, seed: int = 0) -> list[Prompt]:
        """Draw ``n`` training prompts (repeats allowed), deterministic given this split and ``seed``."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise InputError(f"n: expected an int >= 0, got {n!r}")
        probs = self.config.train_mix.probabilities()
        rng = np.random.default_rng([self.seed, 7919, int(seed)])
        names = list(probs)
        out = []
        for t in rng.choice(len(names), size=n, p=list(probs.values())):
            for _ in range(_MAX_DRAWS):
                spec = sample_spec(names[int(t)], rng)
                prompt = Prompt(describe(spec), spec)
                if self.allowed_in_train(prompt):
                    out.append(prompt)
                    break
            else:
                raise RuntimeError(f"no training prompt of template {names[int(t)]!r} left outside the benchmark")
        return out


def _pool(template: str, quota: int, share: float, heldout: HeldOut, seed: int) -> tuple[Prompt, ...]:
    rng = np.random.default_rng([seed, 31, TEMPLATES.index(template)])
    seen: set[str] = set()
    out = []
    for i in range(quota):
        want = _is_heldout_slot(i, share)
        for _ in range(_MAX_DRAWS):
            spec = sample_spec(template, rng)
            text = describe(spec)
            if heldout.touches(spec) == want and text not in seen:
                seen.add(text)
                out.append(Prompt(text, spec))
                break
        else:
            kind = "held-out" if want else "regular"
            raise InputError(
                f"benchmark_mix: template {template!r} has too few distinct {kind} prompts for a pool of {quota}"
            )
    return tuple(out)


@functools.lru_cache(maxsize=16)
def make_split(seed: int = 0, config: SplitConfig | None = None) -> WorldSplit:
    """Build the split for a seed (cached).

    Examples:
        >>> split = make_split(seed=0)
        >>> sum(split.touches_heldout(p) for p in split.benchmark(400))  # floor(25% of each template's quota)
        98
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"seed: expected a non-negative int, got {seed!r}")
    config = config or SplitConfig()
    heldout = heldout_compositions(seed, config.n_heldout_pairs, config.n_heldout_relations)
    probs = config.benchmark_mix.probabilities()
    pools = {
        t: _pool(t, math.ceil(p * config.benchmark_size - 1e-9), config.heldout_share, heldout, seed)
        for t, p in probs.items()
    }
    texts = frozenset(p.text for pool in pools.values() for p in pool)
    return WorldSplit(seed, config, heldout, pools, texts)


def benchmark_prompts(n: int | None = None, seed: int = 0, config: SplitConfig | None = None) -> list[Prompt]:
    """Benchmark prompts of the split ``seed`` (see :meth:`WorldSplit.benchmark`).

    Examples:
        >>> [p.template for p in benchmark_prompts(4, seed=0)]
        ['conjunction', 'counting', 'relation', 'negation']
    """
    return make_split(seed, config).benchmark(n)


def train_prompts(n: int, seed: int = 0, *, split_seed: int = 0, config: SplitConfig | None = None) -> list[Prompt]:
    """Training prompts: ``seed`` drives the sampling, ``split_seed`` picks the split they are kept apart from.

    Examples:
        >>> len(train_prompts(10, seed=0))
        10
    """
    return make_split(split_seed, config).train(n, seed)
