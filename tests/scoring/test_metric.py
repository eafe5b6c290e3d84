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
from noisyclip_metrics.scoring.functional import noisyclip_score
from noisyclip_metrics.scoring.metric import NoisyCLIPScore

EPS32 = torch.finfo(torch.float32).eps
# Tolerances, from float32 and the value range. A cosine is in [-1, 1] and computed in float32; scoring the same
# latents in a different batch composition (or through a different but equivalent code path) changes the float32
# reduction order inside the towers and moves each cosine by a few ulps of 1 (measured on the tiny model: 0.2 ulp).
# 64 ulps of 1 bounds that with a wide margin. A score is 100 * mean cosine, hence 100 times that. Where the two sides
# are computed from the same batches by the same code, the test asserts bitwise equality instead.
COS_ATOL = 64 * EPS32  # 7.6e-6
SCORE_ATOL = 100 * COS_ATOL  # 7.6e-4 points, on scores of about 5 to 16 points here

# The suite-wide prompts score negative on the shared latents (mean cosine -0.04): every aggregate would clamp to 0,
# and comparing two aggregates would compare 0 with 0 whatever they computed. On these the seeded tiny model's
# cosines are all positive (+0.046 to +0.163, mean +0.077; test_aggregates_compared_here_are_not_clamped).
POSITIVE_PROMPTS = [
    "a yellow square",
    "two green cones",
    "a yellow square",
    "a yellow square",
    "two green cones",
    "a yellow square",
]


@pytest.fixture()
def prompts() -> list[str]:
    """This module's prompts: positive cosines on the shared ``latents``, so aggregates are not clamped to 0."""
    return list(POSITIVE_PROMPTS)


def test_aggregates_compared_here_are_not_clamped(tiny_model, latents, prompts):
    """Precondition of the comparisons below: every sub-batch's mean cosine is clearly positive."""
    cos = noisyclip_score(latents, prompts, tiny_model, reduction="none")
    assert bool((cos > 0.02).all()), cos  # so any subset's aggregate is above 2 points, far from the clamp


def _reference(model, latents, prompts):
    """Direct definition: cosine of normalised embeddings, CLIPScore aggregation."""
    img = torch.nn.functional.normalize(
        model.clip.encode_image(model._prepare_images(model.make_preview(latents))), dim=-1
    )
    txt = torch.nn.functional.normalize(model.clip.encode_text(model.tokenize(prompts)), dim=-1)
    cos = (img * txt).sum(-1)
    return cos, max(100 * cos.mean(), torch.tensor(0.0))


def test_functional_matches_reference(tiny_model, latents, prompts):
    with torch.no_grad():
        ref_cos, ref_score = _reference(tiny_model, latents, prompts)
    cos = noisyclip_score(latents, prompts, tiny_model, reduction="none")
    assert cos.shape == (6,)
    torch.testing.assert_close(cos, ref_cos, atol=COS_ATOL, rtol=0)
    torch.testing.assert_close(
        noisyclip_score(latents, prompts, tiny_model), ref_score.float(), atol=SCORE_ATOL, rtol=0
    )


def test_class_equals_functional(tiny_model, latents, prompts):
    metric = NoisyCLIPScore(tiny_model)
    metric.update(latents, prompts)
    # the same batch; the class sums in float64, the function in float32: a few ulps of the score apart
    torch.testing.assert_close(metric.compute(), noisyclip_score(latents, prompts, tiny_model), atol=SCORE_ATOL, rtol=0)


def test_split_batches_equal_one_batch(tiny_model, latents, prompts):
    one = NoisyCLIPScore(tiny_model)
    one.update(latents, prompts)
    split = NoisyCLIPScore(tiny_model)
    for lo, hi in [(0, 1), (1, 4), (4, 6)]:
        split.update(latents[lo:hi], prompts[lo:hi])
    torch.testing.assert_close(split.compute(), one.compute(), atol=SCORE_ATOL, rtol=0)  # other batch composition


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
    expected = noisyclip_score(latents[:2], prompts[:2], tiny_model)
    torch.testing.assert_close(metric.compute(), expected, atol=SCORE_ATOL, rtol=0)


def test_merge_state(tiny_model, latents, prompts):
    a, b = NoisyCLIPScore(tiny_model), NoisyCLIPScore(tiny_model)
    a.update(latents[:3], prompts[:3])
    b.update(latents[3:], prompts[3:])
    a.merge_state(b)
    torch.testing.assert_close(a.compute(), noisyclip_score(latents, prompts, tiny_model), atol=SCORE_ATOL, rtol=0)


def test_forward_returns_batch_value_and_accumulates(tiny_model, latents, prompts):
    metric = NoisyCLIPScore(tiny_model)
    first = metric(latents[:3], prompts[:3])
    torch.testing.assert_close(first, noisyclip_score(latents[:3], prompts[:3], tiny_model), atol=SCORE_ATOL, rtol=0)
    metric(latents[3:], prompts[3:])
    torch.testing.assert_close(metric.compute(), noisyclip_score(latents, prompts, tiny_model), atol=SCORE_ATOL, rtol=0)


def test_pickling_round_trip(tiny_model, latents, prompts):
    metric = NoisyCLIPScore(tiny_model)
    metric.update(latents[:3], prompts[:3])
    clone = pickle.loads(pickle.dumps(metric))
    clone.update(latents[3:], prompts[3:])
    metric.update(latents[3:], prompts[3:])
    assert torch.equal(clone.compute(), metric.compute())  # the same batches through the same code: bit for bit


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
    _fig, ax = metric.plot(values)
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
    torch.testing.assert_close(scaled, manual, atol=COS_ATOL, rtol=0)  # x * scale vs x / sqrt(sigma^2 + 1)


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
    import os, torch, torch.distributed as dist
    from noisyclip_metrics.scoring.metric import NoisyCLIPScore
    from noisyclip_metrics.scoring.model import NoisyCLIPModel, TINY_TEST_CONFIG
    torch.set_num_threads(1)  # both processes, and the references below, compute with the same kernels
    rank = int(os.environ["RANK"])
    dist.init_process_group("gloo", rank=rank, world_size=2)
    model = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0)
    latents = torch.randn(6, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    prompts = PROMPTS
    shards = [[0, 1, 2, 3], [4, 5]]  # uneven: 4 samples on rank 0, 2 on rank 1
    rows = shards[rank]
    synced = NoisyCLIPScore(model)  # torchmetrics' default, sync_on_compute=True
    unsynced = NoisyCLIPScore(model, sync_on_compute=False)  # the negative control: the same code, sync off
    for metric in (synced, unsynced):
        metric.update(latents[rows], [prompts[i] for i in rows])
    print("RANK", rank, repr(float(synced.compute())), repr(float(unsynced.compute())))
    if rank == 0:  # single-process references
        same = NoisyCLIPScore(model, sync_on_compute=False)  # the same two batches, in one process
        for r in shards:
            same.update(latents[r], [prompts[i] for i in r])
        whole = NoisyCLIPScore(model, sync_on_compute=False)  # one batch of 6
        whole.update(latents, prompts)
        print("SINGLE", repr(float(same.compute())), repr(float(whole.compute())))
    dist.destroy_process_group()
    """
).replace("PROMPTS", repr(POSITIVE_PROMPTS))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_two_ranks(tmp_path: Path) -> tuple[dict[int, tuple[float, float]], float, float]:
    """({rank: (synced value, unsynced value)}, same-batches single-process value, one-batch single-process value)."""
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": "2"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script)],
            env={**env, "RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    lines = [line.split() for out, _ in outs for line in out.splitlines()]
    ranks = {int(w[1]): (float(w[2]), float(w[3])) for w in lines if w[0] == "RANK"}
    same, whole = next(map(float, w[1:]) for w in lines if w[0] == "SINGLE")
    return ranks, same, whole


def _assert_every_rank_has_the_single_process_value(values: dict[int, float], same: float, whole: float) -> None:
    """What sync must give: on every rank, the value of one process that saw all the data."""
    assert sorted(values) == [0, 1]
    for rank, value in values.items():
        # the same batches: float64 sums of the same float32 batch sums, so bit for bit
        assert value == same, f"rank {rank}: {value!r} != single process, same batches {same!r}"
        # one batch of 6: other float32 reduction orders inside the towers (SCORE_ATOL)
        assert abs(value - whole) <= SCORE_ATOL, f"rank {rank}: {value!r} != single process, one batch {whole!r}"


@pytest.mark.slow
def test_distributed_sync_two_processes_equals_single_process(tmp_path: Path):
    ranks, same, whole = _run_two_ranks(tmp_path)
    synced = {rank: v[0] for rank, v in ranks.items()}
    unsynced = {rank: v[1] for rank, v in ranks.items()}  # each rank's own shard
    # the data can tell sync from no sync: no value is clamped, and each shard's value, and the unweighted mean of
    # the two (what a sync that averaged per-rank scores would give), is far from the value over all the data
    margin = 1000 * SCORE_ATOL
    assert min(whole, *unsynced.values()) > 2.0, (whole, unsynced)
    for wrong in (*unsynced.values(), (unsynced[0] + unsynced[1]) / 2):
        assert abs(wrong - whole) > margin, (wrong, whole)
    _assert_every_rank_has_the_single_process_value(synced, same, whole)
    # negative control: the same two-process code with sync disabled fails the same assertion
    with pytest.raises(AssertionError, match="!= single process"):
        _assert_every_rank_has_the_single_process_value(unsynced, same, whole)


def test_compute_before_any_update_is_nan_as_documented(tiny_model, latents, prompts):
    """Docstring and behaviour agree: no sample seen -> NaN with torchmetrics' warning (its CLIPScore returns NaN
    there too), never a number in [0, 100] that no sample produced; after an update, a value in [0, 100]."""
    doc = " ".join(NoisyCLIPScore.__doc__.split())
    assert "a scalar tensor in ``[0, 100]``, or ``NaN`` when no sample has been seen" in doc
    metric = NoisyCLIPScore(tiny_model)
    with pytest.warns(UserWarning, match="called before the ``update`` method"):
        value = metric.compute()
    assert value.shape == () and value.dtype == torch.float32 and torch.isnan(value)
    metric.update(latents, prompts)
    assert 0.0 <= float(metric.compute()) <= 100.0
    metric.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert torch.isnan(metric.compute())
