"""A tiny stand-in for the optional ``t2v_metrics`` package, written from its documented contract (not its code).

``Score(nn.Module)``: ``__init__(model, device, cache_dir, **kw)`` asserts ``model in self.list_all_models()`` and
sets ``self.model = self.prepare_scoremodel(...)``; ``forward(images, texts) -> [M, N]`` scores pair by pair through
``self.model.forward``; ``batch_forward(dataset, batch_size) -> [n, images, texts]``. ``VQAScore`` scores an image
file by its mean pixel value (so tests can check which files it read) and records its calls in ``CALLS``.
"""

from __future__ import annotations

import sys
from pathlib import Path

SCORE_PY = """
import torch
from torch import nn


class Score(nn.Module):
    def __init__(self, model, device="cuda", cache_dir="./hf_cache/", **kwargs):
        super().__init__()
        assert model in self.list_all_models(), f"{model} is not supported"
        self.device = device
        self.model = self.prepare_scoremodel(model, device, cache_dir, **kwargs)

    def prepare_scoremodel(self, model, device, cache_dir, **kwargs):
        raise NotImplementedError

    def list_all_models(self):
        raise NotImplementedError

    def forward(self, images, texts, num_frames=8, **kwargs):
        images = [images] if isinstance(images, str) else images
        texts = [texts] if isinstance(texts, str) else texts
        out = torch.zeros(len(images), len(texts))
        for i, image in enumerate(images):
            out[i] = self.model.forward([image] * len(texts), texts, **kwargs)
        return out

    def batch_forward(self, dataset, batch_size=16, num_frames=4, **kwargs):
        first = dataset[0]
        out = torch.zeros(len(dataset), len(first["images"]), len(first["texts"]))
        for k in range(len(dataset)):
            out[k] = self.forward(dataset[k]["images"], dataset[k]["texts"], **kwargs)
        return out
"""

INIT_PY = """
import numpy as np
import torch
from PIL import Image

from .score import Score

CALLS = []


class _MeanPixelModel:
    video_mode = "direct"

    def __init__(self, name, device):
        self.name, self.device = name, device

    def forward(self, images, texts, **kwargs):
        CALLS.append({"images": list(images), "texts": list(texts)})
        return torch.tensor([float(np.asarray(Image.open(p).convert("RGB"), dtype=np.float64).mean() / 255)
                             for p in images])


class VQAScore(Score):
    def prepare_scoremodel(self, model, device, cache_dir, **kwargs):
        CALLS.append({"model": model, "device": device})
        return _MeanPixelModel(model, device)

    def list_all_models(self):
        return ["clip-flant5-xxl", "clip-flant5-xl"]


def list_all_models():
    return ["clip-flant5-xxl", "clip-flant5-xl"]
"""


def install_fake_t2v_metrics(root: Path, monkeypatch, *, broken: bool = False) -> Path:
    """Write the fake package under ``root``, put it first on ``sys.path`` and forget any imported copy."""
    pkg = root / "t2v_metrics"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "score.py").write_text(SCORE_PY)
    init = 'raise RuntimeError("ffmpeg is not installed")\n' if broken else INIT_PY
    (pkg / "__init__.py").write_text(init)
    forget_t2v_metrics()
    monkeypatch.syspath_prepend(str(root))
    return pkg


def forget_t2v_metrics() -> None:
    for name in [m for m in sys.modules if m == "t2v_metrics" or m.startswith("t2v_metrics.")]:
        del sys.modules[name]
