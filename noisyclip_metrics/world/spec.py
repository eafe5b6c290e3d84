"""Scene specifications: the structured meaning of a ShapesWorld prompt.

A :class:`SceneSpec` is what a prompt asks for, independent of its wording:

* ``objects``: one or more :class:`ObjectSpec` groups (shape, colour, count, optional size adjective). Groups have
  distinct ``(colour, shape)`` keys and at most :data:`~.vocab.MAX_OBJECTS` objects in total. The scene holds
  exactly these objects and nothing else.
* ``relation``: a spatial relation that holds between *every* object of group 0 and *every* object of group 1
  ("two red circles above a blue square": each red circle is above the blue square).
* ``comparison``: ``"bigger"`` / ``"smaller"``: each object of group 0 is bigger / smaller (by area) than each of
  group 1.
* ``absent``: a negation (:class:`Absence`): no object of that colour and/or shape is present.
* ``template``: which prompt template expresses the meaning; it fixes the wording and the skill tags.

Skill tags (:func:`skills_of`): every prompt tests ``object`` and ``attribute`` (colour is always specified);
relations add ``spatial relation``; a count above one (or the counting template) adds ``counting``; comparisons add
``comparison``; negations ``negation``; the universal template ``universal``.

Examples:
    >>> spec = SceneSpec("relation", (ObjectSpec("circle", "red"), ObjectSpec("square", "blue")), relation="left of")
    >>> spec.skills
    ('object', 'attribute', 'spatial relation')
    >>> spec.n_objects
    2
"""

from __future__ import annotations

from dataclasses import dataclass

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.world.vocab import (
    COLOUR_NAMES,
    COMPARISONS,
    MAX_OBJECTS,
    RELATIONS,
    SHAPES,
    SIZES,
    SKILLS,
    TEMPLATES,
)

__all__ = ["Absence", "ObjectSpec", "Prompt", "SceneSpec", "skills_of"]


def _check_choice(name: str, value: object, choices: tuple[str, ...], allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value not in choices:
        extra = " or None" if allow_none else ""
        raise InputError(f"{name}: expected one of {', '.join(choices)}{extra}, got {value!r}")


@dataclass(frozen=True)
class ObjectSpec:
    """A group of identical objects asked for by a prompt.

    Attributes:
        shape: one of :data:`~.vocab.SHAPES`.
        colour: one of :data:`~.vocab.COLOUR_NAMES`.
        count: number of such objects, 1 to 4.
        size: ``"small"``, ``"big"`` or ``None`` (no adjective: drawn medium, not checked by the oracle).
    """

    shape: str
    colour: str
    count: int = 1
    size: str | None = None

    def __post_init__(self) -> None:
        _check_choice("shape", self.shape, SHAPES)
        _check_choice("colour", self.colour, COLOUR_NAMES)
        _check_choice("size", self.size, SIZES, allow_none=True)
        if not isinstance(self.count, int) or isinstance(self.count, bool) or not 1 <= self.count <= MAX_OBJECTS:
            raise InputError(f"count: expected an int in 1..{MAX_OBJECTS}, got {self.count!r}")

    @property
    def key(self) -> tuple[str, str]:
        """``(colour, shape)``: what identifies the group in a scene."""
        return (self.colour, self.shape)


@dataclass(frozen=True)
class Absence:
    """A negated kind of object: ``colour`` and/or ``shape`` (``None`` = any). "no circles" is
    ``Absence(shape="circle")``; "no blue shapes" is ``Absence(colour="blue")``."""

    colour: str | None = None
    shape: str | None = None

    def __post_init__(self) -> None:
        _check_choice("colour", self.colour, COLOUR_NAMES, allow_none=True)
        _check_choice("shape", self.shape, SHAPES, allow_none=True)
        if self.colour is None and self.shape is None:
            raise InputError("absent: expected a colour, a shape or both, got neither")

    def matches(self, colour: str, shape: str) -> bool:
        """Whether an object of this colour and shape is forbidden."""
        return (self.colour is None or self.colour == colour) and (self.shape is None or self.shape == shape)


@dataclass(frozen=True)
class SceneSpec:
    """The meaning of a prompt (see the module docstring). Invalid combinations raise :class:`InputError`."""

    template: str
    objects: tuple[ObjectSpec, ...]
    relation: str | None = None
    comparison: str | None = None
    absent: Absence | None = None

    def __post_init__(self) -> None:
        _check_choice("template", self.template, TEMPLATES)
        if not isinstance(self.objects, tuple) or not self.objects:
            raise InputError(f"objects: expected a non-empty tuple of ObjectSpec, got {self.objects!r}")
        if not all(isinstance(o, ObjectSpec) for o in self.objects):
            raise InputError(f"objects: expected ObjectSpec items, got {self.objects!r}")
        _check_choice("relation", self.relation, RELATIONS, allow_none=True)
        _check_choice("comparison", self.comparison, COMPARISONS, allow_none=True)
        if self.absent is not None and not isinstance(self.absent, Absence):
            raise InputError(f"absent: expected an Absence or None, got {self.absent!r}")
        keys = [o.key for o in self.objects]
        if len(set(keys)) != len(keys):
            raise InputError(f"objects: expected distinct (colour, shape) groups, got {keys}")
        if self.n_objects > MAX_OBJECTS:
            raise InputError(f"objects: expected at most {MAX_OBJECTS} objects in total, got {self.n_objects}")
        if sum(o.size == "big" for o in self.objects) > 1:
            raise InputError("objects: expected at most one big object (two do not fit the canvas with others)")
        for o in self.objects:
            if o.count > 1 and o.size == "big":
                raise InputError(f"objects: 'big' is only allowed for a single object, got {o.count} big {o.shape}s")
        if self.absent is not None and any(self.absent.matches(*o.key) for o in self.objects):
            raise InputError(f"absent: the negated {self.absent} contradicts an object the prompt asks for")
        self._check_template()

    def _check_template(self) -> None:
        t, n = self.template, len(self.objects)
        expect_two = t in ("conjunction", "relation", "comparison")
        if (expect_two and n != 2) or (t in ("single", "counting", "negation") and n != 1) or n > 3:
            raise InputError(f"objects: template {t!r} does not take {n} object groups")
        if (self.relation is not None) != (t == "relation"):
            raise InputError(f"relation: expected a relation exactly for the relation template, got {self.relation!r}")
        if (self.comparison is not None) != (t == "comparison"):
            raise InputError(f"comparison: expected exactly for the comparison template, got {self.comparison!r}")
        if (self.absent is not None) != (t == "negation"):
            raise InputError(f"absent: expected exactly for the negation template, got {self.absent!r}")
        if t == "single" and self.objects[0].count != 1:
            raise InputError("objects: the single template takes one object; use the counting template")
        if t == "relation" and (self.objects[1].count != 1 or (self.objects[0].count > 1 and self._has_size())):
            raise InputError("objects: a relation takes one reference object and no sizes with two subjects")
        if t == "comparison" and (any(o.count != 1 for o in self.objects) or self._has_size()):
            raise InputError("objects: a comparison takes two single objects without size adjectives")
        if t == "universal":
            if len({o.colour for o in self.objects}) != 1 or len({o.shape for o in self.objects}) != n:
                raise InputError("objects: a universal prompt takes one colour and distinct shapes")
            if self.n_objects < 2 or self._has_size():
                raise InputError("objects: a universal prompt takes at least two objects and no size adjectives")

    def _has_size(self) -> bool:
        return any(o.size is not None for o in self.objects)

    @property
    def n_objects(self) -> int:
        """Total number of objects in the scene."""
        return sum(o.count for o in self.objects)

    @property
    def skills(self) -> tuple[str, ...]:
        """GenAI-Bench-style skill tags, in :data:`~.vocab.SKILLS` order."""
        return skills_of(self)


def skills_of(spec: SceneSpec) -> tuple[str, ...]:
    """Skill tags of a scene specification (see the module docstring).

    Examples:
        >>> skills_of(SceneSpec("counting", (ObjectSpec("circle", "red", count=3),)))
        ('object', 'attribute', 'counting')
    """
    tags = {"object", "attribute"}
    if spec.relation is not None:
        tags.add("spatial relation")
    if spec.template == "counting" or any(o.count > 1 for o in spec.objects):
        tags.add("counting")
    if spec.comparison is not None:
        tags.add("comparison")
    if spec.absent is not None:
        tags.add("negation")
    if spec.template == "universal":
        tags.add("universal")
    return tuple(s for s in SKILLS if s in tags)


@dataclass(frozen=True)
class Prompt:
    """A prompt of the grammar: its text and its meaning.

    Attributes:
        text: the English prompt, as :func:`~.grammar.describe` writes it.
        spec: its meaning; ``parse_prompt(text) == spec``.
    """

    text: str
    spec: SceneSpec

    @property
    def template(self) -> str:
        """The template that produced the prompt."""
        return self.spec.template

    @property
    def skills(self) -> tuple[str, ...]:
        """GenAI-Bench-style skill tags."""
        return self.spec.skills
