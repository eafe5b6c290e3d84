"""The evaluation runner: generate trajectories, score every step with several scorers, judge the final images, and
write everything to a results store (:mod:`noisyclip_metrics.evaluation.results`).

Work is a list of (prompt, seed) items processed in chunks of ``batch_size``: each chunk is generated in one
pipeline call (its trajectories are held in memory only while it is scored), scored at every step k = 0..T by every
scorer, judged, and written as one atomic Parquet file. A restarted run skips items already written. Under
``torchrun`` rank r processes chunks r, r + W, r + 2W...; every rank writes its own chunk files, so the merged store
equals a single-process one.

Every setting is checked before anything is written (steps and sizes >= 1, finite guidance, image sizes the VAE
accepts, prompts the judge can read), so a bad command leaves no store behind. The process that writes a run (rank 0
under ``torchrun``) holds the run's lock (:meth:`~noisyclip_metrics.evaluation.results.ResultsStore.lock_run`): a second
``noisyclip evaluate`` of the same run is refused at once, naming the holder. The run's record is written once; each
invocation that evaluates candidates adds a timing segment to it, updated after every chunk.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.evaluation.results import ROW_SCHEMA, ResultsStore, RunInfo, note, run_id_for

__all__ = ["EvalConfig", "EvalResult", "evaluate", "load_prompts"]

DEFAULT_SCORERS = ("noisyclip", "clip", "clip-x0")
#: Settings that are text: given, each must be a non-empty string (an empty one never silently means the default).
_TEXT_SETTINGS = ("model", "out", "benchmark", "benchmark_path", "noisyclip", "noisyclip_x0", "clip", "judge")
_TEXT_SETTINGS = (*_TEXT_SETTINGS, "name", "save_images", "device", "dtype")


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how.

    Args:
        model: diffusion model: a plugin's id (the world's ``world:sd-base``) or a local diffusers pipeline folder.
        out: results folder (created, or resumed).
        benchmark: a benchmark adapter name (with ``benchmark_path`` when it reads files: not ``world``) or a prompt
            file (one per line); default: the model plugin's benchmark (``world`` for world models).
        benchmark_path: where the benchmark's files are.
        prompts: use the first ``prompts`` prompts (all by default).
        seeds: seeds per prompt (candidates).
        num_inference_steps: T (the model plugin's default, e.g. the world's sampler; else 20).
        guidance_scale: classifier-free guidance (the model plugin's default, else the pipeline's).
        height: image height (pipeline default if omitted).
        width: image width.
        scorers: scorer names to record at every step.
        noisyclip: the fine-tuned NoisyCLIP of the ``noisyclip`` scorer (model id or folder; default: the model
            plugin's, ``world:noisyclip`` for world models).
        noisyclip_x0: the x̂0-reading NoisyCLIP of the ``noisyclip-x0`` scorer (default: the plugin's,
            ``world:noisyclip-x0``).
        clip: the frozen CLIP of the other scorers and the ``clip-final`` judge (default: the plugin's, ``world:clip``).
        judge: a registered judge (``clip-final``, the world's ``world-oracle``) or a judgments file (candidate ids =
            seeds); default: the model plugin's.
        batch_size: candidates per pipeline call (and per chunk file).
        name: display name of the model (default: the model id).
        save_images: folder to save final images as ``<prompt_id>/<seed>.png`` (for external judges).
        save_previews: fractions of the trajectory at which ``save_images`` also saves what each candidate looked
            like: the VAE decode of its x̂0 after ``k = round(fraction * T)`` steps, as
            ``<prompt_id>/<seed>.step<k>.png`` (``noisyclip leaderboard build --images`` shows them beside the final
            image). Fractions in ``(0, 1)``; one VAE decode per candidate and fraction.
        progress: show a progress bar.
        score_every: score every this many steps (and always the last): ``1`` scores all T + 1 steps; ``2`` halves
            the scoring cost, and the curves and BoN rows then have the even steps only (the threshold policy's
            fitting needs every step). Other than 1, it joins the run's identity.
        device: torch device of the pipeline, scorers and CLIP judge (``cpu``, ``cuda``...; default: where they load).
        dtype: pipeline dtype (``float32``, ``float16``, ``bfloat16``; scorers stay float32). Off the defaults, the
            device type and dtype join the run's identity: scores made elsewhere never mix into a run on resume.
        require_disjoint: refuse (:class:`~noisyclip_metrics.errors.LeakageError`) instead of warning when a
            scorer's checkpoint was trained on this run's seeds or prompts, or a fine-tuned one records no training
            data (:func:`~noisyclip_metrics.provenance.check_disjoint`); for results that will be published.
        allow_partial: with a judgments file as the judge, evaluate even when it leaves some candidates unjudged
            (a warning names how many; their judgment rows are NaN, which the curves and BoN leave out); by
            default such a file is refused before anything is written.
    """

    model: str
    out: str
    benchmark: str | None = None
    benchmark_path: str | None = None
    prompts: int | None = None
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    height: int | None = None
    width: int | None = None
    scorers: tuple[str, ...] = DEFAULT_SCORERS
    noisyclip: str | None = None
    noisyclip_x0: str | None = None
    clip: str | None = None
    judge: str | None = None
    batch_size: int = 32
    name: str | None = None
    save_images: str | None = None
    save_previews: tuple[float, ...] = ()
    progress: bool = True
    score_every: int = 1
    device: str | None = None
    dtype: str | None = None
    require_disjoint: bool = False
    allow_partial: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "scorers", tuple(self.scorers))
        if not self.seeds:
            raise InputError("seeds: expected at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise InputError(f"seeds: expected distinct seeds, got {list(self.seeds)}")
        _check_int("batch_size", self.batch_size, "candidates per pipeline call")
        _check_int("score_every", self.score_every, "score every n-th step")
        _check_int("prompts", self.prompts, "the first n prompts", optional=True)
        _check_int("num_inference_steps", self.num_inference_steps, "denoising steps T", optional=True)
        _check_int("height", self.height, "image height in pixels", optional=True)
        _check_int("width", self.width, "image width in pixels", optional=True)
        g = self.guidance_scale
        if g is not None and (isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g) or g < 0):
            raise InputError(f"guidance_scale: expected a finite number >= 0 (classifier-free guidance), got {g!r}")
        object.__setattr__(self, "save_previews", tuple(self.save_previews))
        for f in self.save_previews:
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1:
                raise InputError(f"save_previews: expected fractions of the trajectory in (0, 1), got {f!r}")
        if self.save_previews and self.save_images is None:
            raise InputError("save_previews: previews are saved beside the final images; give save_images too")
        for name in _TEXT_SETTINGS:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise InputError(f"{name}: expected a non-empty string, got {value!r}")


def _check_int(name: str, value: Any, what: str, optional: bool = False) -> None:
    """A setting that must be a whole number >= 1 (``None`` allowed when ``optional``: the default applies)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name}: expected an int >= 1 ({what}), got {value!r}")


@dataclass
class EvalResult:
    """Summary of a finished (part of a) run."""

    run_id: str
    store: Path
    items: int
    seconds: dict[str, float]


def load_prompts(benchmark: str, path: str | None = None, n: int | None = None) -> Any:
    """A :class:`~noisyclip_metrics.evaluation.benchmarks.PromptSet` from a benchmark (an adapter name, with
    ``path`` when it reads files) or a prompt file; with ``n``, ``n`` prompts: the loader's own selection where it
    takes an ``n`` option (the world's stratified subsets), else the first ``n``."""
    from noisyclip_metrics.evaluation.benchmarks import (
        Prompt,
        PromptSet,
        benchmark_loader,
        load_benchmark,
        loader_options,
    )

    if Path(benchmark).suffix == ".txt" or (Path(benchmark).is_file() and path is None):
        from noisyclip_metrics.io.files import read_prompt_file

        texts = read_prompt_file(benchmark)
        prompts = PromptSet(
            Path(benchmark).stem,
            tuple(Prompt(f"p{i:05d}", t, source=Path(benchmark).stem) for i, t in enumerate(texts)),
        )
    else:
        if path is None and getattr(benchmark_loader(benchmark), "needs_files", True):
            raise InputError(f"benchmark_path: benchmark {benchmark!r} needs the folder or file that holds it")
        if n is not None and "n" in loader_options(benchmark):
            selected = load_benchmark(benchmark, path, n=n)
            if len(selected) < n:
                raise InputError(f"prompts: asked for {n} prompts, the benchmark has {len(selected)}")
            return selected
        prompts = load_benchmark(benchmark, path)
    if n is not None:
        if n > len(prompts):
            raise InputError(f"prompts: asked for {n} prompts, the benchmark has {len(prompts)}")
        prompts = PromptSet(prompts.name, tuple(prompts)[:n])
    return prompts


def _defaults(cfg: EvalConfig) -> dict[str, Any]:
    """Every setting the user left out, from the defaults the model's plugin declares (none for a folder)."""
    from noisyclip_metrics.plugins import run_defaults

    plugin = run_defaults(cfg.model)  # unknown plugin ids fail here, with a did-you-mean

    def given(value: Any, default: Any) -> Any:  # only an omitted setting takes the default, never 0 or ""
        return default if value is None else value

    return {
        "num_inference_steps": given(cfg.num_inference_steps, given(plugin.num_inference_steps, 20)),
        "guidance_scale": given(cfg.guidance_scale, plugin.guidance_scale),
        "benchmark": given(cfg.benchmark, plugin.benchmark),
        "noisyclip": given(cfg.noisyclip, plugin.models.get("noisyclip")),
        "noisyclip-x0": given(cfg.noisyclip_x0, plugin.models.get("noisyclip-x0")),
        "clip": given(cfg.clip, plugin.models.get("clip")),
        "judge": given(cfg.judge, plugin.judge),
    }


def _dist() -> tuple[int, int]:
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and dist.is_available():
        if not dist.is_initialized():
            dist.init_process_group("gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier(world_size: int) -> None:
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()


def evaluate(cfg: EvalConfig) -> EvalResult:
    """Run (or resume) an evaluation; see the module docstring."""
    from tqdm.auto import tqdm

    from noisyclip_metrics import __version__
    from noisyclip_metrics.diffusion.pipelines import check_pipeline_name, load_pipeline
    from noisyclip_metrics.evaluation.judges.live import build_judge
    from noisyclip_metrics.plugins import source_paths
    from noisyclip_metrics.provenance import check_disjoint, git_revision, weights_hash
    from noisyclip_metrics.scoring.factory import resolve_model
    from noisyclip_metrics.scoring.scorers import build_scorer, scorer_spec

    rank, world_size = _dist()
    d = _defaults(cfg)
    if d["judge"] is None or d["benchmark"] is None:
        check_pipeline_name(cfg.model)  # a mistyped --model explains a missing default better than the default does
    if d["judge"] is None:
        raise InputError(
            f"judge: {cfg.model} comes with no default judge; pass --judge (clip-final, or a judgments file)"
        )
    if d["benchmark"] is None:
        raise InputError(f"benchmark: {cfg.model} comes with no default benchmark; pass --benchmark (a name or a file)")
    prompts = load_prompts(d["benchmark"], cfg.benchmark_path, cfg.prompts)
    pipe = load_pipeline(cfg.model, cfg.device, cfg.dtype)
    device = pipe.device if cfg.device else None
    specs = {s: scorer_spec(s) for s in cfg.scorers}  # unknown names fail here, with a did-you-mean
    refs = {s: d.get(s) if spec.fine_tuned else d["clip"] for s, spec in specs.items()}  # scorer -> its model id
    missing = [s for s, ref in refs.items() if ref is None]
    if missing:
        raise InputError(f"scorers: {missing} need a model; pass --noisyclip / --noisyclip-x0 / --clip")
    models = {ref: resolve_model(ref, device) for ref in dict.fromkeys(refs.values())}
    fine_tuned = {refs[s] for s in cfg.scorers if specs[s].fine_tuned}
    check_disjoint(models, cfg.seeds, prompts.texts, require=cfg.require_disjoint, fine_tuned=fine_tuned)
    scorers = [build_scorer(s, vae=pipe.vae, **{specs[s].model: models[refs[s]]}) for s in cfg.scorers]
    channels = int(pipe.vae.config.latent_channels)
    for ref, model in models.items():
        if model.latent_channels != channels:
            raise InputError(
                f"{ref}: its preview map reads {model.latent_channels} latent channels, the pipeline's "
                f"latents have {channels}"
            )
    judge = build_judge(d["judge"], clip=d["clip"], missing="nan" if cfg.allow_partial else "error")
    if device is not None and isinstance(getattr(judge, "model", None), torch.nn.Module):
        judge.model = resolve_model(judge.model, device)
    _check_precomputed(judge, prompts, cfg.seeds, cfg.allow_partial, source=f"judge {d['judge']}")
    _check_image_size(pipe, cfg.height, cfg.width)
    _check_judge_reads(judge, prompts)
    sampler = {
        "num_inference_steps": int(d["num_inference_steps"]),
        "guidance_scale": d["guidance_scale"],
        "height": cfg.height,
        "width": cfg.width,
        "scheduler": type(pipe.scheduler).__name__,
    }
    placement = {"device": pipe.device.type, "dtype": str(pipe.dtype).removeprefix("torch.")}
    if placement != {"device": "cpu", "dtype": "float32"}:  # the defaults stay out: earlier run ids still match
        sampler.update(placement)
    if cfg.score_every != 1:
        sampler["score_every"] = cfg.score_every
    name = cfg.name or cfg.model
    scorer_info = {s: {"model": ref, "weights": weights_hash(*source_paths(ref))} for s, ref in refs.items()}
    judge_weights = weights_hash(*source_paths(d["clip"])) if d["judge"] == "clip-final" else ""
    judge_info = {"name": getattr(judge, "name", str(d["judge"])), "source": str(d["judge"]), "weights": judge_weights}
    model_info = {
        "id": cfg.model,
        "weights": weights_hash(*source_paths(cfg.model)),
        "pipeline": type(pipe).__name__,
    }
    identity = {
        "model": model_info,
        "benchmark": prompts.name,
        "prompts": prompts.ids,
        "seeds": cfg.seeds,
        "sampler": sampler,
        "scorers": scorer_info,
        "judge": judge_info,
        "name": name,
    }
    run_id = run_id_for(identity)
    info = RunInfo(
        run_id=run_id,
        model=name,
        benchmark=prompts.name,
        sampler=sampler,
        seeds=cfg.seeds,
        scorers={
            s: {**scorer_info[s], "requires": sorted(sc.requires)} for s, sc in zip(cfg.scorers, scorers, strict=True)
        },
        judge=judge_info,
        model_info=model_info,
        package_version=__version__,
        git_revision=git_revision(),
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        num_prompts=len(prompts),
    )
    lock = None
    try:
        failure = None
        if rank == 0:  # one process creates the store and holds the run's lock; the others open it once it exists
            try:
                store = ResultsStore.create(cfg.out)
                lock = store.lock_run(run_id)  # a second writer of this run is refused here, at once
                _start_run(store, info, prompts)
            except Exception as err:
                failure = err
        _share_failure(world_size, failure)
        store = ResultsStore.open(cfg.out) if rank else store
        done = store.done_items(run_id)
        _barrier(world_size)  # every rank must split the same remaining items before any rank writes new rows
        items = [(p, s) for p in prompts for s in cfg.seeds if (p.id, s) not in done]
        chunks = [items[i : i + cfg.batch_size] for i in range(0, len(items), cfg.batch_size)]
        mine = chunks[rank::world_size]
        seconds = {"denoise": 0.0, "score": 0.0, "judge": 0.0, "write": 0.0}
        per_scorer = {s.name: 0.0 for s in scorers}
        segment = _Segment(store, run_id, world_size, sampler["num_inference_steps"]) if rank == 0 else None
        quiet = not cfg.progress or rank != 0
        bar = tqdm(total=sum(len(c) for c in mine), desc=f"evaluate {name}", unit="cand", disable=quiet)
        evaluated = 0
        ctx = _RunContext(cfg, pipe, scorers, judge, store, run_id, name, prompts.name, sampler, seconds, per_scorer)
        for chunk in mine:
            _run_chunk(ctx, chunk)
            bar.update(len(chunk))
            evaluated += len(chunk)
            if segment is not None:  # the record keeps what this invocation did, even if it is killed later
                segment.record(seconds, per_scorer, evaluated, finished=False)
        bar.close()
        totals = _gather_timing(world_size, seconds, per_scorer, evaluated)
        if segment is not None and totals[2]:
            segment.record(*totals, finished=True)
    finally:
        if lock is not None:
            lock.release()
    return EvalResult(run_id, store.root, evaluated, seconds)


def _start_run(store: ResultsStore, info: RunInfo, prompts: Any) -> None:
    """The run's writer (holding its lock): record the run once (a rerun keeps the first record), write its prompt
    table if missing, and discard what killed writers left (temporary files, unreadable chunk files)."""
    store.write_run(info)
    if not (store.root / "prompts" / f"{info.run_id}.parquet").is_file():
        store.write_prompts(info.run_id, prompts.ids, prompts.texts, [p.skills for p in prompts])
    for path in store.discard_unreadable_chunks(info.run_id):
        note(f"{path}: unreadable chunk file (truncated by a crash?) discarded; its candidates are evaluated again")


class _Segment:
    """This invocation's timing segment of the run record, written by the run's writer as chunks complete."""

    def __init__(self, store: ResultsStore, run_id: str, world_size: int, steps: int) -> None:
        self.store, self.run_id, self.index = store, run_id, None
        self.head = {"started": _now(), "host": socket.gethostname(), "pid": os.getpid(), "world_size": world_size}
        self.steps = int(steps)

    def record(self, seconds: dict[str, float], per_scorer: dict[str, float], candidates: int, finished: bool) -> None:
        segment = {
            **self.head,
            "updated": _now(),
            "finished": finished,
            **{f"{k}_seconds": round(v, 3) for k, v in seconds.items()},
            **{f"score_seconds/{k}": round(v, 3) for k, v in per_scorer.items()},
            "candidates": int(candidates),
            "steps": self.steps,
        }
        self.index = self.store.record_segment(self.run_id, segment, self.index)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _share_failure(world_size: int, failure: BaseException | None) -> None:
    """Rank 0's failure to open the store or lock the run stops every rank, with its message (a barrier too)."""
    message = None
    if world_size > 1:
        import torch.distributed as dist

        box = [None if failure is None else " ".join(str(failure).split())]
        dist.broadcast_object_list(box, src=0)
        message = box[0]
    if failure is not None:
        raise failure
    if message is not None:
        raise InputError(message)


def _gather_timing(
    world_size: int, seconds: dict[str, float], per_scorer: dict[str, float], candidates: int
) -> tuple[dict[str, float], dict[str, float], int]:
    """Seconds and candidates summed over the ranks (every rank calls this; also a barrier)."""
    if world_size == 1:
        return seconds, per_scorer, candidates
    import torch.distributed as dist

    parts: list[Any] = [None] * world_size
    dist.all_gather_object(parts, (seconds, per_scorer, candidates))
    total_s = {k: sum(p[0].get(k, 0.0) for p in parts) for k in seconds}
    total_sc = {k: sum(p[1].get(k, 0.0) for p in parts) for k in per_scorer}
    return total_s, total_sc, sum(int(p[2]) for p in parts)


def _size_multiple(pipe: Any) -> int:
    """What image height and width must be a multiple of for ``pipe``: its VAE's scale factor, times the patch size
    of a transformer's latent patches (FLUX packs 2 x 2); UNet pipelines (SD 1.x/2.x, SDXL) also require 8."""
    vae = int(getattr(pipe, "vae_scale_factor", 0) or 2 ** (len(pipe.vae.config.block_out_channels) - 1))
    transformer = getattr(pipe, "transformer", None)
    if transformer is None:
        return math.lcm(vae, 8)
    patch = 2 if "Flux" in type(pipe).__name__ else int(getattr(transformer.config, "patch_size", 1) or 1)
    return vae * patch


def _check_image_size(pipe: Any, height: int | None, width: int | None) -> None:
    """Given image sizes must be ones the pipeline's VAE accepts; checked before anything is written."""
    multiple = _size_multiple(pipe)
    for name, value in (("height", height), ("width", width)):
        if value is not None and value % multiple:
            kind = type(pipe).__name__
            raise InputError(f"{name}: expected a multiple of {multiple} (sizes the {kind}'s VAE accepts), got {value}")


def _check_judge_reads(judge: Any, prompts: Any) -> None:
    """Every prompt must be one the judge can read (the world oracle reads ShapesWorld grammar prompts only): a judge
    that reads only some prompts says so in ``check_prompts``, called before anything is written, not after the first
    chunk has been generated."""
    check = getattr(judge, "check_prompts", None)
    if check is not None:
        check(prompts)


def _check_precomputed(
    judge: Any, prompts: Any, seeds: Sequence[int], allow_partial: bool = False, source: str = "judge"
) -> None:
    """A judgments file must score every (prompt id, seed) of the run: fail before any generation if not (with
    ``allow_partial``, warn instead), by :func:`~noisyclip_metrics.evaluation.judges.check_coverage`."""
    from noisyclip_metrics.evaluation.judges import Judgment, PrecomputedJudge, check_coverage

    if not isinstance(judge, PrecomputedJudge):
        return
    judged = [Judgment(p, c, None, judge.name, score) for (p, c), score in judge.scores().items()]
    check_coverage(judged, [(p.id, str(s)) for p in prompts for s in seeds], source=source, allow_partial=allow_partial)


@dataclass(frozen=True)
class _RunContext:
    """What every chunk of one run shares: the settings, the pipeline, scorers and judge, where rows go, and the
    timers each chunk adds its seconds to."""

    cfg: EvalConfig
    pipe: Any
    scorers: Sequence[Any]
    judge: Any
    store: ResultsStore
    run_id: str
    model: str
    benchmark: str
    sampler: dict[str, Any]
    seconds: dict[str, float]
    per_scorer: dict[str, float]


def _run_chunk(ctx: _RunContext, chunk: Sequence[tuple[Any, int]]) -> None:
    """Denoise, score every step, judge and write one chunk of (prompt, seed) candidates (skipped when written)."""
    cfg, pipe, scorers, judge, store = ctx.cfg, ctx.pipe, ctx.scorers, ctx.judge, ctx.store
    run_id, model, benchmark, sampler = ctx.run_id, ctx.model, ctx.benchmark, ctx.sampler
    seconds, per_scorer = ctx.seconds, ctx.per_scorer
    from noisyclip_metrics.diffusion.trajectory import capture_trajectories
    from noisyclip_metrics.evaluation.judges.live import judge_detailed
    from noisyclip_metrics.scoring.scorers import ScoreInputs, decode_latents, scorer_spec

    key = "|".join(f"{p.id}#{s}" for p, s in chunk)
    chunk_name = "chunk-" + hashlib.sha256(key.encode()).hexdigest()[:16]
    if (store.root / "rows" / run_id / f"{chunk_name}.parquet").exists():
        return
    texts = [p.text for p, _ in chunk]
    seeds = [s for _, s in chunk]
    t0 = time.perf_counter()
    batch = capture_trajectories(
        pipe,
        texts,
        seeds,
        num_inference_steps=sampler["num_inference_steps"],
        guidance_scale=sampler["guidance_scale"],
        height=cfg.height,
        width=cfg.width,
        record_x0=any("x0" in s.requires for s in scorers) or bool(cfg.save_previews),
    )
    t1 = time.perf_counter()
    seconds["denoise"] += t1 - t0
    cols: dict[str, list[Any]] = {k: [] for k in ROW_SCHEMA.names}  # kind, run_id, model, ..., score, aligned
    steps = batch.num_steps

    def add(
        kind: str,
        pid: str,
        seed: int,
        step: int | None,
        t: float | None,
        scorer: str | None,
        judge_name: str | None,
        score: float,
        aligned: bool | None,
    ) -> None:
        for k, v in zip(
            cols,
            (kind, run_id, model, benchmark, pid, seed, step, steps, t, scorer, judge_name, score, aligned),
            strict=True,
        ):
            cols[k].append(v)

    every = int(sampler.get("score_every", 1))
    final_only = {s.name for s in scorers if scorer_spec(s.name).final_only}  # they score the final image once
    with torch.no_grad():
        for k in range(steps + 1):
            if k % every and k != steps:
                continue
            inputs = ScoreInputs(
                prompts=texts,
                latents=batch.latents[:, k],
                x0=batch.x0[:, k],
                images=batch.images,
                timesteps=batch.timesteps[k].expand(len(texts)),
                latent_scale=batch.latent_scale[k].expand(len(texts)),
                step=k,
                noise_std=None if batch.noise_std is None else float(batch.noise_std[k]),
            )
            for scorer in scorers:
                if scorer.name in final_only and k != steps:
                    continue
                ts = time.perf_counter()
                values = scorer.score(inputs).tolist()
                per_scorer[scorer.name] += time.perf_counter() - ts
                for (p, s), v in zip(chunk, values, strict=True):
                    add("score", p.id, s, k, float(batch.timesteps[k]), scorer.name, None, float(v), None)
    t2 = time.perf_counter()
    seconds["score"] += t2 - t1
    verdicts = judge_detailed(judge, texts, batch.images, [p.id for p, _ in chunk], seeds)
    for (p, s), (score, aligned) in zip(chunk, verdicts, strict=True):
        add("judgment", p.id, s, None, None, None, getattr(judge, "name", "judge"), float(score), aligned)
    t3 = time.perf_counter()
    seconds["judge"] += t3 - t2
    if cfg.save_images:
        _save_images(Path(cfg.save_images), chunk, batch.images)
        for k in preview_steps(cfg.save_previews, steps):
            with torch.no_grad():
                images = decode_latents(pipe.vae, batch.x0[:, k])
            _save_images(Path(cfg.save_images), chunk, images, f".step{k}")
    store.append(run_id, cols, chunk_name)
    seconds["write"] += time.perf_counter() - t3


def preview_steps(fractions: Sequence[float], num_steps: int) -> list[int]:
    """The steps ``k = round(fraction * T)`` of ``save_previews``, each in ``1..T-1``, distinct and sorted.

    >>> preview_steps((0.25, 0.5, 0.02), 20)
    [1, 5, 10]
    """
    return sorted({min(num_steps - 1, max(1, round(f * num_steps))) for f in fractions}) if num_steps > 1 else []


def _save_images(folder: Path, chunk: Sequence[tuple[Any, int]], images: torch.Tensor, suffix: str = "") -> None:
    from PIL import Image

    from noisyclip_metrics.io.safepath import safe_join

    # each inside folder, or none
    paths = [safe_join(folder, p.id, f"{s}{suffix}.png", what="prompt id") for p, s in chunk]
    for path, img in zip(paths, images, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        arr = (img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(arr).save(path)
