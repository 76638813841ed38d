"""The audit's files: ``audit.json`` (for machines), ``audit.xlsx`` (for people), ``audit_signatures.npz``.

All three are written atomically and reproducibly: the same dataset, policy and
code give the same bytes (no dates, no timings), so a re-run leaves them untouched.
``audit_signatures.npz`` holds each sample's near-duplicate signature (float32
arrays, see :mod:`utils.audit.signature`); with the per-sample records of
``audit.json`` it lets the next run skip every sample whose files did not change.
"""

from __future__ import annotations

import io
import json
import logging
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from utils.files.atomic import atomic_write_bytes, atomic_write_text
from utils.audit.codes import CODES
from utils.audit.findings import Finding

__all__ = ["AUDIT_JSON", "AUDIT_XLSX", "SIGNATURES_NPZ", "FORMAT", "write_json", "write_xlsx", "write_signatures", "read_previous"]

logger = logging.getLogger(__name__)

AUDIT_JSON = "audit.json"
AUDIT_XLSX = "audit.xlsx"
SIGNATURES_NPZ = "audit_signatures.npz"

#: ``format`` and ``version`` of ``audit.json``.
FORMAT = {"format": "segmentation-dataset-audit", "version": 1}

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def write_json(path: Path, report: dict[str, Any]) -> None:
    """``audit.json``: two-space indented, keys in insertion order, non-ASCII kept."""
    atomic_write_text(path, json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def _finding_rows(findings: list[Finding], with_reason: bool) -> list[list[Any]]:
    rows = []
    for f in findings:
        row = [f.severity, f.code, f.sample, f.path, f.file, f.message, f.suggestion, ", ".join(f.related),
               json.dumps(f.values, ensure_ascii=False, sort_keys=True)]  # fmt: skip
        if with_reason:
            row.append(f.reason)
        rows.append(row)
    return rows


def _sample_row(rec: dict[str, Any], counts: dict[str, int]) -> list[Any]:
    meta = rec.get("meta") or {}
    geo = rec.get("geometry") or {}
    inten = rec.get("intensity") or {}
    pct = inten.get("percentiles") or {}
    fg = rec.get("foreground") or {}
    mask = rec.get("mask") or {}
    labels = sorted(int(k) for k in (mask.get("labels") or {}))
    return [
        rec["sample"], rec["path"], meta.get("patient"), meta.get("subset"), meta.get("sex"), meta.get("age"),
        json.dumps(geo.get("shape")) if geo else None, json.dumps([round(s, 6) for s in geo.get("spacing_mm", [])]) if geo else None,
        geo.get("orientation"), inten.get("min"), pct.get("0.5"), pct.get("50"), pct.get("99.5"), inten.get("max"),
        fg.get("median"), json.dumps(labels) if mask else None, rec.get("voxel_key"),
        counts.get("error", 0), counts.get("warning", 0), counts.get("info", 0), rec.get("error"),
    ]  # fmt: skip


_SAMPLE_COLUMNS = ["ID", "path", "patient", "subset", "sex", "age", "shape", "spacing_mm", "orientation", "min", "p0.5", "median",
                   "p99.5", "max", "foreground_median", "labels", "voxel_key", "errors", "warnings", "info", "unreadable"]  # fmt: skip
_FINDING_COLUMNS = ["severity", "code", "ID", "path", "file", "message", "suggestion", "related", "values"]


def write_xlsx(path: Path, report: dict[str, Any], findings: list[Finding], ignored: list[Finding]) -> None:
    """``audit.xlsx``: sheets ``Findings``, ``Summary``, ``Ignored``, ``Samples``."""
    import pandas as pd

    from utils.files.spreadsheet import write_sheets

    summary_rows = [[code, v["severity"], v["count"], v["ignored"], CODES[code].meaning] for code, v in report["summary"]["by_code"].items()]
    per_sample: dict[str, dict[str, int]] = {}
    for f in findings:
        per_sample.setdefault(f.path, {}).setdefault(f.severity, 0)
        per_sample[f.path][f.severity] += 1
    sheets = {
        "Findings": pd.DataFrame(_finding_rows(findings, False), columns=_FINDING_COLUMNS),
        "Summary": pd.DataFrame(summary_rows, columns=["code", "severity", "findings", "ignored", "meaning"]),
        "Ignored": pd.DataFrame(_finding_rows(ignored, True), columns=[*_FINDING_COLUMNS, "reason"]),
        "Samples": pd.DataFrame([_sample_row(r, per_sample.get(r["path"], {})) for r in report["records"]], columns=_SAMPLE_COLUMNS),
    }
    write_sheets(path, sheets)


def write_signatures(path: Path, signatures: dict[str, dict[str, npt.NDArray]]) -> None:
    """``audit_signatures.npz``: ``paths`` (sample folders) and ``thumbnail_<i>`` / ``residual_<i>`` (float32) per sample."""
    buffer = io.BytesIO()
    paths = sorted(signatures)
    arrays: dict[str, npt.NDArray] = {"paths": np.array(paths, dtype=str)}
    for i, p in enumerate(paths):
        for part in ("thumbnail", "residual"):
            arrays[f"{part}_{i}"] = np.asarray(signatures[p][part], dtype="<f4")
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with zf.open(info, "w") as fh:
                np.lib.format.write_array(fh, array, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def read_previous(output_dir: Path) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, npt.NDArray]]]:
    """Records and signatures of an earlier audit in ``output_dir`` (empty when absent or unreadable).

    Returns
    -------
    records : dict
        Sample folder -> record.
    signatures : dict
        Sample folder -> ``{'thumbnail', 'residual'}``.
    """
    json_path, npz_path = output_dir / AUDIT_JSON, output_dir / SIGNATURES_NPZ
    if not json_path.is_file() or not npz_path.is_file():
        return {}, {}
    try:
        report = json.loads(json_path.read_text(encoding="utf-8"))
        if {k: report.get(k) for k in FORMAT} != FORMAT:
            return {}, {}
        records = {r["path"]: r for r in report.get("records", []) if isinstance(r, dict) and "path" in r}
        signatures: dict[str, dict[str, npt.NDArray]] = {}
        with np.load(npz_path, allow_pickle=False) as npz:
            for i, p in enumerate(npz["paths"].tolist()):
                signatures[str(p)] = {"thumbnail": npz[f"thumbnail_{i}"], "residual": npz[f"residual_{i}"]}
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        logger.warning("%s: earlier audit not reusable (%s); every sample is read again", json_path, exc)
        return {}, {}
    return records, signatures
