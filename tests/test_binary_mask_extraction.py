"""Binary masks of one sample (routine VerSe 04 / NME, ESO 03): content, names, headers, re-runs, history.

Small synthetic samples with an anisotropic, oblique affine; the expected binary masks are ``mask == label``
computed here with numpy, and files are read back with nibabel (not with the project's reader).
"""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pytest

from utils.labels.binary_masks import UP_TO_DATE, binary_mask_of, extract_sample_binary_masks, sample_binary_paths, write_binary_masks
from utils.labels.label_stats import label_stats
from utils.labels.label_maps import LabelError, LabelMap
from utils.files.sample_info import BINARY_MASKS_FROM, BINARY_MASKS_STEP, MASK_LABELS, SampleDir, file_stamp, read_info, write_info
from utils.archive.synthetic import affine_for

AFFINE = affine_for("PIR", (0.7, 1.3, 2.4), oblique_deg=5.0)
LABELS = LabelMap.from_dict({"labels": {0: {"name": "bg", "short": "Bg"}, 1: {"name": "a", "short": "A"},
                                        2: {"name": "b", "short": "B"}, 7: {"name": "c", "short": "C"}}})  # fmt: skip


def make_mask() -> np.ndarray:
    mask = np.zeros((6, 5, 4), np.uint8, order="F")
    mask[1:3, 2:4, 1] = 1
    mask[4, 0, 3] = 1
    mask[2:6, 1, 0:2] = 7
    return mask  # label 2 absent


def make_sample(tmp_path, mask=None, info=True) -> SampleDir:
    sample = SampleDir(tmp_path / "s01")
    sample.path.mkdir(parents=True)
    img = nib.Nifti1Image(make_mask() if mask is None else mask, AFFINE)
    img.set_qform(AFFINE, code=1)
    img.set_sform(AFFINE, code=2)  # aligned: kept by the binary masks
    img.header.set_xyzt_units("mm", "unknown")
    img.header["descrip"] = b"drawn by hand"
    nib.save(img, sample.mask)
    if info:
        write_info(sample.info, {"ID": "s01", "history": [{"step": "confirm_pairs", "params": {}}]})
    return sample


def read(path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


def assert_header_of_binary(path) -> None:
    """The mask's grid, codes and units; an empty description (the mask's is not copied)."""
    header = nib.load(path).header
    np.testing.assert_allclose(nib.load(path).affine, AFFINE, atol=1e-6)
    assert header.get_data_dtype() == np.uint8
    assert (int(header["sform_code"]), int(header["qform_code"])) == (2, 1)
    assert header.get_xyzt_units() == ("mm", "unknown")
    assert header["descrip"].item() == b""


@pytest.mark.parametrize("order", ["C", "F", "strided"])
def test_binary_mask_is_label_equality_in_the_mask_memory_order(order):
    mask = np.asarray(make_mask(), order="F" if order == "F" else "C")
    if order == "strided":  # neither C- nor Fortran-contiguous: a C-ordered result
        mask = np.zeros((12, 5, 4), np.uint8)[::2]
        mask[...] = make_mask()
    box = (slice(1, 5), slice(0, 4), slice(1, 4))  # label 1's box
    out = binary_mask_of(mask, 1, box)
    assert out.dtype == np.uint8 and out.flags["F_CONTIGUOUS" if order == "F" else "C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, (mask == 1).astype(np.uint8))
    absent = binary_mask_of(mask, 2, None)
    assert absent.dtype == np.uint8 and not absent.any() and absent.shape == mask.shape


def test_every_label_of_the_map_gets_a_file_with_the_mask_geometry(tmp_path):
    sample = make_sample(tmp_path, info=False)
    mask = make_mask()
    img = nib.load(sample.mask)
    present = write_binary_masks(sample, mask, img.affine, img, LABELS)
    assert present == [1, 7]
    expected_names = {f"s01_mask_{k}.nii.gz" for k in ("00_Bg", "01_A", "02_B", "07_C")}
    assert {p.name for p in sample.path.glob("s01_mask_*")} == expected_names
    for label in LABELS:
        path = sample.binary_mask(label.key)
        assert_header_of_binary(path)
        np.testing.assert_array_equal(read(path), (mask == label.index).astype(np.uint8))
    assert sample_binary_paths(sample, LABELS) == {lab.index: sample.binary_mask(lab.key) for lab in LABELS}


def test_extraction_records_its_history_and_the_mask_labels(tmp_path):
    sample = make_sample(tmp_path)
    summary = extract_sample_binary_masks(sample, LABELS)
    assert summary == "4 binary masks, labels present [1, 7]"
    info = read_info(sample.info)
    entry = info["history"][-1]
    assert [h["step"] for h in info["history"]] == ["confirm_pairs", BINARY_MASKS_STEP]
    assert entry["params"] == {"labels": ["00_Bg", "01_A", "02_B", "07_C"]}
    assert entry[BINARY_MASKS_FROM] == file_stamp(sample.mask)
    mask = make_mask()
    assert info[MASK_LABELS]["voxels"] == {v: int(np.count_nonzero(mask == v)) for v in (0, 1, 7)}
    assert info[MASK_LABELS]["file"] == file_stamp(sample.mask)
    for label in LABELS:
        assert_header_of_binary(sample.binary_mask(label.key))
        np.testing.assert_array_equal(read(sample.binary_mask(label.key)), (mask == label.index).astype(np.uint8))


def test_a_sample_without_info_yaml_gets_its_binary_masks(tmp_path):
    sample = make_sample(tmp_path, info=False)
    assert extract_sample_binary_masks(sample, LABELS).startswith("4 binary masks")
    assert not sample.info.exists()
    np.testing.assert_array_equal(read(sample.binary_mask("07_C")), (make_mask() == 7).astype(np.uint8))


def test_a_rerun_skips_only_what_is_up_to_date(tmp_path):
    sample = make_sample(tmp_path)
    extract_sample_binary_masks(sample, LABELS)
    mtimes = {p.name: p.stat().st_mtime_ns for p in sample.path.glob("s01_mask_*")}
    assert extract_sample_binary_masks(sample, LABELS) == f"{UP_TO_DATE}: 4 binary masks derived from the current mask"
    assert {p.name: p.stat().st_mtime_ns for p in sample.path.glob("s01_mask_*")} == mtimes
    # another step ran last: the binary-mask entry is still found in the history
    info = read_info(sample.info)
    info["history"].append({"step": "something_else", "params": {"x": 1}})
    write_info(sample.info, info)
    assert extract_sample_binary_masks(sample, LABELS).startswith(UP_TO_DATE)
    # a deleted binary mask is written again (and the history holds one entry of the step)
    sample.binary_mask("02_B").unlink()
    assert extract_sample_binary_masks(sample, LABELS).startswith("4 binary masks")
    assert sample.binary_mask("02_B").is_file()
    assert [h["step"] for h in read_info(sample.info)["history"]].count(BINARY_MASKS_STEP) == 1


def test_a_changed_mask_or_label_map_redoes_the_binary_masks(tmp_path):
    sample = make_sample(tmp_path)
    extract_sample_binary_masks(sample, LABELS)
    mask = make_mask()
    mask[0, 0, 0] = 2
    img = nib.Nifti1Image(mask, AFFINE)
    nib.save(img, sample.mask)
    assert extract_sample_binary_masks(sample, LABELS) == "4 binary masks, labels present [1, 2, 7]"
    np.testing.assert_array_equal(read(sample.binary_mask("02_B")), (mask == 2).astype(np.uint8))
    fewer = LabelMap.from_dict({"labels": {0: {"name": "bg", "short": "Bg"}, 1: {"name": "a", "short": "A"},
                                           2: {"name": "b", "short": "B"}, 7: {"name": "c", "short": "Cx"}}})  # fmt: skip
    assert extract_sample_binary_masks(sample, fewer).startswith("4 binary masks")
    assert sample.binary_mask("07_Cx").is_file()


def test_binary_masks_outside_the_label_map_are_reported_not_deleted(tmp_path, caplog):
    sample = make_sample(tmp_path)
    stale = sample.binary_mask("09_Old")
    stale.write_bytes(b"not touched")
    other = sample.binary_mask("08_Older")
    other.write_bytes(b"not touched either")
    with caplog.at_level(logging.WARNING, logger="utils.labels.binary_masks"):
        extract_sample_binary_masks(sample, LABELS)
    assert stale.read_bytes() == b"not touched" and other.read_bytes() == b"not touched either"
    assert [r.getMessage() for r in caplog.records] == [
        f"{sample.path}: binary masks not in the label map left untouched: s01_mask_08_Older.nii.gz, s01_mask_09_Old.nii.gz"
    ]


def test_missing_mask_and_values_outside_the_label_map_name_the_file(tmp_path):
    empty = SampleDir(tmp_path / "s02")
    empty.path.mkdir()
    with pytest.raises(FileNotFoundError, match=r"s02_mask.nii.gz: mask file missing"):
        extract_sample_binary_masks(empty, LABELS)
    mask = make_mask()
    mask[0, 0, 0] = 3
    sample = make_sample(tmp_path, mask=mask)
    with pytest.raises(LabelError, match=r"s01_mask.nii.gz: mask values \[3\] are not in the label map"):
        extract_sample_binary_masks(sample, LABELS)
    assert not list(sample.path.glob("s01_mask_*"))
    half = make_sample(tmp_path / "h", mask=make_mask().astype(np.float32) / 2)  # 0.5: not a label
    with pytest.raises(ValueError, match=rf"^{half.mask}: "):
        extract_sample_binary_masks(half, LABELS)


def test_precomputed_stats_give_the_same_files(tmp_path):
    a = make_sample(tmp_path / "a", info=False)
    b = make_sample(tmp_path / "b", info=False)
    img = nib.load(a.mask)
    mask = make_mask()
    write_binary_masks(a, mask, img.affine, img, LABELS)
    write_binary_masks(b, mask, img.affine, img, LABELS, stats=label_stats(mask))
    for label in LABELS:
        assert a.binary_mask(label.key).read_bytes() == b.binary_mask(label.key).read_bytes()
