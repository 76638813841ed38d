"""A streaming writer of plain-table ``.xlsx`` workbooks: ~10x faster than openpyxl, byte-reproducible.

Every manifest of this project is a plain table per sheet: a header row, then
text, numbers and booleans, no formulas, no styles. openpyxl builds an object
per cell (about 18 µs a cell), which made writing the small-region report of a
few hundred samples (millions of cells) the one serial step of an otherwise
parallel run. This module writes the Office Open XML parts directly, a row at
a time:

- text cells are inline strings (``t="inlineStr"``): Excel shows them, never
  evaluates them, whatever they start with (``=`` included);
- numbers are written with ``repr`` (shortest exact text of a float), booleans
  as ``t="b"``; empty cells are left out;
- the first row is frozen, as before;
- every zip entry and the workbook properties carry a fixed date, so identical
  tables give identical files (see :data:`FIXED_TIMESTAMP`).

Text that XML 1.0 cannot hold (control characters other than tab and newline)
is refused with a message naming the sheet, row and column, as openpyxl did.
"""

from __future__ import annotations

import datetime as _dt
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any
from xml.sax.saxutils import escape

__all__ = ["FIXED_TIMESTAMP", "column_letter", "write_xlsx"]

#: Creation/modification time written into every workbook and zip entry (reproducible bytes).
FIXED_TIMESTAMP = _dt.datetime(1980, 1, 1)

_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_XML_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'


def column_letter(index: int) -> str:
    """Excel column name of a 1-based column index: 1 -> ``A``, 27 -> ``AA``."""
    letters = ""
    while index > 0:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _cell_xml(ref: str, value: Any, where: str) -> str:
    if isinstance(value, bool):
        return f'<c r="{ref}" t="b"><v>{int(value)}</v></c>'
    if isinstance(value, (int, float)):
        return f'<c r="{ref}"><v>{value!r}</v></c>'
    text = str(value)
    if _ILLEGAL_XML.search(text):
        raise ValueError(f"{where}, cell {ref}: text holds control characters that an .xlsx file cannot store ({text[:40]!r})")
    space = ' xml:space="preserve"' if text != text.strip() or "\n" in text else ""
    return f'<c r="{ref}" t="inlineStr"><is><t{space}>{escape(text)}</t></is></c>'


def _sheet_xml(header: Sequence[str], rows: Iterable[Sequence[Any]], where: str) -> Iterable[str]:
    """The worksheet part, a row at a time. ``None`` cells are left out."""
    letters = [column_letter(i + 1) for i in range(max(1, len(header)))]
    yield (
        f'{_XML_HEAD}<worksheet xmlns="{_NS}" xmlns:r="{_REL}"><sheetViews><sheetView workbookViewId="0">'
        '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
        '<selection pane="bottomLeft" activeCell="A2" sqref="A2"/></sheetView></sheetViews><sheetData>'
    )
    for r, row in enumerate(_chain(header, rows), start=1):
        cells = "".join(_cell_xml(f"{letters[c]}{r}", v, where) for c, v in enumerate(row) if v is not None)
        yield f'<row r="{r}">{cells}</row>'
    yield "</sheetData></worksheet>"


def _chain(first: Sequence[Any], rest: Iterable[Sequence[Any]]) -> Iterable[Sequence[Any]]:
    yield first
    yield from rest


def _workbook_parts(names: Sequence[str]) -> dict[str, str]:
    sheets = "".join(f'<sheet name="{escape(n, {chr(34): "&quot;"})}" sheetId="{i}" r:id="rId{i}"/>' for i, n in enumerate(names, 1))
    rels = "".join(
        f'<Relationship Id="rId{i}" Type="{_REL}/worksheet" Target="worksheets/sheet{i}.xml"/>' for i in range(1, len(names) + 1)
    )
    n = len(names)
    stamp = FIXED_TIMESTAMP.strftime("%Y-%m-%dT%H:%M:%SZ")
    overrides = "".join(
        f'<Override PartName="/xl/worksheets/sheet{i}.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        for i in range(1, n + 1)
    )
    return {
        "[Content_Types].xml": (
            f'{_XML_HEAD}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
            '<Override PartName="/docProps/core.xml" ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>'
            f"{overrides}</Types>"
        ),
        "_rels/.rels": (
            f'{_XML_HEAD}<Relationships xmlns="{_PKG_REL}">'
            f'<Relationship Id="rId1" Type="{_REL}/officeDocument" Target="xl/workbook.xml"/>'
            '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties" '
            'Target="docProps/core.xml"/></Relationships>'
        ),
        "docProps/core.xml": (
            f'{_XML_HEAD}<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            f'<dcterms:created xsi:type="dcterms:W3CDTF">{stamp}</dcterms:created>'
            f'<dcterms:modified xsi:type="dcterms:W3CDTF">{stamp}</dcterms:modified></cp:coreProperties>'
        ),
        "xl/workbook.xml": f'{_XML_HEAD}<workbook xmlns="{_NS}" xmlns:r="{_REL}"><sheets>{sheets}</sheets></workbook>',
        "xl/_rels/workbook.xml.rels": (
            f'{_XML_HEAD}<Relationships xmlns="{_PKG_REL}">{rels}'
            f'<Relationship Id="rId{n + 1}" Type="{_REL}/styles" Target="styles.xml"/></Relationships>'
        ),
        "xl/styles.xml": (
            f'{_XML_HEAD}<styleSheet xmlns="{_NS}"><fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>'
            '<fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill></fills>'
            '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
            '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
            '<cellXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/></cellXfs>'
            '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>'
        ),
    }


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=FIXED_TIMESTAMP.timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o600 << 16
    return info


def write_xlsx(fileobj: IO[bytes], sheets: Mapping[str, tuple[Sequence[str], Iterable[Sequence[Any]]]]) -> None:
    """Write a workbook of plain tables to a binary file object.

    Parameters
    ----------
    fileobj : binary file
        Destination (a temporary file of :func:`utils.files.atomic.atomic_path`).
    sheets : mapping
        Sheet name -> ``(header, rows)``: column names, then rows of Python
        ``str``/``int``/``float``/``bool``/``None`` values (None: empty cell).

    Raises
    ------
    ValueError
        Text that an ``.xlsx`` file cannot hold (the message names sheet and cell).
    """
    parts = _workbook_parts(list(sheets))
    with zipfile.ZipFile(fileobj, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for name in ("[Content_Types].xml", "_rels/.rels", "docProps/core.xml", "xl/workbook.xml", "xl/_rels/workbook.xml.rels", "xl/styles.xml"):
            zf.writestr(_entry(name), parts[name])
        for i, (name, (header, rows)) in enumerate(sheets.items(), start=1):
            with zf.open(_entry(f"xl/worksheets/sheet{i}.xml"), "w") as part:
                buffer: list[str] = []
                size = 0
                for chunk in _sheet_xml([str(h) for h in header], rows, f"sheet {name!r}"):
                    buffer.append(chunk)
                    size += len(chunk)
                    if size > 1 << 20:
                        part.write("".join(buffer).encode("utf-8"))
                        buffer, size = [], 0
                part.write("".join(buffer).encode("utf-8"))
