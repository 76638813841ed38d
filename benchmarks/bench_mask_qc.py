"""Benchmark the four mask-QC tools against their I/O floor and a naive full-slice reference.

One command: ``python benchmarks/bench_mask_qc.py [--repeats 3] [--quick]``.

Builds, in a temporary folder, a grouped sample with a 512x512x300 int16 CT-like volume
and a uint8 mask of 24 vertebra-shaped labels (body, arch, processes; 0.7x0.7x1.0 mm) with
specks, mislabelled voxels and holes, plus its 25 binary masks; and a second sample from the
real 512x512x214 VerSe mask ``../shared/realdata/verse/sub-gl003_dir-ax_seg-vert_msk.nii.gz``
when it is present. Every measurement runs in a fresh Python process (imports not timed) and
reports the median wall time and the peak resident memory of that process:

- I/O floor: read what the tool reads and write what it writes (python-isal gzip), no work;
- each tool's ``main`` on the sample, in place (the sample is restored before every run);
- naive reference: nibabel load, the tutorial's rule on full slices one label at a time with
  plain scipy (:mod:`utils.mask_qc_reference`), ``nib.save`` (nibabel's default gzip) of the
  mask and every binary mask; run once, on ``--naive_slices`` slices (default 60, the first ones
  holding labels; its per-slice cost hardly depends on the content) and extrapolated to all slices
  (the table says so). Its output is compared voxel for voxel with the tool's on those slices.

Targets (issue 3): morphology <= 3x floor and >= 10x faster than naive with identical output;
small-region report <= 2x floor; peak memory <= 5x one float32 volume.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # repository root

REAL_MASK = REPO.parent / "shared" / "realdata" / "verse" / "sub-gl003_dir-ax_seg-vert_msk.nii.gz"
CLOSE_ARGS = ["--kernel_size", "5", "5", "--filter_halfedge", "3", "--region_area_thresh", "2.0"]
OPEN_ARGS = ["--kernel_size", "2", "2", "--filter_halfedge", "3", "--region_area_thresh", "10"]
TOOLS = {
    "close": ("utils/morphological_close_on_slice_small_region.py", CLOSE_ARGS),
    "open": ("utils/morphological_open_on_slice_small_region.py", OPEN_ARGS),
    "threshold": ("utils/mask_thresholding.py", ["--thresh", "-140.0", "1000.0"]),
}


# --- the sample -----------------------------------------------------------------------------------------------------


def vertebra_column_mask(shape=(512, 512, 300), n_labels=24, seed=0, specks=1000, mislabels=300, holes=1000):
    """uint8 (I, J, K) Fortran-ordered mask: ``n_labels`` vertebrae stacked along k, with defects.

    Each vertebra: an elliptic body (~40x32 mm at 0.7 mm), an arch around the canal, a spinous and two
    transverse processes, ~80 % of its k-range (discs between). Defects: ``specks`` 1-4 voxel
    blobs of a label next to it, ``mislabels`` voxels of a neighbour label inside a body,
    ``holes`` 1-3 voxel holes.
    """
    rng = np.random.default_rng(seed)
    I, J, K = shape
    mask = np.zeros(shape, np.uint8, order="F")
    h, w, left = 150, 190, 60  # in-plane crop of one vertebra; the body centre is ``left`` voxels from its j start
    ii, jj = np.mgrid[-h // 2 : h // 2, -left : w - left].astype(np.float32)
    per = K / n_labels
    for v in range(n_labels):
        scale = 0.75 + 0.35 * v / n_labels
        ci, cj = int(I / 2 + 12 * np.sin(v / 3)), int(J / 2 - 30 + 20 * np.cos(v / 5))
        z0, z1 = int(round(v * per)), int(round((v + 0.8) * per))
        for z in range(z0, max(z1, z0 + 1)):
            t = (z - (z0 + z1 - 1) / 2) / max((z1 - z0) / 2, 1)
            s = scale * (0.85 + 0.15 * np.sqrt(max(1 - t * t, 0)))
            body = (ii / (28 * s)) ** 2 + (jj / (22 * s)) ** 2 <= 1
            arch_r = (ii / (22 * s)) ** 2 + ((jj - 40 * s) / (18 * s)) ** 2
            arch = (arch_r <= 1) & (arch_r >= 0.45)
            spinous = (np.abs(ii) <= 4 * s) & (jj >= 50 * s) & (jj <= 80 * s)
            transverse = (np.abs(jj - 30 * s) <= 4 * s) & (np.abs(ii) >= 18 * s) & (np.abs(ii) <= 50 * s)
            shape2d = body | arch | spinous | transverse
            sub = mask[ci - h // 2 : ci + h // 2, cj - left : cj + w - left, z]
            sub[shape2d] = v + 1
    fg = np.argwhere(mask > 0)
    for _ in range(specks):  # a small blob of the label a few voxels off its bone
        p = fg[rng.integers(len(fg))]
        label = mask[tuple(p)]
        q = p + np.r_[rng.integers(-25, 26, 2), rng.integers(-2, 3)]
        q = np.clip(q, 0, np.array(shape) - 2)
        size = rng.integers(1, 3, 3)
        size[2] = 1
        region = mask[q[0] : q[0] + size[0], q[1] : q[1] + size[1], q[2]]
        region[region == 0] = label
    for _ in range(mislabels):
        p = tuple(fg[rng.integers(len(fg))])
        mask[p] = min(max(int(mask[p]) + int(rng.choice([-1, 1])), 1), n_labels)
    for _ in range(holes):
        p = fg[rng.integers(len(fg))]
        mask[p[0] : p[0] + int(rng.integers(1, 3)), p[1], p[2]] = 0
    return mask


def build_sample(root: Path, sid: str, mask: np.ndarray, affine: np.ndarray) -> Path:
    """Grouped sample folder: info yaml, int16 CT-like volume (1 % of the mask over air), mask, binary masks 0..max label."""
    from utils.binary_masks import binary_mask_of
    from utils.label_stats import label_boxes
    from utils.labels import LabelMap
    from utils.nifti_io import save_nifti
    from utils.sample_info import SampleDir, write_info
    from utils.synthetic import ct_like_volume

    shorts = {lab.index: lab.short for lab in LabelMap.load(REPO / "descriptors/verse/label_map.yaml")}
    sample = SampleDir(root / "VerSe20" / "train" / sid)
    sample.path.mkdir(parents=True)
    rng = np.random.default_rng(1)
    volume = np.asfortranarray(ct_like_volume(mask, rng))
    fg = np.flatnonzero(mask.reshape(-1, order="F"))
    hollow = rng.choice(fg, size=len(fg) // 100, replace=False)  # 1 % of the mask over air: thresholding removes them
    volume.reshape(-1, order="F")[hollow] = -400
    save_nifti(sample.volume, volume, affine, dtype=np.int16)
    save_nifti(sample.mask, mask, affine, dtype=np.uint8)
    boxes = label_boxes(mask)
    for idx in range(int(mask.max()) + 1):
        binary = (mask == 0).view(np.uint8) if idx == 0 else binary_mask_of(mask, idx, boxes.get(idx))
        save_nifti(sample.binary_mask(f"{idx:02d}_{shorts[idx]}"), binary, affine, dtype=np.uint8)
    write_info(sample.info, {"ID": sid})
    return sample.path


# --- measurements in a fresh process ----------------------------------------------------------------------------------


def load_script(rel_path: str):
    """Import a tool script as a module (its ``main`` is then called in this process)."""
    spec = importlib.util.spec_from_file_location("bench_" + Path(rel_path).stem, REPO / rel_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _maxrss_mb() -> float:
    """Peak resident memory of this process in MB.

    ``VmHWM`` of /proc/self/status, which starts afresh at exec; ``ru_maxrss`` would carry over the
    parent's peak into the child on Linux.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def worker(kind: str, root: Path, sample_dir: Path, scratch: Path, naive_slices: int) -> dict:
    """Run one measurement in this process; return seconds and memory (imports are done before timing)."""
    import functools

    import nibabel as nib
    import pandas as pd

    from utils.binary_masks import binary_mask_of
    from utils.label_stats import label_boxes
    from utils.mask_qc import REPORT_COLUMNS, small_region_rows
    from utils.mask_qc_reference import naive_repair_mask, naive_small_region_count
    from utils.nifti_io import load_nifti, read_mask, read_volume, save_nifti
    from utils.sample_info import SampleDir
    from utils.slice_morphology import SliceRepair
    from utils.spreadsheet import write_sheets

    sample = SampleDir(sample_dir)
    binaries = sample.binary_masks()
    scripts = {name: load_script(path) for name, (path, _) in TOOLS.items()}
    report_script = load_script("utils/small_connected_region_detect.py")
    rows = small_region_rows(sample, root, 100.0, 26) if kind == "floor_report" else None
    extra: dict = {}

    def write_outputs(mask, img):
        boxes = label_boxes(mask)
        for idx, (short, path) in binaries.items():
            binary = (mask == 0).view(np.uint8) if idx == 0 else binary_mask_of(mask, idx, boxes.get(idx))
            save_nifti(path, binary, img.affine, dtype=np.uint8, template=img, descrip="")
        save_nifti(sample.mask, mask, img.affine, dtype=np.uint8, template=img)

    def floor(with_volume: bool):
        img = load_nifti(sample.mask)
        mask = read_mask(img, sample.mask)
        if with_volume:
            read_volume(load_nifti(sample.volume), sample.volume)
        write_outputs(mask, img)

    def naive(mode: str):
        img = nib.load(sample.mask)
        mask = np.asarray(img.dataobj).astype(np.uint8)
        repair = SliceRepair(mode, (5, 5) if mode == "close" else (2, 2), 2.0 if mode == "close" else 10.0)
        n = mask.shape[2] if naive_slices <= 0 else min(naive_slices, mask.shape[2])
        first = max(0, min(int(np.flatnonzero(mask.any(axis=(0, 1)))[0]), mask.shape[2] - n))
        slices = range(first, first + n)
        t0 = time.perf_counter()
        fused = naive_repair_mask(mask, img.affine, repair, 3, labels=sorted(binaries), slices=slices)
        extra["per_slice"] = (time.perf_counter() - t0) / n
        extra["slices"] = [slices.start, slices.stop]
        np.save(scratch / f"naive_{mode}.npy", fused[:, :, slices.start : slices.stop])
        out = scratch / "naive_out"
        out.mkdir(exist_ok=True)
        for idx, (short, path) in binaries.items():
            nib.save(nib.Nifti1Image((fused == idx).astype(np.uint8), img.affine), out / path.name)
        nib.save(nib.Nifti1Image(fused, img.affine), out / sample.mask.name)
        extra["n_slices_total"] = mask.shape[2]

    def floor_report():
        read_mask(load_nifti(sample.mask), sample.mask)
        write_sheets(scratch / "floor.xlsx", {"Manifest": pd.DataFrame(rows, columns=list(REPORT_COLUMNS))})

    def naive_report():
        img = nib.load(sample.mask)
        mask = np.asarray(img.dataobj).astype(np.uint8)
        sizes = naive_small_region_count(mask, img.affine, 100.0)
        extra["sizes"] = {str(k): v for k, v in sizes.items()}

    quiet = ["--no_pbar", "-q"]
    jobs = {
        "floor_repair": lambda: floor(False),
        "floor_threshold": lambda: floor(True),
        "floor_report": floor_report,
        "report": lambda: report_script.main(
            ["--root_dir", str(root), "--region_volume_thresh", "100.0", "--output_manifest", str(scratch / "report.xlsx"), *quiet]
        ),
        "naive_close": functools.partial(naive, "close"),
        "naive_open": functools.partial(naive, "open"),
        "naive_report": naive_report,
        **{
            name: functools.partial(
                scripts[name].main, ["--root_dir", str(root), "--output_dir", str(root), *args, *quiet]
            )
            for name, (_, args) in TOOLS.items()
        },
    }
    base = _maxrss_mb()
    start = time.perf_counter()
    code = jobs[kind]()
    seconds = time.perf_counter() - start
    if isinstance(code, int) and code != 0:
        raise RuntimeError(f"{kind} exited with {code}")
    if kind.startswith("naive_") and kind != "naive_report" and extra["slices"][1] - extra["slices"][0] < extra["n_slices_total"]:
        n = extra["slices"][1] - extra["slices"][0]
        extra["measured_seconds"] = seconds
        seconds += extra["per_slice"] * (extra["n_slices_total"] - n)  # extrapolated to every slice
    return {"seconds": seconds, "peak_mb": _maxrss_mb(), "base_mb": base, **extra}


def measure(kind: str, root: Path, sample_dir: Path, pristine: Path, scratch: Path, repeats: int, naive_slices: int) -> dict:
    """Median over ``repeats`` fresh processes; the sample's masks and info are restored before each."""
    runs = []
    for _ in range(repeats):
        for f in pristine.iterdir():
            shutil.copyfile(f, sample_dir / f.name)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker", kind, "--_root", str(root),
               "--_sample", str(sample_dir), "--_scratch", str(scratch), "--naive_slices", str(naive_slices)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        if proc.returncode != 0:
            raise RuntimeError(f"measurement {kind} failed:\n{proc.stderr[-3000:]}")
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    out = dict(runs[-1])
    out["seconds"] = statistics.median(r["seconds"] for r in runs)
    out["peak_mb"] = max(r["peak_mb"] for r in runs)
    out["repeats"] = repeats
    return out


def bench_sample(label: str, mask: np.ndarray, affine: np.ndarray, tmp: Path, repeats: int, naive_slices: int) -> list[str]:
    """Build one sample, run every measurement, check identity, return markdown table lines."""
    from utils.mask_qc import read_label_mask
    from utils.spreadsheet import read_sheet

    root = tmp / label / "grouped"
    sample_dir = build_sample(root, "bench001", mask, affine)
    pristine = tmp / label / "pristine"
    pristine.mkdir()
    for f in sample_dir.iterdir():
        if f.name != f"{sample_dir.name}_volume.nii.gz":
            shutil.copyfile(f, pristine / f.name)
    scratch = tmp / label / "scratch"
    scratch.mkdir()
    volume_f32_mb = mask.size * 4 / 2**20
    res = {}
    outputs = {}
    for kind in ("floor_repair", "close", "open", "floor_report", "report", "floor_threshold", "threshold"):
        res[kind] = measure(kind, root, sample_dir, pristine, scratch, repeats, naive_slices)
        if kind in ("close", "open", "threshold"):
            outputs[kind] = read_label_mask(sample_dir / f"{sample_dir.name}_mask.nii.gz")[1]
        if kind == "report":
            outputs[kind] = read_sheet(scratch / "report.xlsx")
        print(f"  {label}: {kind} {res[kind]['seconds']:.2f} s", file=sys.stderr, flush=True)
    for kind in ("naive_close", "naive_open", "naive_report"):
        res[kind] = measure(kind, root, sample_dir, pristine, scratch, 1, naive_slices)
        print(f"  {label}: {kind} {res[kind]['seconds']:.2f} s", file=sys.stderr, flush=True)
    identical = {}
    for mode in ("close", "open"):
        s0, s1 = res[f"naive_{mode}"]["slices"]
        identical[mode] = bool(np.array_equal(np.load(scratch / f"naive_{mode}.npy"), outputs[mode][:, :, s0:s1]))
    sheet = outputs["report"]
    fast_sizes = {str(k): sorted(int(v) for v in g["voxel_count"]) for k, g in sheet.groupby("label_index")}
    identical["report"] = fast_sizes == {k: sorted(v) for k, v in res["naive_report"]["sizes"].items()}
    changed = {m: int((outputs[m] != mask).sum()) for m in ("close", "open", "threshold")}

    def row(name, r, floor=None, naive=None, note=""):
        ratio = f"{r['seconds'] / res[floor]['seconds']:.2f}x" if floor else ""
        speed = f"{res[naive]['seconds'] / r['seconds']:.0f}x" if naive else ""
        mem = f"{r['peak_mb']:.0f} ({r['peak_mb'] / volume_f32_mb:.2f}x)"
        return f"| {label} | {name} | {r['seconds']:.2f} | {ratio} | {speed} | {mem} | {note} |"

    def naive_note(kind):
        r = res[kind]
        if "measured_seconds" in r:
            n = r["slices"][1] - r["slices"][0]
            return f"run once on {n} of {r['n_slices_total']} slices ({r['measured_seconds']:.1f} s), extrapolated"
        return "run once, all slices"

    lines = [
        row("I/O floor: read mask, write mask + binary masks", res["floor_repair"]),
        row("close (VerSe 5x5, 2.0 mm², N=3)", res["close"], "floor_repair", "naive_close",
            f"{changed['close']} voxels relabelled; identical to naive: {identical['close']}"),
        row("open (ESO 2x2, 10 mm², N=3)", res["open"], "floor_repair", "naive_open",
            f"{changed['open']} voxels relabelled; identical to naive: {identical['open']}"),
        row("naive close (full slices, per label, nib.save)", res["naive_close"], note=naive_note("naive_close")),
        row("naive open (full slices, per label, nib.save)", res["naive_open"], note=naive_note("naive_open")),
        row("I/O floor: read mask, write xlsx", res["floor_report"]),
        row("small-region report (100 mm³, 26-conn.)", res["report"], "floor_report", "naive_report",
            f"{len(sheet)} regions; same as naive: {identical['report']}"),
        row("naive report (full-volume labelling per label)", res["naive_report"], note="run once"),
        row("I/O floor: read mask + volume, write mask + binary masks", res["floor_threshold"]),
        row("thresholding [-140, 1000]", res["threshold"], "floor_threshold", note=f"{changed['threshold']} voxels set to 0"),
    ]  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="fresh-process runs per tool and floor (median; default 3)")
    parser.add_argument("--quick", action="store_true", help="1 repeat, naive reference on 16 slices (extrapolated)")
    parser.add_argument("--naive_slices", type=int, default=60,
                        help="slices of the naive run, extrapolated to all (default %(default)s; 0: all slices, ~6 min more)")  # fmt: skip
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    parser.add_argument("--_root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_sample", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_scratch", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker:
        print(json.dumps(worker(args._worker, args._root, args._sample, args._scratch, args.naive_slices)))
        return 0
    from utils.nifti_io import GZIP_BACKEND, load_nifti, read_mask
    from utils.synthetic import affine_for

    repeats, naive_slices = (1, 16) if args.quick else (args.repeats, args.naive_slices)
    samples = [("synthetic", vertebra_column_mask(), affine_for("LPS", (0.7, 0.7, 1.0), origin=(180.0, 180.0, -150.0)))]
    if REAL_MASK.is_file():
        img = load_nifti(REAL_MASK)
        samples.append(("real gl003", read_mask(img, REAL_MASK), img.affine))
    lines = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for label, mask, affine in samples:
            lines += bench_sample(label, mask, affine, Path(tmp), repeats, naive_slices)
    print(f"mask-QC benchmark, {time.strftime('%Y-%m-%d')}, gzip backend {GZIP_BACKEND}, median of {repeats} fresh processes "
          f"(naive: 1 run), peak = max RSS of the process (imports included; x = multiples of one float32 volume); "
          f"total {time.perf_counter() - t0:.0f} s")  # fmt: skip
    for label, mask, _ in samples:
        print(f"- {label}: mask {mask.shape}, labels 1..{int(mask.max())}")
    print("| sample | step | seconds | vs floor | naive / tool | peak MB | notes |")
    print("|---|---|---|---|---|---|---|")
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
