"""Release diff: which samples were added, removed, renamed or changed between two releases of a grouped dataset.

  python utils/diff_datasets.py --old OLD_ROOT/grouped --new NEW_ROOT/grouped --output_file diff.xlsx

Samples are matched by ID; a sample whose volume voxels reappear under another ID is *renamed*.
For samples in both releases, files are hashed first and only read where the hashes differ:
volume voxels, geometry (shape, affine), mask labels (voxels and mm³ per label before/after,
Dice of each label on the same grid — never resampled), labels added/removed, and the changed
fields of the info yamls and dataset manifests (sex, age, subset, site …). Writes diff.xlsx
(sheets Summary, Samples, Labels, Fields) and the same as JSON (diff.json beside it), which
`utils/qc_report.py --diff` shows as a section of the QC page. Format: docs/diff.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from utils.run.cli import add_common_args, fail, run_main, setup_logging

logger = logging.getLogger("diff_datasets")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", type=Path, required=True, help="grouped folder of the old release (OLD_ROOT/grouped)")
    parser.add_argument("--new", type=Path, required=True, help="grouped folder of the new release (NEW_ROOT/grouped)")
    parser.add_argument("--output_file", type=Path, required=True, help="the diff workbook, e.g. diff.xlsx")
    parser.add_argument("--output_json", type=Path, help="the same as JSON (default: OUTPUT_FILE with .json instead of .xlsx)")
    parser.add_argument("--old_manifest", type=Path, help="dataset manifest of the old release (default: OLD/dataset_manifest.xlsx if present)")
    parser.add_argument("--new_manifest", type=Path, help="dataset manifest of the new release (default: NEW/dataset_manifest.xlsx if present)")
    parser.add_argument("--label_explanation", type=Path,
                        help="label_map.yaml for label names (default: NEW/../descriptor/label_map.yaml if present)")
    parser.add_argument("--grid_tol", type=float, default=None,
                        help="largest voxel-centre displacement for 'same grid', as a fraction of the smallest spacing (default 0.01)")
    return add_common_args(parser)  # fmt: skip


def _manifest(option: Path | None, root: Path, name: str) -> Path | None:
    if option is not None:
        if not option.is_file():
            raise FileNotFoundError(f"{name} {option}: no such file")
        return option
    default = root / "dataset_manifest.xlsx"
    return default if default.is_file() else None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    from utils.geometry.alignment import GRID_TOL_VOXEL
    from utils.diff.report_json import write_diff_json
    from utils.diff.run import diff_datasets
    from utils.diff.tables import diff_sheets
    from utils.labels.label_maps import LabelError, LabelMap
    from utils.files.output_paths import check_output_file, portable_path
    from utils.files.spreadsheet import write_sheets

    output_json = args.output_json or args.output_file.with_suffix(".json")
    try:
        for option, root in (("--old", args.old), ("--new", args.new)):
            if not root.is_dir():
                return fail(f"{option} {root}: not a folder; the grouped folder of a release was expected")
        check_output_file(args.output_file, "--output_file")
        check_output_file(output_json, "--output_json", suffix=".json")
        old_manifest = _manifest(args.old_manifest, args.old, "--old_manifest")
        new_manifest = _manifest(args.new_manifest, args.new, "--new_manifest")
        if (old_manifest is None) != (new_manifest is None):
            logger.warning("only one release has a dataset manifest: manifest fields are not compared")
        label_path = args.label_explanation or args.new.resolve().parent / "descriptor" / "label_map.yaml"
        names = {}
        if args.label_explanation is not None or label_path.is_file():
            names = {lab.index: lab.short for lab in LabelMap.load(label_path)}
        grid_tol = GRID_TOL_VOXEL if args.grid_tol is None else args.grid_tol
        if not grid_tol >= 0:
            return fail(f"--grid_tol {args.grid_tol}: a fraction >= 0 was expected")
        result = diff_datasets(
            args.old, args.new, old_manifest=old_manifest, new_manifest=new_manifest, label_names=names, grid_tol=grid_tol,
            workers=args.workers, dask_scheduler=args.dask_scheduler, show_progress=not args.no_pbar,
        )  # fmt: skip
        for key in ("old", "new", "old_manifest", "new_manifest"):  # no absolute path in a file we write
            if result.data.get(key):
                result.data[key] = portable_path(result.data[key], output_json.parent)
        write_sheets(args.output_file, diff_sheets(result.data))
        write_diff_json(output_json, result.data)
    except (OSError, ValueError, LabelError) as exc:
        return fail(str(exc))
    logger.info("wrote %s and %s", args.output_file, output_json)
    return result.exit_code()


if __name__ == "__main__":
    run_main(main)
