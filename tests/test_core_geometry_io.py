"""Unit tests of the shared core: NIfTI I/O, orientation, grid alignment, atomic writes."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from utils.geometry.alignment import AlignmentError, align_mask_to_volume, grid_displacement_mm, grids_match
from utils.files.nifti_io import NiftiError, load_nifti, read_mask, read_volume, save_nifti
from utils.geometry.orientation import format_affine, geometry_record, obliquity_deg, orientation_strings, parse_affine
from utils.archive.synthetic import affine_for, flip_storage, write_raw_nifti

PIR = affine_for("PIR", spacing=(1.5, 0.8, 2.0), origin=(-78.0, -135.0, -34.2))


def _labels(shape=(6, 7, 8), seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 5, size=shape).astype(np.uint8)


# --- orientation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "codes, expected",
    [("LPS", ("RAI", "LPS")), ("RAS", ("LPI", "RAS")), ("PIR", ("ASL", "PIR")), ("ASL", ("PIR", "ASL"))],
)
def test_orientation_strings_follow_axis_codes(codes, expected):
    assert orientation_strings(affine_for(codes, (0.7, 1.1, 3.0), (5, -3, 9))) == expected


def test_oblique_affine_is_named_with_closest_orientation():
    affine = affine_for("PIR", oblique_deg=4.6)
    assert obliquity_deg(affine) == pytest.approx(4.6, abs=1e-6)
    assert orientation_strings(affine) == ("Oblique(closest to ASL)", "Oblique(closest to PIR)")


def test_float32_roundoff_is_not_oblique():
    affine = affine_for("LPS", (0.291, 0.291, 1.25)).astype(np.float32).astype(np.float64)
    affine[0, 1] = 1e-7
    assert orientation_strings(affine) == ("RAI", "LPS")


def test_transform_text_roundtrips_bit_exactly():
    affine = affine_for("PIR", (0.1 + 0.2, 1 / 3, 2.0), (1e-17, -135.123456789012, 7), oblique_deg=1.234567)
    assert np.array_equal(parse_affine(format_affine(affine)), affine)
    with pytest.raises(ValueError, match=r"\(4, 4\) expected"):
        parse_affine("[[1, 2], [3, 4]]")


def test_geometry_record_columns():
    rec = geometry_record((10, 20, 30), PIR)
    assert (rec["szx"], rec["szy"], rec["szz"]) == (10, 20, 30)
    assert (rec["spx"], rec["spy"], rec["spz"]) == (1.5, 0.8, 2.0)
    assert rec["orientation_to"] == "PIR"


# --- I/O ---------------------------------------------------------------------------------------


def test_save_and_load_roundtrip_keeps_values_affine_and_dtype(tmp_path):
    data = _labels()
    path = tmp_path / "m.nii.gz"
    save_nifti(path, data, PIR, dtype=np.uint8)
    img = load_nifti(path)
    assert img.get_data_dtype() == np.uint8
    assert np.array_equal(read_mask(img, path), data)
    assert np.allclose(img.affine, PIR)
    assert int(img.header["sform_code"]) > 0 and int(img.header["qform_code"]) > 0
    # readable by plain nibabel (same gzip format)
    assert np.array_equal(np.asanyarray(nib.load(path).dataobj), data)


def test_save_refuses_silent_cast(tmp_path):
    with pytest.raises(TypeError, match="cast explicitly"):
        save_nifti(tmp_path / "x.nii.gz", np.zeros((2, 2, 2), np.int16), np.eye(4), dtype=np.uint8)


def test_read_volume_applies_scaling(tmp_path):
    img = nib.Nifti1Image(np.arange(8, dtype=np.int16).reshape(2, 2, 2), np.eye(4))
    img.header.set_slope_inter(2.0, -10.0)
    path = tmp_path / "v.nii.gz"
    nib.save(img, path)
    vol = read_volume(load_nifti(path), path)
    assert vol.dtype == np.float32
    assert vol[1, 1, 1] == pytest.approx(7 * 2.0 - 10.0)


def test_float64_mask_with_integral_values_is_accepted(tmp_path):
    data = _labels().astype(np.float64)
    path = write_raw_nifti(tmp_path / "m.nii.gz", data, PIR)
    out = read_mask(load_nifti(path), path)
    assert out.dtype == np.uint8 and np.array_equal(out, data.astype(np.uint8))


@pytest.mark.parametrize(
    "values, message",
    [
        (np.array([0.0, 1.5]), "non-integer"),
        (np.array([0.0, np.nan]), "NaN"),
        (np.array([0, 300]), r"\[0, 255\]"),
        (np.array([-1, 2]), r"\[0, 255\]"),
    ],
)
def test_bad_mask_values_are_refused_with_file_name(tmp_path, values, message):
    data = np.zeros((2, 2, 2), dtype=values.dtype if values.dtype != np.int64 else np.int16)
    data.flat[: len(values)] = values
    path = write_raw_nifti(tmp_path / "bad_msk.nii.gz", data, np.eye(4))
    with pytest.raises(NiftiError, match=message) as err:
        read_mask(load_nifti(path), path)
    assert "bad_msk.nii.gz" in str(err.value)


def test_truncated_gzip_is_reported_on_the_file(tmp_path):
    path = tmp_path / "t.nii.gz"
    save_nifti(path, _labels(), PIR, dtype=np.uint8)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(NiftiError, match="t.nii.gz: truncated or corrupt gzip"):
        load_nifti(path)


def test_short_data_is_reported(tmp_path):
    raw = nib.Nifti1Image(np.zeros((10, 10, 10), np.int16), np.eye(4)).to_bytes()
    path = tmp_path / "short.nii.gz"
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(NiftiError, match="data truncated"):
        load_nifti(path)


def test_not_nifti_is_reported(tmp_path):
    path = tmp_path / "x.nii.gz"
    path.write_bytes(gzip.compress(b"hello" * 100))
    with pytest.raises(NiftiError, match="x.nii.gz"):
        load_nifti(path)


def test_interrupted_write_keeps_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "m.nii.gz"
    old = _labels(seed=1)
    save_nifti(path, old, PIR, dtype=np.uint8)

    import utils.files.nifti_io

    def write_half_then_interrupt(fh, *args, **kwargs):
        fh.write(b"\0" * 1000)  # a partial file is on disk
        raise KeyboardInterrupt

    monkeypatch.setattr(utils.files.nifti_io, "_write_image", write_half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_nifti(path, _labels(seed=2), PIR, dtype=np.uint8)
    monkeypatch.undo()
    assert np.array_equal(read_mask(load_nifti(path), path), old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.nii.gz"]


def test_interrupted_rename_stage_leaves_no_temporary(tmp_path, monkeypatch):
    import utils.files.atomic as atomic

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(OSError):
        save_nifti(tmp_path / "n.nii.gz", _labels(), PIR, dtype=np.uint8)
    assert list(tmp_path.iterdir()) == []


# --- alignment --------------------------------------------------------------------------------


def test_identical_and_nearly_identical_grids_keep_the_array():
    mask = _labels()
    assert align_mask_to_volume(mask, PIR, mask.shape, PIR).method == "identical"
    nudged = PIR.copy()
    nudged[:3, 3] += 1e-8
    result = align_mask_to_volume(mask, nudged, mask.shape, PIR)
    assert result.method == "affine_copied" and result.data is mask


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_flipped_mask_is_reoriented_exactly(axis):
    mask = _labels()
    stored, stored_affine = flip_storage(mask, PIR, axis)
    result = align_mask_to_volume(stored, stored_affine, mask.shape, PIR)
    assert result.method == "reoriented"
    assert np.array_equal(result.data, mask)


@pytest.mark.parametrize("perm", [(1, 0, 2), (2, 0, 1), (1, 2, 0)])
def test_permuted_and_flipped_mask_is_reoriented_exactly(perm):
    mask = _labels()
    stored, stored_affine = flip_storage(mask, PIR, 1)
    stored = np.ascontiguousarray(np.transpose(stored, perm))
    stored_affine = stored_affine[:, [*perm, 3]]
    result = align_mask_to_volume(stored, stored_affine, mask.shape, PIR)
    assert result.method == "reoriented"
    assert np.array_equal(result.data, mask)


def test_shifted_mask_is_refused_unless_resampling_is_asked():
    mask = np.zeros((6, 7, 8), np.uint8)
    mask[2:4, 2:4, 2:4] = 3
    shifted = PIR.copy()
    shifted[:3, 3] += PIR[:3, :3] @ [1, 0, 0]  # one voxel along i
    with pytest.raises(AlignmentError, match="does not match the volume grid"):
        align_mask_to_volume(mask, shifted, mask.shape, PIR, source="m.nii.gz")
    result = align_mask_to_volume(mask, shifted, mask.shape, PIR, allow_resample=True)
    assert result.method == "resampled"
    assert np.array_equal(result.data[3:5, 2:4, 2:4], mask[2:4, 2:4, 2:4])


def test_same_shape_is_not_enough():
    a = affine_for("LPS", (1, 1, 1))
    b = affine_for("RAS", (1, 1, 1))
    assert not grids_match((4, 4, 4), a, (4, 4, 4), b)
    assert grid_displacement_mm((4, 4, 4), a, a) == 0.0


def test_identical_images_give_identical_files(tmp_path):
    """No file name or time stamp in the gzip header: re-running a routine reproduces the bytes."""
    data = _labels()
    save_nifti(tmp_path / "a.nii.gz", data, PIR, dtype=np.uint8)
    save_nifti(tmp_path / "b.nii.gz", data, PIR, dtype=np.uint8)
    assert (tmp_path / "a.nii.gz").read_bytes() == (tmp_path / "b.nii.gz").read_bytes()


@pytest.mark.parametrize(
    "make, dtype",
    [
        (lambda r: np.asfortranarray(r.integers(-1000, 2000, (30, 40, 50)).astype(np.int16)), np.float32),  # cast while writing
        (lambda r: r.integers(0, 5, (30, 40, 50)).astype(np.uint8), np.uint8),  # C order
        (lambda r: np.asfortranarray(r.integers(0, 5, (30, 40, 50)).astype(np.uint8)), np.uint8),
        (lambda r: np.asfortranarray(r.normal(size=(7, 9, 11)).astype(np.float32))[:, ::-1, :], np.float32),  # strided
    ],
)
def test_streamed_writer_gives_nibabels_bytes(make, dtype, tmp_path):
    import io

    data = make(np.random.default_rng(0))
    save_nifti(tmp_path / "a.nii.gz", data, PIR, dtype=dtype, descrip="x")
    ref = nib.Nifti1Image(data.astype(dtype), PIR)
    ref.set_sform(PIR, code=1)
    ref.set_qform(PIR, code=1)
    ref.header.set_slope_inter(1.0, 0.0)
    ref.header.set_xyzt_units("mm", "sec")
    ref.header["descrip"] = b"x"
    expected = io.BytesIO()
    ref.to_file_map({"image": nib.FileHolder(fileobj=expected)})
    assert gzip.decompress((tmp_path / "a.nii.gz").read_bytes()) == expected.getvalue()


def test_lossy_cast_is_refused():
    with pytest.raises(TypeError, match="int32 given, float32 expected"):
        save_nifti("/nonexistent/x.nii.gz", np.zeros((2, 2, 2), np.int32), PIR, dtype=np.float32)
