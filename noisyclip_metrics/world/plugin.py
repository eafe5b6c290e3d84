"""The built-in world as a plugin: everything the core knows of ShapesWorld comes through here.

``pyproject.toml`` installs :func:`register` under the entry point group
:data:`~noisyclip_metrics.plugins.ENTRY_POINT_GROUP`, exactly as a third-party package would. It registers:

* the ``world:`` model ids (:mod:`.models`) and the defaults of an evaluation of a world pipeline (the world's
  sampler, the ``world`` benchmark, the ``world-oracle`` judge, the world CLIP and NoisyCLIPs as the scorers' models);
* the benchmark format ``world`` (the spec is ``adapters/world.yaml``): prompts generated from the grammar;
* the judge ``world-oracle``: the exact oracle, which reads grammar prompts only and says so before a run starts;
* the hard-negative source ``world`` for NoisyCLIP training;
* the ``noisyclip world`` subcommand (build, list, info).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from noisyclip_metrics.errors import InputError

__all__ = ["WorldOracleJudge", "load_world_benchmark", "register"]

#: Which world model each scorer model resource takes by default (world ids mirror the scorer names).
WORLD_SCORER_MODELS = {"noisyclip": "world:noisyclip", "noisyclip-x0": "world:noisyclip-x0", "clip": "world:clip"}


class WorldOracleJudge:
    """The built-in world's oracle: TIFA score (fraction of questions answered right) and "fully aligned"."""

    name = "world-oracle"

    def judge_detailed(self, prompts: Sequence[str], images: Any) -> list[tuple[float, bool | None]]:
        from noisyclip_metrics.world.oracle import judge_batch

        results = judge_batch(images.detach().cpu().float().numpy(), list(prompts))
        return [(float(r.score), bool(r.aligned)) for r in results]

    def judge(self, prompts: Sequence[str], images: Any) -> list[float]:
        return [s for s, _ in self.judge_detailed(prompts, images)]

    def check_prompts(self, prompts: Sequence[Any]) -> None:
        """Raise :class:`InputError` for a prompt outside the grammar (called before a run writes anything)."""
        from noisyclip_metrics.world.grammar import parse_prompt

        for p in prompts:
            try:
                parse_prompt(p.text)
            except InputError as err:
                raise InputError(
                    f"benchmark: prompt {p.id} cannot be judged by the world oracle, which reads ShapesWorld "
                    f"grammar prompts only ({err}); pass --judge clip-final or a judgments file"
                ) from None


def load_world_benchmark(spec: Any, source: Any, *, n: int | None = None, seed: int = 0) -> list[Any]:
    """The built-in world's benchmark prompts, generated (no files; ``load_benchmark("world")`` needs no path).

    Args:
        n: ``n`` prompts (all 400 by default), stratified by template; a prompt keeps its id in every subset.
        seed: the split's seed (0 = the benchmark the shipped world models are evaluated on).
    """
    from noisyclip_metrics.world.benchmark import world_promptset

    return list(world_promptset(n, seed))


load_world_benchmark.needs_files = False  # type: ignore[attr-defined]  # read by load_benchmark: path may be None


def _ids() -> dict[str, str]:
    from noisyclip_metrics.world.assets import WORLD_IDS

    return {name: WORLD_IDS.get(name).kind for name in WORLD_IDS}


def _load(name: str) -> Any:
    from noisyclip_metrics.world.assets import load_world

    return load_world(name)


def _source_paths(name: str) -> tuple[Any, ...]:
    from noisyclip_metrics.world.assets import asset_paths

    return asset_paths(name)


def _run_defaults(name: str) -> Any:
    from noisyclip_metrics.plugins import RunDefaults
    from noisyclip_metrics.world.assets import world_sampler

    sampler = world_sampler()
    return RunDefaults(
        num_inference_steps=sampler.get("num_inference_steps"),
        guidance_scale=sampler.get("guidance_scale"),
        benchmark="world",
        judge="world-oracle",
        models=WORLD_SCORER_MODELS,
    )


def _oracle(**_: Any) -> WorldOracleJudge:
    return WorldOracleJudge()


def _world_negatives(prompt: str) -> list[str]:
    from noisyclip_metrics.world.negatives import world_negatives

    return world_negatives(prompt)


def register() -> None:
    """Register the world with the core's registries (the entry point; idempotent)."""
    from noisyclip_metrics.evaluation.benchmarks.adapters import LOADERS
    from noisyclip_metrics.evaluation.judges.protocol import JUDGES
    from noisyclip_metrics.plugins import ID_SCHEMES, IdScheme, register_id_scheme
    from noisyclip_metrics.training.negatives import NEGATIVES
    from noisyclip_metrics.world import cli  # noqa: F401  (registers the `noisyclip world` subcommand)

    if "world" not in ID_SCHEMES:
        register_id_scheme(
            IdScheme(
                prefix="world",
                ids=_ids,
                load_model=_load,
                load_pipeline=_load,
                source_paths=_source_paths,
                run_defaults=_run_defaults,
            )
        )
    LOADERS.register("world", load_world_benchmark)
    JUDGES.register("world-oracle", _oracle)
    NEGATIVES.register("world", _world_negatives)
