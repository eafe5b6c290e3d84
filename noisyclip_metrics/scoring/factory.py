"""Model resolution and device placement: the one place that turns what a user passes as a model (a
:class:`~noisyclip_metrics.scoring.model.NoisyCLIPModel`, a plugin's model id, a checkpoint folder or a factory)
into a model on a device.

Examples:
    >>> from noisyclip_metrics.scoring.model import NoisyCLIPModel, TINY_TEST_CONFIG
    >>> model = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0)
    >>> resolve_model(model) is model, resolve_model(lambda: model, "cpu") is model
    (True, True)
    >>> torch_device("cpu"), torch_device(None)
    (device(type='cpu'), None)
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import torch

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.plugins import id_scheme
from noisyclip_metrics.scoring.model import NoisyCLIPModel

__all__ = ["ModelLike", "on_device", "resolve_model", "torch_device"]


def torch_device(name: str | torch.device | None) -> torch.device | None:
    """A torch device from ``cpu``, ``cuda``, ``cuda:1``, ``mps``... (``None`` stays ``None``).

    Raises:
        InputError: for a malformed name or a device this machine does not have.
    """
    if name is None or isinstance(name, torch.device):
        return name
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"device: expected a torch device such as cpu, cuda or cuda:1, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device: {name!r} asked for, but torch sees no CUDA device here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device: {name!r} asked for, but torch sees no MPS device here")
    return device


ModelLike = NoisyCLIPModel | str | Path | Callable[[], NoisyCLIPModel]


def resolve_model(model: ModelLike, device: str | torch.device | None = None) -> NoisyCLIPModel:
    """A :class:`NoisyCLIPModel`, a registered model id, a checkpoint folder, or a zero-argument factory.

    With ``device``, the model on that device: a model elsewhere is copied there, so that neither the caller's
    model nor a registered id's cached one moves.
    """
    if isinstance(model, NoisyCLIPModel):
        return on_device(model, device)
    if isinstance(model, (str, Path)):
        scheme = id_scheme(model)  # a plugin's id ("world:clip"), or None for a folder
        if scheme is not None:
            if scheme.kind(str(model)) != "model":  # unknown ids fail with a did-you-mean
                raise InputError(f"model: {model} is a diffusion pipeline, not a CLIP model")
            return on_device(scheme.load_model(str(model)), device)
        return NoisyCLIPModel.from_pretrained(model).to(torch_device(device) or "cpu")
    if callable(model):
        built = model()
        if not isinstance(built, NoisyCLIPModel):
            raise InputError(f"model: the factory returned {type(built).__name__}, expected a NoisyCLIPModel")
        return on_device(built, device)
    raise InputError(f"model: expected a NoisyCLIPModel, a model id/folder or a factory, got {type(model).__name__}")


def on_device(model: NoisyCLIPModel, device: str | torch.device | None) -> NoisyCLIPModel:
    """``model`` when it is on ``device`` (or ``device`` is ``None``), else a copy of it moved there."""
    target = torch_device(device)
    if target is None:
        return model
    if target.type == "cuda" and target.index is None:
        target = torch.device("cuda", torch.cuda.current_device())
    if model.device == target:
        return model
    return copy.deepcopy(model).to(target)
