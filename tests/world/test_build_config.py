"""The build configuration: the full preset is what the shipped weights were built with, and UNets follow it."""

from __future__ import annotations

import dataclasses
import json

from noisyclip_metrics.world.assets import world_weights_dir
from noisyclip_metrics.world.build.presets import PRESETS
from noisyclip_metrics.world.build.unet import UNET_MODELS, build_unet


def test_shipped_weights_record_the_full_preset_of_this_code():
    # a change of the full preset must come with weights rebuilt from it (and the other way round)
    record = json.loads((world_weights_dir() / "BUILD.json").read_text(encoding="utf-8"))
    assert record["config"] == json.loads(json.dumps(PRESETS.get("full").to_json()))
    for cfg in UNET_MODELS.values():
        unet_cfg = json.loads((world_weights_dir() / cfg.name / "unet" / "config.json").read_text(encoding="utf-8"))
        assert unet_cfg["attention_head_dim"] == cfg.attention_heads
        assert tuple(unet_cfg["block_out_channels"]) == cfg.block_out_channels


def test_attention_heads_is_the_number_of_heads_of_every_attention_layer():
    cfg = dataclasses.replace(UNET_MODELS["sd-small"], block_out_channels=(16, 32), attention_heads=2)
    unet = build_unet(cfg, cross_attention_dim=24)
    attentions = [m for m in unet.modules() if type(m).__name__ == "Attention"]
    assert attentions and {m.heads for m in attentions} == {2}
    widths = {m.to_q.out_features // m.heads for m in attentions}
    assert widths == {8, 16}  # head width = channels / heads at both resolutions


def test_noisy_stage_refuses_bad_prompt_counts():
    import pytest

    from noisyclip_metrics.errors import InputError
    from noisyclip_metrics.world.build.presets import NoisyStageConfig

    for kwargs, name in (
        ({"prompts": 0}, "prompts"),
        ({"coverage_prompts": -1}, "coverage_prompts"),
        ({"coverage_prompts": True}, "coverage_prompts"),
        ({"seeds": 2.0}, "seeds"),
    ):
        with pytest.raises(InputError, match=f"^{name}: expected an int"):
            NoisyStageConfig(**kwargs)


def test_noisyclip_training_prompts_never_touch_the_benchmark_or_its_heldout_compositions():
    from noisyclip_metrics.world.build.stages import noisy_training_prompts
    from noisyclip_metrics.world.grammar import parse_prompt
    from noisyclip_metrics.world.splits import make_split

    cfg = PRESETS.get("full")
    prompts = noisy_training_prompts(cfg)
    n, extra = cfg.noisy.prompts, cfg.noisy.coverage_prompts
    split = make_split(cfg.seed)
    assert len(prompts) == n + extra == len(set(prompts)) and not set(prompts) & split.pool_texts
    specs = [parse_prompt(p) for p in prompts]
    # held-out compositions are held out from every trained component: no training prompt touches one
    assert not any(split.touches_heldout(s) for s in specs)
    assert noisy_training_prompts(cfg) == prompts
    # ... unless a separately named study lets the coverage part reach them
    study = dataclasses.replace(cfg, noisy=dataclasses.replace(cfg.noisy, coverage_heldout=True))
    reaching = [parse_prompt(p) for p in noisy_training_prompts(study)[n:]]
    assert 0.1 < sum(split.touches_heldout(s) for s in reaching) / extra < 0.9
    assert (
        noisy_training_prompts(dataclasses.replace(cfg, noisy=dataclasses.replace(cfg.noisy, coverage_prompts=0)))
        == prompts[:n]
    )
