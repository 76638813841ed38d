"""Benchmark the QC report's per-sample work on a realistic scan.

One command: ``python benchmarks/bench_qc_report.py [--repeats 3] [--shape 512 512 300]``.
Builds a grouped sample with a float32 CT-like volume and a uint8 mask of 24 vertebra-sized
labels (0.7x0.7x1.0 mm), stored LPS (axial slices) and PIR (sagittal slices, so two of the
three planes are strided in memory), plus the real VerSe gl003 mask (512x512x214, with a
synthetic CT-like volume) when ``../shared/realdata`` is present. Prints median seconds of:

- reading: the volume and the mask decompressed and checked (what any tool pays);
- the report's work beyond reading: label counts and boxes, the three planes, windowing,
  overlay, text, PNG encoding and writing;
- the PNG size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from benchmarks.bench_pipeline import timed
from utils.labels.label_maps import LabelMap
from utils.files.nifti_io import load_nifti, read_mask, save_nifti
from utils.report.dataset_profile import available_profiles
from utils.report.sample import SampleJob, report_sample
from utils.files.sample_info import SampleDir, write_info
from utils.archive.synthetic import affine_for, blob_stack_mask, ct_like_volume

REPO = Path(__file__).resolve().parents[1]
REAL_MASK = REPO.parent / "shared/realdata/verse/sub-gl003_dir-ax_seg-vert_msk.nii.gz"


def write_sample(folder: Path, sid: str, mask: np.ndarray, affine: np.ndarray) -> SampleDir:
    """A grouped sample folder with ``{ID}_volume`` (float32), ``{ID}_mask`` (uint8) and the info yaml."""
    sample = SampleDir(folder / sid)
    sample.path.mkdir(parents=True)
    volume = np.asfortranarray(ct_like_volume(mask), dtype=np.float32)
    save_nifti(sample.volume, volume, affine, dtype=np.float32)
    save_nifti(sample.mask, np.asfortranarray(mask), affine, dtype=np.uint8)
    write_info(sample.info, {"ID": sid, "archive": "bench", "subset": "train", "history": []})
    return sample


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shape", type=int, nargs=3, default=(512, 512, 300))
    args = parser.parse_args(argv)
    profile = available_profiles()["verse"]
    label_map = LabelMap.load(REPO / "descriptors/verse/label_map.yaml")
    mask = blob_stack_mask(tuple(args.shape), list(range(1, 25)), axis=2, radius_fraction=0.08)
    cases = [("synthetic LPS", mask, affine_for("LPS", (0.7, 0.7, 1.0)))]
    # the same scan stored with sagittal slices: array axes (P, I, R)
    cases.append(("synthetic PIR", np.ascontiguousarray(np.transpose(mask, (1, 2, 0))[:, ::-1, ::-1]), affine_for("PIR", (0.7, 1.0, 0.7))))
    if REAL_MASK.is_file():
        real_img = load_nifti(REAL_MASK)
        cases.append(("real gl003", read_mask(real_img, REAL_MASK), real_img.affine))
    print("| sample | shape | read volume + mask (s) | report work beyond reading (s) | PNG kB |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i, (name, data, affine) in enumerate(cases):
            sample = write_sample(tmp / "grouped", f"s{i}", data, affine)
            job = SampleJob(tmp / "grouped", tmp / "qc", profile.group_by, profile.window, label_map)

            def read() -> None:
                load_nifti(sample.volume)
                read_mask(load_nifti(sample.mask), sample.mask)

            t_read = timed(read, args.repeats)
            renders = [report_sample(sample, job) for _ in range(args.repeats)]
            t_render = statistics.median(r.seconds["render"] for r in renders)
            print(f"| {name} | {'x'.join(map(str, data.shape))} | {t_read:.2f} | {t_render:.2f} | {renders[0].image_bytes / 1000:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
