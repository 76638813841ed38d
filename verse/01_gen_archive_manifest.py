"""Routine 01: scan the VerSe archive and write the archive manifest.

Every NIfTI file below --root_dir is recorded in the ``Manifest`` sheet with the
tutorial's columns; files that cannot be used (outside the official folders or
the file-name grammar, unreadable, truncated, not 3D) are listed with the
reason in the ``Skipped`` sheet. A copy of ``descriptors/verse/label_map.yaml``
is placed beside the manifest unless one is already there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from utils.cli import add_common_args, fail, run_main, setup_logging
from utils.routines import write_archive_manifest
from verse.archive import DESCRIPTOR_DIR, VerseRules, build_archive_manifest


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root_dir", type=Path, required=True, help="archive folder (root_dir/archive)")
    parser.add_argument("--output_manifest_file", type=Path, required=True, help="archive_manifest.xlsx to write")
    parser.add_argument("--participants", type=Path, default=None, help="sex/age table (xlsx/csv/tsv, VerSe19 spreadsheet layout); default: one found in --root_dir")
    parser.add_argument("--rules", type=Path, default=DESCRIPTOR_DIR / "archive.yaml", help="archive rules (default: descriptors/verse/archive.yaml)")
    return add_common_args(parser)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    if not args.root_dir.is_dir():
        return fail(f"--root_dir is not a folder: {args.root_dir}")
    if args.participants is not None and not args.participants.is_file():
        return fail(f"--participants file not found: {args.participants}")
    try:
        rules = VerseRules.load(args.rules)
        manifest, skipped = build_archive_manifest(args.root_dir, rules, args.participants, workers=args.workers, show_progress=not args.no_pbar)
    except ValueError as exc:
        return fail(str(exc))
    write_archive_manifest(args.output_manifest_file, manifest, skipped, DESCRIPTOR_DIR / "label_map.yaml")
    return 0


if __name__ == "__main__":
    run_main(main)
