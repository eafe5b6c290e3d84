"""Frozen configurations of ShapesWorld: the canvas and shape geometry (:class:`CanvasConfig`) and the oracle's
thresholds (:class:`OracleConfig`).

Geometry (all lengths in pixels of a 32 px canvas, scaled by ``size / 32`` for other canvas sizes):

* An object has a centre ``(cx, cy)`` and a *half-extent* ``r``: its bounding box is ``[cx - r, cx + r] x
  [cy - r, cy + r]`` in continuous coordinates (pixel ``i`` covers ``[i, i + 1)``).
* circle: radius ``r`` (area ``pi r^2``); square: half-side ``r`` (area ``4 r^2``); upward triangle: apex
  ``(cx, cy - r)``, base from ``(cx - r, cy + r)`` to ``(cx + r, cy + r)`` (area ``2 r^2``, centroid
  ``(cx, cy + r / 3)``).
* Size classes by half-extent: small 3.5-4.5, medium 5-6, big 7-8. Unspecified sizes are drawn medium, or smaller
  when a scene holds 3 objects (4.5-5.5) or 4 objects (4-5) so that they fit with 2 px gaps.
* The oracle measures size from the area as the *equivalent half-extent* ``sqrt(area / k_shape)`` with ``k`` =
  ``pi`` / 4 / 2 for circle / square / triangle: below 4.75 is small, from 6.5 on is big, medium in between.

Examples:
    >>> c = CanvasConfig()
    >>> c.radius_range("big", n_objects=1)
    (7.0, 8.0)
    >>> c.size_class(3.9), c.size_class(5.5), c.size_class(7.2)
    ('small', 'medium', 'big')
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.world.vocab import BACKGROUND, SHAPES

__all__ = ["SHAPE_AREA_FACTOR", "CanvasConfig", "OracleConfig", "shape_area", "shape_centroid_offset"]

#: Area of a shape with half-extent 1 (multiply by r^2).
SHAPE_AREA_FACTOR = {"circle": math.pi, "square": 4.0, "triangle": 2.0}

_SIZE_RADII = {"small": (3.5, 4.5), "medium": (5.0, 6.0), "big": (7.0, 8.0)}
_CROWDED_RADII = {3: (4.5, 5.5), 4: (4.0, 5.0)}


def shape_area(shape: str, r: float) -> float:
    """Exact area (px^2) of a shape with half-extent ``r``.

    Examples:
        >>> shape_area("square", 2.0)
        16.0
    """
    if shape not in SHAPE_AREA_FACTOR:
        raise InputError(f"shape: expected one of {', '.join(SHAPES)}, got {shape!r}")
    return SHAPE_AREA_FACTOR[shape] * r * r


def shape_centroid_offset(shape: str, r: float) -> float:
    """Vertical offset of a shape's centroid below its bounding-box centre (``r / 3`` for the upward triangle).

    Examples:
        >>> shape_centroid_offset("triangle", 6.0), shape_centroid_offset("circle", 6.0)
        (2.0, 0.0)
    """
    return r / 3.0 if shape == "triangle" else 0.0


@dataclass(frozen=True)
class CanvasConfig:
    """Canvas, drawing and layout settings of the renderer (lengths in px of a 32 px canvas, scaled with ``size``).

    Attributes:
        size: canvas side in pixels (square RGB images).
        background: background RGB colour.
        supersample: sub-samples per pixel side used for anti-aliasing (box filter).
        min_gap: smallest gap between the bounding boxes of two objects, on x or on y.
        border: smallest distance between a bounding box and the canvas edge.
        relation_margin: a rendered relation's dominant-axis centroid distance exceeds the other axis by this much.
        comparison_ratio: area ratio of the bigger to the smaller object in a rendered comparison.
        small_max: size-class boundary small/medium on the equivalent half-extent.
        big_min: size-class boundary medium/big on the equivalent half-extent.
    """

    size: int = 32
    background: tuple[int, int, int] = BACKGROUND
    supersample: int = 8
    min_gap: float = 2.0
    border: float = 1.0
    relation_margin: float = 3.0
    comparison_ratio: float = 2.0
    small_max: float = 4.75
    big_min: float = 6.5

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 16:
            raise InputError(f"size: expected an int >= 16, got {self.size!r}")
        if not isinstance(self.supersample, int) or self.supersample < 1:
            raise InputError(f"supersample: expected an int >= 1, got {self.supersample!r}")
        if len(self.background) != 3 or not all(0 <= int(v) <= 255 for v in self.background):
            raise InputError(f"background: expected 3 ints in 0..255, got {self.background!r}")
        if not 0 < self.small_max < self.big_min:
            got = f"{self.small_max}, {self.big_min}"
            raise InputError(f"small_max, big_min: expected 0 < small_max < big_min, got {got}")

    @property
    def scale(self) -> float:
        """Length scale relative to the 32 px reference canvas."""
        return self.size / 32.0

    def radius_range(self, size: str | None, n_objects: int = 1) -> tuple[float, float]:
        """Range of half-extents (px) to draw an object of a size class; ``None`` means unspecified (medium, or
        smaller in crowded scenes of ``n_objects`` >= 3)."""
        if size is None:
            lo, hi = _CROWDED_RADII.get(min(n_objects, 4), _SIZE_RADII["medium"])
        elif size in _SIZE_RADII:
            lo, hi = _SIZE_RADII[size]
        else:
            raise InputError(f"size: expected one of small, medium, big or None, got {size!r}")
        return lo * self.scale, hi * self.scale

    def size_class(self, equivalent_radius: float) -> str:
        """Size class of an object from its equivalent half-extent ``sqrt(area / k_shape)`` (px)."""
        r = equivalent_radius / self.scale
        if r < self.small_max:
            return "small"
        return "big" if r >= self.big_min else "medium"


@dataclass(frozen=True)
class OracleConfig:
    """Thresholds of the oracle judge (lengths in px of a 32 px canvas, areas in px^2 of a 32 px canvas).

    Attributes:
        fg_alpha: a pixel is foreground when its mixing coefficient towards its best palette colour is at least this.
        alpha_floor: soft coverage below this (after normalising by the object's solid level) is treated as 0.
        min_pixels: smallest connected component (foreground pixels) kept.
        min_area: smallest soft area (px^2) of an object kept; smaller blobs are noise.
        triangle_skew: an object whose vertical skewness has magnitude above this is a triangle.
        square_anisotropy: a non-triangle whose fourth-moment anisotropy ``E[x^2 y^2] / mean(E[x^4], E[y^4])`` is above
            this is a square (square 0.56, circle 0.33).
        relation_tolerance: the dominant-axis centroid distance must be at least this for a relation to hold.
        comparison_ratio: "A bigger than B" holds when area(A) >= ratio * area(B) ("smaller" mirrors it).
    """

    fg_alpha: float = 0.4
    alpha_floor: float = 0.15
    min_pixels: int = 4
    min_area: float = 12.0
    triangle_skew: float = 0.22
    square_anisotropy: float = 0.405
    relation_tolerance: float = 1.0
    comparison_ratio: float = 1.3

    def __post_init__(self) -> None:
        if not 0 < self.fg_alpha < 1:
            raise InputError(f"fg_alpha: expected a float in (0, 1), got {self.fg_alpha!r}")
        if self.comparison_ratio < 1:
            raise InputError(f"comparison_ratio: expected a float >= 1, got {self.comparison_ratio!r}")


@dataclass(frozen=True)
class SamplerConfig:
    """Default sampler of the world pipelines (recorded with the weights, used by the world ids)."""

    num_inference_steps: int = 20
    guidance_scale: float = 5.0
