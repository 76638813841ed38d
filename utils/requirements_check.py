"""Before anything heavy is imported: check that the dependencies are installed, and say how to get them.

A researcher who runs ``python verse/01_gen_archive_manifest.py …`` with the
system Python instead of the project's environment would otherwise get a
``ModuleNotFoundError`` traceback from deep inside an import. This module uses
only the standard library and looks the packages up without importing them
(:func:`importlib.util.find_spec`, a few file-system look-ups), so ``--help``
stays fast. It runs when the ``utils`` package is first imported; the dataset
packages (``verse``, ``nme``, ``eso``) import ``utils`` first for that reason.
"""

from __future__ import annotations

import importlib.util
import shlex
import sys
from pathlib import Path

__all__ = ["REQUIRED_MODULES", "MIN_PYTHON", "missing_modules", "dependency_message", "require_dependencies"]

#: Import name -> package name in requirements.txt (isal is optional: the standard gzip module replaces it).
REQUIRED_MODULES = {
    "nibabel": "nibabel", "numpy": "numpy", "scipy": "scipy", "pandas": "pandas", "openpyxl": "openpyxl",
    "yaml": "PyYAML", "skimage": "scikit-image", "tqdm": "tqdm",
}  # fmt: skip
MIN_PYTHON = (3, 10)

_REPO = Path(__file__).resolve().parents[1]


def missing_modules() -> list[str]:
    """Package names (as in requirements.txt) whose module cannot be found by this interpreter."""
    missing = []
    for module, package in REQUIRED_MODULES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(package)
    return missing


def dependency_message(missing: list[str]) -> str:
    """One line: what is missing for which interpreter, and the command that fixes it."""
    python = shlex.quote(sys.executable or "python3")
    requirements = shlex.quote(str(_REPO / "requirements.txt"))
    venv = _REPO / ".venv"
    if venv.is_dir() and Path(sys.prefix).resolve() != venv.resolve():
        fix = f"activate the project's environment first (. {shlex.quote(str(venv / 'bin/activate'))}) or install them: {python} -m pip install -r {requirements}"
    else:
        fix = f"install them: {python} -m pip install -r {requirements} (or create the environment: cd {shlex.quote(str(_REPO))} && python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt)"
    return f"missing Python package(s) {', '.join(missing)} for {sys.executable} (Python {sys.version.split()[0]}); {fix}"


def require_dependencies() -> None:
    """Exit with a one-line message (exit code 2) when a script runs without its dependencies.

    Outside a script run (an interactive session) a ``ModuleNotFoundError``
    with the same message is raised instead.
    """
    if sys.version_info < MIN_PYTHON:
        problem = f"this toolkit needs Python >= {'.'.join(map(str, MIN_PYTHON))}; {sys.executable} is Python {sys.version.split()[0]}"
    else:
        missing = missing_modules()
        if not missing:
            return
        problem = dependency_message(missing)
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file:
        name = Path(main_file).stem
        sys.stderr.write(f"ERROR {name}: {problem}\n")
        raise SystemExit(2)
    raise ModuleNotFoundError(problem)
