"""The review controls of the QC page in headless Chromium: mark, download, load. Skipped when no Chromium is installed.

Chromium is driven through the DevTools protocol over a pipe (tests/cdp_pipe.py): real mouse clicks,
typed text, a real download into a folder and a real file chosen in the page's file input.
Set QC_REVIEW_SCREENSHOT=path to also save the screenshot of the controls used in docs/qc-review.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import run_script
from tests.test_qc_report import phantom, write_sample
from utils.review.review_file import dump_review, load_review

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (apt-get install chromium)")


def build(tmp: Path) -> Path:
    root = tmp / "grouped"
    volume, mask, affine = phantom()
    for sid in ("b1", "a2", "c3"):
        write_sample(root, f"A/train/{sid}", volume, mask, affine, archive="A", subset="train")
    write_sample(root, "A/test/nomask", volume, None, affine, archive="A", subset="test")
    return root


def report(root: Path, out: Path, *extra: object) -> Path:
    assert run_script("utils/qc_report.py", "--root_dir", root, "--output_dir", out, "--dataset", "verse", "--no_pbar", *extra) == 0
    return out / "index.html"


def marks(page) -> dict[str, list]:
    """Sample ID -> [verdict or None, note] as the page shows them."""
    return page.evaluate(
        "(function(){var o={};document.querySelectorAll('#samples tbody tr').forEach(function(r){"
        "var on=r.querySelector('td.review button.on');o[r.getAttribute('data-id')]=[on?on.getAttribute('data-v'):null,"
        "r.querySelector('input.note').value];});return o;})()"
    )


def wait_for_file(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert time.monotonic() < deadline, f"no download {path}"
        time.sleep(0.05)


def test_mark_two_samples_download_the_review_and_load_it_back(tmp_path):
    from tests.cdp_pipe import Browser

    index = report(build(tmp_path), tmp_path / "qc")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with Browser(BROWSER, tmp_path / "profile") as page:
        page.allow_downloads(downloads)
        page.open(index.as_uri())
        assert marks(page) == {"a2": [None, ""], "b1": [None, ""], "c3": [None, ""], "nomask": [None, ""]}
        page.type_text("#reviewer", "A. Reviewer")
        page.click('tr[data-id="b1"] button[data-v="fail"]')
        page.type_text('tr[data-id="b1"] input.note', 'L4 mislabelled: "see slice 12"')
        page.click('tr[data-id="c3"] button[data-v="pass"]')
        page.click('tr[data-id="a2"] button[data-v="unsure"]')
        page.click('tr[data-id="a2"] button[data-v="unsure"]')  # a second click clears the verdict
        expected = {"a2": [None, ""], "b1": ["fail", 'L4 mislabelled: "see slice 12"'], "c3": ["pass", ""], "nomask": [None, ""]}
        assert marks(page) == expected
        page.screenshot(tmp_path / "controls.png", "#review-bar", height=560)
        if os.environ.get("QC_REVIEW_SCREENSHOT"):
            shutil.copyfile(tmp_path / "controls.png", os.environ["QC_REVIEW_SCREENSHOT"])
        page.evaluate("(function(){var s=document.getElementById('verdict-filter');s.value='fail';s.dispatchEvent(new Event('change'));})()")
        assert page.evaluate("document.getElementById('shown').textContent") == "1 of 4 samples shown"
        page.evaluate("(function(){var s=document.getElementById('verdict-filter');s.value='';s.dispatchEvent(new Event('change'));})()")

        page.click("#review-download")
        saved = downloads / "qc_review.yaml"
        wait_for_file(saved)
        review = load_review(saved)  # the documented format, validated by the loader the routines use
        today = dt.date.today()
        assert {sid: e.to_dict() for sid, e in review.entries.items()} == {
            "b1": {"verdict": "fail", "note": 'L4 mislabelled: "see slice 12"', "reviewer": "A. Reviewer", "date": today.isoformat()},
            "c3": {"verdict": "pass", "note": "", "reviewer": "A. Reviewer", "date": today.isoformat()},
        }
        card = (tmp_path / "qc/dataset_card.json").read_bytes()
        assert review.dataset == "verse" and review.report_digest == "sha256:" + hashlib.sha256(card).hexdigest()
        assert saved.read_text(encoding="utf-8") == dump_review(review)  # the page and the library write the same bytes

        page.reload()  # the marks live in localStorage, keyed by the report
        assert marks(page) == expected
        page.click("#review-reset")
        assert marks(page)["b1"] == [None, ""]
        page.evaluate("document.getElementById('review-message').textContent = ''")  # a stale message must not satisfy the wait
        page.choose_file("#review-load", saved)
        page.wait_for("document.getElementById('review-message').textContent.indexOf('loaded 2 marks') === 0")
        assert marks(page) == expected

        flow = tmp_path / "flow.yaml"
        flow.write_text('# written by hand\nreviews:\n  a2: {verdict: unsure, note: "motion?", reviewer: cb, date: 2026-11-24}\n'
                        '  zz9: {verdict: fail, date: 2026-11-01}\n')  # fmt: skip
        page.evaluate("document.getElementById('review-message').textContent = ''")  # a stale message must not satisfy the wait
        page.choose_file("#review-load", flow)
        page.wait_for("document.getElementById('review-message').textContent.indexOf('loaded 2 marks') === 0")
        assert "1 of them name samples not in this page" in page.evaluate("document.getElementById('review-message').textContent")
        assert marks(page)["a2"] == ["unsure", "motion?"] and marks(page)["b1"][0] == "fail"

        bad = tmp_path / "bad.yaml"
        bad.write_text("reviews:\n  c3: {verdict: FAIL, date: 2026-11-24}\n")
        page.evaluate("document.getElementById('review-message').textContent = ''")  # a stale message must not satisfy the wait
        page.choose_file("#review-load", bad)
        page.wait_for("document.getElementById('review-message').className === 'error'")
        assert 'verdict "FAIL" is not one of pass, fail, unsure' in page.evaluate("document.getElementById('review-message').textContent")
        assert marks(page)["c3"] == ["pass", ""]  # nothing of the bad file was loaded
    assert (tmp_path / "controls.png").stat().st_size > 5_000


def test_the_report_shows_the_verdicts_of_the_review_file_it_finds(tmp_path):
    from tests.cdp_pipe import Browser

    root = build(tmp_path)
    (tmp_path / "descriptor").mkdir()
    (tmp_path / "descriptor/qc_review.yaml").write_text(
        "version: 1\ndataset: verse\nreviews:\n  a2: {verdict: fail, note: 'mask shifted <b>', reviewer: ab, date: 2026-11-24}\n"
    )
    index = report(root, tmp_path / "qc")
    html = index.read_text()
    assert "mask shifted &lt;b&gt;" in html and "<b>'" not in html  # the note is data, never markup
    with Browser(BROWSER, tmp_path / "profile") as page:
        page.open(index.as_uri())
        assert marks(page)["a2"] == ["fail", "mask shifted <b>"] and marks(page)["b1"] == [None, ""]
        assert page.evaluate("document.querySelector('tr[data-id=\"a2\"]').getAttribute('data-verdict')") == "fail"
