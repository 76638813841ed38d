"""Split a multi-label mask into one binary mask per label of the label map.

Every label of the map gets a file, also labels absent from the mask (all
zero), named ``{ID}_mask_{index:02d}_{short}.nii.gz``; label 0 gives the
background mask. A mask value missing from the label map is an error.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from utils.files.atomic import remove_stale_temporaries
from utils.labels.label_stats import LabelStats, label_stats
from utils.labels.label_maps import LabelMap, check_labels
from utils.files.nifti_io import load_nifti, read_mask, save_nifti
from utils.files.sample_lock import sample_lock
from utils.files.sample_info import BINARY_MASKS_FROM, BINARY_MASKS_STEP, SampleDir, binary_masks_source, file_stamp, history_entry, read_info, record_mask_labels, write_info

if TYPE_CHECKING:
    import nibabel as nib

__all__ = ["UP_TO_DATE", "binary_mask_of", "write_binary_masks", "extract_sample_binary_masks"]

#: Start of the summary of a sample whose binary masks are already up to date (nothing written).
UP_TO_DATE = "up to date"

logger = logging.getLogger(__name__)


def binary_mask_of(mask: npt.NDArray[np.uint8], label: int, bbox: tuple[slice, ...] | None) -> npt.NDArray[np.uint8]:
    """``mask == label`` as uint8 {0, 1}, computed only inside the label's bounding box.

    Parameters
    ----------
    mask : (I, J, K) ndarray of uint8
    label : int
    bbox : tuple of slice or None
        Bounding box of ``label`` (from :meth:`utils.labels.label_stats.LabelStats.boxes`);
        None when the label is absent.

    Returns
    -------
    binary : (I, J, K) ndarray of uint8
        In the memory layout of ``mask``: a Fortran-ordered mask (as NIfTI
        stores it) gives a Fortran-ordered binary, which nibabel serialises
        without a transposing copy (~7x faster for 512x512x300).
    """
    order = "F" if mask.flags.f_contiguous and not mask.flags.c_contiguous else "C"
    out = np.zeros(mask.shape, dtype=np.uint8, order=order)
    if bbox is not None:
        out[bbox] = mask[bbox] == label
    return out


def write_binary_masks(
    sample: SampleDir,
    mask: npt.NDArray[np.uint8],
    affine: npt.NDArray[np.float64],
    template: nib.Nifti1Image,
    label_map: LabelMap,
    stats: LabelStats | None = None,
) -> list[int]:
    """Write every binary mask of ``sample`` from its multi-label mask.

    Parameters
    ----------
    sample : SampleDir
        Destination folder.
    mask : (I, J, K) ndarray of uint8
        Multi-label mask, already checked against ``label_map``.
    affine : (4, 4) ndarray
        Its voxel-to-world matrix (written unchanged).
    template : nibabel image
        Header source (units, sform/qform codes).
    label_map : LabelMap
    stats : LabelStats, optional
        :func:`utils.labels.label_stats.label_stats` of ``mask`` when already computed.

    Returns
    -------
    present : list of int
        Foreground labels present in the mask.
    """
    boxes = (stats if stats is not None else label_stats(mask)).boxes(lab.index for lab in label_map)
    present = []
    for label in label_map:
        if label.index == 0:
            binary = (mask == 0).view(np.uint8)
        else:
            bbox = boxes.get(label.index)
            binary = binary_mask_of(mask, label.index, bbox)
            if bbox is not None:
                present.append(label.index)
        save_nifti(sample.binary_mask(label.key), binary, affine, dtype=np.uint8, template=template, descrip="")
    return present


def extract_sample_binary_masks(sample: SampleDir, label_map: LabelMap, step: str = BINARY_MASKS_STEP) -> str:
    """Routine body: read ``{ID}_mask.nii.gz``, check labels, write all binary masks, record it in the info yaml.

    Re-running skips a sample whose binary masks are up to date: every file of
    the label map exists, the latest history entry that wrote them (this step,
    or a mask-QC tool that rewrote them with the mask) records the mask file it
    derived them from (size and CRC-32) and that is still the mask on disk, and
    this step last ran with the same labels. Otherwise (a mask changed by hand or
    by routine 03, a binary mask deleted, another label map, an interrupted run)
    all binary masks are written again. Binary masks of labels that are no longer
    in the label map are reported, not deleted.

    Returns
    -------
    summary : str
        One line for the log.

    Raises
    ------
    ValueError
        Missing mask, values not in the label map (message names the file).
    """
    if not sample.mask.is_file():
        raise FileNotFoundError(f"{sample.mask}: mask file missing")
    with sample_lock(sample.path):  # one writer per sample folder
        return _extract_locked(sample, label_map, step)


def _extract_locked(sample: SampleDir, label_map: LabelMap, step: str) -> str:
    remove_stale_temporaries(sample.path)
    info = read_info(sample.info) if sample.info.is_file() else None
    stamp = file_stamp(sample.mask)
    keys = [lab.key for lab in label_map]
    if info is not None and _up_to_date(sample, info, stamp, keys, step):
        return f"{UP_TO_DATE}: {len(keys)} binary masks derived from the current mask"
    img = load_nifti(sample.mask)
    mask = read_mask(img, sample.mask)
    stats = label_stats(mask)
    check_labels(stats, label_map, str(sample.mask))
    present = write_binary_masks(sample, mask, img.affine, img, label_map, stats)
    wanted = {lab.key for lab in label_map}
    stale = [p.name for idx, (short, p) in sample.binary_masks().items() if f"{idx:02d}_{short}" not in wanted]
    if stale:
        logger.warning("%s: binary masks not in the label map left untouched: %s", sample.path, ", ".join(stale))
    if info is not None:
        history = [h for h in info.get("history") or [] if h.get("step") != step]
        entry = history_entry(step, labels=keys)
        entry[BINARY_MASKS_FROM] = stamp
        history.append(entry)
        info["history"] = history
        record_mask_labels(info, sample.mask, stats.counts, stamp)
        write_info(sample.info, info)
    return f"{len(label_map)} binary masks, labels present {present}"


def _up_to_date(sample: SampleDir, info: dict, stamp: dict, keys: list[str], step: str) -> bool:
    """True when the binary masks of ``keys`` exist and were derived from the mask file described by ``stamp``."""
    last = next((h for h in reversed(info.get("history") or []) if isinstance(h, dict) and h.get("step") == step), None)
    if last is None or (last.get("params") or {}).get("labels") != keys or binary_masks_source(info) != stamp:
        return False
    return all(sample.binary_mask(key).is_file() for key in keys)


def sample_binary_paths(sample: SampleDir, label_map: LabelMap) -> dict[int, Path]:
    """Expected binary-mask path of each label of the map."""
    return {lab.index: sample.binary_mask(lab.key) for lab in label_map}
