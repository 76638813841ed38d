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
from utils.run.cli import run_main
from utils.review.split_routine import SplitRule, split_main, split_parser


def plan(args: argparse.Namespace) -> SplitRule:
    """The archive subsets of the samples of ``--site`` and ``--collection``."""
    return lambda manifest: predefined_split(manifest, args.site, args.collection)


def main(argv: list[str] | None = None) -> int:
    parser = split_parser(__doc__, "routine 04", "split01_Tongji")
    parser.add_argument("--site", nargs="+", required=True, help="sites to include, e.g. Tongji or Yunnan Zhongnan HKU-SZH")
    parser.add_argument("--collection", nargs="+", required=True, help="collections to include, e.g. train-val test-inner-01")
    return split_main(parser, argv, "nme", plan)


if __name__ == "__main__":
    run_main(main)
