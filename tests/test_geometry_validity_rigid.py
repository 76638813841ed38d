"""Headers that cannot be real (utils/files/nifti_validity.py) and the nearest rigid grid (utils/geometry/rigid.py),
at their limits and on hand-computed cases."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from utils.geometry.rigid import PERPENDICULAR_TOL, nearest_rigid_affine, resample_onto
from utils.files.nifti_validity import affine_problem, header_refusal


def header(shape=(5, 4, 3), zooms=None):
    h = nib.Nifti1Header()
    h.set_data_dtype(np.int16)
    h.set_data_shape(shape)
    h.set_zooms(zooms or tuple([0.8] * len(shape)))
    return h


def refusal(h):
    return header_refusal(h, h)


# --- header refusals ---------------------------------------------------------------------------------------------------


def test_one_to_seven_axes_of_at_least_one_voxel_are_accepted():
    assert refusal(header((5,))) is None
    assert refusal(header((5, 4, 1))) is None  # a single slice is an image
    assert refusal(header((2, 1, 1, 1, 1, 1, 3))) is None
    h = header()
    h["dim"][0] = 8
    assert refusal(h) == "dim[0] (number of axes) is 8; 1 to 7 expected"
    h = header()
    h["dim"][0] = 0
    assert refusal(h) == "dim[0] (number of axes) is 0; 1 to 7 expected"
    h = header()
    h["dim"][2] = 0
    assert refusal(h) == "image has a zero or negative length axis: shape (5, 0, 3); every axis needs at least one voxel"


def test_only_the_spatial_voxel_sizes_must_be_positive():
    h = header((5, 4, 3, 2), zooms=(0.8, 0.9, 2.5, 0.0))  # a 4th (time) step of 0 is no voxel size
    assert refusal(h) is None
    h = header((5, 4, 3), zooms=(0.8, 0.9, 2.5))
    h["pixdim"][3] = -2.5
    assert refusal(h) == "pixdim[1:4] (voxel size) is (0.8, 0.9, -2.5); positive finite sizes in mm expected"


def test_a_slope_counts_as_none_only_below_the_float64_epsilon():
    eps = np.finfo(np.float64).eps
    h = header()
    h["scl_slope"], h["scl_inter"] = eps, 5.0  # exactly eps: a real (tiny) slope, the intercept applies
    assert refusal(h) is None
    h["scl_slope"] = eps / 2
    assert refusal(h) == (
        f"scl_slope {eps / 2:g} with scl_inter 5: nibabel applies no scaling, ITK adds the intercept; "
        "a slope of 1 (or an intercept of 0) expected"
    )


def test_a_non_finite_matrix_is_named_with_its_three_rows():
    m = np.eye(4)
    m[1, 3] = np.nan
    assert affine_problem("sform", m) == f"sform holds non-finite values ({m[:3].tolist()}); a finite voxel-to-world matrix expected"
    assert affine_problem("sform", np.diag([0.7, 0.8, 2.0, 1.0])) is None
    assert affine_problem("sform", np.diag([0.7, 0.0, 2.0, 1.0])) == (
        "sform has a zero-length axis (column lengths (0.7, 0, 2) mm); every voxel axis must have a length"
    )


# --- the nearest rigid grid --------------------------------------------------------------------------------------------


def in_plane(cos: float) -> np.ndarray:
    """Slice axes of 0.5 and 0.8 mm whose angle has cosine ``cos``, a tilted third axis."""
    c0 = np.array([0.5, 0.0, 0.0])
    c1 = 0.8 * np.array([cos, np.sqrt(1 - cos**2), 0.0])
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2] = c0, c1, [0.0, 0.6, 2.4]
    m[:3, 3] = [10.0, -5.0, 3.0]
    return m


def test_perpendicular_slice_axes_are_kept_up_to_the_cosine_limit():
    kept = in_plane(0.8 * PERPENDICULAR_TOL)
    rigid = nearest_rigid_affine(kept)
    np.testing.assert_array_equal(rigid[:, :2], kept[:, :2])  # the slices stay where they are
    np.testing.assert_allclose(rigid[:3, 2], [0.0, 0.0, 2.4], atol=1e-5)  # their distance, perpendicular to them
    polar = nearest_rigid_affine(in_plane(1.2 * PERPENDICULAR_TOL))
    m = polar[:3, :3] / np.linalg.norm(polar[:3, :3], axis=0)
    np.testing.assert_allclose(m.T @ m, np.eye(3), atol=1e-12)  # beyond: the closest rotation, exactly orthogonal
    assert not np.array_equal(polar[:3, 1], in_plane(1.2 * PERPENDICULAR_TOL)[:3, 1])
    np.testing.assert_allclose(np.linalg.norm(polar[:3, :3], axis=0), [0.5, 0.8, np.linalg.norm([0.0, 0.6, 2.4])], rtol=1e-12)


def test_a_left_handed_tilted_grid_keeps_its_handedness_and_origin():
    # (c0 x c1) points away from c2: the normal is turned round before the slice distance is taken along it
    m = np.array([[-0.7, 0, 0, 4.0], [0, 0.9, 0.3, -2.0], [0, 0, 1.8, 7.0], [0, 0, 0, 1]], dtype=np.float32)
    rigid = nearest_rigid_affine(m)
    assert rigid.dtype == np.float64
    np.testing.assert_array_equal(rigid[:3, 3], m[:3, 3].astype(np.float64))
    np.testing.assert_allclose(rigid[:3, 2], [0.0, 0.0, 1.8], atol=1e-6)
    assert np.linalg.det(rigid[:3, :3]) < 0


def test_resampling_onto_a_shifted_grid_moves_values_and_fills_outside_with_cval():
    data = np.arange(24, dtype=np.int16).reshape(4, 3, 2)
    source = np.diag([0.5, 0.8, 2.0, 1.0])
    target = source.copy()
    target[:3, 3] = [0.5, 0.0, 0.0]  # one voxel along the first axis
    out = resample_onto(data, source, target, order=0, cval=-7, dtype=np.int16)
    assert out.dtype == np.int16 and out.shape == data.shape
    np.testing.assert_array_equal(out[:3], data[1:])
    assert (out[3] == -7).all()
    linear = resample_onto(data.astype(np.float32), source, target, order=1, cval=0.0, dtype=np.float32)
    assert linear.dtype == np.float32
