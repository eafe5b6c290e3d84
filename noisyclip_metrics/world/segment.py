"""Segmentation of a ShapesWorld image into objects with classical image processing (the oracle's eyes).

Steps (thresholds in :class:`~.config.OracleConfig`, lengths scaled with the canvas):

1. **Background**: the mean of the darkest quarter of pixels, refined twice as the mean of the pixels within 0.12
   (in [0, 1] units) of the estimate. This follows global brightness / contrast shifts.
2. **Colour classes**: each pixel ``p`` is modelled as a mix ``bg + alpha * (c_k - bg0)`` of the background and a
   palette colour ``c_k`` (``bg0`` = the nominal background). ``alpha_k`` is the least-squares coefficient (kept
   >= 0) and the class is the colour whose mixing segment is nearest to ``p``. Unlike nearest-palette-colour
   classification, this keeps anti-aliased edges (a half-covered white pixel is grey) with their own colour.
   A pixel is foreground when its ``alpha >= fg_alpha`` (0.4).
3. **Objects**: 4-connected components per colour (``scipy.ndimage.label``) with at least ``min_pixels`` pixels.
   Each component is measured on a soft mask: the coverage ``alpha`` of its colour over the component grown by one
   pixel (without pixels of other objects), divided by the object's solid level (median ``alpha`` of its interior),
   clipped to [0, 1], and set to 0 below ``alpha_floor``. Objects with soft area below ``min_area`` are dropped.
4. **Features** from the soft mask: area, centroid, and the central moments. The shape is *triangle* when the
   vertical skewness ``|m03| / m02^1.5`` exceeds ``triangle_skew`` (upward triangle: 0.57, circle and square: 0);
   otherwise *square* when the fourth-moment anisotropy ``m22 / ((m40 + m04) / 2)`` exceeds ``square_anisotropy``
   (square: 0.56, circle: 1/3, which is the value of any isotropic shape), else *circle*.
5. **Size class** from the equivalent half-extent ``sqrt(area / k_shape)`` (:meth:`~.config.CanvasConfig.size_class`).

Examples:
    >>> from noisyclip_metrics.world.draw import render_scene
    >>> image, _ = render_scene("a small red triangle and a big blue circle", seed=0)
    >>> [(o.colour, o.shape, o.size) for o in segment_image(image / 255.0)]
    [('red', 'triangle', 'small'), ('blue', 'circle', 'big')]
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from noisyclip_metrics.world.config import SHAPE_AREA_FACTOR, CanvasConfig, OracleConfig
from noisyclip_metrics.world.questions import SceneObject
from noisyclip_metrics.world.vocab import COLOURS

__all__ = ["classify_pixels", "estimate_background", "segment_image"]

_NAMES = tuple(COLOURS)
_FOUR = ndimage.generate_binary_structure(2, 1)
_EIGHT = np.ones((3, 3), dtype=bool)


def estimate_background(image: np.ndarray) -> np.ndarray:
    """Estimate the background colour of a float (H, W, 3) image in [0, 1] (see the module docstring).

    Examples:
        >>> img = np.full((8, 8, 3), 0.1); img[:3, :3] = (0.9, 0.2, 0.2)
        >>> np.round(estimate_background(img), 3).tolist()
        [0.1, 0.1, 0.1]
    """
    pixels = image.reshape(-1, 3)
    lum = pixels.mean(axis=1)
    bg = pixels[lum <= np.quantile(lum, 0.25)].mean(axis=0)
    for _ in range(2):
        near = np.abs(pixels - bg).max(axis=1) <= 0.12
        if near.sum() >= 0.1 * len(pixels):
            bg = pixels[near].mean(axis=0)
    return bg


def classify_pixels(image: np.ndarray, canvas: CanvasConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel colour class and mixing coefficients of a float (H, W, 3) image in [0, 1].

    Returns:
        ``(classes, alphas)``: int (H, W) index into the palette (:data:`~.vocab.COLOUR_NAMES` order) of the nearest
        mixing segment, and float (K, H, W) coefficients ``alpha_k`` (>= 0; 1 = fully covered by colour k).

    Examples:
        >>> img = np.full((4, 4, 3), 18 / 255); img[0, 0] = (240 / 255, 220 / 255, 40 / 255)
        >>> classes, alphas = classify_pixels(img)
        >>> int(classes[0, 0]), round(float(alphas[3, 0, 0]), 2)
        (3, 1.0)
    """
    canvas = canvas or CanvasConfig()
    bg0 = np.asarray(canvas.background, dtype=np.float64) / 255.0
    dirs = np.asarray([COLOURS[n] for n in _NAMES], dtype=np.float64) / 255.0 - bg0  # (K, 3)
    diff = image - estimate_background(image)  # (H, W, 3)
    alphas = np.maximum(np.einsum("hwc,kc->khw", diff, dirs) / (dirs * dirs).sum(axis=1)[:, None, None], 0.0)
    resid = diff[None] - alphas[..., None] * dirs[:, None, None, :]
    classes = np.argmin((resid * resid).sum(axis=-1), axis=0)
    return classes, alphas


def _moments(w: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> dict[str, float]:
    area = float(w.sum())
    cx, cy = float((w * xs).sum() / area), float((w * ys).sum() / area)
    dx, dy = xs - cx, ys - cy
    m = {
        k: float((w * v).sum() / area)
        for k, v in {"m20": dx**2, "m02": dy**2, "m03": dy**3, "m40": dx**4, "m04": dy**4, "m22": dx**2 * dy**2}.items()
    }
    skew = m["m03"] / max(m["m02"], 1e-9) ** 1.5
    aniso = m["m22"] / max((m["m40"] + m["m04"]) / 2, 1e-9)
    return {"area": area, "cx": cx, "cy": cy, "skew": skew, "anisotropy": aniso}


def _measure(
    name: str,
    comp: np.ndarray,
    alpha: np.ndarray,
    others: np.ndarray,
    origin: tuple[int, int],
    canvas: CanvasConfig,
    cfg: OracleConfig,
) -> SceneObject | None:
    """Measure one component (boolean window ``comp``; ``alpha`` of its colour; ``others``: foreground of other
    objects in the window); ``None`` when it is too small."""
    interior = ndimage.binary_erosion(comp, structure=_FOUR)
    solid = min(max(float(np.median(alpha[interior if interior.any() else comp])), 0.5), 2.0)
    region = ndimage.binary_dilation(comp, structure=_EIGHT) & ~others
    weight = np.where(region, np.clip(alpha / solid, 0.0, 1.0), 0.0)
    weight[weight < cfg.alpha_floor] = 0.0
    if weight.sum() < cfg.min_area * canvas.scale**2:
        return None
    r0, c0 = origin
    ys, xs = np.mgrid[r0 : r0 + comp.shape[0], c0 : c0 + comp.shape[1]] + 0.5
    f = _moments(weight, ys, xs)
    if abs(f["skew"]) > cfg.triangle_skew:
        shape = "triangle"
    elif f["anisotropy"] > cfg.square_anisotropy:
        shape = "square"
    else:
        shape = "circle"
    size = canvas.size_class(math.sqrt(f["area"] / SHAPE_AREA_FACTOR[shape]))
    rows, cols = np.nonzero(weight)
    bbox = (float(c0 + cols.min()), float(r0 + rows.min()), float(c0 + cols.max() + 1), float(r0 + rows.max() + 1))
    feats = (("skew", f["skew"]), ("anisotropy", f["anisotropy"]), ("solid", solid))
    return SceneObject(name, shape, size, f["area"], f["cx"], f["cy"], bbox, feats)


def segment_image(
    image: np.ndarray, canvas: CanvasConfig | None = None, config: OracleConfig | None = None
) -> tuple[SceneObject, ...]:
    """Find the objects of a float (H, W, 3) image in [0, 1] (no validation here; :mod:`.oracle` validates).

    Objects are returned by colour (palette order), then in raster order of their first pixel.

    Examples:
        >>> from noisyclip_metrics.world.draw import render_scene
        >>> image, layout = render_scene("three yellow squares", seed=2)
        >>> [o.shape for o in segment_image(image / 255.0)]
        ['square', 'square', 'square']
    """
    canvas, cfg = canvas or CanvasConfig(), config or OracleConfig()
    classes, alphas = classify_pixels(image, canvas)
    fg = np.take_along_axis(alphas, classes[None], axis=0)[0] >= cfg.fg_alpha
    h, w = classes.shape
    objects: list[SceneObject] = []
    for k, name in enumerate(_NAMES):
        labels, n = ndimage.label(fg & (classes == k), structure=_FOUR)
        for idx, sl in enumerate(ndimage.find_objects(labels) if n else [], start=1):
            if sl is None:
                continue
            r0, r1 = max(sl[0].start - 1, 0), min(sl[0].stop + 1, h)
            c0, c1 = max(sl[1].start - 1, 0), min(sl[1].stop + 1, w)
            comp = labels[r0:r1, c0:c1] == idx
            if comp.sum() < cfg.min_pixels:
                continue
            others = fg[r0:r1, c0:c1] & ~comp
            obj = _measure(name, comp, alphas[k, r0:r1, c0:c1], others, (r0, c0), canvas, cfg)
            if obj is not None:
                objects.append(obj)
    return tuple(objects)
