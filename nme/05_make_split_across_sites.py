"""Routine 05 (cross-site): add a random split over all sites to dataset_manifest.xlsx.

Samples of the predefined sites (``predefined_sites`` in
descriptors/nme/archive.yaml: Tongji) keep their archive subset, i.e. exactly
the split01_Tongji assignment, read from the ``subset`` column (the split01
sheet need not exist). The samples of all other sites are pooled, grouped by
patient (pid) and split in two stages: --test_ratio of the patients to test,
then --val_ratio of the rest to val. The split depends only on --random_seed
and the sorted pids (hash-based, no random-number generator). Re-running
replaces the sheet with the same content.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from nme.archive import DESCRIPTOR_DIR, NmeRules
from nme.splits import cross_site_split
from utils.run.cli import add_common_args, fail, run_main, setup_logging
from utils.review.exclusion import write_reviewed_split
from utils.review.options import add_review_args, default_review_path, resolve_review
from utils.files.spreadsheet import read_sheet


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest_file", type=Path, required=True, help="dataset_manifest.xlsx of routine 04")
    parser.add_argument("--split_name", required=True, help="worksheet and column name, e.g. split07_Mix")
    parser.add_argument("--test_ratio", type=float, required=True, help="share of pooled patients in test (first stage), e.g. 0.3")
    parser.add_argument("--val_ratio", type=float, required=True, help="share of the remaining pooled patients in val (second stage), e.g. 0.2")
    parser.add_argument("--random_seed", type=int, required=True, help="seed; the same seed and pids give the same split")
    parser.add_argument("--rules", type=Path, default=DESCRIPTOR_DIR / "archive.yaml", help="(addition) rules naming the predefined sites")
    add_review_args(parser, "samples marked fail are left out of the split and recorded in sheet QcReviewExcluded")
    return add_common_args(parser, workers=False)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    try:
        rules = NmeRules.load(args.rules)
        review = resolve_review(args.review, default_review_path(args.manifest_file.parent), disabled=args.no_review, dataset="nme")
        manifest = read_sheet(args.manifest_file)
        rows, labels = cross_site_split(manifest, rules.predefined_sites, args.test_ratio, args.val_ratio, args.random_seed)
        write_reviewed_split(args.manifest_file, args.split_name, rows, labels, review, manifest_ids=manifest.get("ID", []))
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    return 0


if __name__ == "__main__":
    run_main(main)
