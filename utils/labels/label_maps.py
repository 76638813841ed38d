"""Label maps (``label_map.yaml``), label checks and label remapping.

A label map file reads::

    labels:
      0: {name: background, short: Bg}
      1: {name: cervical spine 1, short: C1}

Indices are plain integers in [0, 255] (``1:``; ``'1':`` or ``01:`` are refused,
as are duplicate keys: the file is read as untrusted YAML by
:mod:`utils.files.yaml_files`); names and short forms are text, short forms unique and
safe in file names (letters, digits, ``-``; at most 64 characters). Binary mask files are named ``{ID}_mask_{index:02d}_{short}.nii.gz``
and the manifest columns ``mask_{index:02d}_{short}`` / ``…_existence``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from utils.files.aliases import PathLike
from utils.files.atomic import atomic_write_text
from utils.labels.label_stats import LabelStats, label_stats, memory_view, slices_reaching
from utils.files.yaml_files import YamlFileError, load_yaml_file

__all__ = ["Label", "LabelMap", "LabelError", "check_labels", "remap_labels", "install_label_map"]

_SHORT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


class LabelError(ValueError):
    """Mask values that the label map does not allow, or a malformed label map."""


@dataclass(frozen=True)
class Label:
    """One entry of a label map.

    Attributes
    ----------
    index : int
        Voxel value, 0..255.
    name : str
        Full name (``cervical spine 1``).
    short : str
        Short form used in file and column names (``C1``).
    """

    index: int
    name: str
    short: str

    @property
    def key(self) -> str:
        """``{index:02d}_{short}``, the part shared by file and column names."""
        return f"{self.index:02d}_{self.short}"


@dataclass(frozen=True)
class LabelMap:
    """Ordered set of labels, background included."""

    labels: tuple[Label, ...]

    @classmethod
    def from_dict(cls, mapping: dict, source: str = "label map") -> "LabelMap":
        """Build from ``{index: {name:, short:}}``; raise :class:`LabelError` naming ``source`` when malformed."""
        entries = mapping.get("labels", mapping) if isinstance(mapping, dict) else None
        if not isinstance(entries, dict) or not entries:
            raise LabelError(f"{source}: expected a mapping 'labels: {{index: {{name: ..., short: ...}}}}'")
        labels = []
        for raw_index, spec in entries.items():
            if isinstance(raw_index, bool) or not isinstance(raw_index, int):
                form = "quoted text or a number with a leading zero or sign" if isinstance(raw_index, str) else type(raw_index).__name__
                raise LabelError(f"{source}: label index {raw_index!r} is not an integer written plainly ({form}); write label indices as plain integers (1:, not '1': or 01:)")
            index = raw_index
            if not 0 <= index <= 255:
                raise LabelError(f"{source}: label index {index} outside [0, 255]")
            if not isinstance(spec, dict) or "name" not in spec or "short" not in spec:
                raise LabelError(f"{source}: label {index} needs 'name' and 'short', found {spec!r}")
            if not isinstance(spec["short"], str) or not isinstance(spec["name"], str):
                raise LabelError(f"{source}: label {index}: 'name' and 'short' must be text, found {type(spec['name']).__name__} and {type(spec['short']).__name__}")
            short = spec["short"]
            if len(short) > 64 or not _SHORT_RE.match(short):
                raise LabelError(f"{source}: short form {short!r} of label {index} must be letters, digits or '-'")
            labels.append(Label(index, str(spec["name"]), short))
        labels.sort(key=lambda lab: lab.index)
        shorts = [lab.short for lab in labels]
        if len(set(shorts)) != len(shorts):
            raise LabelError(f"{source}: short forms must be unique, found {shorts}")
        return cls(tuple(labels))

    @classmethod
    def load(cls, path: PathLike) -> "LabelMap":
        """Read a ``label_map.yaml``.

        Raises
        ------
        FileNotFoundError
            No such file.
        LabelError
            Not a valid label map.
        """
        path = Path(path)
        try:
            mapping = load_yaml_file(path, "label map")
        except YamlFileError as exc:
            raise LabelError(str(exc)) from None
        return cls.from_dict(mapping, source=str(path))

    def to_dict(self) -> dict:
        """Inverse of :meth:`from_dict`."""
        return {"labels": {lab.index: {"name": lab.name, "short": lab.short} for lab in self.labels}}

    @property
    def indices(self) -> tuple[int, ...]:
        return tuple(lab.index for lab in self.labels)

    def __iter__(self):
        return iter(self.labels)

    def __len__(self) -> int:
        return len(self.labels)

    def binary_mask_name(self, sample_id: str, label: Label) -> str:
        """``{ID}_mask_{index:02d}_{short}.nii.gz``."""
        return f"{sample_id}_mask_{label.key}.nii.gz"


def check_labels(
    mask: "npt.NDArray[np.uint8] | LabelStats", allowed: "LabelMap | set[int] | tuple[int, ...]", source: str
) -> list[int]:
    """Return the labels present in ``mask``; raise when one is not allowed.

    Parameters
    ----------
    mask : (I, J, K) ndarray of uint8, or LabelStats
        The mask, or its :func:`utils.labels.label_stats.label_stats` when already computed.
    allowed : LabelMap or collection of int
    source : str
        File name for the message.

    Raises
    ------
    LabelError
        Names the file, the unexpected values and the allowed ones.
    """
    allowed_set = set(allowed.indices if isinstance(allowed, LabelMap) else allowed)
    present = (mask if isinstance(mask, LabelStats) else label_stats(mask)).present
    unknown = [v for v in present if v not in allowed_set]
    if unknown:
        raise LabelError(f"{source}: mask values {unknown} are not in the label map (allowed: {sorted(allowed_set)})")
    return present


def remap_labels(mask: npt.NDArray[np.uint8], mapping: dict[int, int], *, in_place: bool = False) -> npt.NDArray[np.uint8]:
    """Apply ``{old: new}`` to a uint8 mask through a 256-entry lookup table (simultaneous, not chained).

    Only the slices (along the slowest memory axis) that can hold a changing
    label are touched: a per-slice maximum below the smallest changing label
    rules a slice out, so remapping the few highest labels of a mask (VerSe's
    26-28) costs one fast reduction and a few slices.

    Parameters
    ----------
    mask : (I, J, K) ndarray of uint8
    mapping : dict of int to int
    in_place : bool
        Modify ``mask`` itself (no copy of the volume) instead of a copy.

    Returns
    -------
    remapped : ndarray of uint8
        ``mask`` itself when ``in_place``, else a new array in the same memory order.

    Raises
    ------
    LabelError
        A value of ``mapping`` (old or new) outside [0, 255]: never wrapped around silently.

    Examples
    --------
    >>> import numpy as np
    >>> remap_labels(np.array([[[0, 26, 27, 28]]], np.uint8), {26: 0, 27: 0, 28: 26}).tolist()
    [[[0, 0, 0, 26]]]
    """
    lut = np.arange(256, dtype=np.uint8)
    for old, new in mapping.items():
        if not (0 <= int(old) <= 255 and 0 <= int(new) <= 255):
            raise LabelError(f"label remapping {old} -> {new} leaves the uint8 range [0, 255]")
        lut[int(old)] = int(new)
    out = mask if in_place else mask.copy(order="K")
    changing = np.flatnonzero(lut != np.arange(256))
    if not changing.size or not out.size:
        return out
    view, _ = memory_view(out)
    lowest = int(changing[0])
    for index in slices_reaching(view, lowest):
        plane = view[index]
        where = plane >= lowest  # the lookup is applied to these voxels only
        plane[where] = lut[plane[where]]
    return out


def install_label_map(source: PathLike, destination: PathLike) -> str:
    """Copy a descriptor's ``label_map.yaml`` to ``destination`` unless a copy is already there.

    An existing copy is never overwritten: a researcher may have edited it.

    Returns
    -------
    status : str
        ``'written'``, ``'identical'`` or ``'kept'`` (existing copy differs; it was left as is).
    """
    source, destination = Path(source), Path(destination)
    text = source.read_text(encoding="utf-8")
    if destination.exists():
        LabelMap.load(destination)  # an edited copy must still be a valid label map
        return "identical" if destination.read_text(encoding="utf-8") == text else "kept"
    atomic_write_text(destination, text)
    return "written"
