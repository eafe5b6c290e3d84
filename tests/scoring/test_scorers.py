"""The five named scorers on a small pipeline's real trajectory."""

from __future__ import annotations

import pytest
import torch

from noisyclip_metrics.diffusion.trajectory import capture_trajectories
from noisyclip_metrics.errors import InputError, UnknownNameError
from noisyclip_metrics.scoring.model import TINY_TEST_CONFIG, NoisyCLIPModel
from noisyclip_metrics.scoring.scorers import ScoreInputs, Scorer, build_scorer, decode_latents, list_scorers
from noisyclip_metrics.testing import tiny_pipeline

PROMPTS = ["a red circle", "two blue squares", "a green triangle"]
# Cosines are in [-1, 1] and computed in float32: two equivalent code paths to one score (an x̂0 given, or rebuilt from
# a float32 epsilon) move it by about an ulp of 1 (measured: 0.8). 64 ulps of 1 bounds that with a wide margin.
COS_ATOL = 64 * torch.finfo(torch.float32).eps  # 7.6e-6


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return tiny_pipeline("sd", tmp_path_factory.mktemp("sd"))


@pytest.fixture(scope="module")
def batch(pipe):
    return capture_trajectories(pipe, PROMPTS, [0, 1, 2], num_inference_steps=4, height=32, width=32)


@pytest.fixture(scope="module")
def frozen():
    return NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0)


@pytest.fixture(scope="module")
def tuned():
    return NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=7)


@pytest.fixture(scope="module")
def tuned_x0(tuned):
    """A NoisyCLIP whose checkpoint says its tower was fine-tuned on x̂0 previews."""
    import copy
    import dataclasses

    model = copy.deepcopy(tuned)
    model.config = dataclasses.replace(model.config, reads="x0")
    return model


def test_registry_names():
    assert list_scorers() == ["noisyclip", "noisyclip-x0", "clip", "clip-x0", "clip-x0-decoded", "clip-final"]


def test_every_scorer_returns_per_sample_cosines(pipe, batch, frozen, tuned, tuned_x0):
    k = 2
    inputs = ScoreInputs(
        prompts=PROMPTS,
        latents=batch.latents[:, k],
        x0=batch.x0[:, k],
        images=batch.images,
        timesteps=batch.timesteps[k].expand(3),
        latent_scale=batch.latent_scale[k],
    )
    for name in list_scorers():
        scorer = build_scorer(name, noisyclip=tuned_x0 if name == "noisyclip-x0" else tuned, clip=frozen, vae=pipe.vae)
        assert isinstance(scorer, Scorer) and scorer.name == name
        scores = scorer.score(inputs)
        assert scores.shape == (3,) and scores.dtype == torch.float32
        assert bool(((scores >= -1) & (scores <= 1)).all())


def test_noisyclip_and_clip_differ_only_by_weights(batch, frozen, tuned):
    inputs = ScoreInputs(prompts=PROMPTS, latents=batch.latents[:, 1])
    a = build_scorer("clip", model=frozen).score(inputs)
    b = build_scorer("noisyclip", model=frozen).score(inputs)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, build_scorer("noisyclip", model=tuned).score(inputs))


def test_clip_x0_estimates_x0_when_not_given(pipe, batch, frozen):
    """From latent + timestep + guided output the scorer must see the same x̂0 the capture recorded."""
    k = 1
    x0 = batch.x0[:, k]
    # reconstruct the guided epsilon from the recorded x̂0: eps = (x - sqrt(ab) x0) / sqrt(1 - ab)
    ab = pipe.scheduler.alphas_cumprod[int(batch.timesteps[k])]
    eps = (batch.latents[:, k] - ab.sqrt() * x0) / (1 - ab).sqrt()
    scorer = build_scorer("clip-x0", model=frozen)
    given = scorer.score(ScoreInputs(prompts=PROMPTS, x0=x0))
    derived = scorer.score(
        ScoreInputs(
            prompts=PROMPTS,
            latents=batch.latents[:, k],
            timesteps=batch.timesteps[k].expand(3),
            model_output=eps,
            scheduler=pipe.scheduler,
        )
    )
    torch.testing.assert_close(given, derived, atol=COS_ATOL, rtol=0)


def test_clip_x0_decoded_at_the_last_step_equals_clip_final(pipe, batch, frozen):
    final = build_scorer("clip-final", model=frozen).score(ScoreInputs(prompts=PROMPTS, images=batch.images))
    decoded = build_scorer("clip-x0-decoded", model=frozen, vae=pipe.vae).score(
        ScoreInputs(prompts=PROMPTS, x0=batch.x0[:, -1])
    )
    torch.testing.assert_close(final, decoded, atol=1e-4, rtol=0)
    torch.testing.assert_close(decode_latents(pipe.vae, batch.latents[:, -1]), batch.images, atol=1e-4, rtol=0)


def test_text_embeddings_are_cached_per_call(frozen, monkeypatch):
    calls = []
    real = frozen.clip.encode_text

    def spy(tokens, *a, **k):
        calls.append(tokens.shape[0])
        return real(tokens, *a, **k)

    monkeypatch.setattr(frozen.clip, "encode_text", spy)
    frozen.encode_text(["a", "b", "a", "a"])
    assert calls == [2]


def test_text_embeddings_are_kept_across_scoring_calls_until_the_weights_change(monkeypatch):
    """A prompt scored at every step is encoded once; training, loading, casting or moving the tower drops the cache."""
    model = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0)
    calls = []
    real = model.clip.encode_text
    monkeypatch.setattr(model.clip, "encode_text", lambda tokens, *a, **k: calls.append(len(tokens)) or real(tokens))
    with torch.no_grad():
        first = model.encode_text(["a red circle", "a dog", "a red circle"])
        again = model.encode_text(["a dog", "a red circle", "a cat"])
    assert calls == [1, 1, 1]  # each new prompt alone; only the new prompt the second time
    torch.testing.assert_close(again[:2], first[[1, 0]], rtol=0, atol=0)
    model.clip.encode_text = real
    torch.testing.assert_close(again, model.encode_text(["a dog", "a red circle", "a cat"]), rtol=0, atol=1e-6)
    for history in (["a cat", "a dog"], ["a dog", "a red circle", "a cat"]):  # whichever call saw a prompt first
        model.clear_text_cache()
        with torch.no_grad():
            model.encode_text(history)
            seen = model.encode_text(["a cat"])
        torch.testing.assert_close(seen, model._encode_text(["a cat"]), rtol=0, atol=0)  # bit for bit
    model.clip.encode_text = lambda tokens, *a, **k: calls.append(len(tokens)) or real(tokens)
    calls.clear()
    text_param = next(p for n, p in model.clip.named_parameters() if not n.startswith("visual"))
    with torch.no_grad():
        text_param.add_(torch.randn(text_param.shape, generator=torch.Generator().manual_seed(0)))  # an optimiser
        # step, or load_state_dict: in place
        changed = model.encode_text(["a dog"])
        assert calls == [1] and not torch.allclose(changed[0], first[1])
        model.encode_text(["a dog"])
        assert calls == [1]
        next(model.clip.visual.parameters()).add_(1.0)  # the image tower does not touch text embeddings
        model.encode_text(["a dog"])
        assert calls == [1]
        model.double()
        assert model.encode_text(["a dog"]).dtype == torch.float32 and calls == [1, 1]
    with torch.enable_grad():  # training: never cached, gradients flow
        out = model.encode_text(["a dog"])
        assert calls == [1, 1, 1] and out.requires_grad
    monkeypatch.setattr(NoisyCLIPModel, "TEXT_CACHE_SIZE", 2)
    with torch.no_grad():
        model.encode_text(["p1", "p2", "p3"])
        assert list(model._text_cache()) == ["p2", "p3"]  # least recently used first out
        model.clear_text_cache()
        assert list(model._text_cache()) == []


def test_noisyclip_x0_reads_the_x0_preview_and_refuses_the_other_kind(pipe, batch, frozen, tuned, tuned_x0):
    from noisyclip_metrics.scoring.scorers import noisyclip_scorer_name

    k = 2
    inputs = ScoreInputs(prompts=PROMPTS, latents=batch.latents[:, k], x0=batch.x0[:, k])
    ours = build_scorer("noisyclip-x0", model=tuned_x0)
    assert ours.requires == frozenset({"x0"})
    # the same tower on the same x̂0 preview as clip-x0, only the weights differ
    torch.testing.assert_close(ours.score(inputs), build_scorer("clip-x0", model=tuned).score(inputs))
    assert not torch.allclose(ours.score(inputs), build_scorer("clip-x0", model=frozen).score(inputs))
    assert noisyclip_scorer_name(tuned_x0) == "noisyclip-x0" and noisyclip_scorer_name(tuned) == "noisyclip"
    refused = "fine-tuned on previews of x0 .*score it with 'noisyclip-x0', not 'noisyclip'"
    with pytest.raises(InputError, match=refused):
        build_scorer("noisyclip", model=tuned_x0)
    with pytest.raises(InputError, match="score it with 'noisyclip', not 'noisyclip-x0'"):
        build_scorer("noisyclip-x0", noisyclip=tuned)


def test_errors(frozen, batch):
    with pytest.raises(UnknownNameError, match="did you mean 'clip-final'"):
        build_scorer("clip-fnal", model=frozen)
    with pytest.raises(InputError, match="vae"):
        build_scorer("clip-x0-decoded", model=frozen)
    with pytest.raises(InputError, match="cannot be estimated"):
        build_scorer("clip-x0", model=frozen).score(ScoreInputs(prompts=PROMPTS, latents=batch.latents[:, 1]))
    with pytest.raises(InputError, match="images: this scorer needs images"):
        build_scorer("clip-final", model=frozen).score(ScoreInputs(prompts=PROMPTS))
    with pytest.raises(InputError, match="expected 3 prompts"):
        build_scorer("clip", model=frozen).score(ScoreInputs(prompts=PROMPTS[:2], latents=batch.latents[:, 1]))
    with pytest.raises(InputError, match="latent_scale"):
        build_scorer("clip", model=frozen).score(
            ScoreInputs(prompts=PROMPTS, latents=batch.latents[:, 1], latent_scale=torch.ones(2))
        )
