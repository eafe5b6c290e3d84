"""Competence of a world CLIP as a judge, on clean renders: caption retrieval and hard-negative preference.

* **top-1 retrieval**: each benchmark prompt is rendered once; the CLIP picks the best of all benchmark captions; a
  hit when the oracle finds the image satisfies the picked caption (equivalent captions count as right).
* **hard-negative preference**, per edit kind: the share of renders whose true caption scores above a minimally
  edited caption (colour, shape, swapped colours, count, flipped relation, comparison, size).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from noisyclip_metrics.scoring.model import NoisyCLIPModel
from noisyclip_metrics.world.draw import render_batch
from noisyclip_metrics.world.grammar import describe
from noisyclip_metrics.world.oracle import judge_image
from noisyclip_metrics.world.sampling import HARD_NEGATIVE_EDITS, _valid_edits, hard_negative, sample_prompts
from noisyclip_metrics.world.splits import benchmark_prompts

__all__ = ["clip_competence"]


@torch.no_grad()
def clip_competence(model: NoisyCLIPModel, n_negatives: int = 1000, seed: int = 123) -> dict[str, float]:
    """``{"top1_retrieval": ..., "negatives/<edit>": ..., "negatives/min": ...}`` on clean renders."""
    model.eval()
    bench = benchmark_prompts()
    texts = [p.text for p in bench]
    images, _ = render_batch(texts, seed=seed)
    image_emb = torch.cat(
        [model.encode_images(torch.from_numpy(images[i : i + 256])) for i in range(0, len(texts), 256)]
    )
    text_emb = model.encode_text(texts)
    best = (image_emb @ text_emb.T).argmax(1).tolist()
    uint8 = (images * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)
    hits = [judge_image(uint8[i], texts[j]).aligned for i, j in enumerate(best)]
    out = {"top1_retrieval": float(np.mean(hits))}

    prompts = sample_prompts(n_negatives, seed=seed + 1)
    images, _ = render_batch([p.text for p in prompts], seed=seed + 2)
    emb = model.encode_images(torch.from_numpy(images))
    wins: dict[str, list[bool]] = defaultdict(list)
    rng = np.random.default_rng(seed)
    for i, p in enumerate(prompts):
        for edit in HARD_NEGATIVE_EDITS:
            if not _valid_edits(p.spec, edit):
                continue
            neg = describe(hard_negative(p.spec, rng, edit)[1])
            t = model.encode_text([p.text, neg])
            scores = emb[i] @ t.T
            wins[edit].append(bool(scores[0] > scores[1]))
    for edit, w in wins.items():
        out[f"negatives/{edit}"] = float(np.mean(w))
    out["negatives/min"] = min(out[f"negatives/{e}"] for e in wins)
    return out
