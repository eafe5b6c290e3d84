"""Functional NoisyCLIP score and the private kernels shared with :class:`noisyclip_metrics.metric.NoisyCLIPScore`.

Conventions (as everywhere in the library):

* per-sample outputs (``reduction="none"``) are **raw cosine similarities** in ``[-1, 1]`` (t2v-metrics convention);
* the aggregate (``reduction="mean"``) follows torchmetrics' ``CLIPScore``: ``max(100 * mean(cosine), 0)``.

Example:
    >>> import torch
    >>> from noisyclip_metrics.model import NoisyCLIPModel, TINY_TEST_CONFIG
    >>> model = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0)
    >>> z = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    >>> raw = noisyclip_score(z, ["a red cube", "a blue ball"], model, reduction="none")
    >>> raw.shape, bool(noisyclip_score(z, ["a red cube", "a blue ball"], model) == (100 * raw.mean()).clamp(min=0))
    (torch.Size([2]), True)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from .errors import InputError
from .model import NoisyCLIPModel, check_prompts
from .pipelines import torch_device
from .plugins import id_scheme
from .preview import check_latents
from .scorers import ScoreInputs, Scorer, build_scorer
from .x0 import model_input_scale

__all__ = ["noisyclip_score", "resolve_model"]

ModelLike = NoisyCLIPModel | str | Path | Callable[[], NoisyCLIPModel]


def resolve_model(model: ModelLike, device: str | torch.device | None = None) -> NoisyCLIPModel:
    """A :class:`NoisyCLIPModel`, a registered model id, a checkpoint folder, or a zero-argument factory.

    With ``device``, the model on that device: a model elsewhere is copied there, so that neither the caller's
    model nor a registered id's cached one moves.
    """
    if isinstance(model, NoisyCLIPModel):
        return on_device(model, device)
    if isinstance(model, (str, Path)):
        scheme = id_scheme(model)  # a plugin's id ("world:clip"), or None for a folder
        if scheme is not None:
            if scheme.kind(str(model)) != "model":  # unknown ids fail with a did-you-mean
                raise InputError(f"model: {model} is a diffusion pipeline, not a CLIP model")
            return on_device(scheme.load_model(str(model)), device)
        return NoisyCLIPModel.from_pretrained(model).to(torch_device(device) or "cpu")
    if callable(model):
        built = model()
        if not isinstance(built, NoisyCLIPModel):
            raise InputError(f"model: the factory returned {type(built).__name__}, expected a NoisyCLIPModel")
        return on_device(built, device)
    raise InputError(f"model: expected a NoisyCLIPModel, a model id/folder or a factory, got {type(model).__name__}")


def on_device(model: NoisyCLIPModel, device: str | torch.device | None) -> NoisyCLIPModel:
    """``model`` when it is on ``device`` (or ``device`` is ``None``), else a copy of it moved there."""
    target = torch_device(device)
    if target is None:
        return model
    if target.type == "cuda" and target.index is None:
        target = torch.device("cuda", torch.cuda.current_device())
    if model.device == target:
        return model
    return copy.deepcopy(model).to(target)


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
    inputs = ScoreInputs(prompts=prompts, latents=latents, timesteps=t, latent_scale=scale, step=step)
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
            sigmas at 50+ steps, KDPM2), which raises without it (see :func:`noisyclip_metrics.x0.noise_level`).
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
