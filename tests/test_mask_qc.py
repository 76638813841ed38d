"""Unit tests of the mask-QC rules on small hand-built arrays (physical thresholds, fusion rule, exactness)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from utils.labels.connected_regions import (
    pixel_area_mm2,
    slice_structure,
    small_regions,
    structure_3d,
)
from utils.labels.label_stats import label_boxes, voxel_volume_mm3
from utils.maskqc.label_fusion import fuse_label_changes, resolve_votes
from utils.maskqc.steps import threshold_mask
from utils.maskqc.reference import naive_repair_mask, naive_small_region_count
from utils.maskqc.slice_morphology import LabelChanges, SliceRepair, repair_changes
from utils.archive.synthetic import affine_for, blob_stack_mask


def repaired(mask, affine, mode, kernel, thresh, half, connectivity=8):
    """Fast repair + fusion, checked against the literal reference on every call."""
    repair = SliceRepair(mode, kernel, thresh, connectivity)
    fused, _ = fuse_label_changes(mask, repair_changes(mask, affine, repair), half)
    reference = naive_repair_mask(mask, affine, repair, half, labels=list(range(int(mask.max()) + 1)))
    np.testing.assert_array_equal(fused, reference)
    return fused


def square_with_hole(shape=(12, 12, 3), hole=((6, 6),)):
    """Label 1 square in every slice, with 1-voxel holes in the middle slice."""
    mask = np.zeros(shape, np.uint8)
    mask[3:10, 3:10, :] = 1
    for i, j in hole:
        mask[i, j, 1] = 0
    return np.asfortranarray(mask)


# --- physical sizes -------------------------------------------------------------------------------------------------


def test_pixel_area_and_voxel_volume_are_physical_for_oblique_flipped_anisotropic_grids():
    affine = affine_for("PIR", (0.5, 2.0, 3.0), origin=(10, -20, 5), oblique_deg=17.0)
    assert pixel_area_mm2(affine) == pytest.approx(1.0)
    assert voxel_volume_mm3(affine) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="singular"):
        voxel_volume_mm3(np.diag([1.0, 0.0, 1.0, 1.0]))


# --- close: holes ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spacing", "filled"),
    [((0.5, 0.5, 3.0), True), ((2.0, 2.0, 3.0), False), ((0.5, 4.0, 1.0), False), ((0.25, 3.0, 1.0), True)],
)
def test_close_fills_a_one_voxel_hole_only_when_its_area_in_mm2_is_below_the_threshold(spacing, filled):
    # Pixel areas 0.25, 4, 2 and 0.75 mm² against 1.0 mm²: the product of the in-plane spacings decides.
    mask = square_with_hole()
    affine = affine_for("LPS", spacing, origin=(3, 4, 5), oblique_deg=10.0)
    out = repaired(mask, affine, "close", (3, 3), 1.0, 1)
    assert out[6, 6, 1] == (1 if filled else 0)
    out[6, 6, 1] = mask[6, 6, 1]
    np.testing.assert_array_equal(out, mask)  # nothing else changes


def test_close_keeps_a_large_hole_and_fills_a_small_one_in_the_same_slice():
    mask = square_with_hole(shape=(20, 14, 2), hole=())
    mask[2:18, 2:12, :] = 2
    mask[5, 5, 0] = 0  # 1 px: 0.6 mm²
    mask[10:14, 6:9, 0] = 0  # 12 px: 7.2 mm²
    affine = affine_for("RAS", (0.6, 1.0, 2.5))
    out = repaired(mask, affine, "close", (5, 5), 2.0, 3)
    assert out[5, 5, 0] == 2
    assert (out[10:14, 6:9, 0] == 0).all()


def test_close_of_the_background_mask_removes_a_speck():
    # An isolated label-2 voxel is a small hole of the background's binary mask: closing fills it with
    # background, the voxel is then claimed by 0 and 2, and 0 has more support in the window.
    mask = np.zeros((11, 9, 2), np.uint8, order="F")
    mask[5, 4, 1] = 2
    out = repaired(mask, affine_for("LPS", (0.7, 0.7, 3.0)), "close", (3, 3), 2.0, 1)
    assert out[5, 4, 1] == 0


# --- open: specks ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("spacing", "removed"), [((0.5, 0.5, 1.0), True), ((2.0, 2.0, 1.0), False)])
def test_open_removes_a_speck_below_the_area_threshold(spacing, removed):
    mask = np.zeros((14, 12, 3), np.uint8, order="F")
    mask[2:8, 2:8, :] = 1
    mask[11, 10, 1] = 1  # isolated speck of label 1, area 0.25 or 4 mm²
    affine = affine_for("LAI", spacing, oblique_deg=-8.0)
    out = repaired(mask, affine, "open", (2, 2), 1.0, 2)
    assert out[11, 10, 1] == (0 if removed else 1)
    assert (out[2:8, 2:8, :] == 1).all()  # the body is larger than the threshold: untouched


def test_open_gives_an_unclaimed_voxel_the_majority_label_of_its_window():
    # A label-3 speck where label 1 dominates the 5x5 window (label 2 and background also present):
    # opening removes it from label 3, no label claims it, the largest window count wins.
    mask = np.zeros((12, 12, 1), np.uint8, order="F")
    mask[2:10, 2:7, 0] = 1
    mask[2:10, 7:10, 0] = 2
    mask[5, 6, 0] = 3
    out = repaired(mask, affine_for("LPS", (0.8, 0.8, 2.0)), "open", (2, 2), 1.0, 2)
    assert out[5, 6, 0] == 1


# --- fusion rule ----------------------------------------------------------------------------------------------------


def test_resolve_votes_follows_the_three_cases_and_breaks_ties_towards_the_lowest_label():
    cand = np.array([[0, 0, 1], [0, 0, 0], [0, 1, 1], [0, 1, 1], [0, 0, 0]])
    sup = np.array([[9, 9, 1], [1, 4, 2], [0, 3, 5], [9, 6, 2], [0, 0, 0]])
    assert resolve_votes(cand, sup).tolist() == [2, 1, 2, 1, 0]


def test_fusion_gives_a_voxel_claimed_by_two_labels_to_the_one_with_more_support():
    mask = np.zeros((7, 7, 1), np.uint8, order="F")
    mask[:, :4, 0] = 1  # 28 voxels of label 1 ...
    mask[:, 4:, 0] = 2  # ... 21 of label 2
    mask[3, 3, 0] = 0
    both = LabelChanges(np.array([[3, 3, 0], [3, 3, 0]]), np.array([1, 2], np.uint8), np.array([1, 1], np.int8))
    fused, n = fuse_label_changes(mask, both, 2)  # 5x5 window: label 1 has 14, label 2 has 10, background 0 (+1)
    assert fused[3, 3, 0] == 1 and n == 1
    only_two = LabelChanges(np.array([[3, 3, 0]]), np.array([2], np.uint8), np.array([1], np.int8))
    fused, _ = fuse_label_changes(mask, only_two, 2)  # candidates 0 (1 voxel) and 2: label 1 is not a candidate
    assert fused[3, 3, 0] == 2


def test_fusion_counts_the_changed_binary_masks_not_the_original_ones():
    # Two neighbouring voxels both leave label 1: the window support of label 1 drops for both.
    mask = np.zeros((5, 5, 1), np.uint8, order="F")
    mask[:, :, 0] = [[2, 2, 2, 1, 1], [2, 2, 1, 1, 1], [2, 2, 1, 1, 1], [2, 2, 2, 1, 1], [2, 2, 2, 2, 1]]
    gone = LabelChanges(np.array([[1, 2, 0], [2, 2, 0]]), np.array([1, 1], np.uint8), np.array([-1, -1], np.int8))
    fused, n = fuse_label_changes(mask, gone, 1)
    # (1,2): window 2,2,1 / 2,[.],1 / 2,.,1 -> label 2: 4, label 1: 3 (original 1s at (1,2),(2,2) removed)
    assert fused[1, 2, 0] == 2 and fused[2, 2, 0] == 2 and n == 2


def test_fusion_window_is_cut_at_the_image_edge():
    mask = np.zeros((4, 4, 1), np.uint8, order="F")
    mask[0, 1:, 0] = 2
    mask[1:, 0, 0] = 1
    mask[0, 0, 0] = 3
    gone = LabelChanges(np.array([[0, 0, 0]]), np.array([3], np.uint8), np.array([-1], np.int8))
    fused, _ = fuse_label_changes(mask, gone, 1)  # inside the image: 2 at (0,1), 1 at (1,0), 0 at (1,1): a tie
    assert fused[0, 0, 0] == 0  # ties go to the lowest label
    mask[1, 1, 0] = 1
    fused, _ = fuse_label_changes(mask, gone, 1)  # label 1 now has 2; cells outside the image count for nobody
    assert fused[0, 0, 0] == 1


# --- exactness against the literal reference --------------------------------------------------------------------------


def noisy_mask(rng, shape, n_labels, noise=0.03):
    mask = blob_stack_mask(shape, list(range(1, n_labels + 1)), radius_fraction=0.2, rng=rng, specks=40, holes=40)
    flip = rng.random(shape) < noise
    mask[flip] = rng.integers(0, n_labels + 1, int(flip.sum()))
    for _ in range(6):  # small blocks, some on the image edge
        i, j, k = (int(rng.integers(0, s)) for s in shape)
        mask[i : i + 3, j : j + 2, k] = rng.integers(0, n_labels + 1)
    return np.asfortranarray(mask)


@pytest.mark.parametrize("mode", ["close", "open"])
@pytest.mark.parametrize(("kernel", "half", "connectivity"), [((5, 5), 3, 8), ((2, 2), 3, 8), ((3, 4), 1, 4), ((1, 6), 0, 8)])
def test_fast_repair_equals_the_full_slice_reference_on_a_random_multilabel_mask(mode, kernel, half, connectivity):
    rng = np.random.default_rng(abs(hash((mode, kernel, half))) % 2**32)
    mask = noisy_mask(rng, (70, 58, 9), 5)
    affine = affine_for("PIL", (0.7, 1.1, 2.5), origin=(-30, 12, 90), oblique_deg=6.0)
    out = repaired(mask, affine, mode, kernel, 6.0, half, connectivity)
    assert (out != mask).sum() > 10  # the case is not trivial


@pytest.mark.parametrize("per_call_voxels", [0, 10**12])
def test_one_box_per_component_and_one_box_for_all_give_the_same_result(monkeypatch, per_call_voxels):
    # The choice between the two ways of evaluating the morphology is a cost estimate only.
    monkeypatch.setattr("utils.maskqc.slice_morphology._PER_CALL_VOXELS", per_call_voxels)
    rng = np.random.default_rng(21)
    mask = noisy_mask(rng, (64, 52, 7), 4)
    affine = affine_for("LPS", (0.6, 0.9, 2.0))
    for mode, kernel in (("close", (5, 5)), ("open", (2, 3))):
        repaired(mask, affine, mode, kernel, 5.0, 3)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("order", ["C", "F"])
def test_label_boxes_equal_find_objects_whatever_the_threads_and_memory_order(threads, order):
    from scipy import ndimage

    mask = np.asarray(noisy_mask(np.random.default_rng(2), (30, 26, 11), 6, noise=0.001), order=order)
    mask[:, :, 0] = 0
    expected = {i + 1: b for i, b in enumerate(ndimage.find_objects(mask)) if b is not None}
    assert label_boxes(mask, threads) == expected
    assert label_boxes(np.zeros((4, 5, 6), np.uint8, order=order), threads) == {}


def test_fast_repair_matches_the_reference_when_a_small_background_region_reaches_the_crop_side(caplog):
    # Label 1 fills the left of the slice; the background strip on its right is only 9 px wide, so it is a
    # "hole" below the threshold that extends outside the label's crop: the label is redone on full slices.
    mask = np.zeros((30, 30, 2), np.uint8, order="F")
    mask[:, :21, :] = 1
    mask[10, 10, 0] = 0
    with caplog.at_level(logging.DEBUG, logger="utils.maskqc.slice_morphology"):
        out = repaired(mask, affine_for("LPS", (0.1, 0.1, 1.0)), "close", (5, 5), 5.0, 3)
    assert "redone on full slices" in caplog.text
    assert out[10, 10, 0] == 1


def test_fast_repair_matches_the_reference_when_a_whole_slice_is_below_the_threshold():
    rng = np.random.default_rng(3)
    mask = noisy_mask(rng, (12, 10, 4), 3, noise=0.1)
    for mode in ("close", "open"):
        repaired(mask, affine_for("LPS", (1.0, 1.0, 1.0)), mode, (3, 3), 500.0, 2)


def test_fortran_and_c_ordered_masks_give_the_same_result():
    rng = np.random.default_rng(5)
    mask = noisy_mask(rng, (40, 36, 6), 4)
    affine = affine_for("LPS", (0.8, 0.8, 2.0))
    repair = SliceRepair("close", (5, 5), 4.0)
    f, _ = fuse_label_changes(mask, repair_changes(mask, affine, repair, threads=2), 3)
    c, _ = fuse_label_changes(np.ascontiguousarray(mask), repair_changes(np.ascontiguousarray(mask), affine, repair), 3)
    np.testing.assert_array_equal(f, c)
    assert label_boxes(mask) == label_boxes(np.ascontiguousarray(mask))


def test_slice_structure_never_connects_two_slices():
    from scipy import ndimage

    stack = np.ones((3, 3, 4), bool)
    assert ndimage.label(stack, structure=slice_structure(8))[1] == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(mode="dilate", kernel_size=(3, 3), region_area_thresh_mm2=1.0), "choose one of"),
        (dict(mode="close", kernel_size=(0, 3), region_area_thresh_mm2=1.0), "kernel_size"),
        (dict(mode="close", kernel_size=(3, 3), region_area_thresh_mm2=-1.0), "region_area_thresh"),
        (dict(mode="open", kernel_size=(3, 3), region_area_thresh_mm2=1.0, connectivity=6), "connectivity"),
    ],
)
def test_invalid_repair_parameters_are_rejected_with_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SliceRepair(**kwargs)


# --- small 3D regions -----------------------------------------------------------------------------------------------


def test_small_regions_report_physical_volume_centroids_and_boxes():
    mask = np.zeros((10, 12, 8), np.uint8, order="F")
    mask[1:9, 1:9, 1:7] = 1  # 384 voxels: large
    mask[8, 10, 3] = 1  # 1 voxel, touches nothing
    mask[3:5, 10:12, 5:7] = 2  # 8 voxels
    affine = affine_for("LPS", (0.5, 0.8, 2.5), origin=(10.0, 20.0, -30.0))  # 1 mm³ per voxel
    regions = small_regions(mask, affine, 10.0)
    assert [r["voxel_count"] for r in regions[1]] == [1]
    speck = regions[1][0]
    assert speck["volume_mm3"] == pytest.approx(1.0)
    assert (speck["centroid_i"], speck["centroid_j"], speck["centroid_k"]) == (8.0, 10.0, 3.0)
    # LPS: +i -> -x, +j -> -y, +k -> +z
    assert (speck["centroid_x_mm"], speck["centroid_y_mm"], speck["centroid_z_mm"]) == pytest.approx((6.0, 12.0, -22.5))
    cube = regions[2][0]
    assert cube["voxel_count"] == 8 and cube["volume_mm3"] == pytest.approx(8.0)
    assert (cube["centroid_i"], cube["centroid_j"], cube["centroid_k"]) == (3.5, 10.5, 5.5)
    assert [cube[f"bbox_{a}_{m}"] for a in "ijk" for m in ("min", "max")] == [3, 4, 10, 11, 5, 6]
    assert 2 not in small_regions(mask, affine, 8.0)  # strictly below


@pytest.mark.parametrize(("connectivity", "expected"), [(6, 3), (18, 2), (26, 1)])
def test_small_region_connectivity(connectivity, expected):
    mask = np.zeros((6, 6, 6), np.uint8)
    mask[1, 1, 1] = mask[2, 2, 1] = mask[3, 3, 2] = 1  # edge neighbours, then a corner neighbour
    regions = small_regions(mask, np.eye(4), 100.0, connectivity)[1]
    assert len(regions) == expected
    with pytest.raises(ValueError, match="choose one of"):
        structure_3d(8)
    with pytest.raises(ValueError, match="choose one of"):
        small_regions(mask, np.eye(4), 100.0, 8)


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_small_regions_in_one_pass_equal_full_volume_labelling_per_label(order, connectivity):
    rng = np.random.default_rng(11)
    mask = np.asarray(noisy_mask(rng, (40, 44, 20), 6, noise=0.01), order=order)
    affine = affine_for("RPI", (0.9, 0.9, 1.7), oblique_deg=12.0)
    regions = small_regions(mask, affine, 30.0, connectivity)
    fast = {lab: sorted(r["voxel_count"] for r in records) for lab, records in regions.items()}
    assert fast == naive_small_region_count(mask, affine, 30.0, connectivity)
    for lab, records in regions.items():  # every voxel inside each region's box and of its label
        for r in records:
            box = mask[r["bbox_i_min"] : r["bbox_i_max"] + 1, r["bbox_j_min"] : r["bbox_j_max"] + 1, r["bbox_k_min"] : r["bbox_k_max"] + 1]
            assert np.count_nonzero(box == lab) >= r["voxel_count"]
    assert sum(map(len, fast.values())) > 20


# --- thresholding ---------------------------------------------------------------------------------------------------


def test_threshold_mask_removes_foreground_outside_the_range_only():
    mask = np.array([[[1, 1, 2, 0, 2, 1]]], np.uint8)
    vol = np.array([[[-141.0, -140.0, 1000.0, 5000.0, 1000.5, np.nan]]], np.float32)
    out, n = threshold_mask(mask, vol, -140.0, 1000.0)
    assert out.ravel().tolist() == [0, 1, 2, 0, 0, 0] and n == 3
    with pytest.raises(ValueError, match="LO <= HI"):
        threshold_mask(mask, vol, 5.0, 1.0)


@pytest.mark.parametrize("order", ["F", "C"])
def test_threshold_slab_by_slab_equals_the_whole_volume_rule(order, monkeypatch):
    import utils.maskqc.steps

    monkeypatch.setattr(utils.maskqc.steps, "_SLAB_VOXELS", 37)  # many slabs, some not a whole number of planes
    rng = np.random.default_rng(3)
    mask = np.asarray(blob_stack_mask((30, 26, 17), [1, 2, 5], rng=rng, specks=20), order=order)
    vol = np.asarray(rng.normal(300.0, 600.0, mask.shape).astype(np.float32), order=order)
    vol[tuple(np.argwhere(mask > 0)[::50].T)] = np.nan
    expected_drop = (mask > 0) & ~((vol >= -140.0) & (vol <= 1000.0))
    out, where = utils.maskqc.steps._threshold(mask, vol, -140.0, 1000.0, None)
    np.testing.assert_array_equal(out, np.where(expected_drop, 0, mask))
    assert out.flags.f_contiguous == (order == "F")
    assert sorted(map(tuple, where.tolist())) == sorted(map(tuple, np.argwhere(expected_drop).tolist()))
    assert expected_drop.sum() > 100
