"""The QC report (utils/qc_report.py, utils/report/): patient orientation of the pictures whatever the
storage orientation, statistics against a hand computation, the page, broken samples, options."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from PIL import Image

from tests.conftest import run_script
from utils.labels.label_maps import LabelMap
from utils.files.nifti_io import load_nifti, read_mask, read_volume, save_nifti
from utils.report.dataset_profile import GENERIC, Window, available_profiles, detect_profile, load_profile
from utils.report.planes import VIEWS, centre_index, display_axes, extract_plane, plane_index
from utils.report.render import label_color
from utils.report.sample import stored_voxels
from utils.report.stats import label_table, measure_labels, resolution_table, summary_table
from utils.files.sample_info import write_info
from utils.archive.synthetic import affine_for, rotation_about

TOOL = "utils/qc_report.py"
BODY, LEFT, ANTERIOR, SUPERIOR = 4, 1, 2, 3
SPACING = (1.0, 1.5, 2.0)


# ---------------------------------------------------------------- helpers


def write_sample(root: Path, rel: str, volume: np.ndarray | None, mask: np.ndarray | None, affine: np.ndarray, **info) -> Path:
    """A grouped sample folder ``root/rel`` (its last part is the ID) with float32 volume, uint8 mask, info yaml."""
    folder = root / rel
    folder.mkdir(parents=True)
    sid = folder.name
    if volume is not None:
        save_nifti(folder / f"{sid}_volume.nii.gz", np.asarray(volume, dtype=np.float32), affine, dtype=np.float32)
    if mask is not None:
        save_nifti(folder / f"{sid}_mask.nii.gz", np.asarray(mask, dtype=np.uint8), affine, dtype=np.uint8)
    write_info(folder / f"{sid}_info.yaml", {"ID": sid, **info, "history": [{"step": "confirm_pairs", "params": {}}]})
    return folder


def phantom() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RAS-stored phantom: a body block, a block only on the patient's left, one only anterior, one only superior.

    The volume is bright (1000) on the patient's left (low i in RAS storage), 0 elsewhere.

    Returns
    -------
    volume (31, 35, 27) float32, mask uint8, affine (RAS, spacing 1 x 1.5 x 2 mm, non-zero origin)
    """
    shape = (31, 35, 27)
    mask = np.zeros(shape, np.uint8)
    mask[10:21, 12:23, 8:19] = BODY
    mask[3:8, 12:23, 8:19] = LEFT  # i grows towards R: low i is the patient's left
    mask[10:21, 25:30, 8:19] = ANTERIOR  # j grows towards A
    mask[10:21, 12:23, 21:25] = SUPERIOR  # k grows towards S
    volume = np.zeros(shape, np.float32)
    volume[:9] = 1000.0
    return volume, mask, affine_for("RAS", SPACING, origin=(-20.0, 35.0, 110.0))


def stored_as(data: np.ndarray, affine: np.ndarray, codes: str) -> tuple[np.ndarray, np.ndarray]:
    """The same image stored with axis codes ``codes``: every voxel keeps its world position."""
    transform = nib.orientations.ornt_transform(nib.orientations.io_orientation(affine), nib.orientations.axcodes2ornt(codes))
    return np.ascontiguousarray(nib.orientations.apply_orientation(data, transform)), affine @ nib.orientations.inv_ornt_aff(transform, data.shape)


def oblique(affine: np.ndarray, degrees_s: float, degrees_r: float) -> np.ndarray:
    """``affine`` rotated about the world S and R axes (the voxel grid becomes oblique)."""
    out = affine.copy()
    rot = rotation_about(2, degrees_s) @ rotation_about(0, degrees_r)
    out[:3, :] = rot @ affine[:3, :]
    return out


def picture_rgb(out: Path, record: dict) -> np.ndarray:
    return np.asarray(Image.open(out / record["image"]).convert("RGB"))


def view_crop(rgb: np.ndarray, record: dict, view: str) -> np.ndarray:
    x, y, w, h = record["views"][view]
    return rgb[y : y + h, x : x + w]


def label_pixels(crop: np.ndarray, label: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the pixels drawn in a label's colour."""
    return np.nonzero(np.all(crop == np.array(label_color(label), np.uint8), axis=-1))


def run_report(root: Path, out: Path, *extra) -> tuple[int, dict]:
    rc = run_script(TOOL, "--root_dir", root, "--output_dir", out, "--no_pbar", *extra)
    card = json.loads((out / "dataset_card.json").read_text()) if (out / "dataset_card.json").is_file() else {}
    return rc, card


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.rows: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"])
        if tag == "a":
            self.links.append(a["href"])
        if tag in ("script", "link") and (a.get("src") or a.get("href")):
            self.external.append(a.get("src") or a.get("href"))
        if tag == "tr" and "data-flags" in a:
            self.rows.append(a.get("class") or "")


# ---------------------------------------------------------------- orientation

STORAGE = ["RAS", "LPS", "LAI", "PIR", "ASL", "SRA", "ILP"]


@pytest.fixture(scope="module")
def phantom_report(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """The phantom in every storage orientation of STORAGE plus two oblique grids, reported in one run."""
    tmp = tmp_path_factory.mktemp("phantom")
    root = tmp / "grouped"
    volume, mask, affine = phantom()
    for codes in STORAGE:
        vol, aff = stored_as(volume, affine, codes)
        msk, aff_m = stored_as(mask, affine, codes)
        assert np.allclose(aff, aff_m) and "".join(nib.aff2axcodes(aff)) == codes
        write_sample(root, f"A/train/p_{codes}", vol, msk, aff, archive="A", subset="train")
    write_sample(root, "A/train/p_oblique_RAS", volume, mask, oblique(affine, 12.0, -8.0), archive="A", subset="train")
    vol, aff = stored_as(volume, affine, "PIR")
    msk, _ = stored_as(mask, affine, "PIR")
    write_sample(root, "A/train/p_oblique_PIR", vol, msk, oblique(aff, -15.0, 10.0), archive="A", subset="train")
    out = tmp / "qc"
    rc, card = run_report(root, out, "--dataset", "verse", "--window", "-500", "1300")
    assert rc == 0
    return out, {s["id"]: s for s in card["samples"]}


def test_every_storage_orientation_puts_left_anterior_and_superior_on_the_same_side_of_the_picture(phantom_report):
    out, samples = phantom_report
    assert len(samples) == len(STORAGE) + 2
    for sid, record in samples.items():
        rgb = picture_rgb(out, record)
        centre = {}
        for view in ("axial", "coronal", "sagittal"):
            rows, cols = label_pixels(view_crop(rgb, record, view), BODY)
            assert rows.size, (sid, view)
            centre[view] = rows.mean(), cols.mean()

        def where(view: str, label: int) -> tuple[float, float]:
            rows, cols = label_pixels(view_crop(rgb, record, view), label)
            assert rows.size, (sid, view, label)
            return rows.mean() - centre[view][0], cols.mean() - centre[view][1]

        # radiological convention: the patient's left on the picture's right; anterior up (axial) / left (sagittal)
        assert where("axial", LEFT)[1] > 5 and where("coronal", LEFT)[1] > 5, sid
        assert where("axial", ANTERIOR)[0] < -5 and where("sagittal", ANTERIOR)[1] < -5, sid
        assert where("coronal", SUPERIOR)[0] < -5 and where("sagittal", SUPERIOR)[0] < -5, sid
        # each view is the plane through the centre: labels outside it are absent
        assert label_pixels(view_crop(rgb, record, "axial"), SUPERIOR)[0].size == 0
        assert label_pixels(view_crop(rgb, record, "coronal"), ANTERIOR)[0].size == 0
        assert label_pixels(view_crop(rgb, record, "sagittal"), LEFT)[0].size == 0
        # the volume follows the mask: bright on the patient's left, in the rows above the labels (anterior)
        axial = view_crop(rgb, record, "axial")[:3, :, 0].astype(int)
        assert axial[:, -3:].mean() > axial[:, :3].mean() + 80, sid


def test_every_storage_orientation_gives_the_same_views_pixel_for_pixel(phantom_report):
    out, samples = phantom_report
    reference = samples["p_RAS"]
    ref_rgb = picture_rgb(out, reference)
    for sid, record in samples.items():
        rgb = picture_rgb(out, record)
        for view in ("axial", "coronal", "sagittal"):
            assert record["views"][view] == reference["views"][view], (sid, view)
            assert np.array_equal(view_crop(rgb, record, view), view_crop(ref_rgb, reference, view)), (sid, view)
    assert samples["p_PIR"]["orientation"] == "PIR"
    assert samples["p_oblique_PIR"]["orientation"].startswith("Oblique(closest to PIR")
    assert ["oblique" in [f[0] for f in r["flags"]] for r in samples.values()].count(True) == 2


def test_pixel_aspect_follows_the_spacing(phantom_report):
    _, samples = phantom_report
    extent = {"R": 31 * SPACING[0], "A": 35 * SPACING[1], "S": 27 * SPACING[2]}  # mm
    mm_per_px = max(extent.values()) / 256
    expected = {"axial": ("A", "R"), "coronal": ("S", "R"), "sagittal": ("S", "A")}
    for record in samples.values():
        for view, (up, across) in expected.items():
            _, _, w, h = record["views"][view]
            assert abs(h - extent[up] / mm_per_px) <= 1 and abs(w - extent[across] / mm_per_px) <= 1, (view, w, h)


def test_display_axes_and_plane_extraction_by_hand():
    data = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    axes = display_axes(affine_for("LPS", (1.0, 2.0, 3.0)))
    assert axes.axis == (0, 1, 2) and axes.toward_positive == (False, False, True) and axes.spacing == (1.0, 2.0, 3.0)
    # axial of LPS storage: rows towards P = +j as stored, columns towards L = +i as stored, i.e. plane.T
    plane, pixel_mm = extract_plane(data, axes, VIEWS[0], (0, 0, 1))
    assert np.array_equal(plane, data[:, :, 1].T) and pixel_mm == (2.0, 1.0)
    # coronal: rows towards I = -k (flipped), columns towards L = +i
    plane, pixel_mm = extract_plane(data, axes, VIEWS[1], (0, 2, 0))
    assert np.array_equal(plane, data[:, 2, ::-1].T) and pixel_mm == (3.0, 1.0)
    # sagittal: rows towards I (flipped k), columns towards P = +j
    plane, _ = extract_plane(data, axes, VIEWS[2], (1, 0, 0))
    assert np.array_equal(plane, data[1, :, ::-1].T)


def test_plane_index_is_the_centre_or_the_nearest_labelled_plane():
    assert centre_index(2, 7, True) == 4 and centre_index(2, 8, True) == 4 and centre_index(2, 8, False) == 5
    counts = np.array([5, 5, 0, 0, 0, 5, 5])  # two regions with a gap at the centre
    assert plane_index(counts, 10, True) == 11 and plane_index(counts, 10, False) == 15
    assert plane_index(np.array([1, 3, 1]), 0, True) == 1


def test_stored_voxels_is_the_loaded_array_itself_and_unscaled(tmp_path):
    path = tmp_path / "v.nii.gz"
    data = np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32)
    save_nifti(path, np.asfortranarray(data), affine_for("PIR"), dtype=np.float32)
    img = load_nifti(path)
    assert stored_voxels(img) is img.dataobj and np.array_equal(stored_voxels(img), data)  # no copy
    scaled = nib.Nifti1Image(np.arange(8, dtype=np.int16).reshape(2, 2, 2), np.eye(4))
    scaled.header.set_slope_inter(2.0, 1.0)
    nib.save(scaled, tmp_path / "s.nii.gz")
    assert np.array_equal(stored_voxels(load_nifti(tmp_path / "s.nii.gz")), np.arange(8).reshape(2, 2, 2))  # stored values


# ---------------------------------------------------------------- statistics


def test_label_measure_counts_and_boxes_by_hand():
    mask = np.zeros((6, 7, 8), np.uint8, order="F")
    mask[1:3, 2:4, 5:8] = 1  # 12 voxels
    mask[4, 6, 0] = 9
    m = measure_labels(mask, affine_for("LPS", (0.5, 2.0, 3.0)))
    assert m.voxels == {1: 12, 9: 1} and m.voxel_mm3 == pytest.approx(3.0)
    assert m.volumes_mm3 == {1: pytest.approx(36.0), 9: pytest.approx(3.0)}
    assert m.boxes[1] == (slice(1, 3), slice(2, 4), slice(5, 8)) and m.foreground_box() == (slice(1, 5), slice(2, 7), slice(0, 8))
    assert measure_labels(np.zeros((3, 3, 3), np.uint8), np.eye(4)).voxels == {}


def test_tables_by_hand():
    res = resolution_table([(10, 10, 10), (12, 8, 6), (4, 4, 30)], [(1, 1, 2), (0.5, 0.5, 1), (2, 2, 2)])
    assert res == {"n": 3, "spacing_mm": {"min": [0.5, 0.5, 1], "median": [1, 1, 2], "max": [2, 2, 2]},
                   "size": {"min": [4, 4, 6], "median": [10, 8, 10], "max": [12, 10, 30]}}  # fmt: skip
    lm = LabelMap.from_dict({0: {"name": "background", "short": "Bg"}, 1: {"name": "one", "short": "A"}, 2: {"name": "two", "short": "B"}, 3: {"name": "three", "short": "C"}})
    rows = label_table([{1: 200.0, 2: 100.0}, {1: 100.0}, {1: 80.0, 7: 8.0}, {}], lm)
    by = {r["index"]: r for r in rows}
    assert list(by) == [1, 2, 3, 7]
    assert by[1]["cases"] == 3 and by[1]["percentage"] == pytest.approx(75.0)
    assert (by[1]["max_cm3"], by[1]["min_cm3"], by[1]["median_cm3"]) == pytest.approx((0.2, 0.08, 0.1))
    assert by[3]["cases"] == 0 and by[3]["max_cm3"] is None
    assert by[7]["name"] == "not in the label map" and not by[7]["in_label_map"]
    assert summary_table([["A", "train"], ["A", "val"], ["A", "train"], [None, "test"]], ["archive", "subset"]) == [
        {"archive": "", "subset": "test", "samples": 1},
        {"archive": "A", "subset": "train", "samples": 2},
        {"archive": "A", "subset": "val", "samples": 1},
        {"archive": "all", "subset": "", "samples": 4},
    ]


@pytest.fixture
def small_dataset(tmp_path) -> Path:
    """Four samples with hand-countable masks, one without mask, one broken, and a label map."""
    root = tmp_path / "root_dir" / "grouped"
    a = np.zeros((10, 10, 10), np.uint8)
    a[0:10, 0:10, 0:1] = 1  # 100 voxels x 2 mm³ = 0.2 cm³
    a[0:5, 0:10, 5] = 2  # 50 voxels x 2 mm³ = 0.1 cm³
    write_sample(root, "S1/train/a", np.zeros(a.shape), a, affine_for("LPS", (1, 1, 2)), site="S1", subset="train",
                 source={"alignment": {"method": "reoriented", "axis_transform": "mask RPS -> volume LPS"}})  # fmt: skip
    b = np.zeros((12, 8, 6), np.uint8)
    b[:10, :8, :5] = 1  # 400 voxels x 0.25 mm³ = 0.1 cm³
    write_sample(root, "S1/val/b", np.zeros(b.shape), b, affine_for("RAS", (0.5, 0.5, 1)), site="S1", subset="val",
                 warnings=["/x/b.nii.gz: qform and sform disagree by up to 2.5 mm; the sform was used"])  # fmt: skip
    c = np.zeros((4, 4, 30), np.uint8)
    c[0, 0, :10] = 1  # 10 voxels x 8 mm³ = 0.08 cm³
    c[3, 3, 29] = 7  # not in the label map: 8 mm³
    write_sample(root, "S2/test/c", np.zeros(c.shape), c, affine_for("PIR", (2, 2, 2), oblique_deg=20), site="S2", subset="test")
    write_sample(root, "S2/test/nomask", np.zeros((5, 5, 5)), None, affine_for("LPS"), site="S2", subset="test")
    broken = write_sample(root, "S2/test/broken", np.zeros((8, 8, 8)), np.zeros((8, 8, 8)), affine_for("LPS"), site="S2", subset="test")
    vol = broken / "broken_volume.nii.gz"
    vol.write_bytes(vol.read_bytes()[:60])  # truncated download
    lm = tmp_path / "root_dir" / "descriptor" / "label_map.yaml"
    lm.parent.mkdir(parents=True)
    lm.write_text(yaml.safe_dump({"labels": {0: {"name": "background", "short": "Bg"}, 1: {"name": "one", "short": "One"},
                                             2: {"name": "two", "short": "Two"}, 3: {"name": "three", "short": "Three"}}}))  # fmt: skip
    (root / "S2/test/broken/broken_mask.nii.gz").unlink()
    return root


def test_report_statistics_match_a_hand_computation(small_dataset, tmp_path, caplog):
    out = tmp_path / "qc"
    rc, card = run_report(small_dataset, out, "--small_region_manifest", _detect_manifest(small_dataset, tmp_path))
    assert rc == 1  # the broken sample
    assert card["dataset"] == "generic" and "match no descriptors" in caplog.text  # site/subset match no dataset
    assert card["label_map"].endswith("root_dir/descriptor/label_map.yaml")  # the copy beside the grouped folder
    assert (card["n_samples"], card["n_with_mask"], card["n_failed"]) == (5, 3, 1)
    labels = {r["index"]: r for r in card["labels"]}
    assert sorted(labels) == [1, 2, 3, 7]
    assert labels[1]["cases"] == 3 and labels[1]["percentage"] == pytest.approx(100.0)
    assert (labels[1]["max_cm3"], labels[1]["min_cm3"], labels[1]["median_cm3"]) == pytest.approx((0.2, 0.08, 0.1))
    assert labels[2]["cases"] == 1 and labels[2]["percentage"] == pytest.approx(100 / 3) and labels[2]["max_cm3"] == pytest.approx(0.1)
    assert labels[3]["cases"] == 0 and labels[7]["cases"] == 1 and labels[7]["max_cm3"] == pytest.approx(0.008)
    assert card["resolution"]["n"] == 4
    assert card["resolution"]["spacing_mm"]["min"] == pytest.approx([0.5, 0.5, 1])
    assert card["resolution"]["spacing_mm"]["max"] == pytest.approx([2, 2, 2])
    assert card["resolution"]["size"]["median"] == pytest.approx([7.5, 6.5, 8])  # sizes (10,10,10) (12,8,6) (4,4,30) (5,5,5)
    md = (out / "dataset_card.md").read_text()
    assert "| 1 | One (one) | 3 | 100.00% | 0.20 | 0.08 | 0.10 |" in md
    assert "| 2 | Two (two) | 1 | 33.33% | 0.10 | 0.10 | 0.10 |" in md
    assert "| 3 | Three (three) | 0 | 0.00% | - | - | - |" in md
    assert "| 7 | not in the label map | 1 | 33.33% | 0.01 | 0.01 | 0.01 |" in md
    assert "| min | (0.50, 0.50, 1.00) | (4, 4, 5) |" in md and "| median | (1.00, 1.00, 1.50) | (7.5, 6.5, 8) |" in md
    assert "| test | 3 |" in md and "| train | 1 |" in md and "| all | 5 |" in md  # generic profile: by subset
    samples = {s["id"]: s for s in card["samples"]}
    assert samples["a"]["voxels"] == {"1": 100, "2": 50} and samples["a"]["volumes_mm3"]["2"] == pytest.approx(100.0)
    flags = {sid: [f[0] for f in s["flags"]] for sid, s in samples.items()}
    assert flags["a"] == ["reoriented", "small_regions"]
    assert flags["b"] == ["qform_sform"]
    assert flags["c"] == ["unknown_labels", "oblique"]
    assert flags["nomask"] == ["no_mask"]
    assert "broken_volume.nii.gz" in samples["broken"]["error"] and "truncated" in samples["broken"]["error"]
    assert samples["broken"]["group"] == {"subset": "test"} and samples["broken"]["history"] == ["confirm_pairs"]


def _detect_manifest(root: Path, tmp_path: Path) -> Path:
    """A small-region manifest as small_connected_region_detect.py writes it, naming sample ``a``."""
    import pandas as pd

    from utils.files.spreadsheet import write_sheets

    path = tmp_path / "small.xlsx"
    write_sheets(path, {"Manifest": pd.DataFrame([{"ID": "a", "file": "S1/train/a/a_mask_02_Two.nii.gz", "mask": "S1/train/a/a_mask.nii.gz", "label_index": 2}])})
    return path


def test_page_lists_every_sample_and_every_picture_it_references_exists(small_dataset, tmp_path):
    out = tmp_path / "qc"
    run_report(small_dataset, out)
    page = (out / "index.html").read_text(encoding="utf-8")
    parser = _Links()
    parser.feed(page)
    assert len(parser.rows) == 5 and parser.rows.count("error") == 1
    for sid in ("a", "b", "c", "nomask", "broken"):
        assert re.search(rf"<td class=\"id\" title=\"[^\"]*\">{sid}</td>", page), sid
    assert len(parser.images) == 4  # the broken sample has no picture
    for src in parser.images + parser.links:
        assert not re.match(r"^[a-z]+:", src) and (out / src).is_file(), src  # relative, present
    assert parser.external == []  # no CDN, no external script or style sheet
    assert "<script>" in page and "<style>" in page
    assert "truncated" in page  # the error is on the page
    for png in (out / "images").rglob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_mask_and_empty_mask_samples_get_a_picture_and_no_label_statistics(tmp_path):
    root = tmp_path / "grouped"
    write_sample(root, "x/empty", np.zeros((6, 6, 6)), np.zeros((6, 6, 6)), affine_for("LPS"), subset="train")
    rc, card = run_report(root, tmp_path / "qc", "--dataset", "nme")
    assert rc == 0 and card["samples"][0]["flags"] == [["empty_mask", "the mask has no foreground voxel"]]
    assert all(r["cases"] == 0 for r in card["labels"]) and card["n_with_mask"] == 1


def test_a_mask_on_another_grid_is_an_error_row_naming_the_file(tmp_path):
    root = tmp_path / "grouped"
    volume, mask, affine = phantom()
    folder = write_sample(root, "A/train/shifted", volume, None, affine, subset="train")
    shifted = affine.copy()
    shifted[:3, 3] += 5.0
    save_nifti(folder / "shifted_mask.nii.gz", mask, shifted, dtype=np.uint8)
    write_sample(root, "A/train/good", volume, mask, affine, subset="train")
    rc, card = run_report(root, tmp_path / "qc")
    assert rc == 1
    errors = {s["id"]: s["error"] for s in card["samples"]}
    assert errors["good"] is None and "shifted_mask.nii.gz" in errors["shifted"] and "grid" in errors["shifted"]


def test_dataset_is_told_from_the_info_yamls_and_options_are_checked(tmp_path, caplog):
    profiles = available_profiles()
    assert set(profiles) >= {"verse", "nme", "eso"}
    verse_info = {"ID": "v", "archive": "VerSe19", "subset": "train", "in_verse19": 1, "in_verse20": 0}
    nme_info = {"ID": "n", "site": "Tongji", "collection": "train-val", "subset": "train", "pid": "1", "seq": "01A001"}
    eso_info = {"ID": "e", "site": "TJ", "phase": "pre", "pid": "1", "subset": None}
    assert detect_profile([verse_info], profiles).dataset == "verse"
    assert detect_profile([nme_info], profiles).dataset == "nme"
    assert detect_profile([eso_info, eso_info, nme_info], profiles).dataset == "eso"
    assert detect_profile([{"ID": "x"}], profiles) is None
    assert profiles["verse"].window.values == (-500.0, 1300.0) and profiles["nme"].window.percentiles == (1.0, 99.5)
    assert profiles["nme"].modality == "MR" and profiles["eso"].group_by == ("site", "phase")

    root = tmp_path / "grouped"
    volume, mask, affine = phantom()
    write_sample(root, "VerSe19/train/v", volume, mask, affine, **{k: v for k, v in verse_info.items() if k != "ID"})
    rc, card = run_report(root, tmp_path / "qc")
    assert rc == 0 and card["dataset"] == "verse" and card["modality"] == "CT" and card["group_by"] == ["archive", "subset"]
    assert card["window"] == "bone window [-500, 1300]" and card["label_map"].endswith("descriptors/verse/label_map.yaml")
    assert card["summary"][0] == {"archive": "VerSe19", "subset": "train", "samples": 1}
    assert card["samples"][0]["window"].endswith("[-500, 1300]")
    rc, card = run_report(root, tmp_path / "qc2", "--window_percentiles", "0", "100")
    assert rc == 0 and card["samples"][0]["window"] == "percentiles [0, 100] of the planes shown: [0, 1000]"
    # --samples: by ID or path; an unknown one is a one-line error, exit 2
    write_sample(root, "VerSe19/val/w", volume, mask, affine, **{k: v for k, v in verse_info.items() if k != "ID"})
    rc, card = run_report(root, tmp_path / "qc3", "--samples", "VerSe19/val/w")
    assert rc == 0 and [s["id"] for s in card["samples"]] == ["w"]
    caplog.clear()
    assert run_report(root, tmp_path / "qc4", "--samples", "w", "nope")[0] == 2 and "['nope']" in caplog.text
    assert run_report(tmp_path / "missing", tmp_path / "qc5")[0] == 2
    assert run_report(root, tmp_path / "qc6", "--label_explanation", tmp_path / "no.yaml")[0] == 2
    with pytest.raises(SystemExit):
        run_report(root, tmp_path / "qc7", "--window", "0", "1", "--window_percentiles", "1", "99")


def test_window_and_profile_files_are_validated(tmp_path):
    assert Window(values=(-160, 240)).limits(np.zeros(3)) == (-160.0, 240.0)
    assert Window(percentiles=(0, 100)).limits(np.array([3.0, np.nan, 7.0])) == (3.0, 7.0)
    assert Window(percentiles=(1, 99)).limits(np.full(4, 5.0)) == (5.0, 6.0)  # flat image: a valid window
    for bad in (dict(values=(1, 0)), dict(percentiles=(-1, 50)), dict(), dict(values=(0, 1), percentiles=(0, 1))):
        with pytest.raises(ValueError):
            Window(**bad)
    path = tmp_path / "x" / "report.yaml"
    path.parent.mkdir()
    path.write_text("title: X\nwindow: {values: [0]}\n")
    with pytest.raises(ValueError, match="report.yaml"):
        load_profile(path)
    assert GENERIC.window.percentiles is not None


def test_label_colours_are_fixed_and_neighbours_differ():
    colours = [label_color(i) for i in range(1, 33)]
    assert label_color(1) == (255, 0, 0) and len(set(colours)) == 32
    for a, b in zip(colours, colours[1:]):
        assert sum(abs(x - y) for x, y in zip(a, b)) > 150
    for c in colours:  # never a grey level (the pictures tell labels from anatomy by colour)
        assert max(c) - min(c) > 100


def test_workers_and_reruns_give_the_same_files(small_dataset, tmp_path):
    run_report(small_dataset, tmp_path / "one")
    run_report(small_dataset, tmp_path / "two", "--workers", "2")
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert len(files) == 3 + 4  # index.html, dataset_card.md/.json and the 4 pictures
    for rel in files:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes(), rel


# ---------------------------------------------------------------- real data


def _real_sample(root: Path, rel: str, volume_path: Path, mask_path: Path | None, **info) -> Path:
    img = load_nifti(volume_path)
    mask = None
    if mask_path is not None:
        mimg = load_nifti(mask_path)
        mask = read_mask(mimg, mask_path)
        assert np.allclose(mimg.affine, img.affine, atol=1e-4)
    return write_sample(root, rel, read_volume(img, volume_path), mask, img.affine, **info)


@pytest.mark.parametrize("volume, mask, order", [
    ("tptbox/sub-ct_label-22_ct.nii.gz", "tptbox/sub-ct_seg-vert_label-22_msk.nii.gz", [21, 22, 23]),
    ("totalseg/example_ct.nii.gz", "totalseg/spine_report__test_result__totalseg_vertebrae_pp_refined.nii.gz", [19, 20, 21, 22, 23, 24]),
])  # fmt: skip
def test_real_spine_ct_shows_the_vertebrae_from_head_to_feet(realdata, tmp_path, volume, mask, order):
    root = tmp_path / "grouped"
    _real_sample(root, "VerSe20/train/real", realdata / volume, realdata / mask, archive="VerSe20", subset="train", in_verse19=0, in_verse20=1)
    rc, card = run_report(root, tmp_path / "qc")
    assert rc == 0
    record = card["samples"][0]
    rgb = picture_rgb(tmp_path / "qc", record)
    for view in ("coronal", "sagittal"):
        rows = [label_pixels(view_crop(rgb, record, view), lab)[0] for lab in order]
        shown = [r.mean() for r in rows if r.size]
        assert len(shown) >= 2 and shown == sorted(shown), (view, shown)  # superior vertebrae higher up
    assert {int(k) for k in record["voxels"]} == set(order)


def test_real_breast_mri_uses_the_percentile_window(realdata, tmp_path):
    root = tmp_path / "grouped"
    _real_sample(root, "Tongji/train-val/train/01A001_1", realdata / "pyradiomics/breast1_image.nii.gz", realdata / "pyradiomics/breast1_label.nii.gz",
                 site="Tongji", collection="train-val", subset="train", pid="1", seq="01A001")  # fmt: skip
    rc, card = run_report(root, tmp_path / "qc")
    assert rc == 0 and card["dataset"] == "nme"
    record = card["samples"][0]
    lo, hi = (float(v) for v in re.findall(r"-?[\d.]+(?:e[+-]?\d+)?", record["window"].split(":")[-1]))
    assert 0 <= lo < hi
    rgb = picture_rgb(tmp_path / "qc", record)
    grey = view_crop(rgb, record, "axial")[..., 0]
    assert grey.min() < 30 and grey.max() > 220  # the window spreads the intensities over the grey range
    assert record["voxels"]["1"] > 0
