"""NME routines 01-06: the tutorial's command sequence on the synthetic archive, the splits, bad input, real MRI."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from nme.archive import ARCHIVE_COLUMNS, DESCRIPTOR_DIR, NmeRules, parse_archive_path
from nme.demo_archive import BROKEN_FILES, DEMO_SAMPLES, PREFIX, SECOND_CHANNEL, make_demo_archive, sample_arrays
from nme.splits import cross_site_split, predefined_split
from utils.archive.scan import FILE_CHECK_COLUMNS
from tests.conftest import REALDATA, REPO, run_script
from utils.files.nifti_io import load_nifti, read_mask
from utils.files.sample_info import read_info
from utils.files.spreadsheet import read_sheet, sheet_names
from utils.archive.synthetic import flip_storage, write_raw_nifti

#: The tutorial's commands, verbatim (nme_tutorial.md; ``split04_HKU-SZHtest.xlsx`` there is a typo, FACTS.md).
TUTORIAL = """
01_gen_archive_manifest.py --root_dir root_dir/archive --output_manifest_file root_dir/descriptor/archive_manifest.xlsx
02_confirm_pairs.py --root_dir root_dir/archive --output_dir root_dir/grouped --archive_manifest root_dir/descriptor/archive_manifest.xlsx
03_extract_binary_masks.py --root_dir root_dir/grouped --label_explanation root_dir/descriptor/label_map.yaml
04_gen_dataset_manifest.py --root_dir root_dir/grouped --output_manifest_file root_dir/grouped/dataset_manifest.xlsx
05_make_split_predefined.py --manifest_file root_dir/grouped/dataset_manifest.xlsx --split_name split01_Tongji --site Tongji --collection train-val test-inner-01
05_make_split_predefined.py --manifest_file root_dir/grouped/dataset_manifest.xlsx --split_name split02_Yunnan --site Yunnan --collection test-outer-02
05_make_split_predefined.py --manifest_file root_dir/grouped/dataset_manifest.xlsx --split_name split03_Zhongnan --site Zhongnan --collection test-outer-03
05_make_split_predefined.py --manifest_file root_dir/grouped/dataset_manifest.xlsx --split_name split04_HKU-SZH --site HKU-SZH --collection test-outer-04
05_make_split_predefined.py --manifest_file root_dir/grouped/dataset_manifest.xlsx --split_name split05_External --site Yunnan Zhongnan HKU-SZH --collection test-outer-02 test-outer-03 test-outer-04
05_make_split_predefined.py --manifest_file root_dir/grouped/dataset_manifest.xlsx --split_name split06_Whole --site Tongji Yunnan Zhongnan HKU-SZH --collection train-val test-inner-01 test-outer-02 test-outer-03 test-outer-04
05_make_split_across_sites.py --manifest_file root_dir/grouped/dataset_manifest.xlsx --split_name split07_Mix --test_ratio 0.3 --val_ratio 0.2 --random_seed 0
06_extract_split_index_manifest.py --manifest_file root_dir/grouped/dataset_manifest.xlsx --split_name split01_Tongji --output_index_manifest_dir root_dir/grouped/splits/split01_Tongji --subsets train val --subsets train --subsets val --subsets test
06_extract_split_index_manifest.py --manifest_file root_dir/grouped/dataset_manifest.xlsx --split_name split02_Yunnan --output_index_manifest_dir root_dir/grouped/splits/split02_Yunnan --subsets test
06_extract_split_index_manifest.py --manifest_file root_dir/grouped/dataset_manifest.xlsx --split_name split03_Zhongnan --output_index_manifest_dir root_dir/grouped/splits/split03_Zhongnan --subsets test
06_extract_split_index_manifest.py --manifest_file root_dir/grouped/dataset_manifest.xlsx --split_name split04_HKU-SZH --output_index_manifest_dir root_dir/grouped/splits/split04_HKU-SZH --subsets test
06_extract_split_index_manifest.py --manifest_file root_dir/grouped/dataset_manifest.xlsx --split_name split05_External --output_index_manifest_dir root_dir/grouped/splits/split05_External --subsets test
06_extract_split_index_manifest.py --manifest_file root_dir/grouped/dataset_manifest.xlsx --split_name split06_Whole --output_index_manifest_dir root_dir/grouped/splits/split06_Whole --subsets train val --subsets train --subsets val --subsets test
06_extract_split_index_manifest.py --manifest_file root_dir/grouped/dataset_manifest.xlsx --split_name split07_Mix --output_index_manifest_dir root_dir/grouped/splits/split07_Mix --subsets train val --subsets train --subsets val --subsets test
""".strip().splitlines()

#: The pipeline script's last command: the export of the standard split (utils/export_dataset.py).
EXPORT_CALL = "utils/export_dataset.py --manifest_file root_dir/grouped/dataset_manifest.xlsx --split_name split01_Tongji --output_dir root_dir/export"

#: Index manifests of the tutorial's final tree.
INDEX_FILES = {
    "split01_Tongji": ["train_val", "train", "val", "test"],
    "split02_Yunnan": ["test"],
    "split03_Zhongnan": ["test"],
    "split04_HKU-SZH": ["test"],
    "split05_External": ["test"],
    "split06_Whole": ["train_val", "train", "val", "test"],
    "split07_Mix": ["train_val", "train", "val", "test"],
}
SITES = {"train-val": "Tongji", "test-inner-01": "Tongji", "test-outer-02": "Yunnan", "test-outer-03": "Zhongnan", "test-outer-04": "HKU-SZH"}
SUBSET = {"Tr": "train", "Vd": "val", "Ts": "test"}
DATASET_COLUMNS = [
    "ID", "site", "collection", "subset", "pid", "valid_labels", "info", "volume", "mask", "mask_00_Bg", "mask_01_NME",
    "mask_00_Bg_existence", "mask_01_NME_existence", "szx", "szy", "szz", "spx", "spy", "spz", "orientation_from",
    "orientation_to", "vol_dtype", "mask_dtype", "transform",
]  # fmt: skip


def rel_dir(s) -> str:
    return f"{SITES[s.collection]}/{s.collection}/{SUBSET[s.tag]}/{s.id}"


def run_tutorial(root: Path, commands: list[str] = TUTORIAL) -> list[int]:
    """Run tutorial command lines in-process with ``root_dir`` replaced by ``root``."""
    codes = []
    for line in commands:
        script, *args = shlex.split(line.replace("root_dir/", f"{root}/"))
        codes.append(run_script(f"nme/{script}", *args, *(["--no_pbar"] if script < "05" else [])))
    return codes


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nme")
    make_demo_archive(root / "archive")
    assert run_tutorial(root) == [0] * len(TUTORIAL)
    return root


def _run_pipeline_script(tmp_path: Path, rc02: int) -> tuple[subprocess.CompletedProcess, list[str]]:
    """run_pipeline.sh with a fake interpreter that records each command and exits ``rc02`` for routine 02."""
    fake = tmp_path / "py"
    fake.write_text(f'#!/bin/sh\necho "$@" >> "$(dirname "$0")/calls"\ncase "$1" in *02_confirm_pairs.py) exit {rc02};; esac\n')
    fake.chmod(0o755)
    result = subprocess.run(["bash", str(REPO / "nme/run_pipeline.sh"), "root_dir"], env={**os.environ, "PYTHON": str(fake)}, capture_output=True, text=True)
    calls = [ln.replace(f"{REPO}/nme/", "").replace(f"{REPO}/", "").replace(" --workers 1", "") for ln in (tmp_path / "calls").read_text().splitlines()]
    return result, calls


def test_tutorial_commands_are_the_spec_and_the_pipeline_script(tmp_path):
    spec = REALDATA.parent / "specs" / "nme_tutorial.md"
    if spec.is_file():  # the constant above is the tutorial, word for word
        assert [ln[len("python ") :] for ln in spec.read_text().splitlines() if ln.startswith("python 0")] == TUTORIAL
    result, calls = _run_pipeline_script(tmp_path, 0)
    assert result.returncode == 0, result.stderr
    assert calls == TUTORIAL + [EXPORT_CALL]


@pytest.mark.parametrize("rc02, calls_made, rc", [(1, len(TUTORIAL) + 1, 1), (2, 2, 2)])
def test_pipeline_script_goes_on_after_unpaired_samples_only(tmp_path, rc02, calls_made, rc):
    result, calls = _run_pipeline_script(tmp_path, rc02)
    assert result.returncode == rc and calls == (TUTORIAL + [EXPORT_CALL])[:calls_made]
    assert rc02 == 2 or "WITHOUT the archive samples routine 02 could not pair" in result.stderr


def test_archive_manifest_columns_rows_and_skipped(pipeline):
    path = pipeline / "descriptor/archive_manifest.xlsx"
    assert sheet_names(path) == ["Manifest", "Skipped"]
    m = read_sheet(path)
    assert list(m.columns) == ARCHIVE_COLUMNS + FILE_CHECK_COLUMNS  # issue 17's two columns come last
    assert len(m) == 2 * len(DEMO_SAMPLES)
    assert read_sheet(path, "Skipped")["file_path"].tolist() == [SECOND_CHANNEL]
    assert not m["file_path"].str.endswith(".json").any()
    assert set(m["subset"]) == {"imagesTr", "labelsTr", "imagesVd", "labelsVd", "imagesTs", "labelsTs"}
    for s in DEMO_SAMPLES:
        for kind, path_ in (("v3d", s.image_path()), ("m3d", s.label_path())):
            row = m[m["file_path"] == path_].iloc[0]
            assert (row["site"], row["collection"], row["pid"], row["type"]) == (SITES[s.collection], s.collection, s.pid, kind)
            assert row["subset"] == ("images" if kind == "v3d" else "labels") + s.tag
            assert (row["diff_trans_f_norm"] is None) == (kind == "v3d")
            assert kind == "v3d" or (row["diff_trans_f_norm"] > 1.0) == s.mask_flipped
            assert kind == "v3d" or row["dtype"] == s.mask_dtype
    oblique = m[m["file_path"].str.contains("01A003")]
    assert set(oblique["orientation_to"]) == {"Oblique(closest to LPS)"} and set(oblique["orientation_from"]) == {"Oblique(closest to RAI)"}
    assert (pipeline / "descriptor/label_map.yaml").read_text() == (DESCRIPTOR_DIR / "label_map.yaml").read_text()


def test_grouped_layout_files_dtypes_and_info(pipeline):
    grouped = pipeline / "grouped"
    assert {p.parent.relative_to(grouped).as_posix() for p in grouped.rglob("*_info.yaml")} == {rel_dir(s) for s in DEMO_SAMPLES}
    assert sorted(p.name for p in grouped.iterdir()) == ["HKU-SZH", "Tongji", "Yunnan", "Zhongnan", "dataset_manifest.xlsx", "splits"]
    for s in DEMO_SAMPLES:
        folder = grouped / rel_dir(s)
        names = ["info.yaml", "volume.nii.gz", "mask.nii.gz", "mask_00_Bg.nii.gz", "mask_01_NME.nii.gz"]
        assert sorted(p.name for p in folder.iterdir()) == sorted(f"{s.id}_{n}" for n in names)
        assert nib.load(folder / f"{s.id}_volume.nii.gz").get_data_dtype() == np.float32
        for n in names[2:]:
            assert nib.load(folder / f"{s.id}_{n}").get_data_dtype() == np.uint8
        info = read_info(folder / f"{s.id}_info.yaml")
        assert {k: info[k] for k in ("ID", "site", "collection", "subset", "pid", "seq")} == {
            "ID": s.id, "site": SITES[s.collection], "collection": s.collection, "subset": SUBSET[s.tag], "pid": s.pid, "seq": s.seq,
        }  # fmt: skip


@pytest.mark.parametrize(
    "seq, method",
    [("01A004", "reoriented"), ("01A003", "identical"), ("01A002", "identical"), ("01B001", "identical"), ("01B002", "identical")],
    ids=["flipped-mask", "oblique", "int16-mask", "float64-mask", "no-lesion"],
)
def test_masks_land_voxel_exactly_on_the_volume_grid(pipeline, seq, method):
    s = next(s for s in DEMO_SAMPLES if s.seq == seq)
    image, expected, affine = sample_arrays(s, DEMO_SAMPLES.index(s) + 1)
    folder = pipeline / "grouped" / rel_dir(s)
    mask_img = nib.load(folder / f"{s.id}_mask.nii.gz")
    assert np.array_equal(read_mask(load_nifti(folder / f"{s.id}_mask.nii.gz"), "m"), expected)
    assert np.allclose(mask_img.affine, affine) and np.array_equal(mask_img.affine, nib.load(folder / f"{s.id}_volume.nii.gz").affine)
    assert np.array_equal(np.asarray(nib.load(folder / f"{s.id}_volume.nii.gz").dataobj), image.astype(np.float32))
    assert np.array_equal(np.asarray(nib.load(folder / f"{s.id}_mask_01_NME.nii.gz").dataobj), (expected == 1).astype(np.uint8))
    assert np.array_equal(np.asarray(nib.load(folder / f"{s.id}_mask_00_Bg.nii.gz").dataobj), (expected == 0).astype(np.uint8))
    assert read_info(folder / f"{s.id}_info.yaml")["source"]["alignment"]["method"] == method


def test_dataset_manifest_columns_and_rows(pipeline):
    path = pipeline / "grouped/dataset_manifest.xlsx"
    m = read_sheet(path)
    assert list(m.columns) == DATASET_COLUMNS
    assert sorted(m["ID"]) == sorted(s.id for s in DEMO_SAMPLES)
    rows = m.set_index("ID")
    for s in DEMO_SAMPLES:
        row = rows.loc[s.id]
        assert (row["site"], row["collection"], row["subset"], row["pid"]) == (SITES[s.collection], s.collection, SUBSET[s.tag], s.pid)
        assert row["volume"] == f"{rel_dir(s)}/{s.id}_volume.nii.gz" and row["mask_01_NME"] == f"{rel_dir(s)}/{s.id}_mask_01_NME.nii.gz"
        assert row["valid_labels"] == ("[0, 1]" if s.lesion else "[0]") and row["mask_01_NME_existence"] == int(s.lesion)
        assert row["mask_00_Bg_existence"] == 1
    assert set(m["vol_dtype"]) == {"float32"} and set(m["mask_dtype"]) == {"uint8"}
    assert rows.loc["01A003_60012880027", "orientation_to"] == "Oblique(closest to LPS)"


def _labels(path: Path, split: str) -> dict[str, str]:
    sheet = read_sheet(path, split)
    return dict(zip(sheet["ID"], sheet[split]))


def test_predefined_splits_and_their_unions(pipeline):
    path = pipeline / "grouped/dataset_manifest.xlsx"
    assert sheet_names(path) == ["Manifest", *INDEX_FILES]
    manifest = read_sheet(path)
    by_site = {site: {s.id: SUBSET[s.tag] for s in DEMO_SAMPLES if SITES[s.collection] == site} for site in ("Tongji", "Yunnan", "Zhongnan", "HKU-SZH")}
    s = {name: _labels(path, name) for name in INDEX_FILES}
    assert s["split01_Tongji"] == by_site["Tongji"] and set(s["split01_Tongji"].values()) == {"train", "val", "test"}
    assert s["split02_Yunnan"] == by_site["Yunnan"] and s["split03_Zhongnan"] == by_site["Zhongnan"] and s["split04_HKU-SZH"] == by_site["HKU-SZH"]
    assert s["split05_External"] == {**s["split02_Yunnan"], **s["split03_Zhongnan"], **s["split04_HKU-SZH"]}
    assert set(s["split05_External"].values()) == {"test"}
    assert s["split06_Whole"] == {**s["split01_Tongji"], **s["split05_External"]} and len(s["split06_Whole"]) == len(manifest)
    inner = {s_.id for s_ in DEMO_SAMPLES if s_.collection != "train-val"}
    assert {k for k, v in s["split06_Whole"].items() if v == "test"} == inner  # test-inner-01 + every test-outer
    sheet = read_sheet(path, "split06_Whole")
    assert list(sheet.columns) == [*DATASET_COLUMNS, "split06_Whole"]


def test_cross_site_split_copies_tongji_groups_patients_and_is_pinned(pipeline):
    path = pipeline / "grouped/dataset_manifest.xlsx"
    mix, tongji = _labels(path, "split07_Mix"), _labels(path, "split01_Tongji")
    assert {k: v for k, v in mix.items() if k in tongji} == tongji
    assert mix["02A001_5300118842"] == mix["02A002_5300118842"]  # one patient, two samples
    # golden: changing this breaks a published split
    assert {k: v for k, v in mix.items() if k not in tongji} == {
        "02A001_5300118842": "test", "02A002_5300118842": "test", "02A003_5300120971": "train", "03A001_4300230018": "val",
        "03A002_4300230122": "train", "04A001_HK00310045": "train", "04A002_HK00310311": "test",
    }  # fmt: skip


def test_index_manifests_are_the_tutorials_tree(pipeline):
    splits = pipeline / "grouped/splits"
    assert sorted(p.name for p in splits.iterdir()) == sorted(INDEX_FILES)
    manifest = pipeline / "grouped/dataset_manifest.xlsx"
    for split, groups in INDEX_FILES.items():
        assert sorted(p.name for p in (splits / split).iterdir()) == sorted(f"{split}_{g}.xlsx" for g in groups)
        sheet = read_sheet(manifest, split)
        for g in groups:
            index = read_sheet(splits / split / f"{split}_{g}.xlsx")
            want = sheet[sheet[split].isin(g.split("_"))].reset_index(drop=True)
            assert index.equals(want) and len(index) > 0
    assert (splits / "split04_HKU-SZH/split04_HKU-SZH_test.xlsx").is_file()


GOLDEN_ROWS = [  # (ID, site, subset, pid)
    ("T1_t01", "Tongji", "train", "t01"), ("T2_t02", "Tongji", "val", "t02"), ("T3_t03", "Tongji", "test", "t03"),
    ("Y1_p01", "Yunnan", "test", "p01"), ("Y2_p02", "Yunnan", "test", "p02"), ("Y3_p03", "Yunnan", "test", "p03"),
    ("Z1_p04", "Zhongnan", "test", "p04"), ("Z2_p04", "Zhongnan", "test", "p04"), ("Z3_p05", "Zhongnan", "test", "p05"),
    ("H1_p06", "HKU-SZH", "test", "p06"), ("H2_p07", "HKU-SZH", "test", "p07"), ("H3_p08", "HKU-SZH", "test", "p08"),
    ("H4_p09", "HKU-SZH", "test", "p09"), ("H5_p10", "HKU-SZH", "test", "p10"),
]  # fmt: skip
GOLDEN_SEED0 = {
    "T1_t01": "train", "T2_t02": "val", "T3_t03": "test", "Y1_p01": "train", "Y2_p02": "test", "Y3_p03": "test",
    "Z1_p04": "train", "Z2_p04": "train", "Z3_p05": "train", "H1_p06": "train", "H2_p07": "train", "H3_p08": "val",
    "H4_p09": "train", "H5_p10": "test",
}  # fmt: skip


def test_cross_site_split_golden_and_reproducible():
    frame = pd.DataFrame(GOLDEN_ROWS, columns=["ID", "site", "subset", "pid"])
    rows, labels = cross_site_split(frame, ("Tongji",), 0.3, 0.2, 0)
    assert dict(zip(rows["ID"], labels)) == GOLDEN_SEED0
    # two stages on the 10 pooled patients: round(0.3 * 10) = 3 test, round(0.2 * 7) = 1 val
    pooled = {p: lab for (i, s, _sub, p), lab in zip(GOLDEN_ROWS, labels) if s != "Tongji"}
    assert sorted(pooled.values()).count("test") == 3 and sorted(pooled.values()).count("val") == 1
    shuffled = frame.sample(frac=1.0, random_state=3)
    rows2, labels2 = cross_site_split(shuffled, ("Tongji",), 0.3, 0.2, 0)
    assert dict(zip(rows2["ID"], labels2)) == GOLDEN_SEED0  # row order does not matter
    assert dict(zip(rows["ID"], cross_site_split(frame, ("Tongji",), 0.3, 0.2, 1)[1])) != GOLDEN_SEED0
    with pytest.raises(ValueError, match="test_ratio must lie in"):
        cross_site_split(frame, ("Tongji",), 1.3, 0.2, 0)


def test_cross_site_split_needs_no_split01_sheet_and_reruns_identically(pipeline, tmp_path):
    path = tmp_path / "d.xlsx"
    from utils.files.spreadsheet import write_sheets

    write_sheets(path, {"Manifest": read_sheet(pipeline / "grouped/dataset_manifest.xlsx")})
    line = TUTORIAL[10].replace("root_dir/grouped/dataset_manifest.xlsx", "root_dir/d.xlsx")
    assert run_tutorial(tmp_path, [line, line]) == [0, 0]
    assert sheet_names(path) == ["Manifest", "split07_Mix"]
    assert _labels(path, "split07_Mix") == _labels(pipeline / "grouped/dataset_manifest.xlsx", "split07_Mix")


def test_predefined_split_refuses_unknown_values(pipeline, tmp_path, caplog):
    path = tmp_path / "d.xlsx"
    shutil.copy(pipeline / "grouped/dataset_manifest.xlsx", path)
    rc = run_script("nme/05_make_split_predefined.py", "--manifest_file", path, "--split_name", "x", "--site", "Tongji", "--collection", "train-val", "test-iner-01")
    assert rc == 2 and "--collection value(s) ['test-iner-01'] not found" in caplog.text
    assert "x" not in sheet_names(path)
    rows, labels = predefined_split(read_sheet(path), ["Tongji", "Yunnan"], ["train-val"])
    assert set(rows["site"]) == {"Tongji"} and labels == list(rows["subset"])
    assert "['Yunnan'] select no sample" in caplog.text


def test_rerunning_reproduces_manifests_and_splits(pipeline, tmp_path):
    root = tmp_path / "again"
    shutil.copytree(pipeline, root)
    assert run_tutorial(root, TUTORIAL[:2]) == [0, 0]  # 02: every sample up to date, although routine 03 changed them
    assert read_sheet(root / "descriptor/archive_manifest.xlsx").equals(read_sheet(pipeline / "descriptor/archive_manifest.xlsx"))
    assert run_tutorial(root, TUTORIAL[2:]) == [0] * (len(TUTORIAL) - 2)
    for sheet in sheet_names(pipeline / "grouped/dataset_manifest.xlsx"):
        assert read_sheet(root / "grouped/dataset_manifest.xlsx", sheet).equals(read_sheet(pipeline / "grouped/dataset_manifest.xlsx", sheet))


@pytest.mark.parametrize(
    "rel, expected",
    [
        (f"{PREFIX}train-val/imagesTr/01A002_60012875311_0000.nii.gz", ("Tongji", "train-val", "imagesTr", "60012875311", "v3d", "01A002_60012875311")),
        (f"NME-2025.8.25/{PREFIX}test-outer-04/labelsTs/04A001_HK1.nii.gz", ("HKU-SZH", "test-outer-04", "labelsTs", "HK1", "m3d", "04A001_HK1")),
        (f"{PREFIX}test-outer-03/imagesTs/03A001_430.nii.gz", ("Zhongnan", "test-outer-03", "imagesTs", "430", "v3d", "03A001_430")),
        (f"{PREFIX}train-val/labelsTr/01A002_600_0000.nii.gz", "outside the m3d grammar"),  # labels carry no channel tag
        (f"{PREFIX}train-val/imagesTr/01A002_600_0001.nii.gz", "outside the v3d grammar"),
        (f"{PREFIX}test-outer-09/imagesTs/09A001_1.nii.gz", "collection 'test-outer-09' has no site"),
        (f"{PREFIX}train-val/masksTr/01A002_600.nii.gz", "'masksTr' is not a subset folder"),
        ("imagesTr/01A002_600.nii.gz", "not inside a collection folder"),
    ],
)
def test_parse_archive_path(rel, expected):
    fields, reason = parse_archive_path(Path(rel), NmeRules.load())
    if isinstance(expected, str):
        assert fields is None and expected in reason
    else:
        assert tuple(fields[k] for k in ("site", "collection", "subset", "pid", "type", "ID")) == expected


def test_unpaired_and_bad_files_are_reported_and_the_rest_is_written(tmp_path, caplog):
    root = tmp_path / "bad"
    make_demo_archive(root / "archive", broken=True)
    ts = root / "archive" / f"{PREFIX}test-outer-02"
    aff = np.diag([-0.8, -0.8, 2.5, 1.0])
    write_raw_nifti(ts / "imagesTs/02A008_777_0000.nii.gz", np.zeros((6, 6, 4), np.int16), aff)
    write_raw_nifti(ts / "labelsTs/02A008_777.nii.gz", np.full((6, 6, 4), 2, np.uint8), aff)  # label outside {0, 1}
    write_raw_nifti(ts / "imagesTs/02A009_778_0000.nii.gz", np.zeros((6, 6, 4), np.int16), aff)
    cut = write_raw_nifti(ts / "labelsTs/02A009_778.nii.gz", np.ones((6, 6, 4), np.uint8), aff)
    cut.write_bytes(cut.read_bytes()[:-20])  # truncated download
    codes = run_tutorial(root, TUTORIAL[:2])
    assert codes == [0, 1]
    log = caplog.text
    assert f"mask {BROKEN_FILES[0][0]} has no volume" in log and f"volume {BROKEN_FILES[1][0]} has no mask" in log
    assert "02A008_777.nii.gz: mask values [2] are not in the label map (allowed: [0, 1])" in log
    skipped = read_sheet(root / "descriptor/archive_manifest.xlsx", "Skipped").set_index("file_path")["reason"]
    assert "truncated or corrupt gzip" in skipped[f"{PREFIX}test-outer-02/labelsTs/02A009_778.nii.gz"]
    assert f"mask {PREFIX}test-outer-02/labelsTs/02A009_778.nii.gz was skipped by routine 01 (truncated or corrupt gzip" in log
    assert "Traceback" not in log
    assert {p.parent.name for p in (root / "grouped").rglob("*_info.yaml")} == {s.id for s in DEMO_SAMPLES}


SCRIPTS = sorted({line.split()[0] for line in TUTORIAL})


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_run_from_any_directory(script, tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "nme" / script), "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout


# --- real breast MRI (../shared/realdata/pyradiomics) --------------------------------------------------


def _world_resample_exact(src: np.ndarray, src_affine: np.ndarray, shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """``src`` read at the voxel centres of grid (shape, affine); the grids must share voxel centres."""
    to_src = np.linalg.solve(src_affine, affine)
    idx = to_src[:3, :3] @ np.indices(shape).reshape(3, -1) + to_src[:3, 3:4]
    rounded = np.rint(idx)
    assert np.abs(idx - rounded).max() < 1e-3
    return src[tuple(rounded.astype(int))].reshape(shape)


def test_real_breast_mri_passes_01_to_06_with_its_lesion(realdata, tmp_path):
    src_img = nib.load(realdata / "pyradiomics/breast1_image.nii.gz")
    src_lab = nib.load(realdata / "pyradiomics/breast1_label.nii.gz")
    coll = tmp_path / "archive" / f"{PREFIX}test-inner-01"
    (coll / "imagesTs").mkdir(parents=True)
    (coll / "labelsTs").mkdir(parents=True)
    for sid in ("01C101_900001", "01C102_900002"):
        shutil.copy(realdata / "pyradiomics/breast1_image.nii.gz", coll / f"imagesTs/{sid}_0000.nii.gz")
    shutil.copy(realdata / "pyradiomics/breast1_label.nii.gz", coll / "labelsTs/01C101_900001.nii.gz")
    data, affine = flip_storage(np.asanyarray(src_lab.dataobj), src_lab.affine, 1)  # same lesion, stored A->P flipped
    write_raw_nifti(coll / "labelsTs/01C102_900002.nii.gz", data, affine)
    commands = [*TUTORIAL[:4], TUTORIAL[4].replace(" train-val", ""), TUTORIAL[10], TUTORIAL[11].replace("--subsets train val --subsets train --subsets val ", "")]
    assert run_tutorial(tmp_path, commands) == [0] * 7
    m = read_sheet(tmp_path / "descriptor/archive_manifest.xlsx")
    assert set(m["dtype"]) == {"int16"} and set(m[m["type"] == "v3d"]["orientation_to"]) == {"LPS"}
    lesion = np.asanyarray(src_lab.dataobj) == 1
    image = np.asanyarray(src_img.dataobj)
    manifest = read_sheet(tmp_path / "grouped/dataset_manifest.xlsx").set_index("ID")
    for sid, method in (("01C101_900001", "identical"), ("01C102_900002", "reoriented")):
        folder = tmp_path / "grouped/Tongji/test-inner-01/test" / sid
        out = nib.load(folder / f"{sid}_mask_01_NME.nii.gz")
        nme = np.asarray(out.dataobj)
        assert nme.dtype == np.uint8 and nme.sum() == lesion.sum() == 143
        assert np.array_equal(_world_resample_exact(lesion, src_lab.affine, out.shape, out.affine), nme.astype(bool))
        vol = nib.load(folder / f"{sid}_volume.nii.gz")
        assert np.array_equal(_world_resample_exact(image, src_img.affine, vol.shape, vol.affine), np.asarray(vol.dataobj))
        assert read_info(folder / f"{sid}_info.yaml")["source"]["alignment"]["method"] == method
        assert manifest.loc[sid, "mask_01_NME_existence"] == 1 and manifest.loc[sid, "valid_labels"] == "[0, 1]"
    index = read_sheet(tmp_path / "grouped/splits/split01_Tongji/split01_Tongji_test.xlsx")
    assert sorted(index["ID"]) == ["01C101_900001", "01C102_900002"]
    assert _labels(tmp_path / "grouped/dataset_manifest.xlsx", "split07_Mix") == {"01C101_900001": "test", "01C102_900002": "test"}
