"""The streaming xlsx writer checked part by part: the XML it writes, parsed with the standard library.

Oracle: ``zipfile`` and ``xml.etree`` read the package; openpyxl (an independent reader) reads the values.
"""

from __future__ import annotations

import io
import zipfile
import xml.etree.ElementTree as ET

import openpyxl
import pytest

import utils.xlsx_writer as xw
from utils.xlsx_writer import FIXED_TIMESTAMP, column_letter, write_xlsx

NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}


def build(sheets) -> bytes:
    buf = io.BytesIO()
    write_xlsx(buf, sheets)
    return buf.getvalue()


def cells(data: bytes, index: int = 1) -> dict[str, tuple[str | None, str | None, str | None]]:
    """``{ref: (type, value text, xml:space)}`` of a worksheet part."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        root = ET.fromstring(zf.read(f"xl/worksheets/sheet{index}.xml"))
    out = {}
    for c in root.iter(f"{{{NS['m']}}}c"):
        v = c.find("m:v", NS)
        t = c.find("m:is/m:t", NS)
        text = v.text if v is not None else (t.text if t is not None else None)
        space = t.get("{http://www.w3.org/XML/1998/namespace}space") if t is not None else None
        out[c.get("r")] = (c.get("t"), text, space)
    return out


@pytest.mark.parametrize(("index", "letters"), [(1, "A"), (2, "B"), (26, "Z"), (27, "AA"), (28, "AB"), (52, "AZ"), (53, "BA"), (702, "ZZ"), (703, "AAA"), (16384, "XFD")])
def test_column_letters_are_bijective_base_26(index, letters):
    assert column_letter(index) == letters


def test_cell_types_values_and_empty_cells():
    data = build({"S": (["a", "b", "c", "d"], [[True, 3, 2.5, None], [False, -7, 1e-300, "x"], [None, None, None, None]])})
    got = cells(data)
    assert got["A2"] == ("b", "1", None) and got["A3"] == ("b", "0", None)  # booleans are booleans, not 1 and 0
    assert got["B2"] == (None, "3", None) and got["B3"] == (None, "-7", None)
    assert got["C2"] == (None, "2.5", None) and got["C3"] == (None, "1e-300", None)
    assert "D2" not in got and "A4" not in got  # None: no cell at all
    assert got["D3"] == ("inlineStr", "x", None)
    assert got["A1"] == ("inlineStr", "a", None)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        rows = ET.fromstring(zf.read("xl/worksheets/sheet1.xml")).findall(".//m:row", NS)
    assert [r.get("r") for r in rows] == ["1", "2", "3", "4"]
    ws = openpyxl.load_workbook(io.BytesIO(data))["S"]
    assert [[c.value for c in row] for row in ws.iter_rows()] == [["a", "b", "c", "d"], [True, 3, 2.5, None], [False, -7, 1e-300, "x"]]


def test_text_is_escaped_and_spaces_and_newlines_are_kept():
    texts = ["a & <b> \"q\" 'r'", " lead", "trail ", "two\nlines", "tab\there", "=1+1", "plain"]
    data = build({"S": (["t"], [[t] for t in texts])})
    got = cells(data)
    for row, text in enumerate(texts, start=2):
        kind, value, space = got[f"A{row}"]
        assert kind == "inlineStr" and value == text
        assert (space == "preserve") == (text != text.strip() or "\n" in text), text
    ws = openpyxl.load_workbook(io.BytesIO(data))["S"]
    assert [ws[f"A{r}"].value for r in range(2, 9)] == texts


@pytest.mark.parametrize("bad", ["\x00", "\x08", "\x0b", "\x0c", "\x1f", "\ufffe", "\uffff"])
def test_text_xml_cannot_hold_is_refused_naming_sheet_and_cell(bad):
    with pytest.raises(ValueError) as info:
        build({"Data": (["a", "b", "c"], [[1, 2, 3], [1, 2, "x" + bad]])})
    assert str(info.value) == f"sheet 'Data', cell C3: text holds control characters that an .xlsx file cannot store ({('x' + bad)!r})"


def test_tab_newline_and_carriage_return_are_allowed():
    got = cells(build({"S": (["t"], [["a\tb"], ["c\rd"]])}))
    assert got["A2"][1] == "a\tb" and got["A3"][0] == "inlineStr"


def test_workbook_parts_name_every_sheet_in_order_with_quotes_escaped():
    data = build({'My "first"': (["a"], [[1]]), "B&C": (["b"], []), "third": (["c"], [[None]])})
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        book = ET.fromstring(zf.read("xl/workbook.xml"))
        rels = ET.fromstring(zf.read("xl/_rels/workbook.xml.rels"))
        types = zf.read("[Content_Types].xml").decode()
        core = zf.read("docProps/core.xml").decode()
        infos = zf.infolist()
    sheets = book.findall(".//m:sheet", NS)
    assert [s.get("name") for s in sheets] == ['My "first"', "B&C", "third"]
    assert [s.get("sheetId") for s in sheets] == ["1", "2", "3"]
    rid = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
    assert [s.get(rid) for s in sheets] == ["rId1", "rId2", "rId3"]
    targets = {r.get("Id"): r.get("Target") for r in rels}
    assert targets == {"rId1": "worksheets/sheet1.xml", "rId2": "worksheets/sheet2.xml", "rId3": "worksheets/sheet3.xml", "rId4": "styles.xml"}
    for i in (1, 2, 3):
        assert f"xl/worksheets/sheet{i}.xml" in names and f'PartName="/xl/worksheets/sheet{i}.xml"' in types
    assert "xl/worksheets/sheet4.xml" not in names
    assert f"<dcterms:created xsi:type=\"dcterms:W3CDTF\">{FIXED_TIMESTAMP:%Y-%m-%dT%H:%M:%SZ}</dcterms:created>" in core
    assert all(info.date_time == (1980, 1, 1, 0, 0, 0) and info.compress_type == zipfile.ZIP_DEFLATED for info in infos)
    assert all((info.external_attr >> 16) == 0o600 for info in infos)
    book = openpyxl.load_workbook(io.BytesIO(data))
    assert book.sheetnames == ['My "first"', "B&C", "third"] and book["B&C"].max_row == 1


def test_first_row_is_frozen():
    with zipfile.ZipFile(io.BytesIO(build({"S": (["a"], [[1]])}))) as zf:
        pane = ET.fromstring(zf.read("xl/worksheets/sheet1.xml")).find(".//m:pane", NS)
    assert (pane.get("ySplit"), pane.get("topLeftCell"), pane.get("state")) == ("1", "A2", "frozen")


def test_a_sheet_larger_than_the_write_buffer_is_complete():
    rows = [[i, f"row {i} " + "x" * 1000] for i in range(2500)]  # ~2.6 MB of XML: flushed in several chunks
    got = cells(build({"Big": (["n", "text"], rows)}))
    assert len(got) == 2 * 2501
    assert got["A2"][1] == "0" and got["B2"][1] == "row 0 " + "x" * 1000
    assert got["A2501"][1] == "2499" and got["B2501"][1] == "row 2499 " + "x" * 1000
    assert all(got[f"A{r}"][1] == str(r - 2) for r in range(2, 2502))


def test_header_cells_are_text_and_a_sheet_without_columns_is_valid():
    got = cells(build({"S": ([1, 2.5], [["a", "b"]])}))
    assert got["A1"] == ("inlineStr", "1", None) and got["B1"] == ("inlineStr", "2.5", None)
    data = build({"Empty": ([], [])})
    assert openpyxl.load_workbook(io.BytesIO(data))["Empty"].max_row == 1


def test_identical_tables_give_identical_bytes_and_a_change_changes_them():
    table = {"S": (["a", "b"], [[1, "x"], [2.5, None]])}
    assert build(table) == build(table)
    assert build(table) != build({"S": (["a", "b"], [[1, "y"], [2.5, None]])})
    assert xw.FIXED_TIMESTAMP.year == 1980
