"""Excel manifests: atomic writes, sheets replaced in place safely, no live formulas.

Every cell is written with an explicit type: text that starts with ``=`` (a
metadata sheet may hold one) is stored as a string cell, so Excel shows it and
never evaluates it, and it reads back unchanged. Lists and matrices are written
as JSON text (see :func:`format_list`). Missing values are empty cells.

Identical content gives identical bytes: the workbook's creation/modification
times and the date of every zip entry are set to :data:`FIXED_TIMESTAMP`
(1980-01-01, the zip epoch), so that versioning tools (git-annex, DVC) see no
change when a routine is re-run on the same data.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from utils.files.aliases import PathLike
from utils.files.atomic import atomic_path
from utils.files.lazy_import import lazy_import
from utils.files.xlsx_writer import FIXED_TIMESTAMP, write_xlsx

pd = lazy_import("pandas")
openpyxl = lazy_import("openpyxl")
openpyxl_exceptions = lazy_import("openpyxl.utils.exceptions")

__all__ = [
    "MAIN_SHEET",
    "read_sheet",
    "sheet_names",
    "write_sheets",
    "add_sheet",
    "replace_sheets",
    "format_list",
    "parse_list",
    "is_missing",
    "require_columns",
    "FIXED_TIMESTAMP",
]

logger = logging.getLogger(__name__)

#: Name of the primary worksheet of every manifest.
MAIN_SHEET = "Manifest"


_CORE_TIME_RE = re.compile(rb"(<dcterms:(created|modified)\b[^>]*>)[^<]*(</dcterms:\2>)")


def _save_reproducibly(wb, path: Path) -> None:
    """``wb.save`` with fixed timestamps: workbook properties and zip entry dates (no other change)."""
    wb.properties.created = FIXED_TIMESTAMP
    buffer = io.BytesIO()
    wb.save(buffer)  # openpyxl stamps 'modified' with the current time and each zip entry with the clock
    stamp = FIXED_TIMESTAMP.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = _CORE_TIME_RE.sub(rb"\g<1>" + stamp + rb"\g<3>", data)
            entry = zipfile.ZipInfo(info.filename, date_time=FIXED_TIMESTAMP.timetuple()[:6])
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = info.external_attr
            dst.writestr(entry, data)


def _require_xlsx(path: Path) -> None:
    if not path.name.lower().endswith(".xlsx"):
        raise ValueError(f"{path}: the workbook is written in .xlsx format; give a file name ending in .xlsx")


def require_columns(frame: pd.DataFrame, columns: Sequence[str], hint: str = "") -> None:
    """Raise ``ValueError`` naming the table (``frame.attrs['source']``) when ``columns`` are missing.

    Parameters
    ----------
    frame : DataFrame
        A table from :func:`read_sheet` (its ``attrs['source']`` names file and sheet).
    columns : sequence of str
    hint : str
        What to do, e.g. ``regenerate it with routine 05``.
    """
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        source = frame.attrs.get("source", "table")
        raise ValueError(f"{source} lacks column(s) {missing} (found {len(frame.columns)} columns){'; ' + hint if hint else ''}")


def is_missing(value: Any) -> bool:
    """True for None, NaN and pandas' NA/NaT (an empty cell)."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _cell_value(value: Any) -> Any:
    """Python value openpyxl can store: numpy scalars unwrapped, NaN/None -> None, containers -> JSON."""
    if is_missing(value):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _fill_sheet(ws, frame: pd.DataFrame) -> None:
    ws.append([str(c) for c in frame.columns])
    for row_idx, row in enumerate(frame.itertuples(index=False, name=None), start=2):
        for col_idx, value in enumerate(row, start=1):
            value = _cell_value(value)
            if value is None:
                continue
            cell = ws.cell(row=row_idx, column=col_idx)
            cell.value = value
            if isinstance(value, str):
                cell.data_type = "s"  # never a formula, whatever the text starts with
    ws.freeze_panes = "A2"


def _check_sheet_name(name: str) -> None:
    if not name or len(name) > 31 or any(ch in name for ch in "[]:*?/\\"):
        raise ValueError(f"sheet name {name!r} is not valid in Excel (1 to 31 characters, none of []:*?/\\)")


def _check_frame(frame: pd.DataFrame, sheet: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"sheet {sheet!r}: a pandas DataFrame was expected, got {type(frame).__name__}")
    if frame.columns.duplicated().any():
        dupes = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise ValueError(f"sheet {sheet!r}: duplicated column names {dupes}")


def write_sheets(path: PathLike, sheets: Mapping[str, pd.DataFrame]) -> None:
    """Write a new workbook holding ``sheets`` (in order), replacing ``path`` atomically.

    Parameters
    ----------
    path : str or Path
        Destination ``.xlsx``; its folder is created when missing.
    sheets : mapping of str to DataFrame
        Sheet name -> table (the header row is the column names; the index is not written).
    """
    path = Path(path)
    _require_xlsx(path)
    tables = {}
    for name, frame in sheets.items():
        _check_sheet_name(name)
        _check_frame(frame, name)
        rows = ([_cell_value(v) for v in row] for row in frame.itertuples(index=False, name=None))
        tables[name] = ([str(c) for c in frame.columns], rows)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        write_xlsx(fh, tables)


def _open_workbook(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    try:
        return openpyxl.load_workbook(path)
    except (openpyxl_exceptions.InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError, SyntaxError) as exc:
        raise ValueError(f"{path}: not a readable .xlsx workbook ({exc})") from exc


def sheet_names(path: PathLike) -> list[str]:
    """Worksheet names of an ``.xlsx`` file."""
    path = Path(path)
    wb = _open_workbook(path)
    return list(wb.sheetnames)


def add_sheet(path: PathLike, name: str, frame: pd.DataFrame, *, protected: tuple[str, ...] = (MAIN_SHEET,)) -> bool:
    """Add or replace one worksheet of an existing workbook, keeping every other sheet intact.

    The whole workbook is rewritten to a temporary file and renamed into
    place, so an interrupted run leaves the previous workbook.

    Parameters
    ----------
    path : str or Path
        Existing ``.xlsx``.
    name : str
        Sheet to add; replaced when it exists (re-running a split routine).
    frame : DataFrame
        Its content.
    protected : tuple of str
        Sheets that may never be replaced this way.

    Returns
    -------
    replaced : bool
        True when a sheet of that name existed.

    Raises
    ------
    ValueError
        ``name`` is protected or not a valid Excel sheet name.
    """
    return replace_sheets(path, {name: frame}, protected=protected)[name]


def replace_sheets(
    path: PathLike, sheets: Mapping[str, pd.DataFrame | None], *, protected: tuple[str, ...] = (MAIN_SHEET,)
) -> dict[str, bool]:
    """Add, replace or remove several worksheets of an existing workbook in one atomic rewrite.

    Parameters
    ----------
    path : str or Path
        Existing ``.xlsx``.
    sheets : mapping of str to DataFrame or None
        Sheet name -> new content (added at the end, or replaced where it is); None removes the sheet.
    protected : tuple of str
        Sheets that may never be replaced or removed this way.

    Returns
    -------
    existed : dict of str to bool
        Sheet name -> True when a sheet of that name existed.

    Raises
    ------
    ValueError
        A protected or invalid sheet name.
    """
    path = Path(path)
    for name, frame in sheets.items():
        if name in protected:
            raise ValueError(f"{path}: sheet {name!r} cannot be replaced; choose another name")
        _check_sheet_name(name)
        if frame is not None:
            _check_frame(frame, name)
    wb = _open_workbook(path)
    existed = {}
    for name, frame in sheets.items():
        existed[name] = name in wb.sheetnames
        if existed[name]:
            index = wb.sheetnames.index(name)
            wb.remove(wb[name])
            if frame is None:
                continue
            ws = wb.create_sheet(title=name, index=index)
        elif frame is None:
            continue
        else:
            ws = wb.create_sheet(title=name)
        _fill_sheet(ws, frame)
    with atomic_path(path) as tmp:
        _save_reproducibly(wb, tmp)
    return existed


def read_sheet(path: PathLike, sheet: str = MAIN_SHEET, *, missing_ok: bool = False) -> pd.DataFrame | None:
    """Read one worksheet as a DataFrame of Python objects (empty cells -> None).

    ``frame.attrs['source']`` names the file and the sheet (for messages).
    With ``missing_ok``, a workbook without that sheet gives None.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not an ``.xlsx`` workbook, or no sheet of that name (the message lists the sheets).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    try:
        with pd.ExcelFile(path, engine="openpyxl") as xls:
            if sheet not in xls.sheet_names:
                if missing_ok:
                    return None
                raise ValueError(f"{path}: no worksheet {sheet!r} (found: {', '.join(xls.sheet_names)})")
            frame = pd.read_excel(xls, sheet_name=sheet, dtype=object)
    except (openpyxl_exceptions.InvalidFileException, zipfile.BadZipFile, KeyError, OSError, SyntaxError, TypeError, AttributeError) as exc:
        # a CSV or a truncated file under an .xlsx name: zipfile.BadZipFile; broken XML inside: ParseError (a SyntaxError)
        raise ValueError(f"{path}: not a readable .xlsx workbook ({type(exc).__name__}: {exc}); was it saved in another format?") from exc
    frame.columns = [str(c) for c in frame.columns]
    frame = frame.astype(object).where(frame.notna(), None)
    frame.attrs["source"] = f"{path} (sheet {sheet!r})"
    return frame


def format_list(values) -> str:
    """List as JSON text (``[1, 2, 26]``) that :func:`parse_list` reads back."""
    return json.dumps([v.item() if isinstance(v, np.generic) else v for v in values])


def parse_list(text: Any) -> list:
    """Inverse of :func:`format_list`; an empty cell gives ``[]``."""
    if is_missing(text) or text == "":
        return []
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{text!r} is not a JSON list") from exc
    if not isinstance(value, list):
        raise ValueError(f"{text!r} is not a JSON list")
    return value
