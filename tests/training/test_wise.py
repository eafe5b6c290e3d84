"""WiSE-FT: the interpolated image tower, what it keeps from each model, and its refusals."""

from __future__ import annotations

import pytest
import torch

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.scoring.model import TINY_TEST_CONFIG, NoisyCLIPModel
from noisyclip_metrics.training.wise import interpolate_image_tower


def _pair(shift: float = 0.1) -> tuple[NoisyCLIPModel, NoisyCLIPModel]:
    """A base model and a 'fine-tuned' one: every image-tower weight moved by a seeded random step."""
    base = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0)
    tuned = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in tuned.clip.visual.parameters():
            p.add_(shift * torch.randn(p.shape, generator=g))
    return tuned, base


def _latents() -> torch.Tensor:
    return torch.randn(3, 4, 16, 16, generator=torch.Generator().manual_seed(2))


PROMPTS = ["a red cube", "two blue balls", "a green cone"]


def test_endpoints_are_the_two_models_and_inputs_are_untouched():
    tuned, base = _pair()
    before = {k: v.clone() for k, v in tuned.state_dict().items()}
    z = _latents()
    torch.testing.assert_close(
        interpolate_image_tower(tuned, base, 1.0).score_latents(z, PROMPTS), tuned.score_latents(z, PROMPTS)
    )
    torch.testing.assert_close(
        interpolate_image_tower(tuned, base, 0.0).score_latents(z, PROMPTS), base.score_latents(z, PROMPTS)
    )
    assert all(torch.equal(v, before[k]) for k, v in tuned.state_dict().items())


def test_every_image_tower_tensor_is_the_weighted_mean_and_the_text_tower_is_kept():
    tuned, base = _pair()
    mixed = interpolate_image_tower(tuned, base, 0.3).clip.state_dict()
    t, b = tuned.clip.state_dict(), base.clip.state_dict()
    visual = [k for k in mixed if k.startswith("visual.")]
    assert visual and all(torch.allclose(mixed[k], 0.7 * b[k] + 0.3 * t[k]) for k in visual)
    assert all(torch.equal(mixed[k], t[k]) for k in mixed if not k.startswith("visual."))


def test_reads_the_finetuned_checkpoint_and_base_from_folders(tmp_path):
    tuned, base = _pair()
    tuned.save_pretrained(tmp_path / "tuned")
    base.save_pretrained(tmp_path / "base")
    z = _latents()
    from_folders = interpolate_image_tower(tmp_path / "tuned", tmp_path / "base", 0.5)
    torch.testing.assert_close(
        from_folders.score_latents(z, PROMPTS), interpolate_image_tower(tuned, base, 0.5).score_latents(z, PROMPTS)
    )
    assert from_folders.config == tuned.config


@pytest.mark.parametrize("alpha", [-0.1, 1.01, float("nan"), float("inf"), True, "0.5"])
def test_alpha_outside_zero_one_is_refused(alpha):
    tuned, base = _pair()
    with pytest.raises(InputError, match="alpha: expected a number in \\[0, 1\\]"):
        interpolate_image_tower(tuned, base, alpha)


def test_a_base_with_another_text_tower_or_architecture_is_refused():
    tuned, base = _pair()
    with torch.no_grad():
        next(p for n, p in base.clip.named_parameters() if not n.startswith("visual.")).add_(1.0)
    with pytest.raises(InputError, match="base: its text tower differs"):
        interpolate_image_tower(tuned, base, 0.5)
    cfg = {**TINY_TEST_CONFIG, "embed_dim": TINY_TEST_CONFIG["embed_dim"] * 2}
    other = NoisyCLIPModel.from_config(cfg, preview="sd1", seed=0)
    with pytest.raises(InputError, match="base: its architecture"):
        interpolate_image_tower(tuned, other, 0.5)


def test_non_finite_weights_are_refused():
    tuned, base = _pair()
    with torch.no_grad():
        next(tuned.clip.visual.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(InputError, match="non-finite weights"):
        interpolate_image_tower(tuned, base, 0.5)
