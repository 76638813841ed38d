"""A small synthetic ESO-2025.10.31 archive in plausible layouts, with the quirks routine 01-06 must handle.

Made for the demo and the end-to-end tests (no patient data). It holds:

- three sites: ``tongji`` and ``xiangyang`` as ``{site}/{phase}/images|masks/{pid}.nii.gz``,
  ``shiyan-taihe`` as ``{site}/{pid}/{pid}_{phase}_image|mask.nii.gz``;
- a pre- and a post-therapy CT of every patient (the tumour shrinks after therapy);
- one volume without mask (xiangyang, second patient, post) — allowed in ESO;
- ``data_meta_{site}.xlsx`` with a patient id column (headed ``pid``, ``PID``,
  ``patient_id``: all accepted), ``Sex``, ``Age``, ``Chemotherapeutic Drugs``,
  a non-ASCII column (``备注``, remarks) and a live ``=HYPERLINK(…)`` formula in tongji's sheet;
  tongji's ids are typed as numbers, as Excel users do;
- one orphan sheet row (a tongji patient with no scan);
- mixed orientations (LPS, RAS), a mask stored with a flipped axis, a float64 mask;
- mask voxels outside [-140, 1000] HU (air in the lumen, a calcification, and on
  xiangyang a mask edge spilling into air) for ``utils/mask_thresholding.py``;
- one NIfTI file that fits no path rule (listed in routine 01's ``Skipped`` sheet).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from openpyxl import Workbook

from utils.archive.synthetic import affine_for, blob_stack_mask, ct_like_volume, write_raw_nifti, write_stored_mask

__all__ = ["DemoSite", "DEMO_SITES", "ORPHAN_PID", "NO_MASK", "DEMO_SHAPE", "scan_arrays", "make_demo_archive", "demo_sample_ids"]

#: Array shape of every demo scan (small: the whole pipeline runs in seconds).
DEMO_SHAPE = (24, 24, 12)

#: Hounsfield range kept by the tutorial's mask thresholding.
HU_RANGE = (-140.0, 1000.0)


@dataclass(frozen=True)
class DemoSite:
    """One site of the demo archive."""

    folder: str  # site folder name (tongji …)
    code: str  # site code (TJ …)
    layout: str  # "phase_folders" | "patient_folders"
    id_header: str  # header of the pid column in data_meta_{folder}.xlsx
    codes: str  # orientation of the volumes
    pids: tuple[str, ...]
    mask_storage: str = "same"  # same | flipped (first patient's masks)
    mask_dtype: str = "uint8"
    edge_spill: bool = False  # mask edge spilling into air (annotation error seen at xiangyang)


DEMO_SITES: tuple[DemoSite, ...] = (
    DemoSite(
        "tongji", "TJ", "phase_folders", "pid", "LPS",
        ("600112301", "600112457", "600113020", "600113388", "600114102", "600114876", "600115230", "600115911", "600116042", "600116555"),
    ),
    DemoSite("shiyan-taihe", "SYTH", "patient_folders", "PID", "RAS", ("189003440", "189004112", "189005871"), mask_storage="flipped"),
    DemoSite("xiangyang", "XY", "phase_folders", "patient_id", "LPS", ("7710023", "7710187", "7710342"), mask_dtype="float64", edge_spill=True),
)  # fmt: skip

#: A tongji sheet row without any scan.
ORPHAN_PID = "600119999"

#: (site code, pid, phase) of the volume that comes without a mask.
NO_MASK = ("XY", "7710187", "post")

_DRUGS = ("Paclitaxel + Cisplatin", "Docetaxel + Nedaplatin", "5-FU + Cisplatin")


def demo_sample_ids() -> list[str]:
    """Every sample ID ``{site}_{pid}_{phase}`` of the demo archive, sorted."""
    return sorted(f"{s.code}_{pid}_{phase}" for s in DEMO_SITES for pid in s.pids for phase in ("pre", "post"))


def _attributes(site_index: int, pid_index: int) -> tuple[str, int, str]:
    """(Sex, Age, drugs) of one demo patient, fixed."""
    return ("M" if (site_index + pid_index) % 3 else "F", 48 + 3 * pid_index + site_index, _DRUGS[(pid_index + site_index) % len(_DRUGS)])


def scan_arrays(site: DemoSite, pid_index: int, phase: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(volume int16 HU, mask uint8, affine) of one scan, on the volume grid.

    The mask is a tumour blob (label 1) around the oesophagus; its lumen holds
    air (-950 HU), one voxel is calcified (1200 HU), and with ``edge_spill`` a
    strip of the mask lies in the air outside the body.
    """
    rng = np.random.default_rng(seed)
    radius = 0.22 if phase == "pre" else 0.14  # the tumour shrinks under therapy
    mask = blob_stack_mask(DEMO_SHAPE, [1], axis=2, radius_fraction=radius, rng=rng)
    volume = ct_like_volume(mask, rng)
    tumour = mask > 0
    volume[tumour] = (45 + rng.normal(0, 12, int(tumour.sum()))).astype(np.int16)
    ci, cj = DEMO_SHAPE[0] // 2, DEMO_SHAPE[1] // 2
    volume[ci : ci + 2, cj : cj + 2, 3:9] = -950  # air in the lumen, inside the mask
    volume[ci - 3, cj, DEMO_SHAPE[2] // 2] = 1200  # calcification inside the mask
    mask[ci - 3, cj, DEMO_SHAPE[2] // 2] = 1
    if site.edge_spill:
        mask[0:2, cj - 2 : cj + 2, 4:8] = 1  # annotation spilling into the air outside the body
    spacing = (0.8, 0.8, 2.5)
    affine = affine_for(site.codes, spacing, origin=(-10.0 - pid_index, 12.0, -80.0 + 2 * seed))
    return volume.astype(np.int16), mask, affine


def _paths(root: Path, site: DemoSite, pid: str, phase: str) -> tuple[Path, Path]:
    if site.layout == "patient_folders":
        base = root / site.folder / pid
        return base / f"{pid}_{phase}_image.nii.gz", base / f"{pid}_{phase}_mask.nii.gz"
    return root / site.folder / phase / "images" / f"{pid}.nii.gz", root / site.folder / phase / "masks" / f"{pid}.nii.gz"


def _write_meta_sheet(path: Path, site_index: int, site: DemoSite) -> Path:
    """``data_meta_{site}.xlsx``: id column, Sex, Age, Chemotherapeutic Drugs (+ tongji: 备注, Report, an orphan row)."""
    wb = Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    extra = site.code == "TJ"
    ws.append([site.id_header, "Sex", "Age", "Chemotherapeutic Drugs"] + (["备注", "Report"] if extra else []))
    pids = list(site.pids) + ([ORPHAN_PID] if extra else [])
    for i, pid in enumerate(pids):
        sex, age, drugs = _attributes(site_index, i)
        row: list[object] = [int(pid) if extra else pid, sex, age, drugs]  # tongji's ids typed as numbers
        if extra:
            row += ["术后复查" if i == 1 else None, f'=HYPERLINK("http://pacs.example/report/{pid}","report")' if i == 0 else None]
        ws.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def make_demo_archive(archive_root: Path) -> list[Path]:
    """Write the demo archive below ``archive_root`` (created; existing files are overwritten).

    Parameters
    ----------
    archive_root : Path
        ``root_dir/archive``.

    Returns
    -------
    files : list of Path
        Every file written.
    """
    archive_root = Path(archive_root)
    written: list[Path] = []
    seed = 0
    for site_index, site in enumerate(DEMO_SITES):
        for pid_index, pid in enumerate(site.pids):
            for phase in ("pre", "post"):
                seed += 1
                volume, mask, affine = scan_arrays(site, pid_index, phase, seed)
                vol_path, mask_path = _paths(archive_root, site, pid, phase)
                written.append(write_raw_nifti(vol_path, volume, affine))
                if (site.code, pid, phase) == NO_MASK:
                    continue
                storage = "flipped" if site.mask_storage == "flipped" and pid_index == 0 else "same"
                written.append(write_stored_mask(mask_path, mask, affine, dtype=site.mask_dtype, storage=storage))
        written.append(_write_meta_sheet(archive_root / f"data_meta_{site.folder}.xlsx", site_index, site))
    odd = archive_root / "tongji" / "localizer.nii.gz"
    written.append(write_raw_nifti(odd, np.zeros((4, 4, 4), np.int16), np.eye(4)))
    return written
