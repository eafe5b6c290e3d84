"""x̂0 estimates and noise levels against the schedulers' own computations."""

from __future__ import annotations

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    UniPCMultistepScheduler,
)

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.x0 import estimate_x0, model_input_scale, noise_level, parameterization


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


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_dpm_solver_x0_matches_its_own_conversion(prediction):
    sched = DPMSolverMultistepScheduler(prediction_type=prediction)
    sched.set_timesteps(10)
    g = torch.Generator().manual_seed(0)
    x, out = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    t = sched.timesteps[3]
    sched._step_index = 3
    expected = sched.convert_model_output(out, sample=x)
    torch.testing.assert_close(estimate_x0(sched, x, t, out), expected, atol=1e-4, rtol=1e-4)


def test_flow_sigma_dpm_solver_x0_matches_its_own_conversion():
    sched = DPMSolverMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=3.0)
    sched.set_timesteps(10)
    g = torch.Generator().manual_seed(1)
    x, out = torch.randn(2, 16, 8, 8, generator=g), torch.randn(2, 16, 8, 8, generator=g)
    sched._step_index = 4
    expected = sched.convert_model_output(out, sample=x)
    torch.testing.assert_close(estimate_x0(sched, x, sched.timesteps[4], out), expected, atol=1e-4, rtol=1e-4)
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
