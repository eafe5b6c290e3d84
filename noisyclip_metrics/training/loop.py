"""One training loop for every model the project trains: the world's VAE, CLIP and UNets, and NoisyCLIP fine-tuning.

A model brings its *step* (a function of the step index that draws its batch and returns the loss) and its
*checkpoints* (how its state is written and read back); :func:`run_loop` does the rest the same way for all of them:
the optimizer update with gradient clipping, the learning-rate schedule, an optional per-step hook (an EMA),
the progress bar, logging and periodic checkpoints.

Determinism: a step draws everything random from a generator seeded by ``(seed, step)`` (:func:`step_generator`),
never from state carried over from earlier steps, so a run resumed from a checkpoint continues exactly as an
uninterrupted one. Resuming also cuts the log back to the checkpoint's step, so a run killed after its last
checkpoint logs the steps it replays once.

Two checkpoint formats implement :class:`Checkpoints`: :class:`FolderCheckpoints` (a module's state as safetensors
plus ``state.pt``, used by the world's stages) and the fine-tuning runs' ``checkpoints/step-*/`` folders of
:mod:`noisyclip_metrics.training.trainer` (a loadable model per checkpoint). Both write a checkpoint to a temporary
name and rename it into place, and load ``state.pt`` with ``weights_only=True``.

Examples:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> net = torch.nn.Linear(2, 1)
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
    >>> sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total=4, warmup=1))
    >>> def step(i):
    ...     g = step_generator(seed=0, step=i)
    ...     x = torch.randn(8, 2, generator=g)
    ...     return StepOutput(((net(x) - x.sum(1, keepdim=True)) ** 2).mean())
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     store = FolderCheckpoints(Path(tmp), {"lr": 0.1}, {"net": net}, opt, sched)
    ...     result = run_loop(LoopSettings(steps=4, checkpoint_every=2, desc="demo"), step, opt, sched,
    ...                       list(net.parameters()), store, progress=False)
    ...     sorted(p.name for p in Path(tmp).glob("ckpt-*")), result.steps
    (['ckpt-0000002', 'ckpt-0000004'], 4)
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file
from torch import nn

from noisyclip_metrics.errors import ConfigMismatchError
from noisyclip_metrics.io.files import save_safetensors

__all__ = [
    "EMA",
    "Checkpoints",
    "FolderCheckpoints",
    "LoopResult",
    "LoopSettings",
    "StepLog",
    "StepOutput",
    "run_loop",
    "step_generator",
    "warmup_cosine",
]


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A generator for one optimizer step, independent of everything that happened before it."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step)) * 16 + int(stream))


def warmup_cosine(total: int, warmup: int, floor: float = 0.05) -> Callable[[int], float]:
    """LambdaLR factor: linear warmup over ``warmup`` steps, then cosine decay to ``floor`` at ``total``."""

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


class StepLog:
    """A run's ``log.jsonl``: one JSON line per logged step with the seconds since the run (re)started.

    Args:
        path: the log file (appended to).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._t0 = time.perf_counter()

    def write(self, step: int, **values: Any) -> None:
        """Append one line: ``step``, ``seconds`` (since this process started the run) and ``values``."""
        entry = {"step": step, "seconds": round(time.perf_counter() - self._t0, 2), **values}
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")

    def truncate(self, step: int) -> None:
        """Drop the lines past ``step`` (the checkpoint a run resumes from) and any line cut by a kill."""
        if not self.path.is_file():
            return
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
        keep = []
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # a line cut by the kill
                break
            if not isinstance(entry, dict) or int(entry.get("step", 0)) > step:
                break
            keep.append(line if line.endswith("\n") else line + "\n")
        if len(keep) != len(lines):
            self.path.write_text("".join(keep), encoding="utf-8")


class Checkpoints(Protocol):
    """Where a run's state goes: :func:`run_loop` resumes from it, checkpoints into it and logs into it."""

    log: StepLog

    def resume(self) -> int:
        """Load the latest complete checkpoint, if any, and return its step (0 without one)."""
        ...

    def checkpoint(self, step: int) -> object:
        """Write the state after ``step`` optimizer steps, atomically."""
        ...


def replace_folder(tmp: Path, final: Path) -> Path:
    """Move a finished temporary folder into place (a crash leaves either the old folder or the new one)."""
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


class FolderCheckpoints:
    """Checkpoints of modules as ``ckpt-<step>/{weights.safetensors, state.pt}`` in a stage folder.

    ``weights.safetensors`` holds every module's state prefixed by its name (and the EMA's shadow as ``ema.*``);
    ``state.pt`` the optimizer, the schedule and the step. ``config.json`` pins the configuration: resuming with
    another raises :class:`~noisyclip_metrics.errors.ConfigMismatchError`.

    Args:
        folder: the stage's work folder (``config.json``, ``log.jsonl``, ``ckpt-*``).
        config: JSON-serialisable configuration.
        modules: named modules whose state is checkpointed.
        optimizer: the optimizer.
        schedule: the learning-rate schedule.
        ema: optional EMA whose shadow weights are checkpointed too.
        keep: how many of the newest checkpoints to keep.
    """

    def __init__(
        self,
        folder: Path,
        config: Mapping[str, Any],
        modules: Mapping[str, nn.Module],
        optimizer: torch.optim.Optimizer,
        schedule: Any,
        ema: EMA | None = None,
        keep: int = 2,
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.modules, self.optimizer, self.schedule, self.ema, self.keep = (
            dict(modules),
            optimizer,
            schedule,
            ema,
            keep,
        )
        cfg_path = self.folder / "config.json"
        cfg = json.loads(json.dumps(config))
        if cfg_path.is_file():
            old = json.loads(cfg_path.read_text(encoding="utf-8"))
            if old != cfg:
                diff = sorted(k for k in set(old) | set(cfg) if old.get(k) != cfg.get(k))
                raise ConfigMismatchError(f"{self.folder}: stage was started with another configuration ({diff})")
        else:
            cfg_path.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        self.log = StepLog(self.folder / "log.jsonl")

    def _checkpoints(self) -> list[Path]:
        return sorted(p for p in self.folder.glob("ckpt-*") if (p / "state.pt").is_file())

    def resume(self) -> int:
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

    def checkpoint(self, step: int) -> Path:
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
        replace_folder(tmp, final)
        for old in self._checkpoints()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final


@dataclass(frozen=True)
class StepOutput:
    """What a model's step returns: the loss to minimise and values to log beside it (read only at log steps)."""

    loss: torch.Tensor
    logs: Mapping[str, torch.Tensor | float] = field(default_factory=dict)


@dataclass(frozen=True)
class LoopSettings:
    """How :func:`run_loop` runs.

    Args:
        steps: the run's total optimizer steps.
        checkpoint_every: checkpoint every this many steps (0: never periodically).
        log_every: log every this many steps (and at the last).
        grad_clip: the gradient norm clipped to before each update.
        checkpoint_last: also checkpoint after the last step (runs that save their final model elsewhere skip it).
        desc: the progress bar's label.
    """

    steps: int
    checkpoint_every: int
    log_every: int = 50
    grad_clip: float = 1.0
    checkpoint_last: bool = True
    desc: str = "train"


@dataclass(frozen=True)
class LoopResult:
    """Where :func:`run_loop` ended: the steps done, whether ``stop_at`` cut it short, the last step's loss."""

    steps: int
    stopped: bool
    last_loss: float


def run_loop(
    settings: LoopSettings,
    step: Callable[[int], StepOutput],
    optimizer: torch.optim.Optimizer,
    schedule: Any,
    params: list[nn.Parameter],
    checkpoints: Checkpoints,
    *,
    after_step: Callable[[int], None] | None = None,
    log_extra: Callable[[], Mapping[str, float]] | None = None,
    main: bool = True,
    progress: bool = True,
    stop_at: int | None = None,
) -> LoopResult:
    """Resume from ``checkpoints`` and run ``step`` until ``settings.steps`` optimizer steps are done.

    Each step: ``step(i)`` -> zero the gradients -> backward -> clip to ``grad_clip`` -> optimizer and schedule
    step -> ``after_step(i)``; then, on the main process, the progress bar, a log line (``loss``, the step's
    ``logs``, ``lr`` and ``log_extra()``) and a checkpoint when due.

    Args:
        settings: steps, cadences and clipping.
        step: draws step ``i``'s batch and returns its loss (and values to log).
        optimizer: the optimizer over ``params``.
        schedule: the learning-rate schedule (stepped once per optimizer step).
        params: the parameters whose gradient norm is clipped.
        checkpoints: resumed from before the first step, written to when due.
        after_step: called with the step index after the update (e.g. an EMA update).
        log_extra: values read after the update at log steps (e.g. a learned temperature).
        main: whether this process logs, checkpoints and shows progress (rank 0 under DDP).
        progress: show a progress bar.
        stop_at: stop after this many steps without finishing, as if interrupted (a later call resumes).
    """
    from tqdm.auto import tqdm

    start = checkpoints.resume()
    if main:
        checkpoints.log.truncate(start)
    bar = tqdm(total=settings.steps, initial=start, desc=settings.desc, unit="step", disable=not (progress and main))
    last = float("nan")
    for i in range(start, settings.steps):
        out = step(i)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
        optimizer.step()
        schedule.step()
        if after_step is not None:
            after_step(i)
        last = float(out.loss.detach())
        bar.update(1)
        bar.set_postfix(loss=f"{last:.4f}")
        done = i + 1
        if main and (done % settings.log_every == 0 or done == settings.steps):
            values = {"loss": last, **{k: float(v) for k, v in out.logs.items()}, "lr": schedule.get_last_lr()[0]}
            checkpoints.log.write(done, **values, **(log_extra() if log_extra else {}))
        due = settings.checkpoint_every and done % settings.checkpoint_every == 0
        if main and ((due and done < settings.steps) or (done == settings.steps and settings.checkpoint_last)):
            checkpoints.checkpoint(done)
        if stop_at is not None and stop_at <= done < settings.steps:
            bar.close()
            return LoopResult(done, True, last)
    bar.close()
    return LoopResult(settings.steps, False, last)
