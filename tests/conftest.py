"""Shared fixtures: small models the tests build offline."""

from __future__ import annotations

import pytest
import torch

from noisyclip_metrics.model import TINY_TEST_CONFIG, NoisyCLIPModel


@pytest.fixture(scope="session")
def tiny_model() -> NoisyCLIPModel:
    """A seeded tiny open_clip NoisyCLIP with the SD 1.x preview map (4 latent channels)."""
    return NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0)


@pytest.fixture()
def latents() -> torch.Tensor:
    return torch.randn(6, 4, 16, 16, generator=torch.Generator().manual_seed(1))


PROMPTS = ["a red cube", "two blue spheres", "a red cube", "a green cone", "three yellow stars", "a dog"]


@pytest.fixture()
def prompts() -> list[str]:
    return list(PROMPTS)
