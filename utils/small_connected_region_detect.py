"""Report small 3D connected regions of every label of every sample (mask quality control).

For every sample below --root_dir, the connected components of each
foreground label of {ID}_mask.nii.gz (the binary masks {ID}_mask_XX_short
are derived from it; background 0 is not analysed) whose physical volume
(voxel count x |det(affine[:3, :3])| mm³) is below --region_volume_thresh go
to the Manifest sheet of --output_manifest: sample ID, binary mask file,
mask file, label index and short name, voxel count, volume in mm³, centroid
in voxel indices and in world coordinates (mm), inclusive voxel bounding box.
The log ends with the total count, to compare before and after a repair.

  python utils/small_connected_region_detect.py --root_dir root_dir/grouped --region_volume_thresh 100.0 \\
      --output_manifest root_dir/descriptor/small_connected_region_100_manifest.xlsx
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from utils.run.cli import add_common_args, fail, plural, run_main, run_per_sample, setup_logging
from utils.labels.connected_regions import CONNECTIVITY_3D, DEFAULT_CONNECTIVITY_3D
from utils.files.lazy_import import lazy_import
from utils.files.output_paths import archive_of_dataset, check_not_inside, check_output_file
from utils.maskqc.steps import REPORT_COLUMNS, small_region_rows
from utils.files.sample_info import find_samples
from utils.files.spreadsheet import MAIN_SHEET, write_sheets

pd = lazy_import("pandas")

logger = logging.getLogger("small_connected_region_detect")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root_dir", type=Path, required=True, help="grouped dataset folder")
    parser.add_argument("--region_volume_thresh", type=float, required=True, metavar="MM3",
                        help="report regions smaller than this volume in mm³ (VerSe 100.0, ESO 300.0)")
    parser.add_argument("--output_manifest", type=Path, required=True, help=".xlsx report to write")
    parser.add_argument("--connectivity", type=int, choices=CONNECTIVITY_3D, default=DEFAULT_CONNECTIVITY_3D,
                        help="3D neighbourhood of a region: 6 faces, 18 +edges, 26 +corners (default %(default)s)")
    return add_common_args(parser)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    try:
        samples = find_samples(args.root_dir)
        check_not_inside(args.output_manifest, archive_of_dataset(samples), "--output_manifest")
        check_output_file(args.output_manifest, "--output_manifest")
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    with_mask = [s for s in samples if s.mask.is_file()]
    if len(with_mask) < len(samples):
        logger.info("%s without a mask skipped", plural(len(samples) - len(with_mask), "sample"))
    work = functools.partial(small_region_rows, root_dir=args.root_dir, volume_thresh_mm3=args.region_volume_thresh,
                             connectivity=args.connectivity)  # fmt: skip
    report = run_per_sample(with_mask, work, desc="small regions", workers=args.workers, key=lambda s: s.id,
                            show_progress=not args.no_pbar, dask_scheduler=args.dask_scheduler, input_dirs=[args.root_dir])  # fmt: skip
    rows = [row for sample_rows in report.results.values() for row in sample_rows]
    try:
        write_sheets(args.output_manifest, {MAIN_SHEET: pd.DataFrame(rows, columns=list(REPORT_COLUMNS))})
    except (ValueError, OSError) as exc:
        return fail(f"{args.output_manifest}: cannot write the report ({exc})")
    logger.info("%s (< %g mm³, %d-connectivity) in %d of %s%s; written to %s",
                plural(len(rows), "small connected region"), args.region_volume_thresh, args.connectivity, len({r["ID"] for r in rows}),
                plural(len(report.results), "sample"),
                f" ({plural(len(report.errors), 'sample')} failed and {'is' if len(report.errors) == 1 else 'are'} missing)" if report.errors else "",
                args.output_manifest)  # fmt: skip
    return report.exit_code()


if __name__ == "__main__":
    run_main(main)
