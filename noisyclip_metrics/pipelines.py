"""Loading diffusion pipelines by id: registered ids (the built-in world's ``world:...``) or local folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import InputError
from .resolvers import PIPELINE_RESOLVERS, load_resolvers

__all__ = ["load_pipeline"]


def load_pipeline(name: str) -> Any:
    """A diffusers pipeline from a registered id or a local folder (``DiffusionPipeline.from_pretrained``).

    Raises:
        UnknownNameError: for an unknown registered id (with a did-you-mean).
        InputError: when ``name`` is neither a registered id nor a local folder (nothing is downloaded).
    """
    load_resolvers()
    for resolver in PIPELINE_RESOLVERS:
        pipe = resolver(name)
        if pipe is not None:
            return pipe
    if not Path(name).is_dir():
        raise InputError(f"pipeline: {name!r} is neither a registered model id nor a local pipeline folder")
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(name)
    pipe.set_progress_bar_config(disable=True)
    return pipe
