"""Dataset-manifest rules beyond one wrong file: column order across samples, samples without a mask, label
indices >= 100, the binary masks recorded in the history, messages and what reaches the per-sample runner."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from openpyxl import load_workbook

import utils.dataset.manifest as dm
from tests.test_manifest_one_file_wrong import SHORTS, label_mask, make_sample, role_path, run_routine, save
from utils.run.cli import RunReport
from utils.files.sample_info import BINARY_MASKS_FROM, BINARY_MASKS_STEP, SampleDir, file_stamp, write_info


def header_and_rows(path):
    rows = list(load_workbook(path, read_only=True)["Manifest"].iter_rows(values_only=True))
    return list(rows[0]), [dict(zip(rows[0], r)) for r in rows[1:]]


def test_a_sample_without_mask_has_empty_mask_cells_and_the_columns_keep_their_order(tmp_path, caplog):
    root = tmp_path / "grouped"
    bare = SampleDir(root / "a_first" / "nomask01")  # sorted before the sample with a mask
    bare.path.mkdir(parents=True)
    save(bare.volume, np.zeros((7, 6, 5), np.float32))
    write_info(bare.info, {"ID": "nomask01", "site": "X"})
    make_sample(root, "ok01")
    lost = make_sample(root, "z_lost01")  # its binary masks are there, its mask is gone
    lost.mask.unlink()
    write_info(lost.info, {"ID": "z_lost01", "site": "X"})
    assert run_routine("eso", root, caplog)[0] == 0
    header, rows = header_and_rows(root / "dataset_manifest.xlsx")
    binaries = [f"mask_{i:02d}_{s}" for i, s in SHORTS.items()]
    assert header.index("mask") + 1 == header.index(binaries[0])  # not appended after the first sample's columns
    assert header[header.index("mask") : header.index("szx")] == ["mask", *binaries, *(f"{b}_existence" for b in binaries)]
    first = rows[0]
    assert first["ID"] == "nomask01"
    assert all(first.get(c) is None for c in ("valid_labels", "mask", "mask_dtype", *binaries, *(f"{b}_existence" for b in binaries)))
    assert rows[1]["mask_dtype"] == "uint8" and rows[1]["valid_labels"] == "[0, 1, 3]"
    assert rows[2]["ID"] == "z_lost01" and rows[2]["mask"] is None and rows[2]["mask_01_A"] is not None
    assert all(rows[2].get(f"{b}_existence") is None for b in binaries)  # no mask: nothing to say about its labels


def test_label_indices_from_100_sort_after_99_and_attribute_columns_stay_attributes(tmp_path, caplog):
    root = tmp_path / "grouped"
    shorts = {0: "Bg", 99: "Old", 100: "New"}
    for sid, attributes in (("s01", {"visit01": "v", "mask_v2": "w"}), ("s02", {})):
        sample = SampleDir(root / "site" / sid)
        sample.path.mkdir(parents=True)
        mask = np.zeros((7, 6, 5), np.uint8)
        mask[1, 1, 1], mask[2, 2, 2] = 99, 100
        save(sample.volume, np.zeros(mask.shape, np.float32))
        save(sample.mask, mask)
        for idx, short in shorts.items():
            save(sample.binary_mask(f"{idx:02d}_{short}"), (mask == idx).astype(np.uint8))
        write_info(sample.info, {"ID": sid, "site": "X", "attributes": attributes})
    assert run_routine("verse", root, caplog)[0] == 0
    header, rows = header_and_rows(root / "dataset_manifest.xlsx")
    assert header[header.index("mask") + 1 : header.index("mask") + 4] == ["mask_00_Bg", "mask_99_Old", "mask_100_New"]
    assert header[-2:] == ["visit01", "mask_v2"]  # extra attributes at the end, even when they look like mask columns
    assert rows[0]["valid_labels"] == "[0, 99, 100]" and rows[0]["mask_100_New_existence"] == 1


def test_a_binary_mask_recorded_by_the_last_extraction_is_required_even_after_other_steps(tmp_path, caplog):
    root = tmp_path / "grouped"
    sample = make_sample(root, "only01")
    write_info(sample.info, {"ID": "only01", "site": "X", "history": [
        {"step": BINARY_MASKS_STEP, "params": {"labels": [f"{i:02d}_{s}" for i, s in SHORTS.items()]}, BINARY_MASKS_FROM: file_stamp(sample.mask)},
        {"step": "morphological_close_on_slice_small_region", "params": {"kernel_size": [5, 5]}},
    ]})  # fmt: skip
    role_path(sample, "02_B").unlink()  # the only sample: no other sample tells that the file is missing
    code, log = run_routine("verse", root, caplog)
    assert code == 1 and f"{sample.binary_mask('02_B')}: binary mask missing (1 of the 4 written by the binary-mask routine are gone: ['02_B'])" in log


@pytest.mark.parametrize(("missing", "listed", "ellipsis"), [(5, 5, False), (6, 5, True)])
def test_binary_masks_other_samples_have_are_listed_up_to_five(tmp_path, caplog, missing, listed, ellipsis):
    root = tmp_path / "grouped"
    full = {i: f"L{i}" for i in range(8)}
    for sid, indices in (("a01", range(8)), ("b01", range(8 - missing))):
        sample = SampleDir(root / "site" / sid)
        sample.path.mkdir(parents=True)
        mask = np.zeros((4, 4, 4), np.uint8)
        save(sample.volume, np.zeros(mask.shape, np.float32))
        save(sample.mask, mask)
        for i in indices:
            save(sample.binary_mask(f"{i:02d}_{full[i]}"), (mask == i).astype(np.uint8))
        write_info(sample.info, {"ID": sid})
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="utils.dataset.manifest"):
        code = dm.build_dataset_manifest(root, root / "m.xlsx", [], show_progress=False).exit_code()
    assert code == 1 and not (root / "m.xlsx").exists()
    names = [f"b01_mask_{i:02d}_L{i}.nii.gz" for i in range(8 - missing, 8)]
    key = str(root / "site" / "b01")
    message = (f"{root / 'site' / 'b01' / names[0]}: binary mask missing ({missing} that other samples have: {names[:listed]}"
               f"{' …' if ellipsis else ''}); run the binary-mask routine again")  # fmt: skip
    assert [r.getMessage() for r in caplog.records] == [f"{key}: {message}", f"{root / 'm.xlsx'} not written: 1 sample(s) failed (use --skip_invalid to write the others)"]


def test_a_tie_of_mask_data_types_names_a_file_of_the_other_type_than_the_masks(tmp_path, caplog):
    root = tmp_path / "grouped"
    sample = SampleDir(root / "site" / "tie01")
    sample.path.mkdir(parents=True)
    mask = label_mask()
    save(sample.volume, np.zeros(mask.shape, np.float32))
    save(sample.mask, mask.astype(np.int16))
    save(sample.binary_mask("00_Bg"), (mask == 0).astype(np.int16))
    save(sample.binary_mask("01_A"), (mask == 1).astype(np.uint8))
    save(sample.binary_mask("03_C"), (mask == 3).astype(np.uint8))
    write_info(sample.info, {"ID": "tie01", "site": "X"})
    code, log = run_routine("verse", root, caplog)  # int16: the mask and 00_Bg; uint8: 01_A and 03_C
    assert code == 1 and f"{sample.binary_mask('01_A')}: data type uint8 differs from int16 of the sample's other mask files" in log


def test_a_mask_value_that_is_not_a_label_names_the_mask(tmp_path, caplog):
    root = tmp_path / "grouped"
    sample = make_sample(root, "half01")
    save(sample.mask, label_mask().astype(np.float32) / 2)  # 0.5: not a label
    for idx, short in SHORTS.items():
        save(sample.binary_mask(f"{idx:02d}_{short}"), np.zeros((7, 6, 5), np.float32))
    write_info(sample.info, {"ID": "half01", "site": "X"})
    code, log = run_routine("nme", root, caplog)
    assert code == 1 and f"{sample.mask}: " in log and "half01: None" not in log


def test_the_manifest_function_hands_its_options_to_the_per_sample_runner(tmp_path, monkeypatch, caplog):
    root = tmp_path / "grouped"
    make_sample(root, "ok01")
    seen = {}

    def fake_run(samples, work, **kwargs):
        seen.update(kwargs, samples=[s.id for s in samples])
        report = RunReport(kwargs["desc"])
        report.results = {str(s.path): work(s) for s in samples}
        return report

    monkeypatch.setattr(dm, "run_per_sample", fake_run)
    with caplog.at_level(logging.INFO, logger="utils.dataset.manifest"):
        dm.build_dataset_manifest(root, root / "m.xlsx", ["site"], workers=3, dask_scheduler="tcp://host:8786", show_progress=False)
    key = seen.pop("key")
    assert seen == {"samples": ["ok01"], "desc": "dataset manifest", "workers": 3, "dask_scheduler": "tcp://host:8786",
                    "input_dirs": [root], "show_progress": False}  # fmt: skip
    assert key(SampleDir(root / "x" / "y")) == str(root / "x" / "y")
    assert [r.getMessage() for r in caplog.records] == [f"wrote {root / 'm.xlsx'} (1 samples, 25 columns)"]
    seen.clear()
    dm.build_dataset_manifest(root, root / "m.xlsx", ["site"])
    assert (seen["workers"], seen["dask_scheduler"], seen["show_progress"]) == (1, None, True)


def test_without_skip_invalid_nothing_is_written_and_an_empty_root_is_refused(tmp_path):
    root = tmp_path / "grouped"
    make_sample(root, "ok01")
    bad = make_sample(root, "bad01")
    role_path(bad, "03_C").unlink()
    write_info(bad.info, {"ID": "bad01"})
    assert dm.build_dataset_manifest(root, root / "m.xlsx", [], show_progress=False).exit_code() == 1
    assert not (root / "m.xlsx").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no sample folder below it"):
        dm.build_dataset_manifest(tmp_path / "empty", tmp_path / "m.xlsx", [])
