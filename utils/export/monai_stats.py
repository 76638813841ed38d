"""MONAI Auto3DSeg's data statistics (``DataAnalyzer``), computed from the export's own reading of each case.

``monai.apps.auto3dseg.DataAnalyzer`` (Project-MONAI/MONAI 1.x,
``monai/apps/auto3dseg/data_analyzer.py``, ``monai/auto3dseg/analyzer.py``,
``operations.py``, ``seg_summarizer.py``, ``utils.py``) reads every item of the
datalist's ``training`` list (``AutoRunner`` first appends the ``validation``
items to it, as fold 0) with ``LoadImaged`` (nibabel: ``img.affine``,
float32 values), reorients image and label to RAS (``Orientationd``, i.e.
``nibabel.io_orientation`` of the affine) and, with its defaults (those of
``AutoRunner``: no connected components, no histogram), writes per case
(``stats_by_cases``):

- ``image_stats``: ``shape`` and ``cropped_shape`` (lists per channel, RAS
  axis order), ``channels``, ``spacing`` (norms of the RAS affine's columns),
  ``sizemm`` (shape × spacing), and ``intensity`` of the *cropped* image:
  ``CropForeground(x > 0)`` applied to one channel ``(H, W, D)`` treats ``H``
  as the channel axis, so the crop keeps all of RAS axis 0 and takes the box
  of the positive voxels along the other two;
- ``image_foreground_stats.intensity``: the voxels with label > 0 (a single
  0.0 when there is none);
- ``label_stats``: ``labels`` (sorted values present), ``image_intensity``
  (as the foreground's), and per label in that order ``image_intensity`` and
  ``foreground_percentage`` (its voxels / all voxels).

Every ``intensity`` holds ``max``, ``mean``, ``median`` (``torch.median``: the
lower middle value), ``min``, ``stdev`` (population), ``percentile`` at 0.5,
10, 90 and 99.5 (linear) and the same four as ``percentile_00_5`` … . A case
whose image has no positive voxel is skipped by MONAI (the crop is empty): it
is left out here too.

The summary (``stats_summary``) combines the cases as MONAI's summary analyzers
do: shapes, spacings and percentages by ``max``/``mean``/``median``/``min``/
``stdev``/``percentile`` over the cases (percentiles of integer values cast to
integers); intensities by the max of the maxima, the min of the minima and the
*mean* of every other statistic; ``labels`` is the union of the cases' labels
(a Python set turned into a list); and the per-label entries take, for each
label value ``v`` in that list, the ``v``-th entry of each case's label list,
which is the entry of label ``v`` only when a case's labels are 0..n without
gaps (MONAI's rule, kept so the numbers are its own).

Here the same numbers come exactly from the arrays the export already holds: RAS
reorientation is an axis permutation with flips, so every region is a box or a
label of the array as read. Integer-valued volumes (CT, most MR) are counted
into histograms (:mod:`utils.export.value_stats`), one walk over the volume;
others go through ``np.partition`` of each region's values.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from utils.export.extents import VolumeExtents, box_shape
from utils.export.value_stats import (
    MAX_HISTOGRAM_BINS,
    IntegerHistogram,
    ValueSummary,
    summarize_values,
)
from utils.labels.label_stats import Box, memory_view
from utils.files.lazy_import import lazy_import

nib = lazy_import("nibabel")

__all__ = [
    "DATA_STATS_NAME",
    "DATA_STATS_BY_CASE_NAME",
    "PERCENTILES",
    "NoPositiveVoxel",
    "ras_axes",
    "case_data_stats",
    "summarize_cases",
    "data_stats_documents",
]

DATA_STATS_NAME = "data_stats.yaml"
DATA_STATS_BY_CASE_NAME = "data_stats_by_case.yaml"
#: ``SampleOperations`` percentiles and their report keys.
PERCENTILES = (0.5, 10.0, 90.0, 99.5)
_PERCENTILE_KEYS = ("percentile_00_5", "percentile_10_0", "percentile_90_0", "percentile_99_5")
#: Keys of a summarized intensity (``SummaryOperations``) and how each combines the cases.
_SUMMARY_OPS = {
    "max": np.max, "mean": np.mean, "median": np.mean, "min": np.min, "stdev": np.mean,
    **{k: np.mean for k in _PERCENTILE_KEYS},
}  # fmt: skip
#: Voxels per slab of a histogram walk.
_SLAB_VOXELS = 1 << 22


class NoPositiveVoxel(ValueError):
    """An image without a voxel > 0: MONAI's crop is empty and ``DataAnalyzer`` skips the case."""


# --- one case ---------------------------------------------------------------------------------------------------------


def ras_axes(affine: npt.NDArray) -> tuple[int, int, int]:
    """Array axis that becomes RAS axis 0, 1, 2 after MONAI's ``Orientationd(axcodes="RAS")``.

    Parameters
    ----------
    affine : (4, 4) ndarray
        Voxel-to-world (RAS) matrix of the image (nibabel's ``img.affine``).
    """
    ornt = nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64))
    return tuple(int(np.flatnonzero(ornt[:, 0] == world)[0]) for world in range(3))  # type: ignore[return-value]


def _intensity(summary: ValueSummary | None) -> dict[str, Any]:
    """``SampleOperations`` report of a region: max, mean, median (lower), min, stdev, percentiles."""
    if summary is None:  # MONAI's MetaTensor([0.0]) for an empty foreground
        percentiles = [0.0] * len(PERCENTILES)
        out: dict[str, Any] = {"max": 0.0, "mean": 0.0, "median": 0.0, "min": 0.0, "stdev": 0.0, "percentile": percentiles}
    else:
        percentiles = list(summary.percentiles)
        out = {
            "max": summary.maximum,
            "mean": summary.mean,
            "median": summary.lower_median,
            "min": summary.minimum,
            "stdev": summary.std,
            "percentile": percentiles,
        }
    out.update(zip(_PERCENTILE_KEYS, percentiles))
    return out


def _slabs(box: Sequence[slice]) -> Iterator[tuple[slice, slice, slice]]:
    """The box (memory-view axes) cut into slabs along view axis 0."""
    per = max(1, (box[1].stop - box[1].start) * (box[2].stop - box[2].start))
    step = max(1, _SLAB_VOXELS // per)
    for start in range(box[0].start, box[0].stop, step):
        yield (slice(start, min(start + step, box[0].stop)), box[1], box[2])


def _complement(box: Sequence[slice], shape: Sequence[int]) -> list[tuple[slice, slice, slice]]:
    """Up to six boxes that cover ``shape`` outside ``box``, without overlap."""
    a, b, c = box
    pieces = [
        (slice(0, a.start), slice(0, shape[1]), slice(0, shape[2])),
        (slice(a.stop, shape[0]), slice(0, shape[1]), slice(0, shape[2])),
        (a, slice(0, b.start), slice(0, shape[2])),
        (a, slice(b.stop, shape[1]), slice(0, shape[2])),
        (a, b, slice(0, c.start)),
        (a, b, slice(c.stop, shape[2])),
    ]
    return [p for p in pieces if all(s.stop > s.start for s in p)]


def _to_view(box: Sequence[slice], transposed: bool) -> tuple[slice, slice, slice]:
    return tuple(box[::-1]) if transposed else tuple(box)  # type: ignore[return-value]


def _histogram_regions(
    view: npt.NDArray, mask_view: npt.NDArray[np.uint8], crop: Sequence[slice], fg_box: Sequence[slice] | None,
    labels: list[int], extents: VolumeExtents,
) -> tuple[ValueSummary, ValueSummary | None, dict[int, ValueSummary]] | None:
    """Crop, foreground and per-label statistics from integer histograms; None when the values are not integers."""
    lo, hi = extents.minimum, extents.maximum
    fg_labels = [v for v in labels if v]
    if lo != np.floor(lo) or hi != np.floor(hi) or (hi - lo + 1) * (len(fg_labels) + 1) > MAX_HISTOGRAM_BINS:
        return None  # not integers, or a value range too wide for histograms: the array route
    lo, hi = int(lo), int(hi)
    crop_hist = IntegerHistogram.empty(lo, hi)
    outside = IntegerHistogram.empty(lo, hi)
    for box, hist in [(crop, crop_hist)] + [(p, outside) for p in _complement(crop, view.shape)]:
        for slab in _slabs(box):
            if not hist.add(view[slab]):
                return None
    per_label: dict[int, ValueSummary] = {}
    foreground = None
    if fg_box is not None and fg_labels:
        group = np.zeros(256, dtype=np.int32)  # label value -> group * bins; group 0: background inside the box
        group[fg_labels] = np.arange(1, len(fg_labels) + 1, dtype=np.int32) * crop_hist.bins
        in_box = IntegerHistogram.empty(lo, hi, groups=len(fg_labels) + 1)
        for slab in _slabs(fg_box):
            if not in_box.add(view[slab], group[mask_view[slab]]):
                return None
        for g, v in enumerate(fg_labels, start=1):
            per_label[v] = in_box.summary(g, PERCENTILES)
        fg_counts = in_box.counts[1:].sum(axis=0)
        foreground = IntegerHistogram(lo, crop_hist.bins, fg_counts[None]).summary(0, PERCENTILES)
    else:
        fg_counts = np.zeros(crop_hist.bins, dtype=np.int64)
    if 0 in labels:
        background = crop_hist.counts[0] + outside.counts[0] - fg_counts
        per_label[0] = IntegerHistogram(lo, crop_hist.bins, background[None]).summary(0, PERCENTILES)
    return crop_hist.summary(0, PERCENTILES), foreground, per_label


def _array_regions(
    view: npt.NDArray, mask_view: npt.NDArray[np.uint8], crop: Sequence[slice], fg_box: Sequence[slice] | None, labels: list[int]
) -> tuple[ValueSummary, ValueSummary | None, dict[int, ValueSummary]]:
    """Crop, foreground and per-label statistics by partitioning each region's values (any float values)."""
    crop_summary = summarize_values(view[tuple(crop)], PERCENTILES)
    per_label: dict[int, ValueSummary] = {}
    foreground = None
    if fg_box is not None and any(labels):
        values, mask_box = view[tuple(fg_box)], mask_view[tuple(fg_box)]
        for v in (v for v in labels if v):
            per_label[v] = summarize_values(values[mask_box == v], PERCENTILES)
        foreground = summarize_values(values[mask_box > 0], PERCENTILES)
    if 0 in labels:
        per_label[0] = summarize_values(view[mask_view == 0], PERCENTILES)
    return crop_summary, foreground, dict(sorted(per_label.items()))


def case_data_stats(
    volume: npt.NDArray, mask: npt.NDArray[np.uint8], affine: npt.NDArray, label_counts: npt.NDArray[np.int64],
    extents: VolumeExtents, foreground: Box | None,
) -> dict[str, Any]:
    """One case's ``DataAnalyzer`` statistics (a ``stats_by_cases`` item without its file paths).

    Parameters
    ----------
    volume : (I, J, K) ndarray
        Image values as read (float32 or a dtype that converts to float32 exactly).
    mask : (I, J, K) ndarray of uint8
        Label on the image's grid.
    affine : (4, 4) ndarray
        The image's ``img.affine`` (what MONAI's nibabel reader uses).
    label_counts : (256,) ndarray of int64
        Voxels of every label value (``LabelStats.counts``).
    extents : VolumeExtents
        Of ``volume`` (:func:`utils.export.extents.volume_extents`).
    foreground : Box or None
        Box of the mask's non-zero voxels.

    Returns
    -------
    stats : dict
        ``image_stats``, ``image_foreground_stats``, ``label_stats`` in MONAI's layout, plain Python types.

    Raises
    ------
    NoPositiveVoxel
        The image has no voxel > 0 (MONAI skips such a case).
    """
    if extents.positive is None:
        raise NoPositiveVoxel("no voxel > 0: MONAI's foreground crop is empty and DataAnalyzer skips this case")
    shape = tuple(int(s) for s in volume.shape)
    ras = ras_axes(affine)
    columns = np.sqrt(np.sum(np.asarray(affine, dtype=np.float64)[:3, :3] ** 2, axis=0))
    columns[columns == 0] = 1.0
    spacing = [float(columns[j]) for j in ras]
    shape_ras = [shape[j] for j in ras]
    crop = list(extents.positive)
    crop[ras[0]] = slice(0, shape[ras[0]])  # MONAI's crop keeps all of RAS axis 0 (taken for a channel axis)
    labels = [int(v) for v in np.flatnonzero(label_counts)]
    view, transposed = memory_view(volume)
    mask_view = mask.T if transposed else mask  # the same axes as the volume's view
    crop_view = _to_view(crop, transposed)
    fg_view = None if foreground is None else _to_view(foreground, transposed)
    regions = _histogram_regions(view, mask_view, crop_view, fg_view, labels, extents)
    if regions is None:
        regions = _array_regions(view, mask_view, crop_view, fg_view, labels)
    crop_summary, fg_summary, per_label = regions
    total = int(label_counts.sum())
    fg_intensity = _intensity(fg_summary)
    return {
        "image_stats": {
            "shape": [shape_ras],
            "channels": 1,
            "cropped_shape": [[box_shape(crop)[j] for j in ras]],  # type: ignore[arg-type]
            "spacing": spacing,
            "sizemm": [a * b for a, b in zip(shape_ras, spacing)],
            "intensity": [_intensity(crop_summary)],
        },
        "image_foreground_stats": {"intensity": [fg_intensity]},
        "label_stats": {
            "labels": labels,
            "image_intensity": [dict(fg_intensity)],
            "label": [
                {"image_intensity": [_intensity(per_label[v])], "foreground_percentage": float(label_counts[v] / total)}
                for v in labels
            ],
        },
    }


# --- the summary ------------------------------------------------------------------------------------------------------


def _get(entry: Any, path: Sequence[Any]) -> Any:
    """``entry[p0][p1]…``, or None where a key or list index is missing (MONAI's ``ConfigParser.get``)."""
    for key in path:
        try:
            entry = entry[key]
        except (KeyError, IndexError, TypeError):
            return None
    return entry


def _stack(cases: list[dict], path: Sequence[Any], allow_missing: bool = False) -> npt.NDArray:
    """MONAI's ``concat_val_to_np``: the cases' values at ``path`` stacked along a new first axis."""
    values = [_get(c, path) for c in cases]
    if not allow_missing and any(v is None for v in values):
        raise KeyError(f"{'#'.join(map(str, path))} is missing in a case")
    arrays = [np.array(v) for v in values if v is not None]
    return np.array([0]) if not arrays else np.concatenate([arrays])


def _sample_ops(x: npt.NDArray) -> dict[str, Any]:
    """MONAI's ``SampleOperations`` over the cases (axis 0, or axes 0 and 1 for per-channel lists)."""
    axis = (0, 1) if x.ndim > 2 else 0
    percentile = np.percentile(x, PERCENTILES, axis=axis).astype(x.dtype)  # cast back to the values' dtype, as MONAI
    out = {
        "max": np.max(x, axis=axis).tolist(),
        "mean": np.mean(x, axis=axis).tolist(),
        "median": np.median(x, axis=axis).tolist(),
        "min": np.min(x, axis=axis).tolist(),
        "stdev": np.std(x, axis=axis).tolist(),
        "percentile": percentile.tolist(),
    }
    out.update({k: percentile[i].tolist() for i, k in enumerate(_PERCENTILE_KEYS)})
    return out


def _summary_ops(cases: list[dict], path: Sequence[Any], allow_missing: bool = False) -> dict[str, Any]:
    """MONAI's ``SummaryOperations`` of the first channel's intensity statistics at ``path``."""
    return {k: op(_stack(cases, [*path, 0, k], allow_missing)).tolist() for k, op in _SUMMARY_OPS.items()}


def summarize_cases(cases: list[dict]) -> dict[str, Any]:
    """``stats_summary`` of the per-case statistics, combined by MONAI's rules (see the module docstring).

    Parameters
    ----------
    cases : list of dict
        :func:`case_data_stats` results, in the datalist's order; at least one.

    Returns
    -------
    summary : dict
        ``image_stats``, ``image_foreground_stats``, ``label_stats``, ``n_cases``.
    """
    if not cases:
        raise ValueError("no case to summarize")
    image_stats = {k: _sample_ops(_stack(cases, ["image_stats", k])) for k in ("shape", "channels", "cropped_shape", "spacing", "sizemm")}
    image_stats["intensity"] = _summary_ops(cases, ["image_stats", "intensity"])
    union = list(set.union(set(np.concatenate([np.array(c["label_stats"]["labels"]) for c in cases], axis=None).tolist())))
    per_label = []
    for value in union:
        per_label.append(
            {
                "foreground_percentage": _sample_ops(_stack(cases, ["label_stats", "label", value, "foreground_percentage"], allow_missing=True)),
                "image_intensity": _summary_ops(cases, ["label_stats", "label", value, "image_intensity"], allow_missing=True),
            }
        )
    return {
        "image_stats": image_stats,
        "image_foreground_stats": {"intensity": _summary_ops(cases, ["image_foreground_stats", "intensity"])},
        "label_stats": {"labels": union, "image_intensity": _summary_ops(cases, ["label_stats", "image_intensity"]), "label": per_label},
        "n_cases": len(cases),
    }


def data_stats_documents(cases: list[tuple[str, str, dict[str, Any]]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two files ``DataAnalyzer`` writes, as data: ``data_stats.yaml`` and ``data_stats_by_case.yaml``.

    Parameters
    ----------
    cases : list of (image path, label path, stats)
        Paths as the datalist gives them; stats from :func:`case_data_stats`.

    Returns
    -------
    summary_doc : dict
        ``{"stats_summary": …, "stats_by_cases": []}`` (DataAnalyzer's ``output_path``).
    by_case_doc : dict
        ``{"stats_summary": …, "stats_by_cases": [...]}`` (its ``…_by_case.yaml``).
    """
    stats = [s for _, _, s in cases]
    summary = summarize_cases(stats)
    by_case = [{"image_filepath": image, "label_filepath": label, **s} for image, label, s in cases]
    return {"stats_summary": summary, "stats_by_cases": []}, {"stats_summary": summary, "stats_by_cases": by_case}
