"""What the reader-agreement check tells the user, pinned for every edge-case header (tests/golden/reader_agreement.json).

For each header of ``tests/test_geometry_readers.CASES`` (and the sheared one under ITK's permissive
sform option) the check's record (verdict, reasons, distance, both readers' matrices, every message,
the numbers behind them), its one-line summary and both readers' affines are compared with the golden
file; a difference names the case and the field (same machinery and ``GOLDEN_REGEN=1`` rule as
``test_golden_outputs.py``: regenerating writes the file and fails with the list of changes).
"""

from __future__ import annotations

import os

from tests.conftest import REPO
import numpy as np

from tests.geometry_cases import BASE, OBLIQUE, header, volume_data, write_header_file
from tests.golden_files import FORMAT
from tests.test_geometry_readers import CASES, _raw
from tests.test_golden_outputs import check_against_golden
from utils.files.nifti_io import load_header
from utils.files.nifti_readers import check_reader_agreement

GOLDEN = REPO / "tests" / "golden" / "reader_agreement.json"


def _extra_headers() -> dict:
    """Headers beyond the readers test's cases: both codes invalid, an unknown unit code, a quaternion just
    beyond unit length (b² + c² + d² > 1: normalised, a = 0), a qform-only grid with a zero and a negative
    step (ITK counts them as 1), a scanner sform with a differing qform (ITK keeps the sform)."""
    both = header(BASE, qcode=1, scode=1)
    both["qform_code"], both["sform_code"] = 7, 9
    units = header(BASE)
    units["xyzt_units"] = 7  # space unit code 7: not a NIfTI unit
    quat = header(OBLIQUE, qcode=1, scode=0)
    quat["quatern_b"], quat["quatern_c"], quat["quatern_d"] = 0.6, 0.8, 0.0005
    steps = header(BASE, qcode=1, scode=0)
    steps["pixdim"][2], steps["pixdim"][3] = 0.0, -2.5
    flipped = header(BASE @ np.diag([1.0, 1.0, -1.0, 1.0]), qcode=1, scode=0)
    flipped["pixdim"][0] = -1.0
    return {"both_codes_invalid": both, "unknown_unit_code": units, "quaternion_beyond_unit": quat,
            "qform_zero_and_negative_steps": steps, "qfac_minus_one_qform_only": flipped}  # fmt: skip


def _rounded(affine):
    return None if affine is None else [[float(f"{v:.10g}") for v in row] for row in affine.tolist()]


def describe(result) -> dict:
    return {
        **result.as_record(),
        "summary": result.summary(),
        "consistent": result.consistent,
        "nibabel": {"matrix": result.nibabel.matrix, "note": result.nibabel.note, "affine": _rounded(result.nibabel.affine)},
        "itk": {"matrix": result.itk.matrix, "note": result.itk.note, "affine": _rounded(result.itk.affine)},
    }


def test_reader_agreement_records_of_every_edge_case_match_the_pinned_ones(tmp_path):
    files = {}
    for name, (make, _agree, _reasons) in sorted(CASES.items()):
        path = write_header_file(tmp_path / f"{name}.nii", make(), volume_data())
        try:
            files[name] = {"json": describe(check_reader_agreement(load_header(path)))}
        except ValueError as exc:  # a header that cannot be real is refused when the file is read
            files[name] = {"json": {"refused": str(exc).replace(str(tmp_path), "<tmp>")}}
        files[f"{name} (raw header)"] = {"json": describe(check_reader_agreement(_raw(path)))}
    sheared = write_header_file(tmp_path / "sheared.nii", CASES["sheared_no_qform"][0](), volume_data())
    files["sheared_no_qform (ITK permissive)"] = {"json": describe(check_reader_agreement(load_header(sheared), sform_permissive=True))}
    files["consistent (tolerance 0)"] = {"json": describe(check_reader_agreement(_raw(tmp_path / "consistent.nii"), tol_mm=0.0))}
    for name, h in _extra_headers().items():
        files[f"{name} (raw header)"] = {"json": describe(check_reader_agreement(h))}
    check_against_golden(GOLDEN, {"format": FORMAT, "files": files, "headers": {}}, bool(os.environ.get("GOLDEN_REGEN")))


POLICY_GOLDEN = REPO / "tests" / "golden" / "geometry_policy.json"


def test_routine_02_geometry_decisions_for_every_edge_case_match_the_pinned_ones(tmp_path):
    """What routine 02 does with each edge-case file under each option: the matrix used and its warnings, or the refusal."""
    from utils.geometry.policy import GeometryOptions, resolve_file_geometry
    from utils.files.nifti_io import load_nifti

    options = {
        "default": GeometryOptions(),
        "trust itk": GeometryOptions(trust_uncoded_geometry="itk"),
        "trust nibabel": GeometryOptions(trust_uncoded_geometry="nibabel"),
        "resample sheared": GeometryOptions(resample_sheared=True),
    }
    files = {}
    for name, (make, _agree, _reasons) in sorted(CASES.items()):
        path = write_header_file(tmp_path / f"{name}.nii", make(), volume_data())
        try:
            img = load_nifti(path)
        except ValueError as exc:
            files[name] = {"json": {"refused when read": str(exc).replace(str(tmp_path), "<tmp>")}}
            continue
        for label, option in options.items():
            try:
                geo = resolve_file_geometry(img, path, option)
                outcome = {"taken_from": geo.taken_from, "sheared": geo.sheared, "affine": _rounded(geo.affine),
                           "warnings": [w.replace(str(tmp_path), "<tmp>") for w in geo.warnings], "record": geo.record()}  # fmt: skip
            except ValueError as exc:
                outcome = {"refused": str(exc).replace(str(tmp_path), "<tmp>")}
            files[f"{name} ({label})"] = {"json": outcome}
    check_against_golden(POLICY_GOLDEN, {"format": FORMAT, "files": files, "headers": {}}, bool(os.environ.get("GOLDEN_REGEN")))
