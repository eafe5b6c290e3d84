"""The build configuration: the full preset is what the shipped weights were built with, and UNets follow it."""

from __future__ import annotations

import dataclasses
import json

from noisyclip_metrics.world.build.config import PRESETS
from noisyclip_metrics.world.build.unet import UNET_MODELS, build_unet
from noisyclip_metrics.world.models import world_weights_dir


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
