"""Routine 06: write subset index manifests ``{split}_{subsets}.xlsx`` from a split worksheet.

Each --subsets group (repeatable) gives one file holding the rows of the split
sheet (metadata attributes included) whose split label is in the group. If
any requested subset has no sample, nothing at all is written and the error
names it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from utils.run.cli import run_main
from utils.dataset.routines import index_manifests_main


def main(argv: list[str] | None = None) -> int:
    return index_manifests_main(argv, __doc__)


if __name__ == "__main__":
    run_main(main)
