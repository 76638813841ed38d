"""``index.html``: one self-contained page for the whole dataset.

Inline CSS and a few lines of plain JavaScript (sorting by a click on a column
header, a text filter, "flagged only" / "errors only" switches); no framework,
no CDN, no server. The pictures are linked relatively (``images/…png``), so the
output folder can be copied or opened from disk anywhere. Without JavaScript
the page still shows every table, unsorted and unfiltered.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from utils.report.card import DatasetCard, format_triple, format_volume, label_display_name
from utils.report.findings import FLAG_CSS, AuditFindings, audit_flags_html, findings_section
from utils.report.review_page import REVIEW_CSS, REVIEW_JS, review_cell, review_controls, review_data_script
from utils.report.sample import SampleRecord
from utils.review.review_file import QcReview

__all__ = ["render_index"]

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.2em 2em;color:#1d1d1f;background:#fafafa}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.15em;margin:1.4em 0 .4em}
table{border-collapse:collapse;background:#fff;margin:.3em 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f0f0f3;position:sticky;top:0;z-index:1}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th[data-dir=asc]::after{content:" \\25B2"}table.sortable th[data-dir=desc]::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums}
img.thumb{height:140px;display:block;background:#181818}
td.id{white-space:nowrap}
.flag{display:inline-block;border-radius:3px;padding:0 5px;margin:1px;background:#fde8c8;color:#6b3d00;font-size:12px;white-space:nowrap}
.flag.error{background:#f8d0d0;color:#7a0000;white-space:normal}
.steps{font-size:12px;color:#555}
.labels{max-width:22em;font-size:12px}
.meta{color:#555}.controls{margin:.5em 0}.controls input[type=search]{width:22em;padding:3px}
tr.error td{background:#fff4f4}
.note{color:#555;font-size:12px;max-width:60em}
.cards{display:flex;flex-wrap:wrap;gap:0 2em;align-items:flex-start}.cards .note{max-width:26em}.cards table{font-size:13px}
"""

_JS = """
(function(){
  function key(row,i){var c=row.cells[i];if(!c)return '';var v=c.getAttribute('data-sort');if(v===null)v=c.textContent.trim();
    var n=Number(v);return (v!==''&&!isNaN(n))?n:v.toLowerCase();}
  document.querySelectorAll('table.sortable').forEach(function(table){
    var body=table.tBodies[0];
    table.tHead.addEventListener('click',function(ev){
      var th=ev.target.closest('th');if(!th)return;var i=th.cellIndex,asc=th.getAttribute('data-dir')!=='asc';
      Array.prototype.forEach.call(th.parentNode.cells,function(h){h.removeAttribute('data-dir');});
      th.setAttribute('data-dir',asc?'asc':'desc');
      var rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){var x=key(a,i),y=key(b,i),c;
        if(typeof x==='number'&&typeof y==='number')c=x-y;else c=String(x).localeCompare(String(y),undefined,{numeric:true});
        return asc?c:-c;});
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
  var table=document.getElementById('samples');if(!table)return;
  var rows=Array.prototype.slice.call(table.tBodies[0].rows);
  var text=document.getElementById('filter'),flagged=document.getElementById('flagged'),errors=document.getElementById('errors'),shown=document.getElementById('shown');
  function rowText(r){return Array.prototype.filter.call(r.cells,function(c){return !c.classList.contains('review');})
    .map(function(c){return c.textContent;}).join(' ')+(window.qcReviewText?window.qcReviewText(r):'');}
  function apply(){var t=text.value.toLowerCase(),n=0;
    rows.forEach(function(r){var ok=(!t||rowText(r).toLowerCase().indexOf(t)>=0)&&(!flagged.checked||r.getAttribute('data-flags')!=='0')
      &&(!errors.checked||r.classList.contains('error'))&&(!window.qcReviewFilter||window.qcReviewFilter(r));r.hidden=!ok;if(ok)n++;});
    shown.textContent=n+' of '+rows.length+' samples shown';}
  [text,flagged,errors].forEach(function(e){e.addEventListener('input',apply);e.addEventListener('change',apply);});
  apply();
})();
"""


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, css: str = "", num_from: int | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            cls = ' class="num"' if num_from is not None and i >= num_from else ""
            cells.append(f"<td{cls}>{escape(str(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cls = f' class="{css}"' if css else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>"


def _labels_cell(record: SampleRecord, names: dict[int, str]) -> str:
    if not record.has_mask:
        return '<td class="labels">no mask</td>'
    items = [f"{lab}&nbsp;{escape(names.get(lab, '?'))}" for lab in sorted(record.voxels)]
    return f'<td class="labels" data-sort="{len(items)}">{", ".join(items) or "none"}</td>'


def _sample_row(
    record: SampleRecord, group_by: Sequence[str], names: dict[int, str], review: dict[str, str] | None = None, audit: AuditFindings | None = None
) -> str:
    cells = []
    if record.image:
        src = escape(quote(record.image))
        cells.append(f'<td><a href="{src}" target="_blank"><img class="thumb" src="{src}" loading="lazy" alt="{escape(record.id)}"></a></td>')
    else:
        cells.append("<td></td>")
    cells.append(f'<td class="id" title="{escape(record.path)}">{escape(record.id)}</td>')
    cells.append(review_cell(review))
    cells += [f"<td>{escape('' if record.group.get(c) is None else str(record.group.get(c)))}</td>" for c in group_by]
    audit_flags = audit.flags(record.path, record.id) if audit is not None else []
    if record.error:
        cells += ["<td></td>"] * 4
        cells.append(f'<td><span class="flag error">error: {escape(record.error)}</span>{audit_flags_html(audit_flags)}</td>')
    else:
        n_vox = record.shape[0] * record.shape[1] * record.shape[2]
        cells.append(f'<td class="num" data-sort="{n_vox}">{"×".join(str(n) for n in record.shape)}</td>')
        cells.append(f'<td class="num" data-sort="{min(record.spacing_mm):.6g}">{"×".join(f"{s:.2f}" for s in record.spacing_mm)}</td>')
        cells.append(f"<td>{escape(record.orientation)}</td>")
        cells.append(_labels_cell(record, names))
        flags = "".join(f'<span class="flag" title="{escape(text)}">{escape(code)}</span>' for code, text in record.flags)
        cells.append(f'<td data-sort="{len(record.flags) + len(audit_flags)}">{flags}{audit_flags_html(audit_flags)}</td>')
    cells.append(f'<td class="steps">{escape(", ".join(record.history))}</td>')
    cls = ' class="error"' if record.error else ""
    n_flags = len(record.flags) + len(audit_flags) + (1 if record.error else 0)
    return f'<tr{cls} data-flags="{n_flags}" data-id="{escape(record.id)}">' + "".join(cells) + "</tr>"


def render_index(
    card: DatasetCard,
    records: Sequence[SampleRecord],
    names: dict[int, str],
    *,
    digest: str = "",
    review: QcReview | None = None,
    diff_html: str = "",
    audit: AuditFindings | None = None,
) -> str:
    """The whole page.

    Parameters
    ----------
    card : DatasetCard
        Summary, resolution and label tables.
    records : sequence of SampleRecord
        One row each (failed samples included, with their error).
    names : dict
        ``{label: short name}`` for the labels column.
    digest : str
        :func:`utils.review.review_file.report_digest` of the card: keys the browser's review marks.
    review : QcReview, optional
        The review file found: its verdicts are shown (:mod:`utils.report.review_page`).
    diff_html : str
        A release-diff section (:mod:`utils.report.diff_section`), shown above the samples.
    audit : AuditFindings, optional
        The dataset audit's findings: a findings section and code flags in the sample rows.
    """
    entries = {sid: e.to_dict() for sid, e in review.entries.items()} if review is not None else {}
    res = card.resolution
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>QC report: {escape(card.title)}</title>",
        f"<style>{_CSS}{REVIEW_CSS}{FLAG_CSS if audit is not None else ''}</style></head><body>",
        f"<h1>QC report: {escape(card.title)}</h1>",
        f'<p class="meta">{card.n_samples} samples, {card.n_with_mask} with a mask'
        + (f', <b>{card.n_failed} not readable</b>' if card.n_failed else "")
        + f" · modality {escape(card.modality)} · pictures: {escape(card.window)}"
        + (f" · label names from <code>{escape(card.label_map)}</code>" if card.label_map else "")
        + "</p>",
        '<p class="note">Pictures: radiological convention — axial and coronal views show the patient\'s left on the '
        "picture's right; anterior is up in the axial view, superior is up in the coronal and sagittal views, anterior "
        "is left in the sagittal view. Each view passes through the centre of the labelled region. Click a picture to "
        "open it at full size, a column header to sort.</p>",
        '<div class="cards"><div>',
        "<h2>Dataset summary</h2>",
        _table([*card.group_by, "samples"], [[r.get(c, "") for c in card.group_by] + [r["samples"]] for r in card.summary], num_from=len(card.group_by)),
        "<h2>Resolution details</h2>",
        _table(
            ["Dataset Statistics", "spacing (mm)", "size"],
            [[s, format_triple(res["spacing_mm"][s]), format_triple(res["size"][s], integers=True)] for s in ("min", "median", "max")],
        ),
        f'<p class="note">Over the {res["n"]} readable samples, along the stored array axes (i, j, k), each axis on its own.</p>',
        "</div><div>",
        "<h2>Label information statistics</h2>",
        _table(
            ["Label", "Name", "Cases", "Percentage", "Max Volume (cm³)", "Min Volume (cm³)", "Median Volume (cm³)"],
            [
                [r["index"], label_display_name(r), r["cases"], f"{r['percentage']:.2f}%", format_volume(r["max_cm3"]),
                 format_volume(r["min_cm3"]), format_volume(r["median_cm3"])]  # fmt: skip
                for r in card.labels
            ],
            css="sortable",
            num_from=2,
        ),
        f'<p class="note">Cases: samples whose mask holds the label; percentage of the {card.n_with_mask} samples with a '
        "mask. Volume = voxel count × voxel volume, over the cases.</p>",
        "</div></div>",
        diff_html,
        findings_section(audit) if audit is not None else "",
        "<h2>Samples</h2>",
        review_controls(review, digest, {r.id for r in records}),
        '<div class="controls"><input type="search" id="filter" placeholder="filter: ID, subset, label, flag, step…"> '
        '<label><input type="checkbox" id="flagged"> flagged only</label> '
        '<label><input type="checkbox" id="errors"> errors only</label> '
        f'<span id="shown" class="meta">{len(records)} samples</span></div>',
        '<table id="samples" class="sortable"><thead><tr><th>picture</th><th>ID</th><th>review</th>'
        + "".join(f"<th>{escape(c)}</th>" for c in card.group_by)
        + "<th>shape</th><th>spacing (mm)</th><th>orientation</th><th>labels present</th><th>flags</th><th>history</th></tr></thead><tbody>",
        *(_sample_row(r, card.group_by, names, entries.get(r.id), audit) for r in records),
        "</tbody></table>",
        '<p class="note">Flags (hover for details): reoriented / resampled — routine 02 moved the mask onto the volume '
        "grid; qform_sform — the archive file's qform and sform disagree; warnings — other warnings in the info yaml; "
        "unknown_labels — mask values missing from the label map; small_regions — rows in the small-region manifest; "
        "oblique — voxel axes not aligned with the patient axes; no_mask; empty_mask."
        + (" Coloured codes: the audit's findings on the sample (red error, orange warning, blue info; dashed: the sample is "
           "the other one of a finding, e.g. the original of a duplicate), listed in the audit findings table above." if audit is not None else "")
        + "</p>",
        review_data_script(card.dataset, digest, review),
        f"<script>{_JS}</script>",
        f"<script>{REVIEW_JS}</script>",
        "</body></html>",
        "",
    ]
    return "\n".join(parts)
