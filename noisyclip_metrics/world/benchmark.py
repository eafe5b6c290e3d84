"""The world's benchmark split as a :class:`~noisyclip_metrics.evaluation.benchmarks.PromptSet` (the adapter interface
of the
public benchmarks), with GenAI-Bench-style skill tags and the template as the category."""

from __future__ import annotations

from noisyclip_metrics.evaluation.benchmarks.promptset import Prompt, PromptSet
from noisyclip_metrics.world.splits import make_split

__all__ = ["WORLD_BENCHMARK", "fresh_world_prompts", "world_promptset"]

WORLD_BENCHMARK = "world"


def world_promptset(n: int | None = None, seed: int = 0) -> PromptSet:
    """The first ``n`` prompts of the world benchmark (all 400 by default), stratified by template.

    Prompt ids are ``w000``... in the order of the whole benchmark, so a prompt keeps its id in every subset;
    ``extra["heldout"]`` tells whether a prompt uses a held-out composition.

    Examples:
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
                id=ids[p.text],
                text=p.text,
                skills=p.skills,
                source=WORLD_BENCHMARK,
                category=p.template,
                split="benchmark",
                extra={"heldout": split.touches_heldout(p)},
            )
            for p in split.benchmark(n)
        ),
    )


def fresh_world_prompts(n: int, exclude: frozenset[str] | set[str] = frozenset(), seed: int = 0) -> list[str]:
    """``n`` prompts drawn like the benchmark's (same template mix, held-out compositions and, where the grammar has
    enough of them, held-out share) that are not benchmark prompts and not in ``exclude`` (e.g. the prompts a scorer
    was trained on): the prompts of a fresh-prompt replicate. Deterministic for (``n``, ``exclude``, ``seed``).

    Examples:
        >>> fresh = fresh_world_prompts(20)
        >>> len(set(fresh)), bool(set(fresh) & set(world_promptset().texts))
        (20, False)
    """
    import numpy as np

    from noisyclip_metrics.errors import InputError
    from noisyclip_metrics.world.grammar import describe
    from noisyclip_metrics.world.sampling import sample_spec
    from noisyclip_metrics.world.splits import _is_heldout_slot, _quotas, interleave
    from noisyclip_metrics.world.vocab import TEMPLATES

    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InputError(f"n: expected an int >= 1, got {n!r}")
    split = make_split(seed=seed)
    taken = set(split.pool_texts) | set(exclude)
    rngs = {t: np.random.default_rng([seed, 43, TEMPLATES.index(t)]) for t in TEMPLATES}
    per_template: dict[str, list[str]] = {t: [] for t in TEMPLATES}

    def draw(template: str) -> bool:
        """Add one fresh prompt of ``template``: the benchmark's held-out share where the grammar has enough of
        them, else whatever kind is left; False when the template has no fresh prompt left."""
        found = per_template[template]
        want = _is_heldout_slot(len(found), split.config.heldout_share)
        for i in range(4000):
            spec = sample_spec(template, rngs[template])
            text = describe(spec)
            if text not in taken and (split.touches_heldout(spec) == want or i >= 200):
                taken.add(text)
                found.append(text)
                return True
        return False

    quotas = _quotas(split.config.benchmark_mix.probabilities(), n)
    for template, quota in quotas.items():
        while len(per_template[template]) < quota and draw(template):
            pass
    # a template out of fresh prompts (``single`` once training prompts are excluded) leaves its share to the others
    open_templates = [t for t in quotas if quotas[t] and len(per_template[t]) == quotas[t]]
    while sum(map(len, per_template.values())) < n and open_templates:
        for t in list(open_templates):
            if sum(map(len, per_template.values())) < n and not draw(t):
                open_templates.remove(t)
    if sum(map(len, per_template.values())) < n:
        raise InputError(f"n: only {sum(map(len, per_template.values()))} fresh prompts exist, expected {n}")
    return interleave({t: v for t, v in per_template.items() if v})
