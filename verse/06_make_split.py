"""Routine 06: add an official train/val/test split worksheet to dataset_manifest.xlsx.

The sheet --split_name copies the ``Manifest`` rows and appends a column of the
same name holding each sample's official subset. With --inclusion VerSe19 (or
VerSe20) only the scans of that archive are kept and their subset in that
archive is used. Re-running replaces the sheet with the same content.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from utils.run.cli import add_common_args, fail, run_main, setup_logging
from utils.review.exclusion import write_reviewed_split
from utils.review.options import add_review_args, default_review_path, resolve_review
from utils.files.spreadsheet import read_sheet
from verse.archive import official_split


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest_file", type=Path, required=True, help="dataset_manifest.xlsx of routine 05")
    parser.add_argument("--split_name", required=True, help="worksheet and column name, e.g. split01_standard")
    parser.add_argument("--inclusion", choices=("VerSe19", "VerSe20"), default=None, help="keep only the scans of this archive, with their subset in it")
    add_review_args(parser, "samples marked fail are left out of the split and recorded in sheet QcReviewExcluded")
    return add_common_args(parser, workers=False)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    try:
        review = resolve_review(args.review, default_review_path(args.manifest_file.parent), disabled=args.no_review, dataset="verse")
        manifest = read_sheet(args.manifest_file)
        rows, labels = official_split(manifest, args.inclusion)
        write_reviewed_split(args.manifest_file, args.split_name, rows, labels, review, manifest_ids=manifest.get("ID", []))
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    return 0


if __name__ == "__main__":
    run_main(main)
