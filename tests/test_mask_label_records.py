"""The mask's labels recorded by the routine that wrote it, and what routine 05 checks without decompressing.

Routines 02, 03, 04 and the mask-QC tools record in the info yaml the voxel count of every value of
``{ID}_mask.nii.gz`` with the file's stamp (size, CRC-32). Routine 05 takes ``valid_labels`` and the
``_existence`` columns from that record when the stamp is the file's, reads the mask otherwise, and refuses
a sample whose binary masks were written from another version of the mask.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import run_script
from tests.test_golden_outputs import _pipeline_commands
from utils.labels.label_stats import label_stats
from utils.files.nifti_io import load_nifti, read_mask, save_nifti
from utils.files.sample_info import MASK_LABELS, SampleDir, file_stamp, find_samples, read_info, recorded_mask_labels, write_info
from utils.files.spreadsheet import read_sheet


@pytest.fixture(scope="module")
def verse_root(tmp_path_factory):
    """The VerSe demo after routines 01-04, the close tool and 05."""
    root = tmp_path_factory.mktemp("verse")
    assert run_script("demo/make_demo_archive.py", "verse", root) == 0
    for script, *argv in _pipeline_commands("verse", root):
        assert run_script(script, *argv, "--no_pbar", "-q") in (0, 1)
    return root


def _copy(root, tmp_path):
    import shutil

    shutil.copytree(root, tmp_path / "r")
    return tmp_path / "r"


def test_every_sample_records_its_mask_labels_truthfully(verse_root):
    samples = [s for s in find_samples(verse_root / "grouped") if s.mask.is_file()]
    assert len(samples) >= 8
    for sample in samples:
        info = read_info(sample.info)
        mask = read_mask(load_nifti(sample.mask), sample.mask)
        counts = label_stats(mask).counts
        assert info[MASK_LABELS]["file"] == file_stamp(sample.mask)
        assert info[MASK_LABELS]["voxels"] == {int(v): int(counts[v]) for v in np.flatnonzero(counts)}
        assert recorded_mask_labels(info, sample.mask) == [int(v) for v in np.flatnonzero(counts)]


def test_routine_05_takes_the_labels_from_the_record_without_reading_the_mask(verse_root, tmp_path, monkeypatch):
    import utils.dataset.manifest

    root = _copy(verse_root, tmp_path)
    expected = read_sheet(root / "grouped/dataset_manifest.xlsx")

    def no_decompression(path):
        raise AssertionError(f"{path} was decompressed")

    monkeypatch.setattr(utils.dataset.manifest, "load_nifti", no_decompression)
    out = root / "again.xlsx"
    assert run_script("verse/05_gen_dataset_manifest.py", "--root_dir", root / "grouped", "--output_manifest_file", out, "--no_pbar") == 0
    assert read_sheet(out).equals(expected)


def test_without_a_record_the_mask_is_read_and_gives_the_same_manifest(verse_root, tmp_path, monkeypatch):
    import utils.dataset.manifest

    root = _copy(verse_root, tmp_path)
    expected = read_sheet(root / "grouped/dataset_manifest.xlsx")
    for sample in find_samples(root / "grouped"):  # as a dataset made before the records existed
        info = read_info(sample.info)
        info.pop(MASK_LABELS, None)
        write_info(sample.info, info)
    read = []
    real = utils.dataset.manifest.load_nifti
    monkeypatch.setattr(utils.dataset.manifest, "load_nifti", lambda path: read.append(path) or real(path))
    out = root / "again.xlsx"
    assert run_script("verse/05_gen_dataset_manifest.py", "--root_dir", root / "grouped", "--output_manifest_file", out, "--no_pbar") == 0
    assert read_sheet(out).equals(expected)
    assert len(read) == len(expected)  # every mask was read


def test_binary_masks_of_another_mask_version_are_refused(verse_root, tmp_path, caplog):
    root = _copy(verse_root, tmp_path)
    sample = SampleDir(root / "grouped/VerSe20/train/gl003")
    img = load_nifti(sample.mask)
    mask = read_mask(img, sample.mask).copy()
    mask[mask == 7] = 6
    save_nifti(sample.mask, mask, img.affine, dtype=np.uint8, template=img)
    code = run_script("verse/05_gen_dataset_manifest.py", "--root_dir", root / "grouped", "--output_manifest_file", root / "m.xlsx", "--no_pbar")
    assert code == 1
    assert "gl003_mask.nii.gz: changed after the binary masks were written from it" in caplog.text
    assert not (root / "m.xlsx").exists()


def test_the_manifest_agrees_with_an_independent_reading_of_every_file(verse_root):
    """Routine 05's columns recomputed here with nibabel, numpy and openpyxl only (no project reader)."""
    import json
    import math

    import nibabel as nib
    from openpyxl import load_workbook

    grouped = verse_root / "grouped"
    rows = list(load_workbook(grouped / "dataset_manifest.xlsx", read_only=True)["Manifest"].iter_rows(values_only=True))
    header, body = list(rows[0]), rows[1:]
    assert len(body) >= 8
    binary_columns = [c for c in header if c.startswith("mask_") and c[5:7].isdigit() and not c.endswith("_existence")]
    for values in body:
        row = dict(zip(header, values))
        volume = nib.load(grouped / row["volume"])
        mask = np.asanyarray(nib.load(grouped / row["mask"]).dataobj)
        present = np.unique(mask).tolist()
        assert json.loads(row["valid_labels"]) == present, row["ID"]
        for col in binary_columns:
            index = int(col[5:7])
            binary = np.asanyarray(nib.load(grouped / row[col]).dataobj)
            assert row[f"{col}_existence"] == int(index in present), (row["ID"], col)
            np.testing.assert_array_equal(binary, (mask == index).astype(np.uint8))
        assert (row["szx"], row["szy"], row["szz"]) == volume.shape
        zooms = np.linalg.norm(volume.affine[:3, :3], axis=0)
        assert [row["spx"], row["spy"], row["spz"]] == [float(f"{z:.6g}") for z in zooms]
        codes = "".join(nib.aff2axcodes(volume.affine))
        tilt = math.degrees(float(np.max(np.abs(nib.affines.obliquity(volume.affine)))))
        assert row["orientation_to"] == (f"Oblique(closest to {codes})" if tilt > 0.01 else codes), row["ID"]
        assert json.loads(row["transform"]) == volume.affine.tolist()
        assert (row["vol_dtype"], row["mask_dtype"]) == ("float32", "uint8")
