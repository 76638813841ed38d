"""The dataset manifest: one row per sample folder of a grouped dataset, indexing every file.

Columns, in order (tutorials, routine 05/04):
``ID``, the dataset's info attributes, ``valid_labels``, ``info``, ``volume``,
``mask``, ``mask_{index:02d}_{short}`` for every binary mask,
``mask_{index:02d}_{short}_existence`` for every binary mask, ``szx szy szz
spx spy spz orientation_from orientation_to``, ``vol_dtype``, ``mask_dtype``,
``transform``, then any extra attributes. Paths are relative to ``root_dir``.

A sample whose files disagree in shape, affine (hence spacing and origin) or
whose masks differ in dtype is an error naming the files; so is a sample that
lacks a binary mask its info yaml says was written, or that other samples with
a mask have (a deleted file would otherwise leave an empty cell).
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from utils.geometry.alignment import grid_displacement_mm
from utils.run.cli import RunReport, run_per_sample
from utils.labels.label_stats import label_stats
from utils.files.lazy_import import lazy_import
from utils.files.nifti_io import dtype_name, load_header, load_nifti, read_mask
from utils.geometry.orientation import geometry_record, spacing
from utils.files.sample_info import BINARY_MASKS_STEP, SampleDir, binary_masks_source, file_stamp, find_samples, read_info, recorded_mask_labels
from utils.files.spreadsheet import MAIN_SHEET, format_list, write_sheets

pd = lazy_import("pandas")

__all__ = ["GEOMETRY_COLUMNS", "SAME_GRID_TOL_MM", "describe_sample", "order_columns", "build_dataset_manifest"]

logger = logging.getLogger(__name__)

GEOMETRY_COLUMNS = ["szx", "szy", "szz", "spx", "spy", "spz", "orientation_from", "orientation_to"]

#: Files of one sample must share their grid to this precision (they are written from one affine).
SAME_GRID_TOL_MM = 1e-4


def _mm(values: Sequence[float]) -> str:
    """``(0.8, 1.717, 2.6)``: lengths in mm to 6 significant digits (the float32 header holds about 7)."""
    return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def describe_sample(sample: SampleDir, root_dir: Path, info_columns: Sequence[str]) -> dict[str, Any]:
    """One manifest row for a sample folder.

    Parameters
    ----------
    sample : SampleDir
    root_dir : Path
        Paths in the row are relative to it.
    info_columns : sequence of str
        Info-yaml keys copied into the row (missing keys give empty cells).

    Returns
    -------
    row : dict
        Column -> value; binary-mask columns are keyed ``mask_XX_short`` and
        ``mask_XX_short_existence``. Keys of the info yaml's ``attributes``
        mapping (extra metadata) are added after the standard columns.

    Raises
    ------
    ValueError
        Missing volume, inconsistent grids or mask dtypes (names the files).
    """
    info = read_info(sample.info)
    row: dict[str, Any] = {"ID": sample.id}
    for col in info_columns:
        row[col] = info.get(col)
    if not sample.volume.is_file():
        raise FileNotFoundError(f"{sample.volume}: volume file missing")
    vol = load_header(sample.volume)
    files = {sample.volume: vol}
    has_mask = sample.mask.is_file()
    binaries = sample.binary_masks()
    recorded = _recorded_binary_keys(info)
    gone = [key for key in recorded if not sample.binary_mask(key).is_file()]
    if gone:
        raise FileNotFoundError(
            f"{sample.binary_mask(gone[0])}: binary mask missing ({len(gone)} of the {len(recorded)} written by the "
            f"binary-mask routine are gone: {gone}); run that routine again"
        )
    if has_mask:
        files[sample.mask] = load_header(sample.mask)
    for _short, path in binaries.values():
        files[path] = load_header(path)
    for path, img in files.items():
        if tuple(img.shape) != tuple(vol.shape):
            raise ValueError(f"{path}: shape {tuple(img.shape)} differs from the volume's {tuple(vol.shape)} ({sample.volume.name})")
        disp = grid_displacement_mm(vol.shape, img.affine, vol.affine)
        if disp > SAME_GRID_TOL_MM:
            raise ValueError(
                f"{path}: affine differs from the volume's ({sample.volume.name}) by up to {disp:.3g} mm "
                f"(spacing {_mm(spacing(img.affine))} vs {_mm(spacing(vol.affine))})"
            )
    mask_dtypes = {p: dtype_name(img.get_data_dtype()) for p, img in files.items() if p != sample.volume}
    _check_mask_dtypes(sample, mask_dtypes)

    present: list[int] = []
    if has_mask:
        stamp = file_stamp(sample.mask)
        source = binary_masks_source(info)
        if binaries and source is not None and source != stamp:
            raise ValueError(
                f"{sample.mask}: changed after the binary masks were written from it (size/CRC-32 {stamp} now, "
                f"{source} then); run the binary-mask routine again"
            )
        recorded = recorded_mask_labels(info, sample.mask, stamp)
        present = recorded if recorded is not None else label_stats(read_mask(load_nifti(sample.mask), sample.mask)).present
    row["valid_labels"] = format_list(present) if has_mask else None
    row["info"] = _rel(sample.info, root_dir)
    row["volume"] = _rel(sample.volume, root_dir)
    row["mask"] = _rel(sample.mask, root_dir) if has_mask else None
    for index, (short, path) in binaries.items():
        row[f"mask_{index:02d}_{short}"] = _rel(path, root_dir)
    for index, (short, _path) in binaries.items():
        row[f"mask_{index:02d}_{short}_existence"] = int(index in present) if has_mask else None
    geometry = geometry_record(vol.shape, vol.affine)
    for col in GEOMETRY_COLUMNS:
        row[col] = geometry[col]
    row["vol_dtype"] = dtype_name(vol.get_data_dtype())
    row["mask_dtype"] = next(iter(mask_dtypes.values())) if mask_dtypes else None
    row["transform"] = geometry["transform"]
    for key, value in (info.get("attributes") or {}).items():
        row.setdefault(str(key), value)
    return row


def _check_mask_dtypes(sample: SampleDir, dtypes: dict[Path, str]) -> None:
    """Refuse mask files of one sample stored with different data types, naming the odd file.

    The odd file is the first whose type differs from the type most of the sample's masks have (the
    multi-label mask's on a tie).

    Raises
    ------
    ValueError
        ``{file}: data type int16 differs from uint8 of the sample's other mask files (…)``.
    """
    if len(set(dtypes.values())) <= 1:
        return
    counts = Counter(dtypes.values())
    usual = max(counts, key=lambda d: (counts[d], d == dtypes.get(sample.mask)))
    path, found = next((p, d) for p, d in dtypes.items() if d != usual)
    raise ValueError(
        f"{path}: data type {found} differs from {usual} of the sample's other mask files "
        f"(mask files have different data types {sorted(counts)})"
    )


def _recorded_binary_keys(info: dict[str, Any]) -> list[str]:
    """``{index:02d}_{short}`` keys the latest binary-mask extraction recorded in the history wrote."""
    for entry in reversed(info.get("history") or []):
        if isinstance(entry, dict) and entry.get("step") == BINARY_MASKS_STEP:
            return [str(k) for k in (entry.get("params") or {}).get("labels") or []]
    return []


def _missing_binary_columns(report: RunReport) -> None:
    """Move to ``report.errors`` every sample with a mask that lacks a binary mask other samples with a mask have."""
    with_mask = {key: row for key, row in report.results.items() if row.get("mask") is not None}
    columns = {c for row in with_mask.values() for c in row if c.startswith("mask_") and c[5:7].isdigit() and not c.endswith("_existence")}
    for key, row in with_mask.items():
        absent = sorted(c for c in columns if c not in row)
        if absent:
            names = [f"{row['ID']}_{c}.nii.gz" for c in absent]
            report.errors[key] = (
                f"{Path(key) / names[0]}: binary mask missing ({len(absent)} that other samples have: {names[:5]}"
                f"{' …' if len(names) > 5 else ''}); run the binary-mask routine again"
            )
            del report.results[key]
            logger.error("%s: %s", key, report.errors[key])


def order_columns(rows: list[dict[str, Any]], info_columns: Sequence[str]) -> list[str]:
    """Column order of the manifest for these rows (binary-mask columns from the union of all samples)."""
    binary_keys: dict[str, int] = {}
    extras: list[str] = []
    fixed = {"ID", *info_columns, "valid_labels", "info", "volume", "mask", *GEOMETRY_COLUMNS, "vol_dtype", "mask_dtype", "transform"}
    for row in rows:
        for col in row:
            if col in fixed:
                continue
            if col.startswith("mask_") and col[5:7].isdigit():
                if not col.endswith("_existence"):
                    binary_keys.setdefault(col, int(col[5:8].rstrip("_")))
            elif col not in extras:
                extras.append(col)
    binary_cols = sorted(binary_keys, key=lambda c: (binary_keys[c], c))
    return [
        "ID",
        *info_columns,
        "valid_labels",
        "info",
        "volume",
        "mask",
        *binary_cols,
        *(f"{c}_existence" for c in binary_cols),
        *GEOMETRY_COLUMNS,
        "vol_dtype",
        "mask_dtype",
        "transform",
        *extras,
    ]


def build_dataset_manifest(
    root_dir: Path,
    output_file: Path,
    info_columns: Sequence[str],
    *,
    workers: int = 1,
    dask_scheduler: str | None = None,
    skip_invalid: bool = False,
    show_progress: bool = True,
) -> RunReport:
    """Describe every sample folder below ``root_dir`` and write the ``Manifest`` sheet of ``output_file``.

    Parameters
    ----------
    root_dir : Path
        Grouped dataset folder.
    output_file : Path
        ``dataset_manifest.xlsx`` (replaced atomically; any split sheets of a
        previous version are dropped because they may no longer match).
    info_columns : sequence of str
        Dataset attributes copied from each info yaml, in column order.
    workers : int
        Processes.
    dask_scheduler : str, optional
        Describe the samples on this Dask cluster instead (``--dask_scheduler``).
    skip_invalid : bool
        Write the manifest without the samples that failed (exit code stays 1).
        By default nothing is written when a sample fails.
    show_progress : bool

    Returns
    -------
    RunReport
    """
    root_dir = Path(root_dir)
    samples = find_samples(root_dir)  # none: NoSampleError
    report = run_per_sample(
        samples,
        functools.partial(describe_sample, root_dir=root_dir, info_columns=tuple(info_columns)),
        desc="dataset manifest",
        workers=workers,
        key=lambda s: str(s.path),
        dask_scheduler=dask_scheduler,
        input_dirs=[root_dir],
        show_progress=show_progress,
    )
    _missing_binary_columns(report)
    if report.errors and not skip_invalid:
        logger.error("%s not written: %d sample(s) failed (use --skip_invalid to write the others)", output_file, len(report.errors))
        return report
    rows = list(report.results.values())
    frame = pd.DataFrame(rows, columns=order_columns(rows, info_columns))
    write_sheets(output_file, {MAIN_SHEET: frame})
    logger.info("wrote %s (%d samples, %d columns)", output_file, len(frame), frame.shape[1])
    return report
