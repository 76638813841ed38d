"""The split rules at their limits: half-up rounding of n x ratio, the hash order, sheets and index manifests.

The expected assignment is computed here from the documented rule (rank of ``sha256("{seed}:{key}")``,
``round(n * test_ratio)`` test groups, then ``round((n - n_test) * val_ratio)`` val groups, halves up on
the decimal product) with hashlib and fractions, sharing no code with :mod:`utils.dataset.splits`.
"""

from __future__ import annotations

import hashlib
import math
from fractions import Fraction

import pandas as pd
import pytest
from openpyxl import load_workbook

from tests.conftest import run_script
from utils.files.spreadsheet import write_sheets
from utils.dataset.splits import (
    check_sample_ids,
    extract_index_manifests,
    grouped_random_split,
    index_manifest_name,
    round_half_up,
    share_count,
    write_split_sheet,
)


def oracle_count(n: int, ratio: str) -> int:
    """round(n * ratio) halves up, ``ratio`` as decimal text."""
    exact = Fraction(ratio) * n
    return math.floor(exact + Fraction(1, 2))


def oracle_split(keys, test_ratio: str, val_ratio: str, seed: int) -> dict[str, str]:
    order = sorted(set(keys), key=lambda k: (hashlib.sha256(f"{seed}:{k}".encode()).hexdigest(), k))
    n_test = oracle_count(len(order), test_ratio)
    n_val = oracle_count(len(order) - n_test, val_ratio)
    return {k: "test" if r < n_test else "val" if r < n_test + n_val else "train" for r, k in enumerate(order)}


@pytest.mark.parametrize(
    ("n", "ratio", "expected"),
    [
        (10, "0.35", 4),  # 3.5: 10 * 0.35 is 3.4999999999999996 in binary floating point
        (20, "0.175", 4),  # 3.5, also just below in binary
        (5, "0.5", 3),  # 2.5: Python's round() would give 2
        (7, "0.5", 4),  # 3.5
        (3, "0.5", 2),  # 1.5
        (10, "0.34", 3),  # 3.4: down
        (10, "0.36", 4),  # 3.6: up
        (10, "0.05", 1),  # 0.5: a single group
        (1, "0.49", 0),
        (0, "0.5", 0),
        (9, "1.0", 9),
        (9, "0.0", 0),
    ],
)
def test_share_count_rounds_the_decimal_product_half_up(n, ratio, expected):
    assert oracle_count(n, ratio) == expected
    assert share_count(n, float(ratio)) == expected


def test_round_half_up_on_exact_halves():
    assert [round_half_up(x) for x in (0.5, 1.5, 2.5, 2.4999, -0.5, 3.0)] == [1, 2, 3, 2, 0, 3]


@pytest.mark.parametrize(("n", "test_ratio", "val_ratio"), [(10, "0.35", "0.5"), (7, "0.5", "0.5"), (13, "0.3", "0.2"), (5, "0.1", "0.25"), (4, "1.0", "0.0"), (6, "0.0", "1.0")])
def test_assignment_is_the_documented_hash_order(n, test_ratio, val_ratio):
    keys = [f"pid{i:03d}" for i in range(n)]
    for seed in (0, 7):
        assert grouped_random_split(keys, float(test_ratio), float(val_ratio), seed) == oracle_split(keys, test_ratio, val_ratio, seed)


def test_keys_are_text_and_merged_and_the_order_of_input_does_not_matter():
    a = grouped_random_split([3, "3", "x", "x", 10], 0.5, 0.5, seed=1)
    assert sorted(a) == ["10", "3", "x"]
    assert a == grouped_random_split(["x", 10, 3], 0.5, 0.5, seed=1) == oracle_split(["3", "x", "10"], "0.5", "0.5", 1)
    assert grouped_random_split([], 0.3, 0.2, seed=0) == {}


@pytest.mark.parametrize(("name", "bad"), [("test_ratio", -0.01), ("test_ratio", 1.01), ("test_ratio", float("nan")), ("val_ratio", 1.5), ("val_ratio", float("nan"))])
def test_ratios_outside_0_1_are_refused(name, bad):
    ratios = {"test_ratio": 0.2, "val_ratio": 0.2, name: bad}
    with pytest.raises(ValueError, match=rf"^{name} must lie in \[0, 1\], got {bad}$"):
        grouped_random_split(["a", "b"], ratios["test_ratio"], ratios["val_ratio"], seed=0)


# --- sheets and index manifests ------------------------------------------------------------------------------------


def manifest(tmp_path, ids=("s1", "s2", "s3", "s4")):
    path = tmp_path / "dataset_manifest.xlsx"
    write_sheets(path, {"Manifest": pd.DataFrame({"ID": list(ids), "spx": [0.7] * len(ids)})})
    return path


def sheet_rows(path, name="Manifest"):
    return list(load_workbook(path, read_only=True)[name].iter_rows(values_only=True))


def test_split_sheet_is_the_rows_plus_a_column_named_like_the_sheet(tmp_path):
    path = manifest(tmp_path)
    rows = pd.DataFrame({"ID": ["s2", "s4"], "spx": [0.7, 0.7]}, index=[7, 9])
    write_split_sheet(path, "split01", rows, ["train", "test"])
    assert sheet_rows(path, "split01") == [("ID", "spx", "split01"), ("s2", 0.7, "train"), ("s4", 0.7, "test")]
    assert [r[0] for r in sheet_rows(path)] == ["ID", "s1", "s2", "s3", "s4"]  # the Manifest sheet is kept


@pytest.mark.parametrize(
    ("rows", "labels", "message"),
    [
        (pd.DataFrame({"ID": [], "spx": []}), [], r"split 'x': no sample of .* matches the selection"),
        (pd.DataFrame({"ID": ["a", "b"]}), ["train", "training"], r"split 'x': subset values \['training'\] found, expected one of \['train', 'val', 'test'\]"),
        (pd.DataFrame({"ID": ["a"], "x": [1]}), ["train"], r"split 'x': the manifest already has a column of that name"),
        (pd.DataFrame({"ID": ["a", "a"]}), ["train", "test"], r"ID value\(s\) \['a'\] occur more than once"),
        (pd.DataFrame({"ID": ["a", None, " "]}), ["train"] * 3, r"empty ID in Excel row\(s\) \[3, 4\]"),
        (pd.DataFrame({"name": ["a"]}), ["train"], r"ID"),
    ],
)
def test_split_sheet_refusals_name_the_problem(tmp_path, rows, labels, message):
    path = manifest(tmp_path)
    with pytest.raises(ValueError, match=message):
        write_split_sheet(path, "x", rows, labels)
    assert load_workbook(path, read_only=True).sheetnames == ["Manifest"]


def test_check_sample_ids_names_the_source_and_at_most_ten_rows():
    frame = pd.DataFrame({"ID": [None] * 12})
    frame.attrs["source"] = "m.xlsx, sheet Manifest"
    with pytest.raises(ValueError, match=r"^m.xlsx, sheet Manifest: empty ID in Excel row\(s\) \[2, 3, 4, 5, 6, 7, 8, 9, 10, 11\] …; fix it$"):
        check_sample_ids(frame, "fix it")
    ok = pd.DataFrame({"ID": ["a", "b", 3]})
    check_sample_ids(ok)


def test_index_manifests_hold_the_subsets_rows_in_manifest_order(tmp_path):
    path = manifest(tmp_path, ids=("s1", "s2", "s3", "s4", "s5"))
    rows = pd.DataFrame({"ID": ["s1", "s2", "s3", "s4", "s5"], "spx": [0.7] * 5})
    write_split_sheet(path, "sp", rows, ["test", "train", "val", "train", "test"])
    out = tmp_path / "idx"
    out.mkdir()
    written = extract_index_manifests(path, "sp", [["train", "val"], ["train"], ["test"]], out)
    assert written == {"sp_train_val.xlsx": 3, "sp_train.xlsx": 2, "sp_test.xlsx": 2}
    assert [r[0] for r in sheet_rows(out / "sp_train_val.xlsx")] == ["ID", "s2", "s3", "s4"]
    assert sheet_rows(out / "sp_test.xlsx")[0] == ("ID", "spx", "sp")
    assert [r[2] for r in sheet_rows(out / "sp_test.xlsx")[1:]] == ["test", "test"]
    assert index_manifest_name("split01", ["train", "val"]) == "split01_train_val.xlsx"


def test_index_manifests_are_all_or_nothing(tmp_path):
    path = manifest(tmp_path)
    write_split_sheet(path, "sp", pd.DataFrame({"ID": ["s1", "s2"], "spx": [0.7, 0.7]}), ["train", "train"])
    out = tmp_path / "idx"
    out.mkdir()
    with pytest.raises(ValueError, match=r"split 'sp' has no sample in subset\(s\) \['test', 'val'\] \(subsets present: \['train'\]\); nothing was written"):
        extract_index_manifests(path, "sp", [["train"], ["val"], ["test"]], out)
    assert list(out.iterdir()) == []
    write_sheets(path, {"Manifest": pd.DataFrame({"ID": ["s1"]}), "sp": pd.DataFrame({"ID": ["s1"]})})
    with pytest.raises(ValueError, match="sp"):
        extract_index_manifests(path, "sp", [["train"]], out)


# --- through the command line ---------------------------------------------------------------------------------------


def test_eso_split_routine_rounds_a_half_up(tmp_path):
    # 10 patients of site TJ (pre and post scans each), --test_ratio 0.35: 3.5 -> 4 test patients (8 rows);
    # --val_ratio 0.5 of the other 6: 3 val patients.
    ids = [f"TJ_{p}_{phase}" for p in range(10) for phase in ("pre", "post")]
    frame = pd.DataFrame({"ID": ids, "site": ["TJ"] * 20, "pid": [i // 2 for i in range(20)], "phase": ["pre", "post"] * 10})
    path = tmp_path / "dataset_manifest.xlsx"
    write_sheets(path, {"Manifest": frame})
    args = ["--manifest_file", path, "--split_name", "split01_TJ", "--site", "TJ", "--test_ratio", "0.35", "--val_ratio", "0.5"]
    assert run_script("eso/05_make_split.py", *args, "--random_seed", "3") == 0
    rows = sheet_rows(path, "split01_TJ")[1:]
    per_patient = {}
    for row in rows:
        per_patient.setdefault(row[2], set()).add(row[-1])
    assert all(len(v) == 1 for v in per_patient.values())  # both phases of a patient share a subset
    counts = {s: sum(1 for v in per_patient.values() if v == {s}) for s in ("train", "val", "test")}
    assert counts == {"test": 4, "val": 3, "train": 3}
    expected = oracle_split([f"TJ_{p}" for p in range(10)], "0.35", "0.5", 3)
    assert {f"TJ_{pid}": subset.pop() for pid, subset in per_patient.items()} == expected


# --- the words the user reads ---------------------------------------------------------------------------------------


def test_id_refusals_say_what_to_do_by_default():
    with pytest.raises(ValueError) as info:
        check_sample_ids(pd.DataFrame({"ID": ["a", None]}))
    assert str(info.value) == "table: empty ID in Excel row(s) [3]; regenerate the dataset manifest"
    with pytest.raises(ValueError) as info:
        check_sample_ids(pd.DataFrame({"name": ["a"]}))
    assert str(info.value) == "table lacks column(s) ['ID'] (found 1 columns); regenerate the dataset manifest"
    ten = pd.DataFrame({"ID": [None] * 10})
    with pytest.raises(ValueError) as info:
        check_sample_ids(ten, "h")
    assert str(info.value) == "table: empty ID in Excel row(s) [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]; h"  # ten: no ellipsis
    ids = [f"s{i:02d}" for i in range(12)] * 2 + ["single"]
    with pytest.raises(ValueError) as info:
        check_sample_ids(pd.DataFrame({"ID": ids}), "h")
    assert str(info.value) == f"table: ID value(s) {[f's{i:02d}' for i in range(10)]} occur more than once; h"  # single is not listed


def test_split_sheet_and_index_manifest_messages_name_the_routine_to_run(tmp_path, caplog):
    path = manifest(tmp_path)
    with pytest.raises(ValueError, match=r"; regenerate it with the dataset-manifest routine$"):
        write_split_sheet(path, "x", pd.DataFrame({"ID": ["a", "a"]}), ["train", "test"])
    with caplog.at_level("INFO", logger="utils.dataset.splits"):
        write_split_sheet(path, "sp", pd.DataFrame({"ID": ["s1", "s2", "s3"]}), ["train", "test", "train"])
        write_split_sheet(path, "sp", pd.DataFrame({"ID": ["s1"]}), ["val"])
    assert [r.getMessage() for r in caplog.records] == [
        f"added sheet sp in {path}: train 2, val 0, test 1",
        f"replaced sheet sp in {path}: train 0, val 1, test 0",
    ]
    write_sheets(path, {"Manifest": pd.DataFrame({"ID": ["s1"]}), "nosplit": pd.DataFrame({"ID": ["s1"]}), "bad": pd.DataFrame({"ID": [None], "bad": ["test"]})})
    out = tmp_path / "idx"
    out.mkdir()
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['nosplit'\] \(found 1 columns\); re-run the split routine$"):
        extract_index_manifests(path, "nosplit", [["test"]], out)
    with pytest.raises(ValueError, match=r"empty ID in Excel row\(s\) \[2\]; re-run the dataset-manifest and split routines$"):
        extract_index_manifests(path, "bad", [["test"]], out)
    write_sheets(path, {"Manifest": pd.DataFrame({"ID": ["s1"]}), "ok": pd.DataFrame({"ID": ["s1"], "ok": ["test"]})})
    caplog.clear()
    with caplog.at_level("INFO", logger="utils.dataset.splits"):
        extract_index_manifests(path, "ok", [["test"]], out)
    assert [r.getMessage() for r in caplog.records] == [f"wrote {out / 'ok_test.xlsx'} (1 samples)"]


def test_a_split_sheet_and_its_extra_sheets_are_written_together(tmp_path, caplog):
    path = manifest(tmp_path)
    write_split_sheet(path, "sp", pd.DataFrame({"ID": ["s1"]}), ["train"], extra_sheets={"Excluded": pd.DataFrame({"ID": ["s2"]})})
    assert load_workbook(path, read_only=True).sheetnames == ["Manifest", "sp", "Excluded"]
    assert sheet_rows(path, "Excluded") == [("ID",), ("s2",)]
    caplog.clear()
    with caplog.at_level("INFO", logger="utils.dataset.splits"):
        write_split_sheet(path, "sp", pd.DataFrame({"ID": ["s1", "s3"]}), ["test", "val"], extra_sheets={"Excluded": None})
    assert load_workbook(path, read_only=True).sheetnames == ["Manifest", "sp"]  # removed in the same rewrite
    assert sheet_rows(path, "sp") == [("ID", "sp"), ("s1", "test"), ("s3", "val")]
    assert [r.getMessage() for r in caplog.records] == [f"replaced sheet sp in {path}: train 0, val 1, test 1"]


def test_eleven_empty_ids_get_the_ellipsis_and_only_repeated_ids_are_listed():
    with pytest.raises(ValueError) as info:
        check_sample_ids(pd.DataFrame({"ID": [None] * 11}), "h")
    assert str(info.value).endswith("[2, 3, 4, 5, 6, 7, 8, 9, 10, 11] …; h")
    with pytest.raises(ValueError) as info:
        check_sample_ids(pd.DataFrame({"ID": ["b", "a_single", "b", "c", "c"]}), "h")
    assert str(info.value) == "table: ID value(s) ['b', 'c'] occur more than once; h"


@pytest.mark.parametrize(("name", "message"), [
    ("a/b", "--split_name 'a/b' cannot name a file or folder: it holds a path separator"),
    ("x" * 40, f"--split_name '{'x' * 40}' is also a worksheet name: at most 31 characters, found 40"),
    ("manifest", "--split_name 'manifest' is the name of the manifest's main sheet; choose another name"),
])  # fmt: skip
def test_split_names_are_safe_sheet_and_file_names(name, message):
    from utils.dataset.splits import check_split_name

    with pytest.raises(ValueError) as info:
        check_split_name(name)
    assert str(info.value) == message
    assert check_split_name("split01_standard") == "split01_standard"
