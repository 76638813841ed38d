"""Routine 01: scan the ESO archive, read the per-site metadata sheets and write the archive manifest.

Every NIfTI file below --root_dir whose path fits a rule of
``descriptors/eso/archive.yaml`` is recorded in the ``Manifest`` sheet with the
tutorial's columns, followed by every attribute of
``data_meta_{tongji,shiyan-taihe,xiangyang}.xlsx`` for its patient. Files that
cannot be used (no rule fits, unreadable, truncated, not 3D) are listed with
the reason in the ``Skipped`` sheet. The metadata sheets are untrusted: every
oddity (a patient without scan, a scan without row, a duplicated pid, formula-
looking cells, non-ASCII column names …) is logged and listed in the
``MetadataIssues`` sheet for the manual check; formula text is stored as plain
text. A copy of ``descriptors/eso/label_map.yaml`` is placed beside the
manifest unless one is already there. Exit code 1 when a metadata sheet is
unusable (the manifest is still written).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from eso.archive import DESCRIPTOR_DIR, METADATA_ISSUES_SHEET, EsoRules, build_archive_manifest
from utils.cli import add_common_args, fail, run_main, setup_logging
from utils.metadata_sheets import issues_frame
from utils.routines import write_archive_manifest

logger = logging.getLogger("eso.01")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root_dir", type=Path, required=True, help="archive folder (root_dir/archive)")
    parser.add_argument("--output_manifest_file", type=Path, required=True, help="archive_manifest.xlsx to write")
    parser.add_argument("--rules", type=Path, default=DESCRIPTOR_DIR / "archive.yaml", help="archive rules (default: descriptors/eso/archive.yaml)")
    return add_common_args(parser)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    if not args.root_dir.is_dir():
        return fail(f"--root_dir is not a folder: {args.root_dir}")
    try:
        rules = EsoRules.load(args.rules)
        manifest, skipped, issues = build_archive_manifest(args.root_dir, rules, workers=args.workers, show_progress=not args.no_pbar)
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    for issue in issues:
        issue.log()
    write_archive_manifest(
        args.output_manifest_file, manifest, skipped, DESCRIPTOR_DIR / "label_map.yaml", {METADATA_ISSUES_SHEET: issues_frame(issues)}
    )
    errors = [i for i in issues if i.severity == "error"]
    logger.info("%d metadata issue(s) listed in sheet %s (%d unusable sheet(s))", len(issues), METADATA_ISSUES_SHEET, len(errors))
    if errors:
        logger.error("metadata sheet(s) could not be used: %s", "; ".join(i.message() for i in errors))
        return 1
    return 0


if __name__ == "__main__":
    run_main(main)
