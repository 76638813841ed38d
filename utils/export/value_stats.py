"""Exact statistics of a set of voxel values: extremes, mean, standard deviation, median, percentiles.

The training frameworks describe intensities by order statistics (percentiles,
median) as well as moments. Both are computed exactly here, by one of two
routes that give the same numbers:

- **integer histogram** (:class:`IntegerHistogram`): when every value is an
  integer (CT and most MR volumes are stored as int16; the grouped float32
  copies keep those values), the count of every value is gathered with
  ``np.bincount`` slab by slab, and histograms of disjoint regions add up. An
  order statistic is then a search in the cumulative counts; the moments are
  sums over the distinct values. No copy of the values is made.
- **array** (:func:`summarize_values`): any float values; the order statistics
  needed come from one ``np.partition`` of a copy, the moments from float64
  sums taken in chunks.

Definitions (those of numpy and PyTorch, which the frameworks use):

- percentile q: numpy's default ``linear`` method: at the virtual index
  ``h = (n - 1) q / 100`` between the order statistics ``x[floor(h)]`` and
  ``x[floor(h) + 1]``, interpolated as numpy's ``_lerp`` does;
- median: the *lower* median ``x[(n - 1) // 2]`` that ``torch.median`` returns;
- standard deviation: the population one (divided by n).

Moments are computed in float64 (the frameworks use float32 accumulators, so
their values differ from these by float32 rounding, about 1e-7 relative).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "ValueSummary",
    "IntegerHistogram",
    "integer_keys",
    "percentile_ranks",
    "lerp",
    "summarize_values",
    "summarize_counts",
    "MAX_HISTOGRAM_BINS",
]

#: Most counts one histogram holds, over all its groups (2**22 int64 counts = 32 MB); wider ranges take the array route.
MAX_HISTOGRAM_BINS = 1 << 22
#: Values per chunk when float64 sums are taken over a float32 array.
_CHUNK = 1 << 22


@dataclass(frozen=True)
class ValueSummary:
    """Statistics of n values.

    Attributes
    ----------
    count : int
        n (> 0).
    minimum, maximum : float
    mean : float
        Arithmetic mean (float64 sum).
    std : float
        Population standard deviation.
    lower_median : float
        ``torch.median``'s: the order statistic at rank ``(n - 1) // 2``.
    percentiles : tuple of float
        numpy ``linear`` percentiles at the ``q`` the summary was asked for.
    """

    count: int
    minimum: float
    maximum: float
    mean: float
    std: float
    lower_median: float
    percentiles: tuple[float, ...]


def percentile_ranks(n: int, q: float) -> tuple[int, int, float]:
    """Ranks and weight of numpy's ``linear`` percentile ``q`` (0..100) of ``n`` sorted values.

    Returns
    -------
    below, above : int
        Ranks (0-based) of the two order statistics interpolated between.
    weight : float
        Interpolation weight of ``above`` (0 <= weight < 1).
    """
    if n < 1:
        raise ValueError(f"percentile of {n} values: at least one value is needed")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} outside [0, 100]")
    virtual = (n - 1) * (float(q) / 100.0)
    below = int(np.floor(virtual))
    if virtual >= n - 1:
        return n - 1, n - 1, 0.0
    return below, below + 1, virtual - below


def lerp(a: float, b: float, t: float) -> float:
    """numpy's ``_lerp``: ``a + (b - a) t``, computed from ``b`` when ``t >= 0.5`` (exact at both ends)."""
    diff = b - a
    return b - diff * (1.0 - t) if t >= 0.5 else a + diff * t


def _summary(n: int, order_statistics, mean: float, std: float, q: Sequence[float]) -> ValueSummary:
    """Assemble a :class:`ValueSummary` from a function giving the values at given ranks."""
    plans = [percentile_ranks(n, p) for p in q]
    ranks = sorted({0, n - 1, (n - 1) // 2} | {r for below, above, _ in plans for r in (below, above)})
    at = dict(zip(ranks, (float(v) for v in order_statistics(np.asarray(ranks, dtype=np.int64)))))
    return ValueSummary(
        count=n,
        minimum=at[0],
        maximum=at[n - 1],
        mean=mean,
        std=std,
        lower_median=at[(n - 1) // 2],
        percentiles=tuple(lerp(at[b], at[a], w) for b, a, w in plans),
    )


def summarize_values(values: npt.NDArray, q: Sequence[float] = ()) -> ValueSummary:
    """Exact statistics of the values of an array (any shape and real dtype; not modified).

    Parameters
    ----------
    values : ndarray
        n >= 1 finite values.
    q : sequence of float
        Percentiles wanted, in 0..100.

    Returns
    -------
    ValueSummary

    Raises
    ------
    ValueError
        ``values`` is empty.
    """
    flat = np.asarray(values).reshape(-1)
    n = int(flat.size)
    if n == 0:
        raise ValueError("statistics of an empty set of values")
    total = 0.0
    for start in range(0, n, _CHUNK):
        total += float(np.sum(flat[start : start + _CHUNK], dtype=np.float64))
    mean = total / n
    squares = 0.0
    for start in range(0, n, _CHUNK):
        d = flat[start : start + _CHUNK].astype(np.float64) - mean
        squares += float(np.dot(d, d))
    std = float(np.sqrt(squares / n))
    scratch = flat.copy()

    def order_statistics(ranks: npt.NDArray[np.int64]) -> npt.NDArray:
        scratch.partition(ranks)
        return scratch[ranks]

    return _summary(n, order_statistics, mean, std, q)


def summarize_counts(counts: npt.NDArray[np.int64], first_value: int, q: Sequence[float] = ()) -> ValueSummary:
    """Exact statistics of integer values given as a histogram.

    Parameters
    ----------
    counts : (B,) ndarray of int
        ``counts[i]`` values equal to ``first_value + i``; their sum n >= 1.
    first_value : int
        Value of bin 0.
    q : sequence of float
        Percentiles wanted, in 0..100.

    Returns
    -------
    ValueSummary

    Raises
    ------
    ValueError
        Every count is zero.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if n == 0:
        raise ValueError("statistics of an empty set of values")
    bins = np.flatnonzero(counts)
    weights = counts[bins].astype(np.float64)
    values = bins.astype(np.float64) + float(first_value)
    mean = float(np.dot(weights, values)) / n
    d = values - mean
    std = float(np.sqrt(np.dot(weights, d * d) / n))
    cumulative = np.cumsum(counts[bins])

    def order_statistics(ranks: npt.NDArray[np.int64]) -> npt.NDArray:
        return values[np.searchsorted(cumulative, ranks, side="right")]

    return _summary(n, order_statistics, mean, std, q)


def integer_keys(values: npt.NDArray[np.floating], first_value: int) -> npt.NDArray[np.int32] | None:
    """``values - first_value`` as int32 when every value is an integer, else None.

    Parameters
    ----------
    values : ndarray of float32 (or any real dtype)
        Values known to lie in ``[first_value, first_value + 2**31)`` (callers check the range first:
        a value outside it would not convert exactly).
    first_value : int

    Returns
    -------
    keys : ndarray of int32 or None
        Same shape as ``values``.
    """
    keys = values.astype(np.int32)
    if not np.array_equal(keys, values):
        return None
    if first_value:
        keys -= np.int32(first_value)
    return keys


@dataclass
class IntegerHistogram:
    """Counts of integer values in ``[first_value, first_value + bins)``, for ``groups`` groups of voxels.

    Attributes
    ----------
    first_value : int
    bins : int
    counts : (groups, bins) ndarray of int64
    """

    first_value: int
    bins: int
    counts: npt.NDArray[np.int64]

    @classmethod
    def empty(cls, first_value: int, last_value: int, groups: int = 1) -> IntegerHistogram:
        """A zero histogram for values ``first_value..last_value`` (inclusive)."""
        bins = int(last_value) - int(first_value) + 1
        if bins < 1 or groups * bins > MAX_HISTOGRAM_BINS:
            raise ValueError(f"value range {first_value}..{last_value} ({bins} values, {groups} groups) is not histogrammed")
        return cls(int(first_value), bins, np.zeros((groups, bins), dtype=np.int64))

    def add(self, values: npt.NDArray, group_base: npt.NDArray[np.int32] | None = None) -> bool:
        """Count ``values`` (in group ``group_base // bins`` per voxel, or group 0); False if one is not an integer.

        Parameters
        ----------
        values : ndarray of float
            Values in the histogram's range.
        group_base : ndarray of int32, optional
            Same shape: ``group * bins`` of each voxel.

        Returns
        -------
        ok : bool
            False when a value is not an integer (nothing was counted).
        """
        keys = integer_keys(values, self.first_value)
        if keys is None:
            return False
        if group_base is not None:
            keys += group_base
        self.counts += np.bincount(keys.reshape(-1), minlength=self.counts.size).reshape(self.counts.shape)
        return True

    def summary(self, group: int = 0, q: Sequence[float] = ()) -> ValueSummary:
        """Statistics of one group's values (see :func:`summarize_counts`)."""
        return summarize_counts(self.counts[group], self.first_value, q)
