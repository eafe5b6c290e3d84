"""Placement of pipelines and models: device and dtype options, and cached registered assets never moved in place."""

from __future__ import annotations

import pytest
import torch

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.functional import on_device, resolve_model
from noisyclip_metrics.pipelines import load_pipeline, torch_device, torch_dtype


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
    from noisyclip_metrics.metric import NoisyCLIPScore

    metric = NoisyCLIPScore(model="world:noisyclip")
    assert metric.model is not resolve_model("world:noisyclip")
    mine = resolve_model("world:noisyclip")
    assert NoisyCLIPScore(model=mine).model is mine  # a model passed in is the caller's to place


@pytest.mark.slow
def test_gpu_check_script_dry_runs_on_the_cpu(tmp_path, capsys):
    """scripts/gpu_check.py is the GPU's test of placement; here its checks run on the CPU so that it cannot rot."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (
        module.main(
            ["--device", "cpu", "--out", str(tmp_path), "--only", "monitor", "cli", "train", "tiny", "run_batch"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "5 of 5 checks passed" in out and (tmp_path / "gpu_check.json").is_file()
