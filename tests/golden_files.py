"""Pinned outputs ("goldens") that say what changed: describe every output of a run, compare, explain.

A golden file (``tests/golden/<dataset>.json``) holds, for every output of the demo pipeline:

* NIfTI (``*.nii.gz``): the sha256 of the header bytes (348-byte header and extensions) and of the voxel
  bytes, both decompressed (the gzip codec and level may change), plus a summary to explain a difference:
  the value counts of an integer image, min / max / sum / NaN count of a float image. Each distinct
  header is stored once, decoded field by field (``headers``), so a failure names the field.
* Spreadsheets (``*.xlsx``): every cell of every sheet, read with openpyxl (not with the project's reader).
* JSON / JSON-lines / YAML exports (nnU-Net fingerprint, MONAI data stats): their parsed content, with
  the run's folder replaced by ``<root>``.
* The QC report's statistics tables (``dataset_card.json``): the summary, resolution and label tables and
  each sample's shape, spacing and label volumes.

:func:`differences` compares two descriptions and returns one line per difference that names the file and
what differs (voxels, header field, sheet / row / column, JSON key).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

#: Format of the golden files (a different one is refused with a message, never half-compared).
FORMAT = 2

#: Keys of ``dataset_card.json`` pinned, and the keys of each of its samples.
CARD_KEYS = ("n_samples", "n_with_mask", "n_failed", "group_by", "summary", "resolution", "labels")
CARD_SAMPLE_KEYS = ("id", "path", "group", "error", "shape", "spacing_mm", "orientation", "voxel_mm3", "has_mask", "voxels", "volumes_mm3")

#: At most this many differences are listed per file.
MAX_LINES_PER_FILE = 8


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _plain(value: Any) -> Any:
    """JSON-safe, exactly comparable form of a header field or cell value."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.ndim else _plain(value.item())
    if isinstance(value, (np.generic,)):
        return _plain(value.item())
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def describe_nifti(path: Path) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """``(entry, header_key, header_fields)`` of a NIfTI-1 file."""
    import nibabel as nib

    raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    header = nib.Nifti1Header.from_fileobj(_BytesReader(raw))
    offset = int(header["vox_offset"])
    head, data = raw[:offset], raw[offset:]
    fields = {name: _plain(header[name]) for name in header}
    key = _sha(head)[:16]
    dtype = header.get_data_dtype()
    shape = [int(v) for v in header.get_data_shape()]
    values = np.frombuffer(data[: int(np.prod(shape)) * dtype.itemsize], dtype=dtype)
    entry: dict[str, Any] = {"header": key, "voxels": _sha(data)}
    if dtype.kind in "iub":
        uniq, counts = np.unique(values, return_counts=True)
        entry["values"] = {str(int(v)): int(c) for v, c in zip(uniq, counts)}
    else:
        finite = values[np.isfinite(values)]
        entry["float"] = {
            "min": float(finite.min()) if finite.size else None,
            "max": float(finite.max()) if finite.size else None,
            "sum": float(finite.astype(np.float64).sum()),
            "nan": int(np.isnan(values).sum()),
        }
    return entry, key, fields


class _BytesReader:
    """A minimal file object over bytes (``Nifti1Header.from_fileobj`` reads 348 bytes and extensions)."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        chunk = self._data[self._pos : end]
        self._pos += len(chunk)
        return chunk

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = pos if whence == 0 else (self._pos + pos if whence == 1 else len(self._data) + pos)
        return self._pos

    def tell(self) -> int:
        return self._pos


def describe_xlsx(path: Path) -> dict[str, Any]:
    """Every cell of every sheet: ``{"sheets": {name: [[header…], [row…], …]}}`` (openpyxl, values only)."""
    from openpyxl import load_workbook

    book = load_workbook(path, read_only=True, data_only=False)
    try:
        sheets = {ws.title: [[_plain(v) for v in row] for row in ws.iter_rows(values_only=True)] for ws in book.worksheets}
    finally:
        book.close()
    return {"sheets": sheets}


def _rooted(value: Any, root: str) -> Any:
    if isinstance(value, str):
        return value.replace(root, "<root>")
    if isinstance(value, list):
        return [_rooted(v, root) for v in value]
    if isinstance(value, dict):
        return {k: _rooted(v, root) for k, v in value.items()}
    return value


def describe_json(path: Path, root: Path) -> dict[str, Any]:
    """Parsed JSON (or JSON lines) with the run's folder written ``<root>``."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        content: Any = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        content = json.loads(text)
    if path.name == "dataset_card.json":
        content = {
            **{k: content.get(k) for k in CARD_KEYS},
            "samples": [{k: s.get(k) for k in CARD_SAMPLE_KEYS} for s in content.get("samples", [])],
        }
    return {"json": _rooted(content, str(root.resolve()))}


def describe_yaml(path: Path, root: Path) -> dict[str, Any]:
    """Parsed YAML (safe loader: plain data only) with the run's folder written ``<root>``."""
    import yaml  # only the tests that describe a YAML output need it

    content = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {"yaml": _rooted(content, str(root.resolve()))}


def describe_outputs(root: Path, paths: Iterable[Path]) -> dict[str, Any]:
    """The golden description of the files ``paths`` below ``root`` (keys: relative POSIX paths)."""
    files: dict[str, Any] = {}
    headers: dict[str, Any] = {}
    for path in sorted(paths):
        rel = path.relative_to(root).as_posix()
        if path.name.endswith((".nii.gz", ".nii")):
            entry, key, fields = describe_nifti(path)
            headers[key] = fields
            files[rel] = entry
        elif path.suffix == ".xlsx":
            files[rel] = describe_xlsx(path)
        elif path.suffix in (".json", ".jsonl"):
            files[rel] = describe_json(path, root)
        elif path.suffix in (".yaml", ".yml"):
            files[rel] = describe_yaml(path, root)
        else:
            files[rel] = {"sha256": _sha(path.read_bytes())}
    return {"format": FORMAT, "files": files, "headers": headers}


def dumps(description: dict[str, Any]) -> str:
    """The text of a golden file: sorted keys, a list of plain values (a sheet row, a shape) on one line.

    One line per row, header field or voxel summary keeps ``git diff tests/golden`` readable.
    """
    return _dump(description, 0) + "\n"


def _dump(value: Any, depth: int) -> str:
    pad, inner = " " * depth, " " * (depth + 1)
    if isinstance(value, dict) and value and not _flat(value):
        items = [f"{inner}{json.dumps(str(k), ensure_ascii=False)}: {_dump(value[k], depth + 1)}" for k in sorted(value, key=str)]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and value and not _flat(value):
        return "[\n" + ",\n".join(f"{inner}{_dump(v, depth + 1)}" for v in value) + f"\n{pad}]"
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _flat(value: Any) -> bool:
    """A list of scalars, or a small dict of scalars (written on one line)."""
    items = list(value.values()) if isinstance(value, dict) else value
    scalars = all(not isinstance(v, (dict, list)) or (isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v) and len(v) <= 16) for v in items)
    return scalars and (isinstance(value, list) or len(value) <= 6)


# --- explaining differences -------------------------------------------------------------------------------------------


def _nifti_lines(old: dict, new: dict, old_headers: dict, new_headers: dict) -> list[str]:
    lines = []
    if old["header"] != new["header"]:
        a, b = old_headers.get(old["header"], {}), new_headers.get(new["header"], {})
        fields = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        if fields:
            lines += [f"header {k}: {a.get(k)!r} -> {b.get(k)!r}" for k in fields]
        else:
            lines.append("header bytes differ (same fields: an extension or padding changed)")
    if old["voxels"] != new["voxels"]:
        if "values" in old and "values" in new:
            a, b = old["values"], new["values"]
            changed = [v for v in sorted(set(a) | set(b), key=int) if a.get(v) != b.get(v)]
            if changed:
                lines += [f"voxels of value {v}: {a.get(v, 0)} -> {b.get(v, 0)}" for v in changed]
            else:
                lines.append("voxels differ (same count of every value: voxels moved)")
        elif "float" in old and "float" in new and old["float"] != new["float"]:
            a, b = old["float"], new["float"]
            lines.append("voxels differ: " + ", ".join(f"{k} {a.get(k)} -> {b.get(k)}" for k in sorted(a) if a.get(k) != b.get(k)))
        else:
            lines.append("voxels differ (same summary: values changed or moved)")
    return lines


def _sheet_lines(name: str, old: list[list], new: list[list]) -> list[str]:
    if not old or not new or old[0] != new[0]:
        a, b = (old[0] if old else []), (new[0] if new else [])
        gone, added = [c for c in a if c not in b], [c for c in b if c not in a]
        detail = f"removed {gone}, added {added}" if gone or added else f"order {a} -> {b}"
        return [f"sheet {name}: columns differ ({detail})"]
    header = old[0]
    lines = []
    if len(old) != len(new):
        lines.append(f"sheet {name}: {len(old) - 1} -> {len(new) - 1} rows")
    for r, (a, b) in enumerate(zip(old[1:], new[1:]), start=2):
        for c, (x, y) in enumerate(zip(a, b)):
            if x != y:
                row_id = a[0] if a else r
                lines.append(f"sheet {name}, row {r} ({header[0]} {row_id}), column {header[c]}: {x!r} -> {y!r}")
    return lines


def _json_lines(old: Any, new: Any, where: str = "") -> list[str]:
    if type(old) is not type(new):
        return [f"{where or 'content'}: {old!r} -> {new!r}"[:300]]
    if isinstance(old, dict):
        lines = []
        for k in sorted(set(old) | set(new), key=str):
            if k not in old or k not in new:
                lines.append(f"{where}{'.' if where else ''}{k}: {'added' if k in new else 'removed'}")
            else:
                lines += _json_lines(old[k], new[k], f"{where}{'.' if where else ''}{k}")
        return lines
    if isinstance(old, list):
        if len(old) != len(new):
            return [f"{where or 'content'}: {len(old)} -> {len(new)} items"]
        return [line for i, (a, b) in enumerate(zip(old, new)) for line in _json_lines(a, b, f"{where}[{i}]")]
    return [] if old == new else [f"{where or 'content'}: {old!r} -> {new!r}"[:300]]


def differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """One line per difference: ``<file>: <what differs>`` (files missing or new included), at most
    :data:`MAX_LINES_PER_FILE` lines per file."""
    if expected.get("format") != FORMAT:
        return [f"golden format {expected.get('format')!r}, expected {FORMAT}: regenerate it (GOLDEN_REGEN=1)"]
    old_files, new_files = expected["files"], actual["files"]
    out = [f"{name}: missing (not written by this run)" for name in sorted(set(old_files) - set(new_files))]
    out += [f"{name}: new output (not in the golden file)" for name in sorted(set(new_files) - set(old_files))]
    for name in sorted(set(old_files) & set(new_files)):
        old, new = old_files[name], new_files[name]
        if old == new:
            continue
        if "voxels" in old and "voxels" in new:
            lines = _nifti_lines(old, new, expected.get("headers", {}), actual.get("headers", {}))
        elif "sheets" in old and "sheets" in new:
            a, b = old["sheets"], new["sheets"]
            lines = [f"sheet {s}: {'added' if s in b else 'removed'}" for s in sorted(set(a) ^ set(b))]
            lines += [line for s in a if s in b and a[s] != b[s] for line in _sheet_lines(s, a[s], b[s])]
        elif "json" in old and "json" in new:
            lines = _json_lines(old["json"], new["json"])
        elif "yaml" in old and "yaml" in new:
            lines = _json_lines(old["yaml"], new["yaml"])
        else:
            lines = ["content differs"]
        lines = lines or ["differs"]
        extra = len(lines) - MAX_LINES_PER_FILE
        out += [f"{name}: {line}" for line in lines[:MAX_LINES_PER_FILE]]
        if extra > 0:
            out.append(f"{name}: … and {extra} more difference(s)")
    return out
