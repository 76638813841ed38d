"""The label core's documented contract, checked against plain numpy oracles (no code shared with utils.labels.label_stats).

Each test names the plausible bug it catches: a box offset by the crop's start, a slab loop that keeps only
the last slab, a value range cut at 255, counts silently turned into floats, a thread pool that never runs.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import utils.labels.label_stats as core
from utils.labels.label_stats import (
    foreground_box,
    high_label_counts,
    label_boxes,
    label_stats,
    map_threads,
    memory_view,
    slices_reaching,
    voxel_volume_mm3,
)


def oracle_boxes(mask: np.ndarray) -> dict[int, tuple[slice, slice, slice]]:
    """Box of every non-zero value from ``np.argwhere`` (inclusive min, exclusive max)."""
    out = {}
    for value in np.unique(mask):
        if value:
            idx = np.argwhere(mask == value)
            out[int(value)] = tuple(slice(int(a), int(b) + 1) for a, b in zip(idx.min(0), idx.max(0)))
    return out


def offset_mask(order: str) -> np.ndarray:
    """Labels whose boxes start away from index 0 on every axis, with different extents per label."""
    mask = np.zeros((9, 11, 13), np.uint8, order=order)
    mask[3:5, 4:9, 6:8] = 1
    mask[6, 2, 11] = 1  # label 1 spans two separate pieces
    mask[2:7, 5:6, 3:12] = 200
    mask[8, 10, 12] = 255  # the highest value, in the last voxel
    return mask


@pytest.mark.parametrize("order", ["C", "F"])
def test_boxes_and_counts_of_labels_away_from_the_origin(order):
    mask = offset_mask(order)
    stats = label_stats(mask)
    assert stats.counts.dtype == np.int64 and stats.counts.shape == (256,)
    np.testing.assert_array_equal(stats.counts, [np.count_nonzero(mask == v) for v in range(256)])
    assert stats.shape == (9, 11, 13)
    assert stats.boxes() == oracle_boxes(mask)
    assert label_boxes(mask, threads=2) == oracle_boxes(mask)
    idx = np.argwhere(mask)
    assert foreground_box(mask) == tuple(slice(int(a), int(b) + 1) for a, b in zip(idx.min(0), idx.max(0)))
    assert stats.foreground == foreground_box(mask)


@pytest.mark.parametrize("order", ["C", "F"])
def test_boxes_do_not_depend_on_the_slab_size(order, monkeypatch):
    # A label whose in-plane extent differs from slice to slice: a slab loop that kept only its last slab
    # (or skipped slabs) would give a box too small.
    mask = np.zeros((6, 7, 8), np.uint8, order=order)
    mask[1, 1, 2] = mask[2, 5, 6] = mask[4, 3, 1] = mask[5, 6, 7] = 7
    monkeypatch.setattr(core, "_SLAB_VOXELS", 1)
    assert label_stats(mask).boxes() == oracle_boxes(mask)


def test_requested_boxes_include_label_1_and_leave_out_0_absent_and_out_of_range_values():
    mask = offset_mask("F")
    stats = label_stats(mask)
    assert stats.boxes([1, 0, 2, 256, 300]) == {1: oracle_boxes(mask)[1]}
    assert stats.boxes([255]) == {255: (slice(8, 9), slice(10, 11), slice(12, 13))}


def test_empty_mask_has_no_foreground_box():
    for order in ("C", "F"):
        empty = np.zeros((3, 4, 5), np.uint8, order=order)
        assert foreground_box(empty) is None
        assert label_stats(empty).foreground is None


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4, 5)])
def test_a_mask_that_is_not_3d_is_refused(shape):
    with pytest.raises(ValueError, match="3D mask expected, got shape"):
        label_stats(np.zeros(shape, np.uint8))
    with pytest.raises(ValueError, match="3D mask expected"):
        high_label_counts(np.zeros(shape, np.uint8), 1)


def test_memory_view_follows_the_memory_order():
    c = np.zeros((2, 3, 4), np.uint8)
    f = np.asfortranarray(c)
    strided = np.zeros((4, 6, 8), np.uint8)[::2, ::2, ::2]
    both = np.zeros((1, 1, 5), np.uint8)  # C- and Fortran-contiguous at once
    view, transposed = memory_view(f)
    assert transposed and view.shape == (4, 3, 2) and view.flags.c_contiguous
    for array in (c, strided, both):
        view, transposed = memory_view(array)
        assert view is array and not transposed


def test_slices_reaching_a_value_in_every_memory_layout():
    rng = np.random.default_rng(3)
    view = rng.integers(0, 30, (7, 5, 6), dtype=np.uint8)
    expected = [i for i in range(7) if view[i].max() >= 25]
    assert slices_reaching(view, 25).tolist() == expected
    assert slices_reaching(view[:, ::2, ::-1], 25).tolist() == [i for i in range(7) if view[i, ::2].max() >= 25]
    empty = slices_reaching(np.zeros((0, 3, 3), np.uint8), 1)
    assert empty.dtype == np.intp and empty.size == 0


def test_voxel_volume_is_the_determinant_and_a_singular_affine_is_refused():
    affine = np.array([[0, 0, 2.5, 1], [0, -0.7, 0, 2], [1.2, 0, 0, 3], [0, 0, 0, 1]], dtype=np.float32)
    # computed in float64 from the stored float32 values (a float32 determinant is off by ~1e-7)
    assert voxel_volume_mm3(affine) == pytest.approx(2.5 * float(np.float32(0.7)) * float(np.float32(1.2)), rel=1e-13)
    assert voxel_volume_mm3([[1, 0, 0, 0], [0, 3, 0, 0], [0, 0, 7, 0], [0, 0, 0, 1]]) == 21.0  # integer affine
    singular = np.diag([1.0, 0.0, 2.0, 1.0])
    with pytest.raises(ValueError, match=r"singular: voxel volume 0\.0 mm³") as info:
        voxel_volume_mm3(singular)
    assert "[1.0, 0.0, 0.0, 0.0]" in str(info.value)  # the affine is named


def test_map_threads_runs_in_order_in_the_caller_by_default_and_in_parallel_on_request():
    caller = threading.get_ident()
    seen = []
    assert map_threads(lambda x: seen.append(threading.get_ident()) or x * 2, [3, 1, 2]) == [6, 2, 4]
    assert set(seen) == {caller}
    # Two items that can only finish when both run at the same time: a pool that ran them one after the
    # other would break the barrier (after a generous wait) instead of passing it.
    barrier = threading.Barrier(2, timeout=30)

    def meet(x):
        barrier.wait()
        return x + 1

    assert map_threads(meet, [10, 20], threads=2) == [11, 21]
    assert map_threads(lambda x: x, [], threads=4) == []
    assert map_threads(lambda x: -x, iter([5]), threads=4) == [-5]
