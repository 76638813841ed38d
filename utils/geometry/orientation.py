"""Orientation codes, obliquity and the per-file geometry columns of the manifests.

Conventions (FACTS.md): ``orientation_to`` is nibabel's axis code of the
affine — ``LPS`` means +i points Left, +j Posterior, +k Superior —
and ``orientation_from`` is its opposite (``RAI``). An affine whose voxel axes
deviate from the closest patient axes by more than :data:`OBLIQUE_TOL_DEG`
is written ``Oblique(closest to XYZ)``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import numpy.typing as npt

from utils.files.aliases import Affine
from utils.files.lazy_import import lazy_import

nib = lazy_import("nibabel")

__all__ = [
    "OBLIQUE_TOL_DEG",
    "axis_codes",
    "obliquity_deg",
    "orientation_strings",
    "spacing",
    "format_affine",
    "parse_affine",
    "geometry_record",
]

#: Largest angle (degrees) between a voxel axis and its closest patient axis for
#: an affine still to count as axis-aligned. Scanners store affines in float32
#: and quaternions, leaving residual angles of ~1e-5 degrees; a real oblique
#: acquisition tilts by a degree or more (the VerSe sample mask by ~4.6).
OBLIQUE_TOL_DEG = 0.01

_OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "S": "I", "I": "S"}


def axis_codes(affine: Affine) -> str:
    """Closest patient direction of each voxel axis, e.g. ``'LPS'``.

    Parameters
    ----------
    affine : (4, 4) ndarray
        Voxel-to-world (RAS+) matrix.
    """
    return "".join(nib.aff2axcodes(np.asarray(affine, dtype=np.float64)))


def obliquity_deg(affine: Affine) -> float:
    """Largest angle in degrees between a voxel axis and the closest world axis.

    Parameters
    ----------
    affine : (4, 4) ndarray
        Voxel-to-world matrix.

    Returns
    -------
    angle : float
        0 for an axis-aligned grid (any permutation or flip).
    """
    return float(np.degrees(np.max(np.abs(nib.affines.obliquity(np.asarray(affine, dtype=np.float64))))))


def orientation_strings(affine: Affine, tol_deg: float = OBLIQUE_TOL_DEG) -> tuple[str, str]:
    """``(orientation_from, orientation_to)`` of an affine, oblique-aware.

    Examples
    --------
    >>> import numpy as np
    >>> orientation_strings(np.diag([-1.0, -1.0, 1.0, 1.0]))
    ('RAI', 'LPS')
    """
    to = axis_codes(affine)
    frm = "".join(_OPPOSITE[c] for c in to)
    if obliquity_deg(affine) > tol_deg:
        return f"Oblique(closest to {frm})", f"Oblique(closest to {to})"
    return frm, to


def spacing(affine: Affine) -> tuple[float, float, float]:
    """Voxel spacing in mm along the three array axes (norms of the affine's columns)."""
    zooms = np.sqrt(np.sum(np.asarray(affine, dtype=np.float64)[:3, :3] ** 2, axis=0))
    return float(zooms[0]), float(zooms[1]), float(zooms[2])


def format_affine(affine: Affine) -> str:
    """4x4 matrix as JSON text that :func:`parse_affine` reads back bit-exactly.

    Python's ``repr`` of a float is the shortest string that round-trips, so no
    precision is lost (``-0.0`` is written ``0.0``).
    """
    rows = [[float(v) + 0.0 for v in row] for row in np.asarray(affine, dtype=np.float64)]
    return json.dumps(rows)


def parse_affine(text: str) -> Affine:
    """Inverse of :func:`format_affine`.

    Raises
    ------
    ValueError
        The text is not a 4x4 numeric matrix.
    """
    try:
        arr = np.asarray(json.loads(text), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"transform {text!r} is not a JSON 4x4 matrix") from exc
    if arr.shape != (4, 4):
        raise ValueError(f"transform has shape {arr.shape}, (4, 4) expected")
    return arr


def geometry_record(shape: tuple[int, ...], affine: Affine) -> dict[str, object]:
    """Manifest columns ``szx szy szz spx spy spz orientation_from orientation_to transform``.

    Parameters
    ----------
    shape : tuple of int
        Array shape (first three axes are used).
    affine : (4, 4) ndarray
        Voxel-to-world matrix.
    """
    sp = spacing(affine)
    frm, to = orientation_strings(affine)
    return {
        "szx": int(shape[0]),
        "szy": int(shape[1]),
        "szz": int(shape[2]),
        "spx": _round_spacing(sp[0]),
        "spy": _round_spacing(sp[1]),
        "spz": _round_spacing(sp[2]),
        "orientation_from": frm,
        "orientation_to": to,
        "transform": format_affine(affine),
    }


def _round_spacing(value: float) -> float:
    """Spacing rounded to 6 significant digits (float32 header noise removed)."""
    if value == 0 or not math.isfinite(value):
        return value
    return float(f"{value:.6g}")


def affine_rotation(affine: Affine) -> npt.NDArray[np.float64]:
    """Direction cosines (3, 3): the affine's columns divided by the spacing."""
    aff = np.asarray(affine, dtype=np.float64)
    return aff[:3, :3] / np.asarray(spacing(aff))
