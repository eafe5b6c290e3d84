"""Shared machinery of the world's training stages: resumable loops, seeded batches, schedules, EMA, logging.

Every stage trains deterministically: the batch of optimizer step ``s`` is drawn from a generator seeded with
``(seed, s)``, so a run resumed from a checkpoint continues exactly as an uninterrupted one. A checkpoint is a folder
``ckpt-<step>/`` holding ``weights.safetensors`` (every module's state, prefixed by its name) and ``state.pt``
(optimizer and schedule, loaded with ``weights_only=True``), written to a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from noisyclip_metrics.errors import ConfigMismatchError
from noisyclip_metrics.io.files import save_safetensors

__all__ = ["EMA", "ResumableRun", "log_line", "step_generator", "warmup_cosine"]


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A generator for one optimizer step, independent of everything that happened before it."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step)) * 16 + int(stream))


def warmup_cosine(total: int, warmup: int, floor: float = 0.05) -> Callable[[int], float]:
    """LambdaLR factor: linear warmup over ``warmup`` steps, then cosine decay to ``floor``."""

    def fn(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return fn


class EMA:
    """Exponential moving average of a module's floating-point state (kept as a state dict).

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the average forgets the random
    initialisation quickly (with a fixed 0.999, 37% of the average is still the initialisation after 1,000 steps).
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    def decay_at(self, updates: int) -> float:
        """Decay used for update number ``updates`` (0-based)."""
        return min(self.decay, (1 + updates) / (10 + updates))

    @torch.no_grad()
    def update(self, module: nn.Module, updates: int) -> None:
        """Fold the module's current state in; ``updates`` = number of earlier updates (the optimizer step)."""
        decay = self.decay_at(updates)
        for k, v in module.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
            else:
                self.shadow[k].copy_(v)

    def copy_to(self, module: nn.Module) -> None:
        module.load_state_dict(self.shadow)


def log_line(path: Path, **entry: Any) -> None:
    """Append one JSON line to a log file."""
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")


class ResumableRun:
    """Checkpointing and resumption of one training stage.

    Args:
        folder: the stage's work folder (``config.json``, ``log.jsonl``, ``ckpt-*``).
        config: JSON-serialisable configuration; resuming with a different one raises ConfigMismatchError.
        modules: named modules whose state is checkpointed (an EMA is passed as ``ema`` separately).
        optimizer: the optimizer.
        schedule: the learning-rate schedule.
        ema: optional EMA whose shadow weights are checkpointed too.
    """

    def __init__(
        self,
        folder: Path,
        config: Mapping[str, Any],
        modules: Mapping[str, nn.Module],
        optimizer: torch.optim.Optimizer,
        schedule: Any,
        ema: EMA | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.modules, self.optimizer, self.schedule, self.ema = dict(modules), optimizer, schedule, ema
        cfg_path = self.folder / "config.json"
        cfg = json.loads(json.dumps(config))
        if cfg_path.is_file():
            old = json.loads(cfg_path.read_text(encoding="utf-8"))
            if old != cfg:
                diff = sorted(k for k in set(old) | set(cfg) if old.get(k) != cfg.get(k))
                raise ConfigMismatchError(f"{self.folder}: stage was started with another configuration ({diff})")
        else:
            cfg_path.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        self.log_path = self.folder / "log.jsonl"
        self._t0 = time.perf_counter()

    def _checkpoints(self) -> list[Path]:
        return sorted(p for p in self.folder.glob("ckpt-*") if (p / "state.pt").is_file())

    def resume(self) -> int:
        """Load the latest checkpoint if any; return the step to start from."""
        ckpts = self._checkpoints()
        if not ckpts:
            return 0
        latest = ckpts[-1]
        weights = load_file(str(latest / "weights.safetensors"))
        for name, module in self.modules.items():
            module.load_state_dict({k[len(name) + 1 :]: v for k, v in weights.items() if k.startswith(name + ".")})
        if self.ema is not None:
            self.ema.shadow = {k[4:]: v for k, v in weights.items() if k.startswith("ema.")}
        state = torch.load(latest / "state.pt", map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        return int(state["step"])

    def checkpoint(self, step: int, keep: int = 2) -> Path:
        """Write ``ckpt-<step>`` atomically and keep only the newest ``keep`` checkpoints."""
        final = self.folder / f"ckpt-{step:07d}"
        tmp = self.folder / f".tmp-ckpt-{step:07d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        tensors = {
            f"{n}.{k}": v.detach().contiguous() for n, m in self.modules.items() for k, v in m.state_dict().items()
        }
        if self.ema is not None:
            tensors.update({f"ema.{k}": v.contiguous() for k, v in self.ema.shadow.items()})
        save_safetensors(tensors, tmp / "weights.safetensors")
        torch.save(
            {"optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(), "step": step},
            tmp / "state.pt",
        )
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in self._checkpoints()[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def log(self, step: int, **values: Any) -> None:
        """Append a log line with the elapsed seconds."""
        log_line(self.log_path, step=step, seconds=round(time.perf_counter() - self._t0, 2), **values)
