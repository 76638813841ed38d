"""Routine 05: add a random train/val/test split of one site as a worksheet of dataset_manifest.xlsx.

The sheet --split_name copies the ``Manifest`` rows of --site and appends a
column of the same name holding ``train``, ``val`` or ``test``. Samples are
grouped by ``{site}_{pid}`` first, so a patient's pre- and post-therapy scans
always share a subset; then a two-stage split: --test_ratio of the patients go
to test, --val_ratio of the rest to val, the others to train. The assignment
depends only on --random_seed and the set of patients (hash-based, no random
generator), so re-running gives the same sheet. --test_ratio 1.0 --val_ratio
0.0 puts a whole external site in test.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from eso.archive import DESCRIPTOR_DIR, EsoRules
from eso.split import site_split
from utils.run.cli import run_main
from utils.review.split_routine import SplitRule, split_main, split_parser


def plan(args: argparse.Namespace) -> SplitRule:
    """The random split of ``--site`` (a code or a site folder name known to ``--rules``)."""
    rules = EsoRules.load(args.rules)
    site = rules.site_code(args.site)
    if site is None:
        raise ValueError(f"--site {args.site!r} is not a known site (expected one of {list(rules.sites.values())} or {list(rules.sites)})")
    return lambda manifest: site_split(manifest, site, args.test_ratio, args.val_ratio, args.random_seed)


def main(argv: list[str] | None = None) -> int:
    parser = split_parser(__doc__, "routine 04", "split01_TJ")
    parser.add_argument("--site", required=True, help="site code TJ, SYTH or XY (a site folder name such as tongji is accepted too)")
    parser.add_argument("--test_ratio", type=float, required=True, help="share of the site's patients in test, in [0, 1]")
    parser.add_argument("--val_ratio", type=float, required=True, help="share of the remaining patients in val, in [0, 1]")
    parser.add_argument("--random_seed", type=int, default=0, help="seed of the split (default 0)")
    parser.add_argument("--rules", type=Path, default=DESCRIPTOR_DIR / "archive.yaml", help="archive rules (site names and codes)")
    return split_main(parser, argv, "eso", plan)


if __name__ == "__main__":
    run_main(main)
