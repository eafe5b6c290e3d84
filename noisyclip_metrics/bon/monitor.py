"""``NoisyCLIPMonitor``: per-step scores of a batch from inside any diffusers pipeline call.

For users who keep their own generation loop (or just call the pipeline)::

    monitor = NoisyCLIPMonitor(scorer, prompts, threshold=0.2)
    pipe(prompts, callback_on_step_end=monitor)
    monitor.scores[k]          # (B,) scores of the step-k latents, k = 1..T

The monitor is a diffusers :class:`~diffusers.callbacks.PipelineCallback` that declares the tensors it reads
(``tensor_inputs = ["latents"]``) and hands every tensor on unchanged, so it chains with other callbacks::

    pipe(prompts, callback_on_step_end=MultiPipelineCallbacks([monitor, SDCFGCutoffCallback(cutoff_step_ratio=0.4)]))

Step index convention: k = number of completed denoising steps. diffusers calls ``callback_on_step_end`` after
``scheduler.step`` at loop index ``i``, so the latent it passes is the step-``k = i + 1`` latent, which sits at the
scheduler's ``timesteps[k]`` (clean at ``k = T``). Euler-type latents are scaled to the variance-preserving form the
scorers expect (:func:`noisyclip_metrics.scoring.x0.model_input_scale`); FLUX latents are unpacked (``height``/``width``
are needed for that; a square image is assumed when they are not given). Noise levels are read at the latent's step
(``step_index=k``; for x̂0 inside :meth:`~NoisyCLIPMonitor.watch`, the scheduler's own step counter), so schedules in
which a timestep occurs twice with different levels (Karras sigmas at 50+ steps, KDPM2) work.

With ``threshold``, the monitor sets ``pipe._interrupt = True`` as soon as every candidate of the batch scores
below it: the pipeline skips its remaining steps and decodes the current latents (diffusers' interrupt).

Scorers that read latents alone (``noisyclip``, ``clip``) need nothing more. The callback does not see the denoiser
output that x̂0 scorers (``noisyclip-x0``, ``clip-x0``...) need, so for them the call runs inside
``with monitor.watch(pipe):``, which keeps the last ``scheduler.step`` inputs. At loop index ``i`` those are the
step-``i`` latent and the guided output at it, so the callback scores the step-``i`` x̂0 (``monitor.scores[i]``,
i = 0..T-1) and, after the last step, the final latent as its own x̂0 (``monitor.scores[T]``)::

    with monitor.watch(pipe):
        pipe(prompts, callback_on_step_end=monitor)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from diffusers.callbacks import PipelineCallback

from noisyclip_metrics.diffusion.trajectory import pipeline_family, scheduler_step_hook
from noisyclip_metrics.errors import InputError
from noisyclip_metrics.scoring.model import check_prompts
from noisyclip_metrics.scoring.preview import unpack_flux
from noisyclip_metrics.scoring.scorers import ScoreInputs, Scorer
from noisyclip_metrics.scoring.x0 import estimate_x0, model_input_scale

__all__ = ["NoisyCLIPMonitor"]


class NoisyCLIPMonitor(PipelineCallback):
    """A ``callback_on_step_end`` that records per-step scores (and can interrupt the pipeline).

    A :class:`~diffusers.callbacks.PipelineCallback`: pipelines read the tensors it needs from :attr:`tensor_inputs`,
    and :class:`~diffusers.callbacks.MultiPipelineCallbacks` chains it with other callbacks (it changes no tensor).

    Args:
        scorer: any scorer of latents or x̂0 (``noisyclip``, ``clip``; ``noisyclip-x0``, ``clip-x0`` and
            ``clip-x0-decoded`` inside :meth:`watch`).
        prompts: one prompt for the whole batch, or one per prompt of the call (repeated for
            ``num_images_per_prompt`` as diffusers lays the batch out).
        every: score every ``every`` steps (and always at the last step).
        threshold: interrupt when every candidate scores below this (raw cosine); ``None``: never.
        height: image height in pixels (FLUX unpacking).
        width: image width in pixels.

    Examples:
        >>> import tempfile, torch
        >>> from noisyclip_metrics.testing import tiny_pipeline
        >>> from noisyclip_metrics.scoring.model import NoisyCLIPModel, TINY_TEST_CONFIG
        >>> from noisyclip_metrics.scoring.scorers import build_scorer
        >>> pipe = tiny_pipeline("sd", tempfile.mkdtemp())
        >>> scorer = build_scorer("clip", model=NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0))
        >>> monitor = NoisyCLIPMonitor(scorer, "a red circle")
        >>> _ = pipe(["a red circle"] * 2, num_inference_steps=3, height=32, width=32, output_type="pt",
        ...          callback_on_step_end=monitor)
        >>> sorted(monitor.scores), tuple(monitor.scores[3].shape)
        ([1, 2, 3], (2,))
    """

    @property
    def tensor_inputs(self) -> list[str]:
        """What the pipeline passes in ``callback_kwargs`` (diffusers' ``PipelineCallback`` protocol)."""
        return ["latents"]

    def __init__(
        self,
        scorer: Scorer,
        prompts: str | Sequence[str],
        every: int = 1,
        threshold: float | None = None,
        height: int | None = None,
        width: int | None = None,
    ) -> None:
        if not isinstance(scorer, Scorer):
            raise InputError(f"scorer: expected a Scorer, got {type(scorer).__name__}")
        if not set(scorer.requires) & {"latents", "x0"} or "images" in scorer.requires:
            raise InputError(
                f"scorer: the monitor sees latents (and x̂0 inside watch()); {scorer.name!r} needs "
                f"{sorted(scorer.requires)}"
            )
        if not isinstance(every, int) or every < 1:
            raise InputError(f"every: expected an integer >= 1, got {every!r}")
        if threshold is not None and math.isnan(float(threshold)):
            raise InputError(f"threshold: expected a number, got {threshold!r}")
        # PipelineCallback.__init__ validates CFG-cutoff settings this callback does not have: register only what
        # describes the monitor (JSON values, so diffusers' config repr works).
        self.register_to_config(every=every, threshold=threshold, height=height, width=width)
        self.scorer = scorer
        self.prompts = [prompts] if isinstance(prompts, str) else check_prompts(prompts)
        self.every, self.threshold = every, None if threshold is None else float(threshold)
        self.height, self.width = height, width
        self.scores: dict[int, torch.Tensor] = {}
        self.interrupted_at: int | None = None
        self._reads_x0 = "x0" in scorer.requires
        # (sample, guided output, timestep, step index or None), set by steps inside watch()
        self._last_step: tuple[torch.Tensor, torch.Tensor, float, int | None] | None = None

    @contextlib.contextmanager
    def watch(self, pipe: Any) -> Iterator[NoisyCLIPMonitor]:
        """Keep the inputs of the pipeline's latest ``scheduler.step`` (what an x̂0 scorer needs) for one call."""

        def keep(sample: torch.Tensor, output: torch.Tensor, t: float, _: torch.Tensor) -> None:
            index = getattr(pipe.scheduler, "step_index", None)  # the scheduler's counter, already past this step
            self._last_step = (sample.detach(), output.detach(), t, None if index is None else int(index) - 1)

        try:
            with scheduler_step_hook(pipe.scheduler, keep):
                yield self
        finally:
            self._last_step = None

    def reset(self) -> None:
        """Forget recorded scores (before reusing the monitor for another call)."""
        self.scores, self.interrupted_at = {}, None

    def as_tensor(self) -> tuple[list[int], torch.Tensor]:
        """(steps, ``(B, len(steps))`` scores) of everything recorded, in step order."""
        steps = sorted(self.scores)
        if not steps:
            return [], torch.empty(0, 0)
        return steps, torch.stack([self.scores[k] for k in steps], dim=1)

    def _batch_prompts(self, batch: int) -> list[str]:
        if len(self.prompts) == 1:
            return self.prompts * batch
        if batch % len(self.prompts):
            raise InputError(f"prompts: {len(self.prompts)} prompts do not divide the pipeline's batch of {batch}")
        per = batch // len(self.prompts)
        return [p for p in self.prompts for _ in range(per)]

    def _unpack(self, pipe: Any, latents: torch.Tensor) -> torch.Tensor:
        if latents.ndim != 3:
            return latents
        factor = int(pipe.vae_scale_factor)
        if self.height is None or self.width is None:
            side = round(math.sqrt(latents.shape[1])) * 2 * factor
            return unpack_flux(latents, self.height or side, self.width or side, factor)
        return unpack_flux(latents, self.height, self.width, factor)

    def callback_fn(self, pipe: Any, step_index: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        """The ``callback_on_step_end`` hook; returns ``callback_kwargs`` unchanged (the next callback's input)."""
        if "latents" not in callback_kwargs:
            raise InputError(
                "callback_kwargs: no 'latents'; call the pipeline with callback_on_step_end_tensor_inputs=['latents']"
            )
        sched = pipe.scheduler
        num_steps = int(getattr(pipe, "_num_timesteps", None) or len(sched.timesteps))
        k = int(step_index) + 1
        if self._reads_x0 and self._last_step is None:  # callbacks follow a step: None means outside watch()
            raise InputError(
                f"scorer: {self.scorer.name!r} reads x̂0, which needs the denoiser output; run the "
                "pipeline inside `with monitor.watch(pipe):`"
            )
        if k % self.every and k != num_steps:
            return callback_kwargs
        pipeline_family(pipe)  # unsupported pipelines fail clearly
        latents = self._unpack(pipe, callback_kwargs["latents"])
        batch = int(latents.shape[0])
        prompts = self._batch_prompts(batch)
        with torch.no_grad():
            if self._reads_x0:
                assert self._last_step is not None  # checked above
                sample, output, t_i, index = self._last_step
                index = k - 1 if index is None else index  # the step-(k - 1) latent was the input of this step
                x0 = self._unpack(pipe, estimate_x0(sched, sample, t_i, output, step_index=index))
                t_b = torch.as_tensor(t_i, dtype=torch.float64).flatten().expand(batch)
                inputs = ScoreInputs(prompts=prompts, x0=x0, step=index, timesteps=t_b, scheduler=sched)
                self._record(pipe, k - 1, inputs, num_steps)
                if k == num_steps:  # the final latent is its own x̂0
                    inputs = ScoreInputs(prompts=prompts, x0=latents, step=k, noise_std=0.0)
                    self._record(pipe, k, inputs, num_steps)
                return callback_kwargs
            if k < num_steps:
                t = torch.full((batch,), float(sched.timesteps[k]))
                scale = model_input_scale(sched, t, batch, step_index=k)
            else:
                t, scale = torch.zeros(batch), torch.ones(batch)
            self._record(
                pipe,
                k,
                ScoreInputs(
                    prompts=prompts,
                    latents=latents,
                    timesteps=t,
                    latent_scale=scale.to(latents.device),
                    step=k,
                    scheduler=sched,
                    noise_std=0.0 if k == num_steps else None,
                ),
                num_steps,
            )
        return callback_kwargs

    def _record(self, pipe: Any, k: int, inputs: ScoreInputs, num_steps: int) -> None:
        self.scores[k] = self.scorer.score(inputs).detach().float().cpu()
        if self.threshold is not None and bool((self.scores[k] < self.threshold).all()) and k < num_steps:
            pipe._interrupt = True
            self.interrupted_at = k
