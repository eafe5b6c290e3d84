"""Loading diffusion pipelines by id: registered ids (the built-in world's ``world:...``) or local folders."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from noisyclip_metrics.errors import CheckpointError, InputError
from noisyclip_metrics.plugins import id_scheme
from noisyclip_metrics.scoring.factory import torch_device

__all__ = ["DTYPES", "check_pipeline_name", "load_pipeline", "quiet_loading", "torch_dtype"]


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Silence diffusers/transformers loading progress bars and info logs while weights load."""
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    was = (dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled())
    levels = (dlog.get_verbosity(), tlog.get_verbosity())
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()
    try:
        yield
    finally:
        if was[0]:
            dlog.enable_progress_bar()
        if was[1]:
            tlog.enable_progress_bar()
        dlog.set_verbosity(levels[0])
        tlog.set_verbosity(levels[1])


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def torch_dtype(name: str | torch.dtype | None) -> torch.dtype | None:
    """``float32`` / ``float16`` / ``bfloat16`` (or a torch dtype, or ``None``) as a torch dtype.

    Examples:
        >>> torch_dtype("float16")
        torch.float16
    """
    if name is None or isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise InputError(f"dtype: expected one of {', '.join(DTYPES)}, got {name!r}")
    return DTYPES[name]


def check_pipeline_name(name: str) -> None:
    """Raise :class:`InputError` unless ``name`` is a plugin's id or a local folder (cheap: loads nothing)."""
    if id_scheme(name) is None and not Path(name).is_dir():
        raise InputError(f"pipeline: {name!r} is neither a registered model id nor a local pipeline folder")


def load_pipeline(name: str, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> Any:
    """A diffusers pipeline from a registered id or a local folder (``DiffusionPipeline.from_pretrained``), moved to
    ``device`` and cast to ``dtype`` when given (``float32``, ``float16``, ``bfloat16``).

    Raises:
        UnknownNameError: for an unknown registered id (with a did-you-mean).
        InputError: when ``name`` is neither a registered id nor a local folder (nothing is downloaded), or for an
            unknown dtype or an unavailable device.
    """
    device, dtype = torch_device(device), torch_dtype(dtype)
    scheme = id_scheme(name)  # a plugin's id ("world:sd-base"), or None for a folder
    if scheme is not None:
        if scheme.kind(str(name)) != "pipeline":  # unknown ids fail with a did-you-mean
            raise InputError(f"pipeline: {name} is a CLIP model, not a diffusion pipeline")
        pipe = scheme.load_pipeline(str(name))  # may be cached and shared: a placed one is a copy
        return _placed(copy.deepcopy(pipe) if device is not None or dtype is not None else pipe, device, dtype)
    check_pipeline_name(name)
    _check_pipeline_folder(Path(name))
    from diffusers import DiffusionPipeline

    try:
        with quiet_loading():
            pipe = DiffusionPipeline.from_pretrained(
                name, use_safetensors=True, **({"torch_dtype": dtype} if dtype is not None else {})
            )
    except (OSError, ValueError, TypeError, KeyError, AttributeError, ImportError) as err:
        # diffusers reports a folder it cannot load with whatever exception its code hit; they all mean "bad folder"
        message = " ".join(str(err).split())[:300]
        raise CheckpointError(
            f"{name}: not a loadable diffusers pipeline folder ({type(err).__name__}: {message})"
        ) from None
    pipe.set_progress_bar_config(disable=True)
    return _placed(pipe, device, None)


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _check_pipeline_folder(folder: Path) -> None:
    """``model_index.json`` is a JSON object, and no component folder holds only pickle weights (never loaded)."""
    from noisyclip_metrics.io.jsonfile import read_json_file, type_name

    index = read_json_file(folder / "model_index.json", "pipeline index (model_index.json)", CheckpointError)
    if not isinstance(index, dict) or not isinstance(index.get("_class_name"), str):
        raise CheckpointError(
            f"{folder / 'model_index.json'}: expected a JSON object with a '_class_name' string, "
            f"found {type_name(index)}"
        )
    for component, spec in index.items():
        sub = folder / component
        if component.startswith("_") or not isinstance(spec, list) or not sub.is_dir():
            continue
        files = [p for p in sub.iterdir() if p.is_file()]
        pickles = sorted(p.name for p in files if p.suffix in PICKLE_SUFFIXES)
        if pickles and not any(p.name.endswith(".safetensors") for p in files):
            raise CheckpointError(
                f"{sub}: only pickle weights {pickles}, which are never loaded (unpickling runs arbitrary code); "
                "convert them to safetensors (e.g. pipe.save_pretrained(folder, safe_serialization=True))"
            )


def _placed(pipe: Any, device: torch.device | None, dtype: torch.dtype | None) -> Any:
    if dtype is not None and getattr(pipe, "dtype", None) == dtype:
        dtype = None  # already: a cast would only make diffusers warn about modules to keep in float32
    if device is not None or dtype is not None:
        pipe = pipe.to(**{k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None})
    return pipe
