"""Do nibabel and ITK read a file's geometry the same way? The audit's one entry point to that question.

The toolkit answers it once, in its geometry module (the reader-agreement check of the
"geometry every reader agrees on" work, documented in ``docs/geometry.md``): a library
function that takes a NIfTI header and returns whether nibabel and ITK (SimpleITK,
nnU-Net's default reader) give the same size, spacing, direction and origin, with reason
codes such as ``NO_SPATIAL_CODES``, ``PIXDIM_SFORM_MISMATCH``, ``SHEARED_SFORM`` and
``QFORM_SFORM_MISMATCH``. The audit never re-implements those rules: :func:`reader_agreement`
calls that function and turns its answer into plain data for the audit record.

In a version of the toolkit without that module, :func:`reader_agreement` returns None and
the audit lists ``READERS_DISAGREE`` among the checks it could not run (``audit.json``,
``checks_not_run``), instead of guessing.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["READER_CHECK", "reader_check_available", "reader_agreement"]

#: ``(module, function)`` of the toolkit's reader-agreement check.
READER_CHECK = ("utils.geometry", "reader_agreement")


def _function():
    module_name, func_name = READER_CHECK
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return getattr(module, func_name, None)


def reader_check_available() -> bool:
    """True when this version of the toolkit has the reader-agreement check."""
    return _function() is not None


def reader_agreement(img: Any) -> dict[str, Any] | None:
    """Whether nibabel and ITK agree on the geometry of one image's header.

    Parameters
    ----------
    img : nibabel.Nifti1Image
        The image as read (its header is what both readers interpret).

    Returns
    -------
    result : dict or None
        ``{'agree': bool, 'reasons': [code, ...]}``; None when the check is not available.
    """
    func = _function()
    if func is None:
        return None
    answer = func(img.header)
    agree = bool(getattr(answer, "agree", answer[0] if isinstance(answer, tuple) else answer))
    reasons = getattr(answer, "reasons", answer[1] if isinstance(answer, tuple) and len(answer) > 1 else ())
    return {"agree": agree, "reasons": [str(r) for r in reasons]}
