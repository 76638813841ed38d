"""End-to-end tests of the four mask-QC tools: sample folders built in tmp_path, each script's main run in-process."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, run_script
from utils.maskqc.steps import REPORT_COLUMNS, STEP_CLOSE, STEP_OPEN, STEP_THRESHOLD
from utils.maskqc.reference import naive_repair_mask
from utils.files.nifti_io import load_nifti, read_mask, read_volume
from utils.files.sample_info import MASK_LABELS, SampleDir, file_stamp, read_info, write_info
from utils.maskqc.slice_morphology import SliceRepair
from utils.files.spreadsheet import read_sheet
from utils.archive.synthetic import affine_for, blob_stack_mask, ct_like_volume, write_raw_nifti

CLOSE = "utils/morphological_close_on_slice_small_region.py"
OPEN = "utils/morphological_open_on_slice_small_region.py"
REPORT = "utils/small_connected_region_detect.py"
THRESHOLD = "utils/mask_thresholding.py"
SHORTS = {0: "Bg", 1: "L1", 2: "L2", 3: "L3"}
AFFINE = affine_for("LPS", (0.8, 0.6, 2.0), origin=(100.0, 80.0, -40.0), oblique_deg=4.0)


def make_sample(root: Path, sid: str, mask: np.ndarray, *, binaries=SHORTS, volume=None, group="A/train") -> SampleDir:
    """A grouped sample folder: info yaml, volume, multi-label mask and the binary masks of ``binaries``."""
    sample = SampleDir(root / group / sid)
    write_raw_nifti(sample.volume, ct_like_volume(mask) if volume is None else volume, AFFINE)
    write_raw_nifti(sample.mask, mask, AFFINE)
    for idx, short in binaries.items():
        write_raw_nifti(sample.binary_mask(f"{idx:02d}_{short}"), (mask == idx).astype(np.uint8), AFFINE)
    write_info(sample.info, {"ID": sid, "history": [{"step": "extract_binary_masks", "params": {}}]})
    return sample


def noisy_mask(seed: int, shape=(48, 40, 12)) -> np.ndarray:
    return blob_stack_mask(shape, [1, 2, 3], radius_fraction=0.3, rng=np.random.default_rng(seed), specks=25, holes=25)


def read_labels(path: Path) -> np.ndarray:
    return read_mask(load_nifti(path), path)


def assert_binaries_consistent(sample: SampleDir, shorts=SHORTS) -> np.ndarray:
    mask = read_labels(sample.mask)
    for idx, short in shorts.items():
        np.testing.assert_array_equal(read_labels(sample.binary_mask(f"{idx:02d}_{short}")), (mask == idx).astype(np.uint8))
    return mask


def assert_mask_labels_recorded(sample: SampleDir) -> None:
    """The info yaml records the voxel count of every value of the mask now on disk (updated, not recounted)."""
    counts = np.bincount(read_labels(sample.mask).ravel(), minlength=256)
    recorded = read_info(sample.info)[MASK_LABELS]
    assert recorded["file"] == file_stamp(sample.mask)
    assert recorded["voxels"] == {int(v): int(counts[v]) for v in np.flatnonzero(counts)}


def nifti_contents(folder: Path) -> dict[str, bytes]:
    """Uncompressed header + data of every NIfTI file (the gzip wrapper holds a time stamp)."""
    return {p.name: gzip.decompress(p.read_bytes()) for p in sorted(folder.glob("*.nii.gz"))}


def file_state(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "grouped"
    make_sample(root, "s001", noisy_mask(1))
    make_sample(root, "s002", noisy_mask(2), group="B/val")
    return root


def report_count(root: Path, out: Path, thresh: float = 100.0) -> int:
    assert run_script(REPORT, "--root_dir", root, "--region_volume_thresh", thresh, "--output_manifest", out, "--no_pbar") == 0
    return len(read_sheet(out))


# --- small-region report --------------------------------------------------------------------------------------------


def test_report_lists_small_regions_with_names_volumes_and_world_centroids(root, tmp_path, caplog):
    out = tmp_path / "descriptor" / "small_connected_region_100_manifest.xlsx"
    with caplog.at_level(logging.INFO):
        n = report_count(root, out)
    sheet = read_sheet(out)
    assert list(sheet.columns) == list(REPORT_COLUMNS)
    assert n > 10 and set(sheet["ID"]) == {"s001", "s002"}
    assert f"{n} small connected regions (< 100 mm³, 26-connectivity) in 2 of 2 samples" in caplog.text
    assert set(sheet["label_index"]) <= {1, 2, 3}  # background is not analysed
    row = sheet.iloc[0]
    assert row["file"] == f"A/train/s001/s001_mask_{row['label_index']:02d}_{SHORTS[row['label_index']]}.nii.gz"
    assert row["label_name"] == SHORTS[row["label_index"]] and row["mask"] == "A/train/s001/s001_mask.nii.gz"
    voxel_mm3 = abs(np.linalg.det(AFFINE[:3, :3]))
    assert row["volume_mm3"] == pytest.approx(row["voxel_count"] * voxel_mm3)
    world = AFFINE @ [row["centroid_i"], row["centroid_j"], row["centroid_k"], 1.0]
    assert [row["centroid_x_mm"], row["centroid_y_mm"], row["centroid_z_mm"]] == pytest.approx(world[:3].tolist())
    mask = read_labels(root / "A/train/s001/s001_mask.nii.gz")
    assert mask[int(row["bbox_i_min"]), int(row["bbox_j_min"]):int(row["bbox_j_max"]) + 1, int(row["bbox_k_min"])].any()


def test_report_names_labels_from_the_binary_mask_files_and_uses_the_connectivity_option(tmp_path):
    mask = np.zeros((10, 10, 6), np.uint8)
    mask[2, 2, 2] = mask[3, 3, 2] = 7  # corner neighbours: one region at 26- (and 18-), two at 6-connectivity
    make_sample(tmp_path / "r", "x01", mask, binaries={0: "Bg", 7: "T13"})
    out = tmp_path / "r.xlsx"
    assert report_count(tmp_path / "r", out) == 1 and read_sheet(out)["label_name"].tolist() == ["T13"]
    assert run_script(REPORT, "--root_dir", tmp_path / "r", "--region_volume_thresh", 100, "--output_manifest", out,
                      "--connectivity", 6, "--no_pbar") == 0  # fmt: skip
    assert len(read_sheet(out)) == 2


# --- close (VerSe) --------------------------------------------------------------------------------------------------


def test_close_in_place_repairs_masks_consistently_records_history_and_second_run_is_a_noop(root, tmp_path):
    before = report_count(root, tmp_path / "before.xlsx")
    sample = SampleDir(root / "A/train/s001")
    original = read_labels(sample.mask)
    args = ["--root_dir", root, "--output_dir", root, "--kernel_size", 5, 5, "--filter_halfedge", 3, "--region_area_thresh", 2.0, "--no_pbar"]
    assert run_script(CLOSE, *args) == 0
    repaired = assert_binaries_consistent(sample)
    assert_mask_labels_recorded(sample)
    expected = naive_repair_mask(original, load_nifti(sample.mask).affine, SliceRepair("close", (5, 5), 2.0), 3, labels=[0, 1, 2, 3])
    np.testing.assert_array_equal(repaired, expected)
    assert (repaired != original).sum() > 0
    assert not list(sample.path.glob(".*"))  # no temporary file left behind
    history = read_info(sample.info)["history"]
    assert [h["step"] for h in history] == ["extract_binary_masks", STEP_CLOSE]
    assert history[-1]["params"] == {"kernel_size": [5, 5], "filter_halfedge": 3, "region_area_thresh": 2.0, "connectivity": 8}
    assert history[-1]["result"]["voxels_relabelled"] == int((repaired != original).sum())
    after = report_count(root, tmp_path / "after.xlsx")
    assert after < before  # the tutorial's check: fewer small regions after the repair
    state = file_state(sample.path)
    assert run_script(CLOSE, *args) == 0  # same step, same parameters: nothing is touched
    assert file_state(sample.path) == state
    assert run_script(CLOSE, *args[:-2], 3.0, "--no_pbar") == 0  # other parameters: applied again
    assert [h["params"]["region_area_thresh"] for h in read_info(sample.info)["history"][1:]] == [2.0, 3.0]


def test_forced_second_close_is_recorded_and_keeps_the_masks_consistent(root):
    args = ["--root_dir", root, "--output_dir", root, "--kernel_size", 5, 5, "--filter_halfedge", 3, "--region_area_thresh", 2.0, "--no_pbar"]
    assert run_script(CLOSE, *args) == 0
    assert run_script(CLOSE, *args, "--force") == 0
    sample = SampleDir(root / "B/val/s002")
    assert [h["step"] for h in read_info(sample.info)["history"]].count(STEP_CLOSE) == 2
    assert_binaries_consistent(sample)


# --- open (ESO) into another folder ---------------------------------------------------------------------------------


def test_open_to_another_output_dir_copies_the_layout_and_leaves_the_input_untouched(root, tmp_path):
    inputs = {s: file_state(root / s) for s in ("A/train/s001", "B/val/s002")}
    out = tmp_path / "cleaned"
    args = ["--root_dir", root, "--output_dir", out, "--kernel_size", 2, 2, "--filter_halfedge", 3, "--region_area_thresh", 10, "--no_pbar"]
    assert run_script(OPEN, *args, "--workers", 2) == 0
    for rel, state in inputs.items():
        assert file_state(root / rel) == state
        src, dst = SampleDir(root / rel), SampleDir(out / rel)
        assert sorted(p.name for p in dst.path.iterdir()) == sorted(state)
        assert dst.volume.read_bytes() == src.volume.read_bytes()
        mask = assert_binaries_consistent(dst)
        assert_mask_labels_recorded(dst)
        expected = naive_repair_mask(read_labels(src.mask), AFFINE, SliceRepair("open", (2, 2), 10.0), 3, labels=[0, 1, 2, 3])
        np.testing.assert_array_equal(mask, expected)
        assert read_info(dst.info)["history"][-1]["step"] == STEP_OPEN
        assert read_info(src.info)["history"][-1]["step"] == "extract_binary_masks"
    first = nifti_contents(out / "A/train/s001")
    assert run_script(OPEN, *args) == 0  # the input has no history entry: recomputed, identical output
    assert nifti_contents(out / "A/train/s001") == first


def test_output_dir_inside_root_dir_is_refused(root, caplog):
    args = ["--root_dir", root, "--output_dir", root / "A" / "copy", "--kernel_size", 2, 2, "--filter_halfedge", 3, "--region_area_thresh", 10]
    assert run_script(OPEN, *args, "--no_pbar") == 2
    assert "inside root_dir" in caplog.text


# --- bad input ------------------------------------------------------------------------------------------------------


def test_bad_samples_fail_with_one_line_naming_the_file_while_others_are_processed(root, tmp_path, caplog):
    no_binary = make_sample(root, "s003", noisy_mask(3), binaries={0: "Bg", 1: "L1", 2: "L2"})  # label 3 has none
    truncated = make_sample(root, "s004", noisy_mask(4))
    raw = truncated.mask.read_bytes()
    truncated.mask.write_bytes(raw[: len(raw) // 2])
    args = ["--root_dir", root, "--output_dir", root, "--kernel_size", 5, 5, "--filter_halfedge", 3, "--region_area_thresh", 2.0, "--no_pbar"]
    with caplog.at_level(logging.INFO):
        assert run_script(CLOSE, *args) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(m.startswith("s003: ") and str(no_binary.mask) in m and "labels [3]" in m for m in errors)
    assert any(m.startswith("s004: ") and str(truncated.mask) in m and "truncated" in m for m in errors)
    assert all("\n" not in m and "Traceback" not in m for m in errors)
    for ok in ("A/train/s001", "B/val/s002"):
        assert read_info(root / ok / f"{Path(ok).name}_info.yaml")["history"][-1]["step"] == STEP_CLOSE
    assert read_info(no_binary.info)["history"][-1]["step"] == "extract_binary_masks"
    caplog.clear()
    out = tmp_path / "r.xlsx"
    assert run_script(REPORT, "--root_dir", root, "--region_volume_thresh", 100, "--output_manifest", out, "--no_pbar") == 1
    assert set(read_sheet(out)["ID"]) == {"s001", "s002"}
    assert "2 samples failed and are missing" in caplog.text


# --- thresholding (ESO) ---------------------------------------------------------------------------------------------


def test_thresholding_removes_foreground_outside_the_range_and_keeps_binaries_consistent(tmp_path):
    root = tmp_path / "grouped"
    mask = noisy_mask(5)
    volume = ct_like_volume(mask)
    fg = np.argwhere(mask > 0)
    hot, cold = tuple(fg[0]), tuple(fg[-1])
    volume[hot], volume[cold] = 1500, -300
    with_bin = make_sample(root, "XY_1_pre", mask, volume=volume, group="XY/pre")
    without_bin = make_sample(root, "XY_1_post", mask, binaries={}, volume=volume, group="XY/post")
    args = ["--root_dir", root, "--thresh", -140.0, 1000.0, "--output_dir", root, "--no_pbar"]
    assert run_script(THRESHOLD, *args) == 0
    for sample in (with_bin, without_bin):
        new = read_labels(sample.mask)
        vol = read_volume(load_nifti(sample.volume), sample.volume)
        assert new[hot] == 0 and new[cold] == 0
        assert ((new > 0) <= (vol >= -140) & (vol <= 1000)).all()
        np.testing.assert_array_equal(new[(new != mask)], 0)
        assert int((new != mask).sum()) == read_info(sample.info)["history"][-1]["result"]["voxels_set_to_background"]
        assert read_info(sample.info)["history"][-1]["params"] == {"thresh": [-140.0, 1000.0]}
    assert_binaries_consistent(with_bin)
    assert_mask_labels_recorded(with_bin)
    assert_mask_labels_recorded(without_bin)
    assert not list(without_bin.path.glob("*_mask_*"))
    assert read_info(with_bin.info)["history"][-1]["step"] == STEP_THRESHOLD
    state = file_state(with_bin.path)
    assert run_script(THRESHOLD, *args) == 0
    assert file_state(with_bin.path) == state


def test_thresholding_refuses_a_mask_on_another_grid(tmp_path, caplog):
    root = tmp_path / "grouped"
    sample = make_sample(root, "TJ_2_pre", noisy_mask(6), group="TJ/pre")
    write_raw_nifti(sample.volume, np.zeros((5, 5, 5), np.int16), AFFINE)
    assert run_script(THRESHOLD, "--root_dir", root, "--thresh", -140, 1000, "--output_dir", root, "--no_pbar") == 1
    assert str(sample.mask) in caplog.text and "differs from the volume" in caplog.text


# --- the scripts stay thin ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", [CLOSE, OPEN, REPORT, THRESHOLD])
def test_tools_are_thin_scripts(script):
    code = [ln for ln in (REPO / script).read_text().splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert len(code) < 90


# --- real data ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rel", ["verse/sub-gl003_dir-ax_seg-vert_msk.nii.gz", "totalseg/spine_report__test_result__totalseg_vertebrae_pp_refined.nii.gz"]
)
@pytest.mark.parametrize("mode", ["close", "open"])
def test_fast_repair_equals_the_reference_on_a_real_mask(realdata, rel, mode):
    from utils.maskqc.label_fusion import fuse_label_changes
    from utils.maskqc.steps import read_label_mask
    from utils.maskqc.slice_morphology import repair_changes

    path = realdata / rel
    if not path.is_file():
        pytest.skip(f"{rel} not present")
    img, mask = read_label_mask(path)
    repair = SliceRepair(mode, (5, 5) if mode == "close" else (2, 2), 2.0 if mode == "close" else 10.0)
    fused, n = fuse_label_changes(mask, repair_changes(mask, img.affine, repair), 3)
    nz = np.flatnonzero(mask.any(axis=(0, 1)))
    slices = range(int(nz[0]), int(nz[0]) + min(24, len(nz)))  # the reference is slow: 24 slices with labels
    labels = list(range(int(mask.max()) + 1))
    expected = naive_repair_mask(mask, img.affine, repair, 3, labels=labels, slices=slices)
    np.testing.assert_array_equal(fused[:, :, slices.start : slices.stop], expected[:, :, slices.start : slices.stop])
