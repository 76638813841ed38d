"""Clinical metadata sheets (one row per patient, an id column and attributes) read as untrusted input.

A hospital's spreadsheet may hold anything: a header row below a title,
column names in Chinese or with line breaks, a patient listed twice, ids typed
as numbers (``189003440.0``), cells holding formulas (``=HYPERLINK(…)``, a live
``=1+1``) or error values (``#N/A``). None of this may crash a run or reach our
own workbooks as something Excel would evaluate. This module reads such a
sheet with openpyxl *without* evaluating anything (a live formula is read as
its text), reports every oddity as a :class:`SheetIssue` (sheet, row, pid,
column, value, problem) and returns only what is unambiguous:

- a pid listed twice with the same values is used once; listed twice with
  different values, its attributes are left empty (never guess which row is right);
- formula-looking text is kept as text (:mod:`utils.files.spreadsheet` writes every
  string cell as a typed string, so it is never evaluated);
- an attribute column whose name is reserved by the manifests (``site``,
  ``type``, ``ID`` …) is renamed ``meta_<name>`` rather than silently dropped;
- implausible values are reported and left empty: any text longer than
  :data:`MAX_TEXT_CHARS` characters, a sex value longer than
  :data:`MAX_SEX_CHARS` characters, an age that is a number outside
  [0, :data:`MAX_AGE_YEARS`] or a text longer than :data:`MAX_SEX_CHARS`
  (sex and age columns are recognised by name, :data:`SEX_COLUMNS`, :data:`AGE_COLUMNS`);
- :func:`match_metadata` reports sheet rows without a scan and scans without a row.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.files.aliases import PathLike
from utils.files.lazy_import import lazy_import

pd = lazy_import("pandas")
openpyxl = lazy_import("openpyxl")

__all__ = [
    "SheetIssue",
    "MetaTable",
    "ISSUE_COLUMNS",
    "canonical_id",
    "looks_like_formula",
    "read_metadata_sheet",
    "match_metadata",
    "issues_frame",
    "checked_value",
    "MAX_TEXT_CHARS",
]

logger = logging.getLogger(__name__)

#: Columns of the issue table written by :func:`issues_frame`.
ISSUE_COLUMNS = ["severity", "sheet", "row", "pid", "column", "value", "problem"]

#: Rows searched for the header (the first one holding an id column).
HEADER_SEARCH_ROWS = 10

_PREFIX_RESERVED = "meta_"

#: Longest text accepted in any attribute cell (characters); longer text is reported and left empty.
MAX_TEXT_CHARS = 1000
#: Longest sex value, and longest non-numeric age value, accepted (``M``, ``female``, ``男``, ``65Y``).
MAX_SEX_CHARS = 16
#: Largest plausible age in years.
MAX_AGE_YEARS = 150
#: Column names (case-insensitive) holding sex, and age.
SEX_COLUMNS = ("sex", "gender", "性别")
AGE_COLUMNS = ("age", "age_ct", "年龄")


@dataclass(frozen=True)
class SheetIssue:
    """One problem found in a metadata sheet.

    Attributes
    ----------
    sheet : str
        File name of the sheet (and worksheet when not the first).
    problem : str
        What is wrong and what was done about it.
    row : int or None
        Excel row number (1-based, as shown by Excel).
    pid : str or None
    column : str or None
    value : str or None
        Offending value, as text.
    severity : {'warning', 'error'}
        ``error``: the sheet could not be used at all.
    """

    sheet: str
    problem: str
    row: int | None = None
    pid: str | None = None
    column: str | None = None
    value: str | None = None
    severity: str = "warning"

    def message(self) -> str:
        """One log line: ``data_meta_tongji.xlsx row 5 (pid 123), column 'Report': value '=1+1' …``."""
        where = [self.sheet]
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.pid is not None:
            where.append(f"(pid {self.pid})")
        text = " ".join(where)
        if self.column is not None:
            text += f", column {self.column!r}"
        if self.value is not None:
            text += f": value {self.value!r}"
        return f"{text}: {self.problem}"

    def log(self) -> None:
        """Log the message at the issue's severity."""
        (logger.error if self.severity == "error" else logger.warning)("%s", self.message())


@dataclass
class MetaTable:
    """A metadata sheet after checking.

    Attributes
    ----------
    source : Path
    id_column : str or None
        Header of the id column found (None when the sheet was unusable).
    columns : list of str
        Attribute columns in sheet order (cleaned, unique, id column excluded).
    rows : dict of str to dict
        Canonical pid -> ``{column: value}`` for every unambiguous pid.
    row_numbers : dict of str to list of int
        Canonical pid -> Excel rows holding it (also for ambiguous pids).
    ambiguous : set of str
        Pids listed several times with different values (attributes left empty).
    issues : list of SheetIssue
    """

    source: Path
    id_column: str | None = None
    columns: list[str] = field(default_factory=list)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    row_numbers: dict[str, list[int]] = field(default_factory=dict)
    ambiguous: set[str] = field(default_factory=set)
    issues: list[SheetIssue] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        """False when the sheet could not be read or has no id column."""
        return self.id_column is not None


def looks_like_formula(value: Any) -> bool:
    """True for text Excel would take for a formula (starts with ``=`` after blanks).

    Examples
    --------
    >>> looks_like_formula('=HYPERLINK("http://x", "report")'), looks_like_formula(" =1+1"), looks_like_formula("a=b")
    (True, True, False)
    """
    return isinstance(value, str) and value.lstrip().startswith("=")


def canonical_id(value: Any) -> str | None:
    """Patient id as text: blanks stripped, ``189003440.0`` -> ``'189003440'``; empty -> None.

    Examples
    --------
    >>> canonical_id(189003440.0), canonical_id(" 00123 "), canonical_id(None), canonical_id("")
    ('189003440', '00123', None, None)
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value).strip()
    if re.fullmatch(r"\d+\.0+", text):
        text = text.split(".")[0]
    return text or None


def _clean_header(value: Any) -> str | None:
    if value is None:
        return None
    text = re.sub(r"\s+", " ", str(value)).strip()
    return text or None


def _cell_text(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _plain_value(value: Any) -> Any:
    """A cell value as a plain Python scalar (formula objects -> their text, dates -> ISO text)."""
    if value is None:
        return None
    if isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, _dt.datetime):
        return value.date().isoformat() if value.time() == _dt.time(0) else value.isoformat(sep=" ")
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return str(value)
    text = getattr(value, "text", None)  # openpyxl ArrayFormula / DataTableFormula
    if isinstance(text, str):
        return text
    if isinstance(value, str):
        return value if value.strip() else None
    return str(value)


def _find_header(rows: list[tuple], id_columns: Sequence[str]) -> tuple[int, int, str] | None:
    """(row index, column index, header) of the first id column in the first rows."""
    wanted = [c.casefold() for c in id_columns]
    for r, row in enumerate(rows[:HEADER_SEARCH_ROWS]):
        headers = [(_clean_header(c.value) or "").casefold() for c in row]
        for name in wanted:
            if name in headers:
                col = headers.index(name)
                return r, col, _clean_header(row[col].value) or ""
    return None


def read_metadata_sheet(
    path: PathLike,
    id_columns: Sequence[str],
    *,
    sheet: str | None = None,
    reserved: Collection[str] = (),
) -> MetaTable:
    """Read and check one metadata sheet; never raises for bad content.

    Parameters
    ----------
    path : str or Path
        ``.xlsx`` workbook.
    id_columns : sequence of str
        Accepted names of the patient id column (case-insensitive; the first
        found wins). The header row is the first of the first
        :data:`HEADER_SEARCH_ROWS` rows holding one of them.
    sheet : str, optional
        Worksheet; default the first.
    reserved : collection of str
        Column names the caller's manifests already use; such attribute
        columns are renamed ``meta_<name>``.

    Returns
    -------
    MetaTable
        ``usable`` is False (with an ``error`` issue) when the file cannot be
        read or no id column is found.
    """
    path = Path(path)
    table = MetaTable(source=path)
    label = path.name
    try:
        wb = openpyxl.load_workbook(path, data_only=False)  # formulas are read as their text, never evaluated
    except Exception as exc:  # untrusted file: openpyxl raises many types (BadZipFile, KeyError …) on a malformed one
        table.issues.append(SheetIssue(label, f"cannot read the workbook ({exc}); its attributes stay empty", severity="error"))
        return table
    try:
        if sheet is not None and sheet not in wb.sheetnames:
            table.issues.append(SheetIssue(label, f"no worksheet {sheet!r} (found {wb.sheetnames}); its attributes stay empty", severity="error"))
            return table
        ws = wb[sheet] if sheet is not None else wb.worksheets[0]
        if sheet is None and len(wb.sheetnames) > 1:
            logger.info("%s: reading the first worksheet %r of %s", label, ws.title, wb.sheetnames)
        rows = [tuple(r) for r in ws.iter_rows()]
    finally:
        wb.close()
    found = _find_header(rows, id_columns)
    if found is None:
        headers = [_clean_header(c.value) for c in rows[0]] if rows else []
        table.issues.append(SheetIssue(
            label, f"no patient id column (expected one of {list(id_columns)}; header row has {[h for h in headers if h]}); its attributes stay empty",
            severity="error",
        ))  # fmt: skip
        return table
    header_idx, id_idx, table.id_column = found
    if header_idx:
        logger.info("%s: header found on row %d", label, header_idx + 1)
    columns = _attribute_columns(rows[header_idx], rows[header_idx + 1 :], id_idx, label, reserved, table.issues, header_idx + 1)
    table.columns = [name for _i, name in columns]
    by_pid: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for offset, row in enumerate(rows[header_idx + 1 :], start=header_idx + 2):
        cells = {i: row[i] for i in range(len(row))}
        if all(_plain_value(c.value) is None for c in row):
            continue
        id_cell = cells.get(id_idx)
        raw_id = None if id_cell is None else _plain_value(id_cell.value)
        if looks_like_formula(raw_id) or (id_cell is not None and id_cell.data_type == "f"):
            table.issues.append(SheetIssue(label, "patient id looks like a spreadsheet formula; row ignored", row=offset, column=table.id_column, value=_cell_text(raw_id)))
            continue
        pid = canonical_id(raw_id)
        if pid is None:
            table.issues.append(SheetIssue(label, "row has values but no patient id; row ignored", row=offset, column=table.id_column))
            continue
        attributes = {name: _attribute_value(cells.get(i), label, offset, pid, name, table.issues) for i, name in columns}
        by_pid.setdefault(pid, []).append((offset, attributes))
    for pid, entries in by_pid.items():
        table.row_numbers[pid] = [r for r, _a in entries]
        if len(entries) == 1:
            table.rows[pid] = entries[0][1]
            continue
        numbers = ", ".join(str(r) for r, _a in entries)
        differing = [c for c in table.columns if len({repr(a.get(c)) for _r, a in entries}) > 1]
        if differing:
            table.ambiguous.add(pid)
            table.issues.append(SheetIssue(
                label, f"patient listed {len(entries)} times (rows {numbers}) with different values in {differing}; "
                "its attributes are left empty — fix the sheet", row=entries[1][0], pid=pid,
            ))  # fmt: skip
        else:
            table.rows[pid] = entries[0][1]
            table.issues.append(SheetIssue(label, f"patient listed {len(entries)} times (rows {numbers}) with identical values; used once", row=entries[1][0], pid=pid))
    return table


def _attribute_columns(
    header: tuple, body: list[tuple], id_idx: int, label: str, reserved: Collection[str], issues: list[SheetIssue], header_row: int
) -> list[tuple[int, str]]:
    """(cell index, unique attribute name) of every attribute column; oddities reported."""
    reserved_folded = {r.casefold() for r in reserved}
    width = max([len(header)] + [len(r) for r in body])
    used: set[str] = set()
    columns: list[tuple[int, str]] = []
    for i in range(width):
        if i == id_idx:
            continue
        raw = header[i].value if i < len(header) else None
        name = _clean_header(raw)
        has_data = any(i < len(r) and _plain_value(r[i].value) is not None for r in body)
        if name is None:
            if not has_data:
                continue
            name = f"column_{openpyxl.utils.get_column_letter(i + 1)}"
            issues.append(SheetIssue(label, f"column without a header holds values; named {name!r}", row=header_row, column=name))
        elif looks_like_formula(name) or (i < len(header) and header[i].data_type == "f"):
            issues.append(SheetIssue(label, "column name looks like a spreadsheet formula; kept as text", row=header_row, column=name))
        if str(raw).strip() != name and raw is not None:
            issues.append(SheetIssue(label, f"column name {str(raw)!r} has line breaks or repeated blanks; read as {name!r}", row=header_row, column=name))
        if any(ord(ch) > 127 for ch in name):
            issues.append(SheetIssue(label, "column name has non-ASCII characters; kept as is", row=header_row, column=name))
        if name.casefold() in reserved_folded:
            new = f"{_PREFIX_RESERVED}{name}"
            issues.append(SheetIssue(label, f"column name is used by the manifests; renamed {new!r}", row=header_row, column=name))
            name = new
        if name.casefold() in used:
            n = 2
            while f"{name}_{n}".casefold() in used:
                n += 1
            issues.append(SheetIssue(label, f"duplicated column name; this one renamed {name}_{n!s}", row=header_row, column=name))
            name = f"{name}_{n}"
        used.add(name.casefold())
        columns.append((i, name))
    return columns


def _attribute_value(cell: Any, label: str, row: int, pid: str, column: str, issues: list[SheetIssue]) -> Any:
    """A checked attribute value; error values become empty, formula text is kept as text and reported."""
    if cell is None:
        return None
    value = _plain_value(cell.value)
    if value is None:
        return None
    if cell.data_type == "e":
        issues.append(SheetIssue(label, "spreadsheet error value; left empty", row=row, pid=pid, column=column, value=_cell_text(value)))
        return None
    return checked_value(value, label, row, pid, column, issues, live_formula=cell.data_type == "f")


def checked_value(
    value: Any, label: str, row: int | None, pid: str | None, column: str, issues: list[SheetIssue], *, live_formula: bool = False
) -> Any:
    """An attribute value after the shared rules (formula text reported and kept as text; implausible values emptied).

    Parameters
    ----------
    value : scalar
        The cell's plain value (text of a formula, number, text).
    label, row, pid, column : for the issue
    issues : list of SheetIssue
        Problems are appended here.
    live_formula : bool
        The cell holds a formula (not just text that looks like one).

    Returns
    -------
    value : scalar or None
    """
    if value is None:
        return None
    if live_formula or looks_like_formula(value):
        kind = "is a live formula in the sheet" if live_formula else "looks like a spreadsheet formula"
        issues.append(SheetIssue(label, f"{kind}; kept as text, never evaluated", row=row, pid=pid, column=column, value=_cell_text(value)))
        value = str(value)
    problem = _implausible(value, column)
    if problem:
        issues.append(SheetIssue(label, f"{problem}; left empty", row=row, pid=pid, column=column, value=_cell_text(value)))
        return None
    return value


def _implausible(value: Any, column: str) -> str | None:
    """Why ``value`` cannot be a value of ``column`` (sex, age, any text), or None."""
    name = column.casefold()
    text = str(value)
    if isinstance(value, str) and len(text) > MAX_TEXT_CHARS:
        return f"text of {len(text)} characters (more than {MAX_TEXT_CHARS})"
    if name in SEX_COLUMNS and (len(text.strip()) > MAX_SEX_CHARS or "\n" in text):
        return f"not a plausible sex value ({len(text)} characters; at most {MAX_SEX_CHARS} expected)"
    if name in AGE_COLUMNS:
        try:
            years = float(text)
        except ValueError:
            years = None
        if years is not None and not 0 <= years <= MAX_AGE_YEARS:
            return f"not a plausible age (expected 0 to {MAX_AGE_YEARS} years)"
        if years is None and (len(text.strip()) > MAX_SEX_CHARS or "\n" in text):
            return f"not a plausible age ({len(text)} characters of text)"
    return None


def match_metadata(
    table: MetaTable, scanned_ids: Iterable[str], *, what: str = "scan"
) -> tuple[dict[str, dict[str, Any]], list[SheetIssue]]:
    """Attributes of each scanned pid, and the issues of matching sheet rows with scans.

    Parameters
    ----------
    table : MetaTable
        One site's sheet.
    scanned_ids : iterable of str
        Pids found in that site's images.
    what : str
        Word for the issue text ("scan").

    Returns
    -------
    attributes : dict of str to dict
        Every scanned pid -> ``{column: value}`` over all of ``table.columns``
        (None where unknown: no row, ambiguous rows, unusable sheet).
    issues : list of SheetIssue
        A sheet pid without a scan; a scan without a sheet row; a pid matched
        only after ignoring leading zeros (Excel drops them from numbers).
    """
    scanned = sorted({str(s) for s in scanned_ids})
    empty = {c: None for c in table.columns}
    label = table.source.name
    issues: list[SheetIssue] = []
    out: dict[str, dict[str, Any]] = {}
    if not table.usable:
        return {pid: dict(empty) for pid in scanned}, issues
    sheet_ids = set(table.rows) | table.ambiguous
    by_stripped: dict[str, list[str]] = {}
    for sid in sheet_ids:
        by_stripped.setdefault(sid.lstrip("0"), []).append(sid)
    used: set[str] = set()
    for pid in scanned:
        key = pid if pid in sheet_ids else None
        if key is None and len(by_stripped.get(pid.lstrip("0"), [])) == 1:
            key = by_stripped[pid.lstrip("0")][0]
            issues.append(SheetIssue(label, f"matched to {what} pid {pid!r} only after ignoring leading zeros", row=table.row_numbers[key][0], pid=key))
        if key is None:
            issues.append(SheetIssue(label, f"{what} has no row in the sheet; its attributes stay empty", pid=pid))
            out[pid] = dict(empty)
            continue
        used.add(key)
        out[pid] = {**empty, **table.rows.get(key, {})}
    for sid in sorted(sheet_ids - used):
        issues.append(SheetIssue(label, f"patient has no {what} in the archive; row not used", row=table.row_numbers[sid][0], pid=sid))
    return out, issues


def issues_frame(issues: Sequence[SheetIssue]) -> pd.DataFrame:
    """Issues as a table with :data:`ISSUE_COLUMNS` (for a worksheet a person can check)."""
    return pd.DataFrame(
        [[i.severity, i.sheet, i.row, i.pid, i.column, i.value, i.problem] for i in issues], columns=ISSUE_COLUMNS
    )
