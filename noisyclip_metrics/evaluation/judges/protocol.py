"""The :class:`Judge` protocol and :class:`PrecomputedJudge` (scores looked up from stored judgments).

A judge maps (prompt, image) pairs to alignment scores, higher = better::

    class MyJudge:
        name = "my-judge"
        def judge(self, prompts: Sequence[str], images: Sequence[Any]) -> list[float]: ...

``images`` is whatever the judge understands: image arrays / tensors for a live judge (the world's oracle, a
scorer used as a judge, VQAScore), candidate ids for :class:`PrecomputedJudge`. Register judges by name in
:data:`JUDGES` (a factory per name) so CLI and configs can refer to them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.evaluation.benchmarks.promptset import PromptSet
from noisyclip_metrics.evaluation.judges.records import Judgment, mean_over_raters
from noisyclip_metrics.registry import Registry, did_you_mean

__all__ = ["JUDGES", "Judge", "PrecomputedJudge"]


@runtime_checkable
class Judge(Protocol):
    """Anything with a ``name`` and ``judge(prompts, images) -> list[float]`` (one score per pair, same order)."""

    name: str

    def judge(self, prompts: Sequence[str], images: Sequence[Any]) -> list[float]:
        """Scores of ``images[k]`` for ``prompts[k]``; higher = better aligned."""
        ...


JUDGES: Registry[Callable[..., Judge]] = Registry("judge")
"""Judge factories by name (``JUDGES.get("precomputed")(judgments)``); other modules register theirs."""


@JUDGES.register("precomputed")
class PrecomputedJudge:
    """A judge that returns stored scores (human ratings, VQAScore files, earlier runs).

    Several judgments of the same (prompt, candidate) -- e.g. three raters -- are averaged (NaN ignored).

    Args:
        judgments: the stored judgments (one judge, or pass ``judge`` to select one).
        name: the judge's name (default: the judgments' judge).
        judge: keep only judgments of this judge.
        prompts: a prompt set, so that :meth:`judge` also accepts prompt *texts* (mapped to ids).
        missing: ``"error"`` (default) or ``"nan"`` for pairs without a stored score.

    Examples:
        >>> stored = [Judgment("00001", "DALLE_3", "DALLE_3", "human", s, rater=str(r))
        ...           for r, s in enumerate([5, 4, 5])]
        >>> j = PrecomputedJudge(stored)
        >>> j.name, round(j.judge(["00001"], ["DALLE_3"])[0], 4)
        ('human', 4.6667)
        >>> isinstance(j, Judge)
        True
    """

    def __init__(
        self,
        judgments: Iterable[Judgment],
        name: str | None = None,
        *,
        judge: str | None = None,
        prompts: PromptSet | None = None,
        missing: str = "error",
    ) -> None:
        if missing not in ("error", "nan"):
            raise InputError(f"missing must be 'error' or 'nan', got {missing!r}")
        kept = [j for j in judgments if judge is None or j.judge == judge]
        judges = sorted({j.judge for j in kept})
        if len(judges) > 1:
            raise InputError(f"judgments of several judges ({', '.join(judges)}): pass judge=...")
        if not kept:
            raise InputError("no judgments to look up" + (f" for judge {judge!r}" if judge else ""))
        self.name = name or judges[0]
        self.missing = missing
        self._scores = {(j.prompt_id, j.candidate_id): j.score for j in mean_over_raters(kept)}
        self._by_text: dict[str, str] = {}
        if prompts is not None:
            for p in prompts:
                if self._by_text.setdefault(p.text, p.id) != p.id:
                    self._by_text[p.text] = ""  # ambiguous text: only ids work
        self._candidates = sorted({c for _, c in self._scores})

    def _prompt_id(self, prompt: str) -> str:
        if any(key[0] == prompt for key in self._scores) or prompt not in self._by_text:
            return prompt
        pid = self._by_text[prompt]
        if not pid:
            raise InputError(f"prompt text {prompt!r} occurs several times in the prompt set; pass its id")
        return pid

    def judge(self, prompts: Sequence[str], images: Sequence[Any]) -> list[float]:
        """Stored scores for ``(prompts[k], images[k])``; images are candidate ids (or objects with ``.candidate_id``).

        Raises:
            InputError: mismatched lengths, or a pair without a stored score (unless ``missing="nan"``).
        """
        if len(prompts) != len(images):
            raise InputError(f"prompts and images must have the same length, got {len(prompts)} and {len(images)}")
        out = []
        for prompt, image in zip(prompts, images, strict=True):
            candidate = getattr(image, "candidate_id", image)
            key = (self._prompt_id(str(prompt)), str(candidate))
            if key not in self._scores:
                if self.missing == "nan":
                    out.append(float("nan"))
                    continue
                raise InputError(
                    f"judge {self.name!r} has no score for prompt {key[0]!r}, candidate {key[1]!r}"
                    f"{did_you_mean(key[1], self._candidates)}"
                )
            out.append(self._scores[key])
        return out

    def scores(self) -> dict[tuple[str, str], float]:
        """All stored (prompt id, candidate id) -> score pairs (raters averaged)."""
        return dict(self._scores)

    def __len__(self) -> int:
        return len(self._scores)

    def as_array(self, prompt_ids: Sequence[str], candidates: Sequence[str]) -> np.ndarray:
        """(prompts x candidates) matrix of stored scores, NaN where missing."""
        return np.array([[self._scores.get((p, c), np.nan) for c in candidates] for p in prompt_ids], dtype=float)
