"""The QC report's statistics (utils/report/stats.py) on hand-computed cases: counts, mm³ on anisotropic grids,
medians of even and odd counts, missing values, empty datasets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from utils.labels.label_maps import LabelMap
from utils.report.stats import SUMMARY_TOTAL, label_table, measure_labels, resolution_table, summary_table

LABELS = LabelMap.from_dict({0: {"name": "background", "short": "Bg"}, 2: {"name": "liver", "short": "Li"}, 5: {"name": "kidney", "short": "Ki"}})


def test_measure_labels_counts_boxes_and_mm3_by_hand():
    mask = np.zeros((8, 9, 10), np.uint8, order="F")
    mask[1:3, 4:6, 7:10] = 2  # 12 voxels
    mask[6, 0, 2] = 5
    mask[5, 8, 0] = 5
    affine = np.array([[0.0, 0.0, -2.5, 4.0], [0.6, 0.0, 0.0, 1.0], [0.0, 0.8, 0.0, -3.0], [0.0, 0.0, 0.0, 1.0]])  # 1.2 mm³
    m = measure_labels(mask, affine, threads=2)
    assert m.voxels == {2: 12, 5: 2}
    assert m.voxel_mm3 == pytest.approx(1.2, rel=1e-12)
    assert m.volumes_mm3 == {2: pytest.approx(14.4, rel=1e-12), 5: pytest.approx(2.4, rel=1e-12)}
    assert m.boxes == {2: (slice(1, 3), slice(4, 6), slice(7, 10)), 5: (slice(5, 7), slice(0, 9), slice(0, 3))}
    assert m.foreground_box() == (slice(1, 7), slice(0, 9), slice(0, 10))
    assert measure_labels(np.zeros((2, 3, 4), np.uint8), affine).foreground_box() is None


@pytest.mark.parametrize(("mask", "found"), [(np.zeros((3, 3, 3), np.int16), "3D int16"), (np.zeros((3, 3), np.uint8), "2D uint8")])
def test_measure_labels_refuses_what_is_not_a_3d_uint8_mask(mask, found):
    with pytest.raises(TypeError, match=rf"^3D uint8 mask expected, got {found}$"):
        measure_labels(mask, np.eye(4))


def test_resolution_table_min_median_max_per_axis():
    shapes = [(10, 20, 30), (12, 18, 40), (8, 22, 50), (16, 20, 60)]
    spacings = [(0.5, 0.8, 2.5), (0.7, 0.8, 3.0), (0.6, 0.9, 1.0), (0.9, 0.7, 2.0)]
    table = resolution_table(shapes, spacings)
    assert table["n"] == 4
    assert table["spacing_mm"] == {"min": [0.5, 0.7, 1.0], "median": pytest.approx([0.65, 0.8, 2.25], rel=1e-15), "max": [0.9, 0.9, 3.0]}
    assert table["size"] == {"min": [8.0, 18.0, 30.0], "median": [11.0, 20.0, 45.0], "max": [16.0, 22.0, 60.0]}
    assert resolution_table(shapes[:3], spacings[:3])["spacing_mm"]["median"] == [0.6, 0.8, 2.5]
    assert all(isinstance(v, float) for v in table["size"]["median"])
    empty = resolution_table([], [])
    assert empty == {"n": 0, "spacing_mm": {"min": [], "median": [], "max": []}, "size": {"min": [], "median": [], "max": []}}


def test_label_table_rows_cases_percentages_and_cm3():
    volumes = [{2: 1500.0, 5: 30.0}, {2: 2500.0}, {2: 1000.0, 5: 10.0, 9: 4.0}, {2: 2000.0}, {}]
    rows = label_table(volumes, LABELS)
    assert [r["index"] for r in rows] == [2, 5, 9]  # background never, labels of the map even without case
    liver, kidney, unknown = rows
    assert liver == {"index": 2, "short": "Li", "name": "liver", "in_label_map": True, "cases": 4, "percentage": 80.0,
                     "max_cm3": 2.5, "min_cm3": 1.0, "median_cm3": 1.75}  # fmt: skip
    assert (kidney["cases"], kidney["percentage"], kidney["median_cm3"]) == (2, 40.0, pytest.approx(0.02))
    assert unknown == {"index": 9, "short": "", "name": "not in the label map", "in_label_map": False, "cases": 1,
                       "percentage": 20.0, "max_cm3": 0.004, "min_cm3": 0.004, "median_cm3": 0.004}  # fmt: skip
    absent = label_table([{2: 5.0}], LABELS)[1]
    assert absent["index"] == 5 and absent["cases"] == 0 and absent["percentage"] == 0.0
    assert absent["max_cm3"] is absent["min_cm3"] is absent["median_cm3"] is None


def test_label_table_without_label_map_or_samples():
    rows = label_table([{3: 1000.0}, {3: 3000.0, 1: 1.0}, {3: 2000.0}], None)
    assert [(r["index"], r["short"], r["name"], r["in_label_map"], r["cases"]) for r in rows] == [
        (1, "", "not in the label map", False, 1), (3, "", "not in the label map", False, 3)]  # fmt: skip
    assert rows[1]["median_cm3"] == 2.0 and rows[1]["percentage"] == 100.0
    assert [(r["index"], r["cases"], r["percentage"]) for r in label_table([], LABELS)] == [(2, 0, 0.0), (5, 0, 0.0)]


def test_summary_table_counts_sorted_groups_and_a_total():
    groups = [["B", "train"], ["A", "val"], ["A", "train"], ["B", "train"], [None, "test"], [math.nan, "test"], ["A", None]]
    assert summary_table(groups, ["site", "subset"]) == [
        {"site": "", "subset": "test", "samples": 2},
        {"site": "A", "subset": "", "samples": 1},
        {"site": "A", "subset": "train", "samples": 1},
        {"site": "A", "subset": "val", "samples": 1},
        {"site": "B", "subset": "train", "samples": 2},
        {"site": SUMMARY_TOTAL, "subset": "", "samples": 7},
    ]
    assert summary_table([[1], [1], [2]], ["fold"]) == [{"fold": "1", "samples": 2}, {"fold": "2", "samples": 1}, {"fold": "all", "samples": 3}]
    assert summary_table([[], []], []) == [{"samples": 2}, {"samples": 2}]
    assert summary_table([], ["site"]) == [{"site": "all", "samples": 0}]
