"""On-disk trajectory store: safetensors shards that append atomically and resume without duplicates.

Layout of a store folder::

    manifest.json            {"schema": "noisyclip-trajectories", "schema_version": 1, "settings": {...}}
    shards/00000-<hex>.safetensors

Each shard holds the trajectories of one captured batch of ``n`` samples:

==================  =====================  ===============================================================
tensor              shape                  meaning (see :mod:`noisyclip_metrics.diffusion.trajectory`)
==================  =====================  ===============================================================
``latents``         ``(n, T+1, C, h, w)``  latent after k steps, k = 0..T
``x0``              ``(n, T+1, C, h, w)``  x̂0 estimate at step k
``timesteps``       ``(T+1,)``             scheduler timestep of step k (0 at T)
``latent_scale``    ``(T+1,)``             factor to the variance-preserving form (1 for VP schedulers)
``images``          ``(n, 3, H, W)``       final images in [0, 1]
==================  =====================  ===============================================================

and, in its safetensors metadata, ``records``: a JSON list of ``{"key", "prompt_id", "prompt", "seed"}``.

A shard is written to a temporary file and renamed into place, so it is either complete or absent: a run killed at
any moment leaves a readable store, and :func:`record_trajectories` skips the (prompt id, seed) keys already present.
The ``settings`` of the manifest (pipeline, scheduler, steps, guidance, size) must match on resume.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from noisyclip_metrics.diffusion.trajectory import TrajectoryBatch, capture_trajectories
from noisyclip_metrics.errors import ConfigMismatchError, InputError, SchemaError
from noisyclip_metrics.io.files import atomic_write_bytes, read_manifest

__all__ = ["SCHEMA", "SCHEMA_VERSION", "TrajectoryRecord", "TrajectoryStore", "record_trajectories", "work_key"]

SCHEMA = "noisyclip-trajectories"
SCHEMA_VERSION = 1


def work_key(prompt_id: str, seed: int) -> str:
    """The identity of one trajectory in a store."""
    return f"{prompt_id}#{int(seed)}"


@dataclass(frozen=True)
class TrajectoryRecord:
    """Where one trajectory lives in the store."""

    key: str
    prompt_id: str
    prompt: str
    seed: int
    shard: Path
    row: int


class TrajectoryStore:
    """A folder of trajectory shards. Open with :meth:`create` (new or resumed run) or :meth:`open` (reading)."""

    def __init__(self, root: Path, settings: dict[str, Any]) -> None:
        self.root = Path(root)
        self.settings = settings
        self._records: list[TrajectoryRecord] | None = None
        self._noise_std: torch.Tensor | None = None

    # ---------------------------------------------------------------------------------------------- open / create
    @classmethod
    def open(cls, root: str | Path) -> TrajectoryStore:
        """Open an existing store.

        Raises:
            SchemaError: if the folder is not a trajectory store or was written with another schema version.
        """
        root = Path(root)
        meta = read_manifest(
            root / "manifest.json",
            SCHEMA,
            SCHEMA_VERSION,
            "trajectory store",
            "; re-record the trajectories or use a matching noisyclip-metrics version",
        )
        return cls(root, meta.get("settings", {}))

    @classmethod
    def create(cls, root: str | Path, settings: dict[str, Any]) -> TrajectoryStore:
        """Create a store, or reopen one with the same ``settings`` to resume it.

        Raises:
            ConfigMismatchError: if the folder holds a store recorded with different settings.
        """
        root = Path(root)
        if (root / "manifest.json").exists():
            store = cls.open(root)
            if store.settings != json.loads(json.dumps(settings)):
                diff = sorted(
                    k for k in set(store.settings) | set(settings) if store.settings.get(k) != settings.get(k)
                )
                raise ConfigMismatchError(
                    f"{root}: the store was recorded with other settings (differences in {diff}); "
                    "use a new folder or the original settings"
                )
            return store
        if root.exists() and any(root.iterdir()):
            raise InputError(f"{root}: folder exists and is not empty; expected a new folder or a trajectory store")
        meta = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "settings": settings}
        atomic_write_bytes(root / "manifest.json", (json.dumps(meta, indent=2) + "\n").encode())
        (root / "shards").mkdir(exist_ok=True)
        return cls(root, json.loads(json.dumps(settings)))

    # -------------------------------------------------------------------------------------------------- writing
    def append(self, batch: TrajectoryBatch, prompt_ids: Sequence[str]) -> Path:
        """Write ``batch`` as one new shard (atomically) and return its path."""
        if len(prompt_ids) != len(batch):
            raise InputError(f"prompt_ids: expected {len(batch)} ids, got {len(prompt_ids)}")
        records = [
            {"key": work_key(pid, seed), "prompt_id": str(pid), "prompt": p, "seed": int(seed)}
            for pid, p, seed in zip(prompt_ids, batch.prompts, batch.seeds, strict=True)
        ]
        tensors = {
            "latents": batch.latents.contiguous(),
            "x0": batch.x0.contiguous(),
            "timesteps": batch.timesteps.contiguous(),
            "latent_scale": batch.latent_scale.contiguous(),
            "images": batch.images.contiguous(),
        }
        shards = self.root / "shards"
        shards.mkdir(exist_ok=True)
        index = len(list(shards.glob("*.safetensors")))
        path = shards / f"{index:05d}-{secrets.token_hex(4)}.safetensors"
        fd, tmp = tempfile.mkstemp(prefix=".shard.", suffix=".tmp", dir=shards)
        os.close(fd)
        from noisyclip_metrics.io.files import fsync_file

        try:
            save_file(tensors, tmp, metadata={"schema_version": str(SCHEMA_VERSION), "records": json.dumps(records)})
            fsync_file(tmp)  # on disk before the rename, with the umask's mode (not mkstemp's 0600)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self._records = None
        return path

    # -------------------------------------------------------------------------------------------------- reading
    def shards(self) -> list[Path]:
        """Complete shard files in write order."""
        return sorted((self.root / "shards").glob("*.safetensors"))

    def records(self) -> list[TrajectoryRecord]:
        """Every trajectory in the store (reads only shard headers)."""
        if self._records is None:
            out: list[TrajectoryRecord] = []
            for shard in self.shards():
                with safe_open(str(shard), framework="pt") as f:
                    meta = f.metadata() or {}
                if meta.get("schema_version") != str(SCHEMA_VERSION):
                    raise SchemaError(
                        f"{shard}: schema_version {meta.get('schema_version')!r}, expected {SCHEMA_VERSION}"
                    )
                for row, rec in enumerate(json.loads(meta["records"])):
                    out.append(TrajectoryRecord(rec["key"], rec["prompt_id"], rec["prompt"], rec["seed"], shard, row))
            self._records = out
        return list(self._records)

    def keys(self) -> set[str]:
        """The (prompt id, seed) keys present."""
        return {r.key for r in self.records()}

    def __len__(self) -> int:
        return len(self.records())

    def load_shard(
        self,
        shard: Path,
        names: Sequence[str] = ("latents", "x0", "timesteps", "latent_scale", "images"),
        steps: Sequence[int] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Tensors of one shard; ``steps`` selects step indices of ``latents``/``x0`` without reading the rest."""
        out: dict[str, torch.Tensor] = {}
        with safe_open(str(shard), framework="pt") as f:
            for name in names:
                if steps is not None and name in ("latents", "x0"):
                    sl = f.get_slice(name)
                    out[name] = torch.stack([sl[:, int(k)] for k in steps], dim=1)
                elif steps is not None and name in ("timesteps", "latent_scale"):
                    out[name] = f.get_tensor(name)[list(steps)]
                else:
                    out[name] = f.get_tensor(name)
        return out

    def iter_shards(self, **kwargs: Any) -> Iterator[tuple[list[TrajectoryRecord], dict[str, torch.Tensor]]]:
        """Yield ``(records, tensors)`` shard by shard (memory stays bounded by one shard)."""
        by_shard: dict[Path, list[TrajectoryRecord]] = {}
        for rec in self.records():
            by_shard.setdefault(rec.shard, []).append(rec)
        for shard, recs in by_shard.items():
            yield recs, self.load_shard(shard, **kwargs)

    @property
    def num_steps(self) -> int:
        """T of the stored trajectories."""
        return int(self.settings["num_inference_steps"])

    def noise_std(self) -> torch.Tensor:
        """``(T+1,)`` noise level of each step (:func:`~noisyclip_metrics.scoring.x0.noise_std`; 0 at ``T``).

        Shards do not hold it: it is read from the scheduler the manifest records (its class and config), whose
        ``set_timesteps(T)`` must give the recorded timesteps.

        Raises:
            SchemaError: the scheduler cannot be rebuilt, or its schedule is not the recorded one (a pipeline that
                passes its own ``sigmas`` or ``timesteps``), or the store is empty.
        """
        if self._noise_std is None:
            self._noise_std = _recorded_noise_std(self)
        return self._noise_std.clone()


def _recorded_noise_std(store: TrajectoryStore) -> torch.Tensor:
    import diffusers

    from noisyclip_metrics.scoring.x0 import noise_std

    shards = store.shards()
    name, config = store.settings.get("scheduler"), store.settings.get("scheduler_config")
    cls = getattr(diffusers, str(name), None) if isinstance(name, str) else None
    if not shards or cls is None or not isinstance(config, dict):
        why = "it holds no trajectories" if not shards else f"its manifest names no diffusers scheduler ({name!r})"
        raise SchemaError(f"{store.root}: cannot tell the noise level of its steps: {why}")
    recorded = store.load_shard(shards[0], names=("timesteps",))["timesteps"].double()
    scheduler = cls.from_config(config)
    scheduler.set_timesteps(store.num_steps)
    steps = torch.as_tensor(scheduler.timesteps, dtype=torch.float64).cpu()
    if steps.shape != recorded[:-1].shape or not torch.allclose(steps, recorded[:-1], rtol=0, atol=1e-3):
        raise SchemaError(
            f"{store.root}: cannot tell the noise level of its steps: {name}.set_timesteps({store.num_steps}) "
            "does not give the recorded timesteps (the pipeline set its own schedule)"
        )
    index = torch.arange(store.num_steps)
    return torch.cat([noise_std(scheduler, steps, store.num_steps, step_index=index), torch.zeros(1)]).float()


def _seeds_per_prompt(seeds: Sequence[int] | Sequence[Sequence[int]], n: int) -> list[list[int]]:
    """``seeds`` as one list per prompt (a flat list is shared by all ``n`` prompts)."""
    if len(seeds) and all(isinstance(s, Sequence) for s in seeds):
        if len(seeds) != n:
            raise InputError(f"seeds: expected one list of seeds per prompt ({n}), got {len(seeds)} lists")
        lists = [[int(x) for x in s] for s in seeds]  # type: ignore[union-attr]
    else:
        lists = [[int(x) for x in seeds]] * n  # type: ignore[arg-type]
    for i, own in enumerate(lists):
        if not own or len(set(own)) != len(own):
            raise InputError(f"seeds: expected distinct seeds for every prompt, got {own} for prompt {i}")
    return lists


def record_trajectories(
    pipe: Any,
    store: str | Path | TrajectoryStore,
    prompts: Sequence[str],
    seeds: Sequence[int] | Sequence[Sequence[int]],
    prompt_ids: Sequence[str] | None = None,
    batch_size: int = 8,
    num_inference_steps: int = 20,
    guidance_scale: float | None = None,
    height: int | None = None,
    width: int | None = None,
    progress: bool = True,
    **pipe_kwargs: Any,
) -> TrajectoryStore:
    """Capture every (prompt, seed) pair into ``store``, skipping pairs already recorded (resume).

    Args:
        pipe: a supported diffusers pipeline.
        store: a folder (created or resumed) or an open store.
        prompts: prompts to generate.
        seeds: the seeds of every prompt (one list of ints, combined with every prompt), or one list per prompt
            (e.g. :func:`~noisyclip_metrics.provenance.training_seeds` of each, so that no noise recurs).
        prompt_ids: stable ids of the prompts (default: their position as ``"p00000"``...).
        batch_size: samples per pipeline call (and per shard).
        num_inference_steps: T.
        guidance_scale: classifier-free guidance scale.
        height: image height in pixels.
        width: image width in pixels.
        progress: show a progress bar.
        **pipe_kwargs: other pipeline arguments (must be JSON-describable to be recorded in the settings).
    """
    from tqdm.auto import tqdm

    from noisyclip_metrics.diffusion.trajectory import _image_size, sampler_settings

    if prompt_ids is None:
        prompt_ids = [f"p{i:05d}" for i in range(len(prompts))]
    if len(prompt_ids) != len(prompts) or len(set(prompt_ids)) != len(prompt_ids):
        raise InputError(f"prompt_ids: expected {len(prompts)} distinct ids, got {len(set(prompt_ids))} distinct")
    h, w = _image_size(pipe, height, width)
    settings = json.loads(json.dumps(sampler_settings(pipe, num_inference_steps, guidance_scale, h, w, pipe_kwargs)))
    if not isinstance(store, TrajectoryStore):
        store = TrajectoryStore.create(store, settings)
    elif store.settings != settings:
        raise ConfigMismatchError(f"{store.root}: the store was recorded with other settings")
    per_prompt = _seeds_per_prompt(seeds, len(prompts))
    done = store.keys()
    todo = [
        (pid, p, s)
        for pid, p, own in zip(prompt_ids, prompts, per_prompt, strict=True)
        for s in own
        if work_key(pid, s) not in done
    ]
    bar = tqdm(total=len(todo), desc="trajectories", unit="traj", disable=not progress)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        batch = capture_trajectories(
            pipe,
            [c[1] for c in chunk],
            [c[2] for c in chunk],
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            height=h,
            width=w,
            **pipe_kwargs,
        )
        store.append(batch, [c[0] for c in chunk])
        bar.update(len(chunk))
    bar.close()
    return store
