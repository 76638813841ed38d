"""Grid comparison, mask alignment and orientation columns against brute-force oracles written here.

The displacement between two grids is checked against the distance of every voxel centre (np.indices),
nearest-neighbour resampling against a per-voxel world-to-index lookup, spacings and obliquity against
float64 arithmetic on the stored float32 values.
"""

from __future__ import annotations

import json
import logging
import math

import nibabel as nib
import numpy as np
import pytest

from utils.geometry.alignment import AlignmentError, align_mask_to_volume, grid_displacement_mm, grids_match, qform_sform_mismatch_mm
from utils.geometry.orientation import _round_spacing, affine_rotation, format_affine, geometry_record, obliquity_deg, orientation_strings, parse_affine, spacing
from utils.archive.synthetic import affine_for, rotation_about

VOLUME = np.array([[0.0, 0.0, -2.5, 40.0], [0.5, 0.0, 0.0, -12.0], [0.0, -0.75, 0.0, 8.0], [0.0, 0.0, 0.0, 1.0]])


def brute_displacement(shape, a, b) -> float:
    """Largest distance between the world positions of every voxel centre under two affines."""
    idx = np.indices(shape).reshape(3, -1).astype(np.float64)
    homog = np.vstack([idx, np.ones(idx.shape[1])])
    return float(np.max(np.linalg.norm(((np.asarray(a) - np.asarray(b)) @ homog)[:3], axis=0)))


# --- displacement and grid equality ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 4, 3), (6, 1, 4), (1, 1, 1), (7, 3, 2)])
def test_displacement_is_the_largest_over_every_voxel_centre(shape):
    other = VOLUME.copy()
    other[:3, 3] += [0.3, -0.2, 0.1]
    other[:3, 0] -= [0.06, 0.05, 0.0]  # shrinks towards the far side: the largest move can be at index 0
    other[:3, 2] += [0.0, 0.02, 0.5]  # a change along an axis of one voxel moves nothing there
    assert grid_displacement_mm(shape, other, VOLUME) == pytest.approx(brute_displacement(shape, other, VOLUME), rel=1e-12)
    assert grid_displacement_mm((*shape, 2), other, VOLUME) == grid_displacement_mm(shape, other, VOLUME)  # a 4th axis is ignored


def test_a_single_slice_grid_ignores_the_slice_axis():
    moved = VOLUME.copy()
    moved[:3, 2] *= 1.3  # thicker slices: every centre of a 1-slice grid stays where it is
    assert grid_displacement_mm((5, 4, 1), moved, VOLUME) == 0.0
    assert align_mask_to_volume(np.ones((5, 4, 1), np.uint8), moved, (5, 4, 1), VOLUME).method == "identical"


def test_grids_of_different_shapes_never_match():
    assert grids_match((5, 4, 3), VOLUME, (5, 4, 3), VOLUME)
    assert not grids_match((5, 4, 3), VOLUME, (5, 4, 2), VOLUME)
    assert not grids_match((4, 5, 3), VOLUME, (5, 4, 3), VOLUME)


def test_the_tolerance_is_inclusive():
    # 0.5 mm is the smallest spacing: tolerance = tol_voxel * 0.5 exactly, equal to the displacement.
    moved = VOLUME.copy()
    moved[:3, 3] += [0.0, 0.0, 0.00390625]  # 2**-8 mm
    disp = grid_displacement_mm((5, 4, 3), moved, VOLUME)
    assert disp == 0.00390625
    assert grids_match((5, 4, 3), moved, (5, 4, 3), VOLUME, tol_voxel=disp / 0.5)
    aligned = align_mask_to_volume(np.ones((5, 4, 3), np.uint8), moved, (5, 4, 3), VOLUME, tol_voxel=disp / 0.5)
    assert (aligned.method, aligned.displacement_mm) == ("affine_copied", disp)


def test_identical_grids_hand_back_the_mask_itself():
    mask = np.arange(60, dtype=np.int16).reshape(5, 4, 3)
    aligned = align_mask_to_volume(mask, VOLUME, (5, 4, 3), VOLUME)
    assert aligned.data is mask and (aligned.method, aligned.displacement_mm, aligned.axis_transform) == ("identical", 0.0, "")


# --- reorientation --------------------------------------------------------------------------------------------------


def stored_as(mask, affine, perm, flips):
    """The same world grid stored with axes permuted (``perm``) and flipped: array and affine."""
    data = np.transpose(mask, perm)
    aff = np.asarray(affine, dtype=np.float64)[:, [*perm, 3]].copy()
    for ax, flip in enumerate(flips):
        if flip:
            data = np.flip(data, ax)
            aff[:3, 3] += aff[:3, ax] * (data.shape[ax] - 1)
            aff[:3, ax] *= -1
    return np.ascontiguousarray(data), aff


@pytest.mark.parametrize(("perm", "flips"), [((1, 0, 2), (False, False, False)), ((2, 0, 1), (True, False, True)), ((0, 1, 2), (False, True, False))])
def test_a_mask_stored_with_other_axes_is_reoriented_exactly(perm, flips):
    mask = np.arange(60, dtype=np.uint8).reshape(5, 4, 3)
    data, aff = stored_as(mask, VOLUME, perm, flips)
    aligned = align_mask_to_volume(data, aff, (5, 4, 3), VOLUME)
    assert aligned.method == "reoriented" and aligned.displacement_mm == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_array_equal(aligned.data, mask)
    codes = "".join(nib.aff2axcodes(aff)), "".join(nib.aff2axcodes(VOLUME))
    assert aligned.axis_transform == f"mask {codes[0]} -> volume {codes[1]}"


def test_a_tiny_spacing_difference_is_not_a_flip():
    # The mask's first axis is 1e-7 longer than the volume's (within tolerance): the axis ratio is just below 1.
    mask = np.arange(60, dtype=np.uint8).reshape(5, 4, 3)
    data, aff = stored_as(mask, VOLUME, (1, 0, 2), (False, False, False))
    aff[:3, 1] *= 1 + 1e-7
    aligned = align_mask_to_volume(data, aff, (5, 4, 3), VOLUME)
    assert aligned.method == "reoriented"
    np.testing.assert_array_equal(aligned.data, mask)


def test_a_mask_of_another_shape_on_the_same_axes_is_refused_with_the_shapes():
    with pytest.raises(AlignmentError) as info:
        align_mask_to_volume(np.ones((5, 4, 2), np.uint8), VOLUME, (5, 4, 3), VOLUME, source="m.nii.gz")
    codes = "".join(nib.aff2axcodes(VOLUME))
    assert str(info.value) == (
        f"m.nii.gz: mask grid does not match the volume grid (mask shape (5, 4, 2) orientation {codes}, volume shape (5, 4, 3) "
        f"orientation {codes}, the shapes differ and no permutation or flip of the mask axes maps one grid onto the other); "
        "fix the file or allow nearest-neighbour resampling explicitly"
    )


def test_a_shifted_mask_is_refused_with_the_displacement_and_the_tolerance():
    moved = VOLUME.copy()
    moved[:3, 3] += [0.0, 0.3, 0.4]
    with pytest.raises(AlignmentError) as info:
        align_mask_to_volume(np.ones((5, 4, 3), np.uint8), moved, (5, 4, 3), VOLUME)
    assert str(info.value).startswith("mask: mask grid does not match the volume grid (mask shape (5, 4, 3) orientation ")
    assert "largest voxel-centre displacement 0.5 mm (tolerance 0.005 mm)); fix the file" in str(info.value)


# --- nearest-neighbour resampling ------------------------------------------------------------------------------------


def nearest_oracle(mask, mask_affine, shape, volume_affine):
    """Each volume voxel takes the label of the mask voxel whose extent holds its centre (background outside)."""
    out = np.zeros(shape, mask.dtype)
    to_mask = np.linalg.inv(mask_affine) @ volume_affine
    for idx in np.ndindex(*shape):
        i, j, k = np.rint((to_mask @ [*idx, 1.0])[:3] + 1e-9).astype(int)  # ties: scipy rounds halves up
        if 0 <= i < mask.shape[0] and 0 <= j < mask.shape[1] and 0 <= k < mask.shape[2]:
            out[idx] = mask[i, j, k]
    return out


def test_resampling_is_nearest_neighbour_onto_the_volume_grid_and_warns(caplog):
    mask = np.zeros((4, 5, 3), np.int16)
    mask[1:3, 1:4, :] = 7
    mask[0, 0, 0] = 300
    mask_affine = VOLUME.copy()
    mask_affine[:3, :3] = VOLUME[:3, :3] * 1.5  # coarser grid
    mask_affine[:3, 3] += [0.2, -0.1, 0.3]
    with caplog.at_level(logging.WARNING, logger="utils.geometry.alignment"):
        aligned = align_mask_to_volume(mask, mask_affine, (6, 7, 5), VOLUME, allow_resample=True, source="s.nii.gz")
    assert aligned.method == "resampled" and math.isnan(aligned.displacement_mm)
    assert aligned.data.dtype == np.int16 and aligned.data.shape == (6, 7, 5)
    np.testing.assert_array_equal(aligned.data, nearest_oracle(mask, mask_affine, (6, 7, 5), VOLUME))
    assert set(np.unique(aligned.data)) <= {0, 7, 300}
    [record] = caplog.records
    assert record.getMessage().startswith("s.nii.gz: resampling mask onto the volume grid with nearest neighbour (mask shape (4, 5, 3) orientation ")


# --- qform / sform ----------------------------------------------------------------------------------------------------


def test_qform_sform_disagreement_is_measured_only_when_both_are_set():
    img = nib.Nifti1Image(np.zeros((5, 4, 3), np.uint8), VOLUME)
    moved = VOLUME.copy()
    moved[:3, 3] += [0.0, 0.0, 0.25]
    img.set_sform(VOLUME, code=2)
    img.set_qform(moved, code=1)
    expected = brute_displacement((5, 4, 3), img.header.get_qform(), img.header.get_sform())
    assert qform_sform_mismatch_mm(img) == pytest.approx(expected, rel=1e-9) and expected == pytest.approx(0.25, rel=1e-5)
    for q, s in ((0, 2), (1, 0), (0, 0)):
        img.set_qform(moved, code=q)
        img.set_sform(VOLUME, code=s)
        assert qform_sform_mismatch_mm(img) is None


# --- orientation columns ----------------------------------------------------------------------------------------------


def test_geometry_columns_round_float32_spacings_to_six_digits():
    stored = affine_for("LPS", (0.8, 1.3, 2.1)).astype(np.float32).astype(np.float64)  # as a header stores it
    record = geometry_record((4, 5, 6, 2), stored)
    assert (record["szx"], record["szy"], record["szz"]) == (4, 5, 6)
    assert (record["spx"], record["spy"], record["spz"]) == (0.8, 1.3, 2.1)
    assert json.loads(record["transform"]) == stored.tolist()
    assert [_round_spacing(v) for v in (0.0, 0.79999998, 1234.5678912, math.inf)] == [0.0, 0.8, 1234.57, math.inf]
    assert math.isnan(_round_spacing(math.nan))


def test_spacing_and_obliquity_are_computed_in_float64_from_float32_affines():
    single = affine_for("LPS", (0.7, 0.9, 2.3), oblique_deg=0.004).astype(np.float32)
    double = single.astype(np.float64)
    assert spacing(single) == spacing(double)
    assert spacing(single)[0] == math.sqrt(sum(float(v) ** 2 for v in double[:3, 0]))
    assert obliquity_deg(single) == obliquity_deg(double)
    assert orientation_strings(single) == orientation_strings(double)


def test_an_axis_aligned_affine_is_not_oblique_even_with_a_zero_tolerance():
    assert orientation_strings(np.diag([-0.8, 1.2, 2.0, 1.0]), tol_deg=0.0) == ("RPI", "LAS")
    tilted = np.eye(4)
    tilted[:3, :3] = rotation_about(0, 0.001)
    assert orientation_strings(tilted, tol_deg=0.0) == ("Oblique(closest to LPI)", "Oblique(closest to RAS)")


def test_affine_text_round_trip_with_negative_zero_integers_and_refusals():
    affine = np.array([[-0.0, 1, 0, 3], [2, 0, 0, -4.5], [0, 0, 1.25, 0], [0, 0, 0, 1]])
    text = format_affine(affine)
    assert text == "[[0.0, 1.0, 0.0, 3.0], [2.0, 0.0, 0.0, -4.5], [0.0, 0.0, 1.25, 0.0], [0.0, 0.0, 0.0, 1.0]]"
    back = parse_affine(text)
    assert back.dtype == np.float64 and back.tolist() == [[0.0, 1.0, 0.0, 3.0], [2.0, 0.0, 0.0, -4.5], [0.0, 0.0, 1.25, 0.0], [0.0, 0.0, 0.0, 1.0]]
    assert parse_affine("[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]").dtype == np.float64
    with pytest.raises(ValueError, match=r"^transform 'not json' is not a JSON 4x4 matrix$"):
        parse_affine("not json")
    with pytest.raises(ValueError, match=r"^transform has shape \(2, 2\), \(4, 4\) expected$"):
        parse_affine("[[1, 0], [0, 1]]")


def test_affine_rotation_is_the_direction_cosines():
    affine = affine_for("ASR", (0.6, 1.4, 3.0), oblique_deg=12.0)
    rotation = affine_rotation(affine)
    assert rotation.shape == (3, 3)
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(rotation * [0.6, 1.4, 3.0], affine[:3, :3], rtol=1e-12)


def test_a_transposed_mask_with_a_row_too_many_is_refused_not_reoriented():
    mask = np.zeros((4, 6, 3), np.uint8)  # the volume is (5, 4, 3): transposed, the mask would be (6, 4, 3)
    aff = VOLUME[:, [1, 0, 2, 3]]
    with pytest.raises(AlignmentError, match="the shapes differ and no permutation or flip"):
        align_mask_to_volume(mask, aff, (5, 4, 3), VOLUME)


def test_the_tolerance_is_inclusive_for_a_reoriented_mask_too():
    mask = np.arange(60, dtype=np.uint8).reshape(5, 4, 3)
    data, aff = stored_as(mask, VOLUME, (1, 0, 2), (False, False, False))
    aff[:3, 3] += [0.0, 0.0, 0.00390625]  # 2**-8 mm, exactly representable
    disp = grid_displacement_mm((5, 4, 3), VOLUME + np.pad([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0.00390625]], ((0, 1), (0, 0))), VOLUME)
    assert disp == 0.00390625
    aligned = align_mask_to_volume(data, aff, (5, 4, 3), VOLUME, tol_voxel=disp / 0.5)
    assert (aligned.method, aligned.displacement_mm) == ("reoriented", disp)
    with pytest.raises(AlignmentError):
        align_mask_to_volume(data, aff, (5, 4, 3), VOLUME, tol_voxel=disp / 0.5 * (1 - 1e-9))
