"""ESO mask repair: slice-wise opening of small specks in every label's binary mask, then label fusion.

For every sample below --root_dir, every label's binary mask (background 0
included) is processed per axial slice: foreground components smaller than
--region_area_thresh mm² (specks) take the value of an opening with a
--kernel_size all-ones element; everything else is kept. Opening the
background mask likewise fills small holes. The binary masks are fused back
into {ID}_mask.nii.gz: a voxel in several labels (or none) gets the candidate
label (or any label) with the most voxels in its (2 * --filter_halfedge + 1)²
in-slice window. Every existing binary mask {ID}_mask_XX_short.nii.gz is
rewritten from the fused mask, and the info yaml's history records the step
and its parameters; re-running with the same parameters does nothing (see
--force). Thresholding against the volume is a separate tool
(utils/mask_thresholding.py).

  python utils/morphological_open_on_slice_small_region.py --root_dir root_dir/grouped \\
      --output_dir root_dir/grouped --kernel_size 2 2 --filter_halfedge 3 --region_area_thresh 10
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from utils.run.cli import run_main
from utils.maskqc.steps import repair_main


def main(argv: list[str] | None = None) -> int:
    return repair_main("open", __doc__, argv)


if __name__ == "__main__":
    run_main(main)
