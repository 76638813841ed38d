"""Values read from data that become file or folder names: checked before any work, never trusted as paths.

A manifest cell, an info-yaml value, a label map's short form or a split name
is data. Before it names a file or a folder it must be **one safe path
component**: not empty, at most :data:`MAX_NAME_LENGTH` characters, no path
separator (``/`` or ``\\``), no ``..``, no control character or line break,
no leading ``.`` (hidden files, ``.`` and ``..``) and no leading or trailing
white space. Where a dataset documents a pattern for the field (its
``descriptors/<dataset>/archive.yaml``: ``fields``, or the set of values its
folder rules can produce), the value must also match it in full.

:func:`check_manifest_fields` checks every row of an archive manifest before
routine 02 builds a single path; a bad cell is refused in one line naming the
manifest, the Excel row, the column, the value found and what was expected.
:func:`check_inside` is the last line of defence: the folder a routine is about
to write must lie inside its output folder.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.files.aliases import PathLike

__all__ = [
    "CASE_ID_RE",
    "MAX_NAME_LENGTH",
    "UnsafeNameError",
    "FieldRule",
    "name_problem",
    "check_name",
    "relative_path_problem",
    "check_relative_path",
    "check_manifest_fields",
    "check_inside",
    "SHEET_NAME_MAX",
    "check_sheet_name",
]

#: Case identifiers become file names (``{case}_0000.nii.gz``): letters, digits, ``.``, ``_``, ``-``.
CASE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

#: Longest value accepted as one file or folder name (file systems allow 255 bytes; we add suffixes).
MAX_NAME_LENGTH = 128

#: Excel's limit on worksheet names (a split name is a sheet name).
SHEET_NAME_MAX = 31

_SHEET_FORBIDDEN = set("[]:*?/\\")


class UnsafeNameError(ValueError):
    """A value from data that cannot name a file or folder; the message is one line."""


def name_problem(value: Any) -> str | None:
    """Why ``value`` cannot be one file or folder name, or None when it can.

    Examples
    --------
    >>> name_problem("verse401-201") is None
    True
    >>> name_problem("../../X")
    "holds '..'"
    >>> name_problem("a/b")
    'holds a path separator'
    """
    if not isinstance(value, str):
        return f"is not text ({type(value).__name__})"
    if value == "":
        return "is empty"
    if len(value) > MAX_NAME_LENGTH:
        return f"is longer than {MAX_NAME_LENGTH} characters"
    if ".." in value:
        return "holds '..'"
    if "/" in value or "\\" in value:
        return "holds a path separator"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value):
        return "holds a control character or line break"
    if value != value.strip():
        return "starts or ends with white space"
    if value.startswith("."):
        return "starts with '.'"
    return None


def check_name(value: Any, what: str) -> str:
    """Return ``value`` when it can name one file or folder, else raise :class:`UnsafeNameError` naming ``what``.

    Parameters
    ----------
    value : object
        The value (``str`` expected).
    what : str
        What it is and where it came from, for the message (``--split_name``, ``sample ID``).
    """
    problem = name_problem(value)
    if problem is not None:
        raise UnsafeNameError(f"{what} {value!r} cannot name a file or folder: it {problem}")
    return value


def check_sheet_name(value: Any, what: str) -> str:
    """A name that is both a safe file-name part and a valid worksheet name (<= 31 characters, no ``[]:*?/\\``)."""
    check_name(value, what)
    if len(value) > SHEET_NAME_MAX:
        raise UnsafeNameError(f"{what} {value!r} is also a worksheet name: at most {SHEET_NAME_MAX} characters, found {len(value)}")
    bad = sorted(set(value) & _SHEET_FORBIDDEN)
    if bad:
        raise UnsafeNameError(f"{what} {value!r} is also a worksheet name and may not hold {''.join(bad)!r}")
    return value


def relative_path_problem(value: Any) -> str | None:
    """Why ``value`` is not a relative POSIX path that stays below its root, or None."""
    if not isinstance(value, str) or value == "":
        return "is not a relative file path"
    if value.startswith("/") or re.match(r"^[A-Za-z]:", value):
        return "is absolute; a path relative to the archive root was expected"
    if "\\" in value or any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value):
        return "holds a backslash, a control character or a line break"
    bad = [part for part in value.split("/") if part in ("", ".", "..")]
    if bad:
        return f"holds the part {bad[0]!r}; a path that stays below the archive root was expected"
    return None


def check_relative_path(value: Any, what: str) -> str:
    """A relative POSIX path that stays below its root (``file_path`` of an archive manifest).

    Raises
    ------
    UnsafeNameError
        Not text, absolute, an empty, ``.`` or ``..`` part, a backslash, a control character or line break.
    """
    problem = relative_path_problem(value)
    if problem is not None:
        raise UnsafeNameError(f"{what} {value!r} {problem}")
    return value


@dataclass(frozen=True)
class FieldRule:
    """What one manifest column may hold when it becomes part of a path.

    Attributes
    ----------
    describe : str
        The documented form, for the message (``letters then 3 digits``).
    pattern : re.Pattern, optional
        Must match the whole value.
    choices : collection of str, optional
        The value must be one of these.
    optional : bool
        An empty cell is accepted (e.g. VerSe ``split`` of a scan without one).
    transform : callable, optional
        Applied to the cell before the check (e.g. an id read as ``123.0`` -> ``'123'``).
    relative_path : bool
        The value is a relative path (several parts) that must stay below its root
        (:func:`check_relative_path`), not one name.
    """

    describe: str
    pattern: re.Pattern[str] | None = None
    choices: Collection[str] | None = None
    optional: bool = False
    transform: Callable[[Any], Any] | None = None
    relative_path: bool = False

    def problem(self, value: Any) -> str | None:
        """Why ``value`` does not fit, or None."""
        if value is None or (isinstance(value, float) and value != value) or value == "":
            return None if self.optional else "is empty"
        if self.transform is not None:
            value = self.transform(value)
        if not isinstance(value, str):
            value = str(value)
        if self.relative_path:
            return relative_path_problem(value)
        problem = name_problem(value)
        if problem is not None:
            return f"{problem}, so it cannot name a folder"
        if self.choices is not None and value not in self.choices:
            return f"is not one of {sorted(self.choices)}"
        if self.pattern is not None and not self.pattern.fullmatch(value):
            return f"does not match {self.pattern.pattern!r}"
        return None


def check_manifest_fields(frame: Any, rules: Mapping[str, FieldRule], source: str, *, first_row: int = 2) -> None:
    """Check every cell of the given columns; refuse the manifest at the first bad one.

    Parameters
    ----------
    frame : DataFrame
        The sheet as read (row ``i`` of the frame is Excel row ``i + first_row``).
    rules : mapping of str to FieldRule
        Column -> rule; columns missing from ``frame`` are skipped (the caller requires its columns).
    source : str
        The manifest (and sheet) for the message.
    first_row : int
        Excel row of the frame's first row (2: below the header).

    Raises
    ------
    UnsafeNameError
        One line: manifest, row, column, value, what was expected, and how many other cells are bad.
    """
    bad: list[str] = []
    for column, rule in rules.items():
        if column not in frame.columns:
            continue
        for i, value in enumerate(frame[column].tolist()):
            problem = rule.problem(value)
            if problem is not None:
                bad.append(f"{source}, row {i + first_row}, column {column!r}: value {value!r} {problem} ({column} is {rule.describe})")
    if bad:
        more = f"; {len(bad) - 1} more bad cell(s)" if len(bad) > 1 else ""
        raise UnsafeNameError(f"{bad[0]}{more}; nothing was written (values that become file or folder names are checked first)")


def check_inside(path: PathLike, folder: PathLike, what: str) -> Path:
    """Return ``path`` when it lies inside ``folder`` (after resolving ``..`` and links), else raise.

    Raises
    ------
    UnsafeNameError
        ``path`` would leave ``folder``.
    """
    path, folder = Path(path), Path(folder)
    resolved, base = path.resolve(), folder.resolve()
    if resolved != base and base not in resolved.parents:
        raise UnsafeNameError(f"{what} {path} lies outside {folder}; refused")
    return path
