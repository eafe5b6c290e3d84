"""The world build: a reduced-size run of the same code path, world ids, determinism, missing/corrupt weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from noisyclip_metrics.errors import CheckpointError, ConfigMismatchError, InputError, UnknownNameError
from noisyclip_metrics.provenance import seed_overlap
from noisyclip_metrics.world.assets import RETRAIN_COMMAND, load_world
from noisyclip_metrics.world.build import driver as pipeline
from noisyclip_metrics.world.build.driver import build_world
from noisyclip_metrics.world.build.presets import PRESETS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    # the tree changes while the build runs: the record must keep the revision the build started from
    revisions = iter(["rev-at-start"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "git_revision", lambda: next(revisions, "rev-later-dirty"))
        metrics = build_world(root / "work", root / "out", PRESETS.get("ci"), progress=False, command="test")
    return root, metrics


def test_ci_build_produces_every_artifact(built):
    root, metrics = built
    out = root / "out"
    record = json.loads((out / "BUILD.json").read_text())
    assert record["command"] == "test" and record["git_revision"] == "rev-at-start" and record["config"]["seed"] == 0
    assert set(record["models"]) == {"sd-small", "sd-base"}
    for stage in ("vae", "clip", "unet-sd-small", "trajectories", "noisyclip"):
        assert record["metrics"][stage]["git_revision"] == "rev-at-start"  # each stage's own provenance
        assert record["metrics"][stage]["command"] == "test"
    assert {"psnr", "preview_r2", "oracle_agreement"} <= set(metrics["vae"])
    assert {"top1_retrieval", "negatives/relation"} <= set(metrics["clip"])
    # the oracle's labels of the training trajectories: 1/0 fully aligned and the graded TIFA score
    traj = root / "work" / "trajectories"
    aligned, tifa = (json.loads((traj / f).read_text()) for f in ("labels.json", "scores.json"))
    assert aligned.keys() == tifa.keys() and all(0.0 <= v <= 1.0 for v in tifa.values())
    assert all(aligned[k] == float(tifa[k] == 1.0) for k in aligned)
    x0_run = json.loads((root / "work" / "noisyclip" / "noisyclip-x0" / "train_config.json").read_text())
    assert (x0_run["target"], Path(x0_run["labels"]).name, x0_run["read"]) == ("judged", "scores.json", "x0")
    # seeds are data: each training trajectory has its own seed, from a range no evaluation uses, and every
    # packaged NoisyCLIP records what it was trained on
    # (a prompt's candidates have the same seeds in every model's trajectories, as before with seeds 0-5)
    per_model: dict[str, list[int]] = {}
    for key in aligned:
        per_model.setdefault(key.split("/", 1)[0], []).append(int(key.rsplit("#", 1)[1]))
    seeds = next(iter(per_model.values()))
    assert all(sorted(s) == sorted(seeds) for s in per_model.values())
    assert len(set(seeds)) == len(seeds) and min(seeds) >= 10**9
    for run in ("noisyclip", "noisyclip-x0"):
        record = json.loads((out / run / "config.json").read_text())["config"]["trained_on"]
        assert record["seeds"]["count"] == len(seeds) and record["seeds"]["min"] >= 10**9
        assert record["prompts"]["count"] == 8 and not seed_overlap(record, range(1000))
    # the shipped weights are fp16 safetensors; pipelines are complete diffusers folders
    assert (out / "sd-base" / "model_index.json").is_file()
    tensors = load_file(str(out / "sd-base" / "unet" / "diffusion_pytorch_model.safetensors"))
    assert all(t.dtype == torch.float16 for t in tensors.values() if t.is_floating_point())


def test_world_ids_load_through_diffusers_and_open_clip(built, monkeypatch):
    root, _ = built
    monkeypatch.setenv("NOISYCLIP_WORLD_WEIGHTS", str(root / "out"))
    pipe = load_world("world:sd-small", fresh=True)
    assert type(pipe).__name__ == "StableDiffusionPipeline" and pipe.unet.dtype == torch.float32
    image = pipe(["a red circle"], num_inference_steps=2, height=32, width=32, output_type="pt").images
    assert image.shape == (1, 3, 32, 32)
    clip = load_world("world:noisyclip", fresh=True)
    assert clip.config.preview_name == "world" and clip.latent_channels == 4 and clip.config.reads == "latents"
    assert type(clip.clip).__name__ == "CLIP"  # an open_clip model
    x0 = load_world("world:noisyclip-x0", fresh=True)
    assert x0.config.reads == "x0"
    # both fine-tuned the image tower only and ship without a text tower: they read clip/'s
    frozen = load_world("world:clip", fresh=True)
    assert "text_from" in json.loads((root / "out" / "noisyclip-x0" / "config.json").read_text())
    shipped = load_file(str(root / "out" / "noisyclip" / "model.safetensors"))
    assert not any(k.startswith("clip.transformer") for k in shipped)
    for name, p in frozen.clip.named_parameters():
        if not name.startswith("visual."):
            assert torch.equal(p, dict(x0.clip.named_parameters())[name]), name
    with pytest.raises(UnknownNameError, match="did you mean 'world:sd-base'"):
        load_world("world:sd-bse")


def test_missing_and_corrupt_weights_name_the_file_and_the_retrain_command(built, tmp_path, monkeypatch):
    import shutil

    root, _ = built
    copy = tmp_path / "weights"
    shutil.copytree(root / "out", copy)
    monkeypatch.setenv("NOISYCLIP_WORLD_WEIGHTS", str(copy))
    shutil.rmtree(copy / "clip")
    with pytest.raises(CheckpointError, match="retrain the world with"):
        load_world("world:clip", fresh=True)
    (copy / "noisyclip" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError) as err:
        load_world("world:noisyclip", fresh=True)
    assert "model.safetensors" in str(err.value) and RETRAIN_COMMAND in str(err.value)


def test_stage_is_deterministic_and_resumable(tmp_path):
    cfg = PRESETS.get("ci")
    build_world(tmp_path / "a", tmp_path / "a_out", cfg, stages=["tokenizer", "vae"], progress=False)
    build_world(tmp_path / "b", tmp_path / "b_out", cfg, stages=["tokenizer", "vae"], progress=False)
    a = load_file(str(tmp_path / "a" / "vae" / "model" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(tmp_path / "b" / "vae" / "model" / "diffusion_pytorch_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # a finished stage is skipped; a different configuration in the same work folder is refused
    again = build_world(tmp_path / "a", tmp_path / "a_out", cfg, stages=["vae"], progress=False)
    assert again["vae"] == json.loads((tmp_path / "a" / "vae" / "DONE.json").read_text())
    import dataclasses

    other = dataclasses.replace(cfg, seed=1)
    with pytest.raises(InputError, match="another configuration"):
        build_world(tmp_path / "a", tmp_path / "a_out", other, stages=["vae"], progress=False)


def test_interrupted_stage_resumes_from_its_checkpoint(tmp_path):
    """A stage killed after a checkpoint continues from it and ends with the uninterrupted weights."""
    from noisyclip_metrics.world.build.vae import VaeStageConfig, train_world_vae

    cfg = VaeStageConfig(block_out_channels=(16, 32), steps=12, batch_size=8, pool_size=64, checkpoint_every=4)
    full, _ = train_world_vae(tmp_path / "full", cfg, progress=False)
    short = VaeStageConfig(**{**cfg.__dict__, "steps": 12})
    train_world_vae(tmp_path / "part", short, progress=False)
    # simulate a crash after step 8: drop the final checkpoint, keep ckpt-8
    ckpts = sorted((tmp_path / "part").glob("ckpt-*"))
    assert [c.name for c in ckpts] == ["ckpt-0000008", "ckpt-0000012"]
    import shutil

    shutil.rmtree(ckpts[-1])
    resumed, _ = train_world_vae(tmp_path / "part", short, progress=False)
    for (k, v), w in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(v, w, atol=1e-6, rtol=0, msg=k)
    with pytest.raises(ConfigMismatchError):
        train_world_vae(tmp_path / "part", VaeStageConfig(**{**cfg.__dict__, "lr": 1e-4}), progress=False)


def test_from_weights_rebuilds_only_the_noisyclips(built, tmp_path):
    """A work folder seeded from packaged weights skips every stage before ``trajectories`` and keeps its record."""
    import dataclasses

    from noisyclip_metrics.world.build.presets import NoisyRunConfig

    root, _ = built
    cfg = PRESETS.get("ci")
    runs = tuple(dataclasses.replace(r, steps=6) for r in cfg.noisy.runs)  # another recipe for the NoisyCLIPs
    cfg = dataclasses.replace(cfg, noisy=dataclasses.replace(cfg.noisy, runs=runs))
    assert all(isinstance(r, NoisyRunConfig) for r in runs)
    metrics = build_world(
        tmp_path / "work", tmp_path / "out", cfg, progress=False, command="rebuild", from_weights=root / "out"
    )
    before = json.loads((root / "out" / "BUILD.json").read_text())
    record = json.loads((tmp_path / "out" / "BUILD.json").read_text())
    assert record["command"] == "rebuild" and record["config"]["noisy"]["runs"][0]["steps"] == 6
    for stage in ("tokenizer", "vae", "clip", "text-encoder", "unet-data", "unet-sd-small", "unet-sd-base"):
        seeded = record["metrics"][stage]
        assert seeded["seeded_from"]["folder"] == str(root / "out"), stage
        assert {k: v for k, v in seeded.items() if k != "seeded_from"} == before["metrics"][stage], stage
    for stage in ("trajectories", "noisyclip"):
        assert metrics[stage]["command"] == "rebuild" and "seeded_from" not in metrics[stage]
    # the UNets, CLIP and preview map are the packaged ones, unchanged; the NoisyCLIPs are new
    for path in (
        "sd-base/unet/diffusion_pytorch_model.safetensors",
        "clip/model.safetensors",
        "shared/vae/diffusion_pytorch_model.safetensors",
        "preview.safetensors",
    ):
        a, b = load_file(str(root / "out" / path)), load_file(str(tmp_path / "out" / path))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), path
    old, new = (load_file(str(r / "noisyclip-x0" / "model.safetensors")) for r in (root / "out", tmp_path / "out"))
    assert any(not torch.equal(old[k], new[k]) for k in old)


def test_from_weights_refuses_other_weights(built, tmp_path):
    import dataclasses
    import shutil

    root, _ = built
    cfg = PRESETS.get("ci")
    with pytest.raises(InputError, match=r"from_weights: .*no BUILD.json"):
        build_world(
            tmp_path / "w1",
            tmp_path / "o1",
            cfg,
            stages=["tokenizer"],
            progress=False,
            from_weights=tmp_path / "nowhere",
        )
    # the seeded stages must have been built with this configuration
    other = dataclasses.replace(cfg, unet_pool=cfg.unet_pool + 1)
    with pytest.raises(InputError, match=r"from_weights: .*another unet_pool configuration"):
        build_world(
            tmp_path / "w2", tmp_path / "o2", other, stages=["tokenizer"], progress=False, from_weights=root / "out"
        )
    copy = tmp_path / "weights"
    shutil.copytree(root / "out", copy)
    shutil.rmtree(copy / "sd-base")
    with pytest.raises(InputError, match="sd-base is missing"):
        build_world(tmp_path / "w3", tmp_path / "o3", cfg, stages=["tokenizer"], progress=False, from_weights=copy)
    (copy / "BUILD.json").write_text("{not json")
    with pytest.raises(InputError, match="not a build record"):
        build_world(tmp_path / "w4", tmp_path / "o4", cfg, stages=["tokenizer"], progress=False, from_weights=copy)
