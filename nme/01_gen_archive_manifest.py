"""Routine 01: scan the NME archive and write the archive manifest.

Every NIfTI file below --root_dir is recorded in the ``Manifest`` sheet with the
tutorial's columns (``subset`` holds the subset folder, e.g. ``imagesTr``);
files that cannot be used (outside the collection and subset folders or the
``{seq}_{pid}[_0000]`` grammar, unreadable, truncated, not 3D) are listed with
the reason in the ``Skipped`` sheet. A copy of ``descriptors/nme/label_map.yaml``
is placed beside the manifest unless one is already there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from nme.archive import DESCRIPTOR_DIR, NmeRules, build_archive_manifest
from utils.run.cli import run_main
from utils.dataset.routines import ArchiveScan, archive_manifest_main


def scan(args: argparse.Namespace, rules: NmeRules) -> ArchiveScan:
    return ArchiveScan(*build_archive_manifest(args.root_dir, rules, workers=args.workers, dask_scheduler=args.dask_scheduler, show_progress=not args.no_pbar))


def main(argv: list[str] | None = None) -> int:
    return archive_manifest_main(argv, __doc__, DESCRIPTOR_DIR, NmeRules.load, scan)


if __name__ == "__main__":
    run_main(main)
