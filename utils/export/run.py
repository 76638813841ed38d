"""Export one split of a grouped dataset to nnU-Net v2, MONAI and/or SAT-DS (``utils/export_dataset.py``).

Order of work, so that a problem stops the export before anything is written:

1. read the split worksheet, find the dataset descriptor and the label map
   (it must match the manifest's binary-mask columns), build the cases;
2. refuse a split where a patient has scans in two of train/val/test (unless
   ``allow_patient_overlap``), a format that would get no usable case, or an
   nnU-Net dataset id already used by another folder;
3. per case, in ``workers`` processes (or on a Dask cluster): check the source
   files (:func:`utils.export.verify.read_checked_case`), take the case's part
   of nnU-Net's fingerprint and MONAI's data statistics from the arrays just
   read (:mod:`utils.export.framework_stats`), and place the files of the
   formats' staging folders (hard link / symlink / copy; renumbered masks when
   the label map has gaps);
4. write the JSON files and MONAI's ``data_stats.yaml``, then commit every
   format folder at once (:func:`utils.export.files.commit_folders`): identical
   existing exports are kept, differing ones refused unless ``overwrite``;
5. write nnU-Net's ``dataset_fingerprint.json`` into ``nnUNet_preprocessed``.

A failing case leaves every existing export as it was and writes nothing.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utils.files.atomic import atomic_write_text
from utils.run.cli import RunReport, run_per_sample
from utils.export import FORMATS, monai_datalist, nnunet, satds
from utils.export.cases import (
    CASE_ID_RE,
    ExportCase,
    LabelPlan,
    check_label_map_matches_manifest,
    format_overlaps,
    patient_overlaps,
    read_split_cases,
)
from utils.export.descriptor import DESCRIPTORS_DIR, DatasetDescriptor, detect_dataset
from utils.export.files import StagedFolder, commit_folders, place_file, write_json
from utils.export.framework_stats import StatsPlan, StatsRequest, case_statistics
from utils.export.verify import read_checked_case
from utils.labels.label_maps import LabelMap, remap_labels
from utils.files.nifti_io import load_nifti, read_mask, save_nifti
from utils.files.output_paths import archive_of_dataset, check_not_inside, portable_path
from utils.review.exclusion import EXPORT_RECORD, Exclusion, export_record, select_reviewed
from utils.review.review_file import QcReview
from utils.dataset.splits import SUBSETS
from utils.files.spreadsheet import read_sheet

__all__ = ["FORMATS", "FileJob", "CaseJob", "ExportResult", "default_label_map", "export_split"]

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class FileJob:
    """One file to place: ``src`` linked/copied to ``dst``, or its labels renumbered by ``remap``."""

    src: Path
    dst: Path
    remap: tuple[tuple[int, int], ...] | None = None


@dataclass(frozen=True)
class CaseJob:
    """A case and the files it contributes to the staging folders."""

    case: ExportCase
    files: tuple[FileJob, ...]
    stats: StatsRequest | None = None


@dataclass
class ExportResult:
    """What an export did.

    Attributes
    ----------
    report : RunReport
        Per-case outcome (errors mean nothing was written).
    folders : dict of str to Path
        Format -> final folder.
    status : dict of str to str
        Format -> ``written`` / ``unchanged`` / ``replaced`` (empty when nothing was committed).
    statistics : dict of str to str
        ``nnU-Net fingerprint`` / ``monai data stats`` -> what became of them (written, reused, …).
    """

    report: RunReport
    folders: dict[str, Path] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    statistics: dict[str, str] = field(default_factory=dict)

    def exit_code(self) -> int:
        return self.report.exit_code()


def write_remapped_mask(src: Path, dst: Path, remap: tuple[tuple[int, int], ...]) -> None:
    """Write ``src``'s mask with its labels renumbered (uint8, same grid and header codes)."""
    img = load_nifti(src)
    data = remap_labels(read_mask(img, src), dict(remap))
    save_nifti(dst, data, img.affine, dtype=np.uint8, template=img)


def _run_case(job: CaseJob, *, label_indices: tuple[int, ...], headers_only: bool, link: str) -> dict[str, object]:
    """Check one case, take its part of the frameworks' statistics, place its files (runs in worker processes)."""
    checked = read_checked_case(job.case, label_indices, headers_only=headers_only)
    labels = checked.labels
    stats = case_statistics(job.case, checked, job.stats) if job.stats is not None else None
    del checked  # the arrays are not needed to place the files
    modes = set()
    for f in job.files:
        if f.remap:
            write_remapped_mask(f.src, f.dst, f.remap)
            modes.add("renumbered")
        else:
            modes.add(place_file(f.src, f.dst, link))
    return {"labels": labels, "modes": sorted(modes), "stats": stats}


def default_label_map(root_dir: Path, descriptor: DatasetDescriptor) -> Path:
    """``root_dir/../descriptor/label_map.yaml`` (the copy the routines used) when present, else the descriptor's."""
    installed = Path(root_dir).resolve().parent / "descriptor" / "label_map.yaml"
    return installed if installed.is_file() else DESCRIPTORS_DIR / descriptor.key / "label_map.yaml"


def _check_formats(formats: list[str], cases: list[ExportCase], split_name: str) -> None:
    if "nnunetv2" in formats and not any(c.trainable for c in cases):
        raise ValueError(
            f"split {split_name!r} has no train or val sample with a mask: an nnU-Net dataset needs training cases "
            f"(export a test-only split as monai/satds)"
        )
    if "satds" in formats and not any(c.mask is not None for c in cases):
        raise ValueError(f"split {split_name!r} has no sample with a mask: SAT-DS lists image-mask pairs only")


def _plan_jobs(cases: list[ExportCase], folders: dict[str, StagedFolder], plan: LabelPlan, stats: StatsPlan) -> list[CaseJob]:
    jobs = []
    for case in cases:
        files: list[FileJob] = []
        if "nnunetv2" in folders:
            for src, rel, is_label in nnunet.case_files(case):
                files.append(FileJob(src, folders["nnunetv2"].staging / rel, plan.remap if is_label else None))
        if "satds" in folders and plan.remap and case.mask is not None:
            files.append(FileJob(case.mask, folders["satds"].staging / satds.remapped_mask(case), plan.remap))
        jobs.append(CaseJob(case, tuple(files), stats.request(case)))
    return jobs


def _warn_about(cases: list[ExportCase], plan: LabelPlan, report: RunReport, link: str, formats: list[str]) -> None:
    left_out = [c.case_id for c in cases if c.subset != "test" and c.mask is None]
    if left_out:
        logger.warning("%d train/val sample(s) without a mask cannot be training cases and are left out of every export: %s", len(left_out), ", ".join(left_out))
    no_mask_test = [c.case_id for c in cases if c.subset == "test" and c.mask is None]
    if no_mask_test:
        logger.info("%d test sample(s) without a mask: image only (nnU-Net imagesTs, MONAI test), not in SAT-DS: %s", len(no_mask_test), ", ".join(no_mask_test))
    seen: set[int] = set()
    for case in cases:
        result = report.results.get(case.case_id) or {}
        if case.trainable and result.get("labels"):
            seen.update(result["labels"])
    absent = [f"{lab.index} {lab.short}" for lab in plan.labels if lab.index not in seen]
    if absent:
        logger.warning("label(s) of the label map present in no training case (still declared in every export, never dropped): %s", ", ".join(absent))
    modes = {m for r in report.results.values() for m in r["modes"]}
    if link == "hard" and "copy" in modes:
        logger.warning("hard links are not possible between the dataset and the output folder here: files were copied")
    if plan.remap:
        logger.warning("label map indices are not consecutive; nnU-Net and SAT-DS masks are renumbered %s (recorded in dataset.json / the jsonl labels); MONAI keeps the original values", plan.remap_record())
    logger.debug("formats %s, link modes used %s", formats, sorted(modes))


def _follow_moved_dataset(folder: StagedFolder, jsonl: str) -> None:
    """Rewrite an existing SAT-DS jsonl in place when the only change is where the dataset now lies (moved or copied)."""
    if not (folder.final / jsonl).is_file() or folder.differences() != [f"{jsonl} differs"]:
        return
    new_text = (folder.staging / jsonl).read_text(encoding="utf-8")
    if satds.moved_records((folder.final / jsonl).read_text(encoding="utf-8"), new_text):
        atomic_write_text(folder.final / jsonl, new_text)
        logger.info("%s: image and mask paths updated to the dataset's new location (SAT-DS needs absolute paths)", folder.final / jsonl)


def export_split(
    manifest_file: Path,
    split_name: str,
    formats: list[str],
    output_dir: Path,
    *,
    root_dir: Path | None = None,
    dataset: str | None = None,
    label_map_file: Path | None = None,
    dataset_id: int | None = None,
    link: str = "hard",
    overwrite: bool = False,
    headers_only: bool = False,
    allow_patient_overlap: bool = False,
    workers: int = 1,
    show_progress: bool = True,
    dask_scheduler: str | None = None,
    review: QcReview | None = None,
) -> ExportResult:
    """Export the samples of one split worksheet.

    Parameters
    ----------
    manifest_file : Path
        ``dataset_manifest.xlsx`` holding the split sheet.
    split_name : str
        Split sheet, e.g. ``split01_standard``.
    formats : list of str
        Any of ``nnunetv2``, ``monai``, ``satds``.
    output_dir : Path
        Receives ``nnUNet_raw/Dataset…/``, ``monai/{name}_{split}/``, ``satds/{name}_{split}/``.
    root_dir : Path, optional
        Folder the manifest's paths are relative to (default: the manifest's folder).
    dataset : str, optional
        ``descriptors/<dataset>`` (default: detected from the manifest columns).
    label_map_file : Path, optional
        Default: :func:`default_label_map`.
    dataset_id : int, optional
        nnU-Net dataset id (default: the descriptor's).
    link : {'hard', 'symlink', 'copy'}
    overwrite : bool
        Replace existing exports that differ.
    headers_only : bool
        Check headers only (see :mod:`utils.export.verify`).
    allow_patient_overlap : bool
        Export a split where a patient has scans in several subsets (warned about).
    workers : int
    show_progress : bool
    dask_scheduler : str, optional
        Run the cases on this Dask cluster instead of ``workers`` processes.
    review : QcReview, optional
        Samples of the split it marks ``fail`` are left out, logged and listed in
        ``qc_review_excluded.json`` of every format folder (:mod:`utils.review.exclusion`).

    Returns
    -------
    ExportResult

    Raises
    ------
    ValueError, OSError
        A problem with the inputs as a whole (one line; nothing was written).
    ExportConflict
        An existing export differs and ``overwrite`` is False (nothing was written).
    """
    manifest_file, output_dir = Path(manifest_file), Path(output_dir)
    root_dir = Path(root_dir) if root_dir is not None else manifest_file.parent
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise ValueError(f"formats {unknown or formats} unknown; choose from {list(FORMATS)}")
    if not CASE_ID_RE.match(split_name):
        raise ValueError(f"split name {split_name!r} becomes part of folder names: use letters, digits, '.', '_', '-'")
    frame = read_sheet(manifest_file, split_name)
    descriptor = DatasetDescriptor.load(DESCRIPTORS_DIR / dataset / "dataset.yaml", dataset) if dataset else detect_dataset(frame.columns)
    label_map_file = Path(label_map_file) if label_map_file is not None else default_label_map(root_dir, descriptor)
    label_map = LabelMap.load(label_map_file)
    check_label_map_matches_manifest(label_map, list(frame.columns), str(manifest_file))
    plan = LabelPlan.from_label_map(label_map)
    cases = read_split_cases(frame, manifest_file, split_name, descriptor, root_dir, label_map)
    excluded: list[Exclusion] = []
    if review is not None:
        review.check_dataset(descriptor.key)
        kept, excluded = select_reviewed(cases, review, sample_id=lambda c: c.case_id, subset=lambda c: c.subset, context=f"the export of split {split_name}")
        cases = [cases[i] for i in kept]
    overlaps = patient_overlaps(cases)
    if overlaps:
        message = f"split {split_name!r}: {len(overlaps)} patient(s) have scans in more than one subset: {format_overlaps(overlaps)}"
        if not allow_patient_overlap:
            raise ValueError(f"{message}; a patient's scans must share a subset (--allow_patient_overlap exports anyway)")
        logger.warning("%s (exported anyway: --allow_patient_overlap)", message)
    cases.sort(key=lambda c: (SUBSETS.index(c.subset), c.case_id))
    check_not_inside(output_dir, archive_of_dataset([c.volume.parent for c in cases]), "--output_dir")
    _check_formats(formats, cases, split_name)
    logger.info(
        "dataset %s, split %s: %s; label map %s", descriptor.name, split_name,
        ", ".join(f"{s} {sum(c.subset == s for c in cases)}" for s in SUBSETS), label_map_file,
    )  # fmt: skip

    name = f"{descriptor.name}_{split_name}"
    folders: dict[str, StagedFolder] = {}
    if "nnunetv2" in formats:
        dataset_id = descriptor.nnunet_dataset_id if dataset_id is None else int(dataset_id)
        folder_name = nnunet.dataset_folder_name(dataset_id, descriptor.name, split_name)
        nnunet.check_dataset_id_free(output_dir / "nnUNet_raw", dataset_id, folder_name)
        folders["nnunetv2"] = StagedFolder(output_dir / "nnUNet_raw" / folder_name)
    if "monai" in formats:
        folders["monai"] = StagedFolder(output_dir / "monai" / name)
    if "satds" in formats:
        folders["satds"] = StagedFolder(output_dir / "satds" / name)
    stats = StatsPlan.make(
        cases, nnunet_folder=folders["nnunetv2"].final if "nnunetv2" in folders else None, output_dir=output_dir,
        monai_final=folders["monai"].final if "monai" in folders else None, headers_only=headers_only,
    )  # fmt: skip
    result = ExportResult(RunReport("export"), {f: s.final for f, s in folders.items()})
    try:
        for folder in folders.values():
            folder.start()
        work = functools.partial(_run_case, label_indices=label_map.indices, headers_only=headers_only, link=link)
        jobs = _plan_jobs(cases, folders, plan, stats)
        result.report = run_per_sample(
            jobs, work, desc="export", workers=workers, key=lambda j: j.case.case_id, show_progress=show_progress,
            dask_scheduler=dask_scheduler, input_dirs=[root_dir], output_dirs=[output_dir],
        )  # fmt: skip
        if result.report.errors:
            logger.error("nothing was exported: %d sample(s) failed the checks", len(result.report.errors))
            return result
        _warn_about(cases, plan, result.report, link, formats)
        base = folders["nnunetv2"].final if "nnunetv2" in folders else output_dir
        source = {"manifest": portable_path(manifest_file, base), "label_map": portable_path(label_map_file, base)}
        if "nnunetv2" in folders:
            staging = folders["nnunetv2"].staging
            write_json(staging / "dataset.json", nnunet.dataset_json(descriptor, plan, cases, split_name, source))
            folds = nnunet.splits_final(cases)
            if folds:
                write_json(staging / "splits_final.json", folds)
            else:
                logger.warning("split %s has no val (or no train) case with a mask: no splits_final.json, nnU-Net will make its own 5 folds", split_name)
        if "monai" in folders:
            monai = monai_datalist.datalist(descriptor, plan, cases, folders["monai"].final)
            write_json(folders["monai"].staging / monai_datalist.DATALIST_NAME, monai)
            stats.stage_data_stats(folders["monai"].staging, monai, result.report.results)
        if "satds" in folders:
            lines = satds.records(descriptor, plan, cases, folders["satds"].final)
            atomic_write_text(folders["satds"].staging / satds.jsonl_name(descriptor), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines))
            write_json(folders["satds"].staging / "split.json", satds.split_json(cases))
        if excluded:
            for folder in folders.values():
                write_json(folder.staging / EXPORT_RECORD, export_record(excluded, review, split_name, folder.final))  # type: ignore[arg-type]
        if "satds" in folders:
            _follow_moved_dataset(folders["satds"], satds.jsonl_name(descriptor))
        status = commit_folders(list(folders.values()), overwrite)
        result.status = {fmt: status[folder.final] for fmt, folder in folders.items()}
        if "nnunetv2" in folders:
            stats.write_fingerprint(result.report.results, result.status["nnunetv2"])
        result.statistics = dict(stats.status)
    finally:
        for folder in folders.values():
            folder.discard()
    for fmt, folder in folders.items():
        logger.info("%s export %s: %s", fmt, result.status[fmt], folder.final)
    for what, state in result.statistics.items():
        logger.info("%s %s", what, state)
    return result
