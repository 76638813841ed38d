"""Write one grouped sample from an archive volume and its mask (the body of every ``02_confirm_pairs``).

The volume is written float32 with its scaling applied, on its own grid. The
mask is checked (finite integers in [0, 255], values allowed by the dataset),
aligned onto the volume grid (:func:`utils.alignment.align_mask_to_volume`)
and written uint8 with the volume's affine. The info yaml records what was
done: the source files, the alignment method and displacement, any
qform/sform disagreement, and a ``history`` entry.

Re-running writes the same files. A sample that later steps have already
modified (label remap, binary masks, QC tools) is not overwritten unless
asked, because that would silently undo their work.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from utils.alignment import GRID_TOL_VOXEL, align_mask_to_volume, qform_sform_mismatch_mm
from utils.labels import check_labels
from utils.nifti_io import load_nifti, read_mask, save_nifti, volume_values
from utils.sample_info import SampleDir, history_entry, read_info, write_info

__all__ = ["PAIR_STEP", "PairJob", "write_pair"]

logger = logging.getLogger(__name__)

#: ``history`` step name written by routine 02.
PAIR_STEP = "confirm_pairs"


@dataclass(frozen=True)
class PairJob:
    """Everything routine 02 needs to write one sample (picklable for worker processes).

    Attributes
    ----------
    sample_dir : Path
        Destination folder, named by the sample ID.
    volume : Path
        Archive volume file.
    mask : Path or None
        Archive mask file; None for a volume without mask (ESO allows it).
    info : dict
        Attributes for the info yaml (dataset-specific: subset, sex, …).
    allowed_labels : collection of int or None
        Mask values the raw archive may hold; None accepts 0..255.
    allow_resample : bool
        Resample a mask on another grid with nearest neighbour instead of failing.
    overwrite : bool
        Rebuild a sample that later steps already modified.
    tol_voxel : float
        Grid tolerance (fraction of the smallest voxel spacing).
    duplicates : tuple of Path
        Other archive copies of the same volume/mask, compared with the chosen ones.
    """

    sample_dir: Path
    volume: Path
    mask: Path | None
    info: dict[str, Any]
    allowed_labels: Collection[int] | None = None
    allow_resample: bool = False
    overwrite: bool = False
    tol_voxel: float = GRID_TOL_VOXEL
    duplicates: tuple[tuple[Path, Path | None], ...] = field(default_factory=tuple)


def _later_steps(sample: SampleDir) -> list[str]:
    """History steps after routine 02 already applied to an existing sample, and binary masks present."""
    steps: list[str] = []
    if sample.info.is_file():
        try:
            steps = [str(h.get("step")) for h in read_info(sample.info).get("history") or [] if h.get("step") != PAIR_STEP]
        except ValueError:
            steps = []
    if sample.path.is_dir() and sample.binary_masks():
        steps.append("binary masks present")
    return steps


def _compare_copies(job: PairJob, volume_data: np.ndarray, volume_affine: np.ndarray, mask_data: np.ndarray | None) -> list[str]:
    """Warnings for duplicate archive copies that differ from the chosen ones."""
    warnings = []
    for dup_volume, dup_mask in job.duplicates:
        for kind, path, ref, ref_affine, reader in (
            ("volume", dup_volume, volume_data, volume_affine, volume_values),
            ("mask", dup_mask, mask_data, None, read_mask),
        ):
            if path is None or ref is None:
                continue
            img = load_nifti(path)
            data = reader(img, path)
            if data.shape != ref.shape or not np.array_equal(data, ref):
                warnings.append(f"{kind} copy {path} differs in voxels from {job.volume if kind == 'volume' else job.mask}")
            elif ref_affine is not None and not np.allclose(img.affine, ref_affine, atol=1e-6):
                warnings.append(f"{kind} copy {path} differs in affine from {job.volume}")
    return warnings


def write_pair(job: PairJob) -> dict[str, Any]:
    """Write ``{ID}_volume.nii.gz``, ``{ID}_mask.nii.gz`` and ``{ID}_info.yaml`` for one sample.

    Returns
    -------
    summary : dict
        ``alignment`` method and ``warnings`` (also written to the info yaml).

    Raises
    ------
    ValueError
        Bad input: unreadable file, non-integer or disallowed mask values,
        grids that do not match, sample already modified by later steps.
    """
    sample = SampleDir(Path(job.sample_dir))
    later = _later_steps(sample)
    if later and not job.overwrite:
        raise ValueError(
            f"{sample.path}: already processed by later steps ({', '.join(later)}); "
            "rebuilding would undo them — pass --overwrite to rebuild it from the archive"
        )
    vol_img = load_nifti(job.volume)
    volume = volume_values(vol_img, job.volume)  # int16 stays int16: cast to float32 slab by slab when written
    info: dict[str, Any] = {"ID": sample.id, **job.info}
    warnings: list[str] = []
    source: dict[str, Any] = {"volume": str(job.volume), "mask": str(job.mask) if job.mask else None}
    qs = qform_sform_mismatch_mm(vol_img)
    if qs is not None and qs > 1e-3:
        warnings.append(f"{job.volume}: qform and sform disagree by up to {qs:.3g} mm; the sform was used")
    mask_out = None
    if job.mask is not None:
        mask_img = load_nifti(job.mask)
        mask = read_mask(mask_img, job.mask)
        if job.allowed_labels is not None:
            check_labels(mask, job.allowed_labels, str(job.mask))
        qs = qform_sform_mismatch_mm(mask_img)
        if qs is not None and qs > 1e-3:
            warnings.append(f"{job.mask}: qform and sform disagree by up to {qs:.3g} mm; the sform was used")
        aligned = align_mask_to_volume(
            mask, mask_img.affine, volume.shape, vol_img.affine, tol_voxel=job.tol_voxel, allow_resample=job.allow_resample, source=str(job.mask)
        )
        mask_out = aligned.data
        source["alignment"] = {
            "method": aligned.method,
            "displacement_mm": None if np.isnan(aligned.displacement_mm) else float(aligned.displacement_mm),
            "axis_transform": aligned.axis_transform or None,
            "mask_dtype_in_archive": str(mask_img.get_data_dtype()),
        }
        if aligned.method == "resampled":
            warnings.append(f"{job.mask}: resampled onto the volume grid with nearest neighbour")
    warnings.extend(_compare_copies(job, volume, vol_img.affine, mask_out))
    sample.path.mkdir(parents=True, exist_ok=True)
    if later:  # --overwrite: remove outputs of later steps that the rebuild makes stale
        for _idx, (_short, path) in sample.binary_masks().items():
            path.unlink()
    save_nifti(sample.volume, volume, vol_img.affine, dtype=np.float32, template=vol_img, descrip="")
    if mask_out is not None:
        save_nifti(sample.mask, mask_out, vol_img.affine, dtype=np.uint8, template=vol_img, descrip="")
    elif sample.mask.exists():
        sample.mask.unlink()
    info["source"] = source
    info["warnings"] = warnings
    info["history"] = [history_entry(PAIR_STEP, allow_resample=job.allow_resample, tol_voxel=job.tol_voxel)]
    write_info(sample.info, info)
    for w in warnings:
        logger.warning("%s: %s", sample.id, w)
    return {"alignment": source.get("alignment", {}).get("method") if job.mask else None, "warnings": warnings}
