"""Routines that are the same for every dataset; each dataset's numbered script calls one of these.

- :func:`extract_binary_masks_main` — VerSe 04, NME 03, ESO 03
- :func:`dataset_manifest_main` — VerSe 05, NME 04, ESO 04 (dataset's info columns as parameter)
- :func:`index_manifests_main` — VerSe 07, NME 06, ESO 06
- :func:`write_archive_manifest` — the output of every routine 01
- :func:`add_pairing_args`, :func:`confirm_pairs` — the options and loop of every routine 02

The command lines are the tutorials'; options beyond them are marked in --help.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from utils.geometry.alignment import GRID_TOL_VOXEL
from utils.archive.scan import SKIPPED_SHEET, ArchiveScan, with_skipped_candidates
from utils.labels.binary_masks import UP_TO_DATE, extract_sample_binary_masks
from utils.run.cli import add_common_args, fail, plural, run_per_sample, setup_logging
from utils.dataset.manifest import build_dataset_manifest
from utils.geometry.policy import UNCODED_CHOICES, GeometryOptions
from utils.labels.label_maps import LabelMap, install_label_map
from utils.files.lazy_import import lazy_import
from utils.files.output_paths import archive_of_dataset, archive_of_manifest, check_not_inside, check_output_dir, check_output_file
from utils.archive.pairing import PairJob, write_pair
from utils.files.safe_names import FieldRule, UnsafeNameError, check_inside, check_manifest_fields, check_name
from utils.files.sample_info import find_samples
from utils.dataset.splits import extract_index_manifests
from utils.files.spreadsheet import MAIN_SHEET, read_sheet, write_sheets

pd = lazy_import("pandas")

__all__ = [
    "extract_binary_masks_main", "dataset_manifest_main", "index_manifests_main",
    "write_archive_manifest", "add_pairing_args", "confirm_pairs",
    "confirm_pairs_main",
    "ArchiveScan",
    "archive_manifest_main",
]  # fmt: skip

logger = logging.getLogger(__name__)


def _parser(description: str | None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)


def extract_binary_masks_main(argv: Sequence[str] | None, description: str | None) -> int:
    """``--root_dir --label_explanation``: write every label's binary mask of every sample that has a mask."""
    parser = _parser(description)
    parser.add_argument("--root_dir", type=Path, required=True, help="grouped dataset folder")
    parser.add_argument("--label_explanation", type=Path, required=True, help="label_map.yaml (root_dir/descriptor/label_map.yaml)")
    args = add_common_args(parser).parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    try:
        label_map = LabelMap.load(args.label_explanation)
        samples = find_samples(args.root_dir)
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    without = [s.id for s in samples if not s.mask.is_file()]
    if without:
        logger.info("%s no mask and get no binary masks: %s", plural(len(without), "sample has", "samples have"), ", ".join(without))
    work = functools.partial(extract_sample_binary_masks, label_map=label_map)
    report = run_per_sample(
        [s for s in samples if s.mask.is_file()], work, desc="binary masks", workers=args.workers, key=lambda s: s.id, show_progress=not args.no_pbar,
        dask_scheduler=args.dask_scheduler, input_dirs=[args.root_dir], output_dirs=[args.root_dir],
    )
    fresh = [sid for sid, summary in report.results.items() if str(summary).startswith(UP_TO_DATE)]
    if fresh:
        logger.info("%s skipped, their binary masks are up to date with their mask: %s", plural(len(fresh), "sample"), ", ".join(fresh))
    return report.exit_code()


def dataset_manifest_main(argv: Sequence[str] | None, description: str | None, info_columns: Sequence[str]) -> int:
    """``--root_dir --output_manifest_file``: index every sample folder in the ``Manifest`` sheet."""
    parser = _parser(description)
    parser.add_argument("--root_dir", type=Path, required=True, help="grouped dataset folder")
    parser.add_argument("--output_manifest_file", type=Path, required=True, help="dataset_manifest.xlsx to write")
    parser.add_argument("--skip_invalid", action="store_true", help="(addition) write the manifest without the samples that fail the checks")
    args = add_common_args(parser).parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    try:
        check_not_inside(args.output_manifest_file, archive_of_dataset(find_samples(args.root_dir)), "--output_manifest_file")
        check_output_file(args.output_manifest_file, "--output_manifest_file")
        report = build_dataset_manifest(
            args.root_dir, args.output_manifest_file, info_columns, workers=args.workers, dask_scheduler=args.dask_scheduler,
            skip_invalid=args.skip_invalid, show_progress=not args.no_pbar,
        )
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    return report.exit_code()


def index_manifests_main(argv: Sequence[str] | None, description: str | None) -> int:
    """``--manifest_file --split_name --output_index_manifest_dir --subsets …`` (repeatable): all or nothing."""
    parser = _parser(description)
    parser.add_argument("--manifest_file", type=Path, required=True, help="dataset_manifest.xlsx holding the split sheet")
    parser.add_argument("--split_name", required=True, help="split worksheet, e.g. split01_standard")
    parser.add_argument("--output_index_manifest_dir", type=Path, required=True, help="folder of the index manifests")
    parser.add_argument(
        "--subsets", nargs="+", action="append", required=True, choices=("train", "val", "test"), metavar="SUBSET",
        help="subsets of one index manifest (repeatable): --subsets train val --subsets test",
    )  # fmt: skip
    args = add_common_args(parser, workers=False).parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    try:
        check_not_inside(args.output_index_manifest_dir, archive_of_manifest(args.manifest_file), "--output_index_manifest_dir")
        check_output_dir(args.output_index_manifest_dir, "--output_index_manifest_dir")
        written = extract_index_manifests(args.manifest_file, args.split_name, args.subsets, args.output_index_manifest_dir)
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    logger.info("%s in %s", plural(len(written), "index manifest"), args.output_index_manifest_dir)
    return 0


def write_archive_manifest(
    output_file: Path,
    manifest: pd.DataFrame,
    skipped: pd.DataFrame,
    label_map_source: Path,
    extra_sheets: Mapping[str, pd.DataFrame] | None = None,
) -> None:
    """Routine 01's output: the ``Manifest`` and ``Skipped`` sheets, and ``label_map.yaml`` beside them.

    The dataset's label map is copied next to the manifest (so the tutorials'
    ``--label_explanation root_dir/descriptor/label_map.yaml`` works) unless a
    copy is already there; an edited copy is kept.

    Parameters
    ----------
    output_file : Path
        ``archive_manifest.xlsx`` (replaced atomically).
    manifest, skipped : DataFrame
        Usable files, and unusable files with ``file_path`` and ``reason``.
    label_map_source : Path
        ``descriptors/<dataset>/label_map.yaml``.
    extra_sheets : mapping of str to DataFrame, optional
        Further sheets of the same workbook (ESO: ``MetadataIssues``), written in the same atomic write.
    """
    output_file = Path(output_file)
    write_sheets(output_file, {MAIN_SHEET: manifest, SKIPPED_SHEET: skipped, **(extra_sheets or {})})
    logger.info("wrote %s: %d files in %s, %d in %s", output_file, len(manifest), MAIN_SHEET, len(skipped), SKIPPED_SHEET)
    for _, row in skipped.iterrows():
        logger.warning("skipped %s: %s", row["file_path"], row["reason"])
    if len(skipped):
        logger.warning(
            "%d of %d NIfTI files could not be used; they are listed with the reason in sheet %s of %s "
            "(routine 02 names the samples that lack them)", len(skipped), len(skipped) + len(manifest), SKIPPED_SHEET, output_file,
        )  # fmt: skip
    label_map = output_file.parent / "label_map.yaml"
    status = install_label_map(label_map_source, label_map)
    logger.info("label map %s: %s", label_map, {"written": "written", "identical": "already up to date", "kept": "exists and differs from the descriptor; kept as edited"}[status])


def add_pairing_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Routine 02's options beyond the tutorial: ``--resample_mismatched_masks --grid_tol --overwrite --trust_uncoded_geometry --resample_sheared``."""
    parser.add_argument("--resample_mismatched_masks", action="store_true", help="resample a mask on another grid with nearest neighbour instead of failing")
    parser.add_argument("--grid_tol", type=float, default=GRID_TOL_VOXEL, help=f"largest voxel-centre displacement between mask and volume grids, as a fraction of a voxel (default {GRID_TOL_VOXEL})")
    parser.add_argument("--overwrite", action="store_true", help="rebuild samples that later routines already modified")
    parser.add_argument(
        "--trust_uncoded_geometry", choices=UNCODED_CHOICES, default=None,
        help="(addition) files without spatial codes (qform_code = sform_code = 0) are refused; this takes ITK's guess "
        "(LPS, origin 0: where ITK-SNAP/Slicer/nnU-Net put them) or nibabel's (LAS, origin at the centre) instead (recorded); see docs/geometry.md",
    )  # fmt: skip
    parser.add_argument(
        "--resample_sheared", action="store_true",
        help="(addition) a sheared grid (gantry tilt) is refused: no header gives it to nibabel and ITK alike; this resamples "
        "volume (linear) and mask (nearest) onto the nearest rigid grid instead (recorded); see docs/geometry.md",
    )  # fmt: skip
    return parser


def confirm_pairs(
    jobs: Sequence[PairJob], problems: Mapping[str, str], output_dir: Path, *, workers: int = 1, show_progress: bool = True,
    dask_scheduler: str | None = None, archive_dir: Path | None = None,
) -> int:
    """Routine 02's loop: write every pairable sample, then report the ones that could not be paired.

    Parameters
    ----------
    jobs : sequence of PairJob
    problems : mapping of str to str
        Sample -> why it has no job (mask without volume, volume without mask …).
    output_dir : Path
        Grouped dataset folder (for the log).
    workers : int
    show_progress : bool
    dask_scheduler : str, optional
        Write the samples on this Dask cluster instead (``--dask_scheduler``).
    archive_dir : Path, optional
        Archive folder the jobs read (checked on every Dask worker).

    Returns
    -------
    exit_code : int
        0 when every archive sample was written, 1 otherwise (after writing all good ones).
    """
    report = run_per_sample(
        jobs, write_pair, desc="confirm pairs", workers=workers, key=lambda j: j.sample_dir.name, show_progress=show_progress,
        dask_scheduler=dask_scheduler, input_dirs=[archive_dir] if archive_dir else [], output_dirs=[output_dir],
    )  # fmt: skip
    status = [r.get("status") for r in report.results.values()]
    logger.info(
        "grouped dataset in %s: %s written, %d up to date (skipped), %d up to date with attributes updated",
        output_dir, plural(status.count("written"), "sample"), status.count("up to date"), status.count("attributes updated"),
    )  # fmt: skip
    if problems:
        logger.error("%s could not be paired and %s not written:", plural(len(problems), "archive sample"), "was" if len(problems) == 1 else "were")
        for sid, reason in problems.items():
            logger.error("  %s: %s", sid, reason)
    return 1 if (problems or report.errors) else 0


def confirm_pairs_main(
    argv: Sequence[str] | None,
    description: str | None,
    default_rules: Path,
    load_rules: Callable[[Path], Any],
    make_jobs: Callable[..., tuple[list[PairJob], dict[str, str]]],
    parse_path: Callable[[Path, Any], tuple[dict[str, Any] | None, str | None]] | None = None,
    field_rules: Callable[[Any], Mapping[str, FieldRule]] | None = None,
) -> int:
    """Every routine 02: ``--root_dir --output_dir --archive_manifest`` (+ pairing options, ``--rules``).

    Parameters
    ----------
    argv : sequence of str or None
    description : str
        The script's docstring.
    default_rules : Path
        ``descriptors/<dataset>/archive.yaml``.
    load_rules : callable
        Rules file -> the dataset's rules object.
    make_jobs : callable
        ``(manifest, archive_root, output_dir, rules) -> (jobs, problems)``: the dataset's pairing
        (which files make a sample, where it goes, its info). The run's options (``--grid_tol``,
        ``--overwrite``, ``--resample_mismatched_masks``, the geometry choices, the archive root)
        are set on every job here, the same for every dataset.
    parse_path : callable, optional
        ``(path relative to the archive, rules) -> (fields, reason)``: the dataset's path rule, used to
        tell which sample a file of routine 01's ``Skipped`` sheet belonged to (that sample is then
        reported with routine 01's reason, never written without it).
    field_rules : callable, optional
        Rules -> ``{column: FieldRule}``: what each archive-manifest column that becomes part of a path
        may hold (:func:`utils.files.safe_names.check_manifest_fields`); every row is checked before any work.

    Before anything is written: ``--output_dir`` must not be (inside) the archive, every manifest
    cell that becomes a path must fit its documented pattern, and every sample folder must lie
    inside ``--output_dir``; otherwise one line and exit 2.
    """
    parser = _parser(description)
    parser.add_argument("--root_dir", type=Path, required=True, help="archive folder (root_dir/archive)")
    parser.add_argument("--output_dir", type=Path, required=True, help="grouped dataset folder (root_dir/grouped)")
    parser.add_argument("--archive_manifest", type=Path, required=True, help="archive_manifest.xlsx of routine 01")
    parser.add_argument("--rules", type=Path, default=default_rules, help=f"(addition) archive rules (default: {default_rules.relative_to(default_rules.parents[2])})")
    args = add_common_args(add_pairing_args(parser)).parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    try:
        check_not_inside(args.output_dir, args.root_dir, "--output_dir")
        check_output_dir(args.output_dir, "--output_dir")
        rules = load_rules(args.rules)
        manifest = read_sheet(args.archive_manifest)
        source = f"{args.archive_manifest} (sheet {MAIN_SHEET!r})"
        check_manifest_fields(manifest, {"file_path": FieldRule("a path relative to the archive root", relative_path=True)}, source)
        if field_rules is not None:
            check_manifest_fields(manifest, field_rules(rules), source)
        if parse_path is not None:
            skipped = read_sheet(args.archive_manifest, SKIPPED_SHEET, missing_ok=True)
            manifest = with_skipped_candidates(manifest, skipped, lambda rel: parse_path(rel, rules))
        if manifest.empty:
            return fail(f"{args.archive_manifest}: sheet {MAIN_SHEET!r} lists no archive file; nothing to pair (run routine 01 on an archive holding NIfTI files)")
        jobs, problems = make_jobs(manifest, args.root_dir, args.output_dir, rules)
        options = {
            "allow_resample": args.resample_mismatched_masks, "overwrite": args.overwrite, "tol_voxel": args.grid_tol,
            "geometry": GeometryOptions(args.trust_uncoded_geometry, args.resample_sheared), "archive_root": Path(args.root_dir),
        }  # fmt: skip
        jobs = [dataclasses.replace(job, **options) for job in jobs]
        for job in jobs:
            _check_sample_folder(job.sample_dir, args.output_dir)
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    return confirm_pairs(
        jobs, problems, args.output_dir, workers=args.workers, show_progress=not args.no_pbar,
        dask_scheduler=args.dask_scheduler, archive_dir=args.root_dir,
    )  # fmt: skip


def _check_sample_folder(sample_dir: Path, output_dir: Path) -> None:
    """Every part of ``sample_dir`` below ``output_dir`` is one safe name, and it stays inside ``output_dir``."""
    rel = Path(sample_dir).relative_to(output_dir) if Path(sample_dir).is_relative_to(output_dir) else None
    if rel is None or not rel.parts:
        raise UnsafeNameError(f"sample folder {sample_dir} is not below --output_dir {output_dir}; refused before any work")
    for part in rel.parts:
        check_name(part, f"sample folder {sample_dir}: part")
    check_inside(sample_dir, output_dir, "sample folder")


def archive_manifest_main(
    argv: Sequence[str] | None,
    description: str | None,
    descriptor_dir: Path,
    load_rules: Callable[[Path], Any],
    scan: Callable[[argparse.Namespace, Any], ArchiveScan],
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """Every routine 01: ``--root_dir --output_manifest_file`` (+ ``--rules`` and the dataset's own options).

    Parameters
    ----------
    argv : sequence of str or None
    description : str
        The script's docstring.
    descriptor_dir : Path
        ``descriptors/<dataset>``: default rules file and the label map copied beside the manifest.
    load_rules : callable
        Rules file -> the dataset's rules object.
    scan : callable
        ``(args, rules) -> ArchiveScan``; raise ``ValueError``/``OSError`` for a fatal input problem.
    add_arguments : callable, optional
        Adds the dataset's own options to the parser.
    """
    parser = _parser(description)
    parser.add_argument("--root_dir", type=Path, required=True, help="archive folder (root_dir/archive)")
    parser.add_argument("--output_manifest_file", type=Path, required=True, help="archive_manifest.xlsx to write")
    parser.add_argument("--rules", type=Path, default=descriptor_dir / "archive.yaml", help=f"(addition) archive rules (default: descriptors/{descriptor_dir.name}/archive.yaml)")
    if add_arguments is not None:
        add_arguments(parser)
    args = add_common_args(parser).parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    if not args.root_dir.is_dir():
        return fail(f"--root_dir is not a folder: {args.root_dir}")
    label_map = args.output_manifest_file.parent / "label_map.yaml"
    try:
        check_not_inside(args.output_manifest_file, args.root_dir, "--output_manifest_file")
        check_output_file(args.output_manifest_file, "--output_manifest_file")
        if label_map.exists():
            LabelMap.load(label_map)  # an edited copy must be valid: say so now, not after reading the archive
        result = scan(args, load_rules(args.rules))
        if result.manifest.empty and result.skipped.empty:
            return fail(f"--root_dir {args.root_dir}: no NIfTI file (.nii, .nii.gz) found below it; nothing written")
        write_archive_manifest(args.output_manifest_file, result.manifest, result.skipped, descriptor_dir / "label_map.yaml", result.extra_sheets)
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    errors = list(result.errors)
    if result.manifest.empty:
        errors.append(f"none of the {len(result.skipped)} NIfTI files below {args.root_dir} can be used (see sheet {SKIPPED_SHEET})")
    for error in errors:
        logger.error("%s", error)
    return 1 if errors else 0
