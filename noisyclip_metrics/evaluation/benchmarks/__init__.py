"""Benchmark adapters: declarative specs (``adapters/*.yaml``) and loaders into one :class:`PromptSet`.

Examples:
    >>> from noisyclip_metrics.evaluation.benchmarks import list_benchmarks, benchmark_spec
    >>> sorted(list_benchmarks())[:3]
    ['drawbench', 'genai-bench-1600', 'genai-bench-527']
    >>> benchmark_spec("geneval").categories[:2]
    ('single_object', 'two_object')

Typical use (offline, from local copies)::

    prompts = load_benchmark("genai-bench-1600", "data/GenAI-Bench-1600")   # folder with the two JSON files
    hard = prompts.filter(skill="negation")
"""

from __future__ import annotations

from noisyclip_metrics.evaluation.benchmarks import loaders as _loaders  # noqa: F401  (registers the loader functions)
from noisyclip_metrics.evaluation.benchmarks.adapters import (
    LOADERS,
    BenchmarkSpec,
    DownloadSpec,
    FileSpec,
    Source,
    benchmark_loader,
    benchmark_spec,
    list_benchmarks,
    load_benchmark,
    loader_options,
    parse_spec,
    register_benchmark,
)
from noisyclip_metrics.evaluation.benchmarks.download import download_benchmark
from noisyclip_metrics.evaluation.benchmarks.promptset import (
    ADVANCED_SKILLS,
    BASIC_SKILLS,
    SKILL_GROUPS,
    SKILLS,
    Prompt,
    PromptSet,
    with_skill_groups,
)

__all__ = [
    "ADVANCED_SKILLS",
    "BASIC_SKILLS",
    "LOADERS",
    "SKILLS",
    "SKILL_GROUPS",
    "BenchmarkSpec",
    "DownloadSpec",
    "FileSpec",
    "Prompt",
    "PromptSet",
    "Source",
    "benchmark_loader",
    "benchmark_spec",
    "download_benchmark",
    "list_benchmarks",
    "load_benchmark",
    "loader_options",
    "parse_spec",
    "register_benchmark",
    "with_skill_groups",
]
