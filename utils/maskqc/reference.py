"""Slow, literal reference implementations of the mask-QC rules (for tests and the benchmark only).

Everything here follows the tutorial's formulas word for word on full
slices and full volumes, one label at a time, with plain scipy calls and no
cropping, so that the fast versions in :mod:`utils.maskqc.slice_morphology`,
:mod:`utils.maskqc.label_fusion` and :mod:`utils.labels.connected_regions` can be checked
against it voxel for voxel. Not used by the tools.

An oracle must not share code with what it checks: this module imports
nothing from the toolkit. Neighbourhoods are written out, pixel areas and
voxel volumes computed here from the affine, and the repair parameters are
read from any object with ``mode``, ``kernel_size``, ``region_area_thresh_mm2``
and ``connectivity`` attributes (a :class:`utils.maskqc.slice_morphology.SliceRepair`
is one). ``tests/test_mask_qc_oracles.py`` checks that it stays so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from utils.maskqc.slice_morphology import SliceRepair

__all__ = ["naive_repair_slice", "naive_repair_mask", "naive_small_region_count", "neighbourhood"]


def neighbourhood(ndim: int, connectivity: int) -> npt.NDArray[np.bool_]:
    """The (3,)*ndim neighbourhood of a connectivity, from its definition.

    2D: 4 (edge neighbours) or 8 (edges and corners); 3D: 6 (faces), 18
    (faces and edges) or 26 (faces, edges and corners): a neighbour is an
    offset whose number of non-zero coordinates is at most 1, 2 or 3.
    """
    reach = {(2, 4): 1, (2, 8): 2, (3, 6): 1, (3, 18): 2, (3, 26): 3}.get((ndim, connectivity))
    if reach is None:
        raise ValueError(f"no {ndim}D connectivity {connectivity}")
    offsets = np.indices((3,) * ndim) - 1
    return np.count_nonzero(offsets, axis=0) <= reach


def _pixel_area(affine: Any) -> float:
    """mm² of one pixel of an axial slice: |column 0 × column 1| of the affine."""
    a = np.asarray(affine, dtype=np.float64)
    return float(np.linalg.norm(np.cross(a[:3, 0], a[:3, 1])))


def _voxel_volume(affine: Any) -> float:
    """mm³ of one voxel: |det| of the affine's 3x3 part."""
    return float(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3])))


def naive_repair_slice(
    plane: npt.NDArray[np.uint8],
    labels: list[int],
    repair: "SliceRepair",
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
    from scipy import ndimage

    struct = neighbourhood(2, repair.connectivity)
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
    affine: Any,
    repair: "SliceRepair",
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
    pixel_area = _pixel_area(affine)
    out = mask.copy()
    for k in slices if slices is not None else range(mask.shape[2]):
        out[:, :, k] = naive_repair_slice(mask[:, :, k], labels, repair, pixel_area, filter_halfedge)
    return out


def naive_small_region_count(
    mask: npt.NDArray[np.uint8],
    affine: Any,
    volume_thresh_mm3: float,
    connectivity: int = 26,
) -> dict[int, list[int]]:
    """Voxel counts of the small 3D regions of every foreground label, labelling the full volume per label.

    Returns
    -------
    sizes : dict
        ``{label: sorted voxel counts of its components below the threshold}``.
    """
    from scipy import ndimage

    voxel_volume = _voxel_volume(affine)
    out = {}
    for label in range(1, int(mask.max()) + 1):
        comps, n = ndimage.label(mask == label, structure=neighbourhood(3, connectivity))
        counts = np.bincount(comps.reshape(-1), minlength=n + 1)[1:]
        small = sorted(int(c) for c in counts if c * voxel_volume < volume_thresh_mm3)
        if small:
            out[label] = small
    return out
