"""Where a volume's voxels are non-zero and where they are positive: the crop boxes of nnU-Net and MONAI.

nnU-Net crops every training case to the bounding box of its non-zero voxels
(``crop_to_nonzero``; filling holes first does not change that box); MONAI's
``DataAnalyzer`` crops to the box of the positive voxels (``CropForeground``
with ``x > 0``). Both boxes, and the value range, come from one walk over the
volume in memory order, slab by slab: per slab, the maximum and minimum over
the slow axis (a plane) and over each slice. A voxel is non-zero where the
maximum is positive or the minimum negative. No boolean volume is made.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from utils.labels.label_stats import Box, memory_view

__all__ = ["VolumeExtents", "volume_extents", "box_shape", "box_intersection"]

#: Voxels per slab of the walk (its temporaries are planes and this many values).
_SLAB_VOXELS = 1 << 22


@dataclass(frozen=True)
class VolumeExtents:
    """Value range and the boxes of the non-zero and of the positive voxels of a 3D volume.

    Attributes
    ----------
    minimum, maximum : float
        Smallest and largest value.
    nonzero : Box or None
        Box (array axes) of the voxels != 0; None when every voxel is 0.
    positive : Box or None
        Box of the voxels > 0; None when none is.
    """

    minimum: float
    maximum: float
    nonzero: Box | None
    positive: Box | None


def _extent(flags: npt.NDArray[np.bool_]) -> slice | None:
    idx = np.flatnonzero(flags)
    return slice(int(idx[0]), int(idx[-1]) + 1) if idx.size else None


def _box(slow: npt.NDArray[np.bool_], plane: npt.NDArray[np.bool_], transposed: bool) -> Box | None:
    s, m, f = _extent(slow), _extent(plane.any(axis=1)), _extent(plane.any(axis=0))
    if s is None or m is None or f is None:
        return None
    return (f, m, s) if transposed else (s, m, f)


def volume_extents(volume: npt.NDArray) -> VolumeExtents:
    """Value range and non-zero / positive boxes of a 3D volume (one walk in memory order).

    Parameters
    ----------
    volume : (I, J, K) ndarray of real numbers
        Any memory order (a Fortran array, as read from NIfTI, is walked through its transpose); finite values.

    Returns
    -------
    VolumeExtents
        Boxes in ``volume``'s own axes.
    """
    if volume.ndim != 3 or not volume.size:
        raise ValueError(f"3D volume with voxels expected, got shape {volume.shape}")
    view, transposed = memory_view(volume)
    slow_n = view.shape[0]
    plane_max = np.full(view.shape[1:], -np.inf)
    plane_min = np.full(view.shape[1:], np.inf)
    slice_max = np.empty(slow_n, dtype=np.float64)
    slice_min = np.empty(slow_n, dtype=np.float64)
    step = max(1, _SLAB_VOXELS // max(1, view.shape[1] * view.shape[2]))
    for start in range(0, slow_n, step):
        slab = view[start : start + step]
        np.maximum(plane_max, slab.max(axis=0), out=plane_max)
        np.minimum(plane_min, slab.min(axis=0), out=plane_min)
        rows = slab.reshape(slab.shape[0], -1)
        slice_max[start : start + step] = rows.max(axis=1)
        slice_min[start : start + step] = rows.min(axis=1)
    nonzero = _box((slice_max > 0) | (slice_min < 0), (plane_max > 0) | (plane_min < 0), transposed)
    positive = _box(slice_max > 0, plane_max > 0, transposed)
    return VolumeExtents(float(slice_min.min()), float(slice_max.max()), nonzero, positive)


def box_shape(box: Box) -> tuple[int, int, int]:
    """Extent of a box along each axis (voxels)."""
    return tuple(int(s.stop - s.start) for s in box)  # type: ignore[return-value]


def box_intersection(a: Box, b: Box) -> Box | None:
    """The box common to ``a`` and ``b``, or None when they do not overlap."""
    out = tuple(slice(max(x.start, y.start), min(x.stop, y.stop)) for x, y in zip(a, b))
    return None if any(s.start >= s.stop for s in out) else out  # type: ignore[return-value]
