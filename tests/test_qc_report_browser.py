"""The QC report page in a real headless browser (Chromium). Skipped when no Chromium is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_script
from tests.test_qc_report import phantom, write_sample
from utils.archive.synthetic import affine_for

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (apt-get install chromium)")

#: Flags for a headless Chromium on a machine without network or display (as root in a container).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars"]  # fmt: skip

#: Appended to a copy of the page: uses the page's own controls, writes what it sees into <body> attributes.
PROBE = """<script>
var th=Array.prototype.find.call(document.querySelectorAll('#samples th'),function(h){return h.textContent==='ID';});
th.click();th.click();
var ids=Array.prototype.map.call(document.querySelectorAll('#samples tbody tr'),function(r){return r.cells[1].textContent;});
document.body.setAttribute('data-sorted',ids.join(','));
var f=document.getElementById('filter');f.value='no_mask';f.dispatchEvent(new Event('input'));
document.body.setAttribute('data-filtered',document.getElementById('shown').textContent);
f.value='';f.dispatchEvent(new Event('input'));
var e=document.getElementById('errors');e.checked=true;e.dispatchEvent(new Event('change'));
document.body.setAttribute('data-errors',document.getElementById('shown').textContent);
Array.prototype.forEach.call(document.images,function(i){i.loading='eager';});
window.addEventListener('load',function(){
  var ok=Array.prototype.filter.call(document.images,function(i){return i.complete&&i.naturalWidth>0;}).length;
  document.body.setAttribute('data-images',String(ok));});
</script></body>"""


def browser(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([BROWSER, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    root = tmp / "grouped"
    volume, mask, affine = phantom()
    for sid in ("b1", "a2", "c3"):
        write_sample(root, f"A/train/{sid}", volume, mask, affine, archive="A", subset="train")
    write_sample(root, "A/test/nomask", volume, None, affine, archive="A", subset="test")
    broken = write_sample(root, "A/test/broken", np.zeros((4, 4, 4)), None, affine_for("LPS"), archive="A", subset="test")
    (broken / "broken_volume.nii.gz").write_bytes(b"\x1f\x8b broken")
    out = tmp / "qc"
    assert run_script("utils/qc_report.py", "--root_dir", root, "--output_dir", out, "--dataset", "verse", "--no_pbar") == 1
    return out


def test_page_runs_its_script_sorts_and_filters_in_chromium(report, tmp_path):
    probe = report / "probe.html"  # beside index.html, so the relative picture links resolve
    probe.write_text((report / "index.html").read_text(encoding="utf-8").replace("</body>", PROBE), encoding="utf-8")
    result = browser(tmp_path, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    dom = result.stdout
    assert re.search(r'data-sorted="nomask,c3,broken,b1,a2"', dom), dom[-2000:]
    assert 'data-filtered="1 of 5 samples shown"' in dom
    assert 'data-errors="1 of 5 samples shown"' in dom
    assert 'data-images="4"' in dom  # every picture the page shows was loaded from disk


def test_screenshot_of_the_page(report, tmp_path):
    shot = tmp_path / "shot.png"
    result = browser(tmp_path, "--window-size=1200,900", f"--screenshot={shot}", (report / "index.html").as_uri())
    assert shot.is_file() and shot.stat().st_size > 10_000, result.stderr[-2000:]
