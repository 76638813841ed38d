"""Shared library of the preprocessing toolkit (NIfTI I/O, geometry, labels, manifests, splits)."""

from utils.run.requirements_check import require_dependencies as _require_dependencies

_require_dependencies()  # one clear line instead of a ModuleNotFoundError traceback when run outside the environment
