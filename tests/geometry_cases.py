"""Edge-case NIfTI files and an edge-case VerSe archive for the geometry tests (issue 17).

Headers are built field by field with nibabel and written as raw bytes, so that a file holds
exactly the inconsistency under test (nibabel's ``save`` would repair some of them). The oracle
of the tests is SimpleITK and ``nib.load``: this module shares no code with ``utils.geometry``.
"""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE = (6, 6, 5)
BASE = np.array([[-0.8, 0, 0, 10.0], [0, -0.9, 0, 12.0], [0, 0, 2.5, -40.0], [0, 0, 0, 1]])


def rotation(deg: float, axis: int) -> np.ndarray:
    """(4, 4) rotation by ``deg`` degrees about world axis ``axis``."""
    t = np.radians(deg)
    c, s = np.cos(t), np.sin(t)
    i, j = [k for k in range(3) if k != axis]
    out = np.eye(4)
    out[i, i], out[i, j], out[j, i], out[j, j] = c, -s, s, c
    return out


OBLIQUE = rotation(20.0, 2) @ rotation(7.0, 0) @ BASE
#: Permuted axes (voxel i -> world y, j -> z, k -> x) with a negative determinant: qfac -1 in the qform.
PERMUTED = np.array([[0, 0, -2.5, 30.0], [0.8, 0, 0, -5.0], [0, 0.9, 0, 7.0], [0, 0, 0, 1]])
#: A gantry tilt of ~15 degrees: the slice axis leans along y.
SHEARED = BASE.copy()
SHEARED[1, 2] = 0.67


def header(affine: np.ndarray | None = None, *, dtype=np.int16, shape=SHAPE, qcode: int = 1, scode: int = 1, endian: str = "<") -> nib.Nifti1Header:
    """A header with ``affine`` in sform and qform (codes as given; ``affine`` None: no matrices)."""
    h = nib.Nifti1Header(endianness=endian)
    h.set_data_shape(shape)
    h.set_data_dtype(dtype)
    h.set_xyzt_units("mm", "sec")
    if affine is not None:
        h.set_qform(affine, code=qcode)
        h.set_sform(affine, code=scode)
    return h


def write_header_file(path: Path, h: nib.Nifti1Header, data: np.ndarray) -> Path:
    """Write ``h`` and ``data`` byte for byte (gzip when the name ends with .gz); nothing is fixed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h = h.copy()
    h["vox_offset"] = 352
    body = h.binaryblock + b"\x00" * 4 + np.asarray(data, dtype=h.get_data_dtype()).tobytes(order="F")
    path.write_bytes(gzip.compress(body, mtime=0) if path.name.lower().endswith(".gz") else body)
    return path


def volume_data(dtype=np.int16, seed: int = 0, shape=SHAPE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-200, 300, shape).astype(dtype)


def mask_data(shape=SHAPE) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    m[1:5, 1:4, 1:4] = 1
    m[2:4, 2:3, 2:3] = 2
    return m


# --- the oracle: nibabel and SimpleITK read the file ---------------------------------------------


def sitk_geometry(path: Path) -> dict[str, np.ndarray]:
    """Size, spacing, direction (3x3) and origin as SimpleITK reads the file (LPS)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return {
        "size": np.array(reader.GetSize()[:3]),
        "spacing": np.array(reader.GetSpacing()[:3]),
        "direction": np.array(reader.GetDirection()).reshape(3, 3),
        "origin": np.array(reader.GetOrigin()[:3]),
    }


def nibabel_geometry(path: Path) -> dict[str, np.ndarray]:
    """The same quantities from ``nib.load``'s affine, converted to ITK's LPS convention."""
    img = nib.load(str(path))
    lps = np.diag([-1.0, -1.0, 1.0])
    m = img.affine[:3, :3]
    spacing = np.linalg.norm(m, axis=0)
    return {"size": np.array(img.shape[:3]), "spacing": spacing, "direction": lps @ (m / spacing), "origin": lps @ img.affine[:3, 3]}


def corner_gap_mm(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """Largest distance between the same grid corner placed by two geometries."""
    corners = np.array(list(itertools.product(*[(0, n - 1) for n in a["size"]])), dtype=np.float64).T

    def place(g):
        return (g["direction"] * g["spacing"]) @ corners + g["origin"][:, None]

    return float(np.max(np.linalg.norm(place(a) - place(b), axis=0)))


def reader_gaps(path: Path) -> dict[str, float]:
    """How far nibabel's and SimpleITK's readings of ``path`` are apart, quantity by quantity."""
    s, n = sitk_geometry(path), nibabel_geometry(path)
    return {
        "size": float(np.max(np.abs(s["size"] - n["size"]))),
        "spacing": float(np.max(np.abs(s["spacing"] - n["spacing"]))),
        "direction": float(np.max(np.abs(s["direction"] - n["direction"]))),
        "origin": float(np.max(np.abs(s["origin"] - n["origin"]))),
        "corner_mm": corner_gap_mm(s, n),
    }


# --- the edge-case archive (VerSe layout) -----------------------------------------------------------


def _rel(subject: str, kind: str) -> str:
    if kind == "ct":
        return f"dataset-01training/rawdata/sub-{subject}/sub-{subject}_ct.nii.gz"
    return f"dataset-01training/derivatives/sub-{subject}/sub-{subject}_seg-vert_msk.nii.gz"


def _pair(archive: Path, subject: str, vol_header: nib.Nifti1Header, mask_header: nib.Nifti1Header | None = None, vol=None) -> None:
    write_header_file(archive / _rel(subject, "ct"), vol_header, volume_data(vol_header.get_data_dtype()) if vol is None else vol)
    mh = (mask_header or vol_header).copy()
    mh.set_data_dtype(np.uint8)
    mh.set_slope_inter(1.0, 0.0)
    write_header_file(archive / _rel(subject, "msk"), mh, mask_data())


def _mutated(affine, **fields) -> nib.Nifti1Header:
    h = header(affine)
    for key, value in fields.items():
        h[key] = value
    return h


def sitk_mask_on(volume_path: Path, mask_path: Path) -> Path:
    """A mask written by SimpleITK on the grid SimpleITK reads from ``volume_path`` (as ITK-SNAP would save it)."""
    import SimpleITK as sitk

    vol = sitk.ReadImage(str(volume_path))
    mask = sitk.GetImageFromArray(np.transpose(mask_data(), (2, 1, 0)).copy())  # SimpleITK arrays are (z, y, x)
    mask.CopyInformation(vol)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(mask, str(mask_path))
    return mask_path


#: Problem samples that routine 02 writes (subject -> what is special about it).
WRITTEN = {
    "edge001": "control: oblique volume and mask",
    "edge003": "pixdim differs from the sform (sform only)",
    "edge005": "qform 2 mm from the sform, sform_code 2 (ITK reads the qform)",
    "edge006": "permuted axes with qfac -1",
    "edge007": "big-endian int16",
    "edge008": "scl_slope 2, scl_inter -1024",
    "edge009": "mask written by SimpleITK on an oblique volume",
    "edge010": "int32 values beyond float32's exact range",
    "edge011": "complex64 volume with an all-zero imaginary part",
    "edge012": "spatial unit meter",
    "edge013": "upper-case .NII.GZ names",
    "edge014": "uncompressed .nii",
}
#: Problem samples that routine 02 refuses without an option (subject -> option that lets it through).
NEEDS_OPTION = {"edge002": "--trust_uncoded_geometry", "edge004": "--resample_sheared"}
#: Files that cannot be real: routine 01 lists them in Skipped (subject -> words of the reason).
CANNOT_BE_REAL = {
    "bad001": "zero or negative length axis",
    "bad002": "pixdim[1:4] (voxel size) is (0.8, nan, 2.5)",
    "bad003": "pixdim[1:4] (voxel size) is (0.8, 0, 2.5)",
    "bad004": "sform holds non-finite values",
    "bad005": "sform is singular",
    "bad006": "non-zero imaginary part",
    "bad007": "RGB24 colour data",
    "bad008": "scl_slope 1 with scl_inter nan",
    "bad009": "scl_slope is inf",
    "bad010": "scl_slope 0 with scl_inter 5",
    "bad011": "pixdim[1:4] (voxel size) is (-0.8, 0.9, 2.5)",
}


def make_edge_archive(root: Path) -> Path:
    """``root/archive`` in the VerSe layout holding every edge case above; returns the archive folder."""
    a = root / "archive"
    # written samples
    _pair(a, "edge001", header(OBLIQUE))
    h = header(None)
    h.set_sform(np.diag([0.9, 1.1, 3.0, 1.0]) @ np.eye(4), code=1)
    h["sform_code"], h["qform_code"] = 1, 0
    h["srow_x"][3], h["srow_y"][3], h["srow_z"][3] = 10.0, -20.0, 5.0
    _pair(a, "edge003", h)
    h = header(BASE, qcode=1, scode=2)
    h["srow_x"][3] += 2.0
    _pair(a, "edge005", h)
    _pair(a, "edge006", header(PERMUTED))
    big = header(BASE, endian=">")
    write_header_file(a / _rel("edge007", "ct"), big, volume_data().astype(">i2"))
    write_header_file(a / _rel("edge007", "msk"), header(BASE, dtype=np.uint8), mask_data())
    scaled = header(BASE)
    scaled.set_slope_inter(2.0, -1024.0)
    _pair(a, "edge008", scaled, header(BASE))
    write_header_file(a / _rel("edge009", "ct"), header(OBLIQUE), volume_data())
    sitk_mask_on(a / _rel("edge009", "ct"), a / _rel("edge009", "msk"))
    wide = volume_data(np.int32)
    wide[0, 0, 0], wide[1, 0, 0] = 2**24 + 1, -(2**30) - 3
    _pair(a, "edge010", header(BASE, dtype=np.int32), header(BASE), vol=wide)
    _pair(a, "edge011", header(BASE, dtype=np.complex64), header(BASE), vol=volume_data().astype(np.complex64))
    metres = header(BASE / np.array([[1000.0] * 4] * 3 + [[1.0] * 4]))
    metres.set_xyzt_units("meter", "sec")
    _pair(a, "edge012", metres)
    for kind in ("ct", "msk"):
        rel = _rel("edge013", kind).replace(".nii.gz", ".NII.GZ")
        write_header_file(a / rel, header(BASE, dtype=np.int16 if kind == "ct" else np.uint8), volume_data() if kind == "ct" else mask_data())
        rel = _rel("edge014", kind).replace(".nii.gz", ".nii")
        write_header_file(a / rel, header(BASE, dtype=np.int16 if kind == "ct" else np.uint8), volume_data() if kind == "ct" else mask_data())
    # samples that need an option
    _pair(a, "edge002", header(None))
    sh = header(SHEARED)
    _pair(a, "edge004", sh)
    # cannot be real
    zero = header(BASE, shape=(6, 6, 0))
    write_header_file(a / _rel("bad001", "ct"), zero, np.zeros((6, 6, 0), np.int16))
    write_header_file(a / _rel("bad001", "msk"), header(BASE, dtype=np.uint8), mask_data())
    for subject, pixdim in (("bad002", np.nan), ("bad003", 0.0)):
        h = header(BASE)
        h["pixdim"][2] = pixdim
        _pair(a, subject, h, header(BASE))
    h = header(BASE)
    h["srow_y"][1] = np.nan
    _pair(a, "bad004", h, header(BASE))
    h = header(BASE)
    h["srow_x"][:2], h["srow_y"][:2] = [-0.8, -0.8], [0.0, 0.0]  # axes i and j parallel
    _pair(a, "bad005", h, header(BASE))
    cplx = volume_data().astype(np.complex64)
    cplx[2, 3, 1] += 1j
    _pair(a, "bad006", header(BASE, dtype=np.complex64), header(BASE), vol=cplx)
    rgb = np.zeros(SHAPE, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    h = header(BASE)
    h.set_data_dtype(rgb.dtype)
    _pair(a, "bad007", h, header(BASE), vol=rgb)
    for subject, (slope, inter) in (("bad008", (1.0, np.nan)), ("bad009", (np.inf, 0.0)), ("bad010", (0.0, 5.0))):
        h = header(BASE)
        h["scl_slope"], h["scl_inter"] = slope, inter
        _pair(a, subject, h, header(BASE))
    h = header(BASE)
    h["pixdim"][1] = -0.8
    _pair(a, "bad011", h, header(BASE))
    # things named like scans that are not files
    (a / _rel("bad012", "ct")).parent.mkdir(parents=True, exist_ok=True)
    (a / _rel("bad012", "ct")).symlink_to(a / "nowhere.nii.gz")
    (a / _rel("bad013", "ct")).mkdir(parents=True)
    pair = a / "dataset-01training/rawdata/sub-bad014/sub-bad014_ct"
    pair.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Pair(volume_data(), BASE), str(pair) + ".img")
    return a


#: Paths of the entries that must be listed in Skipped (relative to the archive), with words of the reason.
SKIPPED_ENTRIES: dict[str, str] = {
    _rel("bad012", "ct"): "dangling symbolic link",
    _rel("bad013", "ct"): "a folder named like a NIfTI file",
    "dataset-01training/rawdata/sub-bad014/sub-bad014_ct.hdr": "part of a NIfTI/Analyze pair",
    "dataset-01training/rawdata/sub-bad014/sub-bad014_ct.img": "part of a NIfTI/Analyze pair",
}


def edge_rel(subject: str, kind: str) -> str:
    """Archive-relative path of a sample's volume (``'ct'``) or mask (``'msk'``)."""
    return _rel(subject, kind)


MutateHeader = Callable[[nib.Nifti1Header], None]
