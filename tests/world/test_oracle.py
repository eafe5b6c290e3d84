"""Tests of the ShapesWorld oracle: exactness, each kind of violation, robustness smoke tests, bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.world import (
    HARD_NEGATIVE_EDITS,
    TEMPLATES,
    Layout,
    PlacedObject,
    colour_jitter,
    draw_layout,
    gaussian_blur,
    gaussian_noise,
    hard_negative,
    judge_batch,
    judge_image,
    judge_objects,
    make_questions,
    parse_prompt,
    render_batch,
    render_scene,
    sample_prompts,
    sample_spec,
    segment_image,
)


def draw(*objects: tuple[str, str, float, float, float]) -> np.ndarray:
    """Draw hand-placed objects given as (colour, shape, half-extent, x, y)."""
    return draw_layout(Layout(tuple(PlacedObject(*o) for o in objects)))


def failing(image: np.ndarray, prompt: str) -> dict[str, str]:
    """Kind -> answer of every wrongly answered question."""
    result = judge_image(image, prompt)
    assert result.aligned == (not any(not q.correct for q in result.questions))
    return {q.kind: q.answer for q in result.questions if not q.correct}


RELATION = "a red circle to the left of a blue square"


def test_hand_made_relation_scene_and_its_violations() -> None:
    assert failing(draw(("red", "circle", 5, 9, 16), ("blue", "square", 5, 23, 16)), RELATION) == {}
    # flipped relation: only the relation question fails
    assert failing(draw(("red", "circle", 5, 23, 16), ("blue", "square", 5, 9, 16)), RELATION) == {"relation": "no"}
    # swapped colours: the coloured objects are missing
    swapped = failing(draw(("blue", "circle", 5, 9, 16), ("red", "square", 5, 23, 16)), RELATION)
    assert swapped == {"attribute": "no", "relation": "no"}
    # changed shape: no circle at all
    changed = failing(draw(("red", "triangle", 5, 9, 16), ("blue", "square", 5, 23, 16)), RELATION)
    assert changed == {"existence": "no", "attribute": "no", "relation": "no"}
    # dominance: mostly below, not to the left
    below = draw(("red", "circle", 4.5, 12, 7), ("blue", "square", 4.5, 18, 22))
    assert failing(below, RELATION) == {"relation": "no"}
    assert failing(below, "a red circle above a blue square") == {}


def test_wrong_count_and_extra_objects() -> None:
    three = draw(("green", "triangle", 5, 8, 9), ("green", "triangle", 5, 24, 9), ("green", "triangle", 5, 16, 24))
    assert failing(three, "three green triangles") == {}
    assert failing(three, "two green triangles") == {"count": "3", "total": "3"}
    assert failing(three, "four green triangles") == {"count": "3", "total": "3"}
    extra = draw(("red", "circle", 5, 9, 16), ("green", "square", 5, 23, 16))
    assert failing(extra, "a red circle") == {"total": "2"}


def test_wrong_comparison() -> None:
    prompt = "a red circle bigger than a blue square"
    assert failing(draw(("red", "circle", 7.5, 10, 16), ("blue", "square", 4, 25, 16)), prompt) == {}
    assert failing(draw(("red", "circle", 4, 8, 16), ("blue", "square", 7, 22, 16)), prompt) == {"comparison": "no"}
    # about the same area (ratio ~1.1) is not "bigger"
    same = draw(("red", "circle", 6, 9, 16), ("blue", "square", 5, 23, 16))
    assert failing(same, prompt) == {"comparison": "no"}
    assert failing(same, "a red circle smaller than a blue square") == {"comparison": "no"}


def test_forbidden_object_present() -> None:
    image = draw(("blue", "square", 5, 9, 16), ("red", "circle", 5, 23, 16))
    assert failing(image, "a blue square and no circles") == {"negation": "yes", "total": "2"}
    assert failing(image, "a blue square and no red shapes") == {"negation": "yes", "total": "2"}
    assert failing(image, "a blue square and no red triangles") == {"total": "2"}


def test_wrong_size_and_universal() -> None:
    small = draw(("red", "circle", 4, 16, 16))
    assert failing(small, "a small red circle") == {}
    assert failing(small, "a big red circle") == {"attribute": "no"}
    assert failing(draw(("red", "circle", 7.5, 16, 16)), "a big red circle") == {}
    prompt = "a circle and two squares, all of them blue"
    ok = draw(("blue", "circle", 5, 9, 9), ("blue", "square", 5, 23, 9), ("blue", "square", 5, 16, 24))
    assert failing(ok, prompt) == {}
    bad = draw(("blue", "circle", 5, 9, 9), ("red", "square", 5, 23, 9), ("blue", "square", 5, 16, 24))
    assert failing(bad, prompt) == {"universal": "no"}


def test_question_kinds_and_expected_answers() -> None:
    qs = make_questions(parse_prompt("two red circles above a blue square"))
    assert [(q.kind, q.expected) for q in qs] == [
        ("existence", "yes"),
        ("count", "2"),
        ("existence", "yes"),
        ("attribute", "yes"),
        ("relation", "yes"),
        ("total", "3"),
    ]
    assert qs[4].text == "Are the red circles above the blue square?"
    assert make_questions(parse_prompt("a blue square and no circles"))[-2].text == "Are there any circles?"


def test_segmentation_matches_the_layout() -> None:
    for k, p in enumerate(sample_prompts(120, seed=21)):
        image, layout = render_scene(p, k)
        found = segment_image(image / 255.0)
        truth = layout.scene_objects()
        assert len(found) == len(truth)
        for t in truth:
            match = min(found, key=lambda o: (o.cx - t.cx) ** 2 + (o.cy - t.cy) ** 2)
            assert (match.colour, match.shape) == (t.colour, t.shape)
            assert abs(match.cx - t.cx) < 0.3 and abs(match.cy - t.cy) < 0.3
            assert abs(match.area / t.area - 1) < 0.08


def test_clean_renders_all_aligned_and_shuffled_mostly_not() -> None:
    prompts = [sample_spec(t, 500 + 10 * i + j) for i, t in enumerate(TEMPLATES) for j in range(30)]
    images, layouts = render_batch(prompts, seed=1)
    results = judge_batch(images, prompts)
    assert all(r.aligned for r in results)
    assert all(r.score == 1.0 for r in results)
    shifted = prompts[1:] + prompts[:1]
    shuffled = judge_batch(images, shifted)
    truth = [judge_objects(lay.scene_objects(), p).aligned for lay, p in zip(layouts, shifted, strict=True)]
    assert [r.aligned for r in shuffled] == truth
    assert np.mean(truth) < 0.05


def test_hard_negatives_are_caught() -> None:
    caught = dict.fromkeys(HARD_NEGATIVE_EDITS, 0)
    for k, p in enumerate(sample_prompts(150, seed=5)):
        image, _ = render_scene(p, k)
        for edit in HARD_NEGATIVE_EDITS:
            try:
                _, neg = hard_negative(p.spec, k, edit)
            except InputError:
                continue
            assert not judge_image(image, neg).aligned, (p.text, edit, neg)
            caught[edit] += 1
    assert all(v > 0 for v in caught.values()), caught


@pytest.mark.parametrize(
    "perturb",
    [
        lambda x, g: gaussian_blur(x, 0.8),
        lambda x, g: gaussian_noise(x, 0.06, g),
        lambda x, g: colour_jitter(x, g, 0.1, 0.1, 0.1, 8.0),
    ],
    ids=["blur 0.8", "noise 0.06", "jitter mild"],
)
def test_robust_to_mild_perturbations(perturb) -> None:
    rng = np.random.default_rng(0)
    aligned = []
    for k, p in enumerate(sample_prompts(60, seed=9)):
        image, _ = render_scene(p, k)
        aligned.append(judge_image(perturb(image / 255.0, rng), p).aligned)
    assert np.mean(aligned) >= 0.97


def test_uint8_and_float_inputs_agree() -> None:
    image, _ = render_scene(RELATION, 0)
    a, b = judge_image(image, RELATION), judge_image(image.astype(np.float64) / 255.0, RELATION)
    assert a.aligned and b.aligned and a.objects == b.objects
    c = judge_image(image.astype(np.float32) / np.float32(255), RELATION)
    assert [(o.colour, o.shape, o.size) for o in c.objects] == [(o.colour, o.shape, o.size) for o in a.objects]
    json.dumps(a.to_dict())


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((31, 32, 3), np.uint8), r"image: expected shape \(32, 32, 3\)"),
        (np.zeros((32, 32, 4), np.uint8), r"expected shape \(32, 32, 3\) \(H, W, RGB\), got \(32, 32, 4\)"),
        (np.zeros((3, 32, 32), np.float32), r"got \(3, 32, 32\)"),
        (np.zeros((32, 32), np.uint8), r"got \(32, 32\)"),
        (np.zeros((32, 32, 3), np.int64), "dtype uint8 or a float dtype"),
        (np.zeros((32, 32, 3), bool), "dtype uint8 or a float dtype"),
        (np.full((32, 32, 3), 1.5), r"values in \[0, 1\]"),
        (np.full((32, 32, 3), -0.1), r"values in \[0, 1\]"),
        (np.full((32, 32, 3), np.nan), "NaN"),
        (np.full((32, 32, 3), np.inf), "NaN or infinity"),
        ([[0.0] * 3] * 32, "numpy array or torch tensor"),
    ],
)
def test_bad_images(image: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        judge_image(image, "a red circle")


def test_bad_batches_and_prompts() -> None:
    images, _ = render_batch(["a red circle", "a blue square"], seed=0)
    with pytest.raises(InputError, match=r"images: expected shape \(B, 3, 32, 32\)"):
        judge_batch(images.transpose(0, 2, 3, 1), ["a red circle", "a blue square"])
    with pytest.raises(InputError, match="expected 2 prompts"):
        judge_batch(images, ["a red circle"])
    with pytest.raises(InputError, match="sequence"):
        judge_batch(images, "a red circle")
    with pytest.raises(InputError, match="values in"):
        judge_batch(images * 255.0, ["a red circle", "a blue square"])
    with pytest.raises(InputError, match="prompts\\[1\\]"):
        judge_batch(images, ["a red circle", 7])
    with pytest.raises(InputError, match="unknown words"):
        judge_image(np.zeros((32, 32, 3), np.uint8), "a red hexagon")
    as_uint8 = (images * 255).round().astype(np.uint8)
    assert [r.aligned for r in judge_batch(as_uint8, ["a red circle", "a blue square"])] == [True, True]


class _FakeTensor:
    """Quacks like a torch tensor (module name 'torch...', .detach().cpu().numpy())."""

    __module__ = "torch.fake"

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def detach(self) -> _FakeTensor:
        return self

    def cpu(self) -> _FakeTensor:
        return self

    def numpy(self) -> np.ndarray:
        return self.array


def test_tensor_like_inputs() -> None:
    images, _ = render_batch(["a red circle", "two blue squares"], seed=0)
    results = judge_batch(_FakeTensor(images), ["a red circle", "two blue squares"])
    assert [r.aligned for r in results] == [True, True]
    assert judge_image(_FakeTensor(images[0].transpose(1, 2, 0)), "a red circle").aligned


def test_real_torch_tensors() -> None:
    torch = pytest.importorskip("torch")
    images, _ = render_batch(["a red circle", "two blue squares"], seed=0)
    results = judge_batch(torch.from_numpy(images).requires_grad_(True), ["a red circle", "two blue squares"])
    assert [r.aligned for r in results] == [True, True]


def test_package_import_does_not_import_torch() -> None:
    code = "import sys, noisyclip_metrics.world; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
