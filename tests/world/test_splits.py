"""Tests of ShapesWorld splits: determinism, held-out compositions, benchmark stratification, disjointness."""

from __future__ import annotations

import collections
import math

import pytest

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.world import (
    COLOUR_NAMES,
    SHAPES,
    TEMPLATES,
    SplitConfig,
    TemplateMix,
    benchmark_prompts,
    heldout_compositions,
    make_split,
    train_prompts,
)
from noisyclip_metrics.world.vocab import converse_relation


def test_split_is_deterministic_given_the_seed() -> None:
    build = make_split.__wrapped__  # bypass the cache
    a, b = build(0), build(0)
    assert a.heldout == b.heldout
    assert [p.text for p in a.benchmark()] == [p.text for p in b.benchmark()]
    assert [p.text for p in a.train(300, seed=2)] == [p.text for p in b.train(300, seed=2)]
    assert [p.text for p in a.train(300, seed=2)] != [p.text for p in a.train(300, seed=3)]
    others = [build(s) for s in (1, 2, 3)]
    assert any(o.heldout != a.heldout for o in others)
    assert any({p.text for p in o.benchmark()} != {p.text for p in a.benchmark()} for o in others)


def test_heldout_compositions() -> None:
    for seed in range(5):
        h = heldout_compositions(seed)
        pairs = h.colour_shapes
        assert len(pairs) == 3
        assert len({c for c, _ in pairs}) == 3 and len({s for _, s in pairs}) == 3
        assert all(c in COLOUR_NAMES and s in SHAPES for c, s in pairs)
        assert len(h.relations) == 6
        for a, rel, b in h.relations:
            assert a != b and (b, converse_relation(rel), a) in h.relations
    with pytest.raises(InputError, match="n_pairs"):
        heldout_compositions(0, n_pairs=4)


def test_benchmark_is_large_distinct_and_stratified() -> None:
    split = make_split(0)
    bench = split.benchmark()
    assert len(bench) == 400 and len({p.text for p in bench}) == 400
    probs = SplitConfig().benchmark_mix.probabilities()
    counts = collections.Counter(p.template for p in bench)
    for t in TEMPLATES:
        assert abs(counts[t] - probs[t] * 400) <= 1, (t, counts[t])
        share = sum(split.touches_heldout(p) for p in bench if p.template == t) / counts[t]
        assert 0.2 <= share <= 0.3, (t, share)
    skills = collections.Counter(s for p in bench for s in p.skills)
    for skill in ("spatial relation", "counting", "comparison", "negation", "universal"):
        assert skills[skill] >= 40, skills
    # smaller benchmarks are stratified prefixes of larger ones
    small = split.benchmark(300)
    assert len(small) == 300 and {p.text for p in small} <= {p.text for p in bench}
    small_counts = collections.Counter(p.template for p in small)
    for t in TEMPLATES:
        assert abs(small_counts[t] - probs[t] * 300) <= 1
    assert [p.text for p in benchmark_prompts(50, seed=0)] == [p.text for p in split.benchmark(50)]
    with pytest.raises(InputError, match="pool size"):
        split.benchmark(401)


def test_train_excludes_benchmark_and_heldout_compositions() -> None:
    split = make_split(0)
    train = split.train(3000, seed=0)
    bench_texts = {p.text for p in split.benchmark()}
    assert not bench_texts & {p.text for p in train}
    for p in train:
        assert not any(o.key in split.heldout.colour_shapes for o in p.spec.objects), p.text
        a = p.spec.absent
        if a is not None and a.colour and a.shape:
            assert (a.colour, a.shape) not in split.heldout.colour_shapes
        if p.spec.relation is not None:
            triple = (p.spec.objects[0].shape, p.spec.relation, p.spec.objects[1].shape)
            assert triple not in split.heldout.relations, p.text
    # every colour and every shape still occurs in training, and each template follows the train mix
    assert {o.colour for p in train for o in p.spec.objects} == set(COLOUR_NAMES)
    assert {o.shape for p in train for o in p.spec.objects} == set(SHAPES)
    probs = SplitConfig().train_mix.probabilities()
    counts = collections.Counter(p.template for p in train)
    for t in TEMPLATES:
        assert abs(counts[t] / 3000 - probs[t]) < 4 * math.sqrt(probs[t] / 3000) + 0.005
    # the benchmark does use the held-out compositions
    bench = split.benchmark()
    assert any(o.key in split.heldout.colour_shapes for p in bench for o in p.spec.objects)
    assert any(
        (p.spec.objects[0].shape, p.spec.relation, p.spec.objects[1].shape) in split.heldout.relations
        for p in bench
        if p.spec.relation
    )


def test_train_prompts_function() -> None:
    a = train_prompts(100, seed=1)
    assert [p.text for p in a] == [p.text for p in make_split(0).train(100, seed=1)]
    other = train_prompts(100, seed=1, split_seed=1)
    assert not {p.text for p in other} & {p.text for p in benchmark_prompts(seed=1)}
    with pytest.raises(InputError, match="n"):
        train_prompts(-3)


def test_config_validation_and_capacity() -> None:
    with pytest.raises(InputError, match="heldout_share"):
        SplitConfig(heldout_share=1.5)
    with pytest.raises(InputError, match="benchmark_size"):
        SplitConfig(benchmark_size=0)
    only_single = TemplateMix(single=1, conjunction=0, counting=0, relation=0, comparison=0, negation=0, universal=0)
    with pytest.raises(InputError, match="too few distinct"):
        make_split(0, SplitConfig(benchmark_mix=only_single))
    with pytest.raises(InputError, match="seed"):
        make_split(-1)
    custom = make_split(0, SplitConfig(benchmark_size=100, heldout_share=0.5))
    assert len(custom.benchmark()) == 100
