"""Tests of the ShapesWorld renderer: validity of layouts, anti-aliased drawing, determinism, batch helper."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.world import (
    TEMPLATES,
    CanvasConfig,
    Layout,
    PlacedObject,
    draw_layout,
    judge_image,
    judge_objects,
    parse_prompt,
    render_batch,
    render_scene,
    sample_layout,
    sample_spec,
    shape_area,
)
from noisyclip_metrics.world.questions import relation_holds


def _specs(per_template: int = 40):
    return [sample_spec(t, 1000 * i + j) for i, t in enumerate(TEMPLATES) for j in range(per_template)]


def test_layouts_satisfy_their_specs() -> None:
    canvas = CanvasConfig()
    for k, spec in enumerate(_specs()):
        layout = sample_layout(spec, k)
        objs = layout.objects
        assert len(objs) == spec.n_objects
        for g, group in enumerate(spec.objects):
            mine = [o for o in objs if o.group == g]
            assert len(mine) == group.count
            assert all((o.colour, o.shape) == group.key for o in mine)
            if group.size is not None:
                lo, hi = canvas.radius_range(group.size)
                assert all(lo <= o.radius <= hi for o in mine)
        for o in objs:  # inside the canvas with a border
            x0, y0, x1, y1 = o.bbox
            assert min(x0, y0) >= canvas.border - 1e-9 and max(x1, y1) <= canvas.size - canvas.border + 1e-9
        for a, b in itertools.combinations(objs, 2):  # bounding boxes at least min_gap apart on x or y
            ax0, ay0, ax1, ay1 = a.bbox
            bx0, by0, bx1, by1 = b.bbox
            gap_x = max(bx0 - ax1, ax0 - bx1)
            gap_y = max(by0 - ay1, ay0 - by1)
            assert max(gap_x, gap_y) >= canvas.min_gap - 1e-9, (spec, a, b)
        if spec.absent is not None:
            assert not any(spec.absent.matches(o.colour, o.shape) for o in objs)
        truth = layout.scene_objects()
        if spec.relation is not None:  # margin beyond the judge's dominance rule
            subjects = [t for t, o in zip(truth, objs, strict=True) if o.group == 0]
            ref = next(t for t, o in zip(truth, objs, strict=True) if o.group == 1)
            for s in subjects:
                dx, dy = ref.cx - s.cx, ref.cy - s.cy
                along = {"left of": dx, "right of": -dx, "above": dy, "below": -dy}[spec.relation]
                across = dy if spec.relation in ("left of", "right of") else dx
                assert along >= abs(across) + canvas.relation_margin - 1e-9
                assert relation_holds(s, ref, spec.relation)
        if spec.comparison is not None:
            a, b = truth
            big, small = (a, b) if spec.comparison == "bigger" else (b, a)
            assert big.area >= canvas.comparison_ratio * small.area - 1e-9
        assert judge_objects(truth, spec).aligned, spec


def test_every_render_is_judged_aligned_by_the_oracle() -> None:
    for k, spec in enumerate(_specs(25)):
        image, _ = render_scene(spec, k)
        result = judge_image(image, spec)
        assert result.aligned, (spec, [q for q in result.questions if not q.correct])


def test_determinism_per_seed() -> None:
    for text in ("a red circle to the left of a blue square", "a circle and two squares, all of them blue"):
        a, la = render_scene(text, 5)
        b, lb = render_scene(text, 5)
        c, lc = render_scene(text, 6)
        assert np.array_equal(a, b) and la == lb
        assert not np.array_equal(a, c) and la != lc
        gen_a, gen_b = np.random.default_rng(3), np.random.default_rng(3)
        assert np.array_equal(render_scene(text, gen_a)[0], render_scene(text, gen_b)[0])


def test_drawing_is_anti_aliased_and_area_exact() -> None:
    canvas = CanvasConfig()
    bg = np.asarray(canvas.background, dtype=float)
    for shape in ("circle", "square", "triangle"):
        layout = Layout((PlacedObject("white", shape, 5.3, 15.7, 16.2),), canvas)
        img = draw_layout(layout).astype(float)
        coverage = (img[..., 0] - bg[0]) / (240 - bg[0])
        assert abs(coverage.sum() - shape_area(shape, 5.3)) < 0.02 * shape_area(shape, 5.3)
        partial = (coverage > 0.05) & (coverage < 0.95)
        assert partial.sum() >= 8  # soft edges
    img = draw_layout(Layout((), canvas))
    assert (img == np.asarray(canvas.background, dtype=np.uint8)).all()


def test_triangle_points_up() -> None:
    img = draw_layout(Layout((PlacedObject("red", "triangle", 7.0, 16.0, 16.0),)))
    rows = (img[..., 0] > 120).sum(axis=1)
    top, bottom = rows[9:12].sum(), rows[20:23].sum()
    assert bottom > 3 * top


def test_render_batch_matches_single_renders() -> None:
    prompts = ["a red circle", "two green squares", "a blue triangle above a white circle"]
    images, layouts = render_batch(prompts, seed=4)
    assert images.shape == (3, 3, 32, 32) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    for i, p in enumerate(prompts):
        single, layout = render_scene(p, np.random.default_rng([4, i]))
        assert np.allclose(images[i], single.transpose(2, 0, 1) / 255.0)
        assert layout == layouts[i]
    again, _ = render_batch(prompts[:2], seed=4)
    assert np.array_equal(again, images[:2])


def test_other_canvas_size() -> None:
    canvas = CanvasConfig(size=64)
    for k, text in enumerate(["three small white squares", "a green triangle to the right of a big red circle"]):
        image, _layout = render_scene(text, k, canvas=canvas)
        assert image.shape == (64, 64, 3)
        assert judge_image(image, text, canvas=canvas).aligned


def test_bad_arguments() -> None:
    with pytest.raises(InputError, match="specs"):
        render_batch("a red circle")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="seed"):
        render_batch(["a red circle"], seed=-1)
    with pytest.raises(InputError, match="spec"):
        render_scene(42)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="rng"):
        render_scene("a red circle", "seed")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="unknown words"):
        render_scene("a purple circle", 0)
    with pytest.raises(InputError, match="size"):
        CanvasConfig(size=8)


def test_crowded_scenes_always_place() -> None:
    texts = [
        "four white squares",
        "a circle, a square and two triangles, all of them red",
        "two red circles above a blue square",
        "a big red circle to the left of a small blue square",
        "a red circle bigger than a blue square",
    ]
    specs = [parse_prompt(t) for t in texts]
    for k in range(250):
        spec = specs[k % len(specs)]
        assert len(sample_layout(spec, k).objects) == spec.n_objects
