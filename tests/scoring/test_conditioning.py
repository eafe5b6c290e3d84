"""Noise-conditioned NoisyCLIP towers: the noise level of every family, the embedding, checkpoints and scorers."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    EDMEulerScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
)

from noisyclip_metrics.errors import CheckpointError, InputError
from noisyclip_metrics.scoring.model import TINY_TEST_CONFIG, NoisyCLIPModel
from noisyclip_metrics.scoring.scorers import ScoreInputs, build_scorer
from noisyclip_metrics.scoring.x0 import model_input_scale, noise_level, noise_std

PROMPTS = ["a red cube", "two blue spheres", "a green cone"]


def _conditioned(seed: int = 0) -> NoisyCLIPModel:
    """A tiny noise-conditioned model whose embedding is not zero (as after training)."""
    model = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0).condition_on_noise()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for p in model.noise_embedding.parameters():
            torch.nn.init.normal_(p, std=0.5)
    return model


def _schedule(scheduler, steps: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    scheduler.set_timesteps(steps)
    t = scheduler.timesteps
    return t, noise_std(scheduler, t, len(t), step_index=torch.arange(len(t)))


@pytest.mark.parametrize(
    "scheduler",
    [
        DDIMScheduler(clip_sample=False),
        EulerDiscreteScheduler(use_karras_sigmas=True),
        EDMEulerScheduler(),
        FlowMatchEulerDiscreteScheduler(shift=3.0),
    ],
    ids=["vp", "sigma-karras", "edm", "flow"],
)
def test_noise_std_is_the_noise_share_of_the_variance_preserving_latent(scheduler):
    t, std = _schedule(scheduler)
    assert bool((std > 0).all() and (std <= 1).all())
    assert bool((std[:-1] >= std[1:]).all()), "noisier steps come first"
    level = noise_level(scheduler, t, len(t), step_index=torch.arange(len(t))).float()
    family = type(scheduler).__name__
    if family.startswith("DDIM"):
        expected = (1 - level).sqrt()
    elif family.startswith("Flow"):
        expected = level / ((1 - level) ** 2 + level**2).sqrt()
    else:  # sigma and EDM: sigma times the factor that brings the latent to the denoiser's (unit-variance) form
        expected = level * model_input_scale(scheduler, t, len(t), step_index=torch.arange(len(t)))
    torch.testing.assert_close(std, expected)


def test_new_conditioning_scores_as_the_model_it_was_made_from():
    base = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0)
    z = torch.randn(3, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    before = base.score_latents(z, PROMPTS)
    base.condition_on_noise()
    for level in (0.0, 0.5, torch.tensor([0.1, 0.9, 1.0])):
        assert torch.equal(base.score_latents(z, PROMPTS, noise_std=level), before)
    with pytest.raises(InputError, match="already noise-conditioned"):
        base.condition_on_noise()


def test_a_trained_conditioning_reads_the_level_and_only_while_scoring():
    model = _conditioned()
    z = torch.randn(3, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    low, high = (model.score_latents(z, PROMPTS, noise_std=v) for v in (0.1, 0.9))
    assert not torch.allclose(low, high)
    per_sample = model.score_latents(z, PROMPTS, noise_std=torch.tensor([0.1, 0.9, 0.1]))
    torch.testing.assert_close(per_sample, torch.stack([low[0], high[1], low[2]]))
    # the shift is added only inside the model's own encoders: the bare tower is the CLIP it was made from
    plain = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0)
    pixels = torch.rand(2, 3, 32, 32)
    assert torch.equal(model.clip.encode_image(pixels), plain.clip.encode_image(pixels))
    # a deep copy (as training makes of its start) keeps its own hook; with the hook removed, the level is ignored:
    # the check above can fail
    twin = copy.deepcopy(model)
    model._patch_shift.remove()
    assert torch.equal(model.score_latents(z, PROMPTS, noise_std=0.1), model.score_latents(z, PROMPTS, noise_std=0.9))
    assert torch.equal(twin.score_latents(z, PROMPTS, noise_std=0.1), low)


def test_levels_are_required_and_checked():
    model = _conditioned()
    z = torch.randn(2, 4, 16, 16)
    with pytest.raises(InputError, match="noise_std: this model is noise-conditioned"):
        model.encode_latents(z)
    for bad, match in ((1.5, r"in \[0, 1\]"), (float("nan"), r"in \[0, 1\]"), (torch.zeros(3), "1 or 2 values")):
        with pytest.raises(InputError, match=match):
            model.score_latents(z, PROMPTS[:2], noise_std=bad)
    with pytest.raises(InputError, match="noise_std: expected a number"):
        model.score_latents(z, PROMPTS[:2], noise_std="0.5")
    # final images read at level 0 unless told otherwise
    images = torch.rand(2, 3, 32, 32)
    assert torch.equal(model.score_images(images, PROMPTS[:2]), model.score_images(images, PROMPTS[:2], 0.0))
    # an unconditioned model ignores the level
    plain = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0)
    assert torch.equal(plain.score_latents(z, PROMPTS[:2], noise_std=0.3), plain.score_latents(z, PROMPTS[:2]))


def test_open_clip_towers_can_be_conditioned_others_are_refused():
    resnet = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 16, "head_width": 16},
        "text_cfg": TINY_TEST_CONFIG["text_cfg"],
    }
    model = NoisyCLIPModel.from_config(resnet, preview="sd1", seed=0).condition_on_noise()
    for p in model.noise_embedding.parameters():
        torch.nn.init.normal_(p, std=0.5)
    z = torch.randn(2, 4, 16, 16)
    assert not torch.allclose(*(model.score_latents(z, PROMPTS[:2], noise_std=v) for v in (0.1, 0.9)))
    # a tower without a first convolution (timm trunks, anything else): refused by name
    other = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0)
    other.clip.visual = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(32))
    with pytest.raises(InputError, match="noise_conditioned: needs an open_clip image tower"):
        other.condition_on_noise()


def test_checkpoint_round_trip_and_mismatches(tmp_path):
    model = _conditioned()
    z = torch.randn(2, 4, 16, 16)
    expected = model.score_latents(z, PROMPTS[:2], noise_std=torch.tensor([0.2, 0.7]))
    model.save_pretrained(tmp_path / "ckpt")
    loaded = NoisyCLIPModel.from_pretrained(tmp_path / "ckpt")
    assert loaded.config.noise_conditioned
    assert torch.equal(loaded.score_latents(z, PROMPTS[:2], noise_std=torch.tensor([0.2, 0.7])), expected)
    # weights with a noise embedding but a config without conditioning, and the other way round
    config = tmp_path / "ckpt" / "config.json"
    meta = json.loads(config.read_text())
    meta["config"]["noise_conditioned"] = False
    config.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="noise_conditioned is false"):
        NoisyCLIPModel.from_pretrained(tmp_path / "ckpt")
    NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0).save_pretrained(tmp_path / "plain")
    meta = json.loads((tmp_path / "plain" / "config.json").read_text())
    meta["config"]["noise_conditioned"] = True
    (tmp_path / "plain" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="noise embedding does not match"):
        NoisyCLIPModel.from_pretrained(tmp_path / "plain")
    meta["config"]["noise_conditioned"] = "yes"
    (tmp_path / "plain" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"config\.noise_conditioned: expected true or false"):
        NoisyCLIPModel.from_pretrained(tmp_path / "plain")


def test_scorers_give_the_level_from_the_schedule_or_refuse():
    model = _conditioned()
    scheduler = DDIMScheduler(clip_sample=False)
    t, std = _schedule(scheduler)
    z = torch.randn(3, 4, 16, 16)
    scorer = build_scorer("clip", model=model)
    k = 4
    from_schedule = scorer.score(
        ScoreInputs(prompts=PROMPTS, latents=z, timesteps=t[k].expand(3), scheduler=scheduler, step=k)
    )
    given = scorer.score(ScoreInputs(prompts=PROMPTS, latents=z, noise_std=std[k]))
    assert torch.equal(from_schedule, given)
    assert not torch.allclose(given, scorer.score(ScoreInputs(prompts=PROMPTS, latents=z, noise_std=std[0])))
    with pytest.raises(InputError, match="give noise_std, or timesteps and the scheduler"):
        scorer.score(ScoreInputs(prompts=PROMPTS, latents=z, timesteps=t[k].expand(3)))
    # the final-image scorer reads level 0; an unconditioned scorer needs no level
    images = torch.rand(3, 3, 32, 32)
    final = build_scorer("clip-final", model=model).score(ScoreInputs(prompts=PROMPTS, images=images))
    assert torch.equal(final, model.score_images(images, PROMPTS, 0.0))
    plain = build_scorer("clip", model=NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0))
    assert plain.score(ScoreInputs(prompts=PROMPTS, latents=z)).shape == (3,)


def test_wise_ft_of_a_conditioned_tower_scales_its_shift():
    from noisyclip_metrics.training.wise import interpolate_image_tower

    tuned = _conditioned()
    base = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0)
    z = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    assert interpolate_image_tower(tuned, base, 0.0).config.noise_conditioned
    for alpha, expected in ((0.0, base.score_latents(z, PROMPTS[:2])), (1.0, tuned.score_latents(z, PROMPTS[:2], 0.4))):
        mixed = interpolate_image_tower(tuned, base, alpha)
        torch.testing.assert_close(mixed.score_latents(z, PROMPTS[:2], noise_std=0.4), expected)
    half = interpolate_image_tower(tuned, base, 0.5).noise_embedding
    torch.testing.assert_close(half(torch.tensor([0.4])), tuned.noise_embedding(torch.tensor([0.4])) / 2)
    # two conditioned towers: every parameter of the embedding is interpolated
    other = _conditioned(seed=1)
    mixed = interpolate_image_tower(tuned, other, 0.25).noise_embedding.state_dict()
    for key, value in tuned.noise_embedding.state_dict().items():
        torch.testing.assert_close(mixed[key], 0.75 * other.noise_embedding.state_dict()[key] + 0.25 * value)
