"""The house rules of ``utils/`` (docs/architecture.md), checked over the import graph read with :mod:`ast`.

- At the top of ``utils/``: only the command-line tools and ``__init__.py``; at most 12 subpackages.
- The subpackages are layers, lowest first (:data:`LAYERS`): a module imports only from its own
  package and the packages below it — never from a package above, never a tool, never a dataset folder.
- No circle between modules (function-level imports count: a circle there is one at run time).
- No name at the top of ``utils/`` shadows a standard-library module or an installed package
  (``python utils/<tool>.py`` puts ``utils/`` first on ``sys.path``).
- Each subpackage's ``__init__.py`` says in its first two docstring lines what it holds and what it may
  import (the packages below it, in this order), and imports nothing.

The checker is tested on a small synthetic graph first, so a checker that finds nothing fails too.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UTILS = REPO / "utils"

#: The subpackages of utils/, lowest layer first (docs/architecture.md shows the same order).
LAYERS = ("files", "geometry", "labels", "run", "archive", "dataset", "maskqc", "review", "export", "report", "audit", "diff")
DATASET_FOLDERS = ("verse", "nme", "eso")


def module_name(path: Path, root: Path) -> str:
    """``utils/files/atomic.py`` -> ``utils.files.atomic``; a package's ``__init__.py`` -> the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """Modules of ``known`` that the file imports anywhere in its body (module level or in a function)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def add(target: str) -> None:
        while target and target not in known:  # utils.files.atomic.atomic_write_text -> utils.files.atomic
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source)
    return found


def import_graph(root: Path, top: str = "utils", extra_tops: tuple[str, ...] = DATASET_FOLDERS) -> dict[str, set[str]]:
    """Module -> the modules it imports, for every ``.py`` under ``root/top`` (targets: those and ``extra_tops``)."""
    files = {module_name(p, root): p for t in (top, *extra_tops) if (root / t).is_dir() for p in (root / t).rglob("*.py")}
    known = set(files)
    return {name: imports_of(path, name, known) for name, path in files.items() if name.split(".")[0] == top}


def layer_of(module: str) -> str | None:
    """The subpackage of a library module (``utils.files.atomic`` -> ``files``); None for a tool or ``utils``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else None


def upward_imports(graph: dict[str, set[str]], layers: tuple[str, ...] = LAYERS) -> list[str]:
    """Each import of a library module that points to a higher layer, a tool or a dataset folder."""
    rank = {name: i for i, name in enumerate(layers)}
    problems = []
    for module, targets in sorted(graph.items()):
        source = layer_of(module)
        if source is None:  # a tool or utils/__init__.py: may import any layer
            continue
        for target in sorted(targets):
            if target.split(".")[0] != "utils":
                problems.append(f"{module} imports the dataset folder module {target}")
                continue
            to = layer_of(target)
            if to is None and target != "utils":
                problems.append(f"{module} imports the tool {target}")
            elif to is not None and rank[to] > rank[source]:
                problems.append(f"{module} (layer {source}) imports {target} (layer {to}, above it)")
    return problems


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@functools.cache
def installed_top_level_names() -> frozenset[str]:
    """Top-level import names of the installed distributions (and the standard library's modules)."""
    return frozenset(importlib.metadata.packages_distributions()) | frozenset(sys.stdlib_module_names)


# ---------------------------------------------------------------------------------------------- the checker


def _write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_checker_finds_an_upward_import_a_tool_import_and_a_circle(tmp_path):
    _write_tree(tmp_path, {
        "utils/__init__.py": "",
        "utils/tool.py": "from utils.files import low\n",
        "utils/files/__init__.py": "",
        "utils/files/low.py": "def f():\n    from utils.geometry.high import g  # upward, at function level\n",
        "utils/files/a.py": "from utils.files import b\n",
        "utils/files/b.py": "import utils.files.a as a\n",
        "utils/geometry/__init__.py": "",
        "utils/geometry/high.py": "from utils.files.low import f\nfrom utils import tool\nfrom .up import x\n",
        "utils/geometry/up.py": "x = 1\n",
        "verse/__init__.py": "",
        "verse/archive.py": "",
        "utils/geometry/rules.py": "from verse.archive import RULES\n",
    })  # fmt: skip
    graph = import_graph(tmp_path)
    assert graph["utils.geometry.high"] == {"utils.files.low", "utils.tool", "utils.geometry.up"}
    assert upward_imports(graph, ("files", "geometry")) == [
        "utils.files.low (layer files) imports utils.geometry.high (layer geometry, above it)",
        "utils.geometry.high imports the tool utils.tool",
        "utils.geometry.rules imports the dataset folder module verse.archive",
    ]
    assert circles(graph) == [["utils.files.a", "utils.files.b"], ["utils.files.low", "utils.geometry.high", "utils.tool"]]
    assert circles({"a": {"a"}}) == [["a"]] and circles({"a": {"b"}, "b": set()}) == []


# ---------------------------------------------------------------------------------------------- the rules


def test_top_of_utils_holds_only_tools_and_at_most_12_subpackages():
    packages = sorted(p.name for p in UTILS.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert packages == sorted(LAYERS) and len(packages) <= 12
    strays = sorted(p.name for p in UTILS.iterdir() if p.is_dir() and p.name not in packages and p.name != "__pycache__")
    assert strays == [], f"folders in utils/ that are not packages: {strays}"
    for path in sorted(UTILS.glob("*.py")):
        if path.name == "__init__.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert 'if __name__ == "__main__":' in text and "def main(argv" in text, f"{path.name} at the top of utils/ is not a tool"


def test_library_modules_import_only_their_own_layer_or_below():
    assert upward_imports(import_graph(REPO)) == []


def test_no_circle_between_modules():
    assert circles(import_graph(REPO)) == []


def test_no_name_at_the_top_of_utils_shadows_the_standard_library_or_an_installed_package():
    names = {p.stem for p in UTILS.glob("*.py")} | {p.name for p in UTILS.iterdir() if p.is_dir()}
    assert sorted(names & installed_top_level_names()) == []


@pytest.mark.parametrize("package", LAYERS)
def test_each_subpackage_says_what_it_holds_and_what_it_may_import(package):
    path = UTILS / package / "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = (ast.get_docstring(tree, clean=False) or "").splitlines()
    below = LAYERS[: LAYERS.index(package)]
    may = ", ".join(f"utils.{b}" for b in below) if below else "no other package of utils"
    assert len(lines) >= 2 and lines[0].strip().endswith(".") and len(lines[0]) > 20
    assert lines[1] == f"May import: {may} (never a package above, never a tool)."
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))], f"{path} imports"
