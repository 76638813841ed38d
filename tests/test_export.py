"""utils/export_dataset.py: nnU-Net v2, MONAI and SAT-DS exports of the demo datasets' splits, checked file by file.

``nnunet_integrity_problems`` re-does the checks of nnU-Net's own
``verify_dataset_integrity`` (MIC-DKFZ/nnUNet ``nnunetv2/experiment_planning/verify_dataset_integrity.py``)
without nnU-Net installed; when nnunetv2 / monai are importable, their own functions run too.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import REPO, run_script
from utils.dataset.manifest import build_dataset_manifest
from utils.export.cases import LabelPlan
from utils.export.files import place_file
from utils.files.yaml_files import dump_yaml
from utils.labels.label_maps import LabelMap
from utils.files.nifti_io import save_nifti
from utils.files.sample_info import SampleDir, write_info
from utils.dataset.splits import write_split_sheet
from utils.files.spreadsheet import read_sheet
from utils.archive.synthetic import affine_for

EXPORT = "utils/export_dataset.py"
SAT_KEYS = ["image", "mask", "label", "modality", "dataset", "official_split", "patient_id"]


# ---------------------------------------------------------------------------------------------------------------------
# nnU-Net's integrity checks, re-done here so that every test runs them without nnU-Net


def _case_ids(folder: Path, ending: str) -> list[str]:
    return sorted({p.name[: -len(ending) - 5] for p in folder.glob(f"*{ending}")}) if folder.is_dir() else []


def _check_pair(images: list[Path], label: Path | None, expected: list[int], problems: list[str]) -> None:
    imgs = [nib.load(p) for p in images]
    data = [np.asanyarray(i.dataobj) for i in imgs]
    if any(np.isnan(d).any() for d in data):
        problems.append(f"NaN in {images}")
    if any(i.shape != imgs[0].shape or not np.allclose(i.affine, imgs[0].affine) for i in imgs):
        problems.append(f"channels of {images} differ in geometry")
    if label is None:
        return
    seg = nib.load(label)
    values = np.unique(np.asanyarray(seg.dataobj))
    if np.isnan(values).any() or set(values.tolist()) - set(expected):
        problems.append(f"{label}: labels {values.tolist()} outside {expected}")
    if seg.shape != imgs[0].shape:
        problems.append(f"{label}: shape {seg.shape} != image {imgs[0].shape}")
    if not np.allclose(seg.header.get_zooms()[:3], imgs[0].header.get_zooms()[:3]):
        problems.append(f"{label}: spacing differs from the image")
    for what in ("affine", "get_qform", "get_sform"):
        a, b = getattr(seg, what), getattr(imgs[0], what)
        if not np.allclose(a() if callable(a) else a, b() if callable(b) else b):  # origin/direction (nnU-Net: warnings)
            problems.append(f"{label}: {what} differs from the image")


def nnunet_integrity_problems(folder: Path) -> list[str]:
    """Every problem nnU-Net's verify_dataset_integrity would report (origin/direction warnings count as problems)."""
    problems: list[str] = []
    dj = json.loads((folder / "dataset.json").read_text())
    missing = [k for k in ("labels", "channel_names", "numTraining", "file_ending") if k not in dj]
    if missing:
        return [f"dataset.json lacks {missing}"]
    ending, n_channels = dj["file_ending"], len(dj["channel_names"])
    expected = sorted(int(v) for v in dj["labels"].values())
    if dj["labels"].get("background") != 0 or expected != list(range(len(expected))):
        problems.append(f"labels not consecutive from background 0: {dj['labels']}")
    for images_dir, labels_dir, required in (("imagesTr", "labelsTr", True), ("imagesTs", "labelsTs", False)):
        ids = _case_ids(folder / images_dir, ending)
        if images_dir == "imagesTr" and len(ids) != dj["numTraining"]:
            problems.append(f"numTraining {dj['numTraining']} but {len(ids)} cases in imagesTr")
        label_ids = [p.name[: -len(ending)] for p in (folder / labels_dir).glob(f"*{ending}")] if (folder / labels_dir).is_dir() else []
        if set(label_ids) - set(ids):
            problems.append(f"{labels_dir} holds labels without images: {sorted(set(label_ids) - set(ids))}")
        for case in ids:
            channels = sorted(p for p in (folder / images_dir).iterdir() if re.fullmatch(re.escape(case) + r"_\d{4}" + re.escape(ending), p.name))
            if [p.name for p in channels] != [f"{case}_{c:04d}{ending}" for c in range(n_channels)]:
                problems.append(f"{case}: channel files {[p.name for p in channels]}")
            label = folder / labels_dir / f"{case}{ending}"
            if required and not label.is_file():
                problems.append(f"{case}: no label in {labels_dir}")
            _check_pair(channels, label if label.is_file() else None, expected, problems)
    splits = folder / "splits_final.json"
    if splits.is_file():
        train_ids = set(_case_ids(folder / "imagesTr", ending))
        for fold in json.loads(splits.read_text()):
            if set(fold["train"]) & set(fold["val"]) or not set(fold["train"]) | set(fold["val"]) <= train_ids:
                problems.append(f"splits_final.json fold {fold} does not partition imagesTr")
    return problems


# ---------------------------------------------------------------------------------------------------------------------
# demo datasets, built by the same helpers as the pipelines' own tests


@pytest.fixture(scope="module")
def verse(tmp_path_factory) -> Path:
    from tests.test_verse_pipeline import run_01_02, run_03_to_07
    from verse.demo_archive import make_demo_archive

    root = tmp_path_factory.mktemp("verse_export")
    make_demo_archive(root / "archive")
    assert run_01_02(root) == (0, 0)
    assert run_03_to_07(root) == [0] * 9
    return root


@pytest.fixture(scope="module")
def eso(tmp_path_factory) -> Path:
    from eso.demo_archive import make_demo_archive
    from tests.test_eso_pipeline import run_01_02, run_03_to_06

    root = tmp_path_factory.mktemp("eso_export")
    make_demo_archive(root / "archive")
    assert run_01_02(root) == (0, 0)
    assert run_03_to_06(root) == [0] * 8
    return root


def export(root: Path, split: str, out: Path, *extra: object) -> int:
    return run_script(EXPORT, "--manifest_file", root / "grouped/dataset_manifest.xlsx", "--split_name", split, "--output_dir", out, "--no_pbar", *extra)


def subsets_of(manifest: Path, split: str) -> dict[str, str]:
    sheet = read_sheet(manifest, split)
    return dict(zip(sheet["ID"], sheet[split]))


def tree(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """Relative path -> (inode, mtime_ns, bytes) of every file below ``folder``."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[p.relative_to(folder).as_posix()] = (st.st_ino, st.st_mtime_ns, p.read_bytes())
    return out


@pytest.fixture(scope="module")
def verse_export(verse, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("verse_out") / "export"
    assert export(verse, "split01_standard", out, "--format", "nnunetv2", "monai", "satds") == 0
    return out


def test_nnunet_dataset_of_the_standard_verse_split_is_complete_linked_and_passes_nnunet_checks(verse, verse_export):
    folder = verse_export / "nnUNet_raw/Dataset501_VerSe_split01_standard"
    subsets = subsets_of(verse / "grouped/dataset_manifest.xlsx", "split01_standard")
    trainval = sorted(i for i, s in subsets.items() if s != "test")
    test = sorted(i for i, s in subsets.items() if s == "test")
    expected = {"dataset.json", "splits_final.json"}
    expected |= {f"imagesTr/{i}_0000.nii.gz" for i in trainval} | {f"labelsTr/{i}.nii.gz" for i in trainval}
    expected |= {f"imagesTs/{i}_0000.nii.gz" for i in test} | {f"labelsTs/{i}.nii.gz" for i in test}
    assert set(tree(folder)) == expected
    assert nnunet_integrity_problems(folder) == []
    # every image and label is a hard link of the grouped sample's own file
    manifest = read_sheet(verse / "grouped/dataset_manifest.xlsx").set_index("ID")
    for case in trainval + test:
        sub = ("Tr", "Tr") if case in trainval else ("Ts", "Ts")
        assert os.path.samefile(folder / f"images{sub[0]}/{case}_0000.nii.gz", verse / "grouped" / manifest.loc[case, "volume"])
        assert os.path.samefile(folder / f"labels{sub[1]}/{case}.nii.gz", verse / "grouped" / manifest.loc[case, "mask"])
    dj = json.loads((folder / "dataset.json").read_text())
    label_map = LabelMap.load(verse / "descriptor/label_map.yaml")
    assert dj["labels"] == {("background" if lab.index == 0 else lab.name): lab.index for lab in label_map}
    assert list(dj["labels"].values()) == list(range(27))  # every label, T13 = 26 included
    assert dj["channel_names"] == {"0": "CT"} and dj["file_ending"] == ".nii.gz"
    assert (dj["numTraining"], dj["numTest"], dj["name"], dj["licence"]) == (len(trainval), len(test), "VerSe", "CC BY-SA 4.0")
    assert dj["toolkit_export"]["split"] == "split01_standard" and dj["toolkit_export"]["label_remap"] is None
    assert dj["toolkit_export"]["cases"]["verse401-253"] == {"subset": "train", "patient_id": "verse401"}
    folds = json.loads((folder / "splits_final.json").read_text())
    assert folds == [{"train": sorted(i for i, s in subsets.items() if s == "train"), "val": sorted(i for i, s in subsets.items() if s == "val")}]


def test_monai_datalist_paths_resolve_from_the_json_folder_to_the_grouped_files(verse, verse_export):
    path = verse_export / "monai/VerSe_split01_standard/datalist.json"
    data = json.loads(path.read_text())
    subsets = subsets_of(verse / "grouped/dataset_manifest.xlsx", "split01_standard")
    manifest = read_sheet(verse / "grouped/dataset_manifest.xlsx").set_index("ID")
    for key, subset in (("training", "train"), ("validation", "val"), ("test", "test")):
        ids = sorted(i for i, s in subsets.items() if s == subset)
        assert len(data[key]) == len(ids) == data[{"training": "numTraining", "validation": "numValidation", "test": "numTest"}[key]]
        for item, case in zip(data[key], ids):
            assert set(item) == {"image", "label"} and not Path(item["image"]).is_absolute()
            for k, col in (("image", "volume"), ("label", "mask")):  # what load_decathlon_datalist does: normpath(join(base_dir, item))
                assert Path(os.path.normpath(path.parent / item[k])) == (verse / "grouped" / manifest.loc[case, col]).resolve()
    assert data["labels"]["0"] == "background" and data["labels"]["26"] == "additional 13th thoracic vertebra"
    assert data["modality"] == {"0": "CT"} and data["name"] == "VerSe"


def test_satds_jsonl_has_one_record_per_sample_with_patient_and_official_split(verse, verse_export):
    folder = verse_export / "satds/VerSe_split01_standard"
    records = [json.loads(line) for line in (folder / "VerSe.jsonl").read_text().splitlines()]
    subsets = subsets_of(verse / "grouped/dataset_manifest.xlsx", "split01_standard")
    assert len(records) == len(subsets)
    names = [lab.name for lab in LabelMap.load(verse / "descriptor/label_map.yaml")][1:]
    for rec in records:
        assert list(rec) == SAT_KEYS
        case = Path(rec["image"]).name.replace("_volume.nii.gz", "")
        assert Path(rec["image"]).is_absolute() and Path(rec["image"]).is_file() and Path(rec["mask"]) == Path(rec["image"]).parent / f"{case}_mask.nii.gz"
        assert rec["label"] == names and len(rec["label"]) == 26  # label[i] names mask value i + 1
        assert (rec["modality"], rec["dataset"], rec["official_split"]) == ("CT", "VerSe", subsets[case])
        assert rec["patient_id"] == case.split("-")[0]  # verse401-201 and verse401-253 are one patient
    split = json.loads((folder / "split.json").read_text())
    assert "verse401" in split["train"] and sorted(split) == ["test", "train", "val"]


def test_rerun_keeps_the_export_and_a_differing_export_is_refused_unless_overwrite(verse, verse_export, caplog):
    before = tree(verse_export)
    assert export(verse, "split01_standard", verse_export) == 0
    assert tree(verse_export) == before  # same inodes, times and bytes: nothing rewritten
    datalist = verse_export / "monai/VerSe_split01_standard/datalist.json"
    datalist.write_text("{}\n")
    extra = verse_export / "nnUNet_raw/Dataset501_VerSe_split01_standard/imagesTr/stale_0000.nii.gz"
    extra.write_bytes(b"x")
    changed = tree(verse_export)
    caplog.clear()
    assert export(verse, "split01_standard", verse_export) == 1
    assert tree(verse_export) == changed  # nothing written
    assert "exists and differs" in caplog.text and "--overwrite" in caplog.text
    assert not [p for p in verse_export.rglob(".*staging")]
    assert export(verse, "split01_standard", verse_export, "--overwrite") == 0
    after = tree(verse_export)
    assert set(after) == set(before) and all(after[k][2] == before[k][2] for k in before)


def test_a_split_with_a_patient_in_two_subsets_is_refused(verse, tmp_path, caplog):
    manifest = tmp_path / "dataset_manifest.xlsx"
    shutil.copy(verse / "grouped/dataset_manifest.xlsx", manifest)
    sheet = read_sheet(manifest, "split01_standard")
    labels = ["test" if i == "verse401-253" else s for i, s in zip(sheet["ID"], sheet["split01_standard"])]
    write_split_sheet(manifest, "leaky", sheet.drop(columns="split01_standard"), labels)
    args = ["--manifest_file", manifest, "--root_dir", verse / "grouped", "--split_name", "leaky", "--output_dir", tmp_path / "out", "--no_pbar"]
    assert run_script(EXPORT, *args) == 2
    assert "verse401 (train: verse401-201; test: verse401-253)" in caplog.text
    assert not (tmp_path / "out").exists()
    assert run_script(EXPORT, *args, "--allow_patient_overlap", "--format", "monai") == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--split_name", "split09_nothing"], "no worksheet 'split09_nothing'"),
        (["--split_name", "split01_standard", "--root_dir", "/nonexistent"], "file(s) listed in sheet 'split01_standard' are missing"),
        (["--split_name", "split01_standard", "--dataset", "eso"], "column 'site'"),
        (["--split_name", "split01_standard", "--dataset_id", "1000"], "must lie in 1..999"),
    ],
)
def test_bad_inputs_get_one_line_and_write_nothing(verse, tmp_path, caplog, args, message):
    assert run_script(EXPORT, "--manifest_file", verse / "grouped/dataset_manifest.xlsx", "--output_dir", tmp_path / "out", *args) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and message in errors[0] and "\n" not in errors[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.json"))


def test_another_dataset_folder_with_the_same_nnunet_id_is_refused(verse, verse_export, caplog):
    assert export(verse, "split02_verse19", verse_export, "--format", "nnunetv2") == 2
    assert "Dataset501_VerSe_split01_standard with dataset id 501" in caplog.text
    assert export(verse, "split02_verse19", verse_export, "--format", "nnunetv2", "--dataset_id", "511") == 0
    assert nnunet_integrity_problems(verse_export / "nnUNet_raw/Dataset511_VerSe_split02_verse19") == []


# ---------------------------------------------------------------------------------------------------------------------
# ESO: patients of two scans, samples without a mask


def test_eso_standard_split_keeps_pre_and_post_of_a_patient_together(eso, tmp_path):
    assert export(eso, "split01_TJ", tmp_path) == 0
    folder = tmp_path / "nnUNet_raw/Dataset503_ESO_split01_TJ"
    assert nnunet_integrity_problems(folder) == []
    cases = json.loads((folder / "dataset.json").read_text())["toolkit_export"]["cases"]
    assert all(c["patient_id"] == "TJ_" + i.split("_")[1] for i, c in cases.items())
    by_patient: dict[str, set[str]] = {}
    for c in cases.values():
        by_patient.setdefault(c["patient_id"], set()).add(c["subset"])
    assert all(len(s) == 1 for s in by_patient.values())
    records = [json.loads(x) for x in (tmp_path / "satds/ESO_split01_TJ/ESO.jsonl").read_text().splitlines()]
    assert {r["patient_id"] for r in records} == set(by_patient) and {r["modality"] for r in records} == {"CT"}
    assert records[0]["label"] == ["esophagus cancer ROI"]


def test_eso_test_image_without_mask_is_image_only_and_not_in_satds(eso, tmp_path, caplog):
    assert export(eso, "split03_XY", tmp_path, "--format", "nnunetv2") == 2
    assert "no train or val sample with a mask" in caplog.text
    assert export(eso, "split03_XY", tmp_path, "--format", "monai", "satds") == 0
    test = json.loads((tmp_path / "monai/ESO_split03_XY/datalist.json").read_text())["test"]
    without = [item for item in test if "label" not in item]
    assert len(test) == 6 and len(without) == 1 and without[0]["image"].endswith("XY_7710187_post_volume.nii.gz")
    records = (tmp_path / "satds/ESO_split03_XY/ESO.jsonl").read_text().splitlines()
    assert len(records) == 5 and "XY_7710187_post" not in "".join(records)


def test_eso_training_sample_without_mask_is_left_out_with_a_warning(eso, tmp_path, caplog):
    manifest = tmp_path / "dataset_manifest.xlsx"
    shutil.copy(eso / "grouped/dataset_manifest.xlsx", manifest)
    sheet = read_sheet(manifest, "split03_XY")
    labels = ["train" if "7710187" in i else ("val" if "7710023" in i else "test") for i in sheet["ID"]]
    write_split_sheet(manifest, "xy_train", sheet.drop(columns="split03_XY"), labels)
    assert run_script(EXPORT, "--manifest_file", manifest, "--root_dir", eso / "grouped", "--split_name", "xy_train", "--output_dir", tmp_path / "out", "--no_pbar") == 0
    assert "without a mask cannot be training cases and are left out" in caplog.text and "XY_7710187_post" in caplog.text
    folder = tmp_path / "out/nnUNet_raw/Dataset503_ESO_xy_train"
    assert nnunet_integrity_problems(folder) == []
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == ["XY_7710023_post_0000.nii.gz", "XY_7710023_pre_0000.nii.gz", "XY_7710187_pre_0000.nii.gz"]
    dj = json.loads((folder / "dataset.json").read_text())
    assert dj["numTraining"] == 3 and dj["toolkit_export"]["train_val_without_mask_left_out"] == ["XY_7710187_post"]
    assert json.loads((folder / "splits_final.json").read_text()) == [{"train": ["XY_7710187_pre"], "val": ["XY_7710023_post", "XY_7710023_pre"]}]


# ---------------------------------------------------------------------------------------------------------------------
# a small synthetic dataset for label maps with gaps and broken files

AFFINE = affine_for("PIR", (0.9, 1.1, 2.5), origin=(12.0, -30.0, 55.0), oblique_deg=5.0)
GAP_MAP = {"labels": {0: {"name": "background", "short": "Bg"}, 3: {"name": "left thing", "short": "A"}, 7: {"name": "right thing", "short": "B"}}}


def make_synthetic(root: Path, subsets: dict[str, str]) -> tuple[Path, Path]:
    """Grouped samples ``{ID}`` of subject ``p{ID[1]}`` with labels 0/3/7, their manifest, a split sheet and a gap label map."""
    grouped = root / "grouped"
    rng = np.random.default_rng(0)
    for i, sid in enumerate(subsets):
        sample = SampleDir(grouped / sid)
        mask = np.zeros((12, 10, 6), np.uint8)
        mask[2:6, 2:5, 1:4] = 3
        mask[7:10, 5:9, 2:5] = 7 if i % 2 == 0 else 0
        save_nifti(sample.volume, rng.normal(0, 100, mask.shape).astype(np.float32), AFFINE, dtype=np.float32)
        save_nifti(sample.mask, mask, AFFINE, dtype=np.uint8)
        write_info(sample.info, {"ID": sid, "subject": f"p{sid[1]}"})
    manifest = grouped / "dataset_manifest.xlsx"
    assert not build_dataset_manifest(grouped, manifest, ["subject"], show_progress=False).errors
    sheet = read_sheet(manifest)
    write_split_sheet(manifest, "s1", sheet, [subsets[i] for i in sheet["ID"]])
    (root / "descriptor").mkdir()
    (root / "descriptor/label_map.yaml").write_text(dump_yaml(GAP_MAP))  # integer keys (JSON would quote them)
    return manifest, root / "descriptor/label_map.yaml"


SYNTH = {"a1x": "train", "a2x": "train", "a3x": "val", "a4x": "test"}


def test_label_map_with_gaps_is_renumbered_for_nnunet_and_satds_and_kept_for_monai(tmp_path):
    manifest, label_map = make_synthetic(tmp_path, SYNTH)
    out = tmp_path / "export"
    assert run_script(EXPORT, "--manifest_file", manifest, "--split_name", "s1", "--output_dir", out, "--dataset", "verse", "--no_pbar") == 0
    folder = out / "nnUNet_raw/Dataset501_VerSe_s1"
    assert nnunet_integrity_problems(folder) == []
    dj = json.loads((folder / "dataset.json").read_text())
    assert dj["labels"] == {"background": 0, "left thing": 1, "right thing": 2}
    assert dj["toolkit_export"]["label_remap"] == {"0": 0, "3": 1, "7": 2}
    lut = np.zeros(256, np.uint8)
    lut[[3, 7]] = [1, 2]
    for case, sub in (("a1x", "Tr"), ("a3x", "Tr"), ("a4x", "Ts")):
        source = np.asanyarray(nib.load(tmp_path / f"grouped/{case}/{case}_mask.nii.gz").dataobj)
        exported = nib.load(folder / f"labels{sub}/{case}.nii.gz")
        assert np.array_equal(np.asanyarray(exported.dataobj), lut[source]) and exported.get_data_dtype() == np.uint8
        assert np.allclose(exported.affine, AFFINE, atol=1e-5)
        assert os.path.samefile(folder / f"images{sub}/{case}_0000.nii.gz", tmp_path / f"grouped/{case}/{case}_volume.nii.gz")
    monai = json.loads((out / "monai/VerSe_s1/datalist.json").read_text())
    assert monai["labels"] == {"0": "background", "3": "left thing", "7": "right thing"}
    assert Path(os.path.normpath(out / "monai/VerSe_s1" / monai["training"][0]["label"])) == (tmp_path / "grouped/a1x/a1x_mask.nii.gz").resolve()
    records = [json.loads(x) for x in (out / "satds/VerSe_s1/VerSe.jsonl").read_text().splitlines()]
    assert [r["label"] for r in records] == [["left thing", "right thing"]] * 4
    assert records[0]["mask"] == str((out / "satds/VerSe_s1/masks/a1x.nii.gz").resolve())
    assert np.array_equal(np.asanyarray(nib.load(records[0]["mask"]).dataobj), np.asanyarray(nib.load(folder / "labelsTr/a1x.nii.gz").dataobj))
    # a re-run renumbers again and finds the same bytes
    before = tree(out)
    assert run_script(EXPORT, "--manifest_file", manifest, "--split_name", "s1", "--output_dir", out, "--dataset", "verse", "--no_pbar") == 0
    assert tree(out) == before


def _nan_volume(root: Path) -> Path:
    path = root / "grouped/a2x/a2x_volume.nii.gz"
    img = nib.load(path)
    data = np.asanyarray(img.dataobj).copy()
    data[1, 1, 1] = np.nan
    save_nifti(path, data, img.affine, dtype=np.float32)
    return path


def _shifted_mask(root: Path) -> Path:
    path = root / "grouped/a3x/a3x_mask.nii.gz"
    img = nib.load(path)
    affine = img.affine.copy()
    affine[:3, 3] += 0.5
    save_nifti(path, np.asanyarray(img.dataobj), affine, dtype=np.uint8)
    return path


def _changed_mask(root: Path) -> Path:
    path = root / "grouped/a1x/a1x_mask.nii.gz"
    img = nib.load(path)
    save_nifti(path, np.zeros(img.shape, np.uint8), img.affine, dtype=np.uint8)
    return path


@pytest.mark.parametrize(
    "breaker, message",
    [(_nan_volume, "1 NaN/inf voxels"), (_shifted_mask, "affine differs from the volume's"), (_changed_mask, "differ from the manifest's valid_labels")],
)
def test_a_broken_case_is_named_and_nothing_is_written(tmp_path, caplog, breaker, message):
    manifest, _ = make_synthetic(tmp_path, SYNTH)
    bad = breaker(tmp_path)
    out = tmp_path / "export"
    assert run_script(EXPORT, "--manifest_file", manifest, "--split_name", "s1", "--output_dir", out, "--dataset", "verse", "--no_pbar") == 1
    assert any(str(bad) in r.getMessage() and message in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert not [p for p in out.rglob("*") if p.is_file()]


def test_headers_only_trusts_the_manifest_labels_but_still_checks_the_grid(tmp_path, caplog):
    manifest, _ = make_synthetic(tmp_path, SYNTH)
    _nan_volume(tmp_path)  # not looked at: only headers are read
    args = ["--manifest_file", manifest, "--split_name", "s1", "--dataset", "verse", "--headers_only", "--no_pbar"]
    assert run_script(EXPORT, *args, "--output_dir", tmp_path / "out1") == 0
    _shifted_mask(tmp_path)
    assert run_script(EXPORT, *args, "--output_dir", tmp_path / "out2") == 1
    assert "a3x_mask.nii.gz: affine differs" in caplog.text


@pytest.mark.parametrize("mode", ["symlink", "copy"])
def test_symlink_and_copy_modes_give_the_same_content(tmp_path, mode):
    manifest, _ = make_synthetic(tmp_path, {"a1x": "train", "a2x": "val"})
    out = tmp_path / "export"
    args = ["--manifest_file", manifest, "--split_name", "s1", "--output_dir", out, "--dataset", "verse", "--format", "nnunetv2", "--no_pbar"]
    assert run_script(EXPORT, *args, "--link", mode) == 0
    image = out / "nnUNet_raw/Dataset501_VerSe_s1/imagesTr/a1x_0000.nii.gz"
    source = tmp_path / "grouped/a1x/a1x_volume.nii.gz"
    assert image.read_bytes() == source.read_bytes()
    if mode == "symlink":
        assert image.is_symlink() and not os.path.isabs(os.readlink(image)) and (image.parent / os.readlink(image)).resolve() == source.resolve()
    else:
        assert not image.is_symlink() and not os.path.samefile(image, source)
    assert nnunet_integrity_problems(image.parents[1]) == []
    assert run_script(EXPORT, *args, "--link", "hard") == 0  # same content: the existing export is kept


def test_workers_and_the_leftovers_of_an_interrupted_export(tmp_path):
    manifest, _ = make_synthetic(tmp_path, SYNTH)
    out = tmp_path / "export"
    stale = out / "monai/.VerSe_s1.staging"
    stale.mkdir(parents=True)
    (stale / "junk.json").write_text("{}")
    args = ["--manifest_file", manifest, "--split_name", "s1", "--output_dir", out, "--dataset", "verse", "--no_pbar"]
    assert run_script(EXPORT, *args, "--workers", "2") == 0
    assert sorted(p.name for p in (out / "monai").iterdir()) == ["VerSe_s1"] and not list(out.rglob("junk.json"))
    assert sorted(p.name for p in (out / "nnUNet_raw/Dataset501_VerSe_s1/imagesTr").iterdir()) == ["a1x_0000.nii.gz", "a2x_0000.nii.gz", "a3x_0000.nii.gz"]
    assert not list(out.rglob("*.tmp"))


def test_hard_link_falls_back_to_a_copy_across_file_systems(tmp_path, monkeypatch):
    src = tmp_path / "a.bin"
    src.write_bytes(b"abc")

    def no_link(a, b):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    assert place_file(src, tmp_path / "x/b.bin", "hard") == "copy"
    assert (tmp_path / "x/b.bin").read_bytes() == b"abc" and not [p for p in (tmp_path / "x").iterdir() if p.name.startswith(".")]


def test_label_plan_keeps_a_consecutive_map_and_renumbers_one_with_gaps():
    consecutive = LabelPlan.from_label_map(LabelMap.load(REPO / "descriptors/verse/label_map.yaml"))
    assert consecutive.remap is None and consecutive.nnunet_labels()["additional 13th thoracic vertebra"] == 26
    gaps = LabelPlan.from_label_map(LabelMap.from_dict(GAP_MAP))
    assert gaps.remap == ((0, 0), (3, 1), (7, 2)) and gaps.class_names() == ["left thing", "right thing"]
    with pytest.raises(ValueError, match="background label 0"):
        LabelPlan.from_label_map(LabelMap.from_dict({"labels": {1: {"name": "a", "short": "A"}}}))


def test_help_is_fast_and_works_from_any_directory(tmp_path):
    result = subprocess.run([sys.executable, "-X", "importtime", str(REPO / EXPORT), "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0 and "--split_name" in result.stdout
    assert not re.search(r"\| +(pandas|nibabel|scipy|openpyxl)$", result.stderr, re.M)  # heavy modules load only when exporting


# ---------------------------------------------------------------------------------------------------------------------
# the frameworks' own readers, where installed (never a dependency of this project)


def test_nnunetv2_verify_dataset_integrity_accepts_the_export(verse_export):
    pytest.importorskip("nnunetv2")
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(verse_export / "nnUNet_raw/Dataset501_VerSe_split01_standard"), num_processes=1)


def test_monai_load_decathlon_datalist_reads_every_list(verse_export):
    pytest.importorskip("monai")
    from monai.data import load_decathlon_datalist

    path = verse_export / "monai/VerSe_split01_standard/datalist.json"
    for key in ("training", "validation", "test"):
        items = load_decathlon_datalist(path, is_segmentation=True, data_list_key=key)
        assert items and all(Path(i["image"]).is_file() and Path(i["label"]).is_file() for i in items)
