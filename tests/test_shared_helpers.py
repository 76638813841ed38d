"""The library functions that several tools and routines share (issue 23: one place where the logic is the same).

Small synthetic inputs; each test checks behaviour a caller relies on.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from utils.archive.scan import FILE_CHECK_COLUMNS, finish_archive_manifest
from utils.archive.synthetic import MASK_STORAGES, affine_for, blob_stack_mask, ct_like_volume, write_raw_nifti, write_stored_mask
from utils.files.nifti_io import load_nifti, read_mask
from utils.files.sample_info import SampleDir, read_info, write_info
from utils.files.spreadsheet import read_sheet, sheet_names, write_sheets
from utils.maskqc.steps import STEP_CLOSE, STEP_OPEN, repair_main, repair_parser
from utils.archive.pairing import PairJob
from utils.dataset import routines
from utils.geometry.policy import GeometryOptions
from utils.report.dataset_profile import available_profiles, detect_sample_profile
from utils.review.exclusion import RECORD_SHEET
from utils.review.split_routine import split_main, split_parser

AFFINE = affine_for("RAS", (1.0, 1.0, 2.0))


def _sample(root: Path, sid: str, mask: np.ndarray) -> SampleDir:
    sample = SampleDir(root / "A" / "train" / sid)
    write_raw_nifti(sample.volume, ct_like_volume(mask), AFFINE)
    write_raw_nifti(sample.mask, mask, AFFINE)
    for idx, short in {0: "Bg", 1: "L1", 2: "L2"}.items():
        write_raw_nifti(sample.binary_mask(f"{idx:02d}_{short}"), (mask == idx).astype(np.uint8), AFFINE)
    write_info(sample.info, {"ID": sid, "history": []})
    return sample


# --- utils.maskqc.steps: repair_parser / repair_main ---------------------------------------------------------------


def test_repair_parser_shows_the_description_verbatim_and_has_the_repair_and_common_options():
    parser = repair_parser("Line one.\n\n  indented   example\n")
    assert "  indented   example" in parser.format_help()
    args = parser.parse_args(["--root_dir", "a", "--output_dir", "b", "--kernel_size", "3", "3",
                              "--filter_halfedge", "1", "--region_area_thresh", "2.5", "-q"])  # fmt: skip
    assert (args.root_dir, args.kernel_size, args.filter_halfedge, args.region_area_thresh) == (Path("a"), [3, 3], 1, 2.5)
    assert args.quiet == 1 and args.workers >= 1 and args.force is False
    with pytest.raises(SystemExit):
        parser.parse_args(["--root_dir", "a"])  # the repair options are required


@pytest.mark.parametrize(("mode", "step"), [("close", STEP_CLOSE), ("open", STEP_OPEN)])
def test_repair_main_records_the_step_of_its_mode_and_is_a_no_op_the_second_time(tmp_path, mode, step):
    root, out = tmp_path / "grouped", tmp_path / "out"
    mask = blob_stack_mask((24, 20, 6), [1, 2], radius_fraction=0.3, rng=np.random.default_rng(0), specks=8, holes=8)
    _sample(root, "s001", mask)
    argv = ["--root_dir", str(root), "--output_dir", str(out), "--kernel_size", "3", "3",
            "--filter_halfedge", "1", "--region_area_thresh", "5", "--no_pbar", "--workers", "1"]  # fmt: skip
    assert repair_main(mode, "doc", argv) == 0
    written = SampleDir(out / "A" / "train" / "s001")
    history = read_info(written.info)["history"]
    assert [h["step"] for h in history] == [step]
    assert history[0]["params"] == {"kernel_size": [3, 3], "filter_halfedge": 1, "region_area_thresh": 5.0, "connectivity": 8}
    new = read_mask(load_nifti(written.mask), written.mask)
    np.testing.assert_array_equal(read_mask(load_nifti(written.binary_mask("01_L1")), written.mask), (new == 1).astype(np.uint8))
    # in place, twice: the second run finds the history entry and changes nothing
    argv_in_place = [*argv[:3], str(root), *argv[4:]]
    assert repair_main(mode, "doc", argv_in_place) == 0
    before = SampleDir(root / "A" / "train" / "s001").info.read_bytes()
    assert repair_main(mode, "doc", argv_in_place) == 0
    assert SampleDir(root / "A" / "train" / "s001").info.read_bytes() == before


def test_repair_main_returns_2_on_a_bad_option_value_or_a_missing_root(tmp_path, caplog):
    def argv(root: Path, halfedge: str) -> list[str]:
        return ["--root_dir", str(root), "--output_dir", str(tmp_path / "o"), "--kernel_size", "3", "3",
                "--filter_halfedge", halfedge, "--region_area_thresh", "5", "--no_pbar"]  # fmt: skip

    assert repair_main("close", "doc", argv(tmp_path / "missing", "1")) == 2
    assert "root_dir is not a folder" in caplog.text
    (tmp_path / "r").mkdir()
    assert repair_main("open", "doc", argv(tmp_path / "r", "-1")) == 2
    assert "filter_halfedge must be >= 0" in caplog.text


def test_repair_main_shows_the_tools_description_and_sets_the_log_level_from_verbose_and_quiet(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        repair_main("close", "The tool's own description.", ["--help"])
    assert done.value.code == 0 and "The tool's own description." in capsys.readouterr().out
    root = logging.getLogger()
    level = root.level
    try:
        for flags, expected in (([], logging.INFO), (["-q"], logging.WARNING), (["-v"], logging.DEBUG)):
            argv = ["--root_dir", str(tmp_path / "missing"), "--output_dir", str(tmp_path / "o"), "--kernel_size", "3", "3",
                    "--filter_halfedge", "1", "--region_area_thresh", "5", "--no_pbar", *flags]  # fmt: skip
            assert repair_main("open", "doc", argv) == 2
            assert root.level == expected, flags
    finally:
        root.setLevel(level)


# --- utils.review.split_routine: split_parser / split_main ---------------------------------------------------------


def _manifest(tmp_path: Path) -> Path:
    """``root/grouped/dataset_manifest.xlsx`` with four samples; the review default is ``root/descriptor``."""
    path = tmp_path / "root" / "grouped" / "dataset_manifest.xlsx"
    path.parent.mkdir(parents=True)
    write_sheets(path, {"Manifest": pd.DataFrame({"ID": ["a1", "a2", "b1", "b2"], "site": ["A", "A", "B", "B"]})})
    return path


def _site_rule(args):
    if args.site not in ("A", "B"):
        raise ValueError(f"--site {args.site!r} is not a known site")

    def rule(manifest: pd.DataFrame):
        rows = manifest[manifest["site"] == args.site]
        return rows, ["train"] * (len(rows) - 1) + ["test"]

    return rule


def _split_parser() -> argparse.ArgumentParser:
    parser = split_parser("Doc of the routine.", "routine 04", "split01_X")
    parser.add_argument("--site", required=True)
    return parser


def test_split_parser_names_the_routine_and_example_and_split_main_adds_review_and_common_options():
    text = _split_parser().format_help()
    assert "dataset_manifest.xlsx of routine 04" in text and "e.g. split01_X" in text
    assert "--review" not in text and "--workers" not in text
    parser = _split_parser()
    with pytest.raises(SystemExit):
        split_main(parser, ["--help"], "verse", _site_rule)
    order = [a.dest for a in parser._actions]
    assert order.index("manifest_file") < order.index("split_name") < order.index("site") < order.index("review")
    assert "workers" not in order and "no_pbar" in order


def test_split_main_writes_the_rule_s_sheet(tmp_path):
    manifest = _manifest(tmp_path)
    assert split_main(_split_parser(), ["--manifest_file", str(manifest), "--split_name", "s1", "--site", "B", "-q"], "verse", _site_rule) == 0
    sheet = read_sheet(manifest, "s1")
    assert sheet["ID"].tolist() == ["b1", "b2"] and sheet["s1"].tolist() == ["train", "test"]
    assert RECORD_SHEET not in sheet_names(manifest)


def test_split_main_leaves_out_samples_marked_fail_in_the_review_of_its_dataset(tmp_path):
    manifest = _manifest(tmp_path)
    descriptor = tmp_path / "root" / "descriptor"
    descriptor.mkdir()
    (descriptor / "qc_review.yaml").write_text("version: 1\ndataset: eso\nreviews:\n  a2: {verdict: fail, date: 2026-11-24}\n")
    argv = ["--manifest_file", str(manifest), "--split_name", "s1", "--site", "A", "-q"]
    assert split_main(_split_parser(), argv, "verse", _site_rule) == 2  # a review made on another dataset
    assert sheet_names(manifest) == ["Manifest"]
    assert split_main(_split_parser(), argv, "eso", _site_rule) == 0
    assert read_sheet(manifest, "s1")["ID"].tolist() == ["a1"]
    assert read_sheet(manifest, RECORD_SHEET)["ID"].tolist() == ["a2"]
    assert split_main(_split_parser(), [*argv, "--no_review"], "eso", _site_rule) == 0
    assert read_sheet(manifest, "s1")["ID"].tolist() == ["a1", "a2"]


def test_split_main_plans_before_reading_the_review_and_fails_in_one_line(tmp_path, caplog):
    manifest = _manifest(tmp_path)
    argv = ["--manifest_file", str(manifest), "--split_name", "s1", "--review", str(tmp_path / "missing.yaml")]
    assert split_main(_split_parser(), [*argv, "--site", "Z"], "verse", _site_rule) == 2
    assert "--site 'Z' is not a known site" in caplog.text and "review file not found" not in caplog.text
    assert split_main(_split_parser(), [*argv, "--site", "A"], "verse", _site_rule) == 2
    assert "review file not found" in caplog.text
    assert sheet_names(manifest) == ["Manifest"]


def test_split_main_shows_the_routines_help_and_requires_the_manifest_and_split_name(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        split_main(_split_parser(), ["--help"], "verse", _site_rule)
    text = capsys.readouterr().out
    assert done.value.code == 0 and text.startswith("usage: ") and "Doc of the routine." in text
    assert "samples marked fail are left out of the split and recorded in sheet QcReviewExcluded" in " ".join(text.split())
    manifest = str(_manifest(tmp_path))
    for argv in (["--split_name", "s1", "--site", "A"], ["--manifest_file", manifest, "--site", "A"]):
        with pytest.raises(SystemExit) as done:
            split_main(_split_parser(), argv, "verse", _site_rule)
        assert done.value.code == 2
        missing = "--manifest_file" if "--split_name" in argv else "--split_name"
        assert f"the following arguments are required: {missing}" in capsys.readouterr().err


def test_split_main_sets_the_log_level_from_verbose_and_quiet(tmp_path):
    manifest = _manifest(tmp_path)
    root = logging.getLogger()
    level = root.level
    try:
        for flags, expected in (([], logging.INFO), (["-q"], logging.WARNING), (["-v"], logging.DEBUG)):
            argv = ["--manifest_file", str(manifest), "--split_name", "s1", "--site", "A", "--no_review", *flags]
            assert split_main(_split_parser(), argv, "verse", _site_rule) == 0
            assert root.level == expected, flags
    finally:
        root.setLevel(level)


def test_split_main_warns_of_review_marks_on_samples_the_whole_manifest_lacks(tmp_path, caplog):
    manifest = _manifest(tmp_path)
    review = tmp_path / "review.yaml"
    review.write_text("version: 1\ndataset: verse\nreviews:\n  b1: {verdict: fail, date: 2026-11-24}\n"
                      "  zz9: {verdict: fail, date: 2026-11-24}\n")  # fmt: skip
    argv = ["--manifest_file", str(manifest), "--split_name", "s1", "--site", "A", "--review", str(review)]
    with caplog.at_level(logging.WARNING):
        assert split_main(_split_parser(), argv, "verse", _site_rule) == 0
    unknown = [r.getMessage() for r in caplog.records if "does not have" in r.getMessage()]
    assert len(unknown) == 1 and "names 1 sample(s)" in unknown[0] and "zz9" in unknown[0] and "b1" not in unknown[0]
    assert "the Manifest sheet of" in unknown[0]


def test_split_main_refuses_a_manifest_without_ids_in_one_line_also_with_a_review(tmp_path, caplog):
    manifest = tmp_path / "grouped" / "dataset_manifest.xlsx"
    manifest.parent.mkdir()
    write_sheets(manifest, {"Manifest": pd.DataFrame({"sample": ["a1", "a2"], "site": ["A", "A"]})})
    review = tmp_path / "review.yaml"
    review.write_text("version: 1\ndataset: verse\nreviews:\n  a1: {verdict: fail, date: 2026-11-24}\n")
    argv = ["--manifest_file", str(manifest), "--split_name", "s1", "--site", "A", "--review", str(review)]
    assert split_main(_split_parser(), argv, "verse", _site_rule) == 2
    assert "(sheet 'Manifest') lacks column(s) ['ID']" in caplog.text and sheet_names(manifest) == ["Manifest"]


def test_split_parser_keeps_the_description_s_layout():
    text = split_parser("Line one.\n\n  indented   example\n", "routine 04", "s").format_help()
    assert "\n  indented   example\n" in text


# --- utils.archive.scan: finish_archive_manifest -----------------------------------------------------------------


def _transform(shift: float = 0.0) -> str:
    return json.dumps([[1.0, 0.0, 0.0, shift], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def test_finish_archive_manifest_adds_the_affine_norm_logs_findings_and_orders_the_columns(caplog):
    records = pd.DataFrame(
        {
            "file_path": ["a/v.nii.gz", "a/m.nii.gz", "b/m.nii.gz", "c/v.nii.gz"],
            "pid": ["1", "1", "2", "3"],
            "type": ["v3d", "m3d", "m3d", "v3d"],
            "transform": [_transform(), _transform(3.0), _transform(), _transform()],
            "readers_agree": [1, 1, 0, 1],
            "file_warnings": ["", "", "READERS_DISAGREE x", None],
            "qform_sform_mm": [None] * 4,
        },
        index=[7, 3, 5, 9],
    )
    manifest = finish_archive_manifest(records, ["file_path", "pid", "type", "diff_trans_f_norm"], ["pid"])
    assert list(manifest.columns) == ["file_path", "pid", "type", "diff_trans_f_norm", *FILE_CHECK_COLUMNS]
    assert list(manifest.index) == [0, 1, 2, 3]
    norms = manifest["diff_trans_f_norm"].tolist()
    assert norms[0] is None and norms[1] == pytest.approx(3.0) and norms[2] is None and norms[3] is None  # b/m has no volume
    assert [r.getMessage() for r in caplog.records] == ["b/m.nii.gz: READERS_DISAGREE x"]


def test_finish_archive_manifest_of_an_empty_scan_is_an_empty_table_with_the_columns(caplog):
    manifest = finish_archive_manifest(pd.DataFrame(), ["file_path", "site", "diff_trans_f_norm"], ["site"])
    assert manifest.empty and list(manifest.columns) == ["file_path", "site", "diff_trans_f_norm", *FILE_CHECK_COLUMNS]
    assert caplog.records == []


# --- utils.archive.synthetic: write_stored_mask ------------------------------------------------------------------


@pytest.mark.parametrize("storage", MASK_STORAGES)
@pytest.mark.parametrize("dtype", ["uint8", "int16", "float64"])
def test_write_stored_mask_keeps_every_voxel_at_its_world_position(tmp_path, storage, dtype):
    affine = affine_for("LPS", (0.8, 0.6, 2.0), origin=(10.0, -5.0, 3.0), oblique_deg=3.0)
    mask = np.zeros((5, 4, 3), np.uint8)
    mask[1, 2, 0], mask[4, 0, 2], mask[0, 3, 1] = 1, 2, 3
    path = write_stored_mask(tmp_path / "m.nii.gz", mask, affine, dtype=dtype, storage=storage)
    img = load_nifti(path)
    data = np.asanyarray(img.dataobj)
    assert img.get_data_dtype() == np.dtype(dtype)
    assert data.shape == ((3, 5, 4) if storage == "permuted" else (5, 4, 3))
    if storage == "same":
        np.testing.assert_array_equal(data, mask)
    for label in (1, 2, 3):
        world = affine @ np.array([*np.argwhere(mask == label)[0], 1.0])
        stored = img.affine @ np.array([*np.argwhere(data == label)[0], 1.0])
        np.testing.assert_allclose(stored, world, atol=1e-6)


def test_write_stored_mask_refuses_an_unknown_storage(tmp_path):
    with pytest.raises(ValueError, match="mask storage 'rotated'"):
        write_stored_mask(tmp_path / "m.nii.gz", np.zeros((2, 2, 2), np.uint8), np.eye(4), storage="rotated")
    assert not (tmp_path / "m.nii.gz").exists()


# --- utils.report.dataset_profile: detect_sample_profile ---------------------------------------------------------


def _info_sample(root: Path, sid: str, info: dict | None) -> SampleDir:
    sample = SampleDir(root / sid)
    sample.path.mkdir(parents=True)
    if info is None:
        sample.info.write_text("ID: [unclosed\n")  # unreadable: passed over
    else:
        write_info(sample.info, {"ID": sid, **info})
    return sample


def test_detect_sample_profile_reads_the_first_samples_and_passes_over_unreadable_ones(tmp_path):
    profiles = available_profiles()
    eso = {"site": "TJ", "phase": "pre", "pid": "1", "subset": None}
    nme = {"site": "Tongji", "collection": "train-val", "subset": "train", "pid": "1", "seq": "01A001"}
    samples = [_info_sample(tmp_path, "bad", None), _info_sample(tmp_path, "e1", eso), _info_sample(tmp_path, "n1", nme),
               _info_sample(tmp_path, "n2", nme), _info_sample(tmp_path, "missing_info", {})]  # fmt: skip
    samples[-1].info.unlink()
    assert detect_sample_profile(samples, profiles).dataset == "nme"  # two of three readable fit nme
    assert detect_sample_profile(samples, profiles, limit=2).dataset == "eso"  # only 'bad' and 'e1' are read
    assert detect_sample_profile(samples[:1], profiles) is None
    assert detect_sample_profile([], profiles) is None


# --- utils.dataset.routines.confirm_pairs_main: the run's options set on every dataset's jobs ---------------------


def test_confirm_pairs_main_sets_the_run_options_on_every_job_of_the_dataset_pairing(tmp_path, monkeypatch):
    archive, grouped = tmp_path / "archive", tmp_path / "grouped"
    archive.mkdir()
    manifest = tmp_path / "archive_manifest.xlsx"
    write_sheets(manifest, {"Manifest": pd.DataFrame({"file_path": ["a/v.nii.gz", "a/m.nii.gz"], "type": ["v3d", "m3d"]})})
    rules = tmp_path / "rules.yaml"
    rules.write_text("x: 1\n")
    seen = {}

    def make_jobs(frame, archive_root, output_dir, loaded):
        seen["args"] = (len(frame), archive_root, output_dir, loaded)
        return [PairJob(output_dir / "A" / "s1", archive_root / "a/v.nii.gz", archive_root / "a/m.nii.gz", {})], {}

    def fake_confirm_pairs(jobs, problems, output_dir, **kwargs):
        seen["jobs"] = list(jobs)
        return 0

    monkeypatch.setattr(routines, "confirm_pairs", fake_confirm_pairs)
    argv = ["--root_dir", str(archive), "--output_dir", str(grouped), "--archive_manifest", str(manifest), "--rules", str(rules),
            "--grid_tol", "0.25", "--overwrite", "--resample_mismatched_masks", "--resample_sheared", "--no_pbar"]  # fmt: skip
    assert routines.confirm_pairs_main(argv, "doc", rules, lambda path: "RULES", make_jobs) == 0
    assert seen["args"] == (2, archive, grouped, "RULES")
    (job,) = seen["jobs"]
    assert (job.tol_voxel, job.overwrite, job.allow_resample, job.archive_root) == (0.25, True, True, archive)
    assert job.geometry == GeometryOptions(None, True)
    assert job.sample_dir == grouped / "A" / "s1"  # what the dataset's pairing decided is kept
