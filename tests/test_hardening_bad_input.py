"""The bad-input matrix (issue 10): every bad input answered in one honest line, for the three pipelines.

Each file-level case breaks one of two samples of a tiny archive in the real
layout and runs routines 01 and 02, asserting: the exit codes, one log line
(no line break) naming the file and the value found, the good sample still
written, no traceback, no temporary file left, the archive's bytes unchanged.
Run-level cases (empty archive, unusable manifests, bad output paths, edited
label maps, metadata sheets) follow.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from openpyxl import Workbook

from tests.conftest import REPO, run_script
from tests.mini_archives import AFFINE, LAYOUTS, SHAPE, Layout, base_arrays, huge_header_nifti, leftover_temporaries, make_mini_archive, tree_digest
from utils.files.sample_info import read_info
from utils.files.spreadsheet import read_sheet, write_sheets
from utils.archive.synthetic import write_raw_nifti


def _vol(archive: Path, lay: Layout, name: str) -> Path:
    return archive / lay.volume_rel(name)


def _mask(archive: Path, lay: Layout, name: str) -> Path:
    return archive / lay.mask_rel(name)


def _float_volume(seed: int) -> np.ndarray:
    return base_arrays(seed)[0].astype(np.float32)


def _nan_volume(a: Path, lay: Layout, n: str) -> None:
    v = _float_volume(2)
    v[1, 2, 3] = np.nan
    write_raw_nifti(_vol(a, lay, n), v, AFFINE)


def _inf_volume(a: Path, lay: Layout, n: str) -> None:
    v = _float_volume(2)
    v[0, 0, 1] = -np.inf
    write_raw_nifti(_vol(a, lay, n), v, AFFINE)


def _mask_values(dtype, value: float, at=(0, 0, 0), shape=SHAPE, affine=AFFINE) -> Callable[[Path, Layout, str], None]:
    def mutate(a: Path, lay: Layout, n: str) -> None:
        m = np.zeros(shape, dtype)
        m[1:4, 1:4, 1:3] = 1
        m[at] = value(lay) if callable(value) else value
        write_raw_nifti(_mask(a, lay, n), m, affine)

    return mutate


def _truncate(a: Path, lay: Layout, n: str) -> None:
    p = _vol(a, lay, n)
    p.write_bytes(p.read_bytes()[:-30])


def _not_gzip(a: Path, lay: Layout, n: str) -> None:
    p = _vol(a, lay, n)
    p.write_bytes(nib.load(p).to_bytes())  # a plain .nii byte stream under a .nii.gz name


SHIFTED = AFFINE.copy()
SHIFTED[0, 3] += 3.0

#: id -> (mutation of the bad sample, needle(layout, archive-relative volume path, mask path) in one log line of 02,
#:        found by routine 01 already (True: listed in Skipped, 01 logs a warning))
FILE_CASES: dict[str, tuple[Callable, Callable[[Layout, str, str], str], bool]] = {
    "truncated": (_truncate, lambda lay, v, m: f"volume {v} was skipped by routine 01 (truncated or corrupt gzip stream", True),
    "zero_bytes": (lambda a, lay, n: _vol(a, lay, n).write_bytes(b""), lambda lay, v, m: f"volume {v} was skipped by routine 01 (file is empty (0 bytes)", True),
    "not_gzip": (_not_gzip, lambda lay, v, m: f"volume {v} was skipped by routine 01 (name ends with .gz but the file is not gzip-compressed", True),
    "4d": (lambda a, lay, n: write_raw_nifti(_vol(a, lay, n), np.zeros((*SHAPE, 2), np.int16), AFFINE),
           lambda lay, v, m: f"volume {v} was skipped by routine 01 (image has shape (6, 6, 5, 2), a 3D image was expected", True),
    "2d": (lambda a, lay, n: write_raw_nifti(_vol(a, lay, n), np.zeros((6, 6), np.int16), AFFINE),
           lambda lay, v, m: f"volume {v} was skipped by routine 01 (image has shape (6, 6), a 3D image was expected", True),
    "nan_volume": (_nan_volume, lambda lay, v, m: f"volume {v} was skipped by routine 01 (image holds 1 non-finite voxels (1 NaN, 0 Inf; first at voxel (1, 2, 3))", True),
    "inf_volume": (_inf_volume, lambda lay, v, m: f"volume {v} was skipped by routine 01 (image holds 1 non-finite voxels (0 NaN, 1 Inf; first at voxel (0, 0, 1))", True),
    "huge_header_dims": (lambda a, lay, n: huge_header_nifti(_vol(a, lay, n)),
                         lambda lay, v, m: (f"volume {v} was skipped by routine 01 (data truncated: ", "expected for shape (32767, 32767, 32767))"), True),
    "nan_mask": (_mask_values(np.float32, np.nan, (2, 2, 2)), lambda lay, v, m: f"mask {m} was skipped by routine 01 (image holds 1 non-finite voxels (1 NaN, 0 Inf; first at voxel (2, 2, 2))", True),
    "half_label": (_mask_values(np.float64, 0.5), lambda lay, v, m: f"{Path(m).name}: mask holds 1 non-integer values (e.g. 0.5); integer labels expected", False),
    "negative_label": (_mask_values(np.int16, -1), lambda lay, v, m: f"{Path(m).name}: mask values span [-1, 1]; labels in [0, 255] expected", False),
    "unknown_label": (_mask_values(np.uint8, lambda lay: lay.max_label + 1), lambda lay, v, m: f"{Path(m).name}: mask values [{lay.max_label + 1}] are not in the label map", False),
    "shape_mismatch": (_mask_values(np.uint8, 1, shape=(6, 6, 4)),
                       lambda lay, v, m: f"{Path(m).name}: mask grid does not match the volume grid (mask shape (6, 6, 4) orientation LPS, volume shape (6, 6, 5) orientation LPS, the shapes differ", False),
    "affine_mismatch": (_mask_values(np.uint8, 1, affine=SHIFTED), lambda lay, v, m: f"{Path(m).name}: mask grid does not match the volume grid (mask shape (6, 6, 5) orientation LPS, volume shape (6, 6, 5) orientation LPS, largest voxel-centre displacement 3 mm", False),
    "missing_mask": (lambda a, lay, n: _mask(a, lay, n).unlink(), lambda lay, v, m: f"volume {v} has no mask", False),
    "missing_volume": (lambda a, lay, n: _vol(a, lay, n).unlink(), lambda lay, v, m: f"mask {m} has no volume", False),
    "duplicate_candidates": (lambda a, lay, n: shutil.copy(_vol(a, lay, n), a / lay.duplicate_volume_rel(n)) if (a / lay.duplicate_volume_rel(n)).parent.mkdir(parents=True, exist_ok=True) is None else None,
                             lambda lay, v, m: "several candidate files for one sample", False),
}  # fmt: skip


def _messages(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records]


def _one_line_with(needle: str | tuple[str, ...], messages: list[str]) -> str:
    needles = (needle,) if isinstance(needle, str) else needle
    hits = [m for m in messages if all(n in m for n in needles)]
    assert hits, f"no log line holds {needle!r}; lines:\n" + "\n".join(messages)
    assert all("\n" not in m for m in hits), hits
    return hits[0]


@pytest.mark.parametrize("case", sorted(FILE_CASES))
@pytest.mark.parametrize("dataset", sorted(LAYOUTS))
def test_bad_file_is_one_line_and_the_rest_is_written(dataset, case, tmp_path, caplog, capsys):
    lay = LAYOUTS[dataset]
    good, bad = lay.names
    root = tmp_path / "root"
    archive = make_mini_archive(root, lay)
    mutate, needle, found_by_01 = FILE_CASES[case]
    mutate(archive, lay, bad)
    before = tree_digest(archive)
    caplog.set_level(logging.INFO)

    assert lay.run_01(root) == 0  # a file routine 01 cannot use is a warning, listed in sheet Skipped
    records01 = list(caplog.records)
    assert all(r.levelno < logging.ERROR for r in records01), [r.getMessage() for r in records01 if r.levelno >= logging.ERROR]
    skipped = read_sheet(root / "descriptor/archive_manifest.xlsx", "Skipped")
    assert (len(skipped) > 0) == found_by_01
    caplog.clear()

    rc02 = lay.run_02(root)
    messages = _messages(caplog.records)
    if case == "missing_mask" and lay.mask_optional:  # ESO: a volume without a mask is a valid sample
        assert rc02 == 0
        _one_line_with(f"a volume but no mask (allowed in ESO): {lay.sample_id(bad)}", messages)
        assert not lay.sample_dir(root, bad).joinpath(f"{lay.sample_id(bad)}_mask.nii.gz").exists()
    else:
        assert rc02 == 1
        _one_line_with(needle(lay, lay.volume_rel(bad), lay.mask_rel(bad)), messages)
        assert not (lay.sample_dir(root, bad) / f"{lay.sample_id(bad)}_info.yaml").exists()
    assert (lay.sample_dir(root, good) / f"{lay.sample_id(good)}_info.yaml").is_file()
    assert (lay.sample_dir(root, good) / f"{lay.sample_id(good)}_mask.nii.gz").is_file()
    assert "Traceback" not in caplog.text and "Traceback" not in capsys.readouterr().err
    assert leftover_temporaries(root) == []
    assert tree_digest(archive) == before


@pytest.mark.parametrize("dataset", sorted(LAYOUTS))
def test_spaces_and_unicode_in_paths(dataset, tmp_path):
    lay = LAYOUTS[dataset]
    root = tmp_path / "my archive ü 数据"
    make_mini_archive(root, lay)
    assert lay.run_to_dataset_manifest(root) == [0] * (5 if dataset == "verse" else 4)
    manifest = read_sheet(root / "grouped/dataset_manifest.xlsx")
    assert sorted(manifest["ID"]) == sorted(lay.sample_id(n) for n in lay.names)


# --- run-level cases -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", sorted(LAYOUTS))
def test_archive_without_nifti_files_is_an_error(dataset, tmp_path, caplog):
    root = tmp_path / "r"
    (root / "archive/empty").mkdir(parents=True)
    (root / "archive/notes.txt").write_text("no images here")
    assert LAYOUTS[dataset].run_01(root) == 2
    _one_line_with(f"--root_dir {root / 'archive'}: no NIfTI file (.nii, .nii.gz) found below it; nothing written", _messages(caplog.records))
    assert not (root / "descriptor/archive_manifest.xlsx").exists()


@pytest.mark.parametrize("dataset", sorted(LAYOUTS))
def test_archive_manifest_without_rows_is_one_line(dataset, tmp_path, caplog):
    lay = LAYOUTS[dataset]
    root = tmp_path / "r"
    make_mini_archive(root, lay)
    assert lay.run_01(root) == 0
    path = root / "descriptor/archive_manifest.xlsx"
    columns = list(read_sheet(path).columns)
    write_sheets(path, {"Manifest": pd.DataFrame(columns=columns), "Skipped": pd.DataFrame(columns=["file_path", "reason"])})
    caplog.clear()
    assert lay.run_02(root) == 2
    _one_line_with(f"{path}: sheet 'Manifest' lists no archive file; nothing to pair", _messages(caplog.records))
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("dataset", sorted(LAYOUTS))
def test_files_outside_the_rules_only_give_an_empty_manifest_and_exit_1(dataset, tmp_path, caplog):
    root = tmp_path / "r"
    write_raw_nifti(root / "archive/elsewhere/scan.nii.gz", np.zeros(SHAPE, np.int16), AFFINE)
    assert LAYOUTS[dataset].run_01(root) == 1
    assert read_sheet(root / "descriptor/archive_manifest.xlsx", "Skipped")["file_path"].tolist() == ["elsewhere/scan.nii.gz"]
    _one_line_with("none of the 1 NIfTI files below", _messages(caplog.records))


@pytest.mark.parametrize("dataset", sorted(LAYOUTS))
def test_malformed_label_map_copy_stops_routine_01_before_the_work(dataset, tmp_path, caplog):
    lay = LAYOUTS[dataset]
    root = tmp_path / "r"
    make_mini_archive(root, lay)
    label_map = root / "descriptor/label_map.yaml"
    label_map.parent.mkdir(parents=True)
    label_map.write_text("labels:\n  0: {name: background, short: Bg}\n  1: {name: x, short: [unclosed\n")
    assert lay.run_01(root) == 2
    line = _one_line_with(f"{label_map}: label map is not valid YAML (line ", _messages(caplog.records))
    assert "column" in line
    assert not (root / "descriptor/archive_manifest.xlsx").exists()
    assert "scan archive" not in caplog.text and "Traceback" not in caplog.text


@pytest.mark.parametrize("dataset", sorted(LAYOUTS))
def test_malformed_label_explanation_is_one_line(dataset, tmp_path, caplog):
    lay = LAYOUTS[dataset]
    root = tmp_path / "r"
    make_mini_archive(root, lay)
    assert lay.run_01(root) == 0 and lay.run_02(root) == 0
    bad = tmp_path / "map.yaml"
    bad.write_text("labels: {0: {name: background, short: Bg}\n  1 x: : :\n")
    caplog.clear()
    assert run_script(lay.script("bin"), "--root_dir", root / "grouped", "--label_explanation", bad) == 2
    _one_line_with(f"{bad}: label map is not valid YAML (line ", _messages(caplog.records))
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1


def test_output_folder_that_cannot_be_created_fails_before_reading_the_archive(tmp_path, caplog):
    lay = LAYOUTS["verse"]
    root = tmp_path / "r"
    make_mini_archive(root, lay)
    blocker = tmp_path / "a_file"
    blocker.write_text("I am a file")
    out = blocker / "descriptor/archive_manifest.xlsx"
    assert run_script(lay.script("01"), "--root_dir", root / "archive", "--output_manifest_file", out) == 2
    _one_line_with(f"--output_manifest_file {out.parent}: cannot create the folder, {blocker} is not a folder", _messages(caplog.records))
    assert "scan archive" not in caplog.text
    caplog.clear()
    assert lay.run_01(root) == 0
    assert lay.run_02(root, "--output_dir", blocker / "grouped") == 2  # later --output_dir wins
    _one_line_with("--output_dir", _messages(caplog.records))


@pytest.mark.parametrize("option_index", [0, 1])
def test_xlsx_outputs_need_an_xlsx_name(option_index, tmp_path, caplog):
    lay = LAYOUTS["nme"]
    root = tmp_path / "r"
    make_mini_archive(root, lay)
    if option_index == 0:
        rc = run_script(lay.script("01"), "--root_dir", root / "archive", "--output_manifest_file", tmp_path / "am.csv")
    else:
        assert lay.run_01(root) == 0 and lay.run_02(root) == 0
        rc = run_script(lay.script("dm"), "--root_dir", root / "grouped", "--output_manifest_file", tmp_path / "dm.csv")
    assert rc == 2
    _one_line_with("am.csv: the file is written as .xlsx; give a name ending in .xlsx" if option_index == 0 else "dm.csv: the file is written as .xlsx", _messages(caplog.records))
    assert not list(tmp_path.glob("*.csv"))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """Each dataset's tiny archive taken to the dataset manifest and one split sheet."""
    roots = {}
    for name, lay in LAYOUTS.items():
        root = tmp_path_factory.mktemp(name)
        make_mini_archive(root, lay)
        assert all(c == 0 for c in lay.run_to_dataset_manifest(root))
        assert run_script(lay.script("split"), "--manifest_file", root / "grouped/dataset_manifest.xlsx", *lay.split_args()) == 0
        roots[name] = root
    return roots


@pytest.mark.parametrize("dataset", sorted(LAYOUTS))
def test_dataset_manifest_without_id_column_is_refused_by_split_and_index_routines(dataset, built, tmp_path, caplog):
    lay = LAYOUTS[dataset]
    manifest = tmp_path / "dataset_manifest.xlsx"
    split = lay.split_args()[1]
    sheets = {s: read_sheet(built[dataset] / "grouped/dataset_manifest.xlsx", s).drop(columns=["ID"]) for s in ("Manifest", split)}
    write_sheets(manifest, sheets)
    assert run_script(lay.script("split"), "--manifest_file", manifest, *lay.split_args()) == 2
    _one_line_with(f"{manifest} (sheet 'Manifest') lacks column(s) ['ID']", _messages(caplog.records))
    caplog.clear()
    out = tmp_path / "splits"
    assert run_script(lay.script("index"), "--manifest_file", manifest, "--split_name", split, "--output_index_manifest_dir", out, "--subsets", "test") == 2
    _one_line_with(f"{manifest} (sheet '{split}') lacks column(s) ['ID']", _messages(caplog.records))
    assert not out.exists()


def test_missing_column_message_names_the_file(built, tmp_path, caplog):
    manifest = tmp_path / "dm.xlsx"
    write_sheets(manifest, {"Manifest": read_sheet(built["verse"] / "grouped/dataset_manifest.xlsx").drop(columns=["subset"])})
    assert run_script(LAYOUTS["verse"].script("split"), "--manifest_file", manifest, "--split_name", "s1") == 2
    _one_line_with(f"{manifest} (sheet 'Manifest') lacks column(s) ['subset']", _messages(caplog.records))


@pytest.mark.parametrize("dataset", sorted(LAYOUTS))
def test_deleted_binary_mask_fails_the_dataset_manifest(dataset, built, tmp_path, caplog):
    lay = LAYOUTS[dataset]
    root = tmp_path / "copy"
    shutil.copytree(built[dataset], root)
    sid = lay.sample_id(lay.names[1])
    victim = next(lay.sample_dir(root, lay.names[1]).glob(f"{sid}_mask_01_*.nii.gz"))
    victim.unlink()
    out = root / "grouped/dataset_manifest.xlsx"
    before = out.read_bytes()
    assert run_script(lay.script("dm"), "--root_dir", root / "grouped", "--output_manifest_file", out) == 1
    _one_line_with(f"{victim}: binary mask missing", _messages(caplog.records))
    assert out.read_bytes() == before  # nothing written without --skip_invalid


def test_binary_mask_deleted_before_any_record_is_caught_by_comparison(built, tmp_path, caplog):
    lay = LAYOUTS["nme"]
    root = tmp_path / "copy"
    shutil.copytree(built["nme"], root)
    folder = lay.sample_dir(root, lay.names[1])
    info = read_info(folder / f"{lay.sample_id(lay.names[1])}_info.yaml")
    info["history"] = [h for h in info["history"] if h["step"] != "extract_binary_masks"]  # e.g. an older version wrote it
    from utils.files.sample_info import write_info

    write_info(folder / f"{lay.sample_id(lay.names[1])}_info.yaml", info)
    victim = folder / f"{lay.sample_id(lay.names[1])}_mask_01_NME.nii.gz"
    victim.unlink()
    assert run_script(lay.script("dm"), "--root_dir", root / "grouped", "--output_manifest_file", root / "dm.xlsx") == 1
    _one_line_with(f"{victim}: binary mask missing (1 that other samples have", _messages(caplog.records))


# --- metadata sheets: the same rules everywhere -----------------------------------------------------------


def _verse_participants(path: Path, rows: list[list[object]]) -> Path:
    wb = Workbook()
    ws = wb.active
    ws.title = "VerSe_dataset"
    ws.append(["verse_ID", "subject_ID", "Sex", "age_ct"])
    for row in rows:
        ws.append(row)
    wb.save(path)
    return path


def test_verse_participants_formula_and_implausible_values_are_reported(tmp_path, caplog):
    lay = LAYOUTS["verse"]
    root = tmp_path / "r"
    archive = make_mini_archive(root, lay)
    sheet = _verse_participants(archive / "participants.xlsx", [
        [601, 601, '=HYPERLINK("http://pacs.example/601","M")', 64],
        [602, 602, "F" * 10_000, "9" * 10_000],
    ])  # fmt: skip
    assert lay.run_01(root, "--participants", sheet) == 0
    m = read_sheet(root / "descriptor/archive_manifest.xlsx").set_index("file_path")
    assert m.loc[lay.volume_rel("verse601"), "sex"] is None and m.loc[lay.volume_rel("verse601"), "age"] == 64
    assert m.loc[lay.volume_rel("verse602"), "sex"] is None and m.loc[lay.volume_rel("verse602"), "age"] is None
    messages = _messages(caplog.records)
    _one_line_with("participants.xlsx row 2 (pid 601), column 'Sex': value '=HYPERLINK(\"http://pacs.example/601\",\"M\")': is a live formula", messages)
    _one_line_with("participants.xlsx row 3 (pid 602), column 'Sex': value 'FFFF", messages)
    _one_line_with(("column 'Sex': value 'FFFF", "text of 10000 characters (more than 1000); left empty"), messages)
    _one_line_with(("pid 601", "not a plausible sex value (41 characters; at most 16 expected); left empty"), messages)
    _one_line_with("column 'age_ct': value '9999", messages)
    assert all(len(msg) < 400 for msg in messages)  # the 10,000 characters are not copied into the log


def test_verse_participants_csv_follows_the_same_rules(tmp_path, caplog):
    lay = LAYOUTS["verse"]
    root = tmp_path / "r"
    archive = make_mini_archive(root, lay)
    csv = archive.parent / "people.csv"
    csv.write_text("verse_ID,subject_ID,Sex,age_ct\n601,601,=1+1,200\n602,602,M,70\n")
    assert lay.run_01(root, "--participants", csv) == 0
    m = read_sheet(root / "descriptor/archive_manifest.xlsx").set_index("file_path")
    assert m.loc[lay.volume_rel("verse601"), "sex"] == "=1+1" and m.loc[lay.volume_rel("verse601"), "age"] is None
    assert m.loc[lay.volume_rel("verse602"), "sex"] == "M"
    _one_line_with("people.csv row 2 (pid 601), column 'Sex': value '=1+1': looks like a spreadsheet formula; kept as text", _messages(caplog.records))
    _one_line_with("column 'age_ct': value '200': not a plausible age (expected 0 to 150 years); left empty", _messages(caplog.records))


def test_eso_metadata_with_a_huge_sex_value_is_reported(tmp_path, caplog):
    lay = LAYOUTS["eso"]
    root = tmp_path / "r"
    archive = make_mini_archive(root, lay)
    wb = Workbook()
    ws = wb.active
    ws.append(["pid", "Sex", "Age", "Notes"])
    ws.append(["111", "x" * 10_000, 61, "n" * 2000])
    ws.append(["222", "F", -3, "ok"])
    wb.save(archive / "data_meta_tongji.xlsx")
    assert lay.run_01(root) == 0
    m = read_sheet(root / "descriptor/archive_manifest.xlsx").set_index("file_path")
    row111, row222 = m.loc[lay.volume_rel("111")], m.loc[lay.volume_rel("222")]
    assert row111["Sex"] is None and row111["Age"] == 61 and row111["Notes"] is None
    assert row222["Sex"] == "F" and row222["Age"] is None and row222["Notes"] == "ok"
    issues = read_sheet(root / "descriptor/archive_manifest.xlsx", "MetadataIssues")
    problems = " | ".join(issues["problem"])
    assert "text of 10000 characters" in problems and "text of 2000 characters" in problems and "not a plausible age" in problems


# --- running outside the environment -------------------------------------------------------------------


def test_script_without_dependencies_says_what_to_install(tmp_path):
    """``python -S`` hides site-packages: the toolkit's dependencies are missing, as with the system Python."""
    result = subprocess.run([sys.executable, "-S", str(REPO / "verse/02_confirm_pairs.py"), "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ERROR 02_confirm_pairs: missing Python package(s) nibabel, numpy")
    assert "requirements.txt" in lines[0] and "Traceback" not in result.stderr


def test_mask_qc_outputs_are_checked_before_the_work(built, tmp_path, caplog):
    grouped = built["eso"] / "grouped"
    assert run_script("utils/small_connected_region_detect.py", "--root_dir", grouped, "--region_volume_thresh", "300", "--output_manifest", tmp_path / "r.csv") == 2
    _one_line_with("--output_manifest", _messages(caplog.records))
    assert "small regions" not in caplog.text
    blocker = tmp_path / "file"
    blocker.write_text("x")
    caplog.clear()
    rc = run_script("utils/mask_thresholding.py", "--root_dir", grouped, "--output_dir", blocker / "out", "--thresh", "-140", "1000")
    assert rc == 2
    _one_line_with(f"--output_dir {blocker / 'out'}: cannot create the folder", _messages(caplog.records))
