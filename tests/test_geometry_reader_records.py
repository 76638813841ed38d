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
from tests.geometry_cases import volume_data, write_header_file
from tests.golden_files import FORMAT
from tests.test_geometry_readers import CASES, _raw
from tests.test_golden_outputs import check_against_golden
from utils.geometry.readers import check_reader_agreement

GOLDEN = REPO / "tests" / "golden" / "reader_agreement.json"


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
            files[name] = {"json": describe(check_reader_agreement(path))}
        except ValueError as exc:  # a header that cannot be real is refused when the file is read
            files[name] = {"json": {"refused": str(exc).replace(str(tmp_path), "<tmp>")}}
        files[f"{name} (raw header)"] = {"json": describe(check_reader_agreement(_raw(path)))}
    sheared = write_header_file(tmp_path / "sheared.nii", CASES["sheared_no_qform"][0](), volume_data())
    files["sheared_no_qform (ITK permissive)"] = {"json": describe(check_reader_agreement(sheared, sform_permissive=True))}
    files["consistent (tolerance 0)"] = {"json": describe(check_reader_agreement(_raw(tmp_path / "consistent.nii"), tol_mm=0.0))}
    check_against_golden(GOLDEN, {"format": FORMAT, "files": files, "headers": {}}, bool(os.environ.get("GOLDEN_REGEN")))
