"""The built-in world's benchmark through the same adapter interface as the public benchmarks."""

from __future__ import annotations

from collections import Counter

import pytest

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.evaluation.benchmarks import benchmark_spec, list_benchmarks, load_benchmark
from noisyclip_metrics.world.benchmark import world_promptset


def test_world_is_a_registered_benchmark_without_files():
    assert "world" in list_benchmarks()
    spec = benchmark_spec("world")
    assert spec.format == "world" and spec.files == () and spec.license == "Apache-2.0"


def test_load_world_without_path_matches_world_promptset():
    prompts = load_benchmark("world")
    spec = benchmark_spec("world")
    assert prompts.name == "world" and len(prompts) == spec.expected["prompts"]
    assert prompts.ids == world_promptset().ids and prompts.texts == world_promptset().texts
    assert Counter(p.category for p in prompts) == spec.expected["categories"]
    for prompt_id, text in spec.expected["entries"].items():
        assert prompts[prompt_id].text == text
    assert set(prompts.skills()) == set(spec.skills)


def test_world_options_and_prefix_property():
    small = load_benchmark("world", n=12)
    full = load_benchmark("world")
    assert len(small) == 12 and all(full[p.id].text == p.text for p in small)  # ids are stable across subsets
    assert load_benchmark("world", n=5, seed=1).texts == world_promptset(5, seed=1).texts
    with pytest.raises(InputError, match="did you mean 'seed'"):
        load_benchmark("world", sed=1)


def test_file_formats_still_need_a_path():
    with pytest.raises(InputError, match=r"path: drawbench reads its prompts from files.*To obtain them"):
        load_benchmark("drawbench")
