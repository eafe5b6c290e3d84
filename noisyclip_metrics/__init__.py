"""noisyclip-metrics: measure text-to-image prompt alignment *during* diffusion, from noisy latents (NoisyCLIP).

The public API is imported lazily so ``import noisyclip_metrics`` stays cheap:

>>> import noisyclip_metrics as nm
>>> nm.__version__
'0.1.0'
>>> sorted(nm.__all__)[:3]
['NoisyCLIPConfig', 'NoisyCLIPModel', 'NoisyCLIPScore']
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "NoisyCLIPModel": "model",
    "NoisyCLIPConfig": "model",
    "NoisyCLIPScore": "metric",
    "noisyclip_score": "functional",
    "PreviewMap": "preview",
    "get_preview_map": "preview",
    "fit_preview_map": "preview",
    "build_scorer": "scorers",
    "ScoreInputs": "scorers",
    "capture_trajectories": "trajectory",
    "TrajectoryStore": "trajectory_store",
    "record_trajectories": "trajectory_store",
    "TrainConfig": "training.trainer",
    "train": "training.trainer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'noisyclip_metrics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
