"""End-to-end tests of the VerSe routines 01-07 on the synthetic demo archive."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from utils.archive.scan import FILE_CHECK_COLUMNS
from tests.conftest import REPO, run_script
from utils.files.nifti_io import load_nifti, read_mask
from utils.files.sample_info import read_info
from utils.files.spreadsheet import read_sheet, sheet_names
from utils.archive.synthetic import write_raw_nifti
from verse.archive import ARCHIVE_COLUMNS
from verse.demo_archive import DEMO_SCANS, _scan_arrays, make_demo_archive

SCRIPTS = [
    "verse/01_gen_archive_manifest.py",
    "verse/02_confirm_pairs.py",
    "verse/03_reduce_sacrum_cocygis_and_revise_T13_label.py",
    "verse/04_extract_binary_masks.py",
    "verse/05_gen_dataset_manifest.py",
    "verse/06_make_split.py",
    "verse/07_extract_split_index_manifest.py",
]
SAMPLES = {
    "VerSe19/train/verse004", "VerSe19/train/verse401-201", "VerSe19/train/verse401-253", "VerSe19/val/verse010",
    "VerSe19/test/verse020", "VerSe20/train/gl003", "VerSe20/train/verse505", "VerSe20/train/verse506",
    "VerSe20/val/verse525", "VerSe20/test/gl017",
}  # fmt: skip
REVISION = {26: 0, 27: 0, 28: 26}


def run_01_02(root: Path, *extra: str) -> tuple[int, int]:
    rc1 = run_script(SCRIPTS[0], "--root_dir", root / "archive", "--output_manifest_file", root / "descriptor/archive_manifest.xlsx", "--no_pbar")
    rc2 = run_script(
        SCRIPTS[1], "--root_dir", root / "archive", "--output_dir", root / "grouped",
        "--archive_manifest", root / "descriptor/archive_manifest.xlsx", "--no_pbar", *extra,
    )  # fmt: skip
    return rc1, rc2


def run_03_to_07(root: Path) -> list[int]:
    g, d = root / "grouped", root / "grouped/dataset_manifest.xlsx"
    codes = [
        run_script(SCRIPTS[2], "--root_dir", g, "--no_pbar"),
        run_script(SCRIPTS[3], "--root_dir", g, "--label_explanation", root / "descriptor/label_map.yaml", "--no_pbar"),
        run_script(SCRIPTS[4], "--root_dir", g, "--output_manifest_file", d, "--no_pbar"),
        run_script(SCRIPTS[5], "--manifest_file", d, "--split_name", "split01_standard"),
        run_script(SCRIPTS[5], "--manifest_file", d, "--split_name", "split02_verse19", "--inclusion", "VerSe19"),
        run_script(SCRIPTS[5], "--manifest_file", d, "--split_name", "split03_verse20", "--inclusion", "VerSe20"),
    ]
    for split in ("split01_standard", "split02_verse19", "split03_verse20"):
        codes.append(
            run_script(
                SCRIPTS[6], "--manifest_file", d, "--split_name", split, "--output_index_manifest_dir", g / "splits" / split,
                "--subsets", "train", "val", "--subsets", "train", "--subsets", "val", "--subsets", "test",
            )  # fmt: skip
        )
    return codes


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("verse")
    make_demo_archive(root / "archive")
    assert run_01_02(root) == (0, 0)
    assert run_03_to_07(root) == [0] * 9
    return root


def expected_mask(subject: str, split: str | None) -> np.ndarray:
    """The generator's mask on the volume grid, after routine 03's remap."""
    scan = next(s for s in DEMO_SCANS if s.subject == subject and s.split == split)
    seeds = {}
    for s in DEMO_SCANS:
        seeds.setdefault((s.subject, s.split), len(seeds) + 1)
    _vol, mask, _aff = _scan_arrays(scan, seeds[(subject, split)])
    revised = mask.copy()  # the revision written out here, not with utils.labels.label_maps.remap_labels (routine 03's own code)
    for old, new in REVISION.items():
        revised[mask == old] = new
    return revised


def test_archive_manifest_columns_rows_and_skipped(pipeline):
    path = pipeline / "descriptor/archive_manifest.xlsx"
    assert sheet_names(path) == ["Manifest", "Skipped"]
    manifest = read_sheet(path)
    assert list(manifest.columns) == ARCHIVE_COLUMNS + FILE_CHECK_COLUMNS  # issue 17's two columns come last
    assert len(manifest) == 2 * len(DEMO_SCANS)
    assert not manifest["file_path"].str.endswith((".json", ".png")).any()
    skipped = read_sheet(path, "Skipped")
    assert skipped["file_path"].tolist() == ["dataset-01training/rawdata/sub-gl003/gl003_localizer.nii.gz"]
    assert "outside the grammar" in skipped["reason"][0]
    rows = manifest.set_index("file_path")
    v004 = manifest[manifest["subject"] == "verse004"]
    assert set(v004["archive"]) == {"VerSe19", "VerSe20"} and set(v004["in_verse19"]) == {1} and set(v004["in_verse20"]) == {1}
    assert sorted(manifest[manifest["subject"] == "verse401"]["CT_image_series"]) == ["1 of 2", "1 of 2", "2 of 2", "2 of 2"]
    gl003 = manifest[manifest["subject"] == "gl003"]
    assert set(gl003["suffix"]) == {"dir-ax_ct", "dir-ax_seg-vert_msk"} and set(gl003["in_verse19"]) == {0}
    assert gl003["sex"].isna().all() and gl003["age"].isna().all()  # VerSe20-only: never guessed
    assert set(manifest[manifest["subject"] == "verse010"]["sex"]) == {"M"}
    msk506 = rows.loc["dataset-01training/derivatives/sub-verse506/sub-verse506_dir-iso_seg-vert_msk.nii.gz"]
    assert msk506["orientation_to"] == "Oblique(closest to PIR)" and msk506["dtype"] == "float64"
    flipped = rows.loc["VerSe19/dataset-verse19training/derivatives/sub-verse401/sub-verse401_split-verse201_seg-vert_msk.nii.gz"]
    assert flipped["diff_trans_f_norm"] > 1.0 and flipped["orientation_to"] == "RPS"
    assert rows.loc["dataset-03test/derivatives/sub-gl017/sub-gl017_seg-vert_msk.nii.gz"]["diff_trans_f_norm"] == 0
    assert (pipeline / "descriptor/label_map.yaml").is_file()


def test_grouped_layout_dtypes_and_duplicates(pipeline):
    grouped = pipeline / "grouped"
    found = {p.parent.relative_to(grouped).as_posix() for p in grouped.rglob("*_info.yaml")}
    assert found == SAMPLES
    for rel in SAMPLES:
        sid = rel.split("/")[-1]
        folder = grouped / rel
        assert nib.load(folder / f"{sid}_volume.nii.gz").get_data_dtype() == np.float32
        assert nib.load(folder / f"{sid}_mask.nii.gz").get_data_dtype() == np.uint8
        assert len(list(folder.glob(f"{sid}_mask_*_*.nii.gz"))) == 27
    info = read_info(grouped / "VerSe19/train/verse004/verse004_info.yaml")
    assert info["inclusion"] == ["VerSe19", "VerSe20"] and info["in_verse20"] == 1 and info["warnings"] == []
    assert info["sex"] == "F" and info["age"] == 65 and info["subset"] == "train"
    assert not (grouped / "VerSe20/train/verse004").exists()


@pytest.mark.parametrize(
    "rel, subject, split, method",
    [
        ("VerSe19/train/verse401-201", "verse401", "verse201", "reoriented"),  # mask stored flipped
        ("VerSe20/val/verse525", "verse525", None, "reoriented"),  # mask stored permuted, float64
        ("VerSe20/train/verse506", "verse506", None, "identical"),  # oblique, float64
        ("VerSe20/train/verse505", "verse505", None, "identical"),  # 26/27/28
    ],
)
def test_masks_land_voxel_exactly_on_the_volume_grid(pipeline, rel, subject, split, method):
    sid = rel.split("/")[-1]
    folder = pipeline / "grouped" / rel
    mask = read_mask(load_nifti(folder / f"{sid}_mask.nii.gz"), "m")
    assert np.array_equal(mask, expected_mask(subject, split))
    vol = nib.load(folder / f"{sid}_volume.nii.gz")
    assert np.array_equal(nib.load(folder / f"{sid}_mask.nii.gz").affine, vol.affine)
    assert read_info(folder / f"{sid}_info.yaml")["source"]["alignment"]["method"] == method


def test_t13_revised_and_binary_masks_consistent(pipeline):
    folder = pipeline / "grouped/VerSe20/train/verse505"
    mask = read_mask(load_nifti(folder / "verse505_mask.nii.gz"), "m")
    assert 27 not in mask and 28 not in mask and (mask == 26).any()
    t13 = np.asarray(nib.load(folder / "verse505_mask_26_T13.nii.gz").dataobj)
    assert np.array_equal(t13, (mask == 26).astype(np.uint8))
    bg = np.asarray(nib.load(folder / "verse505_mask_00_Bg.nii.gz").dataobj)
    assert np.array_equal(bg, (mask == 0).astype(np.uint8))
    assert not np.asarray(nib.load(folder / "verse505_mask_01_C1.nii.gz").dataobj).any()


def test_dataset_manifest_and_splits(pipeline):
    path = pipeline / "grouped/dataset_manifest.xlsx"
    assert sheet_names(path) == ["Manifest", "split01_standard", "split02_verse19", "split03_verse20"]
    m = read_sheet(path)
    cols = list(m.columns)
    assert cols[:14] == ["ID", "archive", "subset", "subject", "split", "in_verse19", "in_verse20", "CT_image_series",
                         "sex", "age", "valid_labels", "info", "volume", "mask"]  # fmt: skip
    assert cols[14] == "mask_00_Bg" and cols[40] == "mask_26_T13" and cols[41] == "mask_00_Bg_existence"
    assert cols[68:] == ["szx", "szy", "szz", "spx", "spy", "spz", "orientation_from", "orientation_to", "vol_dtype",
                         "mask_dtype", "transform", "verse19_subset", "verse20_subset"]  # fmt: skip
    assert len(m) == len(SAMPLES)
    row = m.set_index("ID").loc["verse505"]
    assert row["valid_labels"] == "[0, 18, 19, 20, 21, 22, 23, 24, 26]"
    assert row["mask_26_T13_existence"] == 1 and row["mask_01_C1_existence"] == 0
    assert row["volume"] == "VerSe20/train/verse505/verse505_volume.nii.gz"
    assert set(m["vol_dtype"]) == {"float32"} and set(m["mask_dtype"]) == {"uint8"}
    s1 = read_sheet(path, "split01_standard")
    assert s1["split01_standard"].tolist() == s1["subset"].tolist() and len(s1) == len(SAMPLES)
    s2 = read_sheet(path, "split02_verse19")
    assert set(s2["ID"]) == {"verse004", "verse401-201", "verse401-253", "verse010", "verse020"}
    s3 = read_sheet(path, "split03_verse20")
    assert set(s3["ID"]) == {"verse004", "gl003", "verse505", "verse506", "verse525", "gl017"}
    assert dict(zip(s3["ID"], s3["split03_verse20"]))["verse004"] == "train"
    for split in ("split01_standard", "split02_verse19", "split03_verse20"):
        names = sorted(p.name for p in (pipeline / "grouped/splits" / split).iterdir())
        assert names == sorted(f"{split}_{s}.xlsx" for s in ("train_val", "train", "val", "test"))
    tv = read_sheet(pipeline / "grouped/splits/split01_standard/split01_standard_train_val.xlsx")
    assert set(tv["split01_standard"]) == {"train", "val"} and len(tv) == 8


def test_rerunning_03_never_destroys_t13(pipeline, tmp_path):
    root = tmp_path / "r"
    shutil.copytree(pipeline / "grouped", root / "grouped")
    folder = root / "grouped/VerSe20/train/verse505"
    before = (folder / "verse505_mask.nii.gz").read_bytes()
    assert run_script(SCRIPTS[2], "--root_dir", root / "grouped", "--no_pbar") == 0
    assert (folder / "verse505_mask.nii.gz").read_bytes() == before
    assert (read_mask(load_nifti(folder / "verse505_mask.nii.gz"), "m") == 26).any()


def test_rerunning_everything_reproduces_the_manifests(pipeline, tmp_path):
    root = tmp_path / "again"
    shutil.copytree(pipeline, root)
    before = read_sheet(root / "grouped/dataset_manifest.xlsx")
    # 01 reproduces; 02 finds every sample up to date although later steps changed them
    assert run_01_02(root) == (0, 0)
    assert read_sheet(root / "descriptor/archive_manifest.xlsx").equals(read_sheet(pipeline / "descriptor/archive_manifest.xlsx"))
    # an archive file rewritten (same voxels, other bytes): 02 refuses to undo later steps without --overwrite
    raw = root / "archive/dataset-01training/derivatives/sub-verse505/sub-verse505_seg-vert_msk.nii.gz"
    img = nib.load(raw)
    write_raw_nifti(raw, np.asanyarray(img.dataobj), img.affine, qform=False)
    assert run_01_02(root) == (0, 1)
    assert run_01_02(root, "--overwrite") == (0, 0)
    assert not list((root / "grouped").rglob("*_mask_00_Bg.nii.gz"))
    assert run_03_to_07(root) == [0] * 9
    after = read_sheet(root / "grouped/dataset_manifest.xlsx")
    assert after.drop(columns=["info", "volume", "mask"]).equals(before.drop(columns=["info", "volume", "mask"]))


def test_index_manifest_with_empty_subset_writes_nothing(pipeline, tmp_path):
    out = tmp_path / "splits"
    manifest = pipeline / "grouped/dataset_manifest.xlsx"
    shutil.copy(manifest, tmp_path / "d.xlsx")
    from utils.files.spreadsheet import read_sheet as rs
    from utils.dataset.splits import write_split_sheet

    rows = rs(tmp_path / "d.xlsx")
    write_split_sheet(tmp_path / "d.xlsx", "only_test", rows, ["test"] * len(rows))
    rc = run_script(SCRIPTS[6], "--manifest_file", tmp_path / "d.xlsx", "--split_name", "only_test",
                    "--output_index_manifest_dir", out, "--subsets", "test", "--subsets", "val")  # fmt: skip
    assert rc == 2 and not out.exists()


# --- bad input --------------------------------------------------------------------------------------


@pytest.fixture
def broken_archive(tmp_path) -> Path:
    """Demo archive plus: a truncated file, a 4D file, a non-integer mask, an out-of-map label, a shifted mask, a mask without volume."""
    root = tmp_path / "bad"
    archive = root / "archive"
    make_demo_archive(archive, with_participants=False)
    train = archive / "dataset-01training"
    aff = np.diag([-1.0, -1.0, 1.5, 1.0])
    vol = np.zeros((8, 8, 8), np.int16)
    for subject, mask in {
        "verse601": np.full((8, 8, 8), 0.5),  # non-integer
        "verse602": np.full((8, 8, 8), 30, np.uint8),  # label outside 0..28
        "verse603": np.ones((8, 8, 8), np.uint8),  # shifted grid (below)
    }.items():
        write_raw_nifti(train / f"rawdata/sub-{subject}/sub-{subject}_ct.nii.gz", vol, aff)
        m_aff = aff.copy()
        if subject == "verse603":
            m_aff[:3, 3] += [3.0, 0.0, 0.0]
        write_raw_nifti(train / f"derivatives/sub-{subject}/sub-{subject}_seg-vert_msk.nii.gz", mask, m_aff)
    trunc = write_raw_nifti(train / "rawdata/sub-verse604/sub-verse604_ct.nii.gz", vol, aff)
    trunc.write_bytes(trunc.read_bytes()[:-30])
    write_raw_nifti(train / "rawdata/sub-verse605/sub-verse605_ct.nii.gz", np.zeros((4, 4, 4, 2), np.int16), aff)
    write_raw_nifti(train / "derivatives/sub-verse606/sub-verse606_seg-vert_msk.nii.gz", np.zeros((8, 8, 8), np.uint8), aff)
    return root


def test_bad_input_is_reported_per_file_and_the_rest_goes_on(broken_archive, caplog):
    rc1, rc2 = run_01_02(broken_archive)
    assert rc1 == 0
    skipped = read_sheet(broken_archive / "descriptor/archive_manifest.xlsx", "Skipped").set_index("file_path")["reason"]
    assert "truncated or corrupt gzip" in skipped["dataset-01training/rawdata/sub-verse604/sub-verse604_ct.nii.gz"]
    assert "3D image was expected" in skipped["dataset-01training/rawdata/sub-verse605/sub-verse605_ct.nii.gz"]
    assert rc2 == 1
    errors = caplog.text
    assert "sub-verse601_seg-vert_msk.nii.gz: mask holds 512 non-integer values" in errors
    assert "sub-verse602_seg-vert_msk.nii.gz: mask values [30] are not in the label map" in errors
    assert "sub-verse603_seg-vert_msk.nii.gz: mask grid does not match the volume grid" in errors
    assert "verse606: VerSe20: mask dataset-01training/derivatives/sub-verse606/sub-verse606_seg-vert_msk.nii.gz has no volume" in errors
    assert "Traceback" not in errors
    grouped = broken_archive / "grouped"
    assert {p.parent.name for p in grouped.rglob("*_info.yaml")} == {s.split("/")[-1] for s in SAMPLES}


def test_resampling_is_opt_in(broken_archive):
    run_01_02(broken_archive, "--resample_mismatched_masks")
    info = read_info(broken_archive / "grouped/VerSe20/train/verse603/verse603_info.yaml")
    assert info["source"]["alignment"]["method"] == "resampled" and info["warnings"]
    mask = read_mask(load_nifti(broken_archive / "grouped/VerSe20/train/verse603/verse603_mask.nii.gz"), "m")
    # mask voxel i sits at x = 3 - i mm, volume voxel i at x = -i: volume voxel i reads mask voxel i + 3
    assert mask[:5].all() and mask[5:].sum() == 0


def test_participants_option_and_missing_file(tmp_path):
    root = tmp_path / "p"
    make_demo_archive(root / "archive", with_participants=False)
    csv = tmp_path / "people.csv"
    csv.write_text("verse_ID,subject_ID,Sex,age_ct\n4,4,F,65\n201,401,M,71\n")
    out = root / "descriptor/archive_manifest.xlsx"
    assert run_script(SCRIPTS[0], "--root_dir", root / "archive", "--output_manifest_file", out, "--participants", csv, "--no_pbar") == 0
    m = read_sheet(out)
    assert set(m[m["split"] == "verse201"]["sex"]) == {"M"} and m[m["subject"] == "verse010"]["sex"].isna().all()
    assert run_script(SCRIPTS[0], "--root_dir", root / "archive", "--output_manifest_file", out, "--participants", tmp_path / "no.csv") == 2


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_run_from_any_directory(script, tmp_path):
    result = subprocess.run([sys.executable, str(REPO / script), "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout


def test_differing_verse20_copy_is_warned_and_workers_give_the_same_result(tmp_path):
    root = tmp_path / "dup"
    make_demo_archive(root / "archive", with_participants=False)
    copy = root / "archive/dataset-01training/derivatives/sub-verse004/sub-verse004_seg-vert_msk.nii.gz"
    img = nib.load(copy)
    data = np.asanyarray(img.dataobj).copy()
    data[0, 0, 0] = 20
    write_raw_nifti(copy, data, img.affine)
    assert run_01_02(root, "--workers", "2") == (0, 0)
    info = read_info(root / "grouped/VerSe19/train/verse004/verse004_info.yaml")
    assert any("differs in voxels" in w and "dataset-01training" in w for w in info["warnings"])
    serial = tmp_path / "serial"
    make_demo_archive(serial / "archive", with_participants=False)
    write_raw_nifti(serial / "archive/dataset-01training/derivatives/sub-verse004/sub-verse004_seg-vert_msk.nii.gz", data, img.affine)
    assert run_01_02(serial) == (0, 0)
    for rel in SAMPLES:
        sid = rel.split("/")[-1]
        a = read_mask(load_nifti(root / "grouped" / rel / f"{sid}_mask.nii.gz"), "a")
        b = read_mask(load_nifti(serial / "grouped" / rel / f"{sid}_mask.nii.gz"), "b")
        assert np.array_equal(a, b), rel
