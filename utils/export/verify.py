"""Check one case's source files before they are exported: what nnU-Net checks, earlier and per file.

nnU-Net's ``verify_dataset_integrity`` refuses NaN voxels, labels outside
``dataset.json``, and image/label pairs whose shapes or spacings differ; it
warns when their origin, direction or affine differ. Here all of these are
errors, found before anything is written, in one line naming the file:

- volume: a complete 3D NIfTI (gzip CRC and length checked), every voxel finite;
- mask: a complete 3D NIfTI of finite integers in [0, 255], only labels of the
  label map, the same labels as the manifest's ``valid_labels`` (otherwise the
  mask changed after the manifest was written), the volume's shape, and the
  volume's grid: voxel centres within ``SAME_GRID_TOL_MM`` for the header's
  affine and for its qform (what some readers use), and equal voxel spacings;
- both: a header that nibabel and ITK (nnU-Net's default reader) read alike
  (:func:`utils.files.nifti_readers.check_reader_agreement`): a file edited by hand after
  routine 02 is refused rather than exported with two geometries.

``headers_only=True`` reads the headers only (shape, grids, spacing) and takes
the labels from the manifest: fast, for a dataset just checked by routine 05.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

from utils.geometry.alignment import grid_displacement_mm
from utils.dataset.manifest import SAME_GRID_TOL_MM
from utils.export.cases import ExportCase
from utils.files.nifti_readers import check_reader_agreement
from utils.labels.label_stats import LabelStats, label_stats
from utils.files.nifti_io import NiftiError, load_header, load_nifti, read_mask, require_3d

__all__ = ["CheckedCase", "check_case", "check_pair_geometry", "read_checked_case", "require_readers_agree"]


def require_readers_agree(img, path) -> None:
    """Raise ``NiftiError`` naming ``path`` when nibabel and ITK (nnU-Net's default reader) read the header differently."""
    agreement = check_reader_agreement(img)
    if not agreement.agree:
        raise NiftiError(f"{path}: nibabel and ITK (nnU-Net's reader) read this file differently ({agreement.summary()}); rebuild it with routine 02")


def check_pair_geometry(volume_img, mask_img, mask_path) -> None:
    """Raise ``NiftiError`` naming ``mask_path`` when the mask is not on the volume's grid.

    Parameters
    ----------
    volume_img, mask_img : nibabel images
        Headers suffice.
    mask_path : Path
        For the message.
    """
    require_readers_agree(mask_img, mask_path)
    if tuple(mask_img.shape) != tuple(volume_img.shape):
        raise NiftiError(f"{mask_path}: shape {tuple(mask_img.shape)} differs from the volume's {tuple(volume_img.shape)}")
    shape = tuple(volume_img.shape)
    for what, a, b in (("affine", mask_img.affine, volume_img.affine), ("qform", mask_img.get_qform(), volume_img.get_qform())):
        disp = grid_displacement_mm(shape, a, b)
        if disp > SAME_GRID_TOL_MM:
            raise NiftiError(f"{mask_path}: {what} differs from the volume's by up to {disp:.3g} mm (tolerance {SAME_GRID_TOL_MM} mm)")
    zooms_m = np.asarray(mask_img.header.get_zooms()[:3], float)
    zooms_v = np.asarray(volume_img.header.get_zooms()[:3], float)
    if not np.allclose(zooms_m, zooms_v):
        raise NiftiError(f"{mask_path}: voxel spacing {zooms_m.tolist()} differs from the volume's {zooms_v.tolist()}")


def _check_finite(img, path) -> None:
    """Raise ``NiftiError`` when a voxel is NaN or infinite (integer data cannot be; float data are summed
    in float64, which stays finite for finite float32 values, so no boolean volume is allocated)."""
    data = np.asanyarray(img.dataobj)
    if data.dtype.kind != "f" or np.isfinite(np.sum(data, dtype=np.float64)):
        return
    bad = sum(int(np.count_nonzero(~np.isfinite(data[..., k]))) for k in range(data.shape[-1]))
    raise NiftiError(f"{path}: {bad} NaN/inf voxels; finite intensities expected (nnU-Net refuses NaN)")


@dataclass
class CheckedCase:
    """A case's files after :func:`read_checked_case`: what was read, for statistics taken from the same read.

    Attributes
    ----------
    labels : tuple of int or None
        Sorted labels present (background included); None for a case without mask.
    volume_img, mask_img : nibabel images
        Headers only with ``headers_only``; otherwise with their data in memory (``mask_img`` None without mask).
    mask : (I, J, K) ndarray of uint8 or None
        The mask's labels (not with ``headers_only``).
    mask_stats : LabelStats or None
        Voxel counts and boxes of ``mask`` (not with ``headers_only``).
    """

    labels: tuple[int, ...] | None
    volume_img: Any
    mask_img: Any = None
    mask: np.ndarray | None = None
    mask_stats: LabelStats | None = None


def read_checked_case(case: ExportCase, label_indices: Collection[int], *, headers_only: bool = False) -> CheckedCase:
    """Check a case's volume and mask (see :func:`check_case`) and hand out what was read.

    Raises
    ------
    NiftiError, ValueError
        One line naming the file, the value found and what was expected.
    """
    volume_img = load_header(case.volume) if headers_only else load_nifti(case.volume)
    require_3d(volume_img, case.volume)
    require_readers_agree(volume_img, case.volume)
    if not headers_only:
        _check_finite(volume_img, case.volume)
    if case.mask is None:
        return CheckedCase(None, volume_img)
    mask_img = load_header(case.mask) if headers_only else load_nifti(case.mask)
    require_3d(mask_img, case.mask)
    check_pair_geometry(volume_img, mask_img, case.mask)
    mask = stats = None
    if headers_only:
        present = tuple(case.valid_labels or ())
    else:
        mask = read_mask(mask_img, case.mask)
        stats = label_stats(mask)
        present = tuple(stats.present)
        if case.valid_labels is not None and present != tuple(case.valid_labels):
            raise NiftiError(
                f"{case.mask}: labels {list(present)} differ from the manifest's valid_labels {list(case.valid_labels)}; "
                f"the mask changed after the dataset manifest was written: write the manifest again"
            )
    unknown = sorted(set(present) - set(label_indices))
    if unknown:
        raise NiftiError(f"{case.mask}: labels {unknown} are not in the label map ({sorted(label_indices)})")
    return CheckedCase(present, volume_img, mask_img, mask, stats)


def check_case(case: ExportCase, label_indices: Collection[int], *, headers_only: bool = False) -> tuple[int, ...] | None:
    """Check a case's volume and mask; return the labels present in its mask.

    Parameters
    ----------
    case : ExportCase
    label_indices : collection of int
        Values the label map allows.
    headers_only : bool
        Read headers only; the labels are then the manifest's ``valid_labels``.

    Returns
    -------
    labels : tuple of int or None
        Sorted labels present (background included); None for a case without mask.

    Raises
    ------
    NiftiError, ValueError
        One line naming the file, the value found and what was expected.
    """
    return read_checked_case(case, label_indices, headers_only=headers_only).labels
