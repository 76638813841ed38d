"""Routine 03's work: drop sacrum/coccyx and move T13 to 26, exactly once.

The remap ``{26: 0, 27: 0, 28: 26}`` destroys T13 if applied twice (the
second run would read the new 26 as sacrum). A revised mask therefore carries
a marker in its NIfTI header ``descrip`` field — written in the same atomic
rename as the voxels, so no crash can separate them — and the step is recorded
in the info yaml; either marker makes a re-run skip the sample.
"""

from __future__ import annotations

import logging

import numpy as np

from utils.files.atomic import remove_stale_temporaries
from utils.labels.label_stats import high_label_counts, label_stats
from utils.labels.label_maps import check_labels, remap_labels
from utils.files.nifti_io import header_descrip, load_nifti, read_mask, save_nifti
from utils.files.sample_info import SampleDir, has_step, history_entry, read_info, write_info
from utils.files.sample_lock import sample_lock

__all__ = ["REVISION_STEP", "REVISION_MARKER", "ALREADY_REVISED", "revise_sample_labels"]

logger = logging.getLogger(__name__)

REVISION_STEP = "reduce_sacrum_coccyx_and_revise_T13"
#: Written to the header ``descrip`` of a revised mask.
REVISION_MARKER = "verse-labels-revised(26,27->0;28->26)"
#: Start of the summary of a sample that was already revised (skipped).
ALREADY_REVISED = "already revised"


def revise_sample_labels(sample: SampleDir, mapping: dict[int, int], raw_range: tuple[int, int]) -> str:
    """Apply ``mapping`` to ``{ID}_mask.nii.gz`` unless it was already applied.

    Parameters
    ----------
    sample : SampleDir
    mapping : dict of int to int
        Simultaneous remap (``{26: 0, 27: 0, 28: 26}``).
    raw_range : (int, int)
        Values allowed in an unrevised mask (inclusive).

    Returns
    -------
    summary : str
        What happened, for the log.

    Raises
    ------
    ValueError
        Missing mask, values outside ``raw_range``, binary masks already
        extracted (they would become stale: run routine 03 before 04).
    """
    with sample_lock(sample.path):  # one writer per sample folder
        return _revise_locked(sample, mapping, raw_range)


def _revise_locked(sample: SampleDir, mapping: dict[int, int], raw_range: tuple[int, int]) -> str:
    remove_stale_temporaries(sample.path)
    info = read_info(sample.info) if sample.info.is_file() else {}
    if not sample.mask.is_file():
        raise FileNotFoundError(f"{sample.mask}: mask file missing")
    img = load_nifti(sample.mask)
    if REVISION_MARKER in header_descrip(img) or has_step(info, REVISION_STEP):
        if REVISION_MARKER in header_descrip(img) and not has_step(info, REVISION_STEP):
            _record(sample, info, mapping)  # crash between mask and info write: complete the record
        return f"{ALREADY_REVISED}; skipped (applying the remap twice would turn T13 into background)"
    if sample.binary_masks():
        raise ValueError(
            f"{sample.path}: binary masks already exist; routine 03 must run before routine 04 "
            "(re-run 02 with --overwrite, then 03 and 04)"
        )
    mask = read_mask(img, sample.mask)
    # Only the labels the remap touches (and any value above the allowed range) are looked for, in the
    # few slices that reach them; the binary-mask routine that follows counts every label.
    lowest = min([k for k, v in mapping.items() if k != v], default=raw_range[1] + 1)
    high = high_label_counts(mask, min(lowest, raw_range[1] + 1))
    if raw_range[0] > 0 or any(v > raw_range[1] for v in high):
        check_labels(label_stats(mask), set(range(raw_range[0], raw_range[1] + 1)), str(sample.mask))  # raises, naming the values
    present = list(high)
    revised = remap_labels(mask, mapping, in_place=True)
    save_nifti(sample.mask, revised, img.affine, dtype=np.uint8, template=img, descrip=REVISION_MARKER)
    _record(sample, info, mapping)
    changed = {k: v for k, v in mapping.items() if k in present}
    return f"revised {changed}" if changed else "no sacrum, coccyx or T13 voxels; marked as revised"


def _record(sample: SampleDir, info: dict, mapping: dict[int, int]) -> None:
    history = list(info.get("history") or [])
    history.append(history_entry(REVISION_STEP, mapping={int(k): int(v) for k, v in mapping.items()}))
    info["history"] = history
    write_info(sample.info, info)
