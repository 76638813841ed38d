"""Geometry limits just inside and just outside, on anisotropic non-1-mm grids, in the library and the routines.

* grid tolerance: a mask grid may move by at most ``--grid_tol`` (default 0.01) of the volume's smallest
  voxel spacing (here 0.8 mm of 0.8 x 0.8 x 2.5: 0.008 mm; using the largest spacing would allow 0.025 mm);
* obliquity: an affine more than 0.01 degree away from the patient axes is ``Oblique(closest to …)``;
* qform/sform: a disagreement above 0.001 mm is recorded as a warning.

Displacements are computed here from the affines as stored (float32 headers), not with the library.
"""

from __future__ import annotations

import numpy as np
import pytest
from openpyxl import load_workbook

from tests.mini_archives import AFFINE, LAYOUTS, base_arrays, make_mini_archive
from utils.geometry.alignment import align_mask_to_volume, grids_match
from utils.geometry.orientation import orientation_strings
from utils.files.sample_info import read_info
from utils.archive.synthetic import rotation_about, write_raw_nifti

NME = LAYOUTS["nme"]
UNIT = np.array([0.48, 0.6, -0.64])  # a unit vector: a translation of d mm moves every voxel centre by d mm


def translated(affine: np.ndarray, mm: float) -> np.ndarray:
    out = np.array(affine, dtype=np.float64)
    out[:3, 3] += UNIT * mm
    return out


def rotated(affine: np.ndarray, degrees: float, axis: int = 1) -> np.ndarray:
    out = np.array(affine, dtype=np.float64)
    out[:3, :3] = rotation_about(axis, degrees) @ out[:3, :3]
    return out


# --- library -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("factor", "same"), [(0.99, True), (1.01, False)])
def test_grid_tolerance_is_a_fraction_of_the_smallest_spacing(factor, same):
    volume = np.array([[0.0, 0.0, 2.5, -7.0], [0.0, -0.6, 0.0, 3.0], [1.9, 0.0, 0.0, 11.0], [0.0, 0.0, 0.0, 1.0]])
    tol_mm = 0.01 * 0.6
    mask_affine = translated(volume, tol_mm * factor)
    assert grids_match((5, 6, 4), mask_affine, (5, 6, 4), volume) is same
    assert grids_match((5, 6, 4), translated(volume, 2 * tol_mm * factor), (5, 6, 4), volume, tol_voxel=0.02) is same
    mask = np.ones((5, 6, 4), np.uint8)
    if same:
        assert align_mask_to_volume(mask, mask_affine, (5, 6, 4), volume).method == "affine_copied"
    else:
        with pytest.raises(ValueError, match="mask grid does not match the volume grid"):
            align_mask_to_volume(mask, mask_affine, (5, 6, 4), volume)


@pytest.mark.parametrize(("factor", "same"), [(0.99, True), (1.01, False)])
def test_grid_tolerance_for_a_rotation_is_reached_at_the_far_corner(factor, same):
    # A rotation about the first voxel centre moves the far corner most: |corner| x angle (small angle).
    volume = np.diag([0.7, 0.9, 2.2, 1.0])
    shape = (20, 10, 8)
    corner = np.array([19 * 0.7, 9 * 0.9, 7 * 2.2])
    tol_mm = 0.01 * 0.7
    rot = rotation_about(2, 1.0)  # find the angle that moves the far corner by factor x tol
    step = np.linalg.norm((rot - np.eye(3)) @ corner)
    degrees = factor * tol_mm / step
    mask_affine = np.array(volume)
    mask_affine[:3, :3] = rotation_about(2, degrees) @ volume[:3, :3]
    corners = [np.array(c) * (np.array(shape) - 1) for c in np.ndindex(2, 2, 2)]
    moved = max(float(np.linalg.norm((mask_affine - volume)[:3, :3] @ c)) for c in corners)
    assert moved == pytest.approx(factor * tol_mm, rel=1e-4)  # (the chord of a small angle: linear to 1e-4)
    assert grids_match(shape, mask_affine, shape, volume) is same


@pytest.mark.parametrize(("degrees", "oblique"), [(0.0099, False), (0.0101, True)])
def test_obliquity_limit_is_a_hundredth_of_a_degree(degrees, oblique):
    affine = rotated(np.diag([-0.8, -1.3, 2.5, 1.0]), degrees, axis=0)
    frm, to = orientation_strings(affine)
    assert (frm, to) == (("Oblique(closest to RAI)", "Oblique(closest to LPS)") if oblique else ("RAI", "LPS"))


# --- routines --------------------------------------------------------------------------------------------------------


def rewrite(path, data, affine, *, qform=None):
    """Write ``data`` with sform ``affine`` and qform ``qform`` (default: the same)."""
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    img.set_data_dtype(data.dtype)
    img.set_sform(affine, code=2)
    img.set_qform(affine if qform is None else qform, code=1)
    nib.save(img, path)
    return nib.load(path)


@pytest.mark.parametrize(("factor", "grid_tol", "written"), [(0.9, None, True), (1.1, None, False), (1.1, "0.02", True)])
def test_routine_02_grid_tolerance(tmp_path, factor, grid_tol, written):
    archive = make_mini_archive(tmp_path, NME)
    bad = NME.names[1]
    _, mask = base_arrays(2)
    stored = rewrite(archive / NME.mask_rel(bad), mask, translated(AFFINE, 0.008 * factor))
    volume_affine = rewrite(archive / NME.volume_rel(bad), base_arrays(2)[0], AFFINE).affine
    assert np.linalg.norm(stored.affine[:3, 3] - volume_affine[:3, 3]) == pytest.approx(0.008 * factor, rel=1e-3)
    assert NME.run_01(tmp_path) == 0
    code = NME.run_02(tmp_path, *(("--grid_tol", grid_tol) if grid_tol else ()))
    sample = NME.sample_dir(tmp_path, bad)
    assert code == (0 if written else 1)
    assert (sample / f"{NME.sample_id(bad)}_info.yaml").is_file() == written
    if written:
        info = read_info(sample / f"{NME.sample_id(bad)}_info.yaml")
        assert info["source"]["alignment"]["method"] == "affine_copied"
        assert info["source"]["alignment"]["displacement_mm"] == pytest.approx(0.008 * factor, rel=1e-3)


@pytest.mark.parametrize(("mm", "warned"), [(0.0009, False), (0.0011, True)])
def test_routine_02_records_a_qform_sform_disagreement_above_a_micrometre(tmp_path, mm, warned):
    archive = make_mini_archive(tmp_path, NME)
    bad = NME.names[1]
    volume, _ = base_arrays(2)
    stored = rewrite(archive / NME.volume_rel(bad), volume, AFFINE, qform=translated(AFFINE, mm))
    gap = np.linalg.norm(stored.header.get_qform()[:3, 3] - stored.header.get_sform()[:3, 3])
    assert gap == pytest.approx(mm, rel=0.02)
    assert NME.run_01(tmp_path) == 0 and NME.run_02(tmp_path) == 0
    sample = NME.sample_dir(tmp_path, bad)
    warnings = read_info(sample / f"{NME.sample_id(bad)}_info.yaml")["warnings"]
    assert any("qform and sform disagree" in w for w in warnings) is warned


@pytest.mark.parametrize(("degrees", "oblique"), [(0.009, False), (0.011, True)])
def test_routine_01_writes_an_orientation_oblique_only_beyond_the_limit(tmp_path, degrees, oblique):
    archive = make_mini_archive(tmp_path, NME)
    bad = NME.names[1]
    volume, mask = base_arrays(2)
    tilted = rotated(AFFINE, degrees, axis=2)
    write_raw_nifti(archive / NME.volume_rel(bad), volume, tilted)
    write_raw_nifti(archive / NME.mask_rel(bad), mask, tilted)
    assert NME.run_01(tmp_path) == 0
    rows = list(load_workbook(tmp_path / "descriptor/archive_manifest.xlsx", read_only=True)["Manifest"].iter_rows(values_only=True))
    header = rows[0]
    codes = {r[header.index("file_path")]: r[header.index("orientation_to")] for r in rows[1:]}
    assert codes[NME.volume_rel(bad)] == ("Oblique(closest to LPS)" if oblique else "LPS")
    assert codes[NME.volume_rel(NME.names[0])] == "LPS"
