"""Continuous batching: early-stopping Best-of-N over a stream of prompts, the slots freed by pruning refilled at once.

:meth:`~.early.EarlyBestOfN.run_batch` moves a batch of prompts in lock step: when a prompt's candidates are pruned,
its rows stay empty until the whole batch ends, so on a GPU (where a denoiser call on 2 rows costs about as much as
on 12) the saved calls do not become saved seconds. :class:`StreamBestOfN` keeps up to ``slots`` candidates in
flight instead: each prompt's run is admitted as soon as its ``n`` candidates fit beside the candidates still alive,
and one denoiser call serves every run at whatever step it has reached (the denoiser takes one timestep per row);
likewise the runs that must be scored at the same time are scored in one scorer call
(:func:`~.early.answer_together`), each run's x̂0 and noise levels computed from its own scheduler first.
Each run keeps its own scheduler (a copy, with its own multistep history and step index) and is decided on by the
policy exactly as alone, so each candidate's latents, picks and images equal those of its run alone to float
tolerance (the batch composition changes the last bits).

Supported: the pipelines whose loop adapter splits a denoiser call into inputs, call and guidance
(``inputs`` / ``denoise`` / ``combine``): SD, SDXL, SD3 and FLUX; a FLUX run with true CFG (a negative prompt and
``true_cfg_scale``), which calls the transformer twice per step, is refused.

Examples:
    >>> import tempfile
    >>> from noisyclip_metrics.testing import tiny_pipeline
    >>> from noisyclip_metrics.scoring.model import NoisyCLIPModel, TINY_TEST_CONFIG
    >>> from noisyclip_metrics.scoring.scorers import build_scorer
    >>> from noisyclip_metrics.bon.policies import OneShotPolicy
    >>> pipe = tiny_pipeline("sd", tempfile.mkdtemp())
    >>> scorer = build_scorer("clip", model=NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0))
    >>> stream = StreamBestOfN(pipe, scorer, OneShotPolicy(k=1), slots=4)
    >>> batch = stream.run(["a red circle", "a blue square", "a green star"], n=3, num_inference_steps=2, height=32,
    ...                    width=32)
    >>> [len(r.seeds) for r in batch], batch.denoiser_evals, stream.calls  # 3 prompts x (3 + 1) calls per candidate
    ([1, 1, 1], 12, 4)
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import torch

from noisyclip_metrics.bon.early import (
    BoNBatch,
    EarlyBestOfN,
    ScoreRequest,
    _check_n,
    _seeds,
    _settings,
    answer_together,
)
from noisyclip_metrics.bon.loops import LoopState, stack_inputs
from noisyclip_metrics.bon.policies import Policy
from noisyclip_metrics.errors import InputError
from noisyclip_metrics.scoring.scorers import Scorer

__all__ = ["StreamBestOfN", "own_scheduler"]


def _send(run: Any, value: Any) -> Any:
    """What a run's loop asks for next (its state, a :class:`~.early.ScoreRequest`), or its ``StopIteration``."""
    try:
        return next(run) if value is None else run.send(value)
    except StopIteration as done:
        return done


def own_scheduler(pipe: Any) -> Any:
    """A shallow copy of ``pipe`` with a deep copy of its scheduler: the same models, its own sampling state."""
    twin = copy.copy(pipe)
    object.__setattr__(twin, "scheduler", copy.deepcopy(pipe.scheduler))  # not through the pipeline's config
    return twin


class StreamBestOfN:
    """Early-stopping Best-of-N over a stream of prompts with continuous batching (see the module docstring).

    Args:
        pipe: an SD, SDXL, SD3 or FLUX pipeline.
        scorer: the scorer that prunes.
        policy: the early-stopping policy (default: one-shot at ``k = 0``).
        final_scorer: a cascade's final scorer.
        slots: candidates in flight at most (a run of ``n`` is admitted when its candidates fit beside the alive
            ones; one run always fits): the denoiser's batch, so what fits the memory.
        max_batch: at most this many rows per denoiser call (``None``: one call per step of the stream).

    Raises:
        InputError: for a pipeline whose loop cannot be batched across runs, or a bad ``slots``.
    """

    def __init__(
        self,
        pipe: Any,
        scorer: Scorer,
        policy: Policy | None = None,
        final_scorer: Scorer | None = None,
        slots: int = 64,
        max_batch: int | None = None,
    ) -> None:
        self.engine = EarlyBestOfN(pipe, scorer, policy, final_scorer=final_scorer, max_batch=max_batch)
        adapter = self.engine.adapter
        if not all(hasattr(adapter, name) for name in ("inputs", "denoise", "combine")):
            raise InputError(
                f"pipe: continuous batching needs a loop that splits a denoiser call (SD, SDXL, SD3, FLUX); "
                f"{type(pipe).__name__} is not supported, use EarlyBestOfN.run_batch"
            )
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise InputError(f"slots: expected an integer >= 1 (candidates in flight), got {slots!r}")
        self.pipe, self.slots, self.max_batch = pipe, slots, max_batch
        self.calls = 0  #: denoiser calls of the last run (each serving every run in flight)
        self.rows = 0  #: rows of those calls (candidates; classifier-free guidance counts once)
        self.scorer_calls = 0  #: scorer calls of the last run (each serving every run due to be scored)

    def _outputs(self, states: list[LoopState]) -> list[torch.Tensor]:
        """One denoiser call (or ``max_batch`` chunks of one) for every run's alive candidates."""
        adapter = self.engine.adapter
        parts = [adapter.inputs(s) for s in states]
        stacked = stack_inputs(parts)
        per_candidate = stacked.batch // sum(s.batch for s in states)  # 2 with classifier-free guidance
        rows = stacked.batch if self.max_batch is None else self.max_batch * per_candidate
        chunks = range(0, stacked.batch, rows)
        out = torch.cat([adapter.denoise(self.pipe, stacked.slice(start, start + rows)) for start in chunks])
        self.calls, self.rows = self.calls + 1, self.rows + sum(s.batch for s in states)
        pieces = out.split([p.batch for p in parts])
        return [adapter.combine(s, piece) for s, piece in zip(states, pieces, strict=True)]

    @torch.no_grad()
    def run(
        self,
        prompts: Sequence[str],
        n: int,
        seeds: Sequence[int] | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        height: int | None = None,
        width: int | None = None,
        negative_prompt: str | None = None,
        **settings: Any,
    ) -> BoNBatch:
        """Best-of-``n`` for every prompt of the stream, in order of the prompts.

        Args:
            prompts: one prompt per Best-of-N.
            n: candidates per prompt.
            seeds: one seed per candidate, for every prompt (default ``0..n-1``).
            num_inference_steps: T (the pipeline's default when ``None``).
            guidance_scale: classifier-free guidance scale.
            height: image height in pixels.
            width: image width in pixels.
            negative_prompt: negative prompt for every candidate.
            **settings: other :class:`~noisyclip_metrics.bon.loops.LoopSettings` fields.

        Returns:
            a :class:`~.early.BoNBatch` with one result per prompt (its own decisions and counts; every result's
            ``seconds`` are the stream's) and the stream's wall time per phase.
        """
        t_start = time.perf_counter()
        n = _check_n(n)
        if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not prompts:
            raise InputError(f"prompts: expected a non-empty list of prompts (one per Best-of-N), got {prompts!r}")
        cfg = _settings(num_inference_steps, guidance_scale, height, width, negative_prompt, settings)
        group_seeds = _seeds(seeds, n)
        waiting = [(i, self.engine._prompts(p, n)) for i, p in enumerate(prompts)]
        active: list[tuple[int, Any, LoopState]] = []  # (prompt index, its run, its state waiting for an output)
        results: list[Any] = [None] * len(prompts)
        self.calls = self.rows = self.scorer_calls = 0

        def settle(asked: list[tuple[int, Any, Any]]) -> list[tuple[int, Any, LoopState]]:
            """Answer the runs' score requests together until every run waits for a denoiser output (or is done)."""
            while True:
                for index, _, wants in asked:
                    if isinstance(wants, StopIteration):
                        results[index] = wants.value.results[0]
                asked = [a for a in asked if not isinstance(a[2], StopIteration)]
                requests = [a for a in asked if isinstance(a[2], ScoreRequest)]
                if not requests:
                    return asked
                answers, calls = answer_together([wants for *_, wants in requests])
                self.scorer_calls += calls
                replies = {id(run): scores for (_, run, _), scores in zip(requests, answers, strict=True)}
                asked = [(i, run, _send(run, replies[id(run)]) if id(run) in replies else w) for i, run, w in asked]

        while waiting or active:
            while waiting:  # admit what fits; runs admitted together are scored together before their first call
                room = self.slots - sum(s.batch for *_, s in active)
                admitted = []
                while waiting and ((not active and not admitted) or n * (len(admitted) + 1) <= room):
                    index, group = waiting.pop(0)
                    pipe = own_scheduler(self.pipe)
                    run = self.engine._steps(pipe, [group], [group_seeds], n, cfg, time.perf_counter())
                    admitted.append((index, run, _send(run, None)))
                if not admitted:
                    break
                active += settle(admitted)
            if not active:
                continue
            outputs = self._outputs([s for *_, s in active])
            active = settle([(i, run, _send(run, out)) for (i, run, _), out in zip(active, outputs, strict=True)])
        total = time.perf_counter() - t_start
        phases = {k: sum(r.seconds[k] for r in results) for k in ("setup", "score", "decode")}
        seconds = {**phases, "denoise": total - sum(phases.values()), "total": total}
        seconds = {k: round(v, 6) for k, v in seconds.items()}
        settings_out = {"slots": self.slots, "stream_prompts": len(prompts), "denoiser_calls": self.calls}
        results = [
            dataclasses.replace(r, seconds=dict(seconds), settings={**r.settings, **settings_out}) for r in results
        ]
        return BoNBatch(results=tuple(results), seconds=seconds)
