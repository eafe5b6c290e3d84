"""NoisyCLIP fine-tuning on real (tiny) trajectories: what is trained, determinism, resume, DDP, targets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from noisyclip_metrics.diffusion.trajectory_store import record_trajectories
from noisyclip_metrics.errors import ConfigMismatchError, InputError, UnknownNameError
from noisyclip_metrics.scoring.model import TINY_TEST_CONFIG, NoisyCLIPModel
from noisyclip_metrics.testing import tiny_pipeline
from noisyclip_metrics.training.dataset import NEGATIVES
from noisyclip_metrics.training.trainer import TrainConfig, train

PROMPTS = [f"a {c} {s}" for c in ("red", "green", "blue") for s in ("circle", "square", "triangle")]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny store (9 prompts x 2 seeds x 4 steps) and a tiny base model saved as a checkpoint."""
    root = tmp_path_factory.mktemp("train")
    pipe = tiny_pipeline("sd", root / "pipe")
    store = record_trajectories(
        pipe,
        root / "traj",
        PROMPTS,
        seeds=[0, 1],
        num_inference_steps=4,
        height=32,
        width=32,
        batch_size=18,
        progress=False,
    )
    NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0).save_pretrained(root / "base")
    labels = {r.key: float(i % 2) for i, r in enumerate(store.records())}
    (root / "labels.json").write_text(json.dumps(labels))
    return root


def _cfg(world: Path, out: str, **kw) -> TrainConfig:
    args = {
        "init": str(world / "base"),
        "trajectories": (str(world / "traj"),),
        "out_dir": str(world / out),
        "steps": 6,
        "batch_size": 8,
        "lr": 1e-3,
        "warmup_steps": 2,
        "step_sampling": "window:1-3",
        "val_fraction": 0.3,
        "seed": 3,
        "log_every": 1,
    }
    args.update(kw)
    return TrainConfig(**args)


def _swap_red_blue(prompt: str) -> list[str]:
    """A hard-negative source for the tests (registered once under ``test-swap``; re-registering the same is fine)."""
    return [prompt.replace("red", "blue")] if "red" in prompt else []


def _weights(model: NoisyCLIPModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_trains_only_the_image_tower(world):
    result = train(_cfg(world, "run_a"), progress=False)
    base = NoisyCLIPModel.from_pretrained(world / "base")
    tuned = NoisyCLIPModel.from_pretrained(result.out_dir / "model")
    changed = {k for k, v in _weights(tuned).items() if not torch.equal(v, _weights(base)[k])}
    assert changed and all(k.startswith("clip.visual.") for k in changed)
    assert "clip.visual.proj" in changed
    log = [json.loads(line) for line in (result.out_dir / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [1, 2, 3, 4, 5, 6]
    rows = json.loads((result.out_dir / "eval.json").read_text())
    assert rows and {"step", "fraction", "recall@1", "recall@5", "pairwise_accuracy"} <= set(rows[0])


def test_deterministic_given_seed(world):
    a = train(_cfg(world, "det_a"), progress=False)
    b = train(_cfg(world, "det_b"), progress=False)
    for k, v in _weights(a.model).items():
        assert torch.equal(v, _weights(b.model)[k]), k


def test_resume_after_interruption_equals_uninterrupted(world):
    full = train(_cfg(world, "full", checkpoint_every=2), progress=False)
    assert train(_cfg(world, "resumed", checkpoint_every=2), progress=False, stop_at=4) is None
    assert (world / "resumed" / "checkpoints" / "step-000004" / "state.pt").is_file()
    resumed = train(_cfg(world, "resumed", checkpoint_every=2), progress=False)
    for k, v in _weights(full.model).items():  # bit for bit, as the world build's determinism promises
        assert torch.equal(v, _weights(resumed.model)[k]), k


def test_resume_past_the_last_checkpoint_logs_every_step_once(world):
    # killed at step 5, after the checkpoint of step 4: the log holds step 5, which the resumed run replays
    assert train(_cfg(world, "relog", checkpoint_every=2), progress=False, stop_at=5) is None
    lines = (world / "relog" / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 4, 5]
    (world / "relog" / "log.jsonl").write_text("\n".join(lines) + '\n{"step": 6, "lo')  # and a line cut by the kill
    train(_cfg(world, "relog", checkpoint_every=2), progress=False)
    steps = [json.loads(x)["step"] for x in (world / "relog" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_checkpoint_records_the_seeds_and_prompts_it_was_trained_on(world):
    from noisyclip_metrics.provenance import describe_training_data, prompt_overlap, seed_overlap

    result = train(_cfg(world, "trained_on"), progress=False)
    record = NoisyCLIPModel.from_pretrained(result.out_dir / "model").config.trained_on
    assert record == describe_training_data([0, 1], PROMPTS)
    assert seed_overlap(record, [0, 1, 2]) == [0, 1] and prompt_overlap(record, [*PROMPTS[:2], "a cat"]) == PROMPTS[:2]


def test_device_auto_trains_where_it_can_and_may_change_on_resume(world):
    reference = train(_cfg(world, "dev_ref"), progress=False)
    assert train(_cfg(world, "dev_auto", device="auto", checkpoint_every=1), progress=False, stop_at=3) is None
    resumed = train(_cfg(world, "dev_auto", device="cpu", checkpoint_every=1), progress=False)  # device may change
    for k, v in _weights(reference.model).items():  # without CUDA, "auto" is the CPU: the same weights
        assert torch.equal(v, _weights(resumed.model)[k]) or torch.cuda.is_available(), k
    with pytest.raises(InputError, match="device: expected a torch device"):
        _cfg(world, "x", device="gpu")


def test_resume_with_another_config_is_refused(world):
    train(_cfg(world, "mismatch"), progress=False, stop_at=1)
    with pytest.raises(ConfigMismatchError, match="lr"):
        train(_cfg(world, "mismatch", lr=5e-4), progress=False)


def test_filtered_and_distill_targets(world):
    NEGATIVES.register("test-swap", _swap_red_blue)
    filtered = train(
        _cfg(world, "filtered", target="filtered", labels=str(world / "labels.json"), negatives="test-swap"),
        progress=False,
    )
    assert filtered.final_loss == filtered.final_loss
    distill = train(_cfg(world, "distill", target="distill", negatives="test-swap", read="x0"), progress=False)
    assert distill.final_loss == distill.final_loss
    # the checkpoint records what its tower reads, so only the matching scorer accepts it
    saved = NoisyCLIPModel.from_pretrained(world / "distill" / "model")
    assert saved.config.reads == "x0" and filtered.model.config.reads == "latents"


def test_rank_loss_orders_seeds_of_one_prompt_by_their_labels():
    import torch.nn.functional as F

    from noisyclip_metrics.training.targets import TargetBatch, judged_loss, rank_loss

    g = torch.Generator().manual_seed(0)
    image = F.normalize(torch.randn(4, 8, generator=g), dim=1).requires_grad_(True)
    texts = F.normalize(torch.randn(3, 8, generator=g), dim=1)  # 2 prompts + 1 hard negative

    def batch(labels):
        return TargetBatch(
            image=image,
            texts=texts,
            prompt_index=torch.tensor([0, 0, 1, 1]),
            num_prompts=2,
            logit_scale=10.0,
            teacher_image=image.detach(),
            labels=torch.tensor(labels),
        )

    s = 10.0 * (image * texts[torch.tensor([0, 0, 1, 1])]).sum(1)
    # prompt 0: seed 1 judged better than seed 0; prompt 1: a tie, no pair
    expected = F.softplus(s[0] - s[1])
    torch.testing.assert_close(rank_loss(batch([0.0, 1.0, 0.5, 0.5])), expected)
    both = (F.softplus(s[0] - s[1]) + F.softplus(s[3] - s[2])) / 2
    torch.testing.assert_close(rank_loss(batch([0.0, 1.0, 1.0, 0.0])), both)
    none = rank_loss(batch([1.0, 1.0, 0.0, 0.0]))
    assert float(none.detach()) == 0.0 and none.requires_grad
    (-rank_loss(batch([0.0, 1.0, 0.5, 0.5]))).backward()  # descending would raise s_0 - s_1
    assert image.grad is not None and float(image.grad[1] @ texts[0]) > 0
    assert float(judged_loss(batch([0.0, 1.0, 0.5, 0.5])).detach()) > float(expected.detach())


def test_judged_target_trains_on_pairs_of_seeds(world):
    NEGATIVES.register("test-swap", _swap_red_blue)
    kw = {"negatives": "test-swap", "read": "x0", "labels": str(world / "labels.json")}
    judged = train(_cfg(world, "judged", target="judged", **kw), progress=False)
    again = train(_cfg(world, "judged2", target="judged", **kw), progress=False)
    distill = train(_cfg(world, "distill_l", target="distill", **kw), progress=False)
    for k, v in _weights(judged.model).items():
        assert torch.equal(v, _weights(again.model)[k]), k
    assert any(not torch.equal(v, _weights(distill.model)[k]) for k, v in _weights(judged.model).items())
    with pytest.raises(InputError, match="needs labels"):
        _cfg(world, "x", target="judged")
    with pytest.raises(InputError, match="batch_size divisible by 2, got batch_size 7"):
        train(_cfg(world, "odd", target="judged", batch_size=7, **kw), progress=False)


def test_listwise_loss_is_the_cross_entropy_to_the_judges_softmax_per_prompt():
    import torch.nn.functional as F

    from noisyclip_metrics.training.targets import LISTWISE_TEMPERATURE, TargetBatch, listwise_loss

    g = torch.Generator().manual_seed(1)
    image = F.normalize(torch.randn(5, 8, generator=g), dim=1).requires_grad_(True)
    texts = F.normalize(torch.randn(3, 8, generator=g), dim=1)
    index = torch.tensor([0, 0, 0, 1, 2])  # prompt 0: three seeds; prompts 1 and 2: one each (no term)
    labels = torch.tensor([0.2, 1.0, 0.6, 0.0, 1.0])
    batch = TargetBatch(image=image, texts=texts, prompt_index=index, num_prompts=3, logit_scale=10.0, labels=labels)
    s = 10.0 * (image[:3] * texts[0]).sum(1)
    expected = -(F.softmax(labels[:3] / LISTWISE_TEMPERATURE, 0) * F.log_softmax(s, 0)).sum()
    torch.testing.assert_close(listwise_loss(batch), expected)
    listwise_loss(batch).backward()  # descending raises the judge's best seed (1) against its prompt
    assert float(image.grad[1] @ texts[0]) < 0
    single = TargetBatch(
        image=image,
        texts=texts,
        prompt_index=torch.tensor([0, 1, 2, 0, 1]),
        num_prompts=3,
        logit_scale=10.0,
        labels=labels,
    )
    pair = -(
        F.softmax(labels[[0, 3]] / LISTWISE_TEMPERATURE, 0) * F.log_softmax(10.0 * (image[[0, 3]] * texts[0]).sum(1), 0)
    ).sum()
    pair2 = -(
        F.softmax(labels[[1, 4]] / LISTWISE_TEMPERATURE, 0) * F.log_softmax(10.0 * (image[[1, 4]] * texts[1]).sum(1), 0)
    ).sum()
    torch.testing.assert_close(listwise_loss(single), (pair + pair2) / 2)  # prompt 2 alone: no term
    alone = TargetBatch(
        image=image[:2],
        texts=texts,
        prompt_index=torch.tensor([0, 1]),
        num_prompts=3,
        logit_scale=10.0,
        labels=labels[:2],
    )
    assert float(listwise_loss(alone).detach()) == 0.0


def test_listwise_target_trains_on_groups_of_four_seeds_read_at_one_step(world, tmp_path, monkeypatch):
    from noisyclip_metrics.training.dataset import TrajectorySource

    NEGATIVES.register("test-swap", _swap_red_blue)
    kw = {"negatives": "test-swap", "read": "x0"}
    with pytest.raises(InputError, match="prompts with >= 4 seeds"):  # the module world has 2 seeds per prompt
        train(_cfg(world, "lw2", target="listwise", labels=str(world / "labels.json"), **kw), progress=False)
    pipe = tiny_pipeline("sd", tmp_path / "pipe")
    store = record_trajectories(
        pipe,
        tmp_path / "traj4",
        PROMPTS[:4],
        seeds=[0, 1, 2, 3],
        num_inference_steps=4,
        height=32,
        width=32,
        batch_size=16,
        progress=False,
    )
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({r.key: float(i % 3) / 2 for i, r in enumerate(store.records())}))
    calls = []
    original = TrajectorySource.latents

    def spy(self, idx, ks):
        calls.append((list(idx), list(ks)))
        return original(self, idx, ks)

    monkeypatch.setattr(TrajectorySource, "latents", spy)
    cfg = dict(trajectories=(str(tmp_path / "traj4"),), labels=str(labels), val_fraction=0.0, **kw)
    one = train(_cfg(world, "lw_a", target="listwise", out_dir=str(tmp_path / "a"), **cfg), progress=False)
    assert len(calls) == 6
    source = TrajectorySource([str(tmp_path / "traj4")], read="x0")
    for idx, ks in calls:
        for lo in range(0, 8, 4):  # each group: four distinct seeds of one prompt, at one step
            group = [source.records[i] for i in idx[lo : lo + 4]]
            assert len({r.prompt_id for r in group}) == 1 and len({r.seed for r in group}) == 4
            assert len(set(ks[lo : lo + 4])) == 1
    two = train(_cfg(world, "lw_b", target="listwise", out_dir=str(tmp_path / "b"), **cfg), progress=False)
    judged = train(_cfg(world, "lw_j", target="judged", out_dir=str(tmp_path / "j"), **cfg), progress=False)
    for k, v in _weights(one.model).items():
        assert torch.equal(v, _weights(two.model)[k]), k
    assert any(not torch.equal(v, _weights(judged.model)[k]) for k, v in _weights(one.model).items())
    with pytest.raises(InputError, match="batch_size divisible by 4, got batch_size 6"):
        train(_cfg(world, "lw6", target="listwise", out_dir=str(tmp_path / "c"), batch_size=6, **cfg), progress=False)


def test_curriculum_goes_from_clean_to_noisy_steps_over_training(world, monkeypatch):
    """``curriculum:1-2`` with T = 4 over 6 steps: the first step shows only the clean latent (k = 4), the last only
    the window 1..2, the steps between a window that moves down; the steps it saw are the ones drawn."""
    from noisyclip_metrics.training.dataset import TrajectorySource

    calls = []
    original = TrajectorySource.latents

    def spy(self, idx, ks):
        calls.append(list(ks))
        return original(self, idx, ks)

    monkeypatch.setattr(TrajectorySource, "latents", spy)
    train(_cfg(world, "curriculum", step_sampling="curriculum:1-2", val_fraction=0.0), progress=False)
    assert len(calls) == 6
    assert set(calls[0]) == {4} and set(calls[-1]) <= {1, 2}
    lows = [min(ks) for ks in calls]
    assert lows == sorted(lows, reverse=True) and lows[0] > lows[-1]  # never back towards clean
    calls.clear()
    train(_cfg(world, "window", step_sampling="window:1-2", val_fraction=0.0), progress=False)
    assert not any(4 in ks for ks in calls)  # the control: a window ignores the progress


def test_trainable_preview_map_moves(world):
    result = train(_cfg(world, "preview", train_preview=True), progress=False)
    base = NoisyCLIPModel.from_pretrained(world / "base")
    assert not torch.equal(result.model.preview_weight, base.preview_weight)


def test_noise_conditioned_tower_trains_its_embedding_and_reads_each_steps_level(world, monkeypatch):
    from noisyclip_metrics.diffusion.trajectory_store import TrajectoryStore
    from noisyclip_metrics.training.dataset import TrajectorySource

    shown: list[torch.Tensor] = []
    original = TrajectorySource.noise_std
    monkeypatch.setattr(
        TrajectorySource, "noise_std", lambda self, i, k: shown.append(original(self, i, k)) or shown[-1]
    )
    result = train(_cfg(world, "noise", noise_conditioned=True), progress=False)
    base = NoisyCLIPModel.from_pretrained(world / "base")
    tuned = NoisyCLIPModel.from_pretrained(result.out_dir / "model")
    assert tuned.config.noise_conditioned and not base.config.noise_conditioned
    changed = {
        k for k, v in _weights(tuned).items() if k not in _weights(base) or not torch.equal(v, _weights(base)[k])
    }
    assert any(k.startswith("noise_embedding.") for k in changed) and "clip.visual.proj" in changed
    assert all(k.startswith(("clip.visual.", "noise_embedding.")) for k in changed)
    # every training batch came with the levels of its steps (window 1-3 of 4), and evaluation too
    levels = TrajectoryStore.open(world / "traj").noise_std()
    assert len(shown) > 6 and all(set(s.tolist()) <= set(levels.tolist()) for s in shown)
    assert set(torch.cat(shown[:6]).tolist()) <= set(levels[1:4].tolist())
    # the trained tower scores one latent differently at different levels
    z = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    low, high = (tuned.score_latents(z, PROMPTS[:2], noise_std=v) for v in (float(levels[3]), float(levels[1])))
    assert not torch.allclose(low, high)


def test_config_errors(world):
    with pytest.raises(InputError, match="needs labels"):
        _cfg(world, "x", target="filtered")
    with pytest.raises(UnknownNameError, match="did you mean 'distill'"):
        _cfg(world, "x", target="distil")
    with pytest.raises(UnknownNameError, match="step-sampling"):
        _cfg(world, "x", step_sampling="windw:1-2")
    with pytest.raises(InputError, match=r"outside 0..4"):
        train(_cfg(world, "x", step_sampling="window:2-9"), progress=False)
    with pytest.raises(InputError, match="steps"):
        _cfg(world, "x", steps=0)


_DDP = textwrap.dedent(
    """
    import sys
    from noisyclip_metrics.training.trainer import TrainConfig, train
    # plain SGD without clipping: a wrong gradient scale across ranks would show up as a wrong update size
    cfg = TrainConfig(init=sys.argv[1], trajectories=(sys.argv[2],), out_dir=sys.argv[3], steps=4, batch_size=8,
                      lr=0.5, warmup_steps=1, step_sampling="window:1-3", val_fraction=0.3, seed=5, num_threads=1,
                      optimizer="sgd", grad_clip=1e9)
    train(cfg, progress=False)
    """
)


# DDP averages the two ranks' half-batch gradients where one process sums the whole batch: the same sums in another
# order, so each of the 4 SGD updates differs by a few float32 ulps of the weights (|w| < 4 here, ulp(4) = 4.8e-7).
# Measured 3.0e-7 with AVX-512 kernels and 1.8e-7 with ATEN_CPU_CAPABILITY=default (AMD EPYC). 32 ulps of 4 bounds
# that with a wide margin, while a wrong gradient scale across ranks (a sum instead of a mean) changes the update by
# as much as the update itself, up to 0.9 here: four orders of magnitude above the tolerance. Negative control: with
# the DDP wrapper disabled in the trainer (each rank trains on its own half), the weights differ by up to 1.7.
DDP_ATOL = 32 * torch.finfo(torch.float32).eps * 4.0


@pytest.mark.slow
def test_ddp_two_processes_equals_single_process(world, tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(_DDP)
    args = [str(world / "base"), str(world / "traj")]
    port = str(29600 + os.getpid() % 1000)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node=2",
            f"--master-port={port}",
            str(script),
            *args,
            str(tmp_path / "ddp"),
        ],
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )
    subprocess.run(
        [sys.executable, str(script), *args, str(tmp_path / "single")],
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )
    ddp = NoisyCLIPModel.from_pretrained(tmp_path / "ddp" / "model")
    single = NoisyCLIPModel.from_pretrained(tmp_path / "single" / "model")
    base = _weights(NoisyCLIPModel.from_pretrained(world / "base"))
    moved = 0.0
    for k, v in _weights(single).items():
        assert float(v.abs().max()) < 4.0, k  # the bound DDP_ATOL is derived from
        torch.testing.assert_close(_weights(ddp)[k], v, atol=DDP_ATOL, rtol=0)
        moved = max(moved, float((v - base[k]).abs().max()))
    assert moved > 1000 * DDP_ATOL  # the runs really trained: a wrong update scale could not hide in the tolerance
