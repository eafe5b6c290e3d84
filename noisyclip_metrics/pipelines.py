"""Loading diffusion pipelines by id: registered ids (the built-in world's ``world:...``) or local folders."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import InputError
from .resolvers import PIPELINE_RESOLVERS, load_resolvers

__all__ = ["load_pipeline", "quiet_loading"]


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

    with quiet_loading():
        pipe = DiffusionPipeline.from_pretrained(name)
    pipe.set_progress_bar_config(disable=True)
    return pipe
