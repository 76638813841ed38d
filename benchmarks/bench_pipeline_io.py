"""Benchmark the NIfTI I/O and the per-sample work of routines 02 and 04 on a realistic scan.

One command: ``python benchmarks/bench_pipeline_io.py [--repeats 3] [--shape 512 512 300]``.
Builds a 512x512x300 int16 CT-like volume and a uint8 mask with 24 vertebra-sized labels in a
temporary folder and prints median seconds of:

- writing / reading the float32 volume with this project's writer (python-isal gzip) and with
  nibabel's default (zlib);
- routine 02's work for one sample (read int16 volume + mask, check, align, write float32 + uint8);
- routine 04's work for one sample (27 binary masks on bounding-box crops).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from utils.binary_masks import extract_sample_binary_masks
from utils.labels import LabelMap
from utils.nifti_io import GZIP_BACKEND, load_nifti, read_volume, save_nifti
from utils.pairing import PairJob, write_pair
from utils.sample_info import SampleDir
from utils.synthetic import affine_for, blob_stack_mask, ct_like_volume, write_raw_nifti

REPO = Path(__file__).resolve().parents[1]


def timed(func, repeats: int) -> float:
    """Median wall time of ``func()`` in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shape", type=int, nargs=3, default=(512, 512, 300))
    args = parser.parse_args(argv)
    shape = tuple(args.shape)
    affine = affine_for("LPS", (0.3, 0.3, 1.0))
    mask = blob_stack_mask(shape, list(range(1, 25)), axis=2, radius_fraction=0.08, specks=50, holes=50)
    volume = ct_like_volume(mask)
    fvol = np.asfortranarray(volume, dtype=np.float32)  # memory order of an array read from NIfTI
    label_map = LabelMap.load(REPO / "descriptors/verse/label_map.yaml")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src_vol = write_raw_nifti(tmp / "sub-x_ct.nii.gz", volume, affine)
        src_msk = write_raw_nifti(tmp / "sub-x_seg-vert_msk.nii.gz", mask, affine)
        out = tmp / "out.nii.gz"
        rows.append((f"write float32 volume, this project ({GZIP_BACKEND})", timed(lambda: save_nifti(out, fvol, affine, dtype=np.float32), args.repeats)))
        rows.append(("write float32 volume, nibabel default (zlib)", timed(lambda: nib.save(nib.Nifti1Image(fvol, affine), tmp / "nib.nii.gz"), args.repeats)))
        rows.append((f"read float32 volume, this project ({GZIP_BACKEND})", timed(lambda: read_volume(load_nifti(out), out), args.repeats)))
        rows.append(("read float32 volume, nibabel default (zlib)", timed(lambda: nib.load(tmp / "nib.nii.gz").get_fdata(dtype=np.float32), args.repeats)))
        sample_dir = tmp / "grouped" / "x"
        job = PairJob(sample_dir=sample_dir, volume=src_vol, mask=src_msk, info={}, allowed_labels=tuple(range(29)), overwrite=True)
        rows.append(("routine 02, one sample (read, check, align, write)", timed(lambda: write_pair(job), args.repeats)))
        rows.append(("routine 04, one sample (27 binary masks)", timed(lambda: extract_sample_binary_masks(SampleDir(sample_dir), label_map), args.repeats)))
    print(f"shape {shape}, median of {args.repeats} runs, {time.strftime('%Y-%m-%d')}")
    print("| step | seconds |")
    print("|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
