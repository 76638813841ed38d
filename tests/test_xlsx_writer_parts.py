"""The streaming xlsx writer checked part by part: the XML it writes, parsed with the standard library.

Oracle: ``zipfile`` and ``xml.etree`` read the package; openpyxl (an independent reader) reads the values.
"""

from __future__ import annotations

import io
import zipfile
import xml.etree.ElementTree as ET

import openpyxl
import pytest

import utils.files.xlsx_writer as xw
from utils.files.xlsx_writer import FIXED_TIMESTAMP, column_letter, write_xlsx

NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}


def build(sheets) -> bytes:
    buf = io.BytesIO()
    write_xlsx(buf, sheets)
    return buf.getvalue()


CT = "{http://schemas.openxmlformats.org/package/2006/content-types}"
PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"
DOC_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
SHEET_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
#: Elements whose text is data; anywhere else text between elements is not allowed by the schemas.
TEXT_ELEMENTS = {f"{{{NS['m']}}}v", f"{{{NS['m']}}}t", "{http://purl.org/dc/terms/}created", "{http://purl.org/dc/terms/}modified"}


def check_package(data: bytes, n_sheets: int) -> None:
    """What Excel requires of the package, written out from the OOXML part and relationship rules."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        parts = {name: ET.fromstring(zf.read(name)) for name in names}
    sheets = [f"xl/worksheets/sheet{i}.xml" for i in range(1, n_sheets + 1)]
    assert sorted(names) == sorted(["[Content_Types].xml", "_rels/.rels", "docProps/core.xml", "xl/workbook.xml",
                                    "xl/_rels/workbook.xml.rels", "xl/styles.xml", *sheets])  # fmt: skip
    for name, root in parts.items():
        for element in root.iter():
            if element.tag not in TEXT_ELEMENTS:
                assert not (element.text or "").strip(), (name, element.tag, element.text)
            assert not (element.tail or "").strip(), (name, element.tag, element.tail)
    types = parts["[Content_Types].xml"]
    assert types.tag == f"{CT}Types"
    assert [(e.tag, e.attrib) for e in types if e.tag == f"{CT}Default"] == [
        (f"{CT}Default", {"Extension": "rels", "ContentType": "application/vnd.openxmlformats-package.relationships+xml"}),
        (f"{CT}Default", {"Extension": "xml", "ContentType": "application/xml"}),
    ]
    overrides = {e.get("PartName"): e.get("ContentType") for e in types if e.tag == f"{CT}Override"}
    assert len([e for e in types if e.tag == f"{CT}Override"]) == len(overrides) == 3 + n_sheets
    assert overrides == {
        "/xl/workbook.xml": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
        "/xl/styles.xml": "application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml",
        "/docProps/core.xml": "application/vnd.openxmlformats-package.core-properties+xml",
        **{f"/{s}": SHEET_TYPE for s in sheets},
    }
    assert [(e.tag, e.attrib) for e in parts["_rels/.rels"]] == [
        (f"{PKG_REL}Relationship", {"Id": "rId1", "Type": f"{DOC_REL}/officeDocument", "Target": "xl/workbook.xml"}),
        (f"{PKG_REL}Relationship", {"Id": "rId2", "Type": "http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties",
                                    "Target": "docProps/core.xml"}),
    ]  # fmt: skip
    assert [e.attrib for e in parts["xl/_rels/workbook.xml.rels"]] == [
        *({"Id": f"rId{i}", "Type": f"{DOC_REL}/worksheet", "Target": f"worksheets/sheet{i}.xml"} for i in range(1, n_sheets + 1)),
        {"Id": f"rId{n_sheets + 1}", "Type": f"{DOC_REL}/styles", "Target": "styles.xml"},
    ]
    core = parts["docProps/core.xml"]
    xsi = "{http://www.w3.org/2001/XMLSchema-instance}type"
    assert [(e.tag.split("}")[1], e.get(xsi), e.text) for e in core] == [
        ("created", "dcterms:W3CDTF", "1980-01-01T00:00:00Z"), ("modified", "dcterms:W3CDTF", "1980-01-01T00:00:00Z")]  # fmt: skip
    styles = parts["xl/styles.xml"]
    m = NS["m"]
    assert [e.tag for e in styles] == [f"{{{m}}}{t}" for t in ("fonts", "fills", "borders", "cellStyleXfs", "cellXfs", "cellStyles")]
    for group in styles:
        assert int(group.get("count")) == len(group)
    assert [f[0].get("patternType") for f in styles.find("m:fills", NS)] == ["none", "gray125"]
    xf = styles.find("m:cellXfs/m:xf", NS).attrib
    assert xf == {"numFmtId": "0", "fontId": "0", "fillId": "0", "borderId": "0", "xfId": "0"}
    assert styles.find("m:cellStyles/m:cellStyle", NS).attrib == {"name": "Normal", "xfId": "0", "builtinId": "0"}
    for sheet in sheets:
        view = parts[sheet].find("m:sheetViews/m:sheetView", NS)
        assert [e.tag.split("}")[1] for e in view] == ["pane", "selection"]
        assert view.find("m:selection", NS).attrib == {"pane": "bottomLeft", "activeCell": "A2", "sqref": "A2"}


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


def test_a_refused_text_is_quoted_to_its_first_40_characters():
    long = "y" * 50 + "\x07"
    with pytest.raises(ValueError) as info:
        build({"S": (["a"], [[long]])})
    assert str(info.value).endswith(f"({'y' * 40!r})")


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
    targets = [(r.get("Id"), r.get("Target")) for r in rels]
    assert targets == [("rId1", "worksheets/sheet1.xml"), ("rId2", "worksheets/sheet2.xml"), ("rId3", "worksheets/sheet3.xml"), ("rId4", "styles.xml")]
    for i in (1, 2, 3):
        assert f"xl/worksheets/sheet{i}.xml" in names and f'PartName="/xl/worksheets/sheet{i}.xml"' in types
    assert "xl/worksheets/sheet4.xml" not in names
    assert f"<dcterms:created xsi:type=\"dcterms:W3CDTF\">{FIXED_TIMESTAMP:%Y-%m-%dT%H:%M:%SZ}</dcterms:created>" in core
    assert all(info.date_time == (1980, 1, 1, 0, 0, 0) and info.compress_type == zipfile.ZIP_DEFLATED for info in infos)
    assert all((info.external_attr >> 16) == 0o600 for info in infos)
    book = openpyxl.load_workbook(io.BytesIO(data))
    assert book.sheetnames == ['My "first"', "B&C", "third"] and book["B&C"].max_row == 1
    check_package(data, 3)
    check_package(build({"only": (["a", "b"], [[1, None], ["x", True]])}), 1)


def test_first_row_is_frozen():
    with zipfile.ZipFile(io.BytesIO(build({"S": (["a"], [[1]])}))) as zf:
        pane = ET.fromstring(zf.read("xl/worksheets/sheet1.xml")).find(".//m:pane", NS)
    assert (pane.get("ySplit"), pane.get("topLeftCell"), pane.get("state")) == ("1", "A2", "frozen")


def test_a_sheet_larger_than_the_write_buffer_is_complete():
    rows = [[i, f"row {i} " + "x" * 1000] for i in range(2500)]  # ~2.6 MB of XML: flushed in several chunks
    data = build({"Big": (["n", "text"], rows), "Small": (["a"], [[1]])})
    check_package(data, 2)
    got = cells(data)
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
