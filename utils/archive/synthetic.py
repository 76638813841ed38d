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

from utils.files.aliases import Affine, PathLike

__all__ = ["affine_for", "rotation_about", "blob_stack_mask", "vertebra_column_mask", "ct_like_volume", "mr_like_volume", "write_raw_nifti", "flip_storage", "MASK_STORAGES", "write_stored_mask"]

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


def vertebra_column_mask(
    shape: Sequence[int] = (512, 512, 300), n_labels: int = 24, seed: int = 0, specks: int = 1000, mislabels: int = 300, holes: int = 1000
) -> npt.NDArray[np.uint8]:
    """A realistic vertebra mask: uint8 (I, J, K), Fortran order, ``n_labels`` vertebrae stacked along k, with defects.

    Each vertebra: an elliptic body (~40x32 mm at 0.7 mm), an arch around the canal, a spinous and two
    transverse processes, ~80 % of its k-range (discs between). Defects: ``specks`` 1-4 voxel
    blobs of a label next to it, ``mislabels`` voxels of a neighbour label inside a body,
    ``holes`` 1-3 voxel holes.
    """
    rng = np.random.default_rng(seed)
    I, J, K = shape  # noqa: E741  the axes as the docstring names them
    mask = np.zeros(shape, np.uint8, order="F")
    h, w, left = 150, 190, 60  # in-plane crop of one vertebra; the body centre is ``left`` voxels from its j start
    ii, jj = np.mgrid[-h // 2 : h // 2, -left : w - left].astype(np.float32)
    per = K / n_labels
    for v in range(n_labels):
        scale = 0.75 + 0.35 * v / n_labels
        ci, cj = int(I / 2 + 12 * np.sin(v / 3)), int(J / 2 - 30 + 20 * np.cos(v / 5))
        z0, z1 = int(round(v * per)), int(round((v + 0.8) * per))
        for z in range(z0, max(z1, z0 + 1)):
            t = (z - (z0 + z1 - 1) / 2) / max((z1 - z0) / 2, 1)
            s = scale * (0.85 + 0.15 * np.sqrt(max(1 - t * t, 0)))
            body = (ii / (28 * s)) ** 2 + (jj / (22 * s)) ** 2 <= 1
            arch_r = (ii / (22 * s)) ** 2 + ((jj - 40 * s) / (18 * s)) ** 2
            arch = (arch_r <= 1) & (arch_r >= 0.45)
            spinous = (np.abs(ii) <= 4 * s) & (jj >= 50 * s) & (jj <= 80 * s)
            transverse = (np.abs(jj - 30 * s) <= 4 * s) & (np.abs(ii) >= 18 * s) & (np.abs(ii) <= 50 * s)
            shape2d = body | arch | spinous | transverse
            sub = mask[ci - h // 2 : ci + h // 2, cj - left : cj + w - left, z]
            sub[shape2d] = v + 1
    fg = np.argwhere(mask > 0)
    for _ in range(specks):  # a small blob of the label a few voxels off its bone
        p = fg[rng.integers(len(fg))]
        label = mask[tuple(p)]
        q = p + np.r_[rng.integers(-25, 26, 2), rng.integers(-2, 3)]
        q = np.clip(q, 0, np.array(shape) - 2)
        size = rng.integers(1, 3, 3)
        size[2] = 1
        region = mask[q[0] : q[0] + size[0], q[1] : q[1] + size[1], q[2]]
        region[region == 0] = label
    for _ in range(mislabels):
        p = tuple(fg[rng.integers(len(fg))])
        mask[p] = min(max(int(mask[p]) + int(rng.choice([-1, 1])), 1), n_labels)
    for _ in range(holes):
        p = fg[rng.integers(len(fg))]
        mask[p[0] : p[0] + int(rng.integers(1, 3)), p[1], p[2]] = 0
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


#: How :func:`write_stored_mask` may store a mask: as it is, array axis 0 reversed, or axes permuted (2, 0, 1).
MASK_STORAGES = ("same", "flipped", "permuted")


def write_stored_mask(path: PathLike, mask: npt.NDArray, affine: Affine, *, dtype: str = "uint8", storage: str = "same") -> Path:
    """Write a demo mask as an archive may hold it: in ``dtype``, stored in another array order, same world positions.

    Parameters
    ----------
    path : str or Path
    mask : (I, J, K) ndarray
        Labels on the volume's grid.
    affine : (4, 4) array
        The volume's affine.
    dtype : str
        On-disk data type (``uint8``, ``int16``, ``float64`` …).
    storage : {'same', 'flipped', 'permuted'}
        ``flipped``: array axis 0 reversed (:func:`flip_storage`); ``permuted``: axes (2, 0, 1), the affine's
        columns permuted to match. Every voxel keeps its world position.

    Returns
    -------
    path : Path
        The file written (:func:`write_raw_nifti`).

    Raises
    ------
    ValueError
        ``storage`` is not one of :data:`MASK_STORAGES`.
    """
    if storage not in MASK_STORAGES:
        raise ValueError(f"mask storage {storage!r} is not one of {MASK_STORAGES}")
    data, stored_affine = mask.astype(dtype), affine
    if storage == "flipped":
        data, stored_affine = flip_storage(data, affine, axis=0)
    elif storage == "permuted":
        data, stored_affine = np.ascontiguousarray(np.transpose(data, (2, 0, 1))), affine[:, [2, 0, 1, 3]]
    return write_raw_nifti(path, data, stored_affine)
