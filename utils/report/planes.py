"""Three orthogonal planes of a stored 3D array, shown in patient orientation.

Display convention (radiological, as most clinical viewers):

========  ==============  =================  =================
view      plane           picture up/down    picture left/right
========  ==============  =================  =================
axial     fixed S-I       anterior/posterior patient right/left
coronal   fixed A-P       superior/inferior  patient right/left
sagittal  fixed R-L       superior/inferior  anterior/posterior
========  ==============  =================  =================

So the patient's left is on the picture's right in the axial and coronal views.
Which array axis runs along which patient axis, and in which direction, comes
from the affine (:func:`nibabel.orientations.io_orientation`: the closest patient
axis of each voxel axis, so an oblique grid is shown along its closest axes).
Only the three planes are read from the array (a nibabel array proxy works too);
they are transposed and flipped in 2D, never resampled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np
import numpy.typing as npt

from utils.files.aliases import Affine
from utils.geometry.orientation import spacing as affine_spacing

__all__ = ["VIEWS", "View", "DisplayAxes", "display_axes", "centre_index", "plane_index", "extract_plane"]

_R, _A, _S = 0, 1, 2  # RAS+ world axes


@dataclass(frozen=True)
class View:
    """One display plane.

    Attributes
    ----------
    name : str
        ``axial``, ``coronal`` or ``sagittal``.
    fixed : int
        World axis (0 R, 1 A, 2 S) held constant in the plane.
    rows : int
        World axis along the picture's rows; row index grows towards its negative end
        (towards P or I: anterior or superior is up).
    cols : int
        World axis along the picture's columns; column index grows towards its negative
        end (towards L or P: patient right, or anterior, is on the left).
    sides : tuple of str
        Patient-side letters at the picture's top, bottom, left and right.
    """

    name: str
    fixed: int
    rows: int
    cols: int
    sides: tuple[str, str, str, str]


VIEWS: tuple[View, ...] = (
    View("axial", _S, _A, _R, ("A", "P", "R", "L")),
    View("coronal", _A, _S, _R, ("S", "I", "R", "L")),
    View("sagittal", _R, _S, _A, ("S", "I", "A", "P")),
)


@dataclass(frozen=True)
class DisplayAxes:
    """How the array axes of one grid map onto the patient axes.

    Attributes
    ----------
    axis : tuple of int
        ``axis[w]`` = array axis closest to world axis ``w`` (0 R, 1 A, 2 S).
    toward_positive : tuple of bool
        ``toward_positive[w]``: a growing index along ``axis[w]`` moves towards R, A or S.
    spacing : tuple of float
        Voxel size in mm along the array axes 0, 1, 2.
    """

    axis: tuple[int, int, int]
    toward_positive: tuple[bool, bool, bool]
    spacing: tuple[float, float, float]


def display_axes(affine: Affine) -> DisplayAxes:
    """Array axis and direction of each patient axis for the grid of ``affine`` (closest axes when oblique).

    Parameters
    ----------
    affine : (4, 4) ndarray
        Voxel-to-world (RAS+ mm) matrix.
    """
    ornt = nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64))
    axis = [0, 0, 0]
    toward = [True, True, True]
    for array_axis, (world_axis, direction) in enumerate(ornt):
        axis[int(world_axis)] = array_axis
        toward[int(world_axis)] = bool(direction > 0)
    return DisplayAxes(tuple(axis), tuple(toward), affine_spacing(affine))  # type: ignore[arg-type]


def centre_index(start: int, stop: int, toward_positive: bool) -> int:
    """Middle index of ``[start, stop)``; for an even count, the one nearer the patient's R, P or I side.

    Rounding towards a patient side, not towards a lower index, makes the chosen
    slice the same whatever the storage orientation.
    """
    twice = start + stop - 1
    if twice % 2 == 0:
        return twice // 2
    return twice // 2 if toward_positive else twice // 2 + 1


def plane_index(counts: npt.NDArray[np.integer], start: int, toward_positive: bool) -> int:
    """Index of the plane through the centre of a labelled region along one array axis.

    The middle of the region's extent (:func:`centre_index`); when no labelled voxel
    lies in that plane (two separate regions with a gap between them), the nearest
    plane that has one, nearer the patient's R, P or I side on a tie.

    Parameters
    ----------
    counts : (n,) ndarray of int
        Labelled voxels in each plane of the region's bounding box along the axis.
    start : int
        Array index of ``counts[0]``.
    toward_positive : bool
        A growing index moves towards R, A or S.
    """
    centre = centre_index(0, len(counts), toward_positive)
    if counts[centre] > 0:
        return start + centre
    filled = np.flatnonzero(counts)
    if filled.size == 0:
        return start + centre
    dist = np.abs(filled - centre)
    nearest = filled[dist == dist.min()]
    return start + int(nearest.min() if toward_positive else nearest.max())


def extract_plane(data: Any, axes: DisplayAxes, view: View, centre: tuple[int, int, int]) -> tuple[npt.NDArray, tuple[float, float]]:
    """The plane of ``view`` through array index ``centre``, rows and columns in display orientation.

    Parameters
    ----------
    data : (I, J, K) array-like
        ndarray or nibabel array proxy (only the plane is read from a proxy).
    axes : DisplayAxes
        From :func:`display_axes` of the grid's affine.
    view : View
        One of :data:`VIEWS`.
    centre : tuple of int
        Array index the plane passes through.

    Returns
    -------
    plane : (H, W) ndarray
        Same dtype as ``data``; a view where ``data`` is an ndarray.
    pixel_mm : tuple of float
        Pixel height and width in mm (spacing of the array axes along rows and columns).
    """
    fixed_axis = axes.axis[view.fixed]
    row_axis, col_axis = axes.axis[view.rows], axes.axis[view.cols]
    index: list[Any] = [slice(None)] * 3
    index[fixed_axis] = int(centre[fixed_axis])
    plane = np.asarray(data[tuple(index)])
    if row_axis > col_axis:  # the two remaining array axes come in array order
        plane = plane.T
    if axes.toward_positive[view.rows]:
        plane = plane[::-1, :]
    if axes.toward_positive[view.cols]:
        plane = plane[:, ::-1]
    return plane, (axes.spacing[row_axis], axes.spacing[col_axis])
