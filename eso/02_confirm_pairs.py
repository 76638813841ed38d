"""Routine 02: pair ESO volumes with masks and write the grouped dataset.

One sample per scan (site, phase, pid) of the archive manifest, written as
``{output_dir}/{site}/{phase}/{site}_{pid}_{phase}/`` with
``{ID}_volume.nii.gz`` (float32), ``{ID}_mask.nii.gz`` (uint8, on the volume
grid) and ``{ID}_info.yaml`` (site, phase, pid, subset, the metadata
attributes under ``attributes``). A volume without a mask is a valid sample:
no mask file is written. Masks on a permuted/flipped grid are reoriented
exactly; masks on another grid are refused unless --resample_mismatched_masks.
A patient without its pre or post scan is a warning.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from eso.archive import DESCRIPTOR_DIR, EsoRules, manifest_field_rules, pair_jobs, parse_archive_path
from utils.run.cli import run_main
from utils.dataset.routines import confirm_pairs_main


def main(argv: list[str] | None = None) -> int:
    return confirm_pairs_main(argv, __doc__, DESCRIPTOR_DIR / "archive.yaml", EsoRules.load, pair_jobs, parse_archive_path, manifest_field_rules)


if __name__ == "__main__":
    run_main(main)
