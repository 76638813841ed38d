"""The release-diff section of ``index.html`` (``utils/qc_report.py --diff diff.json``).

The counts per status, then one row per sample that is not unchanged: its status, IDs, what
changed, the labels whose voxels changed (voxels before → after, volume change, Dice) and the
changed fields. Every value comes from the JSON of ``utils/diff_datasets.py`` and is escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["diff_section"]

_SHOWN_LABELS = 8


def _labels_text(mask: dict[str, Any]) -> str:
    rows = [r for r in mask.get("labels", []) if r.get("old_voxels") != r.get("new_voxels") or (r.get("dice") not in (None, 1.0))]
    parts = []
    for r in rows[:_SHOWN_LABELS]:
        dice = "" if r.get("dice") is None else f", Dice {r['dice']:.3f}"
        name = f" {r['name']}" if r.get("name") else ""
        parts.append(f"{r['label']}{name}: {r['old_voxels']}→{r['new_voxels']} vox ({r['change_mm3']:+.1f} mm³{dice})")
    if len(rows) > _SHOWN_LABELS:
        parts.append(f"… {len(rows) - _SHOWN_LABELS} more")
    if mask.get("note"):
        parts.append(str(mask["note"]))
    return "; ".join(parts)


def _fields_text(fields: list[dict[str, Any]]) -> str:
    return "; ".join(f"{f['field']}: {f['old']!r} → {f['new']!r}" for f in fields)


def diff_section(data: dict[str, Any]) -> str:
    """HTML of the section (a heading, the counts, a sortable table of the samples that are not unchanged)."""
    summary = data.get("summary", {})
    counts = ", ".join(f"{int(summary.get(k, 0))} {k}" for k in ("added", "removed", "renamed", "changed", "unchanged", "error") if k != "error" or summary.get(k))
    rows = []
    for r in data.get("samples", []):
        if r.get("status") == "unchanged":
            continue
        ids = escape(str(r.get("id")))
        if r.get("old_id") and r.get("old_id") != r.get("id"):
            ids = f"{escape(str(r['old_id']))} → {ids}"
        changes = ", ".join(r.get("changes", [])) or ""
        if r.get("error"):
            changes = f"error: {r['error']}"
        mask = r.get("mask") or {}
        dice = mask.get("dice_foreground")
        cells = [escape(str(r.get("status"))), ids, escape(changes), "" if dice is None else f"{dice:.4f}",
                 escape(_labels_text(mask)), escape(_fields_text(r.get("fields", [])))]  # fmt: skip
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    table = (
        '<table class="sortable" id="diff"><thead><tr><th>status</th><th>ID</th><th>what changed</th><th>Dice (foreground)</th>'
        "<th>labels changed</th><th>fields changed</th></tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>"
        if rows else '<p class="meta">No sample changed.</p>'
    )
    return (
        "<h2>Changes since the previous release</h2>"
        f'<p class="meta">{escape(str(data.get("old")))} → {escape(str(data.get("new")))}: {escape(counts)} '
        "(written by <code>utils/diff_datasets.py</code>; see docs/diff.md).</p>" + table
    )
