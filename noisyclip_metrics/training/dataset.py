"""Training data: (prompt, latent at step k) samples read on demand from trajectory stores.

Shards are memory-mapped through ``safetensors.safe_open``; each sample reads only ``latents[row, k]`` (or
``x0[row, k]``), so stores much larger than memory train fine. Prompts are split into train and held-out sets by a
stable hash of the prompt id, so the split never changes between runs, machines or resumptions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from noisyclip_metrics.diffusion.trajectory_store import TrajectoryRecord, TrajectoryStore
from noisyclip_metrics.errors import DataFileError, InputError
from noisyclip_metrics.scoring.model import READS
from noisyclip_metrics.training.negatives import NEGATIVES  # re-exported: where it used to live

__all__ = ["NEGATIVES", "TrajectorySource", "held_out", "load_labels"]


def held_out(prompt_id: str, fraction: float) -> bool:
    """Whether a prompt id falls in the held-out share ``fraction`` (stable hash, independent of order)."""
    digest = hashlib.sha256(prompt_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def load_labels(path: str | Path) -> dict[str, float]:
    """Per-trajectory judge scores ``{"<prompt_id>#<seed>": score}`` from a JSON object file.

    Raises:
        DataFileError: naming the file and the offending key when it is malformed.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFileError(f"{path}: labels file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataFileError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise DataFileError(f"{path}: expected an object mapping '<prompt_id>#<seed>' to a score")
    out = {}
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DataFileError(f"{path}: key {key!r}: expected a number, got {value!r}")
        out[str(key)] = float(value)
    return out


class TrajectorySource:
    """Random access to ``(latent_k, latent_scale_k, final image)`` of trajectories in one or more stores."""

    def __init__(self, stores: Sequence[str | Path | TrajectoryStore], read: str = "latents") -> None:
        if read not in READS:
            raise InputError(f"read: expected one of {list(READS)}, got {read!r}")
        self.read = read
        self.stores = [s if isinstance(s, TrajectoryStore) else TrajectoryStore.open(s) for s in stores]
        if not self.stores:
            raise InputError("trajectories: expected at least one trajectory store")
        steps = {s.num_steps for s in self.stores}
        if len(steps) != 1:
            raise InputError(f"trajectories: stores have different step counts {sorted(steps)}; train on one T")
        self.num_steps = steps.pop()
        self.records: list[TrajectoryRecord] = [r for s in self.stores for r in s.records()]
        if not self.records:
            raise InputError("trajectories: the stores hold no trajectories")
        self._handles: dict[Path, Any] = {}
        self._levels: dict[Path, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.records)

    def _handle(self, shard: Path) -> Any:
        if shard not in self._handles:
            self._handles[shard] = safe_open(str(shard), framework="pt")
        return self._handles[shard]

    def latents(self, indices: Sequence[int], steps: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(n, C, h, w)`` latents (or x̂0) of trajectories ``indices`` at ``steps``, and their ``(n,)`` scales."""
        zs, scales = [], []
        for i, k in zip(indices, steps, strict=True):
            rec = self.records[int(i)]
            f = self._handle(rec.shard)
            zs.append(f.get_slice(self.read)[rec.row : rec.row + 1, int(k)][0])
            scales.append(f.get_slice("latent_scale")[int(k) : int(k) + 1][0] if self.read == "latents" else 1.0)
        return torch.stack(zs).float(), torch.tensor([float(s) for s in scales])

    def noise_std(self, indices: Sequence[int], steps: Sequence[int]) -> torch.Tensor:
        """``(n,)`` noise level of trajectories ``indices`` at ``steps`` (what a noise-conditioned tower reads beside
        the latent or x̂0 of that step; :meth:`TrajectoryStore.noise_std`)."""
        if self._levels is None:  # each store's (T+1,) levels, read once
            self._levels = {s.root: s.noise_std() for s in self.stores}
        levels = self._levels
        out = [levels[self.records[int(i)].shard.parent.parent][int(k)] for i, k in zip(indices, steps, strict=True)]
        return torch.stack(out) if out else torch.zeros(0)

    def images(self, indices: Sequence[int]) -> torch.Tensor:
        """``(n, 3, H, W)`` final images of trajectories ``indices``."""
        out = []
        for i in indices:
            rec = self.records[int(i)]
            out.append(self._handle(rec.shard).get_slice("images")[rec.row : rec.row + 1][0])
        return torch.stack(out).float()

    def prompts(self, indices: Sequence[int]) -> list[str]:
        """Prompts of trajectories ``indices``."""
        return [self.records[int(i)].prompt for i in indices]

    def __getstate__(self) -> dict[str, Any]:  # safe_open handles do not pickle; reopen lazily
        return {**self.__dict__, "_handles": {}}
