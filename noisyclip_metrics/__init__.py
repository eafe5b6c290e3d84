"""noisyclip-metrics: measure text-to-image prompt alignment *during* diffusion, from noisy latents (NoisyCLIP).

The public API is imported lazily so ``import noisyclip_metrics`` stays cheap:

>>> import noisyclip_metrics as nm
>>> nm.__version__
'0.1.0'
>>> sorted(nm.__all__)[:3]
['EarlyBestOfN', 'EvalConfig', 'NoisyCLIPConfig']
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # scoring: the model, the metric and the scorers
    "NoisyCLIPModel": "scoring.model",
    "NoisyCLIPConfig": "scoring.model",
    "NoisyCLIPScore": "scoring.metric",
    "noisyclip_score": "scoring.functional",
    "resolve_model": "scoring.factory",
    "load_pretrained": "scoring.model",
    "save_pretrained": "scoring.checkpoint",
    "PreviewMap": "scoring.preview",
    "get_preview_map": "scoring.preview",
    "fit_preview_map": "scoring.preview",
    "build_scorer": "scoring.scorers",
    "ScoreInputs": "scoring.scorers",
    "NoisyCLIPT2VScore": "scoring.t2v",
    # diffusion: recording trajectories
    "capture_trajectories": "diffusion.trajectory",
    "TrajectoryStore": "diffusion.trajectory_store",
    "record_trajectories": "diffusion.trajectory_store",
    # evaluation, reports, Best-of-N, training
    "EvalConfig": "evaluation.runner",
    "evaluate": "evaluation.runner",
    "correlate": "evaluation.correlate",
    "build_leaderboard": "leaderboard.build",
    "EarlyBestOfN": "bon.early",
    "NoisyCLIPMonitor": "bon.monitor",
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
