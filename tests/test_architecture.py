"""The package layout stated in ``docs/architecture.md`` holds: layers import downwards only, no import cycles, few
top-level modules, no two modules with one name and two meanings.

Imports are read from the source (``ast``), including those inside functions; imports under ``if TYPE_CHECKING:``
are annotations only and do not count. The checks run on a synthetic package too, so each can be seen to fail.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "noisyclip_metrics"

#: The layers, lowest first: a module may import its own layer and the layers below it. The root package
#: (``noisyclip_metrics/__init__.py``, lazy exports and ``__version__`` only) may be imported from anywhere.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "registry", "plugins", "provenance", "benchmarking"),  # the foundation: no subpackage imports
    ("io",),
    ("scoring", "testing"),
    ("diffusion",),
    ("evaluation",),
    ("leaderboard",),
    ("bon",),
    ("training",),
    ("cli",),
    ("world",),  # a plugin: uses every layer; the core never imports it (tests/test_plugins.py)
)

#: Module names used twice on purpose: a command module named after what it runs, a plugin's implementation of a
#: core registry.
SHARED_NAMES = {
    "correlate.py": {"cli/correlate.py", "evaluation/correlate.py"},  # the command and what it runs
    "negatives.py": {"training/negatives.py", "world/negatives.py"},  # the registry and the world's entry
}
MAX_TOP_LEVEL_MODULES = 8
#: The script folders: timing benchmarks, research studies, publishing tools.
SCRIPT_FOLDERS = ("benchmarks", "experiments", "tools")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> package modules it imports at run time (module level or inside functions)."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)
        }
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                wanted = [[alias.name] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                wanted = [[f"{module}.{alias.name}", module] for alias in node.names]
            else:
                continue
            for candidates in wanted:  # per imported name: the submodule it names, else the module it is from
                for target in candidates:
                    while target and target not in files and "." in target:
                        target = target.rsplit(".", 1)[0]
                    if target in files:
                        if target != name:
                            targets.add(target)
                        break
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def layer_of(module: str, layers: Iterable[tuple[str, ...]]) -> int | None:
    parts = module.split(".")
    if len(parts) == 1:
        return None  # the root package
    for i, layer in enumerate(layers):
        if parts[1] in layer:
            return i
    raise AssertionError(f"{module}: in no layer of tests/test_architecture.py::LAYERS (add it, and to the docs)")


def upward_imports(graph: dict[str, set[str]], layers: tuple[tuple[str, ...], ...]) -> list[str]:
    bad = []
    for source, targets in sorted(graph.items()):
        here = layer_of(source, layers)
        for target in sorted(targets):
            there = layer_of(target, layers)
            if here is not None and there is not None and there > here:
                bad.append(f"{source} -> {target}")
    return bad


def test_layers_import_downwards_only() -> None:
    assert upward_imports(import_graph(PACKAGE), LAYERS) == []


def test_no_import_cycles() -> None:
    assert cycles(import_graph(PACKAGE)) == []


def test_every_subpackage_and_top_level_module_has_a_layer() -> None:
    named = {name for layer in LAYERS for name in layer}
    present = {p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    present |= {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert present == named
    assert len([p for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]) <= MAX_TOP_LEVEL_MODULES


def test_no_two_modules_share_a_name_by_accident() -> None:
    by_name: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name != "__init__.py":
            by_name.setdefault(path.name, set()).add(path.relative_to(PACKAGE).as_posix())
    shared = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    assert shared == SHARED_NAMES


def script_problems(folders: Iterable[Path]) -> list[str]:
    """Scripts that edit ``sys.path`` or import another script (they may import the package and libraries only)."""
    scripts = {p.stem: p for folder in folders for p in folder.glob("*.py")}
    problems = []
    for path in sorted(scripts.values()):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and ast.unparse(node) == "sys.path":
                problems.append(f"{path.relative_to(path.parents[1])}:{node.lineno}: edits sys.path")
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = ["." if node.level else node.module or ""]
            for module in modules:
                if module == "." or module.split(".")[0] in scripts:
                    problems.append(f"{path.relative_to(path.parents[1])}:{node.lineno}: imports the script {module}")
    return sorted(problems)


def test_scripts_import_the_package_not_each_other() -> None:
    root = PACKAGE.parent
    assert all((root / folder).is_dir() for folder in SCRIPT_FOLDERS)
    assert script_problems(root / folder for folder in SCRIPT_FOLDERS) == []


def test_the_script_check_finds_a_path_edit_and_a_script_import(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("import sys\nsys.path.insert(0, '.')\nfrom b import f\n", encoding="utf-8")
    (tmp_path / "b.py").write_text("import numpy\nfrom noisyclip_metrics import errors\n", encoding="utf-8")
    folder = tmp_path.name
    assert script_problems([tmp_path]) == [f"{folder}/a.py:2: edits sys.path", f"{folder}/a.py:3: imports the script b"]


@pytest.fixture()
def bad_package(tmp_path: Path) -> Path:
    """A package whose ``scoring`` imports ``evaluation`` (upwards) and whose two ``bon`` modules import each other."""
    root = tmp_path / "noisyclip_metrics"
    for folder, files in {
        "": {"__init__.py": "", "errors.py": ""},
        "scoring": {"__init__.py": "", "model.py": "def f():\n    from noisyclip_metrics.evaluation import runner\n"},
        "evaluation": {"__init__.py": "", "runner.py": "from noisyclip_metrics.scoring.model import f\n"},
        "bon": {
            "__init__.py": "",
            "a.py": "from noisyclip_metrics.bon import b\n",
            "b.py": "from typing import TYPE_CHECKING\nfrom . import a\nif TYPE_CHECKING:\n    from ..cli import x\n",
        },
        "cli": {"__init__.py": "", "x.py": ""},
    }.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (root / folder / name).write_text(text, encoding="utf-8")
    return root


def test_the_checks_fail_on_a_package_that_breaks_them(bad_package: Path) -> None:
    graph = import_graph(bad_package)
    assert graph["noisyclip_metrics.bon.b"] == {"noisyclip_metrics.bon.a"}  # relative import read; TYPE_CHECKING not
    assert upward_imports(graph, LAYERS) == ["noisyclip_metrics.scoring.model -> noisyclip_metrics.evaluation.runner"]
    assert cycles(graph) == [
        ["noisyclip_metrics.bon.a", "noisyclip_metrics.bon.b"],
        ["noisyclip_metrics.evaluation.runner", "noisyclip_metrics.scoring.model"],
    ]
