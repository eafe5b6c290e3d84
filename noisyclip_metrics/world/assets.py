"""Registry ids of the built-in world's trained models, usable wherever a model id or folder is accepted.

======================  ===================================================================================
id                      what
======================  ===================================================================================
``world:sd-small``      diffusion model, small UNet, short training (``StableDiffusionPipeline`` folder)
``world:sd-base``       diffusion model, base UNet
``world:sd-large``      diffusion model, wider UNet
``world:clip``          the world CLIP (frozen-CLIP baseline and ``clip-final`` judge), with the world preview map
``world:noisyclip``     the world NoisyCLIP (the paper's), fine-tuned from ``world:clip`` on previews of noisy latents
``world:noisyclip-x0``  the world NoisyCLIP fine-tuned on previews of the x̂0 estimate (``noisyclip-x0`` scorer)
======================  ===================================================================================

The weights live in ``noisyclip_metrics/world/weights`` (fp16 safetensors; loaded as float32), or in the folder
named by the ``NOISYCLIP_WORLD_WEIGHTS`` environment variable (e.g. a fresh build). ``BUILD.json`` there records
the command, configuration and git revision that made them. Both NoisyCLIPs fine-tune only the image tower and take
their text tower from ``clip/`` (see :func:`noisyclip_metrics.scoring.checkpoint.share_text_tower`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from noisyclip_metrics.errors import CheckpointError, InputError
from noisyclip_metrics.registry import Registry

__all__ = [
    "RETRAIN_COMMAND",
    "SHARED_COMPONENTS",
    "WORLD_IDS",
    "WorldAsset",
    "asset_paths",
    "is_world_id",
    "load_world",
    "shared_components",
    "world_build_info",
    "world_sampler",
    "world_weights_dir",
]

#: Pipeline components every world diffusion model shares, stored once under ``weights/shared/``.
SHARED_COMPONENTS = ("text_encoder", "tokenizer", "vae")
RETRAIN_COMMAND = "noisyclip world build --preset full --work runs/world-build --out noisyclip_metrics/world/weights"
PREFIX = "world:"


@dataclass(frozen=True)
class WorldAsset:
    """One shipped artefact: ``kind`` is ``pipeline`` or ``model``; ``folder`` is relative to the weights folder."""

    id: str
    kind: str
    folder: str
    description: str


WORLD_IDS: Registry[WorldAsset] = Registry("world id")
for _asset in (
    WorldAsset("world:sd-small", "pipeline", "sd-small", "diffusion model: small UNet, short training"),
    WorldAsset("world:sd-base", "pipeline", "sd-base", "diffusion model: base UNet"),
    WorldAsset("world:sd-large", "pipeline", "sd-large", "diffusion model: wider UNet"),
    WorldAsset("world:clip", "model", "clip", "world CLIP (frozen baseline, clip-final judge)"),
    WorldAsset("world:noisyclip", "model", "noisyclip", "world NoisyCLIP fine-tuned on noisy-latent previews"),
    WorldAsset("world:noisyclip-x0", "model", "noisyclip-x0", "world NoisyCLIP fine-tuned on x0-estimate previews"),
):
    WORLD_IDS.register(_asset.id, _asset)


def world_weights_dir() -> Path:
    """Folder of the world weights (``NOISYCLIP_WORLD_WEIGHTS`` overrides the packaged one)."""
    env = os.environ.get("NOISYCLIP_WORLD_WEIGHTS")
    return Path(env) if env else Path(__file__).resolve().parent / "weights"


def is_world_id(name: str) -> bool:
    """Whether ``name`` uses the ``world:`` prefix."""
    return isinstance(name, str) and name.startswith(PREFIX)


def _asset_folder(asset: WorldAsset) -> Path:
    folder = world_weights_dir() / asset.folder
    if not folder.is_dir():
        raise CheckpointError(
            f"{folder}: the weights of {asset.id} are missing; retrain the world with: {RETRAIN_COMMAND}"
        )
    return folder


def shared_components() -> dict[str, Any]:
    """The text encoder, tokenizer and VAE every world pipeline shares (loaded fresh), as ``from_pretrained`` kwargs.

    A world pipeline folder holds its own ``unet/``, ``scheduler/`` and ``model_index.json``; the shared components
    are stored once in ``weights/shared/`` (three copies would break the 25 MB budget of the package). Load one with
    plain diffusers::

        StableDiffusionPipeline.from_pretrained(weights / "sd-base", **shared_components())
    """
    import torch
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, CLIPTokenizer

    from noisyclip_metrics.diffusion.pipelines import quiet_loading

    shared = world_weights_dir() / "shared"
    if not shared.is_dir():
        raise CheckpointError(
            f"{shared}: the shared world pipeline components are missing; retrain the world with: {RETRAIN_COMMAND}"
        )
    with quiet_loading():
        return {
            "text_encoder": CLIPTextModel.from_pretrained(shared / "text_encoder", dtype=torch.float32),
            "tokenizer": CLIPTokenizer.from_pretrained(shared / "tokenizer"),
            "vae": AutoencoderKL.from_pretrained(shared / "vae", torch_dtype=torch.float32),
        }


def asset_paths(asset_id: str) -> tuple[Path, ...]:
    """Every folder holding weights of a world asset (its own folder; ``shared/`` or ``clip/`` it reads from)."""
    asset = WORLD_IDS.get(asset_id)
    folder = world_weights_dir() / asset.folder
    if asset.kind == "pipeline":
        return folder, world_weights_dir() / "shared"
    if asset.id != "world:clip":  # the NoisyCLIPs take their text tower from clip/
        return folder, world_weights_dir() / "clip"
    return (folder,)


def world_build_info() -> dict[str, Any]:
    """``BUILD.json`` of the world weights (command, config, git revision, metrics)."""
    path = world_weights_dir() / "BUILD.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; retrain the world with: {RETRAIN_COMMAND}")
    return json.loads(path.read_text(encoding="utf-8"))


def world_sampler() -> dict[str, Any]:
    """Default sampler settings of the world pipelines (``num_inference_steps``, ``guidance_scale``)."""
    from dataclasses import asdict

    from noisyclip_metrics.world.config import SamplerConfig

    sampler = world_build_info().get("sampler")
    return dict(asdict(SamplerConfig()) if sampler is None else sampler)


@lru_cache(maxsize=16)
def _load_cached(asset_id: str, weights: str) -> Any:
    asset = WORLD_IDS.get(asset_id)
    folder = _asset_folder(asset)
    try:
        if asset.kind == "pipeline":
            import torch
            from diffusers import StableDiffusionPipeline

            from noisyclip_metrics.diffusion.pipelines import quiet_loading

            with quiet_loading():
                pipe = StableDiffusionPipeline.from_pretrained(
                    folder,
                    dtype=torch.float32,
                    safety_checker=None,
                    requires_safety_checker=False,
                    **shared_components(),
                )
            pipe.set_progress_bar_config(disable=True)
            return pipe
        from noisyclip_metrics.scoring.model import NoisyCLIPModel

        return NoisyCLIPModel.from_pretrained(folder)
    except CheckpointError as err:
        raise CheckpointError(f"{err}; retrain the world with: {RETRAIN_COMMAND}") from None
    except Exception as err:  # diffusers/safetensors raise many types for corrupt files
        raise CheckpointError(
            f"{folder}: cannot load {asset.id} ({type(err).__name__}: {err}); retrain the world with: {RETRAIN_COMMAND}"
        ) from None


def load_world(asset_id: str, fresh: bool = False) -> Any:
    """Load a world asset by id (cached per process unless ``fresh``).

    Raises:
        UnknownNameError: for an unknown ``world:`` id (with a did-you-mean).
        CheckpointError: when the weights are missing or corrupt (naming the file and the retrain command).
    """
    if not is_world_id(asset_id):
        raise InputError(f"asset_id: expected an id starting with {PREFIX!r}, got {asset_id!r}")
    WORLD_IDS.get(asset_id)
    if fresh:
        return _load_cached.__wrapped__(asset_id, str(world_weights_dir()))
    return _load_cached(asset_id, str(world_weights_dir()))
