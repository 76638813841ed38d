"""The streaming .xlsx writer: what openpyxl and pandas read back, formulas never live, reproducible bytes."""

from __future__ import annotations

import io

import numpy as np
import openpyxl
import pandas as pd
import pytest

from utils.files.spreadsheet import read_sheet, write_sheets
from utils.files.xlsx_writer import column_letter, write_xlsx


def test_column_letters():
    assert [column_letter(i) for i in (1, 26, 27, 52, 703)] == ["A", "Z", "AA", "AZ", "AAA"]


def test_values_types_and_frozen_header_read_back(tmp_path):
    frame = pd.DataFrame(
        {"text": ["=SUM(A1:A2)", " padded ", "a & <b>", "line\nbreak"], "int": [1, -2, 3, 2**40], "float": [0.1, 1e-300, -2.5, 3.0],
         "flag": [True, False, True, False], "empty": [None, np.nan, "x", None]}
    )  # fmt: skip
    path = tmp_path / "t.xlsx"
    write_sheets(path, {"Manifest": frame, "Second": frame.iloc[:1]})
    back = read_sheet(path)
    assert back["text"].tolist() == frame["text"].tolist()
    assert back["int"].tolist() == frame["int"].tolist() and back["float"].tolist() == frame["float"].tolist()
    assert back["flag"].tolist() == frame["flag"].tolist()
    assert back["empty"].tolist() == [None, None, "x", None]
    ws = openpyxl.load_workbook(path)["Manifest"]
    assert ws.freeze_panes == "A2"
    assert ws["A2"].data_type == "s" and ws["A2"].value == "=SUM(A1:A2)"  # shown as text, never evaluated
    assert openpyxl.load_workbook(path).sheetnames == ["Manifest", "Second"]


def test_identical_tables_give_identical_bytes():
    def once() -> bytes:
        buf = io.BytesIO()
        write_xlsx(buf, {"Manifest": (["a", "b"], [[1, "x"], [2.5, None]])})
        return buf.getvalue()

    assert once() == once()


def test_text_an_xlsx_cannot_hold_is_refused_with_its_cell(tmp_path):
    with pytest.raises(ValueError, match=r"sheet 'Manifest', cell B2: text holds control characters"):
        write_sheets(tmp_path / "t.xlsx", {"Manifest": pd.DataFrame({"a": [1], "b": ["bell\x07"]})})
    assert not (tmp_path / "t.xlsx").exists()
    with pytest.raises(ValueError, match="sheet name"):
        write_sheets(tmp_path / "t.xlsx", {"a/b": pd.DataFrame({"a": [1]})})
