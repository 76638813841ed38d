"""A small synthetic VerSe archive in the real layout, with the real archive's quirks.

Made for the demo and the end-to-end tests (no patient data). It holds:

- both archives: ``VerSe19/dataset-verse19{training,validation,test}`` (one level
  deeper, as in some downloads) and ``dataset-01training``, ``dataset-02validation``,
  ``dataset-03test`` (VerSe20), each with ``rawdata/`` and ``derivatives/``;
- ``split-`` subjects (verse401 with scans verse201 and verse253);
- ``dir-`` and no-``dir-`` names;
- a VerSe19 scan duplicated in VerSe20 (verse004, identical copy);
- mixed orientations (LPS, RAS, PIR, ASL) and an oblique scan (~4.6 degrees);
- a float64 mask, an int16 mask, a mask stored with a flipped axis (verse201)
  and one with permuted axes;
- labels 26 (sacrum), 27 (coccyx) and 28 (T13);
- non-NIfTI sidecars (``*_ctd.json``, ``*_snp.png``) and one NIfTI file whose
  name is outside the grammar (listed in routine 01's ``Skipped`` sheet);
- the VerSe19 sex/age spreadsheet in the archive root;
- specks and 1-voxel holes in the masks, for the mask-QC tools.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from utils.archive.synthetic import affine_for, blob_stack_mask, ct_like_volume, write_raw_nifti, write_stored_mask

__all__ = ["DemoScan", "DEMO_SCANS", "make_demo_archive"]


@dataclass(frozen=True)
class DemoScan:
    """One synthetic scan of the demo archive."""

    folder: str  # official folder, relative to the archive root
    subject: str
    split: str | None
    dir_tag: str | None  # ax, iso, sag or None
    codes: str  # orientation of the volume
    labels: tuple[int, ...]  # vertebrae from top (low S index last) to bottom
    mask_dtype: str = "uint8"
    mask_storage: str = "same"  # same | flipped | permuted
    oblique_deg: float = 0.0

    @property
    def stem(self) -> str:
        parts = [f"sub-{self.subject}"]
        if self.split:
            parts.append(f"split-{self.split}")
        if self.dir_tag:
            parts.append(f"dir-{self.dir_tag}")
        return "_".join(parts)


V19 = "VerSe19/dataset-verse19"
DEMO_SCANS: tuple[DemoScan, ...] = (
    DemoScan(f"{V19}training", "verse004", None, None, "PIR", (16, 17, 18, 19, 20)),
    DemoScan(f"{V19}training", "verse401", "verse201", None, "LPS", (19, 20, 21, 22), mask_storage="flipped"),
    DemoScan(f"{V19}training", "verse401", "verse253", None, "LPS", (8, 9, 10, 11)),
    DemoScan(f"{V19}validation", "verse010", None, None, "RAS", (20, 21, 22, 23, 24, 26)),
    DemoScan(f"{V19}test", "verse020", None, None, "LPS", (1, 2, 3, 4, 5)),
    DemoScan("dataset-01training", "verse004", None, None, "PIR", (16, 17, 18, 19, 20)),  # VerSe19 copy
    DemoScan("dataset-01training", "gl003", None, "ax", "LPS", (6, 7, 8, 9, 10)),
    DemoScan("dataset-01training", "verse505", None, None, "LPS", (18, 19, 28, 20, 21, 22, 23, 24, 26, 27)),
    DemoScan("dataset-01training", "verse506", None, "iso", "PIR", (12, 13, 14, 15), mask_dtype="float64", oblique_deg=4.6),
    DemoScan("dataset-02validation", "verse525", None, "sag", "ASL", (20, 21, 22, 23, 24), mask_dtype="float64", mask_storage="permuted"),
    DemoScan("dataset-03test", "gl017", None, None, "RAS", (3, 4, 5, 6, 7), mask_dtype="int16"),
)

#: Sex/age spreadsheet rows (VerSe19 only, as published): verse_ID, subject_ID, Sex, age_ct.
DEMO_PARTICIPANTS = [(4, 4, "F", 65), (201, 401, "M", 71), (253, 401, "M", 71), (10, 10, "M", 54), (20, 20, "F", 38)]


def _scan_arrays(scan: DemoScan, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(volume int16, mask uint8, affine) on the volume grid, vertebrae stacked along the S-I axis."""
    rng = np.random.default_rng(seed)
    shape = [36, 36, 36]
    si_axis = next(i for i, c in enumerate(scan.codes) if c in "SI")
    shape[si_axis] = 8 * len(scan.labels)
    spacing = [1.0, 1.0, 1.0]
    spacing[si_axis] = 1.5
    affine = affine_for(scan.codes, spacing, origin=(-20.0 + seed, 30.0, -100.0 + 3 * seed), oblique_deg=scan.oblique_deg)
    order = list(scan.labels)
    if scan.codes[si_axis] == "S":  # first array index is inferior: put the lowest vertebra first
        order = order[::-1]
    mask = blob_stack_mask(shape, order, axis=si_axis, radius_fraction=0.3, rng=rng, specks=3, holes=3)
    return ct_like_volume(mask, rng), mask, affine


def make_demo_archive(archive_root: Path, *, with_participants: bool = True) -> list[Path]:
    """Write the demo archive below ``archive_root`` (created; existing files are overwritten).

    Parameters
    ----------
    archive_root : Path
        ``root_dir/archive``.
    with_participants : bool
        Also write the sex/age spreadsheet ``VerSe19_participants.xlsx``.

    Returns
    -------
    files : list of Path
        Every file written.
    """
    archive_root = Path(archive_root)
    written: list[Path] = []
    seeds = {}
    for scan in DEMO_SCANS:
        key = (scan.subject, scan.split)
        seed = seeds.setdefault(key, len(seeds) + 1)  # the VerSe20 copy of verse004 is identical
        volume, mask, affine = _scan_arrays(scan, seed)
        raw = archive_root / scan.folder / "rawdata" / f"sub-{scan.subject}"
        der = archive_root / scan.folder / "derivatives" / f"sub-{scan.subject}"
        written.append(write_raw_nifti(raw / f"{scan.stem}_ct.nii.gz", volume, affine))
        written.append(write_stored_mask(der / f"{scan.stem}_seg-vert_msk.nii.gz", mask, affine, dtype=scan.mask_dtype, storage=scan.mask_storage))
        ctd = der / f"{scan.stem}_seg-subreg_ctd.json"
        ctd.write_text(json.dumps([{"direction": list(scan.codes)}] + [{"label": int(v)} for v in scan.labels]))
        png = der / f"{scan.stem}_seg-vert_snp.png"
        png.write_bytes(b"\x89PNG\r\n\x1a\n")
        written += [ctd, png]
    odd = archive_root / "dataset-01training" / "rawdata" / "sub-gl003" / "gl003_localizer.nii.gz"
    written.append(write_raw_nifti(odd, np.zeros((4, 4, 4), np.int16), np.eye(4)))
    if with_participants:
        table = pd.DataFrame(DEMO_PARTICIPANTS, columns=["verse_ID", "subject_ID", "Sex", "age_ct"])
        path = archive_root / "VerSe19_participants.xlsx"
        with pd.ExcelWriter(path, engine="openpyxl") as writer:
            table.to_excel(writer, sheet_name="VerSe_dataset", index=False)
        written.append(path)
    return written
