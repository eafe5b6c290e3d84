"""Prunable denoising loops: a diffusers pipeline's own components driven step by step, so candidates can be dropped.

A pipeline's ``__call__`` fixes the batch for the whole run, so early-stopping Best-of-N drives the pipeline's
components itself, one *loop adapter* per pipeline family (:data:`LOOP_ADAPTERS`, see
:mod:`noisyclip_metrics.bon.families`). Each adapter reproduces its pipeline's ``__call__`` (prompt encoding,
per-sample latents from one generator per seed, the pipeline's own ``retrieve_timesteps``/``calculate_shift``,
classifier-free guidance, ``scheduler.step``, VAE decoding, FLUX packing) and keeps every per-candidate tensor in
a :class:`LoopState`, where :func:`prune` can select a subset of candidates at any step:

* the latents, the per-candidate conditioning (prompt embeddings, pooled embeddings, SDXL ``add_time_ids``, FLUX
  guidance), with the classifier-free-guidance layout (unconditional block, then conditional block) kept;
* the per-sample generators the scheduler draws from (ancestral / SDE schedulers);
* the scheduler's batch state: **every tensor the scheduler holds whose shape is the latent batch's shape**, alone
  or inside a list or tuple (multistep histories ``model_outputs``, UniPC's ``last_sample``, Heun/KDPM2's
  ``sample``, PNDM's ``ets``...). Counters (``lower_order_nums``, ``_step_index``, ``timestep_list``) do not
  depend on the batch and are left as they are.

Because every operation of the loop is per sample, a surviving candidate's final image equals what the plain
pipeline produces for the same prompt, seed and settings (to float tolerance; ``tests/bon/test_early.py`` checks each
family with single-step and multistep schedulers).

Step index convention: ``state.step`` = k = number of denoising steps completed; the latent at step k sits at
``state.timesteps[k]`` (``k < T``); ``T = len(state.timesteps)`` denoiser calls per candidate.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import torch

from noisyclip_metrics.diffusion.trajectory import PipelineFamily
from noisyclip_metrics.errors import InputError
from noisyclip_metrics.registry import Registry

__all__ = [
    "LOOP_ADAPTERS",
    "UNPRUNABLE_SCHEDULERS",
    "DenoiserInputs",
    "LoopAdapter",
    "LoopSettings",
    "LoopState",
    "advance",
    "call_default",
    "family_module",
    "prune",
    "stack_inputs",
]

#: Schedulers whose state cannot be split by candidate (a Brownian-tree noise sampler built for the whole batch).
UNPRUNABLE_SCHEDULERS = ("DPMSolverSDEScheduler",)


@dataclass(frozen=True)
class LoopSettings:
    """Sampler settings of one Best-of-N run (``None``: the pipeline's own default, read from its ``__call__``).

    Args:
        num_inference_steps: requested denoising steps (T is the length of the scheduler's timesteps).
        guidance_scale: classifier-free guidance scale (FLUX: the distilled-guidance embedding).
        height: image height in pixels.
        width: image width in pixels.
        negative_prompt: negative prompt for classifier-free guidance (one for every candidate).
        guidance_rescale: SD/SDXL guidance rescale (0 = off).
        eta: DDIM eta (SD/SDXL).
        true_cfg_scale: FLUX true classifier-free guidance (needs ``negative_prompt``; 1 = off).
        max_sequence_length: T5 sequence length (SD3/FLUX; the pipeline's default when ``None``).
    """

    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    height: int | None = None
    width: int | None = None
    negative_prompt: str | None = None
    guidance_rescale: float = 0.0
    eta: float = 0.0
    true_cfg_scale: float = 1.0
    max_sequence_length: int | None = None

    def __post_init__(self) -> None:
        import math

        for name in ("num_inference_steps", "height", "width", "max_sequence_length"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InputError(f"{name}: expected an integer >= 1 or None (the pipeline's default), got {value!r}")
        for name in ("guidance_scale", "guidance_rescale", "eta", "true_cfg_scale"):
            value = getattr(self, name)
            if value is None and name == "guidance_scale":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InputError(f"{name}: expected a finite number >= 0, got {value!r}")


@dataclass
class LoopState:
    """Everything a prunable loop carries between steps (mutable; owned by one run).

    Args:
        pipe: the pipeline whose components run the loop.
        family: its :class:`~noisyclip_metrics.diffusion.trajectory.PipelineFamily`.
        latents: ``(B, ...)`` latents as the pipeline holds them (FLUX: packed).
        timesteps: the scheduler's timesteps (``T`` of them).
        generators: one generator per candidate.
        tensors: per-candidate conditioning; names in ``doubled`` hold ``2B`` rows (unconditional, then conditional).
        doubled: names of the tensors in the classifier-free-guidance layout.
        extra_step: keyword arguments of ``scheduler.step`` (``eta``, ``generator``).
        options: non-batch values the adapter needs (guidance scale, CFG flag, FLUX ids...).
        height: image height in pixels.
        width: image width in pixels.
        step: k, the number of completed steps.
    """

    pipe: Any
    family: PipelineFamily
    latents: torch.Tensor
    timesteps: torch.Tensor
    generators: list[torch.Generator]
    tensors: dict[str, torch.Tensor | None]
    doubled: frozenset[str]
    extra_step: dict[str, Any]
    options: dict[str, Any]
    height: int
    width: int
    step: int = 0

    @property
    def batch(self) -> int:
        """Number of candidates still in the loop."""
        return int(self.latents.shape[0])

    @property
    def num_steps(self) -> int:
        """T, the number of denoiser calls per candidate."""
        return len(self.timesteps)

    def timestep_at(self, k: int) -> float:
        """Timestep at which the step-``k`` latent sits (0 at ``k = T``: clean)."""
        return 0.0 if k >= self.num_steps else float(self.timesteps[k])


@dataclass(frozen=True)
class DenoiserInputs:
    """One denoiser call's inputs: ``sample`` and ``timesteps`` (one per row), the per-row conditioning ``rows``
    (keyword arguments of the denoiser, ``None`` for an unused one) in the row order of ``sample``, and ``shared``
    keyword arguments that are not per row (FLUX's position ids: the same for every run of one setting). Inputs of
    several runs stacked row-wise (:func:`stack_inputs`) make one call whose output rows are theirs."""

    sample: torch.Tensor
    timesteps: torch.Tensor
    rows: dict[str, torch.Tensor | None]
    shared: dict[str, Any] = field(default_factory=dict)

    @property
    def batch(self) -> int:
        """Rows."""
        return int(self.sample.shape[0])

    def slice(self, start: int, stop: int) -> DenoiserInputs:
        """Rows ``start:stop`` (the shared arguments as they are)."""
        rows = {k: None if v is None else v[start:stop] for k, v in self.rows.items()}
        return replace(self, sample=self.sample[start:stop], timesteps=self.timesteps[start:stop], rows=rows)


def stack_inputs(parts: Sequence[DenoiserInputs]) -> DenoiserInputs:
    """Several runs' denoiser inputs as one (rows in order; every part must have the same conditioning keys)."""
    rows: dict[str, torch.Tensor | None] = {}
    for name in parts[0].rows:
        values = [p.rows[name] for p in parts]
        rows[name] = None if values[0] is None else torch.cat(values)  # type: ignore[arg-type]
    timesteps = torch.cat([p.timesteps.to(parts[0].timesteps.dtype) for p in parts])
    return DenoiserInputs(torch.cat([p.sample for p in parts]), timesteps, rows, parts[0].shared)


class LoopAdapter(Protocol):
    """A pipeline family's prunable loop: prepare, guided denoiser output, unpack, decode."""

    def prepare(self, pipe: Any, prompts: list[str], seeds: list[int], settings: LoopSettings) -> LoopState:
        """Encode prompts, draw the per-seed latents and set the scheduler's timesteps."""
        ...

    def model_output(self, state: LoopState) -> torch.Tensor:
        """Guided denoiser output at the current latents (one denoiser call per candidate; CFG counted once)."""
        ...

    def unpack(self, state: LoopState, latents: torch.Tensor) -> torch.Tensor:
        """Latents (or a tensor of their shape) as ``(B, C, h, w)`` for scorers."""
        ...

    def decode(self, state: LoopState) -> torch.Tensor:
        """The current latents decoded as the pipeline does, ``(B, 3, H, W)`` in ``[0, 1]``."""
        ...


LOOP_ADAPTERS: Registry[LoopAdapter] = Registry("loop adapter")


def family_module(pipe: Any, family: PipelineFamily) -> Any:
    """The diffusers module that defines the family's pipeline class (its ``retrieve_timesteps`` etc.)."""
    for cls in type(pipe).__mro__:
        if cls.__name__ in family.classes:
            return importlib.import_module(cls.__module__)
    raise InputError(f"pipe: {type(pipe).__name__} is not a {family.name} pipeline")  # pragma: no cover


def call_default(pipe: Any, name: str, fallback: Any = None) -> Any:
    """Default of argument ``name`` of the pipeline's ``__call__`` (e.g. its guidance scale)."""
    param = inspect.signature(type(pipe).__call__).parameters.get(name)
    if param is None or param.default is inspect.Parameter.empty:
        return fallback
    return param.default


def _select(value: Any, shape: tuple[int, ...], index: torch.Tensor) -> Any:
    if isinstance(value, torch.Tensor) and tuple(value.shape) == shape:
        return value[index.to(value.device)]
    if isinstance(value, (list, tuple)) and any(isinstance(v, torch.Tensor) and tuple(v.shape) == shape for v in value):
        return type(value)(_select(v, shape, index) for v in value)
    return value


def prune_scheduler(scheduler: Any, shape: tuple[int, ...], index: torch.Tensor) -> None:
    """Select candidates ``index`` in every scheduler tensor of the latent batch's ``shape`` (see the module doc)."""
    for name, value in list(vars(scheduler).items()):
        new = _select(value, shape, index)
        if new is not value:
            setattr(scheduler, name, new)


def prune(state: LoopState, keep: Sequence[int]) -> None:
    """Keep only candidates ``keep`` (positions in the current batch, in the order given) everywhere in the loop.

    Raises:
        InputError: for an empty ``keep`` or a position outside the batch.
    """
    keep = [int(i) for i in keep]
    if not keep or any(not 0 <= i < state.batch for i in keep):
        raise InputError(f"keep: expected positions in 0..{state.batch - 1}, got {keep}")
    index = torch.tensor(keep, dtype=torch.long)
    shape = tuple(state.latents.shape)
    prune_scheduler(state.pipe.scheduler, shape, index)
    batch = state.batch
    state.latents = state.latents[index.to(state.latents.device)]
    for name, tensor in state.tensors.items():
        if tensor is None:
            continue
        rows = torch.cat([index, index + batch]) if name in state.doubled else index
        state.tensors[name] = tensor[rows.to(tensor.device)]
    state.generators = [state.generators[i] for i in keep]
    if isinstance(state.extra_step.get("generator"), list):
        state.extra_step["generator"] = state.generators


def chunked_output(adapter: LoopAdapter, state: LoopState, max_batch: int | None) -> torch.Tensor:
    """The guided denoiser output of every candidate, computed ``max_batch`` candidates at a time (all at once when
    ``None``): the same output to float tolerance, with the memory of a smaller batch. The scheduler is only read."""
    if max_batch is None or state.batch <= max_batch:
        return adapter.model_output(state)
    parts, batch = [], state.batch
    for start in range(0, batch, max_batch):
        rows = torch.arange(start, min(start + max_batch, batch))
        tensors = {}
        for name, tensor in state.tensors.items():
            index = torch.cat([rows, rows + batch]) if name in state.doubled else rows
            tensors[name] = None if tensor is None else tensor[index.to(tensor.device)]
        part = replace(
            state,
            latents=state.latents[rows.to(state.latents.device)],
            tensors=tensors,
            generators=[state.generators[i] for i in rows.tolist()],
        )
        parts.append(adapter.model_output(part))
    return torch.cat(parts)


def advance(state: LoopState, model_output: torch.Tensor) -> None:
    """One ``scheduler.step`` from the step-k latents with their guided denoiser output (k -> k + 1)."""
    if state.step >= state.num_steps:
        raise InputError(f"state: all {state.num_steps} steps are done")
    t = state.timesteps[state.step]
    dtype = state.latents.dtype
    state.latents = state.pipe.scheduler.step(model_output, t, state.latents, **state.extra_step, return_dict=False)[0]
    if state.latents.dtype != dtype and torch.backends.mps.is_available():  # as the pipelines do
        state.latents = state.latents.to(dtype)
    state.step += 1
