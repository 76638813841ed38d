"""Fuse repaired binary masks back into one label mask, resolving gaps and overlaps by local support.

The tutorials' rule, for the binary masks ``B_0 … B_L`` after the repair
(label 0 = background included) and ``Idx(v) = [B_0(v), …, B_L(v)]``::

    mask(v) = argmax Idx(v)                     if Idx(v) is one-hot
              argmax [Sum_0(v), …, Sum_L(v)]        if Idx(v) is all zero
              argmax [Sum_0(v), …, Sum_L(v)] * Idx(v)   otherwise (several labels)

where ``Sum_l(v)`` counts the voxels of ``B_l`` in the (2N+1) x (2N+1)
in-slice window centred on ``v`` (N = ``filter_halfedge``; the window is cut
at the image edge, nothing is counted outside). ``argmax`` returns the label
value; ties go to the lowest label, as :func:`numpy.argmax` does.

Only voxels where some binary mask changed can be anything but one-hot, so
:func:`fuse_label_changes` evaluates the rule there and nowhere else: the
window counts of the original mask come from the label patches around those
voxels, and the counts of the changes from a summed-area table of the changes
in that slice.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from utils.maskqc.slice_morphology import LabelChanges

__all__ = ["resolve_votes", "fuse_label_changes"]

logger = logging.getLogger(__name__)

_NVAL = 256  # uint8 label values
_OUTSIDE = _NVAL  # sentinel for window cells outside the image


def resolve_votes(candidates: npt.NDArray[np.integer], support: npt.NDArray[np.integer]) -> npt.NDArray[np.intp]:
    """Apply the fusion rule to voxels given their label memberships and window support counts.

    Parameters
    ----------
    candidates : (n, L) ndarray of int or bool
        ``Idx``: 1 where the voxel belongs to the binary mask of label column ``l``.
    support : (n, L) ndarray of int
        ``Sum_l``: voxels of each label's binary mask in the voxel's window.

    Returns
    -------
    columns : (n,) ndarray of intp
        Winning column per voxel: the only candidate; else the column of
        largest support (no candidate) or of largest support among the
        candidates (several); ties go to the lowest column.

    Examples
    --------
    >>> import numpy as np
    >>> cand = np.array([[0, 1, 0], [0, 0, 0], [0, 1, 1]])
    >>> sup = np.array([[9, 1, 0], [3, 5, 5], [9, 2, 4]])
    >>> resolve_votes(cand, sup).tolist()
    [1, 1, 2]
    """
    cand = np.asarray(candidates).astype(np.int64, copy=False)
    n_cand = cand.sum(axis=1)
    out = np.argmax(cand, axis=1)
    none = n_cand == 0
    if none.any():
        out[none] = np.argmax(support[none], axis=1)
    several = n_cand > 1
    if several.any():
        out[several] = np.argmax(support[several] * cand[several], axis=1)
    return out


def _window_patches(plane: npt.NDArray[np.uint8], points: npt.NDArray[np.int64], half: int) -> npt.NDArray[np.uint16]:
    """Label values in the (2h+1)² window of each point; cells outside the image hold :data:`_OUTSIDE`.

    Parameters
    ----------
    plane : (I, J) ndarray of uint8
    points : (n, 2) ndarray of int64
    half : int

    Returns
    -------
    patches : (n, (2h+1)²) ndarray of uint16
    """
    lo = points.min(axis=0) - half
    hi = points.max(axis=0) + half + 1
    buf = np.full((int(hi[0] - lo[0]), int(hi[1] - lo[1])), _OUTSIDE, dtype=np.uint16)
    src_lo = np.maximum(lo, 0)
    src_hi = np.minimum(hi, plane.shape)
    buf[src_lo[0] - lo[0] : src_hi[0] - lo[0], src_lo[1] - lo[1] : src_hi[1] - lo[1]] = plane[
        src_lo[0] : src_hi[0], src_lo[1] : src_hi[1]
    ]
    size = 2 * half + 1
    rel = points - points.min(axis=0)
    return sliding_window_view(buf, (size, size))[rel[:, 0], rel[:, 1]].reshape(len(points), size * size)


def _change_support(
    points: npt.NDArray[np.int64],
    change_pos: npt.NDArray[np.int64],
    change_col: npt.NDArray[np.intp],
    change_sign: npt.NDArray[np.int8],
    n_cols: int,
    half: int,
) -> npt.NDArray[np.int64]:
    """Signed count of changes of each column in the window of each point (summed-area table).

    Parameters
    ----------
    points : (n, 2) ndarray of int64
        Window centres (in-slice indices).
    change_pos : (m, 2) ndarray of int64
        Changed voxels (a subset of ``points``).
    change_col, change_sign : (m,) ndarrays
        Column (0..n_cols-1) and sign of each change.

    Returns
    -------
    counts : (n, n_cols) ndarray of int64
    """
    lo = points.min(axis=0) - half
    shape = points.max(axis=0) + half + 1 - lo
    table = np.zeros((n_cols, int(shape[0]) + 1, int(shape[1]) + 1), dtype=np.int32)
    np.add.at(table, (change_col, change_pos[:, 0] - lo[0] + 1, change_pos[:, 1] - lo[1] + 1), change_sign)
    table = table.cumsum(axis=1, dtype=np.int32).cumsum(axis=2, dtype=np.int32)
    li, lj = points[:, 0] - lo[0], points[:, 1] - lo[1]
    a, b = li - half, li + half + 1
    c, d = lj - half, lj + half + 1
    sums = table[:, b, d] - table[:, a, d] - table[:, b, c] + table[:, a, c]
    return sums.T.astype(np.int64)


def fuse_label_changes(
    mask: npt.NDArray[np.uint8], changes: LabelChanges, filter_halfedge: int
) -> tuple[npt.NDArray[np.uint8], int]:
    """Label mask from the original mask and the changes of its binary masks.

    Parameters
    ----------
    mask : (I, J, K) ndarray of uint8
        Original multi-label mask: ``B_l = (mask == l)`` before the changes.
    changes : LabelChanges
        Voxels added to / removed from each label's binary mask (each
        ``(voxel, label)`` at most once, added only where the voxel was not
        in that label, removed only where it was).
    filter_halfedge : int
        N of the (2N+1)² in-slice support window, >= 0.

    Returns
    -------
    fused : (I, J, K) ndarray of uint8
        New mask, in the memory layout of ``mask``.
    n_changed : int
        Voxels whose label differs from ``mask``.

    Raises
    ------
    ValueError
        Negative ``filter_halfedge``.
    """
    half = int(filter_halfedge)
    if half < 0:
        raise ValueError(f"filter_halfedge must be >= 0, got {filter_halfedge!r}")
    fused = mask.copy(order="K")
    if len(changes) == 0:
        return fused, 0
    ks = changes.coords[:, 2]
    order = np.argsort(ks, kind="stable")
    bounds = np.flatnonzero(np.diff(ks[order])) + 1
    n_changed = 0
    for sel in np.split(order, bounds):
        k = int(ks[sel[0]])
        plane = mask[:, :, k]
        pos = changes.coords[sel, :2]
        lin = pos[:, 0] * plane.shape[1] + pos[:, 1]
        uniq, inv = np.unique(lin, return_inverse=True)
        points = np.column_stack(np.divmod(uniq, plane.shape[1])).astype(np.int64)
        n = len(points)
        orig = plane[points[:, 0], points[:, 1]].astype(np.intp)
        labels = changes.labels[sel].astype(np.intp)
        signs = changes.signs[sel]
        # Idx(v): the original label plus / minus the changes at v.
        cand = np.zeros((n, _NVAL), dtype=np.int64)
        cand[np.arange(n), orig] = 1
        np.add.at(cand, (inv, labels), signs)
        # Sum_l(v): original labels in the window, corrected by the changes in the window.
        patches = _window_patches(plane, points, half)
        flat = (np.arange(n, dtype=np.int64)[:, None] * (_NVAL + 1) + patches).reshape(-1)
        support = np.bincount(flat, minlength=n * (_NVAL + 1)).reshape(n, _NVAL + 1)[:, :_NVAL]
        cols, col_of = np.unique(labels, return_inverse=True)
        support[:, cols] += _change_support(points, pos, col_of, signs, len(cols), half)
        winner = resolve_votes(cand, support).astype(np.uint8)
        fused[points[:, 0], points[:, 1], k] = winner
        n_changed += int(np.count_nonzero(winner != orig))
    return fused, n_changed
