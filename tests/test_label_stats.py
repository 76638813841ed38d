"""The label core: counts, present labels, boxes and volumes of a uint8 mask, without whole-volume copies."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from scipy import ndimage

from utils.labels.label_stats import foreground_box, high_label_counts, label_boxes, label_histogram, label_stats, present_labels
from utils.labels.label_maps import remap_labels
from utils.archive.synthetic import affine_for


def random_mask(rng, shape, n_labels, order, fill=0.05):
    """Sparse labelled blocks plus scattered voxels (labels with gaps: 1, 3, 7, ...)."""
    mask = np.zeros(shape, np.uint8, order=order)
    values = rng.choice(np.arange(1, 200), size=n_labels, replace=False)
    for v in values:
        lo = [int(rng.integers(0, s - 1)) for s in shape]
        hi = [min(s, a + int(rng.integers(1, max(2, s // 2)))) for a, s in zip(lo, shape)]
        mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = v
    speck = rng.random(shape) < fill / 10
    mask[speck] = rng.choice(values, size=int(speck.sum()))
    return mask


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_counts_present_and_boxes_equal_numpy_and_find_objects(order, seed):
    rng = np.random.default_rng(seed)
    mask = random_mask(rng, (23, 17, 31), 6, order)
    stats = label_stats(mask)
    np.testing.assert_array_equal(stats.counts, np.bincount(mask.ravel(), minlength=256))
    assert stats.present == sorted(int(v) for v in np.unique(mask))
    expected = {i + 1: b for i, b in enumerate(ndimage.find_objects(mask)) if b is not None}
    assert stats.boxes() == expected
    assert stats.boxes(threads=3) == expected
    assert label_boxes(mask) == expected
    some = sorted(expected)[:2]
    assert label_stats(mask).boxes([*some, 0, 255]) == {v: expected[v] for v in some}  # 0 and absent left out
    fg = np.argwhere(mask)
    assert foreground_box(mask) == tuple(slice(int(a), int(b) + 1) for a, b in zip(fg.min(0), fg.max(0)))
    assert stats.foreground == foreground_box(mask)


def test_empty_full_and_strided_masks():
    empty = np.zeros((4, 5, 6), np.uint8, order="F")
    stats = label_stats(empty)
    assert stats.present == [0] and stats.counts[0] == empty.size and stats.boxes() == {} and stats.foreground is None
    full = np.full((3, 4, 5), 9, np.uint8)
    assert label_stats(full).present == [9]
    assert label_stats(full).boxes() == {9: (slice(0, 3), slice(0, 4), slice(0, 5))}
    rng = np.random.default_rng(5)
    big = random_mask(rng, (20, 22, 24), 4, "F")
    strided = big[::2, 1::3, ::-1]  # neither C nor Fortran contiguous
    np.testing.assert_array_equal(label_histogram(strided), np.bincount(strided.ravel(), minlength=256))
    expected = {i + 1: b for i, b in enumerate(ndimage.find_objects(np.ascontiguousarray(strided))) if b is not None}
    assert label_boxes(strided) == expected
    assert present_labels(strided) == sorted(int(v) for v in np.unique(strided))


def test_non_uint8_mask_is_refused_not_cast():
    with pytest.raises(TypeError, match="uint8 mask expected, got int16"):
        label_stats(np.zeros((2, 2, 2), np.int16))


def test_volumes_in_mm3_follow_the_affine_determinant():
    mask = np.zeros((4, 4, 4), np.uint8, order="F")
    mask[0, 0, :3] = 2  # 3 voxels
    mask[1:3, 1:3, 1] = 5  # 4 voxels
    affine = affine_for("PIR", (0.5, 0.8, 2.0), oblique_deg=7.0)  # voxel volume 0.8 mm³ whatever the rotation
    volumes = label_stats(mask).volumes_mm3(affine)
    assert volumes[2] == pytest.approx(3 * 0.8)
    assert volumes[5] == pytest.approx(4 * 0.8)
    assert volumes[0] == pytest.approx((64 - 7) * 0.8)


def test_no_whole_volume_temporary_for_a_fortran_mask():
    # A 256x256x128 Fortran mask (8 MB) with labels everywhere: the old ``np.bincount(mask.reshape(-1))``
    # allocated a C-order copy (8 MB) and its int64 cast (64 MB). The label core stays far below one copy.
    rng = np.random.default_rng(7)
    mask = np.asfortranarray(rng.integers(0, 25, (256, 256, 128), dtype=np.uint8))
    tracemalloc.start()
    stats = label_stats(mask)
    stats.boxes()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < mask.nbytes / 4, f"peak {peak} bytes for a {mask.nbytes}-byte mask"


def test_remap_is_simultaneous_and_can_work_in_place():
    mask = np.zeros((10, 10, 10), np.uint8, order="F")
    mask[0, 0, 0] = 25
    mask[2:4, 3:5, 6:8] = 26
    mask[5, 5, 5] = 28
    mask[9, 9, 9] = 27
    expected = mask.copy()
    expected[2:4, 3:5, 6:8] = 0
    expected[5, 5, 5] = 26
    expected[9, 9, 9] = 0
    copy = remap_labels(mask, {26: 0, 27: 0, 28: 26})
    np.testing.assert_array_equal(copy, expected)
    assert mask[5, 5, 5] == 28  # the input is untouched without in_place
    same = remap_labels(mask, {26: 0, 27: 0, 28: 26}, in_place=True)
    assert same is mask and same.flags.f_contiguous
    np.testing.assert_array_equal(mask, expected)
    untouched = np.full((3, 3, 3), 4, np.uint8)
    np.testing.assert_array_equal(remap_labels(untouched, {26: 0}), untouched)  # nothing to change


def test_high_label_counts_read_only_the_slices_that_reach_the_value():
    rng = np.random.default_rng(4)
    mask = random_mask(rng, (20, 21, 22), 8, "F")
    mask[3, 4, 5], mask[7, 8, 20] = 27, 250
    full = np.bincount(mask.ravel(), minlength=256)
    assert high_label_counts(mask, 27) == {v: int(full[v]) for v in range(27, 256) if full[v]}
    assert high_label_counts(mask, 251) == {}
    assert high_label_counts(np.ascontiguousarray(mask), 0) == {v: int(full[v]) for v in range(256) if full[v]}
