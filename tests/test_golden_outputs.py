"""Every output of the demo pipelines is pinned, and a difference is named: file, and voxels, header field or cell.

One run per dataset of the tutorial's routines on the demo archive (per-sample routines, mask-QC tools,
dataset manifest, every split and index manifest of ``run_pipeline.sh``, the training export of the first
split and the QC report) is described by :mod:`tests.golden_files` and compared with
``tests/golden/<dataset>.json``. The NIfTI voxels and headers were first pinned by the code before the
label core was rewritten for speed (issue 9); the split sheets, index manifests and exports by the code
before the QC review loop (issue 22): a run without a review file writes what it wrote before.

Regenerate the golden files only for an intended change of output::

    GOLDEN_REGEN=1 python -m pytest tests/test_golden_outputs.py

This writes the files that changed and FAILS, listing every difference: review them (``git diff
tests/golden``), then commit them with the reason in the message. Run again without ``GOLDEN_REGEN`` to
see it pass. See docs/testing.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import REPO, run_script
from tests.golden_files import describe_outputs, differences, dumps

GOLDEN = REPO / "tests" / "golden"
NO_PBAR = "--no_pbar"


def _pipeline_commands(dataset: str, root: Path) -> list[tuple[str, ...]]:
    """The tutorial's per-sample routines of ``dataset`` through the dataset manifest (other tests reuse them)."""
    return [c for c in _release_commands(dataset, root) if not c[0].endswith(_AFTER_MANIFEST)]


#: NME's predefined splits as the tutorial makes them: name, sites, collections.
NME_PREDEFINED = (
    ("split01_Tongji", "Tongji", "train-val test-inner-01"),
    ("split02_Yunnan", "Yunnan", "test-outer-02"),
    ("split03_Zhongnan", "Zhongnan", "test-outer-03"),
    ("split04_HKU-SZH", "HKU-SZH", "test-outer-04"),
    ("split05_External", "Yunnan Zhongnan HKU-SZH", "test-outer-02 test-outer-03 test-outer-04"),
    ("split06_Whole", "Tongji Yunnan Zhongnan HKU-SZH", "train-val test-inner-01 test-outer-02 test-outer-03 test-outer-04"),
)

#: Scripts that run after the dataset manifest: splits, index manifests, export, QC report.
_AFTER_MANIFEST = ("_split.py", "_split_predefined.py", "_split_across_sites.py", "_index_manifest.py", "export_dataset.py", "qc_report.py")


def _release_commands(dataset: str, root: Path) -> list[tuple[str, ...]]:
    """The tutorial's routines of ``dataset`` as ``run_pipeline.sh`` chains them (every split and index manifest),
    the export of its first split and the QC report."""
    a, g, d = root / "archive", root / "grouped", root / "descriptor"
    m = g / "dataset_manifest.xlsx"
    first = [
        (f"{dataset}/01_gen_archive_manifest.py", "--root_dir", a, "--output_manifest_file", d / "archive_manifest.xlsx"),
        (f"{dataset}/02_confirm_pairs.py", "--root_dir", a, "--output_dir", g, "--archive_manifest", d / "archive_manifest.xlsx"),
    ]
    detect = "utils/small_connected_region_detect.py"
    subsets = ("--subsets", "train", "val", "--subsets", "train", "--subsets", "val", "--subsets", "test")
    if dataset == "verse":
        steps = first + [
            ("verse/03_reduce_sacrum_cocygis_and_revise_T13_label.py", "--root_dir", g),
            ("verse/04_extract_binary_masks.py", "--root_dir", g, "--label_explanation", d / "label_map.yaml"),
            (detect, "--root_dir", g, "--region_volume_thresh", "100.0", "--output_manifest", d / "small_before.xlsx"),
            ("utils/morphological_close_on_slice_small_region.py", "--root_dir", g, "--output_dir", g,
             "--kernel_size", "5", "5", "--filter_halfedge", "3", "--region_area_thresh", "2.0"),
            (detect, "--root_dir", g, "--region_volume_thresh", "100.0", "--output_manifest", d / "small_after.xlsx"),
            ("verse/05_gen_dataset_manifest.py", "--root_dir", g, "--output_manifest_file", m),
            ("verse/06_make_split.py", "--manifest_file", m, "--split_name", "split01_standard"),
            ("verse/06_make_split.py", "--manifest_file", m, "--split_name", "split02_verse19", "--inclusion", "VerSe19"),
            ("verse/06_make_split.py", "--manifest_file", m, "--split_name", "split03_verse20", "--inclusion", "VerSe20"),
            *(("verse/07_extract_split_index_manifest.py", "--manifest_file", m, "--split_name", name,
               "--output_index_manifest_dir", g / "splits" / name, *subsets)
              for name in ("split01_standard", "split02_verse19", "split03_verse20")),
        ]  # fmt: skip
        split = "split01_standard"
    elif dataset == "eso":
        steps = first + [
            ("utils/mask_thresholding.py", "--root_dir", g, "--thresh", "-140.0", "1000.0", "--output_dir", g),
            ("eso/03_extract_binary_masks.py", "--root_dir", g, "--label_explanation", d / "label_map.yaml"),
            (detect, "--root_dir", g, "--region_volume_thresh", "300.0", "--output_manifest", d / "small_before.xlsx"),
            ("utils/morphological_open_on_slice_small_region.py", "--root_dir", g, "--output_dir", g,
             "--kernel_size", "2", "2", "--filter_halfedge", "3", "--region_area_thresh", "10"),
            (detect, "--root_dir", g, "--region_volume_thresh", "300.0", "--output_manifest", d / "small_after.xlsx"),
            ("eso/04_gen_dataset_manifest.py", "--root_dir", g, "--output_manifest_file", m),
            ("eso/05_make_split.py", "--manifest_file", m, "--split_name", "split01_TJ", "--site", "TJ",
             "--test_ratio", "0.4", "--val_ratio", "0.2", "--random_seed", "0"),
            ("eso/05_make_split.py", "--manifest_file", m, "--split_name", "split02_SYTH", "--site", "SYTH",
             "--test_ratio", "1.0", "--val_ratio", "0.0"),
            ("eso/05_make_split.py", "--manifest_file", m, "--split_name", "split03_XY", "--site", "XY",
             "--test_ratio", "1.0", "--val_ratio", "0.0"),
            ("eso/06_extract_split_index_manifest.py", "--manifest_file", m, "--split_name", "split01_TJ",
             "--output_index_manifest_dir", g / "splits" / "split01_TJ", *subsets),
            *(("eso/06_extract_split_index_manifest.py", "--manifest_file", m, "--split_name", name,
               "--output_index_manifest_dir", g / "splits" / name, "--subsets", "test") for name in ("split02_SYTH", "split03_XY")),
        ]  # fmt: skip
        split = "split01_TJ"
    else:
        steps = first + [
            ("nme/03_extract_binary_masks.py", "--root_dir", g, "--label_explanation", d / "label_map.yaml"),
            ("nme/04_gen_dataset_manifest.py", "--root_dir", g, "--output_manifest_file", m),
            *(("nme/05_make_split_predefined.py", "--manifest_file", m, "--split_name", name, "--site", *sites.split(),
               "--collection", *collections.split()) for name, sites, collections in NME_PREDEFINED),
            ("nme/05_make_split_across_sites.py", "--manifest_file", m, "--split_name", "split07_Mix",
             "--test_ratio", "0.3", "--val_ratio", "0.2", "--random_seed", "0"),
            *(("nme/06_extract_split_index_manifest.py", "--manifest_file", m, "--split_name", name,
               "--output_index_manifest_dir", g / "splits" / name, *(subsets if name in ("split01_Tongji", "split06_Whole") else ("--subsets", "test")))
              for name, _, _ in NME_PREDEFINED),
            ("nme/06_extract_split_index_manifest.py", "--manifest_file", m, "--split_name", "split07_Mix",
             "--output_index_manifest_dir", g / "splits" / "split07_Mix", *subsets),
        ]  # fmt: skip
        split = "split01_Tongji"
    small = [d / "small_after.xlsx"] if dataset != "nme" else []
    return steps + [
        ("utils/export_dataset.py", "--manifest_file", m, "--split_name", split, "--output_dir", root / "export"),
        ("utils/qc_report.py", "--root_dir", g, "--output_dir", root / "qc", "--dataset", dataset,
         *(("--small_region_manifest", small[0]) if small else ())),
    ]  # fmt: skip


def pinned_paths(root: Path) -> list[Path]:
    """The outputs a golden file pins: NIfTI and manifests of the run, export files, the QC card's tables."""
    paths = [p for p in root.rglob("*.nii.gz") if p.relative_to(root).parts[0] in ("grouped", "export")]
    paths += [p for p in root.rglob("*.xlsx") if p.relative_to(root).parts[0] != "archive"]
    paths += [p for p in (root / "export").rglob("*") if p.suffix in (".json", ".jsonl", ".yaml")]
    paths.append(root / "qc" / "dataset_card.json")
    return sorted(paths)


def check_against_golden(golden: Path, actual: dict, regenerate: bool) -> None:
    """Fail with one line per difference; with ``regenerate`` write the new golden file first (and still fail)."""
    shown = golden.relative_to(REPO) if golden.is_relative_to(REPO) else golden
    expected = json.loads(golden.read_text(encoding="utf-8")) if golden.is_file() else None
    changes = differences(expected, actual) if expected is not None else [f"{golden.name}: no golden file yet"]
    if regenerate and changes:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(dumps(actual), encoding="utf-8")
        pytest.fail(
            f"GOLDEN_REGEN: {shown} rewritten; {len(changes)} change(s) to review (git diff {shown}) "
            "and commit with the reason:\n" + "\n".join(changes),
            pytrace=False,
        )
    if changes:
        pytest.fail(
            f"outputs differ from {shown} ({len(changes)} difference(s)):\n" + "\n".join(changes)
            + "\nIf the change is intended: GOLDEN_REGEN=1 python -m pytest tests/test_golden_outputs.py, review, commit.",
            pytrace=False,
        )  # fmt: skip


@pytest.mark.parametrize("dataset", ["verse", "eso", "nme"])
def test_routine_outputs_match_the_pinned_ones(dataset, tmp_path):
    assert run_script("demo/make_demo_archive.py", dataset, tmp_path) == 0
    for command in _release_commands(dataset, tmp_path):
        script, *argv = command
        code = run_script(script, *argv, NO_PBAR, "-q")
        assert code in ((0, 1) if script.endswith("02_confirm_pairs.py") else (0,)), f"{script} exited {code}"
    actual = describe_outputs(tmp_path, pinned_paths(tmp_path))
    check_against_golden(GOLDEN / f"{dataset}.json", actual, bool(os.environ.get("GOLDEN_REGEN")))
