"""Routine 02: pair NME images with masks and write the grouped dataset.

Pairs ``images{Tr,Vd,Ts}/{seq}_{pid}[_0000]`` with ``labels{Tr,Vd,Ts}/{seq}_{pid}``
of the same collection and writes each sample to
``{output_dir}/{site}/{collection}/{subset}/{seq}_{pid}/`` as
``{seq}_{pid}_volume.nii.gz`` (float32), ``{seq}_{pid}_mask.nii.gz`` (uint8, on
the volume grid) and ``{seq}_{pid}_info.yaml``. Masks on a permuted/flipped grid
are reoriented exactly; masks on another grid are refused unless
--resample_mismatched_masks is given. A mask without image or an image without
mask is reported; every good sample is still written and the exit code is 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from nme.archive import DESCRIPTOR_DIR, NmeRules, pair_jobs
from utils.cli import add_common_args, fail, run_main, setup_logging
from utils.routines import add_pairing_args, confirm_pairs
from utils.spreadsheet import read_sheet


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root_dir", type=Path, required=True, help="archive folder (root_dir/archive)")
    parser.add_argument("--output_dir", type=Path, required=True, help="grouped dataset folder (root_dir/grouped)")
    parser.add_argument("--archive_manifest", type=Path, required=True, help="archive_manifest.xlsx of routine 01")
    parser.add_argument("--rules", type=Path, default=DESCRIPTOR_DIR / "archive.yaml", help="(addition) archive rules")
    return add_common_args(add_pairing_args(parser))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    try:
        rules = NmeRules.load(args.rules)
        manifest = read_sheet(args.archive_manifest)
        jobs, problems = pair_jobs(manifest, args.root_dir, args.output_dir, rules, allow_resample=args.resample_mismatched_masks, overwrite=args.overwrite, tol_voxel=args.grid_tol)
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    return confirm_pairs(jobs, problems, args.output_dir, workers=args.workers, show_progress=not args.no_pbar)


if __name__ == "__main__":
    run_main(main)
