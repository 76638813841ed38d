"""Routine 05: add a predefined train/val/test split worksheet to dataset_manifest.xlsx.

The sheet --split_name copies the ``Manifest`` rows whose site is one of --site
and whose collection is one of --collection, and appends a column of the same
name holding each sample's archive subset (train/val/test). A --site or
--collection value absent from the manifest is an error (a typo would shrink
the split silently). Re-running replaces the sheet with the same content.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from nme.splits import predefined_split
from utils.run.cli import add_common_args, fail, run_main, setup_logging
from utils.review.exclusion import write_reviewed_split
from utils.review.options import add_review_args, default_review_path, resolve_review
from utils.files.spreadsheet import read_sheet


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest_file", type=Path, required=True, help="dataset_manifest.xlsx of routine 04")
    parser.add_argument("--split_name", required=True, help="worksheet and column name, e.g. split01_Tongji")
    parser.add_argument("--site", nargs="+", required=True, help="sites to include, e.g. Tongji or Yunnan Zhongnan HKU-SZH")
    parser.add_argument("--collection", nargs="+", required=True, help="collections to include, e.g. train-val test-inner-01")
    add_review_args(parser, "samples marked fail are left out of the split and recorded in sheet QcReviewExcluded")
    return add_common_args(parser, workers=False)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    try:
        review = resolve_review(args.review, default_review_path(args.manifest_file.parent), disabled=args.no_review, dataset="nme")
        manifest = read_sheet(args.manifest_file)
        rows, labels = predefined_split(manifest, args.site, args.collection)
        write_reviewed_split(args.manifest_file, args.split_name, rows, labels, review, manifest_ids=manifest.get("ID", []))
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    return 0


if __name__ == "__main__":
    run_main(main)
