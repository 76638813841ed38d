"""The audit's finding codes: stable names, default severities, meanings and suggestions.

A code never changes its meaning; a new problem gets a new code. Severities are
the defaults: ``descriptors/<dataset>/audit.yaml`` and ``--policy FILE`` may re-grade
any code (``error`` / ``warning`` / ``info`` / ``off``). ``docs/audit.md`` lists the
same table (a test checks that every code is documented there).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SEVERITIES", "GRADES", "FAIL_ON", "Code", "CODES", "severity_rank"]

#: Severities from the most to the least serious.
SEVERITIES = ("error", "warning", "info")

#: What a policy may set a code to: a severity, or ``off`` (the check does not report).
GRADES = (*SEVERITIES, "off")

#: Values of ``--fail_on``: a severity, or ``never`` (exit 0 whatever was found).
FAIL_ON = (*SEVERITIES, "never")


def severity_rank(severity: str) -> int:
    """0 for ``error``, 1 ``warning``, 2 ``info`` (lower is more serious)."""
    return SEVERITIES.index(severity)


@dataclass(frozen=True)
class Code:
    """One finding code.

    Attributes
    ----------
    code : str
        Stable name (``LABEL_ORDER``).
    severity : str
        Default severity.
    family : str
        ``sample``, ``geometry``, ``labels``, ``intensity``, ``duplicates`` or ``metadata``.
    meaning : str
        What was found, in one sentence.
    suggestion : str
        What to do about it (copied into every finding).
    """

    code: str
    severity: str
    family: str
    meaning: str
    suggestion: str


_CODES = (
    # --- the sample as a whole ----------------------------------------------------------------------------------
    Code("SAMPLE_UNREADABLE", "error", "sample",
         "The volume or mask cannot be read (missing, truncated or corrupt file, not 3D, non-integer mask values) "
         "or the info yaml is not valid.",
         "Rebuild the sample with routine 02 (or fix the file named in the message); nothing else of it was checked."),
    Code("MASK_GRID_MISMATCH", "error", "sample",
         "The mask does not lie on the volume's voxel grid (other shape, or voxel centres further apart than the grid "
         "tolerance).",
         "Run routine 02 again: it puts every mask on its volume's grid or refuses it; the intensity statistics under "
         "the mask were not computed."),
    Code("MASK_MISSING", "warning", "sample",
         "The sample has a volume but no mask.",
         "Add the annotation, or leave the sample out of training (ESO allows image-only test samples)."),
    # --- geometry ----------------------------------------------------------------------------------------------
    Code("READERS_DISAGREE", "error", "geometry",
         "nibabel and ITK (SimpleITK, nnU-Net's default reader, ITK-SNAP, Slicer) place the file's voxels differently "
         "(reason codes and the largest displacement in values; utils.files.nifti_readers.check_reader_agreement).",
         "Rebuild the sample with routine 02 of this version, which writes one geometry every reader agrees on, or fix "
         "the header (see docs/geometry.md)."),
    Code("HEADER_AMBIGUOUS", "warning", "geometry",
         "nibabel and ITK place the voxels alike, but the header holds fields other readers may read differently "
         "(reason codes in values, e.g. a qform that differs from a scanner sform).",
         "Rebuild the sample with routine 02 of this version, which writes qform and sform equal and pixdim consistent."),
    Code("OBLIQUE", "info", "geometry",
         "The voxel axes are oblique to the patient axes by more than the tolerance.",
         "Nothing to do for most frameworks; resample onto an axis-aligned grid if your pipeline assumes one."),
    Code("SPACING_OUTLIER", "warning", "geometry",
         "The voxel spacing along a patient axis is far from the dataset's median (robust, log scale).",
         "Check that the file is the right series and its header spacing is true; resample or exclude it if it is "
         "not part of the cohort."),
    Code("SHAPE_OUTLIER", "warning", "geometry",
         "The field of view (voxels along a patient axis) is far from the dataset's median (robust, log scale).",
         "Check for a localizer, a cropped or a whole-body scan among regional scans; exclude it or crop it."),
    Code("ANISOTROPIC", "warning", "geometry",
         "The largest voxel spacing exceeds the smallest by more than the allowed ratio.",
         "Expect through-plane artefacts after resampling; nnU-Net plans such data with a 2D/anisotropic "
         "configuration. Exclude the scan if a thinner reconstruction exists."),
    # --- labels ------------------------------------------------------------------------------------------------
    Code("MASK_EMPTY", "error", "labels",
         "The mask holds background only.",
         "Find the annotation (a wrong file, or labels lost in conversion) or remove the sample; an empty mask "
         "teaches the network that the structure is absent."),
    Code("LABEL_UNKNOWN", "error", "labels",
         "The mask holds a value that is not in the label map.",
         "Fix the mask or add the label to the label map (descriptor/label_map.yaml)."),
    Code("LABEL_ORDER", "error", "labels",
         "Labels whose anatomical order is fixed (e.g. C1 above C2 ... above L5) appear in another order along the "
         "patient axis, in world coordinates.",
         "Look at the sample in the QC report: two labels are probably swapped; relabel the mask."),
    Code("LABEL_FRAGMENTED", "warning", "labels",
         "A label consists of more 3D pieces of significant size than the anatomy allows (e.g. a vertebra in two "
         "distant pieces).",
         "Look at the sample: part of the structure probably carries a neighbour's label, or a piece of another "
         "structure carries this one."),
    Code("LABEL_AT_FOV_EDGE", "warning", "labels",
         "A label touches the first or last slice of the field of view along a patient axis: the structure is probably "
         "cut by the scan's edge.",
         "Check whether the structure is complete; the VerSe rules, for one, do not annotate partially visible "
         "vertebrae. Remove the partial label or accept it in the policy."),
    Code("LABEL_VOLUME_OUTLIER", "warning", "labels",
         "A label's volume is far from its median volume over the dataset (robust, log scale).",
         "Look at the sample: a merged neighbour, a missing part or a wrong spacing are the usual causes."),
    Code("LABEL_RARE", "info", "labels",
         "A label occurs in very few samples of the dataset (by default: in one sample only).",
         "Check that the value is meant (an anatomical variant such as T13 or L6) and not a typo in the mask."),
    # --- intensity and modality --------------------------------------------------------------------------------
    Code("CT_NOT_HU", "error", "intensity",
         "A CT volume whose values do not look like Hounsfield units: no air or fat below the threshold and a "
         "median far above soft tissue, as in a scan stored without its rescale slope/intercept (0-based).",
         "Apply the DICOM rescale (usually HU = stored - 1024) when converting, or fix scl_slope/scl_inter."),
    Code("CT_BELOW_AIR", "warning", "intensity",
         "More than the allowed fraction of a CT's voxels lies far below air (-1024 HU): padding outside the "
         "scanner's circular field of view, or a wrong intercept.",
         "Clip to -1024 before normalisation (or set the padding value to -1024); check the intercept if the body "
         "values are shifted too."),
    Code("VOLUME_CONSTANT", "error", "intensity",
         "The volume is constant or nearly so (its 1st and 99th percentiles are within the allowed spread).",
         "The image was not converted (a blank series, a failed export): convert it again or remove the sample."),
    Code("FOREGROUND_INTENSITY_OUTLIER", "warning", "intensity",
         "The intensity under the mask is far from the dataset's median (CT: the median in HU; MRI: the "
         "foreground's contrast against the whole volume).",
         "A wrong series (non-contrast instead of contrast, another sequence), an inverted MRI contrast or a "
         "misplaced mask: look at the sample."),
    # --- duplicates --------------------------------------------------------------------------------------------
    Code("DUPLICATE_SCAN", "warning", "duplicates",
         "Two samples of the same patient hold the same voxel data (in a canonical orientation: flipped or permuted "
         "storage does not hide it).",
         "Keep one of them; a scan counted twice weighs double in training and statistics."),
    Code("NEAR_DUPLICATE_SCAN", "warning", "duplicates",
         "Two samples of the same patient hold nearly the same scan (same grid, the same fine structure and noise, "
         "e.g. one with noise added or re-saved with rounding).",
         "Keep one of them unless both are meant (then accept the pair in the policy)."),
    Code("DUPLICATE_ACROSS_PATIENTS", "error", "duplicates",
         "The same (or nearly the same) scan appears under two patient IDs.",
         "One of the patient IDs is wrong, or the scan was copied: merge the patients or remove the copy, then make "
         "the splits again."),
    Code("DUPLICATE_ACROSS_SUBSETS", "error", "duplicates",
         "The same (or nearly the same) scan is in two different subsets of a split (e.g. train and test): the test "
         "set leaks into training.",
         "Remove the copy and make the split again (the split routines group scans by patient)."),
    # --- metadata ----------------------------------------------------------------------------------------------
    Code("PATIENT_SEX_MISMATCH", "error", "metadata",
         "The scans of one patient record different sexes.",
         "Two patients share an ID, or a sheet row is wrong: fix the metadata sheet or the patient IDs."),
    Code("PATIENT_AGE_ORDER", "warning", "metadata",
         "A patient's age goes backwards across scans taken in a known order (e.g. the post-therapy scan younger than "
         "the pre-therapy one).",
         "Fix the ages in the metadata sheet, or the phase of the scans."),
    Code("PATIENT_ACROSS_SUBSETS", "error", "metadata",
         "One patient's scans are in two different subsets of a split (e.g. train and test).",
         "Make the split again grouped by patient (the split routines do), or fix the patient IDs."),
)  # fmt: skip

#: Every code by name, in documentation order.
CODES: dict[str, Code] = {c.code: c for c in _CODES}
