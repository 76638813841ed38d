"""Scan a raw archive: list its NIfTI files, describe each, and pair volumes with masks.

Dataset-specific rules (which folder means which subset, the file-name
grammar) are passed in by the dataset's own module; this one knows only NIfTI.
Files that cannot be used are never dropped silently: they are returned with
the reason, and routine 01 writes them to a second worksheet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from utils.geometry.alignment import qform_sform_mismatch_mm
from utils.run.cli import EXPECTED_ERRORS, run_per_sample
from utils.files.nifti_readers import check_reader_agreement
from utils.files.lazy_import import lazy_import
from utils.files.nifti_io import check_nifti_file, dtype_name, is_nifti_path, require_3d
from utils.geometry.orientation import geometry_record, parse_affine
from utils.files.spreadsheet import is_missing

pd = lazy_import("pandas")

__all__ = [
    "SKIPPED_SHEET", "list_nifti_files", "describe_nifti_file", "add_affine_diff_norm", "scan_archive",
    "pair_volumes_and_masks", "ArchiveScan", "SKIPPED_REASON", "with_skipped_candidates",
    "FILE_CHECK_COLUMNS", "list_unusable_entries", "warn_file_findings", "finish_archive_manifest",
]  # fmt: skip

#: Worksheet of routine 01 listing the files that could not be used, with the reason.
SKIPPED_SHEET = "Skipped"

logger = logging.getLogger(__name__)

#: Column added by :func:`with_skipped_candidates`: why routine 01 could not use the file (empty for usable files).
SKIPPED_REASON = "skipped_reason"

_KIND_WORD = {"v3d": "volume", "m3d": "mask"}

GEOMETRY_FILE_COLUMNS = ["szx", "szy", "szz", "spx", "spy", "spz", "orientation_from", "orientation_to", "dtype", "transform"]

#: Columns routine 01 adds after the tutorial's (and ESO's metadata attributes): whether nibabel and ITK
#: read the same geometry (1/0), and every finding about the file as coded text (empty when none).
FILE_CHECK_COLUMNS = ["readers_agree", "file_warnings"]

#: Names of files that belong to a NIfTI/Analyze pair (header and image in two files).
_PAIR_SUFFIXES = (".hdr", ".img", ".hdr.gz", ".img.gz")


def _visible(path: Path, root_dir: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root_dir).parts)


def list_nifti_files(root_dir: Path) -> list[Path]:
    """Every visible ``.nii``/``.nii.gz`` file below ``root_dir`` (any letter case: ``.NII.GZ`` too), sorted.

    Other files (json, png) are ignored; entries named like a NIfTI file that cannot be one
    (folders, dangling links) and NIfTI/Analyze pairs are listed by :func:`list_unusable_entries`.

    Raises
    ------
    FileNotFoundError
        ``root_dir`` is not a folder.
    """
    root_dir = Path(root_dir)
    if not root_dir.is_dir():
        raise FileNotFoundError(f"archive folder not found: {root_dir}")
    return sorted(p for p in root_dir.rglob("*") if p.is_file() and is_nifti_path(p) and _visible(p, root_dir))


def list_unusable_entries(root_dir: Path) -> list[tuple[Path, str]]:
    """Entries below ``root_dir`` that look like images but cannot be read as one, with the reason.

    - a folder, a dangling symbolic link or another non-file named ``*.nii``/``*.nii.gz``;
    - a NIfTI-1 or Analyze 7.5 pair (``.hdr`` + ``.img``, also gzipped): header and voxels in
      two files, which this toolkit does not read (convert it to ``.nii.gz``).

    Returns
    -------
    entries : list of (Path, str)
        Sorted by path; routine 01 lists them in sheet ``Skipped`` so that nothing vanishes.
    """
    root_dir = Path(root_dir)
    found: list[tuple[Path, str]] = []
    for p in sorted(root_dir.rglob("*")):
        if not _visible(p, root_dir):
            continue
        name = p.name.lower()
        if is_nifti_path(p) and not p.is_file():
            if p.is_symlink() and not p.exists():
                target = _link_target(p)
                found.append((p, f"dangling symbolic link (to {target}); a NIfTI file expected"))
            elif p.is_dir():
                found.append((p, "a folder named like a NIfTI file; a NIfTI file expected"))
            else:
                found.append((p, "not a regular file (device, pipe or socket); a NIfTI file expected"))
        elif name.endswith(_PAIR_SUFFIXES) and (p.is_file() or p.is_symlink()):
            stem = p.name[: -len(next(s for s in _PAIR_SUFFIXES if name.endswith(s)))]
            reason = (
                f"part of a NIfTI/Analyze pair ({stem}.hdr + {stem}.img), which is not read; "
                "convert it to a single .nii.gz file (e.g. nib.save(nib.load('x.hdr'), 'x.nii.gz'))"
            )
            found.append((p, reason))
    return found


def _link_target(path: Path) -> str:
    try:
        return str(path.readlink())
    except OSError:
        return "an unreadable target"


def describe_nifti_file(path: Path) -> dict[str, Any]:
    """Geometry and dtype columns of one archive file, after a full integrity read, and what the readers make of it.

    The whole file is decompressed through a small buffer (gzip CRC and data
    length checked, the data never held in memory) so a truncated download is
    caught here, at the start of the pipeline. Its header is read by the models
    of nibabel and ITK (:func:`utils.files.nifti_readers.check_reader_agreement`).

    Returns
    -------
    record : dict
        ``szx szy szz spx spy spz orientation_from orientation_to dtype transform``
        (nibabel's reading; ``dtype`` without byte order: ``int16`` for ``>i2`` too),
        ``readers_agree`` (1 when nibabel and ITK place every voxel within 0.001 mm, else 0),
        ``file_warnings`` (``'; '``-joined coded findings: reader disagreement and its causes,
        nibabel's own header messages, complex data accepted, integers float32 cannot hold; empty
        when none) and ``qform_sform_mm`` (largest qform-vs-sform voxel displacement, None when
        either is unset).

    Raises
    ------
    NiftiError
        Unreadable, empty, truncated, not 3D, a header that cannot be real, float voxels that are
        NaN/Inf or complex voxels with an imaginary part (message names the file and the value found).
    """
    img = check_nifti_file(path)  # also refuses NaN/Inf float voxels and headers that cannot be real
    require_3d(img, path)
    record = geometry_record(img.shape, img.affine)
    record["dtype"] = dtype_name(img.get_data_dtype())
    agreement = check_reader_agreement(img)
    findings = [] if agreement.consistent else [agreement.summary()]
    findings += [*img.extra.get("nibabel_messages", []), *img.extra.get("data_notes", [])]
    return {
        **{k: record[k] for k in GEOMETRY_FILE_COLUMNS},
        "qform_sform_mm": qform_sform_mismatch_mm(img),
        "readers_agree": int(agreement.agree),
        "file_warnings": "; ".join(findings),
    }


def _describe_or_reason(path: Path) -> dict[str, Any] | str:
    """:func:`describe_nifti_file`, or the one-line reason the file cannot be used (a skipped file is not a failure)."""
    try:
        return describe_nifti_file(path)
    except EXPECTED_ERRORS as exc:
        return str(exc)


def add_affine_diff_norm(frame: pd.DataFrame, key_columns: Sequence[str], type_column: str = "type") -> pd.Series:
    """``diff_trans_f_norm`` for each mask row: Frobenius norm of ``mask affine - volume affine``.

    Parameters
    ----------
    frame : DataFrame
        Archive rows with ``transform`` (JSON 4x4) and ``type`` (``v3d``/``m3d``).
    key_columns : sequence of str
        Columns identifying a volume-mask pair (VerSe: archive, subject, split).

    Returns
    -------
    norms : Series of float
        Value on ``m3d`` rows that have exactly one ``v3d`` partner; None elsewhere.
    """
    norms = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    keys = pd.Series(
        ["|".join("" if is_missing(v) else str(v) for v in row) for row in frame[list(key_columns)].itertuples(index=False)],
        index=frame.index,
    )
    for _key, rows in frame.groupby(keys, sort=False):
        volumes = rows[rows[type_column] == "v3d"]
        if len(volumes) != 1:
            continue
        vol_affine = parse_affine(volumes.iloc[0]["transform"])
        for idx, row in rows[rows[type_column] == "m3d"].iterrows():
            norms[idx] = float(np.linalg.norm(parse_affine(row["transform"]) - vol_affine))
    return norms


def scan_archive(
    root_dir: Path,
    parse: Callable[[Path], tuple[dict[str, Any] | None, str | None]],
    *,
    workers: int = 1,
    dask_scheduler: str | None = None,
    show_progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """List, parse and describe every NIfTI file of an archive.

    Parameters
    ----------
    root_dir : Path
        Archive root; ``file_path`` is relative to it (POSIX separators).
    parse : callable
        Dataset rule: relative path -> (fields, None) or (None, reason).
    workers : int
        Processes for the integrity read of each file.
    dask_scheduler : str, optional
        Dask cluster for the integrity reads instead (``--dask_scheduler``).
    show_progress : bool

    Returns
    -------
    records : DataFrame
        ``file_path``, the parsed fields, geometry columns, :data:`FILE_CHECK_COLUMNS` and ``qform_sform_mm``.
    skipped : DataFrame
        ``file_path``, ``reason`` for every NIfTI file that cannot be used
        (outside the rules, unreadable, truncated, not 3D, cannot be real) and every
        entry of :func:`list_unusable_entries`.
    """
    root_dir = Path(root_dir)
    parsed: list[tuple[Path, dict[str, Any]]] = []
    skipped: list[dict[str, str]] = [
        {"file_path": p.relative_to(root_dir).as_posix(), "reason": reason} for p, reason in list_unusable_entries(root_dir)
    ]
    for path in list_nifti_files(root_dir):
        rel = path.relative_to(root_dir)
        fields, reason = parse(rel)
        if fields is None:
            skipped.append({"file_path": rel.as_posix(), "reason": reason or "not recognised"})
        else:
            parsed.append((path, fields))
    report = run_per_sample(
        [p for p, _ in parsed], _describe_or_reason, desc="scan archive", workers=workers,
        key=lambda p: p.relative_to(root_dir).as_posix(), show_progress=show_progress,
        dask_scheduler=dask_scheduler, input_dirs=[root_dir],
    )
    rows = []
    for path, fields in parsed:
        rel = path.relative_to(root_dir).as_posix()
        outcome = report.results.get(rel, report.errors.get(rel))
        if isinstance(outcome, dict):
            rows.append({"file_path": rel, **fields, **outcome})
        else:
            skipped.append({"file_path": rel, "reason": str(outcome)})
    skipped.sort(key=lambda r: r["file_path"])
    return pd.DataFrame(rows), pd.DataFrame(skipped, columns=["file_path", "reason"])


def warn_file_findings(records: pd.DataFrame) -> list[str]:
    """Log one warning per archive file with findings (``file_warnings`` of :func:`describe_nifti_file`).

    This covers qform/sform disagreements (``QFORM_SFORM_MISMATCH``) and every other reader finding.

    Returns
    -------
    files : list of str
        ``file_path`` of every file warned about.
    """
    if records.empty or "file_warnings" not in records.columns:
        return []
    bad = records[records["file_warnings"].map(lambda v: not is_missing(v) and bool(str(v)))]
    for _, row in bad.iterrows():
        logger.warning("%s: %s", row["file_path"], row["file_warnings"])
    return [str(p) for p in bad["file_path"]]


def finish_archive_manifest(records: pd.DataFrame, columns: Sequence[str], pair_key: Sequence[str]) -> pd.DataFrame:
    """The last steps of every routine 01: ``diff_trans_f_norm``, the file findings logged, the columns in order.

    Parameters
    ----------
    records : DataFrame
        :func:`scan_archive`'s records with the dataset's own columns added; gets
        ``diff_trans_f_norm`` (:func:`add_affine_diff_norm`) when it has rows.
    columns : sequence of str
        The dataset's manifest columns (``diff_trans_f_norm`` among them);
        :data:`FILE_CHECK_COLUMNS` follow.
    pair_key : sequence of str
        Columns identifying a volume-mask pair (VerSe: archive, subject, split).

    Returns
    -------
    manifest : DataFrame
        Exactly ``columns`` then :data:`FILE_CHECK_COLUMNS`, index 0..n-1; empty
        (with these columns) when ``records`` has no row.
    """
    columns = [*columns, *FILE_CHECK_COLUMNS]
    if records.empty:
        return pd.DataFrame(columns=columns)
    records["diff_trans_f_norm"] = add_affine_diff_norm(records, pair_key)
    warn_file_findings(records)
    return records[columns].reset_index(drop=True)


def pair_volumes_and_masks(
    frame: pd.DataFrame, key_columns: Sequence[str], *, mask_required: bool = True, type_column: str = "type"
) -> tuple[dict[tuple, tuple[pd.Series, pd.Series | None]], dict[tuple, str]]:
    """Group archive rows into (volume, mask) pairs by a sample key; report what cannot be paired.

    Parameters
    ----------
    frame : DataFrame
        Archive rows with ``file_path``, ``type`` (``v3d``/``m3d``) and ``key_columns``.
    key_columns : sequence of str
        Columns identifying one sample (NME: collection, subset, ID).
    mask_required : bool
        When False, a volume without a mask is a valid pair ``(volume, None)``.
    type_column : str

    Returns
    -------
    pairs : dict
        Key tuple -> ``(volume row, mask row or None)``, sorted by key.
    problems : dict
        Key tuple -> one-line reason naming the files: several candidates,
        a mask without volume, a volume without mask (when required).
    """
    pairs: dict[tuple, tuple[pd.Series, pd.Series | None]] = {}
    problems: dict[tuple, str] = {}
    if frame.empty:
        return pairs, problems
    keys = frame[list(key_columns)].astype(object).where(frame[list(key_columns)].notna(), "")
    for key, rows in frame.groupby([keys[c] for c in key_columns], sort=True):
        key = key if isinstance(key, tuple) else (key,)
        if SKIPPED_REASON in rows.columns:
            unusable = [(t, p, r) for t, p, r in zip(rows[type_column], rows["file_path"], rows[SKIPPED_REASON]) if not is_missing(r)]
            if unusable:
                problems[key] = "; ".join(
                    f"{_KIND_WORD.get(t, t)} {p} was skipped by routine 01 ({_without_path(r, p)})" for t, p, r in unusable
                ) + "; fix or remove the file and re-run routine 01"
                continue
            rows = rows.drop(columns=[SKIPPED_REASON])
        vols = rows[rows[type_column] == "v3d"]
        masks = rows[rows[type_column] == "m3d"]
        if len(vols) > 1 or len(masks) > 1:
            problems[key] = f"several candidate files for one sample: {sorted(rows['file_path'])}"
        elif vols.empty:
            problems[key] = f"mask {masks.iloc[0]['file_path']} has no volume"
        elif masks.empty and mask_required:
            problems[key] = f"volume {vols.iloc[0]['file_path']} has no mask"
        else:
            pairs[key] = (vols.iloc[0], None if masks.empty else masks.iloc[0])
    return pairs, problems


def _without_path(reason: str, file_path: str) -> str:
    """Routine 01's reason without its leading ``/full/path/name.nii.gz: `` (the message names the file already)."""
    head, sep, tail = str(reason).partition(": ")
    return tail if sep and head.endswith(Path(file_path).name) else str(reason)


def with_skipped_candidates(
    manifest: pd.DataFrame, skipped: pd.DataFrame | None, parse: Callable[[Path], tuple[dict[str, Any] | None, str | None]]
) -> pd.DataFrame:
    """The archive manifest plus the files routine 01 skipped although they fit the archive's rules.

    Such a file (truncated, empty, not 3D, NaN voxels …) still names a sample:
    routine 02 must say that this sample lost its volume or mask and why,
    instead of "mask without volume" or, where a volume may come alone (ESO),
    silently writing the volume without its mask.

    Parameters
    ----------
    manifest : DataFrame
        ``Manifest`` sheet of routine 01.
    skipped : DataFrame or None
        ``Skipped`` sheet (``file_path``, ``reason``).
    parse : callable
        The dataset's rule: path relative to the archive root -> (fields, None) or (None, reason).

    Returns
    -------
    frame : DataFrame
        ``manifest`` rows (``skipped_reason`` empty) followed by one row per
        skipped file that parses (its fields, ``file_path`` and ``skipped_reason``).
    """
    extra = []
    if skipped is not None and not skipped.empty and {"file_path", "reason"} <= set(skipped.columns):
        for file_path, reason in zip(skipped["file_path"], skipped["reason"]):
            fields, _why = parse(Path(str(file_path)))
            if fields is not None:
                extra.append({"file_path": str(file_path), **fields, SKIPPED_REASON: str(reason)})
    frame = manifest.copy()
    frame[SKIPPED_REASON] = None
    if extra:
        attrs = dict(frame.attrs)
        frame = pd.concat([frame, pd.DataFrame(extra).reindex(columns=[*frame.columns, *(c for c in extra[0] if c not in frame.columns)])], ignore_index=True)
        frame.attrs = attrs
    return frame


@dataclass
class ArchiveScan:
    """What a dataset's routine 01 found in its archive.

    Attributes
    ----------
    manifest : DataFrame
        Sheet ``Manifest``: one row per usable file, the tutorial's columns.
    skipped : DataFrame
        Sheet ``Skipped``: ``file_path``, ``reason``.
    extra_sheets : dict of str to DataFrame
        Further sheets of the workbook (ESO: ``MetadataIssues``).
    errors : list of str
        Problems that make the routine exit 1 although the manifest is written.
    """

    manifest: pd.DataFrame
    skipped: pd.DataFrame
    extra_sheets: dict[str, pd.DataFrame] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
