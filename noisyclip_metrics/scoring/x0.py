"""Noise levels and x̂0 (Tweedie) estimates for diffusers schedulers, read from each scheduler's own schedule.

========= ======================================================= ==============================================
family    schedulers                                              latent ``x`` at noise level
========= ======================================================= ==============================================
``vp``    DDIM, DDPM, PNDM, DPM-Solver(++) multistep/singlestep,   ``sqrt(ab) x0 + sqrt(1 - ab) eps`` (``ab``:
          UniPC, DEIS                                             alpha-bar)
``sigma`` Euler, Euler ancestral, Heun, KDPM2 (+ ancestral), LMS  ``x0 + sigma eps`` (the UNet sees
                                                                  ``x / sqrt(sigma^2 + 1)``)
``edm``   EDMEuler, EDMDPMSolverMultistep                         ``x0 + sigma eps`` (the UNet sees
                                                                  ``x / sqrt(sigma^2 + sigma_data^2)``)
``flow``  FlowMatchEuler (SD3, FLUX); DPM-Solver, UniPC and DEIS   ``(1 - sigma) x0 + sigma eps``
          with ``use_flow_sigmas``
========= ======================================================= ==============================================

The noise level of a latent at timestep ``t`` is the one the scheduler's ``step`` uses there, so Karras, exponential,
beta and Lu-lambda sigmas, any ``timestep_spacing``, ``final_sigmas_type``, flow shifts and KDPM2's interpolated
steps are all exact:

* ``t`` is one of the scheduler's current timesteps (``scheduler.timesteps`` after ``set_timesteps``): the level of
  that step, ``sigmas[i]`` (KDPM2's interpolated steps: ``sigmas_interpol``), alpha-bar ``1 / (sigma^2 + 1)`` for
  DPM-Solver, UniPC and DEIS, ``alphas_cumprod[t]`` for DDIM, DDPM and PNDM. Where ``t`` occurs more than once in
  the schedule with different levels (rounded Karras timesteps near ``t = 0`` at 50+ steps), ``step_index`` (the
  index into ``scheduler.timesteps``) says which step; without it the call is refused.
* Any other ``t`` in the training range: the training schedule (``alphas_cumprod[t]`` at integer ``t``, the
  linearly interpolated training sigma for Euler-type schedulers, ``t / num_train_timesteps`` for flow matching,
  ``exp(4 t)`` for EDM's ``c_noise = log(sigma) / 4``), but only where the scheduler's current levels follow that
  schedule; a Karras (or other re-spaced) scheduler refuses timesteps off its schedule instead of approximating.
* Timesteps outside the range (negative, above the largest training timestep) raise :class:`InputError` naming it.

Schedulers and options that the package cannot reproduce exactly are refused with an :class:`InputError` naming
them: other scheduler classes (LCM, TCD, DPMSolverSDE...), ``thresholding=True``, learned variances,
``invert_sigmas=True`` and prediction types the scheduler does not support. ``clip_sample`` (DDIM, DDPM, Heun) is
applied to x̂0 as the scheduler applies it. :func:`model_input_scale` gives the factor that maps a latent to the form
the denoiser sees (``1/sqrt(sigma^2+1)`` for ``sigma`` schedulers, EDM's ``c_in``, 1 otherwise); the preview-based
scorers apply it, as the official NoisyCLIP code previewed the UNet input.

Examples:
    >>> import torch
    >>> from diffusers import DDIMScheduler
    >>> s = DDIMScheduler(clip_sample=False)
    >>> parameterization(s)
    'vp'
    >>> x0 = torch.randn(1, 4, 8, 8); eps = torch.randn(1, 4, 8, 8); t = torch.tensor([500])
    >>> ab = s.alphas_cumprod[500]
    >>> x = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    >>> torch.allclose(estimate_x0(s, x, t, eps), x0, atol=1e-5)
    True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.registry import Registry

__all__ = [
    "PARAMETERIZATIONS",
    "SCHEDULERS",
    "SchedulerSpec",
    "defines_noise_std",
    "estimate_x0",
    "model_input_scale",
    "noise_level",
    "noise_std",
    "parameterization",
    "scheduler_spec",
]

StepIndex = int | torch.Tensor | None


@dataclass(frozen=True)
class Parameterization:
    """How one family of schedulers relates latents, noise levels and model outputs.

    Args:
        name: ``"vp"``, ``"sigma"``, ``"edm"`` or ``"flow"``.
        x0: ``(latent, model output, level, prediction type, scheduler) -> x̂0`` (float64 tensors).
        input_scale: ``(level, scheduler) -> factor`` to the form the denoiser sees.
        noise_std: ``(level, scheduler) -> `` the noise's standard deviation in the variance-preserving form of the
            latent (``x * input_scale`` for ``sigma``, ``x / sqrt((1 - sigma)^2 + sigma^2)`` for ``flow``): 0 for a
            clean latent, 1 for pure noise, comparable across families (:func:`noise_std`).
    """

    name: str
    x0: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, str, Any], torch.Tensor]
    input_scale: Callable[[torch.Tensor, Any], torch.Tensor]
    noise_std: Callable[[torch.Tensor, Any], torch.Tensor] | None = None


PARAMETERIZATIONS: Registry[Parameterization] = Registry("scheduler parameterisation")


def _vp_x0(x: torch.Tensor, out: torch.Tensor, ab: torch.Tensor, prediction: str, _s: Any) -> torch.Tensor:
    a, s = ab.sqrt(), (1 - ab).sqrt()
    if prediction == "epsilon":
        return (x - s * out) / a
    if prediction == "v_prediction":
        return a * x - s * out
    return out  # "sample"


def _sigma_x0(x: torch.Tensor, out: torch.Tensor, sigma: torch.Tensor, prediction: str, _s: Any) -> torch.Tensor:
    if prediction == "epsilon":
        return x - sigma * out
    if prediction == "v_prediction":
        return out * (-sigma / (sigma**2 + 1).sqrt()) + x / (sigma**2 + 1)
    return out  # "sample" / "original_sample"


def _edm_x0(x: torch.Tensor, out: torch.Tensor, sigma: torch.Tensor, prediction: str, s: Any) -> torch.Tensor:
    data = float(s.config.sigma_data)
    c_skip = data**2 / (sigma**2 + data**2)
    c_out = sigma * data / (sigma**2 + data**2).sqrt()
    return c_skip * x + (c_out if prediction == "epsilon" else -c_out) * out


def _flow_x0(x: torch.Tensor, out: torch.Tensor, sigma: torch.Tensor, prediction: str, _s: Any) -> torch.Tensor:
    if prediction == "flow_prediction":
        return x - sigma * out
    if prediction == "epsilon":
        return (x - sigma * out) / (1 - sigma)
    if prediction == "v_prediction":
        return (1 - sigma) * x - sigma * out
    return out  # "sample"


def _edm_scale(level: torch.Tensor, s: Any) -> torch.Tensor:
    return 1.0 / (level**2 + float(s.config.sigma_data) ** 2).sqrt()


for _family in (
    Parameterization(
        "vp", _vp_x0, lambda level, s: torch.ones_like(level), lambda level, s: (1 - level).clamp(min=0).sqrt()
    ),
    Parameterization(
        "sigma", _sigma_x0, lambda level, s: 1.0 / (level**2 + 1).sqrt(), lambda level, s: level / (level**2 + 1).sqrt()
    ),
    Parameterization("edm", _edm_x0, _edm_scale, lambda level, s: level * _edm_scale(level, s)),
    Parameterization(
        "flow",
        _flow_x0,
        lambda level, s: torch.ones_like(level),
        lambda level, s: level / ((1 - level) ** 2 + level**2).sqrt(),
    ),
):
    PARAMETERIZATIONS.register(_family.name, _family)


@dataclass(frozen=True)
class SchedulerSpec:
    """How the noise levels of one configured scheduler are read.

    Args:
        family: the :data:`PARAMETERIZATIONS` family.
        levels: ``scheduler -> (len(timesteps),)`` level each step of the current schedule uses (alpha-bar or sigma).
        training: ``(scheduler, t) -> level`` of the training schedule at timesteps ``t``.
        span: ``(lowest, highest)`` timestep of the training schedule.
        prediction: the prediction type the scheduler's ``step`` reads the model output as.
        integer: whether the training schedule is only defined at integer timesteps.
        clip: ``clip_sample_range`` where the scheduler clips x̂0, else ``None``.
    """

    family: str
    levels: Callable[[Any], torch.Tensor]
    training: Callable[[Any, torch.Tensor], torch.Tensor]
    span: tuple[float, float]
    prediction: str
    integer: bool = False
    clip: float | None = None


SCHEDULERS: Registry[Callable[[Any], SchedulerSpec]] = Registry("scheduler")


def _name(s: Any) -> str:
    return type(s).__name__


def _cfg(s: Any, key: str, default: Any = None) -> Any:
    return getattr(s.config, key, default)


def _f64(x: Any) -> torch.Tensor:
    return torch.as_tensor(x).detach().to("cpu", torch.float64).flatten()


def _alphas_cumprod(s: Any) -> torch.Tensor:
    return _f64(s.alphas_cumprod)


def _train_ab(s: Any, t: torch.Tensor) -> torch.Tensor:
    return _alphas_cumprod(s)[t.round().long()]


def _train_sigma(s: Any, t: torch.Tensor) -> torch.Tensor:
    """Training sigma linearly interpolated at (fractional) ``t``, as Euler-type ``set_timesteps`` does."""
    ab = _alphas_cumprod(s)
    table = ((1 - ab) / ab).sqrt()
    lo = t.floor().long().clamp(0, len(table) - 1)
    hi = (lo + 1).clamp(max=len(table) - 1)
    return table[lo] + (table[hi] - table[lo]) * (t - lo)


def _train_flow(s: Any, t: torch.Tensor) -> torch.Tensor:
    return t / float(s.config.num_train_timesteps)


def _train_exp4(_s: Any, t: torch.Tensor) -> torch.Tensor:
    return torch.exp(4 * t)  # inverse of EDM's c_noise = log(sigma) / 4


def _sigmas(s: Any) -> torch.Tensor:
    return _f64(s.sigmas)[: len(s.timesteps)]


def _interleaved(s: Any, offset: int) -> torch.Tensor:
    """KDPM2: first-order steps use ``sigmas[i]``, the interpolated (odd) ones ``sigmas_interpol[i - offset]``."""
    sig, interp = _f64(s.sigmas), _f64(s.sigmas_interpol)
    i = torch.arange(len(s.timesteps))
    odd = i % 2 == 1
    return torch.where(odd, interp[(i - offset).clamp(min=0)], sig[i])


def _table(s: Any) -> torch.Tensor:
    ab = _alphas_cumprod(s)
    steps = _f64(s.timesteps).round().long()
    return torch.where((steps >= 0) & (steps < len(ab)), ab[steps.clamp(0, len(ab) - 1)], torch.nan)


def _vp_from_sigmas(s: Any) -> torch.Tensor:
    return 1.0 / (_sigmas(s) ** 2 + 1)


def _discrete_span(s: Any) -> tuple[float, float]:
    return 0.0, float(s.config.num_train_timesteps - 1)


def _refuse(s: Any, what: str, why: str) -> InputError:
    return InputError(f"scheduler: {_name(s)} with {what} is not supported: {why}")


def _check_common(s: Any, predictions: tuple[str, ...]) -> str:
    """Refuse options the package does not reproduce; return the prediction type."""
    if _cfg(s, "thresholding", False):
        raise _refuse(s, "thresholding=True", "dynamic thresholding of x̂0 is not reproduced")
    variance = _cfg(s, "variance_type")
    if variance in ("learned", "learned_range"):
        raise _refuse(s, f"variance_type={variance!r}", "a learned variance splits the model output")
    prediction = str(_cfg(s, "prediction_type", predictions[0]) or predictions[0])
    if prediction not in predictions:
        raise _refuse(s, f"prediction_type={prediction!r}", f"supported prediction types: {', '.join(predictions)}")
    return prediction


def _clip(s: Any) -> float | None:
    return float(s.config.clip_sample_range) if _cfg(s, "clip_sample", False) else None


_VP_PREDICTIONS = ("epsilon", "v_prediction", "sample")


def _table_spec(s: Any) -> SchedulerSpec:
    """DDIM, DDPM: x̂0 from ``alphas_cumprod[t]``."""
    prediction = _check_common(s, _VP_PREDICTIONS)
    return SchedulerSpec("vp", _table, _train_ab, _discrete_span(s), prediction, integer=True, clip=_clip(s))


def _pndm_spec(s: Any) -> SchedulerSpec:
    prediction = _check_common(s, ("epsilon", "v_prediction"))
    return SchedulerSpec("vp", _table, _train_ab, _discrete_span(s), prediction, integer=True)


def _solver_spec(s: Any) -> SchedulerSpec:
    """DPM-Solver (multistep, singlestep), UniPC, DEIS: ``sigmas[i]`` as alpha-bar, or as flow sigma."""
    if _cfg(s, "use_flow_sigmas", False):
        prediction = _check_common(s, ("flow_prediction", "epsilon", "v_prediction", "sample"))
        return SchedulerSpec("flow", _sigmas, _train_flow, (0.0, float(s.config.num_train_timesteps)), prediction)
    prediction = _check_common(s, _VP_PREDICTIONS)
    return SchedulerSpec("vp", _vp_from_sigmas, _train_ab, _discrete_span(s), prediction, integer=True)


def _euler_type_spec(
    levels: Callable[[Any], torch.Tensor], predictions: tuple[str, ...]
) -> Callable[[Any], SchedulerSpec]:
    def spec(s: Any) -> SchedulerSpec:
        prediction = _check_common(s, predictions)
        if _cfg(s, "timestep_type") == "continuous" and prediction == "v_prediction":  # timesteps are log(sigma) / 4
            ab = _alphas_cumprod(s)
            train = ((1 - ab) / ab).sqrt()
            span = (0.25 * math.log(float(train.min())), 0.25 * math.log(float(train.max())))
            return SchedulerSpec("sigma", levels, _train_exp4, span, prediction, clip=_clip(s))
        return SchedulerSpec("sigma", levels, _train_sigma, _discrete_span(s), prediction, clip=_clip(s))

    return spec


def _edm_spec(s: Any) -> SchedulerSpec:
    prediction = _check_common(s, ("epsilon", "v_prediction"))
    span = (0.25 * math.log(float(s.config.sigma_min)), 0.25 * math.log(float(s.config.sigma_max)))
    return SchedulerSpec("edm", _sigmas, _train_exp4, span, prediction)


def _flow_match_spec(s: Any) -> SchedulerSpec:
    if _cfg(s, "invert_sigmas", False):
        raise _refuse(s, "invert_sigmas=True", "the latent's noise level is then not the scheduler's sigma")
    return SchedulerSpec("flow", _sigmas, _train_flow, (0.0, float(s.config.num_train_timesteps)), "flow_prediction")


_EULER = ("epsilon", "v_prediction", "sample")
_KDPM2 = ("epsilon", "v_prediction")  # also Euler ancestral: no "sample"
for _n, _spec in {
    "DDIMScheduler": _table_spec,
    "DDPMScheduler": _table_spec,
    "PNDMScheduler": _pndm_spec,
    "DPMSolverMultistepScheduler": _solver_spec,
    "DPMSolverSinglestepScheduler": _solver_spec,
    "UniPCMultistepScheduler": _solver_spec,
    "DEISMultistepScheduler": _solver_spec,
    "EulerDiscreteScheduler": _euler_type_spec(_sigmas, (*_EULER, "original_sample")),
    "EulerAncestralDiscreteScheduler": _euler_type_spec(_sigmas, _KDPM2),
    "HeunDiscreteScheduler": _euler_type_spec(_sigmas, _EULER),
    "LMSDiscreteScheduler": _euler_type_spec(_sigmas, _EULER),
    "KDPM2DiscreteScheduler": _euler_type_spec(lambda s: _interleaved(s, 0), _KDPM2),
    "KDPM2AncestralDiscreteScheduler": _euler_type_spec(lambda s: _interleaved(s, 1), _KDPM2),
    "EDMEulerScheduler": _edm_spec,
    "EDMDPMSolverMultistepScheduler": _edm_spec,
    "FlowMatchEulerDiscreteScheduler": _flow_match_spec,
}.items():
    SCHEDULERS.register(_n, _spec)


def scheduler_spec(scheduler: Any) -> SchedulerSpec:
    """The :class:`SchedulerSpec` of a configured diffusers scheduler.

    Raises:
        InputError: for a scheduler class not in :data:`SCHEDULERS` (matched by exact class name: a subclass may
            step differently) or an option the package cannot reproduce exactly, naming it.
    """
    name = _name(scheduler)
    if name not in SCHEDULERS.names():
        raise InputError(
            f"scheduler: {name} is not supported: its noise levels are not read exactly; supported "
            f"schedulers: {', '.join(SCHEDULERS.names())}"
        )
    return SCHEDULERS.get(name)(scheduler)


def parameterization(scheduler: Any) -> str:
    """Name of the parameterisation family of a diffusers scheduler (``"vp"``, ``"sigma"``, ``"edm"``, ``"flow"``).

    Raises:
        InputError: for an unsupported scheduler or option (see :func:`scheduler_spec`).
    """
    return scheduler_spec(scheduler).family


_OPTIONS = {
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
    "use_beta_sigmas": False,
    "use_lu_lambdas": False,
    "use_flow_sigmas": False,
    "interpolation_type": "linear",
    "timestep_type": "discrete",
    "sigma_schedule": None,
}


def _options(s: Any) -> str:
    """The schedule options that set the scheduler's levels per step, for messages."""
    set_ = [f"{k}={_cfg(s, k)!r}" for k, default in _OPTIONS.items() if _cfg(s, k, default) not in (default, None)]
    return ", ".join(set_) or "its schedule"


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float) -> torch.Tensor:
    return (a - b).abs() <= rtol * torch.maximum(a.abs(), b.abs()) + 1e-12


def _fmt(t: float) -> str:
    return f"{t:g}"


def _follows_training(s: Any, spec: SchedulerSpec, steps: torch.Tensor, table: torch.Tensor) -> bool:
    """Whether every current step's level is the training schedule's level at its timestep."""
    lo, hi = spec.span
    if not bool(((steps >= lo - 1e-6) & (steps <= hi + 1e-6)).all()):
        return False
    if spec.integer and not bool((steps == steps.round()).all()):
        return False
    return bool(_close(spec.training(s, steps), table, 1e-5).all())


def _off_schedule(s: Any, spec: SchedulerSpec, t: float, on: torch.Tensor | None, follows: Callable[[], bool]) -> float:
    """Training-schedule level at a timestep that is not one of the scheduler's current timesteps."""
    lo, hi = spec.span
    if not lo - 1e-6 <= t <= hi + 1e-6:
        raise InputError(f"timesteps: {_fmt(t)} is outside {_name(s)}'s timestep range [{_fmt(lo)}, {_fmt(hi)}]")
    if on is not None and not follows():
        raise InputError(
            f"timesteps: {_fmt(t)} is not one of {_name(s)}'s current timesteps, and with {_options(s)} its noise "
            f"levels are defined only there ({len(on)} steps from {_fmt(float(on.max()))} to {_fmt(float(on.min()))})"
        )
    if spec.integer and t != round(t):
        raise InputError(f"timesteps: {_name(s)} defines noise levels at integer timesteps only, got {_fmt(t)}")
    return float(spec.training(s, torch.tensor([t], dtype=torch.float64))[0])


def _as_index(step_index: StepIndex, batch: int) -> torch.Tensor | None:
    if step_index is None:
        return None
    idx = torch.as_tensor(step_index).detach().cpu().flatten()
    if idx.numel() == 1:
        idx = idx.expand(batch)
    if idx.numel() != batch or (idx.is_floating_point() and not bool((idx == idx.round()).all())):
        raise InputError(f"step_index: expected 1 or {batch} integer indices to match the batch, got {idx.tolist()}")
    return idx.long()


def _levels(s: Any, spec: SchedulerSpec, t: torch.Tensor, step_index: torch.Tensor | None) -> torch.Tensor:
    """Per-sample noise level (family units) of latents at timesteps ``t``."""
    set_up = getattr(s, "num_inference_steps", None) is not None and getattr(s, "timesteps", None) is not None
    steps = _f64(s.timesteps) if set_up else None
    table = spec.levels(s).to(torch.float64) if set_up else None

    @functools.cache
    def follows_training() -> bool:  # checked once, only if a timestep is off the schedule
        return _follows_training(s, spec, steps, table)  # type: ignore[arg-type]

    out = torch.empty_like(t)
    values, inverse = torch.unique(t, return_inverse=True)
    for u, value in enumerate(values.tolist()):
        rows = (inverse == u).nonzero().flatten()
        hits = None
        if steps is not None:
            hits = ((steps - value).abs() <= 1e-6 * max(1.0, abs(value))).nonzero().flatten()
        if hits is None or len(hits) == 0:
            out[rows] = _off_schedule(s, spec, value, steps, follows_training)
            continue
        levels = table[hits]  # type: ignore[index]
        if bool(_close(levels, levels[:1].expand_as(levels), 1e-6).all()):
            out[rows] = levels[0]
            continue
        where = ", ".join(str(i) for i in hits.tolist())
        if step_index is None:
            raise InputError(
                f"timesteps: {_fmt(value)} occurs at steps {where} of {_name(s)}'s schedule with different noise "
                f"levels ({_options(s)}); pass step_index (the index into scheduler.timesteps) to say which"
            )
        for r in rows.tolist():
            i = int(step_index[r])
            if i not in hits.tolist():
                raise InputError(f"step_index: {i} is not a step at timestep {_fmt(value)} (steps {where})")
            out[r] = table[i]  # type: ignore[index]
    return out


def _as_batch(t: torch.Tensor | float, batch: int) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=torch.float64).flatten().cpu()  # noise levels are computed on the CPU, in float64
    if t.numel() == 1:
        t = t.expand(batch)
    if t.numel() != batch:
        raise InputError(f"timesteps: expected 1 or {batch} values to match the batch, got {t.numel()}")
    if not torch.isfinite(t).all():
        raise InputError("timesteps: expected finite values, got NaN or Inf")
    return t


def noise_level(
    scheduler: Any, timesteps: torch.Tensor | float, batch: int = 1, *, step_index: StepIndex = None
) -> torch.Tensor:
    """Per-sample noise level the scheduler's ``step`` uses at ``timesteps`` (``(batch,)``, float64).

    Alpha-bar for ``vp`` schedulers, sigma for ``sigma``, ``edm`` and ``flow`` ones; read from the scheduler's current
    schedule (see the module docstring), never approximated.

    Args:
        scheduler: a supported diffusers scheduler (:data:`SCHEDULERS`), after ``set_timesteps`` for a sampling run.
        timesteps: one timestep or one per sample.
        batch: the number of samples.
        step_index: index (one, or one per sample) into ``scheduler.timesteps``; consulted only where a timestep
            occurs more than once in the schedule with different noise levels.

    Raises:
        InputError: an unsupported scheduler or option; a timestep out of range, off a re-spaced schedule, or
            ambiguous without ``step_index``.
    """
    spec = scheduler_spec(scheduler)
    t = _as_batch(timesteps, batch)
    return _levels(scheduler, spec, t, _as_index(step_index, len(t)))


def model_input_scale(
    scheduler: Any, timesteps: torch.Tensor | float, batch: int = 1, *, step_index: StepIndex = None
) -> torch.Tensor:
    """Factor mapping a latent to the form the denoiser sees (``(batch,)``, float32).

    ``1/sqrt(sigma^2+1)`` for ``sigma`` schedulers, ``1/sqrt(sigma^2+sigma_data^2)`` (``c_in``) for ``edm`` ones, 1
    for ``vp`` and ``flow``; equal to what ``scheduler.scale_model_input`` multiplies by. Arguments and errors as in
    :func:`noise_level`.
    """
    spec = scheduler_spec(scheduler)
    t = _as_batch(timesteps, batch)
    level = _levels(scheduler, spec, t, _as_index(step_index, len(t)))
    return PARAMETERIZATIONS.get(spec.family).input_scale(level, scheduler).float()


def noise_std(
    scheduler: Any, timesteps: torch.Tensor | float, batch: int = 1, *, step_index: StepIndex = None
) -> torch.Tensor:
    """Per-sample standard deviation of the noise in the variance-preserving form of the latent (``(batch,)``,
    float32): 0 for a clean latent, 1 for pure noise, the same scale for every scheduler family.

    ``sqrt(1 - ab)`` for ``vp`` schedulers, ``sigma / sqrt(sigma^2 + 1)`` for ``sigma`` ones (EDM: ``sigma_data``
    in place of 1), ``sigma / sqrt((1 - sigma)^2 + sigma^2)`` for ``flow`` ones. What a noise-conditioned NoisyCLIP
    (``NoisyCLIPConfig.noise_conditioned``) reads beside the preview. Arguments and errors as in :func:`noise_level`.

    Examples:
        >>> from diffusers import EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler
        >>> noise_std(FlowMatchEulerDiscreteScheduler(), 500.0).tolist()
        [0.7071067690849304]
        >>> s = EulerDiscreteScheduler(); s.set_timesteps(10)
        >>> float(noise_std(s, s.timesteps[0])) > 0.99
        True
    """
    spec = scheduler_spec(scheduler)
    family = PARAMETERIZATIONS.get(spec.family)
    if family.noise_std is None:
        raise InputError(f"scheduler: the {spec.family!r} parameterisation does not define a noise_std")
    t = _as_batch(timesteps, batch)
    level = _levels(scheduler, spec, t, _as_index(step_index, len(t)))
    return family.noise_std(level, scheduler).float()


def defines_noise_std(scheduler: Any) -> bool:
    """Whether :func:`noise_std` can tell the levels of ``scheduler``: every built-in family can; a plugin's
    :class:`Parameterization` may leave ``noise_std`` out, and then only a noise-conditioned scorer is refused.

    >>> from diffusers import DDIMScheduler
    >>> defines_noise_std(DDIMScheduler())
    True
    """
    return PARAMETERIZATIONS.get(scheduler_spec(scheduler).family).noise_std is not None


def estimate_x0(
    scheduler: Any,
    latents: torch.Tensor,
    timesteps: torch.Tensor | float,
    model_output: torch.Tensor,
    *,
    step_index: StepIndex = None,
) -> torch.Tensor:
    """The x̂0 (Tweedie) estimate from a latent, its timestep and the denoiser's (guided) output.

    Equal to the ``pred_original_sample`` (or converted model output) that ``scheduler.step`` computes for the same
    latent, output and step: the noise level comes from :func:`noise_level`, the formula from the scheduler's
    parameterisation and ``prediction_type``, and ``clip_sample`` is applied where the scheduler applies it.

    Args:
        scheduler: the pipeline's scheduler (a supported class, see :data:`SCHEDULERS`).
        latents: ``(B, ...)`` latents as the pipeline holds them.
        timesteps: one timestep or one per sample.
        model_output: the denoiser output after classifier-free guidance, same shape as ``latents``.
        step_index: index into ``scheduler.timesteps`` of each latent's step; needed only where a timestep occurs
            more than once in the schedule with different noise levels.

    Raises:
        InputError: shape mismatch, or as in :func:`noise_level`.
    """
    if model_output.shape != latents.shape:
        raise InputError(
            f"model_output: expected shape {tuple(latents.shape)} to match latents, got {tuple(model_output.shape)}"
        )
    spec = scheduler_spec(scheduler)
    t = _as_batch(timesteps, latents.shape[0])
    level = _levels(scheduler, spec, t, _as_index(step_index, len(t)))
    level = level.to(device=latents.device).view(-1, *([1] * (latents.ndim - 1)))
    out = PARAMETERIZATIONS.get(spec.family).x0(
        latents.double(), model_output.double(), level, spec.prediction, scheduler
    )
    if spec.clip is not None:
        out = out.clamp(-spec.clip, spec.clip)
    return out.to(latents.dtype)
