"""Routine 02's decision for each header problem, and messages that name the cause.

:func:`resolve_file_geometry` takes an archive file read by :mod:`utils.files.nifti_io`
and returns the voxel-to-world matrix routine 02 uses for it, or refuses it:

====================== ===================================================== ===============================
problem (code)         outcome                                               option
====================== ===================================================== ===============================
NO_SPATIAL_CODES       refused: the true geometry is unknown                 ``--trust_uncoded_geometry
                                                                             itk|nibabel`` takes that
                                                                             reader's guess (recorded)
PIXDIM_SFORM_MISMATCH  the sform (it defines the map when sform_code > 0);   —
                       warning
QFORM_SFORM_MISMATCH   the sform, as before; warning                         —
SHEARED_SFORM          refused: no header gives it to both readers           ``--resample_sheared``
                                                                             resamples onto the nearest
                                                                             rigid grid (recorded)
SPATIAL_UNITS_NOT_MM   the sform/qform converted to mm (the NIfTI meaning    —
                       of the unit, as ITK reads it); warning
QFAC_INVALID,          nibabel's reading; warning                            —
INVALID_XFORM_CODE
====================== ===================================================== ===============================

Every output is written with a header both readers read alike (:func:`utils.files.nifti_io.save_nifti`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from utils.files.aliases import Affine, PathLike
from utils.files.nifti_readers import READER_TOL_MM, ReaderAgreement, check_reader_agreement

__all__ = [
    "UNCODED_CHOICES",
    "GeometryOptions",
    "GeometryError",
    "FileGeometry",
    "resolve_file_geometry",
    "explain_mismatch",
]

#: Values of ``--trust_uncoded_geometry``: whose guess to take for a file without spatial codes.
UNCODED_CHOICES = ("itk", "nibabel")

_GUESS = {
    "itk": "LPS axes with the origin at voxel 0 (ITK, so ITK-SNAP, 3D Slicer and nnU-Net)",
    "nibabel": "LAS axes with the origin at the grid centre (nibabel, and routine 01's manifest)",
}
_UNIT_SCALE = {"meter": 1000.0, "micron": 0.001}


class GeometryError(ValueError):
    """An archive file whose geometry routine 02 will not decide alone; the message says why and what to do."""


@dataclass(frozen=True)
class GeometryOptions:
    """Routine 02's explicit choices for header problems (picklable, part of a sample's build record).

    Attributes
    ----------
    trust_uncoded_geometry : {'itk', 'nibabel'} or None
        For a file without spatial codes, take this reader's guess; None refuses such files.
    resample_sheared : bool
        Resample a sheared grid onto its nearest rigid grid instead of refusing it.
    """

    trust_uncoded_geometry: str | None = None
    resample_sheared: bool = False

    def __post_init__(self) -> None:
        if self.trust_uncoded_geometry not in (None, *UNCODED_CHOICES):
            raise ValueError(f"trust_uncoded_geometry {self.trust_uncoded_geometry!r}; one of {UNCODED_CHOICES} or None expected")


@dataclass(frozen=True)
class FileGeometry:
    """The geometry routine 02 uses for one archive file.

    Attributes
    ----------
    affine : (4, 4) ndarray
        Voxel-to-world matrix (RAS+ mm) used for the file.
    agreement : ReaderAgreement
        How nibabel and ITK read the archive file.
    taken_from : str
        ``'sform'``, ``'qform'``, ``'itk guess'``, ``'nibabel guess'`` (files without codes).
    warnings : tuple of str
        One line each, naming the file (go to the info yaml and the log).
    sheared : bool
        The grid is sheared and must be resampled (only with ``resample_sheared``).
    """

    affine: Affine
    agreement: ReaderAgreement
    taken_from: str
    warnings: tuple[str, ...] = ()
    sheared: bool = False

    def record(self) -> dict[str, Any]:
        """The info-yaml record: the reader verdict on the archive file, what was used, and why."""
        return {**self.agreement.as_record(), "taken_from": self.taken_from}


def _codes(agreement: ReaderAgreement) -> str:
    n = agreement.numbers
    return f"qform_code {n.get('qform_code')}, sform_code {n.get('sform_code')}"


def resolve_file_geometry(img, path: PathLike, options: GeometryOptions = GeometryOptions()) -> FileGeometry:
    """The voxel-to-world matrix routine 02 uses for an archive file, or a refusal naming the cause.

    Parameters
    ----------
    img : nibabel image
        Read by :mod:`utils.files.nifti_io` (its raw header in ``img.extra``).
    path : str or Path
        The file, for messages.
    options : GeometryOptions

    Returns
    -------
    FileGeometry

    Raises
    ------
    GeometryError
        No spatial codes without ``trust_uncoded_geometry``; a sheared sform without
        ``resample_sheared``; a file the chosen reader cannot place.
    """
    a = check_reader_agreement(img)
    found = set(a.reasons)
    affine = None if a.nibabel.affine is None else a.nibabel.affine.copy()
    taken_from = a.nibabel.matrix
    warnings: list[str] = []
    far = "" if a.agree else f" ({_apart(a)})"
    if "NO_SPATIAL_CODES" in found:
        if options.trust_uncoded_geometry is None:
            raise GeometryError(
                f"{path}: no spatial codes ({_codes(a)}): the scan's position and orientation are unknown; nibabel would "
                f"guess {_GUESS['nibabel']}, ITK {_GUESS['itk']}{far}; pass --trust_uncoded_geometry itk (e.g. its masks were "
                "drawn in an ITK tool) or --trust_uncoded_geometry nibabel to say which to trust, or write the real geometry into the header"
            )
        view = a.itk if options.trust_uncoded_geometry == "itk" else a.nibabel
        if view.affine is None:
            raise GeometryError(f"{path}: no spatial codes, and {view.reader} cannot place the file either ({view.note})")
        affine, taken_from = view.affine.copy(), f"{options.trust_uncoded_geometry} guess"
        warnings.append(
            f"{path}: no spatial codes ({_codes(a)}); geometry taken as {view.reader} guesses it: "
            f"{_GUESS[options.trust_uncoded_geometry]} (--trust_uncoded_geometry {options.trust_uncoded_geometry})"
        )
    if affine is None:
        raise GeometryError(f"{path}: nibabel cannot place the file ({a.nibabel.note})")
    if "SPATIAL_UNITS_NOT_MM" in found:
        unit = a.numbers["xyz_units"]
        if taken_from != "itk guess":  # ITK's reading is in mm already
            affine = np.diag([_UNIT_SCALE[unit]] * 3 + [1.0]) @ affine
        warnings.append(
            f"{path}: spatial unit {unit}; the {taken_from} was converted to mm (x{_UNIT_SCALE[unit]:g}, as ITK and the NIfTI standard "
            "read it; nibabel ignores units); the output is written in mm"
        )
    if "PIXDIM_SFORM_MISMATCH" in found:
        n = a.numbers
        warnings.append(
            f"{path}: pixdim {_triple(n['pixdim'])} mm disagrees with the sform's spacing {_triple(n['sform_spacing'])} mm; the sform was "
            f"used (it defines the voxel-to-world map when sform_code > 0){_itk_note(a)}; the output header is consistent"
        )
    sheared = "SHEARED_SFORM" in found and taken_from == "sform"
    if "QFORM_SFORM_MISMATCH" in found and not sheared:  # a sheared sform's qform is its unsheared copy: said below
        warnings.append(f"{path}: qform and sform disagree by up to {a.numbers['qform_sform_mm']:.3g} mm; the sform was used{_itk_note(a)}")
    for code in ("QFAC_INVALID", "INVALID_XFORM_CODE", "READERS_DISAGREE"):
        if code in found:
            warnings.append(f"{path}: {_message(a, code)}; nibabel's reading was used{_itk_note(a)}")
    if sheared and not options.resample_sheared:
        itk_reads = f"ITK reads the qform instead, {_apart(a)}" if a.itk.affine is not None else "ITK cannot read it at all"
        raise GeometryError(
            f"{path}: sheared sform (axes {a.numbers['shear_deg']:.3g}° from perpendicular, as a gantry-tilted CT gives; perpendicular "
            f"expected): no NIfTI header gives this grid to nibabel and ITK alike ({itk_reads}); pass --resample_sheared to resample "
            "it onto the nearest rigid grid (volume linear, mask nearest neighbour), or fix the file"
        )
    return FileGeometry(affine, a, taken_from, tuple(warnings), sheared)


def _apart(a: ReaderAgreement) -> str:
    if a.itk.affine is None:
        return "ITK cannot read the file"
    return f"the same voxel up to {a.displacement_mm:.3g} mm apart"


def _itk_note(a: ReaderAgreement) -> str:
    if a.agree:
        return ""
    if a.itk.affine is None:
        return "; ITK cannot read the archive file"
    how = "with pixdim as spacing" if "PIXDIM_SFORM_MISMATCH" in a.reasons and a.itk.matrix == "sform" else f"from its {a.itk.matrix}"
    return f" (ITK reads the archive file {how}: voxels up to {a.displacement_mm:.3g} mm elsewhere)"


def _message(a: ReaderAgreement, code: str) -> str:
    return next((m for m in a.messages if m.startswith(code)), code)


def _triple(values) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"


def explain_mismatch(mask, mask_geometry: FileGeometry, volume_shape: tuple[int, ...], volume_geometry: FileGeometry, tol_voxel: float) -> str:
    """Why a mask that does not match its volume may still belong to it: the other reader's view, or ``''``.

    A mask drawn in an ITK tool (ITK-SNAP, 3D Slicer) on a volume whose header the
    two readers read differently lies on the volume's grid as ITK reads it. The
    grids are compared again with each reader's view of the volume and of the mask;
    the first combination that matches names the cause.

    Parameters
    ----------
    mask : (I', J', K') ndarray
    mask_geometry, volume_geometry : FileGeometry
    volume_shape : tuple of int
    tol_voxel : float
        Grid tolerance (fraction of the smallest volume voxel spacing).

    Returns
    -------
    hint : str
        The cause and what to do (replaces the generic advice of the refusal), or ``''`` when no
        reading makes the grids match.
    """
    from utils.geometry.alignment import AlignmentError, align_mask_to_volume

    def views(geo: FileGeometry) -> list[tuple[str, Affine]]:
        a = geo.agreement
        out = [("used", geo.affine)]
        for view in (a.itk, a.nibabel):
            if view.affine is not None and not np.allclose(view.affine, geo.affine, atol=READER_TOL_MM):
                out.append((view.reader, view.affine))
        return out

    for vol_name, vol_affine in views(volume_geometry):
        for mask_name, mask_affine in views(mask_geometry):
            if vol_name == mask_name == "used":
                continue
            try:
                align_mask_to_volume(mask, mask_affine, volume_shape, vol_affine, tol_voxel=tol_voxel)
            except AlignmentError:
                continue
            return _hint(vol_name, volume_geometry, mask_name, mask_geometry)
    return ""


def _hint(vol_name: str, vol: FileGeometry, mask_name: str, mask: FileGeometry) -> str:
    if vol_name != "used" and mask_name != "used":
        where = f"as {_reader(mask_name)} reads the mask, it lies on the volume's grid as {_reader(vol_name)} reads the volume"
    elif vol_name != "used":
        where = f"it lies on the volume's grid as {_reader(vol_name)} reads the volume"
    else:
        where = f"as {_reader(mask_name)} reads the mask, it lies on the volume's grid"
    causes = [f"the {role}'s header, which nibabel and ITK read differently ({', '.join(geo.agreement.reasons)})"
              for role, name, geo in (("volume", vol_name, vol), ("mask", mask_name, mask)) if name != "used"]  # fmt: skip
    tool = "an ITK" if "itk" in (vol_name, mask_name) else "a nibabel"
    if "NO_SPATIAL_CODES" in vol.agreement.reasons and vol_name in UNCODED_CHOICES:
        advice = f"pass --trust_uncoded_geometry {vol_name}"
    else:
        advice = "decide which of the header's sform, qform and pixdim is right, fix the header and re-run"
    return f"{where}: the cause is {' and '.join(causes)}; it was probably drawn in {tool}-based tool; {advice}"


def _reader(name: str) -> str:
    return {"itk": "ITK", "nibabel": "nibabel"}.get(name, name)
