"""The audit's findings in the QC report (utils/qc_report.py, utils/report/findings.py): the findings table, per-sample
code flags, the default location of audit.json, a stale audit; and the page in a real headless Chromium."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_script
from verse.audit_demo import read_image, sample_folder, write_image

AUDIT, REPORT = "utils/audit_dataset.py", "utils/qc_report.py"
SAMPLES = ("VerSe19/train/verse004", "VerSe19/val/verse010", "VerSe20/train/verse505", "VerSe20/test/gl017")


@pytest.fixture(scope="module")
def dataset(verse_demo, tmp_path_factory) -> Path:
    """ROOT with four demo samples (verse004 with swapped labels 16/20, gl017 a copy of verse010 under another patient),
    its audit in ROOT/audit (the default place) and the QC report in ROOT/qc."""
    root = tmp_path_factory.mktemp("audit_report")
    for rel in SAMPLES[:3]:
        shutil.copytree(verse_demo / "grouped" / rel, root / "grouped" / rel)
    folder, sid = sample_folder(root / "grouped", "VerSe19/train/verse004")
    mask, affine, img = read_image(folder, sid, "mask")
    mask[mask == 16], mask[mask == 20] = 20, 16
    write_image(folder, sid, "mask", mask, affine, img)
    copy = root / "grouped/VerSe20/test/gl017"
    copy.mkdir(parents=True)
    for name in ("volume", "mask", "info"):
        ext = "yaml" if name == "info" else "nii.gz"
        shutil.copyfile(root / f"grouped/VerSe19/val/verse010/verse010_{name}.{ext}", copy / f"gl017_{name}.{ext}")
    info = (copy / "gl017_info.yaml").read_text().replace("ID: verse010", "ID: gl017").replace("subject: verse010", "subject: gl017")
    info = info.replace("subset: val", "subset: test")
    (copy / "gl017_info.yaml").write_text(info)
    assert run_script(AUDIT, "--root_dir", root / "grouped", "--output_dir", root / "audit", "--dataset", "verse", "--no_pbar") == 1
    assert run_script(REPORT, "--root_dir", root / "grouped", "--output_dir", root / "qc", "--dataset", "verse", "--no_pbar") == 0
    return root


class _Rows(HTMLParser):
    """Text of every cell and the flag spans (class, text) of each row of one table."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id, self.inside, self.rows, self.flags = table_id, False, [], []
        self._cell: list[str] | None = None
        self._span: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.inside = a.get("id") == self.table_id
        elif self.inside and tag == "tr":
            self.rows.append([])
            self.flags.append([])
        elif self.inside and tag == "td":
            self._cell = []
        elif self.inside and tag == "span" and "flag" in (a.get("class") or ""):
            self._span = a["class"]
            self.flags[-1].append([a["class"], ""])

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False
        elif self.inside and tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "span":
            self._span = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._span is not None and self.flags:
            self.flags[-1][-1][1] += data


def parse(html: str, table_id: str) -> _Rows:
    rows = _Rows(table_id)
    rows.feed(html)
    return rows


def test_findings_table_lists_every_finding_of_the_audit(dataset):
    html = (dataset / "qc/index.html").read_text(encoding="utf-8")
    report = json.loads((dataset / "audit/audit.json").read_text())
    table = parse(html, "findings")
    body = [r for r in table.rows if r]
    assert [(r[0], r[1], r[2]) for r in body] == [(f["severity"], f["code"], f["sample"]) for f in report["findings"]]
    assert {"LABEL_ORDER", "DUPLICATE_ACROSS_PATIENTS", "DUPLICATE_ACROSS_SUBSETS"} <= {r[1] for r in body}
    order = next(r for r in body if r[1] == "LABEL_ORDER")
    assert "16 (T9)" in order[3] and order[4].startswith("Look at the sample in the QC report")
    assert "audit findings" in html.lower() and "from <code>" in html


def test_each_sample_row_carries_its_codes_as_flags_coloured_by_severity(dataset):
    html = (dataset / "qc/index.html").read_text(encoding="utf-8")
    rows = parse(html, "samples")
    flags = {r[1]: f for r, f in zip(rows.rows, rows.flags) if r}
    assert ["flag audit-error", "LABEL_ORDER"] in flags["verse004"]
    assert ["flag audit-error", "DUPLICATE_ACROSS_PATIENTS"] in flags["gl017"]
    assert ["flag audit-related", "DUPLICATE_ACROSS_PATIENTS"] in flags["verse010"]  # the original of the copy
    assert not [f for f in flags["verse505"] if "audit-error" in f[0] or "audit-warning" in f[0]]
    n_flags = {sid: int(n) for n, sid in re.findall(r'<tr[^>]*data-flags="(\d+)"[^>]*>.*?<td class="id"[^>]*>([^<]+)</td>', html)}
    assert n_flags["verse004"] >= 1 and n_flags["verse505"] == len(flags["verse505"])  # the "flagged only" switch counts them


def test_no_audit_no_section_and_an_explicit_audit_file(dataset, tmp_path, caplog):
    grouped = tmp_path / "grouped"
    shutil.copytree(dataset / "grouped/VerSe20/train/verse505", grouped / "VerSe20/train/verse505")
    assert run_script(REPORT, "--root_dir", grouped, "--output_dir", tmp_path / "qc", "--dataset", "verse", "--no_pbar") == 0
    assert 'id="findings"' not in (tmp_path / "qc/index.html").read_text() and "audit-" not in (tmp_path / "qc/index.html").read_text()
    # another root: findings are matched by sample ID
    assert run_script(REPORT, "--root_dir", grouped, "--output_dir", tmp_path / "qc2", "--dataset", "verse", "--no_pbar",
                      "--audit", dataset / "audit/audit.json") == 0  # fmt: skip
    assert 'id="findings"' in (tmp_path / "qc2/index.html").read_text()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"findings": []}))
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert run_script(REPORT, "--root_dir", grouped, "--output_dir", tmp_path / "qc3", "--no_pbar", "--audit", bad) == 2
    assert "not an audit.json of utils/audit_dataset.py" in caplog.text


def test_a_sample_changed_after_the_audit_is_named_in_the_page(dataset, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(dataset / "grouped", root / "grouped")
    shutil.copytree(dataset / "audit", root / "audit")
    folder, sid = sample_folder(root / "grouped", "VerSe20/train/verse505")
    volume, affine, img = read_image(folder, sid, "volume")
    write_image(folder, sid, "volume", volume + np.float32(1.0), affine, img)
    assert run_script(REPORT, "--root_dir", root / "grouped", "--output_dir", root / "qc", "--dataset", "verse", "--no_pbar") == 0
    assert "1 samples changed since the audit</b> (VerSe20/train/verse505)" in (root / "qc/index.html").read_text()


# ---------------------------------------------------------------------------------------------------------------------
# in a browser (skipped without Chromium), as tests/test_qc_report_browser.py

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars"]  # fmt: skip

#: Uses the page's own controls and writes what it sees into <body> attributes.
PROBE = """<script>
var f=document.getElementById('filter');f.value='LABEL_ORDER';f.dispatchEvent(new Event('input'));
document.body.setAttribute('data-by-code',document.getElementById('shown').textContent);
f.value='';f.dispatchEvent(new Event('input'));
var g=document.getElementById('flagged');g.checked=true;g.dispatchEvent(new Event('change'));
document.body.setAttribute('data-flagged',document.getElementById('shown').textContent);
var th=Array.prototype.find.call(document.querySelectorAll('#findings th'),function(h){return h.textContent==='sample';});
th.click();
var ids=Array.prototype.map.call(document.querySelectorAll('#findings tbody tr'),function(r){return r.cells[2].textContent;});
document.body.setAttribute('data-findings-sorted',ids.join(','));
var shown=Array.prototype.filter.call(document.querySelectorAll('#findings tbody tr'),function(r){return r.offsetParent!==null;}).length;
document.body.setAttribute('data-findings-visible',String(shown));
</script></body>"""


@pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (apt-get install chromium)")
def test_findings_and_flags_work_in_chromium(dataset, tmp_path):
    page = dataset / "qc" / "probe.html"
    page.write_text((dataset / "qc/index.html").read_text(encoding="utf-8").replace("</body>", PROBE), encoding="utf-8")
    result = subprocess.run([BROWSER, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    dom = result.stdout
    report = json.loads((dataset / "audit/audit.json").read_text())
    assert 'data-by-code="1 of 4 samples shown"' in dom, dom[-3000:]
    flagged = {f["path"] for f in report["findings"]} | {r for f in report["findings"] for r in f["related"]}
    assert f'data-flagged="{len(flagged)} of 4 samples shown"' in dom
    ids = re.search(r'data-findings-sorted="([^"]*)"', dom).group(1).split(",")
    assert ids == sorted(f["sample"] for f in report["findings"]) and f'data-findings-visible="{len(ids)}"' in dom
