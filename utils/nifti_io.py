"""Read and write NIfTI ``.nii`` / ``.nii.gz`` files: fast gzip, atomic output, strict checks.

Reading decompresses the whole file in memory with python-isal (same gzip
format as zlib, about 2.4x faster) and verifies the gzip CRC and the data size,
so a truncated download is reported on the file, not deep inside a later step.
Writing serialises the image with nibabel, compresses it with isal (4-5x faster
than nibabel's default zlib writer) and renames it into place atomically.
When isal is not installed, the standard-library gzip module is used.

Volumes are handed out as float32 with the scaling slope/intercept applied;
masks as uint8 after checking that every value is a finite integer in
``[0, 255]`` — never a silent cast.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import numpy.typing as npt

from utils.aliases import Affine, PathLike
from utils.atomic import atomic_path

try:  # python-isal: same format, much faster
    from isal import igzip as _gzip

    GZIP_BACKEND = "isal"
    _GZIP_LEVEL = 2  # isal levels are 0..3; 2 is the library default and fastest here
except ImportError:  # pragma: no cover - exercised only without isal
    _gzip = gzip  # type: ignore[assignment]
    GZIP_BACKEND = "zlib"
    _GZIP_LEVEL = 1  # nibabel's own default level

__all__ = [
    "GZIP_BACKEND",
    "NiftiError",
    "is_nifti_path",
    "load_nifti",
    "load_header",
    "read_volume",
    "read_mask",
    "require_finite",
    "save_nifti",
    "nifti_stem",
]

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii.gz", ".nii")


class NiftiError(ValueError):
    """A NIfTI file that cannot be used; the message names the file and the problem."""


def is_nifti_path(path: PathLike) -> bool:
    """True for visible ``*.nii`` / ``*.nii.gz`` files (temporary ``.name.tmp`` files excluded)."""
    name = Path(path).name
    return not name.startswith(".") and name.endswith(NIFTI_SUFFIXES)


def nifti_stem(path: PathLike) -> str:
    """File name without ``.nii.gz`` / ``.nii``: ``sub-gl003_ct.nii.gz`` -> ``sub-gl003_ct``."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _decompressed_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise NiftiError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    if not raw:
        raise NiftiError(f"{path}: file is empty (0 bytes); a NIfTI image was expected")
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = _gzip.decompress(raw)
        except (OSError, EOFError, zlib.error, ValueError) as exc:
            raise NiftiError(f"{path}: truncated or corrupt gzip stream ({exc})") from exc
    elif path.name.endswith(".gz"):
        raise NiftiError(f"{path}: name ends with .gz but the file is not gzip-compressed")
    return raw


def _image_from_bytes(raw: bytes, path: Path) -> nib.Nifti1Image:
    if len(raw) < 348:
        raise NiftiError(f"{path}: {len(raw)} bytes, too short for a NIfTI header (348 bytes)")
    klass = nib.Nifti2Image if int.from_bytes(raw[:4], "little") == 540 or int.from_bytes(raw[:4], "big") == 540 else nib.Nifti1Image
    try:
        img = klass.from_bytes(raw)
    except Exception as exc:  # nibabel raises several types for a bad header
        raise NiftiError(f"{path}: not a valid NIfTI file ({exc})") from exc
    header = img.header
    offset = int(header["vox_offset"]) or (544 if isinstance(img, nib.Nifti2Image) else 352)  # 0 in memory-made headers
    expected = offset + int(np.prod(img.shape, dtype=np.int64)) * header.get_data_dtype().itemsize
    if len(raw) < expected:
        raise NiftiError(f"{path}: data truncated: {len(raw)} bytes found, {expected} expected for shape {img.shape}")
    return img


def load_nifti(path: PathLike) -> nib.Nifti1Image:
    """Load a whole NIfTI image into memory and check that it is complete.

    Parameters
    ----------
    path : str or Path
        ``.nii`` or ``.nii.gz`` file.

    Returns
    -------
    img : nibabel.Nifti1Image or nibabel.Nifti2Image
        Image whose data are held in memory (no file handle stays open).

    Raises
    ------
    NiftiError
        Unreadable file, corrupt or truncated gzip stream, bad header, or
        fewer data bytes than the header announces.
    """
    path = Path(path)
    return _image_from_bytes(_decompressed_bytes(path), path)


def load_header(path: PathLike) -> nib.Nifti1Image:
    """Load only the header of a NIfTI file (fast; data are not read or checked).

    Raises
    ------
    NiftiError
        The file cannot be opened or its header is not NIfTI.
    """
    path = Path(path)
    try:
        return nib.load(path)
    except Exception as exc:
        raise NiftiError(f"{path}: not a readable NIfTI file ({exc})") from exc


def require_3d(img: nib.Nifti1Image, path: PathLike) -> None:
    """Raise :class:`NiftiError` unless ``img`` is 3D (a trailing singleton 4th axis is not accepted)."""
    if len(img.shape) != 3:
        raise NiftiError(f"{path}: image has shape {tuple(img.shape)}, a 3D image was expected")


def require_finite(data: npt.NDArray, path: PathLike, what: str = "volume") -> None:
    """Raise :class:`NiftiError` when a float array holds NaN or ±Inf (count and first voxel in the message).

    NaN/Inf voxels are refused rather than replaced: any replacement value would
    be a guess, every intensity statistic (mean, percentiles) of the image would
    become NaN, and nnU-Net's dataset integrity check rejects such images.
    """
    if data.dtype.kind != "f" or np.isfinite(data.sum(dtype=np.float64)):  # one pass; a float64 sum of finite float32 values stays finite
        return
    bad = ~np.isfinite(data)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        n_nan = int(np.isnan(data[bad]).sum())
        raise NiftiError(
            f"{path}: {what} holds {int(bad.sum())} non-finite voxels ({n_nan} NaN, {int(bad.sum()) - n_nan} Inf; "
            f"first at voxel {first}); finite values expected"
        )


def read_volume(img: nib.Nifti1Image, path: PathLike) -> npt.NDArray[np.float32]:
    """Voxel values of a 3D image as float32 with scaling slope/intercept applied.

    Parameters
    ----------
    img : nibabel image
        A 3D image (see :func:`require_3d`).
    path : str or Path
        File name, for error messages.

    Returns
    -------
    data : (I, J, K) ndarray of float32
    """
    require_3d(img, path)
    return np.asarray(img.get_fdata(dtype=np.float32), dtype=np.float32)


def read_mask(img: nib.Nifti1Image, path: PathLike) -> npt.NDArray[np.uint8]:
    """Label values of a 3D mask as uint8, refusing anything that is not an integer in [0, 255].

    Float masks (float64 is common in VerSe) are accepted when every value is
    finite and integral; scaling slope/intercept is applied first.

    Parameters
    ----------
    img : nibabel image
        A 3D mask image.
    path : str or Path
        File name, for error messages.

    Returns
    -------
    labels : (I, J, K) ndarray of uint8

    Raises
    ------
    NiftiError
        Not 3D, non-finite or non-integral values, or values outside [0, 255].
    """
    require_3d(img, path)
    data = np.asanyarray(img.dataobj)
    if data.dtype == np.uint8:
        return data  # memory order of the file kept (Fortran): writing it back needs no transpose
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.all():
            raise NiftiError(f"{path}: mask holds {int((~finite).sum())} NaN/inf values; integer labels expected")
        frac = data != np.round(data)
        if frac.any():
            example = float(data[frac].flat[0])
            raise NiftiError(
                f"{path}: mask holds {int(frac.sum())} non-integer values (e.g. {example!r}); integer labels expected"
            )
    elif data.dtype.kind not in "iub":
        raise NiftiError(f"{path}: mask dtype {data.dtype} is not numeric; integer labels expected")
    lo, hi = (data.min(), data.max()) if data.size else (0, 0)
    if lo < 0 or hi > 255:
        raise NiftiError(f"{path}: mask values span [{lo}, {hi}]; labels in [0, 255] expected")
    return data.astype(np.uint8, order="K")


def save_nifti(
    path: PathLike,
    data: npt.NDArray,
    affine: Affine,
    *,
    dtype: npt.DTypeLike,
    template: nib.Nifti1Image | None = None,
    descrip: str | None = None,
) -> None:
    """Write a 3D array as NIfTI-1 atomically, gzip-compressed when ``path`` ends with ``.gz``.

    Parameters
    ----------
    path : str or Path
        Destination ``.nii.gz`` (or ``.nii``).
    data : (I, J, K) ndarray
        Values, already of ``dtype`` (no cast happens here beyond a checked no-op).
    affine : (4, 4) ndarray
        Voxel-to-world matrix written to both sform and qform.
    dtype : dtype
        On-disk data type (float32 for volumes, uint8 for masks).
    template : nibabel image, optional
        Source image whose units and sform/qform codes are kept.
    descrip : str, optional
        Header ``descrip`` (80 bytes max). Defaults to the template's.

    Raises
    ------
    TypeError
        ``data`` is not of ``dtype``: casting is the caller's explicit decision.
    """
    dtype = np.dtype(dtype)
    if data.dtype != dtype:
        raise TypeError(f"{path}: data of dtype {data.dtype} given, {dtype} expected; cast explicitly before saving")
    header = nib.Nifti1Header()
    sform_code, qform_code = 1, 1
    if template is not None:
        units = template.header.get_xyzt_units()
        header.set_xyzt_units(*units)
        sform_code = int(template.header["sform_code"]) or 1
        qform_code = int(template.header["qform_code"]) or sform_code
        if descrip is None:
            descrip = template.header["descrip"].item().decode("latin-1", "replace")
    else:
        header.set_xyzt_units("mm", "sec")
    img = nib.Nifti1Image(data, affine, header)
    img.set_data_dtype(dtype)
    img.set_sform(affine, code=sform_code)
    img.set_qform(affine, code=qform_code)
    img.header.set_slope_inter(1.0, 0.0)
    if descrip:
        img.header["descrip"] = descrip.encode("latin-1", "replace")[:79]
    # Stream header and data through the gzip writer: no in-memory copy of the file. A
    # Fortran-ordered array (as read from NIfTI) is written without a transposing copy.
    # The gzip header carries no file name and mtime 0, so identical images give identical files.
    with atomic_path(path) as tmp, open(tmp, "wb") as raw:
        if str(path).endswith(".gz"):
            with _gzip.GzipFile(filename="", mode="wb", compresslevel=_GZIP_LEVEL, fileobj=raw, mtime=0) as fh:
                img.to_file_map({"image": nib.FileHolder(fileobj=fh)})
        else:
            img.to_file_map({"image": nib.FileHolder(fileobj=raw)})


def header_descrip(img: nib.Nifti1Image) -> str:
    """The header ``descrip`` field as text."""
    return img.header["descrip"].item().decode("latin-1", "replace").strip("\x00 ")
