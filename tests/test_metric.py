"""Invariants of NoisyCLIPScore / noisyclip_score: the properties any torchmetrics metric must hold."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from noisyclip_metrics.errors import InputError, UnknownNameError
from noisyclip_metrics.functional import noisyclip_score
from noisyclip_metrics.metric import NoisyCLIPScore


def _reference(model, latents, prompts):
    """Direct definition: cosine of normalised embeddings, CLIPScore aggregation."""
    img = torch.nn.functional.normalize(model.clip.encode_image(model._prepare_images(model.make_preview(latents))), dim=-1)
    txt = torch.nn.functional.normalize(model.clip.encode_text(model.tokenize(prompts)), dim=-1)
    cos = (img * txt).sum(-1)
    return cos, max(100 * cos.mean(), torch.tensor(0.0))


def test_functional_matches_reference(tiny_model, latents, prompts):
    with torch.no_grad():
        ref_cos, ref_score = _reference(tiny_model, latents, prompts)
    cos = noisyclip_score(latents, prompts, tiny_model, reduction="none")
    assert cos.shape == (6,)
    torch.testing.assert_close(cos, ref_cos, atol=1e-6, rtol=0)
    torch.testing.assert_close(noisyclip_score(latents, prompts, tiny_model), ref_score.float(), atol=1e-5, rtol=0)


def test_class_equals_functional(tiny_model, latents, prompts):
    metric = NoisyCLIPScore(tiny_model)
    metric.update(latents, prompts)
    torch.testing.assert_close(metric.compute(), noisyclip_score(latents, prompts, tiny_model), atol=1e-5, rtol=0)


def test_split_batches_equal_one_batch(tiny_model, latents, prompts):
    one = NoisyCLIPScore(tiny_model)
    one.update(latents, prompts)
    split = NoisyCLIPScore(tiny_model)
    for lo, hi in [(0, 1), (1, 4), (4, 6)]:
        split.update(latents[lo:hi], prompts[lo:hi])
    torch.testing.assert_close(split.compute(), one.compute(), atol=1e-5, rtol=0)


def test_aggregate_clamps_at_zero(tiny_model, latents, prompts):
    metric = NoisyCLIPScore(tiny_model)
    metric.score_sum = torch.tensor(-3.0, dtype=torch.float64)
    metric.n_samples = torch.tensor(2)
    metric._update_count = 1
    assert float(metric.compute()) == 0.0


def test_reset(tiny_model, latents, prompts):
    metric = NoisyCLIPScore(tiny_model)
    metric.update(latents, prompts)
    metric.reset()
    assert int(metric.n_samples) == 0 and float(metric.score_sum) == 0.0
    metric.update(latents[:2], prompts[:2])
    torch.testing.assert_close(metric.compute(), noisyclip_score(latents[:2], prompts[:2], tiny_model), atol=1e-5, rtol=0)


def test_merge_state(tiny_model, latents, prompts):
    a, b = NoisyCLIPScore(tiny_model), NoisyCLIPScore(tiny_model)
    a.update(latents[:3], prompts[:3])
    b.update(latents[3:], prompts[3:])
    a.merge_state(b)
    torch.testing.assert_close(a.compute(), noisyclip_score(latents, prompts, tiny_model), atol=1e-5, rtol=0)


def test_forward_returns_batch_value_and_accumulates(tiny_model, latents, prompts):
    metric = NoisyCLIPScore(tiny_model)
    first = metric(latents[:3], prompts[:3])
    torch.testing.assert_close(first, noisyclip_score(latents[:3], prompts[:3], tiny_model), atol=1e-5, rtol=0)
    metric(latents[3:], prompts[3:])
    torch.testing.assert_close(metric.compute(), noisyclip_score(latents, prompts, tiny_model), atol=1e-5, rtol=0)


def test_pickling_round_trip(tiny_model, latents, prompts):
    metric = NoisyCLIPScore(tiny_model)
    metric.update(latents[:3], prompts[:3])
    clone = pickle.loads(pickle.dumps(metric))
    clone.update(latents[3:], prompts[3:])
    metric.update(latents[3:], prompts[3:])
    torch.testing.assert_close(clone.compute(), metric.compute(), atol=1e-6, rtol=0)


def test_class_attributes():
    assert NoisyCLIPScore.higher_is_better is True
    assert NoisyCLIPScore.is_differentiable is False
    assert NoisyCLIPScore.full_state_update is False
    assert (NoisyCLIPScore.plot_lower_bound, NoisyCLIPScore.plot_upper_bound) == (0.0, 100.0)


def test_plot(tiny_model, latents, prompts):
    metric = NoisyCLIPScore(tiny_model)
    values = []
    for lo in range(0, 6, 2):
        values.append(metric(latents[lo : lo + 2], prompts[lo : lo + 2]))
    fig, ax = metric.plot(values)
    assert ax.get_ylim()[0] <= 0.0 + 1e-9


def test_state_is_empty_in_state_dict_of_states(tiny_model):
    # metric states are not persistent by default (torchmetrics convention)
    sd = NoisyCLIPScore(tiny_model).state_dict()
    assert "score_sum" not in sd and "n_samples" not in sd


def test_timesteps_scale_sigma_latents(tiny_model, latents, prompts):
    from diffusers import EulerDiscreteScheduler

    sched = EulerDiscreteScheduler()
    t = torch.full((6,), 999.0)
    scaled = noisyclip_score(latents, prompts, tiny_model, timesteps=t, scheduler=sched, reduction="none")
    sigma = ((1 - sched.alphas_cumprod[999]) / sched.alphas_cumprod[999]).sqrt()
    manual = noisyclip_score(latents / (sigma**2 + 1).sqrt(), prompts, tiny_model, reduction="none")
    torch.testing.assert_close(scaled, manual, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("latents_fn", "prompts", "match"),
    [
        (lambda: torch.randn(2, 4, 16), ["a", "b"], "4-D"),
        (lambda: torch.randn(2, 3, 16, 16), ["a", "b"], "4 channels"),
        (lambda: torch.randint(0, 3, (2, 4, 16, 16)), ["a", "b"], "floating-point"),
        (lambda: torch.full((2, 4, 16, 16), float("nan")), ["a", "b"], "NaN"),
        (lambda: torch.randn(2, 4, 16, 16), ["a"], "expected 2 prompts"),
        (lambda: torch.randn(2, 4, 16, 16), [], "empty"),
        (lambda: torch.randn(2, 4, 16, 16), ["a", 3], "expected strings"),
    ],
)
def test_bad_input_names_the_argument(tiny_model, latents_fn, prompts, match):
    metric = NoisyCLIPScore(tiny_model)
    with pytest.raises(InputError, match=match):
        metric.update(latents_fn(), prompts)
    with pytest.raises(InputError, match=match):
        noisyclip_score(latents_fn(), prompts, tiny_model)


def test_bad_timesteps_length(tiny_model, latents, prompts):
    with pytest.raises(InputError, match="timesteps: expected one value or 6"):
        noisyclip_score(latents, prompts, tiny_model, timesteps=torch.ones(4))


def test_bad_reduction_and_scorer(tiny_model, latents, prompts):
    with pytest.raises(InputError, match="reduction"):
        noisyclip_score(latents, prompts, tiny_model, reduction="sum")
    with pytest.raises(UnknownNameError, match="did you mean 'noisyclip'"):
        NoisyCLIPScore(tiny_model, scorer="noisyclp")


# ----------------------------------------------------------------------------------------- distributed, 2 processes
_WORKER = textwrap.dedent(
    """
    import os, sys, torch, torch.distributed as dist
    from noisyclip_metrics.metric import NoisyCLIPScore
    from noisyclip_metrics.model import NoisyCLIPModel, TINY_TEST_CONFIG
    rank = int(os.environ["RANK"])
    dist.init_process_group("gloo", rank=rank, world_size=2)
    model = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0)
    latents = torch.randn(6, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    prompts = ["a red cube", "two blue spheres", "a red cube", "a green cone", "three yellow stars", "a dog"]
    metric = NoisyCLIPScore(model)
    rows = [0, 1, 2, 3] if rank == 0 else [4, 5]  # uneven shards
    metric.update(latents[rows], [prompts[i] for i in rows])
    value = metric.compute()
    if rank == 0:
        single = NoisyCLIPScore(model, sync_on_compute=False)
        single.update(latents, prompts)
        print("RESULT", float(value), float(single.compute()))
    dist.destroy_process_group()
    """
)


@pytest.mark.slow
def test_distributed_sync_two_processes_equals_single_process(tmp_path: Path):
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(29500 + os.getpid() % 1000), "WORLD_SIZE": "2"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script)], env={**env, "RANK": str(r)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    line = next(line for line in outs[0][0].splitlines() if line.startswith("RESULT"))
    synced, single = map(float, line.split()[1:])
    assert abs(synced - single) < 1e-4
