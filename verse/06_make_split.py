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

from utils.run.cli import run_main
from utils.review.split_routine import SplitRule, split_main, split_parser
from verse.archive import official_split


def plan(args: argparse.Namespace) -> SplitRule:
    """The official split of the scans of ``--inclusion`` (all when not given)."""
    return lambda manifest: official_split(manifest, args.inclusion)


def main(argv: list[str] | None = None) -> int:
    parser = split_parser(__doc__, "routine 05", "split01_standard")
    parser.add_argument("--inclusion", choices=("VerSe19", "VerSe20"), default=None, help="keep only the scans of this archive, with their subset in it")
    return split_main(parser, argv, "verse", plan)


if __name__ == "__main__":
    run_main(main)
