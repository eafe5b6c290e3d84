"""Latent preview maps: registry, published coefficients, fitting, save/load, bad input."""

from __future__ import annotations

import pytest
import torch

from noisyclip_metrics.errors import CheckpointError, InputError, UnknownNameError
from noisyclip_metrics.scoring.preview import PreviewMap, fit_preview_map, get_preview_map, list_preview_maps


def test_registry_has_every_latent_space():
    assert {"sd1", "sd2", "sdxl", "sd3", "flux"} <= set(list_preview_maps())
    assert get_preview_map("sd3").channels == 16 and get_preview_map("flux").channels == 16
    assert get_preview_map("flux").packed and not get_preview_map("sdxl").packed


def test_sdxl_map_reproduces_the_official_noisyclip_preview():
    # official code: rgb = clamp(W z + b, 0, 255) with W rows R,G,B and b = (150, 140, 130)
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    w = torch.tensor([[60.0, -60.0, 25.0, -70.0], [60.0, -5.0, 15.0, -50.0], [60.0, 10.0, -5.0, -35.0]])
    ref = (torch.einsum("oc,bchw->bohw", w, z) + torch.tensor([150.0, 140.0, 130.0]).view(1, 3, 1, 1)).clamp(0, 255)
    # two float32 code paths (the map's matmul, this einsum) to values in [0, 1]: 64 ulps of 1 (measured: 1.5)
    torch.testing.assert_close(get_preview_map("sdxl")(z), ref / 255, atol=64 * torch.finfo(torch.float32).eps, rtol=0)


def test_comfy_maps_are_converted_to_unit_range():
    z = torch.zeros(1, 4, 2, 2)
    assert torch.allclose(get_preview_map("sd1")(z), torch.full((1, 3, 2, 2), 0.5))
    preview = get_preview_map("sd3")(torch.randn(3, 16, 4, 4))
    assert preview.min() >= 0 and preview.max() <= 1


def test_fit_recovers_a_known_map_on_downsampled_images():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 4, 8, 8, generator=g)
    true = PreviewMap(torch.randn(3, 4, generator=g) * 0.1, torch.tensor([0.4, 0.5, 0.6]))
    # images at 4x the latent resolution whose area average is the map's output
    small = true.apply(z, clamp=False)
    images = small.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
    fitted = fit_preview_map(z, images, chunk=7)
    torch.testing.assert_close(fitted.weight, true.weight, atol=1e-5, rtol=0)
    torch.testing.assert_close(fitted.bias, true.bias, atol=1e-5, rtol=0)
    assert fitted.r2 > 0.999999


def test_fit_reports_partial_r2_with_noise():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(32, 4, 8, 8, generator=g)
    target = PreviewMap(torch.randn(3, 4, generator=g) * 0.2, torch.full((3,), 0.5)).apply(z, clamp=False)
    noisy = target + 0.2 * torch.randn(target.shape, generator=g)
    r2 = fit_preview_map(z, noisy).r2
    assert 0.2 < r2 < 0.95


def test_save_load_round_trip(tmp_path):
    z = torch.randn(8, 4, 4, 4)
    fitted = fit_preview_map(z, torch.rand(8, 3, 16, 16), name="my-vae")
    loaded = PreviewMap.load(fitted.save(tmp_path / "m.safetensors"))
    assert loaded == fitted and loaded.name == "my-vae" and abs(loaded.r2 - fitted.r2) < 1e-12
    assert get_preview_map(tmp_path / "m.safetensors") == fitted


def test_errors():
    with pytest.raises(UnknownNameError, match="did you mean 'sdxl'"):
        get_preview_map("sdxxl")
    with pytest.raises(CheckpointError, match="not found"):
        PreviewMap.load("/nonexistent/map.safetensors")
    with pytest.raises(InputError, match="4 channels"):
        get_preview_map("sdxl")(torch.randn(1, 16, 4, 4))
    with pytest.raises(InputError, match="weight"):
        PreviewMap(torch.zeros(4, 3), torch.zeros(3))
    with pytest.raises(InputError, match="images: expected 4 images"):
        fit_preview_map(torch.randn(4, 4, 2, 2), torch.rand(3, 3, 8, 8))
    with pytest.raises(InputError, match="NaN"):
        fit_preview_map(torch.randn(2, 4, 2, 2), torch.full((2, 3, 8, 8), float("nan")))
