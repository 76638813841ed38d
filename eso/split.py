"""ESO random splits of one site: a patient's pre- and post-therapy scans always land in the same subset.

Groups are ``{site}_{pid}``; the assignment is
:func:`utils.dataset.splits.grouped_random_split` (hash of seed and key, two-stage rule:
test first, then val out of the rest), so it depends only on the seed and the
set of patients, and a golden test pins it.
"""

from __future__ import annotations

import logging

from utils.files.lazy_import import lazy_import
from utils.archive.metadata_sheets import canonical_id
from utils.dataset.splits import SUBSETS, grouped_random_split
from utils.files.spreadsheet import require_columns

pd = lazy_import("pandas")

__all__ = ["group_key", "site_split"]

logger = logging.getLogger(__name__)


def group_key(site: str, pid: object) -> str:
    """``{site}_{pid}``: the split group of a sample (both phases of one patient)."""
    return f"{site}_{canonical_id(pid)}"


def site_split(
    manifest: pd.DataFrame, site: str, test_ratio: float, val_ratio: float, seed: int = 0
) -> tuple[pd.DataFrame, list[str]]:
    """Rows of one site and their train/val/test label.

    Parameters
    ----------
    manifest : DataFrame
        ``Manifest`` sheet of the dataset manifest (columns ``site``, ``pid``).
    site : str
        Site code (``TJ``).
    test_ratio, val_ratio : float
        Share of patients in test, then share of the remaining patients in val.
    seed : int

    Returns
    -------
    rows : DataFrame
        The site's rows, in manifest order.
    labels : list of str
        ``train``/``val``/``test`` per row; equal for rows of one patient.

    Raises
    ------
    ValueError
        Missing columns, no row of that site (the message lists the sites
        present), a row without pid, a ratio outside [0, 1].
    """
    require_columns(manifest, ("ID", "site", "pid"), "regenerate it with routine 04")
    rows = manifest[manifest["site"].astype(str) == site]
    if rows.empty:
        present = sorted({str(s) for s in manifest["site"].dropna()})
        raise ValueError(f"no sample of site {site!r} in the dataset manifest (sites found: {present})")
    no_pid = [str(i) for i, p in zip(rows["ID"], rows["pid"]) if canonical_id(p) is None]
    if no_pid:
        raise ValueError(f"sample(s) {no_pid} have no pid in the dataset manifest; cannot group pre and post scans")
    keys = [group_key(s, p) for s, p in zip(rows["site"], rows["pid"])]
    assignment = grouped_random_split(keys, test_ratio, val_ratio, seed)
    labels = [assignment[k] for k in keys]
    counts = {s: sum(1 for v in assignment.values() if v == s) for s in SUBSETS}
    logger.info("site %s: %d patients -> %s", site, len(assignment), ", ".join(f"{k} {v}" for k, v in counts.items()))
    for subset, ratio in (("test", test_ratio), ("val", val_ratio)):
        if ratio > 0 and counts[subset] == 0:
            logger.warning("site %s: %s_ratio %.3g leaves %s empty with %d patients", site, subset, ratio, subset, len(assignment))
    return rows.reset_index(drop=True), labels
