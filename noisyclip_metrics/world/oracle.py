"""The ShapesWorld oracle judge: a VQA-like judge from classical image processing.

``judge_image(image, prompt)`` segments the image into objects (:mod:`.segment`), asks the prompt's TIFA-style
questions (:mod:`.questions`), answers them from the objects and returns a :class:`JudgeResult` with every
question, the fraction answered correctly (the TIFA score) and ``aligned`` (all answered correctly).

Inputs:

* a single image: numpy array (or torch tensor) of shape (H, W, 3), uint8 in 0..255 or float in [0, 1];
* a batch (:func:`judge_batch`): (B, 3, H, W), float in [0, 1] (or uint8), numpy or torch (converted with
  ``.detach().cpu().numpy()``; torch is never imported here).

H = W = the canvas size (32 by default). Anything else (other shapes, channel counts, dtypes, values outside
[0, 1] by more than 1e-6, NaN or infinity) raises :class:`~noisyclip_metrics.errors.InputError`.

Measured accuracy (``experiments/world_oracle.py``): 100% of clean renders judged aligned; see the bench for blur, noise
and colour-jitter robustness.

Examples:
    >>> from noisyclip_metrics.world.draw import render_scene
    >>> image, _ = render_scene("a red circle to the left of a blue square", seed=0)
    >>> judge_image(image, "a red circle to the left of a blue square").aligned
    True
    >>> result = judge_image(image, "a red circle to the right of a blue square")
    >>> result.aligned, round(result.score, 2)
    (False, 0.83)
    >>> [(q.question, q.answer) for q in result.questions if not q.correct]
    [('Is the red circle to the right of the blue square?', 'no')]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.world.config import CanvasConfig, OracleConfig
from noisyclip_metrics.world.grammar import describe, parse_prompt
from noisyclip_metrics.world.questions import SceneObject, answer_question, make_questions
from noisyclip_metrics.world.segment import segment_image
from noisyclip_metrics.world.spec import Prompt, SceneSpec

__all__ = [
    "JudgeResult",
    "QuestionResult",
    "as_float_image",
    "judge_batch",
    "judge_image",
    "judge_objects",
    "judge_trajectories",
]

_RANGE_SLACK = 1e-6


@dataclass(frozen=True)
class QuestionResult:
    """One question asked by the oracle and how the image answered it."""

    question: str
    kind: str
    expected: str
    answer: str

    @property
    def correct(self) -> bool:
        """Whether the image's answer is the expected one."""
        return self.answer == self.expected


@dataclass(frozen=True)
class JudgeResult:
    """The oracle's judgment of one (image, prompt) pair.

    Attributes:
        prompt: the prompt text (as written by :func:`~.grammar.describe`).
        spec: its meaning.
        questions: every question with expected and actual answers.
        objects: the objects found in the image.
    """

    prompt: str
    spec: SceneSpec
    questions: tuple[QuestionResult, ...]
    objects: tuple[SceneObject, ...]

    @property
    def score(self) -> float:
        """TIFA score: fraction of questions answered correctly."""
        return sum(q.correct for q in self.questions) / len(self.questions)

    @property
    def aligned(self) -> bool:
        """Fully aligned: every question answered correctly."""
        return all(q.correct for q in self.questions)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (prompt, score, aligned, questions, objects)."""
        return {
            "prompt": self.prompt,
            "score": self.score,
            "aligned": self.aligned,
            "questions": [dict(dataclasses.asdict(q), correct=q.correct) for q in self.questions],
            "objects": [
                {"colour": o.colour, "shape": o.shape, "size": o.size, "area": o.area, "cx": o.cx, "cy": o.cy}
                for o in self.objects
            ],
        }


def _to_numpy(x: Any, name: str) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if type(x).__module__.split(".")[0] == "torch" and hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    raise InputError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}")


def _check_values(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"{name}: expected dtype uint8 or a float dtype with values in [0, 1], got {arr.dtype}")
    out = arr.astype(np.float64)
    if not np.isfinite(out).all():
        raise InputError(f"{name}: expected finite values in [0, 1], got NaN or infinity")
    lo, hi = float(out.min()), float(out.max())
    if lo < -_RANGE_SLACK or hi > 1 + _RANGE_SLACK:
        raise InputError(f"{name}: expected float values in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    return np.clip(out, 0.0, 1.0)


def as_float_image(image: Any, canvas: CanvasConfig | None = None, name: str = "image") -> np.ndarray:
    """Validate one image and return it as float64 (H, W, 3) in [0, 1].

    Examples:
        >>> as_float_image(np.zeros((32, 32, 3), dtype=np.uint8)).dtype
        dtype('float64')
        >>> as_float_image(np.zeros((32, 32, 4), dtype=np.uint8))
        Traceback (most recent call last):
        ...
        noisyclip_metrics.errors.InputError: image: expected shape (32, 32, 3) (H, W, RGB), got (32, 32, 4)
    """
    canvas = canvas or CanvasConfig()
    arr = _to_numpy(image, name)
    expected = (canvas.size, canvas.size, 3)
    if arr.shape != expected:
        raise InputError(f"{name}: expected shape {expected} (H, W, RGB), got {tuple(arr.shape)}")
    return _check_values(arr, name)


def _as_spec(prompt: str | SceneSpec | Prompt, name: str = "prompt") -> SceneSpec:
    if isinstance(prompt, SceneSpec):
        return prompt
    if isinstance(prompt, Prompt):
        return prompt.spec
    if isinstance(prompt, str):
        return parse_prompt(prompt)
    raise InputError(f"{name}: expected a prompt string, Prompt or SceneSpec, got {type(prompt).__name__}")


def _scaled(config: OracleConfig | None, canvas: CanvasConfig) -> OracleConfig:
    cfg = config or OracleConfig()
    return dataclasses.replace(cfg, relation_tolerance=cfg.relation_tolerance * canvas.scale)


def judge_objects(
    objects: Sequence[SceneObject], prompt: str | SceneSpec | Prompt, config: OracleConfig | None = None
) -> JudgeResult:
    """Judge a prompt against already segmented (or ground-truth) objects.

    Examples:
        >>> from noisyclip_metrics.world.draw import sample_layout
        >>> layout = sample_layout("three white squares", rng=0)
        >>> judge_objects(layout.scene_objects(), "three white squares").aligned
        True
    """
    spec = _as_spec(prompt)
    objs = tuple(objects)
    results = tuple(
        QuestionResult(q.text, q.kind, q.expected, answer_question(q, objs, config)) for q in make_questions(spec)
    )
    return JudgeResult(describe(spec), spec, results, objs)


def judge_image(
    image: Any,
    prompt: str | SceneSpec | Prompt,
    *,
    canvas: CanvasConfig | None = None,
    config: OracleConfig | None = None,
) -> JudgeResult:
    """Judge how well one image shows a prompt.

    Args:
        image: (H, W, 3) uint8 or float in [0, 1], numpy or torch.
        prompt: a prompt string of the grammar, a :class:`~.spec.Prompt` or a :class:`~.spec.SceneSpec`.
        canvas: the canvas the image was drawn on (size, background); default 32 x 32.
        config: oracle thresholds.

    Returns:
        The :class:`JudgeResult` (questions, ``score``, ``aligned``, objects).

    Raises:
        InputError: bad image (shape, dtype, range, NaN) or a prompt outside the grammar.

    Examples:
        >>> from noisyclip_metrics.world.draw import render_scene
        >>> image, _ = render_scene("two green triangles and no blue shapes", seed=4)
        >>> judge_image(image, "two green triangles and no blue shapes").score
        1.0
    """
    canvas = canvas or CanvasConfig()
    spec = _as_spec(prompt)
    objects = segment_image(as_float_image(image, canvas), canvas, config)
    return judge_objects(objects, spec, _scaled(config, canvas))


def judge_batch(
    images: Any,
    prompts: Sequence[str | SceneSpec | Prompt],
    *,
    canvas: CanvasConfig | None = None,
    config: OracleConfig | None = None,
) -> list[JudgeResult]:
    """Judge a batch of images, each against its own prompt.

    Args:
        images: (B, 3, H, W) float in [0, 1] (or uint8), numpy or torch tensor.
        prompts: B prompts (strings, :class:`~.spec.Prompt` or :class:`~.spec.SceneSpec`).
        canvas: the canvas the images were drawn on.
        config: oracle thresholds.

    Returns:
        One :class:`JudgeResult` per image.

    Examples:
        >>> from noisyclip_metrics.world.draw import render_batch
        >>> images, _ = render_batch(["a red circle", "two blue squares"], seed=0)
        >>> [r.aligned for r in judge_batch(images, ["a red circle", "a blue square"])]
        [True, False]
    """
    canvas = canvas or CanvasConfig()
    arr = _to_numpy(images, "images")
    expected = (3, canvas.size, canvas.size)
    if arr.ndim != 4 or tuple(arr.shape[1:]) != expected:
        raise InputError(f"images: expected shape (B, {', '.join(map(str, expected))}) (B, RGB, H, W), got {arr.shape}")
    if isinstance(prompts, (str, SceneSpec, Prompt)) or not isinstance(prompts, Sequence):
        raise InputError(f"prompts: expected a sequence of {arr.shape[0]} prompts, got {type(prompts).__name__}")
    if len(prompts) != arr.shape[0]:
        raise InputError(f"prompts: expected {arr.shape[0]} prompts (one per image), got {len(prompts)}")
    floats = _check_values(arr, "images").transpose(0, 2, 3, 1)
    specs = [_as_spec(p, f"prompts[{i}]") for i, p in enumerate(prompts)]
    cfg = _scaled(config, canvas)
    return [
        judge_objects(segment_image(img, canvas, config), spec, cfg) for img, spec in zip(floats, specs, strict=True)
    ]


def judge_trajectories(store: str | Path) -> dict[str, JudgeResult]:
    """The oracle's judgment of the final image of every trajectory in a trajectory store, by trajectory key (in the
    store's order)."""
    from noisyclip_metrics.diffusion.trajectory_store import TrajectoryStore

    out: dict[str, JudgeResult] = {}
    for recs, tensors in TrajectoryStore.open(store).iter_shards(names=("images",)):
        out.update(
            zip((r.key for r in recs), judge_batch(tensors["images"].numpy(), [r.prompt for r in recs]), strict=True)
        )
    return out
