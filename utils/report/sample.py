"""One sample of the report: read its files, check them, measure its labels, draw its picture.

:func:`report_sample` runs once per sample folder (in a worker process with
``--workers``) and returns a :class:`SampleRecord`: everything the page, the card
and the JSON need, so the main process never reads an image.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from utils.run.cli import SampleError
from utils.labels.label_maps import LabelMap
from utils.report.planes import VIEWS, DisplayAxes, centre_index, display_axes, extract_plane, plane_index
from utils.report.dataset_profile import Window
from utils.report.render import LegendEntry, Panel, compose_picture, write_png
from utils.report.stats import LabelMeasure, measure_labels
from utils.files.sample_info import SampleDir, read_info

__all__ = ["SampleRecord", "SampleJob", "report_sample", "image_path", "sample_key", "plain", "QFORM_WARNING"]

logger = logging.getLogger(__name__)

#: Words of routine 02's info-yaml warning about a qform/sform disagreement.
QFORM_WARNING = "qform and sform disagree"


@dataclass
class SampleRecord:
    """What the report shows about one sample (JSON-ready through :meth:`to_json`).

    Attributes
    ----------
    id : str
        Sample ID (folder name).
    path : str
        Sample folder relative to the report's ``root_dir`` (POSIX).
    group : dict
        The profile's ``group_by`` values from the info yaml.
    error : str or None
        One-line reason when the sample could not be reported; then most other fields are empty.
    shape : list of int
        Volume shape (I, J, K).
    spacing_mm : list of float
        Voxel size along I, J, K.
    orientation : str
        ``orientation_to`` code of the volume affine (``LPS``, ``Oblique(closest to LPS)``).
    voxel_mm3 : float
        Volume of one voxel.
    has_mask : bool
        ``{ID}_mask.nii.gz`` exists.
    voxels : dict
        ``{label: voxel count}`` of the foreground labels present.
    flags : list of [code, text]
        Things to look at (see :func:`report_sample`).
    history : list of str
        Steps recorded in the info yaml, in order.
    image : str or None
        The picture, relative to the output folder (POSIX).
    image_bytes : int
        Its size.
    window : str
        Display window used.
    views : dict
        ``{view name: [x, y, width, height]}`` of each plane in the picture.
    seconds : dict
        ``read`` and ``render`` times.
    """

    id: str
    path: str
    group: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    shape: list[int] = field(default_factory=list)
    spacing_mm: list[float] = field(default_factory=list)
    orientation: str = ""
    voxel_mm3: float = 0.0
    has_mask: bool = False
    voxels: dict[int, int] = field(default_factory=dict)
    flags: list[list[str]] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    image: str | None = None
    image_bytes: int = 0
    window: str = ""
    views: dict[str, list[int]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def volumes_mm3(self) -> dict[int, float]:
        """``{label: mm³}`` (voxel count × voxel volume)."""
        return {lab: n * self.voxel_mm3 for lab, n in self.voxels.items()}

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types; label keys as strings, volumes added in mm³; no timings (re-runs give the same file)."""
        out = asdict(self)
        del out["seconds"]
        out["voxels"] = {str(k): v for k, v in self.voxels.items()}
        out["volumes_mm3"] = {str(k): v for k, v in self.volumes_mm3.items()}
        return out


@dataclass(frozen=True)
class SampleJob:
    """Settings shared by every sample (picklable for ``--workers``).

    Attributes
    ----------
    root_dir, output_dir : Path
        Grouped dataset and report folders.
    group_by : tuple of str
        Info-yaml keys copied to :attr:`SampleRecord.group`.
    window : Window
        Display window.
    label_map : LabelMap or None
        Names for the legend; values missing from it are flagged.
    small_regions : dict
        ``{sample path or ID: number of small regions}`` from the detect tool's manifest.
    panel_px : int
        Picture pixels along the largest physical extent.
    threads : int
        Threads for the label-box scan of one sample.
    """

    root_dir: Path
    output_dir: Path
    group_by: tuple[str, ...]
    window: Window
    label_map: LabelMap | None = None
    small_regions: dict[str, int] = field(default_factory=dict)
    panel_px: int = 256
    threads: int = 1

    def __call__(self, sample: SampleDir) -> SampleRecord:
        return report_sample(sample, self)


def plain(value: Any) -> Any:
    """An info-yaml value as a JSON-safe scalar (dates and other objects as text, NaN as None)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    return str(value)


def sample_key(sample: SampleDir, root_dir: Path) -> str:
    """The sample folder relative to ``root_dir`` (POSIX): unique even when two folders share an ID."""
    try:
        return sample.path.relative_to(root_dir).as_posix()
    except ValueError:
        return sample.path.as_posix()


def image_path(key: str) -> str:
    """Picture of a sample relative to the output folder: ``images/<sample path>.png``."""
    return f"images/{key}.png"


def _flags(info: dict[str, Any], key: str, sample_id: str, job: SampleJob, unknown: list[int], oblique: bool) -> list[list[str]]:
    flags: list[list[str]] = []
    source = info.get("source") if isinstance(info.get("source"), dict) else {}
    alignment = source.get("alignment") if isinstance(source.get("alignment"), dict) else {}
    method = alignment.get("method")
    if method in ("reoriented", "resampled"):
        detail = alignment.get("axis_transform") or ""
        flags.append([method, f"mask {method} onto the volume grid by routine 02" + (f" ({detail})" if detail else "")])
    warnings = [str(w) for w in info.get("warnings") or []]
    qform = [w for w in warnings if QFORM_WARNING in w]
    if qform:
        flags.append(["qform_sform", "; ".join(qform)])
    others = [w for w in warnings if QFORM_WARNING not in w]
    if others:
        flags.append(["warnings", "; ".join(others)])
    if unknown:
        flags.append(["unknown_labels", f"mask values {unknown} are not in the label map"])
    n_small = job.small_regions.get(key, job.small_regions.get(sample_id, 0))
    if n_small:
        flags.append(["small_regions", f"{n_small} small connected regions in the detect tool's manifest"])
    if oblique:
        flags.append(["oblique", "voxel axes are oblique; the views follow the closest patient axes"])
    return flags


def stored_voxels(img: Any) -> np.ndarray:
    """The stored (unscaled) voxel array of a NIfTI image, without a copy for images of :func:`utils.files.nifti_io.load_nifti`.

    ``load_nifti`` decompresses an unscaled file straight into the array the image
    holds, so that array is returned as it is; a scaled image is read through
    nibabel's proxy without applying the scaling.

    Parameters
    ----------
    img : nibabel.Nifti1Image
        A 3D image.

    Returns
    -------
    data : (I, J, K) ndarray
        On-disk dtype (byte order included); slope/intercept not applied.
    """
    proxy = img.dataobj
    if isinstance(proxy, np.ndarray):
        return proxy
    return np.asanyarray(proxy.get_unscaled())


def _scaling(img: Any) -> tuple[float, float]:
    """``(slope, intercept)`` applied to stored values (``(1, 0)`` when unset)."""
    slope, inter = getattr(img.dataobj, "slope", 1.0), getattr(img.dataobj, "inter", 0.0)
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    return slope, inter


def _plane_centre(mask: np.ndarray | None, measure: LabelMeasure | None, axes: DisplayAxes, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Array index the three views pass through: the centre of the labelled region (see :func:`plane_index`)."""
    world_of = {axes.axis[w]: w for w in range(3)}
    box = measure.foreground_box() if measure is not None else None
    if mask is None or box is None:
        return tuple(centre_index(0, n, axes.toward_positive[world_of[a]]) for a, n in enumerate(shape))  # type: ignore[return-value]
    crop = mask[box] != 0  # the foreground's bounding box only
    centre = []
    for a in range(3):
        counts = np.count_nonzero(crop, axis=tuple(b for b in range(3) if b != a))
        centre.append(plane_index(counts, box[a].start, axes.toward_positive[world_of[a]]))
    return tuple(centre)  # type: ignore[return-value]


def report_sample(sample: SampleDir, job: SampleJob) -> SampleRecord:
    """Read one sample, measure its labels and write its picture.

    Flags (``[code, text]``): ``reoriented`` / ``resampled`` (routine 02 moved the mask
    onto the volume grid), ``qform_sform`` (qform/sform disagreement recorded by routine
    02), ``warnings`` (other info-yaml warnings), ``unknown_labels`` (mask values missing
    from the label map), ``small_regions`` (rows of the detect tool's manifest),
    ``oblique``, ``no_mask``, ``empty_mask``.

    Raises
    ------
    ValueError, OSError
        Unreadable info yaml, volume or mask, not 3D, non-integer mask values, or a mask
        on another grid than the volume; the message names the file.
    """
    from utils.geometry.alignment import grid_displacement_mm, grids_match
    from utils.files.nifti_io import load_nifti, read_mask, require_3d
    from utils.geometry.orientation import obliquity_deg, orientation_strings, OBLIQUE_TOL_DEG

    t0 = time.perf_counter()
    key = sample_key(sample, job.root_dir)
    info = read_info(sample.info)
    record = SampleRecord(id=sample.id, path=key, group={k: plain(info.get(k)) for k in job.group_by})
    record.history = [str(h.get("step")) for h in info.get("history") or [] if isinstance(h, dict)]
    if not sample.volume.is_file():
        raise SampleError(f"{sample.volume}: volume file missing")
    vol_img = load_nifti(sample.volume)
    require_3d(vol_img, sample.volume)
    affine = vol_img.affine
    mask = None
    if sample.mask.is_file():
        mask_img = load_nifti(sample.mask)
        if mask_img.get_data_dtype() == np.uint8 and _scaling(mask_img) == (1.0, 0.0) and len(mask_img.shape) == 3:
            mask = stored_voxels(mask_img)  # what read_mask returns, without its copy
        else:
            mask = read_mask(mask_img, sample.mask)
        if not grids_match(mask.shape, mask_img.affine, vol_img.shape, affine):
            if mask.shape == vol_img.shape:
                found = f"the same shape, voxel centres up to {grid_displacement_mm(mask.shape, mask_img.affine, affine):.3g} mm apart"
            else:
                found = f"shape {mask.shape}, volume {tuple(vol_img.shape)}"
            raise SampleError(f"{sample.mask}: grid differs from the volume's ({found}); the mask must lie on the volume grid (run routine 02 again)")
    t_read = time.perf_counter()

    axes = display_axes(affine)
    shape = tuple(int(n) for n in vol_img.shape)
    measure = measure_labels(mask, affine, threads=job.threads) if mask is not None else None
    centre = _plane_centre(mask, measure, axes, shape)

    stored = stored_voxels(vol_img)
    slope, inter = _scaling(vol_img)
    panels = []
    for view in VIEWS:
        image, pixel_mm = extract_plane(stored, axes, view, centre)
        if (slope, inter) != (1.0, 0.0):  # scaling applied to the plane only
            image = image.astype(np.float32) * np.float32(slope) + np.float32(inter)
        labels = extract_plane(mask, axes, view, centre)[0] if mask is not None else None
        panels.append(Panel(view, image, labels, pixel_mm))
    window = job.window.limits(np.concatenate([p.image.ravel() for p in panels]))

    names = {lab.index: lab.short for lab in job.label_map} if job.label_map is not None else {}
    present = sorted(measure.voxels) if measure is not None else []
    unknown = [lab for lab in present if job.label_map is not None and lab not in names]
    legend = [LegendEntry(lab, f"{lab}  {names.get(lab, '?')}") for lab in present]
    orientation = orientation_strings(affine)[1]
    sp = axes.spacing
    title = f"{sample.id}   {orientation}   {sp[0]:.2f} x {sp[1]:.2f} x {sp[2]:.2f} mm   {job.window.describe()}"
    note = "no mask" if mask is None else "mask is empty"
    picture = compose_picture(panels, window, legend, title, panel_px=job.panel_px, note=note)
    record.image = image_path(key)
    record.image_bytes = write_png(job.output_dir / record.image, picture)
    record.views = {name: list(box) for name, box in picture.boxes.items()}

    record.shape = list(shape)
    record.spacing_mm = [float(s) for s in sp]
    record.orientation = orientation
    record.voxel_mm3 = measure.voxel_mm3 if measure is not None else float(abs(np.linalg.det(affine[:3, :3])))
    record.has_mask = mask is not None
    record.voxels = dict(measure.voxels) if measure is not None else {}
    record.window = f"{job.window.describe()}: [{window[0]:.6g}, {window[1]:.6g}]"
    record.flags = _flags(info, key, sample.id, job, unknown, obliquity_deg(affine) > OBLIQUE_TOL_DEG)
    if mask is None:
        record.flags.append(["no_mask", "no mask file"])
    elif not record.voxels:
        record.flags.append(["empty_mask", "the mask has no foreground voxel"])
    t_end = time.perf_counter()
    record.seconds = {"read": round(t_read - t0, 4), "render": round(t_end - t_read, 4)}
    logger.debug("%s: read %.3f s, report work %.3f s, picture %d bytes", key, *record.seconds.values(), record.image_bytes)
    return record
