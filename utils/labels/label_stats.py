"""Which labels a uint8 mask holds, how many voxels each, and where: the one label core of every routine.

Routine 02 (are the labels allowed?), 03 (is there sacrum, coccyx or T13, and
where?), 04 (each label's bounding box), 05 (``valid_labels`` and the
``_existence`` columns), the mask-QC tools (each label's box) and the QC report
(voxel counts in mm³) all ask this module, which answers without a copy of the
whole volume, without casting it to int64 and without walking a Fortran array
in C order:

1. The mask is walked through a C-ordered view of its memory (the transpose of
   a Fortran array, as NIfTI stores it, is one; no copy). Its first axis is the
   slowest-varying one: a slab of consecutive indices along it is contiguous.
2. Per slice of the slow axis (contiguous, cache-sized), the non-zero values
   are gathered and counted with a 256-bin ``np.bincount`` (its int64 cast
   applies to those values only, never to the volume); background is the
   rest. The same loop records each label's first and last slice.
3. Boxes, on request: the foreground's in-plane extent comes from one bitwise
   OR of all slices; a label's box is then found inside its slow-axis range
   and that extent only, from the projection of ``crop == label``, a slab at
   a time; labels are scanned in threads on request (numpy releases the GIL).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from utils.files.aliases import Affine

__all__ = [
    "Box",
    "LabelStats",
    "label_stats",
    "label_histogram",
    "present_labels",
    "label_boxes",
    "foreground_box",
    "memory_view",
    "slices_reaching",
    "high_label_counts",
    "map_threads",
    "voxel_volume_mm3",
]

#: A bounding box: one slice per array axis, in the mask's own (I, J, K) index order.
Box = tuple[slice, slice, slice]

T = TypeVar("T")
R = TypeVar("R")

#: Voxels per slab when a label's box is projected (its boolean temporary is this size).
_SLAB_VOXELS = 1 << 20


def map_threads(func: Callable[[T], R], items: Iterable[T], threads: int = 1) -> list[R]:
    """``[func(x) for x in items]``, in ``threads`` threads when > 1 (results in input order).

    numpy and scipy.ndimage release the GIL in their loops, so per-label work
    on large crops runs in parallel on several cores.
    """
    items = list(items)
    if threads <= 1 or len(items) <= 1:
        return [func(x) for x in items]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(func, items))


def voxel_volume_mm3(affine: Affine) -> float:
    """Volume of one voxel in mm³: ``|det(affine[:3, :3])|`` (right for oblique and sheared grids).

    Raises
    ------
    ValueError
        The affine is singular (zero volume).
    """
    vol = float(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3])))
    if not vol > 0:
        raise ValueError(f"affine {np.asarray(affine).tolist()} is singular: voxel volume {vol} mm³")
    return vol


def memory_view(mask: npt.NDArray) -> tuple[npt.NDArray, bool]:
    """A view of ``mask`` whose axes follow its memory order, slowest first (no copy).

    Returns
    -------
    view : ndarray
        ``mask.T`` for a Fortran-ordered array, ``mask`` otherwise.
    transposed : bool
        True when ``view`` is ``mask.T`` (its axes are (K, J, I)).
    """
    if mask.flags.f_contiguous and not mask.flags.c_contiguous:
        return mask.T, True
    return mask, False


def _to_mask_axes(box_view: Sequence[slice], transposed: bool) -> Box:
    return tuple(box_view[::-1] if transposed else box_view)  # type: ignore[return-value]


def _extent(flags: npt.NDArray[np.bool_]) -> slice | None:
    idx = np.flatnonzero(flags)
    return slice(int(idx[0]), int(idx[-1]) + 1) if idx.size else None


def _check_uint8(mask: npt.NDArray) -> None:
    if mask.dtype != np.uint8:
        raise TypeError(f"uint8 mask expected, got {mask.dtype}")
    if mask.ndim != 3:
        raise ValueError(f"3D mask expected, got shape {mask.shape}")


def _plane_extents(view: npt.NDArray[np.uint8]) -> tuple[slice, slice] | None:
    """Extents along the two fast axes of the non-zero voxels of a C-ordered (slow, mid, fast) view.

    One pass: the bitwise OR of all slow-axis slices (whole contiguous slices at a time).
    """
    plane = np.bitwise_or.reduce(view, axis=0)
    mid, fast = _extent(plane.any(axis=1)), _extent(plane.any(axis=0))
    return None if mid is None else (mid, fast)  # type: ignore[return-value]


def _foreground_box_view(view: npt.NDArray[np.uint8]) -> tuple[slice, slice, slice] | None:
    """Box of the non-zero voxels of a C-ordered (slow, mid, fast) view, in the view's axes."""
    extents = _plane_extents(view)
    if extents is None:
        return None
    mid, fast = extents
    slow = _extent(view[:, mid, fast].any(axis=(1, 2)))
    return slow, mid, fast  # type: ignore[return-value]


def foreground_box(mask: npt.NDArray[np.uint8]) -> Box | None:
    """Bounding box of the non-zero voxels of a 3D mask, or None when it is all zero."""
    view, transposed = memory_view(mask)
    box = _foreground_box_view(view)
    return None if box is None else _to_mask_axes(box, transposed)


def slices_reaching(view: npt.NDArray[np.uint8], lowest: int) -> npt.NDArray[np.intp]:
    """Indices along the first (slowest) axis of ``view`` whose slice holds a value >= ``lowest``.

    One reduction (a per-slice maximum) in memory order: the few slices that
    can hold the highest labels of a mask are found without counting anything.
    """
    if not view.size:
        return np.zeros(0, dtype=np.intp)
    flat = view.reshape(view.shape[0], -1) if view.flags.c_contiguous else None
    slice_max = flat.max(axis=1) if flat is not None else view.max(axis=tuple(range(1, view.ndim)))
    return np.flatnonzero(slice_max >= lowest)


def high_label_counts(mask: npt.NDArray[np.uint8], lowest: int) -> dict[int, int]:
    """Voxel count of every value >= ``lowest`` present in a uint8 mask, reading only the slices that reach it.

    Returns
    -------
    counts : dict
        ``{value: voxels}`` for the values >= ``lowest`` that are present, sorted.
    """
    _check_uint8(mask)
    view, _ = memory_view(mask)
    counts = np.zeros(256, dtype=np.int64)
    for index in slices_reaching(view, lowest):
        flat = view[index].reshape(-1)
        counts += np.bincount(flat[flat >= lowest], minlength=256)
    return {int(v): int(counts[v]) for v in np.flatnonzero(counts)}


@dataclass
class LabelStats:
    """Labels of one uint8 mask: voxel counts, extents, bounding boxes.

    Build it with :func:`label_stats`. Boxes are computed on first request and cached.

    Attributes
    ----------
    counts : (256,) ndarray of int64
        Voxel count of every value 0..255.
    shape : tuple of int
        Shape of the mask.
    """

    counts: npt.NDArray[np.int64]
    shape: tuple[int, ...]
    _mask: npt.NDArray[np.uint8] = field(repr=False)
    _slow_ranges: dict[int, slice] = field(repr=False, default_factory=dict)
    _plane: tuple[slice, slice] | None = field(repr=False, default=None)
    _boxes: dict[int, Box] = field(repr=False, default_factory=dict)

    @property
    def present(self) -> list[int]:
        """Sorted values present in the mask, background 0 included when it has voxels."""
        return [int(v) for v in np.flatnonzero(self.counts)]

    @property
    def foreground_labels(self) -> list[int]:
        """Sorted non-zero values present in the mask."""
        return [v for v in self.present if v]

    def volumes_mm3(self, affine: Affine) -> dict[int, float]:
        """Volume in mm³ of every present value: voxel count × ``|det(affine[:3, :3])|``."""
        voxel = voxel_volume_mm3(affine)
        return {v: float(self.counts[v]) * voxel for v in self.present}

    @property
    def foreground(self) -> Box | None:
        """Bounding box of all non-zero voxels in the mask's axes; None for an empty mask."""
        if not self._slow_ranges:
            return None
        view, transposed = memory_view(self._mask)
        slow = slice(min(r.start for r in self._slow_ranges.values()), max(r.stop for r in self._slow_ranges.values()))
        return _to_mask_axes((slow, *self._plane_extents()), transposed)

    def _plane_extents(self) -> tuple[slice, slice]:
        if self._plane is None:
            view, _ = memory_view(self._mask)
            self._plane = _plane_extents(view)
        return self._plane  # type: ignore[return-value]

    def boxes(self, labels: Iterable[int] | None = None, threads: int = 1) -> dict[int, Box]:
        """Bounding box of each requested foreground label that is present (all present ones by default).

        Parameters
        ----------
        labels : iterable of int, optional
            Labels wanted; absent ones and 0 are left out of the result.
        threads : int
            Labels scanned in parallel threads.

        Returns
        -------
        boxes : dict
            ``{label: (slice_i, slice_j, slice_k)}`` in the mask's axes, sorted by label.
        """
        candidates = self.foreground_labels if labels is None else {int(v) for v in labels}
        wanted = sorted(v for v in candidates if 0 < v < 256 and self.counts[v])
        todo = [v for v in wanted if v not in self._boxes]
        if todo:
            self._plane_extents()
        for label, box in zip(todo, map_threads(self._box_of, todo, threads)):
            self._boxes[label] = box
        return {v: self._boxes[v] for v in wanted}

    def _box_of(self, label: int) -> Box:
        """Box of one present label: projection of ``crop == label`` over its slow-axis range, a slab at a time."""
        view, transposed = memory_view(self._mask)
        mid, fast = self._plane_extents()
        slow = self._slow_ranges[label]
        plane = np.zeros((mid.stop - mid.start, fast.stop - fast.start), dtype=bool)
        step = max(1, _SLAB_VOXELS // plane.size)
        for start in range(slow.start, slow.stop, step):
            plane |= (view[start : min(start + step, slow.stop), mid, fast] == label).any(axis=0)
        rows, cols = _extent(plane.any(axis=1)), _extent(plane.any(axis=0))
        box_view = (
            slow,
            slice(rows.start + mid.start, rows.stop + mid.start),  # type: ignore[union-attr]
            slice(cols.start + fast.start, cols.stop + fast.start),  # type: ignore[union-attr]
        )
        return _to_mask_axes(box_view, transposed)


def label_stats(mask: npt.NDArray[np.uint8]) -> LabelStats:
    """Voxel count of every value of a 3D uint8 mask, and each label's extent along the slow axis.

    One pass, one slow-axis slice (contiguous in memory) at a time: the
    slice's non-zero values are gathered and counted with a 256-bin
    ``np.bincount``; background is the rest. Boxes are computed on request
    (:meth:`LabelStats.boxes`).

    Parameters
    ----------
    mask : (I, J, K) ndarray of uint8
        Any memory order; Fortran order (as read from NIfTI) is walked through its transpose.

    Returns
    -------
    LabelStats

    Raises
    ------
    TypeError
        ``mask`` is not uint8 (check and convert first, e.g. with ``read_mask``).
    """
    _check_uint8(mask)
    view, _ = memory_view(mask)
    counts = np.zeros(256, dtype=np.int64)
    firsts = np.full(256, -1, dtype=np.int64)
    lasts = np.full(256, -1, dtype=np.int64)
    for index in range(view.shape[0]):
        flat = view[index].reshape(-1)  # a view when the mask is contiguous; a slice-sized copy otherwise
        values = flat[flat != 0]
        if not values.size:
            continue
        slice_counts = np.bincount(values, minlength=256)
        found = np.flatnonzero(slice_counts)
        firsts[found[firsts[found] < 0]] = index
        lasts[found] = index
        counts += slice_counts
    counts[0] = mask.size - int(counts.sum())
    ranges = {int(v): slice(int(firsts[v]), int(lasts[v]) + 1) for v in np.flatnonzero(counts[1:]) + 1}
    return LabelStats(counts, tuple(mask.shape), mask, ranges)


def label_histogram(mask: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """Voxel count of each value 0..255 of a uint8 mask (see :func:`label_stats`).

    Returns
    -------
    counts : (256,) ndarray of int64
    """
    return label_stats(mask).counts


def present_labels(mask: npt.NDArray[np.uint8]) -> list[int]:
    """Sorted values present in a uint8 mask, background included."""
    return label_stats(mask).present


def label_boxes(mask: npt.NDArray[np.uint8], threads: int = 1) -> dict[int, Box]:
    """Bounding box of every foreground value of a uint8 mask: ``{label: (slice_i, slice_j, slice_k)}``."""
    return label_stats(mask).boxes(threads=threads)
