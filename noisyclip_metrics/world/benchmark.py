"""The world's benchmark split as a :class:`~noisyclip_metrics.benchmarks.PromptSet` (the adapter interface of the
public benchmarks), with GenAI-Bench-style skill tags and the template as the category."""

from __future__ import annotations

from ..benchmarks.promptset import Prompt, PromptSet
from .splits import make_split

__all__ = ["world_promptset", "WORLD_BENCHMARK"]

WORLD_BENCHMARK = "world"


def world_promptset(n: int | None = None, seed: int = 0) -> PromptSet:
    """The first ``n`` prompts of the world benchmark (all 400 by default), stratified by template.

    Prompt ids are ``w000``... in benchmark order; ``extra["heldout"]`` tells whether a prompt uses a held-out
    composition.

    Example:
        >>> ps = world_promptset(10)
        >>> len(ps), ps[0].id, ps[0].source
        (10, 'w000', 'world')
    """
    split = make_split(seed=seed)
    prompts = split.benchmark(n)
    return PromptSet(
        WORLD_BENCHMARK,
        tuple(
            Prompt(
                id=f"w{i:03d}", text=p.text, skills=p.skills, source=WORLD_BENCHMARK, category=p.template,
                split="benchmark", extra={"heldout": split.touches_heldout(p)},
            )  # fmt: skip
            for i, p in enumerate(prompts)
        ),
    )
