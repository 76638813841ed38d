"""The export's fingerprint and data stats against nnU-Net's and MONAI's own, where they are installed.

Skipped without ``nnunetv2`` / ``monai`` (neither is a dependency). Run them in an environment with
both (see docs/exports.md): nnU-Net's ``nnUNetv2_extract_fingerprint`` on the exported raw folder must
write the very bytes the export wrote, ``nnUNetv2_plan_experiment`` must plan the same on both, and
MONAI's ``AutoRunner`` analysis (its ``DataAnalyzer``) on the exported datalist must give every number
of ``data_stats.yaml`` and ``data_stats_by_case.yaml`` within 1e-4 relative.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.test_framework_stats import (
    BY_CASE,
    CASES,
    DATA_STATS,
    FINGERPRINT,
    assert_close,
    export,
    make_dataset,
    without_paths,
)

RAW = "nnUNet_raw/Dataset501_VerSe_s1"


def _cli(name: str) -> str:
    """The console script of the running interpreter's environment."""
    path = Path(sys.executable).with_name(name)
    if not path.is_file():
        pytest.skip(f"{name} not found beside {sys.executable}")
    return str(path)


@pytest.fixture(scope="module")
def nnunet_export(tmp_path_factory) -> Path:
    pytest.importorskip("nnunetv2")
    root = tmp_path_factory.mktemp("nnunet")
    manifest = make_dataset(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("utils.export.fingerprint.TOTAL_SAMPLES", 10e7)  # nnU-Net's own count
        assert export(manifest, root / "export", "--format", "nnunetv2") == 0
    return root / "export"


def _nnunet(out: Path, preprocessed: Path, *args: str) -> None:
    env = dict(os.environ, nnUNet_raw=str(out / "nnUNet_raw"), nnUNet_preprocessed=str(preprocessed), nnUNet_results=str(out.parent / "results"))
    proc = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=1200, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_nnunet_extracts_the_same_fingerprint_byte_for_byte(nnunet_export):
    theirs = nnunet_export.parent / "theirs"
    _nnunet(nnunet_export, theirs, _cli("nnUNetv2_extract_fingerprint"), "-d", "501", "-np", "1", "--clean")
    their_text = (theirs / "Dataset501_VerSe_s1/dataset_fingerprint.json").read_text()
    our_text = (nnunet_export / FINGERPRINT).read_text()
    ours, their = json.loads(our_text), json.loads(their_text)
    assert ours["spacings"] == their["spacings"] and ours["shapes_after_crop"] == their["shapes_after_crop"]  # exactly
    for key, value in their["foreground_intensity_properties_per_channel"]["0"].items():
        assert ours["foreground_intensity_properties_per_channel"]["0"][key] == pytest.approx(value, rel=1e-6, abs=0)
    assert ours["median_relative_size_after_cropping"] == pytest.approx(their["median_relative_size_after_cropping"], rel=1e-6)
    assert our_text == their_text  # in fact the very same file


def test_nnunet_plans_the_same_on_our_fingerprint(nnunet_export):
    theirs = nnunet_export.parent / "theirs_plans"
    _nnunet(nnunet_export, theirs, _cli("nnUNetv2_extract_fingerprint"), "-d", "501", "-np", "1", "--clean")
    ours = nnunet_export.parent / "ours_plans"
    shutil.copytree(nnunet_export / "nnUNet_preprocessed", ours)
    for folder in (theirs, ours):
        _nnunet(nnunet_export, folder, _cli("nnUNetv2_plan_experiment"), "-d", "501")
    plans = [json.loads((f / "Dataset501_VerSe_s1/nnUNetPlans.json").read_text()) for f in (ours, theirs)]
    assert plans[0] == plans[1]
    assert "3d_fullres" in plans[0]["configurations"]


def _monai_runner(tmp_path: Path, caplog, *, analyze: bool):
    """The synthetic dataset exported as ``monai``, and an AutoRunner on its datalist (nothing but the analysis on)."""
    pytest.importorskip("monai")
    from monai.apps.auto3dseg import AutoRunner

    caplog.set_level(logging.WARNING, logger="monai.apps.auto3dseg.auto_runner")  # one of its INFO lines has a format bug
    manifest = make_dataset(tmp_path)
    out = tmp_path / "export"
    assert export(manifest, out, "--format", "monai") == 0
    folder = out / "monai/VerSe_s1"
    work = tmp_path / "work"
    work.mkdir()
    if not analyze:
        shutil.copyfile(folder / "data_stats.yaml", work / "datastats.yaml")  # what the analysis step would write
    runner = AutoRunner(work_dir=str(work), input={"modality": "CT", "datalist": str(folder / "datalist.json"), "dataroot": str(folder)},
                        analyze=analyze, algo_gen=False, train=False, ensemble=False)  # fmt: skip
    runner.set_analyze_params({"do_ccp": False, "device": "cpu"})  # AutoRunner's own parameters, on the CPU
    return runner, out, folder, work


def test_monai_autorunner_analysis_gives_our_numbers(tmp_path, caplog):
    runner, out, folder, work = _monai_runner(tmp_path, caplog, analyze=True)
    runner.run()  # its DataAnalyzer on the datalist it rewrote (validation items folded into training)
    for ours_name, theirs_name in ((DATA_STATS, "datastats.yaml"), (BY_CASE, "datastats_by_case.yaml")):
        ours = yaml.safe_load((out / ours_name).read_text())
        theirs = yaml.safe_load((work / theirs_name).read_text())
        assert_close(without_paths(ours), without_paths(theirs), rtol=1e-4)
    by_case = yaml.safe_load((out / BY_CASE).read_text())["stats_by_cases"]
    assert [os.path.normpath(folder / e["image_filepath"]) for e in by_case] == [
        os.path.normpath(e["image_filepath"]) for e in yaml.safe_load((work / "datastats_by_case.yaml").read_text())["stats_by_cases"]
    ]
    assert len(by_case) == sum(v[0] in ("train", "val") for v in CASES.values())


def test_monai_takes_our_stats_with_the_analysis_skipped(tmp_path, caplog):
    runner, _, _, _ = _monai_runner(tmp_path, caplog, analyze=False)
    from monai.bundle import ConfigParser

    runner.run()  # skips the analysis; the algorithm templates (downloaded by BundleGen) read the keys below
    parser = ConfigParser(ConfigParser.load_config_file(runner.datastats_filename))
    for key in ("image_stats#shape#max", "image_stats#channels#max", "image_stats#spacing#median", "image_stats#spacing#percentile_10_0",
                "image_stats#sizemm#percentile_90_0", "image_foreground_stats#intensity#percentile_00_5", "n_cases", "label_stats#labels"):  # fmt: skip
        assert parser.get(f"stats_summary#{key}") is not None, key
    assert np.isfinite(float(parser.get("stats_summary#image_foreground_stats#intensity#percentile_99_5")))
