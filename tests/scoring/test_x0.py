"""x̂0 estimates and noise levels against the schedulers' own computations."""

from __future__ import annotations

import copy
import inspect
import math
import re
from typing import Any

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DEISMultistepScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSinglestepScheduler,
    EDMDPMSolverMultistepScheduler,
    EDMEulerScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2AncestralDiscreteScheduler,
    KDPM2DiscreteScheduler,
    LCMScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    TCDScheduler,
    UniPCMultistepScheduler,
)

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.scoring.x0 import estimate_x0, model_input_scale, noise_level, parameterization


@pytest.mark.parametrize(
    ("scheduler", "family"),
    [
        (DDIMScheduler(), "vp"),
        (DPMSolverMultistepScheduler(), "vp"),
        (EulerDiscreteScheduler(), "sigma"),
        (FlowMatchEulerDiscreteScheduler(), "flow"),
        (DPMSolverMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction"), "flow"),
        (UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction"), "flow"),
    ],
)
def test_parameterization_detection(scheduler, family):
    assert parameterization(scheduler) == family


def _f32_atol(*tensors: torch.Tensor) -> float:
    """x̂0 two ways: ours in float64 rounded once to float32, the scheduler's own in float32 (a few roundings of
    intermediates within a few times the largest input or output; measured: about 1 ulp of it). 64 ulps of that."""
    return 64 * torch.finfo(torch.float32).eps * max(float(t.abs().max()) for t in tensors)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_dpm_solver_x0_matches_its_own_conversion(prediction):
    sched = DPMSolverMultistepScheduler(prediction_type=prediction)
    sched.set_timesteps(10)
    g = torch.Generator().manual_seed(0)
    x, out = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    t = sched.timesteps[3]
    sched._step_index = 3
    expected = sched.convert_model_output(out, sample=x)
    torch.testing.assert_close(estimate_x0(sched, x, t, out), expected, atol=_f32_atol(x, expected), rtol=0)


def test_flow_sigma_dpm_solver_x0_matches_its_own_conversion():
    sched = DPMSolverMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=3.0)
    sched.set_timesteps(10)
    g = torch.Generator().manual_seed(1)
    x, out = torch.randn(2, 16, 8, 8, generator=g), torch.randn(2, 16, 8, 8, generator=g)
    sched._step_index = 4
    expected = sched.convert_model_output(out, sample=x)
    torch.testing.assert_close(
        estimate_x0(sched, x, sched.timesteps[4], out), expected, atol=_f32_atol(x, expected), rtol=0
    )
    assert float(model_input_scale(sched, sched.timesteps[4])) == 1.0


def test_euler_noise_level_and_input_scale():
    sched = EulerDiscreteScheduler()
    sigma = ((1 - sched.alphas_cumprod[500]) / sched.alphas_cumprod[500]).sqrt()
    torch.testing.assert_close(noise_level(sched, 500).float(), sigma.view(1))
    torch.testing.assert_close(model_input_scale(sched, 500), (1 / (sigma**2 + 1).sqrt()).view(1))


def test_errors():
    sched = DDIMScheduler()
    with pytest.raises(InputError, match="model_output"):
        estimate_x0(sched, torch.zeros(1, 4, 2, 2), 10, torch.zeros(1, 4, 2, 3))
    with pytest.raises(InputError, match="timesteps: expected 1 or 2"):
        estimate_x0(sched, torch.zeros(2, 4, 2, 2), torch.tensor([1, 2, 3]), torch.zeros(2, 4, 2, 2))
    with pytest.raises(InputError, match="NaN"):
        noise_level(sched, float("nan"))


# --- every supported scheduler and option against its own step ------------------------------------------------------

SD = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
FLOW = {"use_flow_sigmas": True, "prediction_type": "flow_prediction", "flow_shift": 3.0}
V, SAMPLE = {"prediction_type": "v_prediction"}, {"prediction_type": "sample"}
KARRAS, EXP, BETA = {"use_karras_sigmas": True}, {"use_exponential_sigmas": True}, {"use_beta_sigmas": True}
LEADING, TRAILING = {"timestep_spacing": "leading", "steps_offset": 1}, {"timestep_spacing": "trailing"}
SIGMA_MIN = {"final_sigmas_type": "sigma_min"}
NO_CLIP = {"clip_sample": False}
MU = {"mu": 0.8}  # set_timesteps argument of dynamically shifted flow schedules (FLUX)


def case(name: str, cls: type, steps: int, *configs: dict, set_timesteps: dict | None = None) -> Any:
    config = {k: v for c in configs for k, v in c.items()}
    return pytest.param(cls, config, steps, set_timesteps or {}, id=name)


DPM, SINGLE, UNIPC, DEIS = (
    DPMSolverMultistepScheduler,
    DPMSolverSinglestepScheduler,
    UniPCMultistepScheduler,
    DEISMultistepScheduler,
)
EULER, EULER_A, KDPM2, KDPM2_A = (
    EulerDiscreteScheduler,
    EulerAncestralDiscreteScheduler,
    KDPM2DiscreteScheduler,
    KDPM2AncestralDiscreteScheduler,
)
FLOW_MATCH = FlowMatchEulerDiscreteScheduler
CASES = [
    case("ddim-leading", DDIMScheduler, 10, SD, NO_CLIP, LEADING, {"set_alpha_to_one": False}),
    case("ddim-trailing-v-zero-snr", DDIMScheduler, 10, SD, NO_CLIP, TRAILING, V, {"rescale_betas_zero_snr": True}),
    case("ddim-linspace-sample", DDIMScheduler, 10, SAMPLE, {"timestep_spacing": "linspace"}),
    case("ddim-clip-sample", DDIMScheduler, 10),
    case("ddpm-clip-sample", DDPMScheduler, 10),
    case("ddpm-v-trailing", DDPMScheduler, 10, SD, NO_CLIP, V, TRAILING),
    case("ddpm-sample-leading", DDPMScheduler, 10, SD, NO_CLIP, SAMPLE, LEADING),
    case("pndm-plms-leading", PNDMScheduler, 10, SD, LEADING, {"skip_prk_steps": True}),
    case("pndm-prk", PNDMScheduler, 10),
    case("pndm-v", PNDMScheduler, 10, SD, V, {"skip_prk_steps": True}),
    case("dpm++", DPM, 10, SD, {"steps_offset": 1}),
    case("dpm++-karras", DPM, 25, SD, KARRAS, {"steps_offset": 1}),
    case("dpm++-karras-50-repeated-timesteps", DPM, 50, SD, KARRAS),
    case("dpm++-exponential-25-repeated-timesteps", DPM, 25, SD, EXP),
    case("dpm++-beta", DPM, 10, SD, BETA),
    case("dpm++-lu-lambdas", DPM, 10, SD, {"use_lu_lambdas": True}),
    case("dpm++-v-trailing", DPM, 10, SD, V, TRAILING),
    case("dpm++-sample-leading", DPM, 10, SD, SAMPLE, LEADING),
    case("dpm++-karras-final-sigma-min", DPM, 10, SD, KARRAS, SIGMA_MIN),
    case("dpm-solver-v-deprecated", DPM, 10, SD, V, SIGMA_MIN, {"algorithm_type": "dpmsolver"}),
    case("sde-dpm++-karras", DPM, 10, SD, KARRAS, {"algorithm_type": "sde-dpmsolver++"}),
    case("dpm++-flow-sigmas", DPM, 10, FLOW),
    case("dpm++-flow-dynamic-shift", DPM, 10, FLOW, {"use_dynamic_shifting": True}, set_timesteps=MU),
    case("dpm-singlestep", SINGLE, 10, SD),
    case("dpm-singlestep-karras", SINGLE, 25, SD, KARRAS),
    case("dpm-singlestep-v-final-sigma-min", SINGLE, 10, SD, V, SIGMA_MIN),
    case("dpm-singlestep-sample-beta", SINGLE, 10, SD, SAMPLE, BETA),
    case("unipc-leading", UNIPC, 10, SD, LEADING),
    case("unipc-karras", UNIPC, 25, SD, KARRAS),
    case("unipc-exponential-v-trailing", UNIPC, 10, SD, EXP, V, TRAILING),
    case("unipc-flow-sigmas", UNIPC, 10, FLOW),
    case("unipc-sample-karras-final-sigma-min", UNIPC, 10, SD, SAMPLE, KARRAS, SIGMA_MIN),
    case("deis", DEIS, 10, SD),
    case("deis-karras", DEIS, 25, SD, KARRAS),
    case("deis-v-beta", DEIS, 10, SD, V, BETA),
    case("deis-sample-exponential", DEIS, 10, SD, SAMPLE, EXP),
    case("euler-linspace", EULER, 10, SD),
    case("euler-leading", EULER, 10, SD, LEADING),
    case("euler-trailing-v", EULER, 10, SD, TRAILING, V),
    case("euler-karras", EULER, 25, SD, KARRAS),
    case("euler-exponential", EULER, 10, SD, EXP),
    case("euler-beta-final-sigma-min", EULER, 10, SD, BETA, SIGMA_MIN),
    case("euler-log-linear-sample", EULER, 10, SD, SAMPLE, {"interpolation_type": "log_linear"}),
    case("euler-continuous-v", EULER, 10, SD, V, {"timestep_type": "continuous"}),
    case("euler-ancestral-leading", EULER_A, 10, SD, LEADING),
    case("euler-ancestral-v-trailing", EULER_A, 10, SD, V, TRAILING),
    case("heun", HeunDiscreteScheduler, 10, SD),
    case("heun-karras-clip-sample", HeunDiscreteScheduler, 10, SD, KARRAS, {"clip_sample": True}),
    case("heun-v-leading", HeunDiscreteScheduler, 10, SD, V, LEADING),
    case("heun-sample-exponential", HeunDiscreteScheduler, 10, SD, SAMPLE, EXP),
    case("kdpm2", KDPM2, 10, SD),
    case("kdpm2-karras-50-repeated-timesteps", KDPM2, 50, SD, KARRAS),
    case("kdpm2-v-exponential", KDPM2, 10, SD, V, EXP),
    case("kdpm2-ancestral", KDPM2_A, 10, SD),
    case("kdpm2-ancestral-karras", KDPM2_A, 25, SD, KARRAS),
    case("kdpm2-ancestral-v-beta-trailing", KDPM2_A, 10, SD, V, BETA, TRAILING),
    case("lms", LMSDiscreteScheduler, 10, SD),
    case("lms-karras", LMSDiscreteScheduler, 25, SD, KARRAS),
    case("lms-v-trailing", LMSDiscreteScheduler, 10, SD, V, TRAILING),
    case("lms-sample-beta", LMSDiscreteScheduler, 10, SD, SAMPLE, BETA),
    case("edm-euler-karras", EDMEulerScheduler, 10),
    case("edm-euler-exponential-v-sigma-min", EDMEulerScheduler, 10, V, SIGMA_MIN, {"sigma_schedule": "exponential"}),
    case("edm-dpm++", EDMDPMSolverMultistepScheduler, 10),
    case("edm-sde-dpm++-v", EDMDPMSolverMultistepScheduler, 10, V, {"algorithm_type": "sde-dpmsolver++"}),
    case("flow-match-shift", FLOW_MATCH, 10, {"shift": 3.0}),
    case("flow-match-dynamic-shift", FLOW_MATCH, 10, {"use_dynamic_shifting": True}, set_timesteps=MU),
    case("flow-match-karras", FLOW_MATCH, 10, {"shift": 3.0}, KARRAS),
    case("flow-match-exponential", FLOW_MATCH, 10, EXP),
    case("flow-match-beta-shift-terminal", FLOW_MATCH, 10, BETA, {"shift_terminal": 0.1}),
    case("flow-match-stochastic", FLOW_MATCH, 10, {"shift": 3.0, "stochastic_sampling": True}),
]


def _copy(sched: Any, **config: Any) -> Any:
    """A copy of ``sched`` in its current state (the original is not advanced), with ``config`` changed."""
    c = copy.deepcopy(sched)
    if config:
        c.register_to_config(**config)
    return c


def _gen() -> dict[str, Any]:
    return {"generator": torch.Generator().manual_seed(7)}


def _call(sched: Any, out: torch.Tensor, t: Any, x: torch.Tensor) -> Any:
    """``sched.step`` as a pipeline calls it (a seeded generator where the step draws noise)."""
    extra = _gen() if "generator" in inspect.signature(sched.step).parameters else {}
    return sched.step(out, t, x, **extra)


def _own_x0(sched: Any, x: torch.Tensor, out: torch.Tensor, t: Any) -> torch.Tensor:
    """The x̂0 the scheduler's own step computes from ``(x, out)`` at its current step, on a copy.

    ``pred_original_sample`` where the step output has it; the data prediction that DPM-Solver++, UniPC and EDM
    DPM-Solver keep in ``model_outputs``; PNDM's update to a clean target; for stochastic flow matching the ``x0`` it
    re-noises (read back from two steps with the same noise).
    """
    if isinstance(sched, FlowMatchEulerDiscreteScheduler):
        s = _copy(sched, stochastic_sampling=True)  # prev = (1 - sigma_next) x0 + sigma_next noise
        noise = _call(_copy(s), torch.zeros_like(out), t, torch.zeros_like(x)).prev_sample.double()
        keep = _call(_copy(s), torch.zeros_like(out), t, torch.ones_like(x)).prev_sample.double() - noise
        return (_call(s, out, t, x).prev_sample.double() - noise) / keep
    if isinstance(sched, PNDMScheduler):
        # PNDM keeps no x̂0, but its first PLMS update is DDIM's: to a clean target (alpha-bar 1) it is x̂0 itself
        s = _copy(sched, skip_prk_steps=True)
        s.counter, s.ets, s.cur_sample, s.num_inference_steps = 0, [], None, 1
        s.final_alpha_cumprod = torch.tensor(1.0)
        return s.step_plms(out, t, x).prev_sample.double()
    s = _copy(sched)
    res = _call(s, out, t, x)
    if getattr(res, "pred_original_sample", None) is not None:
        return res.pred_original_sample.double()
    return s.model_outputs[-1].double()


def _eps_form(sched: Any) -> bool:
    """DEIS and DPM-Solver (not ++) keep the model output converted to noise, ``(x - alpha x0) / sigma``."""
    return isinstance(sched, DEISMultistepScheduler) or getattr(sched.config, "algorithm_type", "") == "dpmsolver"


def _own_level(sched: Any, family: str, x: torch.Tensor, t: Any) -> tuple[float, float, float]:
    """The noise level the step uses, read off the coefficients of its own x̂0 as a map of ``(x, out)``; with them.

    x̂0 = A x + B out: ``vp`` (probed as v-prediction) A = sqrt(ab); ``sigma`` and ``flow`` B = -sigma; ``edm`` A =
    c_skip, B = c_out. DEIS / DPM-Solver keep (x - alpha x0) / sigma, probed with x0 = out.
    """
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    probe = {"vp": "v_prediction", "sigma": "epsilon", "edm": "epsilon", "flow": "flow_prediction"}[family]
    if isinstance(sched, PNDMScheduler):
        probe = "epsilon"  # its v conversion cancels in float32
    if _eps_form(sched):
        probe = "sample"  # keeps (x - alpha out) / sigma: A = 1 / sigma, B = -alpha / sigma
    config = {"prediction_type": probe} if hasattr(sched.config, "prediction_type") else {}
    if hasattr(sched.config, "clip_sample"):
        config["clip_sample"] = False
    s = _copy(sched, **config)
    a = float(_own_x0(s, one, zero, t).mean())
    b = float(_own_x0(s, zero, one, t).mean())
    if family == "vp":
        level = a**2 if probe == "v_prediction" else 1 / a**2 if probe == "epsilon" else (b / a) ** 2
    elif family == "edm":
        data = float(sched.config.sigma_data)  # well-conditioned: from c_skip at large sigma, from c_out at small
        level = data * math.sqrt(1 / a - 1) if a < 0.5 else b * data / math.sqrt(data**2 - b**2)
    else:
        level = -b
    return level, a, b


def _rel(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours.double() - ref.double()).abs().max() / ref.double().abs().max().clamp(min=1e-12))


def _walk(cls: type, config: dict, steps: int, set_kwargs: dict) -> dict[str, float]:
    """Run a whole sampling loop with random model outputs; at every step compare our noise level, model input scale
    and x̂0 (with the step index, and from the timestep alone where it occurs once) with the step's own. Returns the
    largest relative error of each."""
    sched = cls(**config)
    sched.set_timesteps(steps, **set_kwargs)
    family = parameterization(sched)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 4, 4, generator=g, dtype=torch.float64) * float(getattr(sched, "init_noise_sigma", 1.0))
    timesteps = list(sched.timesteps)
    errors = {"level": 0.0, "scale": 0.0, "x0": 0.0}
    for i, t in enumerate(timesteps):
        out = torch.randn(x.shape, generator=g, dtype=torch.float64)
        # by step index, and by the timestep alone where it occurs once in the schedule
        ways = [i, None] if sum(float(u) == float(t) for u in timesteps) == 1 else [i]
        if hasattr(sched, "scale_model_input"):
            scale = float((sched.scale_model_input(x, t) / x).mean())  # as the pipeline does before the step
            for j in ways:
                ours = float(model_input_scale(sched, t, step_index=j)[0])
                errors["scale"] = max(errors["scale"], abs(ours - scale) / scale)
        level, a, b = _own_level(sched, family, x, t)  # the step's own level and x̂0, from copies of the scheduler
        for j in ways:
            ours = float(noise_level(sched, t, step_index=j)[0])
            errors["level"] = max(errors["level"], abs(ours - level) / max(abs(level), 1e-8))
        if _eps_form(sched):
            kept = _own_x0(sched, x, out, t)  # (x - alpha x0) / sigma with sigma = 1 / a, alpha = -b / a
            ref = (x - kept / a) / (-b / a)
        else:
            ref = _own_x0(sched, x, out, t)
        for j in ways:
            errors["x0"] = max(errors["x0"], _rel(estimate_x0(sched, x, t, out, step_index=j), ref))
        x = _call(sched, out, t, x).prev_sample.double()
    return errors


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
@pytest.mark.parametrize(("cls", "config", "steps", "set_kwargs"), CASES)
def test_noise_level_and_x0_match_the_schedulers_own_step(cls, config, steps, set_kwargs):
    """Our noise level, model input scale and x̂0 equal what the scheduler's step uses, at every step (float64)."""
    errors = _walk(cls, config, steps, set_kwargs)
    assert max(errors.values()) <= 1e-5, f"largest relative errors: {errors}"


def test_karras_noise_levels_come_from_the_sigmas_not_the_rounded_timestep():
    """DPM++ 2M Karras (issue 20): alphas_cumprod at the rounded timestep, which the package used to read, misses the
    step's alpha-bar 1 / (sigma^2 + 1) by up to 0.5% and x̂0 of a unit-variance x0 by ~1e-2; the table test's
    1e-5 tolerance is far below that."""
    sched = DPMSolverMultistepScheduler(**SD, steps_offset=1, use_karras_sigmas=True)
    sched.set_timesteps(25)
    steps, sigma = sched.timesteps, sched.sigmas[: len(sched.timesteps)].double()
    exact = 1 / (sigma**2 + 1)
    rounded = sched.alphas_cumprod.double()[steps]
    assert float(((rounded - exact) / exact).abs().max()) > 4e-3
    torch.testing.assert_close(noise_level(sched, steps, len(steps)), exact, rtol=1e-7, atol=0)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(len(steps), 4, 8, 8, generator=g), torch.randn(len(steps), 4, 8, 8, generator=g)
    x = exact.sqrt().view(-1, 1, 1, 1) * x0 + (1 - exact).sqrt().view(-1, 1, 1, 1) * eps
    torch.testing.assert_close(estimate_x0(sched, x, steps, eps), x0.double(), rtol=0, atol=1e-6)
    old = (x - (1 - rounded).sqrt().view(-1, 1, 1, 1) * eps) / rounded.sqrt().view(-1, 1, 1, 1)
    assert float((old - x0).abs().max()) > 5e-3


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(
    ("make", "named"),
    [
        (LCMScheduler, "LCMScheduler is not supported"),
        (TCDScheduler, "TCDScheduler is not supported"),
        (type("MyEulerScheduler", (EulerDiscreteScheduler,), {}), "MyEulerScheduler is not supported"),
        (lambda: DDIMScheduler(thresholding=True), "DDIMScheduler with thresholding=True"),
        (lambda: DDPMScheduler(variance_type="learned_range"), "DDPMScheduler with variance_type='learned_range'"),
        (lambda: DPMSolverMultistepScheduler(prediction_type="flow_prediction"), "prediction_type='flow_prediction'"),
        (lambda: KDPM2DiscreteScheduler(prediction_type="sample"), "KDPM2DiscreteScheduler with prediction_type"),
        (lambda: EULER_A(prediction_type="sample"), "EulerAncestralDiscreteScheduler with prediction_type='sample'"),
        (lambda: FlowMatchEulerDiscreteScheduler(invert_sigmas=True), "with invert_sigmas=True"),
    ],
)
def test_unsupported_scheduler_or_option_is_refused_by_name(make, named):
    sched = make()
    x = torch.zeros(1, 4, 2, 2)
    for call in (
        lambda: parameterization(sched),
        lambda: noise_level(sched, 1),
        lambda: model_input_scale(sched, 1),
        lambda: estimate_x0(sched, x, 1, x),
    ):
        with pytest.raises(InputError, match=re.escape(named)):
            call()


def test_timesteps_outside_the_range_are_refused_naming_it():
    ddim = DDIMScheduler(clip_sample=False)
    ddim.set_timesteps(10)
    for t in (-1, 1000, 5000):
        with pytest.raises(InputError, match=re.escape(f"{t} is outside DDIMScheduler's timestep range [0, 999]")):
            noise_level(ddim, t)
    torch.testing.assert_close(noise_level(ddim, [0, 999], 2), ddim.alphas_cumprod[[0, 999]].double())
    with pytest.raises(InputError, match=r"integer timesteps only, got 500.5"):
        noise_level(ddim, 500.5)
    euler = EulerDiscreteScheduler(**SD)
    euler.set_timesteps(10)
    with pytest.raises(InputError, match=re.escape("-0.5 is outside EulerDiscreteScheduler's timestep range [0, 999]")):
        estimate_x0(euler, torch.zeros(1, 4, 2, 2), -0.5, torch.zeros(1, 4, 2, 2))
    flow = FlowMatchEulerDiscreteScheduler(shift=3.0)
    flow.set_timesteps(10)
    with pytest.raises(InputError, match=re.escape("[0, 1000]")):
        model_input_scale(flow, 1000.5)
    assert float(noise_level(flow, 1000)) == 1.0
    with pytest.raises(InputError, match=r"outside EDMEulerScheduler's timestep range \[-1.55\d*, 1.09\d*\]"):
        noise_level(EDMEulerScheduler(), 2.0)


def test_off_schedule_and_repeated_timesteps_of_a_karras_schedule():
    sched = DPMSolverMultistepScheduler(**SD, use_karras_sigmas=True)
    sched.set_timesteps(50)
    with pytest.raises(InputError, match=r"500 is not one of .* current timesteps, and with use_karras_sigmas=True"):
        noise_level(sched, 500)
    steps = sched.timesteps.tolist()
    t = next(u for u in steps if steps.count(u) > 1)
    where = [i for i, u in enumerate(steps) if u == t]
    with pytest.raises(InputError, match=f"{t} occurs at steps {where[0]}, {where[1]} .* pass step_index"):
        estimate_x0(sched, torch.zeros(1, 4, 2, 2), t, torch.zeros(1, 4, 2, 2))
    levels = noise_level(sched, t, 2, step_index=torch.tensor(where))
    torch.testing.assert_close(levels, 1 / (sched.sigmas[where].double() ** 2 + 1))
    assert levels[0] != levels[1]
    with pytest.raises(InputError, match=f"step_index: 0 is not a step at timestep {t}"):
        noise_level(sched, t, step_index=0)
    plain = DPMSolverMultistepScheduler(**SD)  # its levels follow the training schedule: any timestep in range
    plain.set_timesteps(10)
    torch.testing.assert_close(noise_level(plain, 500), plain.alphas_cumprod[500].double().view(1))


def test_trajectory_recording_keeps_the_step_index_of_repeated_timesteps():
    from noisyclip_metrics.diffusion.trajectory import _recording_step

    sched = DPMSolverMultistepScheduler(**SD, use_karras_sigmas=True)
    sched.set_timesteps(50)
    g = torch.Generator().manual_seed(0)
    x, kept = torch.randn(1, 4, 4, 4, generator=g, dtype=torch.float64), []
    with _recording_step(sched) as records:
        for t in sched.timesteps:
            x = sched.step(torch.randn(x.shape, generator=g, dtype=torch.float64), t, x).prev_sample
            kept.append(sched.model_outputs[-1].clone())  # DPM-Solver++'s own x̂0
    assert [r[4] for r in records] == list(range(50))
    assert len({r[2] for r in records}) < 50  # some steps share a timestep
    for (sample, output, t, _, index), own in zip(records, kept, strict=True):
        assert _rel(estimate_x0(sched, sample, t, output, step_index=index), own) <= 1e-5
