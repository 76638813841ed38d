"""The release diff as the sheets of ``diff.xlsx`` (columns documented in ``docs/diff.md``).

- ``Summary``: the two releases and the number of samples per status;
- ``Samples``: one row per sample (status, IDs, paths, what changed, volume, geometry, mask);
- ``Labels``: one row per label of every sample whose mask changed (voxels and mm³ before/after, Dice);
- ``Fields``: one row per changed info-yaml or manifest field.
"""

from __future__ import annotations

import json
from typing import Any

from utils.files.lazy_import import lazy_import

pd = lazy_import("pandas")

__all__ = ["SAMPLE_COLUMNS", "LABEL_COLUMNS", "FIELD_COLUMNS", "diff_sheets"]

SAMPLE_COLUMNS = (
    "status", "ID", "old_ID", "old_path", "new_path", "changes", "volume", "volume_changed_voxels", "volume_max_abs_difference",
    "same_grid", "old_shape", "new_shape", "old_spacing_mm", "new_spacing_mm", "max_displacement_mm", "mask", "mask_changed_voxels",
    "dice_foreground", "labels_added", "labels_removed", "fields_changed", "note",
)  # fmt: skip
LABEL_COLUMNS = ("ID", "old_ID", "label", "name", "old_voxels", "new_voxels", "voxel_change", "old_mm3", "new_mm3", "change_mm3", "dice", "note")
FIELD_COLUMNS = ("ID", "old_ID", "field", "source", "old", "new")


def _cell(value: Any) -> Any:
    """Lists and mappings as JSON text; other values as they are."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, ensure_ascii=False)
    return value


def _sample_row(r: dict[str, Any]) -> dict[str, Any]:
    vol, geo, mask = r.get("volume") or {}, r.get("geometry") or {}, r.get("mask") or {}
    shape = vol.get("shape")
    spacing = vol.get("spacing_mm")
    only_new, only_old = r["status"] == "added", r["status"] == "removed"
    row = {
        "status": r["status"], "ID": r["id"], "old_ID": r.get("old_id"), "old_path": r.get("old_path"), "new_path": r.get("new_path"),
        "changes": ", ".join(r.get("changes", [])), "volume": vol.get("status"), "volume_changed_voxels": vol.get("changed_voxels"),
        "volume_max_abs_difference": vol.get("max_abs_difference"), "same_grid": geo.get("same_grid"),
        "old_shape": geo.get("old_shape", shape if only_old else None), "new_shape": geo.get("new_shape", shape if only_new else None),
        "old_spacing_mm": geo.get("old_spacing_mm", spacing if only_old else None),
        "new_spacing_mm": geo.get("new_spacing_mm", spacing if only_new else None),
        "max_displacement_mm": geo.get("max_displacement_mm"), "mask": mask.get("status"),
        "mask_changed_voxels": mask.get("changed_voxels"), "dice_foreground": mask.get("dice_foreground"),
        "labels_added": mask.get("labels_added") or None, "labels_removed": mask.get("labels_removed") or None,
        "fields_changed": ", ".join(f["field"] for f in r.get("fields", [])) or None,
        "note": "; ".join(t for t in (r.get("error"), r.get("note"), mask.get("note")) if t) or None,
    }  # fmt: skip
    return {k: _cell(v) for k, v in row.items()}


def diff_sheets(data: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """``{sheet name: table}`` of a diff (:func:`utils.diff.run.diff_datasets`'s ``data``)."""
    summary = [("old", data["old"]), ("new", data["new"]), ("old_manifest", data.get("old_manifest")),
               ("new_manifest", data.get("new_manifest")), ("grid_tol_voxel", data.get("grid_tol_voxel"))]  # fmt: skip
    summary += [(k, v) for k, v in data["summary"].items()]
    samples = [_sample_row(r) for r in data["samples"]]
    labels, fields = [], []
    for r in data["samples"]:
        mask = r.get("mask") or {}
        if mask.get("status") in ("changed", "added", "removed", "same_labels"):
            for lab in mask.get("labels", []):
                labels.append({"ID": r["id"], "old_ID": r.get("old_id"), **{k: lab.get(k) for k in LABEL_COLUMNS if k in lab},
                               "voxel_change": lab["new_voxels"] - lab["old_voxels"], "note": mask.get("note")})  # fmt: skip
        for f in r.get("fields", []):
            fields.append({"ID": r["id"], "old_ID": r.get("old_id"), "field": f["field"], "source": f["source"],
                           "old": _cell(f["old"]), "new": _cell(f["new"])})  # fmt: skip
    return {
        "Summary": pd.DataFrame(summary, columns=["item", "value"]),
        "Samples": pd.DataFrame(samples, columns=list(SAMPLE_COLUMNS)),
        "Labels": pd.DataFrame(labels, columns=list(LABEL_COLUMNS)),
        "Fields": pd.DataFrame(fields, columns=list(FIELD_COLUMNS)),
    }
