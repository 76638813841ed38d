"""Headers that cannot describe a real image: refused when a file is read, with the value found.

A zero-length axis, a voxel of zero, negative or non-finite size, a voxel-to-world
matrix holding NaN or collapsing an axis, colour (RGB) data, or scaling that is
not a number cannot come from a scanner. Accepting them lets a NaN affine travel
into a "grid mismatch to be fixed by resampling", or a zero-slice volume into a
mask check; every reader of this toolkit (``utils.files.nifti_io``) therefore refuses
them in one line naming the field, the value found and what was expected.

Scaling follows what both readers do: ``scl_slope`` 0 or NaN means "no scaling"
(the NIfTI standard, and nibabel's own way of writing unscaled files), so it is
accepted; an infinite slope, a valid slope with a non-finite intercept, or an
intercept with a zero slope (nibabel ignores it, ITK adds it) is refused.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["RGB_DATATYPES", "COMPLEX_DATATYPES", "header_refusal", "affine_problem"]

#: NIfTI datatype codes of colour data (RGB24, RGBA32): not a scalar image.
RGB_DATATYPES = {128: "RGB24", 2304: "RGBA32"}

#: NIfTI datatype codes of complex data; accepted only when every imaginary part is 0 (checked on the data).
COMPLEX_DATATYPES = {32: "complex64", 1792: "complex128", 2048: "complex256"}

#: Smallest |det| of a matrix's normalised columns for its axes to count as spanning 3D (1e-6: axes
#: less than ~0.00006 degrees from coplanar are numerically parallel).
_SINGULAR_TOL = 1e-6


def _values(values) -> str:
    return "(" + ", ".join(f"{float(v):g}" for v in values) + ")"


def affine_problem(name: str, matrix: np.ndarray) -> str | None:
    """Why a 4x4 voxel-to-world matrix called ``name`` is not usable (non-finite, or axes that do not span 3D), or None."""
    m = np.asarray(matrix, dtype=np.float64)
    if not np.all(np.isfinite(m)):
        return f"{name} holds non-finite values ({m[:3].tolist()}); a finite voxel-to-world matrix expected"
    norms = np.linalg.norm(m[:3, :3], axis=0)
    if np.any(norms == 0):
        return f"{name} has a zero-length axis (column lengths {_values(norms)} mm); every voxel axis must have a length"
    det = abs(float(np.linalg.det(m[:3, :3] / norms)))
    if det < _SINGULAR_TOL:
        return f"{name} is singular (its voxel axes are parallel: normalised determinant {det:.3g}); three independent axes expected"
    return None


def header_refusal(raw_header, fixed_header) -> str | None:
    """Why a NIfTI header cannot describe a real image, or None when it can.

    Parameters
    ----------
    raw_header : nibabel header
        As stored in the file.
    fixed_header : nibabel header
        The same after nibabel's checks (``utils.files.nifti_readers.nibabel_fixed_header``): the one whose
        matrices nibabel uses.

    Returns
    -------
    reason : str or None
        One line (without the file name) naming the field, the value found and what was expected.
    """
    dim = [int(v) for v in raw_header["dim"]]
    ndim = dim[0]
    if not 1 <= ndim <= 7:
        return f"dim[0] (number of axes) is {ndim}; 1 to 7 expected"
    shape = tuple(dim[1 : ndim + 1])
    if any(n <= 0 for n in shape):
        return f"image has a zero or negative length axis: shape {shape}; every axis needs at least one voxel"
    code = int(raw_header["datatype"])
    if code in RGB_DATATYPES:
        return f"{RGB_DATATYPES[code]} colour data (datatype {code}); a scalar (grey-value) image expected"
    spatial = [float(v) for v in raw_header["pixdim"][1 : min(ndim, 3) + 1]]
    bad = [v for v in spatial if not math.isfinite(v) or v <= 0]
    if bad:
        return f"pixdim[1:{len(spatial) + 1}] (voxel size) is {_values(spatial)}; positive finite sizes in mm expected"
    if "scl_slope" in raw_header:
        slope, inter = float(raw_header["scl_slope"]), float(raw_header["scl_inter"])
        tiny = abs(slope) < np.finfo(np.float64).eps  # ITK counts these as "no slope" (slope 1), nibabel as no scaling
        if math.isinf(slope):
            return f"scl_slope is {slope:g}; a finite scaling slope (or 0/NaN for none) expected"
        if not math.isnan(slope) and not tiny and not math.isfinite(inter):
            return f"scl_slope {slope:g} with scl_inter {inter:g}; a finite intercept expected"
        if tiny and math.isfinite(inter) and inter != 0:
            return (
                f"scl_slope {slope:g} with scl_inter {inter:g}: nibabel applies no scaling, ITK adds the intercept; "
                "a slope of 1 (or an intercept of 0) expected"
            )
    for name in ("sform", "qform"):
        if int(raw_header[f"{name}_code"]) <= 0:
            continue
        try:
            matrix = raw_header.get_sform() if name == "sform" else raw_header.get_qform()
        except Exception as exc:  # noqa: BLE001 - nibabel: bad quaternion or qfac
            try:
                matrix = fixed_header.get_qform()
            except Exception:  # noqa: BLE001
                return f"qform cannot be computed ({exc}); a unit quaternion (b, c, d) expected"
        problem = affine_problem(name, matrix)
        if problem:
            return problem
    if int(fixed_header["sform_code"]) > 0 or int(fixed_header["qform_code"]) > 0:
        return None  # nibabel uses one of the matrices checked above (its codes are the raw ones or 0)
    try:
        best = fixed_header.get_best_affine()
    except Exception as exc:  # noqa: BLE001
        return f"voxel-to-world matrix cannot be computed ({exc})"
    return affine_problem("voxel-to-world matrix", best)
