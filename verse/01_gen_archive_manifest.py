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

from utils.run.cli import run_main
from utils.dataset.routines import ArchiveScan, archive_manifest_main
from verse.archive import DESCRIPTOR_DIR, VerseRules, build_archive_manifest


def add_participants(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--participants", type=Path, default=None,
        help="(addition) sex/age table (xlsx/csv/tsv, VerSe19 spreadsheet layout); default: one found in --root_dir",
    )  # fmt: skip


def scan(args: argparse.Namespace, rules: VerseRules) -> ArchiveScan:
    if args.participants is not None and not args.participants.is_file():
        raise FileNotFoundError(f"--participants file not found: {args.participants}")
    return ArchiveScan(*build_archive_manifest(args.root_dir, rules, args.participants, workers=args.workers, dask_scheduler=args.dask_scheduler, show_progress=not args.no_pbar))


def main(argv: list[str] | None = None) -> int:
    return archive_manifest_main(argv, __doc__, DESCRIPTOR_DIR, VerseRules.load, scan, add_participants)


if __name__ == "__main__":
    run_main(main)
