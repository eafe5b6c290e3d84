"""The world CLIP: an open_clip dual encoder trained contrastively on clean (augmented) renders with hard negatives.

Small CLIPs read captions as bags of words, so every image brings hard-negative captions (a minimal edit of its
caption: colour, shape, swapped colours, count, flipped relation or comparison, size) as extra text columns of the
InfoNCE loss, with structural edits (relation, comparison, swapped colours, count) preferred for the second one.
Images are augmented with blur, noise and brightness/contrast jitter of the strength seen in generated images, so
the CLIP is a competent judge of generated images too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from noisyclip_metrics.scoring.model import NoisyCLIPModel
from noisyclip_metrics.training.loop import (
    FolderCheckpoints,
    LoopSettings,
    StepOutput,
    run_loop,
    step_generator,
    warmup_cosine,
)
from noisyclip_metrics.training.targets import TargetBatch, infonce_loss
from noisyclip_metrics.world.build.data import CONTEXT_LENGTH, augment, render_pool
from noisyclip_metrics.world.grammar import describe, parse_prompt
from noisyclip_metrics.world.sampling import hard_negative

__all__ = ["ClipStageConfig", "negative_captions", "train_world_clip", "world_clip_config"]

STRUCTURAL_EDITS = ("relation", "comparison", "swap colours", "count")


def world_clip_config(vocab_size: int, embed_dim: int = 128, pos_embed: str = "sin_cos_2d") -> dict[str, Any]:
    """open_clip config of the world CLIP (ViT on 32 px with 4 px patches and fixed 2-D sin-cos positions, so
    positions are linearly readable from the start; causal text tower)."""
    return {
        "embed_dim": embed_dim,
        "vision_cfg": {
            "image_size": 32,
            "patch_size": 4,
            "width": 128,
            "layers": 4,
            "head_width": 32,
            "pos_embed_type": pos_embed,
        },
        "text_cfg": {"context_length": CONTEXT_LENGTH, "vocab_size": vocab_size, "width": 128, "heads": 4, "layers": 3},
    }


@dataclass(frozen=True)
class ClipStageConfig:
    """Hyper-parameters of the world CLIP stage."""

    steps: int = 2000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 100
    pool_size: int = 100_000
    augment_share: float = 0.5  # of each batch; pairs stay together (the first images are augmented)
    seed: int = 0
    checkpoint_every: int = 250
    embed_dim: int = 128
    pos_embed: str = "sin_cos_2d"
    mix: dict[str, float] = field(
        default_factory=lambda: {
            "single": 1.0,
            "conjunction": 1.5,
            "counting": 1.5,
            "relation": 4.0,
            "comparison": 1.5,
            "negation": 1.5,
            "universal": 1.0,
        }
    )


def paired_texts(n_pairs: int, seed: int, mix: dict[str, float]) -> list[str]:
    """``[p0, q0, p1, q1, ...]``: sampled captions each followed by a minimal-pair partner (the flipped relation for
    relation prompts, another structural edit when one applies, else any edit). Rendering both puts image-side hard
    negatives in every batch: the model must tell "A left of B" images from "A right of B" images, not only texts."""
    from noisyclip_metrics.world.sampling import sample_prompts

    rng = np.random.default_rng([seed, 99])
    out: list[str] = []
    for p in sample_prompts(n_pairs, seed=seed, mix=mix):
        kinds = [k for k in STRUCTURAL_EDITS if _applies(p.spec, k)]
        kind = ("relation" if "relation" in kinds else kinds[int(rng.integers(len(kinds)))]) if kinds else None
        out += [p.text, describe(hard_negative(p.spec, rng, kind)[1])]
    return out


def negative_captions(text: str, rng: np.random.Generator) -> list[str]:
    """Two hard negatives: a structural edit (always the flipped relation for relation prompts) and any edit."""
    spec = parse_prompt(text)
    out = [describe(hard_negative(spec, rng)[1])]
    kinds = [k for k in STRUCTURAL_EDITS if _applies(spec, k)]
    if kinds:
        kind = "relation" if "relation" in kinds else kinds[int(rng.integers(len(kinds)))]
        out.append(describe(hard_negative(spec, rng, kind)[1]))
    return out


def _applies(spec: Any, edit: str) -> bool:
    from noisyclip_metrics.world.sampling import _valid_edits

    return bool(_valid_edits(spec, edit))


def train_world_clip(work: Path, tokenizer_dir: Path, cfg: ClipStageConfig, progress: bool = True) -> NoisyCLIPModel:
    """Train (or resume) the world CLIP in ``work``; returns the trained model (preview map: a placeholder)."""
    from noisyclip_metrics.scoring.tokenizers import ClipTextTokenizer

    vocab = ClipTextTokenizer(tokenizer_dir, CONTEXT_LENGTH).vocab_size
    model = NoisyCLIPModel.from_config(
        world_clip_config(vocab, cfg.embed_dim, cfg.pos_embed),
        preview="sd1",
        seed=cfg.seed,
        tokenizer_files=tokenizer_dir,
    )
    model.train()
    texts_pool = paired_texts(cfg.pool_size // 2, seed=cfg.seed + 1, mix=cfg.mix)
    pool = render_pool(work / "pool.safetensors", len(texts_pool), seed=cfg.seed + 1, texts=texts_pool)
    params = list(model.clip.parameters())
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(cfg.steps, cfg.warmup))
    store = FolderCheckpoints(work, dataclasses.asdict(cfg), {"clip": model.clip}, optimizer, schedule)

    def step(i: int) -> StepOutput:
        g = step_generator(cfg.seed, i)
        rng = np.random.default_rng([cfg.seed, i])
        pairs = torch.randint(len(pool) // 2, (cfg.batch_size // 2,), generator=g)
        idx = torch.stack([2 * pairs, 2 * pairs + 1], dim=1).flatten()
        images = pool.floats(idx)
        n_aug = int(cfg.augment_share * cfg.batch_size)
        images[:n_aug] = augment(images[:n_aug], g)
        captions = [pool.texts[int(j)] for j in idx]
        unique = list(dict.fromkeys(captions))
        seen = set(unique)
        negatives = [n for n in dict.fromkeys(n for c in captions for n in negative_captions(c, rng)) if n not in seen]
        texts = unique + negatives
        image_emb = torch.nn.functional.normalize(model.clip.encode_image(model._prepare_images(images)), dim=-1)
        text_emb = torch.nn.functional.normalize(model.clip.encode_text(model.tokenize(texts)), dim=-1)
        return StepOutput(
            infonce_loss(
                TargetBatch(
                    image=image_emb,
                    texts=text_emb,
                    prompt_index=torch.tensor([unique.index(c) for c in captions]),
                    num_prompts=len(unique),
                    logit_scale=model.clip.logit_scale.exp().clamp(max=100),
                )
            )
        )

    run_loop(
        LoopSettings(cfg.steps, cfg.checkpoint_every, desc="world clip"),
        step,
        optimizer,
        schedule,
        params,
        store,
        log_extra=lambda: {"scale": float(model.clip.logit_scale.detach().exp())},
        progress=progress,
    )
    model.eval()
    return model
