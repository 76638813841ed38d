"""Small synthetic images for demos, tests and benchmarks (no real patient data).

Used by the demo-archive generators of each dataset and by the tests: affines
of any orientation (optionally oblique), stacks of labelled blobs, CT- or
MR-like intensities, and writers that keep an on-disk dtype on purpose
(float64 masks, int16 volumes) to mimic real archives.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import numpy.typing as npt

from utils.aliases import Affine, PathLike

__all__ = ["affine_for", "rotation_about", "blob_stack_mask", "ct_like_volume", "mr_like_volume", "write_raw_nifti", "flip_storage"]

_AXIS = {"R": (0, 1.0), "L": (0, -1.0), "A": (1, 1.0), "P": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}


def rotation_about(axis: int, degrees: float) -> npt.NDArray[np.float64]:
    """(3, 3) rotation about world axis 0, 1 or 2."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = [a for a in range(3) if a != axis]
    rot = np.eye(3)
    rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
    return rot


def affine_for(
    codes: str,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    oblique_deg: float = 0.0,
) -> Affine:
    """Voxel-to-world matrix whose axis codes are ``codes`` (e.g. ``'LPS'``, ``'PIR'``).

    Parameters
    ----------
    codes : str
        Three letters from RL, AP, SI, one per world axis.
    spacing : sequence of float
        Voxel size in mm along each array axis.
    origin : sequence of float
        World position (mm) of voxel (0, 0, 0).
    oblique_deg : float
        Rotation about the world S axis applied on top (0: axis-aligned).
    """
    direction = np.zeros((3, 3))
    for j, code in enumerate(codes.upper()):
        world_axis, sign = _AXIS[code]
        direction[world_axis, j] = sign
    affine = np.eye(4)
    affine[:3, :3] = rotation_about(2, oblique_deg) @ direction @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def blob_stack_mask(
    shape: Sequence[int],
    labels: Sequence[int],
    axis: int = 2,
    radius_fraction: float = 0.25,
    rng: np.random.Generator | None = None,
    specks: int = 0,
    holes: int = 0,
) -> npt.NDArray[np.uint8]:
    """Ellipsoids stacked along ``axis``, one per label — a vertebral column in miniature.

    Parameters
    ----------
    shape : sequence of int
        (I, J, K).
    labels : sequence of int
        Label of each blob, first at low indices of ``axis``.
    axis : int
        Stacking axis.
    radius_fraction : float
        In-plane radius as a fraction of the smaller in-plane size.
    rng : numpy Generator, optional
        For specks and holes.
    specks, holes : int
        Number of isolated foreground voxels added near the blobs (label of
        the nearest blob) and of 1-voxel holes punched inside blobs.

    Returns
    -------
    mask : (I, J, K) ndarray of uint8
    """
    shape = tuple(int(s) for s in shape)
    mask = np.zeros(shape, dtype=np.uint8)
    n = max(len(labels), 1)
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    inplane = [a for a in range(3) if a != axis]
    radius = radius_fraction * min(shape[a] for a in inplane)
    half_len = shape[axis] / n / 2 * 0.8
    for i, label in enumerate(labels):
        center = [s / 2 for s in shape]
        center[axis] = (i + 0.5) * shape[axis] / n
        dist = sum(((grids[a] - center[a]) / (half_len if a == axis else radius)) ** 2 for a in range(3))
        mask[dist <= 1.0] = label
    rng = rng or np.random.default_rng(0)
    fg = np.argwhere(mask > 0)
    for _ in range(specks if len(fg) else 0):
        p = fg[rng.integers(len(fg))].copy()
        p[inplane[0]] = min(shape[inplane[0]] - 1, p[inplane[0]] + int(radius) + 2)
        mask[tuple(p)] = mask[tuple(fg[rng.integers(len(fg))])]
    for _ in range(holes if len(fg) else 0):
        mask[tuple(fg[rng.integers(len(fg))])] = 0
    return mask


def ct_like_volume(mask: npt.NDArray, rng: np.random.Generator | None = None) -> npt.NDArray[np.int16]:
    """int16 Hounsfield-like volume: air -1000 outside a body cylinder, soft tissue ~40, bone ~400 under the mask."""
    rng = rng or np.random.default_rng(0)
    vol = np.full(mask.shape, -1000, dtype=np.int16)
    i, j = np.ogrid[: mask.shape[0], : mask.shape[1]]
    body = ((i - mask.shape[0] / 2) / (0.48 * mask.shape[0])) ** 2 + ((j - mask.shape[1] / 2) / (0.48 * mask.shape[1])) ** 2 <= 1
    vol[body] = 40
    vol[mask > 0] = 400
    noise = rng.normal(0, 20, mask.shape).astype(np.int16)
    return vol + noise


def mr_like_volume(mask: npt.NDArray, rng: np.random.Generator | None = None) -> npt.NDArray[np.int16]:
    """int16 MR-like volume: tissue ~300, enhancing lesion ~900, noise."""
    rng = rng or np.random.default_rng(0)
    vol = np.full(mask.shape, 300, dtype=np.int16)
    vol[mask > 0] = 900
    return vol + rng.normal(0, 30, mask.shape).astype(np.int16)


def write_raw_nifti(path: PathLike, data: npt.NDArray, affine: Affine, *, qform: bool = True) -> Path:
    """Write ``data`` with its own dtype and the given affine, as an archive would hold it (not atomic: test data)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, affine)
    img.set_data_dtype(data.dtype)
    img.set_sform(affine, code=2)
    img.set_qform(affine if qform else None, code=1 if qform else 0)
    nib.save(img, path)
    return path


def flip_storage(data: npt.NDArray, affine: Affine, axis: int) -> tuple[npt.NDArray, Affine]:
    """Same image stored with array ``axis`` reversed: every voxel keeps its world position.

    Returns
    -------
    data : ndarray
        Flipped copy.
    affine : (4, 4) ndarray
        Matching affine.
    """
    flipped = np.ascontiguousarray(np.flip(data, axis=axis))
    t = np.eye(4)
    t[axis, axis] = -1.0
    t[axis, 3] = data.shape[axis] - 1
    return flipped, np.asarray(affine, dtype=np.float64) @ t
