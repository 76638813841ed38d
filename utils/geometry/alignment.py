"""Compare voxel grids and bring a mask onto its volume's grid — or refuse.

Two arrays never align just because their shapes match. Grids are compared in
world space: the largest displacement of any voxel centre between the two
affines (it is reached at a corner of the grid) must stay below a tolerance
expressed as a fraction of the smallest voxel spacing.

:func:`align_mask_to_volume` applies the FACTS.md rule:

1. same grid within tolerance → keep the mask array, copy the volume's affine;
2. same world grid stored with permuted and/or flipped axes → reorient the
   mask array onto the volume grid (exact, no interpolation);
3. anything else → :class:`AlignmentError`, unless nearest-neighbour
   resampling was requested explicitly.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from utils.files.aliases import Affine
from utils.files.lazy_import import lazy_import
from utils.geometry.orientation import orientation_strings, spacing

ndimage = lazy_import("scipy.ndimage")

__all__ = [
    "GRID_TOL_VOXEL",
    "AlignmentError",
    "AlignedMask",
    "grid_displacement_mm",
    "grids_match",
    "align_mask_to_volume",
    "qform_sform_mismatch_mm",
]

logger = logging.getLogger(__name__)

#: Largest voxel-centre displacement, as a fraction of the smallest voxel
#: spacing, for two grids to count as the same (0.01 = 1 % of a voxel; float32
#: header round-off and the ~1e-8 image-vs-mask differences of VerSe are far below).
GRID_TOL_VOXEL = 0.01


#: The advice that ends an :class:`AlignmentError` (routine 02 replaces it when it knows the cause better).
RESAMPLE_ADVICE = "fix the file or allow nearest-neighbour resampling explicitly"


class AlignmentError(ValueError):
    """A mask whose grid cannot be matched to its volume's without resampling."""


@dataclass(frozen=True)
class AlignedMask:
    """Result of :func:`align_mask_to_volume`.

    Attributes
    ----------
    data : (I, J, K) ndarray
        Mask values on the volume grid, same dtype as the input mask.
    method : str
        ``'identical'`` (affines equal), ``'affine_copied'`` (within tolerance),
        ``'reoriented'`` (axes permuted/flipped) or ``'resampled'`` (nearest neighbour).
    displacement_mm : float
        Largest voxel-centre displacement between the mask grid (after any
        reorientation) and the volume grid before the affine was copied.
    axis_transform : str
        For ``'reoriented'``: how the mask axes map onto the volume axes,
        e.g. ``'mask LPS -> volume RPS'``; empty otherwise.
    """

    data: npt.NDArray
    method: str
    displacement_mm: float
    axis_transform: str = ""


def _orientation(affine: Affine) -> str:
    """Axis code of an affine as the manifests write it: ``LPS``, or ``Oblique(closest to LPS)``."""
    return orientation_strings(affine)[1]


def _corners(shape: tuple[int, ...]) -> npt.NDArray[np.float64]:
    """(8, 4) homogeneous voxel coordinates of the corner voxel centres."""
    extents = [(0, max(int(n) - 1, 0)) for n in shape[:3]]
    return np.array([[*c, 1.0] for c in itertools.product(*extents)], dtype=np.float64)


def grid_displacement_mm(shape: tuple[int, ...], affine_a: Affine, affine_b: Affine) -> float:
    """Largest world distance (mm) between the same voxel centre under two affines.

    The displacement is affine in the voxel index, so its maximum over the
    grid is reached at one of the eight corners.

    Parameters
    ----------
    shape : tuple of int
        Grid shape (I, J, K).
    affine_a, affine_b : (4, 4) ndarray
        Voxel-to-world matrices.
    """
    diff = (np.asarray(affine_a, dtype=np.float64) - np.asarray(affine_b, dtype=np.float64)) @ _corners(shape).T
    return float(np.max(np.linalg.norm(diff[:3], axis=0)))


def grids_match(
    shape_a: tuple[int, ...],
    affine_a: Affine,
    shape_b: tuple[int, ...],
    affine_b: Affine,
    tol_voxel: float = GRID_TOL_VOXEL,
) -> bool:
    """True when both grids have the same shape and no voxel centre moves by more than the tolerance.

    Parameters
    ----------
    shape_a, shape_b : tuple of int
        Grid shapes.
    affine_a, affine_b : (4, 4) ndarray
        Voxel-to-world matrices.
    tol_voxel : float
        Tolerance as a fraction of the smallest voxel spacing of grid ``b``.
    """
    if tuple(shape_a[:3]) != tuple(shape_b[:3]):
        return False
    tol_mm = tol_voxel * min(spacing(affine_b))
    return grid_displacement_mm(shape_a, affine_a, affine_b) <= tol_mm


def _axis_permutation(mask_affine: Affine, volume_affine: Affine) -> tuple[list[int], list[bool]] | None:
    """Mask axis and flip for each volume axis, when the two direction matrices differ by a signed permutation."""
    # voxel-of-volume -> voxel-of-mask linear part
    lin = np.linalg.solve(np.asarray(mask_affine, dtype=np.float64)[:3, :3], np.asarray(volume_affine, dtype=np.float64)[:3, :3])
    perm = [int(np.argmax(np.abs(lin[:, j]))) for j in range(3)]
    if sorted(perm) != [0, 1, 2]:
        return None
    flips = [bool(lin[perm[j], j] < 0) for j in range(3)]
    return perm, flips


def _reorient(data: npt.NDArray, perm: list[int], flips: list[bool]) -> npt.NDArray:
    """Mask array re-indexed so that volume axis j reads mask axis perm[j], flipped where asked."""
    out = np.transpose(data, perm)
    for j, flip in enumerate(flips):
        if flip:
            out = np.flip(out, axis=j)
    return np.ascontiguousarray(out)


def _reoriented_affine(mask_affine: Affine, mask_shape: tuple[int, ...], perm: list[int], flips: list[bool]) -> Affine:
    """Affine of the reoriented mask array (exact integer index transform)."""
    t = np.zeros((4, 4))
    t[3, 3] = 1.0
    for j, (i, flip) in enumerate(zip(perm, flips)):
        t[i, j] = -1.0 if flip else 1.0
        t[i, 3] = mask_shape[i] - 1 if flip else 0.0
    return np.asarray(mask_affine, dtype=np.float64) @ t


def align_mask_to_volume(
    mask: npt.NDArray,
    mask_affine: Affine,
    volume_shape: tuple[int, ...],
    volume_affine: Affine,
    *,
    tol_voxel: float = GRID_TOL_VOXEL,
    allow_resample: bool = False,
    source: str = "mask",
) -> AlignedMask:
    """Put a mask on its volume's grid without moving any label in world space.

    Parameters
    ----------
    mask : (I', J', K') ndarray of integers
        Mask values as stored.
    mask_affine : (4, 4) ndarray
        Mask voxel-to-world matrix.
    volume_shape : tuple of int
        Volume grid shape (I, J, K).
    volume_affine : (4, 4) ndarray
        Volume voxel-to-world matrix.
    tol_voxel : float
        Grid tolerance, fraction of the smallest volume voxel spacing.
    allow_resample : bool
        When the grids differ otherwise, resample the mask with nearest
        neighbour instead of raising.
    source : str
        File name used in error messages.

    Returns
    -------
    AlignedMask
        ``data`` has shape ``volume_shape`` and the mask's dtype.

    Raises
    ------
    AlignmentError
        The grids differ beyond the tolerance and cannot be matched by
        permuting/flipping axes, and ``allow_resample`` is False.
    """
    mask_affine = np.asarray(mask_affine, dtype=np.float64)
    volume_affine = np.asarray(volume_affine, dtype=np.float64)
    tol_mm = tol_voxel * min(spacing(volume_affine))
    if tuple(mask.shape) == tuple(volume_shape[:3]):
        disp = grid_displacement_mm(volume_shape, mask_affine, volume_affine)
        if disp == 0.0:
            return AlignedMask(mask, "identical", 0.0)
        if disp <= tol_mm:
            return AlignedMask(mask, "affine_copied", disp)
    found = _axis_permutation(mask_affine, volume_affine)
    if found is not None:
        perm, flips = found
        if [mask.shape[i] for i in perm] == list(volume_shape[:3]) and (perm != [0, 1, 2] or any(flips)):
            new_affine = _reoriented_affine(mask_affine, mask.shape, perm, flips)
            disp = grid_displacement_mm(volume_shape, new_affine, volume_affine)
            if disp <= tol_mm:
                how = f"mask {_orientation(mask_affine)} -> volume {_orientation(volume_affine)}"
                return AlignedMask(_reorient(mask, perm, flips), "reoriented", disp, how)
    if tuple(mask.shape) == tuple(volume_shape[:3]):
        gap = f"largest voxel-centre displacement {grid_displacement_mm(volume_shape, mask_affine, volume_affine):.4g} mm (tolerance {tol_mm:.3g} mm)"
    else:
        gap = "the shapes differ and no permutation or flip of the mask axes maps one grid onto the other"
    detail = (
        f"mask shape {tuple(mask.shape)} orientation {_orientation(mask_affine)}, "
        f"volume shape {tuple(volume_shape[:3])} orientation {_orientation(volume_affine)}, {gap}"
    )
    if not allow_resample:
        raise AlignmentError(f"{source}: mask grid does not match the volume grid ({detail}); {RESAMPLE_ADVICE}")
    logger.warning("%s: resampling mask onto the volume grid with nearest neighbour (%s)", source, detail)
    vox_to_vox = np.linalg.solve(mask_affine, volume_affine)  # volume voxel -> mask voxel
    # "grid-constant": a volume voxel whose centre lies within the outer half voxel of the mask grid takes that
    # voxel's label ("constant" would leave it 0: a lost half voxel on every side); beyond it, background.
    out = ndimage.affine_transform(
        mask, vox_to_vox[:3, :3], offset=vox_to_vox[:3, 3], output_shape=tuple(volume_shape[:3]), order=0, mode="grid-constant", cval=0
    )
    return AlignedMask(out.astype(mask.dtype, copy=False), "resampled", float("nan"))


def qform_sform_mismatch_mm(img) -> float | None:
    """Largest voxel displacement (mm) between a header's qform and sform, or None when either is unset.

    Parameters
    ----------
    img : nibabel.Nifti1Image
        Image whose header is inspected.
    """
    header = img.header
    if int(header["qform_code"]) == 0 or int(header["sform_code"]) == 0:
        return None
    return grid_displacement_mm(img.shape, header.get_qform(), header.get_sform())
