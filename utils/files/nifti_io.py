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

import contextlib
import gzip
import io
import logging
import warnings
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

from utils.files.aliases import Affine, PathLike
from utils.files.atomic import atomic_path
from utils.files.nifti_readers import check_reader_agreement, nibabel_fixed_header, output_tolerance_mm
from utils.files.nifti_validity import affine_problem, header_refusal
from utils.files.lazy_import import lazy_import

nib = lazy_import("nibabel")

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
    "check_nifti_file",
    "read_volume",
    "volume_values",
    "read_mask",
    "require_finite",
    "save_nifti",
    "nifti_stem",
    "dtype_name",
    "byte_order",
    "real_values",
    "float32_inexact",
    "FLOAT32_EXACT_INT",
    "quiet_nibabel",
    "report_nibabel_messages",
]

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii.gz", ".nii")


class NiftiError(ValueError):
    """A NIfTI file that cannot be used; the message names the file and the problem."""


def is_nifti_path(path: PathLike) -> bool:
    """True for visible ``*.nii`` / ``*.nii.gz`` names in any letter case (``.NII.GZ`` too; temporary ``.name.tmp`` files excluded)."""
    name = Path(path).name
    return not name.startswith(".") and name.lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: PathLike) -> str:
    """File name without ``.nii.gz`` / ``.nii`` (any letter case): ``sub-gl003_ct.nii.gz`` -> ``sub-gl003_ct``."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


#: Bytes per ``readinto`` call while draining a stream to its end (gzip CRC check) or scanning a file.
_CHUNK = 1 << 22


def _open_stream(path: Path):
    """Binary stream of the file's NIfTI bytes: decompressing for gzip, plain otherwise.

    Raises
    ------
    NiftiError
        The file cannot be opened, is empty, or is named ``.gz`` without being gzip-compressed.
    """
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the caller through the returned stream
    except OSError as exc:
        raise NiftiError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    magic = raw.read(2)
    raw.seek(0)
    if not magic:
        raw.close()
        raise NiftiError(f"{path}: file is empty (0 bytes); a NIfTI image was expected")
    if magic == b"\x1f\x8b":
        return _gzip.GzipFile(fileobj=raw, mode="rb"), raw
    if path.name.lower().endswith(".gz"):
        raw.close()
        raise NiftiError(f"{path}: name ends with .gz but the file is not gzip-compressed")
    return raw, raw


def _read_into(stream, view: memoryview, path: Path) -> int:
    """Fill ``view`` from ``stream``; return the number of bytes read (less at end of data)."""
    filled = 0
    try:
        while filled < len(view):
            n = stream.readinto(view[filled:])
            if not n:
                break
            filled += n
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise NiftiError(f"{path}: truncated or corrupt gzip stream ({exc})") from exc
    return filled


def _drain(stream, path: Path, chunk: int = 1 << 16) -> int:
    """Read ``stream`` to its end (this checks the gzip CRC and length); return the bytes read."""
    scratch = memoryview(bytearray(chunk))
    total = 0
    while n := _read_into(stream, scratch, path):
        total += n
    return total


def _read_header(stream, path: Path):
    """Parse the NIfTI-1/2 header (with extensions) at the start of ``stream``.

    The header is parsed as stored (``raw``, what ITK reads) and then checked and fixed by
    nibabel's own rules (``header``, what ``nib.load`` holds); nibabel's messages about it are
    logged once, with the file's name (never printed bare by nibabel's logger), and a header
    that cannot describe a real image is refused (:func:`utils.files.nifti_validity.header_refusal`).

    Returns
    -------
    klass : nibabel image class
    header : nibabel header
        After nibabel's fixes.
    nbytes : int
        Bytes read (header, extensions, padding).
    extra : dict
        ``raw_header`` (the header as stored) and ``nibabel_messages`` (list of str).
    """
    first = bytearray(348)
    got = _read_into(stream, memoryview(first), path)
    if got < 348:
        raise NiftiError(f"{path}: {got} bytes, too short for a NIfTI header (348 bytes)")
    size = int.from_bytes(first[:4], "little")
    if size not in (348, 540):
        size = int.from_bytes(first[:4], "big")
    klass = nib.Nifti2Image if size == 540 else nib.Nifti1Image
    head = bytes(first)
    if size == 540:
        rest = bytearray(540 - 348)
        if _read_into(stream, memoryview(rest), path) < len(rest):
            raise NiftiError(f"{path}: too short for a NIfTI-2 header (540 bytes)")
        head += bytes(rest)
    with quiet_nibabel():
        try:
            raw = klass.header_class(binaryblock=head, check=False)
            # nibabel's checks (bad magic or datatype raise) before anything more is read
            header, problems = nibabel_fixed_header(raw, error_level=40)
        except Exception as exc:  # nibabel raises several types for a bad header
            raise NiftiError(f"{path}: not a valid NIfTI file ({exc})") from exc
        offset = int(raw["vox_offset"]) or (544 if size == 540 else 352)  # 0 in memory-made headers
        if offset > len(head):  # extensions (or padding) before the data
            rest = bytearray(offset - len(head))
            got = _read_into(stream, memoryview(rest), path)
            head += bytes(rest[:got])
            try:
                raw = klass.header_class.from_fileobj(io.BytesIO(head), check=False)
            except Exception as exc:
                raise NiftiError(f"{path}: not a valid NIfTI file ({exc})") from exc
            # the fixes concern the 348/540 header bytes only: keep them, with the extensions just read
            header = klass.header_class(binaryblock=header.binaryblock, endianness=header.endianness, check=False, extensions=raw.extensions)
    messages = [_nibabel_message(level, text) for level, text in problems]
    report_nibabel_messages(path, problems)
    refusal = header_refusal(raw, header)
    if refusal:
        raise NiftiError(f"{path}: {refusal}")
    return klass, header, len(head), {"raw_header": raw, "nibabel_messages": messages}


#: (file, message) pairs already logged by this process: each nibabel message is logged once per file.
_REPORTED: set[tuple[str, str]] = set()


def _nibabel_message(level: int, text: str) -> str:
    return f"nibabel: {text}"


def report_nibabel_messages(path: PathLike, problems: list[tuple[int, str]]) -> None:
    """Log nibabel's header messages for ``path`` through this module's logger, once per file and message.

    nibabel's problem levels map to ours: 30 and above (35 included, which nibabel's own
    logger would print as "Level 35") to WARNING, lower ones to INFO.
    """
    for level, text in problems:
        key = (str(path), text)
        if key in _REPORTED:
            continue
        _REPORTED.add(key)
        logger.log(logging.WARNING if level >= logging.WARNING else logging.INFO, "%s: nibabel: %s", path, text)


@contextlib.contextmanager
def quiet_nibabel():
    """Silence nibabel's global logger (and its warnings) inside the block.

    nibabel logs header problems through ``logging.getLogger('nibabel.global')``,
    which has its own handler writing bare lines to stderr, and repeats them each
    time an image is built from the header. The reader collects them once
    (:func:`report_nibabel_messages`); this keeps the repeats off stderr.
    """
    nib_logger = logging.getLogger("nibabel.global")
    was = nib_logger.disabled
    nib_logger.disabled = True
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"nibabel(\..*)?")
            yield
    finally:
        nib_logger.disabled = was


def _image(klass, dataobj, header, extra: dict):
    """A nibabel image of ``klass`` (its affine nibabel's ``get_best_affine``), built without nibabel's repeated log lines."""
    with quiet_nibabel():
        return klass(dataobj, header.get_best_affine(), header, extra=dict(extra))


def load_nifti(path: PathLike) -> nib.Nifti1Image:
    """Load a whole NIfTI image into memory and check that it is complete.

    The data are decompressed straight into the array that the image holds
    (no intermediate copy of the file), and the stream is read to its end so
    the gzip CRC and length are verified.

    Parameters
    ----------
    path : str or Path
        ``.nii`` or ``.nii.gz`` file.

    Returns
    -------
    img : nibabel.Nifti1Image or nibabel.Nifti2Image
        Image whose data are held in memory (no file handle stays open), in
        the file's (Fortran) order. ``img.dataobj`` behaves as nibabel's: raw
        stored values when the header has no scaling, scaled values otherwise.

    Raises
    ------
    NiftiError
        Unreadable or empty file, corrupt or truncated gzip stream, bad
        header, or fewer data bytes than the header announces.
    """
    path = Path(path)
    stream, raw = _open_stream(path)
    with raw, stream:
        klass, header, offset, extra = _read_header(stream, path)
        shape = header.get_data_shape()
        dtype = header.get_data_dtype()
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        data = np.empty(nbytes, dtype=np.uint8)
        got = _read_into(stream, memoryview(data), path)
        if got < nbytes:
            raise NiftiError(
                f"{path}: data truncated: {offset + got} bytes found, {offset + nbytes} expected for shape {tuple(shape)}"
            )
        _drain(stream, path)
    slope, inter = header.get_slope_inter()
    if (slope, inter) not in ((None, None), (1.0, 0.0)):
        # Scaled data (rare): nibabel's array proxy applies scl_slope/scl_inter exactly as nib.load does.
        proxy = nib.arrayproxy.ArrayProxy(io.BytesIO(data), (shape, dtype, 0, slope, inter))
        return _image(klass, proxy, header, extra)
    return _image(klass, data.view(dtype).reshape(shape, order="F"), header, extra)


def check_nifti_file(path: PathLike) -> nib.Nifti1Image:
    """Read a whole NIfTI file through a small buffer and return a header-only image.

    The integrity read of routine 01: every byte is decompressed (gzip CRC and
    length verified), the data size is compared with the header's and float
    voxels are checked to be finite (as :func:`require_finite`), chunk by
    chunk, but the data are never held in memory, so scanning a large archive
    costs the decompression alone.

    Returns
    -------
    img : nibabel image
        Header, shape, affine and on-disk dtype of the file; its data are not
        loaded (reading them reads the file again).

    Raises
    ------
    NiftiError
        As :func:`load_nifti`, and float voxels that are NaN or ±Inf.
    """
    path = Path(path)
    stream, raw = _open_stream(path)
    with raw, stream:
        _klass, header, offset, _extra = _read_header(stream, path)
        shape, dtype = header.get_data_shape(), header.get_data_dtype()
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        scratch = np.empty(_CHUNK // dtype.itemsize * dtype.itemsize, dtype=np.uint8)
        scan = _DataScan(dtype, scaled=header.get_slope_inter() not in ((None, None), (1.0, 0.0)))
        got = 0
        while n := _read_into(stream, memoryview(scratch), path):
            usable = max(0, min(n, nbytes - got)) // dtype.itemsize
            if usable:
                scan.add(scratch[: usable * dtype.itemsize].view(dtype), got // dtype.itemsize)
            got += n
    if got < nbytes:
        raise NiftiError(
            f"{path}: data truncated: {offset + got} bytes found, {offset + nbytes} expected for shape {tuple(shape)}"
        )
    notes = scan.finish(path, tuple(shape))
    img = load_header(path)
    img.extra["data_notes"] = notes
    return img


#: Largest integer magnitude float32 holds exactly: 2**24 = 16777216.
FLOAT32_EXACT_INT = 1 << 24


class _DataScan:
    """The data checks of :func:`check_nifti_file`, accumulated chunk by chunk (no whole-volume array).

    - float and complex voxels must be finite (NaN/Inf refused);
    - complex data must have an all-zero imaginary part (refused otherwise; noted when accepted);
    - unscaled integers of 4 or 8 bytes that float32 cannot hold exactly (|value| > 2**24 and not on
      float32's grid there) are counted and noted, since routine 02 writes volumes as float32.
    """

    def __init__(self, dtype: np.dtype, *, scaled: bool) -> None:
        self.dtype = dtype
        self.check_int = dtype.kind in "iu" and dtype.itemsize >= 4 and not scaled
        self.bad = self.nan = self.imag = self.inexact = 0
        self.first_bad: int | None = None
        self.first_imag: int | None = None
        self.largest = 0
        self.max_error = 0

    def add(self, values: npt.NDArray, start: int) -> None:
        """Check one chunk of voxel values whose first voxel has flat (Fortran) index ``start``."""
        kind = self.dtype.kind
        if kind in "fc" and not np.isfinite(values.sum(dtype=np.complex128 if kind == "c" else np.float64)):
            nonfinite = ~np.isfinite(values)
            if nonfinite.any():
                if self.first_bad is None:
                    self.first_bad = start + int(np.argmax(nonfinite))
                self.bad += int(np.count_nonzero(nonfinite))
                self.nan += int(np.count_nonzero(np.isnan(values)))
        if kind == "c":
            nonzero = values.imag != 0
            if nonzero.any():
                if self.first_imag is None:
                    self.first_imag = start + int(np.argmax(nonzero))
                self.imag += int(np.count_nonzero(nonzero))
        if self.check_int:
            lo, hi = int(values.min()), int(values.max())
            if max(abs(lo), abs(hi)) > FLOAT32_EXACT_INT:
                count, largest, error = float32_inexact(values)
                self.inexact += count
                self.largest = max(self.largest, largest)
                self.max_error = max(self.max_error, error)

    def finish(self, path: Path, shape: tuple[int, ...]) -> list[str]:
        """Raise for refused data; return the notes (one line each, coded) for data that is accepted."""
        if self.bad:
            voxel = tuple(int(i) for i in np.unravel_index(self.first_bad, shape, order="F"))
            raise NiftiError(_nonfinite_message(path, "image", self.bad, self.nan, voxel))
        if self.imag:
            voxel = tuple(int(i) for i in np.unravel_index(self.first_imag, shape, order="F"))
            raise NiftiError(_complex_message(path, self.dtype, self.imag, voxel))
        notes = []
        if self.dtype.kind == "c":
            notes.append(f"COMPLEX_DATA: {dtype_name(self.dtype)} voxels with an all-zero imaginary part: the real part is used")
        if self.inexact:
            notes.append(_inexact_note(self.dtype, self.inexact, self.largest, self.max_error))
        return notes


def float32_inexact(values: npt.NDArray) -> tuple[int, int, int]:
    """Integer voxels that change when written as float32: ``(count, largest |value|, largest change)``.

    Integers up to 2**24 in magnitude are exact in float32; above, float32 keeps 24
    significant bits, so a value can move by up to half its spacing (8 at 2**28, 128 at 2**32).

    Parameters
    ----------
    values : ndarray of integers
        Any shape; walked slab by slab when large.
    """
    count = largest = error = 0
    flat = values.ravel(order="K")
    for start in range(0, flat.size, 1 << 22):
        chunk = flat[start : start + (1 << 22)].astype(np.int64, copy=False)
        big = np.abs(chunk) > FLOAT32_EXACT_INT
        if not big.any():
            continue
        wide = chunk[big]
        moved = np.abs(wide.astype(np.float32).astype(np.float64) - wide.astype(np.float64))
        changed = moved > 0
        count += int(np.count_nonzero(changed))
        largest = max(largest, int(np.abs(wide).max()))
        if changed.any():
            error = max(error, int(moved.max()))
    return count, largest, error


def _inexact_note(dtype: np.dtype, count: int, largest: int, error: int) -> str:
    return (
        f"INT_BEYOND_FLOAT32: {count} {dtype_name(dtype)} voxels hold values float32 cannot represent exactly "
        f"(|value| > 2^24 = {FLOAT32_EXACT_INT}; largest |value| {largest}): written as float32 they change by up to {error}"
    )


def _complex_message(path: PathLike, dtype: np.dtype, count: int, first: tuple[int, ...]) -> str:
    return (
        f"{path}: {dtype_name(dtype)} (complex) data with {count} voxels of non-zero imaginary part (first at voxel {first}); "
        "a real-valued image expected (a complex image with an all-zero imaginary part is accepted)"
    )


def dtype_name(dtype: npt.DTypeLike) -> str:
    """The data type's name without byte order: ``'int16'`` for both ``<i2`` and ``>i2``.

    Manifests spell a type one way whatever the file's byte order (kept apart by :func:`byte_order`).
    """
    dt = np.dtype(dtype)
    return dt.name if dt.fields is None else str(dt)


def byte_order(dtype: npt.DTypeLike) -> str:
    """``'little'``, ``'big'`` or ``'none'`` (one-byte types) for a file's data type."""
    dt = np.dtype(dtype)
    if dt.byteorder == "|" or dt.itemsize == 1:
        return "none"
    if dt.byteorder == "=":
        return "little" if np.little_endian else "big"
    return "little" if dt.byteorder == "<" else "big"


def real_values(data: npt.NDArray, path: PathLike, what: str = "volume") -> npt.NDArray:
    """The real part of complex voxel values whose imaginary part is all zero; refuse any other complex data.

    Non-complex arrays are returned as they are.

    Raises
    ------
    NiftiError
        Some voxel has a non-zero imaginary part (count and first voxel in the message).
    """
    if data.dtype.kind != "c":
        return data
    nonzero = data.imag != 0
    if nonzero.any():
        first = tuple(int(i) for i in np.argwhere(nonzero)[0])
        raise NiftiError(_complex_message(path, data.dtype, int(nonzero.sum()), first).replace("(complex) data", f"(complex) {what}"))
    return np.ascontiguousarray(data.real) if data.flags.c_contiguous else np.asfortranarray(data.real)


def load_header(path: PathLike) -> nib.Nifti1Image:
    """Load only the header of a NIfTI file (fast; data are not read or checked).

    Reads the first few hundred bytes (decompressing them when gzipped) and
    parses them with nibabel; the image's data stay on disk behind nibabel's
    array proxy, read only if asked for.

    Raises
    ------
    NiftiError
        The file cannot be opened, is empty, or its header is not NIfTI.
    """
    path = Path(path)
    stream, raw = _open_stream(path)
    with raw, stream:
        klass, header, _, extra = _read_header(stream, path)
    return _image(klass, nib.arrayproxy.ArrayProxy(str(path), header.copy()), header, extra)


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
        raise NiftiError(_nonfinite_message(path, what, int(bad.sum()), int(np.isnan(data[bad]).sum()), first))


def _nonfinite_message(path: PathLike, what: str, bad: int, nan: int, first: tuple[int, ...]) -> str:
    return f"{path}: {what} holds {bad} non-finite voxels ({nan} NaN, {bad - nan} Inf; first at voxel {first}); finite values expected"


def read_volume(img: nib.Nifti1Image, path: PathLike) -> npt.NDArray[np.float32]:
    """Voxel values of a 3D image as float32 with scaling slope/intercept applied.

    A float32 file without scaling is handed out as it was read (no copy);
    anything else is converted once, in the file's memory order.

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
    if img.get_data_dtype().kind == "c":  # accepted only with an all-zero imaginary part
        return real_values(np.asanyarray(img.dataobj), path).astype(np.float32)
    return np.asarray(img.get_fdata(dtype=np.float32, caching="unchanged"), dtype=np.float32)


def volume_values(img: nib.Nifti1Image, path: PathLike) -> npt.NDArray:
    """Voxel values of a 3D image, ready to be written as float32 by :func:`save_nifti`.

    The stored array itself (no copy) when it has no scaling and every value
    is exactly a float32 (int8/16, uint8/16, float32 files): :func:`save_nifti`
    then converts it slab by slab while writing, so no whole float32 copy is
    ever made. Otherwise (scaled data, int32, float64 …) the float32 array of
    :func:`read_volume`.

    Returns
    -------
    data : (I, J, K) ndarray
        Values equal to :func:`read_volume`'s, in a dtype that casts safely to float32.
    """
    require_3d(img, path)
    stored = img.dataobj
    if isinstance(stored, np.ndarray) and np.can_cast(stored.dtype, np.float32, casting="safe"):
        return stored
    return read_volume(img, path)


def memory_slabs(shape: tuple[int, ...], order: str, voxels: int = 1 << 22) -> list[tuple[slice, ...]]:
    """Slabs along the slowest-varying axis of an array of ``shape`` and memory ``order`` ('F' or 'C').

    Walking a large array slab by slab keeps temporaries small (a few MB) and
    reads memory in order.

    Returns
    -------
    slabs : list of tuple of slice
        Index tuples covering the array once, each of about ``voxels`` elements.
    """
    axis = len(shape) - 1 if order == "F" else 0
    per = max(1, int(np.prod(shape, dtype=np.int64)) // max(shape[axis], 1))
    step = max(1, voxels // per)
    return [
        tuple(slice(start, min(start + step, shape[axis])) if ax == axis else slice(None) for ax in range(len(shape)))
        for start in range(0, shape[axis], step)
    ]


def _array_order(data: np.ndarray) -> str:
    return "F" if data.flags.f_contiguous and not data.flags.c_contiguous else "C"


def read_mask(img: nib.Nifti1Image, path: PathLike) -> npt.NDArray[np.uint8]:
    """Label values of a 3D mask as uint8, refusing anything that is not an integer in [0, 255].

    Float masks (float64 is common in VerSe) are accepted when every value is
    finite and integral; scaling slope/intercept is applied first. The check
    and the conversion run slab by slab, so no whole-volume temporary is made.

    Parameters
    ----------
    img : nibabel image
        A 3D mask image.
    path : str or Path
        File name, for error messages.

    Returns
    -------
    labels : (I, J, K) ndarray of uint8
        In the file's memory order (Fortran); a uint8 file is handed out as read (no copy).

    Raises
    ------
    NiftiError
        Not 3D, non-finite or non-integral values, or values outside [0, 255].
    """
    require_3d(img, path)
    data = real_values(np.asanyarray(img.dataobj), path, "mask")
    if data.dtype == np.uint8:
        return data  # memory order of the file kept (Fortran): writing it back needs no transpose
    if data.dtype.kind not in "iubf":
        raise NiftiError(f"{path}: mask dtype {data.dtype} is not numeric; integer labels expected")
    order = _array_order(data)
    out = np.empty(data.shape, dtype=np.uint8, order=order)
    for slab in memory_slabs(data.shape, order):
        chunk = data[slab]
        if chunk.dtype.kind == "f":
            if not np.isfinite(chunk).all():
                bad = int(np.count_nonzero(~np.isfinite(data)))
                raise NiftiError(f"{path}: mask holds {bad} NaN/inf values; integer labels expected")
            frac = chunk != np.rint(chunk)
            if frac.any():
                count = int(sum(np.count_nonzero(data[s] != np.rint(data[s])) for s in memory_slabs(data.shape, order)))
                raise NiftiError(
                    f"{path}: mask holds {count} non-integer values (e.g. {float(chunk[frac].flat[0])!r}); integer labels expected"
                )
        if chunk.size and (chunk.min() < 0 or chunk.max() > 255):
            lo, hi = data.min(), data.max()
            raise NiftiError(f"{path}: mask values span [{lo}, {hi}]; labels in [0, 255] expected")
        out[slab] = chunk
    return out


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
        Values of ``dtype``, or of a dtype that casts to it without changing any value
        (``np.can_cast(..., casting="safe")``: int16 to float32, say); that cast is
        done slab by slab while writing, never on the whole array.
    affine : (4, 4) ndarray
        Voxel-to-world matrix (RAS+ mm) written to both sform and qform; its axes must be
        perpendicular (a sheared grid has no qform, see ``utils.geometry.rigid``).
    dtype : dtype
        On-disk data type (float32 for volumes, uint8 for masks).
    template : nibabel image, optional
        Source image whose sform/qform codes and time unit are kept; the spatial unit is
        written ``mm`` (the affine's unit) unless the template's is ``mm`` or unknown.
    descrip : str, optional
        Header ``descrip`` (80 bytes max). Defaults to the template's.

    Notes
    -----
    The header is one every reader reads alike: sform and qform both set (code of the
    template, 1 when it has none) and equal, pixdim equal to the affine's column lengths,
    qfac the sign of its determinant, no scaling. Before anything is written it is read
    back by the models of nibabel and ITK (:func:`utils.files.nifti_readers.check_reader_agreement`):
    they must agree within :func:`utils.files.nifti_readers.output_tolerance_mm` (1e-4 mm).

    Raises
    ------
    TypeError
        ``data`` would lose values as ``dtype``: such a cast is the caller's explicit decision.
    NiftiError
        ``affine`` is not finite, is singular or sheared: no header gives it to every reader.
    """
    dtype = np.dtype(dtype)
    if data.dtype != dtype and not np.can_cast(data.dtype, dtype, casting="safe"):
        raise TypeError(f"{path}: data of dtype {data.dtype} given, {dtype} expected; cast explicitly before saving")
    affine = np.asarray(affine, dtype=np.float64)
    problem = affine_problem("affine", affine)
    if problem:
        raise NiftiError(f"{path}: cannot be written: {problem}")
    header = nib.Nifti1Header()
    sform_code, qform_code = 1, 1
    if template is not None:
        space, time = template.header.get_xyzt_units()
        header.set_xyzt_units(space if space in ("mm", "unknown") else "mm", time)
        sform_code = int(template.header["sform_code"]) or 1
        qform_code = int(template.header["qform_code"]) or sform_code
        if descrip is None:
            descrip = template.header["descrip"].item().decode("latin-1", "replace")
    else:
        header.set_xyzt_units("mm", "sec")
    with quiet_nibabel():
        img = nib.Nifti1Image(data, affine, header)
    img.set_data_dtype(dtype)
    img.set_sform(affine, code=sform_code)
    img.set_qform(affine, code=qform_code)
    img.header.set_slope_inter(1.0, 0.0)
    if descrip:
        img.header["descrip"] = descrip.encode("latin-1", "replace")[:79]
    problem = _written_header_problem(img)
    if problem:
        raise NiftiError(f"{path}: cannot be written with a header that nibabel and ITK read alike: {problem}")
    with atomic_path(path) as tmp, open(tmp, "wb") as raw:
        if str(path).endswith(".gz"):
            # The gzip header carries no file name and mtime 0, so identical images give identical files.
            with _gzip.GzipFile(filename="", mode="wb", compresslevel=_GZIP_LEVEL, fileobj=raw, mtime=0) as fh:
                _write_image(fh, img, data, dtype)
        else:
            _write_image(raw, img, data, dtype)


#: Header bytes already verified by :func:`_written_header_problem` in this process (a sample's binary
#: masks share one header): bounded, cleared when full.
_VERIFIED: set[bytes] = set()


def _written_header_problem(img: nib.Nifti1Image) -> str | None:
    """Why nibabel and ITK would read the header about to be written differently, or None (memoised per header)."""
    img.update_header()
    key = img.header.binaryblock
    if key in _VERIFIED:
        return None
    written = check_reader_agreement(img.header, tol_mm=output_tolerance_mm(img.shape, img.header.get_best_affine()))
    if not written.consistent:
        return written.summary()
    if len(_VERIFIED) >= 256:
        _VERIFIED.clear()
    _VERIFIED.add(key)
    return None


def _write_image(fh, img: nib.Nifti1Image, data: npt.NDArray, dtype: np.dtype) -> None:
    """Stream header and voxels to ``fh``, slab by slab in Fortran order: no copy of the file or the volume.

    The header is nibabel's, byte for byte as ``to_file_map`` writes it; each slab of
    the slowest file axis is written from the array's own memory when it is Fortran-ordered
    and of ``dtype``, else cast or reordered one slab at a time.
    """
    img.update_header()
    header = img.header
    head = io.BytesIO()
    header.write_to(head)  # the 348-byte header and the extension block
    fh.write(head.getvalue().ljust(int(header.get_data_offset()), b"\x00"))
    ordered = data.T  # file order (Fortran) as a C-ordered view when ``data`` is Fortran-ordered
    out = np.dtype(dtype).newbyteorder(header.endianness)
    for slab in memory_slabs(ordered.shape, "C"):
        chunk = ordered[slab]
        if chunk.dtype != out or not chunk.flags.c_contiguous:
            chunk = np.ascontiguousarray(chunk, dtype=out)
        fh.write(memoryview(chunk).cast("B"))


def header_descrip(img: nib.Nifti1Image) -> str:
    """The header ``descrip`` field as text."""
    return img.header["descrip"].item().decode("latin-1", "replace").strip("\x00 ")
