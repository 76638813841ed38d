"""The QC review file (utils/review): validation of the untrusted file, and marks flowing into splits and exports."""

from __future__ import annotations

import datetime as dt
import json
import os
import logging
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_script
from tests.tutorial_runs import build_tutorial_dataset
from utils.review.exclusion import EXPORT_RECORD, RECORD_COLUMNS, RECORD_SHEET
from utils.review.review_file import MAX_NOTE, QcReview, ReviewEntry, ReviewFileError, dump_review, load_review, report_digest
from utils.files.spreadsheet import read_sheet, sheet_names

TODAY = dt.date(2026, 11, 24)
DIGEST = "sha256:" + "ab" * 32
EXPORT = "utils/export_dataset.py"

VALID_FLOW = """\
version: 1
dataset: verse
report_digest: "sha256:{hex}"
reviews:
  verse401-201: {{verdict: fail, note: "L4 mislabelled", reviewer: ab, date: 2026-11-24}}
  verse010: {{verdict: unsure, note: motion?, reviewer: "A. B.", date: "2026-11-20"}}
  gl003: {{verdict: pass, date: 2026-11-01}}
"""


def write(tmp_path: Path, text: str, name: str = "qc_review.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def review_text(entries: dict[str, str], dataset: str = "verse") -> str:
    """A review file in block style, each entry given as its flow-style YAML text."""
    body = "".join(f"  {sid}: {value}\n" for sid, value in entries.items())
    return f"version: 1\ndataset: {dataset}\nreviews:\n{body}"


# ---------------------------------------------------------------------------------------------------------------------
# the file


def test_flow_and_block_style_read_the_same_and_dump_reads_back(tmp_path):
    review = load_review(write(tmp_path, VALID_FLOW.format(hex="ab" * 32)), today=TODAY)
    assert review.dataset == "verse" and review.report_digest == DIGEST
    assert list(review.entries) == ["gl003", "verse010", "verse401-201"]  # sorted by ID
    assert review.entries["verse401-201"] == ReviewEntry("fail", "L4 mislabelled", "ab", dt.date(2026, 11, 24))
    assert review.entries["gl003"] == ReviewEntry("pass", "", "", dt.date(2026, 11, 1))
    assert review.counts() == {"pass": 1, "fail": 1, "unsure": 1}
    assert list(review.with_verdict("fail")) == ["verse401-201"]
    text = dump_review(review)
    again = load_review(write(tmp_path, text, "again.yaml"), today=TODAY)
    assert again.entries == review.entries and again.dataset == "verse" and again.report_digest == DIGEST
    assert '  "verse401-201":\n    verdict: "fail"\n    note: "L4 mislabelled"\n    reviewer: "ab"\n    date: "2026-11-24"\n' in text


def test_dump_escapes_what_a_yaml_reader_would_break_on(tmp_path):
    note = 'quote " backslash \\ tab\tnewline\n unicode é 漢 emoji 🦴 # not a comment: ok - [x] {y} \'z\' &a *b !c %d @e `f'
    review = QcReview("x", "nme", None, {"A_1": ReviewEntry("fail", note, "Zoë", TODAY)})
    text = dump_review(review)
    assert load_review(write(tmp_path, text), today=TODAY).entries["A_1"].note == note


@pytest.mark.parametrize(
    "entries, found",
    [
        ({"verse1": "{verdict: Fail, date: 2026-11-24}"}, "verdict 'Fail' is not one of ['pass', 'fail', 'unsure']"),
        ({"verse1": "{verdict: fail}"}, "sample verse1: no date"),
        ({"verse1": "{verdict: fail, date: 2026-02-30}"}, "'2026-02-30' is not a calendar date"),
        ({"verse1": "{verdict: fail, date: 24.11.2026}"}, "'24.11.2026' is not a date YYYY-MM-DD"),
        ({"verse1": "{verdict: fail, date: 2026-11-24 10:00:00}"}, "'2026-11-24 10:00:00' is not a date YYYY-MM-DD"),
        ({"verse1": "{verdict: fail, date: 2026-11-26}"}, "2026-11-26 lies outside 2000-01-01 .. 2026-11-24"),
        ({"verse1": "{verdict: fail, date: 1999-12-31}"}, "1999-12-31 lies outside"),
        ({"../etc": "{verdict: fail, date: 2026-11-24}"}, "sample ID '../etc' is not a sample-folder name"),
        ({"12345": "{verdict: fail, date: 2026-11-24}"}, "sample ID 12345 is not text (quote it"),
        ({"verse1": "{verdict: fail, date: 2026-11-24, comment: x}"}, "unknown key(s) ['comment']"),
        ({"verse1": '{verdict: fail, date: 2026-11-24, note: "a\\x07b"}'}, "holds a control character ('\\x07')"),
        ({"verse1": '{verdict: fail, date: 2026-11-24, reviewer: "a\\nb"}'}, "reviewer 'a\\nb' holds a control character"),
        ({"verse1": "{verdict: fail, date: 2026-11-24, note: [a, b]}"}, "note ['a', 'b'] is not text"),
        ({"verse1": "fail"}, "sample verse1: 'fail' is not a mapping"),
    ],
)
def test_bad_values_are_refused_in_one_line_naming_the_file_sample_and_value(tmp_path, entries, found):
    path = write(tmp_path, review_text(entries))
    with pytest.raises(ReviewFileError) as info:
        load_review(path, today=TODAY)
    message = str(info.value)
    assert message.startswith(f"review file {path}: ") and found in message and "\n" not in message


@pytest.mark.parametrize(
    "text, found",
    [
        ("reviews:\n  verse1: {verdict: pass, date: 2026-11-24}\n  verse1: {verdict: fail, date: 2026-11-24}\n",
         "key 'verse1' is given twice (first on line 2)"),
        ("reviews: [verse1]\n", "is not a mapping of sample ID"),
        ("- a\n- b\n", "is not a mapping with 'reviews'"),
        ("dataset: verse\n", "no 'reviews' mapping"),
        ("version: 2\nreviews: {}\n", "version 2 is not 1"),
        ("report_digest: md5:abc\nreviews: {}\n", "report_digest 'md5:abc' is not 'sha256:'"),
        ("dataset: 'VerSe 19!'\nreviews: {}\n", "dataset 'VerSe 19!' is not a dataset name"),
        ("reviews: {}\nextra: 1\n", "unknown key(s) ['extra']"),
        ("reviews: {verse1: {verdict: fail, date: 2026-11-24}\n", "not valid YAML (line"),
    ],
)  # fmt: skip
def test_bad_files_are_refused_in_one_line(tmp_path, text, found):
    path = write(tmp_path, text)
    with pytest.raises(ReviewFileError) as info:
        load_review(path, today=TODAY)
    assert found in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_limits_just_inside_are_accepted_and_just_outside_refused(tmp_path):
    def entry(note: str, day: str) -> dict[str, str]:
        return {"verse1": json.dumps({"verdict": "fail", "note": note, "date": day})}

    inside = load_review(write(tmp_path, review_text(entry("n" * MAX_NOTE, "2026-11-25"))), today=TODAY)  # tomorrow: time zones
    assert len(inside.entries["verse1"].note) == MAX_NOTE
    assert load_review(write(tmp_path, review_text(entry("", "2000-01-01"))), today=TODAY).entries["verse1"].date == dt.date(2000, 1, 1)
    with pytest.raises(ReviewFileError, match=f"note has {MAX_NOTE + 1} characters, at most {MAX_NOTE}"):
        load_review(write(tmp_path, review_text(entry("n" * (MAX_NOTE + 1), "2026-11-24"))), today=TODAY)


def test_many_problems_are_counted_in_the_one_line(tmp_path):
    entries = {f"v{i}": "{verdict: maybe, date: 2026-11-24}" for i in range(5)}
    with pytest.raises(ReviewFileError) as info:
        load_review(write(tmp_path, review_text(entries)), today=TODAY)
    assert len(info.value.problems) == 5 and str(info.value).endswith("(and 2 more)")


def test_report_digest_is_the_sha256_of_the_card_text():
    assert report_digest("{}\n") == "sha256:" + "ca3d163bab055381827226140568f3bef7eaac187cebd76878e0b63e9e442356"


# ---------------------------------------------------------------------------------------------------------------------
# splits and exports on the VerSe and ESO demo datasets


@pytest.fixture(scope="module")
def verse_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("review_verse")
    build_tutorial_dataset("verse", root)
    return root


@pytest.fixture
def verse(verse_root, tmp_path) -> Path:
    """A fresh copy of the VerSe demo dataset (grouped + descriptor)."""
    root = tmp_path / "root"
    shutil.copytree(verse_root, root, ignore=shutil.ignore_patterns("archive"))
    return root


def split(root: Path, name: str = "split01_standard", *extra: object) -> int:
    return run_script("verse/06_make_split.py", "--manifest_file", root / "grouped/dataset_manifest.xlsx", "--split_name", name, *extra)


FAIL_ENTRY = '{verdict: fail, note: "L4 mislabelled", reviewer: ab, date: 2026-11-24}'


def place_review(root: Path, entries: dict[str, str], dataset: str = "verse") -> Path:
    return write(root / "descriptor", review_text(entries, dataset))


def test_a_failed_sample_leaves_the_split_with_a_log_line_and_a_record(verse, caplog):
    manifest = verse / "grouped/dataset_manifest.xlsx"
    before = read_sheet(manifest, "split01_standard")
    review = place_review(verse, {"verse401-201": FAIL_ENTRY, "verse010": "{verdict: unsure, note: motion, date: 2026-11-24}",
                                  "gl003": "{verdict: pass, date: 2026-11-24}"})  # fmt: skip
    with caplog.at_level(logging.INFO):
        assert split(verse) == 0
    after = read_sheet(manifest, "split01_standard")
    assert "verse401-201" in set(before["ID"]) and "verse401-201" not in set(after["ID"])
    expected = before[before["ID"] != "verse401-201"].reset_index(drop=True)
    assert after.equals(expected)  # every other sample keeps its row and subset
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "left out" in r.getMessage()]
    assert warnings == [f"left out of split split01_standard: verse401-201 (train), marked fail by ab on 2026-11-24: L4 mislabelled [{review}]"]
    assert any("kept in split split01_standard: verse010 (val), marked unsure" in r.getMessage() for r in caplog.records)
    record = read_sheet(manifest, RECORD_SHEET)
    assert list(record.columns) == list(RECORD_COLUMNS)
    assert record.to_dict("records") == [{
        "split": "split01_standard", "ID": "verse401-201", "subset": "train", "verdict": "fail", "note": "L4 mislabelled",
        "reviewer": "ab", "date": "2026-11-24", "review_file": os.path.relpath(review.resolve(), manifest.parent.resolve()), "report_digest": None,
    }]  # fmt: skip
    # a second split adds its rows; re-running the first without the mark drops only its rows
    assert split(verse, "split02_verse19", "--inclusion", "VerSe19") == 0
    assert sorted(read_sheet(manifest, RECORD_SHEET)["split"]) == ["split01_standard", "split02_verse19"]
    assert split(verse, "split01_standard", "--no_review") == 0
    assert list(read_sheet(manifest, RECORD_SHEET)["split"]) == ["split02_verse19"]
    assert read_sheet(manifest, "split01_standard").equals(before)


def test_without_a_review_or_with_no_review_the_workbook_is_byte_identical_and_the_record_goes(verse):
    manifest = verse / "grouped/dataset_manifest.xlsx"
    assert split(verse) == 0
    original = manifest.read_bytes()
    place_review(verse, {"verse401-201": FAIL_ENTRY})
    assert split(verse, "split01_standard", "--no_review") == 0
    assert manifest.read_bytes() == original
    assert split(verse) == 0
    assert RECORD_SHEET in sheet_names(manifest) and manifest.read_bytes() != original
    (verse / "descriptor/qc_review.yaml").unlink()
    assert split(verse) == 0  # the mark is gone: the sample is back, the record sheet removed
    assert manifest.read_bytes() == original


def test_review_option_problems_stop_before_anything_is_written(verse, tmp_path, caplog):
    manifest = verse / "grouped/dataset_manifest.xlsx"
    original = manifest.read_bytes()
    assert split(verse, "split01_standard", "--review", tmp_path / "missing.yaml") == 2
    assert "review file not found" in caplog.text
    caplog.clear()
    place_review(verse, {"verse401-201": "{verdict: FAIL, date: 2026-11-24}"})
    assert split(verse) == 2
    assert "verdict 'FAIL' is not one of" in caplog.text
    caplog.clear()
    place_review(verse, {"verse401-201": FAIL_ENTRY}, dataset="nme")
    assert split(verse) == 2
    assert "the marks were made on a nme report, this is a verse dataset" in caplog.text
    assert split(verse, "QcReviewExcluded") == 2
    assert manifest.read_bytes() == original


def test_review_option_names_a_file_elsewhere(verse, tmp_path):
    other = write(tmp_path, review_text({"verse004": FAIL_ENTRY}), "elsewhere.yaml")
    assert split(verse, "split01_standard", "--review", other) == 0
    ids = set(read_sheet(verse / "grouped/dataset_manifest.xlsx", "split01_standard")["ID"])
    assert "verse004" not in ids and "verse401-201" in ids


def export(root: Path, name: str, *extra: object) -> int:
    return run_script(EXPORT, "--manifest_file", root / "grouped/dataset_manifest.xlsx", "--split_name", name,
                      "--output_dir", root / "export", "--no_pbar", *extra)  # fmt: skip


def test_the_export_leaves_out_a_sample_marked_fail_in_every_format_and_lists_it(verse, caplog):
    review = place_review(verse, {"verse401-201": FAIL_ENTRY})
    with caplog.at_level(logging.INFO):
        assert export(verse, "split01_standard") == 0  # the sheet was made before the review: it lists the sample
    assert "left out of the export of split split01_standard: verse401-201 (train), marked fail by ab on 2026-11-24: L4 mislabelled" in caplog.text
    folders = {
        "nnunetv2": verse / "export/nnUNet_raw/Dataset501_VerSe_split01_standard",
        "monai": verse / "export/monai/VerSe_split01_standard",
        "satds": verse / "export/satds/VerSe_split01_standard",
    }
    for folder in folders.values():
        record = json.loads((folder / EXPORT_RECORD).read_text())
        assert record == {
            "review_file": os.path.relpath(review.resolve(), folder.resolve()), "dataset": "verse", "report_digest": None, "split": "split01_standard",
            "excluded": [{"ID": "verse401-201", "subset": "train", "verdict": "fail", "note": "L4 mislabelled", "reviewer": "ab", "date": "2026-11-24"}],
        }  # fmt: skip
        assert not [p for p in folder.rglob("*") if "verse401-201" in p.name]
        assert all("verse401-201" not in p.read_text() for p in folder.rglob("*.json*") if p.name != EXPORT_RECORD)
    dataset_json = json.loads((folders["nnunetv2"] / "dataset.json").read_text())
    assert "verse401-201" not in dataset_json["toolkit_export"]["cases"] and "verse004" in dataset_json["toolkit_export"]["cases"]
    # --no_review: the export with the sample differs from the one on disk, so it needs --overwrite
    assert export(verse, "split01_standard", "--no_review") == 1
    assert export(verse, "split01_standard", "--no_review", "--overwrite") == 0
    assert (folders["nnunetv2"] / "imagesTr/verse401-201_0000.nii.gz").is_file()
    assert not (folders["nnunetv2"] / EXPORT_RECORD).exists()


def test_export_with_no_review_is_byte_identical_to_one_without_a_file(verse, tmp_path):
    from tests.tutorial_runs import split_export_digests

    assert export(verse, "split02_verse19") == 0
    plain = split_export_digests(verse)
    shutil.rmtree(verse / "export")
    place_review(verse, {"verse401-201": FAIL_ENTRY})
    assert export(verse, "split02_verse19", "--no_review") == 0
    assert split_export_digests(verse) == plain


@pytest.fixture(scope="module")
def eso_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("review_eso")
    build_tutorial_dataset("eso", root)
    return root


def test_random_split_keeps_every_other_patient_in_its_subset(eso_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(eso_root, root, ignore=shutil.ignore_patterns("archive"))
    manifest = root / "grouped/dataset_manifest.xlsx"
    before = read_sheet(manifest, "split01_TJ")
    victim = str(before["ID"].iloc[0])
    place_review(root, {victim: FAIL_ENTRY}, dataset="eso")
    args = ("--manifest_file", manifest, "--split_name", "split01_TJ", "--site", "TJ", "--test_ratio", "0.4", "--val_ratio", "0.2")
    assert run_script("eso/05_make_split.py", *args) == 0
    after = read_sheet(manifest, "split01_TJ")
    assert after.equals(before[before["ID"] != victim].reset_index(drop=True))
    assert list(read_sheet(manifest, RECORD_SHEET)["ID"]) == [victim]


@pytest.mark.parametrize("script, args", [
    ("nme/05_make_split_predefined.py", ("--split_name", "split01_Tongji", "--site", "Tongji", "--collection", "train-val", "test-inner-01")),
    ("nme/05_make_split_across_sites.py", ("--split_name", "split07_Mix", "--test_ratio", "0.3", "--val_ratio", "0.2", "--random_seed", "0")),
])  # fmt: skip
def test_both_nme_split_routines_take_the_review(tmp_path, script, args):
    build_tutorial_dataset("nme", tmp_path)
    manifest = tmp_path / "grouped/dataset_manifest.xlsx"
    before = read_sheet(manifest, args[1])
    victim = str(before["ID"].iloc[-1])
    place_review(tmp_path, {victim: FAIL_ENTRY}, dataset="nme")
    assert run_script(script, "--manifest_file", manifest, *args) == 0
    assert read_sheet(manifest, args[1]).equals(before[before["ID"] != victim].reset_index(drop=True))
    assert run_script(script, "--manifest_file", manifest, *args, "--no_review") == 0
    assert read_sheet(manifest, args[1]).equals(before)
