"""The mask-QC tools' thresholds through their command lines, just inside and just outside each limit.

Anisotropic, oblique, non-1-mm voxels everywhere, so that a limit applied in voxels instead of mm² / mm³
(or with the wrong spacings) lands on the wrong side. The expected outcome of each case is worked out by
hand in its comment; files are read back with nibabel and openpyxl.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from openpyxl import load_workbook

from tests.conftest import run_script
from utils.files.sample_info import SampleDir, write_info
from utils.archive.synthetic import affine_for, write_raw_nifti

CLOSE = "utils/morphological_close_on_slice_small_region.py"
OPEN = "utils/morphological_open_on_slice_small_region.py"
REPORT = "utils/small_connected_region_detect.py"
THRESHOLD = "utils/mask_thresholding.py"
BELOW, ABOVE = 1 - 1e-9, 1 + 1e-9


def stored_affine(path: Path) -> np.ndarray:
    """The affine as the file stores it (float32 in the header): sizes are computed from it, as a reader would."""
    return nib.load(path).affine


def make_sample(root: Path, mask: np.ndarray, affine: np.ndarray, volume: np.ndarray | None = None) -> SampleDir:
    """One grouped sample: volume, mask, a binary mask per value of the mask, info yaml."""
    sample = SampleDir(root / "site" / "s01")
    write_raw_nifti(sample.volume, np.zeros(mask.shape, np.float32) if volume is None else volume, affine)
    write_raw_nifti(sample.mask, mask, affine)
    for value in range(int(mask.max()) + 1):
        write_raw_nifti(sample.binary_mask(f"{value:02d}_L{value}"), (mask == value).astype(np.uint8), affine)
    write_info(sample.info, {"ID": "s01", "history": [{"step": "extract_binary_masks", "params": {}}]})
    return sample


def voxels(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


@pytest.mark.parametrize(("factor", "rows"), [(BELOW, 1), (ABOVE, 2)])
def test_small_region_report_volume_limit(tmp_path, factor, rows):
    # 0.6 x 0.5 x 2.5 mm voxels (0.75 mm³), oblique: a 4-voxel region is 3.0 mm³, a 1-voxel region 0.75 mm³.
    affine = affine_for("PIR", (0.6, 0.5, 2.5), origin=(12.0, -7.0, 40.0), oblique_deg=11.0)
    mask = np.zeros((10, 9, 8), np.uint8)
    mask[2:4, 3:5, 4] = 1  # 4 voxels
    mask[8, 1, 1] = 1  # 1 voxel
    mask[5:9, 5:9, 0:6] = 2  # 96 voxels: never small here
    sample = make_sample(tmp_path / "g", mask, affine)
    four_voxels_mm3 = 4 * abs(np.linalg.det(stored_affine(sample.mask)[:3, :3]))
    assert four_voxels_mm3 == pytest.approx(3.0, rel=1e-6)
    out = tmp_path / "small.xlsx"
    thresh = four_voxels_mm3 * factor
    assert run_script(REPORT, "--root_dir", tmp_path / "g", "--region_volume_thresh", repr(float(thresh)), "--output_manifest", out, "--no_pbar") == 0
    sheet = list(load_workbook(out, read_only=True)["Manifest"].iter_rows(values_only=True))
    header, body = sheet[0], sheet[1:]
    assert len(body) == rows
    counts = sorted(row[header.index("voxel_count")] for row in body)
    assert counts == [1, 4][:rows]


@pytest.mark.parametrize(("factor", "filled"), [(BELOW, False), (ABOVE, True)])
def test_close_tool_area_limit(tmp_path, factor, filled):
    # In-plane pixels 0.4 x 1.5 mm = 0.6 mm² (oblique grid): the 3-pixel hole is 1.8 mm².
    affine = affine_for("LAS", (0.4, 1.5, 3.0), origin=(1.0, 2.0, 3.0), oblique_deg=7.0)
    mask = np.zeros((18, 14, 3), np.uint8)
    mask[2:16, 2:12, :] = 1
    mask[8, 5:8, 1] = 0
    sample = make_sample(tmp_path / "g", mask, affine)
    stored = stored_affine(sample.mask)
    hole_mm2 = 3 * np.linalg.norm(np.cross(stored[:3, 0], stored[:3, 1]))
    assert hole_mm2 == pytest.approx(1.8, rel=1e-6)
    args = ["--kernel_size", 3, 3, "--filter_halfedge", 1, "--region_area_thresh", repr(float(hole_mm2 * factor)), "--no_pbar"]
    assert run_script(CLOSE, "--root_dir", tmp_path / "g", "--output_dir", tmp_path / "g", *args) == 0
    out = voxels(sample.mask)
    assert (out[8, 5:8, 1] == 1).all() == filled and (out[8, 5:8, 1] == 0).all() == (not filled)
    np.testing.assert_array_equal(voxels(sample.binary_mask("01_L1")), (out == 1).astype(np.uint8))


@pytest.mark.parametrize(("half", "winner"), [(1, 1), (2, 2)])
def test_open_tool_fusion_window_decides_the_label_of_a_removed_speck(tmp_path, half, winner):
    # A 1-voxel speck of label 3 (0.5 mm² < 1.0 mm²) is opened away; no label claims its voxel. In its 3x3
    # window label 1 has 8 voxels and label 2 none; in its 5x5 window label 2 has 16 and label 1 8.
    affine = affine_for("RPI", (0.5, 1.0, 2.0), oblique_deg=-6.0)
    mask = np.full((7, 7, 2), 2, np.uint8)
    mask[2:5, 2:5, 0] = 1
    mask[3, 3, 0] = 3
    sample = make_sample(tmp_path / "g", mask, affine)
    args = ["--kernel_size", 2, 2, "--filter_halfedge", half, "--region_area_thresh", 1.0, "--no_pbar"]
    assert run_script(OPEN, "--root_dir", tmp_path / "g", "--output_dir", tmp_path / "out", *args) == 0
    out = voxels(tmp_path / "out" / "site" / "s01" / "s01_mask.nii.gz")
    assert out[3, 3, 0] == winner
    expected = mask.copy()
    expected[3, 3, 0] = winner
    np.testing.assert_array_equal(out, expected)
    assert (voxels(sample.mask) == mask).all()  # the input folder is untouched


def test_threshold_tool_range_is_inclusive_at_both_ends(tmp_path):
    lo, hi = np.float32(-140.0), np.float32(1000.0)
    values = [np.nextafter(lo, np.float32(-np.inf)), lo, np.float32(20.0), hi, np.nextafter(hi, np.float32(np.inf)), np.float32(np.nan)]
    volume = np.zeros((6, 2, 3), np.float32)
    mask = np.zeros((6, 2, 3), np.uint8)
    for i, v in enumerate(values):
        volume[i, 1, 2] = v
        mask[i, 1, 2] = 1 + i % 2
    affine = affine_for("LPS", (0.7, 0.9, 3.3), oblique_deg=3.0)
    sample = make_sample(tmp_path / "g", mask, affine, volume=volume)
    assert run_script(THRESHOLD, "--root_dir", tmp_path / "g", "--thresh", -140.0, 1000.0, "--output_dir", tmp_path / "g", "--no_pbar") == 0
    kept = voxels(sample.mask)[:, 1, 2]
    assert kept.tolist() == [0, 2, 1, 2, 0, 0]  # just outside, LO, inside, HI, just outside, NaN
    np.testing.assert_array_equal(voxels(sample.binary_mask("02_L2")), (voxels(sample.mask) == 2).astype(np.uint8))
