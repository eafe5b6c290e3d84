"""Image perturbations used to measure the oracle's robustness (blur, noise, colour jitter).

All functions take and return a float (H, W, 3) image in [0, 1] (results are clipped to [0, 1]).

* :func:`gaussian_blur`: isotropic Gaussian blur of standard deviation ``sigma`` px (``scipy.ndimage``, reflect
  mode).
* :func:`gaussian_noise`: additive i.i.d. Gaussian noise of standard deviation ``std`` per channel.
* :func:`colour_jitter`: one random transform per image: brightness factor ``U(1 - b, 1 + b)``, contrast factor
  ``U(1 - c, 1 + c)`` around the image's mean grey, saturation factor ``U(1 - s, 1 + s)`` and a hue rotation of
  ``U(-h, h)`` degrees in YIQ space.

Examples:
    >>> img = np.full((32, 32, 3), 0.5)
    >>> round(float(gaussian_blur(img, 0.8).mean()), 6), gaussian_noise(img, 0.03, rng=0).shape
    (0.5, (32, 32, 3))
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.world.sampling import as_generator

__all__ = ["colour_jitter", "gaussian_blur", "gaussian_noise"]

_RGB2YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = np.linalg.inv(_RGB2YIQ)


def _check(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise InputError(f"image: expected a float (H, W, 3) numpy array in [0, 1], got {shape}")
    return image.astype(np.float64)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Blur each channel with a Gaussian of ``sigma`` px.

    Examples:
        >>> img = np.zeros((8, 8, 3)); img[4, 4] = 1.0
        >>> float(gaussian_blur(img, 1.0)[4, 4, 0]) < 1.0
        True
    """
    if not sigma >= 0:
        raise InputError(f"sigma: expected a value >= 0, got {sigma!r}")
    return np.clip(ndimage.gaussian_filter(_check(image), sigma=(sigma, sigma, 0), mode="reflect"), 0.0, 1.0)


def gaussian_noise(image: np.ndarray, std: float, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Add i.i.d. Gaussian noise of standard deviation ``std`` (in [0, 1] units).

    Examples:
        >>> out = gaussian_noise(np.full((32, 32, 3), 0.5), 0.06, rng=1)
        >>> 0.05 < float(out.std()) < 0.07
        True
    """
    if not std >= 0:
        raise InputError(f"std: expected a value >= 0, got {std!r}")
    img = _check(image)
    return np.clip(img + as_generator(rng).normal(0.0, std, img.shape), 0.0, 1.0)


def colour_jitter(
    image: np.ndarray,
    rng: np.random.Generator | int | None = None,
    brightness: float = 0.1,
    contrast: float = 0.1,
    saturation: float = 0.1,
    hue_degrees: float = 8.0,
) -> np.ndarray:
    """Apply one random brightness / contrast / saturation / hue transform to the whole image.

    Examples:
        >>> img = np.full((4, 4, 3), 0.4)
        >>> out = colour_jitter(img, rng=0, brightness=0.2)
        >>> bool(np.allclose(out, out[0, 0]))
        True
    """
    for name, v in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
        if not 0 <= v < 1:
            raise InputError(f"{name}: expected a strength in [0, 1), got {v!r}")
    gen = as_generator(rng)
    img = _check(image)
    b, c, s = (float(gen.uniform(1 - v, 1 + v)) for v in (brightness, contrast, saturation))
    theta = math.radians(float(gen.uniform(-hue_degrees, hue_degrees)))
    img = img * b
    grey = float((img @ _RGB2YIQ[0]).mean())
    img = grey + (img - grey) * c
    yiq = img @ _RGB2YIQ.T
    rot = np.array([[1, 0, 0], [0, math.cos(theta), -math.sin(theta)], [0, math.sin(theta), math.cos(theta)]])
    yiq = yiq @ rot.T
    yiq[..., 1:] *= s
    return np.clip(yiq @ _YIQ2RGB.T, 0.0, 1.0)
