"""Live judges of final images for the evaluation runner: any scorer used as a judge, VQAScore through t2v-metrics
when it is installed, and the judges plugins register (the built-in world's oracle, ``world-oracle``).

All follow :class:`~noisyclip_metrics.evaluation.judges.Judge` (``name``, ``judge(prompts, images) -> list[float]``)
and add
``judge_detailed``, which also returns the binary verdict when the judge has one. Precomputed judgments (human
ratings, VQAScore files) go through :class:`~noisyclip_metrics.evaluation.judges.PrecomputedJudge` with candidate id
``str(seed)`` (see :func:`build_judge`).

Registered names (:data:`~noisyclip_metrics.evaluation.judges.JUDGES`): ``clip-final``, ``vqascore`` and the plugins'.
A judge that reads only some prompts may define ``check_prompts(prompts)``, which the runner calls before it writes
anything.
A name may carry a variant after a colon for judges that take one: ``vqascore:clip-flant5-xl`` picks the
t2v-metrics VQAScore model (default ``clip-flant5-xxl``). t2v-metrics is optional and never a dependency: without
it, ``vqascore`` raises :class:`~noisyclip_metrics.errors.InputError` saying how to install it or how to pass
precomputed VQAScore judgments instead.
"""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.evaluation.judges.protocol import JUDGES
from noisyclip_metrics.registry import did_you_mean

__all__ = ["ScorerJudge", "VQAScoreJudge", "build_judge", "import_t2v_metrics", "judge_detailed"]

T2V_METRICS_HINT = (
    "install t2v-metrics (pip install t2v-metrics, which pins torch 2.5.1) or precompute VQAScore with it and pass "
    "the judgments file"
)


class ScorerJudge:
    """A CLIP used post hoc as a judge (``clip-final``: cosine of the final image and the prompt)."""

    def __init__(self, model: Any, name: str = "clip-final") -> None:
        self.model = model
        self.name = name

    def judge_detailed(self, prompts: Sequence[str], images: torch.Tensor) -> list[tuple[float, bool | None]]:
        with torch.no_grad():
            scores = self.model.score_images(images, list(prompts))
        return [(float(s), None) for s in scores.tolist()]

    def judge(self, prompts: Sequence[str], images: torch.Tensor) -> list[float]:
        return [s for s, _ in self.judge_detailed(prompts, images)]


def import_t2v_metrics(purpose: str = "vqascore") -> Any:
    """Import the optional ``t2v_metrics`` package, or raise :class:`InputError` saying what to do instead."""
    try:
        import t2v_metrics
    except ImportError:
        raise InputError(f"judge {purpose!r}: t2v-metrics is not installed; {T2V_METRICS_HINT}") from None
    except Exception as err:
        raise InputError(
            f"judge {purpose!r}: t2v-metrics is installed but failed to import "
            f"({type(err).__name__}: {err}); fix that, or precompute VQAScore with it and pass the "
            "judgments file"
        ) from None
    return t2v_metrics


class VQAScoreJudge:
    """VQAScore (t2v-metrics) of final images: ``P("Yes" | image, "Does this figure show '{prompt}'?")``.

    Images (``(B, 3, H, W)`` tensors in [0, 1], or file paths) are written as PNG files to a temporary folder, since
    t2v-metrics reads paths, and scored pair by pair with ``batch_forward``.

    Args:
        model: a t2v-metrics VQAScore model name (``clip-flant5-xxl``, ``clip-flant5-xl``, ...).
        device: ``"cuda"`` when available, else ``"cpu"``, by default.
        batch_size: pairs per t2v-metrics batch.
        score: an already built t2v-metrics score object (anything with ``batch_forward``), instead of ``model``.
    """

    def __init__(
        self, model: str = "clip-flant5-xxl", device: str | None = None, batch_size: int = 16, score: Any = None
    ) -> None:
        if score is None:
            t2v_metrics = import_t2v_metrics()
            device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            score = t2v_metrics.VQAScore(model=model, device=device)
        self.score = score
        self.batch_size = batch_size
        self.name = f"vqascore:{model}"

    def judge(self, prompts: Sequence[str], images: Any) -> list[float]:
        prompts = list(prompts)
        if len(prompts) != len(images):
            raise InputError(f"prompts and images must have the same length, got {len(prompts)} and {len(images)}")
        with tempfile.TemporaryDirectory(prefix="noisyclip-vqascore-") as tmp:
            paths = [_as_path(image, Path(tmp) / f"{k:06d}.png") for k, image in enumerate(images)]
            dataset = [{"images": [p], "texts": [t]} for p, t in zip(paths, prompts, strict=True)]
            scores = self.score.batch_forward(dataset=dataset, batch_size=self.batch_size)
        return [float(s) for s in torch.as_tensor(scores).reshape(len(prompts), -1)[:, 0].tolist()]

    def judge_detailed(self, prompts: Sequence[str], images: Any) -> list[tuple[float, bool | None]]:
        return [(s, None) for s in self.judge(prompts, images)]


def _as_path(image: Any, target: Path) -> str:
    if isinstance(image, (str, Path)):
        return str(image)
    from PIL import Image

    arr = (torch.as_tensor(image).detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    Image.fromarray(arr).save(target)
    return str(target)


def _vqascore(variant: str | None = None, device: str | None = None, **_: Any) -> VQAScoreJudge:
    return VQAScoreJudge(model=variant or "clip-flant5-xxl", device=device)


def _clip_final(clip: str | None = None, **_: Any) -> ScorerJudge:
    from noisyclip_metrics.scoring.factory import resolve_model

    if clip is None:
        raise InputError("judge: 'clip-final' needs a CLIP model (clip=...)")
    return ScorerJudge(resolve_model(clip))


for _name, _factory in (("clip-final", _clip_final), ("vqascore", _vqascore)):
    if _name not in JUDGES:
        JUDGES.register(_name, _factory)


def build_judge(
    name: str, clip: str | None = None, judgments: str | Path | None = None, *, missing: str = "error"
) -> Any:
    """A judge by name (``world-oracle``, ``clip-final``, ``vqascore[:model]``), or a precomputed judgments file.

    Args:
        name: registered judge name, optionally ``name:variant`` for judges that take a variant (``vqascore``), or
            a path to a judgments file (CSV/JSONL with prompt_id, candidate_id, judge, score) for a precomputed
            judge; its candidate ids are seeds.
        clip: the CLIP used by ``clip-final``.
        judgments: alternatively, the judgments file.
        missing: for a judgments file, what a candidate without a stored score gets: ``"error"`` (default) or
            ``"nan"`` (for callers that allowed a partial file, after
            :func:`~noisyclip_metrics.evaluation.judges.check_coverage` with ``allow_partial=True``).
    """
    path = Path(judgments) if judgments is not None else Path(name)
    if judgments is not None or path.suffix.lower() in (".csv", ".tsv", ".jsonl") or path.is_file():
        from noisyclip_metrics.evaluation.judges import PrecomputedJudge, read_judgments

        return PrecomputedJudge(read_judgments(path), missing=missing)
    from noisyclip_metrics.plugins import load_plugins

    load_plugins()  # judges of plugins (the world's oracle) register when they load
    base, _, variant = name.partition(":")
    if name not in JUDGES and base not in JUDGES:
        names = JUDGES.names()
        raise InputError(
            f"judge: unknown judge {name!r}{did_you_mean(name, names)} Available: {', '.join(names)}, "
            "or a judgments file"
        )
    if name in JUDGES:
        return JUDGES.get(name)(clip=clip)
    factory = JUDGES.get(base)
    if "variant" not in inspect.signature(factory).parameters:
        raise InputError(f"judge: {base!r} takes no variant, got {name!r}")
    return factory(clip=clip, variant=variant)


def judge_detailed(
    judge: Any, prompts: Sequence[str], images: torch.Tensor, prompt_ids: Sequence[str], seeds: Sequence[int]
) -> list[tuple[float, bool | None]]:
    """(score, aligned) per candidate for any judge; precomputed judges look up ``(prompt_id, str(seed))``."""
    if hasattr(judge, "judge_detailed"):
        return judge.judge_detailed(prompts, images)
    from noisyclip_metrics.evaluation.judges import PrecomputedJudge

    if isinstance(judge, PrecomputedJudge):
        return [(s, None) for s in judge.judge(list(prompt_ids), [str(s) for s in seeds])]
    return [(float(s), None) for s in judge.judge(list(prompts), images)]
