"""NME split rules: predefined splits by site and collection, and the cross-site random split.

Both work on the ``Manifest`` sheet of the dataset manifest (columns ``ID site
collection subset pid`` …) and return the selected rows with one subset label
per row; :func:`utils.dataset.splits.write_split_sheet` writes them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from utils.files.lazy_import import lazy_import
from utils.dataset.splits import grouped_random_split
from utils.files.spreadsheet import require_columns

pd = lazy_import("pandas")

__all__ = ["predefined_split", "cross_site_split"]

logger = logging.getLogger(__name__)


def _require_columns(manifest: pd.DataFrame, columns: Sequence[str]) -> None:
    require_columns(manifest, columns, "regenerate it with routine 04")


def predefined_split(manifest: pd.DataFrame, sites: Sequence[str], collections: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """Rows whose site is in ``sites`` and collection in ``collections``, labelled with their ``subset``.

    Parameters
    ----------
    manifest : DataFrame
        ``Manifest`` sheet of the dataset manifest.
    sites, collections : sequence of str
        ``--site`` and ``--collection`` values.

    Returns
    -------
    rows : DataFrame
        Selected rows, in manifest order.
    labels : list of str
        Their ``subset`` (train/val/test).

    Raises
    ------
    ValueError
        A requested site or collection does not occur in the manifest (a typo
        would otherwise silently shrink the split); the message lists the values present.
    """
    _require_columns(manifest, ["site", "collection", "subset"])
    for option, column, wanted in (("--site", "site", sites), ("--collection", "collection", collections)):
        present = sorted({str(v) for v in manifest[column].dropna()})
        unknown = [v for v in wanted if v not in present]
        if unknown:
            raise ValueError(f"{option} value(s) {unknown} not found in the dataset manifest (present: {present})")
    rows = manifest[manifest["site"].isin(list(sites)) & manifest["collection"].isin(list(collections))]
    for option, column, wanted in (("--site", "site", sites), ("--collection", "collection", collections)):
        idle = [v for v in wanted if v not in set(rows[column])]
        if idle:
            logger.warning("%s value(s) %s select no sample together with the other option", option, idle)
    return rows, [str(v) for v in rows["subset"]]


def cross_site_split(
    manifest: pd.DataFrame, predefined_sites: Sequence[str], test_ratio: float, val_ratio: float, seed: int
) -> tuple[pd.DataFrame, list[str]]:
    """All rows: predefined sites keep their ``subset``; the other sites are pooled and split by patient.

    The pooled samples are grouped by ``pid`` and assigned with
    :func:`utils.dataset.splits.grouped_random_split` (two stages: ``test_ratio`` of the
    patients to test, then ``val_ratio`` of the rest to val), which depends only
    on the seed and the sorted pids.

    Parameters
    ----------
    manifest : DataFrame
        ``Manifest`` sheet of the dataset manifest.
    predefined_sites : sequence of str
        Sites copied as predefined (NME: ``Tongji``, i.e. the split01_Tongji assignment).
    test_ratio, val_ratio : float
        In [0, 1].
    seed : int

    Returns
    -------
    rows : DataFrame
        Every manifest row, in manifest order.
    labels : list of str

    Raises
    ------
    ValueError
        Missing columns, a pooled sample without pid, a ratio outside [0, 1].
    """
    _require_columns(manifest, ["site", "subset", "pid"])
    kept = manifest["site"].isin(list(predefined_sites))
    if not kept.any():
        logger.warning("no sample of the predefined site(s) %s; every sample is split at random", list(predefined_sites))
    pooled = manifest[~kept]
    no_pid = [str(i) for i, p in zip(pooled.get("ID", pooled.index), pooled["pid"]) if p is None or str(p) == ""]
    if no_pid:
        raise ValueError(f"sample(s) {no_pid} have no pid; the cross-site split groups samples by pid")
    pids = [str(p) for p in pooled["pid"]]
    shared = sorted(set(pids) & {str(p) for p in manifest.loc[kept, "pid"]})
    if shared:
        logger.warning("pid(s) %s occur in a predefined site and in the pooled sites; their samples may fall in different subsets", shared)
    assignment = grouped_random_split(pids, test_ratio, val_ratio, seed)
    labels = [str(s) if k else assignment[str(p)] for k, s, p in zip(kept, manifest["subset"], manifest["pid"])]
    return manifest, labels
