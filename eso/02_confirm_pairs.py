"""Routine 02: pair ESO volumes with masks and write the grouped dataset.

One sample per scan (site, phase, pid) of the archive manifest, written as
``{output_dir}/{site}/{phase}/{site}_{pid}_{phase}/`` with
``{ID}_volume.nii.gz`` (float32), ``{ID}_mask.nii.gz`` (uint8, on the volume
grid) and ``{ID}_info.yaml`` (site, phase, pid, subset, the metadata
attributes under ``attributes``). A volume without a mask is a valid sample:
no mask file is written. Masks on a permuted/flipped grid are reoriented
exactly; masks on another grid are refused unless --resample_mismatched_masks.
A patient without its pre or post scan is a warning.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from eso.archive import DESCRIPTOR_DIR, EsoRules, pair_jobs
from utils.cli import add_common_args, fail, run_main, setup_logging
from utils.routines import add_pairing_args, confirm_pairs
from utils.spreadsheet import read_sheet

logger = logging.getLogger("eso.02")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root_dir", type=Path, required=True, help="archive folder (root_dir/archive)")
    parser.add_argument("--output_dir", type=Path, required=True, help="grouped dataset folder (root_dir/grouped)")
    parser.add_argument("--archive_manifest", type=Path, required=True, help="archive_manifest.xlsx of routine 01")
    parser.add_argument("--rules", type=Path, default=DESCRIPTOR_DIR / "archive.yaml", help="archive rules (default: descriptors/eso/archive.yaml)")
    return add_common_args(add_pairing_args(parser))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    try:
        rules = EsoRules.load(args.rules)
        manifest = read_sheet(args.archive_manifest)
        jobs, problems, notes = pair_jobs(
            manifest, args.root_dir, args.output_dir, rules,
            allow_resample=args.resample_mismatched_masks, overwrite=args.overwrite, tol_voxel=args.grid_tol,
        )  # fmt: skip
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    for note in notes:
        logger.warning("%s", note)
    without = [j.sample_dir.name for j in jobs if j.mask is None]
    if without:
        logger.info("%d sample(s) have a volume but no mask (allowed in ESO): %s", len(without), ", ".join(without))
    return confirm_pairs(jobs, problems, args.output_dir, workers=args.workers, show_progress=not args.no_pbar)


if __name__ == "__main__":
    run_main(main)
