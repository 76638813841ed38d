"""Before anything heavy is imported: check that the dependencies are installed, and say how to get them.

A researcher who runs ``python verse/01_gen_archive_manifest.py …`` with the
system Python instead of the project's environment would otherwise get a
``ModuleNotFoundError`` traceback from deep inside an import. This module uses
only the standard library and looks the packages up without importing them
(:func:`importlib.util.find_spec`, a few file-system look-ups), so ``--help``
stays fast. It runs when the ``utils`` package is first imported; the dataset
packages (``verse``, ``nme``, ``eso``) import ``utils`` first for that reason.

The list of packages is derived from ``requirements.txt`` (every requirement
line), so a dependency added there is checked too; a distribution whose module
has another name (``PyYAML`` -> ``yaml``, ``connected-components-3d`` ->
``cc3d``) is mapped by :data:`IMPORT_NAMES`.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path

__all__ = [
    "IMPORT_NAMES", "MIN_PYTHON", "REQUIREMENTS_FILE", "required_distributions", "import_name",
    "missing_modules", "dependency_message", "require_dependencies",
]  # fmt: skip

#: Distribution name (as PyPI spells it, normalised) -> module it installs, where the two differ.
#: A dependency added to requirements.txt whose import name differs from its distribution name needs
#: an entry here; tests/test_hardening_round3_small.py fails until it has one.
IMPORT_NAMES = {
    "pyyaml": "yaml",
    "scikit-image": "skimage",
    "connected-components-3d": "cc3d",
    "python-isal": "isal",
    "pillow": "PIL",
}
MIN_PYTHON = (3, 10)

_REPO = Path(__file__).resolve().parents[2]

#: The runtime dependencies, one requirement per line: the check is derived from this file.
REQUIREMENTS_FILE = _REPO / "requirements.txt"

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def required_distributions(path: Path = REQUIREMENTS_FILE) -> list[str]:
    """Distribution names listed in a requirements file (comments, options and ``-r`` lines skipped).

    An unreadable or missing file gives an empty list (nothing can be checked).
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    names = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        m = _NAME.match(line)
        if m:
            names.append(m.group(1))
    return names


def import_name(distribution: str) -> str:
    """The module a distribution installs: :data:`IMPORT_NAMES`, else the name with ``-`` as ``_``."""
    key = _normalise(distribution)
    return IMPORT_NAMES.get(key, key.replace("-", "_"))


def missing_modules(path: Path = REQUIREMENTS_FILE) -> list[str]:
    """Distributions of ``requirements.txt`` whose module cannot be found by this interpreter."""
    missing = []
    for distribution in required_distributions(path):
        module = import_name(distribution)
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(distribution)
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
