"""How nibabel and ITK turn a NIfTI header into a voxel-to-world map, and whether the two agree.

nibabel is the reader of this toolkit; ITK is the reader of nnU-Net v2 (through
SimpleITK), ITK-SNAP and 3D Slicer. They read the same header fields by different
rules, so one file can put its voxels in two places. This module holds

- :func:`nibabel_view` — nibabel's reading: its header checks fix a copy of the
  raw header (qfac 0 becomes 1, zero or negative pixdim become 1 or their
  absolute value, invalid xform codes become 0), then ``get_best_affine``: the
  sform when ``sform_code > 0``, else the qform when ``qform_code > 0``, else a
  guess (LAS with the origin at the centre of the grid). Units are ignored.
- :func:`itk_view` — ITK's reading (``itkNiftiImageIO.cxx`` on top of
  ``nifti1_io.c``, ITK 5.4), re-implemented from the source: spacing is always
  pixdim (0 or non-finite values become 1) times the unit factor (meter 1000,
  micron 0.001), never the sform's column norms; direction and origin come from
  the sform when it is orthonormal and (qform_code 0, or sform_code 1, or the
  qform is numerically very close to it), else from the qform; a file without
  codes is LPS with the origin at 0; a sheared sform without a qform cannot be
  read at all (unless ``ITK_NIFTI_SFORM_PERMISSIVE`` is set).
- :func:`check_reader_agreement` — both readings, the largest distance between
  the same voxel centre under the two (reached at a grid corner), and the causes
  found in the header as stable codes (:data:`READER_CODES`).

Affines are RAS+ millimetres, as nibabel's: ITK's LPS direction and origin are
converted by negating their first two rows. ``docs/geometry.md`` lists the
rules with the source lines they come from.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from utils.files.aliases import Affine
from utils.files.lazy_import import lazy_import

nib = lazy_import("nibabel")

__all__ = [
    "READER_TOL_MM",
    "OUTPUT_READER_TOL_MM",
    "READER_CODES",
    "ReaderView",
    "ReaderAgreement",
    "nibabel_fixed_header",
    "nibabel_view",
    "itk_view",
    "check_reader_agreement",
    "corner_displacement_mm",
    "output_tolerance_mm",
]

logger = logging.getLogger(__name__)

#: Largest distance (mm) between the two readings of an *input* file's voxel centre still counted as
#: agreement: the project's qform/sform tolerance. Well-formed scanner files differ by ~1e-5 mm (float32
#: header round-off).
READER_TOL_MM = 1e-3

#: What every file this toolkit writes must meet (nibabel and SimpleITK checked in the tests): 1e-4 mm.
OUTPUT_READER_TOL_MM = 1e-4

def output_tolerance_mm(shape: tuple[int, ...], affine: Affine) -> float:
    """Tolerance for a written file: :data:`OUTPUT_READER_TOL_MM`, or float32's resolution over the grid's extent when larger.

    A header stores its matrices in float32 (24 significant bits): over a grid longer than
    ~840 mm the round-off alone (2**-23 of the extent) exceeds 1e-4 mm.
    """
    corners = _corners(shape)[:, :3] @ np.asarray(affine, dtype=np.float64)[:3, :3].T
    extent = float(np.max(np.linalg.norm(corners, axis=1)))  # farthest voxel centre from voxel 0 (mm)
    return max(OUTPUT_READER_TOL_MM, extent * 2.0**-23)


#: Stable codes of header problems that make (or can make) the readers disagree, with their meaning.
READER_CODES: dict[str, str] = {
    "NO_SPATIAL_CODES": "qform_code and sform_code are both 0: the position and orientation of the scan are unknown; "
    "nibabel guesses LAS with the origin at the grid centre, ITK LPS with the origin at voxel 0",
    "INVALID_XFORM_CODE": "a qform_code or sform_code outside the NIfTI codes 0-5: nibabel ignores that matrix, ITK uses it",
    "PIXDIM_SFORM_MISMATCH": "pixdim differs from the sform's column lengths: nibabel takes the spacing from the sform, "
    "ITK from pixdim (ITK warns 'unexpected scales in sform')",
    "SHEARED_SFORM": "the sform's axes are not perpendicular (a gantry-tilted CT, say): nibabel uses it, ITK falls back "
    "to the qform, or cannot read the file when there is none",
    "QFORM_SFORM_MISMATCH": "qform and sform place the voxels differently: nibabel uses the sform, ITK the qform "
    "unless sform_code is 1 (scanner) or the two are numerically very close",
    "QFAC_INVALID": "pixdim[0] (qfac) is not 1 or -1: nibabel reads it as 1, ITK by its sign",
    "SPATIAL_UNITS_NOT_MM": "the spatial unit is meter or micron: ITK scales spacing and origin to mm, nibabel does not",
    "READERS_DISAGREE": "the two readings differ for a reason none of the other codes names",
}

_XFORM_CODES = frozenset(range(6))  # NIfTI: unknown, scanner, aligned, talairach, mni_152, template_other
_UNIT_SCALE = {1: 1000.0, 2: 1.0, 3: 0.001}  # xyz units -> mm (ITK); others (0 unknown) count as mm
_UNIT_NAME = {0: "unknown", 1: "meter", 2: "mm", 3: "micron"}
_LPS = np.diag([-1.0, -1.0, 1.0])  # RAS <-> LPS for direction and origin

# ITK's tolerances (itkNiftiImageIO.cxx, SetImageIOOrientationFromNIfTI)
_ITK_SIMILAR_ELEMENT = 1e-5  # qform_sform_are_similar: 3x3 elements
_ITK_SIMILAR_OFFSET = 1e-7  # qform_sform_are_similar: one-norm of the translation and bottom-row differences
_ITK_SCALE_TOL = 1e-3  # "unexpected scales in sform": |pixdim - column norm|
_ITK_ORTHONORMAL_TOL = 1e-4  # normalised sform times its transpose equals identity within this
_ITK_VERY_SIMILAR = 1e-4  # sform_and_qform_are_very_similar: rotation, spacing, offset


@dataclass(frozen=True)
class ReaderView:
    """One reader's voxel-to-world map of a file.

    Attributes
    ----------
    reader : {'nibabel', 'itk'}
    affine : (4, 4) ndarray of float64 or None
        Voxel index to RAS+ millimetres; None when the reader cannot read the file.
    matrix : str
        Which header fields it came from: ``'sform'``, ``'qform'``, ``'base'`` (nibabel's guess
        without codes), ``'identity'`` (ITK without codes: LPS, origin 0),
        ``'sform_orthogonalised'`` (ITK with ``ITK_NIFTI_SFORM_PERMISSIVE``), ``'none'``.
    note : str
        What the reader says about it (ITK's warning or exception text), empty if nothing.
    """

    reader: str
    affine: Affine | None
    matrix: str
    note: str = ""

    @property
    def spacing(self) -> tuple[float, ...] | None:
        """Voxel size (mm) along the three array axes; None when unreadable."""
        if self.affine is None:
            return None
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def direction(self) -> npt.NDArray[np.float64] | None:
        """(3, 3) unit column vectors of the array axes in RAS+; None when unreadable."""
        if self.affine is None:
            return None
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return self.affine[:3, :3] / np.where(norms == 0, 1.0, norms)

    @property
    def origin(self) -> tuple[float, ...] | None:
        """RAS+ position (mm) of voxel (0, 0, 0); None when unreadable."""
        return None if self.affine is None else tuple(float(v) for v in self.affine[:3, 3])


@dataclass(frozen=True)
class ReaderAgreement:
    """Whether nibabel and ITK place a file's voxels in the same world positions, and why not.

    Attributes
    ----------
    agree : bool
        Every voxel centre within ``tol_mm`` under both readings (both readers can read the file).
    reasons : tuple of str
        Codes of :data:`READER_CODES` found in the header, in that dict's order. A code can be present
        while the readers agree (a qform that differs from the sform is ignored by ITK when
        ``sform_code`` is 1): the header is still one that other readers may read differently.
    displacement_mm : float
        Largest distance between the same voxel centre under the two readings; ``inf`` when a
        reader cannot read the file.
    tol_mm : float
        The tolerance ``agree`` was decided with.
    nibabel, itk : ReaderView
        The two readings.
    numbers : dict
        The header values behind the verdict (plain Python types): ``shape``, ``qform_code``,
        ``sform_code``, ``pixdim`` (mm), ``sform_spacing`` (mm, None without sform), ``qform_sform_mm``
        (None unless both codes are set), ``shear_deg`` (largest angle between two sform axes minus
        90°, None without sform), ``qfac``, ``xyz_units``.
    messages : tuple of str
        One line per reason: the value found and what was expected.
    """

    agree: bool
    reasons: tuple[str, ...]
    displacement_mm: float
    tol_mm: float
    nibabel: ReaderView
    itk: ReaderView
    numbers: dict[str, Any] = field(default_factory=dict)
    messages: tuple[str, ...] = ()

    @property
    def consistent(self) -> bool:
        """True when the readers agree and the header shows no problem at all."""
        return self.agree and not self.reasons

    def summary(self) -> str:
        """One line: the verdict, the distance and every message (``'readers agree'`` when all is well)."""
        if self.consistent:
            return "readers agree"
        if self.agree:
            head = f"readers agree within {self.tol_mm:g} mm"
        elif math.isinf(self.displacement_mm):
            unread = [v.note for v in (self.itk, self.nibabel) if v.affine is None]  # a reader that cannot read says why
            head = f"readers disagree: {unread[0] if unread else 'a reading has non-finite values'}"
        else:
            head = f"readers disagree: the same voxel is up to {self.displacement_mm:.4g} mm apart in nibabel and ITK"
        return "; ".join([head, *self.messages])

    def as_record(self) -> dict[str, Any]:
        """Plain-type dict for an info yaml or JSON: ``readers_agree``, ``reasons``, ``displacement_mm``, ``messages``, ``numbers``."""
        return {
            "readers_agree": bool(self.agree),
            "reasons": list(self.reasons),
            "displacement_mm": None if math.isinf(self.displacement_mm) else _round(self.displacement_mm),
            "itk_matrix": self.itk.matrix,
            "nibabel_matrix": self.nibabel.matrix,
            "messages": list(self.messages),
            "numbers": self.numbers,
        }


class _Collect:
    """Stands in for a logger in nibabel's ``check_fix``: keeps ``(level, message)`` pairs."""

    def __init__(self) -> None:
        self.records: list[tuple[int, str]] = []

    def log(self, level: int, message: str, *args: Any) -> None:
        if level:
            self.records.append((int(level), str(message) % args if args else str(message)))


def nibabel_fixed_header(raw_header, error_level: int = 100):
    """A copy of a raw header with nibabel's header checks applied, as ``nib.load`` would hold it.

    Parameters
    ----------
    raw_header : nibabel.Nifti1Header or Nifti2Header
        Header as stored in the file (parsed with ``check=False``).
    error_level : int
        nibabel problem level at which to raise (40 = nibabel's default: bad datatype, bad magic).

    Returns
    -------
    header : nibabel header
        The fixed copy.
    messages : list of (int, str)
        nibabel's problem level and message for each problem found (its wording, e.g.
        ``'pixdim[0] (qfac) should be 1 (default) or -1; setting qfac to 1'``).

    Raises
    ------
    nibabel.spatialimages.HeaderDataError
        A problem at or above ``error_level``.
    """
    fixed = raw_header.copy()
    collect = _Collect()
    fixed.check_fix(logger=collect, error_level=error_level)
    return fixed, collect.records


def nibabel_view(raw_header, *, fixed=None) -> ReaderView:
    """nibabel's reading of a header: ``get_best_affine`` of the header after nibabel's fixes.

    Parameters
    ----------
    raw_header : nibabel header
        As stored in the file; an already-fixed header (from ``nib.load``) gives the same result.
    fixed : nibabel header, optional
        ``nibabel_fixed_header(raw_header)[0]`` when the caller has it already.
    """
    try:
        if fixed is None:
            fixed, _ = nibabel_fixed_header(raw_header)
        affine = np.asarray(fixed.get_best_affine(), dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - nibabel raises HeaderDataError, ValueError for a bad quaternion
        return ReaderView("nibabel", None, "none", f"nibabel cannot compute the affine ({exc})")
    matrix = "sform" if int(fixed["sform_code"]) != 0 else ("qform" if int(fixed["qform_code"]) != 0 else "base")
    return ReaderView("nibabel", affine, matrix)


def _itk_spacing(raw_header) -> npt.NDArray[np.float64]:
    """pixdim[1..3] as nifti1_io.c keeps them: 0 or non-finite become 1 (negative values are kept)."""
    pixdim = np.asarray(raw_header["pixdim"][1:4], dtype=np.float64)
    return np.where((pixdim == 0) | ~np.isfinite(pixdim), 1.0, pixdim)


def itk_spacing(raw_header) -> tuple[float, float, float]:
    """The voxel size ITK reads from a header, along the array axes (mm): pixdim times the unit factor.

    As ``SimpleITK.ReadImage(...).GetSpacing()`` gives it (and nnU-Net's reader, reversed): pixdim[1..3]
    (0 or non-finite become 1; the sign is kept) times 1000 for meter and 0.001 for micron, in double.

    Parameters
    ----------
    raw_header : nibabel header
        As stored in the file (``img.extra["raw_header"]`` of :func:`utils.files.nifti_io.load_nifti`).
    """
    scale = _UNIT_SCALE.get(int(raw_header["xyzt_units"]) & 0x07, 1.0)
    return tuple(float(v) * scale for v in _itk_spacing(raw_header))  # type: ignore[return-value]


def _quatern_to_mat44(raw_header, d: npt.NDArray[np.float64]) -> Affine:
    """``nifti_quatern_to_mat44``: the qform matrix (NIfTI RAS) from quaternion, offsets, pixdim and qfac.

    b, c, d with b²+c²+d² close to 1 (``a² < 1e-7``) are normalised and a = 0; non-positive grid steps
    count as 1; qfac < 0 flips the third axis.
    """
    b, c, dq = (float(np.float32(raw_header[k])) for k in ("quatern_b", "quatern_c", "quatern_d"))
    a = 1.0 - (b * b + c * c + dq * dq)
    if a < 1e-7:
        norm = math.sqrt(b * b + c * c + dq * dq)
        a, b, c, dq = 0.0, b / norm, c / norm, dq / norm
    else:
        a = math.sqrt(a)
    xd, yd, zd = (float(v) if v > 0 else 1.0 for v in d)
    if float(raw_header["pixdim"][0]) < 0:
        zd = -zd
    out = np.eye(4)
    out[:3, :3] = [
        [(a * a + b * b - c * c - dq * dq) * xd, 2 * (b * c - a * dq) * yd, 2 * (b * dq + a * c) * zd],
        [2 * (b * c + a * dq) * xd, (a * a + c * c - b * b - dq * dq) * yd, 2 * (c * dq - a * b) * zd],
        [2 * (b * dq - a * c) * xd, 2 * (c * dq + a * b) * yd, (a * a + dq * dq - c * c - b * b) * zd],
    ]
    out[:3, 3] = [float(np.float32(raw_header[k])) for k in ("qoffset_x", "qoffset_y", "qoffset_z")]
    return out.astype(np.float32).astype(np.float64)  # mat44 holds float


def _sform(raw_header) -> Affine:
    out = np.eye(4)
    out[:3] = np.asarray([raw_header["srow_x"], raw_header["srow_y"], raw_header["srow_z"]], dtype=np.float64)
    return out


def _normalised_columns(m: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    norms = np.linalg.norm(m, axis=0)
    return m / np.where(norms == 0, 1.0, norms)  # ITK's Normalize leaves a zero vector as it is


def _itk_is_affine(sto: Affine) -> bool:
    """ITK's ``IsAffine``: finite, bottom row (0, 0, 0, 1), and invertible (condition above double eps)."""
    if not np.all(np.isfinite(sto)):
        return False
    if abs(sto[3, 3] - 1.0) + np.abs(sto[3, :3]).sum() > np.finfo(np.float32).eps:
        return False
    sv = np.linalg.svd(sto, compute_uv=False)
    return bool(sv[-1] / sv[0] > np.finfo(np.float64).eps) if sv[0] > 0 else False


def _itk_orthonormal(m: npt.NDArray[np.float64]) -> bool:
    """ITK: columns normalised, ``R @ R.T`` equals identity within 1e-4 element by element."""
    r = _normalised_columns(m)
    return bool(np.all(np.abs(r @ r.T - np.eye(3)) <= _ITK_ORTHONORMAL_TOL))


def _polar(m: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    u, s, vt = np.linalg.svd(m)
    return u @ vt, s


def _itk_very_similar(sto: Affine, qto: Affine) -> bool:
    """ITK's ``sform_and_qform_are_very_similar``: same rotation, singular values and offset within 1e-4.

    ITK compares the left singular vectors of the two 3x3 matrices; their signs and, for equal
    voxel sizes, their directions are not unique, so this model compares the rotations of the
    polar decompositions instead (the same test where ITK's is well defined).
    """
    rs, ss = _polar(sto[:3, :3])
    rq, sq = _polar(qto[:3, :3])
    return bool(
        np.all(np.abs(rs @ rq.T - np.eye(3)) <= _ITK_VERY_SIMILAR)
        and np.all(np.abs(ss - sq) <= _ITK_VERY_SIMILAR)
        and np.all(np.abs(sto[:3, 3] - qto[:3, 3]) <= _ITK_VERY_SIMILAR)
    )


def itk_view(raw_header, *, sform_permissive: bool = False) -> ReaderView:
    """ITK's reading of a header (``NiftiImageIO::SetImageIOOrientationFromNIfTI``, ITK 5.4), in RAS+ mm.

    Parameters
    ----------
    raw_header : nibabel header
        As stored in the file (``check=False``): ITK sees the raw fields, not nibabel's fixes.
    sform_permissive : bool
        Model ``ITK_NIFTI_SFORM_PERMISSIVE=YES`` (off by default since ITK 5.4): a sheared sform is
        replaced by its nearest rotation instead of being passed over.

    Returns
    -------
    ReaderView
        ``affine`` None when ITK raises "ITK only supports orthonormal direction cosines".
    """
    d = _itk_spacing(raw_header)
    scale = _UNIT_SCALE.get(int(raw_header["xyzt_units"]) & 0x07, 1.0)
    spacing = d * scale
    qcode = max(int(raw_header["qform_code"]), 0)
    scode = max(int(raw_header["sform_code"]), 0)
    if qcode == 0 and scode == 0:  # "Analyze75 / NIfTI without qform and sform": identity direction (LPS), origin 0
        affine = np.eye(4)
        affine[:3, :3] = _LPS @ np.diag(spacing)
        return ReaderView("itk", affine, "identity", "no qform or sform: ITK uses LPS axes with the origin at 0")
    qto = _quatern_to_mat44(raw_header, d) if qcode else _diag_qto(d)
    sto = _sform(raw_header) if scode else np.zeros((4, 4))
    similar = bool(
        np.all(np.abs(sto[:3, :3] - qto[:3, :3]) <= _ITK_SIMILAR_ELEMENT)
        and np.abs(sto[:, 3] - qto[:, 3]).sum() <= _ITK_SIMILAR_OFFSET
        and np.abs(sto[3] - qto[3]).sum() <= _ITK_SIMILAR_OFFSET
    )
    prefer_sform, note, matrix = similar, "", None
    if not prefer_sform or scode:
        is_affine = _itk_is_affine(sto)
        decomposable = is_affine and _itk_orthonormal(sto[:3, :3])
        if is_affine and np.any(np.abs(d - np.linalg.norm(sto[:3, :3], axis=0)) > _ITK_SCALE_TOL):
            note = "unexpected scales in sform"
        if decomposable:
            if (qcode == 0 and scode) or scode == 1:  # no qform, or a scanner-anatomical sform
                prefer_sform = True
            elif qcode and scode:
                prefer_sform = _itk_very_similar(sto, qto)
        elif sform_permissive and scode and np.all(np.isfinite(sto)):
            u, s, vt = np.linalg.svd(sto[:3, :3])
            if s.min() > 1e-8:
                matrix = np.eye(4)
                matrix[:3, :3] = u @ vt
                matrix[:3, 3] = sto[:3, 3]
                return _itk_affine(matrix, spacing, scale, "sform_orthogonalised", "non-orthogonal sform")
    if prefer_sform:
        return _itk_affine(sto, spacing, scale, "sform", note)
    if qcode:
        return _itk_affine(qto, spacing, scale, "qform", note)
    return ReaderView("itk", None, "none", "ITK only supports orthonormal direction cosines. No orthonormal definition found!")


def _diag_qto(d: npt.NDArray[np.float64]) -> Affine:
    out = np.eye(4)
    out[:3, :3] = np.diag(d)
    return out


def _itk_affine(matrix: Affine, spacing: npt.NDArray[np.float64], scale: float, name: str, note: str) -> ReaderView:
    """ITK's image geometry from the chosen matrix: direction = its normalised columns, spacing = pixdim, origin = its offset."""
    affine = np.eye(4)
    affine[:3, :3] = _normalised_columns(matrix[:3, :3]) * spacing
    affine[:3, 3] = matrix[:3, 3] * scale
    return ReaderView("itk", affine, name, note)


@functools.lru_cache(maxsize=64)
def _corner_block(shape: tuple[int, ...]) -> npt.NDArray[np.float64]:
    extents = [(0, max(int(n) - 1, 0)) for n in shape]
    out = np.array([[*c, 1.0] for c in itertools.product(*extents)], dtype=np.float64)
    out.flags.writeable = False
    return out


def _corners(shape: tuple[int, ...]) -> npt.NDArray[np.float64]:
    """(8, 4) homogeneous voxel coordinates of the grid's corner voxel centres."""
    return _corner_block(tuple(int(n) for n in shape[:3]))


def corner_displacement_mm(shape: tuple[int, ...], affine_a: Affine | None, affine_b: Affine | None) -> float:
    """Largest distance (mm) between the same voxel centre under two affines (at a grid corner); inf if one is None."""
    if affine_a is None or affine_b is None:
        return math.inf
    diff = (np.asarray(affine_a, dtype=np.float64) - np.asarray(affine_b, dtype=np.float64)) @ _corners(shape).T
    value = float(np.max(np.linalg.norm(diff[:3], axis=0)))
    return value if math.isfinite(value) else math.inf


def _shear_deg(m: npt.NDArray[np.float64]) -> float:
    """Largest deviation from 90 degrees between two columns of a 3x3 matrix."""
    r = _normalised_columns(m)
    worst = 0.0
    for i, j in ((0, 1), (0, 2), (1, 2)):
        cos = float(np.clip(abs(r[:, i] @ r[:, j]), 0.0, 1.0))
        worst = max(worst, 90.0 - math.degrees(math.acos(cos)))
    return worst


def _round(value: float, digits: int = 6) -> float:
    return float(f"{value:.{digits}g}") if math.isfinite(value) else value


def _triple(values) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"


def _header_of(source) -> tuple[Any, tuple[int, ...]]:
    """Raw header and grid shape of a nibabel image (raw header kept by utils.files.nifti_io) or a header."""
    if isinstance(source, (str, Path)):
        raise TypeError(f"a nibabel image or header is needed, not the path {source}: read it with utils.files.nifti_io.load_header")
    if hasattr(source, "header") and hasattr(source, "shape"):
        raw = (getattr(source, "extra", None) or {}).get("raw_header", source.header)
        return raw, tuple(int(n) for n in source.shape[:3])
    return source, tuple(int(n) for n in source.get_data_shape()[:3])


def check_reader_agreement(source, *, tol_mm: float = READER_TOL_MM, sform_permissive: bool = False) -> ReaderAgreement:
    """Whether nibabel and ITK read the same geometry from a NIfTI file, and the causes if not.

    Parameters
    ----------
    source : nibabel image or nibabel header
        An image from :mod:`utils.files.nifti_io` (:func:`~utils.files.nifti_io.load_header` keeps the
        raw header, in ``img.extra``); any
        other nibabel image or header (then nibabel's own fixes may already be applied, e.g. a
        qfac of 0 read by ``nib.load`` is 1 already).
    tol_mm : float
        Largest distance between the two readings of a voxel centre that counts as agreement
        (default :data:`READER_TOL_MM`; outputs are held to :data:`OUTPUT_READER_TOL_MM`).
    sform_permissive : bool
        Model ITK built or run with ``ITK_NIFTI_SFORM_PERMISSIVE``.

    Returns
    -------
    ReaderAgreement

    Examples
    --------
    >>> import nibabel as nib, numpy as np
    >>> hdr = nib.Nifti1Header()
    >>> hdr.set_data_shape((10, 10, 10))
    >>> hdr.set_sform(np.diag([0.9, 1.1, 3.0, 1.0]), code=1)   # pixdim stays 1, 1, 1
    >>> result = check_reader_agreement(hdr)
    >>> result.agree, result.reasons
    (False, ('PIXDIM_SFORM_MISMATCH',))
    >>> round(result.displacement_mm, 2)
    18.04
    """
    raw, shape = _header_of(source)
    try:
        fixed, _ = nibabel_fixed_header(raw)
    except Exception:  # noqa: BLE001 - a header nibabel refuses: judge the raw fields
        fixed = None
    nib_view = nibabel_view(raw, fixed=fixed)
    fixed = raw if fixed is None else fixed
    itk = itk_view(raw, sform_permissive=sform_permissive)
    displacement = corner_displacement_mm(shape, nib_view.affine, itk.affine)
    agree = displacement <= tol_mm
    qcode, scode = int(raw["qform_code"]), int(raw["sform_code"])
    pixdim = _itk_spacing(raw)
    units = int(raw["xyzt_units"]) & 0x07
    qfac = float(raw["pixdim"][0])
    sform = _sform(raw)
    has_sform = scode > 0 and bool(np.all(np.isfinite(sform)))
    numbers: dict[str, Any] = {
        "shape": list(shape),
        "qform_code": qcode,
        "sform_code": scode,
        "pixdim": [_round(float(v)) for v in raw["pixdim"][1:4]],
        "sform_spacing": [_round(float(v)) for v in np.linalg.norm(sform[:3, :3], axis=0)] if has_sform else None,
        "qform_sform_mm": None,
        "shear_deg": _round(_shear_deg(sform[:3, :3])) if has_sform else None,
        "qfac": qfac,
        "xyz_units": _UNIT_NAME.get(units, str(units)),
    }
    found: dict[str, str] = {}
    bad_codes = [f"{name} {code}" for name, code in (("qform_code", qcode), ("sform_code", scode)) if code not in _XFORM_CODES]
    if (int(fixed["qform_code"]) == 0 and int(fixed["sform_code"]) == 0) or (qcode <= 0 and scode <= 0):
        found["NO_SPATIAL_CODES"] = (
            f"qform_code {qcode} and sform_code {scode}: the scan's position and orientation are unknown "
            "(nibabel guesses LAS with the origin at the grid centre, ITK LPS with the origin at voxel 0); a code of 1-5 expected"
        )
    if bad_codes:
        found["INVALID_XFORM_CODE"] = f"{' and '.join(bad_codes)} not a NIfTI code (0-5 expected): nibabel ignores that matrix, ITK uses any code above 0"
    if has_sform:
        sform_spacing = np.linalg.norm(sform[:3, :3], axis=0)
        if np.any(np.abs(pixdim - sform_spacing) > _ITK_SCALE_TOL):
            found["PIXDIM_SFORM_MISMATCH"] = (
                f"pixdim {_triple(raw['pixdim'][1:4])} mm, sform spacing {_triple(sform_spacing)} mm (equal expected): "
                "nibabel takes the spacing from the sform, ITK from pixdim"
            )
        if not _itk_orthonormal(sform[:3, :3]):
            fallback = "the qform" if qcode > 0 else "nothing: ITK cannot read the file"
            found["SHEARED_SFORM"] = (
                f"sform axes {numbers['shear_deg']:.3g}° from perpendicular (perpendicular expected; a gantry tilt?): "
                f"nibabel uses the sheared sform, ITK {fallback}"
            )
    if qcode > 0 and scode > 0:
        try:
            qs = corner_displacement_mm(shape, fixed.get_qform(), fixed.get_sform())
        except Exception:  # noqa: BLE001 - a quaternion nibabel cannot read
            qs = math.inf
        numbers["qform_sform_mm"] = None if math.isinf(qs) else _round(qs)
        if qs > tol_mm:
            itk_uses = "the sform" if itk.matrix.startswith("sform") else "the qform"
            found["QFORM_SFORM_MISMATCH"] = (
                f"qform and sform differ by up to {qs:.4g} mm (equal expected): nibabel uses the sform, ITK {itk_uses} (sform_code {scode})"
            )
    if qcode > 0 and qfac not in (-1.0, 1.0):
        found["QFAC_INVALID"] = f"pixdim[0] (qfac) {qfac:g}, 1 or -1 expected: nibabel reads it as 1, ITK as {-1 if qfac < 0 else 1}"
    if units in (1, 3):
        found["SPATIAL_UNITS_NOT_MM"] = (
            f"spatial unit {_UNIT_NAME[units]} (mm expected): ITK scales spacing and origin by {_UNIT_SCALE[units]:g}, nibabel does not"
        )
    if not agree and not found:
        found["READERS_DISAGREE"] = f"nibabel reads the {nib_view.matrix}, ITK the {itk.matrix}; {nib_view.note or itk.note}".rstrip("; ")
    reasons = tuple(code for code in READER_CODES if code in found)
    return ReaderAgreement(
        agree=bool(agree),
        reasons=reasons,
        displacement_mm=displacement,
        tol_mm=tol_mm,
        nibabel=nib_view,
        itk=itk,
        numbers=numbers,
        messages=tuple(f"{code}: {found[code]}" for code in reasons),
    )
