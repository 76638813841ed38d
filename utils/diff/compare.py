"""One sample of the old release against one of the new: volume, geometry, mask labels, metadata fields.

Hash first: the compressed files are hashed (:func:`utils.diff.fingerprint.file_sha256`); a file
identical in both releases is not decompressed. Where the files differ, both images are read once:
equal voxel digests mean only the header changed; otherwise the voxels are compared. Masks are
compared label by label — voxel count and volume (mm³) before and after, and, on the same grid
(same shape, voxel centres within ``grid_tol`` of the smallest spacing), the Dice coefficient of
each label's binary mask, from one joint histogram of the two masks over the union of their
foreground boxes. On different grids no Dice is computed and the record says why: resampling a
mask to compare it would invent the answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from utils.geometry.alignment import GRID_TOL_VOXEL, grid_displacement_mm, grids_match
from utils.diff.fingerprint import file_sha256, voxel_digest
from utils.labels.label_stats import label_stats, voxel_volume_mm3
from utils.files.nifti_io import load_header, load_nifti, memory_slabs, read_mask, read_volume, require_3d
from utils.geometry.orientation import spacing
from utils.report.sample import plain
from utils.files.sample_info import SampleDir, read_info

__all__ = ["SKIPPED_INFO_KEYS", "SKIPPED_MANIFEST_COLUMNS", "SamplePair", "compare_pair", "joint_label_histogram", "changed_fields", "volume_fingerprint"]

#: Info-yaml keys not compared: provenance that differs between any two builds (archive paths, file stamps,
#: dates) or is compared through the images themselves (the mask's label record).
SKIPPED_INFO_KEYS = ("ID", "source", "built_from", "mask_labels", "history", "pending_step")
#: Manifest columns not compared as fields: paths (they contain the ID) and what the image comparison reports.
SKIPPED_MANIFEST_COLUMNS = re.compile(
    r"^(ID|info|volume|mask|valid_labels|szx|szy|szz|spx|spy|spz|orientation_from|orientation_to|vol_dtype|mask_dtype|transform"
    r"|mask_\d{2,3}_[A-Za-z0-9-]+(_existence)?)$"
)


@dataclass(frozen=True)
class SamplePair:
    """A sample of each release to compare (picklable for ``--workers``).

    Attributes
    ----------
    old, new : SampleDir
        The two sample folders (IDs differ for a renamed sample).
    old_path, new_path : str
        Their folders relative to the release roots (POSIX).
    old_row, new_row : dict
        Their dataset-manifest rows (empty without a manifest).
    renamed : bool
        Matched by voxel content rather than by ID.
    """

    old: SampleDir
    new: SampleDir
    old_path: str
    new_path: str
    old_row: Mapping[str, Any] = field(default_factory=dict)
    new_row: Mapping[str, Any] = field(default_factory=dict)
    renamed: bool = False


def volume_fingerprint(sample: SampleDir) -> dict[str, Any]:
    """Voxel digest, shape and spacing of a sample's volume (to find renamed samples).

    Raises
    ------
    NiftiError, OSError
        Unreadable volume (the message names the file).
    """
    img = load_nifti(sample.volume)
    require_3d(img, sample.volume)
    return {"digest": voxel_digest(img), "shape": [int(n) for n in img.shape], "spacing_mm": list(spacing(img.affine))}


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    return a == b


def _json_value(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return plain(value)


def changed_fields(old_info: Mapping[str, Any], new_info: Mapping[str, Any], old_row: Mapping[str, Any], new_row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Fields whose value differs: info yaml (nested keys joined with ``.``) and manifest columns.

    A field present on one side only counts as changed (old or new value None). A manifest column
    with the same name and the same change as an info field is listed once, source ``info+manifest``.
    Manifest columns are compared only when the sample has a row in both manifests.

    Returns
    -------
    fields : list of dict
        ``{field, source, old, new}``, info fields first, each group sorted by name.
    """
    out: list[dict[str, Any]] = []
    old_flat = _flatten({k: v for k, v in old_info.items() if k not in SKIPPED_INFO_KEYS})
    new_flat = _flatten({k: v for k, v in new_info.items() if k not in SKIPPED_INFO_KEYS})
    for name in sorted(set(old_flat) | set(new_flat)):
        a, b = old_flat.get(name), new_flat.get(name)
        if not _same(a, b):
            out.append({"field": name, "source": "info", "old": _json_value(a), "new": _json_value(b)})
    by_name = {f["field"]: f for f in out}
    if not old_row or not new_row:  # a sample missing from one manifest (not rewritten since): nothing to compare
        return out
    columns = [c for c in dict.fromkeys([*old_row, *new_row]) if not SKIPPED_MANIFEST_COLUMNS.match(str(c))]
    for name in sorted(columns, key=str):
        a, b = _json_value(old_row.get(name)), _json_value(new_row.get(name))
        if _same(a, b):
            continue
        known = by_name.get(str(name))
        if known is not None and _same(known["old"], a) and _same(known["new"], b):
            known["source"] = "info+manifest"
            continue
        out.append({"field": str(name), "source": "manifest", "old": a, "new": b})
    return out


def _union_box(*boxes: tuple[slice, ...] | None) -> tuple[slice, ...] | None:
    present = [b for b in boxes if b is not None]
    if not present:
        return None
    return tuple(slice(min(b[i].start for b in present), max(b[i].stop for b in present)) for i in range(3))


def joint_label_histogram(old: npt.NDArray[np.uint8], new: npt.NDArray[np.uint8], box: tuple[slice, ...] | None = None) -> npt.NDArray[np.int64]:
    """Voxel count of every (old value, new value) pair of two uint8 masks on the same grid.

    Parameters
    ----------
    old, new : (I, J, K) ndarray of uint8
        Same shape; any memory order.
    box : tuple of slice, optional
        Only voxels inside it are counted (e.g. the union of both foreground boxes: outside it
        both masks are 0, so every foreground count stays exact; ``[0, 0]`` then counts the box only).

    Returns
    -------
    joint : (256, 256) ndarray of int64
        ``joint[a, b]``: voxels with value ``a`` in ``old`` and ``b`` in ``new``.
    """
    if old.shape != new.shape:
        raise ValueError(f"masks of shapes {old.shape} and {new.shape} cannot be compared voxel by voxel")
    box = box or tuple(slice(0, n) for n in old.shape)
    a, b = old[box], new[box]
    joint = np.zeros(256 * 256, dtype=np.int64)
    order = "F" if old.flags.f_contiguous and not old.flags.c_contiguous else "C"
    for slab in memory_slabs(a.shape, order):
        pair = a[slab].astype(np.uint16)
        pair <<= 8
        pair |= b[slab]
        joint += np.bincount(pair.ravel(order="K"), minlength=256 * 256)
    return joint.reshape(256, 256)


def _volume_record(pair: SamplePair) -> tuple[dict[str, Any], Any, Any]:
    """Volume status and geometry; the two headers (or images when read)."""
    old_hash, new_hash = file_sha256(pair.old.volume), file_sha256(pair.new.volume)
    record: dict[str, Any] = {"old_file_sha256": old_hash, "new_file_sha256": new_hash}
    if old_hash == new_hash:
        img = load_header(pair.new.volume)
        record["status"] = "same_file"
        return record, img, img
    old_img, new_img = load_nifti(pair.old.volume), load_nifti(pair.new.volume)
    require_3d(old_img, pair.old.volume)
    require_3d(new_img, pair.new.volume)
    record["old_voxel_sha256"], record["new_voxel_sha256"] = voxel_digest(old_img), voxel_digest(new_img)
    if record["old_voxel_sha256"] == record["new_voxel_sha256"]:
        record["status"] = "same_voxels"
    else:
        record["status"] = "changed"
        if old_img.shape == new_img.shape:
            a, b = read_volume(old_img, pair.old.volume), read_volume(new_img, pair.new.volume)
            changed, largest = 0, 0.0
            for slab in memory_slabs(a.shape, "F" if a.flags.f_contiguous else "C"):
                delta = np.abs(a[slab] - b[slab])
                changed += int(np.count_nonzero(delta))
                largest = max(largest, float(delta.max(initial=0.0)))
            record["changed_voxels"], record["max_abs_difference"] = changed, largest
    return record, old_img, new_img


def _geometry_record(old_img, new_img, grid_tol: float) -> dict[str, Any]:
    old_shape, new_shape = [int(n) for n in old_img.shape[:3]], [int(n) for n in new_img.shape[:3]]
    old_aff, new_aff = np.asarray(old_img.affine, dtype=np.float64), np.asarray(new_img.affine, dtype=np.float64)
    record: dict[str, Any] = {
        "old_shape": old_shape, "new_shape": new_shape,
        "old_spacing_mm": list(spacing(old_aff)), "new_spacing_mm": list(spacing(new_aff)),
        "affine_max_abs_difference": float(np.max(np.abs(old_aff - new_aff))),
        "max_displacement_mm": grid_displacement_mm(tuple(new_shape), old_aff, new_aff) if old_shape == new_shape else None,
        "same_grid": grids_match(tuple(old_shape), old_aff, tuple(new_shape), new_aff, grid_tol),
    }  # fmt: skip
    if not record["same_grid"]:
        record["old_affine"], record["new_affine"] = old_aff.tolist(), new_aff.tolist()
    return record


def _mask_record(pair: SamplePair, grid_tol: float, names: Mapping[int, str]) -> dict[str, Any]:
    has_old, has_new = pair.old.mask.is_file(), pair.new.mask.is_file()
    if not has_old and not has_new:
        return {"status": "none"}
    if has_old != has_new:
        path = pair.new.mask if has_new else pair.old.mask
        img = load_nifti(path)
        stats = label_stats(read_mask(img, path))
        vox = voxel_volume_mm3(img.affine)
        labels = [
            {"label": v, "name": names.get(v, ""), "old_voxels": 0 if has_new else int(stats.counts[v]),
             "new_voxels": int(stats.counts[v]) if has_new else 0}
            for v in stats.foreground_labels
        ]  # fmt: skip
        for row in labels:
            row.update(old_mm3=row["old_voxels"] * vox, new_mm3=row["new_voxels"] * vox, dice=0.0)
            row["change_mm3"] = row["new_mm3"] - row["old_mm3"]
        present = [r["label"] for r in labels]
        return {"status": "added" if has_new else "removed", "labels": labels,
                "labels_added": present if has_new else [], "labels_removed": [] if has_new else present}  # fmt: skip
    old_hash, new_hash = file_sha256(pair.old.mask), file_sha256(pair.new.mask)
    record: dict[str, Any] = {"old_file_sha256": old_hash, "new_file_sha256": new_hash, "labels": [], "labels_added": [], "labels_removed": []}
    if old_hash == new_hash:
        record["status"] = "same_file"
        return record
    old_img, new_img = load_nifti(pair.old.mask), load_nifti(pair.new.mask)
    old_mask, new_mask = read_mask(old_img, pair.old.mask), read_mask(new_img, pair.new.mask)
    if voxel_digest(old_img) == voxel_digest(new_img) and np.array_equal(old_img.affine, new_img.affine):
        record["status"] = "same_voxels"
        return record
    old_stats, new_stats = label_stats(old_mask), label_stats(new_mask)
    old_vox, new_vox = voxel_volume_mm3(old_img.affine), voxel_volume_mm3(new_img.affine)
    same_grid = grids_match(old_mask.shape, old_img.affine, new_mask.shape, new_img.affine, grid_tol)
    joint = joint_label_histogram(old_mask, new_mask, _union_box(old_stats.foreground, new_stats.foreground)) if same_grid else None
    old_labels, new_labels = set(old_stats.foreground_labels), set(new_stats.foreground_labels)
    rows = []
    for v in sorted(old_labels | new_labels):
        a, b = int(old_stats.counts[v]), int(new_stats.counts[v])
        row = {"label": v, "name": names.get(v, ""), "old_voxels": a, "new_voxels": b, "old_mm3": a * old_vox, "new_mm3": b * new_vox}
        row["change_mm3"] = row["new_mm3"] - row["old_mm3"]
        row["dice"] = 2.0 * int(joint[v, v]) / (a + b) if joint is not None else None
        rows.append(row)
    changed_voxels = int(joint.sum() - np.trace(joint)) if joint is not None else None
    record.update(
        status="same_labels" if changed_voxels == 0 else "changed",
        same_grid=same_grid,
        labels=rows,
        labels_added=sorted(new_labels - old_labels),
        labels_removed=sorted(old_labels - new_labels),
    )
    if joint is not None:
        fg_old, fg_new = int(old_stats.counts[1:].sum()), int(new_stats.counts[1:].sum())
        record["dice_foreground"] = 2.0 * int(joint[1:, 1:].sum()) / (fg_old + fg_new) if fg_old + fg_new else None
        record["changed_voxels"] = changed_voxels
    else:
        record["note"] = (
            f"the masks lie on different grids (shape {list(old_mask.shape)} -> {list(new_mask.shape)}"
            + (f", voxel centres up to {grid_displacement_mm(old_mask.shape, old_img.affine, new_img.affine):.4g} mm apart" if old_mask.shape == new_mask.shape else "")
            + "): Dice not computed (no resampling)"
        )
    return record


def compare_pair(pair: SamplePair, *, grid_tol: float = GRID_TOL_VOXEL, label_names: Mapping[int, str] | None = None) -> dict[str, Any]:
    """Compare one sample of each release.

    Parameters
    ----------
    pair : SamplePair
    grid_tol : float
        Largest voxel-centre displacement for "same grid", as a fraction of the smallest voxel spacing.
    label_names : mapping of int to str, optional
        Short names of the labels (for the records).

    Returns
    -------
    record : dict
        JSON-ready: ``status`` (``unchanged``, ``changed`` or ``renamed``), ``changes`` (what changed:
        ``volume``, ``geometry``, ``mask``, ``fields``, ``path``), ``volume``, ``geometry``, ``mask``, ``fields``.

    Raises
    ------
    NiftiError, OSError, ValueError
        An unreadable file (the message names it).
    """
    names = dict(label_names or {})
    volume, old_img, new_img = _volume_record(pair)
    geometry = _geometry_record(old_img, new_img, grid_tol)
    mask = _mask_record(pair, grid_tol, names)
    fields = changed_fields(read_info(pair.old.info), read_info(pair.new.info), pair.old_row, pair.new_row)
    changes = []
    if volume["status"] == "changed":
        changes.append("volume")
    if not geometry["same_grid"]:
        changes.append("geometry")
    if mask["status"] not in ("none", "same_file", "same_voxels", "same_labels"):
        changes.append("mask")
    if fields:
        changes.append("fields")
    if pair.old_path != pair.new_path:
        changes.append("path")
    status = "renamed" if pair.renamed else ("changed" if changes else "unchanged")
    record = {"status": status, "changes": changes, "volume": volume, "geometry": geometry, "mask": mask, "fields": fields}
    if bool(pair.old_row) != bool(pair.new_row):
        record["note"] = f"not in the {'new' if pair.old_row else 'old'} dataset manifest: manifest fields not compared"
    return record
