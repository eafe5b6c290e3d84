"""Data of the world's training stages: the tokenizer files, rendered image pools, augmentations.

Pools are rendered once per stage and cached in the stage's work folder as ``pool.safetensors`` (uint8 images, the
prompt texts in the metadata), so a resumed stage reuses exactly the same data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open

from noisyclip_metrics.io.files import save_safetensors
from noisyclip_metrics.scoring.tokenizers import write_clip_bpe_files
from noisyclip_metrics.world.draw import render_batch
from noisyclip_metrics.world.sampling import TemplateMix, sample_prompts

__all__ = ["CONTEXT_LENGTH", "WORLD_MERGES", "ImagePool", "augment", "build_tokenizer", "render_pool"]

#: First merges of the real CLIP BPE kept for the world tokenizer (vocabulary 4,514 tokens; the longest world
#: prompt is 20 tokens with start/end markers).
WORLD_MERGES = 4000
#: Token context of the world text tower and tokenizer.
CONTEXT_LENGTH = 32


def build_tokenizer(folder: Path) -> Path:
    """Write the world's ``vocab.json``/``merges.txt`` (the real CLIP BPE truncated to :data:`WORLD_MERGES`)."""
    return write_clip_bpe_files(folder, n_merges=WORLD_MERGES)


@dataclass(frozen=True)
class ImagePool:
    """Rendered images (uint8 ``(N, 3, 32, 32)``) with their prompt texts."""

    texts: tuple[str, ...]
    images: torch.Tensor

    def __len__(self) -> int:
        return len(self.texts)

    def floats(self, index: torch.Tensor) -> torch.Tensor:
        """Images ``index`` as float32 in ``[0, 1]``."""
        return self.images[index].float() / 255.0


def render_pool(
    path: Path, n: int, seed: int, mix: Mapping[str, float] | TemplateMix | None = None, texts: list[str] | None = None
) -> ImagePool:
    """Render ``n`` images of sampled prompts (or of ``texts``), cached at ``path``."""
    if path.is_file():
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
            pool = ImagePool(tuple(json.loads(meta["texts"])), f.get_tensor("images"))
        if len(pool) == (len(texts) if texts is not None else n):
            return pool
    if texts is None:
        texts = [p.text for p in sample_prompts(n, seed=seed, mix=mix)]
    chunks = []
    for lo in range(0, len(texts), 4096):
        floats, _ = render_batch(texts[lo : lo + 4096], seed=seed * 7919 + lo)
        chunks.append(torch.from_numpy(np.round(floats * 255.0).astype(np.uint8)))
    images = torch.cat(chunks)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_safetensors({"images": images}, tmp, metadata={"texts": json.dumps(texts)})
    tmp.replace(path)
    return ImagePool(tuple(texts), images)


def augment(images: torch.Tensor, generator: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Blur, noise and brightness/contrast jitter of the kind generated images show (per image, random)."""
    b = images.shape[0]
    sigma = torch.rand(b, generator=generator) * 1.0 * strength
    radius = 2
    xs = torch.arange(-radius, radius + 1).float()
    kernel = torch.exp(-(xs[None] ** 2) / (2 * sigma[:, None].clamp(min=1e-3) ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)  # (B, 5)
    x = images.reshape(1, b * 3, *images.shape[-2:])
    k = kernel.repeat_interleave(3, 0)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k[:, None, None, :], groups=b * 3)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k[:, None, :, None], groups=b * 3)
    x = x.reshape_as(images)
    gain = 1 + (torch.rand(b, 1, 1, 1, generator=generator) - 0.5) * 0.2 * strength
    bias = (torch.rand(b, 1, 1, 1, generator=generator) - 0.5) * 0.1 * strength
    noise = torch.randn(images.shape, generator=generator) * (torch.rand(b, 1, 1, 1, generator=generator) * 0.05)
    return (x * gain + bias + noise * strength).clamp(0, 1)
