"""The ShapesWorld renderer: sample a layout that satisfies a scene specification, then draw it anti-aliased.

Layout sampling (:func:`sample_layout`), all lengths scaled with the canvas (:class:`~.config.CanvasConfig`):

* every object of every group is placed; nothing else is (so negations and "no extra objects" hold by
  construction). Half-extents come from the size class (:meth:`~.config.CanvasConfig.radius_range`); in a
  comparison the bigger object is drawn from 6-8 px and the smaller from 3.5-5 px until the area ratio is at least
  ``comparison_ratio`` (2.0).
* objects are placed one at a time in random order, each uniformly on a 0.25 px grid among the positions where its
  bounding box keeps ``border`` (1 px) from the canvas edge and ``min_gap`` (2 px) from every placed box (on x or on
  y), and where every relation with the placed objects holds with a margin: for "A left of B" the centroid offsets
  satisfy ``dx >= |dy| + relation_margin`` (3 px). A dead end restarts the placement (and redraws the radii).
* sampling is deterministic given the seed / Generator.

Drawing (:func:`draw_layout`): each pixel is the box-filtered coverage of ``supersample x supersample`` sub-pixel
samples (8 x 8 by default), mixed linearly between the background and the object colour, rounded to uint8.

Examples:
    >>> image, layout = render_scene("two red circles above a blue square", seed=0)
    >>> image.shape, image.dtype, len(layout.objects)
    ((32, 32, 3), dtype('uint8'), 3)
    >>> render_scene("two red circles above a blue square", seed=0)[0].tobytes() == image.tobytes()
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.world.config import CanvasConfig, shape_area, shape_centroid_offset
from noisyclip_metrics.world.grammar import parse_prompt
from noisyclip_metrics.world.questions import SceneObject
from noisyclip_metrics.world.sampling import as_generator
from noisyclip_metrics.world.spec import Prompt, SceneSpec
from noisyclip_metrics.world.vocab import COLOURS

__all__ = ["Layout", "PlacedObject", "draw_layout", "render_batch", "render_scene", "sample_layout"]

_GRID = 0.25
_MAX_TRIES = 2000


@dataclass(frozen=True)
class PlacedObject:
    """An object placed on the canvas.

    Attributes:
        colour: palette colour name.
        shape: shape name.
        radius: half-extent in px.
        x: bounding-box centre x (px).
        y: bounding-box centre y (px).
        group: index of the spec group it belongs to.
    """

    colour: str
    shape: str
    radius: float
    x: float
    y: float
    group: int = 0

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` in continuous coordinates."""
        r = self.radius
        return (self.x - r, self.y - r, self.x + r, self.y + r)

    @property
    def area(self) -> float:
        """Exact area in px^2."""
        return shape_area(self.shape, self.radius)

    @property
    def centroid(self) -> tuple[float, float]:
        """Centroid ``(x, y)`` of the filled shape."""
        return (self.x, self.y + shape_centroid_offset(self.shape, self.radius))


@dataclass(frozen=True)
class Layout:
    """A sampled scene: the placed objects and the canvas they live on."""

    objects: tuple[PlacedObject, ...]
    canvas: CanvasConfig = field(default_factory=CanvasConfig)

    def scene_objects(self) -> tuple[SceneObject, ...]:
        """The ground-truth objects, in the form the oracle's questions are answered from."""
        out = []
        for o in self.objects:
            cx, cy = o.centroid
            size = self.canvas.size_class(o.radius)
            out.append(SceneObject(o.colour, o.shape, size, o.area, cx, cy, o.bbox))
        return tuple(out)


def _as_spec(spec: SceneSpec | Prompt | str) -> SceneSpec:
    if isinstance(spec, SceneSpec):
        return spec
    if isinstance(spec, Prompt):
        return spec.spec
    if isinstance(spec, str):
        return parse_prompt(spec)
    raise InputError(f"spec: expected a SceneSpec, Prompt or prompt string, got {type(spec).__name__}")


def _radii(spec: SceneSpec, rng: np.random.Generator, canvas: CanvasConfig) -> list[float]:
    n = spec.n_objects
    if spec.comparison is not None:
        a, b = spec.objects
        s = canvas.scale
        for _ in range(_MAX_TRIES):
            big, small = float(rng.uniform(6.0 * s, 8.0 * s)), float(rng.uniform(3.5 * s, 5.0 * s))
            (big_o, small_o) = (a, b) if spec.comparison == "bigger" else (b, a)
            if shape_area(big_o.shape, big) >= canvas.comparison_ratio * shape_area(small_o.shape, small):
                return [big, small] if spec.comparison == "bigger" else [small, big]
        raise RuntimeError(f"could not draw radii with area ratio {canvas.comparison_ratio} for {spec}")
    out = []
    for o in spec.objects:
        lo, hi = canvas.radius_range(o.size, n)
        out += [float(rng.uniform(lo, hi)) for _ in range(o.count)]
    return out


def _relation_ok(
    ax: np.ndarray | float,
    ay: np.ndarray | float,
    bx: np.ndarray | float,
    by: np.ndarray | float,
    relation: str,
    margin: float,
) -> np.ndarray:
    dx, dy = bx - ax, by - ay
    along, across = {"left of": (dx, dy), "right of": (-dx, dy), "above": (dy, dx), "below": (-dy, dx)}[relation]
    return along >= np.abs(across) + margin


def _place(
    spec: SceneSpec, radii: list[float], rng: np.random.Generator, canvas: CanvasConfig
) -> list[PlacedObject] | None:
    groups = [g for g, o in enumerate(spec.objects) for _ in range(o.count)]
    shapes = [spec.objects[g].shape for g in groups]
    offsets = [shape_centroid_offset(s, r) for s, r in zip(shapes, radii, strict=True)]
    gap, margin = canvas.min_gap * canvas.scale, canvas.relation_margin * canvas.scale
    border = canvas.border * canvas.scale
    pos: dict[int, tuple[float, float]] = {}
    for i in rng.permutation(len(radii)):
        i, r = int(i), radii[int(i)]
        grid = np.arange(border + r, canvas.size - border - r + 1e-9, _GRID)
        if grid.size == 0:
            return None
        X, Y = np.meshgrid(grid, grid)
        ok = np.ones(X.shape, dtype=bool)
        for j, (xj, yj) in pos.items():
            d = r + radii[j] + gap
            ok &= (np.abs(X - xj) >= d) | (np.abs(Y - yj) >= d)
            if spec.relation is not None and {groups[i], groups[j]} == {0, 1}:
                cy_i, cy_j = Y + offsets[i], yj + offsets[j]
                if groups[i] == 0:
                    ok &= _relation_ok(X, cy_i, xj, cy_j, spec.relation, margin)
                else:
                    ok &= _relation_ok(xj, cy_j, X, cy_i, spec.relation, margin)
        flat = np.flatnonzero(ok)
        if flat.size == 0:
            return None
        k = int(flat[rng.integers(flat.size)])
        pos[i] = (float(X.flat[k]), float(Y.flat[k]))
    return [
        PlacedObject(spec.objects[g].colour, s, r, pos[i][0], pos[i][1], g)
        for i, (g, s, r) in enumerate(zip(groups, shapes, radii, strict=True))
    ]


def sample_layout(
    spec: SceneSpec | Prompt | str, rng: np.random.Generator | int | None = None, canvas: CanvasConfig | None = None
) -> Layout:
    """Sample object sizes and positions that satisfy ``spec`` (see the module docstring).

    Examples:
        >>> layout = sample_layout("a red circle to the left of a blue square", rng=1)
        >>> a, b = layout.objects
        >>> b.centroid[0] - a.centroid[0] >= abs(b.centroid[1] - a.centroid[1]) + 3
        True
    """
    spec, gen, canvas = _as_spec(spec), as_generator(rng), canvas or CanvasConfig()
    for attempt in range(_MAX_TRIES):
        if attempt % 20 == 0:
            radii = _radii(spec, gen, canvas)
        placed = _place(spec, radii, gen, canvas)
        if placed is not None:
            return Layout(tuple(placed), canvas)
    raise RuntimeError(f"could not place the objects of {spec} on a {canvas.size} px canvas")


def _coverage(o: PlacedObject, canvas: CanvasConfig) -> tuple[slice, slice, np.ndarray]:
    x0, y0, x1, y1 = o.bbox
    c0, r0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
    c1, r1 = min(int(np.ceil(x1)), canvas.size), min(int(np.ceil(y1)), canvas.size)
    ss = canvas.supersample
    sub = (np.arange(ss) + 0.5) / ss
    xs = (np.arange(c0, c1)[:, None] + sub[None, :]).ravel()
    ys = (np.arange(r0, r1)[:, None] + sub[None, :]).ravel()
    dx, dy = xs[None, :] - o.x, ys[:, None] - o.y
    r = o.radius
    if o.shape == "circle":
        inside = dx * dx + dy * dy <= r * r
    elif o.shape == "square":
        inside = (np.abs(dx) <= r) & (np.abs(dy) <= r)
    else:  # upward triangle: apex (x, y - r), base y + r, half-width (dy + r) / 2
        inside = (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
    cov = inside.reshape(r1 - r0, ss, c1 - c0, ss).mean(axis=(1, 3))
    return slice(r0, r1), slice(c0, c1), cov


def draw_layout(layout: Layout) -> np.ndarray:
    """Draw a layout as a uint8 (H, W, 3) image with box-filtered anti-aliasing.

    Examples:
        >>> img = draw_layout(sample_layout("a white square", rng=0))
        >>> int(img.max()), int(img.min())
        (240, 18)
    """
    canvas = layout.canvas
    bg = np.asarray(canvas.background, dtype=np.float64)
    img = np.broadcast_to(bg, (canvas.size, canvas.size, 3)).copy()
    for o in layout.objects:
        rows, cols, cov = _coverage(o, canvas)
        colour = np.asarray(COLOURS[o.colour], dtype=np.float64)
        img[rows, cols] += cov[..., None] * (colour - bg)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render_scene(
    spec: SceneSpec | Prompt | str,
    seed: np.random.Generator | int | None = None,
    canvas: CanvasConfig | None = None,
) -> tuple[np.ndarray, Layout]:
    """Sample a layout satisfying ``spec`` and draw it.

    Args:
        spec: a scene specification, a :class:`~.spec.Prompt` or a prompt string.
        seed: a numpy Generator or an int seed (``None``: fresh entropy).
        canvas: canvas settings (default 32 x 32).

    Returns:
        ``(image, layout)``: a uint8 (H, W, 3) image and the layout it shows.

    Examples:
        >>> image, layout = render_scene("a big blue square", seed=3)
        >>> layout.scene_objects()[0].size
        'big'
    """
    layout = sample_layout(spec, seed, canvas)
    return draw_layout(layout), layout


def render_batch(
    specs: Sequence[SceneSpec | Prompt | str], seed: int = 0, canvas: CanvasConfig | None = None
) -> tuple[np.ndarray, list[Layout]]:
    """Render many scenes for training code: float32 (B, 3, H, W) in [0, 1] and their layouts.

    Item ``i`` uses the Generator ``default_rng([seed, i])``, so it does not depend on the rest of the batch.

    Examples:
        >>> images, layouts = render_batch(["a red circle", "two green squares"], seed=0)
        >>> images.shape, images.dtype, float(images.max()) <= 1.0
        ((2, 3, 32, 32), dtype('float32'), True)
    """
    if isinstance(specs, (str, SceneSpec, Prompt)) or not isinstance(specs, Sequence):
        raise InputError(f"specs: expected a sequence of prompts or SceneSpecs, got {type(specs).__name__}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"seed: expected a non-negative int, got {seed!r}")
    canvas = canvas or CanvasConfig()
    out = np.empty((len(specs), 3, canvas.size, canvas.size), dtype=np.float32)
    layouts = []
    for i, spec in enumerate(specs):
        image, layout = render_scene(spec, np.random.default_rng([int(seed), i]), canvas)
        out[i] = image.transpose(2, 0, 1) / np.float32(255.0)
        layouts.append(layout)
    return out, layouts
