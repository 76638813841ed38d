"""Hashes that tell whether two files, or two images' voxels, are the same.

:func:`file_sha256` reads the compressed file (no decompression): equal hashes mean equal
files, nothing more to compare. :func:`voxel_digest` hashes what a reader gets out of an image —
the stored data type, shape, scaling and every voxel — and nothing of the header's other fields,
so the same voxels written under another ID, with another description or another gzip level,
hash the same (renamed samples are found this way).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from utils.files.aliases import PathLike

__all__ = ["file_sha256", "voxel_digest"]

#: Bytes read per step while hashing a file.
_CHUNK = 1 << 22


def file_sha256(path: PathLike) -> str:
    """sha256 (hex) of a file's bytes, read in 4 MB steps.

    Raises
    ------
    OSError
        The file cannot be read (the message names it).
    """
    digest = hashlib.sha256()
    buffer = memoryview(bytearray(_CHUNK))
    try:
        with open(Path(path), "rb", buffering=0) as fh:
            while n := fh.readinto(buffer):
                digest.update(buffer[:n])
    except OSError as exc:
        raise OSError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    return digest.hexdigest()


def voxel_digest(img) -> str:
    """sha256 (hex) of an in-memory image's voxels: stored dtype, shape, scaling and data, in file order.

    Parameters
    ----------
    img : nibabel image
        As returned by :func:`utils.files.nifti_io.load_nifti` (data in memory).

    Returns
    -------
    digest : str
        Equal for two images exactly when a reader gets the same voxel values from both
        (byte order normalised; header fields other than dtype, shape and scaling ignored).
    """
    proxy = img.dataobj
    raw = proxy.get_unscaled() if hasattr(proxy, "get_unscaled") else np.asarray(proxy)
    if raw.dtype.byteorder not in ("=", "|"):
        raw = raw.astype(raw.dtype.newbyteorder("="))
    slope, inter = img.header.get_slope_inter()
    digest = hashlib.sha256(f"{raw.dtype.str}|{tuple(raw.shape)}|{slope}|{inter}|".encode())
    digest.update(np.ascontiguousarray(raw.T))  # the transpose of the file's Fortran-order array: no copy
    return digest.hexdigest()
