"""Throughput of routines 02 and 04 through a local Dask cluster against ``--workers`` on the same machine.

One command: ``python benchmarks/bench_dask.py [--quick] [--scans N] [--processes 1 2 4 …] [--shape I J K]``.

Builds a VerSe-layout archive of N scans (one synthetic CT-like int16 volume with a 24-label uint8
mask, copied under N subject names; default 24 scans of 512x512x300, ``--quick``: 12 of 256x256x128),
runs routine 01 once, then for each k in ``--processes``:

- ``--workers k``: routine 02 (archive -> grouped) then routine 04 (27 binary masks per sample), each
  a fresh ``python verse/0X_….py`` process, as a user runs them;
- ``--dask_scheduler``: the same two commands against a ``distributed.LocalCluster`` with k worker
  processes of 1 thread each, started before the timing (a cluster is already running when a user
  runs a routine against it); the time includes importing ``distributed``, connecting, the start-up
  probe and submitting every sample.

Each row gives the wall time of one command, the throughput (scans/s) and the Dask overhead
(Dask time / ``--workers`` time - 1), with its fixed part per command (importing ``distributed``,
connecting, the probe, one trivial task: measured separately); every output of the two modes is compared byte for byte (info
yamls after masking the history time stamps). ``distributed`` must be installed
(``pip install -r requirements-dev.txt``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

REPO = Path(__file__).resolve().parents[1]
DATE = re.compile(rb"date: '[^']*'")

__all__ = ["make_archive", "dask_vs_workers", "main"]


def make_archive(archive: Path, n_scans: int, shape: Sequence[int]) -> None:
    """A VerSe20 training archive of ``n_scans`` identical scans (``sub-verseNNN_ct`` + ``_seg-vert_msk``)."""
    from utils.synthetic import affine_for, blob_stack_mask, ct_like_volume, write_raw_nifti

    mask = blob_stack_mask(shape, list(range(1, 25)), axis=2, radius_fraction=0.08, specks=50, holes=50)
    affine = affine_for("LPS", (0.7, 0.7, 1.0))
    source = archive.parent / "source"
    volume_file = write_raw_nifti(source / "ct.nii.gz", ct_like_volume(mask), affine)
    mask_file = write_raw_nifti(source / "msk.nii.gz", mask, affine)
    for i in range(n_scans):
        subject = f"sub-verse{i + 500:03d}"
        for kind, src, name in (("rawdata", volume_file, f"{subject}_ct.nii.gz"), ("derivatives", mask_file, f"{subject}_seg-vert_msk.nii.gz")):
            target = archive / "dataset-01training" / kind / subject / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
    shutil.rmtree(source)


def _run(args: Sequence[object]) -> float:
    """Wall time of one routine in a fresh process (it must exit 0)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, *map(str, args), "--no_pbar", "-q"], check=True)
    return time.perf_counter() - start


def _same_outputs(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    if files_a != files_b:
        return False
    return all(DATE.sub(b"", (a / rel).read_bytes()) == DATE.sub(b"", (b / rel).read_bytes()) for rel in files_a)


def dask_startup_seconds(address: str) -> float:
    """What ``--dask_scheduler`` adds to a command before its samples: import ``distributed``, connect, probe, one trivial task."""
    code = (
        "import time, sys; t = time.perf_counter(); import distributed; "
        f"sys.path.insert(0, {str(REPO)!r}); from utils.dask_runner import run_on_dask; "
        f"list(run_on_dask({address!r}, str, [0], desc='startup')); print(time.perf_counter() - t)"
    )
    return float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()[-1])


def dask_vs_workers(
    n_scans: int = 24, processes: Sequence[int] = (1, 2), shape: Sequence[int] = (512, 512, 300), workdir: Path | None = None
) -> list[dict[str, object]]:
    """Time routines 02 and 04 with ``--workers k`` and through a LocalCluster of k processes, for each k.

    Parameters
    ----------
    n_scans : int
        Scans in the archive.
    processes : sequence of int
        Numbers of processes k compared.
    shape : sequence of int
        (I, J, K) of every scan.
    workdir : Path, optional
        Where the archive and outputs go (a temporary folder by default, removed after).

    Returns
    -------
    rows : list of dict
        One per routine, k and mode: ``routine``, ``processes``, ``mode`` (``--workers`` or ``dask``),
        ``seconds``, ``scans_per_s``, ``overhead_pct`` (dask rows: vs ``--workers`` at the same k),
        ``identical`` (dask rows: outputs equal to the ``--workers`` run's), ``dask_startup_s``
        (dask rows: the fixed part of the overhead, :func:`dask_startup_seconds`).
    """
    from distributed import LocalCluster

    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(workdir or tmp)
        archive, manifest, label_map = root / "archive", root / "descriptor/archive_manifest.xlsx", root / "descriptor/label_map.yaml"
        make_archive(archive, n_scans, shape)
        _run([REPO / "verse/01_gen_archive_manifest.py", "--root_dir", archive, "--output_manifest_file", manifest])
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))  # for the workers
        for k in processes:
            times: dict[tuple[str, str], float] = {}
            for mode in ("--workers", "dask"):
                out = root / f"grouped_{mode.strip('-')}_{k}"
                if mode == "dask":
                    cluster = LocalCluster(n_workers=k, threads_per_worker=1, processes=True, dashboard_address=":0")
                    parallel = ["--dask_scheduler", cluster.scheduler_address]
                else:
                    cluster, parallel = None, ["--workers", k]
                try:
                    times[mode, "02"] = _run([REPO / "verse/02_confirm_pairs.py", "--root_dir", archive, "--output_dir", out, "--archive_manifest", manifest, *parallel])
                    times[mode, "04"] = _run([REPO / "verse/04_extract_binary_masks.py", "--root_dir", out, "--label_explanation", label_map, *parallel])
                    if cluster is not None:
                        startup = dask_startup_seconds(cluster.scheduler_address)
                finally:
                    if cluster is not None:
                        cluster.close()
            identical = _same_outputs(root / f"grouped_workers_{k}", root / f"grouped_dask_{k}")
            for routine in ("02", "04"):
                for mode in ("--workers", "dask"):
                    seconds = times[mode, routine]
                    rows.append({
                        "routine": routine, "processes": k, "mode": mode, "seconds": seconds, "scans_per_s": n_scans / seconds,
                        "overhead_pct": 100 * (seconds / times["--workers", routine] - 1) if mode == "dask" else None,
                        "identical": identical if mode == "dask" else None,
                        "dask_startup_s": startup if mode == "dask" else None,
                    })  # fmt: skip
            for mode in ("workers", "dask"):
                shutil.rmtree(root / f"grouped_{mode}_{k}")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="12 scans of 256x256x128, k = 1 2 (a few minutes on 2 busy cores)")
    parser.add_argument("--scans", type=int, help="scans in the archive (default 24; --quick 12)")
    parser.add_argument("--processes", type=int, nargs="+", help="numbers of processes k (default 1 2 4 … up to the core count; --quick 1 2)")
    parser.add_argument("--shape", type=int, nargs=3, help="scan shape (default 512 512 300; --quick 256 256 128)")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    n_scans = args.scans or (12 if args.quick else 24)
    shape = tuple(args.shape or ((256, 256, 128) if args.quick else (512, 512, 300)))
    processes = args.processes or ([1, 2] if args.quick else sorted({min(2**i, cores) for i in range(cores.bit_length() + 1)}))
    start = time.perf_counter()
    rows = dask_vs_workers(n_scans, processes, shape)
    print(f"{n_scans} scans of {shape[0]}x{shape[1]}x{shape[2]}, {cores} cores, {time.strftime('%Y-%m-%d')}, total {time.perf_counter() - start:.0f} s")
    print("| routine | processes | mode | seconds | scans/s | Dask overhead | of which start-up (s) | outputs identical |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        overhead = "" if r["overhead_pct"] is None else f"{r['overhead_pct']:+.1f} %"
        startup = "" if r["dask_startup_s"] is None else f"{r['dask_startup_s']:.2f}"
        identical = "" if r["identical"] is None else str(r["identical"])
        print(f"| {r['routine']} | {r['processes']} | {r['mode']} | {r['seconds']:.2f} | {r['scans_per_s']:.2f} | {overhead} | {startup} | {identical} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
