"""Import heavy modules on first use, so that ``--help`` and argument errors answer at once.

pandas, scipy.ndimage and openpyxl together take over a second to import;
every routine needs them only once it works on data. A module imported with
:func:`lazy_import` is a stand-in that imports the real module at its first
attribute access and forwards every access from then on::

    pd = lazy_import("pandas")        # nothing imported yet
    frame = pd.DataFrame(rows)        # pandas is imported here, once

This is what scikit-image does with ``lazy_loader`` (SPEC 1), without the extra
dependency. Type annotations stay plain (``from __future__ import annotations``
keeps them as text), and a missing package still fails with the usual
:class:`ModuleNotFoundError`, at first use.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__all__ = ["lazy_import"]


class _LazyModule(types.ModuleType):
    """Stand-in for a module that is imported at the first attribute access."""

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self.__name__), attr)

    def __dir__(self) -> list[str]:
        return dir(importlib.import_module(self.__name__))

    def __repr__(self) -> str:
        loaded = isinstance(sys.modules.get(self.__name__), types.ModuleType)
        return f"<lazy module {self.__name__!r} ({'imported' if loaded else 'not imported yet'})>"


def lazy_import(name: str) -> types.ModuleType:
    """A module object for ``name`` that imports the real module at its first use.

    Parameters
    ----------
    name : str
        Dotted module name (``"pandas"``, ``"scipy.ndimage"``).

    Returns
    -------
    module : module
        The real module when it is already imported, otherwise a stand-in that
        behaves as the module once any attribute is read.
    """
    module = sys.modules.get(name)
    return module if module is not None else _LazyModule(name)
