"""The world's diffusion models: conditional UNets on the world VAE's latents, shipped as StableDiffusionPipelines.

Each model is a diffusers ``UNet2DConditionModel`` conditioned by cross-attention on the token features of the world
text encoder (the world CLIP's text tower exported as a ``transformers.CLIPTextModel``), trained with the
epsilon-prediction DDPM loss (cosine schedule, 1,000 steps), 10% caption dropout for classifier-free guidance and an
EMA of the weights (Min-SNR-gamma loss weighting speeds up convergence). The models differ in capacity and training
length (see :data:`UNET_MODELS`); the pipelines sample with DDIM.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from noisyclip_metrics.training.loop import (
    EMA,
    FolderCheckpoints,
    LoopSettings,
    StepOutput,
    run_loop,
    step_generator,
    warmup_cosine,
)

__all__ = ["UNET_MODELS", "UnetStageConfig", "assemble_pipeline", "build_unet", "text_features", "train_world_unet"]


@dataclass(frozen=True)
class UnetStageConfig:
    """Architecture and training of one world diffusion model."""

    name: str
    block_out_channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 1
    attention_heads: int = 2
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 200
    ema_decay: float = 0.999
    cfg_dropout: float = 0.1
    min_snr_gamma: float | None = 5.0
    seed: int = 0
    checkpoint_every: int = 250


#: The three shipped models: they differ in capacity and training length.
UNET_MODELS: dict[str, UnetStageConfig] = {
    "sd-small": UnetStageConfig("sd-small", (32, 64), 1, steps=2400),
    "sd-base": UnetStageConfig("sd-base", (32, 64), 2, steps=2000),
    "sd-large": UnetStageConfig("sd-large", (48, 96), 1, steps=1900),
}


def build_unet(cfg: UnetStageConfig, cross_attention_dim: int) -> Any:
    """An untrained UNet for 4x16x16 latents with cross-attention at both resolutions.

    ``cfg.attention_heads`` goes to diffusers' ``attention_head_dim``, which ``UNet2DConditionModel`` uses as the
    number of heads (a misnaming its source comment keeps for compatibility). Two heads (head width
    16-48) train 17-25% faster on the 2-core CPU than eight heads of width 4-12 (``benchmarks/unet_step_time.py``).
    """
    from diffusers import UNet2DConditionModel

    n = len(cfg.block_out_channels)
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        down_block_types=("CrossAttnDownBlock2D",) * n,
        up_block_types=("CrossAttnUpBlock2D",) * n,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=cfg.attention_heads,
        norm_num_groups=16,
    )


def training_scheduler() -> Any:
    """The DDPM noise schedule the UNets are trained with."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon", clip_sample=False
    )


@torch.no_grad()
def text_features(text_encoder: Any, tokenizer: Any, prompts: list[str], batch: int = 512) -> torch.Tensor:
    """``last_hidden_state`` of the text encoder for ``prompts`` tokenised as the SD pipeline does."""
    out = []
    for i in range(0, len(prompts), batch):
        ids = tokenizer(
            prompts[i : i + batch],
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        out.append(text_encoder(ids)[0])
    return torch.cat(out)


def train_world_unet(
    work: Path,
    cfg: UnetStageConfig,
    latents: torch.Tensor,
    prompt_index: torch.Tensor,
    features: torch.Tensor,
    empty: torch.Tensor,
    progress: bool = True,
) -> Any:
    """Train (or resume) one UNet in ``work``; returns the EMA weights in a UNet.

    Args:
        work: the stage folder.
        cfg: the model's configuration.
        latents: ``(N, 4, 16, 16)`` scaled VAE latents of the training renders.
        prompt_index: ``(N,)`` row of each latent's prompt in ``features``.
        features: ``(P, L, D)`` text-encoder features of the training prompts.
        empty: ``(L, D)`` features of the empty prompt (for caption dropout).
        progress: show a progress bar.
    """
    torch.manual_seed(cfg.seed)
    unet = build_unet(cfg, int(features.shape[-1]))
    unet.train()
    sched = training_scheduler()
    ab = sched.alphas_cumprod
    optimizer = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(cfg.steps, cfg.warmup))
    ema = EMA(unet, cfg.ema_decay)
    store = FolderCheckpoints(work, dataclasses.asdict(cfg), {"unet": unet}, optimizer, schedule, ema=ema)

    def step(i: int) -> StepOutput:
        g = step_generator(cfg.seed, i)
        idx = torch.randint(len(latents), (cfg.batch_size,), generator=g)
        x0 = latents[idx].float()
        t = torch.randint(0, 1000, (cfg.batch_size,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        a = ab[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        ctx = features[prompt_index[idx]].float()
        drop = torch.rand(cfg.batch_size, generator=g) < cfg.cfg_dropout
        ctx[drop] = empty.float()
        per_sample = F.mse_loss(unet(xt, t, encoder_hidden_states=ctx).sample, noise, reduction="none").mean((1, 2, 3))
        if cfg.min_snr_gamma:  # Min-SNR-gamma weighting (Hang et al. 2023): faster convergence
            snr = ab[t] / (1 - ab[t])
            per_sample = per_sample * (snr.clamp(max=cfg.min_snr_gamma) / snr)
        return StepOutput(per_sample.mean())

    run_loop(
        LoopSettings(cfg.steps, cfg.checkpoint_every, desc=f"world {cfg.name}"),
        step,
        optimizer,
        schedule,
        list(unet.parameters()),
        store,
        after_step=lambda i: ema.update(unet, updates=i),
        progress=progress,
    )
    ema.copy_to(unet)
    unet.eval()
    return unet


def assemble_pipeline(unet: Any, vae: Any, text_encoder: Any, tokenizer: Any) -> Any:
    """A ``StableDiffusionPipeline`` with a DDIM sampler matching the training schedule."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="epsilon",
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
