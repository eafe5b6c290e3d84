"""ShapesWorld: a small synthetic text-to-image world with exact ground truth.

* :mod:`.vocab`: colours, shapes, sizes, relations, skills, templates.
* :mod:`.spec` and :mod:`.grammar`: the meaning of a prompt (:class:`SceneSpec`) and the English grammar
  (:func:`describe`, :func:`parse_prompt`); :mod:`.sampling`: sampling and enumeration of prompts.
* :mod:`.config` and :mod:`.render`: canvas geometry and the renderer (:func:`render_scene`, :func:`render_batch`).
* :mod:`.segment`, :mod:`.questions` and :mod:`.oracle`: the oracle judge (:func:`judge_image`, :func:`judge_batch`).
* :mod:`.splits`: held-out compositions, benchmark and training prompts; :mod:`.perturb`: robustness perturbations.

Only numpy, scipy and the standard library are imported (torch tensors are accepted by duck typing).

Examples:
    >>> from noisyclip_metrics.world import render_scene, judge_image
    >>> image, layout = render_scene("a green triangle above a yellow circle", seed=0)
    >>> judge_image(image, "a green triangle above a yellow circle").aligned
    True
"""

from __future__ import annotations

from noisyclip_metrics.world.config import CanvasConfig, OracleConfig, shape_area, shape_centroid_offset
from noisyclip_metrics.world.draw import Layout, PlacedObject, draw_layout, render_batch, render_scene, sample_layout
from noisyclip_metrics.world.grammar import describe, parse_prompt, tokenize
from noisyclip_metrics.world.oracle import (
    JudgeResult,
    QuestionResult,
    as_float_image,
    judge_batch,
    judge_image,
    judge_objects,
)
from noisyclip_metrics.world.perturb import colour_jitter, gaussian_blur, gaussian_noise
from noisyclip_metrics.world.questions import (
    QUESTION_KINDS,
    Question,
    SceneObject,
    answer_question,
    is_bigger,
    make_questions,
    relation_holds,
)
from noisyclip_metrics.world.sampling import (
    HARD_NEGATIVE_EDITS,
    TemplateMix,
    enumerate_prompts,
    hard_negative,
    sample_prompts,
    sample_spec,
)
from noisyclip_metrics.world.segment import classify_pixels, estimate_background, segment_image
from noisyclip_metrics.world.spec import Absence, ObjectSpec, Prompt, SceneSpec, skills_of
from noisyclip_metrics.world.splits import (
    HeldOut,
    SplitConfig,
    WorldSplit,
    benchmark_prompts,
    heldout_compositions,
    make_split,
    train_prompts,
)
from noisyclip_metrics.world.vocab import (
    ADVANCED_SKILLS,
    BACKGROUND,
    BASIC_SKILLS,
    COLOUR_NAMES,
    COLOURS,
    COMPARISONS,
    MAX_OBJECTS,
    RELATIONS,
    SHAPES,
    SIZE_CLASSES,
    SIZES,
    SKILLS,
    TEMPLATES,
)

__all__ = [
    "ADVANCED_SKILLS",
    "BACKGROUND",
    "BASIC_SKILLS",
    "COLOURS",
    "COLOUR_NAMES",
    "COMPARISONS",
    "HARD_NEGATIVE_EDITS",
    "MAX_OBJECTS",
    "QUESTION_KINDS",
    "RELATIONS",
    "SHAPES",
    "SIZES",
    "SIZE_CLASSES",
    "SKILLS",
    "TEMPLATES",
    "Absence",
    "CanvasConfig",
    "HeldOut",
    "JudgeResult",
    "Layout",
    "ObjectSpec",
    "OracleConfig",
    "PlacedObject",
    "Prompt",
    "Question",
    "QuestionResult",
    "SceneObject",
    "SceneSpec",
    "SplitConfig",
    "TemplateMix",
    "WorldSplit",
    "answer_question",
    "as_float_image",
    "benchmark_prompts",
    "classify_pixels",
    "colour_jitter",
    "describe",
    "draw_layout",
    "enumerate_prompts",
    "estimate_background",
    "gaussian_blur",
    "gaussian_noise",
    "hard_negative",
    "heldout_compositions",
    "is_bigger",
    "judge_batch",
    "judge_image",
    "judge_objects",
    "make_questions",
    "make_split",
    "parse_prompt",
    "relation_holds",
    "render_batch",
    "render_scene",
    "sample_layout",
    "sample_prompts",
    "sample_spec",
    "segment_image",
    "shape_area",
    "shape_centroid_offset",
    "skills_of",
    "tokenize",
    "train_prompts",
]
