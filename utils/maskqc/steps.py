"""Per-sample work of the mask-QC tools: read a sample, repair / threshold / report, write it back consistently.

Shared by ``utils/small_connected_region_detect.py``,
``utils/morphological_close_on_slice_small_region.py``,
``utils/morphological_open_on_slice_small_region.py`` and
``utils/mask_thresholding.py``.

Contract of the tools that change masks (:func:`apply_mask_step`):

* The multi-label mask ``{ID}_mask.nii.gz`` is the input; every binary mask
  ``{ID}_mask_XX_short.nii.gz`` already in the folder is rewritten from the
  new mask, so they stay consistent. A foreground label in the mask without
  its binary mask (when the folder has binary masks) is an error for that
  sample; a folder without binary masks (ESO before routine 03) gets only the
  multi-label mask.
* ``output_dir == root_dir`` rewrites in place; every file is replaced
  atomically (temporary file + rename), binary masks first, then the mask,
  then the info yaml, so an interrupted run leaves complete files and no
  history entry for the step, and re-running finishes it. Another
  ``output_dir`` receives the sample folder at the same relative path, with
  every other file (volume, …) copied.
* The info yaml's ``history`` gets ``{step, params, date, result}`` (and
  ``binary_masks_from``, the size and CRC-32 of the mask file the binary masks
  were rewritten from, when it rewrote them). A sample whose history already
  holds the same step with the same params is not processed again (re-running
  a tool is a no-op) unless ``force``.
* History stays true across a ``kill -9``: before an in-place rewrite of a
  changed mask, the info yaml gets the entry as ``pending_step`` together with
  the size and CRC-32 of the mask it replaces. A later run finds the pending
  entry: if the mask on disk is no longer that one, the rewrite had completed
  and the entry (with its true result) moves into the history; otherwise the
  mask was never replaced and the step is applied again.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from utils.geometry.alignment import grids_match
from utils.files.atomic import atomic_path, remove_stale_temporaries
from utils.labels.binary_masks import binary_mask_of
from utils.run.cli import RunReport, SampleError, add_common_args, fail, plural, run_per_sample, setup_logging
from utils.labels.connected_regions import CONNECTIVITY_2D, DEFAULT_CONNECTIVITY_2D, REGION_COLUMNS, small_regions
from utils.maskqc.label_fusion import fuse_label_changes
from utils.labels.label_stats import label_boxes, label_stats
from utils.files.output_paths import archive_of_dataset, check_not_inside, check_output_dir
from utils.files.nifti_io import load_nifti, read_mask, read_volume, save_nifti
from utils.files.sample_info import BINARY_MASKS_FROM, SampleDir, file_stamp, find_samples, history_entry, read_info, record_mask_labels, recorded_mask_labels, write_info
from utils.files.sample_lock import sample_lock
from utils.maskqc.slice_morphology import SliceRepair, repair_changes

if TYPE_CHECKING:
    import nibabel as nib

__all__ = [
    "STEP_CLOSE",
    "STEP_OPEN",
    "STEP_THRESHOLD",
    "REPORT_COLUMNS",
    "Destination",
    "read_label_mask",
    "sample_binary_masks",
    "find_applied",
    "apply_mask_step",
    "repair_transform",
    "threshold_transform",
    "threshold_mask",
    "small_region_rows",
    "add_output_args",
    "add_repair_args",
    "repair_step",
    "repair_parser",
    "repair_main",
    "run_mask_step",
    "threads_per_sample",
]

logger = logging.getLogger(__name__)

STEP_CLOSE = "morphological_close_on_slice_small_region"
STEP_OPEN = "morphological_open_on_slice_small_region"
STEP_THRESHOLD = "mask_thresholding"

#: History step of each slice-wise repair mode (:class:`utils.maskqc.slice_morphology.SliceRepair`'s ``mode``).
REPAIR_STEPS = {"close": STEP_CLOSE, "open": STEP_OPEN}

#: What each step is called in progress bars and summaries (the tool's own name starts every log line already).
STEP_LABELS = {STEP_CLOSE: "slice-wise closing", STEP_OPEN: "slice-wise opening", STEP_THRESHOLD: "thresholding"}

#: Info-yaml key of a history entry whose in-place mask rewrite has begun (see the module docstring).
PENDING_STEP = "pending_step"

#: Columns of the small-region manifest.
REPORT_COLUMNS = ("ID", "file", "mask", "label_index", "label_name", *REGION_COLUMNS)

Boxes = dict[int, tuple[slice, slice, slice]]
#: ``transform(sample, img, mask, boxes) -> (new_mask, result, where)``: the step's work on one sample.
#: ``boxes``: :func:`utils.labels.label_stats.label_boxes` of ``mask``; ``where``: (n, 3) voxel indices
#: outside which ``new_mask`` equals ``mask`` (None: anywhere); ``result``: plain YAML types for the history.
Transform = Callable[
    [SampleDir, "nib.Nifti1Image", npt.NDArray[np.uint8], Boxes],
    tuple[npt.NDArray[np.uint8], dict[str, Any], "npt.NDArray[np.int64] | None"],
]


@dataclass(frozen=True)
class Destination:
    """Where a tool writes: in place (``output_dir == root_dir``) or a copy of the folder layout."""

    root_dir: Path
    output_dir: Path

    @classmethod
    def create(cls, root_dir: Path | str, output_dir: Path | str) -> "Destination":
        """Check the pair of folders.

        Raises
        ------
        FileNotFoundError
            ``root_dir`` is not a folder.
        ValueError
            ``output_dir`` lies inside ``root_dir`` (a later run would find the copies as samples).
        """
        root, out = Path(root_dir).resolve(), Path(output_dir).resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"root_dir is not a folder: {root_dir}")
        if out != root and root in out.parents:
            raise ValueError(
                f"output_dir {output_dir} is inside root_dir {root_dir}; use root_dir itself (in place) or a folder outside it"
            )
        return cls(root, out)

    @property
    def in_place(self) -> bool:
        return self.root_dir == self.output_dir

    def target(self, sample: SampleDir) -> SampleDir:
        """The sample folder written for ``sample`` (the same folder when in place)."""
        if self.in_place:
            return sample
        return SampleDir(self.output_dir / sample.path.resolve().relative_to(self.root_dir))


def read_label_mask(path: Path) -> tuple[nib.Nifti1Image, npt.NDArray[np.uint8]]:
    """Load a multi-label mask as uint8 (:func:`utils.files.nifti_io.read_mask`: checked, on-disk Fortran order).

    Fortran order makes each axial slice ``mask[:, :, k]`` contiguous and
    lets the mask be written back without a transposing copy.

    Returns
    -------
    img : nibabel image
    mask : (I, J, K) ndarray of uint8

    Raises
    ------
    FileNotFoundError
        No such file.
    NiftiError
        Unreadable, truncated, not 3D, or values that are not labels in [0, 255].
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: mask file missing")
    img = load_nifti(path)
    return img, read_mask(img, path)


def sample_binary_masks(
    sample: SampleDir, present: list[int], *, required: bool
) -> dict[int, tuple[str, Path]]:
    """Binary masks of ``sample`` after checking that every present foreground label has one.

    Parameters
    ----------
    sample : SampleDir
    present : list of int
        Labels present in the multi-label mask.
    required : bool
        True: every present foreground label needs a binary mask (names come
        from them). False: a folder without any binary mask is accepted.

    Returns
    -------
    binaries : dict
        ``{index: (short, path)}``.

    Raises
    ------
    SampleError
        A present foreground label has no ``{ID}_mask_XX_*.nii.gz``.
    """
    binaries = sample.binary_masks()
    if not binaries and not required:
        return binaries
    missing = [lab for lab in present if lab != 0 and lab not in binaries]
    if missing:
        raise SampleError(
            f"{sample.mask}: labels {missing} present but no binary mask "
            f"{sample.id}_mask_{missing[0]:02d}_<short>.nii.gz found (binary masks present: {sorted(binaries) or 'none'}); "
            "run the binary-mask extraction routine first"
        )
    return binaries


def find_applied(info: dict[str, Any], step: str, params: dict[str, Any]) -> dict[str, Any] | None:
    """The history entry recording ``step`` with exactly ``params``, or None."""
    for entry in info.get("history") or []:
        if isinstance(entry, dict) and entry.get("step") == step and entry.get("params") == params:
            return entry
    return None


def _copy_atomic(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _write_sample(
    src: SampleDir,
    dst: SampleDir,
    mask: npt.NDArray[np.uint8] | None,
    img: nib.Nifti1Image | None,
    binaries: dict[int, tuple[str, Path]],
    info: dict[str, Any],
    boxes: Boxes | None = None,
    counts: npt.NDArray[np.int64] | None = None,
) -> None:
    """Write ``dst``: other files copied (when not in place), binary masks, mask, info yaml last.

    ``mask is None`` means unchanged: nothing is re-encoded, the files are copied (or left in place).
    ``boxes`` holds a box around every voxel of each label (may be loose); ``counts`` the voxel count of
    every value 0..255 of ``mask`` (recorded in the info yaml); each is computed from ``mask`` when not given.
    """
    in_place = dst.path.resolve() == src.path.resolve()
    written = {dst.info.name}
    if mask is not None:
        written |= {dst.mask.name} | {f"{dst.id}_mask_{idx:02d}_{short}.nii.gz" for idx, (short, _) in binaries.items()}
    if not in_place:
        dst.path.mkdir(parents=True, exist_ok=True)
        for f in sorted(src.path.iterdir()):
            if f.is_file() and not f.name.startswith(".") and f.name not in written:
                _copy_atomic(f, dst.path / f.name)
    if mask is not None and img is not None:
        if boxes is None or counts is None:
            stats = label_stats(mask)
            boxes = stats.boxes() if boxes is None else boxes
            counts = stats.counts if counts is None else counts
        for idx, (short, _) in binaries.items():
            binary = (mask == 0).view(np.uint8) if idx == 0 else binary_mask_of(mask, idx, boxes.get(idx))
            save_nifti(dst.binary_mask(f"{idx:02d}_{short}"), binary, img.affine, dtype=np.uint8, template=img, descrip="")
        save_nifti(dst.mask, mask, img.affine, dtype=np.uint8, template=img)
        record_mask_labels(info, dst.mask, counts)
        if binaries:
            info["history"][-1][BINARY_MASKS_FROM] = file_stamp(dst.mask)
    write_info(dst.info, info)


def _settle_pending(sample: SampleDir, info: dict[str, Any]) -> dict[str, Any]:
    """Resolve the ``pending_step`` left by a run killed during an in-place rewrite; return the info written."""
    pending = info.get(PENDING_STEP)
    if not isinstance(pending, dict):
        return info
    info = {k: v for k, v in info.items() if k != PENDING_STEP}
    entry = {k: v for k, v in pending.items() if k != "mask_before"}
    if sample.mask.is_file() and pending.get("mask_before") not in (None, file_stamp(sample.mask)):
        if sample.binary_masks():
            entry[BINARY_MASKS_FROM] = file_stamp(sample.mask)
        record_mask_labels(info, sample.mask, label_stats(read_label_mask(sample.mask)[1]).counts)
        info["history"] = [*(info.get("history") or []), entry]
        logger.warning("%s: %s was interrupted after its mask was rewritten; its history entry (result %s) is now recorded",
                       sample.id, entry.get("step"), entry.get("result"))  # fmt: skip
    else:
        logger.info("%s: %s was interrupted before its mask was rewritten; it is applied again", sample.id, entry.get("step"))
    write_info(sample.info, info)
    return info


def apply_mask_step(
    sample: SampleDir,
    destination: Destination,
    step: str,
    params: dict[str, Any],
    transform: Transform,
    *,
    force: bool = False,
) -> dict[str, Any]:
    """Run one mask-changing step on one sample and write the result (see the module docstring).

    Parameters
    ----------
    sample : SampleDir
        Input folder below ``destination.root_dir``.
    destination : Destination
    step : str
        Step name recorded in the history (:data:`STEP_CLOSE` …).
    params : dict
        Parameters recorded with it; plain YAML types (lists, not tuples).
    transform : callable
        See :data:`Transform`; ``result`` is recorded in the history entry.
    force : bool
        Apply even when the history already records ``step`` with ``params``.

    Returns
    -------
    outcome : dict
        ``status`` ('applied', 'already applied', 'no mask'); when applied
        also ``changed`` (mask differs) and the transform's ``result``.

    Raises
    ------
    SampleError, NiftiError, FileNotFoundError
        Bad input; the message names the file.
    """
    dst = destination.target(sample)
    with sample_lock(dst.path, create=not destination.in_place):  # one writer per sample folder
        return _apply_locked(sample, dst, destination, step, params, transform, force)


def _apply_locked(
    sample: SampleDir, dst: SampleDir, destination: Destination, step: str, params: dict[str, Any], transform: Transform, force: bool
) -> dict[str, Any]:
    info = read_info(sample.info)
    remove_stale_temporaries(dst.path)
    if destination.in_place:
        info = _settle_pending(sample, info)
    else:
        info = {k: v for k, v in info.items() if k != PENDING_STEP}
    if not sample.mask.is_file():
        status, done = "no mask", None
    else:
        done = find_applied(info, step, params)
        status = "already applied" if done is not None and not force else "applied"
    if status != "applied":
        if not destination.in_place:
            _write_sample(sample, dst, None, None, {}, info)
        logger.debug("%s: %s%s; %s", sample.id, status, f" on {done.get('date', '?')}" if done else "",
                     "nothing to do" if destination.in_place else "copied unchanged")  # fmt: skip  # pragma: no mutate (debug text)
        return {"status": status}
    img, mask = read_label_mask(sample.mask)
    stats = label_stats(mask)
    boxes = stats.boxes(threads=getattr(transform, "threads", 1))
    binaries = sample_binary_masks(sample, sorted({0} | set(boxes)), required=False)
    new_mask, result, where = transform(sample, img, mask, boxes)
    if where is None:
        diff = _nonzero(new_mask != mask)
    else:
        idx = tuple(where.T)
        diff = tuple(where[new_mask[idx] != mask[idx]].T)
    changed = diff[0].size > 0
    entry = history_entry(step, **params)
    entry["result"] = result
    if changed and destination.in_place:  # a kill from here on must not leave a history that lies
        write_info(sample.info, {**info, PENDING_STEP: {**entry, "mask_before": file_stamp(sample.mask)}})
    info = dict(info)
    info["history"] = [*(info.get("history") or []), entry]
    counts = stats.counts - np.bincount(mask[diff], minlength=256) + np.bincount(new_mask[diff], minlength=256)
    _write_sample(sample, dst, new_mask if changed else None, img, binaries, info, _grown_boxes(boxes, new_mask, diff), counts)
    logger.debug("%s: %s; %s", sample.id, result, "mask and binary masks rewritten" if changed else "mask unchanged")
    return {"status": status, "changed": changed, **result}


#: Voxels per slab of the thresholding loop (its boolean temporaries are this size, cache-resident).
_SLAB_VOXELS = 1 << 18


def _nonzero(a: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.intp], ...]:
    """:func:`numpy.nonzero`, walking a Fortran-ordered array in memory order (10x faster than the default)."""
    if a.flags.f_contiguous and not a.flags.c_contiguous:
        return np.nonzero(a.T)[::-1]
    return np.nonzero(a)


def _grown_boxes(boxes: Boxes, new_mask: npt.NDArray[np.uint8], diff: tuple[npt.NDArray[np.intp], ...]) -> Boxes:
    """Boxes of ``new_mask`` from those of the old mask and the voxels that changed (may be loose, never too small)."""
    out = dict(boxes)
    if diff[0].size == 0:
        return out
    coords = np.column_stack(diff)
    values = new_mask[diff]
    for label in np.unique(values):
        if label == 0:
            continue
        pts = coords[values == label]
        lo, hi = pts.min(axis=0), pts.max(axis=0) + 1
        if int(label) in out:
            old = out[int(label)]
            lo = np.minimum(lo, [b.start for b in old])
            hi = np.maximum(hi, [b.stop for b in old])
        out[int(label)] = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))  # type: ignore[assignment]
    return out


def repair_transform(repair: SliceRepair, filter_halfedge: int, threads: int = 1) -> Transform:
    """Transform for :func:`apply_mask_step`: slice-wise repair (labels in ``threads`` threads) then label fusion."""
    if int(filter_halfedge) < 0:
        raise ValueError(f"filter_halfedge must be >= 0, got {filter_halfedge!r}")
    return _RepairTransform(repair, int(filter_halfedge), int(threads))


def threads_per_sample(workers: int, dask_scheduler: str | None = None) -> int:
    """Threads for the per-label work of one sample: the cores not used by other ``workers`` processes.

    On a Dask cluster (``dask_scheduler``) every worker thread runs one sample: 1 thread.
    """
    if dask_scheduler:
        return 1
    return max(1, (os.cpu_count() or 1) // max(1, workers))


@dataclass(frozen=True)
class _RepairTransform:
    """Picklable (for ``--workers``) closure of :func:`repair_transform`."""

    repair: SliceRepair
    filter_halfedge: int
    threads: int = 1

    def __call__(
        self, sample: SampleDir, img: nib.Nifti1Image, mask: npt.NDArray[np.uint8], boxes: Boxes
    ) -> tuple[npt.NDArray[np.uint8], dict[str, Any], npt.NDArray[np.int64]]:
        changes = repair_changes(mask, img.affine, self.repair, boxes, threads=self.threads)
        fused, n_changed = fuse_label_changes(mask, changes, self.filter_halfedge)
        return fused, {"binary_mask_voxels_changed": len(changes), "voxels_relabelled": n_changed}, changes.coords


def threshold_mask(
    mask: npt.NDArray[np.uint8], volume: npt.NDArray[np.floating], lo: float, hi: float, boxes: Boxes | None = None
) -> tuple[npt.NDArray[np.uint8], int]:
    """Set foreground voxels whose volume value is outside ``[lo, hi]`` to background.

    Parameters
    ----------
    mask : (I, J, K) ndarray of uint8
    volume : (I, J, K) ndarray of float
        Image values on the same grid (HU for CT).
    lo, hi : float
        Inclusive range a foreground voxel's value must lie in; NaN lies outside.
    boxes : dict, optional
        :func:`utils.labels.label_stats.label_boxes` of ``mask`` when already known.

    Returns
    -------
    new_mask : (I, J, K) ndarray of uint8
        Copy of ``mask`` (same memory layout).
    n_removed : int
        Foreground voxels set to 0.

    Raises
    ------
    ValueError
        ``lo > hi`` or shapes differ.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.array([[[1, 1, 2, 0]]], np.uint8)
    >>> v = np.array([[[-500.0, 40.0, 2000.0, 9999.0]]])
    >>> threshold_mask(m, v, -140.0, 1000.0)[0].ravel().tolist()
    [0, 1, 0, 0]
    """
    if not lo <= hi:
        raise ValueError(f"threshold range [{lo}, {hi}] is empty; LO <= HI expected")
    if mask.shape != volume.shape:
        raise ValueError(f"mask shape {mask.shape} differs from volume shape {volume.shape}")
    out, removed = _threshold(mask, volume, lo, hi, boxes)
    return out, len(removed)


def _threshold(
    mask: npt.NDArray[np.uint8], volume: npt.NDArray[np.floating], lo: float, hi: float, boxes: Boxes | None
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """:func:`threshold_mask` returning the (n, 3) indices of the removed voxels.

    The foreground's box is walked in memory order, a slab of ``_SLAB_VOXELS`` at a time, so the boolean
    temporaries stay in cache and none has the size of the volume.
    """
    out = mask.copy(order="K")
    boxes = label_boxes(mask) if boxes is None else boxes
    if not boxes:
        return out, np.zeros((0, 3), np.int64)
    fg_box = tuple(slice(min(b[ax].start for b in boxes.values()), max(b[ax].stop for b in boxes.values())) for ax in range(3))
    fortran = out.flags.f_contiguous and not out.flags.c_contiguous
    sub, vals = out[fg_box], volume[fg_box]
    if fortran:  # element-wise work and nonzero in memory order
        sub, vals = sub.T, vals.T
    per_slab = max(1, _SLAB_VOXELS // max(1, sub.shape[1] * sub.shape[2]))
    found = []
    for start in range(0, sub.shape[0], per_slab):
        sub_slab, vals_slab = sub[start : start + per_slab], vals[start : start + per_slab]
        drop = sub_slab != 0
        inside = vals_slab >= lo  # NaN is outside: both comparisons are False
        inside &= vals_slab <= hi
        drop &= ~inside
        if drop.any():
            idx = np.nonzero(drop)
            sub_slab[idx] = 0
            slab_where = np.column_stack(idx).astype(np.int64)
            slab_where[:, 0] += start
            found.append(slab_where)
    where = np.concatenate(found) if found else np.zeros((0, 3), np.int64)
    if fortran:
        where = where[:, ::-1]
    return out, where + np.array([b.start for b in fg_box], dtype=np.int64)


@dataclass(frozen=True)
class _ThresholdTransform:
    """Picklable (for ``--workers``) closure of :func:`threshold_transform`."""

    lo: float
    hi: float

    def __call__(
        self, sample: SampleDir, img: nib.Nifti1Image, mask: npt.NDArray[np.uint8], boxes: Boxes
    ) -> tuple[npt.NDArray[np.uint8], dict[str, Any], npt.NDArray[np.int64]]:
        if not sample.volume.is_file():
            raise FileNotFoundError(f"{sample.volume}: volume file missing")
        vol_img = load_nifti(sample.volume)
        if not grids_match(mask.shape, img.affine, vol_img.shape, vol_img.affine):
            raise SampleError(
                f"{sample.mask}: grid (shape {mask.shape}) differs from the volume {sample.volume.name} "
                f"(shape {tuple(vol_img.shape)}); masks must be aligned to their volume first"
            )
        new_mask, removed = _threshold(mask, read_volume(vol_img, sample.volume), self.lo, self.hi, boxes)
        return new_mask, {"voxels_set_to_background": len(removed)}, removed


def threshold_transform(lo: float, hi: float) -> Transform:
    """Transform for :func:`apply_mask_step`: :func:`threshold_mask` against the sample's volume."""
    if not lo <= hi:
        raise ValueError(f"threshold range [{lo}, {hi}] is empty; LO <= HI expected")
    return _ThresholdTransform(float(lo), float(hi))


def small_region_rows(sample: SampleDir, root_dir: Path, volume_thresh_mm3: float, connectivity: int) -> list[dict[str, Any]]:
    """Small 3D regions of every foreground label of one sample, as manifest rows.

    Regions are the connected components of ``mask == label`` computed on
    the multi-label mask ``{ID}_mask.nii.gz`` (the binary masks are derived
    from it); background (label 0) is skipped: its components are the
    complement of the foreground. Label names come from the binary mask file
    names.

    Parameters
    ----------
    sample : SampleDir
    root_dir : Path
        Paths in the rows are relative to it.
    volume_thresh_mm3 : float
        Regions strictly smaller are reported.
    connectivity : {6, 18, 26}

    Returns
    -------
    rows : list of dict
        Keys :data:`REPORT_COLUMNS`; ``file`` is the label's binary mask,
        ``mask`` the multi-label mask that was analysed.

    Raises
    ------
    SampleError
        A present foreground label has no binary mask.
    """
    img, mask = read_label_mask(sample.mask)
    recorded = recorded_mask_labels(read_info(sample.info), sample.mask) if sample.info.is_file() else None
    present = [v for v in recorded if v] if recorded is not None else label_stats(mask).foreground_labels
    binaries = sample_binary_masks(sample, present, required=True)
    root = Path(root_dir).resolve()
    mask_rel = sample.mask.resolve().relative_to(root).as_posix()
    per_label = small_regions(mask, img.affine, volume_thresh_mm3, connectivity)
    rows = []
    for label, regions in per_label.items():
        short, path = binaries[label]
        for region in regions:
            rows.append(
                {
                    "ID": sample.id,
                    "file": path.resolve().relative_to(root).as_posix(),
                    "mask": mask_rel,
                    "label_index": label,
                    "label_name": short,
                    **region,
                }
            )
    return rows


# --- command-line plumbing shared by the tools -------------------------------------------------------------------


def add_repair_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of both slice-wise morphology tools (the tutorials' command lines, plus ``--connectivity``, ``--force``)."""
    add_output_args(parser)
    parser.add_argument("--kernel_size", type=int, nargs=2, required=True, metavar=("H", "W"),
                        help="structuring element, voxels along array axes 0 and 1 (VerSe 5 5, ESO 2 2)")
    parser.add_argument("--filter_halfedge", type=int, required=True, metavar="N",
                        help="fusion window (2N+1)x(2N+1) in-slice voxels (tutorials: 3)")
    parser.add_argument("--region_area_thresh", type=float, required=True, metavar="MM2",
                        help="repair in-slice components smaller than this area in mm² (VerSe 2.0, ESO 10)")
    parser.add_argument("--connectivity", type=int, choices=CONNECTIVITY_2D, default=DEFAULT_CONNECTIVITY_2D,
                        help="(addition) in-slice connectivity of components (default %(default)s)")
    return parser  # fmt: skip


def add_output_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--root_dir --output_dir --force``: the options of every tool that rewrites masks."""
    parser.add_argument("--root_dir", type=Path, required=True, help="grouped dataset folder")
    parser.add_argument("--output_dir", type=Path, required=True,
                        help="where to write; equal to --root_dir rewrites in place (atomically per file)")
    parser.add_argument("--force", action="store_true",
                        help="(addition) apply again to samples whose info yaml records this step with the same parameters")
    return parser  # fmt: skip


def repair_step(mode: str, args: argparse.Namespace) -> tuple[dict[str, Any], Transform]:
    """History params and transform of a morphology tool from its parsed options.

    Raises
    ------
    ValueError
        Invalid option values (the message names the option).
    """
    repair = SliceRepair(mode, tuple(args.kernel_size), args.region_area_thresh, args.connectivity)
    params = {
        "kernel_size": list(repair.kernel_size),
        "filter_halfedge": int(args.filter_halfedge),
        "region_area_thresh": repair.region_area_thresh_mm2,
        "connectivity": repair.connectivity,
    }
    return params, repair_transform(repair, args.filter_halfedge, threads_per_sample(args.workers, args.dask_scheduler))


def step_summary(outcomes: list[dict[str, Any]]) -> str:
    """The last log line of a mask-changing tool, e.g. ``applied to 2 samples (1 mask changed: voxels_relabelled 20), 8 already applied``.

    Parameters
    ----------
    outcomes : list of dict
        :func:`apply_mask_step` results of the samples that did not fail.
    """
    applied = [o for o in outcomes if o["status"] == "applied"]
    totals = {k: sum(o[k] for o in applied) for k in (applied[0] if applied else {}) if k not in ("status", "changed")}
    text = f"applied to {plural(len(applied), 'sample')}"
    if applied:
        changed = sum(bool(o["changed"]) for o in applied)
        detail = ", ".join(f"{k} {v}" for k, v in totals.items())
        text += f" ({plural(changed, 'mask')} changed{': ' + detail if detail else ''})" if changed else " (no mask changed)"
    already = sum(o["status"] == "already applied" for o in outcomes)
    if already:
        text += f", {already} already applied with these parameters"
    without = sum(o["status"] == "no mask" for o in outcomes)
    if without:
        text += f", {plural(without, 'sample')} without mask"
    return text


def run_mask_step(
    args: argparse.Namespace, step: str, params: dict[str, Any], transform: Transform
) -> RunReport:
    """The per-sample loop of every mask-changing tool (``args`` from :func:`add_output_args` + common args).

    Raises
    ------
    FileNotFoundError, ValueError
        Bad ``--root_dir`` / ``--output_dir`` (fatal, before any sample).
    """
    destination = Destination.create(args.root_dir, args.output_dir)
    samples = find_samples(destination.root_dir)
    check_not_inside(destination.output_dir, archive_of_dataset(samples), "--output_dir")
    check_output_dir(destination.output_dir, "--output_dir")
    label = STEP_LABELS.get(step, step)
    logger.info("%s in %s, %s; parameters %s", plural(len(samples), "sample"), args.root_dir,
                "rewritten in place" if destination.in_place else f"written to {args.output_dir}", params)  # fmt: skip
    work = functools.partial(apply_mask_step, destination=destination, step=step, params=params, transform=transform, force=args.force)
    report = run_per_sample(samples, work, desc=label, workers=args.workers, key=lambda s: s.id, show_progress=not args.no_pbar,
                            dask_scheduler=args.dask_scheduler, input_dirs=[args.root_dir], output_dirs=[args.output_dir])  # fmt: skip
    logger.info("%s", step_summary(list(report.results.values())))
    return report


def repair_parser(description: str) -> argparse.ArgumentParser:
    """The command line of a slice-wise morphology tool: :func:`add_repair_args` and the common options.

    Parameters
    ----------
    description : str
        The tool's ``--help`` text (its module docstring), shown verbatim.

    Returns
    -------
    parser : argparse.ArgumentParser
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    return add_common_args(add_repair_args(parser))


def repair_main(mode: str, description: str, argv: list[str] | None = None) -> int:
    """The whole ``main`` of ``utils/morphological_{close,open}_on_slice_small_region.py``.

    Parses ``argv`` with :func:`repair_parser`, sets up logging, then runs
    :func:`run_mask_step` with the history step of ``mode``
    (:data:`REPAIR_STEPS`) and the params and transform of :func:`repair_step`.

    Parameters
    ----------
    mode : {'close', 'open'}
        Repair mode; picks the step name recorded in the info yaml's history.
    description : str
        The tool's ``--help`` text.
    argv : list of str, optional
        Command-line arguments; None reads ``sys.argv``.

    Returns
    -------
    exit_code : int
        0 all samples done, 1 some failed, 2 a fatal problem (bad option value,
        missing ``--root_dir``, …) logged in one line.
    """
    args = repair_parser(description).parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    try:
        params, transform = repair_step(mode, args)
        report = run_mask_step(args, REPAIR_STEPS[mode], params, transform)
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    return report.exit_code()
