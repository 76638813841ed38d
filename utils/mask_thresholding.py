"""ESO mask thresholding: foreground voxels whose volume value lies outside [LO, HI] become background.

For every sample below --root_dir, {ID}_mask.nii.gz is compared with
{ID}_volume.nii.gz (same grid required); foreground voxels whose volume value
is below LO or above HI (or NaN) are set to 0. Binary masks already in the
folder are rewritten from the new mask so they stay consistent; the info
yaml's history records the range; re-running with the same range does
nothing (see --force).

  python utils/mask_thresholding.py --root_dir root_dir/grouped --thresh -140.0 1000.0 --output_dir root_dir/grouped
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from utils.run.cli import add_common_args, fail, run_main, setup_logging
from utils.maskqc.steps import STEP_THRESHOLD, add_output_args, run_mask_step, threshold_transform


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_args(parser)
    parser.add_argument("--thresh", type=float, nargs=2, required=True, metavar=("LO", "HI"),
                        help="inclusive range of volume values a foreground voxel may have (ESO: -140.0 1000.0)")  # fmt: skip
    return add_common_args(parser)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    lo, hi = args.thresh
    try:
        transform = threshold_transform(lo, hi)
        report = run_mask_step(args, STEP_THRESHOLD, {"thresh": [lo, hi]}, transform)
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    return report.exit_code()


if __name__ == "__main__":
    run_main(main)
