"""Routine 02's geometry decisions in words: the hint for a mask that lies on another reading of the grid,
and the warnings and refusals of :func:`utils.geometry.policy.resolve_file_geometry`.

Each expected message is written out in full here, from the situation the test builds (which header the
readers read differently, which reading the mask was drawn on), not copied from a run: a message that
names the wrong file, reader, tool or option is a wrong answer to the user.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from tests.geometry_cases import (
    BASE,
    OBLIQUE,
    SHAPE,
    SHEARED,
    header,
    mask_data,
    volume_data,
    write_header_file,
)
from utils.geometry.policy import (
    GeometryOptions,
    _apart,
    _itk_note,
    _message,
    explain_mismatch,
    resolve_file_geometry,
)
from utils.files.nifti_io import load_nifti

ADVICE = "decide which of the header's sform, qform and pixdim is right, fix the header and re-run"


def geometry(tmp_path, name, h, data=None, **options):
    path = write_header_file(tmp_path / f"{name}.nii", h, volume_data() if data is None else data)
    return resolve_file_geometry(load_nifti(path), path, GeometryOptions(**options))


def pixdim_header(sform_diag, *, with_qform=False):
    """sform with spacing ``sform_diag`` and pixdim 1, 1, 1: nibabel reads the sform, ITK pixdim as spacing (diag 1)."""
    h = header(None)
    if with_qform:
        h.set_qform(np.eye(4), code=1)  # the qform agrees with pixdim, not with the sform
    h.set_sform(np.diag([*sform_diag, 1.0]), code=1)
    return h


def consistent_mask(affine):
    """A mask header whose readings agree (as an ITK tool writes it on the grid it reads)."""
    return header(affine, dtype=np.uint8)


def test_a_mask_on_the_volume_grid_as_itk_reads_the_volume_is_explained(tmp_path):
    vol = geometry(tmp_path, "vol", pixdim_header((0.9, 1.1, 3.0)))
    mask = geometry(tmp_path, "mask", consistent_mask(vol.agreement.itk.affine), mask_data())
    assert explain_mismatch(mask_data(), mask, SHAPE, vol, tol_voxel=0.01) == (
        "it lies on the volume's grid as ITK reads the volume: the cause is the volume's header, which nibabel and ITK "
        f"read differently (PIXDIM_SFORM_MISMATCH); it was probably drawn in an ITK-based tool; {ADVICE}"
    )


def test_a_mask_whose_own_header_is_read_differently_is_explained_from_the_mask_side(tmp_path):
    vol = geometry(tmp_path, "vol", consistent_mask(np.eye(4)))
    mask = geometry(tmp_path, "mask", pixdim_header((2.0, 2.0, 2.0)), mask_data())
    assert explain_mismatch(mask_data(), mask, SHAPE, vol, tol_voxel=0.01) == (
        "as ITK reads the mask, it lies on the volume's grid: the cause is the mask's header, which nibabel and ITK "
        f"read differently (PIXDIM_SFORM_MISMATCH); it was probably drawn in an ITK-based tool; {ADVICE}"
    )


def test_both_headers_read_differently_name_both_causes_with_all_their_codes(tmp_path):
    vol = geometry(tmp_path, "vol", pixdim_header((0.9, 1.1, 3.0), with_qform=True))
    mask = geometry(tmp_path, "mask", pixdim_header((2.0, 2.0, 2.0)), mask_data())
    assert vol.agreement.reasons == ("PIXDIM_SFORM_MISMATCH", "QFORM_SFORM_MISMATCH")
    assert explain_mismatch(mask_data(), mask, SHAPE, vol, tol_voxel=0.01) == (
        "as ITK reads the mask, it lies on the volume's grid as ITK reads the volume: the cause is the volume's header, "
        "which nibabel and ITK read differently (PIXDIM_SFORM_MISMATCH, QFORM_SFORM_MISMATCH) and the mask's header, "
        f"which nibabel and ITK read differently (PIXDIM_SFORM_MISMATCH); it was probably drawn in an ITK-based tool; {ADVICE}"
    )


def test_a_mask_on_nibabels_guess_of_an_uncoded_volume_trusted_as_itk_suggests_the_other_option(tmp_path):
    vol = geometry(tmp_path, "vol", header(None), trust_uncoded_geometry="itk")
    mask = geometry(tmp_path, "mask", consistent_mask(vol.agreement.nibabel.affine), mask_data())
    assert explain_mismatch(mask_data(), mask, SHAPE, vol, tol_voxel=0.01) == (
        "it lies on the volume's grid as nibabel reads the volume: the cause is the volume's header, which nibabel and ITK "
        "read differently (NO_SPATIAL_CODES); it was probably drawn in a nibabel-based tool; pass --trust_uncoded_geometry nibabel"
    )


@pytest.mark.parametrize(("shift_voxel", "tol_voxel", "explained"), [(0.3, 0.31, True), (0.3, 0.29, False)])
def test_the_other_reading_is_held_to_the_callers_grid_tolerance(tmp_path, shift_voxel, tol_voxel, explained):
    vol = geometry(tmp_path, "vol", pixdim_header((0.9, 1.1, 3.0)))
    shifted = vol.agreement.itk.affine.copy()
    shifted[0, 3] += shift_voxel * 1.0  # ITK reads 1 mm voxels
    mask = geometry(tmp_path, "mask", consistent_mask(shifted), mask_data())
    hint = explain_mismatch(mask_data(), mask, SHAPE, vol, tol_voxel=tol_voxel)
    assert hint.startswith("it lies on the volume's grid as ITK reads the volume") if explained else hint == ""


def test_no_reading_that_fits_gives_no_hint(tmp_path):
    vol = geometry(tmp_path, "vol", pixdim_header((0.9, 1.1, 3.0)))
    other = (6, 6, 4)
    mask = geometry(tmp_path, "mask", header(vol.agreement.itk.affine, dtype=np.uint8, shape=other), np.zeros(other, np.uint8))
    assert explain_mismatch(np.zeros(other, np.uint8), mask, SHAPE, vol, tol_voxel=0.01) == ""


def test_a_volume_itk_cannot_read_is_compared_with_nibabels_reading_only(tmp_path):
    vol = geometry(tmp_path, "vol", header(SHEARED, qcode=0, scode=1), resample_sheared=True)
    assert vol.agreement.itk.affine is None
    mask = geometry(tmp_path, "mask", consistent_mask(BASE), mask_data())
    assert explain_mismatch(mask_data(), mask, SHAPE, vol, tol_voxel=0.01) == ""


# --- resolve_file_geometry's words -------------------------------------------------------------------------


def test_an_unknown_uncoded_choice_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"^trust_uncoded_geometry 'both'; one of \('itk', 'nibabel'\) or None expected$"):
        GeometryOptions(trust_uncoded_geometry="both")


def test_an_uncoded_file_in_metres_trusted_as_itk_is_scaled_once(tmp_path):
    h = header(None)
    h.set_xyzt_units("meter", "sec")
    geo = geometry(tmp_path, "metres", h, trust_uncoded_geometry="itk")
    np.testing.assert_allclose(geo.affine, np.diag([-1000.0, -1000.0, 1000.0, 1.0]))  # ITK: LPS, 1 m voxels, in mm
    assert geo.taken_from == "itk guess"


def test_a_qform_sform_warning_says_itk_reads_the_sform_when_no_pixdim_is_involved(tmp_path):
    h = header(BASE, qcode=1, scode=1)
    h.set_qform(OBLIQUE, code=1)
    h.set_sform(BASE, code=1)
    h.set_xyzt_units("meter", "sec")  # the readings differ by the unit, not by pixdim
    geo = geometry(tmp_path, "units", h)
    assert geo.agreement.itk.matrix == "sform" and "PIXDIM_SFORM_MISMATCH" not in geo.agreement.reasons
    qs = [w for w in geo.warnings if "qform and sform disagree" in w]
    assert len(qs) == 1 and " (ITK reads the archive file from its sform: voxels up to " in qs[0]


def test_message_helpers_fall_back_to_the_code_and_name_an_unreadable_file():
    assert _message(SimpleNamespace(messages=("QFAC_INVALID: pixdim[0] 0",)), "READERS_DISAGREE") == "READERS_DISAGREE"
    assert _message(SimpleNamespace(messages=("QFAC_INVALID: pixdim[0] 0",)), "QFAC_INVALID") == "QFAC_INVALID: pixdim[0] 0"
    unreadable = SimpleNamespace(agree=False, itk=SimpleNamespace(affine=None), reasons=(), displacement_mm=0.0)
    assert _apart(unreadable) == "ITK cannot read the file"
    assert _itk_note(unreadable) == "; ITK cannot read the archive file"
    sform = SimpleNamespace(agree=False, itk=SimpleNamespace(affine=np.eye(4), matrix="sform"), reasons=("QFORM_SFORM_MISMATCH",), displacement_mm=2.0)
    assert _itk_note(sform) == " (ITK reads the archive file from its sform: voxels up to 2 mm elsewhere)"
