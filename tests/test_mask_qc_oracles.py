"""Mask-QC library against oracles that share no code with it: hand-computed cases, neighbourhoods written out,
and thresholds tested just inside and just outside with anisotropic, non-1-mm voxels.

``utils/maskqc/reference.py`` (the literal full-slice reference the fast repair is compared with) must
itself import nothing from the toolkit; the first test keeps it so.
"""

from __future__ import annotations

import ast
import logging

import numpy as np
import pytest

from tests.conftest import REPO
from utils.labels.connected_regions import (
    component_sizes,
    label_components,
    pixel_area_mm2,
    slice_structure,
    small_regions,
    structure_2d,
    structure_3d,
)
from utils.maskqc.label_fusion import fuse_label_changes, resolve_votes
from utils.maskqc.reference import naive_repair_mask, naive_small_region_count, neighbourhood
from utils.maskqc.slice_morphology import LabelChanges, SliceRepair, repair_changes
from utils.archive.synthetic import affine_for

PLUS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)


def test_the_reference_imports_nothing_from_the_code_it_checks():
    tree = ast.parse((REPO / "utils" / "maskqc" / "reference.py").read_text(encoding="utf-8"))
    type_checking = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
                     for n in ast.walk(node)}  # fmt: skip
    imported = set()
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "typing", "numpy", "scipy"}, imported


def test_neighbourhoods_are_the_textbook_ones():
    assert (structure_2d(4) == PLUS).all() and (neighbourhood(2, 4) == PLUS).all()
    assert structure_2d(8).all() and structure_2d(8).shape == (3, 3) and neighbourhood(2, 8).all()
    assert structure_2d().all()  # default 8
    for connectivity, count in ((6, 7), (18, 19), (26, 27)):
        for s in (structure_3d(connectivity), neighbourhood(3, connectivity)):
            assert s.shape == (3, 3, 3) and s.sum() == count and s[1, 1, 1]
    assert structure_3d().sum() == 27  # default 26
    assert (structure_3d(6)[1, 1] == [1, 1, 1]).all() and not structure_3d(18)[0, 0, 0] and structure_3d(18)[0, 0, 1]
    s = slice_structure(4)
    assert s.dtype == bool and (s[:, :, 1] == PLUS).all() and not s[:, :, 0].any() and not s[:, :, 2].any()
    with pytest.raises(ValueError, match=r"in-slice connectivity 6 not supported; choose one of \(4, 8\)"):
        structure_2d(6)
    with pytest.raises(ValueError, match=r"3D connectivity 8 not supported; choose one of \(6, 18, 26\)"):
        structure_3d(8)


def test_pixel_area_is_the_parallelogram_of_the_first_two_voxel_axes():
    # Sheared in-plane axes: (0.6, 0, 0) and (0.3, 0.9, 0) span 0.6 * 0.9 = 0.54 mm² (the third axis plays no part).
    affine = np.array([[0.6, 0.3, 0.0, 5.0], [0.0, 0.9, 0.0, -3.0], [0.0, 0.0, 7.0, 2.0], [0.0, 0.0, 0.0, 1.0]])
    assert pixel_area_mm2(affine) == pytest.approx(0.54, rel=1e-12)
    assert pixel_area_mm2(affine_for("PIR", (0.5, 1.5, 3.0), oblique_deg=23.0)) == pytest.approx(0.75, rel=1e-9)
    single = affine.astype(np.float32)  # computed in float64 from the stored float32 values
    exact = float(np.float32(0.6)) * float(np.float32(0.9))
    assert pixel_area_mm2(single) == pytest.approx(exact, rel=1e-14)
    flat = affine.copy()
    flat[:3, 1] = 2 * flat[:3, 0]
    with pytest.raises(ValueError, match="degenerate in-plane grid: pixel area 0.0 mm²"):
        pixel_area_mm2(flat)


def test_components_fit_uint16_and_sizes_count_every_chunk():
    binary = np.zeros((5, 6, 7), bool)
    binary[0, 0, 0] = binary[4, 5, 6] = True
    binary[1:3, 1:4, 2:5] = True
    comps, n = label_components(binary, structure_3d(6))
    assert comps.dtype == np.uint16 and n == 3
    expected = np.bincount(comps.ravel(), minlength=n + 1)
    for sizes in (component_sizes(comps, n, chunk=7), component_sizes(comps, n)):
        assert sizes.dtype == np.int64
        np.testing.assert_array_equal(sizes, expected)
    assert expected.tolist() == [binary.size - 20, 1, 18, 1]


def test_more_components_than_uint16_holds_keep_the_neighbourhood():
    many = np.zeros((2, 516, 512), bool)
    many[0, ::2, ::2] = True  # 258 x 256 = 66048 voxels, none touching another
    many[1, 1, 1] = True  # diagonal (corner) neighbour of 4 of them
    comps, n = label_components(many, structure_3d(26))
    assert n == 66048 - 4 + 1 and comps.dtype.itemsize >= 4
    assert comps[0, 0, 0] == comps[1, 1, 1] == comps[0, 2, 2] != comps[0, 4, 4]
    assert label_components(many, structure_3d(6))[1] == 66049


# --- small 3D regions: volume threshold in mm³ ------------------------------------------------------------------------


def region_mask() -> np.ndarray:
    mask = np.zeros((9, 8, 7), np.uint8, order="F")
    mask[1:3, 1:4, 2] = 4  # 6 voxels
    mask[6, 6, 5] = 4  # 1 voxel
    mask[4:8, 0:3, 0:2] = 9  # 24 voxels
    return mask


#: Just below / just above a limit: a relative step far above rounding (~1e-16) and far below any real change.
BELOW, ABOVE = 1 - 1e-9, 1 + 1e-9


@pytest.mark.parametrize(
    ("thresh", "expected"),
    [(3.0 * BELOW, {4: [1]}), (3.0 * ABOVE, {4: [1, 6]}), (12.0 * BELOW, {4: [1, 6]}), (12.0 * ABOVE, {4: [1, 6], 9: [24]})],
)
def test_small_region_volume_threshold_is_strict_and_in_mm3(thresh, expected):
    # 0.5 x 0.25 x 4.0 mm voxels (0.5 mm³): a 6-voxel region is 3.0 mm³, 24 voxels 12.0 mm³. A voxel count
    # compared with mm³, or a volume from two spacings only, would move both boundaries by a factor >= 2.
    affine = affine_for("ASL", (0.5, 0.25, 4.0), origin=(7.0, -2.0, 30.0))
    found = small_regions(region_mask(), affine, float(thresh))
    assert {lab: sorted(r["voxel_count"] for r in recs) for lab, recs in found.items()} == expected
    assert naive_small_region_count(region_mask(), affine, float(thresh)) == expected
    for recs in found.values():
        for r in recs:
            assert r["volume_mm3"] == pytest.approx(r["voxel_count"] * 0.5, rel=1e-12)


def test_small_region_records_are_hand_computed():
    affine = np.array([[0.0, 0.0, 2.0, 10.0], [0.5, 0.0, 0.0, -4.0], [0.0, -0.25, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
    (six, one) = sorted(small_regions(region_mask(), affine, 5.0)[4], key=lambda r: r["voxel_count"], reverse=True)
    assert (six["centroid_i"], six["centroid_j"], six["centroid_k"]) == (1.5, 2.0, 2.0)
    assert (six["centroid_x_mm"], six["centroid_y_mm"], six["centroid_z_mm"]) == (14.0, -3.25, 0.5)
    # a float32 affine (as a header stores it) is used in float64: world coordinates exact to ~1e-15
    single = affine.copy()
    single[:3, 3] = [10.1, -4.3, 1.7]
    single = single.astype(np.float32)
    (six32, _) = sorted(small_regions(region_mask(), single, 5.0)[4], key=lambda r: r["voxel_count"], reverse=True)
    origin = [float(np.float32(v)) for v in (10.1, -4.3, 1.7)]
    assert (six32["centroid_x_mm"], six32["centroid_y_mm"], six32["centroid_z_mm"]) == pytest.approx(
        (origin[0] + 4.0, origin[1] + 0.75, origin[2] - 0.5), rel=1e-15, abs=1e-15)
    assert [six[f"bbox_{a}_{m}"] for a in "ijk" for m in ("min", "max")] == [1, 2, 1, 3, 2, 2]
    assert (one["voxel_count"], one["bbox_k_min"], one["bbox_k_max"]) == (1, 5, 5)
    assert one["volume_mm3"] == pytest.approx(0.25, rel=1e-12) and six["volume_mm3"] == pytest.approx(1.5, rel=1e-12)
    assert small_regions(np.zeros((3, 3, 3), np.uint8), affine, 5.0) == {}


def test_small_regions_of_several_labels_are_sorted_by_label_then_position():
    mask = np.zeros((6, 6, 6), np.uint8)
    mask[5, 0, 4] = mask[0, 5, 1] = mask[2, 2, 1] = 3
    mask[1, 1, 0] = 2
    found = small_regions(mask, np.diag([0.9, 0.8, 1.3, 1.0]), 10.0, 6)
    assert list(found) == [2, 3]
    assert [(r["bbox_k_min"], r["bbox_j_min"], r["bbox_i_min"]) for r in found[3]] == [(1, 2, 2), (1, 5, 0), (4, 0, 5)]


# --- slice repair: area threshold in mm² -------------------------------------------------------------------------------


def holed_mask() -> np.ndarray:
    mask = np.zeros((16, 14, 3), np.uint8, order="F")
    mask[2:14, 2:12, :] = 1
    mask[6, 5:7, 1] = 0  # a 2-pixel hole
    return mask


@pytest.mark.parametrize(("thresh", "filled"), [(1.5 * BELOW, False), (1.5 * ABOVE, True)])
def test_close_area_threshold_is_strict_and_in_mm2(thresh, filled):
    # 0.5 x 1.5 mm pixels (0.75 mm²) on an oblique grid: the hole is 1.5 mm².
    affine = affine_for("LPI", (0.5, 1.5, 2.2), origin=(-3.0, 8.0, 1.0), oblique_deg=9.0)
    repair = SliceRepair("close", (3, 3), thresh)
    fused, n = fuse_label_changes(holed_mask(), repair_changes(holed_mask(), affine, repair), 1)
    assert (fused[6, 5:7, 1] == 1).all() == filled and n == (2 if filled else 0)
    np.testing.assert_array_equal(fused, naive_repair_mask(holed_mask(), affine, repair, 1, labels=[0, 1]))


@pytest.mark.parametrize(("thresh", "removed"), [(2.25 * BELOW, False), (2.25 * ABOVE, True)])
def test_open_area_threshold_is_strict_and_in_mm2(thresh, removed):
    mask = np.zeros((12, 12, 2), np.uint8, order="F")
    mask[1:7, 1:7, :] = 2
    mask[9, 8:11, 0] = 2  # a 3-pixel speck: 3 x 0.75 = 2.25 mm²
    affine = affine_for("RAS", (1.5, 0.5, 3.0))
    repair = SliceRepair("open", (2, 2), thresh)
    fused, _ = fuse_label_changes(mask, repair_changes(mask, affine, repair), 2)
    assert (fused[9, 8:11, 0] == 0).all() == removed and (fused[9, 8:11, 0] == 2).all() == (not removed)
    np.testing.assert_array_equal(fused, naive_repair_mask(mask, affine, repair, 2, labels=[0, 1, 2]))


def test_repair_parameters_are_checked_with_the_value_named():
    assert SliceRepair("close", (5, 5), 0).region_area_thresh_mm2 == 0.0
    assert SliceRepair("open", [2, 3], 1).kernel_size == (2, 3)
    for kernel in ((3,), (3, 3, 3), (0, 2)):
        with pytest.raises(ValueError, match=rf"kernel_size must be two integers >= 1, got {kernel!r}".replace("(", r"\(").replace(")", r"\)")):
            SliceRepair("close", kernel, 1.0)
    for thresh in (float("nan"), float("inf"), -0.1):
        with pytest.raises(ValueError, match=rf"region_area_thresh must be a finite area >= 0 mm², got {thresh}"):
            SliceRepair("close", (3, 3), thresh)
    with pytest.raises(ValueError, match=r"repair mode 'erode' not supported; choose one of \('close', 'open'\)"):
        SliceRepair("erode", (3, 3), 1.0)
    with pytest.raises(ValueError, match=r"in-slice connectivity 6 not supported"):
        SliceRepair("open", (3, 3), 1.0, 6)
    structure = SliceRepair("open", (2, 3), 1.0).structure
    assert structure.shape == (2, 3, 1) and structure.all()
    assert SliceRepair("close", (3, 7), 1.0).margin(0) == 15 and SliceRepair("close", (3, 7), 1.0).margin(4) == 8
    assert SliceRepair("open", (3, 7), 1.0).margin(0) == 1


# --- fusion: window size ------------------------------------------------------------------------------------------------


def window_case() -> tuple[np.ndarray, LabelChanges]:
    """A voxel leaving label 3, whose 3x3 window is mostly label 1 and whose 5x5 window is mostly label 2."""
    mask = np.full((7, 7, 1), 2, np.uint8, order="F")
    mask[2:5, 2:5, 0] = 1  # 3x3 of label 1 (8 voxels around the centre)
    mask[3, 3, 0] = 3
    return mask, LabelChanges(np.array([[3, 3, 0]]), np.array([3], np.uint8), np.array([-1], np.int8))


@pytest.mark.parametrize(("half", "winner"), [(0, 0), (1, 1), (2, 2)])
def test_fusion_window_half_edge_decides_the_unclaimed_voxel(half, winner):
    mask, gone = window_case()
    fused, n = fuse_label_changes(mask, gone, half)
    assert fused[3, 3, 0] == winner and n == 1
    # half 0: the window is the voxel itself, where no binary mask is left: every support is 0, the tie goes to 0


def test_fusion_refuses_a_negative_window_and_leaves_the_mask_untouched_without_changes():
    mask, gone = window_case()
    with pytest.raises(ValueError, match="filter_halfedge must be >= 0, got -1"):
        fuse_label_changes(mask, gone, -1)
    fused, n = fuse_label_changes(mask, LabelChanges.empty(), 3)
    assert n == 0 and fused is not mask and (fused == mask).all() and fused.flags.f_contiguous


def test_resolve_votes_hand_cases():
    cand = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 0], [1, 1, 0], [0, 1, 1], [1, 1, 1]], bool)
    sup = np.array([[0, 9, 9], [9, 9, 0], [2, 7, 7], [3, 3, 9], [9, 1, 2], [1, 1, 1]])
    # one-hot -> its column whatever the support; none -> largest support (tie -> lowest); several -> largest among them
    assert resolve_votes(cand, sup).tolist() == [0, 2, 1, 0, 2, 0]


def test_fusion_counts_the_relabelled_voxels_of_every_slice():
    mask, _ = window_case()
    mask = np.repeat(mask, 3, axis=2)  # the same case in slices 0, 1 and 2
    gone = LabelChanges(np.array([[3, 3, 2], [3, 3, 0]]), np.array([3, 3], np.uint8), np.array([-1, -1], np.int8))
    fused, n = fuse_label_changes(np.asfortranarray(mask), gone, 1)
    assert n == 2 and fused[3, 3, 0] == fused[3, 3, 2] == 1 and fused[3, 3, 1] == 3


# --- the crop: exact without falling back to full slices -----------------------------------------------------------------

FALLBACK = "redone on full slices"


def fallbacks(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "utils.maskqc.slice_morphology" and FALLBACK in r.getMessage()]


@pytest.mark.parametrize("order", ["F", "C"])
@pytest.mark.parametrize(("mode", "kernel"), [("close", (3, 3)), ("close", (4, 2)), ("open", (2, 3))])
def test_a_label_inside_a_large_slice_is_repaired_in_its_crop_without_falling_back(caplog, order, mode, kernel):
    # The background around the label is far larger than the threshold, although its part inside the
    # label's crop is not: the crop's ring must carry the weight of the image outside it (else every label
    # would be redone on full slices: same result, far slower).
    mask = np.zeros((70, 64, 3), np.uint8)
    mask[30:37, 20:26, :] = 1
    mask[33, 22, 1] = 0  # a hole
    mask[31, 30, 1] = 1  # a speck next to the label
    mask[50:53, 40:44, 0] = 2
    mask = np.asarray(mask, order=order)
    affine = affine_for("RAS", (1.0, 1.0, 3.0))
    repair = SliceRepair(mode, kernel, 300.0)  # crop backgrounds hold < 300 px, the slice 4480 px
    with caplog.at_level(logging.DEBUG, logger="utils.maskqc.slice_morphology"):
        changes = repair_changes(mask, affine, repair)
    assert fallbacks(caplog) == []
    fused, _ = fuse_label_changes(mask, changes, 1)
    np.testing.assert_array_equal(fused, naive_repair_mask(mask, affine, repair, 1, labels=[0, 1, 2]))
    assert changes.coords.dtype == np.int64 and changes.labels.dtype == np.uint8 and changes.signs.dtype == np.int8


def test_a_whole_slice_below_the_threshold_is_repaired_on_full_slices_directly(caplog):
    mask = np.zeros((12, 9, 2), np.uint8, order="F")
    mask[3:8, 2:6, :] = 1
    mask[5, 3, 0] = 0
    affine = affine_for("LPS", (0.5, 2.0, 1.0))  # 1 mm² pixels: a whole slice is 108 mm²
    repair = SliceRepair("close", (3, 3), 120.0)
    with caplog.at_level(logging.DEBUG, logger="utils.maskqc.slice_morphology"):
        fused, _ = fuse_label_changes(mask, repair_changes(mask, affine, repair), 1)
    assert fallbacks(caplog) == []
    np.testing.assert_array_equal(fused, naive_repair_mask(mask, affine, repair, 1, labels=[0, 1]))


def test_the_fallback_to_full_slices_is_exact_on_a_non_square_image_and_says_so(caplog):
    # Label 1 fills the top of a 40 x 25 slice; the background strip below it is thin, so it is a small
    # "hole" that reaches the side of the label's crop: that label is redone on full slices, where the
    # hole at row 30 (beyond the slice's 25 columns) is filled.
    mask = np.zeros((40, 25, 2), np.uint8, order="F")
    mask[:33, :, :] = 1
    mask[30, 12, 0] = 0
    affine = affine_for("LPS", (0.1, 0.1, 1.0))
    repair = SliceRepair("close", (5, 5), 3.0)  # 0.01 mm² pixels: the 7 x 25 strip is 1.75 mm²
    with caplog.at_level(logging.DEBUG, logger="utils.maskqc.slice_morphology"):
        fused, _ = fuse_label_changes(mask, repair_changes(mask, affine, repair), 3)
    assert fallbacks(caplog) == ["label 1: a small component reaches the crop side; redone on full slices"]
    np.testing.assert_array_equal(fused, naive_repair_mask(mask, affine, repair, 3, labels=[0, 1]))
    assert fused[30, 12, 0] == 1


@pytest.mark.parametrize("order", ["F", "C"])
@pytest.mark.parametrize("box", [(slice(5, 11), slice(5, 9)), (slice(3, 9), slice(3, 7)), (slice(7, 13), slice(7, 11)),
                                 (slice(5, 11), slice(0, 4)), (slice(0, 6), slice(5, 9))])
@pytest.mark.parametrize(("factor", "small"), [(BELOW, False), (ABOVE, True)])
def test_the_crop_ring_counts_the_background_outside_the_crop_exactly(caplog, order, box, factor, small):
    # A 16 x 14 slice (1 mm² pixels) with a 6 x 4 label: the background around it is one component of
    # 224 - 24 = 200 mm², most of it outside the label's crop (margin 2 for a 1 x 1 kernel). Its area, told
    # from the crop and the weights of its ring, must be exactly 200: just above the threshold it is not
    # small (no fallback), just below it is small and reaches the crop side (the label is redone on full
    # slices). The boxes put the crop's sides 1, 3 or 5 pixels from the image edges, or on one edge.
    mask = np.zeros((16, 14, 2), np.uint8)
    mask[box[0], box[1], :] = 1
    mask = np.asarray(mask, order=order)
    affine = affine_for("RAS", (1.0, 1.0, 2.0))
    repair = SliceRepair("close", (1, 1), 200.0 * factor)
    with caplog.at_level(logging.DEBUG, logger="utils.maskqc.slice_morphology"):
        changes = repair_changes(mask, affine, repair)
    assert len(fallbacks(caplog)) == (1 if small else 0)
    fused, _ = fuse_label_changes(mask, changes, 1)
    np.testing.assert_array_equal(fused, naive_repair_mask(mask, affine, repair, 1, labels=[0, 1]))


@pytest.mark.parametrize(("factor", "whole"), [(ABOVE, True), (BELOW, False)])
def test_a_whole_slice_is_small_by_its_area_in_mm2(caplog, factor, whole):
    # 12 x 9 pixels of 0.5 mm²: 54 mm² per slice. Just above that threshold the slices are handled whole
    # (no fallback); just below, through the crops, where the small background around the label reaches
    # the crop side (a fallback).
    mask = np.zeros((12, 9, 2), np.uint8, order="F")
    mask[4:8, 3:6, :] = 1
    affine = affine_for("LPS", (0.5, 1.0, 3.0))
    repair = SliceRepair("close", (1, 1), 54.0 * factor)
    with caplog.at_level(logging.DEBUG, logger="utils.maskqc.slice_morphology"):
        fused, _ = fuse_label_changes(mask, repair_changes(mask, affine, repair), 1)
    assert (fallbacks(caplog) == []) is whole
    np.testing.assert_array_equal(fused, naive_repair_mask(mask, affine, repair, 1, labels=[0, 1]))


def test_an_area_exactly_at_the_threshold_is_not_small():
    mask = holed_mask()
    affine = np.diag([0.5, 1.5, 2.0, 1.0])  # 0.75 mm² pixels, exactly: the 2-pixel hole is exactly 1.5 mm²
    assert pixel_area_mm2(affine) == 0.75
    assert len(repair_changes(mask, affine, SliceRepair("close", (3, 3), 1.5))) == 0
    assert len(repair_changes(mask, affine, SliceRepair("close", (3, 3), 1.5000001))) == 2


def test_empty_changes_and_parameters_have_the_documented_types():
    empty = LabelChanges.empty()
    assert (empty.coords.shape, empty.coords.dtype, empty.labels.dtype, empty.signs.dtype) == ((0, 3), np.int64, np.uint8, np.int8)
    assert len(LabelChanges.concat([])) == 0 and LabelChanges.concat([]).labels.dtype == np.uint8
    repair = SliceRepair("close", (np.int64(3), 4.0), np.float32(2.5))
    assert type(repair.region_area_thresh_mm2) is float and repair.region_area_thresh_mm2 == 2.5
    assert type(SliceRepair("open", (2, 2), 3).region_area_thresh_mm2) is float
    assert repair.kernel_size == (3, 4) and all(type(k) is int for k in repair.kernel_size)
    with pytest.raises(ValueError, match=r"^a 3D mask was expected, got shape \(4, 5\)$"):
        repair_changes(np.zeros((4, 5), np.uint8), np.eye(4), repair)
