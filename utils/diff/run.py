"""The whole release diff: match the samples of two grouped datasets, find renames, compare every pair.

Order of work:

1. list the sample folders of both releases (a folder holding ``{ID}/{ID}_info.yaml``) and their
   dataset-manifest rows; an ID twice in one release is refused (exit 2);
2. samples only in one release: the voxel digest of each volume (read once); an old and a new
   sample with the same volume voxels are a rename (several with the same content are paired in ID
   order and the record says the match is ambiguous);
3. every pair (same ID, or renamed) compared in ``workers`` processes (:func:`utils.diff.compare.compare_pair`):
   file hashes first, images read only where they differ.

The result is a JSON-ready dict (format in ``docs/diff.md``): ``summary`` counts and one record per
sample, sorted by ID.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.geometry.alignment import GRID_TOL_VOXEL
from utils.run.cli import RunReport, run_per_sample
from utils.diff.compare import SamplePair, compare_pair, volume_fingerprint
from utils.diff.report_json import FORMAT, FORMAT_VERSION
from utils.report.sample import plain, sample_key
from utils.files.sample_info import SampleDir, find_samples

__all__ = ["STATUSES", "DiffResult", "diff_datasets", "read_manifest_rows"]

logger = logging.getLogger(__name__)

#: Sample statuses, in the order of the summary.
STATUSES = ("added", "removed", "renamed", "changed", "unchanged", "error")


@dataclass
class DiffResult:
    """What :func:`diff_datasets` found.

    Attributes
    ----------
    data : dict
        The JSON-ready diff.
    report : RunReport
        Per-sample errors of both loops (an unreadable file).
    """

    data: dict[str, Any]
    report: RunReport

    def exit_code(self) -> int:
        return self.report.exit_code()


def read_manifest_rows(manifest: Path | None) -> dict[str, dict[str, Any]]:
    """``ID`` -> row of the ``Manifest`` sheet (JSON-safe values); {} without a manifest.

    Raises
    ------
    ValueError
        Unreadable workbook, no ``ID`` column, empty or repeated IDs.
    """
    if manifest is None:
        return {}
    from utils.dataset.splits import check_sample_ids
    from utils.files.spreadsheet import read_sheet

    frame = read_sheet(manifest)
    check_sample_ids(frame)
    return {str(row["ID"]): {str(k): plain(v) for k, v in row.items()} for row in frame.to_dict("records")}


def _index(samples: list[SampleDir], root: Path) -> dict[str, SampleDir]:
    by_id: dict[str, list[SampleDir]] = defaultdict(list)
    for sample in samples:
        by_id[sample.id].append(sample)
    twice = {sid: [sample_key(s, root) for s in found] for sid, found in by_id.items() if len(found) > 1}
    if twice:
        first = sorted(twice)[0]
        raise ValueError(f"{root}: sample ID {first} is in {len(twice[first])} folders {twice[first]}; IDs must be unique to be matched ({len(twice)} such IDs)")
    return {sid: found[0] for sid, found in by_id.items()}


def _fingerprint(item: tuple[str, SampleDir]) -> dict[str, Any]:
    return volume_fingerprint(item[1])


def _match_renames(removed: dict[str, SampleDir], added: dict[str, SampleDir], prints: Mapping[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(old ID, new ID, note) pairs with the same volume voxels; note non-empty when the match is ambiguous."""
    old_by, new_by = defaultdict(list), defaultdict(list)
    for sid in sorted(removed):
        if f"old:{sid}" in prints:
            old_by[prints[f"old:{sid}"]["digest"]].append(sid)
    for sid in sorted(added):
        if f"new:{sid}" in prints:
            new_by[prints[f"new:{sid}"]["digest"]].append(sid)
    pairs = []
    for digest, olds in old_by.items():
        news = new_by.get(digest, [])
        note = "" if len(olds) == len(news) == 1 else f"ambiguous: {len(olds)} old and {len(news)} new samples share these voxels; paired in ID order"
        pairs += [(o, n, note) for o, n in zip(olds, news)]
    return pairs


def _only_record(status: str, sample: SampleDir, root: Path, fingerprint: dict[str, Any] | None, row: Mapping[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {"status": status, "id": sample.id, "old_id": sample.id if status == "removed" else None,
                              "old_path": sample_key(sample, root) if status == "removed" else None,
                              "new_path": sample_key(sample, root) if status == "added" else None}  # fmt: skip
    if fingerprint is not None:
        record["volume"] = {"voxel_sha256": fingerprint["digest"], "shape": fingerprint["shape"], "spacing_mm": fingerprint["spacing_mm"]}
    record["has_mask"] = sample.mask.is_file()
    if row:
        record["manifest"] = dict(row)
    return record


def diff_datasets(
    old_root: Path,
    new_root: Path,
    *,
    old_manifest: Path | None = None,
    new_manifest: Path | None = None,
    label_names: Mapping[int, str] | None = None,
    grid_tol: float = GRID_TOL_VOXEL,
    workers: int = 1,
    dask_scheduler: str | None = None,
    show_progress: bool = True,
) -> DiffResult:
    """Compare two releases of a grouped dataset.

    Parameters
    ----------
    old_root, new_root : Path
        The two ``grouped`` folders.
    old_manifest, new_manifest : Path, optional
        Their ``dataset_manifest.xlsx`` (manifest fields are compared when both are given).
    label_names : mapping of int to str, optional
        Short label names for the records.
    grid_tol : float
        "Same grid" tolerance, as a fraction of the smallest voxel spacing.
    workers : int
        Processes over samples.
    dask_scheduler : str, optional
        Run the samples on this Dask cluster instead.
    show_progress : bool

    Returns
    -------
    DiffResult

    Raises
    ------
    FileNotFoundError, ValueError
        A root that is not a folder or holds no sample, an ID twice in one root, an unusable manifest.
    """
    old_root, new_root = Path(old_root), Path(new_root)
    old = _index(find_samples(old_root), old_root)
    new = _index(find_samples(new_root), new_root)
    for root, found in ((old_root, old), (new_root, new)):
        if not found:
            raise FileNotFoundError(f"{root}: no sample folder ({{ID}}/{{ID}}_info.yaml) found")
    rows_old = read_manifest_rows(old_manifest) if old_manifest and new_manifest else {}
    rows_new = read_manifest_rows(new_manifest) if old_manifest and new_manifest else {}
    removed = {sid: s for sid, s in old.items() if sid not in new}
    added = {sid: s for sid, s in new.items() if sid not in old}
    report = RunReport("release diff")
    common = dict(workers=workers, show_progress=show_progress, dask_scheduler=dask_scheduler, input_dirs=[old_root, new_root])

    items = [(f"old:{sid}", s) for sid, s in sorted(removed.items())] + [(f"new:{sid}", s) for sid, s in sorted(added.items())]
    prints: dict[str, dict[str, Any]] = {}
    if items:
        first = run_per_sample(items, _fingerprint, desc="release diff: added/removed samples", key=lambda it: it[0], **common)
        prints, report.errors = dict(first.results), dict(first.errors)
    renames = _match_renames(removed, added, prints)
    pairs = [SamplePair(old[sid], new[sid], sample_key(old[sid], old_root), sample_key(new[sid], new_root),
                        rows_old.get(sid, {}), rows_new.get(sid, {})) for sid in sorted(set(old) & set(new))]  # fmt: skip
    pairs += [SamplePair(removed[o], added[n], sample_key(removed[o], old_root), sample_key(added[n], new_root),
                         rows_old.get(o, {}), rows_new.get(n, {}), renamed=True) for o, n, _ in renames]  # fmt: skip
    work = functools.partial(compare_pair, grid_tol=grid_tol, label_names=dict(label_names or {}))
    second = run_per_sample(pairs, work, desc="release diff: samples in both", key=lambda p: p.new.id, **common)
    report.results = {**prints, **second.results}
    report.errors.update(second.errors)

    records: list[dict[str, Any]] = []
    renamed_old = {o for o, _, _ in renames}
    renamed_new = {n: (o, note) for o, n, note in renames}
    for pair in pairs:
        sid = pair.new.id
        record: dict[str, Any] = {"status": "error", "id": sid, "old_id": pair.old.id, "old_path": pair.old_path, "new_path": pair.new_path}
        if sid in second.results:
            record.update(second.results[sid])
            record = {"status": record["status"], **{k: v for k, v in record.items() if k != "status"}}
        else:
            record["error"] = second.errors.get(sid, "not compared")
        if sid in renamed_new and renamed_new[sid][1]:
            record["note"] = renamed_new[sid][1]
        records.append(record)
    for sid, sample in removed.items():
        if sid not in renamed_old:
            records.append(_only_record("removed", sample, old_root, prints.get(f"old:{sid}"), rows_old.get(sid, {})))
            if f"old:{sid}" in report.errors:
                records[-1]["error"] = report.errors[f"old:{sid}"]
    for sid, sample in added.items():
        if sid not in renamed_new:
            records.append(_only_record("added", sample, new_root, prints.get(f"new:{sid}"), rows_new.get(sid, {})))
            if f"new:{sid}" in report.errors:
                records[-1]["error"] = report.errors[f"new:{sid}"]
    records.sort(key=lambda r: (r["id"], r.get("old_id") or ""))
    summary = {"old_samples": len(old), "new_samples": len(new), **{s: sum(r["status"] == s for r in records) for s in STATUSES}}
    data = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "old": str(old_root.resolve()),
        "new": str(new_root.resolve()),
        "old_manifest": str(old_manifest.resolve()) if old_manifest and new_manifest else None,
        "new_manifest": str(new_manifest.resolve()) if old_manifest and new_manifest else None,
        "grid_tol_voxel": grid_tol,
        "summary": summary,
        "samples": records,
    }
    logger.info("release diff: %s", ", ".join(f"{summary[s]} {s}" for s in STATUSES if summary[s] or s != "error"))
    return DiffResult(data, report)
