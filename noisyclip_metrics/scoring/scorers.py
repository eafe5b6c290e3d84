"""Scorers: one protocol for everything that turns (latents or images, prompts) into per-sample cosine scores.

>>> for name in list_scorers():
...     spec = scorer_spec(name)
...     print(f"{name:16} {spec.reads:11} {spec.model:10} {spec.summary}")
noisyclip        latents     noisyclip  preview of the latent, tower fine-tuned on noisy latents
noisyclip-x0     x0          noisyclip  preview of x̂0, tower fine-tuned on x̂0 previews
clip             latents     clip       preview of the latent, frozen tower (the paper's baseline)
clip-x0          x0          clip       preview of the scheduler's x̂0 estimate, frozen tower
clip-x0-decoded  decoded-x0  clip       VAE decode of x̂0, frozen tower (the expensive baseline)
clip-final       images      clip       the final pixel image, frozen tower (post-hoc reference)

Each scorer is declared once, as a :class:`ScorerSpec` in :data:`SCORERS`: its name, what it reads, which model it
needs (a fine-tuned checkpoint or the frozen CLIP), whether it needs a VAE, and how to build it. The command-line
choices, the evaluation runner, the demo and the Best-of-N commands read the registry; adding a scorer is one
:func:`register_scorer` call.

The two NoisyCLIP scorers check what the checkpoint was fine-tuned to read (:attr:`NoisyCLIPConfig.reads
<noisyclip_metrics.scoring.model.NoisyCLIPConfig>`) and refuse the other kind; :func:`noisyclip_scorer_name` names the
right one for a model. ``noisyclip`` needs only the latents, so it also works inside a pipeline callback
(:class:`~noisyclip_metrics.bon.monitor.NoisyCLIPMonitor`); ``noisyclip-x0`` needs the denoiser output at the step.

All return raw cosine similarities of shape ``(B,)`` (float32, on the inputs' device). x̂0 is taken from
:attr:`ScoreInputs.x0` or, when absent, computed from the latent, the timestep and the denoiser output with
:func:`noisyclip_metrics.scoring.x0.estimate_x0`. ``latent_scale`` (``1/sqrt(sigma^2+1)`` for Euler-type schedulers, see
:func:`noisyclip_metrics.scoring.x0.model_input_scale`) brings latents to the variance-preserving form before
previewing. A noise-conditioned NoisyCLIP (``NoisyCLIPConfig.noise_conditioned``) also reads each latent's noise
level: :attr:`ScoreInputs.noise_std`, or computed from the timesteps and the scheduler
(:func:`noisyclip_metrics.scoring.x0.noise_std`).

Examples:
    >>> import torch
    >>> from noisyclip_metrics.scoring.model import NoisyCLIPModel, TINY_TEST_CONFIG
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

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.registry import Registry
from noisyclip_metrics.scoring.model import NoisyCLIPModel, check_prompts
from noisyclip_metrics.scoring.preview import check_latents
from noisyclip_metrics.scoring.x0 import estimate_x0, noise_std

__all__ = [
    "SCORERS",
    "DecodedX0Scorer",
    "FinalImageScorer",
    "PreviewScorer",
    "ScoreInputs",
    "Scorer",
    "ScorerSpec",
    "build_scorer",
    "decode_latents",
    "fine_tuned_scorers",
    "list_scorers",
    "model_resource",
    "noisyclip_scorer_name",
    "register_scorer",
    "scorer_spec",
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
            levels (:func:`noisyclip_metrics.scoring.x0.noise_level`).
        noise_std: ``(B,)`` (or one) noise level of each latent in ``[0, 1]``
            (:func:`noisyclip_metrics.scoring.x0.noise_std`; 0 for a final latent), for noise-conditioned models;
            computed from ``timesteps`` and ``scheduler`` when absent.
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
    noise_std: torch.Tensor | float | None = None

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

    def require_noise_std(self) -> torch.Tensor | float:
        """The noise level of each latent: :attr:`noise_std`, or computed from the timesteps and the scheduler."""
        if self.noise_std is not None:
            return self.noise_std
        if self.timesteps is None or self.scheduler is None:
            raise InputError(
                "noise_std: a noise-conditioned scorer needs each latent's noise level: give noise_std, or timesteps "
                "and the scheduler"
            )
        return noise_std(self.scheduler, self.timesteps, self.batch_size(), step_index=self.step)


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
        level = inputs.require_noise_std() if self.model.config.noise_conditioned else None
        scores = (self.model.encode_latents(x, level) * self.model.encode_text(prompts)).sum(-1)
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
        level = inputs.require_noise_std() if self.model.config.noise_conditioned else None
        return (self.model.encode_images(images, level) * self.model.encode_text(prompts)).sum(-1).to(x0.device)


@dataclass
class FinalImageScorer:
    """CLIP on final pixel images: the post-hoc reference (CLIPScore as t2v-metrics computes it)."""

    model: NoisyCLIPModel
    name: str = "clip-final"
    requires: frozenset[str] = field(default=frozenset({"images"}))

    @torch.no_grad()
    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        images, prompts = _validated(inputs, inputs.images, "images")
        return (self.model.encode_images(images, 0.0) * self.model.encode_text(prompts)).sum(-1).to(images.device)


ScorerFactory = Callable[..., Scorer]

#: What a scorer can read, from cheapest to dearest: the latent, the scheduler's x̂0 estimate, the VAE decode of x̂0,
#: the final image.
READS = ("latents", "x0", "decoded-x0", "images")
#: Which model a scorer needs: a fine-tuned NoisyCLIP checkpoint, or the frozen CLIP.
MODELS = ("noisyclip", "clip")


@dataclass(frozen=True)
class ScorerSpec:
    """The one declaration of a scorer.

    Args:
        name: the name users pass (``--scorers``, :func:`build_scorer`).
        reads: one of :data:`READS`; a scorer of ``images`` scores only the final image (k = T).
        model: one of :data:`MODELS`: ``noisyclip`` takes a fine-tuned checkpoint (given per scorer name, e.g.
            ``--noisyclip-x0``), ``clip`` the frozen CLIP.
        build: the factory; called with the resources ``noisyclip=``, ``clip=``, ``vae=`` as keyword arguments.
        summary: one line for listings.
        needs_vae: it decodes latents with the pipeline's VAE.
        expensive: it costs a large multiple of the others per step (the quick demo leaves it out).

    Examples:
        >>> spec = scorer_spec("clip-final")
        >>> spec.reads, spec.model, spec.final_only
        ('images', 'clip', True)
    """

    name: str
    reads: str
    model: str
    build: ScorerFactory
    summary: str
    needs_vae: bool = False
    expensive: bool = False

    def __post_init__(self) -> None:
        if self.reads not in READS:
            raise ValueError(f"reads: expected one of {READS}, got {self.reads!r}")
        if self.model not in MODELS:
            raise ValueError(f"model: expected one of {MODELS}, got {self.model!r}")

    @property
    def final_only(self) -> bool:
        """It scores only the final image, so only the last step (k = T) has its scores."""
        return self.reads == "images"

    @property
    def fine_tuned(self) -> bool:
        """It takes a fine-tuned NoisyCLIP checkpoint (and its training data is checked against the run's)."""
        return self.model == "noisyclip"


SCORERS: Registry[ScorerSpec] = Registry("scorer")


def register_scorer(spec: ScorerSpec) -> ScorerSpec:
    """Add a scorer to :data:`SCORERS` (third-party packages call this from their plugin module).

    Raises:
        ValueError: if the name is taken by another scorer.

    Examples:
        A scorer of the final image's brightness; ``noisyclip evaluate --scorers clip brightness`` then records it
        once per candidate, at the last step:

        >>> class Brightness:
        ...     name, requires = "brightness", frozenset({"images"})
        ...     def score(self, inputs):
        ...         return inputs.images.mean(dim=(1, 2, 3))
        >>> spec = register_scorer(
        ...     ScorerSpec("brightness", reads="images", model="clip", build=lambda **r: Brightness(),
        ...                summary="mean pixel value of the final image"))
        >>> build_scorer("brightness").score(ScoreInputs(prompts=["a"], images=torch.ones(1, 3, 8, 8)))
        tensor([1.])
        >>> SCORERS._items.pop("brightness") is spec  # (the example cleans up after itself)
        True
    """
    return SCORERS.register(spec.name, spec)


def scorer_spec(name: str) -> ScorerSpec:
    """The declaration of scorer ``name``.

    Raises:
        UnknownNameError: for an unknown name (with a did-you-mean).
    """
    return SCORERS.get(name)


def _need(kind: str, **resources: Any) -> Any:
    value = resources.get(kind)
    if value is None:
        raise InputError(f"{kind}: this scorer needs a {kind}= argument, got none")
    return value


def fine_tuned_scorers() -> dict[str, str]:
    """Scorer name -> what its fine-tuned tower reads (``latents`` or ``x0``), for every fine-tuned scorer."""
    specs = (SCORERS.get(name) for name in SCORERS)
    return {spec.name: spec.reads for spec in specs if spec.fine_tuned}


def noisyclip_scorer_name(model: NoisyCLIPModel) -> str:
    """The NoisyCLIP scorer that reads what ``model`` was fine-tuned on (``noisyclip`` or ``noisyclip-x0``)."""
    return next(name for name, reads in fine_tuned_scorers().items() if reads == model.config.reads)


def model_resource(scorer: str) -> str:
    """Which model a scorer needs: ``"noisyclip"`` (fine-tuned) or ``"clip"`` (frozen)."""
    return SCORERS.get(scorer).model


def _fine_tuned(name: str, **resources: Any) -> PreviewScorer:
    model = _need("noisyclip", **resources)
    reads = SCORERS.get(name).reads
    if model.config.reads != reads:
        raise InputError(
            f"noisyclip: this checkpoint was fine-tuned on previews of {model.config.reads} "
            f"(config reads={model.config.reads!r}); score it with "
            f"{noisyclip_scorer_name(model)!r}, not {name!r}"
        )
    requires = frozenset({"x0"} if reads == "x0" else {"latents"})
    return PreviewScorer(model, name=name, source=reads, requires=requires)


for _spec in (
    ScorerSpec(
        "noisyclip",
        "latents",
        "noisyclip",
        functools.partial(_fine_tuned, "noisyclip"),
        "preview of the latent, tower fine-tuned on noisy latents",
    ),
    ScorerSpec(
        "noisyclip-x0",
        "x0",
        "noisyclip",
        functools.partial(_fine_tuned, "noisyclip-x0"),
        "preview of x̂0, tower fine-tuned on x̂0 previews",
    ),
    ScorerSpec(
        "clip",
        "latents",
        "clip",
        lambda **r: PreviewScorer(_need("clip", **r), name="clip", source="latents"),
        "preview of the latent, frozen tower (the paper's baseline)",
    ),
    ScorerSpec(
        "clip-x0",
        "x0",
        "clip",
        lambda **r: PreviewScorer(_need("clip", **r), name="clip-x0", source="x0", requires=frozenset({"x0"})),
        "preview of the scheduler's x̂0 estimate, frozen tower",
    ),
    ScorerSpec(
        "clip-x0-decoded",
        "decoded-x0",
        "clip",
        lambda **r: DecodedX0Scorer(_need("clip", **r), _need("vae", **r)),
        "VAE decode of x̂0, frozen tower (the expensive baseline)",
        needs_vae=True,
        expensive=True,
    ),
    ScorerSpec(
        "clip-final",
        "images",
        "clip",
        lambda **r: FinalImageScorer(_need("clip", **r)),
        "the final pixel image, frozen tower (post-hoc reference)",
    ),
):
    register_scorer(_spec)


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
    spec = SCORERS.get(name)
    if model is not None:
        resources.setdefault(spec.model, model)
    return spec.build(**resources)
