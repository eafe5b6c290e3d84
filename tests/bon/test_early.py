"""Early-stopping Best-of-N, live: exactness against the plain pipelines, accounts, policies, monitor, bad input."""

from __future__ import annotations

import pytest
import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from noisyclip_metrics.bon import EarlyBestOfN, HalvingPolicy, NoisyCLIPMonitor, OneShotPolicy, schedule_cost
from noisyclip_metrics.diffusion.trajectory import capture_trajectories
from noisyclip_metrics.errors import InputError, UnknownNameError
from noisyclip_metrics.scoring.model import TINY_TEST_CONFIG, NoisyCLIPModel
from noisyclip_metrics.scoring.scorers import ScoreInputs, build_scorer
from noisyclip_metrics.testing import tiny_pipeline

PREVIEW = {"sd": "sd1", "sdxl": "sdxl", "sd3": "sd3", "flux": "flux"}
PROMPT = "a red circle above a blue square"
SIZE = {"height": 32, "width": 32}
T = 4
EPS32 = torch.finfo(torch.float32).eps
# Tolerances, from float32 and the value range (images in [0, 1], cosines in [-1, 1]). A survivor finishes in a smaller
# batch than it started in, and a prompt's candidates run beside other prompts' or alone: other batch compositions, so
# other float32 reduction orders in every denoiser and VAE call. Images then differ from the plain pipeline's by up to
# 73 ulps of 1 here (SDXL with DDIM; 6-16 ulps for the other combinations); 1024 ulps of 1 (1.2e-4) is 14 times that,
# and a wrong survivor or step differs by O(1). A scorer's single forward pass over the same images in another batch
# composition moves a cosine by under an ulp of 1; 64 ulps of 1 bounds that. Comparisons of the same batch run
# through the same code (monitor and live scores against the recorded trajectory) are bit for bit in practice.
BATCH_ATOL = 1024 * EPS32
COS_ATOL = 64 * EPS32


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    cache: dict[str, object] = {}

    def get(family: str):
        if family not in cache:
            cache[family] = tiny_pipeline(family, tmp_path_factory.mktemp(family))
        return cache[family]

    return get


@pytest.fixture(scope="module")
def models():
    return {f: NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview=p, seed=0) for f, p in PREVIEW.items()}


def _scheduler(pipe, family: str, kind: str):
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        EulerAncestralDiscreteScheduler,
        EulerDiscreteScheduler,
        UniPCMultistepScheduler,
    )

    if kind == "default":
        return pipe.scheduler
    if family in ("sd3", "flux"):  # flow matching: DPM++/UniPC with flow sigmas (diffusers' own FLUX/SD3 recipe)
        flux = family == "flux"
        kwargs = {"use_flow_sigmas": True, "prediction_type": "flow_prediction", "flow_shift": 3.0}
        if kind == "dpm++":
            return DPMSolverMultistepScheduler(**kwargs, use_dynamic_shifting=flux, time_shift_type="exponential")
        return UniPCMultistepScheduler(**kwargs)
    cls = {
        "ddim": DDIMScheduler,
        "euler": EulerDiscreteScheduler,
        "euler-ancestral": EulerAncestralDiscreteScheduler,
        "dpm++": DPMSolverMultistepScheduler,
        "unipc": UniPCMultistepScheduler,
    }[kind]
    return cls.from_config(pipe.scheduler.config)


def _plain(pipe, seed: int, **kwargs) -> torch.Tensor:
    out = pipe(
        [PROMPT],
        num_inference_steps=T,
        output_type="pt",
        generator=[torch.Generator().manual_seed(seed)],
        **SIZE,
        **kwargs,
    )
    return out.images[0]


COMBOS = [
    ("sd", "default"),
    ("sd", "euler"),
    ("sd", "euler-ancestral"),
    ("sd", "dpm++"),
    ("sd", "unipc"),
    ("sdxl", "default"),
    ("sdxl", "ddim"),
    ("sdxl", "dpm++"),
    ("sdxl", "unipc"),
    ("sd3", "default"),
    ("sd3", "dpm++"),
    ("sd3", "unipc"),
    ("flux", "default"),
    ("flux", "dpm++"),
    ("flux", "unipc"),
]


@pytest.mark.parametrize(("family", "kind"), COMBOS)
def test_survivors_equal_the_plain_pipeline(pipes, models, family, kind):
    """Exactness: each survivor's image is the plain pipeline's for its seed (CFG on; multistep history pruned)."""
    pipe = pipes(family)
    default = pipe.scheduler
    pipe.scheduler = _scheduler(pipe, family, kind)
    try:
        scorer = build_scorer("clip", model=models[family])
        result = EarlyBestOfN(pipe, scorer, OneShotPolicy(k=2, m=2))(
            PROMPT, n=3, seeds=[10, 11, 12], num_inference_steps=T, **SIZE
        )
        assert result.images.shape == (2, 3, 32, 32)
        for seed, image in zip(result.seeds, result.images, strict=True):
            torch.testing.assert_close(image, _plain(pipe, seed), atol=BATCH_ATOL, rtol=0)
    finally:
        pipe.scheduler = default


def test_flux_true_cfg_and_guidance_embedding_are_exact(pipes, models):
    from diffusers import FluxTransformer2DModel

    pipe = pipes("flux")
    original = pipe.transformer
    torch.manual_seed(0)
    pipe.transformer = FluxTransformer2DModel(**{**dict(original.config), "guidance_embeds": True}).eval()
    try:
        scorer = build_scorer("clip", model=models["flux"])
        result = EarlyBestOfN(pipe, scorer, HalvingPolicy((1, 3)))(
            PROMPT,
            n=4,
            seeds=[3, 4, 5, 6],
            num_inference_steps=T,
            negative_prompt="a dog",
            true_cfg_scale=2.0,
            guidance_scale=2.5,
            **SIZE,
        )
        ref = _plain(pipe, result.seeds[0], negative_prompt="a dog", true_cfg_scale=2.0, guidance_scale=2.5)
        torch.testing.assert_close(result.images[0], ref, atol=BATCH_ATOL, rtol=0)
    finally:
        pipe.transformer = original


def test_one_shot_account_and_decisions(pipes, models):
    pipe = pipes("sd")
    scorer = build_scorer("clip", model=models["sd"])
    n, k, m = 5, 2, 2
    result = EarlyBestOfN(pipe, scorer, OneShotPolicy(k=k, m=m))(PROMPT, n=n, num_inference_steps=T, **SIZE)
    assert result.denoiser_evals == n * k + m * (T - k) == schedule_cost(n, T, [(k, m)])[0]
    assert result.scorer_evals == n and result.full_cost == n * T
    assert result.cost_fraction == pytest.approx((n * k + m * (T - k)) / (n * T))
    (decision,) = result.decisions
    assert decision.step == k and sorted(decision.scores) == list(range(n))
    ranked = sorted(decision.scores, key=lambda s: (-decision.scores[s], s))
    assert list(result.seeds) == ranked[:m] == list(decision.kept)
    assert result.scores == tuple(decision.scores[s] for s in result.seeds)
    assert set(result.seconds) == {"setup", "denoise", "score", "decode", "total"}
    assert 0.0 <= float(result.images.min()) <= float(result.images.max()) <= 1.0
    assert result.to_json()["decisions"][0]["kept"] == list(result.seeds)


def test_decision_scores_equal_scores_of_the_recorded_trajectories(pipes, models):
    """What the offline BoN relies on: scores inside the loop are the scores of the full run's trajectories."""
    pipe = pipes("sdxl")
    seeds = [0, 1, 2]
    for name in ("clip", "clip-x0"):
        scorer = build_scorer(name, model=models["sdxl"])
        result = EarlyBestOfN(pipe, scorer, OneShotPolicy(k=2))(PROMPT, n=3, seeds=seeds, num_inference_steps=T, **SIZE)
        batch = capture_trajectories(pipe, [PROMPT] * 3, seeds, num_inference_steps=T, **SIZE)
        recorded = scorer.score(
            ScoreInputs(
                prompts=[PROMPT] * 3,
                latents=batch.latents[:, 2],
                x0=batch.x0[:, 2],
                latent_scale=batch.latent_scale[2].expand(3),
            )
        )
        live = torch.tensor([result.decisions[0].scores[s] for s in seeds])
        torch.testing.assert_close(live, recorded.float(), atol=1e-4, rtol=0)


def test_x0_scorer_and_halving_accounts(pipes, models):
    pipe = pipes("sd3")
    x0 = build_scorer("clip-x0", model=models["sd3"])
    r = EarlyBestOfN(pipe, x0, OneShotPolicy(k=1))(PROMPT, n=4, num_inference_steps=T, **SIZE)
    assert r.denoiser_evals == 4 * 2 + 1 * (T - 2)  # decides after the step-2 call, which the survivor reuses
    halving = EarlyBestOfN(pipe, build_scorer("clip", model=models["sd3"]), HalvingPolicy((1, 2, 3)))
    r = halving(PROMPT, n=6, num_inference_steps=T, **SIZE)
    assert [len(d.scores) for d in r.decisions] == [6, 3, 2] and len(r.seeds) == 1
    assert r.denoiser_evals == 6 + 3 + 2 + 1 and r.scorer_evals == 11


def test_clip_final_is_full_cost_bon(pipes, models):
    pipe = pipes("flux")
    scorer = build_scorer("clip-final", model=models["flux"])
    r = EarlyBestOfN(pipe, scorer, OneShotPolicy(k=T))(PROMPT, n=3, num_inference_steps=T, **SIZE)
    assert r.denoiser_evals == 3 * T and r.images.shape == (1, 3, 32, 32)
    final = scorer.score(ScoreInputs(prompts=[PROMPT], images=r.images))
    assert float(final[0]) == pytest.approx(r.scores[0], abs=COS_ATOL)
    with pytest.raises(InputError, match="final images only"):
        EarlyBestOfN(pipe, scorer, OneShotPolicy(k=2))(PROMPT, n=3, num_inference_steps=T, **SIZE)


@pytest.mark.parametrize("family", ["sd", "flux"])
def test_cascade_final_scorer_picks_among_the_finished_survivors(pipes, models, family):
    """Top-m by the early scorer, all m finished exactly, then the final scorer's best of them is the pick."""
    pipe = pipes(family)
    early, final = build_scorer("clip", model=models[family]), build_scorer("clip-final", model=models[family])
    n, k, m = 5, 1, 3
    r = EarlyBestOfN(pipe, early, OneShotPolicy(k=k, m=m), final_scorer=final)(
        PROMPT, n=n, num_inference_steps=T, **SIZE
    )
    first, last = r.decisions
    assert (first.step, first.scorer, len(first.kept)) == (k, "clip", m)
    assert (last.step, last.scorer, sorted(last.scores)) == (T, "clip-final", sorted(first.kept))
    best = max(last.scores, key=lambda s: (last.scores[s], -s))
    assert r.seeds == last.kept == (best,) and r.images.shape == (1, 3, 32, 32)
    assert r.denoiser_evals == n * k + m * (T - k) and r.scorer_evals == n and r.final_scorer_evals == m
    assert (r.final_scorer, r.to_json()["final_scorer_evals"]) == ("clip-final", m)
    torch.testing.assert_close(r.images[0], _plain(pipe, best), atol=BATCH_ATOL, rtol=0)
    # the final scores are clip-final's scores of the finished images
    own = final.score(ScoreInputs(prompts=[PROMPT], images=r.images))
    assert float(own[0]) == pytest.approx(last.scores[best], abs=COS_ATOL)
    with pytest.raises(InputError, match="final_scorer: expected a Scorer"):
        EarlyBestOfN(pipe, early, OneShotPolicy(k=k, m=m), final_scorer="clip-final")


PROMPTS = [PROMPT, "a green triangle", "two blue squares left of a red circle"]


def _same_run(batched, alone, atol=BATCH_ATOL):
    """A prompt's result inside a batch is its result alone: decisions, survivors, account, images."""
    assert (batched.seeds, batched.prompts, batched.n) == (alone.seeds, alone.prompts, alone.n)
    assert (batched.denoiser_evals, batched.scorer_evals, batched.final_scorer_evals) == (
        alone.denoiser_evals,
        alone.scorer_evals,
        alone.final_scorer_evals,
    )
    assert [(d.step, d.kept, d.scorer, sorted(d.scores)) for d in batched.decisions] == [
        (d.step, d.kept, d.scorer, sorted(d.scores)) for d in alone.decisions
    ]
    for b, a in zip(batched.decisions, alone.decisions, strict=True):
        assert b.scores == pytest.approx(a.scores, abs=atol)
    torch.testing.assert_close(batched.images, alone.images, atol=atol, rtol=0)


@pytest.mark.parametrize(
    ("family", "kind"), [("sd", "default"), ("sd", "dpm++"), ("sdxl", "default"), ("flux", "unipc")]
)
def test_a_batch_of_prompts_gives_each_prompt_its_own_run(pipes, models, family, kind):
    """Several prompts' candidates in one batch, each pruned on its own scores: every result is the run alone."""
    pipe = pipes(family)
    default = pipe.scheduler
    pipe.scheduler = _scheduler(pipe, family, kind)
    try:
        for name, policy in (("clip", OneShotPolicy(k=2, m=2)), ("clip-x0", HalvingPolicy((1, 2)))):
            bon = EarlyBestOfN(pipe, build_scorer(name, model=models[family]), policy)
            batch = bon.run_batch(PROMPTS, n=4, seeds=[7, 8, 9, 10], num_inference_steps=T, **SIZE)
            assert len(batch) == 3 and [r.prompts[0] for r in batch] == PROMPTS
            for prompt, result in zip(PROMPTS, batch, strict=True):
                alone = bon(prompt, n=4, seeds=[7, 8, 9, 10], num_inference_steps=T, **SIZE)
                _same_run(result, alone)
                assert result.seconds == batch.seconds and result.settings["batch_prompts"] == 3
            assert batch.denoiser_evals == sum(r.denoiser_evals for r in batch)
            assert batch.cost_fraction == pytest.approx(batch.denoiser_evals / (3 * 4 * T))
        seed = batch[1].seeds[0]  # and a survivor is still the plain pipeline's image
        ref = pipe(
            ["a green triangle"],
            num_inference_steps=T,
            output_type="pt",
            generator=[torch.Generator().manual_seed(seed)],
            **SIZE,
        ).images[0]
        torch.testing.assert_close(batch[1].images[0], ref, atol=BATCH_ATOL, rtol=0)
    finally:
        pipe.scheduler = default


def test_a_batch_with_prompts_pruned_at_different_rates(pipes, models):
    """The threshold policy drops different numbers per prompt: groups decide apart, the others keep running."""
    from noisyclip_metrics.bon import ThresholdCalibration, ThresholdPolicy

    pipe = pipes("sd")
    scorer = build_scorer("clip", model=models["sd"])
    cal = ThresholdCalibration(scorer="clip", n=5, quantile=0.1, num_steps=T, gaps=(-9.0, -0.4, -0.3, -0.2, 0.0))
    bon = EarlyBestOfN(pipe, scorer, ThresholdPolicy(cal))
    prompts = [PROMPT, "a dog", "three yellow stars", "a green triangle"]
    batch = bon.run_batch(prompts, n=5, num_inference_steps=T, **SIZE)
    alone = [bon(p, n=5, num_inference_steps=T, **SIZE) for p in prompts]
    for result, own in zip(batch, alone, strict=True):
        _same_run(result, own)
    widths = {tuple(len(d.scores) for d in r.decisions) for r in alone}
    assert len(widths) > 1  # the prompts were pruned differently: the per-group path was exercised


@pytest.mark.parametrize("family", ["sd", "flux"])
def test_a_batch_of_cascades(pipes, models, family):
    pipe = pipes(family)
    early, final = build_scorer("clip", model=models[family]), build_scorer("clip-final", model=models[family])
    bon = EarlyBestOfN(pipe, early, OneShotPolicy(k=1, m=3), final_scorer=final)
    batch = bon.run_batch(PROMPTS[:2], n=4, num_inference_steps=T, **SIZE)
    for prompt, result in zip(PROMPTS[:2], batch, strict=True):
        _same_run(result, bon(prompt, n=4, num_inference_steps=T, **SIZE))
        assert result.final_scorer_evals == 3 and len(result.seeds) == 1


def test_a_batch_of_per_candidate_prompts_and_bad_batches(pipes, models):
    bon = _bon(pipes, models)
    batch = bon.run_batch([[PROMPT, "a dog"], "a cat"], n=2, num_inference_steps=T, **SIZE)
    assert batch[0].prompts[0] in (PROMPT, "a dog") and batch[1].prompts == ("a cat",)
    assert "batch_prompts" not in bon.run_batch(["a cat"], n=2, num_inference_steps=T, **SIZE)[0].settings
    for bad in ([], PROMPT, None):
        with pytest.raises(InputError, match="prompts: expected a non-empty list of prompts"):
            bon.run_batch(bad, n=2, num_inference_steps=T, **SIZE)
    with pytest.raises(InputError, match="list of n = 3 prompts, got 2"):
        bon.run_batch([PROMPT, [PROMPT, "a dog"]], n=3, num_inference_steps=T, **SIZE)
    with pytest.raises(InputError, match="n: expected an integer >= 1"):
        bon.run_batch([PROMPT], n=0, num_inference_steps=T, **SIZE)
    with pytest.raises(InputError, match="seeds: expected n = 2 distinct seeds"):
        bon.run_batch([PROMPT], n=2, seeds=[3], num_inference_steps=T, **SIZE)


def test_monitor_records_every_step_and_matches_trajectory_scores(pipes, models):
    pipe = pipes("sdxl")  # Euler: latents are scaled to the variance-preserving form
    scorer = build_scorer("noisyclip", model=models["sdxl"])
    monitor = NoisyCLIPMonitor(scorer, PROMPT)
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    pipe(
        [PROMPT] * 2,
        num_inference_steps=T,
        generator=gens,
        output_type="pt",
        callback_on_step_end=monitor,
        callback_on_step_end_tensor_inputs=["latents"],
        **SIZE,
    )
    steps, table = monitor.as_tensor()
    assert steps == list(range(1, T + 1)) and table.shape == (2, T)
    batch = capture_trajectories(pipe, [PROMPT] * 2, [0, 1], num_inference_steps=T, **SIZE)
    for k in steps:
        ref = scorer.score(
            ScoreInputs(prompts=[PROMPT] * 2, latents=batch.latents[:, k], latent_scale=batch.latent_scale[k].expand(2))
        )
        torch.testing.assert_close(monitor.scores[k], ref.float(), atol=1e-4, rtol=0)


def test_monitor_interrupts_and_unpacks_flux(pipes, models):
    pipe = pipes("flux")
    monitor = NoisyCLIPMonitor(
        build_scorer("clip", model=models["flux"]), [PROMPT], threshold=float("inf"), height=32, width=32
    )
    out = pipe(
        [PROMPT] * 2,
        num_inference_steps=T,
        output_type="pt",
        callback_on_step_end=monitor,
        callback_on_step_end_tensor_inputs=["latents"],
        **SIZE,
    )
    assert monitor.interrupted_at == 1 and sorted(monitor.scores) == [1] and out.images.shape[0] == 2
    every = NoisyCLIPMonitor(build_scorer("clip", model=models["flux"]), PROMPT, every=3)  # square size inferred
    pipe(
        [PROMPT],
        num_inference_steps=T,
        output_type="pt",
        callback_on_step_end=every,
        callback_on_step_end_tensor_inputs=["latents"],
        **SIZE,
    )
    assert sorted(every.scores) == [3, T]


@pytest.mark.parametrize("family", ["sdxl", "flux"])
def test_monitor_scores_x0_inside_watch_like_the_trajectory(pipes, models, family):
    pipe = pipes(family)  # Euler (SDXL) and flow-matching with packed latents (FLUX)
    scorer = build_scorer("clip-x0", model=models[family])
    monitor = NoisyCLIPMonitor(scorer, PROMPT, height=32, width=32)
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    with monitor.watch(pipe):
        pipe(
            [PROMPT] * 2,
            num_inference_steps=T,
            generator=gens,
            output_type="pt",
            callback_on_step_end=monitor,
            callback_on_step_end_tensor_inputs=["latents"],
            **SIZE,
        )
    assert "step" not in vars(pipe.scheduler)  # unwrapped again
    steps, _ = monitor.as_tensor()
    assert steps == list(range(T + 1))
    batch = capture_trajectories(pipe, [PROMPT] * 2, [0, 1], num_inference_steps=T, **SIZE)
    for k in steps:
        ref = scorer.score(ScoreInputs(prompts=[PROMPT] * 2, x0=batch.x0[:, k]))
        torch.testing.assert_close(monitor.scores[k], ref.float(), atol=1e-4, rtol=0)
    with pytest.raises(InputError, match=r"monitor.watch"):  # outside watch() an x̂0 scorer cannot work
        pipe(
            [PROMPT],
            num_inference_steps=T,
            output_type="pt",
            callback_on_step_end=NoisyCLIPMonitor(scorer, PROMPT),
            callback_on_step_end_tensor_inputs=["latents"],
            **SIZE,
        )


@pytest.mark.parametrize("family", ["sdxl", "flux"])
def test_a_noise_conditioned_scorer_reads_the_levels_the_capture_records(pipes, family):
    """Live loops (monitor, early stopping) give a conditioned tower each step's level, as the recorded run has it."""
    model = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview=PREVIEW[family], seed=0).condition_on_noise()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for p in model.noise_embedding.parameters():
            torch.nn.init.normal_(p, std=0.5)  # as after training: the level moves the scores
    pipe = pipes(family)
    batch = capture_trajectories(pipe, [PROMPT] * 2, [0, 1], num_inference_steps=T, **SIZE)
    assert float(batch.noise_std[0]) > float(batch.noise_std[T - 1]) > float(batch.noise_std[T]) == 0.0
    for name in ("clip", "clip-x0"):
        scorer = build_scorer(name, model=model)
        monitor = NoisyCLIPMonitor(scorer, PROMPT, height=32, width=32)
        with monitor.watch(pipe):
            pipe(
                [PROMPT] * 2,
                num_inference_steps=T,
                generator=[torch.Generator().manual_seed(s) for s in (0, 1)],
                output_type="pt",
                callback_on_step_end=monitor,
                callback_on_step_end_tensor_inputs=["latents"],
                **SIZE,
            )
        result = EarlyBestOfN(pipe, scorer, OneShotPolicy(k=2))(
            PROMPT, n=2, seeds=[0, 1], num_inference_steps=T, **SIZE
        )
        for k in sorted(monitor.scores):
            recorded = scorer.score(
                ScoreInputs(
                    prompts=[PROMPT] * 2,
                    latents=batch.latents[:, k],
                    x0=batch.x0[:, k],
                    latent_scale=batch.latent_scale[k].expand(2),
                    noise_std=batch.noise_std[k],
                )
            )
            torch.testing.assert_close(monitor.scores[k], recorded.float(), atol=1e-4, rtol=0)
            if k == 2:
                live = torch.tensor([result.decisions[0].scores[s] for s in (0, 1)])
                torch.testing.assert_close(live, recorded.float(), atol=1e-4, rtol=0)
                wrong = scorer.score(
                    ScoreInputs(prompts=[PROMPT] * 2, x0=batch.x0[:, k], latents=batch.latents[:, k], noise_std=0.0)
                )
                assert not torch.allclose(live, wrong.float(), atol=1e-4, rtol=0)  # the level matters here


class _SeesKwargs(PipelineCallback):
    """A second callback in the chain: records which tensors reach it (the monitor must hand them on)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[list[str]] = []

    @property
    def tensor_inputs(self) -> list[str]:
        return ["prompt_embeds"]

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
        self.seen.append(sorted(callback_kwargs))
        return callback_kwargs


@pytest.mark.parametrize("family", ["sd", "sdxl", "sd3", "flux"])
def test_monitor_is_a_pipeline_callback_that_chains(pipes, models, family):
    pipe = pipes(family)
    kw = {"num_inference_steps": T, "output_type": "pt", **SIZE}
    # alone: the pipeline reads the monitor's tensor_inputs, no callback_on_step_end_tensor_inputs needed
    alone = NoisyCLIPMonitor(build_scorer("clip", model=models[family]), PROMPT)
    pipe([PROMPT], generator=torch.Generator().manual_seed(3), callback_on_step_end=alone, **kw)
    assert sorted(alone.scores) == list(range(1, T + 1))
    # chained before another callback: both run on every step and the other sees the tensors it declared
    monitor, other = NoisyCLIPMonitor(build_scorer("clip", model=models[family]), PROMPT), _SeesKwargs()
    chain = MultiPipelineCallbacks([monitor, other])
    assert chain.tensor_inputs == ["latents", "prompt_embeds"]
    # the FLUX pipeline does not read a PipelineCallback's tensor_inputs (diffusers 0.42); it is passed for it
    extra = {"callback_on_step_end_tensor_inputs": chain.tensor_inputs} if family == "flux" else {}
    chained = pipe([PROMPT], generator=torch.Generator().manual_seed(3), callback_on_step_end=chain, **kw, **extra)
    plain = pipe([PROMPT], generator=torch.Generator().manual_seed(3), **kw)
    assert sorted(monitor.scores) == list(range(1, T + 1))
    assert other.seen == [["latents", "prompt_embeds"]] * T
    torch.testing.assert_close(monitor.scores[T], alone.scores[T], atol=0, rtol=0)  # same prompt, same latents
    assert torch.equal(chained.images, plain.images)  # the monitor changes no tensor


def test_monitor_bad_input(pipes, models):
    with pytest.raises(InputError, match="the monitor sees latents"):
        NoisyCLIPMonitor(build_scorer("clip-final", model=models["sd"]), PROMPT)
    with pytest.raises(InputError, match="every"):
        NoisyCLIPMonitor(build_scorer("clip", model=models["sd"]), PROMPT, every=0)
    monitor = NoisyCLIPMonitor(build_scorer("clip", model=models["sd"]), PROMPT)
    with pytest.raises(InputError, match="callback_on_step_end_tensor_inputs"):
        monitor(pipes("sd"), 0, 0, {})


# ------------------------------------------------------------------------------------------------------ bad input
def _bon(pipes, models, family="sd", policy=None, scorer="clip", model=None):
    return EarlyBestOfN(
        pipes(family),
        build_scorer(scorer, model=model or models[family], vae=pipes(family).vae),
        policy or OneShotPolicy(k=1),
    )


def test_bad_n_k_m_and_schedule(pipes, models):
    bon = _bon(pipes, models)
    for n in (0, -2):
        with pytest.raises(InputError, match="n: expected an integer >= 1"):
            bon(PROMPT, n=n, num_inference_steps=T, **SIZE)
    with pytest.raises(InputError, match=r"k: expected a step in \[0, T\] = \[0, 4\], got 5"):
        _bon(pipes, models, policy=OneShotPolicy(k=5))(PROMPT, n=2, num_inference_steps=T, **SIZE)
    with pytest.raises(InputError, match="k: expected a step >= 0"):
        OneShotPolicy(k=-1)
    with pytest.raises(InputError, match="m: expected at most n = 2"):
        _bon(pipes, models, policy=OneShotPolicy(k=1, m=3))(PROMPT, n=2, num_inference_steps=T, **SIZE)
    with pytest.raises(InputError, match="strictly increasing"):
        HalvingPolicy((2, 2, 3))
    with pytest.raises(InputError, match="strictly increasing"):
        HalvingPolicy((3, 1))
    with pytest.raises(InputError, match="schedule: expected a step"):
        _bon(pipes, models, policy=HalvingPolicy((1, 9)))(PROMPT, n=4, num_inference_steps=T, **SIZE)


def test_bad_prompts_and_seeds(pipes, models):
    bon = _bon(pipes, models)
    with pytest.raises(InputError, match="list of n = 3 prompts, got 2"):
        bon([PROMPT, "a dog"], n=3, num_inference_steps=T, **SIZE)
    with pytest.raises(InputError, match="seeds: expected n = 2 distinct seeds"):
        bon(PROMPT, n=2, seeds=[1, 1], num_inference_steps=T, **SIZE)
    r = bon([PROMPT, "a dog"], n=2, num_inference_steps=T, **SIZE)  # one prompt per candidate works
    assert r.prompts[0] in (PROMPT, "a dog")


def test_scorer_latent_space_must_match(pipes, models):
    with pytest.raises(InputError, match="reads 16 latent channels"):
        _bon(pipes, models, family="sd", model=models["sd3"])
    with pytest.raises(InputError, match="preview map 'sd1' is for another latent space"):
        _bon(pipes, models, family="sdxl", model=models["sd"])
    with pytest.raises(InputError, match="VAE has 4 latent channels"):
        EarlyBestOfN(pipes("sd3"), build_scorer("clip-x0-decoded", model=models["sd3"], vae=pipes("sd").vae))


def test_unsupported_pipeline_lists_the_supported_ones():
    class Img2ImgLikePipeline:
        scheduler = None

    with pytest.raises(InputError, match="supported pipelines: StableDiffusionPipeline, StableDiffusionXLPipeline"):
        EarlyBestOfN(Img2ImgLikePipeline(), object())


def test_unknown_policy_name():
    from noisyclip_metrics.bon import build_policy

    with pytest.raises(UnknownNameError, match="did you mean 'one-shot'"):
        build_policy("one-shoot", k=1)
    with pytest.raises(InputError, match="bad parameters"):
        build_policy("halving", k=1)


def test_scheduler_with_a_batch_wide_noise_sampler_is_refused():
    from noisyclip_metrics.bon.families import loop_adapter

    sde = type("DPMSolverSDEScheduler", (), {})()
    fake_sd = type("StableDiffusionPipeline", (), {"scheduler": sde})()
    with pytest.raises(InputError, match="one noise sampler for the whole batch"):
        loop_adapter(fake_sd)


def test_overhead_benchmark_compares_one_prompt_at_a_time_with_a_batch(script, capsys):
    script("bon_overhead").main(
        [
            "--pipeline",
            "world:sd-small",
            "--steps",
            "4",
            "--n",
            "2",
            "--prompts",
            "3",
            "--repeats",
            "1",
            "--stream",
            "4",
        ]
    )
    out = capsys.readouterr().out
    assert "3 prompts: one after the other" in out and "| batch of 3: s / prompt |" in out
    assert "stream of 4 slots: s / prompt | wall fraction | scorer calls |" in out
    rows = [line for line in out.splitlines() if line.startswith(("| full-cost", "| one-shot", "| halving"))]
    assert [r.split(" | ")[1] for r in rows] == ["8 (1.00)", "6 (0.75)", "5 (0.62)"]  # calls per prompt, N = 2, T = 4
    assert all(len(r.split(" | ")) == 10 for r in rows)  # the stream's three columns
    # scorer calls: the first two runs fill the 4 slots and are decided together (one call), the third is admitted
    # after their pruning and decided alone: 2 calls for 3 runs of one decision each, under every policy
    assert [int(r.split(" | ")[-1].rstrip(" |")) for r in rows] == [2, 2, 2]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"height": -8}, "height"),
        ({"guidance_scale": float("nan")}, "guidance_scale"),
        ({"eta": float("inf")}, "eta"),
        ({"max_sequence_length": 0}, "max_sequence_length"),
    ],
)
def test_loop_settings_refuse_zero_negative_and_non_finite_values(kwargs, name):
    # 0 used to mean "the pipeline's default" (settings.num_inference_steps or default): only None does now
    from noisyclip_metrics.bon.loops import LoopSettings

    with pytest.raises(InputError, match=name):
        LoopSettings(**kwargs)
    assert LoopSettings().num_inference_steps is None
