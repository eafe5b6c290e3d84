"""Early-stopping Best-of-N: live (:class:`EarlyBestOfN`), inside any pipeline call (:class:`NoisyCLIPMonitor`) and
from recorded results (:func:`compute_bon`).

See :mod:`.early` (engine and account), :mod:`.loops`/:mod:`.families` (prunable loops per pipeline family),
:mod:`.policies` (one-shot, halving, threshold; cost model), :mod:`.calibration` (threshold calibration),
:mod:`.monitor`, :mod:`.offline` and :mod:`.fitting` (halving schedules and threshold settings fitted on recorded runs),
:mod:`.search` (budget-matched search) and :mod:`.stream` (continuous batching over a stream of prompts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from noisyclip_metrics.bon.calibration import ThresholdCalibration
from noisyclip_metrics.bon.early import BoNBatch, BoNResult, Decision, EarlyBestOfN
from noisyclip_metrics.bon.fitting import (
    CrossFit,
    ScheduleFit,
    ThresholdFit,
    ThresholdGrid,
    crossfit_halving,
    crossfit_threshold,
    fit_halving_schedule,
    fit_threshold_calibration,
    fit_threshold_policy,
)
from noisyclip_metrics.bon.loops import LOOP_ADAPTERS, LoopSettings
from noisyclip_metrics.bon.offline import BON_SCHEMA, compute_bon, pick_scores, read_bon
from noisyclip_metrics.bon.policies import (
    POLICIES,
    FunnelPolicy,
    HalvingPolicy,
    OneShotPolicy,
    ThresholdPolicy,
    build_policy,
    schedule_cost,
)
from noisyclip_metrics.bon.stream import StreamBestOfN

if TYPE_CHECKING:
    from noisyclip_metrics.bon.monitor import NoisyCLIPMonitor

__all__ = [
    "BON_SCHEMA",
    "LOOP_ADAPTERS",
    "POLICIES",
    "BoNBatch",
    "BoNResult",
    "CrossFit",
    "Decision",
    "EarlyBestOfN",
    "FunnelPolicy",
    "HalvingPolicy",
    "LoopSettings",
    "NoisyCLIPMonitor",
    "OneShotPolicy",
    "ScheduleFit",
    "StreamBestOfN",
    "ThresholdCalibration",
    "ThresholdFit",
    "ThresholdGrid",
    "ThresholdPolicy",
    "build_policy",
    "compute_bon",
    "crossfit_halving",
    "crossfit_threshold",
    "fit_halving_schedule",
    "fit_threshold_calibration",
    "fit_threshold_policy",
    "pick_scores",
    "read_bon",
    "schedule_cost",
]


def __getattr__(name: str) -> Any:
    # The monitor subclasses diffusers' PipelineCallback: importing it imports diffusers, so it loads on first use.
    if name == "NoisyCLIPMonitor":
        from noisyclip_metrics.bon.monitor import NoisyCLIPMonitor

        return NoisyCLIPMonitor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
