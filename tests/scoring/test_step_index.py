"""Schedules in which a timestep occurs twice with different noise levels: callers pass the step index.

DPM-Solver++ with Karras sigmas at 50 steps rounds steps 47 and 48 to timestep 1; KDPM2 with Karras sigmas at 50
steps has timestep 1 at steps 94 and 96. :mod:`noisyclip_metrics.scoring.x0` refuses such a timestep without
``step_index``
(it cannot tell which level is meant), so every caller that reads a level must pass the latent's step: the monitor
(``step_index=k`` for the step-``k`` latent, the scheduler's counter for x̂0), ``noisyclip_score`` and the t2v-metrics
backend (``step_index``, or a latent's ``step``).
"""

from __future__ import annotations

import pytest
import torch

from noisyclip_metrics.bon import NoisyCLIPMonitor
from noisyclip_metrics.diffusion.trajectory import capture_trajectories
from noisyclip_metrics.errors import InputError
from noisyclip_metrics.scoring.functional import noisyclip_score
from noisyclip_metrics.scoring.metric import NoisyCLIPScore
from noisyclip_metrics.scoring.model import TINY_TEST_CONFIG, NoisyCLIPModel
from noisyclip_metrics.scoring.scorers import ScoreInputs, build_scorer
from noisyclip_metrics.scoring.t2v import NoisyCLIPT2VScore, save_latent_file
from noisyclip_metrics.scoring.x0 import model_input_scale
from noisyclip_metrics.testing import tiny_pipeline

PROMPT = "a red circle above a blue square"
SIZE = {"height": 32, "width": 32}
STEPS = 50
EPS32 = torch.finfo(torch.float32).eps
# Cosines are in [-1, 1]. Where two float32 computations take different paths to the same value (multiplying a
# latent by a float64-derived scale here, dividing by the scheduler's float32 sqrt there), the inputs differ by an
# ulp or so and each cosine moves by a few ulps of 1; 64 ulps of 1 bounds that with a wide margin.
COS_ATOL = 64 * EPS32


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sd_pipe(tmp_path_factory):
    from diffusers import DPMSolverMultistepScheduler

    pipe = tiny_pipeline("sd", tmp_path_factory.mktemp("sd_karras"))
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True)
    return pipe


@pytest.fixture(scope="module")
def models_sd():
    return NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0)


@pytest.fixture(scope="module")
def kdpm2():
    """KDPM2 with Karras sigmas at 50 steps: a sigma-type scheduler, so the step's level sets the input scale."""
    from diffusers import KDPM2DiscreteScheduler

    sched = KDPM2DiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, use_karras_sigmas=True
    )
    sched.set_timesteps(STEPS)
    return sched


def _repeated(sched) -> tuple[float, list[int]]:
    """The first timestep that occurs at more than one step, and those steps."""
    steps = sched.timesteps.tolist()
    t = next(t for t in steps if steps.count(t) > 1)
    return t, [i for i, s in enumerate(steps) if s == t]


def test_the_schedules_repeat_a_timestep_and_a_level_needs_the_step(sd_pipe, kdpm2):
    """The precondition the other tests rely on: without a step index these schedules are refused."""
    sched = sd_pipe.scheduler
    sched.set_timesteps(STEPS)
    for s, expected in ((sched, [47, 48]), (kdpm2, [94, 96])):
        t, where = _repeated(s)
        assert (t, where) == (1.0, expected)
        with pytest.raises(InputError, match="pass step_index"):
            model_input_scale(s, t)


def test_monitor_scores_every_step_of_a_karras_schedule(sd_pipe, models_sd):
    """The monitor (latents, and x̂0 inside watch()) works at 50 Karras steps and equals the captured trajectory.

    Before the monitor passed step indices, its step-47 call raised InputError ("pass step_index").
    """
    latent_scorer = build_scorer("clip", model=models_sd)
    x0_scorer = build_scorer("clip-x0", model=models_sd)
    on_latents = NoisyCLIPMonitor(latent_scorer, PROMPT)
    on_x0 = NoisyCLIPMonitor(x0_scorer, PROMPT)

    def both(pipe, i, t, kwargs):
        on_latents(pipe, i, t, kwargs)
        return on_x0(pipe, i, t, kwargs)

    with on_x0.watch(sd_pipe):
        sd_pipe(
            [PROMPT],
            num_inference_steps=STEPS,
            generator=[torch.Generator().manual_seed(0)],
            output_type="pt",
            callback_on_step_end=both,
            callback_on_step_end_tensor_inputs=["latents"],
            **SIZE,
        )
    assert sorted(on_latents.scores) == list(range(1, STEPS + 1))
    assert sorted(on_x0.scores) == list(range(STEPS + 1))
    # the same call, recorded: same batch, same seed, same code for latents and x̂0, so the scores are bit for bit
    batch = capture_trajectories(sd_pipe, [PROMPT], [0], num_inference_steps=STEPS, **SIZE)
    for k in range(STEPS + 1):
        x0 = x0_scorer.score(ScoreInputs(prompts=[PROMPT], x0=batch.x0[:, k].contiguous())).float()
        assert torch.equal(on_x0.scores[k], x0), k
        if k >= 1:
            latents, scale = batch.latents[:, k].contiguous(), batch.latent_scale[k].expand(1)
            ref = latent_scorer.score(ScoreInputs(prompts=[PROMPT], latents=latents, latent_scale=scale)).float()
            assert torch.equal(on_latents.scores[k], ref), k


def _scheduler_scaled(sched, z: torch.Tensor, index: int, t: float) -> torch.Tensor:
    """The latent as the scheduler itself scales it for the denoiser at step ``index`` (its own code path)."""
    sched._step_index, sched.sample = index, None  # a first-order KDPM2 step (94 and 96 both are)
    try:
        return sched.scale_model_input(z, torch.tensor(t))
    finally:
        sched._step_index = None


def test_noisyclip_score_forwards_step_index(models_sd, kdpm2):
    t, where = _repeated(kdpm2)
    z = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    prompts = ["a red cube", "a yellow square"]
    with pytest.raises(InputError, match="pass step_index"):
        noisyclip_score(z, prompts, models_sd, timesteps=[t, t], scheduler=kdpm2, reduction="none")
    with pytest.raises(InputError, match="step_index: 10 is not a step at timestep 1"):  # the index is read
        noisyclip_score(z, prompts, models_sd, timesteps=[t, t], scheduler=kdpm2, step_index=10, reduction="none")
    for index in where:
        got = noisyclip_score(
            z, prompts, models_sd, timesteps=[t, t], scheduler=kdpm2, step_index=index, reduction="none"
        )
        expected = noisyclip_score(_scheduler_scaled(kdpm2, z, index, t), prompts, models_sd, reduction="none")
        torch.testing.assert_close(got, expected, atol=COS_ATOL, rtol=0)
    per_sample = noisyclip_score(
        z, prompts, models_sd, timesteps=[t, t], scheduler=kdpm2, step_index=torch.tensor(where), reduction="none"
    )
    assert per_sample.shape == (2,)


def test_the_metric_forwards_step_index(models_sd, kdpm2):
    t, where = _repeated(kdpm2)
    z = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(5))
    prompts = ["a red cube", "a yellow square"]
    metric = NoisyCLIPScore(models_sd, scheduler=kdpm2)
    with pytest.raises(InputError, match="pass step_index"):
        metric.update(z, prompts, timesteps=[t, t])
    assert int(metric.n_samples) == 0  # the refused batch left no trace
    for index in where:
        metric.reset()
        metric.update(z, prompts, timesteps=[t, t], step_index=index)
        expected = noisyclip_score(z, prompts, models_sd, timesteps=[t, t], scheduler=kdpm2, step_index=index)
        torch.testing.assert_close(metric.compute(), expected, atol=100 * COS_ATOL, rtol=0)
    levels = []
    for index in where:  # the two steps are different noise levels, so the step index changes the score
        metric.reset()
        metric.update(z, prompts, timesteps=[t, t], step_index=torch.tensor([index, index]))
        levels.append(float(metric.compute()))
    assert levels[0] != levels[1]


def test_t2v_backend_forwards_step_index_or_the_latents_step(models_sd, kdpm2, tmp_path):
    t, where = _repeated(kdpm2)
    z = torch.randn(4, 16, 16, generator=torch.Generator().manual_seed(4))
    score = NoisyCLIPT2VScore(model=models_sd, scheduler=kdpm2, timestep=t)
    with pytest.raises(InputError, match="pass step_index"):
        score([z], ["a red cube"])
    with pytest.raises(InputError, match="step_index: 10 is not a step"):
        score([z], ["a red cube"], step_index=10)
    expected = noisyclip_score(
        _scheduler_scaled(kdpm2, z[None], where[0], t), ["a red cube"], models_sd, reduction="none"
    )
    for got in (
        score([z], ["a red cube"], step_index=where[0]),  # given to the call
        NoisyCLIPT2VScore(model=models_sd, scheduler=kdpm2, timestep=t, step_index=where[0])([z], ["a red cube"]),
        score([z], ["a red cube"], step=where[0]),  # the latent's step is its step index
    ):
        torch.testing.assert_close(got[:, 0], expected, atol=COS_ATOL, rtol=0)
    # a trajectory file: step k picks the step-k latent and says which level its timestep has
    trajectory = torch.stack([torch.zeros_like(z)] * where[0] + [z])
    path = save_latent_file(tmp_path / "traj.safetensors", trajectory, timestep=[t] * (where[0] + 1))
    torch.testing.assert_close(
        NoisyCLIPT2VScore(model=models_sd, scheduler=kdpm2)([path], ["a red cube"], step=where[0])[:, 0],
        expected,
        atol=COS_ATOL,
        rtol=0,
    )
