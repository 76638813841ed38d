"""Write one grouped sample from an archive volume and its mask (the body of every ``02_confirm_pairs``).

The volume is written float32 with its scaling applied, on its own grid. The
mask is checked (finite integers in [0, 255], values allowed by the dataset),
aligned onto the volume grid (:func:`utils.geometry.alignment.align_mask_to_volume`)
and written uint8 with the volume's affine. The info yaml records what was
done: the source files, the alignment method and displacement, any
qform/sform disagreement, and a ``history`` entry.

Re-running is resumable. The info yaml records under ``built_from`` what the
sample was built from: name, size, modification time (ns) and CRC-32 of every
archive file read (volume, mask, duplicate copies) and the parameters that
shape the result; a file whose time changed but whose bytes did not (a copied
archive) still counts as the same. A sample whose record matches the current archive and options, and
whose volume and mask files exist, is up to date and left alone — also when
later steps (label remap, binary masks, QC tools) have modified it since; only
its metadata attributes are refreshed when the archive manifest changed them.
A sample that is missing or whose sources changed is (re)built, unless later
steps already modified it: rebuilding would silently undo their work, so it is
refused without ``overwrite``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from utils.geometry.alignment import GRID_TOL_VOXEL, RESAMPLE_ADVICE, AlignmentError, align_mask_to_volume
from utils.files.atomic import remove_stale_temporaries
from utils.geometry.policy import FileGeometry, GeometryOptions, explain_mismatch, resolve_file_geometry
from utils.geometry.rigid import nearest_rigid_affine, resample_onto
from utils.labels.label_stats import label_stats
from utils.labels.label_maps import check_labels
from utils.files.nifti_io import (
    NiftiError, byte_order, dtype_name, float32_inexact, load_nifti, read_mask, require_finite, save_nifti, volume_values,
)  # fmt: skip
from utils.files.sample_info import InfoYamlError, SampleDir, file_crc32, history_entry, read_info, record_mask_labels, write_info
from utils.files.sample_lock import sample_lock
from utils.files.yaml_files import dump_yaml, parse_yaml

__all__ = ["PAIR_STEP", "BUILD_RECORD", "PairJob", "build_record", "write_pair"]

logger = logging.getLogger(__name__)

#: ``history`` step name written by routine 02.
PAIR_STEP = "confirm_pairs"

#: Info-yaml key of what a sample was built from (archive files and parameters).
BUILD_RECORD = "built_from"


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
    geometry : GeometryOptions
        Explicit choices for header problems (``--trust_uncoded_geometry``, ``--resample_sheared``).
    archive_root : Path, optional
        The archive folder (``--root_dir`` of routine 02). Paths written into the
        info yaml (``source``, ``built_from``, warnings) are relative to it, so a
        copied or moved dataset stays the same dataset; without it, file names only.
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
    geometry: GeometryOptions = field(default_factory=GeometryOptions)
    archive_root: Path | None = None

    def archive_relative(self, text: str) -> str:
        """``text`` with every archive file of this job named by its path relative to the archive root."""
        for path in (self.volume, self.mask, *(p for pair in self.duplicates for p in pair)):
            if path is not None and str(path) in text:
                text = text.replace(str(path), self.archive_path(path) or str(path))
        return text

    def archive_path(self, path: Path | None) -> str | None:
        """``path`` relative to the archive root (POSIX), or its file name when that is unknown or it lies outside."""
        if path is None:
            return None
        if self.archive_root is not None:
            try:
                return Path(os.path.relpath(Path(path).resolve(), Path(self.archive_root).resolve())).as_posix()
            except ValueError:  # another drive (Windows)
                pass
        return Path(path).name


def _later_steps(sample: SampleDir, info: dict[str, Any] | None) -> list[str]:
    """History steps after routine 02 already applied to an existing sample, and binary masks present."""
    steps = [str(h.get("step")) for h in (info or {}).get("history") or [] if isinstance(h, dict) and h.get("step") != PAIR_STEP]
    if sample.path.is_dir() and sample.binary_masks():
        steps.append("binary masks present")
    return steps


def _file_stamp(path: Path, rel: str | None = None, *, checksum: bool = True) -> dict[str, Any]:
    """``{path, size, mtime_ns, crc32}`` of an archive file (``path`` relative to the archive root; ``crc32`` only with ``checksum``)."""
    try:
        st = Path(path).stat()
        stamp = {"path": rel or Path(path).name, "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}
        if checksum:
            stamp["crc32"] = file_crc32(path)
    except OSError as exc:
        raise NiftiError(f"{path}: archive file listed in the archive manifest cannot be read ({exc.strerror or exc}); re-run routine 01") from exc
    return stamp


def _same_place(old: dict[str, Any], now: dict[str, Any]) -> bool:
    """Same archive file: same relative path (records of earlier versions hold only the file name)."""
    if "path" in old:
        return old["path"] == now["path"]
    return old.get("name") == Path(now["path"]).name


def _stamp_change(old: Any, path: Path | None, rel: str | None) -> str | None:
    """None when ``path`` is the file ``old`` describes: same place and size, and same mtime or (else) same CRC-32."""
    if old is None or path is None:
        if old is None and path is None:
            return None
        was = (old.get("path") or old.get("name")) if isinstance(old, dict) else old
        return f"was {was}, is now {rel if path is not None else None}"
    now = _file_stamp(path, rel, checksum=False)
    name = Path(path).name
    changes = []
    if not _same_place(old, now):
        changes.append(f"path {old.get('path') or old.get('name')} -> {now['path']}")
    if old.get("size") != now["size"]:
        changes.append(f"size {old.get('size')} -> {now['size']}")
    if not changes and old.get("mtime_ns") != now["mtime_ns"]:
        if old.get("crc32") == file_crc32(path):
            return None  # same bytes, new time stamp (copied or touched archive)
        changes.append(f"content (CRC-32) and mtime_ns {old.get('mtime_ns')} -> {now['mtime_ns']}")
    return f"{name} changed since the sample was built ({', '.join(changes)})" if changes else None


def _record_problem(old: Any) -> str | None:
    """Why a ``built_from`` value is not a record this routine wrote (garbage edited into the info yaml), or None."""
    if not isinstance(old, dict):
        return f"is {type(old).__name__}, not a mapping"

    def stamp_ok(value: Any, optional: bool) -> bool:
        return (optional and value is None) or (isinstance(value, dict) and isinstance(value.get("path", value.get("name")), str))

    if not stamp_ok(old.get("volume"), False) or not stamp_ok(old.get("mask"), True):
        return "has no valid volume/mask entries"
    dups = old.get("duplicates") or []
    if not isinstance(dups, list) or not all(isinstance(d, list) and len(d) == 2 and stamp_ok(d[0], False) and stamp_ok(d[1], True) for d in dups):
        return "has an invalid duplicates list"
    if not isinstance(old.get("params") or {}, dict):
        return "has invalid params"
    return None


def build_record(job: PairJob) -> dict[str, Any]:
    """What ``job`` builds its sample from: archive files (name, size, mtime in ns, CRC-32) and the parameters.

    Returns
    -------
    record : dict
        ``{'volume': stamp, 'mask': stamp or None, 'duplicates': [[stamp, stamp or None]], 'params': {...}}``;
        plain YAML types, stored as ``built_from`` in the info yaml. A stamp's ``path`` is relative to
        the archive root, so the record still fits after the archive and the dataset were moved together.
    """
    return {
        "volume": _file_stamp(job.volume, job.archive_path(job.volume)),
        "mask": None if job.mask is None else _file_stamp(job.mask, job.archive_path(job.mask)),
        "duplicates": [[_file_stamp(v, job.archive_path(v)), None if m is None else _file_stamp(m, job.archive_path(m))] for v, m in job.duplicates],
        "params": _build_params(job),
    }


def _build_params(job: PairJob) -> dict[str, Any]:
    params = {
        "tol_voxel": float(job.tol_voxel),
        "allow_resample": bool(job.allow_resample),
        "allowed_labels": None if job.allowed_labels is None else sorted(int(v) for v in job.allowed_labels),
    }
    # the geometry options only when given (a sample built without them keeps the record it always had)
    if job.geometry.trust_uncoded_geometry is not None:
        params["trust_uncoded_geometry"] = job.geometry.trust_uncoded_geometry
    if job.geometry.resample_sheared:
        params["resample_sheared"] = True
    return params


#: Info-yaml key of the geometry record of routine 02: how nibabel and ITK read each archive file, what was used.
GEOMETRY_RECORD = "geometry"


def _geometry_options_used(info: dict[str, Any]) -> dict[str, Any]:
    """The geometry options a sample's outputs depend on, from its info yaml (``{}`` when none was needed)."""
    record = info.get(GEOMETRY_RECORD)
    if not isinstance(record, dict):
        return {}
    used: dict[str, Any] = {}
    for role in ("volume", "mask"):
        taken = str((record.get(role) or {}).get("taken_from") or "") if isinstance(record.get(role), dict) else ""
        if taken.endswith(" guess"):
            used["trust_uncoded_geometry"] = taken.split()[0]
    if record.get("resampled_to_rigid"):
        used["resample_sheared"] = True
    return used


def _plain_yaml(value: Any) -> Any:
    """``value`` as it reads back from the info yaml (tuples -> lists, numpy scalars -> Python)."""
    return parse_yaml(dump_yaml(value, allow_unicode=True))


def _why_not_up_to_date(sample: SampleDir, info: dict[str, Any], job: PairJob) -> str | None:
    """None when the sample was built from these archive files and parameters and its outputs exist; else why not."""
    if BUILD_RECORD not in info:
        return "its info yaml has no build record (written by an earlier version of routine 02)"
    old = info[BUILD_RECORD]
    problem = _record_problem(old)
    if problem is not None:
        return f"its build record ({BUILD_RECORD}) {problem}"
    for role, path in (("volume", job.volume), ("mask", job.mask)):
        change = _stamp_change(old.get(role), path, job.archive_path(path))
        if change:
            return f"archive {role} {change}"
    old_dups = old.get("duplicates") or []
    if len(old_dups) != len(job.duplicates):
        return f"it was compared with {len(old_dups)} duplicate archive copies, now {len(job.duplicates)}"
    for (old_v, old_m), (v, m) in zip(old_dups, job.duplicates):
        change = _stamp_change(old_v, v, job.archive_path(v)) or _stamp_change(old_m, m, job.archive_path(m))
        if change:
            return f"duplicate archive copy {change}"
    was_p, now_p = old.get("params") or {}, _plain_yaml(_build_params(job))
    for key in ("tol_voxel", "allowed_labels"):
        if was_p.get(key) != now_p[key]:
            return f"it was built with {key} {was_p.get(key)}, now {now_p[key]}"
    source = info.get("source") if isinstance(info.get("source"), dict) else {}
    alignment = source.get("alignment") if isinstance(source.get("alignment"), dict) else {}
    method = alignment.get("method")
    if method == "resampled" and not now_p["allow_resample"]:
        return "its mask was resampled onto the volume grid, and resampling is not allowed now"
    for key, value in _geometry_options_used(info).items():
        if now_p.get(key) != value:
            return f"it was built with --{key} {value}, now {now_p.get(key) or 'not given'}"
    missing = [p.name for p in (sample.volume, sample.mask if job.mask is not None else None) if p is not None and not p.is_file()]
    if missing:
        return f"output file(s) {missing} are missing"
    return None


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
                warnings.append(f"{kind} copy {job.archive_path(path)} differs in voxels from {job.archive_path(job.volume if kind == 'volume' else job.mask)}")
            elif ref_affine is not None and not np.allclose(img.affine, ref_affine, atol=1e-6):
                warnings.append(f"{kind} copy {job.archive_path(path)} differs in affine from {job.archive_path(job.volume)}")
    return warnings


def write_pair(job: PairJob) -> dict[str, Any]:
    """Write ``{ID}_volume.nii.gz``, ``{ID}_mask.nii.gz`` and ``{ID}_info.yaml`` for one sample, unless up to date.

    Returns
    -------
    summary : dict
        ``status`` (``'written'``, ``'up to date'``, ``'attributes updated'``),
        and when written the ``alignment`` method and ``warnings`` (also in the info yaml).

    Raises
    ------
    ValueError
        Bad input: unreadable file, NaN/Inf volume voxels, non-integer or
        disallowed mask values, grids that do not match, a sample already
        modified by later steps whose sources or parameters changed.
    """
    sample = SampleDir(Path(job.sample_dir))
    with sample_lock(sample.path, create=True):  # one writer per sample folder (utils/files/sample_lock.py)
        return _write_pair_locked(job, sample)


def _write_pair_locked(job: PairJob, sample: SampleDir) -> dict[str, Any]:
    remove_stale_temporaries(sample.path)
    old_info = None
    why = "the sample folder has no info yaml"
    if sample.info.exists():
        try:
            old_info = read_info(sample.info)
        except (InfoYamlError, OSError) as exc:
            if not job.overwrite:
                raise InfoYamlError(
                    f"{exc}; routine 02 does not replace an info yaml it cannot read: fix or delete it, "
                    "or pass --overwrite to rebuild the sample from the archive"
                ) from None
            why = "its info yaml is invalid"
    if old_info is not None:
        why = _why_not_up_to_date(sample, old_info, job)
    if why is None and not job.overwrite:
        fresh = {k: v for k, v in _plain_yaml({"ID": sample.id, **job.info}).items()}
        if all(old_info.get(k) == v for k, v in fresh.items()):
            return {"status": "up to date"}
        changed = sorted(k for k, v in fresh.items() if old_info.get(k) != v)
        write_info(sample.info, {**old_info, **fresh})
        logger.info("%s: up to date; attributes %s updated from the archive manifest", sample.id, changed)
        return {"status": "attributes updated", "attributes": changed}
    later = _later_steps(sample, old_info)
    if later and not job.overwrite:
        raise ValueError(
            f"{sample.path}: already processed by later steps ({', '.join(later)}) and not up to date: {why}; "
            "rebuilding would undo them — pass --overwrite to rebuild it from the archive"
        )
    record = build_record(job)  # before reading: the record describes the bytes read, never newer ones
    vol_img = load_nifti(job.volume)
    vol_geo = resolve_file_geometry(vol_img, job.volume, job.geometry)  # refuses what it cannot decide alone
    volume = volume_values(vol_img, job.volume)  # int16 stays int16: cast to float32 slab by slab when written
    require_finite(volume, job.volume)  # integers are always finite: a no-op for them
    info: dict[str, Any] = {"ID": sample.id, **job.info}
    warnings: list[str] = list(vol_geo.warnings)
    warnings.extend(_float32_warning(vol_img, job.volume))
    source: dict[str, Any] = {
        "volume": job.archive_path(job.volume), "mask": job.archive_path(job.mask),
        "volume_dtype_in_archive": dtype_name(vol_img.get_data_dtype()), "volume_byte_order": byte_order(vol_img.get_data_dtype()),
    }  # fmt: skip
    geometry: dict[str, Any] = {"volume": _geometry_record(vol_geo), "mask": None}
    if job.archive_root is not None:  # where the archive lies, relative to the sample folder (moves with the dataset)
        source["archive_root"] = Path(os.path.relpath(Path(job.archive_root).resolve(), sample.path.resolve())).as_posix()
    mask_out = None
    if job.mask is not None:
        mask_img = load_nifti(job.mask)
        mask_geo = resolve_file_geometry(mask_img, job.mask, job.geometry)
        mask = read_mask(mask_img, job.mask)
        stats = label_stats(mask)
        if job.allowed_labels is not None:
            check_labels(stats, job.allowed_labels, str(job.mask))
        warnings.extend(mask_geo.warnings)
        geometry["mask"] = _geometry_record(mask_geo)
        try:
            aligned = align_mask_to_volume(
                mask, mask_geo.affine, volume.shape, vol_geo.affine, tol_voxel=job.tol_voxel, allow_resample=job.allow_resample, source=str(job.mask)
            )
        except AlignmentError as exc:
            hint = explain_mismatch(mask, mask_geo, volume.shape, vol_geo, job.tol_voxel)
            raise AlignmentError(str(exc).replace(RESAMPLE_ADVICE, hint) if hint else str(exc)) from exc
        mask_out = aligned.data
        # copied or exactly reoriented: the same voxels; resampled: counted again
        mask_counts = stats.counts if aligned.method != "resampled" else label_stats(mask_out).counts
        source["alignment"] = {
            "method": aligned.method,
            "displacement_mm": None if np.isnan(aligned.displacement_mm) else float(aligned.displacement_mm),
            "axis_transform": aligned.axis_transform or None,
            "mask_dtype_in_archive": dtype_name(mask_img.get_data_dtype()),
            "mask_byte_order": byte_order(mask_img.get_data_dtype()),
        }
        if aligned.method == "resampled":
            warnings.append(f"{job.archive_path(job.mask)}: resampled onto the volume grid with nearest neighbour")
    out_affine = vol_geo.affine
    if vol_geo.sheared:  # only with --resample_sheared: resolve_file_geometry refuses it otherwise
        out_affine, volume, mask_out, resampled = _resample_sheared(vol_geo, volume, mask_out, job)
        geometry["resampled_to_rigid"] = resampled
        warnings.append(resampled["message"])
        if mask_out is not None:
            mask_counts = label_stats(mask_out).counts
    warnings.extend(_compare_copies(job, volume, vol_img.affine, mask_out))
    if sample.info.exists():
        # From here until the new info yaml is written the folder is not a finished sample: a kill
        # leaves no info yaml whose history or build record would describe files it no longer holds.
        sample.info.unlink()
    if later:  # --overwrite: remove outputs of later steps that the rebuild makes stale
        for _idx, (_short, path) in sample.binary_masks().items():
            path.unlink()
    save_nifti(sample.volume, volume, out_affine, dtype=np.float32, template=vol_img, descrip="")
    if mask_out is not None:
        save_nifti(sample.mask, mask_out, out_affine, dtype=np.uint8, template=vol_img, descrip="")
    elif sample.mask.exists():
        sample.mask.unlink()
    info["source"] = source
    info[GEOMETRY_RECORD] = geometry
    warnings = [job.archive_relative(w) for w in warnings]  # no absolute path in the info yaml
    info["warnings"] = warnings
    info[BUILD_RECORD] = record
    if mask_out is not None:
        record_mask_labels(info, sample.mask, mask_counts)
    info["history"] = [history_entry(PAIR_STEP, allow_resample=job.allow_resample, tol_voxel=job.tol_voxel, **_geometry_options_used(info))]
    write_info(sample.info, info)
    for w in warnings:
        logger.warning("%s: %s", sample.id, w)
    return {"status": "written", "alignment": source.get("alignment", {}).get("method") if job.mask else None, "warnings": warnings}


def _geometry_record(geo: FileGeometry) -> dict[str, Any]:
    """Info-yaml record of one archive file's geometry: the short form when both readers agree and nothing is wrong."""
    full = geo.record()
    if geo.agreement.consistent:
        return {k: full[k] for k in ("readers_agree", "reasons", "displacement_mm", "taken_from")}
    return full


def _float32_warning(img, path: Path) -> list[str]:
    """A warning when an unscaled 32/64-bit integer volume holds values that change when written as float32."""
    dtype = img.get_data_dtype()
    stored = img.dataobj
    if dtype.kind not in "iu" or dtype.itemsize < 4 or not isinstance(stored, np.ndarray):
        return []
    count, largest, error = float32_inexact(stored)
    if not count:
        return []
    message = (
        f"{path}: {count} {dtype_name(dtype)} voxels hold values float32 cannot represent exactly (|value| > 2^24 = 16777216; "
        f"largest |value| {largest}); the float32 volume changes them by up to {error}"
    )
    return [message]


def _resample_sheared(vol_geo: FileGeometry, volume: np.ndarray, mask: np.ndarray | None, job: PairJob):
    """Volume (linear) and mask (nearest neighbour) resampled from the sheared grid onto its nearest rigid grid."""
    rigid = nearest_rigid_affine(vol_geo.affine)
    low = float(volume.min()) if volume.size else 0.0  # outside the old field of view: the scan's background (air in CT)
    new_volume = resample_onto(volume, vol_geo.affine, rigid, order=1, cval=low, dtype=np.float32)
    record: dict[str, Any] = {
        "shear_deg": vol_geo.agreement.numbers.get("shear_deg"),
        "sheared_affine": [[float(v) for v in row] for row in vol_geo.affine],
        "rigid_affine": [[float(v) for v in row] for row in rigid],
        "fill_value": low,
    }
    lost = ""
    new_mask = None
    if mask is not None:
        new_mask = resample_onto(mask, vol_geo.affine, rigid, order=0, cval=0, dtype=np.uint8)
        before, after = label_stats(mask).counts, label_stats(new_mask).counts
        gone = {int(v): int(before[v] - (after[v] if v < len(after) else 0)) for v in range(1, len(before)) if before[v]}
        gone = {v: n for v, n in gone.items() if n > 0}
        record["mask_voxels_lost"] = gone
        if gone:
            lost = f"; {sum(gone.values())} mask voxels (labels {sorted(gone)}) fell outside the field of view"
    record["message"] = (
        f"{job.volume}: sheared grid (axes {record['shear_deg']:.3g}° from perpendicular) resampled onto the nearest rigid grid "
        f"(--resample_sheared; volume linear, mask nearest neighbour; outside the old field of view {low:g}){lost}"
    )
    return rigid, new_volume, new_mask, record
