"""Release diff (utils/diff_datasets.py, utils/diff): two versions of a demo dataset built for it.

Old release: s01 … s07 and s10. New release: s01 unchanged; s02 removed; s08 added; s03 renamed s09
(same voxels); s04 with 6 voxels of label 1 relabelled 2; s05 with 7 volume voxels changed by +100;
s06 with sex F -> M (info yaml and manifest); s07 rewritten by nibabel's own writer (other bytes, same
voxels: unchanged); s10 moved 5 mm (same voxels, another grid: Dice not computed).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import run_script
from utils.dataset.manifest import build_dataset_manifest
from utils.diff.compare import SamplePair, compare_pair, joint_label_histogram
from utils.files.nifti_io import save_nifti
from utils.files.sample_info import SampleDir, write_info
from utils.files.spreadsheet import read_sheet, sheet_names
from utils.archive.synthetic import affine_for

TOOL = "utils/diff_datasets.py"
SPACING = (0.9, 1.1, 2.5)
AFFINE = affine_for("PIR", SPACING, origin=(12.0, -30.0, 55.0), oblique_deg=5.0)
VOXEL_MM3 = 0.9 * 1.1 * 2.5  # a rotation does not change the voxel volume
SHAPE = (12, 10, 6)
LABEL1_BOX = (slice(2, 6), slice(2, 5), slice(1, 4))  # 4 x 3 x 3 = 36 voxels
LABEL2_BOX = (slice(7, 10), slice(5, 9), slice(2, 5))  # 3 x 4 x 3 = 36 voxels
RELABELLED = 6
VOLUME_CHANGED = 7
INFO_COLUMNS = ["subject", "sex", "age", "subset"]


def arrays(seed: int) -> tuple[np.ndarray, np.ndarray]:
    volume = np.random.default_rng(seed).normal(0, 100, SHAPE).astype(np.float32)
    mask = np.zeros(SHAPE, np.uint8)
    mask[LABEL1_BOX] = 1
    mask[LABEL2_BOX] = 2
    return volume, mask


def write_sample(grouped: Path, sid: str, volume: np.ndarray, mask: np.ndarray, affine=AFFINE, **info) -> SampleDir:
    sample = SampleDir(grouped / info.get("subset", "train") / sid)
    save_nifti(sample.volume, volume, affine, dtype=np.float32)
    save_nifti(sample.mask, mask, affine, dtype=np.uint8)
    write_info(sample.info, {"ID": sid, "subject": f"p{sid}", "sex": "F", "age": 50, "subset": "train", **info})
    return sample


def make_releases(root: Path) -> tuple[Path, Path]:
    old, new = root / "old/grouped", root / "new/grouped"
    for i in (1, 2, 3, 4, 5, 6, 7, 10):
        write_sample(old, f"s{i:02d}", *arrays(i))
    for i in (1, 4, 5, 6, 7, 10):
        write_sample(new, f"s{i:02d}", *arrays(i))
    write_sample(new, "s08", *arrays(8))
    write_sample(new, "s09", *arrays(3), subject="ps03")  # s03 under another ID
    volume, mask = arrays(4)
    flat = np.flatnonzero(mask.ravel(order="F") == 1)[:RELABELLED]
    idx = np.unravel_index(flat, SHAPE, order="F")
    mask[idx] = 2
    write_sample(new, "s04", volume, mask)
    volume, mask = arrays(5)
    volume.reshape(-1)[:VOLUME_CHANGED] += 100.0
    write_sample(new, "s05", volume, mask)
    write_sample(new, "s06", *arrays(6), sex="M")
    for name in ("s07_volume.nii.gz", "s07_mask.nii.gz"):  # nibabel's zlib writer: other bytes, same voxels
        img = nib.load(new / "train/s07" / name)
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine, img.header), new / "train/s07" / name)
    moved = AFFINE.copy()
    moved[:3, 3] += (5.0, 0.0, 0.0)
    write_sample(new, "s10", *arrays(10), affine=moved)
    for grouped in (old, new):
        assert not build_dataset_manifest(grouped, grouped / "dataset_manifest.xlsx", INFO_COLUMNS, show_progress=False).errors
    return old, new


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> tuple[Path, Path]:
    return make_releases(tmp_path_factory.mktemp("releases"))


@pytest.fixture(scope="module")
def diff(releases, tmp_path_factory) -> tuple[dict, Path]:
    old, new = releases
    out = tmp_path_factory.mktemp("diff") / "diff.xlsx"
    assert run_script(TOOL, "--old", old, "--new", new, "--output_file", out, "--no_pbar") == 0
    return json.loads(out.with_suffix(".json").read_text()), out


def by_id(data: dict) -> dict[str, dict]:
    return {r["id"]: r for r in data["samples"]}


def test_statuses_of_every_sample(diff):
    data, _ = diff
    status = {sid: r["status"] for sid, r in by_id(data).items()}
    assert status == {"s01": "unchanged", "s02": "removed", "s04": "changed", "s05": "changed", "s06": "changed",
                      "s07": "unchanged", "s08": "added", "s09": "renamed", "s10": "changed"}  # fmt: skip
    assert data["summary"] == {"old_samples": 8, "new_samples": 8, "added": 1, "removed": 1, "renamed": 1, "changed": 4, "unchanged": 2, "error": 0}
    assert by_id(data)["s09"]["old_id"] == "s03" and by_id(data)["s09"]["changes"] == ["path"]  # same subject, another folder
    assert by_id(data)["s07"]["volume"]["status"] == by_id(data)["s07"]["mask"]["status"] == "same_voxels"
    assert by_id(data)["s01"]["volume"]["status"] == by_id(data)["s01"]["mask"]["status"] == "same_file"


def test_relabelled_voxels_give_the_hand_computed_counts_volumes_and_dice(diff):
    data, _ = diff
    mask = by_id(data)["s04"]["mask"]
    assert by_id(data)["s04"]["changes"] == ["mask"] and mask["status"] == "changed" and mask["same_grid"] is True
    rows = {r["label"]: r for r in mask["labels"]}
    assert (rows[1]["old_voxels"], rows[1]["new_voxels"], rows[2]["old_voxels"], rows[2]["new_voxels"]) == (36, 30, 36, 42)
    assert rows[1]["dice"] == pytest.approx(2 * 30 / (36 + 30), rel=1e-12)  # |A∩B| = 30 of label 1
    assert rows[2]["dice"] == pytest.approx(2 * 36 / (36 + 42), rel=1e-12)
    assert rows[1]["change_mm3"] == pytest.approx(-RELABELLED * VOXEL_MM3, rel=1e-6)  # the header stores the affine in float32
    assert rows[2]["change_mm3"] == pytest.approx(RELABELLED * VOXEL_MM3, rel=1e-6)  # the header stores the affine in float32
    assert mask["dice_foreground"] == 1.0 and mask["changed_voxels"] == RELABELLED
    assert mask["labels_added"] == [] and mask["labels_removed"] == []


def test_volume_change_fields_and_another_grid(diff):
    data, _ = diff
    s05 = by_id(data)["s05"]
    assert s05["changes"] == ["volume"] and s05["volume"]["changed_voxels"] == VOLUME_CHANGED
    assert s05["volume"]["max_abs_difference"] == pytest.approx(100.0, abs=1e-3)
    assert s05["volume"]["old_voxel_sha256"] != s05["volume"]["new_voxel_sha256"]
    s06 = by_id(data)["s06"]
    assert s06["changes"] == ["fields"] and s06["fields"] == [{"field": "sex", "source": "info+manifest", "old": "F", "new": "M"}]
    s10 = by_id(data)["s10"]
    assert s10["changes"] == ["geometry", "mask"] and s10["volume"]["status"] == "same_voxels"
    assert s10["geometry"]["same_grid"] is False and s10["geometry"]["max_displacement_mm"] == pytest.approx(5.0)
    assert all(r["dice"] is None for r in s10["mask"]["labels"]) and "Dice not computed (no resampling)" in s10["mask"]["note"]


def test_the_workbook_holds_the_same_as_the_json(diff):
    data, out = diff
    assert sheet_names(out) == ["Summary", "Samples", "Labels", "Fields"]
    samples = read_sheet(out, "Samples")
    assert list(samples["ID"]) == [r["id"] for r in data["samples"]]
    assert dict(zip(samples["ID"], samples["status"]))["s09"] == "renamed"
    labels = read_sheet(out, "Labels")
    s04 = labels[labels["ID"] == "s04"].set_index("label")
    assert s04.loc[1, "voxel_change"] == -RELABELLED and s04.loc[2, "dice"] == pytest.approx(72 / 78)
    fields = read_sheet(out, "Fields")
    assert fields[fields["ID"] == "s06"][["field", "old", "new"]].values.tolist() == [["sex", "F", "M"]]


def test_workers_give_the_same_json(releases, diff, tmp_path):
    old, new = releases
    out = tmp_path / "diff.xlsx"
    assert run_script(TOOL, "--old", old, "--new", new, "--output_file", out, "--output_json", tmp_path / "w.json", "--workers", "2", "--no_pbar") == 0
    assert json.loads((tmp_path / "w.json").read_text()) == diff[0]


def test_identical_files_are_hashed_not_decompressed(releases, monkeypatch):
    import utils.diff.compare as compare

    old, new = releases
    calls = []
    monkeypatch.setattr(compare, "load_nifti", lambda path: calls.append(path) or pytest.fail(f"decompressed {path}"))
    pair = SamplePair(SampleDir(old / "train/s01"), SampleDir(new / "train/s01"), "train/s01", "train/s01")
    assert compare_pair(pair)["status"] == "unchanged" and not calls


def test_joint_histogram_against_a_voxel_loop():
    rng = np.random.default_rng(3)
    a = np.asfortranarray(rng.integers(0, 4, (7, 5, 6), dtype=np.uint8))
    b = np.asfortranarray(rng.integers(0, 4, (7, 5, 6), dtype=np.uint8))
    box = (slice(1, 6), slice(0, 4), slice(2, 6))
    expected = np.zeros((256, 256), np.int64)
    for i in range(1, 6):
        for j in range(0, 4):
            for k in range(2, 6):
                expected[a[i, j, k], b[i, j, k]] += 1
    assert np.array_equal(joint_label_histogram(a, b, box), expected)
    assert joint_label_histogram(a, b).sum() == a.size


def test_bad_inputs_exit_2_with_one_line_and_an_unreadable_file_exits_1(releases, tmp_path, caplog):
    old, new = releases
    assert run_script(TOOL, "--old", tmp_path / "nope", "--new", new, "--output_file", tmp_path / "d.xlsx") == 2
    assert "not a folder" in caplog.text
    assert run_script(TOOL, "--old", old, "--new", new, "--output_file", tmp_path / "d.csv") == 2
    twice = tmp_path / "twice/grouped"
    shutil.copytree(new, twice)
    shutil.copytree(twice / "train/s01", twice / "other/s01")
    caplog.clear()
    assert run_script(TOOL, "--old", old, "--new", twice, "--output_file", tmp_path / "d.xlsx") == 2
    assert "sample ID s01 is in 2 folders" in caplog.text
    broken = tmp_path / "broken/grouped"
    shutil.copytree(new, broken)
    data = (broken / "train/s05/s05_mask.nii.gz").read_bytes()
    (broken / "train/s05/s05_mask.nii.gz").write_bytes(data[: len(data) // 2])
    assert run_script(TOOL, "--old", old, "--new", broken, "--output_file", tmp_path / "d.xlsx", "--no_pbar") == 1
    record = by_id(json.loads((tmp_path / "d.json").read_text()))["s05"]
    assert record["status"] == "error" and "s05_mask.nii.gz" in record["error"]


def test_the_qc_report_shows_the_diff_section(releases, diff, tmp_path, caplog):
    old, new = releases
    data, out = diff
    report = tmp_path / "qc"
    assert run_script("utils/qc_report.py", "--root_dir", new, "--output_dir", report, "--diff", out.with_suffix(".json"), "--no_pbar") == 0
    page = (report / "index.html").read_text()
    assert "Changes since the previous release" in page and "s03 → s09" in page
    assert "1: 36→30 vox (-14.9 mm³, Dice 0.909)" in page
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    assert run_script("utils/qc_report.py", "--root_dir", new, "--output_dir", report, "--diff", tmp_path / "bad.json") == 2
    assert "not a release diff" in caplog.text
