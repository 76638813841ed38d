"""nnU-Net's fingerprint and MONAI's data stats written by the export, checked against independent computations.

The oracles here re-do what the frameworks do, from their documented behaviour, without any of the
library's code: nnU-Net reads a case with SimpleITK (a test dependency), crops to the box of non-zero voxels, draws ``10e7 // cases``
foreground values per case with ``np.random.RandomState(1234).choice`` and describes the pooled draws
with numpy; MONAI turns image and label to RAS (the axis order and flips are known here from how each
affine was built), crops to the box of positive voxels along RAS axes 1 and 2, and takes
``torch.median``-style lower medians, population standard deviations and linear percentiles.
``tests/test_framework_stats_frameworks.py`` compares with nnU-Net and MONAI themselves where installed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from tests.conftest import run_script
from utils.dataset.manifest import build_dataset_manifest
from utils.export import fingerprint as nnfp
from utils.export import framework_stats, monai_stats
from utils.export.extents import box_intersection, box_shape, volume_extents
from utils.export.value_stats import (
    IntegerHistogram,
    lerp,
    percentile_ranks,
    summarize_counts,
    summarize_values,
)
from utils.files.nifti_io import NiftiError, save_nifti
from utils.files.sample_info import SampleDir, write_info
from utils.dataset.splits import write_split_sheet
from utils.files.spreadsheet import read_sheet
from utils.archive.synthetic import affine_for

EXPORT = "utils/export_dataset.py"
LABEL_MAP = {"labels": {0: {"name": "background", "short": "Bg"}, 1: {"name": "thing one", "short": "A"}, 2: {"name": "thing two", "short": "B"}}}
SHAPE = (14, 11, 9)
#: case id -> (subset, axis codes, spacing, obliquity in degrees, labels drawn, integer values?)
CASES = {
    "c02": ("train", "PIR", (0.9, 1.1, 2.5), 5.0, (1, 2), True),
    "c10": ("train", "LPS", (0.7, 0.8, 3.0), 0.0, (2,), True),  # no label 1: MONAI's per-label summary index rule
    "c01": ("val", "ASR", (1.2, 0.6, 2.0), 12.0, (1, 2), False),  # float values: the partition route
    "c07": ("test", "RAS", (1.0, 1.0, 1.0), 0.0, (1, 2), True),
}
#: Array axis -> (RAS axis, flipped) of each axis-code string above, known from how ``affine_for`` builds it.
#: Cases AutoRunner's analysis reads: the datalist's training items, then its validation items.
ANALYSED = [c for subset in ("train", "val") for c in sorted(CASES) if CASES[c][0] == subset]
RAS_OF = {"PIR": ((1, True), (2, True), (0, False)), "LPS": ((0, True), (1, True), (2, False)), "ASR": ((1, False), (2, False), (0, False)), "RAS": ((0, False), (1, False), (2, False))}


def case_arrays(case_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Volume (float32), mask (uint8) and affine of a case: zero borders, negative and positive values."""
    _, codes, spacing, oblique, labels, integer = CASES[case_id]
    rng = np.random.default_rng(int(case_id[1:]))
    volume = rng.normal(40.0, 300.0, SHAPE).astype(np.float32)
    if integer:
        volume = np.round(volume)
    volume[:2] = 0.0  # a zero border on axis 0 (nnU-Net crops it)
    volume[:, -1] = 0.0
    volume[2:, :-1, 0] = -5.0  # negative, not zero: kept by nnU-Net, cropped by MONAI (x > 0)
    mask = np.zeros(SHAPE, np.uint8)
    if 1 in labels:
        mask[3:7, 2:6, 2:5] = 1
        mask[0:2, 0:2, 0:2] = 1  # foreground in the zero border: outside nnU-Net's crop
    if 2 in labels:
        mask[8:12, 5:9, 3:8] = 2
    affine = affine_for(codes, spacing, origin=(12.0, -30.0, 55.0), oblique_deg=oblique)
    return np.asfortranarray(volume), np.asfortranarray(mask), affine


def make_dataset(root: Path, cases: dict = CASES, edit: dict | None = None) -> Path:
    """Grouped samples of ``cases`` (``edit[id](volume, mask)`` may change one), their manifest with split ``s1``, a label map."""
    grouped = root / "grouped"
    for case_id in cases:
        volume, mask, affine = case_arrays(case_id)
        if edit and case_id in edit:
            volume, mask = edit[case_id](volume, mask)
        sample = SampleDir(grouped / case_id)
        save_nifti(sample.volume, volume, affine, dtype=np.float32)
        save_nifti(sample.mask, mask, affine, dtype=np.uint8)
        write_info(sample.info, {"ID": case_id, "subject": f"p{case_id}"})
    manifest = grouped / "dataset_manifest.xlsx"
    assert not build_dataset_manifest(grouped, manifest, ["subject"], show_progress=False).errors
    sheet = read_sheet(manifest)
    write_split_sheet(manifest, "s1", sheet, [cases[i][0] for i in sheet["ID"]])
    (root / "descriptor").mkdir(exist_ok=True)
    (root / "descriptor/label_map.yaml").write_text(yaml.safe_dump(LABEL_MAP))  # plain integer keys
    return manifest


def export(manifest: Path, out: Path, *extra: object) -> int:
    return run_script(EXPORT, "--manifest_file", manifest, "--split_name", "s1", "--output_dir", out, "--dataset", "verse", "--no_pbar", *extra)


FINGERPRINT = "nnUNet_preprocessed/Dataset501_VerSe_s1/dataset_fingerprint.json"
DATA_STATS = "monai/VerSe_s1/data_stats.yaml"
BY_CASE = "monai/VerSe_s1/data_stats_by_case.yaml"


# --- oracles --------------------------------------------------------------------------------------------------------


def oracle_fingerprint(raw: Path, total: float) -> dict:
    """nnU-Net's extractor re-done from its description, on the exported ``imagesTr``/``labelsTr`` (``total`` draws: 10e7)."""
    ids = sorted(p.name[: -len("_0000.nii.gz")] for p in (raw / "imagesTr").glob("*_0000.nii.gz"))
    n = int(total // len(ids))
    shapes, spacings, draws, shares = [], [], [], []
    sitk = pytest.importorskip("SimpleITK")  # nnU-Net's reader
    for case_id in ids:
        img = sitk.ReadImage(str(raw / "imagesTr" / f"{case_id}_0000.nii.gz"))
        image = sitk.GetArrayFromImage(img).astype(np.float32)  # (z, y, x)
        seg = sitk.GetArrayFromImage(sitk.ReadImage(str(raw / "labelsTr" / f"{case_id}.nii.gz"))).astype(np.float32)
        nonzero = np.argwhere(image != 0)
        lo, hi = nonzero.min(axis=0), nonzero.max(axis=0) + 1
        crop = tuple(slice(a, b) for a, b in zip(lo, hi))
        foreground = image[crop][seg[crop] > 0]
        draws.append(np.random.RandomState(1234).choice(foreground, n, replace=True) if len(foreground) else [])
        shapes.append([int(x) for x in hi - lo])
        spacings.append([abs(float(z)) for z in img.GetSpacing()][::-1])
        shares.append(np.prod(hi - lo) / np.prod(image.shape))
    pooled = np.concatenate(draws)
    p00_5, median, p99_5 = np.percentile(pooled, (0.5, 50.0, 99.5))
    return {
        "spacings": spacings,
        "shapes_after_crop": shapes,
        "foreground_intensity_properties_per_channel": {"0": {
            "mean": float(np.mean(pooled)), "median": float(median), "std": float(np.std(pooled)), "min": float(np.min(pooled)),
            "max": float(np.max(pooled)), "percentile_99_5": float(p99_5), "percentile_00_5": float(p00_5),
        }},
        "median_relative_size_after_cropping": float(np.median(shares)),
    }  # fmt: skip


def to_ras(array: np.ndarray, codes: str) -> np.ndarray:
    """The array as MONAI's ``Orientationd(axcodes="RAS")`` holds it (axes known from the codes)."""
    out = array
    for axis, (_, flip) in enumerate(RAS_OF[codes]):
        if flip:
            out = np.flip(out, axis)
    return np.transpose(out, [ax for ras in range(3) for ax, (r, _) in enumerate(RAS_OF[codes]) if r == ras])


def oracle_intensity(values: np.ndarray) -> dict:
    v = np.sort(np.asarray(values, dtype=np.float64).reshape(-1))
    p = np.percentile(v, (0.5, 10, 90, 99.5))
    return {"max": v[-1], "mean": v.mean(), "median": v[(v.size - 1) // 2], "min": v[0], "stdev": v.std(), "percentile": list(p),
            "percentile_00_5": p[0], "percentile_10_0": p[1], "percentile_90_0": p[2], "percentile_99_5": p[3]}  # fmt: skip


def oracle_case_stats(grouped: Path, case_id: str) -> dict:
    """MONAI's per-case statistics re-done on RAS-reoriented arrays read with nibabel (as MONAI's reader)."""
    img = nib.load(grouped / case_id / f"{case_id}_volume.nii.gz")
    volume, affine = np.asarray(img.dataobj, dtype=np.float32), img.affine
    mask = np.asarray(nib.load(grouped / case_id / f"{case_id}_mask.nii.gz").dataobj)
    codes = CASES[case_id][1]
    image, label = to_ras(volume, codes), to_ras(mask, codes)
    positive = np.argwhere((image > 0).any(axis=0))  # MONAI's crop: RAS axis 0 is taken for a channel axis
    (lo1, lo2), (hi1, hi2) = positive.min(axis=0), positive.max(axis=0) + 1
    cropped = image[:, lo1:hi1, lo2:hi2]
    columns = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    spacing = [float(columns[ax]) for ras in range(3) for ax, (r, _) in enumerate(RAS_OF[codes]) if r == ras]
    fg = image[label > 0]
    labels = sorted(int(v) for v in np.unique(label))
    return {
        "image_stats": {"shape": [list(image.shape)], "channels": 1, "cropped_shape": [list(cropped.shape)], "spacing": spacing,
                        "sizemm": [a * b for a, b in zip(image.shape, spacing)], "intensity": [oracle_intensity(cropped)]},
        "image_foreground_stats": {"intensity": [oracle_intensity(fg)]},
        "label_stats": {"labels": labels, "image_intensity": [oracle_intensity(fg)], "label": [
            {"image_intensity": [oracle_intensity(image[label == v])], "foreground_percentage": float((label == v).sum() / label.size)} for v in labels
        ]},
    }  # fmt: skip


def without_paths(doc: dict) -> dict:
    """A data-stats document without the file paths (relative to the export's folder, or joined to MONAI's dataroot)."""
    return {**doc, "stats_by_cases": [{k: v for k, v in e.items() if not k.endswith("filepath")} for e in doc["stats_by_cases"]]}


def assert_close(ours, expected, rtol: float, path: str = "") -> None:
    """Same structure and keys; numbers within ``rtol`` relative (exact for integers)."""
    if isinstance(expected, dict):
        assert isinstance(ours, dict) and set(ours) == set(expected), (path, sorted(ours), sorted(expected))
        for key in expected:
            assert_close(ours[key], expected[key], rtol, f"{path}/{key}")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(ours, list) and len(ours) == len(expected), (path, ours, expected)
        for i, (a, b) in enumerate(zip(ours, expected)):
            assert_close(a, b, rtol, f"{path}[{i}]")
    elif isinstance(expected, (int, np.integer)) and not isinstance(expected, bool):
        assert ours == expected, (path, ours, expected)
    else:
        assert float(ours) == pytest.approx(float(expected), rel=rtol, abs=0.0), (path, ours, expected)


# --- exact statistics -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 10, 201, 1000])
@pytest.mark.parametrize("integer", [True, False])
def test_value_summaries_equal_numpy_and_torch_definitions(n, integer):
    rng = np.random.default_rng(n)
    values = rng.normal(0, 500, n).astype(np.float32)
    if integer:
        values = np.round(values)
    q = (0.0, 0.5, 10.0, 50.0, 90.0, 99.5, 100.0)
    sorted64 = np.sort(values.astype(np.float64))
    routes = [summarize_values(values.reshape(1, -1, 1), q)]
    if integer:
        lo = int(values.min())
        routes.append(summarize_counts(np.bincount((values - lo).astype(np.int64)), lo, q))
    for s in routes:
        assert s.count == n and s.minimum == sorted64[0] and s.maximum == sorted64[-1]
        assert s.lower_median == sorted64[(n - 1) // 2]
        assert s.mean == pytest.approx(sorted64.mean(), rel=1e-12, abs=1e-9) and s.std == pytest.approx(sorted64.std(), rel=1e-12, abs=1e-9)
        assert list(s.percentiles) == pytest.approx(list(np.percentile(sorted64, q)), rel=1e-12, abs=1e-9)


def test_sums_over_several_chunks_and_bad_requests(monkeypatch):
    from utils.export import value_stats

    values = np.random.default_rng(5).normal(3, 2, 50).astype(np.float32)
    monkeypatch.setattr(value_stats, "_CHUNK", 7)  # 8 chunks
    s = summarize_values(values)
    assert s.mean == pytest.approx(values.astype(np.float64).mean(), rel=1e-12) and s.std == pytest.approx(values.astype(np.float64).std(), rel=1e-12)
    assert percentile_ranks(5, 100.0) == (4, 4, 0.0) and percentile_ranks(5, 0.0) == (0, 1, 0.0)  # the ends, just inside
    for q in (100.0001, -0.0001):  # just outside
        with pytest.raises(ValueError, match=f"percentile {q} outside"):
            percentile_ranks(5, q)
    with pytest.raises(ValueError, match="percentile of 0 values"):
        percentile_ranks(0, 50.0)
    with pytest.raises(ValueError, match="empty set"):
        summarize_counts(np.zeros(3, np.int64), 0)


def test_histogram_percentiles_are_numpys_bit_for_bit_on_integer_float32_values():
    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 1000, 12345):
        values = np.round(rng.normal(100, 400, n)).astype(np.float32)
        lo = int(values.min())
        counts = np.bincount((values - lo).astype(np.int64))
        cumulative = np.cumsum(counts)
        for q in (0.5, 50.0, 99.5, 33.3):
            below, above, weight = percentile_ranks(n, q)
            a, b = (float(lo + np.searchsorted(cumulative, r, side="right")) for r in (below, above))
            # exact, not approximate; q as a float64 array, as nnU-Net passes it (a Python float keeps float32)
            assert lerp(a, b, weight) == float(np.percentile(values, np.array([q]))[0])


def test_integer_histogram_refuses_fractions_and_counts_groups():
    hist = IntegerHistogram.empty(-3, 4, groups=2)
    assert hist.add(np.array([-3.0, 4.0, 0.0], np.float32), np.array([0, 8, 8], np.int32))
    assert hist.counts.tolist() == [[1, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0, 0, 1]]
    assert not hist.add(np.array([1.5], np.float32)) and hist.counts.sum() == 3
    assert hist.summary().count == 1 and hist.summary(1).count == 2
    single = IntegerHistogram.empty(5, 5)  # one value: one bin
    assert single.add(np.full((2, 2), 5.0, np.float32)) and single.summary().maximum == 5.0
    assert IntegerHistogram.empty(0, (1 << 21) - 1, groups=2).counts.size == 1 << 22  # at the limit of 2**22 counts
    with pytest.raises(ValueError, match="not histogrammed"):
        IntegerHistogram.empty(0, 1 << 21, groups=2)  # one value more
    with pytest.raises(ValueError, match="empty"):
        summarize_values(np.zeros(0, np.float32))


@pytest.mark.parametrize("case_id", ["c02", "c10"])
def test_histogram_and_partition_routes_give_the_same_case_statistics(case_id, monkeypatch):
    from utils.labels.label_stats import label_stats

    volume, mask, affine = case_arrays(case_id)
    stats = label_stats(mask)

    def case_stats():
        return monai_stats.case_data_stats(volume, mask, affine, stats.counts, volume_extents(volume), stats.foreground)

    by_histogram = case_stats()
    monkeypatch.setattr(monai_stats, "MAX_HISTOGRAM_BINS", 10)  # every value range too wide: the partition route
    assert_close(case_stats(), by_histogram, rtol=1e-12)


@pytest.mark.parametrize("order", ["F", "C"])
def test_volume_extents_are_the_boxes_of_nonzero_and_positive_voxels(order):
    rng = np.random.default_rng(0)
    volume = np.zeros((9, 8, 7), np.float32, order=order)
    volume[2:6, 1:3, 4:7] = rng.normal(0, 1, (4, 2, 3)).astype(np.float32)
    volume[7, 6, 0] = -2.0  # negative: in the non-zero box, not in the positive one
    extents = volume_extents(volume)

    def box(flags):
        idx = np.argwhere(flags)
        return tuple(slice(int(a), int(b) + 1) for a, b in zip(idx.min(axis=0), idx.max(axis=0)))

    assert extents.nonzero == box(volume != 0) and extents.positive == box(volume > 0)
    assert (extents.minimum, extents.maximum) == (float(volume.min()), float(volume.max()))
    assert volume_extents(np.zeros((2, 3, 4), np.float32, order=order)).nonzero is None
    assert volume_extents(-np.ones((2, 3, 4), np.float32, order=order)).positive is None
    with pytest.raises(ValueError, match=r"3D volume with voxels expected, got shape \(3, 4\)"):
        volume_extents(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match="3D volume with voxels expected"):
        volume_extents(np.ones((3, 0, 4), np.float32))


def test_volume_extents_walk_slab_by_slab_and_values_below_one_count(monkeypatch):
    from utils.export import extents as extents_module

    volume = np.zeros((6, 5, 9), np.float32, order="F")
    volume[1, 2, 3] = 0.25  # positive but below 1: its own box
    volume[4, 0, 7] = -0.25  # negative, above -1
    monkeypatch.setattr(extents_module, "_SLAB_VOXELS", 7)  # slabs of one slice each: every slab boundary crossed
    found = volume_extents(volume)
    assert found.positive == (slice(1, 2), slice(2, 3), slice(3, 4))
    assert found.nonzero == (slice(1, 5), slice(0, 3), slice(3, 8))
    assert box_shape(found.nonzero) == (4, 3, 5) and box_intersection(found.nonzero, (slice(0, 2), slice(2, 9), slice(0, 4))) == (slice(1, 2), slice(2, 3), slice(3, 4))
    assert box_intersection(found.positive, (slice(2, 3), slice(0, 5), slice(0, 9))) is None


def test_seeded_draws_are_randomstate_choice_however_many_chunks(monkeypatch):
    values = np.arange(17, dtype=np.float32) * 3
    expected = np.random.RandomState(1234).choice(values, 1001, replace=True)
    monkeypatch.setattr(nnfp, "_DRAW_CHUNK", 64)
    draws, times = nnfp.seeded_draws(values, 1001)
    assert np.array_equal(draws, expected)
    assert times.tolist() == [int(np.count_nonzero(expected == v)) for v in values]


def test_itk_spacing_is_simpleitks(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    from utils.files.nifti_readers import itk_spacing
    from utils.files.nifti_io import load_nifti

    for unit in ("mm", "meter", "micron", "unknown"):
        for spacing in ((0.7, 0.5, 2.0), (0.123, 3.3, 0.0071)):
            img = nib.Nifti1Image(np.zeros((2, 3, 4), np.float32), affine_for("PIR", spacing, oblique_deg=7.0))
            img.header.set_xyzt_units(unit)
            nib.save(img, tmp_path / "u.nii.gz")
            raw = load_nifti(tmp_path / "u.nii.gz").extra["raw_header"]
            assert itk_spacing(raw) == sitk.ReadImage(str(tmp_path / "u.nii.gz")).GetSpacing()  # exactly


# --- the export ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """The dataset of ``CASES`` exported to all formats (10e4 draws for the fingerprint, see conftest)."""
    root = tmp_path_factory.mktemp("stats")
    manifest = make_dataset(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(nnfp, "TOTAL_SAMPLES", 10e4)
        assert export(manifest, root / "export") == 0
    return manifest, root / "export"


@pytest.mark.nnunet_draws
def test_fingerprint_is_written_where_nnunet_looks_and_equals_the_oracle(tmp_path):
    assert nnfp.TOTAL_SAMPLES == 10e7
    manifest = make_dataset(tmp_path)
    out = tmp_path / "export"
    assert export(manifest, out, "--format", "nnunetv2") == 0
    text = (out / FINGERPRINT).read_text()
    expected = oracle_fingerprint(out / "nnUNet_raw/Dataset501_VerSe_s1", 10e7)
    assert json.loads(text) == expected  # exact: the same numpy calls on the same draws
    assert text == json.dumps(expected, sort_keys=True, indent=4)  # nnU-Net's save_json layout
    assert expected["shapes_after_crop"][0] == [9, 10, 12]  # c01: the zero border of axis 0 cropped, axes reversed


def test_data_stats_by_case_equal_the_ras_oracle(exported):
    manifest, out = exported
    doc = yaml.safe_load((out / BY_CASE).read_text())
    datalist = json.loads((out / "monai/VerSe_s1/datalist.json").read_text())
    items = datalist["training"] + datalist["validation"]
    assert [(e["image_filepath"], e["label_filepath"]) for e in doc["stats_by_cases"]] == [(i["image"], i["label"]) for i in items]
    assert [Path(e["image_filepath"]).parent.name for e in doc["stats_by_cases"]] == ANALYSED == ["c02", "c10", "c01"]
    for entry, case_id in zip(doc["stats_by_cases"], ANALYSED):
        got = {k: v for k, v in entry.items() if not k.endswith("filepath")}
        assert_close(got, oracle_case_stats(manifest.parent, case_id), rtol=1e-9)
    assert yaml.safe_load((out / DATA_STATS).read_text()) == {"stats_summary": doc["stats_summary"], "stats_by_cases": []}


def test_data_stats_summary_combines_cases_as_monai(exported):
    manifest, out = exported
    summary = yaml.safe_load((out / DATA_STATS).read_text())["stats_summary"]
    cases = [oracle_case_stats(manifest.parent, c) for c in ANALYSED]
    assert summary["n_cases"] == 3
    intensity = summary["image_foreground_stats"]["intensity"]
    fg = [c["image_foreground_stats"]["intensity"][0] for c in cases]
    assert intensity["max"] == max(f["max"] for f in fg) and intensity["min"] == min(f["min"] for f in fg)
    for key in ("mean", "median", "stdev", "percentile_00_5", "percentile_99_5"):  # the mean over cases, also for median/stdev
        assert intensity[key] == pytest.approx(np.mean([f[key] for f in fg]), rel=1e-9)
    spacing = np.array([c["image_stats"]["spacing"] for c in cases])
    assert summary["image_stats"]["spacing"]["median"] == pytest.approx(np.median(spacing, axis=0).tolist(), rel=1e-12)
    shapes = np.array([c["image_stats"]["shape"][0] for c in cases])
    assert summary["image_stats"]["shape"]["percentile_10_0"] == np.percentile(shapes, 10, axis=0).astype(int).tolist()
    assert summary["label_stats"]["labels"] == [0, 1, 2]
    # MONAI takes the v-th entry of each case's label list for label v: c10 has labels [0, 2], so its
    # label-2 entry is second and enters the summary of "label 1"; nothing enters "label 2" from c10
    pct = [[e["foreground_percentage"] for e in c["label_stats"]["label"]] for c in cases]  # c02, c10, c01
    label1, label2 = summary["label_stats"]["label"][1:]
    assert label1["foreground_percentage"]["mean"] == pytest.approx(np.mean([pct[0][1], pct[1][1], pct[2][1]]), rel=1e-12)
    assert label2["foreground_percentage"]["mean"] == pytest.approx(np.mean([pct[0][2], pct[2][2]]), rel=1e-12)
    assert label2["image_intensity"]["max"] == max(c["label_stats"]["label"][2]["image_intensity"][0]["max"] for c in (cases[0], cases[2]))


def test_rerun_reuses_both_without_computing_and_a_changed_case_recomputes(tmp_path, monkeypatch, caplog):
    manifest = make_dataset(tmp_path, {k: CASES[k] for k in ("c02", "c10")})
    out = tmp_path / "export"
    assert export(manifest, out, "--format", "nnunetv2", "monai") == 0
    before = {p: (out / p).read_bytes() for p in (FINGERPRINT, DATA_STATS, BY_CASE)}

    def no_work(*args, **kwargs):
        raise AssertionError("statistics computed again")

    with monkeypatch.context() as mp:
        mp.setattr(nnfp, "case_fingerprint", no_work)
        mp.setattr(monai_stats, "case_data_stats", no_work)
        caplog.clear()
        assert export(manifest, out, "--format", "nnunetv2", "monai") == 0
        assert export(manifest, out, "--format", "nnunetv2", "monai", "--headers_only") == 0
    assert "nnU-Net fingerprint reused" in caplog.text and "monai data stats reused" in caplog.text
    assert {p: (out / p).read_bytes() for p in before} == before
    # a changed training case: the raw export differs (refused without --overwrite), then both are computed again
    volume, _, affine = case_arrays("c02")
    save_nifti(manifest.parent / "c02/c02_volume.nii.gz", volume + 1.0, affine, dtype=np.float32)
    assert export(manifest, out, "--format", "nnunetv2", "monai") == 1
    assert {p: (out / p).read_bytes() for p in before} == before
    assert export(manifest, out, "--format", "nnunetv2", "monai", "--overwrite") == 0
    after = json.loads((out / FINGERPRINT).read_text())
    assert after == oracle_fingerprint(out / "nnUNet_raw/Dataset501_VerSe_s1", nnfp.TOTAL_SAMPLES) != json.loads(before[FINGERPRINT])
    assert (out / BY_CASE).read_bytes() != before[BY_CASE]


def test_headers_only_cannot_compute_so_a_stale_fingerprint_is_removed(tmp_path, caplog):
    manifest = make_dataset(tmp_path, {k: CASES[k] for k in ("c02", "c01")})
    out = tmp_path / "export"
    assert export(manifest, out, "--format", "nnunetv2") == 0
    volume, _, affine = case_arrays("c01")
    save_nifti(manifest.parent / "c01/c01_volume.nii.gz", volume * 2.0, affine, dtype=np.float32)
    caplog.clear()
    assert export(manifest, out, "--format", "nnunetv2", "--headers_only", "--overwrite") == 0
    assert not (out / FINGERPRINT).exists() and not (out / FINGERPRINT).with_name("dataset_fingerprint_record.json").exists()
    assert "removed" in caplog.text and "nnU-Net will extract it" in caplog.text
    assert export(manifest, out, "--format", "nnunetv2") == 0  # a full read writes it again
    assert json.loads((out / FINGERPRINT).read_text()) == oracle_fingerprint(out / "nnUNet_raw/Dataset501_VerSe_s1", nnfp.TOTAL_SAMPLES)


def test_a_fingerprint_of_unknown_origin_is_kept_by_headers_only_and_replaced_by_a_full_read(tmp_path, caplog):
    manifest = make_dataset(tmp_path, {k: CASES[k] for k in ("c02", "c01")})
    out = tmp_path / "export"
    path = out / FINGERPRINT
    path.parent.mkdir(parents=True)
    path.write_text('{"spacings": []}')  # there before the raw folder: it cannot describe it
    assert export(manifest, out, "--format", "nnunetv2", "--headers_only") == 0
    assert not path.exists()
    assert export(manifest, out, "--format", "nnunetv2") == 0
    path.with_name("dataset_fingerprint_record.json").unlink()
    path.write_text('{"spacings": []}')  # as if nnU-Net had written one for this raw folder (no record of ours)
    assert export(manifest, out, "--format", "nnunetv2", "--headers_only") == 0
    assert path.read_text() == '{"spacings": []}'  # the raw folder is unchanged: kept, nnU-Net's business
    caplog.clear()
    assert export(manifest, out, "--format", "nnunetv2") == 0
    assert "held another fingerprint" in caplog.text
    assert json.loads(path.read_text()) == oracle_fingerprint(out / "nnUNet_raw/Dataset501_VerSe_s1", nnfp.TOTAL_SAMPLES)


def test_workers_give_the_same_files(exported, tmp_path):
    manifest, first = exported
    out = tmp_path / "export"
    assert export(manifest, out, "--workers", "2") == 0
    assert (out / FINGERPRINT).read_bytes() == (first / FINGERPRINT).read_bytes()
    for rel in (DATA_STATS, BY_CASE):  # the file paths are relative to each export's folder: left out
        assert without_paths(yaml.safe_load((out / rel).read_text())) == without_paths(yaml.safe_load((first / rel).read_text()))


def test_cases_without_foreground_or_positive_voxels(tmp_path, caplog):
    edit = {"c10": lambda v, m: (-np.abs(v) - 1.0, m), "c02": lambda v, m: (v, np.zeros_like(m))}  # no voxel > 0; empty mask
    manifest = make_dataset(tmp_path, {k: CASES[k] for k in ("c02", "c10")}, edit)
    out = tmp_path / "export"
    caplog.set_level(logging.INFO)
    assert export(manifest, out) == 0
    assert "leave out 1 case(s), as DataAnalyzer would: c10 (no voxel > 0" in caplog.text
    stats = yaml.safe_load((out / BY_CASE).read_text())
    assert [Path(e["image_filepath"]).parent.name for e in stats["stats_by_cases"]] == ["c02"]
    assert stats["stats_by_cases"][0]["image_foreground_stats"]["intensity"][0]["max"] == 0.0  # MONAI's [0.0] for no foreground
    assert stats["stats_summary"]["label_stats"]["labels"] == [0]
    fingerprint = json.loads((out / FINGERPRINT).read_text())
    assert fingerprint == oracle_fingerprint(out / "nnUNet_raw/Dataset501_VerSe_s1", nnfp.TOTAL_SAMPLES)  # pooled in float64, as nnU-Net's concatenate


def test_no_foreground_in_any_training_case_writes_no_fingerprint(tmp_path, caplog):
    manifest = make_dataset(tmp_path, {"c02": CASES["c02"]}, {"c02": lambda v, m: (v, np.zeros_like(m))})
    assert export(manifest, tmp_path / "export", "--format", "nnunetv2") == 0
    assert not (tmp_path / "export" / FINGERPRINT).exists()
    assert "not written (no training case has a foreground voxel" in caplog.text


def test_a_file_replaced_during_the_export_is_named(tmp_path):
    manifest = make_dataset(tmp_path, {"c02": CASES["c02"]})
    from utils.export.cases import ExportCase
    from utils.export.verify import read_checked_case

    case = ExportCase("c02", "pc02", "train", manifest.parent / "c02/c02_volume.nii.gz", manifest.parent / "c02/c02_mask.nii.gz", (0, 1, 2))
    stamps = {"image": framework_stats.content_stamp(case.volume), "label": framework_stats.content_stamp(case.mask)}
    checked = read_checked_case(case, (0, 1, 2))
    request = framework_stats.StatsRequest(10, False, stamps)
    assert framework_stats.case_statistics(case, checked, request)["fingerprint"].samples.size == 10
    volume, _, affine = case_arrays("c02")
    save_nifti(case.volume, volume + 3.0, affine, dtype=np.float32)
    with pytest.raises(NiftiError, match="c02_volume.nii.gz: the file changed while the export was running"):
        framework_stats.case_statistics(case, checked, request)
    stamp = framework_stats.content_stamp(case.volume)
    assert stamp["gzip_isize"] == 352 + volume.size * 4 and stamp["size"] == case.volume.stat().st_size


def test_dask_cluster_gives_the_same_files(exported, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    import os

    from tests.conftest import REPO

    manifest, first = exported
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.CRITICAL) as cluster:
        out = tmp_path / "export"
        assert export(manifest, out, "--dask_scheduler", cluster.scheduler_address) == 0
    assert (out / FINGERPRINT).read_bytes() == (first / FINGERPRINT).read_bytes()
    for rel in (DATA_STATS, BY_CASE):
        assert without_paths(yaml.safe_load((out / rel).read_text())) == without_paths(yaml.safe_load((first / rel).read_text()))
