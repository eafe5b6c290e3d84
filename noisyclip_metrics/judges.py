"""Live judges of final images for the evaluation runner: the world's oracle, and any scorer used as a judge.

Both follow :class:`~noisyclip_metrics.judgments.Judge` (``name``, ``judge(prompts, images) -> list[float]``) and add
``judge_detailed``, which also returns the binary verdict when the judge has one. Precomputed judgments (human
ratings, VQAScore files) go through :class:`~noisyclip_metrics.judgments.PrecomputedJudge` with candidate id
``str(seed)`` (see :func:`build_judge`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .errors import InputError
from .judgments.judge import JUDGES
from .registry import did_you_mean

__all__ = ["WorldOracleJudge", "ScorerJudge", "build_judge", "judge_detailed"]


class WorldOracleJudge:
    """The built-in world's oracle: TIFA score (fraction of questions answered right) and "fully aligned"."""

    name = "world-oracle"

    def judge_detailed(self, prompts: Sequence[str], images: torch.Tensor) -> list[tuple[float, bool | None]]:
        from .world.oracle import judge_batch

        results = judge_batch(images.detach().cpu().float().numpy(), list(prompts))
        return [(float(r.score), bool(r.aligned)) for r in results]

    def judge(self, prompts: Sequence[str], images: torch.Tensor) -> list[float]:
        return [s for s, _ in self.judge_detailed(prompts, images)]


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


def _world_oracle(**_: Any) -> WorldOracleJudge:
    return WorldOracleJudge()


def _clip_final(clip: str | None = None, **_: Any) -> ScorerJudge:
    from .functional import resolve_model

    if clip is None:
        raise InputError("judge: 'clip-final' needs a CLIP model (clip=...)")
    return ScorerJudge(resolve_model(clip))


for _name, _factory in (("world-oracle", _world_oracle), ("clip-final", _clip_final)):
    if _name not in JUDGES:
        JUDGES.register(_name, _factory)


def build_judge(name: str, clip: str | None = None, judgments: str | Path | None = None) -> Any:
    """A judge by name (``world-oracle``, ``clip-final``), or the judgments file of a precomputed judge.

    Args:
        name: registered judge name, or a path to a judgments file (CSV/JSONL with prompt_id, candidate_id, judge,
            score) for a precomputed judge; its candidate ids are seeds.
        clip: the CLIP used by ``clip-final``.
        judgments: alternatively, the judgments file.
    """
    path = Path(judgments) if judgments is not None else Path(name)
    if judgments is not None or path.suffix.lower() in (".csv", ".tsv", ".jsonl") or path.is_file():
        from .judgments import PrecomputedJudge, read_judgments

        return PrecomputedJudge(read_judgments(path))
    if name not in JUDGES:
        names = JUDGES.names()
        raise InputError(f"judge: unknown judge {name!r}{did_you_mean(name, names)} Available: {', '.join(names)}, "
                         "or a judgments file")  # fmt: skip
    return JUDGES.get(name)(clip=clip)


def judge_detailed(judge: Any, prompts: Sequence[str], images: torch.Tensor, prompt_ids: Sequence[str],
                   seeds: Sequence[int]) -> list[tuple[float, bool | None]]:  # fmt: skip
    """(score, aligned) per candidate for any judge; precomputed judges look up ``(prompt_id, str(seed))``."""
    if hasattr(judge, "judge_detailed"):
        return judge.judge_detailed(prompts, images)
    from .judgments import PrecomputedJudge

    if isinstance(judge, PrecomputedJudge):
        return [(s, None) for s in judge.judge(list(prompt_ids), [str(s) for s in seeds])]
    return [(float(s), None) for s in judge.judge(list(prompts), images)]
