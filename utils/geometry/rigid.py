"""The nearest rigid grid of a sheared one, and resampling onto it (routine 02's ``--resample_sheared``).

A sheared voxel grid (a CT acquired with a tilted gantry and converted from DICOM
slice by slice) has no qform: the NIfTI quaternion describes only perpendicular
axes, so nibabel (sform) and ITK (qform) read such a file in two places, and no
header can make them agree. The grid is therefore resampled onto a rigid one:

- when the first two voxel axes (the slice plane) are perpendicular, as in a
  gantry tilt, the rigid grid keeps them and every slice where it is, and its third
  axis is perpendicular to the slices, as long as the distance between two slice
  planes. Each output slice is then interpolated from one input slice only (an
  in-plane shift), never across slices;
- otherwise it is the closest rotation of the normalised axes (polar decomposition,
  what nibabel and nifti1_io use to make a qform from a sheared matrix), with the
  original voxel sizes.

The origin (voxel 0) and the grid shape are kept; what moves out of the field of
view is lost and reported.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from utils.files.aliases import Affine
from utils.files.lazy_import import lazy_import

ndimage = lazy_import("scipy.ndimage")

__all__ = ["nearest_rigid_affine", "resample_onto", "PERPENDICULAR_TOL"]

#: |cos| between the two in-plane axes below which they count as perpendicular (1e-6: 0.00006 degrees).
PERPENDICULAR_TOL = 1e-6


def nearest_rigid_affine(affine: Affine) -> Affine:
    """The rigid grid closest to a sheared one (see the module's rule).

    Parameters
    ----------
    affine : (4, 4) ndarray
        Sheared voxel-to-world matrix (RAS+ mm).

    Returns
    -------
    rigid : (4, 4) ndarray of float64
        Same origin; perpendicular axes.

    Examples
    --------
    >>> import numpy as np
    >>> tilted = np.array([[0.5, 0, 0, 0], [0, 0.5, 0.26, 0], [0, 0, 0.97, 0], [0, 0, 0, 1.0]])
    >>> np.round(nearest_rigid_affine(tilted), 4)[:3, 2]
    array([0.  , 0.  , 0.97])
    """
    a = np.asarray(affine, dtype=np.float64)
    out = a.copy()
    m = a[:3, :3]
    c0, c1, c2 = m[:, 0], m[:, 1], m[:, 2]
    cos01 = abs(c0 @ c1) / (np.linalg.norm(c0) * np.linalg.norm(c1))
    if cos01 <= PERPENDICULAR_TOL:
        normal = np.cross(c0, c1)
        normal /= np.linalg.norm(normal)
        if normal @ c2 < 0:
            normal = -normal
        out[:3, 2] = normal * (normal @ c2)  # distance between two slice planes
        return out
    norms = np.linalg.norm(m, axis=0)
    u, _s, vt = np.linalg.svd(m / norms)
    out[:3, :3] = (u @ vt) * norms
    return out


def resample_onto(
    data: npt.NDArray, source_affine: Affine, target_affine: Affine, *, order: int, cval: float, dtype: npt.DTypeLike
) -> npt.NDArray:
    """Resample an array from its grid onto another grid of the same shape.

    Parameters
    ----------
    data : (I, J, K) ndarray
        Values on the source grid.
    source_affine, target_affine : (4, 4) ndarray
        Voxel-to-world matrices (RAS+ mm) of the source and target grids.
    order : int
        Spline order: 1 (linear) for intensities, 0 (nearest neighbour) for labels.
    cval : float
        Value of target voxels whose centre falls outside the source grid.
    dtype : dtype
        Output data type.

    Returns
    -------
    out : (I, J, K) ndarray of ``dtype``
    """
    vox_to_vox = np.linalg.solve(np.asarray(source_affine, dtype=np.float64), np.asarray(target_affine, dtype=np.float64))
    out = np.empty(data.shape, dtype=dtype)
    ndimage.affine_transform(
        data, vox_to_vox[:3, :3], offset=vox_to_vox[:3, 3], output_shape=data.shape, output=out, order=order, mode="constant", cval=cval
    )
    return out
