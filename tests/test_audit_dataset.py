"""utils/audit_dataset.py end to end: problems planted in a copy of the VerSe demo dataset each give their code on the
right sample; the clean demo samples of all three datasets give no warning or error; exit codes, policy, outputs."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from tests.conftest import run_script
from utils.files.sample_info import read_info, write_info
from verse.audit_demo import (
    IMPLIED,
    PLANTED,
    plant,
    read_image,
    sample_folder,
    write_image,
)

TOOL = "utils/audit_dataset.py"

@pytest.fixture(scope="module")
def planted(verse_demo, tmp_path_factory) -> tuple[Path, dict]:
    """A planted copy of the VerSe demo and its audit.json (exit code 1)."""
    root = tmp_path_factory.mktemp("audit_planted")
    shutil.copytree(verse_demo / "grouped", root / "grouped")
    shutil.copytree(verse_demo / "descriptor", root / "descriptor")
    plant(root / "grouped")
    assert run_script(TOOL, "--root_dir", root / "grouped", "--output_dir", root / "audit", "--no_pbar") == 1
    return root, json.loads((root / "audit/audit.json").read_text())


def by_sample(report: dict, severities=("error", "warning")) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in report["findings"]:
        if f["severity"] in severities:
            out.setdefault(f["path"], set()).add(f["code"])
    return out


# --------------------------------------------------------------------------------------------------------------------
# the planted problems


@pytest.mark.parametrize("problem", list(PLANTED))
def test_each_planted_problem_gives_its_code_on_its_sample(planted, problem):
    _, report = planted
    path, codes = PLANTED[problem]
    assert codes <= by_sample(report).get(path, set()), [f for f in report["findings"] if f["path"] == path]


def test_nothing_else_is_reported_and_untouched_samples_are_clean(planted):
    _, report = planted
    expected = {path: codes | IMPLIED.get(path, set()) for path, codes in PLANTED.values()}
    assert by_sample(report) == expected


def test_findings_name_the_values_behind_them(planted):
    _, report = planted
    find = {(f["path"], f["code"]): f for f in report["findings"]}
    order = find["VerSe19/train/verse004", "LABEL_ORDER"]
    assert order["values"]["pairs"] == [{"expected_first": 17, "expected_second": 18, "gap_mm": pytest.approx(-12.0, abs=1.0)}]
    assert order["file"] == "VerSe19/train/verse004/verse004_mask.nii.gz" and "17 (T10)" in order["message"]
    volume = find["VerSe19/train/verse401-201", "LABEL_VOLUME_OUTLIER"]
    assert volume["values"]["label"] == 20 and volume["values"]["ratio"] == pytest.approx(4.3, rel=0.05)
    edge = find["VerSe20/test/gl017", "LABEL_AT_FOV_EDGE"]
    assert edge["values"]["label"] == 3 and [f["direction"] for f in edge["values"]["faces"]] == ["superior"]
    dup = find["VerSe20/test/verse900", "DUPLICATE_ACROSS_PATIENTS"]
    assert dup["values"]["kind"] == "exact" and dup["related"] == ["VerSe19/val/verse010"]
    assert [p["patient"] for p in dup["values"]["pair"]] == ["verse010", "verse900"]
    assert [p["orientation"] for p in dup["values"]["pair"]] == ["RAS", "LAS"]
    leak = find["VerSe20/test/verse900", "DUPLICATE_ACROSS_SUBSETS"]
    assert leak["values"]["conflicts"] == [{"split": "subset (archive)", "subsets": ["val", "test"]}]
    near = find["VerSe20/train/gl003-002", "NEAR_DUPLICATE_SCAN"]
    assert near["values"]["kind"] == "near" and near["values"]["residual_correlation"] > 0.5
    hu = find["VerSe19/test/verse020", "CT_NOT_HU"]
    assert hu["values"]["median"] > 900 and hu["severity"] == "error" and hu["suggestion"]
    sex = find["VerSe19/train/verse401-253", "PATIENT_SEX_MISMATCH"]
    assert sex["values"]["sexes"] == {"VerSe19/train/verse401-201": "M", "VerSe19/train/verse401-253": "F"}


def test_summary_thresholds_and_records_are_in_the_json(planted):
    root, report = planted
    assert report["format"] == "segmentation-dataset-audit" and report["dataset"] == "verse" and report["modality"] == "CT"
    assert report["root_dir"] == "../grouped" and report["exit_code"] == 1 and report["samples"] == 12
    assert report["summary"]["by_code"]["LABEL_ORDER"] == {"severity": "error", "count": 1, "ignored": 0}
    assert report["summary"]["by_severity"]["error"] == sum(f["severity"] == "error" for f in report["findings"])
    assert report["policy"]["thresholds"]["label_volume"]["min_ratio"] == 2.0
    assert report["policy"]["anatomy"]["order"]["labels"][19] == 26  # T13 between T12 and L1
    rec = next(r for r in report["records"] if r["path"] == "VerSe19/train/verse004")
    assert rec["geometry"]["orientation"] == "PIR" and rec["geometry"]["shape"] == [36, 40, 36]
    assert rec["geometry"]["canonical_shape"] == [36, 36, 40]  # R, A, S
    assert set(rec["mask"]["labels"]) == {"16", "17", "18", "19", "20"}
    assert set(rec["foreground"]) >= {"mean", "median", "std", "min", "max", "percentile_00_5", "percentile_99_5"}
    assert rec["meta"] == {"patient": "verse004", "subset": "train", "sex": "F", "age": 65, "keys": {"archive": "VerSe19", "subset": "train"}}
    assert not any(str(root) in json.dumps(r) for r in report["records"])  # no absolute path of this machine


def test_xlsx_holds_the_same_findings(planted):
    from utils.files.spreadsheet import read_sheet, sheet_names

    root, report = planted
    path = root / "audit/audit.xlsx"
    assert sheet_names(path) == ["Findings", "Summary", "Ignored", "Samples"]
    sheet = read_sheet(path, "Findings")
    assert list(zip(sheet["code"], sheet["path"])) == [(f["code"], f["path"]) for f in report["findings"]]
    assert len(read_sheet(path, "Samples")) == 12


# --------------------------------------------------------------------------------------------------------------------
# clean demos: no false positives


@pytest.mark.parametrize("demo", ["verse_demo", "eso_demo", "nme_demo"])
def test_clean_demo_datasets_give_no_warning_or_error(demo, request, tmp_path):
    root = request.getfixturevalue(demo)
    assert run_script(TOOL, "--root_dir", root / "grouped", "--output_dir", tmp_path / "audit", "--fail_on", "warning", "--no_pbar") == 0
    report = json.loads((tmp_path / "audit/audit.json").read_text())
    assert report["summary"]["by_severity"]["error"] == report["summary"]["by_severity"]["warning"] == 0, report["findings"]
    assert report["samples"] == {"verse_demo": 10, "eso_demo": 32, "nme_demo": 15}[demo]


def test_the_eso_demo_annotation_spilling_into_air_is_found_before_thresholding(eso_demo, tmp_path):
    """xiangyang's masks hold a strip in the air outside the body (the demo's planted annotation error): before the
    tutorial's thresholding removes it, the audit reports it as a second piece of the tumour ROI, cut by the edge."""
    grouped = tmp_path / "grouped"
    shutil.copytree(eso_demo / "grouped" / "XY", grouped / "XY")
    folder = grouped / "XY/post/XY_7710023_post"
    mask, affine, img = read_image(folder, folder.name, "mask")
    mask[0:2, 10:14, 4:8] = 1  # as eso/demo_archive.py writes it (edge_spill)
    write_image(folder, folder.name, "mask", mask, affine, img)
    code, report = audit(grouped, tmp_path / "out", "--dataset", "eso")
    assert code == 0 and by_sample(report) == {"XY/post/XY_7710023_post": {"LABEL_FRAGMENTED", "LABEL_AT_FOV_EDGE"}}


def test_an_inverted_mri_contrast_and_an_age_going_backwards(nme_demo, eso_demo, tmp_path):
    """NME: one breast MRI with its contrast inverted (the lesion dark); ESO: a post-therapy scan younger than the pre-therapy one."""
    nme = tmp_path / "nme"
    shutil.copytree(nme_demo / "grouped", nme)
    folder, sid = sample_folder(nme, "Tongji/train-val/train/01A001_1004091054")
    volume, affine, img = read_image(folder, sid, "volume")
    write_image(folder, sid, "volume", volume.max() + volume.min() - volume, affine, img)
    code, report = audit(nme, tmp_path / "nme_audit", "--dataset", "nme", "--fail_on", "warning")
    assert code == 1 and by_sample(report) == {"Tongji/train-val/train/01A001_1004091054": {"FOREGROUND_INTENSITY_OUTLIER"}}
    eso = tmp_path / "eso"
    shutil.copytree(eso_demo / "grouped" / "TJ", eso / "TJ")
    folder = eso / "TJ/post/TJ_600112457_post"
    info = read_info(folder / "TJ_600112457_post_info.yaml")
    info["attributes"]["Age"] = info["attributes"]["Age"] - 2
    write_info(folder / "TJ_600112457_post_info.yaml", info)
    code, report = audit(eso, tmp_path / "eso_audit", "--dataset", "eso", "--fail_on", "warning")
    assert code == 1 and by_sample(report) == {"TJ/post/TJ_600112457_post": {"PATIENT_AGE_ORDER"}}


# --------------------------------------------------------------------------------------------------------------------
# exit codes, policy, re-runs


@pytest.fixture
def small(verse_demo, tmp_path) -> Path:
    """A copy of three demo samples, one of them with swapped labels."""
    root = tmp_path / "grouped"
    for rel in ("VerSe19/train/verse004", "VerSe19/val/verse010", "VerSe20/train/verse505"):
        shutil.copytree(verse_demo / "grouped" / rel, root / rel)
    folder, sid = sample_folder(root, "VerSe19/train/verse004")
    mask, affine, img = read_image(folder, sid, "mask")
    mask[mask == 16], mask[mask == 20] = 20, 16
    write_image(folder, sid, "mask", mask, affine, img)
    return root


def audit(root: Path, out: Path, *extra) -> tuple[int, dict]:
    dataset = [] if "--dataset" in extra else ["--dataset", "verse"]
    code = run_script(TOOL, "--root_dir", root, "--output_dir", out, "--no_pbar", *dataset, *extra)
    report = json.loads((out / "audit.json").read_text()) if (out / "audit.json").is_file() else {}
    return code, report


def test_fail_on_decides_the_exit_code(small, tmp_path):
    assert audit(small, tmp_path / "a")[0] == 1
    assert audit(small, tmp_path / "b", "--fail_on", "never")[0] == 0
    policy = tmp_path / "p.yaml"
    policy.write_text("severity: {LABEL_ORDER: warning}\n")
    assert audit(small, tmp_path / "c", "--policy", policy)[0] == 0
    assert audit(small, tmp_path / "d", "--policy", policy, "--fail_on", "warning")[0] == 1
    assert audit(small, tmp_path / "e", "--policy", policy, "--fail_on", "info")[0] == 1


def test_ignore_rule_moves_the_finding_with_its_reason(small, tmp_path, caplog):
    policy = tmp_path / "p.yaml"
    policy.write_text(yaml.safe_dump({"ignore": [
        {"code": "LABEL_ORDER", "sample": "verse004", "reason": "labels checked by hand, T9 fused"},
        {"code": "CT_NOT_HU", "sample": "verse010", "reason": "stale rule"},
    ]}))  # fmt: skip
    with caplog.at_level(logging.WARNING):
        code, report = audit(small, tmp_path / "out", "--policy", policy)
    assert code == 0
    assert [f["code"] for f in report["findings"] if f["severity"] == "error"] == []
    (ignored,) = report["ignored"]
    assert ignored["code"] == "LABEL_ORDER" and ignored["reason"].startswith("labels checked by hand, T9 fused (")
    assert report["summary"]["by_code"]["LABEL_ORDER"] == {"severity": "error", "count": 0, "ignored": 1}
    assert "ignore rule CT_NOT_HU for verse010" in caplog.text and "matched no finding" in caplog.text


def test_thresholds_of_the_policy_are_used(small, tmp_path):
    policy = tmp_path / "p.yaml"
    policy.write_text("anatomy: {order: {direction: superior, labels: [16, 20], tolerance_mm: 100}}\n")
    code, report = audit(small, tmp_path / "out", "--policy", policy)
    assert code == 0 and report["policy"]["anatomy"]["order"] == {"direction": "superior", "labels": [16, 20], "tolerance_mm": 100.0}


@pytest.mark.parametrize(
    "content, message",
    [
        ("severity: {NO_SUCH_CODE: error}\n", "severity of unknown code 'NO_SUCH_CODE'"),
        ("severity: {LABEL_ORDER: fatal}\n", "severity.LABEL_ORDER must be one of"),
        ("thresholds: {label_volume: {min_ratio: two}}\n", "thresholds.label_volume.min_ratio must be a finite number"),
        ("thresholds: {label_volum: {min_ratio: 2}}\n", "unknown threshold group 'label_volum'"),
        ("ignore: [{code: LABEL_ORDER, sample: verse004}]\n", "must have exactly the keys code, sample, reason"),
        ("ignore: [{code: LABEL_ORDER, sample: verse004, reason: ' '}]\n", "a non-empty 'reason' is required"),
        ("anatomy: {order: {direction: up, labels: [1, 2]}}\n", "anatomy.order.direction must be one of"),
        ("thresholds: [1, 2\n", "audit policy is not valid YAML"),
        ("colours: red\n", "unknown key(s) ['colours']"),
    ],
)
def test_bad_policy_is_one_line_and_exit_2_before_any_read(small, tmp_path, caplog, content, message):
    policy = tmp_path / "p.yaml"
    policy.write_text(content)
    code, report = audit(small, tmp_path / "out", "--policy", policy)
    assert code == 2 and not report and not (tmp_path / "out").exists()
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert message in line and str(policy) in line


def test_unusable_input_exits_2(tmp_path, small, caplog):
    assert run_script(TOOL, "--root_dir", tmp_path / "nothing", "--output_dir", tmp_path / "o", "--no_pbar") == 2
    (tmp_path / "empty").mkdir()
    assert run_script(TOOL, "--root_dir", tmp_path / "empty", "--output_dir", tmp_path / "o", "--no_pbar") == 2
    assert "no sample folder" in caplog.text
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert run_script(TOOL, "--root_dir", small, "--output_dir", blocker / "audit", "--no_pbar") == 2


def test_unreadable_sample_is_a_finding_and_the_others_are_audited(small, tmp_path):
    folder, sid = sample_folder(small, "VerSe19/val/verse010")
    (folder / f"{sid}_volume.nii.gz").write_bytes(b"\x1f\x8b truncated")
    code, report = audit(small, tmp_path / "out")
    assert code == 1
    (bad,) = [f for f in report["findings"] if f["code"] == "SAMPLE_UNREADABLE"]
    assert bad["path"] == "VerSe19/val/verse010" and bad["file"] == "VerSe19/val/verse010/verse010_volume.nii.gz"
    assert "truncated or corrupt gzip stream" in bad["message"]
    assert any(f["code"] == "LABEL_ORDER" for f in report["findings"])


def test_rerun_reuses_unchanged_samples_and_gives_the_same_bytes(small, tmp_path, monkeypatch):
    from utils.audit import measure

    out = tmp_path / "out"
    audit(small, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = []
    original = measure.measure_sample
    monkeypatch.setattr(measure, "measure_sample", lambda s, j: calls.append(s.id) or original(s, j))
    audit(small, out)
    assert calls == [] and {p.name: p.read_bytes() for p in out.iterdir()} == before
    folder, sid = sample_folder(small, "VerSe20/train/verse505")
    volume, affine, img = read_image(folder, sid, "volume")
    write_image(folder, sid, "volume", volume + 1024.0, affine, img)
    _, report = audit(small, out)
    assert calls == ["verse505"] and any(f["code"] == "CT_NOT_HU" for f in report["findings"])
    audit(small, out, "--recompute")
    assert sorted(calls[1:]) == ["verse004", "verse010", "verse505"]


def test_workers_give_the_same_report(small, tmp_path):
    audit(small, tmp_path / "one")
    audit(small, tmp_path / "two", "--workers", "2")
    assert (tmp_path / "one/audit.json").read_bytes() == (tmp_path / "two/audit.json").read_bytes()
    assert (tmp_path / "one/audit_signatures.npz").read_bytes() == (tmp_path / "two/audit_signatures.npz").read_bytes()


def test_help_names_the_options():
    import subprocess
    import sys

    from tests.conftest import REPO

    out = subprocess.run([sys.executable, str(REPO / TOOL), "--help"], capture_output=True, text=True, cwd="/", timeout=60)
    assert out.returncode == 0
    for option in ("--root_dir", "--output_dir", "--policy", "--fail_on", "--workers", "--dask_scheduler", "--recompute"):
        assert option in out.stdout


def test_dask_scheduler_gives_the_same_report(small, tmp_path):
    distributed = pytest.importorskip("distributed")
    import os

    from tests.conftest import REPO

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                      silence_logs=logging.CRITICAL) as cluster:  # fmt: skip
            code, report = audit(small, tmp_path / "dask", "--dask_scheduler", cluster.scheduler_address)
    assert code == 1
    audit(small, tmp_path / "serial")
    assert (tmp_path / "dask/audit.json").read_bytes() == (tmp_path / "serial/audit.json").read_bytes()


# --------------------------------------------------------------------------------------------------------------------
# a QC review silences what the reviewer accepted; the readers' geometry check of utils.geometry


def _review(path: Path, reviews: dict, dataset: str = "verse") -> Path:
    import datetime

    from utils.review.review_file import QcReview, ReviewEntry, dump_review

    today = datetime.date.today()
    entries = {sid: ReviewEntry(verdict, note, "A. Reviewer", today) for sid, (verdict, note) in reviews.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_review(QcReview(str(path), dataset, None, entries)))
    return path


@pytest.mark.parametrize(
    "verdict, note, accepted",
    [
        ("pass", "LABEL_ORDER checked: T9 and L1 carry each other's label on purpose", True),
        ("pass", "looks fine", True),  # no code named: the picture's codes are accepted
        ("pass", "LABEL_AT_FOV_EDGE only", False),  # another code named
        ("unsure", "LABEL_ORDER?", False),
        ("fail", "swapped labels", False),
    ],
)
def test_a_review_marked_pass_accepts_findings_with_the_note_as_reason(small, tmp_path, caplog, verdict, note, accepted):
    review = _review(tmp_path / "descriptor/qc_review.yaml", {"verse004": (verdict, note)})  # the default place
    with caplog.at_level(logging.INFO):
        code, report = audit(small, tmp_path / "out")
    assert code == (0 if accepted else 1)
    ignored = [f for f in report["ignored"] if f["code"] == "LABEL_ORDER"]
    assert bool(ignored) == accepted
    if accepted:
        assert ignored[0]["reason"].startswith("marked pass by A. Reviewer on ") and note in ignored[0]["reason"]
        assert report["review"]["source"] == "../descriptor/qc_review.yaml"
    assert ("matched no finding" in caplog.text) == (note == "LABEL_AT_FOV_EDGE only")
    assert audit(small, tmp_path / "out2", "--no_review")[0] == 1
    assert str(review) in caplog.text


def test_a_review_of_another_dataset_or_a_bad_review_file_exits_2(small, tmp_path, caplog):
    nme = _review(tmp_path / "nme_review.yaml", {"verse004": ("pass", "")}, dataset="nme")
    assert audit(small, tmp_path / "out", "--review", nme)[0] == 2
    assert "the marks were made on a nme report, this is a verse dataset" in caplog.text
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nreviews:\n  verse004: {verdict: Fail, note: x, reviewer: y, date: 2026-01-01}\n")
    assert audit(small, tmp_path / "out", "--review", bad)[0] == 2 and not (tmp_path / "out").exists()


def test_headers_the_readers_read_differently_are_found_by_the_geometry_check(small, tmp_path):
    folder, sid = sample_folder(small, "VerSe20/train/verse505")
    vol = nib.load(folder / f"{sid}_volume.nii.gz")
    data, affine = np.asanyarray(vol.dataobj), vol.affine
    img = nib.Nifti1Image(data, None)
    img.set_sform(affine, code=1)
    qform = affine.copy()
    qform[:3, 3] += 2.0
    img.set_qform(qform, code=1)  # ITK takes the scanner sform: the readers agree, the header does not
    nib.save(img, folder / f"{sid}_volume.nii.gz")
    folder, sid = sample_folder(small, "VerSe19/val/verse010")
    mask = nib.load(folder / f"{sid}_mask.nii.gz")
    img = nib.Nifti1Image(np.asanyarray(mask.dataobj), None)
    img.set_sform(mask.affine, code=2)
    img.set_qform(None, code=0)
    img.header.set_zooms((2.0, 2.0, 2.0))  # pixdim against the sform's column lengths: ITK reads other spacings
    nib.save(img, folder / f"{sid}_mask.nii.gz")
    code, report = audit(small, tmp_path / "out")
    found = {(f["code"], f["path"], f["values"]["image"]): f for f in report["findings"] if f["code"] in ("READERS_DISAGREE", "HEADER_AMBIGUOUS")}
    assert set(found) == {("HEADER_AMBIGUOUS", "VerSe20/train/verse505", "volume"), ("READERS_DISAGREE", "VerSe19/val/verse010", "mask")}
    assert found["HEADER_AMBIGUOUS", "VerSe20/train/verse505", "volume"]["values"]["reasons"] == ["QFORM_SFORM_MISMATCH"]
    disagree = found["READERS_DISAGREE", "VerSe19/val/verse010", "mask"]
    assert disagree["values"]["reasons"] == ["PIXDIM_SFORM_MISMATCH"] and disagree["values"]["displacement_mm"] > 1.0
    assert disagree["file"] == "VerSe19/val/verse010/verse010_mask.nii.gz" and disagree["severity"] == "error"


def test_an_output_folder_inside_the_archive_is_refused(verse_demo, caplog):
    out = verse_demo / "archive" / "audit"
    assert run_script(TOOL, "--root_dir", verse_demo / "grouped", "--output_dir", out, "--no_pbar") == 2
    assert not out.exists() and "which this toolkit only reads" in caplog.text
