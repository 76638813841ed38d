"""The per-sample contract of the mask-changing tools (utils/maskqc/steps.py), one rule at a time, on tiny samples."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import utils.maskqc.steps as mq
from utils.run.cli import SampleError
from utils.files.sample_info import BINARY_MASKS_FROM, MASK_LABELS, SampleDir, file_stamp, read_info, write_info
from utils.maskqc.slice_morphology import SliceRepair
from utils.archive.synthetic import affine_for, write_raw_nifti

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
    with caplog.at_level(logging.INFO, logger="utils.maskqc.steps"):
        outcome = mq.apply_mask_step(sample, mq.Destination.create(tmp_path, tmp_path), *OPEN, open_step())
    assert outcome["status"] == "applied" and outcome["changed"] is True
    assert f"s01: {OPEN[0]} was interrupted before its mask was rewritten; it is applied again" in [r.getMessage() for r in caplog.records]
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
    with caplog.at_level(logging.WARNING, logger="utils.maskqc.steps"):
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


# --- more of the contract, each rule a plausible bug would break ---------------------------------------------------


def two_step_history():
    return [{"step": "confirm_pairs", "params": {}}, {"step": "extract_binary_masks", "params": {}}]


def test_rewritten_files_keep_grid_codes_and_types_and_the_latest_entry_holds_the_stamp(tmp_path):
    sample = make_sample(tmp_path, speckled(), history=two_step_history())
    img = nib.load(sample.mask)
    img.header["descrip"] = b"drawn by hand"
    nib.save(img, sample.mask)  # the mask's description is not copied into its binary masks
    nib.save(nib.Nifti1Image(np.zeros(speckled().shape, np.float32), AFFINE), sample.volume)
    volume_mtime = sample.volume.stat().st_mtime_ns
    mq.apply_mask_step(sample, mq.Destination.create(tmp_path, tmp_path), *OPEN, open_step())
    for path in (sample.mask, *(sample.binary_mask(f"{v:02d}_L{v}") for v in (0, 1, 2))):
        img = nib.load(path)
        assert img.get_data_dtype() == np.uint8, path.name
        np.testing.assert_allclose(img.affine, nib.load(sample.volume).affine, atol=1e-6)
        assert (int(img.header["sform_code"]), int(img.header["qform_code"])) == (2, 1), path.name  # the input's codes
    assert nib.load(sample.binary_mask("01_L1")).header["descrip"].item() == b""
    history = read_info(sample.info)["history"]
    assert [h["step"] for h in history] == ["confirm_pairs", "extract_binary_masks", OPEN[0]]
    assert BINARY_MASKS_FROM not in history[1] and history[2][BINARY_MASKS_FROM] == file_stamp(sample.mask)
    assert sample.volume.stat().st_mtime_ns == volume_mtime  # in place: files the step does not change are left alone


def test_a_present_label_without_binary_mask_is_refused_and_a_folder_without_binaries_is_accepted(tmp_path):
    sample = make_sample(tmp_path / "a", speckled(), binaries=(0, 1))
    with pytest.raises(SampleError, match=r"labels \[2\] present but no binary mask"):
        mq.apply_mask_step(sample, mq.Destination.create(tmp_path / "a", tmp_path / "a"), *OPEN, open_step())
    bare = make_sample(tmp_path / "b", speckled(), binaries=())  # ESO before routine 03: the mask only
    outcome = mq.apply_mask_step(bare, mq.Destination.create(tmp_path / "b", tmp_path / "b"), *OPEN, open_step())
    assert outcome["changed"] is True and bare.binary_masks() == {}
    assert BINARY_MASKS_FROM not in read_info(bare.info)["history"][-1]


def test_copies_keep_the_info_and_drop_a_pending_entry_and_a_second_copy_is_fine(tmp_path):
    sample = make_sample(tmp_path / "g", speckled(), history=two_step_history())
    info = read_info(sample.info)
    info["pending_step"] = {"step": "x", "params": {}, "mask_before": {"size": 1, "crc32": 1}}
    info["site"] = "TJ"
    write_info(sample.info, info)
    out = tmp_path / "out"
    for _ in range(2):  # the source's history never records the step: the copy is written twice, into an existing folder
        mq.apply_mask_step(sample, mq.Destination.create(tmp_path / "g", out), *OPEN, open_step())
    copy = read_info(out / "site" / "s01" / "s01_info.yaml")
    assert copy["site"] == "TJ" and "pending_step" not in copy
    assert [h["step"] for h in copy["history"]] == ["confirm_pairs", "extract_binary_masks", OPEN[0]]
    assert read_info(sample.info)["pending_step"]["step"] == "x"  # the source is not touched
    done = make_sample(tmp_path / "h", speckled(), history=[*two_step_history(), {"step": OPEN[0], "params": OPEN[1]}])
    out2 = tmp_path / "out2"
    assert mq.apply_mask_step(done, mq.Destination.create(tmp_path / "h", out2), *OPEN, open_step()) == {"status": "already applied"}
    assert read_info(out2 / "site" / "s01" / "s01_info.yaml")["history"] == read_info(done.info)["history"]
    copied = {p.name: p.read_bytes() for p in (out2 / "site" / "s01").iterdir()}  # an unchanged sample is copied whole
    assert copied == {p.name: p.read_bytes() for p in done.path.iterdir()}


def test_a_crash_while_the_mask_is_rewritten_leaves_a_pending_entry_that_the_next_run_settles(tmp_path, monkeypatch, caplog):
    sample = make_sample(tmp_path, speckled())
    stamp = file_stamp(sample.mask)
    real = mq.save_nifti

    def crash_on_the_mask(path, *args, **kwargs):
        if path == sample.mask:
            raise KeyboardInterrupt
        real(path, *args, **kwargs)

    monkeypatch.setattr(mq, "save_nifti", crash_on_the_mask)
    with pytest.raises(KeyboardInterrupt):
        mq.apply_mask_step(sample, mq.Destination.create(tmp_path, tmp_path), *OPEN, open_step())
    pending = read_info(sample.info)["pending_step"]
    assert (pending["step"], pending["params"], pending["mask_before"]) == (OPEN[0], OPEN[1], stamp)
    assert pending["result"] == {"binary_mask_voxels_changed": 1, "voxels_relabelled": 1}
    monkeypatch.setattr(mq, "save_nifti", real)
    with caplog.at_level(logging.INFO, logger="utils.maskqc.steps"):
        assert mq.apply_mask_step(sample, mq.Destination.create(tmp_path, tmp_path), *OPEN, open_step())["changed"] is True
    info = read_info(sample.info)
    assert "pending_step" not in info and [h["step"] for h in info["history"]] == ["extract_binary_masks", OPEN[0]]


def test_a_settled_entry_keeps_the_history_before_it_and_loses_its_bookkeeping(tmp_path):
    sample = make_sample(tmp_path, speckled(), history=two_step_history())
    old = file_stamp(sample.mask)
    mask = speckled()
    mask[8, 7, 1] = 0
    write_raw_nifti(sample.mask, mask, AFFINE)
    info = read_info(sample.info)
    info["pending_step"] = {"step": OPEN[0], "params": OPEN[1], "result": {"voxels_relabelled": 1}, "mask_before": old}
    write_info(sample.info, info)
    mq.apply_mask_step(sample, mq.Destination.create(tmp_path, tmp_path), *OPEN, open_step())
    history = read_info(sample.info)["history"]
    assert [h["step"] for h in history] == ["confirm_pairs", "extract_binary_masks", OPEN[0]]
    assert "mask_before" not in history[-1]


@pytest.mark.parametrize("order", ["F", "C"])
def test_threshold_slabs_of_several_planes_give_the_whole_volume_rule(order, monkeypatch):
    rng = np.random.default_rng(8)
    mask = np.asarray(rng.integers(0, 3, (11, 6, 5)).astype(np.uint8), order=order)
    volume = np.asarray(rng.normal(0.0, 100.0, mask.shape), order=order)
    monkeypatch.setattr(mq, "_SLAB_VOXELS", 3 * 30)  # three 30-voxel planes per slab (6 x 5, or 5 x 6 transposed)
    expected = (mask > 0) & ~((volume >= -50.0) & (volume <= 60.0))
    out, where = mq._threshold(mask, volume, -50.0, 60.0, None)
    np.testing.assert_array_equal(out, np.where(expected, 0, mask))
    assert sorted(map(tuple, where.tolist())) == sorted(map(tuple, np.argwhere(expected).tolist()))


def test_thresholding_an_empty_mask_or_one_wholly_in_range_changes_nothing(tmp_path):
    out, n = mq.threshold_mask(np.zeros((2, 3, 4), np.uint8), np.ones((2, 3, 4)), 0.0, 1.0)
    assert n == 0 and not out.any()
    assert mq.threshold_transform(2.0, 2.0).lo == 2.0  # a one-value range is allowed
    for mask in (np.zeros((9, 8, 3), np.uint8), speckled()):
        sample = make_sample(tmp_path / str(int(mask.any())), mask, volume=np.full(mask.shape, 10.0, np.float32))
        step = ("mask_thresholding", {"thresh": [-140.0, 1000.0]})
        outcome = mq.apply_mask_step(sample, mq.Destination.create(sample.path.parents[1], sample.path.parents[1]), *step,
                                     mq.threshold_transform(-140.0, 1000.0))  # fmt: skip
        assert outcome == {"status": "applied", "changed": False, "voxels_set_to_background": 0}
        assert read_info(sample.info)["history"][-1]["result"] == {"voxels_set_to_background": 0}


def test_a_volume_that_is_not_3d_is_named(tmp_path):
    sample = make_sample(tmp_path, speckled())
    write_raw_nifti(sample.volume, np.zeros((*speckled().shape, 2), np.float32), AFFINE)
    with pytest.raises(ValueError, match=rf"^{sample.volume}: "):
        mq.apply_mask_step(sample, mq.Destination.create(tmp_path, tmp_path), "mask_thresholding", {}, mq.threshold_transform(0.0, 1.0))


def test_reading_a_mask_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"^{tmp_path / 'm.nii.gz'}: mask file missing$"):
        mq.read_label_mask(tmp_path / "m.nii.gz")
    write_raw_nifti(tmp_path / "h.nii.gz", np.full((2, 2, 2), 0.5, np.float32), AFFINE)
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'h.nii.gz'}: "):
        mq.read_label_mask(tmp_path / "h.nii.gz")


def test_small_region_rows_are_complete_and_need_every_binary_mask(tmp_path):
    mask = np.zeros((6, 6, 6), np.uint8)
    mask[0:3, 0:3, 0:3] = 1
    mask[5, 5, 5] = 2
    mask[4, 4, 5] = 2  # touches (5, 5, 5) along an edge: one region at 26-connectivity, two at 6
    sample = make_sample(tmp_path, mask)
    rows = mq.small_region_rows(sample, tmp_path, 5.0, 26)
    assert [(r["label_index"], r["voxel_count"]) for r in rows] == [(2, 2)]
    row = rows[0]
    assert list(row)[:5] == ["ID", "file", "mask", "label_index", "label_name"]
    assert (row["ID"], row["file"], row["mask"], row["label_name"]) == ("s01", "site/s01/s01_mask_02_L2.nii.gz", "site/s01/s01_mask.nii.gz", "L2")
    assert [(r["label_index"], r["voxel_count"]) for r in mq.small_region_rows(sample, tmp_path, 5.0, 6)] == [(2, 1), (2, 1)]
    info = read_info(sample.info)  # a record of the mask's labels that fits the file is used
    info[MASK_LABELS] = {"file": file_stamp(sample.mask), "voxels": {0: int((mask == 0).sum()), 1: 27, 2: 2}}
    write_info(sample.info, info)
    assert len(mq.small_region_rows(sample, tmp_path, 5.0, 26)) == 1
    sample.info.unlink()  # no info yaml: the labels are counted
    assert len(mq.small_region_rows(sample, tmp_path, 5.0, 26)) == 1
    sample.binary_mask("02_L2").unlink()
    with pytest.raises(SampleError, match=r"labels \[2\] present but no binary mask"):
        mq.small_region_rows(sample, tmp_path, 5.0, 26)


def test_repair_transform_accepts_a_zero_window_and_its_grown_boxes_cover_a_single_changed_voxel():
    assert mq.repair_transform(SliceRepair("open", (2, 2), 1.0), 0).filter_halfedge == 0
    new = np.zeros((4, 4, 4), np.uint8)
    new[3, 2, 1] = 5
    assert mq._grown_boxes({}, new, (np.array([3]), np.array([2]), np.array([1]))) == {5: (slice(3, 4), slice(2, 3), slice(1, 2))}


# --- the command lines -----------------------------------------------------------------------------------------------


CLOSE_TOOL = "utils/morphological_close_on_slice_small_region.py"
OPEN_TOOL = "utils/morphological_open_on_slice_small_region.py"


def tool_args(root, out=None, **over):
    args = {"--root_dir": root, "--output_dir": out or root, "--kernel_size": (2, 2), "--filter_halfedge": 1, "--region_area_thresh": 1.0}
    args.update(over)
    flat = []
    for key, value in args.items():
        if value is None:
            continue
        flat += [key, *(value if isinstance(value, tuple) else (value,))]
    return [*flat, "--no_pbar"]


@pytest.mark.parametrize("missing", ["--root_dir", "--output_dir", "--kernel_size", "--filter_halfedge", "--region_area_thresh"])
def test_every_required_option_is_required(tmp_path, missing, capsys):
    from tests.conftest import run_script

    with pytest.raises(SystemExit) as info:
        run_script(OPEN_TOOL, *tool_args(tmp_path, **{missing: None}))
    assert info.value.code == 2 and f"the following arguments are required: {missing}" in capsys.readouterr().err


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--filter_halfedge", "x", "argument --filter_halfedge: invalid int value: 'x'"),
    ("--region_area_thresh", "small", "argument --region_area_thresh: invalid float value: 'small'"),
    ("--kernel_size", ("2", "b"), "argument --kernel_size: invalid int value: 'b'"),
    ("--connectivity", "6", "argument --connectivity: invalid choice: 6 (choose from 4, 8)"),
])  # fmt: skip
def test_option_values_are_checked_by_the_parser(tmp_path, option, value, message, capsys):
    from tests.conftest import run_script

    with pytest.raises(SystemExit) as info:
        run_script(OPEN_TOOL, *tool_args(tmp_path, **{option: value}))
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_the_tool_records_its_parameters_logs_a_summary_and_force_reapplies(tmp_path, caplog):
    from tests.conftest import run_script

    make_sample(tmp_path / "g", speckled())
    root = tmp_path / "g"
    with caplog.at_level(logging.INFO, logger="utils.maskqc.steps"):
        assert run_script(OPEN_TOOL, *tool_args(root, **{"--connectivity": 4})) == 0
    entry = read_info(root / "site" / "s01" / "s01_info.yaml")["history"][-1]
    assert entry["step"] == OPEN[0] and entry["params"] == {"kernel_size": [2, 2], "filter_halfedge": 1, "region_area_thresh": 1.0, "connectivity": 4}
    messages = [r.getMessage() for r in caplog.records if r.name == "utils.maskqc.steps"]
    assert messages[0] == (f"1 sample in {root}, rewritten in place; parameters "
                           "{'kernel_size': [2, 2], 'filter_halfedge': 1, 'region_area_thresh': 1.0, 'connectivity': 4}")  # fmt: skip
    assert messages[-1] == "applied to 1 sample (1 mask changed: binary_mask_voxels_changed 1, voxels_relabelled 1)"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="utils.maskqc.steps"):
        assert run_script(OPEN_TOOL, *tool_args(root, tmp_path / "out", **{"--connectivity": 4})) == 0
    messages = [r.getMessage() for r in caplog.records if r.name == "utils.maskqc.steps"]
    assert messages[0].startswith(f"1 sample in {root}, written to {tmp_path / 'out'}; parameters")
    assert messages[-1] == "applied to 0 samples, 1 already applied with these parameters"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="utils.maskqc.steps"):
        assert run_script(OPEN_TOOL, *tool_args(root, **{"--connectivity": 4}), "--force") == 0
    assert [r.getMessage() for r in caplog.records if r.name == "utils.maskqc.steps"][-1] == "applied to 1 sample (no mask changed)"


def test_the_summary_line_counts_applied_changed_already_applied_and_maskless_samples():
    applied = {"status": "applied", "changed": True, "voxels_relabelled": 3, "binary_mask_voxels_changed": 5}
    same = {"status": "applied", "changed": False, "voxels_relabelled": 0, "binary_mask_voxels_changed": 0}
    outcomes = [applied, same, dict(applied), {"status": "already applied"}, {"status": "no mask"}, {"status": "no mask"}]
    assert mq.step_summary(outcomes) == (
        "applied to 3 samples (2 masks changed: voxels_relabelled 6, binary_mask_voxels_changed 10), "
        "1 already applied with these parameters, 2 samples without mask"
    )
    assert mq.step_summary([{"status": "applied", "changed": True}]) == "applied to 1 sample (1 mask changed)"
    assert mq.step_summary([]) == "applied to 0 samples"


def test_the_tool_hands_its_options_to_the_per_sample_runner(tmp_path, monkeypatch):
    import argparse

    from utils.run.cli import RunReport

    make_sample(tmp_path / "g", speckled())
    seen = {}

    def fake_run(samples, work, **kwargs):
        seen.update(kwargs, n=len(samples))
        return RunReport(kwargs["desc"])

    monkeypatch.setattr(mq, "run_per_sample", fake_run)
    args = argparse.Namespace(root_dir=tmp_path / "g", output_dir=tmp_path / "o", workers=3, dask_scheduler="tcp://h:1",
                              no_pbar=True, force=False)  # fmt: skip
    mq.run_mask_step(args, OPEN[0], OPEN[1], open_step())
    key = seen.pop("key")
    assert seen == {"n": 1, "desc": "slice-wise opening", "workers": 3, "show_progress": False, "dask_scheduler": "tcp://h:1",
                    "input_dirs": [tmp_path / "g"], "output_dirs": [tmp_path / "o"]}  # fmt: skip
    assert key(SampleDir(tmp_path / "a" / "b7")) == "b7"
    mq.run_mask_step(args, "some_new_step", {}, open_step())
    assert seen["desc"] == "some_new_step"  # a step without a label is shown by its name
    (tmp_path / "file").write_text("x")
    args.output_dir = tmp_path / "file" / "sub"
    with pytest.raises(ValueError, match=r"^--output_dir .*file/sub: cannot create the folder"):
        mq.run_mask_step(args, OPEN[0], OPEN[1], open_step())


def test_repair_step_reads_the_options(monkeypatch):
    import argparse

    args = argparse.Namespace(kernel_size=[3, 2], filter_halfedge=2, region_area_thresh=4.5, connectivity=4, workers=1, dask_scheduler="tcp://h:1")
    monkeypatch.setattr(mq.os, "cpu_count", lambda: 8)
    params, transform = mq.repair_step("close", args)
    assert params == {"kernel_size": [3, 2], "filter_halfedge": 2, "region_area_thresh": 4.5, "connectivity": 4}
    assert transform.repair == SliceRepair("close", (3, 2), 4.5, 4) and transform.filter_halfedge == 2 and transform.threads == 1
    args.dask_scheduler = None
    assert mq.repair_step("open", args)[1].threads == 8


def test_help_of_the_morphology_tools_documents_every_option(capsys):
    from tests.conftest import run_script

    for tool in (CLOSE_TOOL, OPEN_TOOL):
        with pytest.raises(SystemExit):
            run_script(tool, "--help")
        text = " ".join(capsys.readouterr().out.split())
        for expected in (
            "--root_dir ROOT_DIR grouped dataset folder",
            "--output_dir OUTPUT_DIR where to write; equal to --root_dir rewrites in place (atomically per file)",
            "--force (addition) apply again to samples whose info yaml records this step with the same parameters",
            "--kernel_size H W structuring element, voxels along array axes 0 and 1 (VerSe 5 5, ESO 2 2)",
            "--filter_halfedge N fusion window (2N+1)x(2N+1) in-slice voxels (tutorials: 3)",
            "--region_area_thresh MM2 repair in-slice components smaller than this area in mm² (VerSe 2.0, ESO 10)",
            "--connectivity {4,8} (addition) in-slice connectivity of components (default 8)",
        ):
            assert expected in text, (tool, expected)



def test_a_sample_without_any_binary_mask_cannot_be_reported():
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        from pathlib import Path

        sample = make_sample(Path(tmp), speckled(), binaries=())
        with pytest.raises(SampleError, match=r"labels \[1, 2\] present but no binary mask .*binary masks present: none"):
            mq.small_region_rows(sample, Path(tmp), 5.0, 26)


def test_output_inside_the_archive_the_dataset_came_from_is_refused(tmp_path):
    import argparse

    sample = make_sample(tmp_path / "g", speckled())
    (tmp_path / "archive").mkdir()
    info = read_info(sample.info)
    info["source"] = {"archive_root": "../../../archive"}  # recorded by routine 02, relative to the sample folder
    write_info(sample.info, info)
    args = argparse.Namespace(root_dir=tmp_path / "g", output_dir=tmp_path / "archive" / "repaired", workers=1, dask_scheduler=None,
                              no_pbar=True, force=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"^--output_dir "):
        mq.run_mask_step(args, OPEN[0], OPEN[1], open_step())
    assert not (tmp_path / "archive" / "repaired").exists()
