"""One sample of the audit: read its volume and mask once, keep what every check needs.

:func:`measure_sample` runs once per sample folder (in a worker process with
``--workers``, or on a Dask worker) and returns a :class:`Measurement`: a JSON-ready
record (geometry, intensities, labels, metadata, the exact-duplicate key) and the
near-duplicate signature. Every check of :mod:`utils.audit.checks` and
:mod:`utils.audit.pairs` works on these alone, and ``audit.json`` keeps the records
(documented in docs/audit.md), so nothing has to read an image again — not the next
audit with another policy, and not a tool that needs the same statistics (nnU-Net's
fingerprint: spacing, shape, crop to non-zero, foreground intensity statistics).

Cost per sample: decompressing the two files (the I/O floor), then a few passes that
touch memory once each: min/max, a regular sub-grid of at least 2²⁰ voxels (percentiles,
thumbnail), the canonical-order CRC, the mask's label histogram (:mod:`utils.labels.label_stats`),
its 3D components in the foreground's box (``cc3d``, all labels in one pass), and the
volume under the mask inside that box.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from utils.files.aliases import Affine
from utils.audit import signature as sig
from utils.audit.geometry import reader_agreement
from utils.files.sample_info import SampleDir, file_stamps, read_info

__all__ = ["VOLUME_PERCENTILES", "RECORD_VERSION", "MeasureJob", "Measurement", "measure_sample", "label_geometry", "face_names"]

logger = logging.getLogger(__name__)

#: Percentiles of the whole volume kept in each record (from the sub-grid).
VOLUME_PERCENTILES = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 98.0, 99.0, 99.5, 99.9)

#: Version of the record layout: a stored record of another version is measured again.
RECORD_VERSION = 1

#: Significant pieces kept per label in the record (largest first).
_PIECES_KEPT = 8

_DIRECTION_WORDS = {"R": "right", "L": "left", "A": "anterior", "P": "posterior", "S": "superior", "I": "inferior"}
_OPPOSITE = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}


@dataclass(frozen=True)
class MeasureJob:
    """Settings shared by every sample (picklable for ``--workers`` and Dask).

    Attributes
    ----------
    root_dir : Path
        Grouped dataset; paths in the record are relative to it.
    descriptor : DatasetDescriptor or None
        The dataset's ``dataset.yaml``: its ``patient_id`` names the patient from info-yaml keys (``'{subject}'``).
    sex_keys, age_keys : tuple of str
        Info-yaml keys (also under ``attributes``) of sex and age, case-insensitive.
    extra_keys : tuple of str
        Further info-yaml keys copied into the record (grouping, scan order).
    """

    root_dir: Path
    descriptor: Any = None
    sex_keys: tuple[str, ...] = ()
    age_keys: tuple[str, ...] = ()
    extra_keys: tuple[str, ...] = ()

    def __call__(self, sample: SampleDir) -> Measurement:
        return measure_sample(sample, self)


@dataclass
class Measurement:
    """What one sample's read gives.

    Attributes
    ----------
    record : dict
        JSON-ready statistics (see docs/audit.md, "Per-sample statistics").
    signature : dict of str to ndarray
        ``thumbnail`` and ``residual`` (float32), empty without a readable volume.
    seconds : dict
        ``read`` and ``compute`` (not written to the outputs).
    """

    record: dict[str, Any]
    signature: dict[str, npt.NDArray] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def _find_key(info: dict[str, Any], keys: tuple[str, ...]) -> Any:
    """First non-empty value of any of ``keys`` (case-insensitive), at the top of the info yaml or under ``attributes``."""
    wanted = {k.casefold() for k in keys}
    attributes = info.get("attributes") if isinstance(info.get("attributes"), dict) else {}
    for mapping in (info, attributes):
        for key, value in mapping.items():
            if str(key).casefold() in wanted and value is not None and str(value).strip() != "":
                return _plain(value)
    return None


def _patient(info: dict[str, Any], descriptor: Any) -> str | None:
    """The patient of a sample by the dataset's ``patient_id`` (:meth:`DatasetDescriptor.patient_of`), None when unknown."""
    if descriptor is None:
        return None
    try:
        return descriptor.patient_of(info)
    except ValueError:
        return None


def _metadata(info: dict[str, Any], job: MeasureJob) -> dict[str, Any]:
    return {
        "patient": _patient(info, job.descriptor),
        "subset": _plain(info.get("subset")),
        "sex": _find_key(info, job.sex_keys),
        "age": _find_key(info, job.age_keys),
        "keys": {k: _plain(info.get(k)) for k in job.extra_keys},
    }


def face_names(affine: Affine) -> list[tuple[str, str]]:
    """Patient direction of the first and the last slice along each array axis: ``[(first, last), ...]``.

    ``LPS`` storage: +i points left, so index 0 is the right end of the field of view.
    """
    from utils.geometry.orientation import axis_codes

    return [(_DIRECTION_WORDS[_OPPOSITE[c]], _DIRECTION_WORDS[c]) for c in axis_codes(affine)]


def _face_counts(mask: npt.NDArray[np.uint8], lo: npt.NDArray, hi: npt.NDArray) -> list[list[npt.NDArray[np.int64] | None]]:
    """Voxel count of each value on the first and the last slice of each axis that some label reaches (None elsewhere).

    ``lo``, ``hi``: (pieces, 3) inclusive boxes of every piece, in the mask's axes.
    """
    out: list[list[npt.NDArray[np.int64] | None]] = []
    for axis in range(3):
        ends: list[npt.NDArray[np.int64] | None] = []
        for end, index in ((0, 0), (1, mask.shape[axis] - 1)):
            reached = (lo[:, axis] == 0).any() if end == 0 else (hi[:, axis] == index).any()
            face = mask[(slice(None),) * axis + (index,)]  # a view (np.take would walk the whole mask)
            ends.append(np.bincount(face.reshape(-1), minlength=256) if reached else None)
        out.append(ends)
    return out


def label_geometry(
    mask: npt.NDArray[np.uint8], affine: Affine, volume: npt.NDArray | None = None
) -> tuple[dict[int, dict[str, Any]], npt.NDArray | None]:
    """Per foreground label: voxels, volume, world centroid, box, 3D pieces and the field-of-view faces it touches.

    The 3D components of every label (26-connectivity, voxels connect only to voxels of the
    same value) come from one ``cc3d`` pass over the foreground's bounding box; their sizes,
    boxes and centroids from the foreground voxels only, sorted by component (the background,
    most of the box, is never walked again).

    Parameters
    ----------
    mask : (I, J, K) ndarray of uint8
        Any memory order.
    affine : (4, 4) ndarray
        Its voxel-to-world matrix (RAS+ mm).
    volume : (I, J, K) ndarray, optional
        The volume on the same grid: its values under the mask are returned too.

    Returns
    -------
    labels : dict
        ``{label: {'voxels', 'volume_mm3', 'centroid_mm' [x, y, z], 'box' [[lo, hi] per axis, inclusive],
        'components' (count), 'component_voxels' (largest first, at most 8), 'faces'}}``; ``faces`` lists each
        first/last slice the label touches: ``{'direction', 'axis', 'voxels', 'fraction'}``, ``fraction`` being
        the voxels on that slice over the mean slice area of the label's largest piece along that axis
        (about 1 or more where the edge cuts the structure, small where it grazes a tip).
    under_mask : ndarray or None
        ``volume``'s values at the foreground voxels (any order); None without ``volume`` or foreground.
    """
    import cc3d

    from utils.labels.label_stats import label_stats, memory_view, voxel_volume_mm3

    stats = label_stats(mask)
    box = stats.foreground
    if box is None:
        return {}, None
    voxel = voxel_volume_mm3(affine)
    view, transposed = memory_view(mask)
    box_view = tuple(box[::-1]) if transposed else box
    crop = np.ascontiguousarray(view[box_view])
    comps, _ = cc3d.connected_components(crop, connectivity=26, return_N=True)
    flat = crop.reshape(-1)
    inside = crop != 0
    under_mask = None
    if volume is not None:
        vview = volume.T if transposed else volume  # the mask's axes order
        under_mask = vview[box_view][inside]  # a boolean walk of the box in memory order: faster than gathering by index
    fg = np.flatnonzero(inside)
    del inside
    comp = comps.reshape(-1)[fg]
    del comps
    order = np.argsort(comp, kind="stable")
    comp_sorted = comp[order]
    fg_sorted = fg[order]  # foreground voxels grouped by component
    del comp, order, fg
    starts = np.flatnonzero(np.r_[True, comp_sorted[1:] != comp_sorted[:-1]])
    counts = np.diff(np.r_[starts, comp_sorted.size])
    piece_label = flat[fg_sorted[starts]]
    coords = np.unravel_index(fg_sorted, crop.shape)  # (slow, mid, fast) of the crop, grouped by component
    offset = np.array([s.start for s in box_view], dtype=np.int64)
    lo = np.empty((starts.size, 3), np.int64)
    hi = np.empty((starts.size, 3), np.int64)
    sums = np.empty((starts.size, 3), np.float64)
    for a in range(3):
        c = coords[a]
        lo[:, a] = np.minimum.reduceat(c, starts) + offset[a]
        hi[:, a] = np.maximum.reduceat(c, starts) + offset[a]
        sums[:, a] = np.add.reduceat(c, starts) + offset[a] * counts  # intp coordinates: exact integer sums
    if transposed:  # back to the mask's (i, j, k)
        lo, hi, sums = lo[:, ::-1], hi[:, ::-1], sums[:, ::-1]
    aff = np.asarray(affine, dtype=np.float64)
    faces = _face_counts(mask, lo, hi)
    names = face_names(aff)
    out: dict[int, dict[str, Any]] = {}
    for label in sorted(int(v) for v in np.unique(piece_label)):
        ids = np.flatnonzero(piece_label == label)
        centre = sums[ids].sum(axis=0) / counts[ids].sum()
        world = aff[:3, :3] @ centre + aff[:3, 3]
        main = ids[int(np.argmax(counts[ids]))]
        main_extent = hi[main] - lo[main] + 1
        touching = []
        for axis in range(3):
            cross_section = float(counts[main]) / float(main_extent[axis])  # mean slice area of the largest piece
            for end in (0, 1):
                n_face = int(faces[axis][end][label]) if faces[axis][end] is not None else 0
                if n_face:
                    touching.append({"direction": names[axis][end], "axis": axis, "voxels": n_face,
                                     "fraction": round(n_face / cross_section, 4)})  # fmt: skip
        sizes = sorted((int(v) for v in counts[ids]), reverse=True)
        out[label] = {
            "voxels": int(stats.counts[label]),
            "volume_mm3": float(stats.counts[label]) * voxel,
            "centroid_mm": [round(float(v), 4) for v in world],
            "box": [[int(lo[ids, a].min()), int(hi[ids, a].max())] for a in range(3)],
            "components": len(sizes),
            "component_voxels": sizes[:_PIECES_KEPT],
            "faces": touching,
        }
    return out, under_mask


def nonzero_box(data: npt.NDArray) -> list[list[int]] | None:
    """Bounding box (inclusive, stored axes) of the non-zero voxels: nnU-Net's crop to non-zero.

    Shrinks inwards from each face while the face slice is all zero, so a CT (air is -1000,
    every face non-zero) costs six slices; an image with a zero border costs that border.
    """
    lo = [0, 0, 0]
    hi = [n - 1 for n in data.shape]
    for axis in range(3):
        while lo[axis] <= hi[axis] and not np.any(_face(data, axis, lo[axis], lo, hi)):
            lo[axis] += 1
        if lo[axis] > hi[axis]:
            return None
        while hi[axis] > lo[axis] and not np.any(_face(data, axis, hi[axis], lo, hi)):
            hi[axis] -= 1
    return [[lo[a], hi[a]] for a in range(3)]


def _face(data: npt.NDArray, axis: int, index: int, lo: list[int], hi: list[int]) -> npt.NDArray:
    region = [slice(lo[a], hi[a] + 1) for a in range(3)]
    region[axis] = slice(index, index + 1)
    return data[tuple(region)]


def _volume_stats(data: npt.NDArray, sub: npt.NDArray, lo: float, hi: float, path: Path) -> dict[str, Any]:
    """Whole-volume statistics: the exact range ``lo``, ``hi`` (from the canonical pass), the rest from the sub-grid."""
    from utils.files.nifti_io import require_finite

    if not (math.isfinite(lo) and math.isfinite(hi)):
        require_finite(data, path)  # raises with the count of NaN/Inf voxels and the first one
    values = np.percentile(sub, VOLUME_PERCENTILES)
    return {
        "min": lo,
        "max": hi,
        "mean": float(sub.mean(dtype=np.float64)),
        "std": float(sub.std(dtype=np.float64)),
        "percentiles": {f"{q:g}": float(v) for q, v in zip(VOLUME_PERCENTILES, values)},
        "subgrid_voxels": int(sub.size),
    }


def _foreground_stats(values: npt.NDArray, sub: npt.NDArray) -> dict[str, Any]:
    """nnU-Net's per-case foreground intensity properties (exact, over every voxel under the mask), and the median's rank."""
    p005, median, p995 = (float(v) for v in np.percentile(values, (0.5, 50.0, 99.5)))
    below = float(np.count_nonzero(sub < median)) + 0.5 * float(np.count_nonzero(sub == median))
    return {
        "voxels": int(values.size),
        "mean": float(values.mean(dtype=np.float64)),
        "median": median,
        "std": float(values.std(dtype=np.float64)),
        "min": float(values.min()),
        "max": float(values.max()),
        "percentile_00_5": p005,
        "percentile_99_5": p995,
        "median_rank_in_volume": below / sub.size,
    }


def _geometry(img: Any, can: sig.Canonical) -> dict[str, Any]:
    from utils.geometry.orientation import obliquity_deg, orientation_strings, spacing

    affine = np.asarray(img.affine, dtype=np.float64)
    sp = spacing(affine)
    return {
        "shape": [int(n) for n in img.shape],
        "spacing_mm": [float(s) for s in sp],
        "affine": [[float(v) + 0.0 for v in row] for row in affine],
        "orientation": orientation_strings(affine)[1],
        "obliquity_deg": obliquity_deg(affine),
        "canonical_shape": list(can.shape),
        "canonical_spacing_mm": [float(sp[a]) for a in can.perm],
    }


def measure_sample(sample: SampleDir, job: MeasureJob) -> Measurement:
    """Read one sample folder once and measure it.

    Parameters
    ----------
    sample : SampleDir
    job : MeasureJob

    Returns
    -------
    Measurement
        ``record['error']`` holds a one-line reason (and ``record['error_file']`` the file)
        when the info yaml, the volume or the mask cannot be used; whatever was measured
        before the problem stays in the record.
    """
    from utils.geometry.alignment import grid_displacement_mm, grids_match
    from utils.files.nifti_io import load_nifti, read_mask, require_3d

    t0 = time.perf_counter()
    root = Path(job.root_dir)
    record: dict[str, Any] = {
        "version": RECORD_VERSION,
        "sample": sample.id,
        "path": _rel(sample.path, root),
        "files": {"volume": _rel(sample.volume, root), "mask": _rel(sample.mask, root) if sample.mask.is_file() else None,
                  "info": _rel(sample.info, root)},
        "stamps": file_stamps(sample),
        "error": None,
        "error_file": None,
    }  # fmt: skip
    measurement = Measurement(record)
    current = sample.info
    try:
        info = read_info(sample.info)
        record["meta"] = _metadata(info, job)
        current = sample.volume
        if not sample.volume.is_file():
            raise FileNotFoundError(f"{sample.volume}: volume file missing")
        vol_img = load_nifti(sample.volume)
        require_3d(vol_img, sample.volume)
        data = _volume_array(vol_img, sample.volume)
        mask = mask_img = None
        if sample.mask.is_file():
            current = sample.mask
            mask_img = load_nifti(sample.mask)
            mask = read_mask(mask_img, sample.mask)
        t_read = time.perf_counter()
        current = sample.volume
        can = sig.canonical(data, vol_img.affine)
        record["geometry"] = _geometry(vol_img, can)
        readers = {"volume": reader_agreement(vol_img)}
        if mask_img is not None:
            readers["mask"] = reader_agreement(mask_img)
        record["geometry"]["readers"] = readers
        sub, step = sig.canonical_subgrid(can)
        key, lo, hi = sig.scan_canonical(can, sub)
        record["intensity"] = _volume_stats(data, sub, lo, hi, sample.volume)
        record["intensity"]["subgrid_step"] = step
        record["intensity"]["nonzero_box"] = nonzero_box(data)
        record["voxel_key"] = key
        measurement.signature = {"thumbnail": sig.thumbnail(sub), "residual": sig.residuals(data, can)}
        record["mask"] = None
        record["foreground"] = None
        if mask is not None:
            current = sample.mask
            on_grid = grids_match(mask.shape, mask_img.affine, vol_img.shape, vol_img.affine)
            mask_record: dict[str, Any] = {"on_volume_grid": bool(on_grid), "shape": [int(n) for n in mask.shape]}
            if not on_grid:
                mask_record["displacement_mm"] = (
                    grid_displacement_mm(mask.shape, mask_img.affine, vol_img.affine) if mask.shape == vol_img.shape else None
                )
            labels, under_mask = label_geometry(mask, mask_img.affine, data if on_grid else None)
            mask_record["labels"] = {str(k): v for k, v in labels.items()}
            mask_record["foreground_voxels"] = int(sum(v["voxels"] for v in labels.values()))
            record["mask"] = mask_record
            record["foreground"] = _foreground_stats(under_mask, sub) if under_mask is not None else None
        t_end = time.perf_counter()
        measurement.seconds = {"read": t_read - t0, "compute": t_end - t_read}
    except (ValueError, OSError, KeyError) as exc:
        record["error"] = " ".join(str(exc).split())
        record["error_file"] = _rel(Path(current), root)
    logger.debug("%s: %s", record["path"], {k: round(v, 3) for k, v in measurement.seconds.items()})
    return measurement


def _volume_array(img: Any, path: Path) -> npt.NDArray:
    """The volume's stored values without a copy when unscaled (as :func:`utils.files.nifti_io.load_nifti` holds them), else float32."""
    from utils.files.nifti_io import read_volume

    if isinstance(img.dataobj, np.ndarray) and img.dataobj.dtype.kind in "iuf":
        return img.dataobj
    return read_volume(img, path)
