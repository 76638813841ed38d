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

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from eso.archive import DESCRIPTOR_DIR, EsoRules, scan_with_metadata
from utils.run.cli import run_main
from utils.dataset.routines import archive_manifest_main


def main(argv: list[str] | None = None) -> int:
    return archive_manifest_main(
        argv, __doc__, DESCRIPTOR_DIR, EsoRules.load,
        lambda args, rules: scan_with_metadata(args.root_dir, rules, workers=args.workers, dask_scheduler=args.dask_scheduler, show_progress=not args.no_pbar),
    )  # fmt: skip


if __name__ == "__main__":
    run_main(main)
