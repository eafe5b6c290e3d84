"""Declarative benchmark specs (``adapters/<name>.yaml``), the registries behind them and :func:`load_benchmark`.

A spec names the benchmark's files, its ``format`` (the key of a loader function in :data:`LOADERS`), the field
mapping and skill mapping the loader applies, and the licence, citation and how to obtain the files. The YAML files
live in the repository's ``adapters/`` folder, installed as the package ``noisyclip_metrics.adapters`` and read with
:mod:`importlib.resources`. Users may register their own specs with :func:`register_benchmark`.

Nothing is downloaded implicitly: :func:`load_benchmark` reads the path it is given. See
:mod:`noisyclip_metrics.evaluation.benchmarks.download` for the explicit, opt-in download helper.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from noisyclip_metrics.errors import DataFileError, InputError
from noisyclip_metrics.evaluation.benchmarks._files import read_text
from noisyclip_metrics.evaluation.benchmarks.promptset import SKILLS, Prompt, PromptSet
from noisyclip_metrics.io.safepath import name_problem
from noisyclip_metrics.registry import Registry, did_you_mean

__all__ = [
    "LOADERS",
    "BenchmarkSpec",
    "DownloadSpec",
    "FileSpec",
    "Source",
    "benchmark_loader",
    "benchmark_spec",
    "list_benchmarks",
    "load_benchmark",
    "loader_options",
    "parse_spec",
    "register_benchmark",
]


@dataclass(frozen=True)
class FileSpec:
    """A file the benchmark needs: a ``role`` name and candidate file names (the first one present is used)."""

    role: str
    names: tuple[str, ...]
    required: bool = True
    description: str = ""


@dataclass(frozen=True)
class DownloadSpec:
    """One file the optional download helper may fetch: source URL, local file name, expected SHA-256."""

    url: str
    file: str
    sha256: str | None = None


@dataclass(frozen=True)
class BenchmarkSpec:
    """A parsed ``adapters/<name>.yaml`` (see the YAML files for documented examples)."""

    name: str
    title: str
    format: str
    license: str
    citation: str
    obtain: str
    files: tuple[FileSpec, ...] = ()
    description: str = ""
    homepage: str = ""
    fields: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    skill_map: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()
    download: tuple[DownloadSpec, ...] = ()
    expected: Mapping[str, Any] = field(default_factory=dict)
    skills: tuple[str, ...] = ()
    judgments: Mapping[str, str] = field(default_factory=dict)
    origin: str = ""

    def skills_for(self, *labels: str | None) -> tuple[str, ...]:
        """Shared-vocabulary skills of native labels (categories, tags, challenges) via ``skill_map``."""
        out: list[str] = []
        for label in labels:
            if label is not None:
                out.extend(self.skill_map.get(label, ()))
        return tuple(out)


@dataclass(frozen=True)
class Source:
    """Where a loader reads: the benchmark folder and the resolved file of each role (None when absent)."""

    folder: Path
    files: Mapping[str, Path | None]


Loader = Callable[..., Iterable[Prompt]]
LOADERS: Registry[Loader] = Registry("benchmark format")
"""Loader functions keyed by a spec's ``format``: ``loader(spec, source, **options) -> Iterable[Prompt]``."""

_SPECS: Registry[BenchmarkSpec] = Registry("benchmark")
_BUILTINS_LOADED = False
_REQUIRED = ("name", "title", "format", "license", "citation", "obtain")
_KNOWN = set(_REQUIRED) | {
    "files",
    "description",
    "homepage",
    "fields",
    "options",
    "skill_map",
    "categories",
    "splits",
    "download",
    "expected",
    "skills",
    "judgments",
}


def _key_line(text: str, key: str) -> int | None:
    match = re.search(rf"^{re.escape(key)}\s*:", text, flags=re.MULTILINE)
    return text.count("\n", 0, match.start()) + 1 if match else None


def parse_spec(text: str, origin: str = "<spec>") -> BenchmarkSpec:
    """Parse and validate the YAML text of a benchmark spec.

    Raises:
        DataFileError: YAML syntax errors, missing or unknown keys, wrong types, skills outside the vocabulary.

    Examples:
        >>> spec = parse_spec('''
        ... name: tiny
        ... title: Tiny
        ... format: delimited
        ... license: MIT
        ... citation: none
        ... obtain: make it
        ... files: [{role: prompts, names: [tiny.csv]}]
        ... skill_map: {Colour: [attribute]}
        ... ''')
        >>> spec.name, spec.files[0].names, spec.skills_for("Colour", "Other")
        ('tiny', ('tiny.csv',), ('attribute',))
    """
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise DataFileError(f"{origin}{f':{line}' if line else ''}: invalid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise DataFileError(f"{origin}: a benchmark spec must be a YAML mapping, found {type(raw).__name__}")

    def fail(key: str, problem: str) -> DataFileError:
        line = _key_line(text, key)
        return DataFileError(f"{origin}{f':{line}' if line else ''}: field {key!r}: {problem}")

    for key in _REQUIRED:
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise fail(key, "required, a non-empty string")
    for key in raw:
        if key not in _KNOWN:
            raise fail(key, f"unknown key{did_you_mean(str(key), sorted(_KNOWN))}")
    try:
        files = tuple(
            FileSpec(
                role=str(f["role"]),
                names=tuple(str(n) for n in f["names"]),
                required=bool(f.get("required", True)),
                description=str(f.get("description", "")),
            )
            for f in raw.get("files", []) or []
        )
    except (KeyError, TypeError) as exc:
        raise fail("files", f"each entry needs 'role' and a list 'names' ({exc})") from None
    for fspec in files:
        for name in fspec.names:
            if name_problem(name) is not None:  # a file name of the benchmark folder, never a path out of it
                raise fail("files", f"role {fspec.role!r}: file name {name!r} {name_problem(name)}")
    skill_map: dict[str, tuple[str, ...]] = {}
    for label, skills in (raw.get("skill_map") or {}).items():
        skills = (skills,) if isinstance(skills, str) else tuple(skills or ())
        for skill in skills:
            if skill not in SKILLS:
                raise fail("skill_map", f"{label!r} maps to unknown skill {skill!r}{did_you_mean(skill, SKILLS)}")
        skill_map[str(label)] = skills
    try:
        download = tuple(
            DownloadSpec(url=str(d["url"]), file=str(d["file"]), sha256=d.get("sha256"))
            for d in raw.get("download") or []
        )
    except (KeyError, TypeError) as exc:
        raise fail("download", f"each entry needs 'url' and 'file' ({exc})") from None
    for item in download:
        if name_problem(item.file) is not None:  # downloads are written into the destination folder only
            raise fail("download", f"file {item.file!r} {name_problem(item.file)}")
    for key in ("fields", "options", "expected", "judgments"):
        if not isinstance(raw.get(key, {}) or {}, dict):
            raise fail(key, "must be a mapping")
    skills = tuple(str(x) for x in raw.get("skills") or ())
    for skill in skills:
        if skill not in SKILLS:
            raise fail("skills", f"unknown skill {skill!r}{did_you_mean(skill, SKILLS)}")
    return BenchmarkSpec(
        name=raw["name"].strip(),
        title=raw["title"].strip(),
        format=raw["format"].strip(),
        license=raw["license"].strip(),
        citation=raw["citation"].strip(),
        obtain=raw["obtain"].strip(),
        files=files,
        description=str(raw.get("description", "")).strip(),
        homepage=str(raw.get("homepage", "")).strip(),
        fields=MappingProxyType(dict(raw.get("fields") or {})),
        options=MappingProxyType(dict(raw.get("options") or {})),
        skill_map=MappingProxyType(skill_map),
        categories=tuple(str(c) for c in raw.get("categories") or ()),
        splits=tuple(str(s) for s in raw.get("splits") or ()),
        download=download,
        expected=MappingProxyType(dict(raw.get("expected") or {})),
        skills=skills,
        judgments=MappingProxyType({str(k): str(v) for k, v in (raw.get("judgments") or {}).items()}),
        origin=origin,
    )


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    folder = resources.files("noisyclip_metrics.adapters")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            spec = parse_spec(entry.read_text(encoding="utf-8"), origin=f"adapters/{entry.name}")
            if spec.name != entry.name[: -len(".yaml")]:
                raise DataFileError(f"adapters/{entry.name}: field 'name': {spec.name!r} must match the file name")
            _SPECS.register(spec.name, spec)


def register_benchmark(spec: BenchmarkSpec | str | Path) -> BenchmarkSpec:
    """Register a user spec (a :class:`BenchmarkSpec` or the path of a YAML file); returns the spec."""
    _load_builtins()
    if not isinstance(spec, BenchmarkSpec):
        path = Path(spec)
        spec = parse_spec(read_text(path), origin=str(path))
    LOADERS.get(spec.format)  # unknown format: did-you-mean error now rather than at load time
    _SPECS.register(spec.name, spec)
    return spec


def list_benchmarks() -> list[str]:
    """Names of the registered benchmarks (built-in specs first).

    Examples:
        >>> "genai-bench-527" in list_benchmarks()
        True
    """
    _load_builtins()
    return _SPECS.names()


def benchmark_spec(name: str) -> BenchmarkSpec:
    """The spec registered under ``name``.

    Raises:
        UnknownNameError: with the closest registered name.

    Examples:
        >>> benchmark_spec("drawbench").license
        'none stated'
        >>> benchmark_spec("drawbnech")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        noisyclip_metrics.errors.UnknownNameError: unknown benchmark 'drawbnech'; did you mean 'drawbench'? ...
    """
    _load_builtins()
    return _SPECS.get(name)


def _resolve(spec: BenchmarkSpec, path: Path, overrides: Mapping[str, str | Path]) -> Source:
    if not path.exists():
        raise DataFileError(f"{path}: not found. {spec.title}: {spec.obtain}")
    roles = [f.role for f in spec.files]
    for role in overrides:
        if role not in roles:
            raise InputError(f"{spec.name}: no file role {role!r}{did_you_mean(role, roles)} Roles: {', '.join(roles)}")
    folder = path if path.is_dir() else path.parent
    files: dict[str, Path | None] = {}
    for k, fspec in enumerate(spec.files):
        found: Path | None = None
        if fspec.role in overrides:
            found = Path(overrides[fspec.role])
            if not found.is_file():
                raise DataFileError(f"{found}: not found (given for the {fspec.role!r} file of {spec.name})")
        elif path.is_file() and k == 0:
            found = path
        else:
            found = next((folder / n for n in fspec.names if (folder / n).is_file()), None)
        if found is None and fspec.required:
            raise DataFileError(
                f"{folder}: no {fspec.role} file for {spec.name} (looked for {', '.join(fspec.names)}). "
                f"To obtain it: {spec.obtain}"
            )
        files[fspec.role] = found
    return Source(folder=folder, files=MappingProxyType(files))


def benchmark_loader(name: str) -> Loader:
    """The loader of benchmark ``name``'s format (after loading the plugins, which register theirs).

    Its keyword-only parameters are the options :func:`load_benchmark` accepts; ``needs_files = False`` on it means
    the prompts are generated and no path is needed.
    """
    from noisyclip_metrics.plugins import load_plugins

    spec = benchmark_spec(name)
    load_plugins()  # formats of plugins (the world's) register when they load
    return LOADERS.get(spec.format)


def loader_options(name: str) -> list[str]:
    """The options benchmark ``name`` takes (e.g. ``["n", "seed"]`` for ``world``)."""
    return _keyword_options(benchmark_loader(name))


def _keyword_options(loader: Loader) -> list[str]:
    return [p.name for p in inspect.signature(loader).parameters.values() if p.kind is p.KEYWORD_ONLY]


def load_benchmark(name: str, path: str | Path | None = None, **options: Any) -> PromptSet:
    """Load a benchmark's prompts from local files.

    Args:
        name: a registered benchmark (:func:`list_benchmarks`); unknown names get a did-you-mean error.
        path: the folder holding the benchmark's files, or the main file itself (other files are looked for beside
            it). Nothing is fetched. May be None for formats that need no files (``world``: generated prompts).
        **options: loader options documented in the spec (e.g. ``split="train"`` for T2I-CompBench), plus
            ``files={role: path}`` to point a single role at another file.

    Returns:
        The prompts, with ids, text, skills, category / split and source.

    Raises:
        UnknownNameError: unknown benchmark.
        InputError: unknown option (with did-you-mean) or bad option value, or no ``path`` for a benchmark that
            reads files.
        DataFileError: missing or malformed files (messages name file, line and field).

    Examples:
        >>> import tempfile, pathlib
        >>> tmp = tempfile.TemporaryDirectory()
        >>> folder = pathlib.Path(tmp.name)
        >>> rows = ["Prompt,Category", "A red car.,Colors", "Two cats.,Counting"]
        >>> _ = (folder / "drawbench_prompts.csv").write_text("\\n".join(rows))
        >>> prompts = load_benchmark("drawbench", folder)
        >>> [(p.id, p.skills) for p in prompts]
        [('000', ('attribute',)), ('001', ('counting',))]
        >>> tmp.cleanup()
    """
    spec = benchmark_spec(name)
    loader = benchmark_loader(name)
    accepted = _keyword_options(loader)
    overrides = options.pop("files", None) or {}
    for key in options:
        if key not in accepted:
            raise InputError(
                f"{spec.name}: unknown option {key!r}{did_you_mean(key, accepted)} "
                f"Options: {', '.join(accepted) or '(none)'}"
            )
    if path is None:
        if getattr(loader, "needs_files", True):
            raise InputError(
                f"path: {spec.name} reads its prompts from files; pass the folder or file that holds them. "
                f"To obtain them: {spec.obtain}"
            )
        source = Source(folder=Path("."), files=MappingProxyType({}))
    else:
        source = _resolve(spec, Path(path), overrides)
    merged = {**spec.options, **options}
    return PromptSet(spec.name, tuple(loader(spec, source, **merged)))
