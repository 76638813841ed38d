"""Routine 05 (cross-site): add a random split over all sites to dataset_manifest.xlsx.

Samples of the predefined sites (``predefined_sites`` in
descriptors/nme/archive.yaml: Tongji) keep their archive subset, i.e. exactly
the split01_Tongji assignment, read from the ``subset`` column (the split01
sheet need not exist). The samples of all other sites are pooled, grouped by
patient (pid) and split in two stages: --test_ratio of the patients to test,
then --val_ratio of the rest to val. The split depends only on --random_seed
and the sorted pids (hash-based, no random-number generator). Re-running
replaces the sheet with the same content.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from nme.archive import DESCRIPTOR_DIR, NmeRules
from nme.splits import cross_site_split
from utils.run.cli import run_main
from utils.review.split_routine import SplitRule, split_main, split_parser


def plan(args: argparse.Namespace) -> SplitRule:
    """The cross-site split; the predefined sites come from ``--rules``."""
    rules = NmeRules.load(args.rules)
    return lambda manifest: cross_site_split(manifest, rules.predefined_sites, args.test_ratio, args.val_ratio, args.random_seed)


def main(argv: list[str] | None = None) -> int:
    parser = split_parser(__doc__, "routine 04", "split07_Mix")
    parser.add_argument("--test_ratio", type=float, required=True, help="share of pooled patients in test (first stage), e.g. 0.3")
    parser.add_argument("--val_ratio", type=float, required=True, help="share of the remaining pooled patients in val (second stage), e.g. 0.2")
    parser.add_argument("--random_seed", type=int, required=True, help="seed; the same seed and pids give the same split")
    parser.add_argument("--rules", type=Path, default=DESCRIPTOR_DIR / "archive.yaml", help="(addition) rules naming the predefined sites")
    return split_main(parser, argv, "nme", plan)


if __name__ == "__main__":
    run_main(main)
