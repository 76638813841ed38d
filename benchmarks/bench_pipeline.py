"""Benchmark every per-sample routine against its own I/O floor, a naive route, and across --workers.

One command::

    python benchmarks/bench_pipeline.py            # ~25 min on 2 cores: 3 fresh processes per measurement
    python benchmarks/bench_pipeline.py --quick    # ~4 min: 1 run each, 4 scans in the workers sweep

It builds, in a temporary folder, a VerSe archive with one realistic scan: a 512x512x300 int16 CT-like
volume and a uint8 mask of 24 vertebra-shaped labels (0.7x0.7x1.0 mm, with specks, mislabelled voxels and
holes; one vertebra is T13 (28) and the lowest is sacrum (26), so routine 03 has work); and a second
archive from the real 512x512x214 VerSe mask ``../shared/realdata/verse/sub-gl003_dir-ax_seg-vert_msk.nii.gz``
when it is present (with a CT-like volume made from it). Then, for every routine, in the state the
tutorial gives it (01 on the archive, 02 on its manifest, 03 after 02, 04 after 03, the mask-QC tools
and 05 after 04), it measures in fresh processes (heavy imports done before the clock starts, as they
are once per run, not per sample):

- the routine: its ``main`` on the sample, in a restored copy of the input state;
- its I/O floor: reading exactly the files it reads, with the same reader (python-isal gzip, CRC checked),
  and writing exactly the files it wrote (their content loaded beforehand), with the same writer;
- a naive route: nibabel defaults (``nib.load``/``get_fdata``/``nib.save``, zlib), ``np.unique``,
  ``mask == label`` on the full volume, pandas' ``to_excel``; its output is compared with the routine's;
- peak resident memory of the process (``VmHWM``), also as a multiple of one float32 volume.

Then the workers sweep: N scans (hard links of the first one under other subject names), each routine
with ``--workers 1, 2, 4 …`` up to the core count, reporting throughput (scans per second) and
efficiency (speed-up divided by workers). NME and ESO run the same per-sample code in routines 02-04
(``utils/archive/pairing.py``, ``utils/labels/binary_masks.py``, ``utils/dataset/manifest.py``): only their archive
rules differ, so the VerSe sample stands for them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # repository root

REAL_MASK = REPO.parent / "shared" / "realdata" / "verse" / "sub-gl003_dir-ax_seg-vert_msk.nii.gz"
FOLDER = "dataset-01training"  # VerSe20 training folder
GROUPED = "grouped/VerSe20/train"


def timed(func, repeats: int) -> float:
    """Median wall time of ``func()`` in seconds over ``repeats`` calls (in this process)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --- the archive ----------------------------------------------------------------------------------------------------


def bench_mask() -> tuple[np.ndarray, np.ndarray]:
    """The synthetic scan: (mask, affine); vertebra 12 is T13 (28), vertebra 24 sacrum (26)."""
    from utils.archive.synthetic import affine_for, vertebra_column_mask

    mask = vertebra_column_mask()
    mask[mask == 12] = 28
    mask[mask == 24] = 26
    return mask, affine_for("LPS", (0.7, 0.7, 1.0), origin=(180.0, 180.0, -150.0))


def write_archive(root: Path, subjects: list[str], mask: np.ndarray, affine: np.ndarray) -> None:
    """``root/archive`` in the VerSe20 layout; the first subject's files are written, the others hard-linked."""
    from utils.files.nifti_io import save_nifti
    from utils.archive.synthetic import ct_like_volume

    first = None
    for subject in subjects:
        raw = root / "archive" / FOLDER / "rawdata" / f"sub-{subject}" / f"sub-{subject}_ct.nii.gz"
        der = root / "archive" / FOLDER / "derivatives" / f"sub-{subject}" / f"sub-{subject}_seg-vert_msk.nii.gz"
        raw.parent.mkdir(parents=True)
        der.parent.mkdir(parents=True)
        if first is None:
            rng = np.random.default_rng(1)
            volume = np.asfortranarray(ct_like_volume(mask, rng))
            fg = np.flatnonzero(mask.reshape(-1, order="F"))
            volume.reshape(-1, order="F")[rng.choice(fg, size=len(fg) // 100, replace=False)] = -400  # 1 % of the mask over air
            save_nifti(raw, volume, affine, dtype=np.int16)
            save_nifti(der, mask, affine, dtype=np.uint8)
            first = (raw, der)
        else:
            os.link(first[0], raw)
            os.link(first[1], der)


# --- routines -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Routine:
    """One routine: its command line, the state it starts from, what it reads."""

    key: str
    title: str
    script: str
    args: tuple[str, ...]
    after: str  # key of the routine whose output state it starts from ("" = the archive)
    reads: tuple[tuple[str, str], ...]  # (glob relative to the root, kind)


CLOSE = ("--kernel_size", "5", "5", "--filter_halfedge", "3", "--region_area_thresh", "2.0")
OPEN = ("--kernel_size", "2", "2", "--filter_halfedge", "3", "--region_area_thresh", "10")
SAMPLE = f"{GROUPED}/*"
ROUTINES = (
    Routine("01", "01 archive manifest", "verse/01_gen_archive_manifest.py",
            ("--root_dir", "{root}/archive", "--output_manifest_file", "{root}/descriptor/archive_manifest.xlsx"), "",
            (("archive/**/*.nii.gz", "check"),)),
    Routine("02", "02 confirm pairs", "verse/02_confirm_pairs.py",
            ("--root_dir", "{root}/archive", "--output_dir", "{root}/grouped", "--archive_manifest", "{root}/descriptor/archive_manifest.xlsx"),
            "01", (("descriptor/archive_manifest.xlsx", "xlsx"), ("archive/**/*_ct.nii.gz", "nifti"), ("archive/**/*_msk.nii.gz", "nifti"))),
    Routine("03", "03 sacrum/coccyx, T13", "verse/03_reduce_sacrum_cocygis_and_revise_T13_label.py", ("--root_dir", "{root}/grouped"),
            "02", ((f"{SAMPLE}/*_info.yaml", "yaml"), (f"{SAMPLE}/*_mask.nii.gz", "nifti"))),
    Routine("04", "04 binary masks", "verse/04_extract_binary_masks.py",
            ("--root_dir", "{root}/grouped", "--label_explanation", "{root}/descriptor/label_map.yaml"),
            "03", (("descriptor/label_map.yaml", "yaml"), (f"{SAMPLE}/*_info.yaml", "yaml"), (f"{SAMPLE}/*_mask.nii.gz", "nifti"))),
    Routine("05", "05 dataset manifest", "verse/05_gen_dataset_manifest.py",
            ("--root_dir", "{root}/grouped", "--output_manifest_file", "{root}/grouped/dataset_manifest.xlsx"),
            "04", ((f"{SAMPLE}/*_info.yaml", "yaml"), (f"{SAMPLE}/*.nii.gz", "header"), (f"{SAMPLE}/*_mask.nii.gz", "bytes"))),
    Routine("detect", "small-region report (100 mm³)", "utils/small_connected_region_detect.py",
            ("--root_dir", "{root}/grouped", "--region_volume_thresh", "100.0", "--output_manifest", "{root}/descriptor/small.xlsx"),
            "04", ((f"{SAMPLE}/*_mask.nii.gz", "nifti"),)),
    Routine("close", "close (VerSe 5x5, 2 mm², N=3)", "utils/morphological_close_on_slice_small_region.py",
            ("--root_dir", "{root}/grouped", "--output_dir", "{root}/grouped", *CLOSE),
            "04", ((f"{SAMPLE}/*_info.yaml", "yaml"), (f"{SAMPLE}/*_mask.nii.gz", "nifti"))),
    Routine("open", "open (ESO 2x2, 10 mm², N=3)", "utils/morphological_open_on_slice_small_region.py",
            ("--root_dir", "{root}/grouped", "--output_dir", "{root}/grouped", *OPEN),
            "04", ((f"{SAMPLE}/*_info.yaml", "yaml"), (f"{SAMPLE}/*_mask.nii.gz", "nifti"))),
    Routine("threshold", "thresholding [-140, 1000]", "utils/mask_thresholding.py",
            ("--root_dir", "{root}/grouped", "--output_dir", "{root}/grouped", "--thresh", "-140.0", "1000.0"),
            "04", ((f"{SAMPLE}/*_info.yaml", "yaml"), (f"{SAMPLE}/*_mask.nii.gz", "nifti"), (f"{SAMPLE}/*_volume.nii.gz", "nifti"))),
    Routine("audit", "dataset audit", "utils/audit_dataset.py",
            ("--root_dir", "{root}/grouped", "--output_dir", "{root}/audit", "--fail_on", "never"),
            "04", ((f"{SAMPLE}/*_info.yaml", "yaml"), (f"{SAMPLE}/*_volume.nii.gz", "nifti"), (f"{SAMPLE}/*_mask.nii.gz", "nifti"))),
)  # fmt: skip
BY_KEY = {r.key: r for r in ROUTINES}
SWEEP = ("01", "02", "03", "04", "05", "detect", "close", "audit")


def command(routine: Routine, root: Path, workers: int = 1) -> list[str]:
    return [routine.script, *(a.format(root=root) for a in routine.args), "--workers", str(workers), "--no_pbar", "-q"]


def snapshot(src: Path, dst: Path) -> None:
    """Copy a tree as hard links (cheap; every routine replaces files by rename, never writes into one)."""
    shutil.copytree(src, dst, copy_function=os.link)


def changed_files(before: Path, after: Path) -> list[Path]:
    """Files of ``after`` that are new or replaced since the hard-link snapshot ``before`` (relative paths)."""
    out = []
    for path in sorted(p for p in after.rglob("*") if p.is_file()):
        rel = path.relative_to(after)
        old = before / rel
        if not old.exists() or not os.path.samestat(old.stat(), path.stat()):
            out.append(rel)
    return out


# --- measurements in a fresh process --------------------------------------------------------------------------------


def _peak_mb() -> float:
    """Peak resident memory of this process in MB (``VmHWM``: starts afresh at exec, unlike ``ru_maxrss``)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _import_heavy() -> None:
    """What a run imports once, not per sample (lazy in the scripts)."""
    import nibabel  # noqa: F401
    import openpyxl  # noqa: F401
    import pandas  # noqa: F401
    import scipy.ndimage  # noqa: F401
    import yaml  # noqa: F401


def load_script(script: str):
    """The module of a routine's script, loaded as ``python script`` would (its imports are not timed)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_script", REPO / script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _read(path: Path, kind: str) -> None:
    from utils.files.nifti_io import check_nifti_file, load_header, load_nifti
    from utils.files.sample_info import file_stamp, read_info
    from utils.files.spreadsheet import read_sheet

    if kind == "nifti":
        np.asanyarray(load_nifti(path).dataobj)
    elif kind == "check":
        check_nifti_file(path)
    elif kind == "header":
        load_header(path)
    elif kind == "bytes":  # the file's stamp (size, CRC-32 of its bytes): no decompression
        file_stamp(path)
    elif kind == "yaml":
        read_info(path)
    elif kind == "xlsx":
        read_sheet(path)


def _load_outputs(source: Path, root: Path, outputs: list[str]) -> list:
    """Everything a routine wrote below ``source``, held in memory, ready to be written again below ``root``."""
    from utils.files.nifti_io import load_nifti
    from utils.files.spreadsheet import read_sheet, sheet_names

    loaded = []
    for rel in outputs:
        path, written = root / rel, source / rel
        if rel.endswith(".nii.gz"):
            img = load_nifti(written)
            loaded.append(("nifti", path, (np.asanyarray(img.dataobj), img)))
        elif rel.endswith(".xlsx"):
            loaded.append(("xlsx", path, {name: read_sheet(written, name) for name in sheet_names(written)}))
        elif rel.endswith((".yaml", ".json", ".md", ".html")):
            loaded.append(("text", path, written.read_text(encoding="utf-8")))
        else:
            loaded.append(("bytes", path, written.read_bytes()))
    return loaded


def _write(kind: str, path: Path, content) -> None:
    from utils.files.atomic import atomic_write_bytes, atomic_write_text
    from utils.files.nifti_io import header_descrip, save_nifti
    from utils.files.spreadsheet import write_sheets

    if kind == "bytes":
        atomic_write_bytes(path, content)
    elif kind == "nifti":
        data, img = content
        save_nifti(path, data, img.affine, dtype=data.dtype, template=img, descrip=header_descrip(img))
    elif kind == "xlsx":
        write_sheets(path, content)
    else:
        atomic_write_text(path, content)


def worker(job: dict) -> dict:
    """One measurement in this fresh process: ``routine``, ``floor`` or ``naive`` of one routine on one root."""
    _import_heavy()
    root, routine, mode = Path(job["root"]), BY_KEY[job["routine"]], job["mode"]
    extra: dict = {}
    if mode == "routine":
        argv = command(routine, root, job.get("workers", 1))
        script = load_script(argv[0])
        cpu0, start = time.process_time(), time.perf_counter()
        code = script.main(argv[1:])
        seconds = time.perf_counter() - start
        if code != 0:
            raise RuntimeError(f"{routine.script} exited {code}")
    elif mode == "floor":
        inputs = [(p, kind) for pattern, kind in routine.reads for p in sorted(root.glob(pattern)) if p.is_file()]
        outputs = _load_outputs(Path(job["outputs_from"]), root, job["outputs"])
        cpu0, start = time.process_time(), time.perf_counter()
        for path, kind in inputs:
            _read(path, kind)
        for kind, path, content in outputs:
            _write(kind, path, content)
        seconds = time.perf_counter() - start
        extra["files"] = [len(inputs), len(outputs)]
    else:
        cpu0, start = time.process_time(), time.perf_counter()
        extra = NAIVE[routine.key](root, Path(job["scratch"]))
        seconds = time.perf_counter() - start - extra.pop("untimed", 0.0)
        seconds += extra.get("extrapolated", 0.0)
    return {"seconds": seconds, "cpu": time.process_time() - cpu0, "peak_mb": _peak_mb(), **extra}


def measure(job: dict, pristine: Path, work: Path, repeats: int) -> dict:
    """Median wall time over ``repeats`` fresh processes, each on a fresh hard-link copy of ``pristine``."""
    runs = []
    for _ in range(repeats):
        if work.exists():
            shutil.rmtree(work)
        snapshot(pristine, work)
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_worker", json.dumps({**job, "root": str(work)})],
                              capture_output=True, text=True, cwd=REPO)  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"{job['routine']} {job['mode']} failed:\n{proc.stderr[-3000:]}")
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    out = dict(runs[-1])
    out["seconds"] = statistics.median(r["seconds"] for r in runs)
    out["cpu"] = statistics.median(r["cpu"] for r in runs)
    out["peak_mb"] = max(r["peak_mb"] for r in runs)
    return out


# --- naive routes ---------------------------------------------------------------------------------------------------


def _nib_mask(path: Path) -> tuple:
    import nibabel as nib

    img = nib.load(path)
    data = np.asanyarray(img.dataobj)
    values = np.unique(data)
    if values.min() < 0 or values.max() > 255 or not np.array_equal(values, np.round(values)):
        raise ValueError(f"{path}: not a label mask")
    return img, data.astype(np.uint8), [int(v) for v in values]


def _one(root: Path, pattern: str) -> Path:
    return next(iter(sorted(root.glob(pattern))))


def naive_01(root: Path, scratch: Path) -> dict:
    import nibabel as nib
    import pandas as pd

    rows = []
    for path in sorted((root / "archive").rglob("*.nii.gz")):
        img = nib.load(path)
        img.get_fdata()
        rows.append({"file_path": str(path), "shape": str(img.shape), "affine": json.dumps(img.affine.tolist())})
    pd.DataFrame(rows).to_excel(scratch / "archive_manifest.xlsx", index=False)
    return {"samples": len(rows) // 2}  # a volume and a mask per scan


def naive_02(root: Path, scratch: Path) -> dict:
    import nibabel as nib
    import yaml

    vol_img = nib.load(_one(root, "archive/**/*_ct.nii.gz"))
    volume = vol_img.get_fdata(dtype=np.float32)
    mask_img, mask, values = _nib_mask(_one(root, "archive/**/*_msk.nii.gz"))
    if not set(values) <= set(range(29)):
        raise ValueError("labels outside 0..28")
    nib.save(nib.Nifti1Image(volume, vol_img.affine), scratch / "volume.nii.gz")
    nib.save(nib.Nifti1Image(mask, vol_img.affine), scratch / "mask.nii.gz")
    (scratch / "info.yaml").write_text(yaml.safe_dump({"labels": values}))
    return {}


def naive_03(root: Path, scratch: Path) -> dict:
    import nibabel as nib

    img, mask, values = _nib_mask(_one(root, f"{SAMPLE}/*_mask.nii.gz"))
    out = mask.copy()
    for old, new in {26: 0, 27: 0, 28: 26}.items():
        out[mask == old] = new
    nib.save(nib.Nifti1Image(out, img.affine), scratch / "mask.nii.gz")
    return {}


def naive_04(root: Path, scratch: Path) -> dict:
    import nibabel as nib

    img, mask, values = _nib_mask(_one(root, f"{SAMPLE}/*_mask.nii.gz"))
    for label in range(27):
        nib.save(nib.Nifti1Image((mask == label).astype(np.uint8), img.affine), scratch / f"mask_{label:02d}.nii.gz")
    return {}


def naive_05(root: Path, scratch: Path) -> dict:
    import nibabel as nib
    import pandas as pd

    rows = []
    for sample in sorted(root.glob(SAMPLE)):
        headers = {p.name: nib.load(p).shape for p in sorted(sample.glob("*.nii.gz"))}
        _, _, values = _nib_mask(_one(sample, "*_mask.nii.gz"))
        rows.append({"ID": sample.name, "valid_labels": json.dumps(values), **{k: str(v) for k, v in headers.items()}})
    pd.DataFrame(rows).to_excel(scratch / "dataset_manifest.xlsx", index=False)
    return {"samples": len(rows)}


def naive_detect(root: Path, scratch: Path) -> dict:
    import pandas as pd

    from utils.maskqc.reference import naive_small_region_count

    path = _one(root, f"{SAMPLE}/*_mask.nii.gz")
    img, mask, _ = _nib_mask(path)
    sizes = naive_small_region_count(mask, img.affine, 100.0)
    pd.DataFrame([{"label": k, "voxels": v} for k, vs in sizes.items() for v in vs]).to_excel(scratch / "small.xlsx", index=False)
    return {"ID": path.parent.name, "sizes": {str(k): sorted(int(x) for x in v) for k, v in sizes.items()}}


def _naive_repair(mode: str, root: Path, scratch: Path) -> dict:
    """The tutorial's rule on full slices, one label at a time; run on ``NAIVE_SLICES`` slices and extrapolated."""
    import nibabel as nib

    from utils.maskqc.reference import naive_repair_mask
    from utils.maskqc.slice_morphology import SliceRepair

    img, mask, _ = _nib_mask(_one(root, f"{SAMPLE}/*_mask.nii.gz"))
    repair = SliceRepair(mode, (5, 5) if mode == "close" else (2, 2), 2.0 if mode == "close" else 10.0)
    n = mask.shape[2] if NAIVE_SLICES <= 0 else min(NAIVE_SLICES, mask.shape[2])
    first = max(0, min(int(np.flatnonzero(mask.any(axis=(0, 1)))[0]), mask.shape[2] - n))
    t0 = time.perf_counter()
    fused = naive_repair_mask(mask, img.affine, repair, 3, labels=list(range(27)), slices=range(first, first + n))
    per_slice = (time.perf_counter() - t0) / n
    np.save(scratch / f"naive_{mode}.npy", fused[:, :, first : first + n])
    for label in range(27):
        nib.save(nib.Nifti1Image((fused == label).astype(np.uint8), img.affine), scratch / f"mask_{label:02d}.nii.gz")
    nib.save(nib.Nifti1Image(fused, img.affine), scratch / "mask.nii.gz")
    return {"slices": [first, first + n], "extrapolated": per_slice * (mask.shape[2] - n)}


def naive_threshold(root: Path, scratch: Path) -> dict:
    import nibabel as nib

    img, mask, _ = _nib_mask(_one(root, f"{SAMPLE}/*_mask.nii.gz"))
    volume = nib.load(_one(root, f"{SAMPLE}/*_volume.nii.gz")).get_fdata()
    out = mask.copy()
    out[(mask > 0) & ~((volume >= -140.0) & (volume <= 1000.0))] = 0
    for label in range(27):
        nib.save(nib.Nifti1Image((out == label).astype(np.uint8), img.affine), scratch / f"mask_{label:02d}.nii.gz")
    nib.save(nib.Nifti1Image(out, img.affine), scratch / "mask.nii.gz")
    return {}


def naive_audit(root: Path, scratch: Path) -> dict:
    """What a straightforward audit of one sample does: nibabel's float64 arrays, full-volume percentiles and sorting,
    ``np.unique``, scipy's labelling and centres of mass per label, a SHA-256 of the canonical (``as_closest_canonical``) copy."""
    import hashlib

    import nibabel as nib
    from scipy import ndimage

    vol_img = nib.as_closest_canonical(nib.load(_one(root, f"{SAMPLE}/*_volume.nii.gz")))
    mask_img = nib.as_closest_canonical(nib.load(_one(root, f"{SAMPLE}/*_mask.nii.gz")))
    volume = vol_img.get_fdata()
    mask = np.asanyarray(mask_img.dataobj).astype(np.uint8)
    percentiles = np.percentile(volume, [0.5, 1, 50, 99, 99.5])
    digest = hashlib.sha256(np.ascontiguousarray(volume, dtype=np.float32).tobytes()).hexdigest()
    fg = volume[mask > 0]
    fg_stats = {"mean": float(fg.mean()), "median": float(np.median(fg)), "min": float(fg.min()), "max": float(fg.max()),
                "percentile_00_5": float(np.percentile(fg, 0.5)), "percentile_99_5": float(np.percentile(fg, 99.5))}  # fmt: skip
    labels = {}
    for label in np.unique(mask)[1:]:
        binary = mask == label
        comps, n = ndimage.label(binary, structure=np.ones((3, 3, 3)))
        centre = ndimage.center_of_mass(binary)
        world = vol_img.affine[:3, :3] @ np.asarray(centre) + vol_img.affine[:3, 3]
        labels[str(int(label))] = {"voxels": int(binary.sum()), "components": int(n), "centroid_mm": [float(v) for v in world]}
    (scratch / "naive_audit.json").write_text(json.dumps({"percentiles": percentiles.tolist(), "sha256": digest, "foreground": fg_stats, "labels": labels}))
    return {"ID": _one(root, SAMPLE).name}


NAIVE = {
    "audit": naive_audit,
    "01": naive_01, "02": naive_02, "03": naive_03, "04": naive_04, "05": naive_05, "detect": naive_detect,
    "close": lambda root, scratch: _naive_repair("close", root, scratch),
    "open": lambda root, scratch: _naive_repair("open", root, scratch),
    "threshold": naive_threshold,
}  # fmt: skip
NAIVE_SLICES = 60


def same_output(routine: Routine, work: Path, scratch: Path, naive: dict) -> bool | None:
    """Whether the naive route's output equals the routine's (voxels, or region sizes); None where not compared."""
    from utils.files.nifti_io import load_nifti, read_mask
    from utils.files.spreadsheet import read_sheet

    def tool_mask(pattern: str) -> np.ndarray:
        path = _one(work, pattern)
        return read_mask(load_nifti(path), path)

    def naive_mask(name: str) -> np.ndarray:
        path = scratch / name
        return read_mask(load_nifti(path), path)

    if routine.key in ("02", "03", "threshold"):
        return bool(np.array_equal(tool_mask(f"{SAMPLE}/*_mask.nii.gz"), naive_mask("mask.nii.gz")))
    if routine.key == "04":
        return all(np.array_equal(tool_mask(f"{SAMPLE}/*_mask_{i:02d}_*.nii.gz"), naive_mask(f"mask_{i:02d}.nii.gz")) for i in range(27))
    if routine.key in ("close", "open"):
        s0, s1 = naive["slices"]
        return bool(np.array_equal(tool_mask(f"{SAMPLE}/*_mask.nii.gz")[:, :, s0:s1], np.load(scratch / f"naive_{routine.key}.npy")))
    if routine.key == "audit":
        record = next(r for r in json.loads((work / "audit/audit.json").read_text())["records"] if r["sample"] == naive["ID"])
        ref = json.loads((scratch / "naive_audit.json").read_text())
        same_fg = all(np.isclose(record["foreground"][k], v, rtol=1e-6, atol=1e-4) for k, v in ref["foreground"].items())
        ours = record["mask"]["labels"]
        same_labels = set(ours) == set(ref["labels"]) and all(
            ours[k]["voxels"] == v["voxels"] and ours[k]["components"] == v["components"]
            and np.allclose(ours[k]["centroid_mm"], v["centroid_mm"], atol=1e-3) for k, v in ref["labels"].items()
        )  # fmt: skip
        return bool(same_fg and same_labels)
    if routine.key == "detect":
        sheet = read_sheet(work / "descriptor" / "small.xlsx")
        sheet = sheet[sheet["ID"].astype(str) == naive["ID"]]  # the naive route looks at one of the scans
        sizes = {str(k): sorted(int(v) for v in g["voxel_count"]) for k, g in sheet.groupby("label_index")}
        return sizes == naive["sizes"]
    return None


# --- the table ------------------------------------------------------------------------------------------------------


def build_states(base: Path, subjects: list[str], mask: np.ndarray, affine: np.ndarray, keys: tuple[str, ...]) -> dict[str, Path]:
    """Input state of every routine: ``states[key]`` is the tree that routine ``key`` starts from."""
    states: dict[str, Path] = {}
    archive = base / "state_archive"
    write_archive(archive, subjects, mask, affine)
    done = {"": archive}
    for key in ("01", "02", "03", "04"):
        nxt = base / f"state_{key}"
        snapshot(done[BY_KEY[key].after], nxt)
        argv = command(BY_KEY[key], nxt)
        if load_script(argv[0]).main(argv[1:]) != 0:
            raise RuntimeError(f"setting up: {key} failed")
        done[key] = nxt
    for key in keys:
        states[key] = done[BY_KEY[key].after]
    return states


def bench_sample(
    label: str, mask: np.ndarray, affine: np.ndarray, tmp: Path, repeats: int, naive: bool, keys: tuple[str, ...], n_scans: int
) -> list[str]:
    """Table rows of one sample: each routine on ``n_scans`` copies of it, times divided by ``n_scans``."""
    base = tmp / label
    base.mkdir()
    states = build_states(base, [f"bench{i:03d}" for i in range(n_scans)], mask, affine, keys)
    volume_mb = mask.size * 4 / 2**20
    lines = []
    for key in keys:
        routine, work = BY_KEY[key], base / "work"
        res = measure({"routine": key, "mode": "routine"}, states[key], work, repeats)
        outputs = [str(p) for p in changed_files(states[key], work)]
        floor = measure({"routine": key, "mode": "floor", "outputs": outputs, "outputs_from": str(work)}, states[key], base / "floor", repeats)
        nv, same = None, None
        if naive:
            scratch = base / "scratch"
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir()
            job = {"routine": key, "mode": "naive", "scratch": str(scratch), "naive_slices": NAIVE_SLICES}
            nv = measure(job, states[key], base / "naive", 1)
            nv["seconds"] /= nv.get("samples", 1)  # the naive routes do one sample, but 01 and 05 do them all
            same = same_output(routine, work, scratch, nv)
        for r in (res, floor):
            r["seconds"] /= n_scans
            r["cpu"] /= n_scans
        ratio = res["seconds"] / floor["seconds"]
        cpu_ratio = res["cpu"] / floor["cpu"]
        note = [f"{floor['files'][0]} files read, {floor['files'][1]} written"]
        if nv and "slices" in nv:
            note.append(f"naive run on {nv['slices'][1] - nv['slices'][0]} slices, extrapolated")
        naive_s = "" if nv is None else f"{nv['seconds']:.1f}"
        naive_x = "" if nv is None else f"{nv['seconds'] / res['seconds']:.0f}x"
        same_text = "" if same is None else ("yes" if same else "NO")
        lines.append(
            f"| {label} | {routine.title} | {res['seconds']:.2f} | {floor['seconds']:.2f} | {ratio:.2f}x | {cpu_ratio:.2f}x | {naive_s} | {naive_x} | "
            f"{same_text} | {res['peak_mb']:.0f} ({res['peak_mb'] / volume_mb:.2f}x) | {'; '.join(note)} |"
        )
        print(f"  {label}: {key} {res['seconds']:.2f} s, floor {floor['seconds']:.2f} s, {ratio:.2f}x (CPU {cpu_ratio:.2f}x)", file=sys.stderr, flush=True)
        shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(base)
    return lines


def sweep(tmp: Path, mask: np.ndarray, affine: np.ndarray, n_scans: int, workers: list[int], keys: tuple[str, ...] = SWEEP) -> list[str]:
    """Throughput of each routine of ``keys`` on ``n_scans`` scans with each number of workers."""
    base = tmp / "sweep"
    base.mkdir()
    states = build_states(base, [f"bench{i:03d}" for i in range(n_scans)], mask, affine, keys)
    lines = []
    for key in keys:
        single = None
        for k in workers:
            res = measure({"routine": key, "mode": "routine", "workers": k}, states[key], base / "work", 1)
            rate = n_scans / res["seconds"]
            single = single or rate
            lines.append(f"| {BY_KEY[key].title} | {k} | {res['seconds']:.1f} | {rate:.2f} | {rate / single:.2f}x | {rate / single / k:.0%} |")
            print(f"  sweep: {key} workers {k}: {res['seconds']:.1f} s", file=sys.stderr, flush=True)
    shutil.rmtree(base)
    return lines


def main(argv: list[str] | None = None) -> int:
    global NAIVE_SLICES
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="fresh-process runs per measurement (median; default 3)")
    parser.add_argument("--quick", action="store_true", help="1 run per measurement, naive morphology on 16 slices, 4 scans in the sweep")
    parser.add_argument("--scans", type=int, default=None, help="scans in the workers sweep (default 4 x cores, at least 8; --quick: 4)")
    parser.add_argument("--routines", nargs="+", choices=[r.key for r in ROUTINES], help="only these routines (default: all)")
    parser.add_argument("--no_real", action="store_true", help="skip the real gl003 mask")
    parser.add_argument("--table_scans", type=int, default=4,
                        help="copies of each sample per table run; times are divided by it (default %(default)s)")  # fmt: skip
    parser.add_argument("--no_naive", action="store_true", help="skip the naive routes")
    parser.add_argument("--no_sweep", action="store_true", help="skip the workers sweep")
    parser.add_argument("--naive_slices", type=int, default=60, help="slices of the naive morphology, extrapolated (0: all)")
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker:
        job = json.loads(args._worker)
        NAIVE_SLICES = int(job.get("naive_slices", NAIVE_SLICES))
        print(json.dumps(worker(job)))
        return 0
    from utils.files.nifti_io import GZIP_BACKEND, load_nifti, read_mask

    cores = os.cpu_count() or 1
    repeats = 1 if args.quick else args.repeats
    NAIVE_SLICES = 16 if args.quick else args.naive_slices
    n_scans = args.scans or (4 if args.quick else max(8, 4 * cores))
    workers = sorted({1, *[w for w in (2, 4, 8, 16, 32, 64) if w <= cores], cores})
    samples = [("synthetic", *bench_mask())]
    keys = tuple(args.routines or (r.key for r in ROUTINES))
    if REAL_MASK.is_file() and not args.no_real:
        img = load_nifti(REAL_MASK)
        samples.append(("real gl003", read_mask(img, REAL_MASK), img.affine))
    t0 = time.perf_counter()
    table, sweep_lines = [], []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        for label, mask, affine in samples:
            table += bench_sample(label, mask, affine, Path(tmp), repeats, not args.no_naive, keys, args.table_scans)
        if not args.no_sweep:
            sweep_lines = sweep(Path(tmp), samples[0][1], samples[0][2], n_scans, workers, tuple(k for k in SWEEP if k in keys))
    print(f"Pipeline benchmark, {time.strftime('%Y-%m-%d')}, {platform.machine()} {cores} cores ({platform.processor() or platform.platform()}), "
          f"Python {platform.python_version()}, gzip {GZIP_BACKEND}; median of {repeats} fresh processes; total {time.perf_counter() - t0:.0f} s")  # fmt: skip
    for label, mask, _ in samples:
        print(f"- {label}: mask {mask.shape}, labels {sorted(int(v) for v in np.unique(mask) if v)}")
    print()
    print("| sample | routine | seconds | I/O floor | vs floor | CPU vs floor | naive s | naive / routine | same output | peak MB (x float32 vol) | notes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(table))
    if sweep_lines:
        print()
        print(f"Workers sweep: {n_scans} scans (synthetic), one run each")
        print()
        print("| routine | workers | seconds | scans/s | speed-up | efficiency |")
        print("|---|---|---|---|---|---|")
        print("\n".join(sweep_lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
