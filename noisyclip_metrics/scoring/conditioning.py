"""Noise conditioning: an image tower that is told how noisy the latent behind its preview was.

A noise-conditioned NoisyCLIP (``NoisyCLIPConfig.noise_conditioned``; the timestep-conditioned reward models of LRM,
arXiv 2502.01051) adds a learned embedding of the latent's noise level to the output of the tower's first
convolution (every patch token of a ViT, before the positional embedding and the transformer; the stem of a ResNet),
so one tower can read a blurry x̂0 at 20% of the trajectory and a sharp one at 90% differently. The level is
:func:`noisyclip_metrics.scoring.x0.noise_std`: the standard deviation of the noise in the variance-preserving form
of the latent, 0 for a clean latent and 1 for pure noise, on one scale for every scheduler. The embedding's last
layer starts at zero, so a freshly conditioned tower scores exactly as the CLIP it was made from, at every level.

Examples:
    >>> import torch
    >>> embedding = NoiseEmbedding(width=8)
    >>> embedding(torch.tensor([0.0, 0.5, 1.0])).shape
    torch.Size([3, 8])
    >>> bool(embedding(torch.rand(4)).eq(0).all())  # zero at initialisation
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from noisyclip_metrics.errors import InputError

__all__ = ["NoiseEmbedding", "check_noise_std", "level_features"]

#: Frequencies of the sinusoidal features of the log noise-to-signal ratio.
FREQUENCIES = 8
#: The log noise-to-signal ratio is clamped to +-this before the features (noise std 6e-7 to 1 - 2e-13).
LOG_NSR_RANGE = 14.0


def check_noise_std(noise_std: Any, batch: int, name: str = "noise_std") -> torch.Tensor:
    """``(batch,)`` float32 noise levels from one value or one per sample, each in ``[0, 1]``.

    Raises:
        InputError: not a number or tensor, the wrong count, or a value outside ``[0, 1]`` (naming ``name``).
    """
    if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float, torch.Tensor)):
        raise InputError(f"{name}: expected a number or a tensor of noise levels in [0, 1], got {type(noise_std)}")
    t = torch.as_tensor(noise_std, dtype=torch.float32).flatten().cpu()
    if t.numel() == 1:
        t = t.expand(batch)
    if t.numel() != batch:
        raise InputError(f"{name}: expected 1 or {batch} values (one per sample), got {t.numel()}")
    if not (torch.isfinite(t).all() and (t >= 0).all() and (t <= 1).all()):
        raise InputError(f"{name}: expected noise levels in [0, 1] (0: clean, 1: pure noise), got {t.tolist()[:8]}")
    return t


def level_features(noise_std: torch.Tensor) -> torch.Tensor:
    """``(B, 1 + 2 * FREQUENCIES)`` features of noise levels: the scaled log noise-to-signal ratio and its sinusoids.

    The log ratio spreads the levels near 1, where most steps of a schedule sit (a 20-step DDIM run spends its first
    nine steps above 0.96).
    """
    v = noise_std.double().clamp(1e-6, 1 - 1e-12)
    x = (torch.log(v**2) - torch.log1p(-(v**2))).clamp(-LOG_NSR_RANGE, LOG_NSR_RANGE) / LOG_NSR_RANGE
    angles = x[:, None] * (math.pi * 2.0 ** torch.arange(FREQUENCIES, dtype=torch.float64))[None, :]
    return torch.cat([x[:, None], angles.sin(), angles.cos()], dim=1).float()


class NoiseEmbedding(nn.Module):
    """Noise level -> a ``(B, width)`` shift of the patch tokens: features, a hidden layer, a zero-initialised output.

    Args:
        width: channels of the tower's first convolution (``visual.conv1.out_channels``).
        hidden: width of the hidden layer.
    """

    def __init__(self, width: int, hidden: int = 64) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(1 + 2 * FREQUENCIES, hidden), nn.SiLU(), nn.Linear(hidden, width))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, noise_std: torch.Tensor) -> torch.Tensor:
        weight = self.mlp[0].weight
        return self.mlp(level_features(noise_std).to(device=weight.device, dtype=weight.dtype))


class PatchShift:
    """Adds a per-sample shift to the output of a tower's first convolution (``conv1``: a ViT's patch embedding, a
    ResNet's stem) while :meth:`active`; a no-op otherwise.

    Attached as a forward hook, so the tower's own modules and their state-dict keys stay as open_clip built them.
    """

    def __init__(self, visual: nn.Module) -> None:
        conv = getattr(visual, "conv1", None)
        if not isinstance(conv, nn.Conv2d):
            raise InputError(
                "noise_conditioned: needs an open_clip image tower (a VisionTransformer or ModifiedResNet, whose "
                f"first convolution 'conv1' it shifts), got {type(visual).__name__}"
            )
        self.width = int(conv.out_channels)
        self._shift: torch.Tensor | None = None
        self._conv = conv  # a deep copy of the model copies both, and the hook then calls the copy
        conv.register_forward_hook(self._hook)

    def _hook(self, _module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if self._shift is None:
            return output
        return output + self._shift.to(output.dtype)[:, :, None, None]

    @contextmanager
    def active(self, shift: torch.Tensor) -> Iterator[None]:
        """Shift the patch tokens by ``shift`` ``(B, width)`` during the block."""
        self._shift = shift
        try:
            yield
        finally:
            self._shift = None

    def remove(self) -> None:
        """Detach the hook."""
        hooks = self._conv._forward_hooks
        for key in [k for k, hook in hooks.items() if getattr(hook, "__self__", None) is self]:
            del hooks[key]
