"""The audit's pieces on small synthetic arrays with non-identity, anisotropic affines: canonical orientation and the
voxel key, the near-duplicate signature, per-label geometry, each check's threshold just inside and just outside,
the policy file, grading, metadata checks. Oracles use nibabel / scipy / numpy directly, not the audit's code."""

from __future__ import annotations

import copy
import itertools
import math
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from tests.test_qc_report import write_sample
from utils.audit import signature as sig
from utils.audit.checks import (
    AuditContext,
    distribution_findings,
    robust_outliers,
    sample_findings,
)
from utils.audit.findings import Finding, fails, grade, summary
from utils.audit.measure import (
    MeasureJob,
    face_names,
    label_geometry,
    measure_sample,
    nonzero_box,
)
from utils.audit.pairs import (
    duplicate_pairs,
    metadata_findings,
    normalise_sex,
    pair_findings,
)
from utils.audit.policy import IgnoreRule, Policy, PolicyError, load_policy
from utils.export.descriptor import DatasetDescriptor
from utils.files.sample_info import SampleDir
from utils.archive.synthetic import affine_for, rotation_about

SPACING = (0.8, 1.3, 2.5)


def stored_as(data: np.ndarray, affine: np.ndarray, codes: str) -> tuple[np.ndarray, np.ndarray]:
    """The same image stored with axis codes ``codes`` (nibabel's orientation tools): every voxel keeps its world position."""
    transform = nib.orientations.ornt_transform(nib.orientations.io_orientation(affine), nib.orientations.axcodes2ornt(codes))
    return np.ascontiguousarray(nib.orientations.apply_orientation(data, transform)), affine @ nib.orientations.inv_ornt_aff(transform, data.shape)


def canonical_oracle(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return np.asanyarray(nib.as_closest_canonical(nib.Nifti1Image(data, affine)).dataobj)


# ---------------------------------------------------------------------------------------------------------------------
# canonical orientation and the exact-duplicate key


@pytest.mark.parametrize("codes", ["LPS", "RAS", "PIR", "ASL", "ILA"])
def test_canonical_view_is_nibabels_closest_canonical_and_the_key_ignores_storage(codes):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(7, 9, 11)).astype(np.float32)
    affine = affine_for("LPS", SPACING, origin=(10.0, -20.0, 30.0))
    data, aff = stored_as(base, affine, codes)
    can = sig.canonical(data, aff)
    assert np.array_equal(can.view, canonical_oracle(data, aff))
    assert can.view.base is not None  # a view of the stored array, not a copy
    ref = sig.canonical(base, affine)
    assert sig.voxel_key(can, sig.canonical_subgrid(can)[0]) == sig.voxel_key(ref, sig.canonical_subgrid(ref)[0])
    fortran = np.asfortranarray(data)
    can_f = sig.canonical(fortran, aff)
    assert sig.voxel_key(can_f, sig.canonical_subgrid(can_f)[0]) == sig.voxel_key(ref, sig.canonical_subgrid(ref)[0])


def test_key_differs_for_one_changed_voxel_and_for_an_integer_copy_it_is_equal():
    rng = np.random.default_rng(1)
    data = rng.integers(-1000, 1000, size=(12, 10, 8)).astype(np.int16)
    affine = affine_for("RAS", SPACING, oblique_deg=7.0)
    key = sig.voxel_key(sig.canonical(data, affine), sig.canonical_subgrid(sig.canonical(data, affine))[0])
    as_float = data.astype(np.float32)
    can = sig.canonical(as_float, affine)
    assert sig.voxel_key(can, sig.canonical_subgrid(can)[0]) == key  # same values, another dtype: the same scan
    changed = as_float.copy()
    changed[5, 3, 1] = np.nextafter(changed[5, 3, 1], np.float32(np.inf))  # off the sub-grid: only the CRC sees it
    can = sig.canonical(changed, affine)
    assert sig.voxel_key(can, sig.canonical_subgrid(can)[0]) != key


@pytest.mark.parametrize("shape", [(5, 5, 5), (64, 64, 64), (130, 129, 131)])
def test_subgrid_keeps_at_least_the_wanted_voxels_with_the_largest_step(shape):
    wanted = 4096
    step = sig.subgrid_step(shape, wanted)
    assert math.prod(-(-n // step) for n in shape) >= wanted or step == 1
    assert step == 1 or math.prod(-(-n // (step + 1)) for n in shape) < wanted


# ---------------------------------------------------------------------------------------------------------------------
# the near-duplicate signature


def phantom(rng: np.random.Generator, shape=(40, 36, 30)) -> np.ndarray:
    """A piecewise-constant body with a bright block, plus its own noise (sigma 20)."""
    vol = np.full(shape, -1000.0, np.float32)
    i, j = np.ogrid[: shape[0], : shape[1]]
    vol[((i - 20) ** 2 + (j - 18) ** 2 < 15**2)] = 40.0
    vol[15:25, 10:20, 5:25] = 400.0
    return vol + rng.normal(0, 20, shape).astype(np.float32)


def test_residuals_are_the_voxel_minus_its_3x3x3_median_at_the_lattice():
    rng = np.random.default_rng(2)
    data, affine = stored_as(phantom(rng), affine_for("RAS", SPACING), "PIR")
    can = sig.canonical(data, affine)
    oracle_can = canonical_oracle(data, affine).astype(np.float64)
    median = ndimage.median_filter(oracle_can, size=3, mode="nearest")
    lattice = [sig.lattice(n) for n in oracle_can.shape]
    expected = (oracle_can - median)[np.ix_(*lattice)].reshape(-1)
    assert np.allclose(sig.residuals(data, can), expected, atol=1e-3)


def test_a_copy_with_noise_correlates_and_a_twin_with_its_own_noise_does_not():
    rng = np.random.default_rng(3)
    original = phantom(rng)
    twin = phantom(rng)  # the same anatomy, its own noise: another scan
    affine = affine_for("LPS", SPACING)
    copies = {
        "original": original,
        "noise 1x": original + rng.normal(0, 20, original.shape).astype(np.float32),
        "noise 3x": original + rng.normal(0, 60, original.shape).astype(np.float32),
        "rescaled": original * 2.0 + 1024.0,
        "twin": twin,
    }
    res = sig.masked_correlations([sig.noise_part(sig.residuals(v, sig.canonical(v, affine))) for v in copies.values()])
    names = list(copies)
    r = {n: res[0, names.index(n)] for n in names}
    assert r["rescaled"] == pytest.approx(1.0, abs=1e-6)
    assert 0.6 < r["noise 1x"] < 0.8 and 0.3 < r["noise 3x"] < 0.45
    assert abs(r["twin"]) < 0.15


def test_masked_correlations_are_pearson_over_the_common_entries():
    rng = np.random.default_rng(4)
    vectors = [rng.normal(size=50) for _ in range(4)]
    vectors[1][:10] = np.nan
    vectors[2][5:20] = np.nan
    vectors[3] = vectors[0] * 3 + rng.normal(scale=0.5, size=50)
    got = sig.masked_correlations([*vectors, None])
    for a, b in itertools.combinations(range(4), 2):
        common = ~np.isnan(vectors[a]) & ~np.isnan(vectors[b])
        assert got[a, b] == pytest.approx(np.corrcoef(vectors[a][common], vectors[b][common])[0, 1])
    assert np.isnan(got[4]).all() and np.isnan(got[:, 4]).all()


def test_duplicate_pairs_exact_beats_near_and_shapes_must_match():
    policy = Policy()
    recs = [{"path": p, "voxel_key": k, "geometry": {"canonical_shape": s}} for p, k, s in
            [("a", "k1", [4, 4, 4]), ("b", "k1", [4, 4, 4]), ("c", "k2", [4, 4, 4]), ("d", "k3", [4, 4, 5])]]  # fmt: skip
    same = np.arange(64, dtype=np.float32)
    signatures = {p: {"thumbnail": same, "residual": np.sin(same)} for p in "abcd"}
    pairs = duplicate_pairs(recs, signatures, policy)
    assert [(a, b, v["kind"]) for a, b, v in pairs] == [("a", "b", "exact"), ("a", "c", "near"), ("b", "c", "near")]


# ---------------------------------------------------------------------------------------------------------------------
# per-label geometry


@pytest.mark.parametrize("order", ["C", "F"])
def test_label_geometry_against_scipy_and_numpy(order):
    shape = (20, 18, 16)
    mask = np.zeros(shape, np.uint8, order=order)
    mask[2:8, 3:9, 0:5] = 3  # touches the first slice of axis 2
    mask[12:16, 10:14, 9:15] = 3  # a second piece of label 3
    mask[15, 0:5, 4:10] = 7  # touches the first slice of axis 1
    mask[10, 10, 10] = 7
    affine = affine_for("LPS", SPACING, origin=(5.0, 6.0, -7.0), oblique_deg=3.0)
    volume = np.asarray(np.random.default_rng(6).normal(size=shape), dtype=np.float32, order="F" if order == "C" else "C")
    got, under = label_geometry(mask, affine, volume)
    assert np.array_equal(np.sort(under), np.sort(volume[mask > 0]))  # the other memory order than the mask's
    assert sorted(got) == [3, 7]
    names = face_names(affine)
    for label in (3, 7):
        binary = mask == label
        idx = np.argwhere(binary)
        world = affine[:3, :3] @ idx.mean(axis=0) + affine[:3, 3]
        comps, n = ndimage.label(binary, structure=np.ones((3, 3, 3)))
        sizes = sorted(np.bincount(comps.ravel())[1:].tolist(), reverse=True)
        rec = got[label]
        assert rec["voxels"] == binary.sum() and rec["volume_mm3"] == pytest.approx(binary.sum() * abs(np.linalg.det(affine[:3, :3])))
        assert np.allclose(rec["centroid_mm"], world, atol=1e-3)
        assert rec["components"] == n and rec["component_voxels"] == sizes
        assert rec["box"] == [[int(idx[:, a].min()), int(idx[:, a].max())] for a in range(3)]
        main = comps == (np.argmax(np.bincount(comps.ravel())[1:]) + 1)
        faces = []
        for axis in range(3):
            extent = np.ptp(np.argwhere(main)[:, axis]) + 1
            for end, index in ((0, 0), (1, shape[axis] - 1)):
                n_face = int(np.take(binary, index, axis=axis).sum())
                if n_face:
                    faces.append({"direction": names[axis][end], "axis": axis, "voxels": n_face, "fraction": round(n_face / (main.sum() / extent), 4)})
        assert rec["faces"] == faces
    assert [f["direction"] for f in got[3]["faces"]] == ["inferior"]  # LPS: k = 0 is the inferior end
    assert [f["direction"] for f in got[7]["faces"]] == ["anterior"]  # +j points posterior: j = 0 is anterior


def test_nonzero_box_is_the_bounding_box_of_the_nonzero_voxels():
    data = np.zeros((9, 8, 7), np.float32)
    assert nonzero_box(data) is None
    data[2, 3, 4] = 1.0
    data[6, 5, 4] = -2.0
    idx = np.argwhere(data != 0)
    assert nonzero_box(data) == [[int(idx[:, a].min()), int(idx[:, a].max())] for a in range(3)]
    assert nonzero_box(np.full((3, 4, 5), -1000.0)) == [[0, 2], [0, 3], [0, 4]]


# ---------------------------------------------------------------------------------------------------------------------
# measuring a sample folder


def test_measure_sample_foreground_statistics_are_numpys_over_the_mask(tmp_path):
    rng = np.random.default_rng(5)
    volume = rng.normal(100, 50, size=(14, 12, 10)).astype(np.float32)
    mask = np.zeros(volume.shape, np.uint8)
    mask[3:9, 2:7, 1:8] = 1
    mask[10:12, 8:11, 2:4] = 2
    affine = affine_for("PIR", SPACING, origin=(1.0, 2.0, 3.0))
    folder = write_sample(tmp_path, "A/train/s1", volume, mask, affine, subject="p1", subset="train", sex="m", age=50)
    verse = DatasetDescriptor.load(Path(__file__).resolve().parents[1] / "descriptors/verse/dataset.yaml")  # patient_id '{subject}'
    m = measure_sample(SampleDir(folder), MeasureJob(tmp_path, verse, ("sex",), ("age",), ("subset",)))
    rec = m.record
    assert rec["error"] is None and rec["meta"] == {"patient": "p1", "subset": "train", "sex": "m", "age": 50, "keys": {"subset": "train"}}
    fg = volume[mask > 0].astype(np.float64)
    for key, value in {"mean": fg.mean(), "median": np.median(fg), "std": fg.std(), "min": fg.min(), "max": fg.max(),
                       "percentile_00_5": np.percentile(fg, 0.5), "percentile_99_5": np.percentile(fg, 99.5)}.items():  # fmt: skip
        assert rec["foreground"][key] == pytest.approx(value, rel=1e-5), key
    assert rec["foreground"]["voxels"] == fg.size
    assert rec["foreground"]["median_rank_in_volume"] == pytest.approx((volume < np.median(fg)).mean(), abs=1e-3)
    assert rec["intensity"]["min"] == volume.min() and rec["intensity"]["max"] == volume.max()
    assert rec["intensity"]["percentiles"]["50"] == pytest.approx(np.percentile(volume, 50))  # small image: the sub-grid is every voxel
    assert rec["geometry"]["canonical_spacing_mm"] == pytest.approx([SPACING[2], SPACING[0], SPACING[1]])  # PIR: R is the third axis
    assert rec["mask"]["on_volume_grid"] and set(rec["mask"]["labels"]) == {"1", "2"}
    assert set(m.signature) == {"thumbnail", "residual"}


def test_measure_sample_reports_nan_voxels_and_an_off_grid_mask(tmp_path):
    affine = affine_for("LPS", SPACING)
    volume = np.zeros((6, 6, 6), np.float32)
    volume[1, 2, 3] = np.nan
    folder = write_sample(tmp_path, "s_nan", volume, np.zeros((6, 6, 6), np.uint8), affine)
    rec = measure_sample(SampleDir(folder), MeasureJob(tmp_path)).record
    assert "1 non-finite voxels (1 NaN" in rec["error"] and rec["error_file"] == "s_nan/s_nan_volume.nii.gz"
    folder = write_sample(tmp_path, "s_grid", np.ones((6, 6, 6), np.float32), None, affine)
    mask = np.zeros((6, 6, 6), np.uint8)
    mask[2:4, 2:4, 2:4] = 1
    shifted = affine.copy()
    shifted[:3, 3] += 0.5
    nib.save(nib.Nifti1Image(mask, shifted), folder / "s_grid_mask.nii.gz")
    rec = measure_sample(SampleDir(folder), MeasureJob(tmp_path)).record
    (finding,) = [f for f in sample_findings(rec, Policy(), AuditContext()) if f.code == "MASK_GRID_MISMATCH"]
    assert "voxel centres up to 0.866 mm apart" in finding.message and rec["foreground"] is None


# ---------------------------------------------------------------------------------------------------------------------
# checks on hand-made records: each threshold just inside and just outside


def record(path="s", labels=None, percentiles=None, spacing=(1.0, 1.0, 1.0), obliquity=0.0, **extra) -> dict:
    pct = {"0.1": -1010.0, "0.5": -1000.0, "1": -990.0, "2": -980.0, "5": -950.0, "10": -900.0, "25": -500.0, "50": 30.0, "75": 60.0,
           "90": 200.0, "95": 300.0, "98": 500.0, "99": 700.0, "99.5": 900.0, "99.9": 1200.0}  # fmt: skip
    pct.update(percentiles or {})
    rec = {
        "sample": path, "path": path, "files": {"volume": f"{path}/v", "mask": f"{path}/m", "info": f"{path}/i"}, "error": None,
        "geometry": {"shape": [10, 10, 10], "spacing_mm": list(spacing), "canonical_spacing_mm": list(spacing), "canonical_shape": [10, 10, 10],
                     "obliquity_deg": obliquity, "orientation": "LPS", "readers": {"volume": None}},
        "intensity": {"min": pct["0.1"] - 10, "max": pct["99.9"] + 10, "percentiles": pct},
        "mask": {"on_volume_grid": True, "shape": [10, 10, 10], "labels": labels if labels is not None else {"1": label()}},
        "foreground": {"median": 400.0, "median_rank_in_volume": 0.9},
        "meta": {"patient": path, "subset": None, "sex": None, "age": None, "keys": {}},
    }  # fmt: skip
    rec.update(extra)
    return rec


def label(voxels=1000, centroid=(0.0, 0.0, 0.0), pieces=None, faces=()):
    return {"voxels": voxels, "volume_mm3": float(voxels), "centroid_mm": list(centroid), "components": len(pieces or [voxels]),
            "component_voxels": pieces or [voxels], "faces": list(faces), "box": [[0, 1]] * 3}  # fmt: skip


def codes(findings) -> list[str]:
    return sorted(f.code for f in findings)


def test_label_order_in_world_coordinates_tolerance_inside_and_outside():
    policy = Policy()
    policy.merge({"anatomy": {"order": {"direction": "superior", "labels": [1, 2, 3]}}}, "t")
    ok = record(labels={"1": label(centroid=(0, 0, 50)), "3": label(centroid=(0, 5, 10))})
    assert codes(sample_findings(ok, policy, AuditContext())) == []
    swapped = record(labels={"1": label(centroid=(0, 0, 10)), "2": label(centroid=(0, 0, 30)), "3": label(centroid=(0, 0, 5))})
    (f,) = sample_findings(swapped, policy, AuditContext(label_names={0: "Bg", 1: "C1", 2: "C2", 3: "C3"}))
    assert f.code == "LABEL_ORDER" and f.values["pairs"] == [{"expected_first": 1, "expected_second": 2, "gap_mm": -20.0}]
    assert "1 (C1) lies 20 mm further inferior than 2 (C2)" in f.message
    for tol, found in ((19.99, ["LABEL_ORDER"]), (20.01, [])):
        policy.merge({"anatomy": {"order": {"direction": "superior", "labels": [1, 2, 3], "tolerance_mm": tol}}}, "t")
        assert codes(sample_findings(swapped, policy, AuditContext())) == found
    policy.merge({"anatomy": {"order": {"direction": "inferior", "labels": [3, 2, 1]}}}, "t")  # the same order, read upwards
    assert codes(sample_findings(swapped, policy, AuditContext())) == ["LABEL_ORDER"]


def test_fragmented_label_significant_piece_inside_and_outside():
    policy = Policy()
    policy.merge({"anatomy": {"components": {"default": 1, "labels": {2: 2}}}}, "t")
    rec = record(labels={"1": label(pieces=[1000, 100]), "2": label(pieces=[1000, 400])})
    assert codes(sample_findings(rec, policy, AuditContext())) == ["LABEL_FRAGMENTED"]  # 100 = 10 % of 1000: significant
    rec["mask"]["labels"]["1"]["component_voxels"] = [1000, 99]
    assert codes(sample_findings(rec, policy, AuditContext())) == []
    policy.merge({"thresholds": {"components": {"min_voxels": 101}}}, "t")
    rec["mask"]["labels"]["1"]["component_voxels"] = [1000, 100]
    assert codes(sample_findings(rec, policy, AuditContext())) == []


def test_fov_edge_fraction_inside_and_outside():
    face = {"direction": "inferior", "axis": 2, "voxels": 50, "fraction": 0.5}
    rec = record(labels={"1": label(faces=[face])})
    assert codes(sample_findings(rec, Policy(), AuditContext())) == ["LABEL_AT_FOV_EDGE"]
    face["fraction"] = 0.4999
    assert codes(sample_findings(rec, Policy(), AuditContext())) == []


def test_empty_mask_missing_mask_and_unknown_labels():
    assert codes(sample_findings(record(labels={}), Policy(), AuditContext())) == ["MASK_EMPTY"]
    assert codes(sample_findings(record(mask=None, foreground=None), Policy(), AuditContext())) == ["MASK_MISSING"]
    (f,) = sample_findings(record(labels={"1": label(), "28": label()}), Policy(), AuditContext(label_names={0: "Bg", 1: "C1"}))
    assert f.code == "LABEL_UNKNOWN" and f.values["labels"] == [28]


@pytest.mark.parametrize("p05, median, found", [(-199.0, 301.0, ["CT_NOT_HU"]), (-201.0, 301.0, []), (-199.0, 299.0, [])])
def test_ct_not_hu_thresholds(p05, median, found):
    rec = record(percentiles={"0.1": p05 - 1, "0.5": p05, "1": p05 + 1, "2": p05 + 2, "5": p05 + 3, "10": p05 + 4, "25": p05 + 5, "50": median})
    assert codes(sample_findings(rec, Policy(), AuditContext(modality="CT"))) == found
    assert codes(sample_findings(rec, Policy(), AuditContext(modality="MRI"))) == []


def test_ct_below_air_fraction_interpolated_from_the_percentiles():
    rec = record(percentiles={"0.1": -2048.0, "0.5": -2048.0, "1": -1123.5})  # the floor (-1124) lies between the 0.5th and 1st percentiles
    (f,) = sample_findings(rec, Policy(), AuditContext(modality="CT"))
    assert f.code == "CT_BELOW_AIR" and 0.005 < f.values["fraction_below"] < 0.01
    rec = record(percentiles={"0.1": -2048.0, "0.5": -1123.0})
    assert codes(sample_findings(rec, Policy(), AuditContext(modality="CT"))) == []


def test_constant_volume_spread_inside_and_outside():
    policy = Policy()
    policy.merge({"thresholds": {"constant": {"max_spread": 10.0}}}, "t")
    flat = record(percentiles={"1": -1000.0, "99": -990.0})
    assert codes(sample_findings(flat, policy, AuditContext(modality="CT"))) == ["VOLUME_CONSTANT"]
    flat["intensity"]["percentiles"]["99"] = -989.9
    assert "VOLUME_CONSTANT" not in codes(sample_findings(flat, policy, AuditContext(modality="CT")))


def test_oblique_and_anisotropy_limits():
    assert codes(sample_findings(record(obliquity=0.0101), Policy(), AuditContext())) == ["OBLIQUE"]
    assert codes(sample_findings(record(obliquity=0.0099), Policy(), AuditContext())) == []
    assert codes(sample_findings(record(spacing=(0.5, 0.5, 5.01)), Policy(), AuditContext())) == ["ANISOTROPIC"]
    assert codes(sample_findings(record(spacing=(0.5, 0.5, 4.99)), Policy(), AuditContext())) == []


def test_robust_outliers_limit_is_the_larger_of_mad_and_floor():
    values = {f"s{i}": v for i, v in enumerate([10.0, 11.0, 12.0, 13.0, 14.0])}
    # with any x >= 14 added: median 12.5, absolute deviations 0.5 0.5 1.5 1.5 2.5 (x - 12.5): MAD 1.5
    limit = 3 * 1.4826 * 1.5
    assert robust_outliers({**values, "x": 12.5 + limit + 1e-6}, 3, 0.5).keys() == {"x"}
    assert robust_outliers({**values, "x": 12.5 + limit - 1e-6}, 3, 0.5) == {}
    assert robust_outliers({**values, "x": 12.5 + limit + 1.0}, 3, limit + 1.001) == {}  # the floor wins


def test_label_volume_outlier_ratio_inside_and_outside():
    recs = [record(path=f"s{i}", labels={"1": label(voxels=1000)}) for i in range(5)]
    big = record(path="big", labels={"1": label(voxels=2001)})
    found = distribution_findings([*recs, big], Policy(), AuditContext())
    assert [(f.code, f.path) for f in found] == [("LABEL_VOLUME_OUTLIER", "big")] and found[0].values["ratio"] == pytest.approx(2.001)
    big["mask"]["labels"]["1"].update(voxels=1999, volume_mm3=1999.0)
    assert distribution_findings([*recs, big], Policy(), AuditContext()) == []
    assert distribution_findings([*recs[:3], big], Policy(), AuditContext()) == []  # fewer than min_samples


def test_rare_label_and_foreground_outliers_need_enough_samples():
    recs = [record(path=f"s{i}", labels={"1": label()}) for i in range(4)]
    recs.append(record(path="odd", labels={"1": label(), "9": label()}, foreground={"median": 1000.0, "median_rank_in_volume": 0.1}))
    found = distribution_findings(recs, Policy(), AuditContext(modality="CT"))
    assert sorted((f.code, f.path) for f in found) == [("FOREGROUND_INTENSITY_OUTLIER", "odd"), ("LABEL_RARE", "odd")]
    mr = distribution_findings(recs, Policy(), AuditContext(modality="MRI"))  # MRI: the rank, 0.1 against 0.9
    assert ("FOREGROUND_INTENSITY_OUTLIER", "odd") in [(f.code, f.path) for f in mr]
    assert distribution_findings(recs[1:], Policy(), AuditContext(modality="CT")) == []


# ---------------------------------------------------------------------------------------------------------------------
# pairs and metadata


def _pair(subset_a, subset_b, patient_b, splits=None):
    a = record(path="A/a", meta={"patient": "p1", "subset": subset_a, "keys": {}})
    b = record(path="B/b", meta={"patient": patient_b, "subset": subset_b, "keys": {}})
    a["voxel_key"] = b["voxel_key"] = "same"
    return sorted(f.code for f in pair_findings([a, b], {}, Policy(), splits or {}))


def test_duplicate_pair_codes_by_patient_and_subset():
    assert _pair("train", "train", "p1") == ["DUPLICATE_SCAN"]
    assert _pair("train", "train", "p2") == ["DUPLICATE_ACROSS_PATIENTS"]
    assert _pair("train", "Test", "p1") == ["DUPLICATE_ACROSS_SUBSETS"]
    assert _pair("train", "TRAIN", "p2", {"split1": {"A/a": "val", "B/b": "test"}}) == ["DUPLICATE_ACROSS_PATIENTS", "DUPLICATE_ACROSS_SUBSETS"]
    assert _pair(None, None, "p1", {"split1": {"A/a": "train"}}) == ["DUPLICATE_SCAN"]  # only one of them in the split


def test_sex_spellings_age_order_and_patient_across_subsets():
    assert normalise_sex(" Male ") == normalise_sex("m") == normalise_sex("男") == "M" and normalise_sex("") is None
    policy = Policy()
    policy.merge({"metadata": {"scan_order": {"key": "phase", "order": ["pre", "post"]}}}, "t")
    pre = record(path="X/pre/p1_pre", meta={"patient": "p1", "subset": None, "sex": "male", "age": 60, "keys": {"phase": "pre"}})
    post = record(path="X/post/p1_post", meta={"patient": "p1", "subset": None, "sex": "M", "age": 59, "keys": {"phase": "post"}})
    found = metadata_findings([pre, post], policy, {"split": {"X/pre/p1_pre": "train", "X/post/p1_post": "test"}})
    assert sorted((f.code, f.path) for f in found) == [("PATIENT_ACROSS_SUBSETS", "X/post/p1_post"), ("PATIENT_AGE_ORDER", "X/post/p1_post")]
    post["meta"].update(age=60, sex="F")
    found = metadata_findings([pre, post], policy, {})
    assert [(f.code, f.values["sexes"]) for f in found] == [("PATIENT_SEX_MISMATCH", {"X/pre/p1_pre": "M", "X/post/p1_post": "F"})]


# ---------------------------------------------------------------------------------------------------------------------
# policy and grading


def test_policy_layers_merge_in_order(tmp_path):
    dataset = tmp_path / "audit.yaml"
    dataset.write_text("thresholds: {label_volume: {min_ratio: 3}}\nseverity: {OBLIQUE: info}\nignore: [{code: OBLIQUE, sample: a, reason: r1}]\n")
    user = tmp_path / "mine.yaml"
    user.write_text("thresholds: {label_volume: {mad_threshold: 9}}\nseverity: {OBLIQUE: off}\nignore: [{code: MASK_EMPTY, sample: b, reason: r2}]\n")
    policy = load_policy(dataset, user)
    assert policy.thresholds["label_volume"] == {"mad_threshold": 9.0, "min_ratio": 3.0, "min_samples": 5.0}
    assert policy.severity["OBLIQUE"] == "off" and [r.reason for r in policy.ignore] == ["r1", "r2"]
    assert policy.sources == [str(dataset), str(user)]
    with pytest.raises(FileNotFoundError):
        load_policy(tmp_path / "missing.yaml")
    with pytest.raises(PolicyError, match="components.default must be a count"):
        Policy().merge({"anatomy": {"components": {"default": 0}}}, "x")


def test_grade_applies_severities_ignores_and_counts():
    policy = Policy()
    policy.merge({"severity": {"OBLIQUE": "off", "MASK_EMPTY": "warning"}}, "p")
    found = [Finding("OBLIQUE", "a", "A/a", "", "m"), Finding("MASK_EMPTY", "a", "A/a", "", "m"),
             Finding("DUPLICATE_SCAN", "b", "B/b", "", "m", related=["A/a"]), Finding("LABEL_ORDER", "c", "C/c", "", "m")]  # fmt: skip
    graded = grade(copy.deepcopy(found), policy, [IgnoreRule("DUPLICATE_SCAN", "a", "both scans kept on purpose", "review.yaml")])
    assert [(f.code, f.severity) for f in graded.findings] == [("LABEL_ORDER", "error"), ("MASK_EMPTY", "warning")]
    assert [(f.code, f.reason) for f in graded.ignored] == [("DUPLICATE_SCAN", "both scans kept on purpose (review.yaml)")]
    s = summary(graded)
    assert s["by_severity"] == {"error": 1, "warning": 1, "info": 0} and s["ignored"] == 1
    assert fails(graded, "error") and fails(graded, "warning") and not fails(graded, "never")
    assert not fails(grade([Finding("MASK_EMPTY", "a", "A/a", "", "m")], policy), "error")


# ---------------------------------------------------------------------------------------------------------------------
# real data (skipped without ../shared/realdata)


def _real_sample(root: Path, name: str, ct: Path, msk: Path) -> SampleDir:
    from utils.files.nifti_io import load_nifti, read_mask, save_nifti
    from utils.files.sample_info import write_info

    folder = root / name
    folder.mkdir(parents=True)
    vol_img, mask_img = load_nifti(ct), load_nifti(msk)
    save_nifti(folder / f"{name}_volume.nii.gz", np.asarray(vol_img.get_fdata(dtype=np.float32)), vol_img.affine, dtype=np.float32)
    save_nifti(folder / f"{name}_mask.nii.gz", read_mask(mask_img, msk), vol_img.affine, dtype=np.uint8)
    write_info(folder / f"{name}_info.yaml", {"ID": name})
    return SampleDir(folder)


def test_real_spine_ct_order_edges_and_hounsfield_units(realdata, tmp_path):
    """tptbox: a PIR spine CT cut-out with L2, L3, L4, of which L2 and L4 are cut by the field of view; TotalSegmentator's
    RAS abdominal CT with T12-L5: both in the right order in world coordinates and in Hounsfield units."""
    policy = load_policy(Path(__file__).resolve().parents[1] / "descriptors/verse/audit.yaml")
    ctx = AuditContext(modality="CT")
    tpt = _real_sample(tmp_path, "tpt", realdata / "tptbox/sub-ct_label-22_ct.nii.gz", realdata / "tptbox/sub-ct_seg-vert_label-22_msk.nii.gz")
    rec = measure_sample(tpt, MeasureJob(tmp_path)).record
    found = sample_findings(rec, policy, ctx)
    assert sorted((f.code, f.values.get("label")) for f in found) == [("LABEL_AT_FOV_EDGE", 21), ("LABEL_AT_FOV_EDGE", 23)]
    ts = _real_sample(tmp_path, "ts", realdata / "totalseg/example_ct.nii.gz",
                      realdata / "totalseg/spine_report__test_result__totalseg_vertebrae_pp_refined.nii.gz")  # fmt: skip
    rec = measure_sample(ts, MeasureJob(tmp_path)).record
    assert [f.code for f in sample_findings(rec, policy, ctx) if f.code in ("LABEL_ORDER", "CT_NOT_HU", "CT_BELOW_AIR")] == []
    z = {int(k): v["centroid_mm"][2] for k, v in rec["mask"]["labels"].items()}
    assert sorted(z, key=z.get, reverse=True) == [19, 20, 21, 22, 23, 24]  # T12 on top, L5 lowest


def test_rotation_helper_keeps_geometry_tests_honest():
    """The oblique affines above rotate about S: obliquity is the rotation angle (guards the oblique test's premise)."""
    from utils.geometry.orientation import obliquity_deg

    affine = affine_for("LPS", SPACING)
    affine[:3, :3] = rotation_about(2, 3.0) @ affine[:3, :3]
    assert obliquity_deg(affine) == pytest.approx(3.0, abs=1e-6)


def test_every_code_and_threshold_is_documented():
    from utils.audit.codes import CODES
    from utils.audit.policy import DEFAULT_THRESHOLDS

    doc = (Path(__file__).resolve().parents[1] / "docs/audit.md").read_text(encoding="utf-8")
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([A-Z_]+)` \| (error|warning|info)", doc, flags=re.M)}
    assert {code: c.severity for code, c in CODES.items()} == rows
    for group, names in DEFAULT_THRESHOLDS.items():
        line = " ".join(ln for ln in doc.splitlines() if ln.startswith(f"| `{group}."))
        assert all(name in line for name in names), (group, names)


# ---------------------------------------------------------------------------------------------------------------------
# findings carry the file, the message and the values (mutation testing found these unasserted)


def one(findings, code):
    (f,) = [f for f in findings if f.code == code]
    assert f.message and f.sample and f.path
    return f


def test_sample_findings_name_the_right_file_and_values():
    rec = record(path="A/s1", labels={})
    f = one(sample_findings(rec, Policy(), AuditContext()), "MASK_EMPTY")
    assert f.file == "A/s1/m" and "background (0) only" in f.message
    rec = record(path="A/s1", mask=None)
    rec["files"]["mask"] = None
    f = one(sample_findings(rec, Policy(), AuditContext()), "MASK_MISSING")
    assert f.file == "A/s1/A/s1_mask.nii.gz" and "no mask file A/s1_mask.nii.gz" in f.message
    rec = record(path="A/s2")
    rec["mask"].update(on_volume_grid=False, shape=[9, 9, 9], displacement_mm=None)
    f = one(sample_findings(rec, Policy(), AuditContext()), "MASK_GRID_MISMATCH")
    assert f.file == "A/s2/m" and f.values == {"mask_shape": [9, 9, 9], "volume_shape": [10, 10, 10], "displacement_mm": None}
    assert "shape [9, 9, 9], volume [10, 10, 10]" in f.message
    f = one(sample_findings(record(labels={"1": label(voxels=7), "30": label(voxels=5)}), Policy(), AuditContext(label_names={1: "C1"})), "LABEL_UNKNOWN")
    assert f.file == "s/m" and f.values == {"labels": [30], "voxels": {"30": 5}}
    rec = record(error="s/v: file is empty", error_file="s/v")
    f = one(sample_findings(rec, Policy(), AuditContext()), "SAMPLE_UNREADABLE")
    assert (f.file, f.message) == ("s/v", "s/v: file is empty")


def test_reader_verdicts_become_readers_disagree_or_header_ambiguous():
    rec = record()
    rec["geometry"]["readers"] = {
        "volume": {"agree": True, "reasons": [], "displacement_mm": 0.0, "messages": []},
        "mask": {"agree": False, "reasons": ["PIXDIM_SFORM_MISMATCH"], "displacement_mm": 12.5, "messages": ["m"]},
    }
    f = one(sample_findings(rec, Policy(), AuditContext()), "READERS_DISAGREE")
    assert f.file == "s/m" and f.values["image"] == "mask" and f.values["reasons"] == ["PIXDIM_SFORM_MISMATCH"]
    assert "voxel centres up to 12.5 mm apart; PIXDIM_SFORM_MISMATCH" in f.message
    rec["geometry"]["readers"]["mask"].update(displacement_mm=None)
    assert "one reader cannot read it" in one(sample_findings(rec, Policy(), AuditContext()), "READERS_DISAGREE").message
    rec["geometry"]["readers"] = {"volume": {"agree": True, "reasons": ["QFORM_SFORM_MISMATCH"], "displacement_mm": 0.0, "messages": []}}
    f = one(sample_findings(rec, Policy(), AuditContext()), "HEADER_AMBIGUOUS")
    assert f.file == "s/v" and "holds QFORM_SFORM_MISMATCH" in f.message


def test_edge_and_order_boundaries_are_inclusive_where_documented():
    policy = Policy()
    policy.merge({"thresholds": {"fov_edge": {"min_voxels": 5}}}, "t")
    face = {"direction": "superior", "axis": 2, "voxels": 5, "fraction": 2.0}
    f = one(sample_findings(record(labels={"3": label(faces=[face])}), policy, AuditContext()), "LABEL_AT_FOV_EDGE")
    assert f.values == {"label": 3, "faces": [face]} and f.file == "s/m" and "superior edge (5 voxels" in f.message
    face["voxels"] = 4
    assert sample_findings(record(labels={"3": label(faces=[face])}), policy, AuditContext()) == []
    policy.merge({"anatomy": {"order": {"direction": "left", "labels": [1, 2], "tolerance_mm": 5.0}}}, "t")
    exactly = record(labels={"1": label(centroid=(0, 0, 0)), "2": label(centroid=(-5.0, 0, 0))})  # 2 lies 5 mm further left (x is R)
    assert sample_findings(exactly, policy, AuditContext()) == []  # a gap of exactly the tolerance is allowed
    beyond = record(labels={"1": label(centroid=(0, 0, 0)), "2": label(centroid=(-5.25, 0, 0))})
    f = one(sample_findings(beyond, policy, AuditContext()), "LABEL_ORDER")
    assert f.values["pairs"] == [{"expected_first": 1, "expected_second": 2, "gap_mm": -5.25}] and "further right than" in f.message
    assert f.values["direction"] == "left" and "left-to-right order" in f.message
    for direction, word in (("anterior", "posterior"), ("posterior", "anterior"), ("inferior", "superior"), ("right", "left")):
        policy.merge({"anatomy": {"order": {"direction": direction, "labels": [1, 2]}}}, "t")
        axis, sign = {"anterior": (1, 1), "posterior": (1, -1), "inferior": (2, -1), "right": (0, 1)}[direction]
        centre = [0.0, 0.0, 0.0]
        centre[axis] = sign * 3.0  # label 2 lies further in the direction than label 1
        f = one(sample_findings(record(labels={"1": label(), "2": label(centroid=centre)}), policy, AuditContext()), "LABEL_ORDER")
        assert f"further {word} than" in f.message


def test_spacing_and_field_of_view_outliers_inside_and_outside():
    recs = [record(path=f"s{i}", spacing=(1.0, 1.0, 2.0)) for i in range(5)]
    odd = record(path="odd", spacing=(1.0, 1.0, 4.0001))
    odd["geometry"]["canonical_shape"] = [10, 10, 30.001]
    found = distribution_findings([*recs, odd], Policy(), AuditContext())
    spacing = one(found, "SPACING_OUTLIER")
    assert spacing.path == "odd" and list(spacing.values["axes"]) == ["superior-inferior"]
    assert spacing.values["axes"]["superior-inferior"]["ratio"] == pytest.approx(2.00005)
    assert "4 mm along superior-inferior (2x the median 2)" in spacing.message
    assert one(found, "SHAPE_OUTLIER").values["axes"]["superior-inferior"]["value"] == pytest.approx(30.001)
    odd["geometry"]["canonical_spacing_mm"] = [1.0, 1.0, 3.9999]
    odd["geometry"]["canonical_shape"] = [10, 10, 29.999]
    assert [f.code for f in distribution_findings([*recs, odd], Policy(), AuditContext())] == []
    assert distribution_findings([*recs[:3], odd], Policy(), AuditContext()) == []  # fewer than min_samples


def test_fraction_below_the_percentile_curve():
    from utils.audit.checks import _fraction_below

    pct = {"1": -10.0, "50": 0.0, "99": 10.0}
    assert _fraction_below(pct, -11.0) == 0.0 and _fraction_below(pct, -10.0) == pytest.approx(0.01)
    assert _fraction_below(pct, -5.0) == pytest.approx(0.255) and _fraction_below(pct, 10.5) == 1.0
    assert _fraction_below(pct, 10.0) == pytest.approx(0.99)


def test_hounsfield_and_constant_findings_values_and_exact_boundaries():
    at = record(percentiles={"0.1": -201.0, "0.5": -200.0, "1": -199.0, "2": -198.0, "5": -190.0, "10": -150.0, "25": 0.0, "50": 300.0})
    assert sample_findings(at, Policy(), AuditContext(modality="CT")) == []  # both limits are strict
    over = record(percentiles={"0.1": -101.0, "0.5": -100.0, "1": -99.0, "2": -98.0, "5": -90.0, "10": -50.0, "25": 0.0, "50": 1060.0})
    f = one(sample_findings(over, Policy(), AuditContext(modality="CT")), "CT_NOT_HU")
    assert f.values == {"percentile_00_5": -100.0, "median": 1060.0, "min": -111.0, "max": 1210.0}
    policy = Policy()
    policy.merge({"thresholds": {"ct_hu": {"max_below_air_fraction": 0.01}}}, "t")
    exactly = record(percentiles={"0.1": -2048.0, "0.5": -2048.0, "1": -1124.0})  # 1 % below the floor: allowed
    assert sample_findings(exactly, policy, AuditContext(modality="CT")) == []
    exactly["intensity"]["percentiles"]["1"] = -1125.0  # the floor now lies above the 1st percentile: more than 1 % below it
    f = one(sample_findings(exactly, policy, AuditContext(modality="CT")), "CT_BELOW_AIR")
    assert f.values["floor_hu"] == -1124.0 and f.values["min"] == -2058.0 and f.values["fraction_below"] > 0.01
    flat = record(percentiles={"1": 1000.0, "99": 1000.9})  # relative limit 0.001 x 1000.9
    f = one(sample_findings(flat, Policy(), AuditContext()), "VOLUME_CONSTANT")
    assert f.values == {"p1": 1000.0, "p99": 1000.9, "min": flat["intensity"]["min"], "max": flat["intensity"]["max"]}
    assert "1st-99th percentiles 1000 .. 1001" in f.message
    flat["intensity"]["percentiles"]["99"] = 1001.2
    assert [f.code for f in sample_findings(flat, Policy(), AuditContext())] == []
    const = record(percentiles={"1": 5.0, "99": 5.0})
    const["intensity"].update(min=5.0, max=5.0)
    assert "constant value 5" in one(sample_findings(const, Policy(), AuditContext()), "VOLUME_CONSTANT").message
