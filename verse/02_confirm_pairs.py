"""Routine 02: pair VerSe volumes with masks and write the grouped dataset.

Keeps archive files whose suffix contains ``ct`` or ``vert_msk``, pairs them per
scan (subject, split), writes one sample per scan under the first archive that
holds it (VerSe19 before VerSe20) as ``{output_dir}/{archive}/{subset}/{ID}/``
with ``{ID}_volume.nii.gz`` (float32), ``{ID}_mask.nii.gz`` (uint8, on the
volume grid) and ``{ID}_info.yaml``. Masks on a permuted/flipped grid are
reoriented exactly; masks on another grid are refused unless
--resample_mismatched_masks is given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from utils.cli import add_common_args, fail, run_main, setup_logging
from utils.routines import add_pairing_args, confirm_pairs
from utils.spreadsheet import read_sheet
from verse.archive import DESCRIPTOR_DIR, VerseRules, pair_jobs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root_dir", type=Path, required=True, help="archive folder (root_dir/archive)")
    parser.add_argument("--output_dir", type=Path, required=True, help="grouped dataset folder (root_dir/grouped)")
    parser.add_argument("--archive_manifest", type=Path, required=True, help="archive_manifest.xlsx of routine 01")
    parser.add_argument("--rules", type=Path, default=DESCRIPTOR_DIR / "archive.yaml", help="archive rules")
    return add_common_args(add_pairing_args(parser))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    try:
        rules = VerseRules.load(args.rules)
        manifest = read_sheet(args.archive_manifest)
        jobs, problems = pair_jobs(manifest, args.root_dir, args.output_dir, rules, allow_resample=args.resample_mismatched_masks, overwrite=args.overwrite, tol_voxel=args.grid_tol)
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    return confirm_pairs(jobs, problems, args.output_dir, workers=args.workers, show_progress=not args.no_pbar)


if __name__ == "__main__":
    run_main(main)
