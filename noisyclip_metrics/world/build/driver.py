"""One command retrains the whole world: stages run in order, each resumable, into a work folder, then packaged.

======================  ===============================================================================================
stage                   output in ``work/``
======================  ===============================================================================================
``tokenizer``           ``tokenizer/``: the real CLIP BPE truncated to 4,000 merges
``vae``                 ``vae/model`` (AutoencoderKL), ``vae/preview.safetensors`` (fitted map), ``vae/DONE.json``
``clip``                ``clip/model``: the world CLIP (open_clip) with the world preview map; competence numbers
``text-encoder``        ``text-encoder/``: the CLIP text tower as a ``transformers.CLIPTextModel`` + tokenizer
``unet-data``           ``unet-data/data.safetensors``: latents of training renders, text features
``unet-<name>``         ``unet-<name>/pipeline``: one StableDiffusionPipeline per model in the config
``trajectories``        ``trajectories/<model>``: trajectory stores of the NoisyCLIP prompts; oracle labels
``noisyclip``           ``noisyclip/run/model``: the fine-tuned NoisyCLIP
``package``             the weights folder (fp16 safetensors) + ``BUILD.json`` (command, config, git revision)
======================  ===============================================================================================

Each stage writes ``DONE.json`` when complete and is skipped afterwards; an interrupted stage resumes from its
latest checkpoint. Determinism: same seed and thread count on the same machine give the same weights.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.io.files import write_json
from noisyclip_metrics.provenance import git_revision
from noisyclip_metrics.world.build import stages as _stages  # noqa: F401  (registers the stages)
from noisyclip_metrics.world.build.context import STAGES, BuildContext, Stage
from noisyclip_metrics.world.build.presets import WorldBuildConfig

__all__ = ["STAGES", "Stage", "build_world"]


def build_world(
    work: str | Path,
    out: str | Path,
    config: WorldBuildConfig,
    stages: list[str] | None = None,
    progress: bool = True,
    command: str | None = None,
    from_weights: str | Path | None = None,
) -> dict[str, Any]:
    """Run the build stages (all by default) and return the metrics of every stage.

    Args:
        work: work folder (checkpoints and intermediate outputs; resumable).
        out: the weights folder the ``package`` stage writes (the package's ``world/weights`` for a release).
        config: the build configuration (see :data:`~noisyclip_metrics.world.build.presets.PRESETS`).
        stages: subset of stage names to run, in build order (default: all).
        progress: show progress bars.
        command: the command line recorded in ``BUILD.json``.
        from_weights: a packaged weights folder to take the stages before ``trajectories`` from instead of training
            them (:func:`~noisyclip_metrics.world.build.seed.seed_from_weights`).
    """
    names = STAGES.names()
    wanted = names if stages is None else [STAGES.get(s).name for s in stages]
    ctx = BuildContext(Path(work), Path(out), config, progress, command or " ".join(sys.argv), git_revision())
    ctx.work.mkdir(parents=True, exist_ok=True)
    cfg_path = ctx.work / "build_config.json"
    cfg_json = json.loads(json.dumps(config.to_json()))
    if cfg_path.is_file() and json.loads(cfg_path.read_text(encoding="utf-8")) != cfg_json:
        raise InputError(f"{ctx.work}: holds a build with another configuration; use a new --work folder")
    write_json(cfg_path, cfg_json)
    if from_weights is not None:
        from noisyclip_metrics.world.build.seed import seed_from_weights

        seeded = seed_from_weights(ctx.work, from_weights, config)
        if progress and seeded:
            print(f"[world build] from {from_weights}: {', '.join(seeded)}", file=sys.stderr, flush=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    metrics: dict[str, Any] = {}
    for name in names:
        done = ctx.work / name / "DONE.json"
        if name not in wanted:
            if done.is_file():
                metrics[name] = json.loads(done.read_text(encoding="utf-8"))
            continue
        if done.is_file() and name != "package":
            metrics[name] = json.loads(done.read_text(encoding="utf-8"))
            continue
        t0 = time.perf_counter()
        if progress:
            print(f"[world build] stage {name}", file=sys.stderr, flush=True)
        result = STAGES.get(name).run(ctx)
        result["seconds"] = round(time.perf_counter() - t0, 1)
        # a stage rebuilt later (--stages) keeps its own provenance in BUILD.json's metrics
        result["git_revision"] = ctx.revision
        result["command"] = ctx.command
        metrics[name] = result
        write_json(ctx.folder(name) / "DONE.json", result)
    return metrics
