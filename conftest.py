"""Root pytest configuration: which library modules the doctest collection (``--doctest-modules``) imports.

``pyproject.toml`` collects the docstring examples of the library packages (``utils``, ``verse``, ``nme``,
``eso``). Only modules that hold an example (a ``>>>`` line) are imported for it: the command-line scripts
(``utils/qc_report.py``, ``verse/01_….py`` …) and heavy modules without examples are never imported just
to find none. The test suite itself (``tests/``) is collected as usual.
"""

from __future__ import annotations

from pathlib import Path

_LIBRARY_PACKAGES = ("utils", "verse", "nme", "eso")
_ROOT = Path(__file__).resolve().parent


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    """Skip a library ``.py`` file without a docstring example (None: let pytest decide)."""
    path = Path(collection_path)
    if path.suffix != ".py" or path.name == "conftest.py":
        return None
    try:
        top = path.resolve().relative_to(_ROOT).parts[0]
    except (ValueError, IndexError):
        return None
    if top not in _LIBRARY_PACKAGES:
        return None
    try:
        return ">>>" not in path.read_text(encoding="utf-8")
    except OSError:
        return None
