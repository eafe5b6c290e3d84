"""The vocabulary of ShapesWorld: colours, shapes, sizes, numbers, relations, skills and prompt templates.

Everything here is a constant; the words are exactly the ones the prompt grammar (:mod:`.grammar`) produces and
parses.

* **Colours** (RGB on a dark background ``(18, 18, 18)``): five saturated, well separated colours. Their directions
  away from the background differ by at least ~30 degrees, so a pixel that mixes a colour with the background (an
  anti-aliased edge) is still closest to the right colour's background-to-colour segment.
* **Shapes**: ``circle``, ``square`` and an upward ``triangle`` (apex at the top, base at the bottom).
* **Size adjectives**: ``small`` and ``big``; a shape without an adjective is drawn at the medium size. The radii
  behind the classes live in :mod:`.config`.
* **Counts**: 1 to 4 objects of one kind, at most :data:`MAX_OBJECTS` objects in a scene.
* **Skills** follow GenAI-Bench: basic ``object``, ``attribute``, ``spatial relation``; advanced ``counting``,
  ``comparison``, ``negation``, ``universal``.

Examples:
    >>> COLOURS["red"]
    (230, 40, 40)
    >>> plural("triangle"), NUMBER_WORDS[3]
    ('triangles', 'three')
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from noisyclip_metrics.errors import InputError

__all__ = [
    "ADVANCED_SKILLS",
    "BACKGROUND",
    "BASIC_SKILLS",
    "COLOURS",
    "COLOUR_NAMES",
    "COMPARISONS",
    "MAX_OBJECTS",
    "NUMBER_WORDS",
    "RELATIONS",
    "RELATION_PHRASES",
    "SHAPES",
    "SIZES",
    "SIZE_CLASSES",
    "SKILLS",
    "TEMPLATES",
    "converse_relation",
    "plural",
]

#: Background colour of every canvas (RGB, uint8).
BACKGROUND: tuple[int, int, int] = (18, 18, 18)

#: Palette: colour name -> RGB (uint8). Order is the canonical order used everywhere (sampling, enumeration).
COLOURS: Mapping[str, tuple[int, int, int]] = MappingProxyType(
    {
        "red": (230, 40, 40),
        "green": (40, 200, 60),
        "blue": (50, 90, 240),
        "yellow": (240, 220, 40),
        "white": (240, 240, 240),
    }
)
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)

#: Shape names (singular). Plurals add an "s".
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")

#: Size adjectives a prompt may use. No adjective means the medium size.
SIZES: tuple[str, ...] = ("small", "big")
#: Size classes an object can be measured as (the oracle's answer space).
SIZE_CLASSES: tuple[str, ...] = ("small", "medium", "big")

#: Number words for counts; "a" is used for one object except in the counting template ("one red circle").
NUMBER_WORDS: Mapping[int, str] = MappingProxyType({1: "one", 2: "two", 3: "three", 4: "four"})
#: Most objects a scene may hold (they must fit on a 32x32 canvas with 2 px gaps).
MAX_OBJECTS: int = 4

#: Spatial relations (canonical names) and their English phrases.
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
RELATION_PHRASES: Mapping[str, str] = MappingProxyType(
    {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}
)
_CONVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}

#: Size comparisons (``"bigger"`` is written "bigger than").
COMPARISONS: tuple[str, ...] = ("bigger", "smaller")

#: GenAI-Bench-style skill tags.
BASIC_SKILLS: tuple[str, ...] = ("object", "attribute", "spatial relation")
ADVANCED_SKILLS: tuple[str, ...] = ("counting", "comparison", "negation", "universal")
SKILLS: tuple[str, ...] = BASIC_SKILLS + ADVANCED_SKILLS

#: Prompt templates, in canonical order.
TEMPLATES: tuple[str, ...] = ("single", "conjunction", "counting", "relation", "comparison", "negation", "universal")


def plural(shape: str) -> str:
    """Return the plural of a shape name (or of the generic noun ``"shape"``).

    Examples:
        >>> plural("square")
        'squares'
    """
    if shape not in SHAPES and shape != "shape":
        raise InputError(f"shape: expected one of {', '.join(SHAPES)}, got {shape!r}")
    return shape + "s"


def converse_relation(relation: str) -> str:
    """Return the relation that holds with the roles swapped ("A left of B" <=> "B right of A").

    Examples:
        >>> converse_relation("above")
        'below'
    """
    try:
        return _CONVERSE[relation]
    except KeyError:
        raise InputError(f"relation: expected one of {', '.join(RELATIONS)}, got {relation!r}") from None
