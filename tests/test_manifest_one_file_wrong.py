"""Every check of the dataset-manifest routine (VerSe 05, NME 04, ESO 04) with exactly one file of a sample wrong.

A grouped folder of two correct samples is built with nibabel (float32 volume, uint8 mask, one uint8 binary
mask per label, anisotropic oblique grid); then exactly one file of one sample is rewritten wrong: its shape,
spacing, origin, orientation or data type, or it is missing. The routine must exit 1, write nothing, and
name that file with the value found and the one expected in one log line. Every file role is tried (the
multi-label mask, the first, a middle and the last binary mask), so a check applied to one file instead of
all of a sample's files fails here. The grid tolerance (1e-4 mm) is tested just inside and just outside.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from openpyxl import load_workbook

from tests.conftest import run_script
from utils.files.sample_info import BINARY_MASKS_FROM, BINARY_MASKS_STEP, SampleDir, file_stamp, write_info
from utils.archive.synthetic import affine_for, rotation_about

ROUTINES = {"verse": "verse/05_gen_dataset_manifest.py", "nme": "nme/04_gen_dataset_manifest.py", "eso": "eso/04_gen_dataset_manifest.py"}
SHAPE = (7, 6, 5)
AFFINE = affine_for("PIR", (0.8, 1.7, 2.6), origin=(4.0, -9.0, 12.0), oblique_deg=8.0)
SHORTS = {0: "Bg", 1: "A", 2: "B", 3: "C"}
#: File roles of a sample that can be the wrong one: the mask, the first, a middle and the last binary mask.
ROLES = ("mask", "00_Bg", "02_B", "03_C")


def label_mask() -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    mask[1:4, 2:5, 1:3] = 1
    mask[5, 0:3, 4] = 3  # label 2 absent: its binary mask is all zero
    return mask


def save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> None:
    img = nib.Nifti1Image(data, affine)
    img.set_data_dtype(data.dtype)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, path)


def make_sample(root: Path, sid: str) -> SampleDir:
    sample = SampleDir(root / "site" / "train" / sid)
    sample.path.mkdir(parents=True)
    mask = label_mask()
    save(sample.volume, np.where(mask > 0, 300.0, -50.0).astype(np.float32))
    save(sample.mask, mask)
    for idx, short in SHORTS.items():
        save(sample.binary_mask(f"{idx:02d}_{short}"), (mask == idx).astype(np.uint8))
    restamp(sample)
    return sample


def role_path(sample: SampleDir, role: str) -> Path:
    return sample.mask if role == "mask" else sample.binary_mask(role)


def rewrite(path: Path, *, data: np.ndarray | None = None, affine: np.ndarray | None = None) -> None:
    """Rewrite one file with other voxels or another affine (nothing else of the sample changes)."""
    img = nib.load(path)
    save(path, np.asanyarray(img.dataobj) if data is None else data, img.affine if affine is None else affine)


def restamp(sample: SampleDir) -> None:
    """Record the mask now on disk as the one the binary masks come from."""
    write_info(sample.info, {"ID": sample.id, "site": "X", "history": [
        {"step": BINARY_MASKS_STEP, "params": {"labels": [f"{i:02d}_{s}" for i, s in SHORTS.items()]},
         BINARY_MASKS_FROM: file_stamp(sample.mask)}]})  # fmt: skip


def shifted(by_mm: float) -> np.ndarray:
    out = AFFINE.copy()
    out[:3, 3] += np.array([0.6, -0.48, 0.64]) * by_mm  # a unit vector
    return out


def respaced(axis: int, factor: float) -> np.ndarray:
    out = AFFINE.copy()
    out[:3, axis] *= factor
    return out


def rotated(degrees: float) -> np.ndarray:
    out = AFFINE.copy()
    out[:3, :3] = rotation_about(2, degrees) @ AFFINE[:3, :3]
    return out


def run_routine(dataset: str, root: Path, caplog, *extra) -> tuple[int, str]:
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        code = run_script(ROUTINES[dataset], "--root_dir", root, "--output_manifest_file", root / "dataset_manifest.xlsx", "--no_pbar", *extra)
    return code, caplog.text


@pytest.fixture
def grouped(tmp_path) -> tuple[Path, SampleDir]:
    root = tmp_path / "grouped"
    make_sample(root, "ok01")
    return root, make_sample(root, "bad01")


# (what is wrong, how to make it wrong, pattern of the one log line naming the file, the found and the expected value)
WRONG = {
    "shape": (lambda p: rewrite(p, data=np.zeros((7, 6, 6), np.uint8)), r"{name}: shape \(7, 6, 6\) differs from the volume's \(7, 6, 5\)"),
    "spacing": (lambda p: rewrite(p, affine=respaced(1, 1.01)), r"{name}: affine differs from the volume's \(bad01_volume.nii.gz\) by up to 0.0[89]\d* mm \(spacing \(0.8, 1.717, 2.6\) vs \(0.8, 1.7, 2.6\)\)"),
    "origin": (lambda p: rewrite(p, affine=shifted(0.5)), r"{name}: affine differs from the volume's \(bad01_volume.nii.gz\) by up to 0.5 mm \(spacing \(0.8, 1.7, 2.6\) vs \(0.8, 1.7, 2.6\)\)"),
    "orientation": (lambda p: rewrite(p, affine=rotated(1.0)), r"{name}: affine differs from the volume's \(bad01_volume.nii.gz\) by up to 0.\d+ mm"),
    "dtype": (lambda p: rewrite(p, data=np.asanyarray(nib.load(p).dataobj).astype(np.int16)), r"{name}: data type int16 differs from uint8 of the sample's other mask files"),
}  # fmt: skip


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("wrong", list(WRONG))
def test_verse_05_names_the_one_wrong_file(grouped, caplog, wrong, role):
    root, bad = grouped
    path = role_path(bad, role)
    make_wrong, pattern = WRONG[wrong]
    make_wrong(path)
    code, log = run_routine("verse", root, caplog)
    assert code == 1
    assert not (root / "dataset_manifest.xlsx").exists()
    assert len([line for line in log.splitlines() if path.name in line and "bad01" in line]) >= 1

    assert re.search(pattern.format(name=re.escape(str(path))), log), log
    assert "ok01" not in log


@pytest.mark.parametrize(("dataset", "wrong", "role"), [
    ("nme", "shape", "03_C"), ("nme", "spacing", "mask"), ("nme", "origin", "00_Bg"), ("nme", "orientation", "02_B"), ("nme", "dtype", "03_C"),
    ("eso", "shape", "mask"), ("eso", "spacing", "02_B"), ("eso", "origin", "03_C"), ("eso", "orientation", "00_Bg"), ("eso", "dtype", "mask"),
])  # fmt: skip
def test_nme_and_eso_04_name_the_one_wrong_file(grouped, caplog, dataset, wrong, role):
    root, bad = grouped
    path = role_path(bad, role)
    WRONG[wrong][0](path)
    code, log = run_routine(dataset, root, caplog)
    assert code == 1 and not (root / "dataset_manifest.xlsx").exists()
    assert f"{path}: " in log and "ok01" not in log


def test_skip_invalid_writes_the_other_samples(grouped, caplog):
    root, bad = grouped
    WRONG["origin"][0](role_path(bad, "03_C"))
    code, _ = run_routine("verse", root, caplog, "--skip_invalid")
    assert code == 1
    rows = list(load_workbook(root / "dataset_manifest.xlsx", read_only=True)["Manifest"].iter_rows(values_only=True))
    assert [r[0] for r in rows[1:]] == ["ok01"]


@pytest.mark.parametrize(("role", "by_mm", "ok"), [("mask", 0.5e-4, True), ("mask", 2e-4, False), ("03_C", 0.5e-4, True), ("03_C", 2e-4, False)])
def test_same_grid_tolerance_just_inside_and_just_outside(grouped, caplog, role, by_mm, ok):
    # The files of a sample are written from one affine; 1e-4 mm is the most they may disagree. The shift
    # survives the float32 header (resolution ~1e-6 mm at these coordinates).
    root, bad = grouped
    path = role_path(bad, role)
    rewrite(path, affine=shifted(by_mm))
    restamp(bad)  # the binary masks were (notionally) written from this mask: only the grid is in question
    stored = nib.load(path).affine[:3, 3] - nib.load(bad.volume).affine[:3, 3]
    assert np.linalg.norm(stored) == pytest.approx(by_mm, rel=0.05)
    code, log = run_routine("verse", root, caplog)
    assert (code == 0) == ok
    if not ok:
        assert f"{path}: affine differs from the volume's (bad01_volume.nii.gz) by up to 0.0002 mm" in log


def test_a_missing_file_is_named(grouped, caplog):
    root, bad = grouped
    role_path(bad, "02_B").unlink()
    code, log = run_routine("eso", root, caplog)
    assert code == 1
    assert f"{bad.binary_mask('02_B')}: binary mask missing (1 of the 4 written by the binary-mask routine are gone: ['02_B'])" in log
    bad.volume.unlink()
    code, log = run_routine("nme", root, caplog)
    assert code == 1 and f"{bad.volume}: volume file missing" in log


def test_a_binary_mask_that_other_samples_have_is_required(tmp_path, caplog):
    root = tmp_path / "grouped"
    make_sample(root, "ok01")
    bad = make_sample(root, "bad01")
    bad.binary_mask("03_C").unlink()
    write_info(bad.info, {"ID": "bad01", "site": "X"})  # no history: only the other samples tell the file is missing
    code, log = run_routine("verse", root, caplog)
    assert code == 1
    assert "bad01_mask_03_C.nii.gz: binary mask missing (1 that other samples have" in log


def test_a_mask_changed_after_its_binary_masks_is_named(grouped, caplog):
    root, bad = grouped
    mask = label_mask()
    mask[0, 0, 0] = 2
    rewrite(bad.mask, data=mask)
    code, log = run_routine("nme", root, caplog)
    assert code == 1
    assert f"{bad.mask}: changed after the binary masks were written from it" in log


# --- the rows of correct samples, by hand --------------------------------------------------------------------------


def test_correct_samples_give_the_rows_worked_out_by_hand(grouped, caplog):
    root, bad = grouped
    info = {"ID": "bad01", "site": "Tongji", "collection": "train-val", "subset": "train", "pid": 7,
            "attributes": {"scanner": "A", "site": "ignored: a column of that name exists"},
            "history": [{"step": BINARY_MASKS_STEP, "params": {"labels": [f"{i:02d}_{s}" for i, s in SHORTS.items()]},
                         BINARY_MASKS_FROM: file_stamp(bad.mask)}]}  # fmt: skip
    write_info(bad.info, info)
    code, _ = run_routine("nme", root, caplog)
    assert code == 0
    rows = list(load_workbook(root / "dataset_manifest.xlsx", read_only=True)["Manifest"].iter_rows(values_only=True))
    header = list(rows[0])
    binaries = [f"mask_{i:02d}_{s}" for i, s in SHORTS.items()]
    assert header == ["ID", "site", "collection", "subset", "pid", "valid_labels", "info", "volume", "mask", *binaries,
                      *(f"{b}_existence" for b in binaries), "szx", "szy", "szz", "spx", "spy", "spz",
                      "orientation_from", "orientation_to", "vol_dtype", "mask_dtype", "transform", "scanner"]  # fmt: skip
    row = dict(zip(header, rows[1]))  # rows are sorted by folder: bad01 before ok01
    folder = "site/train/bad01"
    assert row["ID"] == "bad01" and (row["site"], row["collection"], row["subset"], row["pid"]) == ("Tongji", "train-val", "train", 7)
    assert row["valid_labels"] == "[0, 1, 3]"  # label 2 is in the label map but not in the mask
    assert (row["info"], row["volume"], row["mask"]) == (f"{folder}/bad01_info.yaml", f"{folder}/bad01_volume.nii.gz", f"{folder}/bad01_mask.nii.gz")
    assert [row[b] for b in binaries] == [f"{folder}/bad01_{b}.nii.gz" for b in binaries]
    assert [row[f"{b}_existence"] for b in binaries] == [1, 1, 0, 1]
    assert [row[c] for c in ("szx", "szy", "szz")] == list(SHAPE)
    assert [row[c] for c in ("spx", "spy", "spz")] == [0.8, 1.7, 2.6]
    assert (row["orientation_from"], row["orientation_to"]) == ("Oblique(closest to ASL)", "Oblique(closest to PIR)")
    assert (row["vol_dtype"], row["mask_dtype"], row["scanner"]) == ("float32", "uint8", "A")
    assert np.allclose(json.loads(row["transform"]), nib.load(bad.volume).affine, rtol=0, atol=0)
    other = dict(zip(header, rows[2]))
    assert other["ID"] == "ok01" and other["site"] == "X" and other.get("scanner") is None and other["pid"] is None


def test_labels_come_from_the_mask_record_when_its_stamp_is_the_files_and_from_the_mask_otherwise(grouped, caplog, monkeypatch):
    import utils.dataset.manifest
    from utils.files.sample_info import MASK_LABELS, read_info

    root, bad = grouped
    mask = label_mask()
    info = read_info(bad.info)
    info[MASK_LABELS] = {"file": file_stamp(bad.mask), "voxels": {v: int(np.count_nonzero(mask == v)) for v in (0, 1, 3)}}
    write_info(bad.info, info)
    real = utils.dataset.manifest.load_nifti
    read = []
    monkeypatch.setattr(utils.dataset.manifest, "load_nifti", lambda path: read.append(path.name) or real(path))
    assert run_routine("verse", root, caplog)[0] == 0
    assert read == ["ok01_mask.nii.gz"]  # bad01 has a record that fits: its mask is not decompressed
    info[MASK_LABELS]["file"] = {"size": 1, "crc32": 2}  # a record of another version of the file
    write_info(bad.info, info)
    read.clear()
    assert run_routine("verse", root, caplog)[0] == 0
    assert sorted(read) == ["bad01_mask.nii.gz", "ok01_mask.nii.gz"]
    rows = list(load_workbook(root / "dataset_manifest.xlsx", read_only=True)["Manifest"].iter_rows(values_only=True))
    assert [r[rows[0].index("valid_labels")] for r in rows[1:]] == ["[0, 1, 3]", "[0, 1, 3]"]
