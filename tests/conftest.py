"""Shared fixtures: small models the tests build offline."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch

from noisyclip_metrics.scoring.model import TINY_TEST_CONFIG, NoisyCLIPModel

#: Where the scripts live: timing benchmarks, research studies, publishing tools.
SCRIPT_FOLDERS = [Path(__file__).resolve().parents[1] / d for d in ("benchmarks", "experiments", "tools")]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--gpu-device", default="cuda", help="device of the tests marked gpu (tests/gpu; default cuda, skipped without)"
    )


@pytest.fixture(scope="session")
def script() -> Callable[[str], ModuleType]:
    """Loads a script of ``benchmarks/``, ``experiments/`` or ``tools/`` as a module, to call its ``main([...])`` or
    its functions: ``script("bon_world").main([...])``. Scripts import only the installed package, never each other."""

    def load(name: str) -> ModuleType:
        (path,) = [folder / f"{name}.py" for folder in SCRIPT_FOLDERS if (folder / f"{name}.py").is_file()]
        spec = importlib.util.spec_from_file_location(name, path)
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
