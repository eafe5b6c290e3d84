"""The world's benchmark split as a :class:`~noisyclip_metrics.benchmarks.PromptSet` (the adapter interface of the
public benchmarks), with GenAI-Bench-style skill tags and the template as the category."""

from __future__ import annotations

from ..benchmarks.promptset import Prompt, PromptSet
from .splits import make_split

__all__ = ["world_promptset", "WORLD_BENCHMARK"]

WORLD_BENCHMARK = "world"


def world_promptset(n: int | None = None, seed: int = 0) -> PromptSet:
    """The first ``n`` prompts of the world benchmark (all 400 by default), stratified by template.

    Prompt ids are ``w000``... in the order of the whole benchmark, so a prompt keeps its id in every subset;
    ``extra["heldout"]`` tells whether a prompt uses a held-out composition.

    Example:
        >>> ps = world_promptset(10)
        >>> len(ps), ps[0].source, all(world_promptset()[p.id].text == p.text for p in ps)
        (10, 'world', True)
    """
    split = make_split(seed=seed)
    ids = {p.text: f"w{i:03d}" for i, p in enumerate(split.benchmark())}
    return PromptSet(
        WORLD_BENCHMARK,
        tuple(
            Prompt(
                id=ids[p.text], text=p.text, skills=p.skills, source=WORLD_BENCHMARK, category=p.template,
                split="benchmark", extra={"heldout": split.touches_heldout(p)},
            )  # fmt: skip
            for p in split.benchmark(n)
        ),
    )
