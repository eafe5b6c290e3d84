"""Noise levels and x̂0 (Tweedie) estimates for the three latent parameterisations of diffusers schedulers.

======== ================================================ ==================================================
family   schedulers                                       latent ``x`` at noise level
======== ================================================ ==================================================
``vp``   DDPM, DDIM, PNDM, DPM-Solver(++), UniPC, DEIS... ``sqrt(ab) x0 + sqrt(1 - ab) eps`` (``ab`` = alpha-bar)
``sigma`` Euler, Euler-ancestral, Heun, LMS, KDPM2...     ``x0 + sigma eps`` (the UNet sees ``x / sqrt(sigma^2+1)``)
``flow`` FlowMatchEuler (SD3, FLUX), ``use_flow_sigmas``     ``(1 - sigma) x0 + sigma eps``
======== ================================================ ==================================================

Noise levels are derived from the *timestep* (no scheduler state is changed): from the training schedule, or for
flow schedulers from the sigma the scheduler's current timesteps were rounded from, so the functions work on any
latent for which the caller knows the timestep. :func:`model_input_scale` gives the factor that maps a latent to
the variance-preserving form the denoiser sees (``1/sqrt(sigma^2+1)`` for ``sigma`` schedulers, 1 otherwise); the
preview-based scorers apply it, as the official NoisyCLIP code previewed the UNet input.

Example:
    >>> import torch
    >>> from diffusers import DDIMScheduler
    >>> s = DDIMScheduler()
    >>> parameterization(s)
    'vp'
    >>> x0 = torch.randn(1, 4, 8, 8); eps = torch.randn(1, 4, 8, 8); t = torch.tensor([500])
    >>> ab = s.alphas_cumprod[500]
    >>> x = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    >>> torch.allclose(estimate_x0(s, x, t, eps), x0, atol=1e-5)
    True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .errors import InputError
from .registry import Registry

__all__ = ["PARAMETERIZATIONS", "parameterization", "estimate_x0", "model_input_scale", "noise_level"]


@dataclass(frozen=True)
class Parameterization:
    """How one family of schedulers relates latents, noise levels and model outputs."""

    name: str
    detect: Callable[[Any], bool]
    level: Callable[[Any, torch.Tensor], torch.Tensor]
    x0: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, str], torch.Tensor]
    input_scale: Callable[[torch.Tensor], torch.Tensor]


PARAMETERIZATIONS: Registry[Parameterization] = Registry("scheduler parameterisation")


def _as_batch(t: torch.Tensor | float | int, batch: int) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=torch.float64).flatten().cpu()  # noise levels are computed on the CPU, in float64
    if t.numel() == 1:
        t = t.expand(batch)
    if t.numel() != batch:
        raise InputError(f"timesteps: expected 1 or {batch} values to match the batch, got {t.numel()}")
    if not torch.isfinite(t).all():
        raise InputError("timesteps: expected finite values, got NaN or Inf")
    return t


def _interp(table: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of ``table`` (indexed by integer training timestep) at fractional ``t``."""
    table = table.double()
    t = t.clamp(0, table.numel() - 1)
    lo = t.floor().long()
    hi = (lo + 1).clamp(max=table.numel() - 1)
    w = t - lo
    return table[lo] * (1 - w) + table[hi] * w


def _alphas_cumprod(scheduler: Any) -> torch.Tensor:
    ab = getattr(scheduler, "alphas_cumprod", None)
    if ab is None:
        raise InputError(f"scheduler: {type(scheduler).__name__} has no alphas_cumprod")
    return torch.as_tensor(ab).cpu()


def _scheduled_sigmas(scheduler: Any, t: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """Sigmas of the scheduler's current timesteps where ``t`` matches one of them (exact for schedulers whose
    timesteps are rounded from sigmas), ``fallback`` elsewhere."""
    steps = getattr(scheduler, "timesteps", None)
    sigmas = getattr(scheduler, "sigmas", None)
    if steps is None or sigmas is None or len(sigmas) < len(steps) or len(steps) == 0:
        return fallback
    steps = torch.as_tensor(steps, dtype=torch.float64).cpu()  # set_timesteps(device=...) may have put them on a GPU
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64).cpu()[: len(steps)]
    hit = (t[:, None] - steps[None, :]).abs() < 1e-6
    found = hit.any(1)
    return torch.where(found, sigmas[hit.float().argmax(1)], fallback)


def _vp_x0(x: torch.Tensor, out: torch.Tensor, ab: torch.Tensor, prediction: str) -> torch.Tensor:
    a, s = ab.sqrt(), (1 - ab).sqrt()
    return {"epsilon": lambda: (x - s * out) / a, "v_prediction": lambda: a * x - s * out, "sample": lambda: out}[
        prediction
    ]()


def _sigma_x0(x: torch.Tensor, out: torch.Tensor, sigma: torch.Tensor, prediction: str) -> torch.Tensor:
    return {
        "epsilon": lambda: x - sigma * out,
        "v_prediction": lambda: out * (-sigma / (sigma**2 + 1).sqrt()) + x / (sigma**2 + 1),
        "sample": lambda: out,
    }[prediction]()


def _flow_x0(x: torch.Tensor, out: torch.Tensor, sigma: torch.Tensor, prediction: str) -> torch.Tensor:
    return x - sigma * out


PARAMETERIZATIONS.register(
    "flow",
    Parameterization(
        "flow",
        detect=lambda s: "FlowMatch" in type(s).__name__
        or bool(getattr(s.config, "use_flow_sigmas", False))
        or getattr(s.config, "prediction_type", None) == "flow_prediction",
        level=lambda s, t: _scheduled_sigmas(s, t, t / float(s.config.num_train_timesteps)),
        x0=_flow_x0,
        input_scale=lambda level: torch.ones_like(level),
    ),
)
PARAMETERIZATIONS.register(
    "sigma",
    Parameterization(
        "sigma",
        detect=lambda s: float(getattr(s, "init_noise_sigma", 1.0)) > 1.0 + 1e-6,
        level=lambda s, t: _interp(((1 - _alphas_cumprod(s)) / _alphas_cumprod(s)).sqrt(), t),
        x0=_sigma_x0,
        input_scale=lambda level: 1.0 / (level**2 + 1).sqrt(),
    ),
)
PARAMETERIZATIONS.register(
    "vp",
    Parameterization(
        "vp",
        detect=lambda s: getattr(s, "alphas_cumprod", None) is not None,
        level=lambda s, t: _interp(_alphas_cumprod(s), t),
        x0=_vp_x0,
        input_scale=lambda level: torch.ones_like(level),
    ),
)


def parameterization(scheduler: Any) -> str:
    """Name of the parameterisation family of a diffusers scheduler (``"vp"``, ``"sigma"`` or ``"flow"``)."""
    for name in PARAMETERIZATIONS:
        if PARAMETERIZATIONS.get(name).detect(scheduler):
            return name
    raise InputError(f"scheduler: cannot tell the latent parameterisation of {type(scheduler).__name__}")


def noise_level(scheduler: Any, timesteps: torch.Tensor | float | int, batch: int = 1) -> torch.Tensor:
    """Per-sample noise level: alpha-bar for ``vp`` schedulers, sigma for ``sigma`` and ``flow`` ones (float64)."""
    family = PARAMETERIZATIONS.get(parameterization(scheduler))
    return family.level(scheduler, _as_batch(timesteps, batch))


def model_input_scale(scheduler: Any, timesteps: torch.Tensor | float | int, batch: int = 1) -> torch.Tensor:
    """Factor mapping a latent to the variance-preserving form the denoiser sees (``(B,)``, float32)."""
    family = PARAMETERIZATIONS.get(parameterization(scheduler))
    return family.input_scale(family.level(scheduler, _as_batch(timesteps, batch))).float()


def estimate_x0(
    scheduler: Any, latents: torch.Tensor, timesteps: torch.Tensor | float | int, model_output: torch.Tensor
) -> torch.Tensor:
    """The x̂0 (Tweedie) estimate from a latent, its timestep and the denoiser's (guided) output.

    Args:
        scheduler: the pipeline's scheduler (its class and config decide the parameterisation and prediction type).
        latents: ``(B, ...)`` latents as the pipeline holds them.
        timesteps: one timestep or one per sample.
        model_output: the denoiser output after classifier-free guidance, same shape as ``latents``.
    """
    if model_output.shape != latents.shape:
        raise InputError(
            f"model_output: expected shape {tuple(latents.shape)} to match latents, got {tuple(model_output.shape)}"
        )
    family = PARAMETERIZATIONS.get(parameterization(scheduler))
    prediction = str(getattr(scheduler.config, "prediction_type", "epsilon") or "epsilon")
    if family.name != "flow" and prediction not in ("epsilon", "v_prediction", "sample"):
        raise InputError(f"scheduler: unsupported prediction_type {prediction!r}")
    level = family.level(scheduler, _as_batch(timesteps, latents.shape[0]))
    level = level.to(device=latents.device).view(-1, *([1] * (latents.ndim - 1)))
    out = family.x0(latents.double(), model_output.double(), level, prediction)
    return out.to(latents.dtype)
