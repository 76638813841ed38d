"""Throughput of routines 02 and 04 through a local Dask cluster against ``--workers`` on the same machine.

One command: ``python benchmarks/bench_dask.py [--quick] [--scans N] [--processes 1 2 4 …] [--shape I J K] [--repeats R]``.

Builds a VerSe-layout archive of N scans (one synthetic CT-like int16 volume with a 24-label uint8
mask, copied under N subject names; default 24 scans of 512x512x300, ``--quick``: 12 of 256x256x128),
runs routine 01 once, then for each k in ``--processes``:

- ``--workers k``: routine 02 (archive -> grouped) then routine 04 (27 binary masks per sample), each
  a fresh ``python verse/0X_….py`` process, as a user runs them;
- ``--dask_scheduler``: the same two commands against a ``distributed.LocalCluster`` with k worker
  processes of 1 thread each, started before the timing (a cluster is already running when a user
  runs a routine against it) and idle during the ``--workers`` runs; the time includes importing
  ``distributed``, connecting, the start-up probe and submitting every sample.

The two modes alternate and every command runs ``--repeats`` times (default 3). Each row gives the
wall time of one command (best and median), the throughput (scans/s) and the Dask overhead (Dask
time / ``--workers`` time - 1), with its fixed part per command (importing ``distributed``,
connecting, the probe, one trivial task: measured separately), and the CPU seconds of every process
involved (the command, its worker processes or the cluster's workers and scheduler; median), a
measure that load from other programs on a shared machine distorts far less; every output of the two modes is
compared byte for byte (info yamls after masking the history time stamps). ``distributed`` must be
installed (``pip install -r requirements-dev.txt``).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
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
    from utils.archive.synthetic import affine_for, blob_stack_mask, ct_like_volume, write_raw_nifti

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


def _run(args: Sequence[object], client: object = None) -> tuple[float, float]:
    """Wall time and CPU time of one routine in a fresh process (it must exit 0).

    CPU time is that of the command and its ``--workers`` processes and, with ``client`` (a Dask
    client of the local cluster), that of the cluster's workers and of this process (which runs the
    LocalCluster's scheduler): the work done wherever it ran, which load from other programs on the
    machine distorts far less than the wall time.
    """
    def cluster_cpu() -> float:
        if client is None:
            return 0.0
        workers = client.run(lambda: sum(__import__("psutil").Process().cpu_times()[:2]))  # type: ignore[attr-defined]
        return sum(workers.values()) + time.process_time()

    children, cluster = resource.getrusage(resource.RUSAGE_CHILDREN), cluster_cpu()
    start = time.perf_counter()
    subprocess.run([sys.executable, *map(str, args), "--no_pbar", "-q"], check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime) + (cluster_cpu() - cluster)
    return wall, cpu


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
        f"sys.path.insert(0, {str(REPO)!r}); from utils.run.dask_runner import run_on_dask; "
        f"list(run_on_dask({address!r}, str, [0], desc='startup')); print(time.perf_counter() - t)"
    )
    return float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()[-1])


def dask_vs_workers(
    n_scans: int = 24,
    processes: Sequence[int] = (1, 2),
    shape: Sequence[int] = (512, 512, 300),
    repeats: int = 3,
    workdir: Path | None = None,
) -> list[dict[str, object]]:
    """Time routines 02 and 04 with ``--workers k`` and through a LocalCluster of k processes, for each k.

    The two modes alternate within each repeat, so that load from elsewhere hits both alike.

    Parameters
    ----------
    n_scans : int
        Scans in the archive.
    processes : sequence of int
        Numbers of processes k compared.
    shape : sequence of int
        (I, J, K) of every scan.
    repeats : int
        Runs of every command; the best and the median are reported.
    workdir : Path, optional
        Where the archive and outputs go (a temporary folder by default, removed after).

    Returns
    -------
    rows : list of dict
        One per routine, k and mode: ``routine``, ``processes``, ``mode`` (``--workers`` or ``dask``),
        ``seconds`` (best of ``repeats``), ``median_s``, ``scans_per_s`` (from the best), ``cpu_s``
        (median CPU seconds of every process involved, see :func:`_run`), ``overhead_pct`` (dask
        rows: best vs best of ``--workers`` at the same k), ``cpu_overhead_pct`` (the same in CPU time), ``identical``
        (dask rows: outputs equal to the ``--workers`` run's), ``dask_startup_s`` (dask rows: the
        fixed part of the overhead, :func:`dask_startup_seconds`, best of ``repeats``).
    """
    from distributed import Client, LocalCluster

    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(workdir or tmp)
        archive, manifest, label_map = root / "archive", root / "descriptor/archive_manifest.xlsx", root / "descriptor/label_map.yaml"
        make_archive(archive, n_scans, shape)
        _run([REPO / "verse/01_gen_archive_manifest.py", "--root_dir", archive, "--output_manifest_file", manifest])
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))  # for the workers
        for k in processes:
            times: dict[tuple[str, str], list[tuple[float, float]]] = {}
            startup: list[float] = []
            with LocalCluster(n_workers=k, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, Client(cluster) as client:
                for _ in range(repeats):
                    for mode, parallel, meter in (("--workers", ["--workers", k], None), ("dask", ["--dask_scheduler", cluster.scheduler_address], client)):
                        out = root / f"grouped_{mode.strip('-')}_{k}"
                        shutil.rmtree(out, ignore_errors=True)
                        times.setdefault((mode, "02"), []).append(_run(
                            [REPO / "verse/02_confirm_pairs.py", "--root_dir", archive, "--output_dir", out, "--archive_manifest", manifest, *parallel], meter
                        ))  # fmt: skip
                        times.setdefault((mode, "04"), []).append(_run(
                            [REPO / "verse/04_extract_binary_masks.py", "--root_dir", out, "--label_explanation", label_map, *parallel], meter
                        ))  # fmt: skip
                    startup.append(dask_startup_seconds(cluster.scheduler_address))
            identical = _same_outputs(root / f"grouped_workers_{k}", root / f"grouped_dask_{k}")
            for routine in ("02", "04"):
                base_wall = min(w for w, _ in times["--workers", routine])
                base_cpu = statistics.median(c for _, c in times["--workers", routine])
                for mode in ("--workers", "dask"):
                    walls, cpus = zip(*times[mode, routine])
                    best, cpu = min(walls), statistics.median(cpus)
                    rows.append({
                        "routine": routine, "processes": k, "mode": mode, "seconds": best,
                        "median_s": statistics.median(walls), "scans_per_s": n_scans / best, "cpu_s": cpu,
                        "overhead_pct": 100 * (best / base_wall - 1) if mode == "dask" else None,
                        "cpu_overhead_pct": 100 * (cpu / base_cpu - 1) if mode == "dask" else None,
                        "identical": identical if mode == "dask" else None,
                        "dask_startup_s": min(startup) if mode == "dask" else None,
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
    parser.add_argument("--repeats", type=int, default=3, help="runs of every command, best and median reported (default 3)")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    n_scans = args.scans or (12 if args.quick else 24)
    shape = tuple(args.shape or ((256, 256, 128) if args.quick else (512, 512, 300)))
    processes = args.processes or ([1, 2] if args.quick else sorted({min(2**i, cores) for i in range(cores.bit_length() + 1)}))
    start = time.perf_counter()
    rows = dask_vs_workers(n_scans, processes, shape, args.repeats)
    print(f"{n_scans} scans of {shape[0]}x{shape[1]}x{shape[2]}, {cores} cores, best and median of {args.repeats} runs, "
          f"{time.strftime('%Y-%m-%d')}, total {time.perf_counter() - start:.0f} s")  # fmt: skip
    print("| routine | k | mode | seconds (best) | median | scans/s | Dask overhead | CPU s | Dask CPU overhead | start-up (s) | identical |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        def fmt(key: str, spec: str) -> str:
            return "" if r[key] is None else format(r[key], spec)

        print(f"| {r['routine']} | {r['processes']} | {r['mode']} | {r['seconds']:.2f} | {r['median_s']:.2f} | {r['scans_per_s']:.2f} | "
              f"{fmt('overhead_pct', '+.1f')} % | {r['cpu_s']:.2f} | {fmt('cpu_overhead_pct', '+.1f')} % | {fmt('dask_startup_s', '.2f')} | "
              f"{fmt('identical', '')} |".replace("|  % |", "| |"))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
