"""Start a build's work folder from a packaged weights folder, so the NoisyCLIP stages can be rebuilt alone.

The shipped weights hold everything the ``trajectories``, ``noisyclip`` and ``package`` stages read: the tokenizer,
the preview map, the world CLIP and the UNet pipelines (with the shared text encoder and VAE). Retraining those
takes about two hours on a 2-core CPU; refitting the NoisyCLIPs on another prompt pool or recipe takes well under
one. :func:`seed_from_weights` restores the earlier stages' outputs into ``work/`` and marks them done with the
measurements the weights' ``BUILD.json`` recorded for them (plus ``seeded_from``: the folder, its revision and date),
so that the build resumes at ``trajectories`` and the new ``BUILD.json`` keeps the whole history.

The stored weights are float16 (the CLIP's and UNets' floating tensors; the preview map stays float32): the rebuilt
NoisyCLIPs start from, and record trajectories with, exactly the models users load, not the float32 originals of
the first build. The weights' configuration must equal the build's for every seeded stage.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.io.files import write_json
from noisyclip_metrics.world.assets import SHARED_COMPONENTS
from noisyclip_metrics.world.build.presets import WorldBuildConfig

__all__ = ["seed_from_weights"]

#: Configuration keys the seeded stages do not depend on: the NoisyCLIP stages rebuilt afterwards, and torch threads.
_NOT_SEEDED_CONFIG = ("noisy", "threads")


def _copy(src: Path, dst: Path) -> None:
    if not src.exists():
        raise InputError(f"from_weights: {src} is missing; expected a packaged world weights folder")
    if dst.exists():
        shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)
    (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)


def seed_from_weights(work: str | Path, weights: str | Path, config: WorldBuildConfig) -> list[str]:
    """Restore the stages before ``trajectories`` that ``config`` builds into ``work`` from the weights folder
    ``weights``; return their names. Stages already done in ``work`` are left as they are; ``unet-data`` is restored
    as its recorded measurements only (its renders are not shipped, and nothing reads them once the UNets are).

    Raises:
        InputError: ``weights`` is not a packaged weights folder, or it was built with another configuration for
            the seeded stages (every configuration key but ``noisy`` and ``threads``).
    """
    work, weights = Path(work), Path(weights)
    record_path = weights / "BUILD.json"
    if not record_path.is_file():
        raise InputError(f"from_weights: {weights} has no BUILD.json; expected a packaged world weights folder")
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        built, metrics = record["config"], record["metrics"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise InputError(f"from_weights: {record_path} is not a build record ({err})") from None
    wanted = json.loads(json.dumps(config.to_json()))
    differ = [k for k in wanted if k not in _NOT_SEEDED_CONFIG and built.get(k) != wanted[k]]
    if differ:
        raise InputError(
            f"from_weights: {weights} was built with another {', '.join(differ)} configuration than "
            "this build; seed only a build whose earlier stages match"
        )
    unets = [u.name for u in config.unets]
    outputs: dict[str, list[tuple[Path, Path]]] = {
        "tokenizer": [(weights / "tokenizer", work / "tokenizer")],
        "vae": [
            (weights / "preview.safetensors", work / "vae" / "preview.safetensors"),
            (weights / "shared" / "vae", work / "vae" / "model"),
        ],
        "clip": [(weights / "clip", work / "clip" / "model")],
        "text-encoder": [
            (weights / "shared" / "text_encoder", work / "text-encoder" / "text_encoder"),
            (weights / "shared" / "tokenizer", work / "text-encoder" / "tokenizer"),
        ],
        "unet-data": [],
    }
    for name in unets:
        pipe = work / f"unet-{name}" / "pipeline"
        outputs[f"unet-{name}"] = [(weights / name, pipe)] + [
            (weights / "shared" / c, pipe / c) for c in SHARED_COMPONENTS
        ]
    from noisyclip_metrics.world.build import stages as _stages  # noqa: F401  (registers the stages)
    from noisyclip_metrics.world.build.context import STAGES

    names = STAGES.names()
    seeded = []
    for stage in names[: names.index("trajectories")]:
        done = work / stage / "DONE.json"
        if stage not in outputs or done.is_file():
            continue
        if stage not in metrics:
            raise InputError(f"from_weights: {record_path} records no {stage!r} stage")
        for src, dst in outputs[stage]:
            _copy(src, dst)
        done.unlink(missing_ok=True)  # the tokenizer folder ships its own DONE.json
        result: dict[str, Any] = dict(metrics[stage])  # with the stage's own revision and command, when recorded
        result["seeded_from"] = {
            "folder": str(weights),
            "git_revision": record.get("git_revision", "unknown"),
            "created": record.get("created", "unknown"),
        }
        write_json(done, result)
        seeded.append(stage)
    return seeded
