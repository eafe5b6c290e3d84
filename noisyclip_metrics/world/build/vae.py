"""The world VAE: a diffusers ``AutoencoderKL`` with 4-channel 16x16 latents whose linear preview is faithful.

The latent space must be *image-like as SD's is*: a fixed linear map of the latent should explain most of the
variance of the image downsampled to the latent grid (the premise of NoisyCLIP's preview). The VAE is trained with
reconstruction + KL losses and an auxiliary linear-preview loss (a learned 4->3 map of the latent mean must match the
area-averaged image). After training, the scaling factor (1 / latent std) is written into the config and the
preview map is fitted by least squares on scaled latents (:func:`noisyclip_metrics.scoring.preview.fit_preview_map`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from noisyclip_metrics.scoring.preview import PreviewMap, fit_preview_map
from noisyclip_metrics.training.loop import (
    FolderCheckpoints,
    LoopSettings,
    StepOutput,
    run_loop,
    step_generator,
    warmup_cosine,
)
from noisyclip_metrics.world.build.data import ImagePool, render_pool
from noisyclip_metrics.world.oracle import judge_image

__all__ = ["VaeStageConfig", "build_vae", "encode_images", "train_world_vae", "vae_quality"]


@dataclass(frozen=True)
class VaeStageConfig:
    """Hyper-parameters of the world VAE stage."""

    block_out_channels: tuple[int, ...] = (32, 32)
    layers_per_block: int = 1
    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 100
    kl_weight: float = 1e-6
    preview_weight: float = 1.0
    pool_size: int = 40_000
    seed: int = 0
    checkpoint_every: int = 250
    mix: dict[str, float] | None = field(default=None)


def build_vae(cfg: VaeStageConfig) -> Any:
    """An untrained ``AutoencoderKL`` of the world's shape (downsampling 2x per extra block)."""
    from diffusers import AutoencoderKL

    n = len(cfg.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=tuple(cfg.block_out_channels),
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        layers_per_block=cfg.layers_per_block,
        norm_num_groups=min(32, *cfg.block_out_channels),
        sample_size=32,
    )


def train_world_vae(work: Path, cfg: VaeStageConfig, progress: bool = True) -> tuple[Any, PreviewMap]:
    """Train (or resume) the VAE in ``work``; returns the VAE (scaling factor set) and the fitted preview map."""
    torch.manual_seed(cfg.seed)
    vae = build_vae(cfg)
    vae.train()
    aux = torch.nn.Conv2d(4, 3, 1)
    pool = render_pool(work / "pool.safetensors", cfg.pool_size, seed=cfg.seed + 11, mix=cfg.mix)
    params = list(vae.parameters()) + list(aux.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(cfg.steps, cfg.warmup))
    store = FolderCheckpoints(work, dataclasses.asdict(cfg), {"vae": vae, "aux": aux}, optimizer, schedule)

    def step(i: int) -> StepOutput:
        g = step_generator(cfg.seed, i)
        x = pool.floats(torch.randint(len(pool), (cfg.batch_size,), generator=g)) * 2 - 1
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=g)
        recon = vae.decode(z).sample
        target_small = F.adaptive_avg_pool2d(x, z.shape[-2:])
        rec_loss = F.mse_loss(recon, x)
        kl = posterior.kl().mean()  # summed over latent elements, averaged over the batch
        prev_loss = F.mse_loss(aux(posterior.mean), target_small)
        loss = rec_loss + cfg.kl_weight * kl + cfg.preview_weight * prev_loss
        return StepOutput(loss, {"recon": rec_loss.detach(), "preview": prev_loss.detach(), "kl": kl.detach()})

    settings = LoopSettings(cfg.steps, cfg.checkpoint_every, desc="world vae")
    run_loop(settings, step, optimizer, schedule, params, store, progress=progress)
    vae.eval()
    # scaling factor: unit-variance latents as the diffusion model sees them (SD convention: one scalar)
    with torch.no_grad():
        sample = encode_images(vae, pool.floats(torch.arange(min(4096, len(pool)))), scale=1.0)
    vae.register_to_config(scaling_factor=float(1.0 / sample.std()))
    latents = encode_images(vae, pool.floats(torch.arange(min(8192, len(pool)))))
    preview = fit_preview_map(latents, pool.floats(torch.arange(min(8192, len(pool)))), name="world")
    return vae, preview


@torch.no_grad()
def encode_images(vae: Any, images: torch.Tensor, scale: float | None = None, batch: int = 512) -> torch.Tensor:
    """Scaled latents (posterior means) of ``(N, 3, 32, 32)`` images in ``[0, 1]``."""
    factor = float(vae.config.scaling_factor) if scale is None else scale
    out = [vae.encode(images[i : i + batch] * 2 - 1).latent_dist.mean * factor for i in range(0, len(images), batch)]
    return torch.cat(out)


@torch.no_grad()
def vae_quality(vae: Any, preview: PreviewMap, pool: ImagePool, n: int = 2000) -> dict[str, float]:
    """PSNR of reconstructions, preview R² on held-out images, oracle agreement original vs reconstruction."""
    from noisyclip_metrics.scoring.scorers import decode_latents

    images = pool.floats(torch.arange(len(pool) - n, len(pool)))
    latents = encode_images(vae, images)
    recon = torch.cat([decode_latents(vae, latents[i : i + 512]) for i in range(0, n, 512)])
    mse = float(F.mse_loss(recon, images))
    r2 = fit_preview_map(latents, images).r2  # of the same form on held-out data
    small = F.adaptive_avg_pool2d(images, latents.shape[-2:])
    resid = ((preview(latents) - small) ** 2).sum()
    heldout_r2 = float(1 - resid / ((small - small.mean((0, 2, 3), keepdim=True)) ** 2).sum())
    texts = pool.texts[len(pool) - n :]
    agree = []
    rec_u8 = (recon * 255).round().byte().permute(0, 2, 3, 1).numpy()
    orig_u8 = (images * 255).round().byte().permute(0, 2, 3, 1).numpy()
    for i in range(n):
        agree.append(judge_image(rec_u8[i], texts[i]).aligned == judge_image(orig_u8[i], texts[i]).aligned)
    return {
        "psnr": float(10 * np.log10(1.0 / mse)),
        "preview_r2": heldout_r2,
        "preview_r2_refit": float(r2 or 0.0),
        "oracle_agreement": float(np.mean(agree)),
    }
