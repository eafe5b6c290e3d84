"""Shared fixtures: small models the tests build offline."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch

from noisyclip_metrics.model import TINY_TEST_CONFIG, NoisyCLIPModel

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="session")
def bench_script() -> Callable[[str], ModuleType]:
    """Loads a script of ``bench/`` as a module: ``bench_script("bon_world").main([...])``."""

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``): the tiny
    pipelines run many times slower with 2 threads on a machine whose cores other jobs share."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
