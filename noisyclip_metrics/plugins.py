"""Plugins: packages that add model ids, benchmarks, scorers, judges and run defaults through the registries.

A plugin is a callable (or a module whose import registers what it provides) named by an entry point of the group
:data:`ENTRY_POINT_GROUP`. :func:`load_plugins` loads every installed one, once per process; every lookup that may
need a plugin (a model id, a benchmark format, a judge, a run's defaults, the CLI's commands) calls it first. The
built-in world is such a plugin (``pyproject.toml``: ``world = "noisyclip_metrics.world.plugin:register"``): the
core never imports it.

A plugin registers with the registries a third-party package would use:

* model ids: :func:`register_id_scheme` with an :class:`IdScheme` (ids ``"<prefix>:<name>"``; everything else is read
  as a local folder);
* benchmarks: :func:`noisyclip_metrics.evaluation.benchmarks.register_benchmark` and the loader registry
  :data:`noisyclip_metrics.evaluation.benchmarks.LOADERS`;
* scorers: :func:`noisyclip_metrics.scoring.scorers.register_scorer`;
* judges: :data:`noisyclip_metrics.evaluation.judges.JUDGES`;
* CLI subcommands: :data:`noisyclip_metrics.cli.COMMANDS`.

Examples:
    >>> load_plugins()  # the built-in world, and any installed plugin
    ('world',)
    >>> run_defaults("world:sd-base").judge
    'world-oracle'
    >>> run_defaults("/some/pipeline/folder") == RunDefaults()  # a folder: no defaults
    True
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import MappingProxyType
from typing import Any

from noisyclip_metrics.errors import InputError, NoisyCLIPError
from noisyclip_metrics.registry import Registry

__all__ = [
    "ENTRY_POINT_GROUP",
    "ID_SCHEMES",
    "IdScheme",
    "PluginError",
    "RunDefaults",
    "id_scheme",
    "load_plugins",
    "register_id_scheme",
    "registered_ids",
    "run_defaults",
    "source_paths",
]

#: The entry point group plugins are installed under.
ENTRY_POINT_GROUP = "noisyclip_metrics.plugins"


class PluginError(NoisyCLIPError):
    """An installed plugin failed to load (the message names it and its entry point)."""


@dataclass(frozen=True)
class RunDefaults:
    """What an evaluation of a model uses when the user leaves a setting out (a plugin's models know their world).

    Args:
        num_inference_steps: denoising steps T.
        guidance_scale: classifier-free guidance.
        benchmark: the benchmark its models are evaluated on.
        judge: the judge of its final images.
        models: which model id each scorer model resource takes: ``"clip"`` (the frozen CLIP), and a fine-tuned
            scorer's own name (``"noisyclip"``, ``"noisyclip-x0"``) for its checkpoint.
    """

    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    benchmark: str | None = None
    judge: str | None = None
    models: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", MappingProxyType(dict(self.models)))


@dataclass(frozen=True)
class IdScheme:
    """Model ids ``"<prefix>:<name>"`` that a plugin resolves (the built-in world's ``world:sd-base``).

    Args:
        prefix: the part before the colon.
        ids: the ids it knows, as ``{id: kind}`` with kind ``"model"`` (a NoisyCLIP/CLIP) or ``"pipeline"``.
        load_model: model id -> :class:`~noisyclip_metrics.scoring.model.NoisyCLIPModel` (may be cached; it is
            copied when placed). The core checks the id's kind first.
        load_pipeline: pipeline id -> diffusers pipeline (may be cached; it is copied when placed).
        source_paths: id -> the folders holding its weights (hashed into a run's identity).
        run_defaults: pipeline id -> the :class:`RunDefaults` of an evaluation of it.
    """

    prefix: str
    ids: Callable[[], Mapping[str, str]]
    load_model: Callable[[str], Any]
    load_pipeline: Callable[[str], Any]
    source_paths: Callable[[str], tuple[Path, ...]]
    run_defaults: Callable[[str], RunDefaults] = lambda _id: RunDefaults()

    def kind(self, model_id: str) -> str:
        """``"model"`` or ``"pipeline"``; an unknown id raises with a did-you-mean."""
        known = self.ids()
        if model_id not in known:
            from noisyclip_metrics.errors import UnknownNameError
            from noisyclip_metrics.registry import did_you_mean

            names = list(known)
            raise UnknownNameError(
                f"unknown {self.prefix} id {model_id!r}{did_you_mean(model_id, names)} Available: {', '.join(names)}"
            )
        return known[model_id]


ID_SCHEMES: Registry[IdScheme] = Registry("model id scheme")

_lock = threading.RLock()
_loaded: tuple[str, ...] | None = None
_loading = False


def register_id_scheme(scheme: IdScheme) -> IdScheme:
    """Make ids ``"<scheme.prefix>:..."`` resolvable wherever a model id or folder is accepted."""
    return ID_SCHEMES.register(scheme.prefix, scheme)


def load_plugins() -> tuple[str, ...]:
    """Load every plugin installed under :data:`ENTRY_POINT_GROUP` (once per process); their names, sorted.

    Raises:
        PluginError: naming the plugin whose loading failed.
    """
    global _loaded, _loading
    with _lock:
        if _loaded is not None:
            return _loaded
        if _loading:  # a plugin's own registration looked something up: what is registered so far serves it
            return ()
        _loading = True
        try:
            names: list[str] = []
            for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
                if ep.name in names:  # the same distribution seen twice on sys.path
                    continue
                try:
                    target = ep.load()
                    if callable(target):
                        target()
                except NoisyCLIPError:
                    raise
                except Exception as err:
                    raise PluginError(
                        f"plugin {ep.name!r} ({ep.value}) failed to load: {type(err).__name__}: {err}"
                    ) from err
                names.append(ep.name)
            _loaded = tuple(names)
        finally:
            _loading = False
        return _loaded


def id_scheme(name: str | Path) -> IdScheme | None:
    """The scheme that resolves ``name`` (``"<prefix>:..."`` with a registered prefix), or ``None`` for a folder."""
    load_plugins()
    prefix, sep, _ = str(name).partition(":")
    return ID_SCHEMES.get(prefix) if sep and prefix in ID_SCHEMES else None


def run_defaults(model: str | Path) -> RunDefaults:
    """The defaults of an evaluation of ``model`` (empty for a local folder)."""
    scheme = id_scheme(model)
    if scheme is None:
        return RunDefaults()
    if scheme.kind(str(model)) != "pipeline":
        raise InputError(f"model: {model} is a CLIP model, not a diffusion pipeline")
    return scheme.run_defaults(str(model))


def source_paths(name: str | Path | None) -> tuple[Path, ...]:
    """The folders holding the weights of a model id or folder (``()`` for ``None``)."""
    if name is None:
        return ()
    scheme = id_scheme(name)
    if scheme is None:
        return (Path(name),)
    scheme.kind(str(name))
    return tuple(scheme.source_paths(str(name)))


def registered_ids(kind: str | None = None) -> list[str]:
    """Every id of every scheme (of ``kind`` ``"model"`` or ``"pipeline"`` when given), sorted."""
    load_plugins()
    return sorted(i for p in ID_SCHEMES for i, k in ID_SCHEMES.get(p).ids().items() if kind is None or k == kind)
