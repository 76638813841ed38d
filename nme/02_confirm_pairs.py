"""Routine 02: pair NME images with masks and write the grouped dataset.

Pairs ``images{Tr,Vd,Ts}/{seq}_{pid}[_0000]`` with ``labels{Tr,Vd,Ts}/{seq}_{pid}``
of the same collection and writes each sample to
``{output_dir}/{site}/{collection}/{subset}/{seq}_{pid}/`` as
``{seq}_{pid}_volume.nii.gz`` (float32), ``{seq}_{pid}_mask.nii.gz`` (uint8, on
the volume grid) and ``{seq}_{pid}_info.yaml``. Masks on a permuted/flipped grid
are reoriented exactly; masks on another grid are refused unless
--resample_mismatched_masks is given. A mask without image or an image without
mask is reported; every good sample is still written and the exit code is 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from nme.archive import DESCRIPTOR_DIR, NmeRules, pair_jobs, parse_archive_path
from utils.run.cli import run_main
from utils.dataset.routines import confirm_pairs_main


def main(argv: list[str] | None = None) -> int:
    return confirm_pairs_main(argv, __doc__, DESCRIPTOR_DIR / "archive.yaml", NmeRules.load, pair_jobs, parse_archive_path)


if __name__ == "__main__":
    run_main(main)
