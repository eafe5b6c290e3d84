"""Scorers: one protocol for everything that turns (latents or images, prompts) into per-sample cosine scores.

============================ ============================================================ ==========================
name                         what the CLIP image tower reads                              needs
============================ ============================================================ ==========================
``noisyclip``                preview of the latent, tower fine-tuned on noisy latents      ``latents``
``noisyclip-x0``             preview of x̂0, tower fine-tuned on x̂0 previews                ``x0`` (or how to get it)
``clip``                     preview of the latent, frozen tower (the paper's baseline)    ``latents``
``clip-x0``                  preview of the scheduler's x̂0 estimate, frozen tower          ``x0`` (or how to get it)
``clip-x0-decoded``          VAE decode of x̂0, frozen tower (the expensive baseline)       ``x0``, a VAE
``clip-final``               the final pixel image, frozen tower (post-hoc reference)      ``images``
============================ ============================================================ ==========================

The two NoisyCLIP scorers check what the checkpoint was fine-tuned to read (:attr:`NoisyCLIPConfig.reads
<noisyclip_metrics.model.NoisyCLIPConfig>`) and refuse the other kind; :func:`noisyclip_scorer_name` names the
right one for a model. ``noisyclip`` needs only the latents, so it also works inside a pipeline callback
(:class:`~noisyclip_metrics.bon.monitor.NoisyCLIPMonitor`); ``noisyclip-x0`` needs the denoiser output at the step.

All return raw cosine similarities of shape ``(B,)`` (float32, on the inputs' device). x̂0 is taken from
:attr:`ScoreInputs.x0` or, when absent, computed from the latent, the timestep and the denoiser output with
:func:`noisyclip_metrics.x0.estimate_x0`. ``latent_scale`` (``1/sqrt(sigma^2+1)`` for Euler-type schedulers, see
:func:`noisyclip_metrics.x0.model_input_scale`) brings latents to the variance-preserving form before previewing.

Example:
    >>> import torch
    >>> from noisyclip_metrics.model import NoisyCLIPModel, TINY_TEST_CONFIG
    >>> model = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0)
    >>> scorer = build_scorer("clip", model=model)
    >>> scorer.score(ScoreInputs(prompts=["a red cube"], latents=torch.randn(1, 4, 16, 16))).shape
    torch.Size([1])
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from .errors import InputError
from .model import NoisyCLIPModel, check_prompts
from .preview import check_latents
from .registry import Registry
from .x0 import estimate_x0

__all__ = [
    "NOISYCLIP_SCORERS",
    "SCORERS",
    "DecodedX0Scorer",
    "FinalImageScorer",
    "PreviewScorer",
    "ScoreInputs",
    "Scorer",
    "build_scorer",
    "decode_latents",
    "list_scorers",
    "model_resource",
    "noisyclip_scorer_name",
]


@dataclass(frozen=True)
class ScoreInputs:
    """What a scorer may read for one batch. Every tensor has the batch as its first dimension.

    Args:
        prompts: one prompt per sample.
        latents: ``(B, C, h, w)`` latents as the pipeline holds them (FLUX latents unpacked).
        timesteps: ``(B,)`` (or one) scheduler timestep at which each latent sits; needed to compute x̂0.
        x0: ``(B, C, h, w)`` x̂0 estimates, if the caller has them.
        model_output: ``(B, C, h, w)`` guided denoiser output at ``latents`` (to compute x̂0 without ``x0``).
        scheduler: the pipeline's scheduler (to compute x̂0 without ``x0``).
        latent_scale: ``(B,)`` factor applied to ``latents`` before the preview (default 1).
        images: ``(B, 3, H, W)`` final images in ``[0, 1]``.
        step: the step index k of the latents (the index into the scheduler's timesteps); besides bookkeeping, it
            says which step a latent is at where its timestep occurs twice in the schedule with different noise
            levels (:func:`noisyclip_metrics.x0.noise_level`).
    """

    prompts: Sequence[str]
    latents: torch.Tensor | None = None
    timesteps: torch.Tensor | None = None
    x0: torch.Tensor | None = None
    model_output: torch.Tensor | None = None
    scheduler: Any = None
    latent_scale: torch.Tensor | None = None
    images: torch.Tensor | None = None
    step: int | None = None

    def batch_size(self) -> int:
        """Number of samples (length of ``prompts``)."""
        return len(self.prompts)

    def require_x0(self) -> torch.Tensor:
        """x̂0 from :attr:`x0`, or estimated from latents + timesteps + model output + scheduler."""
        if self.x0 is not None:
            check_latents(self.x0, name="x0")
            return self.x0
        missing = [n for n in ("latents", "timesteps", "model_output", "scheduler") if getattr(self, n) is None]
        if missing:
            raise InputError(f"x0: not given, and cannot be estimated without {missing}")
        given = (self.scheduler, self.latents, self.timesteps, self.model_output)
        return estimate_x0(*given, step_index=self.step)  # type: ignore[arg-type]


@runtime_checkable
class Scorer(Protocol):
    """Anything that maps :class:`ScoreInputs` to per-sample cosine scores."""

    name: str
    requires: frozenset[str]

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        """Return ``(B,)`` raw cosine similarities."""
        ...


def _scaled(latents: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    if scale is None:
        return latents
    scale = torch.as_tensor(scale, dtype=latents.dtype, device=latents.device).flatten()
    if scale.numel() not in (1, latents.shape[0]):
        raise InputError(f"latent_scale: expected 1 or {latents.shape[0]} values, got {scale.numel()}")
    return latents * scale.view(-1, 1, 1, 1)


def _validated(inputs: ScoreInputs, tensor: torch.Tensor | None, name: str) -> tuple[torch.Tensor, list[str]]:
    if tensor is None:
        raise InputError(f"{name}: this scorer needs {name}, got None")
    prompts = check_prompts(inputs.prompts, batch=int(tensor.shape[0]) if tensor.ndim else None)
    return tensor, prompts


@dataclass
class PreviewScorer:
    """CLIP on the preview of the latent (``source="latents"``) or of x̂0 (``source="x0"``)."""

    model: NoisyCLIPModel
    name: str = "clip"
    source: str = "latents"
    requires: frozenset[str] = field(default=frozenset({"latents"}))

    @torch.no_grad()
    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        if self.source == "x0":
            x, prompts = _validated(inputs, inputs.require_x0(), "x0")
        else:
            x, prompts = _validated(inputs, inputs.latents, "latents")
            check_latents(x, self.model.latent_channels)
            x = _scaled(x, inputs.latent_scale)
        scores = (self.model.encode_latents(x) * self.model.encode_text(prompts)).sum(-1)
        return scores.to(x.device)


def decode_latents(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """Decode denoising-space latents with a diffusers VAE into ``(B, 3, H, W)`` images in ``[0, 1]``.

    Undoes ``vae.config.scaling_factor`` and ``shift_factor`` as the pipelines do before ``vae.decode``.
    """
    scale = float(getattr(vae.config, "scaling_factor", 1.0) or 1.0)
    shift = float(getattr(vae.config, "shift_factor", 0.0) or 0.0)
    z = latents.to(device=vae.device, dtype=vae.dtype) / scale + shift
    image = vae.decode(z, return_dict=False)[0]
    return ((image.float() + 1) / 2).clamp(0, 1)


@dataclass
class DecodedX0Scorer:
    """CLIP on the VAE decode of x̂0 (one VAE decode per candidate and step: the strong, expensive baseline)."""

    model: NoisyCLIPModel
    vae: Any
    name: str = "clip-x0-decoded"
    requires: frozenset[str] = field(default=frozenset({"x0", "vae"}))

    @torch.no_grad()
    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        x0, prompts = _validated(inputs, inputs.require_x0(), "x0")
        images = decode_latents(self.vae, x0)
        return (self.model.encode_images(images) * self.model.encode_text(prompts)).sum(-1).to(x0.device)


@dataclass
class FinalImageScorer:
    """CLIP on final pixel images: the post-hoc reference (CLIPScore as t2v-metrics computes it)."""

    model: NoisyCLIPModel
    name: str = "clip-final"
    requires: frozenset[str] = field(default=frozenset({"images"}))

    @torch.no_grad()
    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        images, prompts = _validated(inputs, inputs.images, "images")
        return (self.model.encode_images(images) * self.model.encode_text(prompts)).sum(-1).to(images.device)


ScorerFactory = Callable[..., Scorer]
SCORERS: Registry[ScorerFactory] = Registry("scorer")


def _need(kind: str, **resources: Any) -> Any:
    value = resources.get(kind)
    if value is None:
        raise InputError(f"{kind}: this scorer needs a {kind}= argument, got none")
    return value


#: Scorer name -> what its fine-tuned tower reads. Every other scorer uses the frozen ``clip=`` model.
NOISYCLIP_SCORERS = {"noisyclip": "latents", "noisyclip-x0": "x0"}


def noisyclip_scorer_name(model: NoisyCLIPModel) -> str:
    """The NoisyCLIP scorer that reads what ``model`` was fine-tuned on (``noisyclip`` or ``noisyclip-x0``)."""
    return next(name for name, reads in NOISYCLIP_SCORERS.items() if reads == model.config.reads)


def model_resource(scorer: str) -> str:
    """Which model a scorer needs: ``"noisyclip"`` (fine-tuned) or ``"clip"`` (frozen)."""
    return "noisyclip" if scorer in NOISYCLIP_SCORERS else "clip"


def _fine_tuned(name: str, **resources: Any) -> PreviewScorer:
    model = _need("noisyclip", **resources)
    reads = NOISYCLIP_SCORERS[name]
    if model.config.reads != reads:
        raise InputError(
            f"noisyclip: this checkpoint was fine-tuned on previews of {model.config.reads} "
            f"(config reads={model.config.reads!r}); score it with "
            f"{noisyclip_scorer_name(model)!r}, not {name!r}"
        )
    requires = frozenset({"x0"} if reads == "x0" else {"latents"})
    return PreviewScorer(model, name=name, source=reads, requires=requires)


for _name in NOISYCLIP_SCORERS:
    SCORERS.register(_name, functools.partial(_fine_tuned, _name))
SCORERS.register("clip", lambda **r: PreviewScorer(_need("clip", **r), name="clip", source="latents"))
SCORERS.register(
    "clip-x0",
    lambda **r: PreviewScorer(_need("clip", **r), name="clip-x0", source="x0", requires=frozenset({"x0"})),
)
SCORERS.register("clip-x0-decoded", lambda **r: DecodedX0Scorer(_need("clip", **r), _need("vae", **r)))
SCORERS.register("clip-final", lambda **r: FinalImageScorer(_need("clip", **r)))


def list_scorers() -> list[str]:
    """Registered scorer names."""
    return SCORERS.names()


def build_scorer(name: str, *, model: NoisyCLIPModel | None = None, **resources: Any) -> Scorer:
    """Build a registered scorer from the resources it needs.

    Args:
        name: one of :func:`list_scorers`.
        model: shorthand for the CLIP the scorer uses (``noisyclip=`` for the NoisyCLIP scorers, ``clip=``
            otherwise).
        **resources: ``noisyclip=`` (fine-tuned model), ``clip=`` (frozen model), ``vae=`` (diffusers VAE).

    Raises:
        UnknownNameError: for an unknown scorer name (with a did-you-mean).
        InputError: when a needed resource is missing, or a NoisyCLIP checkpoint reads the other preview kind.
    """
    factory = SCORERS.get(name)
    if model is not None:
        resources.setdefault(model_resource(name), model)
    return factory(**resources)
