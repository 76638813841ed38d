"""Routine 05: add a random train/val/test split of one site as a worksheet of dataset_manifest.xlsx.

The sheet --split_name copies the ``Manifest`` rows of --site and appends a
column of the same name holding ``train``, ``val`` or ``test``. Samples are
grouped by ``{site}_{pid}`` first, so a patient's pre- and post-therapy scans
always share a subset; then a two-stage split: --test_ratio of the patients go
to test, --val_ratio of the rest to val, the others to train. The assignment
depends only on --random_seed and the set of patients (hash-based, no random
generator), so re-running gives the same sheet. --test_ratio 1.0 --val_ratio
0.0 puts a whole external site in test.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from eso.archive import DESCRIPTOR_DIR, EsoRules
from eso.split import site_split
from utils.run.cli import add_common_args, fail, run_main, setup_logging
from utils.review.exclusion import write_reviewed_split
from utils.review.options import add_review_args, default_review_path, resolve_review
from utils.files.spreadsheet import read_sheet


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest_file", type=Path, required=True, help="dataset_manifest.xlsx of routine 04")
    parser.add_argument("--split_name", required=True, help="worksheet and column name, e.g. split01_TJ")
    parser.add_argument("--site", required=True, help="site code TJ, SYTH or XY (a site folder name such as tongji is accepted too)")
    parser.add_argument("--test_ratio", type=float, required=True, help="share of the site's patients in test, in [0, 1]")
    parser.add_argument("--val_ratio", type=float, required=True, help="share of the remaining patients in val, in [0, 1]")
    parser.add_argument("--random_seed", type=int, default=0, help="seed of the split (default 0)")
    parser.add_argument("--rules", type=Path, default=DESCRIPTOR_DIR / "archive.yaml", help="archive rules (site names and codes)")
    add_review_args(parser, "samples marked fail are left out of the split and recorded in sheet QcReviewExcluded")
    return add_common_args(parser, workers=False)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    try:
        rules = EsoRules.load(args.rules)
        site = rules.site_code(args.site)
        if site is None:
            return fail(f"--site {args.site!r} is not a known site (expected one of {list(rules.sites.values())} or {list(rules.sites)})")
        review = resolve_review(args.review, default_review_path(args.manifest_file.parent), disabled=args.no_review, dataset="eso")
        manifest = read_sheet(args.manifest_file)
        rows, labels = site_split(manifest, site, args.test_ratio, args.val_ratio, args.random_seed)
        write_reviewed_split(args.manifest_file, args.split_name, rows, labels, review, manifest_ids=manifest.get("ID", []))
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    return 0


if __name__ == "__main__":
    run_main(main)
