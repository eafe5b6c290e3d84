"""Configuration of a world build: every stage's settings in one frozen dataclass, with named presets.

``full`` is what the shipped weights were built with; ``ci`` runs the same code path with tiny sizes in a few
minutes (tests and CI).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.registry import Registry
from noisyclip_metrics.world.build.clip import ClipStageConfig
from noisyclip_metrics.world.build.unet import UNET_MODELS, UnetStageConfig
from noisyclip_metrics.world.build.vae import VaeStageConfig
from noisyclip_metrics.world.config import SamplerConfig

__all__ = ["PRESETS", "NoisyRunConfig", "NoisyStageConfig", "SamplerConfig", "WorldBuildConfig"]


@dataclass(frozen=True)
class NoisyRunConfig:
    """One NoisyCLIP fine-tuning run of the ``noisyclip`` stage, shipped as ``world:<name>``.

    ``read`` is what the image tower learns to read (``latents``: the paper's NoisyCLIP; ``x0``: the preview of the
    x̂0 estimate); ``target`` and ``step_sampling`` are the training target and step window
    (:mod:`noisyclip_metrics.training`); ``labels`` the oracle's labels of the training trajectories that a target
    using labels gets (``aligned``: 1/0 fully aligned; ``tifa``: the TIFA score, graded).
    """

    name: str
    read: str = "latents"
    target: str = "distill"
    labels: str = "aligned"
    step_sampling: str = "window:4-10"
    steps: int = 1200
    train_batch_size: int = 128
    lr: float = 3e-4
    train_preview: bool = False

    def __post_init__(self) -> None:
        if self.labels not in LABEL_FILES:
            raise InputError(f"labels: expected one of {sorted(LABEL_FILES)}, got {self.labels!r}")


#: Label kind -> file the trajectories stage writes (``{"<prompt_id>#<seed>": value}``).
LABEL_FILES = {"aligned": "labels.json", "tifa": "scores.json"}


@dataclass(frozen=True)
class NoisyStageConfig:
    """Trajectories of the training prompts for NoisyCLIP fine-tuning, and the fine-tuning runs on them.

    The prompts are ``prompts`` distinct prompts of the training split (what the UNets learned from) and then
    ``coverage_prompts`` further distinct prompts allowed in training: no prompt of the benchmark pool and no
    held-out composition is ever among them, unless ``coverage_heldout`` (a separately named study) lets the
    coverage part reach the held-out compositions. Each prompt's ``seeds`` candidates get their own seeds, drawn
    from the training seed range (see :func:`~noisyclip_metrics.world.build.stages.noisy_training_prompts` and
    :func:`~noisyclip_metrics.world.build.stages.noisy_training_seeds`).
    """

    models: tuple[str, ...] = ("sd-small", "sd-base", "sd-large")
    prompts: int = 250
    coverage_prompts: int = 250
    coverage_heldout: bool = False
    seeds: int = 6
    batch_size: int = 64
    runs: tuple[NoisyRunConfig, ...] = (
        NoisyRunConfig("noisyclip", read="latents"),
        # judged (distill + the oracle's ranking of seeds, TIFA labels) beat distill, filtered and prompt with read=x0
        NoisyRunConfig("noisyclip-x0", read="x0", target="judged", labels="tifa"),
    )

    def __post_init__(self) -> None:
        from noisyclip_metrics.world.assets import WORLD_IDS

        for name, least in (("prompts", 1), ("coverage_prompts", 0), ("seeds", 1), ("batch_size", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise InputError(f"{name}: expected an int >= {least}, got {value!r}")

        names = [run.name for run in self.runs]
        if len(set(names)) != len(names):
            raise InputError(f"runs: expected distinct names, got {names}")
        for name in names:
            if WORLD_IDS.get(f"world:{name}").kind != "model":
                raise InputError(f"runs: world:{name} is not a model id")


@dataclass(frozen=True)
class WorldBuildConfig:
    """All settings of a world build."""

    seed: int = 0
    threads: int = 2
    vae: VaeStageConfig = field(default_factory=VaeStageConfig)
    clip: ClipStageConfig = field(default_factory=ClipStageConfig)
    unet_pool: int = 60_000
    unets: tuple[UnetStageConfig, ...] = tuple(UNET_MODELS.values())
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    noisy: NoisyStageConfig = field(default_factory=NoisyStageConfig)

    def to_json(self) -> dict[str, Any]:
        """JSON form (recorded in ``BUILD.json``)."""
        return dataclasses.asdict(self)


PRESETS: Registry[WorldBuildConfig] = Registry("world build preset")
PRESETS.register("full", WorldBuildConfig())
PRESETS.register(
    "ci",
    WorldBuildConfig(
        vae=VaeStageConfig(block_out_channels=(16, 32), steps=20, batch_size=16, pool_size=256, checkpoint_every=10),
        clip=ClipStageConfig(steps=12, batch_size=16, pool_size=256, checkpoint_every=6, warmup=2),
        unet_pool=256,
        unets=(
            UnetStageConfig("sd-small", (16, 32), 1, steps=8, batch_size=8, warmup=2, checkpoint_every=4),
            UnetStageConfig("sd-base", (16, 32), 1, steps=12, batch_size=8, warmup=2, checkpoint_every=4),
        ),
        sampler=SamplerConfig(num_inference_steps=4, guidance_scale=4.0),
        noisy=NoisyStageConfig(
            models=("sd-small", "sd-base"),
            prompts=6,
            coverage_prompts=2,
            seeds=2,
            batch_size=12,
            runs=tuple(
                NoisyRunConfig(
                    name,
                    read=read,
                    target=target,
                    labels=labels,
                    step_sampling="window:1-3",
                    steps=4,
                    train_batch_size=8,
                )
                for name, read, target, labels in (
                    ("noisyclip", "latents", "distill", "aligned"),
                    ("noisyclip-x0", "x0", "judged", "tifa"),
                )
            ),
        ),
    ),
)
