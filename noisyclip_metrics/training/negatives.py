"""Hard-negative caption sources by name (a light module: plugins register theirs without importing torch)."""

from __future__ import annotations

from collections.abc import Callable

from noisyclip_metrics.registry import Registry

__all__ = ["NEGATIVES", "negatives_source"]

#: Hard-negative caption generators by name: each maps a prompt to captions that contradict it.
NEGATIVES: Registry[Callable[[str], list[str]]] = Registry("hard-negative source")
NEGATIVES.register("none", lambda prompt: [])


def negatives_source(name: str) -> Callable[[str], list[str]]:
    """The source registered as ``name`` (after loading the plugins, which register theirs, e.g. ``world``).

    Raises:
        UnknownNameError: for an unknown name (with a did-you-mean).
    """
    from noisyclip_metrics.plugins import load_plugins

    load_plugins()
    return NEGATIVES.get(name)
