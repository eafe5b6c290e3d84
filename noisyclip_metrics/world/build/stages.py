"""The stages of a world build (registered in :data:`~noisyclip_metrics.world.build.driver.STAGES` in order)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.io.files import save_safetensors, write_json
from noisyclip_metrics.scoring.checkpoint import share_text_tower
from noisyclip_metrics.scoring.model import NoisyCLIPModel
from noisyclip_metrics.scoring.preview import PreviewMap
from noisyclip_metrics.world.assets import SHARED_COMPONENTS
from noisyclip_metrics.world.build.clip import train_world_clip
from noisyclip_metrics.world.build.clip_eval import clip_competence
from noisyclip_metrics.world.build.context import BuildContext, _register, build_record, copy_tree
from noisyclip_metrics.world.build.data import CONTEXT_LENGTH, build_tokenizer, render_pool
from noisyclip_metrics.world.build.presets import LABEL_FILES, WorldBuildConfig
from noisyclip_metrics.world.build.unet import assemble_pipeline, text_features, train_world_unet
from noisyclip_metrics.world.build.vae import encode_images, train_world_vae, vae_quality


@_register("tokenizer")
def _tokenizer(ctx: BuildContext) -> dict[str, Any]:
    folder = build_tokenizer(ctx.folder("tokenizer"))
    return {"vocab_size": len(json.loads((folder / "vocab.json").read_text(encoding="utf-8")))}


@_register("vae")
def _vae(ctx: BuildContext) -> dict[str, Any]:
    folder = ctx.folder("vae")
    vae, preview = train_world_vae(folder / "run", ctx.config.vae, progress=ctx.progress)
    vae.save_pretrained(folder / "model")
    preview.save(folder / "preview.safetensors")
    pool = render_pool(
        folder / "run" / "pool.safetensors",
        ctx.config.vae.pool_size,
        seed=ctx.config.vae.seed + 11,
        mix=ctx.config.vae.mix,
    )
    quality = vae_quality(vae, preview, pool, n=min(2000, len(pool) // 4))
    return {"scaling_factor": float(vae.config.scaling_factor), "fitted_r2": preview.r2, **quality}


@_register("clip")
def _clip(ctx: BuildContext) -> dict[str, Any]:
    folder = ctx.folder("clip")
    model = train_world_clip(folder / "run", ctx.work / "tokenizer", ctx.config.clip, progress=ctx.progress)
    preview = PreviewMap.load(ctx.work / "vae" / "preview.safetensors")
    model = NoisyCLIPModel(model.config, clip=model.clip, preview=preview, tokenizer=model.tokenizer)
    model.save_pretrained(folder / "model")
    return clip_competence(model, n_negatives=1000 if ctx.config.clip.steps > 100 else 50)


@_register("text-encoder")
def _text_encoder(ctx: BuildContext) -> dict[str, Any]:
    from noisyclip_metrics.scoring.convert import open_clip_text_to_hf
    from noisyclip_metrics.scoring.tokenizers import load_clip_tokenizer

    folder = ctx.folder("text-encoder")
    clip = NoisyCLIPModel.from_pretrained(ctx.work / "clip" / "model")
    text_encoder = open_clip_text_to_hf(clip.clip, clip.config.model_cfg)
    tokenizer = load_clip_tokenizer(ctx.work / "tokenizer", model_max_length=CONTEXT_LENGTH)
    text_encoder.save_pretrained(folder / "text_encoder")
    tokenizer.save_pretrained(folder / "tokenizer")
    return {"parameters": sum(p.numel() for p in text_encoder.parameters())}


def _load_text_side(ctx: BuildContext) -> tuple[Any, Any]:
    from transformers import CLIPTextModel

    from noisyclip_metrics.scoring.tokenizers import load_clip_tokenizer

    text_encoder = CLIPTextModel.from_pretrained(ctx.work / "text-encoder" / "text_encoder").eval()
    tokenizer = load_clip_tokenizer(ctx.work / "tokenizer", model_max_length=CONTEXT_LENGTH)
    return text_encoder, tokenizer


def _load_vae(ctx: BuildContext) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(ctx.work / "vae" / "model").eval()


@_register("unet-data")
def _unet_data(ctx: BuildContext) -> dict[str, Any]:
    from noisyclip_metrics.world.splits import make_split

    folder = ctx.folder("unet-data")
    split = make_split(seed=ctx.config.seed)
    prompts = [p.text for p in split.train(ctx.config.unet_pool, seed=ctx.config.seed + 3)]
    pool = render_pool(folder / "pool.safetensors", len(prompts), seed=ctx.config.seed + 5, texts=prompts)
    latents = encode_images(_load_vae(ctx), pool.floats(torch.arange(len(pool))))
    text_encoder, tokenizer = _load_text_side(ctx)
    unique = list(dict.fromkeys(pool.texts))
    features = text_features(text_encoder, tokenizer, [*unique, ""])
    index = {p: i for i, p in enumerate(unique)}
    tensors = {
        "latents": latents.to(torch.float16).contiguous(),
        "prompt_index": torch.tensor([index[p] for p in pool.texts]),
        "features": features[:-1].to(torch.float16).contiguous(),
        "empty": features[-1].contiguous(),
    }
    save_safetensors(tensors, folder / "data.safetensors")
    return {"renders": len(pool), "distinct_prompts": len(unique), "latent_std": float(latents.std())}


def _unet_stage(name: str) -> None:
    @_register(f"unet-{name}")
    def _run(ctx: BuildContext) -> dict[str, Any]:
        cfg = next((u for u in ctx.config.unets if u.name == name), None)
        if cfg is None:
            return {"skipped": f"{name} is not in this build's configuration"}
        data = load_file(str(ctx.work / "unet-data" / "data.safetensors"))
        folder = ctx.folder(f"unet-{name}")
        unet = train_world_unet(
            folder / "run",
            cfg,
            data["latents"],
            data["prompt_index"],
            data["features"],
            data["empty"],
            progress=ctx.progress,
        )
        text_encoder, tokenizer = _load_text_side(ctx)
        pipe = assemble_pipeline(unet, _load_vae(ctx), text_encoder, tokenizer)
        pipe.save_pretrained(folder / "pipeline")
        return {"parameters": sum(p.numel() for p in unet.parameters()), **_quick_quality(ctx, pipe)}


for _name in ("sd-small", "sd-base", "sd-large"):
    _unet_stage(_name)


def _quick_quality(ctx: BuildContext, pipe: Any, n_prompts: int = 60, seeds: int = 2) -> dict[str, Any]:
    """Oracle fully-aligned rate on a few benchmark prompts (an indicator; the evaluation runner measures)."""
    from noisyclip_metrics.diffusion.trajectory import generators_for
    from noisyclip_metrics.world.oracle import judge_batch
    from noisyclip_metrics.world.splits import benchmark_prompts

    pipe.set_progress_bar_config(disable=True)
    prompts = [p.text for p in benchmark_prompts(n_prompts if ctx.config.unets[0].steps > 100 else 4)]
    texts = [p for p in prompts for _ in range(seeds)]
    seeds_list = [s for _ in prompts for s in range(seeds)]
    images = []
    for lo in range(0, len(texts), 64):
        out = pipe(
            texts[lo : lo + 64],
            num_inference_steps=ctx.config.sampler.num_inference_steps,
            guidance_scale=ctx.config.sampler.guidance_scale,
            height=32,
            width=32,
            output_type="pt",
            generator=generators_for(seeds_list[lo : lo + 64]),
        )
        images.append(out.images)
    results = judge_batch(torch.cat(images).numpy(), texts)
    return {"quick_aligned": float(np.mean([r.aligned for r in results])), "quick_samples": len(texts)}


def load_world_pipeline(folder: Path) -> Any:
    """A world pipeline from a folder, in float32 on the CPU, progress bar off."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        folder, dtype=torch.float32, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def noisy_training_prompts(config: WorldBuildConfig) -> list[str]:
    """The distinct prompts whose trajectories the ``trajectories`` stage records, in order: the prompts every
    NoisyCLIP of the build is fine-tuned on.

    First ``noisy.prompts`` prompts of the training split (what the UNets learned from), then
    ``noisy.coverage_prompts`` further prompts drawn with the training template mix. None is a prompt of the
    benchmark pool (any benchmark size), none touches a held-out composition (so the benchmark's held-out
    compositions are held out from every trained component), and none appears twice. ``noisy.coverage_heldout``
    lets the coverage part reach the held-out compositions: a separately named study, never the shipped build.

    Examples:
        >>> from noisyclip_metrics.world.build.presets import PRESETS
        >>> from noisyclip_metrics.world.grammar import parse_prompt
        >>> from noisyclip_metrics.world.splits import make_split
        >>> prompts = noisy_training_prompts(PRESETS.get("ci"))
        >>> split = make_split(0)
        >>> heldout = [split.touches_heldout(parse_prompt(p)) for p in prompts]
        >>> len(prompts), bool(set(prompts) & split.pool_texts), any(heldout)
        (8, False, False)
    """
    from noisyclip_metrics.world.sampling import sample_prompts
    from noisyclip_metrics.world.splits import make_split

    split = make_split(seed=config.seed)
    n, extra = config.noisy.prompts, config.noisy.coverage_prompts
    train = list(dict.fromkeys(p.text for p in split.train(n * 3, seed=config.seed + 17)))[:n]
    if len(train) < n:
        raise InputError(f"noisy.prompts: only {len(train)} distinct training prompts drawn, expected {n}")
    seen = set(train) | split.pool_texts
    coverage: list[str] = []
    rng = np.random.default_rng([config.seed, 23])
    for attempt in range(20):
        if config.noisy.coverage_heldout:
            drawn = sample_prompts(extra * 4, seed=rng, mix=split.config.train_mix)
        else:
            drawn = split.train(extra * 4, seed=config.seed + 1000 + attempt)
        for p in drawn:
            if p.text not in seen and len(coverage) < extra:
                seen.add(p.text)
                coverage.append(p.text)
        if len(coverage) == extra:
            break
    else:
        raise InputError(f"noisy.coverage_prompts: only {len(coverage)} new distinct prompts drawn, expected {extra}")
    return train + coverage


def noisy_training_seeds(config: WorldBuildConfig, prompts: list[str]) -> list[list[int]]:
    """The seeds of each training prompt's ``noisy.seeds`` candidates: drawn per (prompt, candidate) from
    :data:`~noisyclip_metrics.provenance.TRAINING_SEEDS`, disjoint from every evaluation seed below 10^9, so no
    initial noise recurs across the training set and none is one an evaluation run uses.

    Examples:
        >>> from noisyclip_metrics.world.build.presets import PRESETS
        >>> cfg = PRESETS.get("ci")
        >>> seeds = noisy_training_seeds(cfg, noisy_training_prompts(cfg))
        >>> len(seeds), len(seeds[0]), min(min(s) for s in seeds) >= 10**9
        (8, 2, True)
    """
    from noisyclip_metrics.provenance import training_seeds

    return [training_seeds(p, config.noisy.seeds, salt=config.seed) for p in prompts]


@_register("trajectories")
def _trajectories(ctx: BuildContext) -> dict[str, Any]:
    from noisyclip_metrics.diffusion.trajectory_store import record_trajectories
    from noisyclip_metrics.world.oracle import judge_trajectories

    cfg = ctx.config.noisy
    folder = ctx.folder("trajectories")
    prompts = noisy_training_prompts(ctx.config)
    ids = [f"t{i:05d}" for i in range(len(prompts))]
    labels: dict[str, float] = {}
    scores: dict[str, float] = {}
    rates = {}
    for model in cfg.models:
        pipe = load_world_pipeline(ctx.work / f"unet-{model}" / "pipeline")
        store = record_trajectories(
            pipe,
            folder / model,
            prompts,
            noisy_training_seeds(ctx.config, prompts),
            prompt_ids=[f"{model}/{i}" for i in ids],
            batch_size=cfg.batch_size,
            num_inference_steps=ctx.config.sampler.num_inference_steps,
            guidance_scale=ctx.config.sampler.guidance_scale,
            height=32,
            width=32,
            progress=ctx.progress,
        )
        aligned = []
        for key, res in judge_trajectories(store.root).items():
            labels[key] = float(res.aligned)
            scores[key] = float(res.score)
            aligned.append(res.aligned)
        rates[model] = float(np.mean(aligned))
    write_json(folder / LABEL_FILES["aligned"], labels)
    write_json(folder / LABEL_FILES["tifa"], scores)
    return {"trajectories": len(labels), "aligned_rate": rates}


@_register("noisyclip")
def _noisyclip(ctx: BuildContext) -> dict[str, Any]:
    from noisyclip_metrics.training.trainer import TrainConfig, train

    cfg = ctx.config.noisy
    folder = ctx.folder("noisyclip")
    metrics = {}
    for run in cfg.runs:
        train_cfg = TrainConfig(
            init=str(ctx.work / "clip" / "model"),
            trajectories=tuple(str(ctx.work / "trajectories" / m) for m in cfg.models),
            out_dir=str(folder / run.name),
            steps=run.steps,
            batch_size=run.train_batch_size,
            lr=run.lr,
            warmup_steps=max(1, run.steps // 10),
            step_sampling=run.step_sampling,
            target=run.target,
            read=run.read,
            train_preview=run.train_preview,
            negatives="world",
            labels=str(ctx.work / "trajectories" / LABEL_FILES[run.labels]),
            val_fraction=0.15,
            seed=ctx.config.seed,
            checkpoint_every=max(1, run.steps // 5),
            num_threads=ctx.config.threads,
        )
        result = train(train_cfg, progress=ctx.progress)
        assert result is not None
        metrics[run.name] = {"final_loss": result.final_loss, "evaluation": result.evaluation}
    return metrics


def _save_fp16(src: Path, dst: Path, keep_fp32: tuple[str, ...] = ("preview.",)) -> None:
    """Copy a safetensors file with floating tensors stored in float16 (except ``keep_fp32`` prefixes)."""
    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata()
        tensors = {}
        for k in f.keys():
            t = f.get_tensor(k)
            if t.is_floating_point() and not k.startswith(keep_fp32):
                t = t.to(torch.float16)
            tensors[k] = t.contiguous()
    save_safetensors(tensors, dst, metadata=meta)


def _check_shared(a: Path, b: Path) -> None:
    """Fail the build when a component meant to be shared differs between two pipelines."""
    from noisyclip_metrics.provenance import weights_hash

    if weights_hash(a) != weights_hash(b):
        raise InputError(f"{a}: differs from {b}; world pipelines must share {a.name}")


@_register("package")
def _package(ctx: BuildContext) -> dict[str, Any]:
    out = ctx.out
    out.mkdir(parents=True, exist_ok=True)
    copy_tree(ctx.work / "tokenizer", out / "tokenizer")
    PreviewMap.load(ctx.work / "vae" / "preview.safetensors").save(out / "preview.safetensors")
    sources = {"clip": ctx.work / "clip" / "model"}
    sources.update({run.name: ctx.work / "noisyclip" / run.name / "model" for run in ctx.config.noisy.runs})
    for name, src in sources.items():
        copy_tree(src, out / name)
        _save_fp16(src / "model.safetensors", out / name / "model.safetensors")
        if name != "clip":  # fine-tuned image towers only: the text tower stays in clip/
            share_text_tower(out / name, out / "clip")
    models = []
    first = ctx.work / f"unet-{ctx.config.unets[0].name}" / "pipeline"
    for unet in ctx.config.unets:
        src = ctx.work / f"unet-{unet.name}" / "pipeline"
        copy_tree(src, out / unet.name)
        for component in SHARED_COMPONENTS:  # identical in every pipeline: stored once, in shared/
            _check_shared(src / component, first / component)
            shutil.rmtree(out / unet.name / component)
        for path in (out / unet.name).rglob("*.safetensors"):
            _save_fp16(path, path)
        models.append(unet.name)
    for component in SHARED_COMPONENTS:
        copy_tree(first / component, out / "shared" / component)
    for path in (out / "shared").rglob("*.safetensors"):
        _save_fp16(path, path)
    metrics = {}
    for stage in ctx.work.iterdir():
        done = stage / "DONE.json"
        if done.is_file() and stage.name != "package":
            metrics[stage.name] = json.loads(done.read_text(encoding="utf-8"))
    record = build_record(ctx, metrics)
    record["models"] = models
    record["sampler"] = {
        "num_inference_steps": ctx.config.sampler.num_inference_steps,
        "guidance_scale": ctx.config.sampler.guidance_scale,
    }
    write_json(out / "BUILD.json", record)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"bytes": size, "models": models}
