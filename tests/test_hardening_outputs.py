"""Outputs a lab can share (issue 10): file modes, stale temporaries, reproducible xlsx, log lines, progress bars,
and routines that resume: routine 02 skips up-to-date samples, binary masks are not rewritten, 03 says what it skips.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO, run_script
from tests.mini_archives import AFFINE, LAYOUTS, base_arrays, leftover_temporaries, make_mini_archive, tree_digest
from utils.files.atomic import STALE_TEMPORARY_AGE_S, atomic_write_text, is_our_temporary, remove_stale_temporaries
from utils.files.sample_info import read_info, write_info
from utils.files.spreadsheet import add_sheet, read_sheet, write_sheets
from utils.archive.synthetic import write_raw_nifti


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    old = os.umask(0o022)
    yield lambda value: os.umask(value)
    os.umask(old)


def _modes(folder: Path) -> set[int]:
    return {stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_get_the_mode_open_gives_under_the_umask(mask, expected, umask, tmp_path):
    lay = LAYOUTS["verse"]
    root = tmp_path / "r"
    make_mini_archive(root, lay)
    umask(mask)
    assert lay.run_to_dataset_manifest(root) == [0] * 5
    assert _modes(root / "grouped") == {expected}  # NIfTI, yaml, xlsx
    assert _modes(root / "descriptor") == {expected}


def test_a_rewrite_gives_an_old_0600_output_the_umask_mode(umask, tmp_path):
    umask(0o022)
    same, other = tmp_path / "same.yaml", tmp_path / "other.yaml"
    for path in (same, other):
        path.write_text("a: 1\n")
        path.chmod(0o600)  # written by an earlier version
    atomic_write_text(same, "a: 1\n")  # identical content: the file is left in place, only its mode corrected
    atomic_write_text(other, "a: 2\n")
    assert stat.S_IMODE(same.stat().st_mode) == 0o644 and stat.S_IMODE(other.stat().st_mode) == 0o644


def test_identical_content_leaves_the_file_untouched(tmp_path):
    path = tmp_path / "x.yaml"
    atomic_write_text(path, "a: 1\n")
    before = path.stat()
    time.sleep(0.01)
    atomic_write_text(path, "a: 1\n")
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    atomic_write_text(path, "a: 2\n")
    assert path.read_text() == "a: 2\n" and path.stat().st_ino != before.st_ino


# --- stale temporaries ---------------------------------------------------------------------------------------


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_only_our_old_temporaries_are_removed(tmp_path):
    ours_old = tmp_path / ".case_mask.nii.gz.4242-0a1b2c3d.tmp"
    legacy_old = tmp_path / ".dataset_manifest.xlsx.k2j_x9a1.tmp"  # tempfile.mkstemp naming of earlier versions
    ours_young = tmp_path / ".case_info.yaml.4242-deadbeef.tmp"
    foreign = [tmp_path / ".bashrc.tmp", tmp_path / "notes.tmp", tmp_path / ".x.nii.gz.partial", tmp_path / ".Trash.tmp"]
    for p in (ours_old, legacy_old, ours_young, *foreign):
        p.write_bytes(b"x")
    for p in (ours_old, legacy_old, *foreign):
        _age(p, STALE_TEMPORARY_AGE_S + 60)
    _age(ours_young, STALE_TEMPORARY_AGE_S - 60)
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([ours_old, legacy_old])
    assert ours_young.exists() and all(p.exists() for p in foreign)
    assert is_our_temporary(ours_young.name) and not any(is_our_temporary(p.name) for p in foreign)


def test_routines_clean_their_own_folders_and_never_the_archive(tmp_path):
    lay = LAYOUTS["nme"]
    root = tmp_path / "r"
    archive = make_mini_archive(root, lay)
    assert lay.run_to_dataset_manifest(root) == [0] * 4
    sample = lay.sample_dir(root, lay.names[0])
    planted = {
        "sample": sample / f".{sample.name}_mask.nii.gz.999-0123abcd.tmp",
        "descriptor": root / "descriptor/.archive_manifest.xlsx.999-0123abcd.tmp",
        "archive": archive / ".scan.nii.gz.999-0123abcd.tmp",
    }
    for p in planted.values():
        p.write_bytes(b"half a file")
        _age(p, 2 * STALE_TEMPORARY_AGE_S)
    assert lay.run_to_dataset_manifest(root) == [0] * 4  # nothing to redo; the folders are still visited
    assert not planted["sample"].exists() and not planted["descriptor"].exists()
    assert planted["archive"].exists()


# --- reproducible workbooks -------------------------------------------------------------------------------------


def test_xlsx_carries_no_time_stamp_and_repeats_byte_for_byte(tmp_path):
    frame = pd.DataFrame({"ID": ["a", "b"], "v": [1, 2.5], "f": ["=1+1", None]})
    write_sheets(tmp_path / "a.xlsx", {"Manifest": frame})
    add_sheet(tmp_path / "a.xlsx", "split", frame)
    with zipfile.ZipFile(tmp_path / "a.xlsx") as z:
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        core = z.read("docProps/core.xml").decode()
    assert core.count("1980-01-01T00:00:00Z") == 2
    write_sheets(tmp_path / "b.xlsx", {"Manifest": frame})
    add_sheet(tmp_path / "b.xlsx", "split", frame)
    assert (tmp_path / "a.xlsx").read_bytes() == (tmp_path / "b.xlsx").read_bytes()
    assert read_sheet(tmp_path / "b.xlsx", "split")["f"].tolist() == ["=1+1", None]


# --- log lines and progress bars -------------------------------------------------------------------------------


def _minimal_grouped(tmp_path: Path) -> Path:
    lay = LAYOUTS["eso"]
    root = tmp_path / "r"
    make_mini_archive(root, lay)
    assert lay.run_01(root) == 0
    return root


def test_log_lines_name_the_routine_and_no_bar_without_a_terminal(tmp_path):
    root = _minimal_grouped(tmp_path)
    cmd = [sys.executable, str(REPO / "eso/02_confirm_pairs.py"), "--root_dir", str(root / "archive"), "--output_dir", str(root / "grouped"),
           "--archive_manifest", str(root / "descriptor/archive_manifest.xlsx")]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines and all(ln.split(" ", 2)[1] == "02_confirm_pairs:" for ln in lines), lines
    assert "utils." not in result.stderr and "|" not in result.stderr and "\r" not in result.stderr  # no bar fragments
    forced = subprocess.run([*cmd, "--pbar"], capture_output=True, text=True)
    assert "confirm pairs: 100%|" in forced.stderr
    verbose = subprocess.run([*cmd, "-v", "--no_pbar"], capture_output=True, text=True)
    assert "DEBUG 02_confirm_pairs [" in verbose.stderr or "INFO 02_confirm_pairs [utils.dataset.routines]:" in verbose.stderr


# --- routine 02 resumes ---------------------------------------------------------------------------------------------


@pytest.fixture
def verse_done(tmp_path) -> Path:
    """The tiny VerSe archive through routines 01-04."""
    lay = LAYOUTS["verse"]
    root = tmp_path / "v"
    make_mini_archive(root, lay)
    assert lay.run_to_dataset_manifest(root) == [0] * 5
    return root


def _stamps(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(folder).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def test_routine_02_skips_samples_that_later_steps_changed_when_their_sources_did_not(verse_done, caplog):
    lay = LAYOUTS["verse"]
    before = _stamps(verse_done / "grouped")
    caplog.clear()
    assert lay.run_02(verse_done) == 0
    assert "0 samples written, 2 up to date (skipped)" in caplog.text
    assert _stamps(verse_done / "grouped") == before  # not one file touched
    info = read_info(lay.sample_dir(verse_done, "verse601") / "verse601_info.yaml")
    rec = info["built_from"]
    assert rec["volume"]["path"] == "dataset-01training/rawdata/sub-verse601/sub-verse601_ct.nii.gz" and rec["volume"]["size"] > 0 and isinstance(rec["volume"]["crc32"], int)
    assert rec["params"] == {"tol_voxel": 0.01, "allow_resample": False, "allowed_labels": list(range(29))}


def test_routine_02_refuses_a_changed_source_of_a_processed_sample_and_rebuilds_an_untouched_one(verse_done, caplog):
    lay = LAYOUTS["verse"]
    archive = verse_done / "archive"
    vol, mask = base_arrays(7)
    mask[0, 0, 0] = 2
    write_raw_nifti(archive / lay.mask_rel("verse602"), mask, AFFINE)  # processed by 03/04: refused
    caplog.clear()
    assert lay.run_02(verse_done) == 1
    line = next(r.getMessage() for r in caplog.records if "verse602: " in r.getMessage() and "already processed" in r.getMessage())
    assert "not up to date: archive mask sub-verse602_seg-vert_msk.nii.gz changed since the sample was built (size" in line
    assert "pass --overwrite" in line
    # an untouched sample (no later step) whose source changed is simply rebuilt
    shutil.rmtree(lay.sample_dir(verse_done, "verse601"))
    assert lay.run_02(verse_done) == 1
    assert (lay.sample_dir(verse_done, "verse601") / "verse601_info.yaml").is_file()
    assert lay.run_02(verse_done, "--overwrite") == 0
    rebuilt = read_mask_array(lay.sample_dir(verse_done, "verse602") / "verse602_mask.nii.gz")
    assert rebuilt[0, 0, 0] == 2 and not list(lay.sample_dir(verse_done, "verse602").glob("*_mask_00_Bg.nii.gz"))


def read_mask_array(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


def test_a_copied_archive_with_new_times_but_same_bytes_is_still_up_to_date(verse_done, caplog):
    lay = LAYOUTS["verse"]
    for p in (verse_done / "archive").rglob("*.nii.gz"):
        data = p.read_bytes()
        p.unlink()
        p.write_bytes(data)  # a copy without preserved times
        _age(p, -5)
    caplog.clear()
    assert lay.run_02(verse_done) == 0
    assert "2 up to date (skipped)" in caplog.text


def test_other_grid_tolerance_means_not_up_to_date(verse_done, caplog):
    caplog.clear()
    assert LAYOUTS["verse"].run_02(verse_done, "--grid_tol", "0.02") == 1
    assert "it was built with tol_voxel 0.01, now 0.02" in caplog.text


def test_changed_attributes_are_updated_without_a_rebuild(verse_done, caplog):
    lay = LAYOUTS["verse"]
    csv = verse_done / "people.csv"
    csv.write_text("verse_ID,subject_ID,Sex,age_ct\n601,601,F,50\n")
    assert lay.run_01(verse_done, "--participants", csv) == 0
    folder = lay.sample_dir(verse_done, "verse601")
    mask_before = (folder / "verse601_mask.nii.gz").stat().st_mtime_ns
    history_before = read_info(folder / "verse601_info.yaml")["history"]
    caplog.clear()
    assert lay.run_02(verse_done) == 0
    assert "1 up to date with attributes updated" in caplog.text and "attributes ['age', 'sex'] updated" in caplog.text
    info = read_info(folder / "verse601_info.yaml")
    assert (info["sex"], info["age"]) == ("F", 50) and info["history"] == history_before
    assert (folder / "verse601_mask.nii.gz").stat().st_mtime_ns == mask_before


def test_a_deleted_output_of_an_untouched_sample_is_rebuilt(tmp_path):
    lay = LAYOUTS["nme"]
    root = tmp_path / "n"
    make_mini_archive(root, lay)
    assert lay.run_01(root) == 0 and lay.run_02(root) == 0
    volume = lay.sample_dir(root, lay.names[0]) / f"{lay.names[0]}_volume.nii.gz"
    data = volume.read_bytes()
    volume.unlink()
    assert lay.run_02(root) == 0
    assert volume.read_bytes() == data


# --- later routines resume too ---------------------------------------------------------------------------------------


def test_binary_masks_are_skipped_while_up_to_date_and_redone_when_not(verse_done, caplog):
    lay = LAYOUTS["verse"]
    g, label_map = verse_done / "grouped", verse_done / "descriptor/label_map.yaml"
    before = _stamps(g)
    caplog.clear()
    assert run_script(lay.script("bin"), "--root_dir", g, "--label_explanation", label_map) == 0
    assert _stamps(g) == before
    assert "2 samples skipped, their binary masks are up to date with their mask: verse601, verse602" in caplog.text
    folder = lay.sample_dir(verse_done, "verse602")
    (folder / "verse602_mask_05_C5.nii.gz").unlink()
    assert run_script(lay.script("bin"), "--root_dir", g, "--label_explanation", label_map) == 0
    assert (folder / "verse602_mask_05_C5.nii.gz").is_file()
    # a mask edited by hand: its binary masks are rewritten from it
    mask = read_mask_array(folder / "verse602_mask.nii.gz").copy()
    mask[0, 0, 0] = 5
    write_raw_nifti(folder / "verse602_mask.nii.gz", mask, nib.load(folder / "verse602_mask.nii.gz").affine)
    assert run_script(lay.script("bin"), "--root_dir", g, "--label_explanation", label_map) == 0
    assert read_mask_array(folder / "verse602_mask_05_C5.nii.gz")[0, 0, 0] == 1


def test_rerunning_03_says_which_samples_it_skipped(verse_done, caplog):
    caplog.clear()
    assert run_script(LAYOUTS["verse"].script("03"), "--root_dir", verse_done / "grouped") == 0
    assert "2 samples already revised, skipped (the remap is never applied twice): verse601, verse602" in caplog.text


def test_pending_history_entry_of_a_mask_tool_is_completed_or_dropped(tmp_path, caplog):
    """The two states a ``kill -9`` can leave between the pending info write and the final one."""
    from utils.maskqc.steps import PENDING_STEP
    from utils.files.sample_info import file_stamp

    lay = LAYOUTS["eso"]
    root = tmp_path / "e"
    make_mini_archive(root, lay)
    assert lay.run_01(root) == 0 and lay.run_02(root) == 0
    folder = lay.sample_dir(root, lay.names[0])
    info_path, mask_path = folder / f"{folder.name}_info.yaml", folder / f"{folder.name}_mask.nii.gz"
    info = read_info(info_path)
    entry = {"step": "mask_thresholding", "params": {"thresh": [-140.0, 1000.0]}, "date": "2026-01-01T00:00:00", "result": {"voxels_set_to_background": 17}}
    # (a) the mask was rewritten before the kill: the entry, with its true result and date, joins the history
    old_stamp = {"size": 1, "crc32": 0}
    write_info(info_path, {**info, PENDING_STEP: {**entry, "mask_before": old_stamp}})
    tool = ["utils/mask_thresholding.py", "--root_dir", root / "grouped", "--output_dir", root / "grouped", "--thresh", "-140.0", "1000.0"]
    assert run_script(*tool) == 0
    after = read_info(info_path)
    assert PENDING_STEP not in after and after["history"][-1] == entry
    assert "was interrupted after its mask was rewritten; its history entry (result {'voxels_set_to_background': 17}) is now recorded" in caplog.text
    # (b) the mask was not replaced: the entry is dropped and the step applied for real
    write_info(info_path, {**info, PENDING_STEP: {**entry, "mask_before": file_stamp(mask_path)}})
    assert run_script(*tool, "--force") == 0
    after = read_info(info_path)
    assert PENDING_STEP not in after and after["history"][-1]["result"] != entry["result"]
    assert after["history"][-1]["date"] != entry["date"]
    assert leftover_temporaries(root) == []


def test_tree_unchanged_by_a_second_run_of_every_routine(verse_done):
    lay = LAYOUTS["verse"]
    before = tree_digest(verse_done)
    assert lay.run_to_dataset_manifest(verse_done) == [0] * 5
    assert tree_digest(verse_done) == before
