"""Goldens that cannot lie: a difference names the file and what differs; regenerating never passes a change."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from tests.golden_files import describe_outputs, differences, dumps
from tests.test_golden_outputs import check_against_golden

AFFINE = np.array([[0.0, 0.0, 2.5, 10.0], [-0.7, 0.0, 0.0, 20.0], [0.0, 1.2, 0.0, -5.0], [0.0, 0.0, 0.0, 1.0]])


def write_outputs(root, *, mask=None, volume=None, affine=AFFINE, cells=None, card=None):
    """A tiny 'run': a uint8 mask, a float32 volume, a manifest, an export JSON."""
    root.mkdir(parents=True, exist_ok=True)
    if mask is None:
        mask = np.zeros((4, 5, 3), np.uint8)
        mask[1:3, 1:4, 1] = 2
        mask[0, 0, 0] = 1
    if volume is None:
        volume = np.linspace(-100, 900, 60, dtype=np.float32).reshape(4, 5, 3)
    nib.save(nib.Nifti1Image(mask, affine), root / "s1_mask.nii.gz")
    nib.save(nib.Nifti1Image(volume, affine), root / "s1_volume.nii.gz")
    frame = pd.DataFrame(cells or {"ID": ["s1", "s2"], "spx": [0.7, 0.7], "volume": ["s1/v.nii.gz", "s2/v.nii.gz"]})
    frame.to_excel(root / "manifest.xlsx", sheet_name="Manifest", index=False)
    (root / "dataset.json").write_text(json.dumps(card or {"labels": {"background": 0, "liver": 1}, "image": str(root / "x")}))
    return describe_outputs(root, sorted(p for p in root.iterdir() if p.is_file()))


def test_identical_runs_have_no_difference_and_paths_are_written_relative_to_the_run(tmp_path):
    a = write_outputs(tmp_path / "a")
    b = write_outputs(tmp_path / "b")
    assert differences(a, b) == []
    assert a["files"]["dataset.json"]["json"]["image"] == "<root>/x"
    assert json.loads(dumps(a)) == a


def test_a_changed_label_voxel_is_named_by_file_and_value(tmp_path):
    old = write_outputs(tmp_path / "a")
    mask = np.zeros((4, 5, 3), np.uint8)
    mask[1:3, 1:4, 1] = 2
    mask[1, 1, 1] = 0  # one voxel of label 2 lost
    mask[0, 0, 0] = 1
    assert differences(old, write_outputs(tmp_path / "b", mask=mask)) == [
        "s1_mask.nii.gz: voxels of value 0: 53 -> 54",
        "s1_mask.nii.gz: voxels of value 2: 6 -> 5",
    ]


def test_a_moved_voxel_is_reported_as_moved(tmp_path):
    old = write_outputs(tmp_path / "a")
    mask = np.zeros((4, 5, 3), np.uint8)
    mask[1:3, 1:4, 1] = 2
    mask[3, 4, 2] = 1  # label 1 moved, counts unchanged
    assert differences(old, write_outputs(tmp_path / "b", mask=mask)) == [
        "s1_mask.nii.gz: voxels differ (same count of every value: voxels moved)"
    ]


def test_a_header_change_names_the_field(tmp_path):
    old = write_outputs(tmp_path / "a")
    affine = AFFINE.copy()
    affine[0, 2] = 2.6  # the third voxel axis 0.1 mm longer
    lines = differences(old, write_outputs(tmp_path / "b", affine=affine))
    assert any(line.startswith("s1_mask.nii.gz: header pixdim: ") for line in lines), lines
    assert any(line.startswith("s1_mask.nii.gz: header srow_x: [0.0, 0.0, 2.5, 10.0] -> [0.0, 0.0, 2.5999999046325684") for line in lines), lines
    assert not any("voxels" in line for line in lines)


def test_a_changed_float_volume_names_the_summary_that_moved(tmp_path):
    old = write_outputs(tmp_path / "a")
    volume = np.linspace(-100, 900, 60, dtype=np.float32).reshape(4, 5, 3)
    volume[0, 0, 0] = -1024.0
    (line,) = differences(old, write_outputs(tmp_path / "b", volume=volume))
    assert line.startswith("s1_volume.nii.gz: voxels differ: min -100.0 -> -1024.0, sum ")


def test_a_changed_cell_names_sheet_row_id_and_column(tmp_path):
    old = write_outputs(tmp_path / "a")
    new = write_outputs(tmp_path / "b", cells={"ID": ["s1", "s2"], "spx": [0.7, 0.75], "volume": ["s1/v.nii.gz", "s2/v.nii.gz"]})
    assert differences(old, new) == ["manifest.xlsx: sheet Manifest, row 3 (ID s2), column spx: 0.7 -> 0.75"]
    fewer = write_outputs(tmp_path / "c", cells={"ID": ["s1"], "spx": [0.7], "volume": ["s1/v.nii.gz"]})
    assert differences(old, fewer) == ["manifest.xlsx: sheet Manifest: 2 -> 1 rows"]
    renamed = write_outputs(tmp_path / "d", cells={"ID": ["s1", "s2"], "spy": [0.7, 0.7], "volume": ["a", "b"]})
    assert differences(old, renamed) == ["manifest.xlsx: sheet Manifest: columns differ (removed ['spx'], added ['spy'])"]


def test_json_differences_name_the_key_and_missing_or_new_files_are_listed(tmp_path):
    old = write_outputs(tmp_path / "a")
    new = write_outputs(tmp_path / "b", card={"labels": {"background": 0, "liver": 2}, "image": str(tmp_path / "b" / "x")})
    assert differences(old, new) == ["dataset.json: labels.liver: 1 -> 2"]
    (tmp_path / "b" / "dataset.json").unlink()
    (tmp_path / "b" / "extra.json").write_text("[]")
    gone = describe_outputs(tmp_path / "b", sorted(p for p in (tmp_path / "b").iterdir()))
    assert differences(old, gone) == ["dataset.json: missing (not written by this run)", "extra.json: new output (not in the golden file)"]


def test_yaml_statistics_differences_name_the_key_and_paths_are_written_relative_to_the_run(tmp_path):
    def stats(root, mean):
        root.mkdir(parents=True, exist_ok=True)
        (root / "data_stats.yaml").write_text(f"stats_summary:\n  image_stats:\n    mean: {mean}\n  path: {root / 'img.nii.gz'}\n")
        return describe_outputs(root, [root / "data_stats.yaml"])

    old, same, new = stats(tmp_path / "a", 1.5), stats(tmp_path / "b", 1.5), stats(tmp_path / "c", 1.75)
    assert differences(old, same) == []
    assert differences(old, new) == ["data_stats.yaml: stats_summary.image_stats.mean: 1.5 -> 1.75"]


def test_regenerating_writes_the_golden_file_and_fails_listing_the_changes(tmp_path):
    golden = tmp_path / "golden" / "demo.json"
    first = write_outputs(tmp_path / "a")
    with pytest.raises(pytest.fail.Exception, match="GOLDEN_REGEN: .*demo.json rewritten; 1 change"):
        check_against_golden(golden, first, regenerate=True)  # no golden yet: written, and still a failure
    assert json.loads(golden.read_text()) == first
    check_against_golden(golden, first, regenerate=True)  # nothing changed: nothing to review, passes
    check_against_golden(golden, first, regenerate=False)
    mask = np.zeros((4, 5, 3), np.uint8)
    mask[0, 0, 0] = 1
    changed = write_outputs(tmp_path / "b", mask=mask)
    with pytest.raises(pytest.fail.Exception, match=r"outputs differ from .*demo.json \(2 difference\(s\)\):\ns1_mask.nii.gz: voxels of value 0"):
        check_against_golden(golden, changed, regenerate=False)
    assert json.loads(golden.read_text()) == first  # a plain run never writes
    with pytest.raises(pytest.fail.Exception, match="rewritten; 2 change.*\ns1_mask.nii.gz: voxels of value 0: 53 -> 59"):
        check_against_golden(golden, changed, regenerate=True)
    assert json.loads(golden.read_text()) == changed
    check_against_golden(golden, changed, regenerate=False)  # committed: the next plain run passes


def test_a_golden_file_of_another_format_is_refused_not_half_compared(tmp_path):
    current = write_outputs(tmp_path / "a")
    assert differences({"s1_mask.nii.gz": "ab12"}, current) == [
        "golden format None, expected 2: regenerate it (GOLDEN_REGEN=1)"
    ]
