"""Routine 03: split every grouped multi-label mask into one binary mask per label of the label map.

Writes ``{ID}_mask_{index:02d}_{short}.nii.gz`` (uint8) for every label of
--label_explanation (NME: ``_00_Bg`` and ``_01_NME``), also for labels absent
from the mask (all zero). A mask value missing from the label map is an error
for that sample. Re-running rewrites the same files.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from utils.run.cli import run_main
from utils.dataset.routines import extract_binary_masks_main


def main(argv: list[str] | None = None) -> int:
    return extract_binary_masks_main(argv, __doc__)


if __name__ == "__main__":
    run_main(main)
