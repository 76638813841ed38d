"""The docstring examples of the library are collected and run by pytest, and collecting them is cheap.

``pyproject.toml`` adds ``--doctest-modules`` for ``utils``, ``verse``, ``nme`` and ``eso``; the root
``conftest.py`` lets pytest import only the modules that hold an example. Here a separate interpreter
collects them and reports what it imported: every example is found (an AST scan written here, not
pytest's finder, lists them), and no command-line script is imported to find none.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap

from tests.conftest import REPO

PACKAGES = ("utils", "verse", "nme", "eso")


def functions_with_examples() -> set[str]:
    """``module.qualname`` of every docstring holding a ``>>>`` line, from the source text."""
    found = set()
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts)
            tree = ast.parse(path.read_text(encoding="utf-8"))

            def visit(node, prefix):
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                        name = f"{prefix}.{child.name}"
                        doc = ast.get_docstring(child) or ""
                        if ">>>" in doc:
                            found.add(name)
                        visit(child, name)

            if ">>>" in (ast.get_docstring(tree) or ""):
                found.add(module)
            visit(tree, module)
    return found


def test_every_docstring_example_is_collected_without_importing_scripts():
    code = textwrap.dedent(
        """
        import contextlib, io, json, sys
        import pytest

        class Ids:
            ids = []
            def pytest_collection_modifyitems(self, items):
                self.ids = [item.nodeid for item in items]

        plugin = Ids()
        with contextlib.redirect_stdout(io.StringIO()):
            code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "utils", "verse", "nme", "eso"], plugins=[plugin])
        print(json.dumps({"code": int(code), "ids": plugin.ids, "modules": sorted(sys.modules)}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["code"] == 0
    collected = {nodeid.split("::")[-1] for nodeid in result["ids"]}
    expected = functions_with_examples()
    assert len(expected) >= 9, expected
    assert collected == expected
    scripts = [
        ".".join(p.relative_to(REPO).with_suffix("").parts)
        for package in PACKAGES
        for p in (REPO / package).rglob("*.py")
        if 'if __name__ == "__main__":' in p.read_text(encoding="utf-8")
    ]
    imported = set(result["modules"])
    assert not [s for s in scripts if s in imported]
    assert not any(m.startswith(("verse.0", "nme.0", "eso.0")) for m in imported)
