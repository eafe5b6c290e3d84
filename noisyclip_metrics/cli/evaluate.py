"""``noisyclip evaluate``: trajectories -> per-step scores -> judgments -> results store."""

from __future__ import annotations

import argparse

from noisyclip_metrics.cli import COMMANDS, Command
from noisyclip_metrics.cli.core import add_dataclass_arguments, dataclass_from_args

_REQUIRED = ("model", "out")


def _configure(p: argparse.ArgumentParser) -> None:
    from noisyclip_metrics.evaluation.runner import EvalConfig

    add_dataclass_arguments(p, EvalConfig, _REQUIRED)
    p.epilog = (
        "Example: noisyclip evaluate --model world:sd-base --benchmark world --prompts 50 --out runs/results. "
        "Scales out with torchrun --nproc-per-node=N -m noisyclip_metrics.cli evaluate ..."
    )


def _run(args: argparse.Namespace) -> int:
    from noisyclip_metrics.evaluation.runner import EvalConfig, evaluate

    result = evaluate(dataclass_from_args(EvalConfig, args, _REQUIRED))
    spent = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items() if k in ("denoise", "score", "judge"))
    print(
        f"run {result.run_id}: {result.items} candidates evaluated into {result.store}"
        + (f" ({spent})" if spent else "")
    )
    return 0


COMMANDS.register(
    "evaluate",
    Command(
        "evaluate",
        "score every denoising step of a model on a benchmark and judge the final images into a results store",
        _configure,
        _run,
    ),
)
