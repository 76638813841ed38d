"""Samples a reviewer marked ``fail`` left out of a split sheet or a training export — named and recorded, never silently.

Split routines (VerSe 06, NME 05, ESO 05) first assign every selected sample its subset by their
usual rule, then leave out the samples marked ``fail``: the other samples keep exactly the subset
they have without the review (a random split is not reshuffled by one exclusion). Each left-out
sample gets one ``WARNING`` line with the reviewer's note, and a row in the workbook's sheet
:data:`RECORD_SHEET` (one row per split and sample; a re-run of a split replaces that split's rows,
and the sheet disappears when no split has an exclusion left).

The export (``utils/export_dataset.py``) leaves out the samples of the split sheet marked ``fail``
(e.g. a sheet made before the review), with the same log line, and writes
:data:`EXPORT_RECORD` into every format folder it writes.

Samples marked ``pass`` or ``unsure`` are kept (``unsure`` ones are named in an ``INFO`` line).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from utils.files.output_paths import portable_path
from utils.review.review_file import QcReview, ReviewEntry
from utils.dataset.splits import write_split_sheet
from utils.files.spreadsheet import read_sheet, require_columns

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "RECORD_SHEET",
    "RECORD_COLUMNS",
    "EXPORT_RECORD",
    "Exclusion",
    "select_reviewed",
    "warn_about_unknown_ids",
    "write_reviewed_split",
    "export_record",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Worksheet of the dataset manifest that records the samples a review left out of each split.
RECORD_SHEET = "QcReviewExcluded"
#: Its columns: the split, the sample, the subset it would have had, the review entry, the review file and its report digest.
RECORD_COLUMNS = ("split", "ID", "subset", "verdict", "note", "reviewer", "date", "review_file", "report_digest")
#: File written into every export format folder that left samples out.
EXPORT_RECORD = "qc_review_excluded.json"


@dataclass(frozen=True)
class Exclusion:
    """A sample left out because its review says ``fail``.

    Attributes
    ----------
    sample_id : str
    subset : str
        The subset it had (or would have had): ``train``, ``val`` or ``test``.
    entry : ReviewEntry
    """

    sample_id: str
    subset: str
    entry: ReviewEntry

    def to_dict(self) -> dict[str, str]:
        """``{ID, subset, verdict, note, reviewer, date}``."""
        return {"ID": self.sample_id, "subset": self.subset, **self.entry.to_dict()}


def select_reviewed(
    items: Sequence[T], review: QcReview | None, *, sample_id: Callable[[T], str], subset: Callable[[T], str], context: str
) -> tuple[list[int], list[Exclusion]]:
    """Split ``items`` into those kept and the exclusions, logging one line per sample left out.

    Parameters
    ----------
    items : sequence
        Rows, cases … of one split.
    review : QcReview or None
        None keeps everything.
    sample_id, subset : callable
        Item -> its sample ID / its subset.
    context : str
        Where they are left out of, for the log (``split split01_standard``).

    Returns
    -------
    kept : list of int
        Positions of the items kept, in order.
    excluded : list of Exclusion
        In item order.
    """
    kept: list[int] = []
    excluded: list[Exclusion] = []
    for position, item in enumerate(items):
        sid = str(sample_id(item))
        entry = review.entries.get(sid) if review is not None else None
        if entry is not None and entry.verdict == "fail":
            excluded.append(Exclusion(sid, str(subset(item)), entry))
            logger.warning("left out of %s: %s (%s), %s [%s]", context, sid, subset(item), entry.describe(), review.source)  # type: ignore[union-attr]
            continue
        if entry is not None and entry.verdict == "unsure":
            logger.info("kept in %s: %s (%s), %s", context, sid, subset(item), entry.describe())
        kept.append(position)
    if excluded:
        logger.info("%d sample(s) marked fail left out of %s (--no_review keeps them)", len(excluded), context)
    return kept, excluded


def warn_about_unknown_ids(review: QcReview, known_ids: Iterable[str], where: str) -> list[str]:
    """One warning when the review names samples that ``where`` does not have (a typo, or another dataset's marks).

    Returns
    -------
    unknown : list of str
        Sorted.
    """
    known = {str(i) for i in known_ids}
    unknown = sorted(set(review.entries) - known)
    if unknown:
        shown = ", ".join(unknown[:10]) + (" …" if len(unknown) > 10 else "")
        logger.warning("review file %s names %d sample(s) that %s does not have: %s", review.source, len(unknown), where, shown)
    return unknown


def _record_rows(exclusions: Sequence[Exclusion], review: QcReview, split_name: str, base: Path) -> list[dict[str, Any]]:
    source = portable_path(review.source, base)  # relative to the manifest's folder: no absolute path in a file we write
    return [{"split": split_name, **e.to_dict(), "review_file": source, "report_digest": review.report_digest} for e in exclusions]


def write_reviewed_split(
    manifest_file: Path,
    split_name: str,
    rows: pd.DataFrame,
    labels: Sequence[str],
    review: QcReview | None,
    *,
    manifest_ids: Iterable[str] = (),
) -> list[Exclusion]:
    """Write a split sheet without the samples the review marks ``fail``, and record them.

    With no review and no earlier record, this is exactly :func:`utils.dataset.splits.write_split_sheet`
    (the same bytes as before the review loop existed). Otherwise the split sheet and the
    :data:`RECORD_SHEET` rows of this split are written in one atomic rewrite of the workbook.

    Parameters
    ----------
    manifest_file : Path
        ``dataset_manifest.xlsx``.
    split_name : str
        Split sheet (and column) name.
    rows : DataFrame
        The selected ``Manifest`` rows, ``labels`` their subsets (the split rule's result).
    labels : sequence of str
    review : QcReview or None
    manifest_ids : iterable of str
        Every ID of the ``Manifest`` sheet: review IDs outside it are warned about.

    Returns
    -------
    excluded : list of Exclusion

    Raises
    ------
    ValueError
        As :func:`utils.dataset.splits.write_split_sheet`, a split named like :data:`RECORD_SHEET`, or a
        record sheet without its columns.
    """
    if split_name == RECORD_SHEET:
        raise ValueError(f"split name {split_name!r} is the sheet that records QC-review exclusions; choose another name")
    labels = list(labels)
    excluded: list[Exclusion] = []
    if review is not None:
        warn_about_unknown_ids(review, manifest_ids, f"the Manifest sheet of {manifest_file}")
        ids = [str(v) for v in rows["ID"]] if "ID" in rows.columns else [""] * len(rows)
        kept, excluded = select_reviewed(
            list(range(len(ids))), review, sample_id=lambda i: ids[i], subset=lambda i: labels[i], context=f"split {split_name}"
        )
        rows = rows.iloc[kept].reset_index(drop=True)
        labels = [labels[i] for i in kept]
    previous = read_sheet(manifest_file, RECORD_SHEET, missing_ok=True)
    if previous is None and not excluded:
        write_split_sheet(manifest_file, split_name, rows, labels)
        return excluded
    import pandas as pd

    kept_rows: list[dict[str, Any]] = []
    if previous is not None:
        require_columns(previous, list(RECORD_COLUMNS), "delete the sheet and run the split routines again")
        kept_rows = [r for r in previous[list(RECORD_COLUMNS)].to_dict("records") if str(r["split"]) != split_name]
    new_rows = _record_rows(excluded, review, split_name, Path(manifest_file).parent) if excluded else []  # type: ignore[arg-type]
    table = sorted(kept_rows + new_rows, key=lambda r: (str(r["split"]), str(r["ID"])))
    record = pd.DataFrame(table, columns=list(RECORD_COLUMNS)) if table else None
    write_split_sheet(manifest_file, split_name, rows, labels, extra_sheets={RECORD_SHEET: record})
    if excluded:
        logger.info("recorded %d left-out sample(s) in sheet %s of %s", len(excluded), RECORD_SHEET, manifest_file)
    return excluded


def export_record(exclusions: Sequence[Exclusion], review: QcReview, split_name: str, base: Path | None = None) -> dict[str, Any]:
    """Content of :data:`EXPORT_RECORD`: the review file (relative to ``base``, the folder the record is written to),
    its report digest, the split and every sample left out."""
    return {
        "review_file": portable_path(review.source, base) if base is not None else Path(review.source).name,
        "dataset": review.dataset,
        "report_digest": review.report_digest,
        "split": split_name,
        "excluded": [e.to_dict() for e in exclusions],
    }
