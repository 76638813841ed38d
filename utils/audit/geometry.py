"""Do nibabel and ITK read a file's geometry the same way? The audit asks the toolkit's geometry module.

The rules both readers apply are written once, in :mod:`utils.geometry` (``docs/geometry.md``):
:func:`utils.files.nifti_readers.check_reader_agreement` models nibabel's and ITK's reading of the raw
header and returns whether every voxel centre lands within 0.001 mm under both, with reason codes
(``NO_SPATIAL_CODES``, ``PIXDIM_SFORM_MISMATCH``, ``SHEARED_SFORM``, ``QFORM_SFORM_MISMATCH``, …).
The audit never re-implements them: :func:`reader_agreement` turns that verdict into plain data for
the sample's record, from which :mod:`utils.audit.checks` reports ``READERS_DISAGREE`` (the readers
place the voxels differently) and ``HEADER_AMBIGUOUS`` (they agree, yet the header holds fields that
other readers may read differently).
"""

from __future__ import annotations

from typing import Any

__all__ = ["reader_agreement"]


def reader_agreement(img: Any) -> dict[str, Any]:
    """The reader-agreement verdict of one image as read by :func:`utils.files.nifti_io.load_nifti` (its raw header).

    Returns
    -------
    result : dict
        ``agree`` (bool), ``reasons`` (codes of :data:`utils.files.nifti_readers.READER_CODES`),
        ``displacement_mm`` (largest distance between the two readings of a voxel centre; None when a
        reader cannot read the file) and ``messages`` (one line per reason).
    """
    from utils.files.nifti_readers import check_reader_agreement

    verdict = check_reader_agreement(img)
    displacement = float(verdict.displacement_mm)
    return {
        "agree": bool(verdict.agree),
        "reasons": [str(r) for r in verdict.reasons],
        "displacement_mm": round(displacement, 6) if displacement != float("inf") else None,
        "messages": [str(m) for m in verdict.messages],
    }
