"""The library functions that several tools and routines share (issue 23: one place where the logic is the same).

Small synthetic inputs; each test checks behaviour a caller relies on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from utils.archive.synthetic import affine_for, blob_stack_mask, ct_like_volume, write_raw_nifti
from utils.files.nifti_io import load_nifti, read_mask
from utils.files.sample_info import SampleDir, read_info, write_info
from utils.maskqc.steps import STEP_CLOSE, STEP_OPEN, repair_main, repair_parser

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
