"""Latent preview maps: a fixed per-latent-space linear map from ``C`` latent channels to RGB.

A preview of a latent ``z`` of shape ``(B, C, h, w)`` is ``clamp(W @ z + b, 0, 1)`` applied per pixel, a float image
of shape ``(B, 3, h, w)`` in ``[0, 1]``: the well-known "latent preview" trick. The maps act on latents in the space
the diffusers pipelines denoise in (after ``vae.config.scaling_factor`` / ``shift_factor``), which is also where
ComfyUI's ``latent_rgb_factors`` live. Registered maps:

========  ========  ==========================================================================================
name      channels  source of the coefficients
========  ========  ==========================================================================================
``sd1``   4         ComfyUI ``SD15.latent_rgb_factors`` (SD 1.x and 2.x share the VAE); output range [-1, 1]
``sd2``   4         alias of ``sd1``
``sdxl``  4         the official NoisyCLIP code (``src/latent_to_image.py``, T. A. Vass' SDXL preview), 0..255
``sd3``   16        ComfyUI ``SD3.latent_rgb_factors`` and ``latent_rgb_factors_bias``; output range [-1, 1]
``flux``  16        ComfyUI ``Flux.latent_rgb_factors`` and bias; FLUX latents come packed, see :func:`unpack_flux`
========  ========  ==========================================================================================

All are stored normalised to produce ``[0, 1]`` directly. Maps for any other VAE (the built-in world's included) are
fitted with :func:`fit_preview_map` and saved with :meth:`PreviewMap.save`.

Examples:
    >>> import torch
    >>> pm = get_preview_map("sdxl")
    >>> pm.channels
    4
    >>> pm(torch.zeros(2, 4, 8, 8)).shape
    torch.Size([2, 3, 8, 8])
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from noisyclip_metrics.errors import CheckpointError, InputError
from noisyclip_metrics.io.files import save_safetensors
from noisyclip_metrics.registry import Registry

__all__ = [
    "PREVIEW_MAPS",
    "PreviewMap",
    "downsample_to",
    "fit_preview_map",
    "get_preview_map",
    "list_preview_maps",
    "unpack_flux",
]


@dataclass(frozen=True)
class PreviewMap:
    """A linear map from ``C`` latent channels to RGB in ``[0, 1]``.

    Args:
        weight: ``(3, C)`` float tensor.
        bias: ``(3,)`` float tensor.
        name: registry name or a free label for fitted maps.
        packed: whether latents of this space arrive packed in 2x2 patches (FLUX); see :func:`unpack_flux`.
        r2: variance of the target images explained by the map when it was fitted (``None`` for published maps).
    """

    weight: torch.Tensor
    bias: torch.Tensor
    name: str = "custom"
    packed: bool = False
    r2: float | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        w, b = self.weight, self.bias
        if not isinstance(w, torch.Tensor) or w.ndim != 2 or w.shape[0] != 3:
            raise InputError(f"weight: expected a (3, C) tensor, got {getattr(w, 'shape', type(w).__name__)}")
        if not isinstance(b, torch.Tensor) or tuple(b.shape) != (3,):
            raise InputError(f"bias: expected a (3,) tensor, got {getattr(b, 'shape', type(b).__name__)}")
        if not (torch.isfinite(w).all() and torch.isfinite(b).all()):
            raise InputError("weight/bias: expected finite values, got NaN or Inf")
        object.__setattr__(self, "weight", w.detach().float().contiguous())
        object.__setattr__(self, "bias", b.detach().float().contiguous())

    @property
    def channels(self) -> int:
        """Number of latent channels the map reads."""
        return int(self.weight.shape[1])

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        """Map ``(B, C, h, w)`` latents to a ``(B, 3, h, w)`` preview in ``[0, 1]``, float32 on the latents' device."""
        return self.apply(latents, clamp=True)

    def apply(self, latents: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Like ``__call__``; with ``clamp=False`` the map is differentiable everywhere (used in training)."""
        check_latents(latents, self.channels)
        x = latents.float()
        out = torch.einsum("oc,bchw->bohw", self.weight.to(x.device), x) + self.bias.to(x.device)[None, :, None, None]
        return out.clamp(0.0, 1.0) if clamp else out

    def to_dict(self) -> dict[str, torch.Tensor]:
        """Tensors for safetensors serialisation."""
        return {"preview.weight": self.weight, "preview.bias": self.bias}

    def metadata(self) -> dict[str, str]:
        """String metadata stored beside the tensors."""
        return {"preview.name": self.name, "preview.packed": json.dumps(self.packed), "preview.r2": json.dumps(self.r2)}

    def save(self, path: str | Path) -> Path:
        """Save to a ``.safetensors`` file and return its path.

        Examples:
            >>> import tempfile, torch
            >>> pm = get_preview_map("sd1")
            >>> with tempfile.TemporaryDirectory() as d:
            ...     PreviewMap.load(pm.save(Path(d) / "map.safetensors")) == pm
            True
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_safetensors(self.to_dict(), path, metadata=self.metadata())
        return path

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None) -> PreviewMap:
        """Rebuild from the output of :meth:`to_dict` / :meth:`metadata` (checkpoint loading)."""
        meta = metadata or {}
        try:
            return cls(
                weight=tensors["preview.weight"],
                bias=tensors["preview.bias"],
                name=meta.get("preview.name", "custom"),
                packed=bool(json.loads(meta.get("preview.packed", "false"))),
                r2=json.loads(meta.get("preview.r2", "null")),
            )
        except KeyError as err:
            raise CheckpointError(f"preview map tensors: missing {err.args[0]!r}") from None

    @classmethod
    def load(cls, path: str | Path) -> PreviewMap:
        """Load a map saved with :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: preview map file not found")
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
        return cls.from_tensors(load_file(str(path)), meta)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PreviewMap):
            return NotImplemented
        return (
            self.name == other.name
            and self.packed == other.packed
            and torch.equal(self.weight, other.weight)
            and torch.equal(self.bias, other.bias)
        )

    __hash__ = None  # type: ignore[assignment]


def check_latents(latents: object, channels: int | None = None, name: str = "latents") -> None:
    """Raise :class:`InputError` unless ``latents`` is a finite floating ``(B, C, h, w)`` tensor, ``C == channels``."""
    if not isinstance(latents, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor of shape (B, C, h, w), got {type(latents).__name__}")
    if latents.ndim != 4:
        raise InputError(f"{name}: expected a 4-D tensor (B, C, h, w), got shape {tuple(latents.shape)}")
    if not latents.is_floating_point():
        raise InputError(f"{name}: expected a floating-point tensor, got dtype {latents.dtype}")
    if channels is not None and latents.shape[1] != channels:
        raise InputError(
            f"{name}: expected {channels} channels to match the preview map, got {latents.shape[1]} "
            f"(shape {tuple(latents.shape)})"
        )
    if not torch.isfinite(latents).all():
        raise InputError(f"{name}: expected finite values, got NaN or Inf")


def _comfy(
    factors: Sequence[Sequence[float]], bias: Sequence[float] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """ComfyUI factors map to [-1, 1] with rows = channels; convert to a (3, C) map onto [0, 1]."""
    w = torch.tensor(factors, dtype=torch.float64).T
    b = torch.tensor(bias if bias is not None else [0.0, 0.0, 0.0], dtype=torch.float64)
    return (w / 2).float(), ((b + 1) / 2).float()


PREVIEW_MAPS: Registry[PreviewMap] = Registry("preview map")

_sd1 = _comfy(
    [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]]
)
PREVIEW_MAPS.register("sd1", PreviewMap(*_sd1, name="sd1"))
PREVIEW_MAPS.register("sd2", PreviewMap(*_sd1, name="sd2"))
# The official NoisyCLIP map (0..255 units): rows are R, G, B over the 4 SDXL latent channels.
PREVIEW_MAPS.register(
    "sdxl",
    PreviewMap(
        torch.tensor([[60.0, -60.0, 25.0, -70.0], [60.0, -5.0, 15.0, -50.0], [60.0, 10.0, -5.0, -35.0]]) / 255.0,
        torch.tensor([150.0, 140.0, 130.0]) / 255.0,
        name="sdxl",
    ),
)
_sd3_factors = [
    [-0.0922, -0.0175, 0.0749],
    [0.0311, 0.0633, 0.0954],
    [0.1994, 0.0927, 0.0458],
    [0.0856, 0.0339, 0.0902],
    [0.0587, 0.0272, -0.0496],
    [-0.0006, 0.1104, 0.0309],
    [0.0978, 0.0306, 0.0427],
    [-0.0042, 0.1038, 0.1358],
    [-0.0194, 0.0020, 0.0669],
    [-0.0488, 0.0130, -0.0268],
    [0.0922, 0.0988, 0.0951],
    [-0.0278, 0.0524, -0.0542],
    [0.0332, 0.0456, 0.0895],
    [-0.0069, -0.0030, -0.0810],
    [-0.0596, -0.0465, -0.0293],
    [-0.1448, -0.1463, -0.1189],
]
PREVIEW_MAPS.register("sd3", PreviewMap(*_comfy(_sd3_factors, [0.2394, 0.2135, 0.1925]), name="sd3"))
_flux_factors = [
    [-0.0346, 0.0244, 0.0681],
    [0.0034, 0.0210, 0.0687],
    [0.0275, -0.0668, -0.0433],
    [-0.0174, 0.0160, 0.0617],
    [0.0859, 0.0721, 0.0329],
    [0.0004, 0.0383, 0.0115],
    [0.0405, 0.0861, 0.0915],
    [-0.0236, -0.0185, -0.0259],
    [-0.0245, 0.0250, 0.1180],
    [0.1008, 0.0755, -0.0421],
    [-0.0515, 0.0201, 0.0011],
    [0.0428, -0.0012, -0.0036],
    [0.0817, 0.0765, 0.0749],
    [-0.1264, -0.0522, -0.1103],
    [-0.0280, -0.0881, -0.0499],
    [-0.1262, -0.0982, -0.0778],
]
PREVIEW_MAPS.register("flux", PreviewMap(*_comfy(_flux_factors, [-0.0329, -0.0718, -0.0851]), name="flux", packed=True))


def list_preview_maps() -> list[str]:
    """Names of the registered preview maps."""
    return PREVIEW_MAPS.names()


def get_preview_map(name_or_path: str | Path | PreviewMap) -> PreviewMap:
    """Return a registered map by name, load one from a ``.safetensors`` file, or pass a map through.

    Raises:
        UnknownNameError: for an unknown name (with a did-you-mean).
    """
    if isinstance(name_or_path, PreviewMap):
        return name_or_path
    text = str(name_or_path)
    if text.endswith(".safetensors") or Path(text).is_file():
        return PreviewMap.load(text)
    return PREVIEW_MAPS.get(text)


def unpack_flux(latents: torch.Tensor, height: int, width: int, vae_scale_factor: int = 8) -> torch.Tensor:
    """Unpack FLUX pipeline latents ``(B, (h/2)*(w/2), C*4)`` into ``(B, C, h, w)``.

    ``height``/``width`` are the image size in pixels; ``h = 2 * (height // (vae_scale_factor * 2))`` as in diffusers.

    Examples:
        >>> import torch
        >>> unpack_flux(torch.zeros(1, 16, 64), height=64, width=64).shape
        torch.Size([1, 16, 8, 8])
    """
    if latents.ndim != 3:
        raise InputError(f"latents: expected packed FLUX latents (B, seq, C*4), got shape {tuple(latents.shape)}")
    b, seq, packed_c = latents.shape
    h = 2 * (int(height) // (vae_scale_factor * 2))
    w = 2 * (int(width) // (vae_scale_factor * 2))
    if seq != (h // 2) * (w // 2) or packed_c % 4:
        raise InputError(
            f"latents: shape {tuple(latents.shape)} does not match height={height}, width={width} "
            f"(expected sequence length {(h // 2) * (w // 2)} and a channel count divisible by 4)"
        )
    x = latents.view(b, h // 2, w // 2, packed_c // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, packed_c // 4, h, w)


def downsample_to(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area-average ``(B, 3, H, W)`` images to ``size`` (the latent grid), the target of a preview map."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images.float()
    return F.adaptive_avg_pool2d(images.float(), size)


def fit_preview_map(latents: torch.Tensor, images: torch.Tensor, name: str = "fitted", chunk: int = 256) -> PreviewMap:
    """Fit ``weight`` and ``bias`` by least squares so that the preview of ``latents`` matches ``images``.

    The images (``(N, 3, H, W)`` in ``[0, 1]``, e.g. VAE decodes of the latents) are area-averaged down to the latent
    grid; the normal equations are accumulated in float64 (float32 least squares over millions of pixels is
    unreliable) chunk by chunk, so any number of samples fits in memory. The returned map records ``r2``, the share
    of the variance of the downsampled images it explains.

    Examples:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> z = torch.randn(16, 4, 8, 8, generator=g)
        >>> true = PreviewMap(torch.randn(3, 4, generator=g) * 0.1, torch.full((3,), 0.5))
        >>> fitted = fit_preview_map(z, true.apply(z, clamp=False))
        >>> torch.allclose(fitted.weight, true.weight, atol=1e-5), round(fitted.r2, 6)
        (True, 1.0)
    """
    check_latents(latents)
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise InputError(f"images: expected a (N, 3, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    if images.shape[0] != latents.shape[0]:
        raise InputError(f"images: expected {latents.shape[0]} images to match latents, got {images.shape[0]}")
    if not torch.isfinite(images).all():
        raise InputError("images: expected finite values, got NaN or Inf")
    c = latents.shape[1]
    xtx = torch.zeros(c + 1, c + 1, dtype=torch.float64)
    xty = torch.zeros(c + 1, 3, dtype=torch.float64)
    ysum = torch.zeros(3, dtype=torch.float64)
    ysq = torch.zeros(3, dtype=torch.float64)
    n = 0
    for start in range(0, latents.shape[0], chunk):
        z = latents[start : start + chunk].double()
        y = downsample_to(images[start : start + chunk], tuple(z.shape[-2:])).double()
        x = torch.cat([z.permute(0, 2, 3, 1).reshape(-1, c), torch.ones(z.numel() // c, 1, dtype=torch.float64)], 1)
        yy = y.permute(0, 2, 3, 1).reshape(-1, 3)
        xtx += x.T @ x
        xty += x.T @ yy
        ysum += yy.sum(0)
        ysq += (yy * yy).sum(0)
        n += yy.shape[0]
    sol = torch.linalg.solve(xtx + 1e-9 * torch.eye(c + 1, dtype=torch.float64), xty)  # (C+1, 3)
    # residual sum of squares from the sufficient statistics: sum(y^2) - 2 sol.xty + sol.xtx.sol
    rss = ysq - 2 * (sol * xty).sum(0) + (sol * (xtx @ sol)).sum(0)
    tss = ysq - ysum**2 / n
    r2 = float(1 - rss.sum() / tss.sum()) if float(tss.sum()) > 0 else 1.0
    return PreviewMap(sol[:c].T.float(), sol[c].float(), name=name, r2=r2)
