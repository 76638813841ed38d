"""Sample folders of a grouped dataset and their ``{ID}_info.yaml`` files.

A sample folder is named by its ID and holds ``{ID}_info.yaml``,
``{ID}_volume.nii.gz``, ``{ID}_mask.nii.gz`` and the binary masks
``{ID}_mask_{index:02d}_{short}.nii.gz``. The info file records the sample's
attributes and a ``history`` list: one entry per processing step applied, with
its parameters, so that a re-run can tell what was already done.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from utils.files.aliases import PathLike
from utils.files.atomic import atomic_write_text
from utils.files.yaml_files import dump_yaml, parse_yaml, yaml_error_line

__all__ = [
    "file_stamps",
    "SampleDir", "find_samples", "NoSampleError", "InfoYamlError", "read_info", "write_info", "history_entry", "has_step",
    "file_crc32", "file_stamp", "BINARY_MASKS_STEP", "BINARY_MASKS_FROM", "binary_masks_source",
    "MASK_LABELS", "record_mask_labels", "recorded_mask_labels",
]  # fmt: skip

try:  # python-isal: CRC-32 about 6x faster than zlib's
    from isal.isal_zlib import crc32 as _crc32_update
except ImportError:  # pragma: no cover - exercised only without isal
    from zlib import crc32 as _crc32_update

#: History step of the binary-mask routine (VerSe 04, NME/ESO 03); its ``params.labels`` lists the masks written.
BINARY_MASKS_STEP = "extract_binary_masks"

#: History-entry key of the steps that (re)write the binary masks: the ``file_stamp`` of the mask they come from.
BINARY_MASKS_FROM = "binary_masks_from"

#: Info-yaml key: the voxel count of every value of ``{ID}_mask.nii.gz`` and the ``file_stamp`` of that file,
#: recorded by each routine that writes the mask, so later routines know its labels without decompressing it.
MASK_LABELS = "mask_labels"

_BINARY_RE_TEMPLATE = r"^{id}_mask_(\d{{2,3}})_([A-Za-z0-9-]+)\.nii\.gz$"


@dataclass(frozen=True)
class SampleDir:
    """Paths of one sample folder (files may not exist yet)."""

    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def info(self) -> Path:
        return self.path / f"{self.id}_info.yaml"

    @property
    def volume(self) -> Path:
        return self.path / f"{self.id}_volume.nii.gz"

    @property
    def mask(self) -> Path:
        return self.path / f"{self.id}_mask.nii.gz"

    def binary_mask(self, key: str) -> Path:
        """Path of the binary mask ``{ID}_mask_{key}.nii.gz`` (``key`` like ``01_C1``)."""
        return self.path / f"{self.id}_mask_{key}.nii.gz"

    def binary_masks(self) -> dict[int, tuple[str, Path]]:
        """Existing binary masks: ``{index: (short, path)}`` sorted by index."""
        pattern = re.compile(_BINARY_RE_TEMPLATE.format(id=re.escape(self.id)))
        found: dict[int, tuple[str, Path]] = {}
        for p in self.path.iterdir():
            m = pattern.match(p.name)
            if m:
                found[int(m.group(1))] = (m.group(2), p)
        return dict(sorted(found.items()))


class NoSampleError(ValueError):
    """A ``--root_dir`` below which no sample folder exists (a wrong folder, or routine 02 not run yet)."""


def find_samples(root_dir: PathLike, *, allow_empty: bool = False) -> list[SampleDir]:
    """All sample folders below ``root_dir`` (a folder holding ``{name}_info.yaml``), sorted by path.

    Parameters
    ----------
    root_dir : str or Path
        The grouped dataset folder.
    allow_empty : bool
        Return an empty list instead of raising when there is no sample folder.

    Raises
    ------
    FileNotFoundError
        ``root_dir`` is not a folder.
    NoSampleError
        No sample folder below it (unless ``allow_empty``): every routine and tool then exits 2.
    """
    root = Path(root_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"root_dir is not a folder: {root}")
    samples = [SampleDir(p.parent) for p in root.rglob("*_info.yaml") if p.name == f"{p.parent.name}_info.yaml"]
    if not samples and not allow_empty:
        raise NoSampleError(
            f"--root_dir {root}: no sample folder below it (a folder {{ID}} holding {{ID}}_info.yaml, as routine 02 writes); "
            "is it the grouped dataset folder? Nothing was done"
        )
    return sorted(samples, key=lambda s: str(s.path))


class InfoYamlError(ValueError):
    """An info yaml that exists but cannot be used; the message (one line) says "invalid info yaml" and why."""


def read_info(path: PathLike, what: str = "info yaml") -> dict[str, Any]:
    """Read an info yaml as untrusted input (:func:`utils.files.yaml_files.parse_yaml`).

    A file that cannot be used is never taken for "no info" (so no routine
    rewrites an info yaml it could not read: the caller refuses the sample).

    Parameters
    ----------
    path : str or Path
    what : str
        What the file is, for the message.

    Returns
    -------
    info : dict
        A non-empty mapping; ``history``, when present, is a list of mappings.

    Raises
    ------
    FileNotFoundError
        No such file.
    InfoYamlError
        Not readable as UTF-8, not valid YAML (duplicate keys and alias bombs
        included), empty (0 bytes or no document), not a mapping, or a
        ``history`` that is not a list of mappings; the message names the file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: {what} missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InfoYamlError(f"{path}: invalid {what}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from exc
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as exc:
        raise InfoYamlError(f"{path}: invalid {what}: not valid YAML ({yaml_error_line(exc)})") from exc
    if data is None or data == {}:
        size = "0 bytes" if not text else "no YAML content"
        raise InfoYamlError(f"{path}: invalid {what}: the file is empty ({size}); it was not written by this toolkit or was cut short")
    if not isinstance(data, dict):
        raise InfoYamlError(f"{path}: invalid {what}: a YAML mapping was expected, found {type(data).__name__}")
    history = data.get("history")
    if history is not None and (not isinstance(history, list) or not all(isinstance(h, dict) for h in history)):
        raise InfoYamlError(f"{path}: invalid {what}: 'history' must be a list of mappings, found {_short(history)}")
    return data


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def write_info(path: PathLike, info: dict[str, Any]) -> None:
    """Write an info yaml atomically, keys in insertion order."""
    atomic_write_text(path, dump_yaml(info, sort_keys=False, allow_unicode=True, default_flow_style=None))


def history_entry(step: str, **params: Any) -> dict[str, Any]:
    """One ``history`` item: ``{'step': step, 'params': {...}, 'date': ISO time}``."""
    return {"step": step, "params": params, "date": _dt.datetime.now().isoformat(timespec="seconds")}


def file_crc32(path: PathLike) -> int:
    """CRC-32 of a file's bytes (read in 16 MiB chunks)."""
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            crc = _crc32_update(chunk, crc)
    return crc & 0xFFFFFFFF


def file_stamp(path: PathLike) -> dict[str, int]:
    """``{'size': bytes, 'crc32': CRC-32}`` of a file: tells whether it changed since the stamp was taken."""
    return {"size": int(Path(path).stat().st_size), "crc32": file_crc32(path)}


def binary_masks_source(info: dict[str, Any]) -> dict[str, Any] | None:
    """:data:`BINARY_MASKS_FROM` of the latest history entry that wrote the binary masks, or None."""
    for entry in reversed(info.get("history") or []):
        if isinstance(entry, dict) and isinstance(entry.get(BINARY_MASKS_FROM), dict):
            return entry[BINARY_MASKS_FROM]
    return None


def record_mask_labels(info: dict[str, Any], mask_path: PathLike, counts: Any, stamp: dict[str, int] | None = None) -> None:
    """Store in ``info`` the voxel count of every value of the mask file just written, with the file's stamp.

    Parameters
    ----------
    info : dict
        Info-yaml content (modified in place; the caller writes it).
    mask_path : str or Path
        The mask file as written.
    counts : (256,) array of int
        Voxel count of every value 0..255 (``LabelStats.counts``).
    stamp : dict, optional
        ``file_stamp(mask_path)`` when already computed.
    """
    info[MASK_LABELS] = {"file": stamp if stamp is not None else file_stamp(mask_path), "voxels": {int(v): int(counts[v]) for v in range(len(counts)) if counts[v]}}


def recorded_mask_labels(info: dict[str, Any], mask_path: PathLike, stamp: dict[str, int] | None = None) -> list[int] | None:
    """Values present in ``mask_path`` as recorded by the routine that wrote it, or None when unknown.

    None unless the record's stamp (size and CRC-32) is that of the file now on disk:
    a mask edited or rewritten since then by anything that did not record it is
    then read again.

    Parameters
    ----------
    info : dict
    mask_path : str or Path
    stamp : dict, optional
        ``file_stamp(mask_path)`` when already computed.
    """
    record = info.get(MASK_LABELS)
    if not isinstance(record, dict) or not isinstance(record.get("voxels"), dict):
        return None
    if record.get("file") != (stamp if stamp is not None else file_stamp(mask_path)):
        return None
    try:
        return sorted(int(v) for v, n in record["voxels"].items() if int(n) > 0)
    except (TypeError, ValueError):
        return None


def has_step(info: dict[str, Any], step: str) -> bool:
    """True when ``info['history']`` records ``step``."""
    return any(isinstance(h, dict) and h.get("step") == step for h in info.get("history") or [])


def file_stamps(sample: SampleDir) -> dict[str, list[int] | None]:
    """``{volume|mask|info: [size, mtime_ns] or None}``: a stored record is reused only while these are unchanged."""
    out: dict[str, list[int] | None] = {}
    for key, path in (("volume", sample.volume), ("mask", sample.mask), ("info", sample.info)):
        try:
            st = path.stat()
        except OSError:
            out[key] = None
            continue
        out[key] = [int(st.st_size), int(st.st_mtime_ns)]
    return out
