"""The ShapesWorld prompt grammar: :func:`describe` writes a :class:`~.spec.SceneSpec` as English, and
:func:`parse_prompt` reads it back.

Templates (``NP`` = determiner, optional size, colour, shape; the determiner is "a" for one object and a number
word otherwise; the counting template writes "one" for a single object):

=============  ========================================================  =======================================
template       example                                                   skills
=============  ========================================================  =======================================
single         "a big blue square"                                       object, attribute
conjunction    "a red circle and two small green triangles"              object, attribute (+ counting)
counting       "three yellow circles", "one small red square"            object, attribute, counting
relation       "two red circles above a blue square"                     object, attribute, spatial relation
comparison     "a red circle bigger than a blue square"                  object, attribute, comparison
negation       "two red triangles and no blue shapes"                    object, attribute, negation
universal      "a circle and two squares, all of them blue"              object, attribute, universal
=============  ========================================================  =======================================

Relations are "to the left of", "to the right of", "above", "below"; comparisons "bigger than", "smaller than";
negations "no <shapes>", "no <colour> shapes", "no <colour> <shapes>". Universal prompts list one to three
colourless noun phrases ("a circle, a square and a triangle") followed by ", all of them <colour>".

Parsing is case-insensitive, ignores extra spaces and one trailing full stop, and also accepts "one" for a single
object anywhere. ``parse_prompt(describe(spec)) == spec`` for every spec, so every prompt the grammar produces
parses back to its meaning. Text outside the grammar raises :class:`~noisyclip_metrics.errors.InputError` that
names the unknown or unparsed words.

Examples:
    >>> spec = parse_prompt("Two red circles above a blue square.")
    >>> spec.relation, spec.objects[0].count
    ('above', 2)
    >>> describe(spec)
    'two red circles above a blue square'
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.world.spec import Absence, ObjectSpec, SceneSpec
from noisyclip_metrics.world.vocab import (
    COLOUR_NAMES,
    COMPARISONS,
    NUMBER_WORDS,
    RELATION_PHRASES,
    SHAPES,
    SIZES,
    plural,
)

__all__ = ["describe", "parse_prompt", "tokenize"]

_DETERMINERS = {"a": 1, **{w: n for n, w in NUMBER_WORDS.items()}}
_PLURALS = {plural(s): s for s in SHAPES}
_RELATION_WORDS = {tuple(p.split()): r for r, p in RELATION_PHRASES.items()}
_VOCABULARY = frozenset(
    [*_DETERMINERS, *SIZES, *COLOUR_NAMES, *SHAPES, *_PLURALS, "shapes", "and", "no", "than", ",", "all", "of", "them"]
    + [f"{c}" for c in COMPARISONS]
    + [w for p in RELATION_PHRASES.values() for w in p.split()]
)


def tokenize(text: str) -> list[str]:
    """Lower-case ``text``, drop one trailing full stop, split off commas and split on whitespace.

    Examples:
        >>> tokenize("A circle, a Square and two triangles, all of them red.")[:4]
        ['a', 'circle', ',', 'a']
    """
    text = text.strip().lower()
    if text.endswith("."):
        text = text[:-1]
    return text.replace(",", " , ").split()


def _noun_phrase(o: ObjectSpec, one: str = "a", with_colour: bool = True) -> str:
    words = [one if o.count == 1 else NUMBER_WORDS[o.count]]
    if o.size is not None:
        words.append(o.size)
    if with_colour:
        words.append(o.colour)
    words.append(o.shape if o.count == 1 else plural(o.shape))
    return " ".join(words)


def describe(spec: SceneSpec) -> str:
    """Write a scene specification as the English prompt of its template.

    Examples:
        >>> describe(SceneSpec("negation", (ObjectSpec("square", "blue"),), absent=Absence(shape="circle")))
        'a blue square and no circles'
    """
    if not isinstance(spec, SceneSpec):
        raise InputError(f"spec: expected a SceneSpec, got {type(spec).__name__}")
    objs, t = spec.objects, spec.template
    if t in ("single", "counting"):
        return _noun_phrase(objs[0], one="one" if t == "counting" else "a")
    if t == "conjunction":
        return f"{_noun_phrase(objs[0])} and {_noun_phrase(objs[1])}"
    if t == "relation":
        return f"{_noun_phrase(objs[0])} {RELATION_PHRASES[spec.relation or '']} {_noun_phrase(objs[1])}"
    if t == "comparison":
        return f"{_noun_phrase(objs[0])} {spec.comparison} than {_noun_phrase(objs[1])}"
    if t == "negation":
        absent = spec.absent or Absence()
        noun = plural(absent.shape) if absent.shape else "shapes"
        negated = f"{absent.colour} {noun}" if absent.colour else noun
        return f"{_noun_phrase(objs[0])} and no {negated}"
    nps = [_noun_phrase(o, with_colour=False) for o in objs]  # universal
    listed = nps[0] if len(nps) == 1 else ", ".join(nps[:-1]) + " and " + nps[-1]
    return f"{listed}, all of them {objs[0].colour}"


@dataclass
class _NP:
    count: int
    one_word: str
    size: str | None
    colour: str | None
    shape: str
    start: int


class _Parser:
    def __init__(self, text: str, tokens: list[str]) -> None:
        self.text, self.tokens, self.pos = text, tokens, 0

    def peek(self, k: int = 0) -> str | None:
        i = self.pos + k
        return self.tokens[i] if i < len(self.tokens) else None

    def fail(self, expected: str, at: int | None = None) -> InputError:
        at = self.pos if at is None else at
        if at >= len(self.tokens):
            return InputError(f"prompt {self.text!r}: ended early; expected {expected}")
        rest = " ".join(self.tokens[at:]).replace(" ,", ",")
        return InputError(f"prompt {self.text!r}: unparsed words {rest!r}; expected {expected}")

    def take(self, *words: str) -> None:
        for w in words:
            if self.peek() != w:
                raise self.fail(repr(" ".join(words)).replace(" ,", ","))
            self.pos += 1

    def noun_phrase(self) -> _NP:
        start, det = self.pos, self.peek()
        if det not in _DETERMINERS:
            raise self.fail("'a' or a number word (one to four)")
        self.pos += 1
        count = _DETERMINERS[det]
        size = colour = None
        if self.peek() in SIZES:
            size = self.tokens[self.pos]
            self.pos += 1
        if self.peek() in COLOUR_NAMES:
            colour = self.tokens[self.pos]
            self.pos += 1
        noun = self.peek()
        if count == 1 and noun in SHAPES:
            shape = noun
        elif count > 1 and noun in _PLURALS:
            shape = _PLURALS[noun]
        else:
            number = "a singular shape (circle, square, triangle)" if count == 1 else "a plural shape (circles, ...)"
            raise self.fail(number + ("" if colour else " or a colour") + ("" if size or colour else " or a size"))
        self.pos += 1
        return _NP(count, det, size, colour, shape, start)

    def end(self) -> None:
        if self.pos != len(self.tokens):
            raise self.fail("the end of the prompt")

    def obj(self, np: _NP, colour: str | None = None) -> ObjectSpec:
        if np.colour is None and colour is None:
            raise self.fail("a colour before the shape", at=np.start)
        return ObjectSpec(np.shape, colour or np.colour or "", np.count, np.size)

    def relation(self) -> str | None:
        for words, rel in _RELATION_WORDS.items():
            if tuple(self.tokens[self.pos : self.pos + len(words)]) == words:
                self.pos += len(words)
                return rel
        return None

    def negated(self) -> Absence:
        colour = None
        if self.peek() in COLOUR_NAMES:
            colour = self.tokens[self.pos]
            self.pos += 1
        noun = self.peek()
        if noun != "shapes" and noun not in _PLURALS:
            raise self.fail("a plural shape or 'shapes' after 'no'" + ("" if colour else " (or a colour)"))
        self.pos += 1
        return Absence(colour=colour, shape=_PLURALS.get(noun or ""))

    def universal(self, first: _NP) -> SceneSpec:
        nps = [first]
        while self.peek() == "," and self.peek(1) != "all":
            self.pos += 1
            nps.append(self.noun_phrase())
        if self.peek() == "and":
            self.pos += 1
            nps.append(self.noun_phrase())
        for np in nps:
            if np.colour is not None:
                raise self.fail("no colour inside a list that ends with ', all of them <colour>'", at=np.start)
        self.take(",", "all", "of", "them")
        colour = self.peek()
        if colour not in COLOUR_NAMES:
            raise self.fail("a colour after 'all of them'")
        self.pos += 1
        self.end()
        return SceneSpec("universal", tuple(self.obj(np, colour) for np in nps))

    def prompt(self) -> SceneSpec:
        first = self.noun_phrase()
        if first.colour is None:
            if self.peek() not in (",", "and"):
                raise self.fail("a colour before the shape", at=first.start)
            return self.universal(first)
        a = self.obj(first)
        rel = self.relation()
        if rel is not None:
            b = self.obj(self.noun_phrase())
            self.end()
            return SceneSpec("relation", (a, b), relation=rel)
        if self.peek() in COMPARISONS:
            cmp = self.tokens[self.pos]
            self.pos += 1
            self.take("than")
            b = self.obj(self.noun_phrase())
            self.end()
            return SceneSpec("comparison", (a, b), comparison=cmp)
        if self.peek() == "and" and self.peek(1) == "no":
            self.pos += 2
            absent = self.negated()
            self.end()
            return SceneSpec("negation", (a,), absent=absent)
        if self.peek() == "and":
            self.pos += 1
            b = self.obj(self.noun_phrase())
            self.end()
            return SceneSpec("conjunction", (a, b))
        if self.peek() is not None:
            raise self.fail("'and', a relation ('to the left of', 'above', ...), 'bigger than' or the end")
        template = "counting" if first.count > 1 or first.one_word == "one" else "single"
        return SceneSpec(template, (a,))


@functools.lru_cache(maxsize=65536)
def _parse(text: str) -> SceneSpec:
    tokens = tokenize(text)
    if not tokens:
        raise InputError(f"prompt: expected a non-empty prompt, got {text!r}")
    unknown = list(dict.fromkeys(t for t in tokens if t not in _VOCABULARY))
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(_VOCABULARY), n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(
            f"prompt {text!r}: unknown words {', '.join(map(repr, unknown))} (not in the ShapesWorld grammar){hint}"
        )
    parser = _Parser(text, tokens)
    try:
        return parser.prompt()
    except InputError as err:
        if str(err).startswith(f"prompt {text!r}"):
            raise
        raise InputError(f"prompt {text!r}: {err}") from None


def parse_prompt(text: str) -> SceneSpec:
    """Parse a ShapesWorld prompt into its meaning (results are cached).

    Args:
        text: a prompt of the grammar (see the module docstring).

    Returns:
        The :class:`~.spec.SceneSpec` it means.

    Raises:
        InputError: ``text`` is not a string, is empty, has unknown words, has words the grammar cannot parse (the
            message quotes them) or asks for an impossible scene (e.g. "a blue square and no squares").

    Examples:
        >>> parse_prompt("a red circle bigger than a blue square").comparison
        'bigger'
        >>> parse_prompt("a purple circle")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        noisyclip_metrics.errors.InputError: prompt 'a purple circle': unknown words 'purple' (not in the ...)
    """
    if not isinstance(text, str):
        raise InputError(f"prompt: expected a str, got {type(text).__name__}")
    return _parse(text)
