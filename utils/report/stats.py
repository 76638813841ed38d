"""Label voxel counts of one mask, and the dataset card's tables over all samples.

Volumes are voxel counts times the voxel volume ``|det(affine[:3, :3])|`` (mm³;
cm³ = mm³ / 1000 in the tables). Counts and boxes come from the shared label
core :mod:`utils.labels.label_stats` (no whole-volume int64 or float64 copy).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from utils.files.aliases import Affine
from utils.labels.label_maps import LabelMap

__all__ = [
    "LabelMeasure",
    "measure_labels",
    "resolution_table",
    "label_table",
    "summary_table",
    "SUMMARY_TOTAL",
]

#: Group value of the summary table's total row.
SUMMARY_TOTAL = "all"


@dataclass(frozen=True)
class LabelMeasure:
    """Foreground labels of one mask.

    Attributes
    ----------
    voxels : dict
        ``{label: voxel count}`` for every value 1..255 present.
    boxes : dict
        ``{label: (slice_i, slice_j, slice_k)}`` bounding box of each label present.
    voxel_mm3 : float
        Volume of one voxel in mm³.
    """

    voxels: dict[int, int]
    boxes: dict[int, tuple[slice, slice, slice]]
    voxel_mm3: float

    @property
    def volumes_mm3(self) -> dict[int, float]:
        """``{label: volume in mm³}``."""
        return {lab: n * self.voxel_mm3 for lab, n in self.voxels.items()}

    def foreground_box(self) -> tuple[slice, slice, slice] | None:
        """Union of the label boxes, None for an empty mask."""
        if not self.boxes:
            return None
        boxes = list(self.boxes.values())
        return tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(3))  # type: ignore[return-value]


def measure_labels(mask: npt.NDArray[np.uint8], affine: Affine, threads: int = 1) -> LabelMeasure:
    """Voxel count and bounding box of every foreground label of a uint8 mask (:mod:`utils.labels.label_stats`).

    Parameters
    ----------
    mask : (I, J, K) ndarray of uint8
    affine : (4, 4) ndarray
        Voxel-to-world matrix (for the voxel volume).
    threads : int
        Threads for the box scan.
    """
    from utils.labels.label_stats import label_stats, voxel_volume_mm3

    if mask.dtype != np.uint8 or mask.ndim != 3:
        raise TypeError(f"3D uint8 mask expected, got {mask.ndim}D {mask.dtype}")
    stats = label_stats(mask)
    voxels = {v: int(stats.counts[v]) for v in stats.foreground_labels}
    return LabelMeasure(voxels, stats.boxes(threads=threads), voxel_volume_mm3(affine))


def resolution_table(shapes: Sequence[Sequence[int]], spacings: Sequence[Sequence[float]]) -> dict[str, Any]:
    """Min / median / max of the spacing and of the size, per array axis, over the samples.

    Parameters
    ----------
    shapes : sequence of (3,) int
        Array shape of each sample.
    spacings : sequence of (3,) float
        Voxel size in mm of each sample.

    Returns
    -------
    table : dict
        ``{'n': N, 'spacing_mm': {'min': [x, y, z], 'median': [...], 'max': [...]}, 'size': {...}}``;
        empty lists when there is no sample.
    """
    out: dict[str, Any] = {"n": len(shapes)}
    for key, values in (("spacing_mm", spacings), ("size", shapes)):
        arr = np.asarray(values, dtype=np.float64).reshape(-1, 3)
        out[key] = {
            stat: ([] if arr.shape[0] == 0 else [float(v) for v in func(arr, axis=0)])
            for stat, func in (("min", np.min), ("median", np.median), ("max", np.max))
        }
    return out


def label_table(volumes_mm3: Sequence[dict[int, float]], label_map: LabelMap | None) -> list[dict[str, Any]]:
    """The dataset card's label table.

    Parameters
    ----------
    volumes_mm3 : sequence of dict
        ``{label: volume in mm³}`` of each sample that has a mask (labels present only).
    label_map : LabelMap or None
        Every foreground label of the map gets a row, present or not; labels found in
        masks but missing from the map get a row too (name ``not in the label map``).

    Returns
    -------
    rows : list of dict
        ``index short name cases percentage max_cm3 min_cm3 median_cm3 in_label_map``, by index.
        ``percentage`` = 100 × cases / number of samples with a mask; volumes are None
        for a label without a case.
    """
    n = len(volumes_mm3)
    per_label: dict[int, list[float]] = {}
    for sample in volumes_mm3:
        for lab, mm3 in sample.items():
            per_label.setdefault(int(lab), []).append(float(mm3))
    known = {lab.index: lab for lab in label_map} if label_map is not None else {}
    indices = sorted({i for i in known if i != 0} | set(per_label))
    rows = []
    for index in indices:
        vols = per_label.get(index, [])
        lab = known.get(index)
        rows.append(
            {
                "index": index,
                "short": lab.short if lab else "",
                "name": lab.name if lab else "not in the label map",
                "in_label_map": lab is not None,
                "cases": len(vols),
                "percentage": 100.0 * len(vols) / n if n else 0.0,
                "max_cm3": max(vols) / 1000.0 if vols else None,
                "min_cm3": min(vols) / 1000.0 if vols else None,
                "median_cm3": float(np.median(vols)) / 1000.0 if vols else None,
            }
        )
    return rows


def summary_table(groups: Iterable[Sequence[Any]], group_by: Sequence[str]) -> list[dict[str, Any]]:
    """Number of samples per combination of the ``group_by`` values, then a total row.

    Parameters
    ----------
    groups : iterable of sequence
        The ``group_by`` values of each sample (None or missing shown as ``''``).
    group_by : sequence of str
        Column names.

    Returns
    -------
    rows : list of dict
        ``{col: value, …, 'samples': n}`` sorted by the values; the last row has
        :data:`SUMMARY_TOTAL` in the first column.
    """
    counts: Counter[tuple[str, ...]] = Counter(tuple("" if _missing(v) else str(v) for v in g) for g in groups)
    rows = [{**dict(zip(group_by, key)), "samples": n} for key, n in sorted(counts.items())]
    total = {col: "" for col in group_by}
    if group_by:
        total[group_by[0]] = SUMMARY_TOTAL
    rows.append({**total, "samples": sum(counts.values())})
    return rows


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
