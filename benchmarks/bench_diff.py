"""Benchmark the release diff (utils/diff_datasets.py) against its I/O floor.

One command: ``python benchmarks/bench_diff.py [--samples 4] [--shape 512 512 300] [--repeats 3]``.
Builds an old release of N grouped samples (float32 CT-like volume, uint8 mask of 24
vertebra-sized labels) and three new releases:

- *identical*: the same files (copies) — the diff hashes the compressed files and reads no voxel;
- *masks changed*: every mask with one label grown into its neighbour — the diff reads both masks
  of each sample and compares them label by label (Dice from one joint histogram);
- *all changed*: volumes and masks rewritten with changed voxels — both images of both releases read.

Prints median seconds of each diff (one worker, in this process, no xlsx/JSON writing) and of its
floor: hashing every file of both releases (identical) / decompressing the files the diff has to
read (the changed scenarios).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from benchmarks.bench_pipeline import timed
from utils.diff.fingerprint import file_sha256
from utils.diff.run import diff_datasets
from utils.files.nifti_io import load_nifti, save_nifti
from utils.files.sample_info import SampleDir, find_samples, write_info
from utils.archive.synthetic import affine_for, blob_stack_mask, ct_like_volume


def write_release(grouped: Path, n: int, shape: tuple[int, int, int], *, grow: bool = False, shift_volume: bool = False) -> None:
    affine = affine_for("LPS", (0.7, 0.7, 1.0))
    for i in range(n):
        mask = blob_stack_mask(shape, list(range(1, 25)))
        volume = ct_like_volume(mask, np.random.default_rng(i)).astype(np.float32)
        if grow:
            mask[(mask == 12) & (np.roll(mask, 3, axis=2) == 11)] = 11
        if shift_volume:
            volume[::7] += 1.0
        sample = SampleDir(grouped / f"s{i:03d}")
        save_nifti(sample.volume, volume, affine, dtype=np.float32)
        save_nifti(sample.mask, mask, affine, dtype=np.uint8)
        write_info(sample.info, {"ID": sample.id, "subject": sample.id})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--shape", type=int, nargs=3, default=(512, 512, 300))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    shape = tuple(args.shape)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_release(root / "old", args.samples, shape)
        shutil.copytree(root / "old", root / "identical")
        write_release(root / "masks", args.samples, shape, grow=True)
        for sample in find_samples(root / "masks"):  # same volumes as the old release
            shutil.copyfile(root / "old" / sample.id / sample.volume.name, sample.volume)
        write_release(root / "all", args.samples, shape, grow=True, shift_volume=True)
        files = {name: sorted(p for p in (root / name).rglob("*.nii.gz")) for name in ("old", "identical", "masks", "all")}
        rows = []
        for name, read in (("identical", []), ("masks", ["mask"]), ("all", ["volume", "mask"])):
            seconds = timed(lambda: diff_datasets(root / "old", root / name, show_progress=False), args.repeats)
            hashed = files["old"] + files[name]
            to_read = [p for p in hashed if any(p.name.endswith(f"_{kind}.nii.gz") for kind in read)]

            def floor() -> None:
                for path in hashed:
                    file_sha256(path)
                for path in to_read:
                    load_nifti(path)

            base = timed(floor, args.repeats)
            rows.append((name, seconds, base))
    print(f"| new release | diff (s) | floor: hash all + read changed (s) | ratio |  ({args.samples} samples of {shape}, median of {args.repeats})")
    print("|---|---|---|---|")
    for name, seconds, base in rows:
        print(f"| {name} | {seconds:.2f} | {base:.2f} | {seconds / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
