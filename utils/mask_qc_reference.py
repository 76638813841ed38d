"""Slow, literal reference implementations of the mask-QC rules (for tests and the benchmark only).

Everything here follows the tutorial's formulas word for word on full
slices and full volumes, one label at a time, with plain scipy calls and no
cropping, so that the fast versions in :mod:`utils.slice_morphology`,
:mod:`utils.label_fusion` and :mod:`utils.connected_regions` can be checked
against it voxel for voxel. Not used by the tools.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from utils.aliases import Affine
from utils.connected_regions import DEFAULT_CONNECTIVITY_3D, pixel_area_mm2, structure_2d, structure_3d
from utils.label_stats import voxel_volume_mm3
from utils.lazy_import import lazy_import
from utils.slice_morphology import SliceRepair

ndimage = lazy_import("scipy.ndimage")

__all__ = ["naive_repair_slice", "naive_repair_mask", "naive_small_region_count"]


def naive_repair_slice(
    plane: npt.NDArray[np.uint8],
    labels: list[int],
    repair: SliceRepair,
    pixel_area: float,
    filter_halfedge: int,
) -> npt.NDArray[np.uint8]:
    """Repair and fuse one axial slice exactly as the tutorial writes it.

    Parameters
    ----------
    plane : (I, J) ndarray of uint8
    labels : list of int
        Every label index ``0 … L`` of the label map, ascending (background first).
    repair : SliceRepair
    pixel_area : float
        mm² per pixel.
    filter_halfedge : int

    Returns
    -------
    fused : (I, J) ndarray of uint8
    """
    struct = structure_2d(repair.connectivity)
    kernel = np.ones(repair.kernel_size, dtype=bool)
    processed = []
    for label in labels:
        b = plane == label
        target = ~b if repair.mode == "close" else b  # SC_m-: holes; ESO: specks
        comps, _ = ndimage.label(target, structure=struct)
        area = np.bincount(comps.reshape(-1)) * pixel_area
        small = area < repair.region_area_thresh_mm2
        small[0] = False
        sc = small[comps]
        op = ndimage.binary_closing(b, structure=kernel) if repair.mode == "close" else ndimage.binary_opening(b, structure=kernel)
        processed.append((~sc & b) | (sc & op))  # SC_res * mask_i + SC_m * Op(mask_i)
    idx = np.stack(processed).astype(np.int64)  # (L, I, J)
    window = np.ones((2 * filter_halfedge + 1, 2 * filter_halfedge + 1), dtype=np.int64)
    sums = np.stack([ndimage.correlate(b, window, mode="constant", cval=0) for b in idx])
    n_cand = idx.sum(axis=0)
    choice = np.where(
        n_cand == 1,
        np.argmax(idx, axis=0),
        np.where(n_cand == 0, np.argmax(sums, axis=0), np.argmax(sums * idx, axis=0)),
    )
    return np.asarray(labels, dtype=np.uint8)[choice]


def naive_repair_mask(
    mask: npt.NDArray[np.uint8],
    affine: Affine,
    repair: SliceRepair,
    filter_halfedge: int,
    labels: list[int] | None = None,
    slices: range | None = None,
) -> npt.NDArray[np.uint8]:
    """:func:`naive_repair_slice` on every axial slice (or on ``slices`` only; others are copied).

    Parameters
    ----------
    mask : (I, J, K) ndarray of uint8
    affine : (4, 4) ndarray
    repair : SliceRepair
    filter_halfedge : int
    labels : list of int, optional
        Label map indices; default ``0 … mask.max()``.
    slices : range, optional
        Slice indices to process (the benchmark times a subset).

    Returns
    -------
    fused : (I, J, K) ndarray of uint8
    """
    labels = list(range(int(mask.max()) + 1)) if labels is None else sorted(labels)
    pixel_area = pixel_area_mm2(affine)
    out = mask.copy()
    for k in slices if slices is not None else range(mask.shape[2]):
        out[:, :, k] = naive_repair_slice(mask[:, :, k], labels, repair, pixel_area, filter_halfedge)
    return out


def naive_small_region_count(
    mask: npt.NDArray[np.uint8],
    affine: Affine,
    volume_thresh_mm3: float,
    connectivity: int = DEFAULT_CONNECTIVITY_3D,
) -> dict[int, list[int]]:
    """Voxel counts of the small 3D regions of every foreground label, labelling the full volume per label.

    Returns
    -------
    sizes : dict
        ``{label: sorted voxel counts of its components below the threshold}``.
    """
    voxel_volume = voxel_volume_mm3(affine)
    out = {}
    for label in range(1, int(mask.max()) + 1):
        comps, n = ndimage.label(mask == label, structure=structure_3d(connectivity))
        counts = np.bincount(comps.reshape(-1), minlength=n + 1)[1:]
        small = sorted(int(c) for c in counts if c * voxel_volume < volume_thresh_mm3)
        if small:
            out[label] = small
    return out
