"""nnU-Net v2's dataset fingerprint, computed as nnU-Net computes it, from the export's own reading of each case.

``nnUNetv2_extract_fingerprint`` (MIC-DKFZ/nnUNet
``nnunetv2/experiment_planning/dataset_fingerprint/fingerprint_extractor.py``,
2.x) reads every training case again and writes
``nnUNet_preprocessed/Dataset…/dataset_fingerprint.json``, which
``nnUNetv2_plan_experiment`` and ``nnUNetv2_plan_and_preprocess`` (without
``--clean``) take as they find it. Per training case (``imagesTr``, identifiers
in sorted order) it does, with its default reader ``SimpleITKIO``:

1. read image and label as float32 arrays in SimpleITK's axis order, the
   reverse of the NIfTI array axes, and the spacing reversed likewise (ITK's
   spacing of a NIfTI file is its ``pixdim`` scaled to mm by the header's unit:
   :func:`utils.files.nifti_readers.itk_spacing`);
2. ``crop_to_nonzero``: crop both to the bounding box of the image's non-zero
   voxels (holes filled first, which cannot change that box; an all-zero image
   keeps its full box);
3. take the image values where the cropped label is > 0, in C order of the
   cropped (z, y, x) array (= the NIfTI array's Fortran order), and draw
   ``int(10e7 // number of cases)`` of them with replacement with
   ``np.random.RandomState(1234).choice`` (a fresh generator per case);
4. keep the crop's shape, the spacing and the crop's share of the voxels.

Then it concatenates the draws of all cases (float32; float64 if a case had no
foreground, since it then contributes an empty Python list) and takes
``np.mean``, ``np.std``, ``np.min``, ``np.max`` and ``np.percentile`` at 0.5,
50 and 99.5 of them, and the median of the crop shares. This module does the
same steps on the arrays the export already holds (the volume read once,
in memory order), and the same numpy calls on the same float32 samples in the
same order, so the file it writes is the one nnU-Net writes, byte for byte
(``json.dump(..., sort_keys=True, indent=4)``, as nnU-Net's ``save_json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from utils.export.extents import box_intersection, box_shape
from utils.export.value_stats import lerp, percentile_ranks
from utils.labels.label_stats import Box

__all__ = [
    "FINGERPRINT_NAME",
    "TOTAL_SAMPLES",
    "SEED",
    "CaseFingerprint",
    "preprocessed_folder",
    "samples_per_case",
    "seeded_draws",
    "case_fingerprint",
    "combine_fingerprint",
    "fingerprint_text",
]

FINGERPRINT_NAME = "dataset_fingerprint.json"
#: Foreground values drawn for the whole dataset (nnU-Net's ``num_foreground_voxels_for_intensitystats``).
TOTAL_SAMPLES = 10e7
#: Seed of the per-case ``np.random.RandomState`` (``collect_foreground_intensities``).
SEED = 1234
#: Percentiles of the pooled draws (0.5 %, median, 99.5 %).
_PERCENTILES = np.array((0.5, 50.0, 99.5))
#: Indices drawn at a time (bounds the index array to 32 MB).
_DRAW_CHUNK = 1 << 22


@dataclass(frozen=True)
class CaseFingerprint:
    """What one training case contributes to the fingerprint.

    Attributes
    ----------
    shape_after_crop : tuple of int
        Shape of the non-zero box, in nnU-Net's axis order (the NIfTI array axes reversed).
    spacing : tuple of float
        Voxel spacing in mm, nnU-Net's axis order (``|pixdim|`` reversed).
    relative_size_after_cropping : float
        Voxels of the box / voxels of the image.
    samples : ndarray or None
        The drawn foreground values in drawing order: int16 when every foreground value is an
        int16 value (half the bytes to send between processes; converts back to float32 exactly),
        else float32; None when the cropped case has no foreground voxel.
    sample_counts : tuple of (int, ndarray of int64) or None
        For int16 samples, ``(first value, counts)``: how often each value from the first on was
        drawn (the order statistics of the pooled draws come from these); None otherwise.
    """

    shape_after_crop: tuple[int, ...]
    spacing: tuple[float, ...]
    relative_size_after_cropping: float
    samples: npt.NDArray | None
    sample_counts: tuple[int, npt.NDArray[np.int64]] | None = None


def preprocessed_folder(output_dir: Path, raw_folder_name: str) -> Path:
    """``OUTPUT_DIR/nnUNet_preprocessed/Dataset…`` (the same folder name as in ``nnUNet_raw``)."""
    return Path(output_dir) / "nnUNet_preprocessed" / raw_folder_name


def samples_per_case(n_cases: int) -> int:
    """Foreground values drawn per case: ``int(10e7 // n_cases)``, as nnU-Net computes it."""
    if n_cases < 1:
        raise ValueError(f"a fingerprint needs at least one training case, got {n_cases}")
    return int(TOTAL_SAMPLES // n_cases)


def seeded_draws(values: npt.NDArray, size: int, seed: int = SEED) -> tuple[npt.NDArray, npt.NDArray[np.int64]]:
    """``np.random.RandomState(seed).choice(values, size, replace=True)``, drawing the indices in chunks.

    ``choice`` with replacement and without weights draws ``randint(0, len(values), size)``; the
    legacy generator gives the same stream however the draws are split, so the index array never
    exceeds 32 MB.

    Parameters
    ----------
    values : (N,) ndarray
        N >= 1 values to draw from.
    size : int
        Number of draws.
    seed : int

    Returns
    -------
    draws : (size,) ndarray
        Same dtype as ``values``, in drawing order.
    times : (N,) ndarray of int64
        How often each of ``values`` was drawn.
    """
    rs = np.random.RandomState(seed)
    out = np.empty(size, dtype=values.dtype)
    times = np.zeros(len(values), dtype=np.int64)
    for start in range(0, size, _DRAW_CHUNK):
        stop = min(start + _DRAW_CHUNK, size)
        index = rs.randint(0, len(values), size=stop - start)
        np.take(values, index, out=out[start:stop])
        times += np.bincount(index, minlength=len(values))
    return out, times


def _compact(values: npt.NDArray) -> npt.NDArray:
    """``values`` as int16 when each is an int16 value (then exactly float32 again), else as float32."""
    values = values.astype(np.float32, copy=False)
    if values.size:
        lo, hi = float(values.min()), float(values.max())
        if -32768.0 <= lo and hi <= 32767.0:
            small = values.astype(np.int16)
            if np.array_equal(small, values):
                return small
    return values


def case_fingerprint(
    volume: npt.NDArray, mask: npt.NDArray[np.uint8], zooms: tuple[float, ...], num_samples: int, nonzero: Box | None, foreground: Box | None
) -> CaseFingerprint:
    """One training case's part of the fingerprint.

    Parameters
    ----------
    volume : (I, J, K) ndarray
        The image's values (float32, or a dtype that converts to float32 exactly), as read from NIfTI.
    mask : (I, J, K) ndarray of uint8
        The label, on the image's grid.
    zooms : tuple of float
        The image's spacing as SimpleITK reads it, array axis order (:func:`utils.files.nifti_readers.itk_spacing`).
    num_samples : int
        Draws for this case (:func:`samples_per_case`).
    nonzero : Box or None
        Box of the image's non-zero voxels (:func:`utils.export.extents.volume_extents`); None when there is none.
    foreground : Box or None
        Box of the mask's non-zero voxels (``LabelStats.foreground``); None for an empty mask.

    Returns
    -------
    CaseFingerprint
    """
    shape = tuple(int(s) for s in volume.shape)
    crop = nonzero if nonzero is not None else tuple(slice(0, s) for s in shape)
    crop_shape = box_shape(crop)  # type: ignore[arg-type]
    relative = float(np.prod(crop_shape, dtype=np.int64) / np.prod(shape, dtype=np.int64))
    samples = None
    region = box_intersection(crop, foreground) if foreground is not None else None  # type: ignore[arg-type]
    if region is not None:
        # SimpleITK's (z, y, x) array is the NIfTI array with its axes reversed: boolean indexing walks
        # ``.T`` in C order, nnU-Net's order (and memory order for a Fortran array, as NIfTI is read)
        sel = tuple(region[::-1])
        values = volume.T[sel][mask.T[sel] > 0]
    counts = None
    if region is not None and values.size:
        values = _compact(values)
        samples, times = seeded_draws(values, num_samples)
        if values.dtype == np.int16:  # value counts of the draws, from how often each voxel was drawn
            first = int(values.min())
            counts = (first, np.bincount(values.astype(np.int64) - first, weights=times).astype(np.int64))
    spacing = tuple(abs(float(z)) for z in zooms[:3])[::-1]  # nnU-Net: np.abs of the reversed spacing
    return CaseFingerprint(tuple(reversed(crop_shape)), spacing, relative, samples, counts)


def _pooled_percentiles(cases: list[CaseFingerprint], total: int) -> list[float] | None:
    """``np.percentile`` of the pooled draws at 0.5, 50, 99.5 from the cases' value counts, when all have them.

    For integer values (int16 draws, exact in float32) numpy's interpolation ``b - a`` is exact, so
    the order statistics and :func:`~utils.export.value_stats.lerp` give numpy's result bit for bit.
    """
    if any(c.sample_counts is None for c in cases if c.samples is not None):
        return None
    lo = min(c.sample_counts[0] for c in cases if c.sample_counts is not None)
    hi = max(c.sample_counts[0] + len(c.sample_counts[1]) for c in cases if c.sample_counts is not None)
    counts = np.zeros(hi - lo, dtype=np.int64)
    for case in cases:
        if case.sample_counts is not None:
            first, c = case.sample_counts
            counts[first - lo : first - lo + len(c)] += c
    cumulative = np.cumsum(counts)
    out = []
    for q in _PERCENTILES:
        below, above, weight = percentile_ranks(total, float(q))
        a, b = (float(lo + int(np.searchsorted(cumulative, r, side="right"))) for r in (below, above))
        out.append(lerp(a, b, weight))
    return out


def combine_fingerprint(cases: list[CaseFingerprint], num_channels: int = 1) -> dict[str, object] | None:
    """The fingerprint of the dataset, from its cases in nnU-Net's order (sorted case identifiers).

    The draws of all cases are put into one array in case order (float32, or float64 when a case
    has none, as nnU-Net's ``np.concatenate`` with an empty list gives) and described with the numpy
    calls nnU-Net uses; the per-case arrays are released as they are copied.

    Parameters
    ----------
    cases : list of CaseFingerprint
        Emptied of their samples on return (the list's items are replaced).
    num_channels : int
        Image channels (1 here: one volume per case).

    Returns
    -------
    fingerprint : dict or None
        ``spacings``, ``shapes_after_crop``, ``foreground_intensity_properties_per_channel``,
        ``median_relative_size_after_cropping``; None when no case has a foreground voxel
        (nnU-Net's extractor then fails).
    """
    if num_channels != 1:
        raise ValueError(f"{num_channels} channels: one image channel per case is supported")
    total = sum(0 if c.samples is None else int(c.samples.size) for c in cases)
    if total == 0:
        return None
    percentiles = _pooled_percentiles(cases, total)
    dtype = np.float64 if any(c.samples is None for c in cases) else np.float32
    pooled = np.empty(total, dtype=dtype)
    at = 0
    for i, case in enumerate(cases):
        if case.samples is not None:
            pooled[at : at + case.samples.size] = case.samples
            at += case.samples.size
        cases[i] = CaseFingerprint(case.shape_after_crop, case.spacing, case.relative_size_after_cropping, None)
    stats = {
        "mean": float(np.mean(pooled)),
        "std": float(np.std(pooled)),
        "min": float(np.min(pooled)),
        "max": float(np.max(pooled)),
    }
    if percentiles is None:
        percentiles = np.percentile(pooled, _PERCENTILES, overwrite_input=True).tolist()
    del pooled
    p00_5, median, p99_5 = percentiles
    properties = {
        "mean": stats["mean"],
        "median": float(median),
        "std": stats["std"],
        "min": stats["min"],
        "max": stats["max"],
        "percentile_99_5": float(p99_5),
        "percentile_00_5": float(p00_5),
    }
    return {
        "spacings": [list(c.spacing) for c in cases],
        "shapes_after_crop": [list(c.shape_after_crop) for c in cases],
        "foreground_intensity_properties_per_channel": {0: properties},
        "median_relative_size_after_cropping": float(np.median([c.relative_size_after_cropping for c in cases], 0)),
    }


def fingerprint_text(fingerprint: dict[str, object]) -> str:
    """The JSON text nnU-Net's ``save_json`` writes: keys sorted, 4-space indent, ASCII, no final newline."""
    return json.dumps(fingerprint, sort_keys=True, indent=4)
