"""Sampling and enumeration of ShapesWorld prompts.

:func:`sample_spec` draws one scene specification of a template; :func:`sample_prompts` draws ``n`` prompts with a
:class:`TemplateMix` (deterministic given the seed); :func:`enumerate_prompts` lists every distinct prompt of a
template in a fixed order.

Sampling distributions (per template):

* single: size none / small / big with probabilities 0.5 / 0.25 / 0.25.
* conjunction: each group has one object (p = 0.8) or two; one-object groups get a size adjective with p = 0.3
  (never two big objects), two-object groups only "small" (p = 0.15).
* counting: count uniform in 1..4; size none (0.6), small (0.25), big (0.15, single objects only).
* relation: two subjects with p = 0.2 (then no sizes), otherwise each object gets an adjective with p = 0.15.
* comparison: two single objects, bigger / smaller with equal probability, no adjectives.
* negation: one group of 1 / 2 / 3 objects (0.5 / 0.3 / 0.2); the negated kind is a shape (0.4), a colour (0.3)
  or both (0.3), never one the prompt asks for.
* universal: one to three groups of distinct shapes with 2-4 objects in total, one colour.

Colours and shapes are uniform; the two groups of a two-group template always differ in (colour, shape).

Examples:
    >>> [p.text for p in sample_prompts(3, seed=1)] == [p.text for p in sample_prompts(3, seed=1)]
    True
    >>> sum(1 for _ in enumerate_prompts("single"))
    45
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace

import numpy as np

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.world.grammar import describe
from noisyclip_metrics.world.spec import Absence, ObjectSpec, Prompt, SceneSpec
from noisyclip_metrics.world.vocab import (
    COLOUR_NAMES,
    COMPARISONS,
    MAX_OBJECTS,
    RELATIONS,
    SHAPES,
    SIZES,
    TEMPLATES,
    converse_relation,
)

__all__ = [
    "HARD_NEGATIVE_EDITS",
    "TemplateMix",
    "as_generator",
    "enumerate_prompts",
    "hard_negative",
    "sample_prompts",
    "sample_spec",
]


@dataclass(frozen=True)
class TemplateMix:
    """Relative weights of the prompt templates (normalised when used; zero drops a template).

    Examples:
        >>> TemplateMix(single=1, conjunction=1, counting=0, relation=2, comparison=0, negation=0,
        ...             universal=0).probabilities()["relation"]
        0.5
    """

    single: float = 1.0
    conjunction: float = 1.0
    counting: float = 1.0
    relation: float = 1.0
    comparison: float = 1.0
    negation: float = 1.0
    universal: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or not value >= 0:
                raise InputError(f"{f.name}: expected a weight >= 0, got {value!r}")
        if sum(getattr(self, f.name) for f in fields(self)) <= 0:
            raise InputError("TemplateMix: expected at least one positive weight, got all zero")

    def probabilities(self) -> dict[str, float]:
        """Template -> probability, in :data:`~.vocab.TEMPLATES` order."""
        total = sum(float(getattr(self, t)) for t in TEMPLATES)
        return {t: float(getattr(self, t)) / total for t in TEMPLATES}


def as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    """Return ``rng`` if it is a numpy Generator, else a new one seeded with it (``None`` = unseeded)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is not None and (not isinstance(rng, (int, np.integer)) or isinstance(rng, bool) or rng < 0):
        raise InputError(f"rng: expected a numpy Generator, a non-negative int seed or None, got {rng!r}")
    return np.random.default_rng(rng)


def _pick(rng: np.random.Generator, items: tuple | list, p: list[float] | None = None) -> object:
    return items[int(rng.choice(len(items), p=p))]


def _two_keys(rng: np.random.Generator) -> list[tuple[str, str]]:
    pairs = [(c, s) for c in COLOUR_NAMES for s in SHAPES]
    i, j = rng.choice(len(pairs), size=2, replace=False)
    return [pairs[int(i)], pairs[int(j)]]


def _size(rng: np.random.Generator, p_size: float, allow_big: bool = True) -> str | None:
    if rng.random() >= p_size:
        return None
    return str(_pick(rng, SIZES)) if allow_big else "small"


def _sample(template: str, rng: np.random.Generator) -> SceneSpec:
    if template == "single":
        c, s = _pick(rng, COLOUR_NAMES), _pick(rng, SHAPES)
        size = _pick(rng, [None, "small", "big"], [0.5, 0.25, 0.25])
        return SceneSpec("single", (ObjectSpec(s, c, 1, size),))  # type: ignore[arg-type]
    if template == "counting":
        c, s, n = _pick(rng, COLOUR_NAMES), _pick(rng, SHAPES), int(rng.integers(1, 5))
        size = _pick(rng, [None, "small", "big"], [0.6, 0.25, 0.15])
        if size == "big" and n > 1:
            size = None
        return SceneSpec("counting", (ObjectSpec(s, c, n, size),))  # type: ignore[arg-type]
    if template == "conjunction":
        objs = []
        for c, s in _two_keys(rng):
            n = 1 if rng.random() < 0.8 else 2
            big_taken = any(o.size == "big" for o in objs)
            size = _size(rng, 0.3, allow_big=not big_taken) if n == 1 else _size(rng, 0.15, allow_big=False)
            objs.append(ObjectSpec(s, c, n, size))
        return SceneSpec("conjunction", tuple(objs))
    if template == "relation":
        (c1, s1), (c2, s2) = _two_keys(rng)
        rel = str(_pick(rng, RELATIONS))
        if rng.random() < 0.2:
            return SceneSpec("relation", (ObjectSpec(s1, c1, 2), ObjectSpec(s2, c2)), relation=rel)
        a = ObjectSpec(s1, c1, 1, _size(rng, 0.15))
        b = ObjectSpec(s2, c2, 1, _size(rng, 0.15, allow_big=a.size != "big"))
        return SceneSpec("relation", (a, b), relation=rel)
    if template == "comparison":
        (c1, s1), (c2, s2) = _two_keys(rng)
        cmp = str(_pick(rng, COMPARISONS))
        return SceneSpec("comparison", (ObjectSpec(s1, c1), ObjectSpec(s2, c2)), comparison=cmp)
    if template == "negation":
        c, s = str(_pick(rng, COLOUR_NAMES)), str(_pick(rng, SHAPES))
        n = int(_pick(rng, [1, 2, 3], [0.5, 0.3, 0.2]))
        obj = ObjectSpec(s, c, n, _size(rng, 0.2) if n == 1 else None)
        while True:
            kind = _pick(rng, ["shape", "colour", "both"], [0.4, 0.3, 0.3])
            absent = Absence(
                colour=str(_pick(rng, COLOUR_NAMES)) if kind != "shape" else None,
                shape=str(_pick(rng, SHAPES)) if kind != "colour" else None,
            )
            if not absent.matches(c, s):
                return SceneSpec("negation", (obj,), absent=absent)
    if template == "universal":
        c = str(_pick(rng, COLOUR_NAMES))
        while True:
            k = int(rng.integers(1, 4))
            shapes = [SHAPES[int(i)] for i in rng.choice(len(SHAPES), size=k, replace=False)]
            counts = [int(rng.integers(1, 4)) for _ in shapes]
            if 2 <= sum(counts) <= MAX_OBJECTS:
                return SceneSpec("universal", tuple(ObjectSpec(s, c, n) for s, n in zip(shapes, counts, strict=True)))
    raise InputError(f"template: expected one of {', '.join(TEMPLATES)}, got {template!r}")


def sample_spec(template: str, rng: np.random.Generator | int | None = None) -> SceneSpec:
    """Draw one scene specification of ``template`` (see the module docstring for the distributions).

    Examples:
        >>> sample_spec("comparison", rng=0).comparison in ("bigger", "smaller")
        True
    """
    if template not in TEMPLATES:
        raise InputError(f"template: expected one of {', '.join(TEMPLATES)}, got {template!r}")
    return _sample(template, as_generator(rng))


def sample_prompts(
    n: int, seed: int | np.random.Generator | None = 0, mix: TemplateMix | Mapping[str, float] | None = None
) -> list[Prompt]:
    """Draw ``n`` prompts (with repeats possible), templates drawn from ``mix`` (default: all equally likely).

    Examples:
        >>> [p.template for p in sample_prompts(2, seed=3, mix={"counting": 1.0})]
        ['counting', 'counting']
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise InputError(f"n: expected an int >= 0, got {n!r}")
    if mix is None:
        mix = TemplateMix()
    elif not isinstance(mix, TemplateMix):
        unknown = [k for k in mix if k not in TEMPLATES]
        if unknown:
            raise InputError(f"mix: expected template names ({', '.join(TEMPLATES)}), got {unknown}")
        mix = TemplateMix(**{t: float(mix.get(t, 0.0)) for t in TEMPLATES})
    probs = mix.probabilities()
    rng = as_generator(seed)
    names = list(probs)
    picks = rng.choice(len(names), size=n, p=list(probs.values()))
    out = []
    for i in picks:
        spec = _sample(names[int(i)], rng)
        out.append(Prompt(describe(spec), spec))
    return out


def _groups(with_sizes: bool, counts: tuple[int, ...] = (1,)) -> Iterator[ObjectSpec]:
    for c, s, n in itertools.product(COLOUR_NAMES, SHAPES, counts):
        sizes: list[str | None] = [None]
        if with_sizes:
            sizes += ["small", "big"] if n == 1 else ["small"]
        for size in sizes:
            yield ObjectSpec(s, c, n, size)


def _enumerate_specs(template: str) -> Iterator[SceneSpec]:
    if template in ("single", "counting"):
        for o in _groups(True, (1,) if template == "single" else (1, 2, 3, 4)):
            yield SceneSpec(template, (o,))
    elif template in ("conjunction", "relation", "comparison"):
        first_counts = {"conjunction": (1, 2), "relation": (1, 2), "comparison": (1,)}[template]
        second_counts = (1, 2) if template == "conjunction" else (1,)
        sized = template != "comparison"
        extras = RELATIONS if template == "relation" else COMPARISONS if template == "comparison" else (None,)
        for a, b in itertools.product(_groups(sized, first_counts), _groups(sized, second_counts)):
            for extra in extras:
                try:
                    yield SceneSpec(
                        template,
                        (a, b),
                        relation=extra if template == "relation" else None,
                        comparison=extra if template == "comparison" else None,
                    )
                except InputError:
                    continue
    elif template == "negation":
        absences = [Absence(c, s) for c in (None, *COLOUR_NAMES) for s in (None, *SHAPES) if c or s]
        for o in itertools.chain(_groups(True, (1,)), _groups(False, (2, 3))):
            for absent in absences:
                if not absent.matches(o.colour, o.shape):
                    yield SceneSpec("negation", (o,), absent=absent)
    elif template == "universal":
        for c in COLOUR_NAMES:
            for k in (1, 2, 3):
                for shapes in itertools.permutations(SHAPES, k):
                    for counts in itertools.product((1, 2, 3), repeat=k):
                        if 2 <= sum(counts) <= MAX_OBJECTS:
                            yield SceneSpec(
                                "universal", tuple(ObjectSpec(s, c, n) for s, n in zip(shapes, counts, strict=True))
                            )
    else:
        raise InputError(f"template: expected one of {', '.join(TEMPLATES)}, got {template!r}")


def enumerate_prompts(template: str) -> Iterator[Prompt]:
    """Yield every distinct prompt of ``template`` in a fixed order (lazily; relation and conjunction have tens of
    thousands).

    Examples:
        >>> next(enumerate_prompts("counting")).text
        'one red circle'
    """
    for spec in _enumerate_specs(template):
        yield Prompt(describe(spec), spec)


#: Edits :func:`hard_negative` can make: recolour or reshape one group, swap the colours of two groups, change a
#: count by one, flip a relation or comparison, flip a size adjective.
HARD_NEGATIVE_EDITS: tuple[str, ...] = ("colour", "shape", "swap colours", "count", "relation", "comparison", "size")


def _edits(spec: SceneSpec, edit: str) -> list[tuple[tuple[ObjectSpec, ...], str | None, str | None]]:
    """Candidate (objects, relation, comparison) edits of ``spec``; some may be invalid scenes."""
    objs, rel, cmp = list(spec.objects), spec.relation, spec.comparison
    out: list[tuple[tuple[ObjectSpec, ...], str | None, str | None]] = []

    def change(i: int, **kw: object) -> None:
        out.append(((*objs[:i], replace(objs[i], **kw), *objs[i + 1 :]), rel, cmp))

    if edit == "colour" and spec.template == "universal":
        for c in COLOUR_NAMES:
            if c != objs[0].colour:
                out.append((tuple(replace(g, colour=c) for g in objs), rel, cmp))
        return out
    for i, o in enumerate(objs):
        if edit == "colour":
            for c in COLOUR_NAMES:
                if c != o.colour:
                    change(i, colour=c)
        elif edit == "shape":
            for s in SHAPES:
                if s != o.shape:
                    change(i, shape=s)
        elif edit == "count":
            for n in (o.count - 1, o.count + 1):
                if 1 <= n <= MAX_OBJECTS:
                    change(i, count=n)
        elif edit == "size" and o.size is not None:
            change(i, size="big" if o.size == "small" else "small")
    if edit == "swap colours" and len(objs) == 2 and objs[0].colour != objs[1].colour:
        a, b = objs
        swapped = (replace(a, colour=b.colour), replace(b, colour=a.colour))
        if set(swapped) != set(objs) or rel is not None or cmp is not None:  # else the same scene, reworded
            out.append((swapped, rel, cmp))
    if edit == "relation" and rel is not None:
        out.append((tuple(objs), converse_relation(rel), cmp))
    if edit == "comparison" and cmp is not None:
        out.append((tuple(objs), rel, "smaller" if cmp == "bigger" else "bigger"))
    return out


def _valid_edits(spec: SceneSpec, edit: str) -> list[SceneSpec]:
    valid = []
    for objects, rel, cmp in _edits(spec, edit):
        try:
            valid.append(SceneSpec(spec.template, objects, rel, cmp, spec.absent))
        except InputError:
            continue
    return valid


def hard_negative(
    spec: SceneSpec, rng: np.random.Generator | int | None = None, edit: str | None = None
) -> tuple[str, SceneSpec]:
    """A minimally edited specification that a faithful image of ``spec`` does *not* satisfy.

    Args:
        spec: the true specification.
        rng: Generator or seed.
        edit: one of :data:`HARD_NEGATIVE_EDITS`, or ``None`` to draw one among those that apply.

    Returns:
        ``(edit, negative_spec)``.

    Raises:
        InputError: ``edit`` is unknown or does not apply to ``spec`` (e.g. "relation" without a relation).

    Examples:
        >>> from noisyclip_metrics.world.grammar import describe, parse_prompt
        >>> edit, neg = hard_negative(parse_prompt("a red circle to the left of a blue square"), 0, "relation")
        >>> describe(neg)
        'a red circle to the right of a blue square'
    """
    gen = as_generator(rng)
    if edit is not None and edit not in HARD_NEGATIVE_EDITS:
        raise InputError(f"edit: expected one of {', '.join(HARD_NEGATIVE_EDITS)} or None, got {edit!r}")
    if edit is None:
        kinds = [e for e in HARD_NEGATIVE_EDITS if _valid_edits(spec, e)]
        if not kinds:
            raise InputError(f"spec: no hard-negative edit applies to {spec}")
        edit = kinds[int(gen.integers(len(kinds)))]
    options = _valid_edits(spec, edit)
    if not options:
        raise InputError(f"edit: {edit!r} does not apply to {spec}")
    return edit, options[int(gen.integers(len(options)))]
