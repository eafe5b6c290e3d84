"""Trajectory capture: every latent, timestep and x̂0 of a diffusers pipeline run, per prompt and seed.

Step index convention (used everywhere): **k = number of denoising steps completed**. ``k = 0`` is the initial noise
(times ``init_noise_sigma``), ``k = T`` is the final latent the VAE decodes; the fraction of the trajectory is
``k / T``. diffusers' ``callback_on_step_end`` fires *after* ``scheduler.step``, so the latent it sees at loop index
``i`` is the step-``(i + 1)`` latent; this module instead wraps ``scheduler.step`` for the duration of the call,
which sees the step-``k`` latent together with the guided denoiser output at it, and the step-``(k + 1)`` result.

For each trajectory the capture records

* ``latents[k]``, ``k = 0..T``: the latent as the pipeline holds it (FLUX latents unpacked to ``(C, h, w)``);
* ``timesteps[k]``: the scheduler timestep at which latent ``k`` is denoised (``timesteps[T] = 0``: clean);
* ``latent_scale[k]``: factor to the variance-preserving form the denoiser sees (``1/sqrt(sigma^2+1)`` for
  Euler-type schedulers, else 1; 1 at ``T``);
* ``noise_std[k]``: the noise's standard deviation in that form (:func:`~noisyclip_metrics.scoring.x0.noise_std`;
  0 at ``T``), what a noise-conditioned NoisyCLIP reads;
* ``x0[k]``: the x̂0 (Tweedie) estimate from latent ``k`` and the guided output (``x0[T] = latents[T]``);
* ``images``: the final pipeline image in ``[0, 1]``.

Each sample gets its own ``torch.Generator`` seeded with its seed, so a trajectory depends only on (prompt, seed,
settings), not on which other samples share the batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.registry import Registry
from noisyclip_metrics.scoring.model import check_prompts
from noisyclip_metrics.scoring.preview import unpack_flux
from noisyclip_metrics.scoring.x0 import defines_noise_std, estimate_x0, model_input_scale, noise_std

__all__ = [
    "PIPELINE_FAMILIES",
    "PipelineFamily",
    "TrajectoryBatch",
    "capture_trajectories",
    "generators_for",
    "pipeline_family",
    "sampler_settings",
    "scheduler_step_hook",
]


@dataclass(frozen=True)
class PipelineFamily:
    """A supported family of diffusers pipelines.

    Args:
        name: short name (``"sd"``, ``"sdxl"``, ``"sd3"``, ``"flux"``).
        classes: pipeline class names of the family.
        denoiser: attribute holding the denoiser (``"unet"`` or ``"transformer"``).
        packed: whether latents are packed in 2x2 patches during denoising (FLUX).
        preview: the published preview map of the family's latent space.
    """

    name: str
    classes: tuple[str, ...]
    denoiser: str
    packed: bool
    preview: str


PIPELINE_FAMILIES: Registry[PipelineFamily] = Registry("pipeline family")
for _fam in (
    PipelineFamily("sd", ("StableDiffusionPipeline",), "unet", False, "sd1"),
    PipelineFamily("sdxl", ("StableDiffusionXLPipeline",), "unet", False, "sdxl"),
    PipelineFamily("sd3", ("StableDiffusion3Pipeline",), "transformer", False, "sd3"),
    PipelineFamily("flux", ("FluxPipeline",), "transformer", True, "flux"),
):
    PIPELINE_FAMILIES.register(_fam.name, _fam)


def pipeline_family(pipe: Any) -> PipelineFamily:
    """The :class:`PipelineFamily` of ``pipe`` (by class, subclasses included).

    Raises:
        InputError: for an unsupported pipeline class, listing the supported ones.
    """
    mro = {cls.__name__ for cls in type(pipe).__mro__}
    for name in PIPELINE_FAMILIES:
        family = PIPELINE_FAMILIES.get(name)
        if mro & set(family.classes):
            return family
    supported = ", ".join(c for n in PIPELINE_FAMILIES for c in PIPELINE_FAMILIES.get(n).classes)
    raise InputError(f"pipe: {type(pipe).__name__} is not supported; supported pipelines: {supported}")


def generators_for(seeds: Sequence[int], device: str | torch.device = "cpu") -> list[torch.Generator]:
    """One generator per sample, seeded with its seed (diffusers draws per-sample noise from a generator list)."""
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


@dataclass(frozen=True)
class TrajectoryBatch:
    """Captured trajectories of ``B`` samples with ``T`` steps (see the module docstring for each field)."""

    prompts: tuple[str, ...]
    seeds: tuple[int, ...]
    latents: torch.Tensor  # (B, T+1, C, h, w)
    x0: torch.Tensor  # (B, T+1, C, h, w)
    timesteps: torch.Tensor  # (T+1,)
    latent_scale: torch.Tensor  # (T+1,)
    images: torch.Tensor  # (B, 3, H, W) in [0, 1]
    settings: dict[str, Any] = field(default_factory=dict)
    noise_std: torch.Tensor | None = None  # (T+1,); None where not known (a scheduler family without noise levels)

    @property
    def num_steps(self) -> int:
        """T, the number of denoising steps."""
        return int(self.latents.shape[1]) - 1

    def __len__(self) -> int:
        return len(self.prompts)


def _json_safe(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return repr(value)


def sampler_settings(
    pipe: Any,
    num_inference_steps: int,
    guidance_scale: float | None,
    height: int,
    width: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The settings that determine a trajectory besides (prompt, seed); a store refuses to mix different ones."""
    return {
        "pipeline": type(pipe).__name__,
        "model": str(getattr(getattr(pipe, "config", None), "_name_or_path", "") or getattr(pipe, "name_or_path", "")),
        "scheduler": type(pipe.scheduler).__name__,
        "scheduler_config": _json_safe(dict(pipe.scheduler.config)),
        "num_inference_steps": int(num_inference_steps),
        "guidance_scale": None if guidance_scale is None else float(guidance_scale),
        "height": int(height),
        "width": int(width),
        "extra": _json_safe(extra or {}),
    }


@contextlib.contextmanager
def scheduler_step_hook(
    scheduler: Any,
    on_step: Callable[[torch.Tensor, torch.Tensor, float, torch.Tensor], None],
) -> Iterator[None]:
    """Temporarily wrap ``scheduler.step`` so that ``on_step(sample, guided output, timestep, next sample)`` sees
    every call, with the timestep as a float (the pipeline's own ``step`` is restored on exit)."""
    had_instance_attr = "step" in vars(scheduler)
    previous = scheduler.step

    def step(model_output: torch.Tensor, timestep: Any, sample: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        out = previous(model_output, timestep, sample, *args, **kwargs)
        t = float(timestep.item() if isinstance(timestep, torch.Tensor) else timestep)
        on_step(sample, model_output, t, out[0] if isinstance(out, tuple) else out.prev_sample)
        return out

    scheduler.step = step
    try:
        yield
    finally:
        if had_instance_attr:
            scheduler.step = previous
        else:
            del scheduler.step


_Record = tuple[torch.Tensor, torch.Tensor, float, torch.Tensor, int | None]


@contextlib.contextmanager
def _recording_step(scheduler: Any) -> Iterator[list[_Record]]:
    """Temporarily wrap ``scheduler.step`` to record (sample, guided output, timestep, next sample, step index).

    The step index (into ``scheduler.timesteps``) is the scheduler's own counter, for schedulers that keep one; it
    tells apart steps that share a timestep but not a noise level (see
    :func:`noisyclip_metrics.scoring.x0.noise_level`).
    """
    records: list[_Record] = []

    def record(sample: torch.Tensor, output: torch.Tensor, t: float, nxt: torch.Tensor) -> None:
        index = getattr(scheduler, "step_index", None)  # already advanced past the step just taken
        index = None if index is None else int(index) - 1
        records.append((sample.detach().clone(), output.detach().clone(), t, nxt.detach().clone(), index))

    with scheduler_step_hook(scheduler, record):
        yield records


def _image_size(pipe: Any, height: int | None, width: int | None) -> tuple[int, int]:
    if height is not None and width is not None:
        return int(height), int(width)
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    sample = getattr(pipe, "default_sample_size", None) or int(getattr(denoiser.config, "sample_size", 64))
    size = int(sample) * int(pipe.vae_scale_factor)
    return int(height or size), int(width or size)


@torch.no_grad()
def capture_trajectories(
    pipe: Any,
    prompts: Sequence[str],
    seeds: Sequence[int],
    num_inference_steps: int = 20,
    guidance_scale: float | None = None,
    height: int | None = None,
    width: int | None = None,
    record_x0: bool = True,
    **pipe_kwargs: Any,
) -> TrajectoryBatch:
    """Run ``pipe`` once on a batch and return every step of every sample.

    Args:
        pipe: a StableDiffusion, SDXL, SD3 or FLUX pipeline (see :data:`PIPELINE_FAMILIES`).
        prompts: one prompt per sample.
        seeds: one seed per sample (each sample gets its own generator).
        num_inference_steps: T.
        guidance_scale: classifier-free guidance scale (the pipeline's default when ``None``).
        height: image height in pixels (the pipeline's default when ``None``).
        width: image width in pixels.
        record_x0: compute x̂0 at every step.
        **pipe_kwargs: passed to the pipeline call (``negative_prompt``, ``prompt_embeds``...).
    """
    family = pipeline_family(pipe)
    prompts = check_prompts(prompts)
    seeds = [int(s) for s in seeds]
    if len(seeds) != len(prompts):
        raise InputError(f"seeds: expected {len(prompts)} seeds (one per prompt), got {len(seeds)}")
    if int(num_inference_steps) < 1:
        raise InputError(f"num_inference_steps: expected >= 1, got {num_inference_steps}")
    height, width = _image_size(pipe, height, width)
    device = getattr(pipe, "_execution_device", None) or torch.device("cpu")
    kwargs = dict(pipe_kwargs)
    if guidance_scale is not None:
        kwargs["guidance_scale"] = guidance_scale
    if "prompt_embeds" not in kwargs:
        kwargs["prompt"] = prompts
    with _recording_step(pipe.scheduler) as records:
        out = pipe(
            num_inference_steps=num_inference_steps,
            height=height,
            width=width,
            generator=generators_for(seeds, device=device),
            output_type="pt",
            return_dict=True,
            **kwargs,
        )
    if not records:
        raise InputError("pipe: the scheduler's step() was never called; cannot record a trajectory")
    unpack = (lambda z: unpack_flux(z, height, width, pipe.vae_scale_factor)) if family.packed else (lambda z: z)
    latents = [unpack(r[0]) for r in records] + [unpack(records[-1][3])]
    timesteps = torch.tensor([r[2] for r in records] + [0.0], dtype=torch.float64)
    index = None if any(r[4] is None for r in records) else torch.tensor([r[4] for r in records])
    scale = model_input_scale(pipe.scheduler, timesteps[:-1], len(records), step_index=index)
    latent_scale = torch.cat([scale, torch.ones(1)])
    levels = (  # what a noise-conditioned scorer reads; a plugin parameterisation may not define it
        torch.cat([noise_std(pipe.scheduler, timesteps[:-1], len(records), step_index=index), torch.zeros(1)])
        if defines_noise_std(pipe.scheduler)
        else None
    )
    if record_x0:
        x0 = [unpack(estimate_x0(pipe.scheduler, r[0], r[2], r[1], step_index=r[4])) for r in records]
        x0 = [*x0, latents[-1]]
    else:
        x0 = [torch.full_like(z, float("nan")) for z in latents]
    images = out.images if isinstance(out.images, torch.Tensor) else torch.as_tensor(out.images)
    return TrajectoryBatch(
        prompts=tuple(prompts),
        seeds=tuple(seeds),
        latents=torch.stack(latents, dim=1).float().cpu(),
        x0=torch.stack(x0, dim=1).float().cpu(),
        timesteps=timesteps.float(),
        latent_scale=latent_scale.float(),
        noise_std=None if levels is None else levels.float(),
        images=images.float().cpu().clamp(0, 1),
        settings=sampler_settings(
            pipe,
            num_inference_steps,
            guidance_scale,
            height,
            width,
            {k: v for k, v in pipe_kwargs.items() if not isinstance(v, torch.Tensor)},
        ),
    )
