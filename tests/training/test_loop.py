"""The one training loop: resume equals no resume (EMA included), logs without duplicates, checkpoint cadence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from noisyclip_metrics.errors import ConfigMismatchError
from noisyclip_metrics.training.loop import (
    EMA,
    FolderCheckpoints,
    LoopSettings,
    StepLog,
    StepOutput,
    run_loop,
    step_generator,
    warmup_cosine,
)


def _run(folder: Path, steps: int = 6, stop_at: int | None = None, every: int = 2, **kw) -> tuple[torch.nn.Module, EMA]:
    """A tiny regression trained by ``run_loop``; rebuilt from the same seed on every call, as a restarted process."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    opt = torch.optim.AdamW(net.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(steps, 2))
    ema = EMA(net, 0.9)
    store = FolderCheckpoints(folder, {"steps": steps}, {"net": net}, opt, sched, ema=ema)

    def step(i: int) -> StepOutput:
        g = step_generator(7, i)
        x = torch.randn(16, 3, generator=g)
        err = net(x) - x.prod(1, keepdim=True)
        return StepOutput((err**2).mean(), {"bias": err.mean().detach()})

    settings = LoopSettings(steps, every, log_every=1, desc="test")
    params = list(net.parameters())
    run_loop(settings, step, opt, sched, params, store, after_step=lambda i: ema.update(net, i), stop_at=stop_at, **kw)
    return net, ema


def _log_steps(folder: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (folder / "log.jsonl").read_text().splitlines()]


def test_resumed_run_equals_the_uninterrupted_one_bit_for_bit(tmp_path):
    full, full_ema = _run(tmp_path / "full", progress=False)
    _run(tmp_path / "cut", stop_at=3, progress=False)  # killed after step 3, whose checkpoint is step 2
    assert sorted(p.name for p in (tmp_path / "cut").glob("ckpt-*")) == ["ckpt-0000002"]
    resumed, resumed_ema = _run(tmp_path / "cut", progress=False)
    for (k, v), w in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(v, w), k
    for k, v in full_ema.shadow.items():
        assert torch.equal(v, resumed_ema.shadow[k]), k
    line = json.loads((tmp_path / "full" / "log.jsonl").read_text().splitlines()[-1])
    assert {"step", "seconds", "loss", "bias", "lr"} <= set(line)


def test_resuming_logs_the_replayed_steps_once(tmp_path, monkeypatch):
    _run(tmp_path / "a", stop_at=3, progress=False)
    assert _log_steps(tmp_path / "a") == [1, 2, 3]
    with (tmp_path / "a" / "log.jsonl").open("a") as fh:
        fh.write('{"step": 4, "lo')  # a line cut by the kill
    _run(tmp_path / "a", progress=False)
    assert _log_steps(tmp_path / "a") == [1, 2, 3, 4, 5, 6]
    # without the truncation, step 3 (replayed from the checkpoint of step 2) is logged twice
    monkeypatch.setattr(StepLog, "truncate", lambda self, step: None)
    _run(tmp_path / "b", stop_at=3, progress=False)
    _run(tmp_path / "b", progress=False)
    assert _log_steps(tmp_path / "b") == [1, 2, 3, 3, 4, 5, 6]


def test_checkpoint_cadence_and_non_main_processes(tmp_path):
    _run(tmp_path / "last", steps=5, every=2, progress=False)
    assert sorted(p.name for p in (tmp_path / "last").glob("ckpt-*")) == ["ckpt-0000004", "ckpt-0000005"]
    _run(tmp_path / "quiet", steps=5, every=2, progress=False, main=False)
    assert not list((tmp_path / "quiet").glob("ckpt-*")) and not (tmp_path / "quiet" / "log.jsonl").exists()


def test_another_configuration_is_refused(tmp_path):
    _run(tmp_path / "a", steps=4, progress=False)
    with pytest.raises(ConfigMismatchError, match="another configuration"):
        _run(tmp_path / "a", steps=6, progress=False)
