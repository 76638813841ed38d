"""The dataset audit's findings in the QC report: a findings table and per-sample code flags.

``utils/qc_report.py`` reads the ``audit.json`` of ``utils/audit_dataset.py`` given with
``--audit FILE``, or found at ``ROOT_DIR/../audit/audit.json`` (where the tutorial layout puts
it). The page then shows a sortable table of every finding (severity, code, sample, message,
suggestion) and, in each sample's row, its codes as flags coloured by severity — also the
samples a finding names as related (the other scan of a duplicate pair). The page only
shows; the audit decides. When the audited files changed since the audit, the page says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from utils.files.aliases import PathLike

__all__ = ["AuditFindings", "load_audit", "default_audit_path", "findings_section", "audit_flags_html", "FLAG_CSS"]

#: Where the audit's output lies in the tutorial layout, relative to the grouped folder's parent.
DEFAULT_AUDIT = Path("audit") / "audit.json"

_SEVERITIES = ("error", "warning", "info")

#: Styles of the audit flags and table (added to the page's CSS).
FLAG_CSS = (
    ".flag.audit-error{background:#f8d0d0;color:#7a0000}.flag.audit-warning{background:#fde8c8;color:#6b3d00}"
    ".flag.audit-info{background:#e3ecf8;color:#1d3d6b}.flag.audit-related{opacity:.7;border:1px dashed currentColor}"
    "table.findings td.msg{max-width:48em}table.findings td.sugg{max-width:30em;font-size:12px;color:#444}"
)


@dataclass
class AuditFindings:
    """What the report shows of one ``audit.json``.

    Attributes
    ----------
    source : str
        The file read.
    findings : list of dict
        As in ``audit.json`` (``severity code sample path file message suggestion related values``).
    summary : dict
        Its ``summary``.
    samples : int
        Samples audited.
    stale : list of str
        Sample folders whose files changed since the audit (filled by :meth:`check_stale`).
    """

    source: str
    findings: list[dict[str, Any]]
    summary: dict[str, Any]
    samples: int
    records: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    stale: list[str] = field(default_factory=list)
    by_id: bool = False

    def match(self, report_paths: set[str]) -> None:
        """Match findings to report rows by sample ID when no audited folder is among ``report_paths`` (another root)."""
        self.by_id = bool(self.records) and not (set(self.records) & report_paths)

    def flags(self, path: str, sample_id: str) -> list[tuple[str, str, str]]:
        """``[(code, severity, text)]`` of one sample (``severity`` ``related`` for a finding that names it as the other sample)."""
        out = []
        for f in self.findings:
            related = [r.rsplit("/", 1)[-1] for r in f.get("related", [])] if self.by_id else f.get("related", [])
            if (f["sample"] == sample_id) if self.by_id else (f["path"] == path):
                out.append((f["code"], f["severity"], f"{f['severity']}: {f['message']}"))
            elif (sample_id if self.by_id else path) in related:
                out.append((f["code"], "related", f"{f['severity']} on {f['path']}: {f['message']}"))
        return out

    def check_stale(self, root_dir: Path) -> None:
        """Record the sample folders whose volume, mask or info yaml changed since the audit measured them.

        Only when the report and the audit look at the same folder (findings matched by path).
        """
        from utils.files.sample_info import SampleDir, file_stamps

        if self.by_id:
            return
        self.stale = sorted(
            p for p, rec in self.records.items() if rec.get("stamps") is not None and file_stamps(SampleDir(Path(root_dir) / p)) != rec["stamps"]
        )


def default_audit_path(root_dir: PathLike) -> Path | None:
    """``ROOT_DIR/../audit/audit.json`` when it exists."""
    path = Path(root_dir).resolve().parent / DEFAULT_AUDIT
    return path if path.is_file() else None


def load_audit(path: PathLike) -> AuditFindings:
    """Read the findings of an ``audit.json``.

    Raises
    ------
    FileNotFoundError, ValueError
        No such file, not JSON, or not an audit (one line naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audit file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != "segmentation-dataset-audit" or not isinstance(data.get("findings"), list):
        raise ValueError(f"{path}: not an audit.json of utils/audit_dataset.py (no 'format: segmentation-dataset-audit' and 'findings')")
    findings = [f for f in data["findings"] if isinstance(f, dict) and {"code", "severity", "path", "sample", "message"} <= set(f)]
    records = {r["path"]: r for r in data.get("records", []) if isinstance(r, dict) and isinstance(r.get("path"), str)}
    return AuditFindings(str(path), findings, data.get("summary") or {}, int(data.get("samples") or len(records)), records)


def audit_flags_html(flags: list[tuple[str, str, str]]) -> str:
    """The flags of one sample row."""
    return "".join(f'<span class="flag audit-{escape(sev)}" title="{escape(text)}">{escape(code)}</span>' for code, sev, text in flags)


def findings_section(audit: AuditFindings) -> str:
    """The page's "Audit findings" section: counts, a note when stale, and the sortable table."""
    counts = (audit.summary or {}).get("by_severity") or {}
    ignored = (audit.summary or {}).get("ignored", 0)
    head = ", ".join(f"{counts.get(s, 0)} {s}{'s' if s != 'info' and counts.get(s, 0) != 1 else ''}" for s in _SEVERITIES)
    parts = [
        '<h2 id="audit">Audit findings</h2>',
        f'<p class="meta">{escape(head)} over {audit.samples} samples'
        + (f", {ignored} accepted by the policy" if ignored else "")
        + f' · from <code>{escape(audit.source)}</code> (utils/audit_dataset.py; codes in docs/audit.md)</p>',
    ]
    if audit.stale:
        listed = ", ".join(audit.stale[:5]) + (" …" if len(audit.stale) > 5 else "")
        parts.append(f'<p class="note"><b>{len(audit.stale)} samples changed since the audit</b> ({escape(listed)}): run the audit again.</p>')
    if not audit.findings:
        parts.append('<p class="note">No findings.</p>')
        return "\n".join(parts)
    rows = []
    for f in audit.findings:
        rank = _SEVERITIES.index(f["severity"]) if f["severity"] in _SEVERITIES else 9
        unnamed = [r for r in f.get("related", []) if r not in f["message"]]
        related = f" (with {', '.join(unnamed)})" if unnamed else ""
        rows.append(
            f'<tr data-severity="{escape(f["severity"])}"><td data-sort="{rank}"><span class="flag audit-{escape(f["severity"])}">'
            f"{escape(f['severity'])}</span></td><td>{escape(f['code'])}</td>"
            f'<td class="id" title="{escape(f["path"])}">{escape(f["sample"])}</td>'
            f'<td class="msg">{escape(f["message"] + related)}</td><td class="sugg">{escape(f.get("suggestion", ""))}</td></tr>'
        )
    parts.append(
        '<table id="findings" class="sortable findings"><thead><tr><th>severity</th><th>code</th><th>sample</th><th>finding</th>'
        "<th>suggestion</th></tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>"
    )
    return "\n".join(parts)
