"""The demo-archive writer shared by the three datasets."""

from __future__ import annotations

import pytest

from tests.conftest import run_script


@pytest.mark.parametrize("dataset, marker", [("verse", "VerSe19_participants.xlsx"), ("nme", None), ("eso", "data_meta_tongji.xlsx")])
def test_each_dataset_demo_archive_is_written(dataset, marker, tmp_path):
    assert run_script("demo/make_demo_archive.py", dataset, tmp_path) == 0
    archive = tmp_path / "archive"
    assert len(list(archive.rglob("*.nii.gz"))) >= 10
    if marker:
        assert (archive / marker).is_file()


def test_broken_is_nme_only(tmp_path):
    with pytest.raises(SystemExit) as exc:
        run_script("demo/make_demo_archive.py", "verse", tmp_path, "--broken")
    assert exc.value.code == 2
    assert run_script("demo/make_demo_archive.py", "nme", tmp_path, "--broken") == 0
