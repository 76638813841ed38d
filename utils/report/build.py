"""The whole report for a list of sample folders: pictures, ``index.html``, ``dataset_card.md`` / ``.json``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.files.aliases import PathLike
from utils.files.atomic import atomic_write_text
from utils.run.cli import RunReport, run_per_sample
from utils.labels.label_maps import LabelMap
from utils.report.card import DatasetCard, card_json, write_card
from utils.report.diff_section import diff_section
from utils.report.page import render_index
from utils.report.dataset_profile import ReportProfile, Window
from utils.report.findings import AuditFindings
from utils.report.sample import SampleJob, SampleRecord, plain, sample_key
from utils.report.stats import label_table, resolution_table, summary_table
from utils.review.review_file import QcReview, report_digest
from utils.files.sample_info import SampleDir, read_info

__all__ = ["ReportOutputs", "build_report", "read_small_regions", "INDEX_HTML", "CARD_MD", "CARD_JSON"]

logger = logging.getLogger(__name__)

INDEX_HTML = "index.html"
CARD_MD = "dataset_card.md"
CARD_JSON = "dataset_card.json"


@dataclass
class ReportOutputs:
    """What :func:`build_report` wrote and found."""

    index: Path
    card_md: Path
    card_json: Path
    records: list[SampleRecord] = field(default_factory=list)
    run: RunReport | None = None


def read_small_regions(path: PathLike) -> dict[str, int]:
    """Number of small regions per sample in a ``small_connected_region_detect.py`` manifest.

    Returns
    -------
    counts : dict
        Keyed both by the sample folder relative to the detect tool's ``--root_dir``
        (the parent of the ``mask`` column) and by ``ID``.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing or unreadable workbook, or no ``ID`` column.
    """
    from utils.files.spreadsheet import read_sheet

    frame = read_sheet(path)
    if "ID" not in frame.columns:
        raise ValueError(f"{path}: no 'ID' column; a small_connected_region_detect.py manifest was expected")
    counts: dict[str, int] = {}
    for _, row in frame.iterrows():
        keys = {str(row["ID"])}
        if row.get("mask"):
            keys.add(Path(str(row["mask"])).parent.as_posix())
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
    return counts


def _error_record(sample: SampleDir, key: str, message: str, group_by: Sequence[str]) -> SampleRecord:
    record = SampleRecord(id=sample.id, path=key, error=message)
    try:
        info = read_info(sample.info)
    except (OSError, ValueError):
        return record
    record.group = {k: plain(info.get(k)) for k in group_by}
    record.history = [str(h.get("step")) for h in info.get("history") or [] if isinstance(h, dict)]
    return record


def build_report(
    samples: Sequence[SampleDir],
    *,
    root_dir: Path,
    output_dir: Path,
    profile: ReportProfile,
    window: Window,
    label_map: LabelMap | None,
    label_map_source: str = "",
    small_regions: dict[str, int] | None = None,
    panel_px: int = 256,
    workers: int = 1,
    threads: int = 1,
    show_progress: bool = True,
    review: QcReview | None = None,
    diff: dict[str, Any] | None = None,
    audit: AuditFindings | None = None,
) -> ReportOutputs:
    """Render every sample (in ``workers`` processes) and write the page and the card.

    A sample that cannot be read gets a row with its error; the others are reported.

    Parameters
    ----------
    samples : sequence of SampleDir
        Sample folders below ``root_dir``.
    root_dir, output_dir : Path
        Grouped dataset; report folder (pictures in ``output_dir/images/``).
    profile : ReportProfile
        Dataset title, modality, grouping columns.
    window : Window
        Display window (the profile's or the one given on the command line).
    label_map : LabelMap or None
        Label names; values missing from it are flagged.
    label_map_source : str
        Where the label map came from (shown in the report).
    small_regions : dict, optional
        :func:`read_small_regions`.
    panel_px : int
        Picture pixels along the largest physical extent of a sample.
    workers, threads : int
        Processes over samples; threads per sample.
    show_progress : bool
        tqdm bar.
    review : QcReview, optional
        Review file whose verdicts the page shows (the page's review controls start from them).
    diff : dict, optional
        A release diff (``utils/diff_datasets.py`` JSON) shown as a section of the page.
    audit : AuditFindings, optional
        Findings of ``utils/audit_dataset.py`` to show (a table, and code flags per sample).
    """
    root_dir, output_dir = Path(root_dir), Path(output_dir)
    job = SampleJob(root_dir, output_dir, profile.group_by, window, label_map, dict(small_regions or {}), panel_px, threads)
    keys = {id(s): sample_key(s, root_dir) for s in samples}
    run = run_per_sample(samples, job, desc="QC report", workers=workers, key=lambda s: keys[id(s)], show_progress=show_progress)
    records: list[SampleRecord] = []
    for sample in samples:
        key = keys[id(sample)]
        if key in run.results:
            records.append(run.results[key])
        else:
            records.append(_error_record(sample, key, run.errors.get(key, "not reported"), profile.group_by))
    ok = [r for r in records if r.error is None]
    with_mask = [r for r in ok if r.has_mask]
    card = DatasetCard(
        title=profile.title,
        dataset=profile.dataset,
        modality=profile.modality,
        window=window.describe(),
        label_map=label_map_source,
        group_by=list(profile.group_by),
        summary=summary_table([[r.group.get(c) for c in profile.group_by] for r in records], profile.group_by),
        resolution=resolution_table([r.shape for r in ok], [r.spacing_mm for r in ok]),
        labels=label_table([r.volumes_mm3 for r in with_mask], label_map),
        n_samples=len(records),
        n_failed=len(records) - len(ok),
        n_with_mask=len(with_mask),
        samples=[r.to_json() for r in records],
    )
    outputs = ReportOutputs(output_dir / INDEX_HTML, output_dir / CARD_MD, output_dir / CARD_JSON, records, run)
    write_card(card, outputs.card_md, outputs.card_json)
    names = {lab.index: lab.short for lab in label_map} if label_map is not None else {}
    diff_html = diff_section(diff) if diff is not None else ""
    if audit is not None:
        audit.match({r.path for r in records})
        audit.check_stale(root_dir)
    page = render_index(card, records, names, digest=report_digest(card_json(card)), review=review, diff_html=diff_html, audit=audit)
    atomic_write_text(outputs.index, page)
    return outputs
