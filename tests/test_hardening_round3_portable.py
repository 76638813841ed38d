"""A portable dataset (issue 18): a finished root copied elsewhere is the same dataset.

The ESO demo root (archive, descriptor, grouped, export, and a QC report) is built, copied the way
``cp -r`` copies (new modification times, hard links become copies) and the original is moved away.
Then: no file we wrote names an absolute path (the SAT-DS jsonl, whose format needs absolute paths,
excepted), re-running ``run_pipeline.sh`` on the copy finds every step up to date (only the SAT-DS
paths follow the new place), and every export is valid where it now lies.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

from tests.conftest import run_script
from tests.mini_archives import file_states, leftover_temporaries, run_pipeline_script
from tests.test_export import nnunet_integrity_problems

SATDS = "export/satds/ESO_split01_TJ/ESO.jsonl"
TEXT_SUFFIXES = {".yaml", ".json", ".jsonl", ".md", ".html", ".txt", ".csv"}


def files_naming(folder: Path, needle: str) -> list[str]:
    """Files below ``folder`` whose text (xlsx: any part of the zip) holds ``needle``."""
    found = []
    raw = needle.encode()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        if path.suffix in TEXT_SUFFIXES:
            hit = raw in path.read_bytes()
        elif path.suffix == ".xlsx":
            with zipfile.ZipFile(path) as z:
                hit = any(raw in z.read(n) for n in z.namelist())
        else:
            continue
        if hit:
            found.append(path.relative_to(folder).as_posix())
    return found


def test_a_copied_finished_root_is_up_to_date_and_its_exports_are_valid(tmp_path):
    first = tmp_path / "first" / "eso"
    assert run_script("demo/make_demo_archive.py", "eso", first) == 0
    run = run_pipeline_script("eso", first)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run_script("utils/qc_report.py", "--root_dir", first / "grouped", "--output_dir", first / "qc", "--dataset", "eso", "--no_pbar") == 0

    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(first, copy, symlinks=True, copy_function=shutil.copyfile)  # as `cp -r`: new mtimes, no hard links
    moved = tmp_path / "first_moved_away"
    first.parent.rename(moved)

    # no file we wrote names where the dataset was, or where it is (the SAT-DS jsonl excepted)
    assert files_naming(copy, str(tmp_path)) == [SATDS]
    assert files_naming(copy, str(first)) == [SATDS]

    before = file_states(copy)
    again = run_pipeline_script("eso", copy)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Traceback" not in again.stderr
    assert "0 samples written" in again.stderr, "routine 02 found every sample up to date (same bytes, new mtimes)"
    after = file_states(copy)
    assert sorted(after) == sorted(before)
    assert [k for k in before if after[k][0] != before[k][0]] == [SATDS], "only the SAT-DS paths follow the new place"
    assert sorted(k for k in before if after[k][1] != before[k][1]) == [SATDS, "grouped/dataset_manifest.xlsx"]
    assert files_naming(copy, str(moved)) == [] and files_naming(copy, str(first)) == []
    assert files_naming(copy, str(copy)) == [SATDS]
    assert leftover_temporaries(copy) == []

    # every export is valid where it now lies
    nnunet = copy / "export/nnUNet_raw/Dataset503_ESO_split01_TJ"
    assert nnunet_integrity_problems(nnunet) == []
    datalist_path = copy / "export/monai/ESO_split01_TJ/datalist.json"
    datalist = json.loads(datalist_path.read_text())
    items = [i for key in ("training", "validation", "test") for i in datalist.get(key, [])]
    assert items
    for item in items:
        for key in ("image", "label"):
            if key in item:
                target = Path(os.path.normpath(datalist_path.parent / item[key]))
                assert target.is_file() and target.is_relative_to(copy / "grouped"), item[key]
    for line in (copy / SATDS).read_text().splitlines():
        record = json.loads(line)
        for key in ("image", "mask"):
            assert Path(record[key]).is_file() and Path(record[key]).is_relative_to(copy), record[key]
    card = json.loads((copy / "qc/dataset_card.json").read_text())
    assert card["label_map"] == "../descriptor/label_map.yaml"
    assert all((copy / "qc" / s["picture"]).is_file() for s in card["samples"] if s.get("picture"))
