"""A scan in its canonical orientation: the exact-duplicate key and the near-duplicate signature.

**Canonical orientation.** The array is viewed with its axes permuted and flipped so that
they run along +R, +A, +S (nibabel's ``io_orientation`` of the affine: the closest patient
axes, also for an oblique grid). That is a view, never a copy. The same scan stored
LPS, RAS or PIR, with any axis flipped, gives the same canonical array.

**Exact-duplicate key** (:func:`voxel_key`): the CRC-32 (python-isal, ~20 GB/s) of every voxel
as float32 in canonical Fortran order, computed slab by slab, combined with the SHA-256 of
the canonical shape and of a regular sub-grid of the voxels (:func:`canonical_subgrid`).
Two different scans share the key only if they agree on every voxel of the sub-grid and
their CRC-32 over all voxels collide (2⁻³² for unrelated data); a cryptographic hash of
every byte would cost 3–4× the decompression of the file.

**Near-duplicate signature** (:func:`signature`), compared in memory between all samples of the
same canonical shape (:func:`correlations`):

- ``thumbnail``: block means of the sub-grid on at most 16×16×16 blocks (coarse content);
- ``residual``: at a fixed lattice of at most 16×16×16 voxels, the voxel minus the median of its
  3×3×3 neighbourhood — the scan's own noise and fine structure (the median keeps edges). Two scans of different patients
  (or two synthetic phantoms of identical anatomy with their own noise) have uncorrelated
  residuals; a copy with noise added, re-saved with rounding or rescaled keeps them.
  Only lattice points whose residual is noise-like (within 2.5 robust standard deviations) are
  compared, pair by pair over the points both keep: edges, even of moderate contrast, would make
  the residuals of similar anatomy correlate by themselves.
"""

from __future__ import annotations

import hashlib
import itertools
import math

import numpy as np
import numpy.typing as npt

from utils.files.aliases import Affine
from utils.files.lazy_import import lazy_import

nib = lazy_import("nibabel")

try:  # python-isal: CRC-32 at memory speed
    from isal.isal_zlib import crc32 as _crc32
except ImportError:  # pragma: no cover - exercised only without isal
    from zlib import crc32 as _crc32

__all__ = [
    "SUBGRID_VOXELS",
    "LATTICE",
    "Canonical",
    "canonical",
    "canonical_subgrid",
    "voxel_key",
    "scan_canonical",
    "thumbnail",
    "residuals",
    "normalised",
    "noise_part",
    "correlations",
    "masked_correlations",
]

#: Voxels of the regular sub-grid used for whole-volume percentiles, the thumbnail and the key (at least this many: percentiles within ~0.1 percentile rank).
SUBGRID_VOXELS = 1 << 20

#: Points per canonical axis of the thumbnail and of the residual lattice (at most).
LATTICE = 16

#: Canonical-order voxels per CRC slab (bounded temporary when the storage is not canonical).
_SLAB_VOXELS = 1 << 22

#: Residuals beyond this many robust standard deviations are edges (structure), not noise.
NOISE_SIGMAS = 2.5


class Canonical:
    """The (R, A, S) view of a stored 3D array and the map between the two index spaces.

    Parameters
    ----------
    data : (I, J, K) ndarray
        Stored array (any dtype, any memory order).
    affine : (4, 4) ndarray
        Its voxel-to-world matrix.

    Attributes
    ----------
    view : ndarray
        ``data`` viewed along +R, +A, +S (no copy).
    perm : tuple of int
        ``perm[w]``: the stored axis that runs along world axis ``w``.
    flips : tuple of bool
        ``flips[w]``: that stored axis runs towards -R / -A / -S.
    """

    def __init__(self, data: npt.NDArray, affine: Affine) -> None:
        ornt = nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64))
        perm = [0, 0, 0]
        flips = [False, False, False]
        for axis, (world, sign) in enumerate(ornt):
            perm[int(world)] = axis
            flips[int(world)] = bool(sign < 0)
        view = np.transpose(data, perm)
        view = view[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]
        self.view = view
        self.perm = tuple(perm)
        self.flips = tuple(flips)
        self.shape = tuple(int(n) for n in view.shape)

    def stored_index(self, canonical_index: list[npt.NDArray[np.intp]]) -> tuple[npt.NDArray[np.intp], ...]:
        """Stored-array indices of canonical indices ``[r, a, s]`` (arrays broadcast together)."""
        out: list = [None, None, None]
        for w in range(3):
            idx = canonical_index[w]
            out[self.perm[w]] = (self.shape[w] - 1 - idx) if self.flips[w] else idx
        return tuple(out)


def canonical(data: npt.NDArray, affine: Affine) -> Canonical:
    """:class:`Canonical` view of ``data``."""
    return Canonical(data, affine)


def subgrid_step(shape: tuple[int, ...], voxels: int = SUBGRID_VOXELS) -> int:
    """Step along every axis so that the regular sub-grid keeps at least ``voxels`` voxels (1 for small images)."""
    total = math.prod(shape)
    step = max(1, math.ceil((total / voxels) ** (1.0 / 3.0)) + 1)
    while step > 1 and math.prod(-(-n // step) for n in shape) < voxels:
        step -= 1
    return step


def canonical_subgrid(can: Canonical, voxels: int = SUBGRID_VOXELS) -> tuple[npt.NDArray, int]:
    """Every ``step``-th voxel along each canonical axis, as a contiguous float32 array.

    Returns
    -------
    sub : (R', A', S') ndarray of float32
    step : int
    """
    step = subgrid_step(can.shape, voxels)
    sub = can.view[::step, ::step, ::step]
    return np.ascontiguousarray(sub, dtype=np.float32), step


def voxel_key(can: Canonical, sub: npt.NDArray) -> str:
    """Exact-duplicate key of a volume: see the module docstring (:func:`scan_canonical` without the range)."""
    return scan_canonical(can, sub)[0]


def scan_canonical(can: Canonical, sub: npt.NDArray) -> tuple[str, float, float]:
    """One pass over every voxel in canonical order: the exact-duplicate key and the value range.

    The volume is walked in slabs of about 4 M voxels along S; each slab is made contiguous
    in canonical Fortran order (a copy only when the storage is not RAS), its CRC-32 updated
    and its minimum and maximum taken while it is in cache.

    Parameters
    ----------
    can : Canonical
    sub : ndarray of float32
        :func:`canonical_subgrid` of the same volume.

    Returns
    -------
    key : str
        ``'<shape>-<crc32 hex>-<sha256 hex[:32]>'``.
    lo, hi : float
        Minimum and maximum voxel value (NaN when a voxel is NaN).
    """
    crc = 0
    r, a, s = can.shape
    step = max(1, _SLAB_VOXELS // max(r * a, 1))
    lows, highs = [], []
    for k0 in range(0, s, step):
        chunk = can.view[:, :, k0 : k0 + step].T  # (S, A, R): C order of it is Fortran order of the canonical array
        block = np.ascontiguousarray(chunk, dtype=np.dtype("<f4"))
        crc = _crc32(memoryview(block).cast("B"), crc)
        lows.append(block.min())
        highs.append(block.max())
    digest = hashlib.sha256()
    digest.update(np.asarray(can.shape, dtype="<i8").tobytes())
    digest.update(np.ascontiguousarray(sub, dtype=np.dtype("<f4")).tobytes())
    key = f"{r}x{a}x{s}-{crc & 0xFFFFFFFF:08x}-{digest.hexdigest()[:32]}"
    return key, float(np.min(lows)), float(np.max(highs))


def _bins(n: int, parts: int) -> npt.NDArray[np.intp]:
    """Start indices of ``min(parts, n)`` nearly equal bins of ``range(n)``."""
    parts = max(1, min(parts, n))
    return np.unique((np.arange(parts) * n) // parts).astype(np.intp)


def thumbnail(sub: npt.NDArray, size: int = LATTICE) -> npt.NDArray[np.float32]:
    """Block means of the sub-grid on at most ``size`` blocks per axis (flattened, float32)."""
    out = np.asarray(sub, dtype=np.float64)
    for axis in range(3):
        starts = _bins(out.shape[axis], size)
        counts = np.diff(np.r_[starts, out.shape[axis]])
        shape = [1, 1, 1]
        shape[axis] = len(counts)
        out = np.add.reduceat(out, starts, axis=axis) / counts.reshape(shape)
    return out.astype(np.float32).reshape(-1)


def lattice(n: int, size: int = LATTICE) -> npt.NDArray[np.intp]:
    """Lattice positions along one canonical axis of length ``n``: bin centres, kept off the border when possible."""
    parts = max(1, min(size, n))
    pos = np.floor((np.arange(parts) + 0.5) * n / parts).astype(np.intp)
    if n >= 3:
        pos = np.clip(pos, 1, n - 2)
    return np.unique(pos)


def residuals(data: npt.NDArray, can: Canonical, size: int = LATTICE) -> npt.NDArray[np.float32]:
    """Voxel minus the median of its 3×3×3 neighbourhood at the lattice points (canonical order, flattened).

    The median keeps step edges, so in a piecewise smooth image the residual is the noise
    and the structure finer than the neighbourhood. A neighbour outside the image is
    replaced by the nearest voxel inside.

    Parameters
    ----------
    data : (I, J, K) ndarray
        Stored volume.
    can : Canonical
        Its canonical view.
    """
    axes = [lattice(n, size) for n in can.shape]
    grid = np.meshgrid(*axes, indexing="ij")
    values = np.empty((27, *grid[0].shape), dtype=np.float64)
    for n, offset in enumerate(itertools.product((-1, 0, 1), repeat=3)):
        moved = [np.clip(grid[w] + offset[w], 0, can.shape[w] - 1) for w in range(3)]
        values[n] = data[can.stored_index(moved)]
    return (values[13] - np.median(values, axis=0)).astype(np.float32).reshape(-1)


def normalised(vector: npt.NDArray) -> npt.NDArray[np.float64] | None:
    """Zero-mean unit-norm copy of a thumbnail (None when it has no variation)."""
    v = np.asarray(vector, dtype=np.float64).copy()
    if v.size < 2:
        return None
    v -= v.mean()
    norm = float(np.linalg.norm(v))
    if not norm > 0 or not math.isfinite(norm):
        return None
    return v / norm


def noise_part(residual: npt.NDArray) -> npt.NDArray[np.float64] | None:
    """The residuals that are noise, not edges: entries beyond :data:`NOISE_SIGMAS` robust SD (1.4826 × MAD) set to NaN.

    None when fewer than 16 entries are left or they do not vary.
    """
    v = np.asarray(residual, dtype=np.float64)
    med = float(np.median(v)) if v.size else 0.0
    sigma = 1.4826 * float(np.median(np.abs(v - med))) if v.size else 0.0
    if not sigma > 0:
        return None
    out = np.where(np.abs(v - med) <= NOISE_SIGMAS * sigma, v, np.nan)
    return out if np.count_nonzero(~np.isnan(out)) >= 16 else None


def correlations(vectors: list[npt.NDArray[np.float64] | None]) -> npt.NDArray[np.float64]:
    """Pairwise dot products of normalised vectors of equal length (NaN where one is None).

    Returns
    -------
    matrix : (N, N) ndarray of float64
    """
    n = len(vectors)
    out = np.full((n, n), np.nan)
    present = [i for i, v in enumerate(vectors) if v is not None]
    if present:
        stack = np.stack([vectors[i] for i in present])
        out[np.ix_(present, present)] = stack @ stack.T
    return out


def masked_correlations(vectors: list[npt.NDArray[np.float64] | None], min_common: int = 16) -> npt.NDArray[np.float64]:
    """Pearson correlation of every pair over the entries both have (NaN = missing), as six matrix products.

    Parameters
    ----------
    vectors : list of (P,) ndarray or None
        Equal lengths; None for a sample without a usable vector.
    min_common : int
        Pairs with fewer common entries get NaN.

    Returns
    -------
    matrix : (N, N) ndarray of float64
        NaN where undefined.
    """
    n = len(vectors)
    out = np.full((n, n), np.nan)
    present = [i for i, v in enumerate(vectors) if v is not None]
    if not present:
        return out
    stack = np.stack([vectors[i] for i in present])
    valid = (~np.isnan(stack)).astype(np.float64)
    x = np.where(valid > 0, stack, 0.0)
    count = valid @ valid.T
    sum_x = x @ valid.T  # [i, j]: sum of x_i over the entries j has too
    sum_xx = (x * x) @ valid.T
    sum_xy = x @ x.T
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sum_xy - sum_x * sum_x.T / count
        var_i = sum_xx - sum_x**2 / count
        var_j = var_i.T
        corr = cov / np.sqrt(var_i * var_j)
    corr[(count < min_common) | ~(var_i > 0) | ~(var_j > 0)] = np.nan
    out[np.ix_(present, present)] = corr
    return out
