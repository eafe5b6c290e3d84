"""Early-stopping Best-of-N: run N candidates for a few steps, score them, finish only the survivors.

:class:`EarlyBestOfN` drives a pipeline through a prunable loop (:mod:`noisyclip_metrics.bon.loops`), asks a
policy (:mod:`noisyclip_metrics.bon.policies`) which candidates survive each decision, and returns a
:class:`BoNResult`: the chosen image(s) and a full account (denoiser and scorer evaluations, wall time per phase,
every candidate's score at every decision). A survivor's final image equals the plain pipeline's image for its
seed and settings. :meth:`EarlyBestOfN.run_batch` runs several prompts' candidates in one batch, each prompt pruned
on its own scores (a :class:`BoNBatch` of per-prompt results).

Step index convention: k = number of completed denoising steps (0 = pure noise, T = final latent). A decision at
step k scores the step-k latents; scorers that read x̂0 (``clip-x0``, ``clip-x0-decoded``) get the guided denoiser
output at those latents, computed by the step-(k+1) denoiser call that the survivors then reuse. ``clip-final``
scores decoded final images and so only decides at k = T (full-cost BoN).

A *cascade* adds a ``final_scorer``: the policy's ``m`` survivors (all candidates alive at T) are finished and the
final scorer (typically ``clip-final``) picks the best of them at step T; the result holds that one image. Its
scorings are counted apart (``final_scorer_evals``), since they cost differently.

Examples:
    >>> import tempfile, torch
    >>> from noisyclip_metrics.testing import tiny_pipeline
    >>> from noisyclip_metrics.scoring.model import NoisyCLIPModel, TINY_TEST_CONFIG
    >>> from noisyclip_metrics.scoring.scorers import build_scorer
    >>> pipe = tiny_pipeline("sd", tempfile.mkdtemp())
    >>> scorer = build_scorer("clip", model=NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0))
    >>> bon = EarlyBestOfN(pipe, scorer, OneShotPolicy(k=1))
    >>> result = bon("a red circle", n=3, num_inference_steps=2, height=32, width=32)
    >>> result.images.shape, result.denoiser_evals, result.scorer_evals  # 3·1 + 1·(2 − 1) calls, 3 scorings
    (torch.Size([1, 3, 32, 32]), 4, 3)
    >>> final = build_scorer("clip-final", model=scorer.model)
    >>> cascade = EarlyBestOfN(pipe, scorer, OneShotPolicy(k=1, m=2), final_scorer=final)
    >>> result = cascade("a red circle", n=3, num_inference_steps=2, height=32, width=32)
    >>> len(result.seeds), result.denoiser_evals, result.final_scorer_evals  # 3·1 + 2·(2 − 1) calls
    (1, 5, 2)

Several prompts in one batch (each pruned on its own; on a GPU this is how saved denoiser calls become seconds):

    >>> batch = bon.run_batch(["a red circle", "a blue square"], n=3, num_inference_steps=2, height=32, width=32)
    >>> [r.prompts for r in batch], batch.denoiser_evals, batch.cost_fraction
    ([('a red circle',), ('a blue square',)], 8, 0.6666666666666666)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from noisyclip_metrics.bon.families import loop_adapter
from noisyclip_metrics.bon.loops import LoopAdapter, LoopSettings, LoopState, advance, chunked_output, prune
from noisyclip_metrics.bon.policies import OneShotPolicy, Policy, rank
from noisyclip_metrics.diffusion.trajectory import PIPELINE_FAMILIES, PipelineFamily
from noisyclip_metrics.errors import InputError
from noisyclip_metrics.scoring.model import check_prompts
from noisyclip_metrics.scoring.preview import PREVIEW_MAPS
from noisyclip_metrics.scoring.scorers import ScoreInputs, Scorer
from noisyclip_metrics.scoring.x0 import defines_noise_std, model_input_scale

__all__ = [
    "BoNBatch",
    "BoNResult",
    "Decision",
    "EarlyBestOfN",
    "ScoreRequest",
    "answer_together",
    "check_scorer_matches",
]

_SAME_MAP = {"sd2": "sd1"}


@dataclass(frozen=True)
class Decision:
    """One decision: the step, every alive candidate's score (by seed), the seeds kept (best first), the scorer."""

    step: int
    scores: dict[int, float]
    kept: tuple[int, ...]
    scorer: str = ""


@dataclass(frozen=True, eq=False)
class BoNResult:
    """Outcome and account of one early-stopping Best-of-N run.

    Args:
        images: ``(m, 3, H, W)`` chosen images in ``[0, 1]``, best first (one with a ``final_scorer``).
        seeds: their seeds.
        prompts: their prompts.
        scores: their scores at the last decision.
        n: candidates started.
        num_steps: T.
        denoiser_evals: per-candidate denoiser calls (classifier-free guidance counts one call per candidate).
        scorer_evals: per-candidate scorings.
        seconds: wall time per phase (``setup``, ``denoise``, ``score``, ``decode``, ``total``).
        decisions: every decision in step order.
        policy: the policy's name.
        scorer: the scorer's name.
        settings: the pipeline, scheduler and sampling settings.
        final_scorer: the cascade's final scorer (``None`` without one).
        final_scorer_evals: its scorings (per candidate).
    """

    images: torch.Tensor
    seeds: tuple[int, ...]
    prompts: tuple[str, ...]
    scores: tuple[float, ...]
    n: int
    num_steps: int
    denoiser_evals: int
    scorer_evals: int
    seconds: dict[str, float]
    decisions: tuple[Decision, ...]
    policy: str
    scorer: str
    settings: dict[str, Any] = field(default_factory=dict)
    final_scorer: str | None = None
    final_scorer_evals: int = 0

    @property
    def full_cost(self) -> int:
        """Denoiser calls of full-cost BoN: ``n · T``."""
        return self.n * self.num_steps

    @property
    def cost_fraction(self) -> float:
        """``denoiser_evals / (n · T)`` (scorer cost not included; see :func:`~.offline.bon_rows` for that)."""
        return self.denoiser_evals / self.full_cost

    @property
    def trajectories(self) -> float:
        """Denoiser calls spent in full trajectories, ``denoiser_evals / T``: the budget of budget-matched search
        (:mod:`~.search`) without the scorings."""
        return self.denoiser_evals / self.num_steps

    def to_json(self) -> dict[str, Any]:
        """The account as a JSON-serialisable dict (without the images)."""
        return {
            "seeds": list(self.seeds),
            "prompts": list(self.prompts),
            "scores": list(self.scores),
            "n": self.n,
            "num_steps": self.num_steps,
            "policy": self.policy,
            "scorer": self.scorer,
            "denoiser_evals": self.denoiser_evals,
            "scorer_evals": self.scorer_evals,
            "full_cost": self.full_cost,
            "cost_fraction": self.cost_fraction,
            "trajectories": self.trajectories,
            "seconds": dict(self.seconds),
            "final_scorer": self.final_scorer,
            "final_scorer_evals": self.final_scorer_evals,
            "decisions": [
                {
                    "step": d.step,
                    "scorer": d.scorer,
                    "scores": {str(s): v for s, v in d.scores.items()},
                    "kept": list(d.kept),
                }
                for d in self.decisions
            ],
            "settings": dict(self.settings),
        }


@dataclass(frozen=True, eq=False)
class BoNBatch:
    """Outcome of :meth:`EarlyBestOfN.run_batch`: one :class:`BoNResult` per prompt and the batch's wall time.

    Args:
        results: one result per prompt, in the order given (each with its own denoiser and scorer counts).
        seconds: the whole batch's wall time per phase (``setup``, ``denoise``, ``score``, ``decode``, ``total``).
    """

    results: tuple[BoNResult, ...]
    seconds: dict[str, float]

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> BoNResult:
        return self.results[index]

    def __iter__(self) -> Iterator[BoNResult]:
        return iter(self.results)

    @property
    def denoiser_evals(self) -> int:
        """Per-candidate denoiser calls of all prompts together."""
        return sum(r.denoiser_evals for r in self.results)

    @property
    def full_cost(self) -> int:
        """Denoiser calls of full-cost BoN for every prompt."""
        return sum(r.full_cost for r in self.results)

    @property
    def cost_fraction(self) -> float:
        """``denoiser_evals / full_cost`` (scorer cost not included)."""
        return self.denoiser_evals / self.full_cost


def check_scorer_matches(scorer: Scorer, pipe: Any, family: PipelineFamily) -> None:
    """Raise :class:`InputError` unless the scorer reads the pipeline's latent space.

    Checks the channel count of the scorer's preview map against the VAE's, and that a *published* preview map
    (``sd1``, ``sdxl``, ``sd3``, ``flux``) is the one of the pipeline's family; fitted maps are accepted.
    """
    channels = int(pipe.vae.config.latent_channels)
    vae = getattr(scorer, "vae", None)
    if vae is not None and int(vae.config.latent_channels) != channels:
        raise InputError(f"scorer: its VAE has {vae.config.latent_channels} latent channels, the pipeline's {channels}")
    if not ({"latents", "x0"} & set(scorer.requires)):
        return
    model = getattr(scorer, "model", None)
    if model is None:
        return
    if int(model.latent_channels) != channels:
        raise InputError(
            f"scorer: its preview map {model.config.preview_name!r} reads {model.latent_channels} latent "
            f"channels, the {type(pipe).__name__}'s latents have {channels}"
        )
    name = _SAME_MAP.get(model.config.preview_name, model.config.preview_name)
    published = {
        _SAME_MAP.get(PIPELINE_FAMILIES.get(f).preview, PIPELINE_FAMILIES.get(f).preview) for f in PIPELINE_FAMILIES
    }
    expected = _SAME_MAP.get(family.preview, family.preview)
    if name in published and name in PREVIEW_MAPS and name != expected:
        raise InputError(
            f"scorer: its preview map {model.config.preview_name!r} is for another latent space; a "
            f"{type(pipe).__name__} needs {family.preview!r} (or a map fitted to its VAE)"
        )


class EarlyBestOfN:
    """Early-stopping Best-of-N over a diffusers pipeline.

    Args:
        pipe: a StableDiffusion, SDXL, SD3 or FLUX pipeline.
        scorer: any :class:`~noisyclip_metrics.scoring.scorers.Scorer` (``noisyclip``, ``clip``, ``clip-x0``...).
        policy: a :class:`~noisyclip_metrics.bon.policies.Policy` (default: one-shot at ``k=0``).
        final_scorer: a cascade's final scorer: it picks one of the policy's ``m`` survivors at step T.
        max_batch: at most this many candidates per denoiser call (``None``: all alive candidates in one call); a
            large N then fits a small GPU, with the same images to float tolerance.

    Raises:
        InputError: for an unsupported pipeline (listing the supported ones) or a scorer whose latent space does
            not match the pipeline's.
    """

    def __init__(
        self,
        pipe: Any,
        scorer: Scorer,
        policy: Policy | None = None,
        final_scorer: Scorer | None = None,
        max_batch: int | None = None,
    ) -> None:
        self.family, self.adapter = loop_adapter(pipe)
        if max_batch is not None and (not isinstance(max_batch, int) or isinstance(max_batch, bool) or max_batch < 1):
            raise InputError(f"max_batch: expected an integer >= 1 (candidates per denoiser call), got {max_batch!r}")
        self.max_batch = max_batch
        named = {"scorer": scorer, **({"final_scorer": final_scorer} if final_scorer is not None else {})}
        for name, s in named.items():
            if not isinstance(s, Scorer):
                raise InputError(f"{name}: expected a Scorer (name, requires, score()), got {type(s).__name__}")
            check_scorer_matches(s, pipe, self.family)
        self.pipe, self.scorer, self.final_scorer = pipe, scorer, final_scorer
        self.policy = policy if policy is not None else OneShotPolicy(k=0)
        self._needs_output = bool({"x0"} & set(scorer.requires))
        self._needs_images = "images" in scorer.requires

    def _prompts(self, prompt: str | Sequence[str], n: int) -> list[str]:
        if isinstance(prompt, str):
            return [prompt] * n
        prompts = check_prompts(prompt, name="prompt")
        if len(prompts) != n:
            raise InputError(f"prompt: expected one prompt or a list of n = {n} prompts, got {len(prompts)}")
        return prompts

    def _score_inputs(
        self,
        state: LoopState,
        rows: list[int],
        prompts: list[str],
        k: int,
        output: torch.Tensor | None,
        images: torch.Tensor | None,
    ) -> ScoreInputs:
        """What a scorer reads of batch rows ``rows`` (all of them when ``rows`` covers the batch) at step ``k``."""
        a: LoopAdapter = self.adapter
        sched, final = state.pipe.scheduler, k >= state.num_steps
        whole = len(rows) == state.batch

        def take(x: torch.Tensor | None) -> torch.Tensor | None:
            return x if x is None or whole else x[torch.tensor(rows, device=x.device)]

        latents = take(a.unpack(state, state.latents))
        b = len(rows)
        t = torch.full((b,), state.timestep_at(k))
        scale = torch.ones(b) if final else model_input_scale(sched, t, b, step_index=k)
        return ScoreInputs(
            prompts=prompts,
            latents=latents,
            timesteps=t,
            x0=latents if final else None,
            scheduler=sched,
            model_output=None if output is None else take(a.unpack(state, output)),
            latent_scale=scale.to(latents.device),
            images=take(images),
            step=k,
            noise_std=0.0 if final else None,
        )

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | Sequence[str],
        n: int,
        seeds: Sequence[int] | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        height: int | None = None,
        width: int | None = None,
        negative_prompt: str | None = None,
        **settings: Any,
    ) -> BoNResult:
        """Run Best-of-``n`` for ``prompt`` (one prompt for all, or a list of ``n``).

        Args:
            prompt: the prompt, or one prompt per candidate.
            n: candidates (N >= 1).
            seeds: one seed per candidate (default ``0..n-1``).
            num_inference_steps: T requested (the pipeline's default when ``None``).
            guidance_scale: classifier-free guidance scale (the pipeline's default when ``None``).
            height: image height in pixels.
            width: image width in pixels.
            negative_prompt: negative prompt for every candidate.
            **settings: other :class:`~noisyclip_metrics.bon.loops.LoopSettings` fields (``guidance_rescale``,
                ``eta``, ``true_cfg_scale``, ``max_sequence_length``).
        """
        t_start = time.perf_counter()
        n = _check_n(n)
        cfg = _settings(num_inference_steps, guidance_scale, height, width, negative_prompt, settings)
        return self._run([self._prompts(prompt, n)], [_seeds(seeds, n)], n, cfg, t_start).results[0]

    @torch.no_grad()
    def run_batch(
        self,
        prompts: Sequence[str | Sequence[str]],
        n: int,
        seeds: Sequence[int] | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        height: int | None = None,
        width: int | None = None,
        negative_prompt: str | None = None,
        **settings: Any,
    ) -> BoNBatch:
        """Best-of-``n`` for several prompts in one batch: ``len(prompts) · n`` candidates, each prompt pruned apart.

        Every prompt's candidates are decided on by the policy exactly as in a run of their own (same decisions,
        same survivors, same images to float tolerance), but every denoiser call and scoring serves all prompts'
        candidates at once. On a GPU that is what turns the denoiser calls early stopping saves into seconds: a
        call on the survivors of one prompt costs as long as on all its candidates, a call on many prompts'
        survivors does not.

        Args:
            prompts: one entry per Best-of-N: a prompt, or a list of ``n`` prompts (one per candidate).
            n: candidates per prompt (N >= 1).
            seeds: one seed per candidate, used for every prompt (default ``0..n-1``).
            num_inference_steps: T requested (the pipeline's default when ``None``).
            guidance_scale: classifier-free guidance scale (the pipeline's default when ``None``).
            height: image height in pixels.
            width: image width in pixels.
            negative_prompt: negative prompt for every candidate.
            **settings: other :class:`~noisyclip_metrics.bon.loops.LoopSettings` fields.

        Returns:
            a :class:`BoNBatch`: one :class:`BoNResult` per prompt (each with its own denoiser and scorer counts;
            their ``seconds`` are the batch's) and the batch's wall time per phase.

        Raises:
            InputError: for an empty ``prompts`` or any input :meth:`__call__` refuses.
        """
        t_start = time.perf_counter()
        n = _check_n(n)
        if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not prompts:
            raise InputError(f"prompts: expected a non-empty list of prompts (one per Best-of-N), got {prompts!r}")
        cfg = _settings(num_inference_steps, guidance_scale, height, width, negative_prompt, settings)
        groups = [self._prompts(p, n) for p in prompts]
        return self._run(groups, [_seeds(seeds, n)] * len(groups), n, cfg, t_start)

    def _choose(self, k: int, steps: list[int], num_steps: int, values: list[float]) -> list[int]:
        """Positions kept among one prompt's alive candidates at step ``k`` (best first)."""
        keep = self.policy.keep(k, values, num_steps) if k in steps else rank(values)
        return keep[: self.policy.m] if k == num_steps else keep  # at T: the final pick of the top m

    def _decide(
        self,
        book: _Book,
        state: LoopState,
        k: int,
        scorer: Scorer,
        deciding: list[int],
        choose: Callable[[list[float]], list[int]],
        output: torch.Tensor | None,
        images: torch.Tensor | None,
        counts: list[int],
        seconds: dict[str, float],
    ) -> Generator[ScoreRequest, torch.Tensor, list[int]]:
        """Ask for the deciding prompts' rows to be scored in one call (a :class:`ScoreRequest` yielded to the
        caller) and record their decisions; returns the batch rows kept."""
        t0 = time.perf_counter()
        rows = [j for g in deciding for j in book.rows_of(g)]
        request = ScoreRequest(
            scorer, self._score_inputs(state, rows, [book.prompts[book.alive[j]] for j in rows], k, output, images)
        )
        seconds["score"] += time.perf_counter() - t0
        scores = yield request
        t0 = time.perf_counter()
        keep = book.decide(k, scorer.name, dict(zip(rows, scores.tolist(), strict=True)), choose, counts)
        seconds["score"] += request.seconds + time.perf_counter() - t0
        return keep

    def _run(
        self, groups: list[list[str]], group_seeds: list[list[int]], n: int, cfg: LoopSettings, t_start: float
    ) -> BoNBatch:
        """The loop of :meth:`_steps`, each denoiser output computed here (in ``max_batch`` chunks)."""
        steps = self._steps(self.pipe, groups, group_seeds, n, cfg, t_start)
        try:
            wants = next(steps)
            while True:
                if isinstance(wants, ScoreRequest):
                    wants = steps.send(wants.answer())
                else:
                    wants = steps.send(chunked_output(self.adapter, wants, self.max_batch))
        except StopIteration as done:
            return done.value

    def _steps(
        self,
        pipe: Any,
        groups: list[list[str]],
        group_seeds: list[list[int]],
        n: int,
        cfg: LoopSettings,
        t_start: float,
    ) -> Generator[LoopState | ScoreRequest, torch.Tensor, BoNBatch]:
        """The loop: every prompt's candidates batched, each prompt's pruned by the policy on its own scores.

        A generator: whenever it needs the guided denoiser output at the current latents it yields the loop's state
        and takes the output sent back (one denoiser call per alive candidate), so that the caller decides how the
        call is made: at once, in chunks (:meth:`_run`), or together with other runs' candidates
        (:mod:`~.stream`). Likewise, whenever it needs scores it yields a :class:`ScoreRequest` and takes the
        ``(rows,)`` scores sent back: scored alone (:meth:`ScoreRequest.answer`) or in one call with the requests
        of other runs due at the same time (:func:`answer_together`). ``pipe`` is the pipeline whose scheduler this
        run steps (a copy with its own scheduler when several runs share one pipeline). Returns the
        :class:`BoNBatch`.
        """
        book = _Book([p for g in groups for p in g], [s for g in group_seeds for s in g], n)
        m, seconds = self.policy.m, dict.fromkeys(("setup", "denoise", "score", "decode"), 0.0)
        state = self.adapter.prepare(pipe, book.prompts, book.seeds, cfg)
        T = state.num_steps
        self.policy.validate(n, T)
        steps = sorted(set(self.policy.decision_steps(T)))
        if self._needs_images and any(k < T for k in steps):
            raise InputError(f"policy: scorer {self.scorer.name!r} scores final images only; decide at k = T = {T}")
        seconds["setup"] = time.perf_counter() - t_start
        images: torch.Tensor | None = None

        @contextmanager
        def clock(phase: str) -> Iterator[None]:
            t0 = time.perf_counter()
            yield
            seconds[phase] += time.perf_counter() - t0

        for k in range(T + 1):
            output = None
            # beyond-m survivors at T: the cascade's final scorer picks among them, else the scorer keeps the top m
            deciding = book.over(m) if k in steps or (k == T and self.final_scorer is None) else []
            if deciding:
                if self._needs_output and k < T:
                    with clock("denoise"):
                        book.count_call()
                        output = yield state
                if self._needs_images:
                    with clock("decode"):
                        images = self.adapter.decode(state)
                keep = yield from self._decide(
                    book,
                    state,
                    k,
                    self.scorer,
                    deciding,
                    partial(self._choose, k, steps, T),
                    output,
                    images,
                    book.scorings,
                    seconds,
                )
                output, images = book.select(state, keep, output, images)
            if k == T:
                break
            if output is None:
                with clock("denoise"):
                    book.count_call()
                    output = yield state
            with clock("denoise"):
                advance(state, output)
        if images is None:
            with clock("decode"):
                images = self.adapter.decode(state)
        cascading = book.over(1) if self.final_scorer is not None else []
        if cascading:
            assert self.final_scorer is not None
            keep = yield from self._decide(
                book,
                state,
                T,
                self.final_scorer,
                cascading,
                lambda values: rank(values)[:1],
                None,
                images,
                book.finals,
                seconds,
            )
            (images,) = book.select(state, keep, images)
        seconds["total"] = time.perf_counter() - t_start
        seconds = {k: round(v, 6) for k, v in seconds.items()}
        settings = {
            "pipeline": type(self.pipe).__name__,
            "scheduler": type(self.pipe.scheduler).__name__,
            "num_steps": T,
            "height": state.height,
            "width": state.width,
            "guidance_scale": state.options.get("guidance", getattr(self.pipe, "_guidance_scale", None)),
            **({"batch_prompts": len(groups)} if len(groups) > 1 else {}),
        }
        images = images.float().cpu()
        results = []
        for g in range(len(groups)):
            own, alive = book.rows_of(g), book.alive
            results.append(
                BoNResult(
                    images=images[own],
                    seeds=tuple(book.seeds[alive[j]] for j in own),
                    prompts=tuple(book.prompts[alive[j]] for j in own),
                    scores=tuple(book.last_scores[alive[j]] for j in own),
                    n=n,
                    num_steps=T,
                    denoiser_evals=book.denoiser[g],
                    scorer_evals=book.scorings[g],
                    seconds=dict(seconds),
                    decisions=tuple(book.decisions[g]),
                    policy=self.policy.name,
                    scorer=self.scorer.name,
                    final_scorer=self.final_scorer and self.final_scorer.name,
                    final_scorer_evals=book.finals[g],
                    settings=dict(settings),
                )
            )
        return BoNBatch(results=tuple(results), seconds=seconds)


@dataclass
class ScoreRequest:
    """Scores a run's loop asks for: ``scorer`` on ``inputs``; ``seconds`` is filled by whoever answers it.

    Args:
        scorer: the scorer to call.
        inputs: what it reads, for the rows being decided on (with the run's scheduler, step and denoiser output).
        seconds: wall time the answer took (this request's share, when it was answered with others).
    """

    scorer: Scorer
    inputs: ScoreInputs
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        """Rows to score."""
        return len(self.inputs.prompts)

    def answer(self) -> torch.Tensor:
        """Score the request alone: ``(rows,)`` float32 scores on the CPU."""
        t0 = time.perf_counter()
        with torch.no_grad():
            scores = self.scorer.score(self.inputs).detach().float().cpu()
        self.seconds = time.perf_counter() - t0
        return scores


#: Fields of :class:`ScoreInputs` with one row per sample, concatenated when requests are answered together.
_ROW_FIELDS = ("latents", "timesteps", "x0", "latent_scale", "images", "noise_std")


def _standalone(request: ScoreRequest) -> dict[str, Any]:
    """A request's inputs without its run's scheduler: x̂0 and the noise levels computed from it where it has them,
    every per-row field as a ``(rows, ...)`` tensor (or None)."""
    x = request.inputs
    b = request.rows
    x0 = x.x0
    if x0 is None and "x0" in request.scorer.requires and x.model_output is not None:
        x0 = x.require_x0()
    level = x.noise_std
    if level is None and x.timesteps is not None and x.scheduler is not None and defines_noise_std(x.scheduler):
        level = x.require_noise_std()
    if level is not None:
        level = torch.as_tensor(level, dtype=torch.float32).flatten().expand(b)
    fields = {"latents": x.latents, "timesteps": x.timesteps, "x0": x0, "latent_scale": x.latent_scale}
    fields.update({"images": x.images, "noise_std": level})
    return {k: (v.expand(b) if v is not None and v.ndim == 1 and v.numel() == 1 else v) for k, v in fields.items()}


def answer_together(requests: Sequence[ScoreRequest]) -> tuple[list[torch.Tensor], int]:
    """Answer the requests of several runs with one scorer call per scorer: the scores of each request, and the
    number of scorer calls made.

    Requests to the same scorer whose inputs hold the same fields are concatenated row-wise, each first made
    independent of its run's scheduler (x̂0 and noise levels computed from it); the scores equal those of answering
    each alone up to the float rounding of another batch composition. Requests that cannot be merged are answered
    alone. Every request's ``seconds`` gets its share of its call's time, by rows.
    """
    answers: list[torch.Tensor | None] = [None] * len(requests)
    calls = 0
    groups: dict[int, list[int]] = {}
    for i, r in enumerate(requests):
        groups.setdefault(id(r.scorer), []).append(i)
    for members in groups.values():
        if len(members) == 1:
            answers[members[0]] = requests[members[0]].answer()
            calls += 1
            continue
        t0 = time.perf_counter()
        parts = [_standalone(requests[i]) for i in members]
        present = {k for k in _ROW_FIELDS if parts[0][k] is not None}
        if any({k for k in _ROW_FIELDS if p[k] is not None} != present for p in parts):
            for i in members:  # inputs of different kinds: no common batch
                answers[i] = requests[i].answer()
                calls += 1
            continue
        merged = ScoreInputs(
            prompts=[p for i in members for p in requests[i].inputs.prompts],
            **{k: torch.cat([p[k].to(parts[0][k].device) for p in parts]) for k in present},
        )
        with torch.no_grad():
            scores = requests[members[0]].scorer.score(merged).detach().float().cpu()
        calls += 1
        elapsed, total = time.perf_counter() - t0, sum(requests[i].rows for i in members)
        for i, piece in zip(members, scores.split([requests[i].rows for i in members]), strict=True):
            answers[i] = piece
            requests[i].seconds = elapsed * requests[i].rows / total
    assert all(a is not None for a in answers)
    return answers, calls  # type: ignore[return-value]


class _Book:
    """Bookkeeping of one run: the candidate in each batch row, and every prompt's decisions and counts.

    Candidates are numbered prompt by prompt (``n`` each); ``alive[j]`` is the candidate in batch row ``j``.
    """

    def __init__(self, prompts: list[str], seeds: list[int], n: int) -> None:
        self.prompts, self.seeds, self.n = prompts, seeds, n
        groups = len(prompts) // n
        self.alive = list(range(len(prompts)))
        self.decisions: list[list[Decision]] = [[] for _ in range(groups)]
        self.last_scores = [float("nan")] * len(prompts)
        self.denoiser, self.scorings, self.finals = [0] * groups, [0] * groups, [0] * groups

    def rows_of(self, g: int) -> list[int]:
        """Batch rows of prompt ``g``'s alive candidates."""
        return [j for j, i in enumerate(self.alive) if i // self.n == g]

    def over(self, m: int) -> list[int]:
        """Prompts with more than ``m`` candidates alive."""
        return [g for g in range(len(self.decisions)) if len(self.rows_of(g)) > m]

    def count_call(self) -> None:
        """One denoiser call for every alive candidate."""
        for i in self.alive:
            self.denoiser[i // self.n] += 1

    def decide(
        self,
        k: int,
        scorer: str,
        scores: dict[int, float],
        choose: Callable[[list[float]], list[int]],
        counts: list[int],
    ) -> list[int]:
        """Record the decisions of the prompts whose rows were scored; the batch rows kept (each prompt's best
        first, the other prompts' rows as they are)."""
        keep: list[int] = []
        for g in range(len(self.decisions)):
            own = self.rows_of(g)
            if not own or own[0] not in scores:
                keep += own
                continue
            counts[g] += len(own)
            values = [scores[j] for j in own]
            kept = [own[p] for p in choose(values)]
            self.decisions[g].append(
                Decision(
                    k,
                    {self.seeds[self.alive[j]]: v for j, v in zip(own, values, strict=True)},
                    tuple(self.seeds[self.alive[j]] for j in kept),
                    scorer,
                )
            )
            for j, v in zip(own, values, strict=True):
                self.last_scores[self.alive[j]] = v
            keep += kept
        return keep

    def select(self, state: LoopState, keep: list[int], *tensors: torch.Tensor | None) -> list[torch.Tensor | None]:
        """Keep batch rows ``keep`` in the loop, the bookkeeping and ``tensors``."""
        if keep != list(range(state.batch)):
            prune(state, keep)
        self.alive = [self.alive[j] for j in keep]
        return [None if x is None else x[torch.tensor(keep, device=x.device)] for x in tensors]


def _check_n(n: Any) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InputError(f"n: expected an integer >= 1 (candidates), got {n!r}")
    return n


def _seeds(seeds: Sequence[int] | None, n: int) -> list[int]:
    values = list(range(n)) if seeds is None else [int(s) for s in seeds]
    if len(values) != n or len(set(values)) != n:
        raise InputError(f"seeds: expected n = {n} distinct seeds, got {list(values)}")
    return values


def _settings(
    num_inference_steps: int | None,
    guidance_scale: float | None,
    height: int | None,
    width: int | None,
    negative_prompt: str | None,
    settings: dict[str, Any],
) -> LoopSettings:
    try:
        cfg = LoopSettings(
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            height=height,
            width=width,
            negative_prompt=negative_prompt,
            **settings,
        )
    except TypeError as err:
        raise InputError(f"settings: {err}") from None
    if cfg.num_inference_steps is not None and cfg.num_inference_steps < 1:
        raise InputError(f"num_inference_steps: expected >= 1, got {cfg.num_inference_steps}")
    return cfg
