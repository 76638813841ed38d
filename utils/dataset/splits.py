"""Train/val/test splits as worksheets of the dataset manifest, and the per-subset index manifests.

A split sheet copies the ``Manifest`` rows it covers and appends one column,
named like the sheet, holding ``train``, ``val`` or ``test``.

Random splits (:func:`grouped_random_split`) keep the samples of one group
(a patient) together and depend only on the seed and the sorted group keys:
each key gets the rank of ``sha256("{seed}:{key}")``; the first
``round(n * test_ratio)`` groups in that order are test, the next
``round((n - n_test) * val_ratio)`` are val, the rest train (the tutorials'
two-stage rule). Rounding is half up on the exact decimal product: 10 groups
at ratio 0.35 give 4 (3.5 rounded up), although ``10 * 0.35`` is
3.4999999999999996 in binary floating point. No random-number generator is
involved, so no library upgrade can change a published split; a golden test
pins it anyway.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from utils.files.safe_names import UnsafeNameError, check_sheet_name
from utils.files.lazy_import import lazy_import
from utils.files.spreadsheet import MAIN_SHEET, add_sheet, is_missing, read_sheet, replace_sheets, require_columns, write_sheets

pd = lazy_import("pandas")

__all__ = [
    "SUBSETS",
    "check_sample_ids",
    "round_half_up",
    "share_count",
    "grouped_random_split",
    "check_split_name",
    "write_split_sheet",
    "index_manifest_name",
    "extract_index_manifests",
]

logger = logging.getLogger(__name__)

SUBSETS = ("train", "val", "test")

def check_sample_ids(frame: pd.DataFrame, hint: str = "regenerate the dataset manifest") -> None:
    """Refuse a manifest table without an ``ID`` column, or with empty or repeated ``ID`` values.

    Raises
    ------
    ValueError
        One line naming the file and sheet (``frame.attrs['source']``) and the problem.
    """
    require_columns(frame, ["ID"], hint)
    source = frame.attrs.get("source", "table")
    empty = [i + 2 for i, v in enumerate(frame["ID"]) if is_missing(v) or str(v).strip() == ""]
    if empty:
        raise ValueError(f"{source}: empty ID in Excel row(s) {empty[:10]}{' …' if len(empty) > 10 else ''}; {hint}")
    ids = [str(v) for v in frame["ID"]]
    repeated = sorted({v for v in ids if ids.count(v) > 1}) if len(set(ids)) < len(ids) else []
    if repeated:
        raise ValueError(f"{source}: ID value(s) {repeated[:10]} occur more than once; {hint}")


def round_half_up(x: float) -> int:
    """Round to the nearest integer, halves up (``round(2.5) == 2`` in Python; here 3)."""
    return int(math.floor(x + 0.5))


def share_count(n: int, ratio: float) -> int:
    """``round(n * ratio)`` with halves up, on the exact decimal value of the ratio as written.

    The ratio is taken as its shortest decimal text (``repr``: what the user typed, ``0.35``), so a
    product that is a half in decimal is rounded up even when its binary floating-point value lies
    just below the half.

    Examples
    --------
    >>> share_count(10, 0.35), share_count(5, 0.5), share_count(7, 0.3), share_count(0, 0.5)
    (4, 3, 2, 0)
    """
    return int((Decimal(repr(float(ratio))) * int(n)).to_integral_value(rounding=ROUND_HALF_UP))


def _check_ratio(name: str, value: float) -> None:
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        raise ValueError(f"{name} must lie in [0, 1], got {value}")


def grouped_random_split(group_keys: Iterable[str], test_ratio: float, val_ratio: float, seed: int) -> dict[str, str]:
    """Assign each group to train/val/test with the two-stage rule, reproducibly.

    Parameters
    ----------
    group_keys : iterable of str
        One key per group (duplicates are merged).
    test_ratio : float
        Share of groups in test (first stage), in [0, 1].
    val_ratio : float
        Share of the remaining groups in val (second stage), in [0, 1].
    seed : int
        Any integer; the same seed and keys always give the same split.

    Returns
    -------
    assignment : dict of str to str
        Group key -> ``'train'``, ``'val'`` or ``'test'``.

    Examples
    --------
    >>> a = grouped_random_split(["p1", "p2", "p3", "p4", "p5"], 0.4, 0.5, seed=0)
    >>> sorted(a.values()).count("test")
    2
    """
    _check_ratio("test_ratio", test_ratio)
    _check_ratio("val_ratio", val_ratio)
    keys = sorted({str(k) for k in group_keys})
    order = sorted(keys, key=lambda k: (hashlib.sha256(f"{int(seed)}:{k}".encode()).hexdigest(), k))
    n_test = share_count(len(order), test_ratio)
    n_val = share_count(len(order) - n_test, val_ratio)
    assignment = {}
    for rank, key in enumerate(order):
        assignment[key] = "test" if rank < n_test else ("val" if rank < n_test + n_val else "train")
    return assignment


def check_split_name(split_name: str) -> str:
    """A split name is a worksheet name and the start of index-manifest file names: one safe name, <= 31 characters.

    Raises
    ------
    UnsafeNameError
        Path separators, ``..``, control characters, Excel's forbidden characters, too long, or ``Manifest``.
    """
    check_sheet_name(split_name, "--split_name")
    if split_name.casefold() == MAIN_SHEET.casefold():
        raise UnsafeNameError(f"--split_name {split_name!r} is the name of the manifest's main sheet; choose another name")
    return split_name


def write_split_sheet(
    manifest_file: Path,
    split_name: str,
    rows: pd.DataFrame,
    labels: Sequence[str],
    *,
    extra_sheets: Mapping[str, pd.DataFrame | None] | None = None,
) -> None:
    """Add (or replace) the split worksheet: ``rows`` plus a ``split_name`` column of ``labels``.

    ``extra_sheets`` (sheet name -> content, None to remove it) are written in the same atomic
    rewrite of the workbook, e.g. the record of the samples a QC review left out.

    Raises
    ------
    ValueError
        No rows, a label outside train/val/test, a column already named ``split_name``, or a
        ``split_name`` that cannot be a worksheet and file-name part (:func:`check_split_name`).
    """
    check_split_name(split_name)
    check_sample_ids(rows, "regenerate it with the dataset-manifest routine")
    if rows.empty:
        raise ValueError(f"split {split_name!r}: no sample of {manifest_file} matches the selection")
    bad = sorted({str(v) for v in labels if v not in SUBSETS})
    if bad:
        raise ValueError(f"split {split_name!r}: subset values {bad} found, expected one of {list(SUBSETS)}")
    if split_name in rows.columns:
        raise ValueError(f"split {split_name!r}: the manifest already has a column of that name")
    sheet = rows.reset_index(drop=True).copy()
    sheet[split_name] = list(labels)
    if extra_sheets:
        replaced = replace_sheets(manifest_file, {split_name: sheet, **extra_sheets})[split_name]
    else:
        replaced = add_sheet(manifest_file, split_name, sheet)
    counts = sheet[split_name].value_counts().reindex(SUBSETS, fill_value=0)
    logger.info(
        "%s sheet %s in %s: %s",
        "replaced" if replaced else "added",
        split_name,
        manifest_file,
        ", ".join(f"{k} {v}" for k, v in counts.items()),
    )


def index_manifest_name(split_name: str, subsets: Sequence[str]) -> str:
    """``{split}_{subset1}_{subset2}….xlsx``."""
    return f"{split_name}_{'_'.join(subsets)}.xlsx"


def extract_index_manifests(
    manifest_file: Path, split_name: str, subset_groups: Sequence[Sequence[str]], output_dir: Path
) -> dict[str, int]:
    """Write one index manifest per group of subsets; all or nothing.

    Parameters
    ----------
    manifest_file : Path
        Dataset manifest holding the sheet ``split_name``.
    split_name : str
        Split sheet (and column) to read.
    subset_groups : sequence of sequence of str
        E.g. ``[["train", "val"], ["train"], ["val"], ["test"]]``.
    output_dir : Path
        Folder of the ``{split}_{subsets}.xlsx`` files.

    Returns
    -------
    written : dict of str to int
        File name -> number of rows.

    Raises
    ------
    ValueError
        The sheet lacks the split column, or a requested subset has no
        sample; then nothing is written and the message names every empty subset.
    """
    check_split_name(split_name)
    frame = read_sheet(manifest_file, split_name)
    require_columns(frame, [split_name], "re-run the split routine")
    check_sample_ids(frame, "re-run the dataset-manifest and split routines")
    present = set(frame[split_name].dropna().astype(str))
    empty = sorted({s for group in subset_groups for s in group if s not in present})
    if empty:
        raise ValueError(
            f"{manifest_file}: split {split_name!r} has no sample in subset(s) {empty} "
            f"(subsets present: {sorted(present)}); nothing was written"
        )
    outputs: Mapping[str, pd.DataFrame] = {
        index_manifest_name(split_name, group): frame[frame[split_name].isin(list(group))].reset_index(drop=True)
        for group in subset_groups
    }
    written = {}
    for name, rows in outputs.items():
        write_sheets(Path(output_dir) / name, {MAIN_SHEET: rows})
        written[name] = len(rows)
        logger.info("wrote %s (%d samples)", Path(output_dir) / name, len(rows))
    return written
