"""Geometry every reader agrees on, end to end (issue 17).

- Every output NIfTI of the three demo archives (grouped volumes, masks, binary masks, the mask-QC
  tools' rewrites, the training exports) is read by nibabel and SimpleITK: same size, spacing,
  direction and origin (corner displacement <= 1e-4 mm).
- An edge-case archive (``tests/geometry_cases.py``: no codes, pixdim != sform, sheared sform,
  qform != sform, oblique, permuted axes with qfac -1, big-endian, scl_slope/inter, a mask written
  by SimpleITK on an oblique volume, int32 beyond float32, complex, metres, upper-case and plain
  .nii names, and headers that cannot be real) gets its documented outcome and message from
  routines 01 and 02, and again every output is read alike; routines 03-05 then run without
  a traceback.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import run_script
from tests.geometry_cases import (
    BASE, CANNOT_BE_REAL, NEEDS_OPTION, OBLIQUE, SKIPPED_ENTRIES, WRITTEN, edge_rel, header, make_edge_archive, reader_gaps,
    sitk_geometry, sitk_mask_on, volume_data, write_header_file,
)  # fmt: skip
from tests.mini_archives import LAYOUTS, leftover_temporaries, make_mini_archive
from tests.test_golden_outputs import _pipeline_commands
from utils.files.sample_info import read_info
from utils.files.spreadsheet import read_sheet

sitk = pytest.importorskip("SimpleITK")
sitk.ProcessObject_SetGlobalWarningDisplay(False)

OUTPUT_TOL_MM = 1e-4


def assert_every_output_read_alike(folder: Path) -> int:
    """Every .nii.gz below ``folder``: nibabel and SimpleITK give the same size, spacing, direction and origin."""
    files = sorted(folder.rglob("*.nii.gz"))
    bad = {}
    for path in files:
        gaps = reader_gaps(path)
        if gaps["size"] or gaps["spacing"] > 1e-6 or gaps["direction"] > 1e-6 or gaps["corner_mm"] > OUTPUT_TOL_MM:
            bad[str(path.relative_to(folder))] = gaps
    assert not bad, bad
    return len(files)


# --- the demo archives ------------------------------------------------------------------------------------

_SPLIT_AND_EXPORT = {
    "verse": ("split01_standard", ("verse/06_make_split.py", "--split_name", "split01_standard")),
    "nme": ("split01_Tongji", ("nme/05_make_split_predefined.py", "--split_name", "split01_Tongji", "--site", "Tongji", "--collection", "train-val", "test-inner-01")),
    "eso": ("split01_TJ", ("eso/05_make_split.py", "--split_name", "split01_TJ", "--site", "TJ", "--test_ratio", "0.4", "--val_ratio", "0.2", "--random_seed", "0")),
}  # fmt: skip


@pytest.mark.parametrize("dataset", ["verse", "nme", "eso"])
def test_every_demo_output_is_read_alike_by_nibabel_and_simpleitk(dataset, tmp_path):
    assert run_script("demo/make_demo_archive.py", dataset, tmp_path) == 0
    for script, *argv in _pipeline_commands(dataset, tmp_path):
        assert run_script(script, *argv, "--no_pbar", "-q") in (0, 1)
    split, (script, *argv) = _SPLIT_AND_EXPORT[dataset]
    manifest = tmp_path / "grouped/dataset_manifest.xlsx"
    assert run_script(script, "--manifest_file", manifest, *argv, "-q") == 0
    export = ("utils/export_dataset.py", "--manifest_file", manifest, "--split_name", split, "--output_dir", tmp_path / "export", "-q", "--no_pbar")
    assert run_script(*export) == 0
    assert assert_every_output_read_alike(tmp_path / "grouped") > 20
    assert assert_every_output_read_alike(tmp_path / "export") > 4
    archive = read_sheet(tmp_path / "descriptor/archive_manifest.xlsx")
    assert set(archive["readers_agree"]) == {1}  # the demo archives' own files are consistent too


# --- the edge-case archive --------------------------------------------------------------------------------


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _run(*argv) -> tuple[int, list[str]]:
    handler = _Lines()
    logging.getLogger().addHandler(handler)
    try:
        return run_script(*(str(a) for a in argv), "--no_pbar"), handler.lines
    finally:
        logging.getLogger().removeHandler(handler)


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    """The edge-case archive after routine 01, routine 02 without options, then with both geometry options."""
    root = tmp_path_factory.mktemp("edge")
    archive = make_edge_archive(root)
    manifest = root / "descriptor/archive_manifest.xlsx"
    pairs = ("verse/02_confirm_pairs.py", "--root_dir", archive, "--output_dir", root / "grouped", "--archive_manifest", manifest)
    rc01, lines01 = _run("verse/01_gen_archive_manifest.py", "--root_dir", archive, "--output_manifest_file", manifest)
    rc02, lines02 = _run(*pairs)
    rc02_opt, lines02_opt = _run(*pairs, "--trust_uncoded_geometry", "itk", "--resample_sheared")
    return {"root": root, "archive": archive, "rc01": rc01, "lines01": lines01, "rc02": rc02, "lines02": lines02,
            "rc02_opt": rc02_opt, "lines02_opt": lines02_opt, "pairs": pairs}  # fmt: skip


def _row(frame, subject, kind="ct"):
    rel = edge_rel(subject, kind)
    hits = frame[frame["file_path"].str.lower() == rel.lower()]
    if hits.empty:  # upper-case and .nii names
        hits = frame[frame["file_path"].str.lower().str.replace(".nii.gz", ".nii") == rel.lower().replace(".nii.gz", ".nii")]
    assert len(hits) == 1, rel
    return hits.iloc[0]


def _sample(edge, subject) -> Path:
    return edge["root"] / "grouped/VerSe20/train" / subject


def _one_line(lines, *needles):
    hits = [line for line in lines if all(n in line for n in needles)]
    assert hits, f"no line with {needles}:\n" + "\n".join(lines)
    assert all("\n" not in h for h in hits)
    return hits[0]


@pytest.mark.parametrize(
    "subject, agree, codes",
    [("edge001", 1, ""), ("edge002", 0, "NO_SPATIAL_CODES"), ("edge003", 0, "PIXDIM_SFORM_MISMATCH"),
     ("edge004", 0, "SHEARED_SFORM"), ("edge005", 0, "QFORM_SFORM_MISMATCH"), ("edge006", 1, ""), ("edge007", 1, ""),
     ("edge008", 1, ""), ("edge009", 1, ""), ("edge010", 1, "INT_BEYOND_FLOAT32"), ("edge011", 1, "COMPLEX_DATA"),
     ("edge012", 0, "SPATIAL_UNITS_NOT_MM"), ("edge013", 1, ""), ("edge014", 1, "")],
)  # fmt: skip
def test_routine_01_records_each_files_reader_agreement(edge, subject, agree, codes):
    manifest = read_sheet(edge["root"] / "descriptor/archive_manifest.xlsx")
    row = _row(manifest, subject)
    assert int(row["readers_agree"]) == agree
    warnings = "" if not isinstance(row["file_warnings"], str) else row["file_warnings"]
    assert (codes in warnings) if codes else warnings == ""
    if not agree:
        _one_line(edge["lines01"], row["file_path"], codes, "readers disagree")


def test_routine_01_spells_a_big_endian_dtype_like_a_little_endian_one(edge):
    manifest = read_sheet(edge["root"] / "descriptor/archive_manifest.xlsx")
    assert _row(manifest, "edge007")["dtype"] == "int16"
    assert nib.load(edge["archive"] / edge_rel("edge007", "ct")).header.endianness == ">"


def test_routine_01_lists_every_file_that_cannot_be_real_or_be_read_in_skipped(edge):
    assert edge["rc01"] == 0
    skipped = read_sheet(edge["root"] / "descriptor/archive_manifest.xlsx", "Skipped")
    reasons = dict(zip(skipped["file_path"], skipped["reason"]))
    for subject, words in CANNOT_BE_REAL.items():
        reason = reasons[edge_rel(subject, "ct")]
        assert words in reason and "\n" not in reason, (subject, reason)
    for rel, words in SKIPPED_ENTRIES.items():
        assert words in reasons[rel], (rel, reasons.get(rel))
    manifest = read_sheet(edge["root"] / "descriptor/archive_manifest.xlsx")
    assert not [p for p in manifest["file_path"] if "bad0" in p and "_ct" in p]
    assert "Traceback" not in "\n".join(edge["lines01"]) and "Level 35" not in "\n".join(edge["lines01"])


def test_routine_02_refuses_what_it_cannot_decide_alone_naming_the_cause(edge):
    assert edge["rc02"] == 1
    lines = edge["lines02"]
    vol = str(edge["archive"] / edge_rel("edge002", "ct"))
    _one_line(lines, f"{vol}: no spatial codes (qform_code 0, sform_code 0)", "--trust_uncoded_geometry itk", "LPS", "LAS")
    vol = str(edge["archive"] / edge_rel("edge004", "ct"))
    _one_line(lines, f"{vol}: sheared sform (axes 15° from perpendicular", "perpendicular expected", "--resample_sheared")
    for subject, words in CANNOT_BE_REAL.items():
        _one_line(lines, f"volume {edge_rel(subject, 'ct')} was skipped by routine 01 (", words)
    assert "Traceback" not in "\n".join(lines)
    assert leftover_temporaries(edge["root"]) == []


@pytest.mark.parametrize("subject", sorted(WRITTEN))
def test_routine_02_writes_the_other_problem_samples(edge, subject):
    sample = _sample(edge, subject)
    assert (sample / f"{subject}_volume.nii.gz").is_file() and (sample / f"{subject}_mask.nii.gz").is_file()
    info = read_info(sample / f"{subject}_info.yaml")
    assert info["geometry"]["volume"]["readers_agree"] == (subject not in ("edge003", "edge005", "edge012"))


def test_pixdim_and_qform_problems_take_the_sform_with_a_warning(edge):
    for subject, words in (("edge003", "disagrees with the sform's spacing (0.9, 1.1, 3) mm; the sform was used"),
                           ("edge005", "qform and sform disagree by up to 2 mm; the sform was used")):  # fmt: skip
        sample = _sample(edge, subject)
        written = nib.load(sample / f"{subject}_volume.nii.gz").affine
        archive = nib.load(edge["archive"] / edge_rel(subject, "ct")).header.get_sform()
        assert np.allclose(written, archive, atol=1e-6)
        info = read_info(sample / f"{subject}_info.yaml")
        assert any(words in w for w in info["warnings"]), info["warnings"]
        assert info["geometry"]["volume"]["taken_from"] == "sform"


def test_metres_are_written_in_mm_as_itk_read_the_archive_file(edge):
    written = sitk_geometry(_sample(edge, "edge012") / "edge012_volume.nii.gz")
    archive = sitk_geometry(edge["archive"] / edge_rel("edge012", "ct"))
    for key in ("spacing", "direction", "origin"):
        assert np.allclose(written[key], archive[key], atol=1e-4), key
    assert np.allclose(written["spacing"], [0.8, 0.9, 2.5], atol=1e-5)


def test_voxel_values_survive_byte_order_scaling_complex_and_int32(edge):
    def written(subject):
        return np.asanyarray(nib.load(_sample(edge, subject) / f"{subject}_volume.nii.gz").dataobj)

    assert np.array_equal(written("edge007"), volume_data().astype(np.float32))
    assert np.array_equal(written("edge008"), volume_data().astype(np.float32) * 2 - 1024)
    assert np.array_equal(written("edge011"), volume_data().astype(np.float32))
    wide = volume_data(np.int32)
    wide[0, 0, 0], wide[1, 0, 0] = 2**24 + 1, -(2**30) - 3
    assert np.array_equal(written("edge010"), wide.astype(np.float32))
    info = read_info(_sample(edge, "edge010") / "edge010_info.yaml")
    _one_line(info["warnings"], "2 int32 voxels hold values float32 cannot represent exactly", "changes them by up to 3")
    assert info["source"]["volume_dtype_in_archive"] == "int32"
    assert read_info(_sample(edge, "edge007") / "edge007_info.yaml")["source"]["volume_byte_order"] == "big"


def test_a_mask_written_by_simpleitk_on_an_oblique_volume_is_accepted(edge):
    info = read_info(_sample(edge, "edge009") / "edge009_info.yaml")
    assert info["source"]["alignment"]["method"] in ("identical", "affine_copied")
    assert info["geometry"]["mask"]["readers_agree"] is True


def test_options_let_the_refused_samples_through_and_are_recorded(edge):
    assert edge["rc02_opt"] == 1  # the files that cannot be real stay refused
    info = read_info(_sample(edge, "edge002") / "edge002_info.yaml")
    assert info["geometry"]["volume"]["taken_from"] == "itk guess"
    assert info["built_from"]["params"]["trust_uncoded_geometry"] == "itk"
    assert info["history"][0]["params"]["trust_uncoded_geometry"] == "itk"
    written = nib.load(_sample(edge, "edge002") / "edge002_volume.nii.gz").affine
    assert np.allclose(written[:3, 3], 0) and nib.aff2axcodes(written) == ("L", "P", "S")  # ITK's guess: LPS, origin 0
    info = read_info(_sample(edge, "edge004") / "edge004_info.yaml")
    rigid = np.array(info["geometry"]["resampled_to_rigid"]["rigid_affine"])
    cols = rigid[:3, :3] / np.linalg.norm(rigid[:3, :3], axis=0)
    assert np.allclose(cols.T @ cols, np.eye(3), atol=1e-9)
    assert info["history"][0]["params"]["resample_sheared"] is True
    _one_line(info["warnings"], "sheared grid (axes 15° from perpendicular) resampled onto the nearest rigid grid")


def test_every_edge_case_output_is_read_alike_and_later_routines_run(edge, tmp_path):
    root = tmp_path / "r"
    shutil.copytree(edge["root"], root, symlinks=True)
    g = root / "grouped"
    for argv in (
        ("verse/03_reduce_sacrum_cocygis_and_revise_T13_label.py", "--root_dir", g),
        ("verse/04_extract_binary_masks.py", "--root_dir", g, "--label_explanation", root / "descriptor/label_map.yaml"),
        ("verse/05_gen_dataset_manifest.py", "--root_dir", g, "--output_manifest_file", g / "dataset_manifest.xlsx"),
    ):
        rc, lines = _run(*argv)
        assert rc == 0 and "Traceback" not in "\n".join(lines), (argv[0], lines[-5:])
    assert assert_every_output_read_alike(g) == (len(WRITTEN) + len(NEEDS_OPTION)) * 29  # volume, mask, 27 binary masks


def test_a_rerun_without_the_options_refuses_again_and_leaves_the_samples(edge, tmp_path):
    root = tmp_path / "r"
    shutil.copytree(edge["root"], root, symlinks=True)
    pairs = [str(a).replace(str(edge["root"]), str(root)) for a in edge["pairs"]]
    before = (root / "grouped/VerSe20/train/edge002/edge002_volume.nii.gz").read_bytes()
    rc, lines = _run(*pairs)
    assert rc == 1
    _one_line(lines, "edge002", "no spatial codes", "--trust_uncoded_geometry itk")
    assert (root / "grouped/VerSe20/train/edge002/edge002_volume.nii.gz").read_bytes() == before
    rc, lines = _run(*pairs, "--trust_uncoded_geometry", "itk", "--resample_sheared")
    _one_line(lines, "grouped dataset in", "0 samples written", f"{len(WRITTEN) + len(NEEDS_OPTION)} up to date")


# --- masks drawn in an ITK tool on a volume the readers read differently -------------------------------------


def test_refusal_of_an_itk_drawn_mask_names_the_volume_header_cause(tmp_path):
    a = tmp_path / "archive"
    h = header(None)
    h.set_sform(np.diag([0.9, 1.1, 3.0, 1.0]), code=1)
    h["qform_code"] = 0
    write_header_file(a / edge_rel("hint001", "ct"), h, volume_data())
    write_header_file(a / edge_rel("hint002", "ct"), header(None), volume_data())
    h = header(BASE, qcode=1, scode=2)
    h["srow_x"][3] += 2.0
    write_header_file(a / edge_rel("hint003", "ct"), h, volume_data())
    write_header_file(a / edge_rel("hint004", "ct"), header(OBLIQUE), volume_data())
    for subject in ("hint001", "hint002", "hint003", "hint004"):
        sitk_mask_on(a / edge_rel(subject, "ct"), a / edge_rel(subject, "msk"))
    manifest = tmp_path / "d/archive_manifest.xlsx"
    assert _run("verse/01_gen_archive_manifest.py", "--root_dir", a, "--output_manifest_file", manifest)[0] == 0
    rc, lines = _run("verse/02_confirm_pairs.py", "--root_dir", a, "--output_dir", tmp_path / "g", "--archive_manifest", manifest,
                     "--trust_uncoded_geometry", "nibabel")  # fmt: skip
    assert rc == 1
    mask = str(a / edge_rel("hint001", "msk"))
    line = _one_line(lines, f"{mask}: mask grid does not match the volume grid", "as ITK reads the volume", "PIXDIM_SFORM_MISMATCH")
    assert "allow nearest-neighbour resampling" not in line
    _one_line(lines, f"{a / edge_rel('hint002', 'msk')}: mask grid", "(NO_SPATIAL_CODES)", "pass --trust_uncoded_geometry itk")
    _one_line(lines, f"{a / edge_rel('hint003', 'msk')}: mask grid", "(QFORM_SFORM_MISMATCH)", "as ITK reads the volume")
    assert (tmp_path / "g/VerSe20/train/hint004/hint004_mask.nii.gz").is_file()  # consistent oblique volume: accepted


def test_oblique_grids_are_named_oblique_in_routine_02s_messages(tmp_path):
    a = tmp_path / "archive"
    write_header_file(a / edge_rel("obl001", "ct"), header(OBLIQUE), volume_data())
    shifted = OBLIQUE.copy()
    shifted[0, 3] += 5.0
    write_header_file(a / edge_rel("obl001", "msk"), header(shifted, dtype=np.uint8), np.zeros((6, 6, 5), np.uint8))
    manifest = tmp_path / "d/archive_manifest.xlsx"
    assert _run("verse/01_gen_archive_manifest.py", "--root_dir", a, "--output_manifest_file", manifest)[0] == 0
    rc, lines = _run("verse/02_confirm_pairs.py", "--root_dir", a, "--output_dir", tmp_path / "g", "--archive_manifest", manifest)
    assert rc == 1
    _one_line(lines, "orientation Oblique(closest to ", "volume shape (6, 6, 5) orientation Oblique(closest to ")


# --- every dataset: the same refusals, no traceback -----------------------------------------------------------


def _no_codes(a, lay, name):
    write_header_file(a / lay.volume_rel(name), header(None), volume_data())


def _zero_axis(a, lay, name):
    write_header_file(a / lay.volume_rel(name), header(BASE, shape=(6, 6, 0)), np.zeros((6, 6, 0), np.int16))


def _dangling(a, lay, name):
    (a / lay.volume_rel(name)).unlink()
    (a / lay.volume_rel(name)).symlink_to(a / "gone.nii.gz")


def _folder(a, lay, name):
    (a / lay.volume_rel(name)).unlink()
    (a / lay.volume_rel(name)).mkdir()


CASES = {
    "no_codes": (_no_codes, None, "no spatial codes (qform_code 0, sform_code 0)"),
    "zero_axis": (_zero_axis, "zero or negative length axis", "was skipped by routine 01 (image has a zero or negative length axis"),
    "dangling_link": (_dangling, "dangling symbolic link", "was skipped by routine 01 (dangling symbolic link"),
    "folder": (_folder, "a folder named like a NIfTI file", "was skipped by routine 01 (a folder named like a NIfTI file"),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dataset", sorted(LAYOUTS))
def test_every_dataset_refuses_in_one_line_and_writes_the_rest(dataset, case, tmp_path):
    lay = LAYOUTS[dataset]
    good, bad = lay.names
    root = tmp_path / "root"
    archive = make_mini_archive(root, lay)
    mutate, skipped_words, line_words = CASES[case]
    mutate(archive, lay, bad)
    rc, lines = _run(lay.script("01"), "--root_dir", archive, "--output_manifest_file", root / "descriptor/archive_manifest.xlsx")
    assert rc == 0
    skipped = read_sheet(root / "descriptor/archive_manifest.xlsx", "Skipped")
    reasons = dict(zip(skipped["file_path"], skipped["reason"]))
    if skipped_words:
        assert skipped_words in reasons[lay.volume_rel(bad)]
    rc, lines = _run(lay.script("02"), "--root_dir", archive, "--output_dir", root / "grouped", "--archive_manifest", root / "descriptor/archive_manifest.xlsx")
    assert rc == 1
    _one_line(lines, line_words)
    assert (lay.sample_dir(root, good) / f"{lay.sample_id(good)}_volume.nii.gz").is_file()
    assert "Traceback" not in "\n".join(lines)


def test_export_refuses_a_grouped_file_edited_into_two_geometries(tmp_path):
    from utils.export.cases import ExportCase
    from utils.export.verify import check_case
    from utils.files.nifti_io import NiftiError

    h = header(None)
    h.set_sform(np.diag([0.9, 1.1, 3.0, 1.0]), code=1)
    volume = write_header_file(tmp_path / "v.nii.gz", h, volume_data().astype(np.float32))
    case = ExportCase(case_id="v", patient_id="p", subset="train", volume=volume, mask=None, valid_labels=None)
    with pytest.raises(NiftiError, match=r"v\.nii\.gz: nibabel and ITK \(nnU-Net's reader\) read this file differently .*PIXDIM_SFORM_MISMATCH"):
        check_case(case, {0, 1}, headers_only=True)


def test_runtime_code_never_imports_simpleitk():
    from tests.conftest import REPO

    sources = [p for d in ("utils", "verse", "nme", "eso", "demo", "benchmarks") for p in (REPO / d).rglob("*.py")]
    offenders = [str(p) for p in sources if "import SimpleITK" in p.read_text() or "from SimpleITK" in p.read_text()]
    assert not offenders


@pytest.mark.parametrize("which", ["volume", "mask"])
def test_a_nan_affine_is_never_resampled_into_an_output(which, tmp_path):
    lay = LAYOUTS["verse"]
    good, bad = lay.names
    root = tmp_path / "root"
    archive = make_mini_archive(root, lay)
    h = header(BASE)
    h["srow_y"][3] = np.nan
    rel = lay.volume_rel(bad) if which == "volume" else lay.mask_rel(bad)
    data = volume_data() if which == "volume" else np.ones((6, 6, 5), np.uint8)
    h.set_data_dtype(data.dtype)
    write_header_file(archive / rel, h, data)
    manifest = root / "descriptor/archive_manifest.xlsx"
    assert _run(lay.script("01"), "--root_dir", archive, "--output_manifest_file", manifest)[0] == 0
    reasons = dict(zip(*(read_sheet(manifest, "Skipped")[c] for c in ("file_path", "reason"))))
    assert "sform holds non-finite values" in reasons[rel]
    rc, lines = _run(lay.script("02"), "--root_dir", archive, "--output_dir", root / "grouped", "--archive_manifest", manifest,
                     "--resample_mismatched_masks")  # fmt: skip
    assert rc == 1
    line = _one_line(lines, f"{which} {rel} was skipped by routine 01 (", "sform holds non-finite values")
    assert "grid" not in line.split("skipped by routine 01")[1]  # not a "grid mismatch to be fixed by resampling"
    assert not lay.sample_dir(root, bad).exists()
    assert (lay.sample_dir(root, good) / f"{lay.sample_id(good)}_mask.nii.gz").is_file()


@pytest.mark.parametrize("bad", ["zero_axis", "nan_sform", "rgb"])
def test_a_grouped_file_that_cannot_be_real_stops_later_routines_in_one_line(bad, tmp_path):
    lay = LAYOUTS["verse"]
    _good, victim = lay.names
    root = tmp_path / "root"
    make_mini_archive(root, lay)
    assert lay.run_01(root) == 0 and lay.run_02(root) == 0
    mask = lay.sample_dir(root, victim) / f"{lay.sample_id(victim)}_mask.nii.gz"
    if bad == "zero_axis":
        write_header_file(mask, header(BASE, dtype=np.uint8, shape=(6, 6, 0)), np.zeros((6, 6, 0), np.uint8))
    elif bad == "nan_sform":
        h = header(BASE, dtype=np.uint8)
        h["srow_z"][3] = np.nan
        write_header_file(mask, h, np.ones((6, 6, 5), np.uint8))
    else:
        rgb = np.zeros((6, 6, 5), [("R", "u1"), ("G", "u1"), ("B", "u1")])
        write_header_file(mask, header(BASE, dtype=rgb.dtype), rgb)
    g = root / "grouped"
    for argv in (
        (lay.script("03"), "--root_dir", g),
        (lay.script("bin"), "--root_dir", g, "--label_explanation", root / "descriptor/label_map.yaml"),
        (lay.script("dm"), "--root_dir", g, "--output_manifest_file", g / "dataset_manifest.xlsx"),
        ("utils/qc_report.py", "--root_dir", g, "--output_dir", root / "qc"),
    ):
        rc, lines = _run(*argv)
        assert rc == 1, (argv[0], lines[-3:])
        _one_line(lines, str(mask))
        assert "Traceback" not in "\n".join(lines) and "unexpected" not in "\n".join(lines), (argv[0], lines)
