"""Placement of pipelines and models: device and dtype options, and cached registered assets never moved in place."""

from __future__ import annotations

import pytest
import torch

from noisyclip_metrics.diffusion.pipelines import load_pipeline, torch_dtype
from noisyclip_metrics.errors import InputError
from noisyclip_metrics.scoring.factory import on_device, resolve_model, torch_device


def test_names_of_devices_and_dtypes():
    assert torch_dtype("bfloat16") is torch.bfloat16 and torch_dtype(None) is None
    assert torch_device("cpu") == torch.device("cpu") and torch_device(None) is None
    with pytest.raises(InputError, match="dtype: expected one of float32, float16, bfloat16, got 'half'"):
        torch_dtype("half")
    with pytest.raises(InputError, match="device: expected a torch device such as cpu, cuda or cuda:1, got 'gpu'"):
        torch_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="torch sees no CUDA device here"):
            torch_device("cuda")


def test_a_placed_registered_pipeline_is_a_copy():
    shared = load_pipeline("world:sd-small")
    half = load_pipeline("world:sd-small", "cpu", "bfloat16")
    assert half is not shared and half.dtype == torch.bfloat16 and half.unet.dtype == torch.bfloat16
    assert load_pipeline("world:sd-small") is shared and shared.unet.dtype == torch.float32  # the cache is untouched
    assert load_pipeline("world:sd-small", "cpu") is not shared  # asked for a placement: always a copy


def test_a_placed_model_is_a_copy_unless_already_there():
    shared = resolve_model("world:clip")
    assert resolve_model("world:clip", "cpu") is shared and on_device(shared, None) is shared
    moved = resolve_model("world:clip", "meta")  # a device every machine has, to see the copy
    assert moved is not shared and moved.device.type == "meta" and shared.device.type == "cpu"
    assert resolve_model(shared, "meta").device.type == "meta" and shared.device.type == "cpu"


def test_the_metric_owns_a_copy_of_a_registered_model():
    from noisyclip_metrics.scoring.metric import NoisyCLIPScore

    metric = NoisyCLIPScore(model="world:noisyclip")
    assert metric.model is not resolve_model("world:noisyclip")
    mine = resolve_model("world:noisyclip")
    assert NoisyCLIPScore(model=mine).model is mine  # a model passed in is the caller's to place
