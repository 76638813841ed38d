"""The per-sample contract of the mask-changing tools (utils/mask_qc.py), one rule at a time, on tiny samples."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import utils.mask_qc as mq
from utils.cli import SampleError
from utils.sample_info import BINARY_MASKS_FROM, MASK_LABELS, SampleDir, file_stamp, read_info, write_info
from utils.slice_morphology import SliceRepair
from utils.synthetic import affine_for, write_raw_nifti

AFFINE = affine_for("ASR", (0.6, 0.9, 2.2), origin=(3.0, -4.0, 5.0), oblique_deg=6.0)


def make_sample(root: Path, mask: np.ndarray, *, binaries=(0, 1, 2), volume=None, history=None) -> SampleDir:
    sample = SampleDir(root / "site" / "s01")
    write_raw_nifti(sample.volume, np.zeros(mask.shape, np.float32) if volume is None else volume, AFFINE)
    write_raw_nifti(sample.mask, mask, AFFINE)
    for v in binaries:
        write_raw_nifti(sample.binary_mask(f"{v:02d}_L{v}"), (mask == v).astype(np.uint8), AFFINE)
    write_info(sample.info, {"ID": "s01", "history": history or [{"step": "extract_binary_masks", "params": {}}]})
    return sample


def voxels(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


def speckled() -> np.ndarray:
    mask = np.zeros((9, 8, 3), np.uint8)
    mask[1:7, 1:6, :] = 1
    mask[8, 7, 1] = 2  # a 1-voxel speck of label 2
    return mask


OPEN = ("morphological_open_on_slice_small_region", {"kernel_size": [2, 2], "filter_halfedge": 1, "region_area_thresh": 1.0, "connectivity": 8})


def open_step():
    return mq.repair_transform(SliceRepair("open", (2, 2), 1.0), 1)


# --- destinations --------------------------------------------------------------------------------------------------


def test_destination_in_place_or_a_copy_of_the_layout_and_refusals(tmp_path):
    root = tmp_path / "grouped"
    root.mkdir()
    same = mq.Destination.create(root, root)
    assert same.in_place and same.target(SampleDir(root / "a" / "s")) == SampleDir(root / "a" / "s")
    other = mq.Destination.create(root, tmp_path / "out")
    assert not other.in_place and other.target(SampleDir(root / "a" / "s")).path == (tmp_path / "out" / "a" / "s").resolve()
    with pytest.raises(FileNotFoundError, match=rf"^root_dir is not a folder: {tmp_path / 'nope'}$"):
        mq.Destination.create(tmp_path / "nope", tmp_path / "out")
    with pytest.raises(ValueError, match=r"output_dir .*inside root_dir .*; use root_dir itself \(in place\) or a folder outside it"):
        mq.Destination.create(root, root / "sub")


# --- binary masks present, history ---------------------------------------------------------------------------------


def test_binary_masks_must_cover_every_present_label(tmp_path):
    sample = make_sample(tmp_path, speckled(), binaries=(0, 1))
    with pytest.raises(SampleError) as info:
        mq.sample_binary_masks(sample, [0, 1, 2], required=True)
    assert str(info.value) == (
        f"{sample.mask}: labels [2] present but no binary mask s01_mask_02_<short>.nii.gz found (binary masks present: [0, 1]); "
        "run the binary-mask extraction routine first"
    )
    assert sorted(mq.sample_binary_masks(sample, [0, 1], required=True)) == [0, 1]
    bare = make_sample(tmp_path / "b", speckled(), binaries=())
    assert mq.sample_binary_masks(bare, [0, 1, 2], required=False) == {}
    with pytest.raises(SampleError, match=r"labels \[1, 2\] present .*binary masks present: none"):
        mq.sample_binary_masks(bare, [0, 1, 2], required=True)


def test_find_applied_matches_step_and_parameters_exactly():
    info = {"history": ["not a mapping", {"step": "a", "params": {"x": 1}}, {"step": "b", "params": {"x": 2}, "date": "d"}]}
    assert mq.find_applied(info, "b", {"x": 2}) == {"step": "b", "params": {"x": 2}, "date": "d"}
    assert mq.find_applied(info, "b", {"x": 1}) is None and mq.find_applied(info, "a", {"x": 1}) is not None
    assert mq.find_applied({}, "a", {}) is None and mq.find_applied({"history": None}, "a", {}) is None


def test_applying_a_step_rewrites_mask_binaries_record_and_history_and_a_second_time_nothing(tmp_path):
    sample = make_sample(tmp_path, speckled())
    destination = mq.Destination.create(tmp_path, tmp_path)
    outcome = mq.apply_mask_step(sample, destination, *OPEN, open_step())
    assert outcome == {"status": "applied", "changed": True, "binary_mask_voxels_changed": 1, "voxels_relabelled": 1}
    expected = speckled()
    expected[8, 7, 1] = 0
    np.testing.assert_array_equal(voxels(sample.mask), expected)
    for v in (0, 1, 2):
        np.testing.assert_array_equal(voxels(sample.binary_mask(f"{v:02d}_L{v}")), (expected == v).astype(np.uint8))
    info = read_info(sample.info)
    entry = info["history"][-1]
    assert (entry["step"], entry["params"], entry["result"]) == (OPEN[0], OPEN[1], {"binary_mask_voxels_changed": 1, "voxels_relabelled": 1})
    assert entry[BINARY_MASKS_FROM] == file_stamp(sample.mask)
    assert info[MASK_LABELS] == {"file": file_stamp(sample.mask), "voxels": {0: int((expected == 0).sum()), 1: 90}}
    assert "pending_step" not in info
    before = {p.name: p.stat().st_mtime_ns for p in sample.path.iterdir()}
    assert mq.apply_mask_step(sample, destination, *OPEN, open_step()) == {"status": "already applied"}
    assert {p.name: p.stat().st_mtime_ns for p in sample.path.iterdir()} == before
    forced = mq.apply_mask_step(sample, destination, *OPEN, open_step(), force=True)
    assert forced["status"] == "applied" and forced["changed"] is False
    assert [h["step"] for h in read_info(sample.info)["history"]].count(OPEN[0]) == 2


def test_a_step_that_changes_nothing_keeps_the_mask_file(tmp_path):
    mask = speckled()
    mask[8, 7, 1] = 0
    sample = make_sample(tmp_path, mask)
    before = sample.mask.read_bytes()
    outcome = mq.apply_mask_step(sample, mq.Destination.create(tmp_path, tmp_path), *OPEN, open_step())
    assert outcome["changed"] is False and sample.mask.read_bytes() == before
    entry = read_info(sample.info)["history"][-1]
    assert entry["step"] == OPEN[0] and BINARY_MASKS_FROM not in entry


def test_a_copy_destination_gets_every_file_and_the_source_is_untouched(tmp_path):
    sample = make_sample(tmp_path / "g", speckled())
    (sample.path / "notes.txt").write_text("kept")
    (sample.path / ".hidden").write_text("left out")
    source = {p.name: p.read_bytes() for p in sample.path.iterdir()}
    out = tmp_path / "out"
    mq.apply_mask_step(sample, mq.Destination.create(tmp_path / "g", out), *OPEN, open_step())
    copy = SampleDir(out / "site" / "s01")
    assert {p.name: p.read_bytes() for p in sample.path.iterdir()} == source
    assert (copy.path / "notes.txt").read_text() == "kept" and not (copy.path / ".hidden").exists()
    assert voxels(copy.mask)[8, 7, 1] == 0 and voxels(copy.binary_mask("02_L2")).sum() == 0
    assert copy.volume.read_bytes() == sample.volume.read_bytes()
    nothing = SampleDir(tmp_path / "g2" / "site" / "s01")
    make_sample(tmp_path / "g2", speckled()).mask.unlink()
    assert mq.apply_mask_step(nothing, mq.Destination.create(tmp_path / "g2", tmp_path / "out2"), *OPEN, open_step()) == {"status": "no mask"}
    assert (tmp_path / "out2" / "site" / "s01" / "s01_volume.nii.gz").is_file()


def test_a_rewrite_killed_before_the_mask_was_replaced_is_applied_again(tmp_path, caplog):
    sample = make_sample(tmp_path, speckled())
    info = read_info(sample.info)
    info["pending_step"] = {"step": OPEN[0], "params": OPEN[1], "result": {}, "mask_before": file_stamp(sample.mask)}
    write_info(sample.info, info)
    with caplog.at_level(logging.INFO, logger="utils.mask_qc"):
        outcome = mq.apply_mask_step(sample, mq.Destination.create(tmp_path, tmp_path), *OPEN, open_step())
    assert outcome["status"] == "applied" and outcome["changed"] is True
    assert f"s01: {OPEN[0]} was interrupted before its mask was rewritten; it is applied again" in caplog.text
    assert [h["step"] for h in read_info(sample.info)["history"]].count(OPEN[0]) == 1


def test_a_rewrite_killed_after_the_mask_was_replaced_is_recorded_not_redone(tmp_path, caplog):
    sample = make_sample(tmp_path, speckled())
    old_stamp = file_stamp(sample.mask)
    mask = speckled()
    mask[8, 7, 1] = 0
    write_raw_nifti(sample.mask, mask, AFFINE)  # the new mask reached the disk, the history did not
    info = read_info(sample.info)
    info["pending_step"] = {"step": OPEN[0], "params": OPEN[1], "result": {"voxels_relabelled": 1}, "mask_before": old_stamp}
    write_info(sample.info, info)
    with caplog.at_level(logging.WARNING, logger="utils.mask_qc"):
        outcome = mq.apply_mask_step(sample, mq.Destination.create(tmp_path, tmp_path), *OPEN, open_step())
    assert outcome == {"status": "already applied"}
    assert [r.getMessage() for r in caplog.records] == [
        f"s01: {OPEN[0]} was interrupted after its mask was rewritten; its history entry (result {{'voxels_relabelled': 1}}) is now recorded"
    ]
    info = read_info(sample.info)
    assert "pending_step" not in info and info["history"][-1]["result"] == {"voxels_relabelled": 1}
    assert info["history"][-1][BINARY_MASKS_FROM] == file_stamp(sample.mask)
    assert info[MASK_LABELS]["voxels"] == {0: int((mask == 0).sum()), 1: 90}


# --- thresholding, transforms, threads ---------------------------------------------------------------------------------


def test_threshold_checks_and_its_transform_needs_the_volume_on_the_same_grid(tmp_path):
    with pytest.raises(ValueError, match=r"^threshold range \[5.0, 1.0\] is empty; LO <= HI expected$"):
        mq.threshold_transform(5.0, 1.0)
    with pytest.raises(ValueError, match=r"^mask shape \(1, 1, 2\) differs from volume shape \(1, 1, 3\)$"):
        mq.threshold_mask(np.zeros((1, 1, 2), np.uint8), np.zeros((1, 1, 3)), 0.0, 1.0)
    assert mq.threshold_mask(np.ones((1, 1, 2), np.uint8), np.array([[[2.0, 2.0]]]), 2.0, 2.0)[1] == 0  # a one-value range
    sample = make_sample(tmp_path, speckled())
    sample.volume.unlink()
    step = ("mask_thresholding", {"thresh": [-1.0, 1.0]})
    with pytest.raises(FileNotFoundError, match=r"s01_volume.nii.gz: volume file missing"):
        mq.apply_mask_step(sample, mq.Destination.create(tmp_path, tmp_path), *step, mq.threshold_transform(-1.0, 1.0))
    write_raw_nifti(sample.volume, np.zeros((9, 8, 4), np.float32), AFFINE)
    with pytest.raises(SampleError, match=r"s01_mask.nii.gz: grid \(shape \(9, 8, 3\)\) differs from the volume s01_volume.nii.gz \(shape \(9, 8, 4\)\)"):
        mq.apply_mask_step(sample, mq.Destination.create(tmp_path, tmp_path), *step, mq.threshold_transform(-1.0, 1.0))


def test_repair_parameters_and_threads(monkeypatch):
    with pytest.raises(ValueError, match=r"^filter_halfedge must be >= 0, got -1$"):
        mq.repair_transform(SliceRepair("open", (2, 2), 1.0), -1)
    monkeypatch.setattr(mq.os, "cpu_count", lambda: 16)
    assert [mq.threads_per_sample(w) for w in (1, 3, 16, 40, 0)] == [16, 5, 1, 1, 16]
    assert mq.threads_per_sample(4, "tcp://scheduler:8786") == 1
    monkeypatch.setattr(mq.os, "cpu_count", lambda: None)
    assert mq.threads_per_sample(1) == 1


def test_grown_boxes_cover_every_changed_voxel_of_a_label():
    boxes = {1: (slice(2, 4), slice(2, 4), slice(0, 1))}
    new = np.zeros((6, 6, 3), np.uint8)
    new[2:4, 2:4, 0] = 1
    new[5, 0, 2] = 1
    new[0, 5, 1] = 3
    diff = (np.array([5, 0, 1]), np.array([0, 5, 1]), np.array([2, 1, 1]))  # (1,1,1) became background
    grown = mq._grown_boxes(boxes, new, diff)
    assert grown == {1: (slice(2, 6), slice(0, 4), slice(0, 3)), 3: (slice(0, 1), slice(5, 6), slice(1, 2))}
    assert mq._grown_boxes(boxes, new, (np.array([], int),) * 3) == boxes
