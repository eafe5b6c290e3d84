"""TIFA-style questions about a scene specification, and their answers from a list of scene objects.

:func:`make_questions` turns a :class:`~.spec.SceneSpec` into yes/no and counting questions; :func:`answer_question`
answers one from the objects found in an image (:class:`SceneObject`, produced by :mod:`.segment` or, as ground
truth, by :meth:`.render.Layout.scene_objects`).

Questions, in order (``C S`` = colour and shape of a group; kinds in brackets):

1. per group: "Is there a S?" / "Are there Ss?" [existence], then "Is there a C S?" for one object or
   "How many C Ss are there?" for several [attribute / count], then "Is the C S big?" when the prompt gives a size
   [attribute]. Universal prompts ask existence / count by shape only.
2. "Is the C1 S1 to the left of the C2 S2?" [relation]; "Is the C1 S1 bigger than the C2 S2?" [comparison];
   "Are there any (C) Ss?" with expected answer "no" [negation]; "Are all the shapes C?" [universal].
3. "How many shapes are there in total?" [total], so that any extra object is a mistake.

Because groups have distinct (colour, shape) keys, all answers are right exactly when the image holds the asked
objects and nothing else and the relation / comparison / sizes hold.

Answer semantics:

* an object matches "C S" when both its colour and shape match; "Is there" asks for at least one match.
* size: every matching object has the size class (:meth:`.config.CanvasConfig.size_class`) and there is one.
* relation between centroids (``dx = x_B - x_A``, ``dy = y_B - y_A``, image y pointing down): "A left of B" holds
  when ``dx >= |dy|`` and ``dx >= tolerance`` (the horizontal offset dominates, as in T2I-CompBench); right of,
  above, below likewise. It must hold for every pair of matching objects, and both must exist.
* comparison: "A bigger than B" when ``area(A) >= ratio * area(B)`` for every pair (``ratio`` = 1.3 by default);
  "smaller" mirrors it.

Examples:
    >>> from noisyclip_metrics.world.grammar import parse_prompt
    >>> [q.text for q in make_questions(parse_prompt("a red circle and no squares"))]
    ['Is there a circle?', 'Is there a red circle?', 'Are there any squares?', 'How many shapes are there in total?']
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.world.config import OracleConfig
from noisyclip_metrics.world.spec import ObjectSpec, SceneSpec
from noisyclip_metrics.world.vocab import RELATION_PHRASES, plural

__all__ = [
    "QUESTION_KINDS",
    "Question",
    "SceneObject",
    "answer_question",
    "is_bigger",
    "make_questions",
    "relation_holds",
]

QUESTION_KINDS: tuple[str, ...] = (
    "existence",
    "attribute",
    "count",
    "relation",
    "comparison",
    "negation",
    "universal",
    "total",
)


@dataclass(frozen=True)
class SceneObject:
    """One object of a scene, as measured in an image (or known from a rendered layout).

    Attributes:
        colour: palette colour name.
        shape: shape name.
        size: size class ("small", "medium", "big").
        area: area in px^2.
        cx: centroid x (px, continuous coordinates: pixel i covers [i, i + 1)).
        cy: centroid y (px, pointing down).
        bbox: ``(x0, y0, x1, y1)`` in continuous coordinates.
        features: named measurements behind the decision (diagnostics only).
    """

    colour: str
    shape: str
    size: str
    area: float
    cx: float
    cy: float
    bbox: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    features: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Question:
    """A TIFA-style question about a prompt.

    Attributes:
        text: the question in English.
        kind: one of :data:`QUESTION_KINDS`.
        expected: the answer a faithful image gives ("yes", "no" or a number).
        query: how to answer it: "exists", "count", "size", "relation", "comparison", "all_colour" or "total".
        colour: colour the query is about (``None`` = any).
        shape: shape the query is about (``None`` = any).
        value: size class, relation or comparison word.
        other: ``(colour, shape)`` of the second object of a relation or comparison.
    """

    text: str
    kind: str
    expected: str
    query: str
    colour: str | None = None
    shape: str | None = None
    value: str | None = None
    other: tuple[str, str] | None = None


def _group_questions(o: ObjectSpec, universal: bool, seen_shapes: set[str]) -> list[Question]:
    qs = []
    if o.shape not in seen_shapes and not (universal and o.count > 1):
        seen_shapes.add(o.shape)
        text = f"Is there a {o.shape}?" if o.count == 1 else f"Are there {plural(o.shape)}?"
        qs.append(Question(text, "existence", "yes", "exists", shape=o.shape))
    if universal:
        if o.count > 1:
            qs.append(Question(f"How many {plural(o.shape)} are there?", "count", str(o.count), "count", shape=o.shape))
        return qs
    if o.count == 1:
        qs.append(Question(f"Is there a {o.colour} {o.shape}?", "attribute", "yes", "exists", o.colour, o.shape))
    else:
        text = f"How many {o.colour} {plural(o.shape)} are there?"
        qs.append(Question(text, "count", str(o.count), "count", o.colour, o.shape))
    if o.size is not None:
        subject = f"Is the {o.colour} {o.shape}" if o.count == 1 else f"Are the {o.colour} {plural(o.shape)}"
        text = f"{subject} {o.size}?"
        qs.append(Question(text, "attribute", "yes", "size", o.colour, o.shape, o.size))
    return qs


@functools.lru_cache(maxsize=65536)
def _questions(spec: SceneSpec) -> tuple[Question, ...]:
    universal = spec.template == "universal"
    seen: set[str] = set()
    qs = [q for o in spec.objects for q in _group_questions(o, universal, seen)]
    if spec.relation is not None or spec.comparison is not None:
        a, b = spec.objects
        subject = f"Is the {a.colour} {a.shape}" if a.count == 1 else f"Are the {a.colour} {plural(a.shape)}"
        if spec.relation is not None:
            text = f"{subject} {RELATION_PHRASES[spec.relation]} the {b.colour} {b.shape}?"
            qs.append(Question(text, "relation", "yes", "relation", a.colour, a.shape, spec.relation, b.key))
        else:
            text = f"{subject} {spec.comparison} than the {b.colour} {b.shape}?"
            qs.append(Question(text, "comparison", "yes", "comparison", a.colour, a.shape, spec.comparison, b.key))
    if spec.absent is not None:
        c, s = spec.absent.colour, spec.absent.shape
        noun = " ".join(w for w in (c, plural(s) if s else "shapes") if w)
        qs.append(Question(f"Are there any {noun}?", "negation", "no", "exists", c, s))
    if universal:
        colour = spec.objects[0].colour
        qs.append(Question(f"Are all the shapes {colour}?", "universal", "yes", "all_colour", colour))
    qs.append(Question("How many shapes are there in total?", "total", str(spec.n_objects), "total"))
    return tuple(qs)


def make_questions(spec: SceneSpec) -> tuple[Question, ...]:
    """The TIFA-style questions of a scene specification (see the module docstring; cached).

    Examples:
        >>> from noisyclip_metrics.world.grammar import parse_prompt
        >>> [(q.kind, q.expected) for q in make_questions(parse_prompt("three yellow circles"))]
        [('existence', 'yes'), ('count', '3'), ('total', '3')]
    """
    if not isinstance(spec, SceneSpec):
        raise InputError(f"spec: expected a SceneSpec, got {type(spec).__name__}")
    return _questions(spec)


def relation_holds(a: SceneObject, b: SceneObject, relation: str, tolerance: float = 1.0) -> bool:
    """Whether ``a`` is ``relation`` ("left of", "right of", "above", "below") ``b``, by the dominant-axis rule.

    Examples:
        >>> a = SceneObject("red", "circle", "medium", 80.0, 8.0, 10.0)
        >>> b = SceneObject("blue", "square", "medium", 100.0, 20.0, 14.0)
        >>> relation_holds(a, b, "left of"), relation_holds(a, b, "above")
        (True, False)
    """
    dx, dy = b.cx - a.cx, b.cy - a.cy
    if relation == "left of":
        along, across = dx, dy
    elif relation == "right of":
        along, across = -dx, dy
    elif relation == "above":
        along, across = dy, dx
    elif relation == "below":
        along, across = -dy, dx
    else:
        raise InputError(f"relation: expected one of {', '.join(RELATION_PHRASES)}, got {relation!r}")
    return along >= abs(across) and along >= tolerance


def is_bigger(a: SceneObject, b: SceneObject, ratio: float = 1.3) -> bool:
    """Whether ``a`` is clearly bigger than ``b``: ``area(a) >= ratio * area(b)``.

    Examples:
        >>> big = SceneObject("red", "circle", "big", 150.0, 0, 0)
        >>> small = SceneObject("red", "square", "small", 60.0, 0, 0)
        >>> is_bigger(big, small), is_bigger(small, big)
        (True, False)
    """
    return a.area >= ratio * b.area


def _matching(objects: Sequence[SceneObject], colour: str | None, shape: str | None) -> list[SceneObject]:
    return [o for o in objects if (colour is None or o.colour == colour) and (shape is None or o.shape == shape)]


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def answer_question(question: Question, objects: Sequence[SceneObject], config: OracleConfig | None = None) -> str:
    """Answer a question from the objects of a scene ("yes", "no" or a count).

    Examples:
        >>> from noisyclip_metrics.world.grammar import parse_prompt
        >>> q = make_questions(parse_prompt("two green triangles"))[1]
        >>> answer_question(q, [SceneObject("green", "triangle", "medium", 50.0, 8.0, 8.0)])
        '1'
    """
    cfg = config or OracleConfig()
    found = _matching(objects, question.colour, question.shape)
    if question.query == "exists":
        return _yes(bool(found))
    if question.query == "count":
        return str(len(found))
    if question.query == "total":
        return str(len(objects))
    if question.query == "size":
        return _yes(bool(found) and all(o.size == question.value for o in found))
    if question.query == "all_colour":
        return _yes(bool(objects) and all(o.colour == question.colour for o in objects))
    if question.query in ("relation", "comparison") and question.other is not None and question.value is not None:
        others = _matching(objects, *question.other)
        if not found or not others:
            return "no"
        if question.query == "relation":
            ok = all(relation_holds(a, b, question.value, cfg.relation_tolerance) for a in found for b in others)
        elif question.value == "bigger":
            ok = all(is_bigger(a, b, cfg.comparison_ratio) for a in found for b in others)
        else:
            ok = all(is_bigger(b, a, cfg.comparison_ratio) for a in found for b in others)
        return _yes(ok)
    raise InputError(f"question: unknown query {question.query!r} in {question.text!r}")
