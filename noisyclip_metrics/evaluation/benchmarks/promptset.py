"""Prompts of a benchmark as one immutable, filterable collection.

A :class:`Prompt` has a benchmark-unique ``id``, its ``text``, ``skills`` from the shared vocabulary
:data:`SKILLS` (GenAI-Bench's skill names plus a few that other benchmarks need), the ``source`` benchmark, the
benchmark's own ``category`` label and ``split``, and ``extra`` fields kept verbatim from the file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, overload

from noisyclip_metrics.errors import InputError, UnknownNameError
from noisyclip_metrics.io.safepath import check_name
from noisyclip_metrics.registry import did_you_mean

__all__ = ["ADVANCED_SKILLS", "BASIC_SKILLS", "SKILLS", "SKILL_GROUPS", "Prompt", "PromptSet", "with_skill_groups"]

BASIC_SKILLS: tuple[str, ...] = ("attribute", "scene", "spatial relation", "action relation", "part relation")
"""GenAI-Bench's basic compositional skills."""
ADVANCED_SKILLS: tuple[str, ...] = ("counting", "comparison", "differentiation", "negation", "universal")
"""GenAI-Bench's advanced compositional skills."""
SKILL_GROUPS: tuple[str, ...] = ("basic", "advanced")
"""GenAI-Bench's two prompt groups: basic skills only, or at least one advanced skill."""
SKILLS: tuple[str, ...] = (
    *BASIC_SKILLS,
    *ADVANCED_SKILLS,
    *SKILL_GROUPS,
    "object",
    "text rendering",
    "style",
)
"""The skill vocabulary shared by all benchmarks: GenAI-Bench's skills and group tags, plus ``object`` (object
presence, GenEval), ``text rendering`` (DrawBench Text, PartiPrompts Writing & Symbols) and ``style``."""


def with_skill_groups(skills: Sequence[str]) -> tuple[str, ...]:
    """``skills`` plus GenAI-Bench's group tag: ``advanced`` when any advanced skill is present, otherwise ``basic``
    when a basic skill or ``object`` is. Tags that already name a group (GenAI-Bench's own files) are kept as they
    are, and so are prompts with neither kind of skill (``style`` or ``text rendering`` alone).

    Examples:
        >>> with_skill_groups(("object", "spatial relation"))
        ('object', 'spatial relation', 'basic')
        >>> with_skill_groups(("object", "negation"))
        ('object', 'negation', 'advanced')
        >>> with_skill_groups(("style",)), with_skill_groups(("counting", "basic"))
        (('style',), ('counting', 'basic'))
    """
    tags = tuple(skills)
    if any(t in SKILL_GROUPS for t in tags):
        return tags
    if any(t in ADVANCED_SKILLS for t in tags):
        return (*tags, "advanced")
    if any(t in BASIC_SKILLS or t == "object" for t in tags):
        return (*tags, "basic")
    return tags


@dataclass(frozen=True)
class Prompt:
    """One benchmark prompt.

    Attributes:
        id: unique within its benchmark (e.g. GenAI-Bench ``"00001"``, TIFA ``"coco_301091"``); usable as a file
            name (no ``/`` or ``\\``, not ``..``, no control characters, at most 200 bytes), since ids name files.
        text: the prompt given to the generator.
        skills: tags from :data:`SKILLS`, sorted.
        source: the benchmark name (``"genai-bench-527"``, ...).
        category: the benchmark's own label (DrawBench category, GenEval tag, T2I-CompBench category...).
        split: the benchmark split (``"train"``, ``"val"``...), when the benchmark has splits.
        extra: other fields from the file, read-only (not part of equality or hashing).
    """

    id: str
    text: str
    skills: tuple[str, ...] = ()
    source: str = ""
    category: str | None = None
    split: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise InputError(f"prompt id must be a non-empty string, got {self.id!r}")
        check_name(self.id, "prompt id")  # ids name files (--save-images): no separators, '..', NUL, huge ids
        if not isinstance(self.text, str):
            raise InputError(f"prompt {self.id!r}: text must be a string, got {type(self.text).__name__}")
        unknown = [s for s in self.skills if s not in SKILLS]
        if unknown:
            raise InputError(
                f"prompt {self.id!r}: unknown skill {unknown[0]!r}{did_you_mean(unknown[0], SKILLS)} "
                f"Known: {', '.join(SKILLS)}"
            )
        object.__setattr__(self, "skills", tuple(sorted(set(self.skills))))
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    def to_record(self) -> dict[str, Any]:
        """Plain dictionary (``skills`` as a list, ``extra`` as a dict) for JSON / CSV export."""
        return {
            "id": self.id,
            "text": self.text,
            "skills": list(self.skills),
            "source": self.source,
            "category": self.category,
            "split": self.split,
            "extra": dict(self.extra),
        }


@dataclass(frozen=True)
class PromptSet:
    """An ordered, immutable set of prompts with unique ids.

    Examples:
        >>> ps = PromptSet("demo", (Prompt("1", "a red cube", ("attribute",)), Prompt("2", "two cats", ("counting",))))
        >>> len(ps), ps["2"].text, [p.id for p in ps.filter(skill="counting")]
        (2, 'two cats', ['2'])
        >>> ps.filter(skill="countng")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        noisyclip_metrics.errors.UnknownNameError: unknown skill 'countng'; did you mean 'counting'? ...
    """

    name: str
    prompts: tuple[Prompt, ...]
    _index: Mapping[str, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        prompts = tuple(self.prompts)
        index: dict[str, int] = {}
        for k, prompt in enumerate(prompts):
            if not isinstance(prompt, Prompt):
                raise InputError(f"{self.name}: item {k} is a {type(prompt).__name__}, not a Prompt")
            if prompt.id in index:
                raise InputError(f"{self.name}: duplicate prompt id {prompt.id!r} (items {index[prompt.id]} and {k})")
            index[prompt.id] = k
        object.__setattr__(self, "prompts", prompts)
        object.__setattr__(self, "_index", MappingProxyType(index))

    def __len__(self) -> int:
        return len(self.prompts)

    def __iter__(self) -> Iterator[Prompt]:
        return iter(self.prompts)

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self._index

    @overload
    def __getitem__(self, key: int) -> Prompt: ...

    @overload
    def __getitem__(self, key: str) -> Prompt: ...

    def __getitem__(self, key: int | str) -> Prompt:
        """A prompt by position (int) or by id (str)."""
        if isinstance(key, str):
            try:
                return self.prompts[self._index[key]]
            except KeyError:
                raise UnknownNameError(
                    f"{self.name}: unknown prompt id {key!r}{did_you_mean(key, list(self._index))}"
                ) from None
        return self.prompts[key]

    @property
    def ids(self) -> list[str]:
        """Prompt ids in order."""
        return [p.id for p in self.prompts]

    @property
    def texts(self) -> list[str]:
        """Prompt texts in order."""
        return [p.text for p in self.prompts]

    def skills(self) -> list[str]:
        """Skills present, in vocabulary order."""
        present = {s for p in self.prompts for s in p.skills}
        return [s for s in SKILLS if s in present]

    def categories(self) -> list[str]:
        """Distinct categories in order of first appearance."""
        return list(dict.fromkeys(p.category for p in self.prompts if p.category is not None))

    def splits(self) -> list[str]:
        """Distinct splits in order of first appearance."""
        return list(dict.fromkeys(p.split for p in self.prompts if p.split is not None))

    def filter(
        self,
        *,
        skill: str | None = None,
        category: str | None = None,
        split: str | None = None,
        where: Callable[[Prompt], bool] | None = None,
    ) -> PromptSet:
        """The prompts matching every given condition, in order.

        Raises:
            UnknownNameError: ``skill`` outside :data:`SKILLS`, or a ``category`` / ``split`` this set does not have.
        """
        if skill is not None and skill not in SKILLS:
            raise UnknownNameError(f"unknown skill {skill!r}{did_you_mean(skill, SKILLS)} Known: {', '.join(SKILLS)}")
        for kind, value, present in (("category", category, self.categories()), ("split", split, self.splits())):
            if value is not None and value not in present:
                raise UnknownNameError(
                    f"{self.name} has no {kind} {value!r}{did_you_mean(value, present)} Present: {', '.join(present)}"
                )
        kept = tuple(
            p
            for p in self.prompts
            if (skill is None or skill in p.skills)
            and (category is None or p.category == category)
            and (split is None or p.split == split)
            and (where is None or where(p))
        )
        return PromptSet(self.name, kept)

    def to_records(self) -> list[dict[str, Any]]:
        """One plain dictionary per prompt (see :meth:`Prompt.to_record`)."""
        return [p.to_record() for p in self.prompts]
