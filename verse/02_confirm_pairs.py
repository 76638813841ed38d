"""Routine 02: pair VerSe volumes with masks and write the grouped dataset.

Keeps archive files whose suffix contains ``ct`` or ``vert_msk``, pairs them per
scan (subject, split), writes one sample per scan under the first archive that
holds it (VerSe19 before VerSe20) as ``{output_dir}/{archive}/{subset}/{ID}/``
with ``{ID}_volume.nii.gz`` (float32), ``{ID}_mask.nii.gz`` (uint8, on the
volume grid) and ``{ID}_info.yaml``. Masks on a permuted/flipped grid are
reoriented exactly; masks on another grid are refused unless
--resample_mismatched_masks is given.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from verse.archive import DESCRIPTOR_DIR, VerseRules, manifest_field_rules, pair_jobs, parse_archive_path
from utils.run.cli import run_main
from utils.dataset.routines import confirm_pairs_main


def main(argv: list[str] | None = None) -> int:
    return confirm_pairs_main(argv, __doc__, DESCRIPTOR_DIR / "archive.yaml", VerseRules.load, pair_jobs, parse_archive_path, manifest_field_rules)


if __name__ == "__main__":
    run_main(main)
