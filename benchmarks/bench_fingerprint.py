"""Our export with nnU-Net's fingerprint and MONAI's data stats, against nnU-Net's extractor and MONAI's analyser.

One command (in an environment with nnunetv2 and monai for the peer columns; without them only our
side and the I/O floor are timed)::

    python benchmarks/bench_fingerprint.py                 # 4 scans of 512x512x300, workers 1 and the core count
    python benchmarks/bench_fingerprint.py --scans 2 --shape 256 256 128   # a quick look

It writes, in a temporary folder (``BENCH_TMP`` if set), a grouped dataset of N CT-like scans (float32
volumes of Hounsfield-like integers, as routine 02 writes them from int16 archives, each with its own
noise; 0.7x0.7x1.0 mm, LPS; the same 24-vertebra uint8 mask), all in one ``train`` split, and exports
it once to get the nnU-Net raw folder and the MONAI datalist the peers read. Then, for each number
of workers k (1, then the core count), every command runs in a fresh process, as a user runs it, on
warm files (the page cache holds every scan: the floor reads them first):

- **I/O floor**: reading every image and label once as the export does (python-isal, CRC checked),
  nothing else, in one process whatever k; imports not timed;
- **ours, no statistics**: ``utils/export_dataset.py --format satds --workers k``: the same reading and
  checks of every case, no statistics (what the statistics add is the difference to the next row);
- **ours, nnU-Net**: ``utils/export_dataset.py --format nnunetv2 --workers k`` into a new folder: the
  whole export (checks, hard links, dataset.json) with the fingerprint;
- **nnUNetv2_extract_fingerprint -d ID -np k --clean** on the exported raw folder; its file is
  compared with ours byte for byte;
- **ours, MONAI**: ``utils/export_dataset.py --format monai --workers k`` (datalist and data stats);
- **DataAnalyzer** (``worker=k - 1`` loader processes, CPU, AutoRunner's parameters) on the exported
  datalist; every number is compared with our data stats (1e-4 relative).

Each row: wall seconds, CPU seconds of the command and every process it started (less distorted by
other load on a shared machine), peak memory of its largest process, the ratio to the floor and the
peer's time divided by ours.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # repository root

DATASET_ID = 521
SPLIT = "bench"


def make_dataset(root: Path, n_scans: int, shape: tuple[int, int, int]) -> Path:
    """``root/grouped``: N scans with their info yamls, the dataset manifest and split sheet ``bench`` (all train)."""
    from utils.dataset.manifest import build_dataset_manifest
    from utils.files.nifti_io import save_nifti
    from utils.files.sample_info import SampleDir, write_info
    from utils.dataset.splits import write_split_sheet
    from utils.files.spreadsheet import read_sheet
    from utils.archive.synthetic import affine_for, ct_like_volume, vertebra_column_mask

    mask = vertebra_column_mask(shape) if tuple(shape) == (512, 512, 300) else _small_mask(shape)
    affine = affine_for("LPS", (0.7, 0.7, 1.0), origin=(180.0, 180.0, -150.0))
    first_mask = None
    for i in range(n_scans):
        sample = SampleDir(root / "grouped" / f"bench{i:03d}")
        volume = np.asfortranarray(ct_like_volume(mask, np.random.default_rng(i + 1)))
        save_nifti(sample.volume, volume, affine, dtype=np.float32)
        if first_mask is None:
            save_nifti(sample.mask, mask, affine, dtype=np.uint8)
            first_mask = sample.mask
        else:
            sample.mask.parent.mkdir(parents=True, exist_ok=True)
            os.link(first_mask, sample.mask)
        write_info(sample.info, {"ID": sample.path.name, "subject": f"s{i:03d}", "split": "training", "in_verse19": False, "in_verse20": True})
        print(f"  wrote scan {i + 1}/{n_scans}", file=sys.stderr, flush=True)
    manifest = root / "grouped" / "dataset_manifest.xlsx"
    report = build_dataset_manifest(root / "grouped", manifest, ["subject", "split", "in_verse19", "in_verse20"], show_progress=False)
    if report.errors:
        raise RuntimeError(f"manifest: {report.errors}")
    sheet = read_sheet(manifest)
    write_split_sheet(manifest, SPLIT, sheet, ["train"] * len(sheet))
    return manifest


def _small_mask(shape: tuple[int, int, int]) -> np.ndarray:
    from utils.archive.synthetic import blob_stack_mask

    return np.asfortranarray(blob_stack_mask(shape, list(range(1, 25)), axis=2))


_MEASURE = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"code": proc.returncode, "seconds": wall, "cpu": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024,
                  "stdout": proc.stdout[-20000:], "stderr": proc.stderr[-3000:]}))
"""


def run(argv: list, env: dict | None = None) -> dict:
    """Run a command; its wall seconds, and the CPU seconds and peak MB of it and every process it started.

    A small Python process starts the command and reads its children's resource use: a process
    forked from this (larger) one would report this one's peak memory as its own.
    """
    proc = subprocess.run([sys.executable, "-c", _MEASURE, *map(str, argv)], cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"measuring {argv}: {proc.stderr[-3000:]}")
    res = json.loads(proc.stdout)
    if res["code"] != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} exited {res['code']}:\n{res['stdout'][-2000:]}\n{res['stderr']}")
    return {"seconds": res["seconds"], "cpu": res["cpu"], "peak_mb": res["peak_mb"], "output": res["stdout"]}


_FLOOR = """
import json, sys, time
sys.path.insert(0, {repo!r})
import numpy as np
from utils.files.nifti_io import load_nifti
files = {files!r}
cpu, start = time.process_time(), time.perf_counter()
for path in files:
    np.asanyarray(load_nifti(path).dataobj)
print(json.dumps({{"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu}}))
"""

_ANALYZER = """
import json, logging, sys, time
logging.disable(logging.INFO)
from monai.apps.auto3dseg import DataAnalyzer
start = time.perf_counter()
DataAnalyzer({datalist!r}, {dataroot!r}, output_path={output!r}, device="cpu", worker={worker}, do_ccp=False).get_all_case_stats()
print(json.dumps({{"seconds": time.perf_counter() - start}}))
"""


def floor(files: list[Path]) -> dict:
    """Reading every file once with the export's reader, in a fresh process (imports not timed)."""
    res = run([sys.executable, "-c", _FLOOR.format(repo=str(REPO), files=[str(f) for f in files])])
    inner = json.loads(res["output"].strip().splitlines()[-1])
    return {**res, "seconds": inner["seconds"], "cpu": inner["cpu"]}


def export(manifest: Path, out: Path, formats: list[str], workers: int) -> dict:
    return run([sys.executable, "utils/export_dataset.py", "--manifest_file", manifest, "--split_name", SPLIT, "--output_dir", out,
                "--dataset", "verse", "--dataset_id", str(DATASET_ID), "--format", *formats, "--workers", str(workers), "--no_pbar", "-q"])  # fmt: skip


def nnunet_extract(raw_root: Path, preprocessed: Path, workers: int) -> dict:
    env = dict(os.environ, nnUNet_raw=str(raw_root), nnUNet_preprocessed=str(preprocessed), nnUNet_results=str(preprocessed.parent / "results"))
    cli = Path(sys.executable).with_name("nnUNetv2_extract_fingerprint")
    return run([str(cli), "-d", str(DATASET_ID), "-np", str(workers), "--clean"], env=env)


def data_analyzer(folder: Path, output: Path, workers: int) -> dict:
    output.parent.mkdir(parents=True, exist_ok=True)
    code = _ANALYZER.format(datalist=str(folder / "datalist.json"), dataroot=str(folder), output=str(output), worker=max(0, workers - 1))
    return run([sys.executable, "-c", code])


def same_data_stats(ours: Path, theirs: Path) -> bool:
    """Every number of our data_stats.yaml within 1e-4 relative of DataAnalyzer's (file paths left out)."""
    import yaml

    def numbers(doc, path=""):
        if isinstance(doc, dict):
            return {k: numbers(v) for k, v in doc.items() if not str(k).endswith("filepath")}
        if isinstance(doc, list):
            return [numbers(v) for v in doc]
        return doc

    a, b = (numbers(yaml.safe_load(p.read_text())) for p in (ours, theirs))

    def close(x, y) -> bool:
        if isinstance(x, dict):
            return isinstance(y, dict) and x.keys() == y.keys() and all(close(x[k], y[k]) for k in x)
        if isinstance(x, list):
            return isinstance(y, list) and len(x) == len(y) and all(close(u, v) for u, v in zip(x, y))
        return bool(np.isclose(float(x), float(y), rtol=1e-4, atol=0.0))

    return close(a, b)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scans", type=int, default=4, help="scans in the dataset (default %(default)s)")
    parser.add_argument("--shape", type=int, nargs=3, default=(512, 512, 300), help="scan shape (default 512 512 300)")
    parser.add_argument("--workers", type=int, nargs="+", default=None, help="worker counts (default: 1 and the core count)")
    parser.add_argument("--no_monai", action="store_true", help="skip the MONAI rows")
    parser.add_argument("--_make", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._make:
        make_dataset(Path(args._make[0]), int(args._make[1]), tuple(int(x) for x in args._make[2:]))
        return 0
    cores = os.cpu_count() or 1
    workers = args.workers or sorted({1, cores})
    has_nnunet = importlib.util.find_spec("nnunetv2") is not None and Path(sys.executable).with_name("nnUNetv2_extract_fingerprint").is_file()
    has_monai = importlib.util.find_spec("monai") is not None and not args.no_monai
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, __file__, "--_make", str(tmp), str(args.scans), *map(str, args.shape)], check=True)
        manifest = tmp / "grouped" / "dataset_manifest.xlsx"
        files = sorted((tmp / "grouped").rglob("*_volume.nii.gz")) + sorted((tmp / "grouped").rglob("*_mask.nii.gz"))
        reference = tmp / "reference"  # the raw folder and datalist the peers read
        export(manifest, reference, ["nnunetv2", "monai"], 1)
        raw_root = reference / "nnUNet_raw"
        monai_folder = next((reference / "monai").iterdir())
        for k in workers:
            print(f"  workers {k}", file=sys.stderr, flush=True)
            fl = floor(files)
            rows.append((k, "I/O floor: read every image and label once", fl, None, None))
            plain = export(manifest, tmp / f"ours_satds_{k}", ["satds"], k)
            rows.append((k, "ours: export --format satds (the same checks, no statistics)", plain, fl, None))
            ours = export(manifest, tmp / f"ours_nnunet_{k}", ["nnunetv2"], k)
            rows.append((k, "ours: export --format nnunetv2 (with fingerprint)", ours, fl, None))
            ours_fp = next((tmp / f"ours_nnunet_{k}" / "nnUNet_preprocessed").rglob("dataset_fingerprint.json"))
            if has_nnunet:
                theirs = nnunet_extract(raw_root, tmp / f"theirs_nnunet_{k}", k)
                their_fp = next((tmp / f"theirs_nnunet_{k}").rglob("dataset_fingerprint.json"))
                same = ours_fp.read_bytes() == their_fp.read_bytes()
                rows.append((k, f"nnUNetv2_extract_fingerprint -np {k}", theirs, fl, (ours, same)))
            if has_monai:
                ours_m = export(manifest, tmp / f"ours_monai_{k}", ["monai"], k)
                rows.append((k, "ours: export --format monai (with data stats)", ours_m, fl, None))
                theirs_m = data_analyzer(monai_folder, tmp / f"theirs_monai_{k}" / "datastats.yaml", k)
                ours_stats = next((tmp / f"ours_monai_{k}" / "monai").iterdir()) / "data_stats.yaml"
                same = same_data_stats(ours_stats, tmp / f"theirs_monai_{k}" / "datastats.yaml")
                rows.append((k, f"DataAnalyzer (worker={max(0, k - 1)}, CPU)", theirs_m, fl, (ours_m, same)))
            shutil.rmtree(tmp / f"ours_nnunet_{k}", ignore_errors=True)
    versions = []
    for name in ("nnunetv2", "monai", "torch", "numpy", "SimpleITK"):
        try:
            from importlib.metadata import version

            versions.append(f"{name} {version(name)}")
        except Exception:  # noqa: BLE001 - not installed
            pass
    print(f"Fingerprint / data-stats benchmark, {time.strftime('%Y-%m-%d')}, {platform.machine()} {cores} cores "
          f"({platform.processor() or platform.platform()}), Python {platform.python_version()}, {', '.join(versions)}; "
          f"{args.scans} scans {tuple(args.shape)}; one run each; total {time.perf_counter() - t0:.0f} s")  # fmt: skip
    print()
    print("| workers | command | seconds | CPU s | peak MB | vs floor | peer / ours (s) | peer / ours (CPU) | same values |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k, what, res, fl, peer in rows:
        vs_floor = "" if fl is None else f"{res['seconds'] / fl['seconds']:.1f}x"
        ratio = cpu_ratio = same = ""
        if peer is not None:
            ours, same_flag = peer
            ratio, cpu_ratio = f"{res['seconds'] / ours['seconds']:.1f}x", f"{res['cpu'] / ours['cpu']:.1f}x"
            same = "yes" if same_flag else "NO"
        print(f"| {k} | {what} | {res['seconds']:.1f} | {res['cpu']:.1f} | {res['peak_mb']:.0f} | {vs_floor} | {ratio} | {cpu_ratio} | {same} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
