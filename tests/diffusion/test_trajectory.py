"""Trajectory capture on small pipelines of every family, and the on-disk trajectory store."""

from __future__ import annotations

import json

import pytest
import torch

from noisyclip_metrics.diffusion.trajectory import capture_trajectories, pipeline_family
from noisyclip_metrics.diffusion.trajectory_store import TrajectoryStore, record_trajectories
from noisyclip_metrics.errors import ConfigMismatchError, InputError, SchemaError
from noisyclip_metrics.scoring.preview import unpack_flux
from noisyclip_metrics.scoring.x0 import estimate_x0
from noisyclip_metrics.testing import tiny_pipeline

FAMILIES = ["sd", "sdxl", "sd3", "flux"]
PROMPTS = ["a red circle", "two blue squares", "a green triangle above a red circle"]
EPS32 = torch.finfo(torch.float32).eps


def _batch_atol(reference: torch.Tensor, ulps: int = 256) -> float:
    """Tolerance for one sample's float32 pipeline output computed in two different batch compositions.

    A pipeline run is deterministic for a given batch, so results of the same batch are compared bit for bit. In a
    batch of another size the denoiser's (and VAE's) GEMMs and convolutions reduce in another order, so every output
    moves by some ulps of the values it is built from. Through the tiny pipelines' 3-4 steps that was at most 18 ulps
    of max|x| here (latents, x̂0 and images of all four families, with 1 and 2 threads); the 1.7e-5 reported on SD
    latents on another x86-64 CPU is about 9 ulps of their max|x| (about 16). 256 ulps of max|x| covers that with a
    wide margin and stays far below what a wrong seed, row or step gives (differences of order max|x|).
    """
    return ulps * EPS32 * float(reference.abs().max())


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", params=FAMILIES)
def pipe(request, tmp_path_factory):
    return tiny_pipeline(request.param, tmp_path_factory.mktemp(request.param))


def _plain(pipe, prompt, seed, steps=4):
    return pipe(
        [prompt],
        num_inference_steps=steps,
        height=32,
        width=32,
        output_type="pt",
        generator=[torch.Generator().manual_seed(seed)],
    ).images[0]


def test_capture_shapes_and_step_convention(pipe):
    batch = capture_trajectories(pipe, PROMPTS[:2], [0, 1], num_inference_steps=4, height=32, width=32)
    fam = pipeline_family(pipe)
    channels = 16 if fam.name in ("sd3", "flux") else 4
    assert batch.latents.shape == (2, 5, channels, 16, 16)
    assert batch.x0.shape == batch.latents.shape
    assert batch.images.shape == (2, 3, 32, 32) and 0 <= float(batch.images.min()) <= float(batch.images.max()) <= 1
    assert batch.num_steps == 4 and batch.timesteps.shape == (5,) and float(batch.timesteps[-1]) == 0.0
    # k = 0 is the initial noise: the seed's standard normal draw times init_noise_sigma
    init = getattr(pipe.scheduler, "init_noise_sigma", 1.0)
    assert abs(float(batch.latents[0, 0].std()) - float(init)) < 0.35 * float(init)
    # the final latent's x0 is the latent itself
    torch.testing.assert_close(batch.x0[:, -1], batch.latents[:, -1])


def test_final_image_equals_plain_pipeline_and_is_batch_independent(pipe):
    batch = capture_trajectories(pipe, PROMPTS, [5, 6, 7], num_inference_steps=4, height=32, width=32)
    plain = _plain(pipe, PROMPTS[1], 6)  # a batch of 1 against a batch of 3: a batch-composition tolerance
    torch.testing.assert_close(batch.images[1], plain, atol=_batch_atol(plain), rtol=0)
    alone = capture_trajectories(pipe, PROMPTS[2:], [7], num_inference_steps=4, height=32, width=32)
    torch.testing.assert_close(alone.latents[0], batch.latents[2], atol=_batch_atol(batch.latents[2]), rtol=0)


def test_capture_leaves_scheduler_unwrapped(pipe):
    capture_trajectories(pipe, PROMPTS[:1], [0], num_inference_steps=2, height=32, width=32)
    assert "step" not in vars(pipe.scheduler)


def test_x0_matches_the_schedulers_own_estimate(pipe):
    """Where a scheduler returns pred_original_sample, our timestep-only x̂0 must agree with it."""
    sched = pipe.scheduler
    fam = pipeline_family(pipe)
    sched.set_timesteps(4)
    g = torch.Generator().manual_seed(0)
    shape = (1, 64, 16 * 4) if fam.packed else (1, 16 if fam.name == "sd3" else 4, 16, 16)
    x = torch.randn(shape, generator=g) * getattr(sched, "init_noise_sigma", 1.0)
    out = torch.randn(shape, generator=g)
    t = sched.timesteps[1]
    mine = estimate_x0(sched, x, t, out)
    if hasattr(sched, "_step_index"):
        sched._step_index = None
        sched._begin_index = None
    if fam.name in ("sd3", "flux"):
        sigma = sched.sigmas[1]
        expected = x - sigma * out
    else:
        if hasattr(sched, "scale_model_input"):
            sched.scale_model_input(x, t)
        expected = sched.step(out, t, x).pred_original_sample
    # two code paths to one value: ours in float64 rounded once to float32, the scheduler's in float32 (a few roundings,
    # each of an intermediate within a few times max(|x|, |x̂0|); measured: under 1 ulp of it): 64 ulps of that
    bound = max(float(x.abs().max()), float(expected.abs().max()))
    torch.testing.assert_close(mine, expected.to(mine.dtype), atol=64 * EPS32 * bound, rtol=0)


def test_unpack_flux_matches_diffusers():
    from diffusers import FluxPipeline

    packed = torch.randn(2, 64, 64)
    torch.testing.assert_close(unpack_flux(packed, 128, 128, 8), FluxPipeline._unpack_latents(packed, 128, 128, 8))


def test_unsupported_pipeline_lists_supported():
    class Foo:
        pass

    with pytest.raises(InputError, match="StableDiffusionPipeline, StableDiffusionXLPipeline"):
        pipeline_family(Foo())


def test_capture_bad_input(pipe):
    with pytest.raises(InputError, match="seeds: expected 2"):
        capture_trajectories(pipe, PROMPTS[:2], [0], num_inference_steps=2)
    with pytest.raises(InputError, match="num_inference_steps"):
        capture_trajectories(pipe, PROMPTS[:1], [0], num_inference_steps=0)
    with pytest.raises(InputError, match="empty"):
        capture_trajectories(pipe, [], [], num_inference_steps=2)


# ----------------------------------------------------------------------------------------------------------- store
@pytest.fixture(scope="module")
def sd_pipe(tmp_path_factory):
    return tiny_pipeline("sd", tmp_path_factory.mktemp("sd_store"))


def test_store_round_trip_and_resume_without_duplicates(sd_pipe, tmp_path):
    root = tmp_path / "traj"
    kw = {"num_inference_steps": 3, "height": 32, "width": 32, "progress": False, "batch_size": 2}
    store = record_trajectories(sd_pipe, root, PROMPTS[:2], seeds=[0, 1], **kw)
    assert len(store) == 4 and len(store.shards()) == 2
    # a resumed run with more prompts records only the missing pairs
    store = record_trajectories(sd_pipe, root, PROMPTS, seeds=[0, 1], prompt_ids=["p00000", "p00001", "p00002"], **kw)
    keys = [r.key for r in store.records()]
    assert len(keys) == len(set(keys)) == 6
    again = TrajectoryStore.open(root)
    recs, tensors = next(again.iter_shards())
    assert tensors["latents"].shape == (2, 4, 4, 16, 16)
    sliced = again.load_shard(recs[0].shard, steps=[0, 3])
    torch.testing.assert_close(sliced["latents"], tensors["latents"][:, [0, 3]])
    # the stored trajectories are the ones a direct capture of the same batch (same pairs, same order) gives, bit for
    # bit; a capture of another batch composition would differ by float32 reduction order (see _batch_atol)
    rows = sorted(recs, key=lambda r: r.row)
    assert [r.row for r in rows] == [0, 1]
    direct = capture_trajectories(
        sd_pipe, [r.prompt for r in rows], [r.seed for r in rows], num_inference_steps=3, height=32, width=32
    )
    for name in ("latents", "x0", "images", "timesteps", "latent_scale"):
        assert torch.equal(tensors[name], getattr(direct, name)), name


def test_store_refuses_other_settings(sd_pipe, tmp_path):
    root = tmp_path / "traj"
    record_trajectories(
        sd_pipe, root, PROMPTS[:1], seeds=[0], num_inference_steps=2, height=32, width=32, progress=False
    )
    with pytest.raises(ConfigMismatchError, match="num_inference_steps"):
        record_trajectories(
            sd_pipe, root, PROMPTS[:1], seeds=[0], num_inference_steps=3, height=32, width=32, progress=False
        )


def test_store_schema_errors(tmp_path):
    with pytest.raises(SchemaError, match="not a trajectory store"):
        TrajectoryStore.open(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"schema": "noisyclip-trajectories", "schema_version": 99}))
    with pytest.raises(SchemaError, match="schema_version 99"):
        TrajectoryStore.open(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "file.txt").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        TrajectoryStore.create(other, {})


def test_store_noise_levels_are_the_captures_read_from_the_recorded_scheduler(sd_pipe, tmp_path):
    kw = {"num_inference_steps": 3, "height": 32, "width": 32}
    store = record_trajectories(sd_pipe, tmp_path / "traj", PROMPTS[:1], seeds=[0], progress=False, **kw)
    direct = capture_trajectories(sd_pipe, PROMPTS[:1], [0], **kw)
    levels = store.noise_std()
    assert levels.shape == (4,) and float(levels[-1]) == 0.0
    assert bool((levels[:-1] > levels[1:]).all())  # noisier first
    assert torch.equal(levels, direct.noise_std)
    # a manifest whose scheduler does not give the recorded timesteps is refused, not approximated
    manifest = tmp_path / "traj" / "manifest.json"
    meta = json.loads(manifest.read_text())
    meta["settings"]["scheduler_config"]["timestep_spacing"] = "trailing"
    manifest.write_text(json.dumps(meta))
    with pytest.raises(SchemaError, match="does not give the recorded timesteps"):
        TrajectoryStore.open(tmp_path / "traj").noise_std()
    meta["settings"]["scheduler"] = "NoSuchScheduler"
    manifest.write_text(json.dumps(meta))
    with pytest.raises(SchemaError, match="names no diffusers scheduler"):
        TrajectoryStore.open(tmp_path / "traj").noise_std()


def test_a_family_without_noise_levels_still_captures(sd_pipe, monkeypatch):
    """A plugin parameterisation may leave ``noise_std`` out: capture records no levels instead of failing, and only
    a noise-conditioned scorer is refused (without the guard, the capture itself raises)."""
    import dataclasses

    from noisyclip_metrics.scoring import x0 as x0_module

    original = x0_module.PARAMETERIZATIONS.get
    monkeypatch.setattr(
        x0_module.PARAMETERIZATIONS, "get", lambda name: dataclasses.replace(original(name), noise_std=None)
    )
    batch = capture_trajectories(sd_pipe, PROMPTS[:1], [0], num_inference_steps=2, height=32, width=32)
    assert batch.noise_std is None and batch.latents.shape[1] == 3
    with pytest.raises(InputError, match="does not define a noise_std"):
        x0_module.noise_std(sd_pipe.scheduler, sd_pipe.scheduler.timesteps[0])
