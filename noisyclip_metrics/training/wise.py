"""Weight-space ensembling of a fine-tuned image tower with the CLIP it started from (WiSE-FT).

Fine-tuning a CLIP image tower on noisy previews of a few hundred prompts makes it a better judge of those prompts'
trajectories and a worse one of compositions it never saw. WiSE-FT (Wortsman et al., "Robust fine-tuning of zero-shot
models", CVPR 2022) trades the two off without any training: the image tower's weights are interpolated linearly
between the frozen start and the fine-tuned end,

    theta(alpha) = (1 - alpha) * theta_base + alpha * theta_finetuned,

so ``alpha = 1`` is the fine-tuned model and ``alpha = 0`` frozen CLIP reading the same input (e.g. ``clip-x0`` for
``noisyclip-x0``). The text tower is untouched (NoisyCLIP never trains it, and both models must share it); the preview
map and what the model reads (``config.reads``) are the fine-tuned model's. Scoring cost is the fine-tuned model's.
A noise-conditioned fine-tuned tower keeps its conditioning, its noise embedding interpolated too: against an
unconditioned base, whose tower is the conditioned one with a zero embedding, the embedding's shift is scaled by
``alpha``.

Examples:
    >>> import torch
    >>> from noisyclip_metrics.scoring.model import NoisyCLIPModel, TINY_TEST_CONFIG
    >>> base = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0)
    >>> tuned = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0)
    >>> with torch.no_grad():
    ...     for p in tuned.clip.visual.parameters():
    ...         _ = p.add_(1.0)
    >>> half = interpolate_image_tower(tuned, base, alpha=0.5)
    >>> w = "conv1.weight"
    >>> bool(torch.allclose(half.clip.visual.state_dict()[w], base.clip.visual.state_dict()[w] + 0.5))
    True
"""

from __future__ import annotations

import copy
import math

import torch

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.scoring.factory import ModelLike, resolve_model
from noisyclip_metrics.scoring.model import NoisyCLIPModel

__all__ = ["interpolate_image_tower"]


def _mix_noise_embedding(out: NoisyCLIPModel, base: NoisyCLIPModel, alpha: float) -> None:
    assert out.noise_embedding is not None
    with torch.no_grad():
        if base.noise_embedding is None:  # the base reads every level as a zero shift: scale the output layer
            last = out.noise_embedding.mlp[-1]
            last.weight.mul_(alpha)
            last.bias.mul_(alpha)
            return
        theirs = base.noise_embedding.state_dict()
        for key, value in out.noise_embedding.state_dict().items():
            value.copy_((1 - alpha) * theirs[key].float() + alpha * value)


def interpolate_image_tower(finetuned: ModelLike, base: ModelLike, alpha: float) -> NoisyCLIPModel:
    """WiSE-FT: a copy of ``finetuned`` whose image-tower weights are ``(1 - alpha) * base + alpha * finetuned``.

    Args:
        finetuned: the fine-tuned NoisyCLIP (a model, a registered id such as ``"world:noisyclip-x0"``, or a folder).
        base: the CLIP it was fine-tuned from (e.g. ``"world:clip"``): same architecture, identical text tower.
        alpha: weight of the fine-tuned tower, in ``[0, 1]``.

    Returns:
        a new model on CPU in float32; neither input is modified.

    Raises:
        InputError: ``alpha`` outside ``[0, 1]`` or not finite; architectures that differ; text towers that differ
            (``base`` is not the model ``finetuned`` started from); non-finite weights.
    """
    numeric = isinstance(alpha, (int, float)) and not isinstance(alpha, bool)
    if not numeric or not math.isfinite(alpha) or not 0 <= alpha <= 1:
        raise InputError(f"alpha: expected a number in [0, 1] (the fine-tuned tower's weight), got {alpha!r}")
    tuned, start = resolve_model(finetuned, "cpu"), resolve_model(base, "cpu")
    if tuned.config.model_cfg != start.config.model_cfg:
        raise InputError(
            "base: its architecture (config.model_cfg) differs from finetuned's; WiSE-FT interpolates "
            "two checkpoints of the same model"
        )
    ours, theirs = tuned.clip.state_dict(), start.clip.state_dict()
    if ours.keys() != theirs.keys():
        raise InputError("base: its weights have other names than finetuned's (same architecture expected)")
    for key, value in ours.items():
        if key.startswith("visual."):
            continue
        if value.shape != theirs[key].shape or not torch.equal(value.float(), theirs[key].float()):
            raise InputError(
                f"base: its text tower differs from finetuned's (e.g. {key!r}); pass the CLIP that "
                "finetuned was fine-tuned from"
            )
    out = copy.deepcopy(tuned).float()
    mixed = {}
    for key, value in out.clip.state_dict().items():
        if not key.startswith("visual.") or not value.is_floating_point():
            continue
        value = (1 - alpha) * theirs[key].float() + alpha * value
        if not torch.isfinite(value).all():
            raise InputError(f"finetuned/base: non-finite weights in {key!r}")
        mixed[key] = value
    out.clip.load_state_dict(mixed, strict=False)
    if out.noise_embedding is not None:
        _mix_noise_embedding(out, start, alpha)
    out.clear_text_cache()
    return out.eval()
