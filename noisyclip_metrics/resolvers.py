"""Hooks that turn string ids (e.g. the built-in world's ``world:...`` ids) into models and pipelines.

Each resolver returns ``None`` for ids it does not know; ids no resolver claims are read as local folders.
Modules that provide ids (the built-in world) append to these lists when imported, and :data:`RESOLVER_MODULES`
lists those modules so that a plain id lookup imports them lazily.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["MODEL_RESOLVERS", "PIPELINE_RESOLVERS", "RESOLVER_MODULES", "load_resolvers"]

MODEL_RESOLVERS: list[Callable[[str], Any]] = []
PIPELINE_RESOLVERS: list[Callable[[str], Any]] = []
RESOLVER_MODULES: list[str] = ["noisyclip_metrics.world.models"]


def load_resolvers() -> None:
    """Import the modules that register resolvers (idempotent)."""
    for name in RESOLVER_MODULES:
        importlib.import_module(name)
