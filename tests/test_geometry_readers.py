"""The two readers' rules (issue 17): the model of ITK against SimpleITK, the reason codes, the tolerances,
headers that cannot be real, the header save_nifti writes, nibabel's messages in our log.

SimpleITK is the oracle of ITK's reading (a test dependency, never imported by runtime code); ``nib.load``
is the oracle of nibabel's. Every file is a few hundred bytes.
"""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pytest

from tests.geometry_cases import (
    BASE, OBLIQUE, PERMUTED, SHAPE, SHEARED, header, nibabel_geometry, reader_gaps, rotation, sitk_geometry, volume_data, write_header_file,
)  # fmt: skip
from utils.files.nifti_readers import READER_TOL_MM, check_reader_agreement, itk_view, nibabel_view
from utils.files.nifti_readers import corner_displacement_mm, output_tolerance_mm
from utils.geometry.rigid import nearest_rigid_affine, resample_onto
from utils.files.nifti_io import NiftiError, byte_order, dtype_name, float32_inexact, load_header, load_nifti, read_volume, save_nifti

sitk = pytest.importorskip("SimpleITK")
sitk.ProcessObject_SetGlobalWarningDisplay(False)

LPS = np.diag([-1.0, -1.0, 1.0])


def _raw(path) -> nib.Nifti1Header:
    """The header exactly as stored (nibabel's fixes not applied)."""
    with open(path, "rb") as fh:
        return nib.Nifti1Header.from_fileobj(fh, check=False)


def _with(affine=None, **fields):
    """A header factory: ``affine`` in both matrices (codes 1), then raw fields overwritten."""

    def make():
        h = header(affine) if affine is not None else header(None)
        for key, value in fields.items():
            if key.startswith("pixdim"):
                h["pixdim"][int(key[-1])] = value
            elif key == "units":
                h.set_xyzt_units(value, "sec")
            else:
                h[key] = value
        return h

    return make


def _sform_only(matrix, qcode=0):
    def make():
        h = header(None)
        h.set_sform(matrix, code=1)
        h["qform_code"] = qcode
        return h

    return make


def _qs(sform_code, shift_mm):
    def make():
        h = header(BASE, qcode=1, scode=sform_code)
        h["srow_x"][3] += shift_mm
        return h

    return make


#: name -> (header factory, expected agree, expected reasons)
CASES = {
    "consistent": (_with(BASE), True, ()),
    "oblique": (_with(OBLIQUE), True, ()),
    "permuted_qfac_minus1": (_with(PERMUTED), True, ()),
    "no_codes": (_with(None, pixdim1=0.8, pixdim2=0.9, pixdim3=2.5), False, ("NO_SPATIAL_CODES",)),
    "pixdim_vs_sform": (_sform_only(np.diag([0.9, 1.1, 3.0, 1.0])), False, ("PIXDIM_SFORM_MISMATCH",)),
    "sheared_with_qform": (_with(SHEARED), False, ("SHEARED_SFORM", "QFORM_SFORM_MISMATCH")),
    "sheared_no_qform": (_sform_only(SHEARED), False, ("PIXDIM_SFORM_MISMATCH", "SHEARED_SFORM")),
    "qform_vs_sform_code2": (_qs(2, 2.0), False, ("QFORM_SFORM_MISMATCH",)),
    "qform_vs_sform_code1": (_qs(1, 2.0), True, ("QFORM_SFORM_MISMATCH",)),  # ITK takes a scanner sform too
    "qfac_zero": (_with(BASE, pixdim0=0.0), True, ("QFAC_INVALID",)),
    "qfac_minus_half_qform_only": (_with(BASE @ np.diag([1, 1, -1, 1]), pixdim0=-0.5, sform_code=0), False, ("QFAC_INVALID",)),
    "meter": (_with(BASE, units="meter"), False, ("SPATIAL_UNITS_NOT_MM",)),
    "micron": (_with(BASE, units="micron"), False, ("SPATIAL_UNITS_NOT_MM",)),
    "invalid_qform_code": (_with(BASE, qform_code=7, sform_code=0), False, ("NO_SPATIAL_CODES", "INVALID_XFORM_CODE")),
    "zero_pixdim_qform": (_with(BASE, pixdim1=0.0, sform_code=0), True, ()),
}


def _write(tmp_path, name, make):
    return write_header_file(tmp_path / f"{name}.nii", make(), volume_data())


def _itk_as_lps(view) -> dict[str, np.ndarray]:
    m = view.affine[:3, :3]
    spacing = np.linalg.norm(m, axis=0)
    return {"size": np.array(SHAPE), "spacing": spacing, "direction": LPS @ (m / spacing), "origin": LPS @ view.affine[:3, 3]}


@pytest.mark.parametrize("name", sorted(set(CASES) - {"sheared_no_qform"}))  # unreadable: next test
def test_itk_model_reads_what_simpleitk_reads(name, tmp_path):
    path = _write(tmp_path, name, CASES[name][0])
    raw = _raw(path)
    model = itk_view(raw)
    oracle = sitk_geometry(path)
    mine = _itk_as_lps(model)
    assert np.allclose(mine["spacing"], oracle["spacing"], atol=1e-6)
    assert np.allclose(mine["direction"], oracle["direction"], atol=1e-6)
    assert np.allclose(mine["origin"], oracle["origin"], atol=1e-5)


def test_itk_model_knows_when_simpleitk_cannot_read(tmp_path):
    path = _write(tmp_path, "sheared_no_qform", CASES["sheared_no_qform"][0])
    with pytest.raises(RuntimeError, match="orthonormal"):
        sitk.ReadImage(str(path))
    assert itk_view(_raw(path)).affine is None


def test_itk_model_of_the_permissive_sform_option(tmp_path, monkeypatch):
    path = _write(tmp_path, "sheared_no_qform", CASES["sheared_no_qform"][0])
    monkeypatch.setenv("ITK_NIFTI_SFORM_PERMISSIVE", "YES")
    oracle = sitk_geometry(path)
    model = itk_view(_raw(path), sform_permissive=True)
    assert model.matrix == "sform_orthogonalised"
    mine = _itk_as_lps(model)
    assert np.allclose(mine["direction"], oracle["direction"], atol=1e-6) and np.allclose(mine["origin"], oracle["origin"], atol=1e-5)


@pytest.mark.parametrize("name", sorted(CASES))
def test_nibabel_model_is_nib_load(name, tmp_path):
    path = _write(tmp_path, name, CASES[name][0])
    view = nibabel_view(_raw(path))
    assert np.allclose(view.affine, nib.load(str(path)).affine, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_reason_codes_and_verdict(name, tmp_path):
    make, agree, reasons = CASES[name]
    path = _write(tmp_path, name, make)
    refused_on_reading = name == "zero_pixdim_qform"  # a zero voxel size cannot be real: judge its raw header
    result = check_reader_agreement(_raw(path) if refused_on_reading else load_header(path))
    assert (result.agree, result.reasons) == (agree, reasons)
    gaps = reader_gaps(path) if name != "sheared_no_qform" else None
    if gaps is not None:  # the verdict is the oracle's: the two real readers' corner gap against the tolerance
        assert (gaps["corner_mm"] <= READER_TOL_MM) == agree
        assert result.displacement_mm == pytest.approx(gaps["corner_mm"], abs=1e-4)
    assert len(result.messages) == len(reasons) and all(m.startswith(code) for m, code in zip(result.messages, reasons))


def test_agreement_tolerance_just_inside_and_outside(tmp_path):
    # sform_code 2 and a qform shifted along x: ITK reads the qform (not "very similar" beyond 1e-4 mm), nibabel the sform
    inside = check_reader_agreement(load_header(_write(tmp_path, "in", _qs(2, 0.9 * READER_TOL_MM))))
    outside = check_reader_agreement(load_header(_write(tmp_path, "out", _qs(2, 1.1 * READER_TOL_MM))))
    assert inside.agree and inside.itk.matrix == "qform" and "QFORM_SFORM_MISMATCH" not in inside.reasons
    assert not outside.agree and outside.reasons == ("QFORM_SFORM_MISMATCH",)


def test_pixdim_tolerance_is_itks_just_inside_and_outside():
    def result(extra):
        h = header(None)
        h.set_sform(np.diag([1.0 + extra, 1.0, 1.0, 1.0]), code=1)
        return check_reader_agreement(h, tol_mm=10.0)

    assert "PIXDIM_SFORM_MISMATCH" not in result(0.9e-3).reasons  # ITK warns above 1e-3 mm
    assert "PIXDIM_SFORM_MISMATCH" in result(1.1e-3).reasons


def test_itk_prefers_a_very_similar_aligned_sform_just_inside_and_outside():
    def chosen(shift):
        h = header(BASE, qcode=1, scode=2)
        h["srow_x"][3] += shift
        return itk_view(h).matrix

    assert chosen(0.9e-4) == "sform" and chosen(1.1e-4) == "qform"


def test_shear_tolerance_is_itks_just_inside_and_outside():
    def reasons(tan):
        m = BASE.copy()
        m[1, 2] = tan * 2.5
        h = header(None)
        h.set_sform(m, code=1)
        h.set_zooms(tuple(np.linalg.norm(m[:3, :3], axis=0)))
        return check_reader_agreement(h).reasons

    assert "SHEARED_SFORM" not in reasons(0.9e-4)
    assert "SHEARED_SFORM" in reasons(1.1e-4)


def test_result_record_is_plain_data(tmp_path):
    result = check_reader_agreement(load_header(_write(tmp_path, "p", CASES["pixdim_vs_sform"][0])))
    record = result.as_record()
    assert record["readers_agree"] is False and record["reasons"] == ["PIXDIM_SFORM_MISMATCH"]
    assert record["numbers"]["pixdim"] == [1.0, 1.0, 1.0] and record["numbers"]["sform_spacing"] == [0.9, 1.1, 3.0]
    assert record["itk_matrix"] == "sform" and record["displacement_mm"] > 1
    assert "up to" in result.summary() and result.summary().count("PIXDIM_SFORM_MISMATCH") == 1


# --- headers that cannot be real are refused on reading -------------------------------------------


def _bad(make_header, data=None):
    def write(path):
        return write_header_file(path, make_header(), volume_data() if data is None else data)

    return write


def _field(**fields):
    def make():
        h = header(BASE)
        for key, value in fields.items():
            if key.startswith("pixdim"):
                h["pixdim"][int(key[-1])] = value
            elif key.startswith("srow"):
                h[key[:6]][int(key[-1])] = value
            else:
                h[key] = value
        return h

    return make


NOT_REAL = {
    "zero_axis": (_bad(lambda: header(BASE, shape=(6, 6, 0)), np.zeros((6, 6, 0), np.int16)), "zero or negative length axis: shape (6, 6, 0)"),
    "nan_pixdim": (_bad(_field(pixdim2=np.nan)), "pixdim[1:4] (voxel size) is (0.8, nan, 2.5); positive finite sizes in mm expected"),
    "zero_pixdim": (_bad(_field(pixdim3=0.0)), "pixdim[1:4] (voxel size) is (0.8, 0.9, 0)"),
    "negative_pixdim": (_bad(_field(pixdim1=-0.8)), "pixdim[1:4] (voxel size) is (-0.8, 0.9, 2.5)"),
    "nan_sform": (_bad(_field(srow_y1=np.nan)), "sform holds non-finite values"),
    "inf_qform_offset": (_bad(_field(qoffset_x=np.inf, sform_code=0)), "qform holds non-finite values"),
    "singular_sform": (_bad(_field(srow_x1=-0.8, srow_y1=0.0)), "sform is singular"),
    "rgb": (_bad(lambda: header(BASE, dtype=np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])), np.zeros(SHAPE, [("R", "u1"), ("G", "u1"), ("B", "u1")])),
            "RGB24 colour data (datatype 128); a scalar (grey-value) image expected"),
    "nan_scl_inter": (_bad(_field(scl_slope=1.0, scl_inter=np.nan)), "scl_slope 1 with scl_inter nan; a finite intercept expected"),
    "inf_scl_slope": (_bad(_field(scl_slope=np.inf, scl_inter=0.0)), "scl_slope is inf"),
    "zero_slope_with_intercept": (_bad(_field(scl_slope=0.0, scl_inter=5.0)), "nibabel applies no scaling, ITK adds the intercept"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(NOT_REAL))
def test_header_that_cannot_be_real_is_refused_naming_the_value(case, tmp_path):
    write, words = NOT_REAL[case]
    path = write(tmp_path / f"{case}.nii.gz")
    for reader in (load_header, load_nifti):
        with pytest.raises(NiftiError) as err:
            reader(path)
        assert str(err.value).startswith(f"{path}: ") and words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("slope, inter", [(np.nan, np.nan), (0.0, 0.0), (np.nan, 3.0), (1.0, 0.0), (2.0, -1024.0)])
def test_scaling_both_readers_read_alike_is_accepted(slope, inter, tmp_path):
    h = header(BASE)
    h["scl_slope"], h["scl_inter"] = slope, inter
    path = write_header_file(tmp_path / "s.nii.gz", h, volume_data())
    expected = nib.load(str(path)).get_fdata()
    assert np.array_equal(read_volume(load_nifti(path), path), expected.astype(np.float32))


def test_complex_volume_is_read_when_its_imaginary_part_is_zero(tmp_path):
    data = volume_data().astype(np.complex64)
    path = write_header_file(tmp_path / "c.nii.gz", header(BASE, dtype=np.complex64), data)
    assert np.array_equal(read_volume(load_nifti(path), path), data.real.astype(np.float32))
    data[1, 2, 3] += 0.5j
    path = write_header_file(tmp_path / "c2.nii.gz", header(BASE, dtype=np.complex64), data)
    with pytest.raises(NiftiError, match=r"1 voxels of non-zero imaginary part \(first at voxel \(1, 2, 3\)\)"):
        read_volume(load_nifti(path), path)


# --- integers beyond float32, dtype names -------------------------------------------------------------


def test_float32_inexact_counts_just_inside_and_outside_the_exact_range():
    values = np.array([2**24, -(2**24), 2**24 + 1, 2**24 + 2, -(2**24) - 1, 2**31 - 1, 7], dtype=np.int64)
    count, largest, error = float32_inexact(values)
    # 2**24 + 2 is on float32's grid there (spacing 2); 2**24 ± 1 and 2**31 - 1 are not
    assert (count, largest, error) == (3, 2**31 - 1, 1)
    assert float32_inexact(np.array([2**24, -(2**24)], np.int32)) == (0, 0, 0)  # exact: nothing to report


@pytest.mark.parametrize("dtype, name, order", [(">i2", "int16", "big"), ("<i2", "int16", "little"), (">f4", "float32", "big"), ("u1", "uint8", "none")])
def test_dtype_is_spelled_without_byte_order(dtype, name, order):
    assert (dtype_name(dtype), byte_order(dtype)) == (name, order)


# --- what save_nifti writes ------------------------------------------------------------------------


WRITTEN = {
    "lps": BASE,
    "oblique": OBLIQUE,
    "permuted_qfac_minus1": PERMUTED,
    "tilted_about_three_axes": rotation(33.0, 1) @ rotation(-12.0, 0) @ rotation(71.0, 2) @ np.diag([0.35, 1.7, 4.0, 1.0]),
    "tiny_voxels": np.diag([0.01, 0.02, 0.005, 1.0]),
}


@pytest.mark.parametrize("name", sorted(WRITTEN))
@pytest.mark.parametrize("template_codes", [None, (0, 0), (1, 2), (2, 2)])
def test_written_header_is_read_alike_by_nibabel_and_simpleitk(name, template_codes, tmp_path):
    template = None
    if template_codes is not None:
        h = header(WRITTEN[name], qcode=template_codes[0], scode=template_codes[1])
        template = nib.Nifti1Image(np.zeros(SHAPE, np.int16), None, h)
        template.header["qform_code"], template.header["sform_code"] = template_codes
    path = tmp_path / f"{name}.nii.gz"
    save_nifti(path, volume_data(), WRITTEN[name], dtype=np.float32, template=template)
    gaps = reader_gaps(path)
    assert gaps["size"] == 0 and gaps["spacing"] < 1e-6 and gaps["direction"] < 1e-6 and gaps["corner_mm"] <= 1e-4
    h = nib.load(str(path)).header
    assert int(h["qform_code"]) > 0 and int(h["sform_code"]) > 0
    assert corner_displacement_mm(SHAPE, h.get_qform(), h.get_sform()) <= 1e-4
    assert np.allclose(h["pixdim"][1:4], np.linalg.norm(h.get_sform()[:3, :3], axis=0), rtol=1e-6)
    assert h["pixdim"][0] == (1 if np.linalg.det(WRITTEN[name][:3, :3]) > 0 else -1)
    assert check_reader_agreement(load_header(path), tol_mm=1e-4).consistent


@pytest.mark.parametrize("affine, words", [(SHEARED, "SHEARED_SFORM"), (np.where(np.eye(4) == 1, np.nan, 0.0), "non-finite"),
                                           (np.diag([1.0, 0.0, 1.0, 1.0]), "zero-length axis")])  # fmt: skip
def test_save_nifti_refuses_an_affine_no_header_gives_every_reader(affine, words, tmp_path):
    with pytest.raises(NiftiError, match=words):
        save_nifti(tmp_path / "x.nii.gz", volume_data(), affine, dtype=np.float32)
    assert list(tmp_path.iterdir()) == []


def test_save_nifti_writes_mm_when_the_template_had_another_unit(tmp_path):
    h = header(BASE)
    h.set_xyzt_units("meter", "msec")
    template = nib.Nifti1Image(np.zeros(SHAPE, np.int16), None, h)
    save_nifti(tmp_path / "mm.nii.gz", volume_data(), BASE, dtype=np.float32, template=template)
    assert nib.load(str(tmp_path / "mm.nii.gz")).header.get_xyzt_units() == ("mm", "msec")
    assert reader_gaps(tmp_path / "mm.nii.gz")["corner_mm"] <= 1e-4


def test_output_tolerance_grows_with_float32_resolution_over_long_grids():
    assert output_tolerance_mm((512, 512, 300), np.diag([0.7, 0.7, 1.0, 1.0])) == 1e-4
    assert output_tolerance_mm((512, 512, 3000), np.diag([0.7, 0.7, 1.0, 1.0])) > 1e-4


# --- nibabel's messages go through our log, once, with the file name -------------------------------------


def test_nibabel_header_messages_are_logged_once_with_the_file_name(tmp_path, caplog, capfd):
    path = write_header_file(tmp_path / "q.nii.gz", _with(BASE, pixdim0=0.0)(), volume_data())
    negative = write_header_file(tmp_path / "n.nii.gz", _field(pixdim1=-0.8)(), volume_data())
    caplog.set_level(logging.INFO)
    for _ in range(3):
        load_nifti(path)
        load_header(path)
    with pytest.raises(NiftiError):
        load_header(negative)
    lines = [r for r in caplog.records if "nibabel:" in r.getMessage()]
    assert [(r.levelname, r.getMessage()) for r in lines] == [
        ("INFO", f"{path}: nibabel: pixdim[0] (qfac) should be 1 (default) or -1; setting qfac to 1"),
        ("WARNING", f"{negative}: nibabel: pixdim[1,2,3] should be positive; setting to abs of pixdim values"),
    ]
    assert not [r for r in caplog.records if r.name.startswith("nibabel")]
    assert "pixdim" not in capfd.readouterr().err  # nothing printed bare by nibabel's own handler
    assert "Level 35" not in caplog.text


# --- the nearest rigid grid --------------------------------------------------------------------------


def test_nearest_rigid_grid_of_a_gantry_tilt_keeps_every_slice_plane():
    rigid = nearest_rigid_affine(SHEARED)
    r = rigid[:3, :3] / np.linalg.norm(rigid[:3, :3], axis=0)
    assert np.allclose(r.T @ r, np.eye(3), atol=1e-12)
    assert np.allclose(rigid[:3, :2], SHEARED[:3, :2]) and np.allclose(rigid[:3, 3], SHEARED[:3, 3])
    normal = r[:, 2]
    for k in range(5):  # slice k lies in the same plane on both grids
        assert SHEARED[:3] @ [0, 0, k, 1] @ normal == pytest.approx(rigid[:3] @ [3, 4, k, 1] @ normal)


def test_nearest_rigid_grid_of_a_general_shear_is_the_polar_rotation():
    m = OBLIQUE.copy()
    m[:3, 0] += 0.05 * m[:3, 1]  # in-plane axes no longer perpendicular
    rigid = nearest_rigid_affine(m)
    r = rigid[:3, :3] / np.linalg.norm(rigid[:3, :3], axis=0)
    assert np.allclose(r.T @ r, np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.norm(rigid[:3, :3], axis=0), np.linalg.norm(m[:3, :3], axis=0))
    q = nib.Nifti1Header()  # nibabel's qform of a sheared matrix: the same polar rotation
    q.set_qform(m)
    assert np.allclose(q.get_qform()[:3, :3] / np.linalg.norm(q.get_qform()[:3, :3], axis=0), r, atol=1e-6)


def test_resampling_onto_the_rigid_grid_keeps_labels_in_world_space():
    mask = np.zeros((12, 12, 5), np.uint8)
    mask[5, 4, :] = 1  # one voxel per slice
    sheared = SHEARED.copy()
    rigid = nearest_rigid_affine(sheared)
    out = resample_onto(mask, sheared, rigid, order=0, cval=0, dtype=np.uint8)
    for k in range(5):
        (i, j), = np.argwhere(out[:, :, k] == 1)
        world_in, world_out = sheared @ [5, 4, k, 1], rigid @ [i, j, k, 1]
        assert np.linalg.norm(world_in - world_out) <= 0.5 * np.linalg.norm(rigid[:3, :2], axis=0).max() + 1e-9


def test_geometry_of_both_readers_in_the_oracle_helpers_agree_for_a_plain_file(tmp_path):
    path = write_header_file(tmp_path / "plain.nii", header(BASE), volume_data())
    assert nibabel_geometry(path)["size"].tolist() == list(SHAPE)
    assert reader_gaps(path)["corner_mm"] < 1e-5


def test_a_path_is_refused_with_the_reader_to_use(tmp_path):
    # utils/files/ reads files in nifti_io, which uses this module: the check takes what nifti_io read
    path = _write(tmp_path, "p", CASES["pixdim_vs_sform"][0])
    for source in (path, str(path)):
        with pytest.raises(TypeError) as info:
            check_reader_agreement(source)
        assert str(info.value) == (f"a nibabel image or header is needed, not the path {path}: "
                                   "read it with utils.files.nifti_io.load_header")  # fmt: skip
    assert check_reader_agreement(load_header(path)).reasons == ("PIXDIM_SFORM_MISMATCH",)
