"""Functional NoisyCLIP score and the private kernels shared with
:class:`noisyclip_metrics.scoring.metric.NoisyCLIPScore`.

Conventions (as everywhere in the library):

* per-sample outputs (``reduction="none"``) are **raw cosine similarities** in ``[-1, 1]`` (t2v-metrics convention);
* the aggregate (``reduction="mean"``) follows torchmetrics' ``CLIPScore``: ``max(100 * mean(cosine), 0)``.

Examples:
    >>> import torch
    >>> from noisyclip_metrics.scoring.model import NoisyCLIPModel, TINY_TEST_CONFIG
    >>> model = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0)
    >>> z = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    >>> raw = noisyclip_score(z, ["a red cube", "a blue ball"], model, reduction="none")
    >>> raw.shape, bool(noisyclip_score(z, ["a red cube", "a blue ball"], model) == (100 * raw.mean()).clamp(min=0))
    (torch.Size([2]), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.scoring.factory import ModelLike, resolve_model
from noisyclip_metrics.scoring.model import check_prompts
from noisyclip_metrics.scoring.preview import check_latents
from noisyclip_metrics.scoring.scorers import ScoreInputs, Scorer, build_scorer
from noisyclip_metrics.scoring.x0 import model_input_scale

__all__ = ["noisyclip_score"]


def _check_timesteps(timesteps: object, batch: int) -> torch.Tensor | None:
    if timesteps is None:
        return None
    t = torch.as_tensor(timesteps)
    if t.ndim > 1 or t.numel() not in (1, batch):
        raise InputError(
            f"timesteps: expected one value or {batch} values (one per latent), got shape {tuple(t.shape)}"
        )
    if t.is_floating_point() and not torch.isfinite(t).all():
        raise InputError("timesteps: expected finite values, got NaN or Inf")
    return t.expand(batch) if t.numel() == 1 else t


def _noisyclip_score_update(
    latents: torch.Tensor,
    prompts: Sequence[str],
    scorer: Scorer,
    timesteps: torch.Tensor | None = None,
    scheduler: Any = None,
    channels: int | None = None,
    *,
    step_index: int | torch.Tensor | Sequence[int] | None = None,
) -> torch.Tensor:
    """Validate one batch and return its ``(B,)`` raw cosines (the kernel of class and function)."""
    check_latents(latents, channels)
    prompts = check_prompts(prompts, batch=int(latents.shape[0]))
    t = _check_timesteps(timesteps, int(latents.shape[0]))
    scale = (
        model_input_scale(scheduler, t, len(prompts), step_index=step_index).to(latents.device)
        if (scheduler is not None and t is not None)
        else None
    )
    step = step_index if isinstance(step_index, int) and not isinstance(step_index, bool) else None
    inputs = ScoreInputs(
        prompts=prompts, latents=latents, timesteps=t, latent_scale=scale, step=step, scheduler=scheduler
    )
    return scorer.score(inputs).float()


def _noisyclip_score_compute(score_sum: torch.Tensor, n_samples: torch.Tensor) -> torch.Tensor:
    """torchmetrics CLIPScore aggregate: ``max(100 * mean cosine, 0)``."""
    return torch.clamp(100.0 * score_sum / n_samples, min=0.0)


def noisyclip_score(
    latents: torch.Tensor,
    prompts: Sequence[str] | str,
    model: ModelLike,
    timesteps: torch.Tensor | Sequence[float] | None = None,
    scheduler: Any = None,
    scorer: str = "noisyclip",
    reduction: Literal["mean", "none"] = "mean",
    *,
    step_index: int | torch.Tensor | Sequence[int] | None = None,
) -> torch.Tensor:
    """Prompt alignment of noisy latents.

    Args:
        latents: ``(B, C, h, w)`` latents (C must match the model's preview map).
        prompts: ``B`` prompts.
        model: a :class:`NoisyCLIPModel`, a model id or checkpoint folder, or a factory.
        timesteps: optional ``(B,)`` timesteps of the latents; with ``scheduler`` they give the input scaling of
            Euler-type (sigma) latents.
        scheduler: the diffusers scheduler the latents come from (optional).
        scorer: ``"noisyclip"`` (fine-tuned tower) or ``"clip"`` (the same model used as a frozen baseline).
        reduction: ``"mean"`` for ``max(100 * mean cosine, 0)`` (torchmetrics' CLIPScore convention) or
            ``"none"`` for the ``(B,)`` raw cosines.
        step_index: with ``scheduler``, the index into ``scheduler.timesteps`` of the latents' step (one, or one per
            latent); needed only where a timestep occurs twice in the schedule with different noise levels (Karras
            sigmas at 50+ steps, KDPM2), which raises without it (see :func:`noisyclip_metrics.scoring.x0.noise_level`).
    """
    if reduction not in ("mean", "none"):
        raise InputError(f"reduction: expected 'mean' or 'none', got {reduction!r}")
    resolved = resolve_model(model)
    prompts = [prompts] if isinstance(prompts, str) else prompts
    kernel = build_scorer(scorer, model=resolved)
    cos = _noisyclip_score_update(
        latents, prompts, kernel, timesteps, scheduler, resolved.latent_channels, step_index=step_index
    )
    if reduction == "none":
        return cos
    return _noisyclip_score_compute(cos.sum(), torch.tensor(cos.numel(), device=cos.device))
