"""Real CT volumes and vertebra masks (../shared/realdata) laid out as VerSe scans; skipped when absent.

Every label voxel must come out exactly where the source put it in world space:
both images are reoriented to their closest canonical orientation and compared
voxel by voxel, affines included.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import run_script
from tests.test_verse_pipeline import run_01_02
from utils.files.nifti_io import load_nifti, read_mask
from utils.files.sample_info import read_info
from utils.files.spreadsheet import read_sheet
from utils.archive.synthetic import flip_storage, write_raw_nifti

CASES = {
    # subject: (ct, mask, flip axis or None)
    "verse701": ("tptbox/sub-ct_label-22_ct.nii.gz", "tptbox/sub-ct_seg-vert_label-22_msk.nii.gz", None),
    "verse702": ("tptbox/sub-ct_label-22_ct.nii.gz", "tptbox/sub-ct_seg-vert_label-22_msk.nii.gz", 1),
    "verse703": ("totalseg/example_ct.nii.gz", "totalseg/spine_report__test_result__totalseg_vertebrae_pp_refined.nii.gz", None),
    "verse704": ("totalseg/example_ct.nii.gz", "totalseg/spine_report__test_result__totalseg_vertebrae_pp_refined.nii.gz", 2),
}


@pytest.fixture
def real_archive(realdata, tmp_path) -> Path:
    root = tmp_path / "real"
    train = root / "archive" / "dataset-01training"
    for subject, (ct, msk, flip) in CASES.items():
        (train / f"rawdata/sub-{subject}").mkdir(parents=True)
        shutil.copy(realdata / ct, train / f"rawdata/sub-{subject}/sub-{subject}_ct.nii.gz")
        target = train / f"derivatives/sub-{subject}/sub-{subject}_seg-vert_msk.nii.gz"
        if flip is None:
            target.parent.mkdir(parents=True)
            shutil.copy(realdata / msk, target)
        else:
            src = nib.load(realdata / msk)
            data, affine = flip_storage(np.asanyarray(src.dataobj), src.affine, flip)
            write_raw_nifti(target, data, affine)
    return root


def _canonical_labels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.as_closest_canonical(nib.load(path))
    return np.asanyarray(img.dataobj).astype(np.int64), img.affine


def test_real_masks_keep_every_label_voxel_in_world_space(realdata, real_archive):
    assert run_01_02(real_archive) == (0, 0)
    assert run_script("verse/03_reduce_sacrum_cocygis_and_revise_T13_label.py", "--root_dir", real_archive / "grouped", "--no_pbar") == 0
    assert run_script(
        "verse/04_extract_binary_masks.py", "--root_dir", real_archive / "grouped",
        "--label_explanation", real_archive / "descriptor/label_map.yaml", "--no_pbar",
    ) == 0  # fmt: skip
    for subject, (ct, msk, flip) in CASES.items():
        folder = real_archive / "grouped/VerSe20/train" / subject
        src_labels, src_affine = _canonical_labels(realdata / msk)
        out_labels, out_affine = _canonical_labels(folder / f"{subject}_mask.nii.gz")
        assert np.allclose(out_affine, src_affine, atol=1e-4), subject
        assert np.array_equal(out_labels, src_labels), subject
        method = read_info(folder / f"{subject}_info.yaml")["source"]["alignment"]["method"]
        assert method == ("reoriented" if flip is not None else "identical"), subject
        for label in np.unique(src_labels)[1:]:
            binary, _ = _canonical_labels(folder / f"{subject}_mask_{label:02d}_{_short(label)}.nii.gz")
            assert np.array_equal(binary, (src_labels == label).astype(np.int64)), (subject, label)
        vol = nib.as_closest_canonical(nib.load(folder / f"{subject}_volume.nii.gz"))
        src_vol = nib.as_closest_canonical(nib.load(realdata / ct))
        assert vol.get_data_dtype() == np.float32
        assert np.array_equal(np.asanyarray(vol.dataobj), src_vol.get_fdata(dtype=np.float32))


SHORTS = ["Bg", *[f"C{i}" for i in range(1, 8)], *[f"T{i}" for i in range(1, 13)], *[f"L{i}" for i in range(1, 7)], "T13"]


def _short(label: int) -> str:
    return SHORTS[label]


def test_real_oblique_float64_verse_mask(realdata, tmp_path):
    """sub-verse004 (VerSe19, float64 on disk, PIR, oblique ~5 degrees) with a stand-in CT on its grid."""
    src = realdata / "verse/sub-verse004_seg-vert_msk.nii.gz"
    root = tmp_path / "obl"
    folder = root / "archive/dataset-verse19training"
    img = nib.load(src)
    write_raw_nifti(folder / "rawdata/sub-verse004/sub-verse004_ct.nii.gz", np.zeros(img.shape, np.int16), img.affine)
    (folder / "derivatives/sub-verse004").mkdir(parents=True)
    shutil.copy(src, folder / "derivatives/sub-verse004/sub-verse004_seg-vert_msk.nii.gz")
    assert run_01_02(root) == (0, 0)
    row = read_sheet(root / "descriptor/archive_manifest.xlsx").set_index("type").loc["m3d"]
    assert row["dtype"] == "float64"
    assert row["orientation_to"] == "Oblique(closest to PIR)" and row["orientation_from"] == "Oblique(closest to ASL)"
    out = root / "grouped/VerSe19/train/verse004/verse004_mask.nii.gz"
    labels = read_mask(load_nifti(out), out)
    assert sorted(np.unique(labels).tolist()) == [0, 16, 17, 18, 19, 20, 21, 22, 23, 24]
    assert np.array_equal(labels, np.asanyarray(img.dataobj).astype(np.uint8))
    assert np.allclose(nib.load(out).affine, img.affine, atol=1e-5)
