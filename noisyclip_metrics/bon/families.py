"""Loop adapters of the four supported pipeline families (registered in :data:`~.loops.LOOP_ADAPTERS`).

Each adapter mirrors its pipeline's ``__call__`` in diffusers (0.30+) step for step, for the options early-stopping
BoN supports: prompt(s), negative prompt, guidance scale, guidance rescale and DDIM eta (SD/SDXL), FLUX distilled
guidance (``guidance_embeds``) and true CFG (``true_cfg_scale`` with a negative prompt), height, width, steps.
Not supported (they are not needed to rank candidates and would each need their own pruning rules): IP-adapters,
SD3 skip-layer guidance, SDXL ``denoising_end``/micro-conditioning overrides, custom ``timesteps``/``sigmas``.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from noisyclip_metrics.bon.loops import (
    LOOP_ADAPTERS,
    UNPRUNABLE_SCHEDULERS,
    DenoiserInputs,
    LoopAdapter,
    LoopSettings,
    LoopState,
    call_default,
    family_module,
)
from noisyclip_metrics.diffusion.trajectory import PipelineFamily, _image_size, generators_for, pipeline_family
from noisyclip_metrics.errors import InputError
from noisyclip_metrics.scoring.preview import unpack_flux

__all__ = ["FluxAdapter", "SD3Adapter", "UNetAdapter", "loop_adapter"]


def _defaults(pipe: Any, settings: LoopSettings) -> tuple[int, float, int, int]:
    steps = settings.num_inference_steps
    if steps is None:  # only an omitted setting takes the pipeline's default (0 is refused by LoopSettings)
        steps = call_default(pipe, "num_inference_steps", 50)
    guidance = settings.guidance_scale if settings.guidance_scale is not None else call_default(pipe, "guidance_scale")
    height, width = _image_size(pipe, settings.height, settings.width)
    return int(steps), float(guidance), height, width


def _postprocess(pipe: Any, image: torch.Tensor) -> torch.Tensor:
    out = pipe.image_processor.postprocess(image, output_type="pt", do_denormalize=[True] * image.shape[0])
    return out.float().clamp(0, 1)


def _negatives(settings: LoopSettings, batch: int) -> list[str] | None:
    return None if settings.negative_prompt is None else [settings.negative_prompt] * batch


class UNetAdapter:
    """StableDiffusionPipeline and StableDiffusionXLPipeline (``xl=True``)."""

    def __init__(self, xl: bool) -> None:
        self.xl = xl

    def prepare(self, pipe: Any, prompts: list[str], seeds: list[int], settings: LoopSettings) -> LoopState:
        family, _ = loop_adapter(pipe)
        module = family_module(pipe, family)
        steps, guidance, height, width = _defaults(pipe, settings)
        pipe._guidance_scale, pipe._guidance_rescale = guidance, float(settings.guidance_rescale)
        pipe._clip_skip, pipe._cross_attention_kwargs, pipe._interrupt = None, None, False
        pipe._denoising_end = None
        device = pipe._execution_device
        cfg = bool(pipe.do_classifier_free_guidance)
        batch = len(prompts)
        tensors: dict[str, torch.Tensor | None] = {}
        if self.xl:
            pe, npe, pooled, npooled = pipe.encode_prompt(
                prompt=prompts,
                device=device,
                num_images_per_prompt=1,
                do_classifier_free_guidance=cfg,
                negative_prompt=_negatives(settings, batch),
            )
            proj = int(pooled.shape[-1]) if pipe.text_encoder_2 is None else pipe.text_encoder_2.config.projection_dim
            time_ids = pipe._get_add_time_ids(
                (height, width), (0, 0), (height, width), dtype=pe.dtype, text_encoder_projection_dim=proj
            )
            time_ids = time_ids.to(device).repeat(batch, 1)
            if cfg:
                pe, pooled, time_ids = torch.cat([npe, pe]), torch.cat([npooled, pooled]), torch.cat([time_ids] * 2)
            tensors.update(prompt_embeds=pe.to(device), text_embeds=pooled.to(device), time_ids=time_ids)
        else:
            pe, npe = pipe.encode_prompt(prompts, device, 1, cfg, _negatives(settings, batch))
            tensors["prompt_embeds"] = torch.cat([npe, pe]) if cfg else pe
        timesteps, _ = module.retrieve_timesteps(pipe.scheduler, steps, device)
        generators = generators_for(seeds, device=device)
        latents = pipe.prepare_latents(
            batch, pipe.unet.config.in_channels, height, width, tensors["prompt_embeds"].dtype, device, generators
        )
        extra = pipe.prepare_extra_step_kwargs(generators, settings.eta)
        if pipe.unet.config.time_cond_proj_dim is not None:
            g = torch.tensor(guidance - 1).repeat(batch)
            tensors["timestep_cond"] = pipe.get_guidance_scale_embedding(
                g, embedding_dim=pipe.unet.config.time_cond_proj_dim
            ).to(device=device, dtype=latents.dtype)
        if self.xl and hasattr(pipe.scheduler, "set_begin_index"):
            pipe.scheduler.set_begin_index(0)
        doubled = frozenset({"prompt_embeds", "text_embeds", "time_ids"} if cfg else set())
        options = {"cfg": cfg, "guidance": guidance, "rescale": float(settings.guidance_rescale), "module": module}
        return LoopState(pipe, family, latents, timesteps, generators, tensors, doubled, extra, options, height, width)

    def model_output(self, state: LoopState) -> torch.Tensor:
        return self.combine(state, self.denoise(state.pipe, self.inputs(state)))

    def inputs(self, state: LoopState) -> DenoiserInputs:
        """The denoiser's inputs at the current latents, one timestep per row (scaled by the run's scheduler)."""
        o, t, tensors = state.options, state.timesteps[state.step], state.tensors
        x = torch.cat([state.latents] * 2) if o["cfg"] else state.latents
        if hasattr(state.pipe.scheduler, "scale_model_input"):
            x = state.pipe.scheduler.scale_model_input(x, t)
        rows = {"encoder_hidden_states": tensors["prompt_embeds"], "timestep_cond": tensors.get("timestep_cond")}
        if self.xl:
            rows.update(text_embeds=tensors["text_embeds"], time_ids=tensors["time_ids"])
        return DenoiserInputs(x, t.expand(x.shape[0]), rows)

    def denoise(self, pipe: Any, inputs: DenoiserInputs) -> torch.Tensor:
        """One UNet call on (possibly several runs') inputs."""
        rows = inputs.rows
        added = {"text_embeds": rows["text_embeds"], "time_ids": rows["time_ids"]} if self.xl else None
        return pipe.unet(
            inputs.sample,
            inputs.timesteps,
            encoder_hidden_states=rows["encoder_hidden_states"],
            timestep_cond=rows.get("timestep_cond"),
            cross_attention_kwargs=None,
            added_cond_kwargs=added,
            return_dict=False,
        )[0]

    def combine(self, state: LoopState, out: torch.Tensor) -> torch.Tensor:
        """Classifier-free guidance on the run's rows of the denoiser output."""
        o = state.options
        if o["cfg"]:
            uncond, text = out.chunk(2)
            out = uncond + o["guidance"] * (text - uncond)
            if o["rescale"] > 0.0:
                out = o["module"].rescale_noise_cfg(out, text, guidance_rescale=o["rescale"])
        return out

    def unpack(self, state: LoopState, latents: torch.Tensor) -> torch.Tensor:
        return latents

    def decode(self, state: LoopState) -> torch.Tensor:
        vae, latents = state.pipe.vae, state.latents
        if not self.xl:
            image = vae.decode(latents / vae.config.scaling_factor, return_dict=False, generator=state.generators)[0]
            return _postprocess(state.pipe, image)
        upcast = vae.dtype == torch.float16 and vae.config.force_upcast
        if upcast:
            vae.to(dtype=torch.float32)
            latents = latents.float()
        mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
        if mean is not None and std is not None:
            mean = torch.tensor(mean).view(1, -1, 1, 1).to(latents.device, latents.dtype)
            std = torch.tensor(std).view(1, -1, 1, 1).to(latents.device, latents.dtype)
            latents = latents * std / vae.config.scaling_factor + mean
        else:
            latents = latents / vae.config.scaling_factor
        image = vae.decode(latents, return_dict=False)[0]
        if upcast:
            vae.to(dtype=torch.float16)
        return _postprocess(state.pipe, image)


class SD3Adapter:
    """StableDiffusion3Pipeline (flow matching; the scheduler's dynamic shift as the pipeline computes it)."""

    def prepare(self, pipe: Any, prompts: list[str], seeds: list[int], settings: LoopSettings) -> LoopState:
        family, _ = loop_adapter(pipe)
        module = family_module(pipe, family)
        steps, guidance, height, width = _defaults(pipe, settings)
        pipe._guidance_scale, pipe._clip_skip, pipe._joint_attention_kwargs = guidance, None, None
        pipe._interrupt = False
        device = pipe._execution_device
        cfg = bool(pipe.do_classifier_free_guidance)
        batch = len(prompts)
        msl = settings.max_sequence_length
        msl = call_default(pipe, "max_sequence_length", 256) if msl is None else msl
        pe, npe, pooled, npooled = pipe.encode_prompt(
            prompt=prompts,
            prompt_2=None,
            prompt_3=None,
            negative_prompt=_negatives(settings, batch),
            do_classifier_free_guidance=cfg,
            device=device,
            num_images_per_prompt=1,
            max_sequence_length=msl,
        )
        if cfg:
            pe, pooled = torch.cat([npe, pe]), torch.cat([npooled, pooled])
        generators = generators_for(seeds, device=device)
        latents = pipe.prepare_latents(
            batch, pipe.transformer.config.in_channels, height, width, pe.dtype, device, generators
        )
        kwargs: dict[str, Any] = {}
        cfg_s = pipe.scheduler.config
        if cfg_s.get("use_dynamic_shifting", None):
            patch = pipe.transformer.config.patch_size
            seq = (latents.shape[2] // patch) * (latents.shape[3] // patch)
            kwargs["mu"] = module.calculate_shift(
                seq,
                cfg_s.get("base_image_seq_len", 256),
                cfg_s.get("max_image_seq_len", 4096),
                cfg_s.get("base_shift", 0.5),
                cfg_s.get("max_shift", 1.16),
            )
        timesteps, _ = module.retrieve_timesteps(pipe.scheduler, steps, device, sigmas=None, **kwargs)
        tensors: dict[str, torch.Tensor | None] = {"prompt_embeds": pe, "pooled": pooled}
        doubled = frozenset({"prompt_embeds", "pooled"} if cfg else set())
        options = {"cfg": cfg, "guidance": guidance}
        return LoopState(pipe, family, latents, timesteps, generators, tensors, doubled, {}, options, height, width)

    def model_output(self, state: LoopState) -> torch.Tensor:
        return self.combine(state, self.denoise(state.pipe, self.inputs(state)))

    def inputs(self, state: LoopState) -> DenoiserInputs:
        """The transformer's inputs at the current latents, one timestep per row."""
        t = state.timesteps[state.step]
        x = torch.cat([state.latents] * 2) if state.options["cfg"] else state.latents
        rows = {"encoder_hidden_states": state.tensors["prompt_embeds"], "pooled_projections": state.tensors["pooled"]}
        return DenoiserInputs(x, t.expand(x.shape[0]), rows)

    def denoise(self, pipe: Any, inputs: DenoiserInputs) -> torch.Tensor:
        """One transformer call on (possibly several runs') inputs."""
        return pipe.transformer(
            hidden_states=inputs.sample,
            timestep=inputs.timesteps,
            joint_attention_kwargs=None,
            return_dict=False,
            **inputs.rows,
        )[0]

    def combine(self, state: LoopState, out: torch.Tensor) -> torch.Tensor:
        """Classifier-free guidance on the run's rows of the transformer output."""
        o = state.options
        if o["cfg"]:
            uncond, text = out.chunk(2)
            out = uncond + o["guidance"] * (text - uncond)
        return out

    def unpack(self, state: LoopState, latents: torch.Tensor) -> torch.Tensor:
        return latents

    def decode(self, state: LoopState) -> torch.Tensor:
        vae = state.pipe.vae
        latents = state.latents / vae.config.scaling_factor + vae.config.shift_factor
        return _postprocess(state.pipe, vae.decode(latents, return_dict=False)[0])


class FluxAdapter:
    """FluxPipeline (packed latents, distilled guidance embedding, optional true CFG with a negative prompt)."""

    def prepare(self, pipe: Any, prompts: list[str], seeds: list[int], settings: LoopSettings) -> LoopState:
        family, _ = loop_adapter(pipe)
        module = family_module(pipe, family)
        steps, guidance, height, width = _defaults(pipe, settings)
        pipe._guidance_scale, pipe._joint_attention_kwargs, pipe._interrupt = guidance, {}, False
        device = pipe._execution_device
        batch = len(prompts)
        msl = settings.max_sequence_length
        msl = call_default(pipe, "max_sequence_length", 512) if msl is None else msl
        true_cfg = settings.true_cfg_scale > 1 and settings.negative_prompt is not None
        pe, pooled, text_ids = pipe.encode_prompt(
            prompt=prompts, prompt_2=None, device=device, num_images_per_prompt=1, max_sequence_length=msl
        )
        tensors: dict[str, torch.Tensor | None] = {"prompt_embeds": pe, "pooled": pooled}
        options: dict[str, Any] = {
            "text_ids": text_ids,
            "true_cfg": true_cfg,
            "true_cfg_scale": settings.true_cfg_scale,
        }
        if true_cfg:
            npe, npooled, ntext_ids = pipe.encode_prompt(
                prompt=_negatives(settings, batch),
                prompt_2=None,
                device=device,
                num_images_per_prompt=1,
                max_sequence_length=msl,
            )
            tensors.update(neg_prompt_embeds=npe, neg_pooled=npooled)
            options["neg_text_ids"] = ntext_ids
        generators = generators_for(seeds, device=device)
        latents, image_ids = pipe.prepare_latents(
            batch, pipe.transformer.config.in_channels // 4, height, width, pe.dtype, device, generators
        )
        options["image_ids"] = image_ids
        cfg_s = pipe.scheduler.config
        sigmas = None if cfg_s.get("use_flow_sigmas", False) else np.linspace(1.0, 1 / steps, steps)
        mu = module.calculate_shift(
            latents.shape[1],
            cfg_s.get("base_image_seq_len", 256),
            cfg_s.get("max_image_seq_len", 4096),
            cfg_s.get("base_shift", 0.5),
            cfg_s.get("max_shift", 1.15),
        )
        timesteps, _ = module.retrieve_timesteps(pipe.scheduler, steps, device, sigmas=sigmas, mu=mu)
        if pipe.transformer.config.guidance_embeds:
            tensors["guidance"] = torch.full([1], guidance, device=device, dtype=torch.float32).expand(batch)
        pipe.scheduler.set_begin_index(0)
        return LoopState(pipe, family, latents, timesteps, generators, tensors, frozenset(), {}, options, height, width)

    def _call(self, state: LoopState, t: torch.Tensor, key: str, prefix: str, ids: str) -> torch.Tensor:
        transformer = state.pipe.transformer
        context = transformer.cache_context(key) if hasattr(transformer, "cache_context") else nullcontext()
        with context:
            return transformer(
                hidden_states=state.latents,
                timestep=t / 1000,
                guidance=state.tensors.get("guidance"),
                pooled_projections=state.tensors[f"{prefix}pooled"],
                encoder_hidden_states=state.tensors[f"{prefix}prompt_embeds"],
                txt_ids=state.options[ids],
                img_ids=state.options["image_ids"],
                joint_attention_kwargs=state.pipe._joint_attention_kwargs,
                return_dict=False,
            )[0]

    def model_output(self, state: LoopState) -> torch.Tensor:
        t = state.timesteps[state.step]
        state.pipe._current_timestep = t
        timestep = t.expand(state.batch).to(state.latents.dtype)
        out = self._call(state, timestep, "cond", "", "text_ids")
        if state.options["true_cfg"]:
            neg = self._call(state, timestep, "uncond", "neg_", "neg_text_ids")
            out = neg + state.options["true_cfg_scale"] * (out - neg)
        return out

    def inputs(self, state: LoopState) -> DenoiserInputs:
        """The transformer's inputs at the current latents (one timestep per row); runs with true CFG, which call
        the transformer twice, are refused."""
        if state.options["true_cfg"]:
            raise InputError("negative_prompt: a FLUX run with true CFG calls the transformer twice; run it alone")
        t = state.timesteps[state.step]
        state.pipe._current_timestep = t
        rows = {
            "guidance": state.tensors.get("guidance"),
            "pooled_projections": state.tensors["pooled"],
            "encoder_hidden_states": state.tensors["prompt_embeds"],
        }
        shared = {"txt_ids": state.options["text_ids"], "img_ids": state.options["image_ids"]}
        return DenoiserInputs(state.latents, t.expand(state.batch).to(state.latents.dtype), rows, shared)

    def denoise(self, pipe: Any, inputs: DenoiserInputs) -> torch.Tensor:
        """One transformer call on (possibly several runs') inputs."""
        transformer = pipe.transformer
        context = transformer.cache_context("cond") if hasattr(transformer, "cache_context") else nullcontext()
        with context:
            return transformer(
                hidden_states=inputs.sample,
                timestep=inputs.timesteps / 1000,
                joint_attention_kwargs={},  # what prepare() sets on every run
                return_dict=False,
                **inputs.rows,
                **inputs.shared,
            )[0]

    def combine(self, state: LoopState, out: torch.Tensor) -> torch.Tensor:
        """The run's rows as they are (FLUX's guidance is distilled into the transformer)."""
        return out

    def unpack(self, state: LoopState, latents: torch.Tensor) -> torch.Tensor:
        return unpack_flux(latents, state.height, state.width, state.pipe.vae_scale_factor)

    def decode(self, state: LoopState) -> torch.Tensor:
        pipe = state.pipe
        state.pipe._current_timestep = None
        latents = pipe._unpack_latents(state.latents, state.height, state.width, pipe.vae_scale_factor)
        latents = latents / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
        return _postprocess(pipe, pipe.vae.decode(latents, return_dict=False)[0])


for _name, _adapter in (
    ("sd", UNetAdapter(xl=False)),
    ("sdxl", UNetAdapter(xl=True)),
    ("sd3", SD3Adapter()),
    ("flux", FluxAdapter()),
):
    if _name not in LOOP_ADAPTERS:
        LOOP_ADAPTERS.register(_name, _adapter)


def loop_adapter(pipe: Any) -> tuple[PipelineFamily, LoopAdapter]:
    """The family and loop adapter of ``pipe`` (the adapters of this module are registered by importing it).

    Raises:
        InputError: for an unsupported pipeline class (listing the supported ones) or scheduler.
    """
    family = pipeline_family(pipe)
    scheduler = type(getattr(pipe, "scheduler", None)).__name__
    if scheduler in UNPRUNABLE_SCHEDULERS:
        raise InputError(
            f"pipe.scheduler: {scheduler} keeps one noise sampler for the whole batch, so candidates cannot be "
            "dropped; use DPMSolverMultistepScheduler(algorithm_type='sde-dpmsolver++') or another scheduler"
        )
    return family, LOOP_ADAPTERS.get(family.name)
