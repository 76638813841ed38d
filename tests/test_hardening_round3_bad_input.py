"""Bad input, round 3 (issue 18): paths from data, the read-only archive, untrusted YAML, no traceback.

Every case runs the real routine on a tiny archive in the real layout (``tests/mini_archives.py``) and
asserts: the exit code, exactly one ERROR line naming the file and the value (for refusals of a whole
run), nothing written outside the output folder, the archive's bytes unchanged, no traceback.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import REPO, run_script
from tests.mini_archives import AFFINE, LAYOUTS, Layout, leftover_temporaries, make_mini_archive, tree_digest
from utils.run import requirements_check
from utils.labels.label_maps import LabelError, LabelMap
from utils.files.sample_info import SampleDir, read_info, write_info
from utils.files.spreadsheet import read_sheet, write_sheets
from utils.files.yaml_files import MAX_ALIAS_EXPANSION, parse_yaml

CLOSE = "utils/morphological_close_on_slice_small_region.py"
OPEN = "utils/morphological_open_on_slice_small_region.py"
THRESHOLD = "utils/mask_thresholding.py"
REPORT = "utils/small_connected_region_detect.py"
QC = "utils/qc_report.py"
EXPORT = "utils/export_dataset.py"


def errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def one_error(caplog, *needles: str) -> str:
    lines = errors(caplog)
    assert len(lines) == 1, lines
    assert "\n" not in lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in caplog.text
    return lines[0]


def archive_ready(tmp_path: Path, dataset: str) -> tuple[Layout, Path]:
    lay = LAYOUTS[dataset]
    root = tmp_path / dataset
    make_mini_archive(root, lay)
    assert lay.run_01(root, "--no_pbar") == 0
    return lay, root


def edit_cell(manifest: Path, file_path: str, column: str, value: object) -> int:
    """Set one cell of the ``Manifest`` sheet (row of ``file_path``); return its Excel row number."""
    frame = read_sheet(manifest)
    skipped = read_sheet(manifest, "Skipped", missing_ok=True)
    rows = frame.index[frame["file_path"] == file_path].tolist()
    assert len(rows) == 1
    frame[column] = frame[column].astype(object)
    frame.loc[rows[0], column] = value
    sheets = {"Manifest": frame}
    if skipped is not None:
        sheets["Skipped"] = skipped
    write_sheets(manifest, sheets)
    return rows[0] + 2


# --- paths from data are data: every field of every dataset that becomes a folder or file name ----------------------

PATH_FIELDS = [
    ("verse", "archive"), ("verse", "subset"), ("verse", "subject"), ("verse", "split"), ("verse", "file_path"),
    ("eso", "site"), ("eso", "phase"), ("eso", "pid"), ("eso", "file_path"),
    ("nme", "file_path"),
]  # fmt: skip


@pytest.mark.parametrize("dataset, column", PATH_FIELDS)
def test_a_manifest_cell_that_would_leave_the_output_folder_is_refused_naming_manifest_row_and_column(dataset, column, tmp_path, caplog):
    lay, root = archive_ready(tmp_path, dataset)
    manifest = root / "descriptor/archive_manifest.xlsx"
    bad = "../../../../../../X"
    row = edit_cell(manifest, lay.volume_rel(lay.names[0]), column, bad)
    before = tree_digest(tmp_path)
    caplog.clear()
    assert lay.run_02(root, "--no_pbar") == 2
    one_error(caplog, str(manifest), f"row {row}", f"column {column!r}", repr(bad), "nothing was written")
    assert tree_digest(tmp_path) == before, "nothing written anywhere"
    assert not (root / "grouped").exists()


@pytest.mark.parametrize("value, why", [
    ("a/b", "holds a path separator"), ("..", "holds '..'"), ("verse6\n01", "holds a control character or line break"),
    (".hidden", "starts with '.'"), ("", "is empty"), ("verse 601", "does not match"), ("x" * 200, "longer than"),
])  # fmt: skip
def test_every_unsafe_form_of_a_name_is_refused(value, why, tmp_path, caplog):
    lay, root = archive_ready(tmp_path, "verse")
    edit_cell(root / "descriptor/archive_manifest.xlsx", lay.volume_rel(lay.names[0]), "subject", value)
    caplog.clear()
    assert lay.run_02(root, "--no_pbar") == 2
    one_error(caplog, "column 'subject'", why)


def test_nme_rederives_its_folder_names_from_the_path_so_edited_cells_never_reach_a_path(tmp_path, caplog):
    lay, root = archive_ready(tmp_path, "nme")
    manifest = root / "descriptor/archive_manifest.xlsx"
    for column in ("site", "collection", "subset", "pid"):
        edit_cell(manifest, lay.volume_rel(lay.names[0]), column, "../../../../../../X")
    before = {p for p in tmp_path.rglob("*")}
    assert lay.run_02(root, "--no_pbar") == 0
    new = {p for p in tmp_path.rglob("*")} - before
    assert new and all(p.is_relative_to(root / "grouped") for p in new)
    assert (lay.sample_dir(root, lay.names[0]) / f"{lay.sample_id(lay.names[0])}_info.yaml").is_file()


@pytest.fixture(scope="module")
def manifests(tmp_path_factory) -> dict[str, Path]:
    """A dataset manifest of each dataset's mini archive (refused runs must leave it as it is)."""
    roots = {}
    for dataset, lay in LAYOUTS.items():
        root = tmp_path_factory.mktemp("manifests") / dataset
        make_mini_archive(root, lay)
        assert lay.run_to_dataset_manifest(root)[-1] == 0
        roots[dataset] = root
    return roots


@pytest.mark.parametrize("script, extra", [
    ("verse/06_make_split.py", []),
    ("verse/07_extract_split_index_manifest.py", ["--output_index_manifest_dir", "{root}/grouped/splits", "--subsets", "train"]),
    ("nme/05_make_split_predefined.py", ["--site", "Tongji", "--collection", "train-val"]),
    ("nme/05_make_split_across_sites.py", ["--test_ratio", "0.5", "--val_ratio", "0", "--random_seed", "0"]),
    ("eso/05_make_split.py", ["--site", "TJ", "--test_ratio", "0.5", "--val_ratio", "0"]),
    ("nme/06_extract_split_index_manifest.py", ["--output_index_manifest_dir", "{root}/grouped/splits", "--subsets", "test"]),
])  # fmt: skip
@pytest.mark.parametrize("name", ["../../../x", "a/b", "Manifest", "x" * 40])
def test_a_split_name_that_cannot_be_a_sheet_and_file_name_is_refused(script, extra, name, manifests, caplog):
    dataset = script.split("/")[0]
    root = manifests[dataset]
    before = tree_digest(root)
    caplog.clear()
    args = [a.replace("{root}", str(root)) for a in extra]
    assert run_script(script, "--manifest_file", root / "grouped/dataset_manifest.xlsx", "--split_name", name, *args) == 2
    one_error(caplog, "--split_name", repr(name))
    assert tree_digest(root) == before


def test_a_label_short_form_that_is_not_a_safe_name_is_refused(tmp_path, caplog):
    lay, root = archive_ready(tmp_path, "verse")
    assert lay.run_02(root, "--no_pbar") == 0
    label_map = root / "descriptor/label_map.yaml"
    label_map.write_text("labels:\n  0: {name: background, short: Bg}\n  1: {name: x, short: ../../x}\n")
    caplog.clear()
    assert run_script(lay.script("bin"), "--root_dir", root / "grouped", "--label_explanation", label_map, "--no_pbar") == 2
    one_error(caplog, str(label_map), "'../../x'")
    assert not list((root / "grouped").rglob("*_mask_00_*"))


# --- the archive is read-only, enforced ----------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["verse", "nme", "eso"])
def test_outputs_equal_to_or_inside_the_archive_are_refused_by_routines_01_and_02(dataset, tmp_path, caplog):
    lay, root = archive_ready(tmp_path, dataset)
    archive = root / "archive"
    before = tree_digest(archive)
    caplog.clear()
    assert run_script(lay.script("01"), "--root_dir", archive, "--output_manifest_file", archive / "descriptor/m.xlsx") == 2
    one_error(caplog, "--output_manifest_file", "inside the archive", "only reads")
    for out in (archive, archive / "grouped", root / "archive/../archive/x"):
        caplog.clear()
        assert run_script(lay.script("02"), "--root_dir", archive, "--output_dir", out, "--archive_manifest", root / "descriptor/archive_manifest.xlsx") == 2
        one_error(caplog, "--output_dir", "the archive")
    assert tree_digest(archive) == before


@pytest.fixture(scope="module")
def verse_done(tmp_path_factory) -> Path:
    """A VerSe mini dataset through routine 05 and a split (every later tool can run on it)."""
    lay = LAYOUTS["verse"]
    root = tmp_path_factory.mktemp("r3") / "verse"
    make_mini_archive(root, lay)
    assert lay.run_to_dataset_manifest(root) == [0] * 5
    assert run_script(lay.script("split"), "--manifest_file", root / "grouped/dataset_manifest.xlsx", "--split_name", "split01_standard") == 0
    return root


LATER_TOOLS = {
    "05": ("verse/05_gen_dataset_manifest.py", "--root_dir", "{g}", "--output_manifest_file", "{a}/dm.xlsx"),
    "07": ("verse/07_extract_split_index_manifest.py", "--manifest_file", "{g}/dataset_manifest.xlsx", "--split_name", "split01_standard",
           "--output_index_manifest_dir", "{a}/splits", "--subsets", "train"),
    "close": (CLOSE, "--root_dir", "{g}", "--output_dir", "{a}/closed", "--kernel_size", "3", "3", "--filter_halfedge", "1", "--region_area_thresh", "2"),
    "threshold": (THRESHOLD, "--root_dir", "{g}", "--output_dir", "{a}", "--thresh", "-100", "100"),
    "report": (REPORT, "--root_dir", "{g}", "--region_volume_thresh", "100", "--output_manifest", "{a}/r.xlsx"),
    "qc": (QC, "--root_dir", "{g}", "--output_dir", "{a}/qc"),
    "export": (EXPORT, "--manifest_file", "{g}/dataset_manifest.xlsx", "--split_name", "split01_standard", "--output_dir", "{a}/export"),
}  # fmt: skip


@pytest.mark.parametrize("tool", sorted(LATER_TOOLS))
def test_tools_on_the_grouped_dataset_refuse_an_output_inside_the_archive(tool, verse_done, caplog):
    archive = verse_done / "archive"
    before = tree_digest(archive)
    script, *args = LATER_TOOLS[tool]
    caplog.clear()
    assert run_script(script, *[a.format(g=verse_done / "grouped", a=archive) for a in args], "--no_pbar") == 2
    one_error(caplog, "the archive", str(archive), "only reads")
    assert tree_digest(archive) == before


# --- untrusted YAML -------------------------------------------------------------------------------------------------


def alias_bomb(levels: int = 9) -> str:
    lines = ["labels:", "  0: {name: background, short: Bg}", "x0: &x0 [a, a, a, a, a, a, a, a, a]"]
    lines += [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\nbomb: *x{levels}\n"


@pytest.mark.parametrize("text, needle", [
    (alias_bomb(), "alias bomb"),
    ("labels:\n  0: {name: bg, short: Bg}\n  1: {name: a, short: A}\n  1: {name: b, short: B}\n", "duplicate key '1'"),
    ("labels:\n  0: {name: bg, short: Bg}\n  1: {name: a, short: A}\n  '1': {name: b, short: B}\n", "duplicate key '1'"),
    ("labels:\n  0: {name: bg, short: Bg}\n  '1': {name: a, short: A}\n", "label index '1' is not an integer written plainly"),
    ("labels:\n  0: {name: bg, short: Bg}\n  010: {name: a, short: A}\n", "label index '010' is not an integer written plainly"),
    ("labels:\n  0: {name: bg, short: Bg}\n  1: {name: [a, b], short: A}\n", "must be text"),
    ("labels: &a\n  0: {name: bg, short: Bg}\n  <<: *a\n", "merge keys"),
])  # fmt: skip
def test_an_untrusted_label_map_is_refused_in_one_line(text, needle, tmp_path, caplog):
    path = tmp_path / "label_map.yaml"
    path.write_text(text)
    with pytest.raises(LabelError, match=needle.replace("[", r"\[")):
        LabelMap.load(path)
    (tmp_path / "g/s1").mkdir(parents=True)
    write_info(tmp_path / "g/s1/s1_info.yaml", {"ID": "s1"})
    caplog.clear()
    assert run_script("verse/04_extract_binary_masks.py", "--root_dir", tmp_path / "g", "--label_explanation", path, "--no_pbar") == 2
    one_error(caplog, str(path), needle)


def test_aliases_within_the_limit_are_read_and_the_bomb_costs_nothing():
    assert parse_yaml("a: &x [1, 2]\nb: *x\n") == {"a": [1, 2], "b": [1, 2]}
    big = "a: &x [" + ", ".join(["1"] * (MAX_ALIAS_EXPANSION + 10)) + "]\nb: *x\n"
    with pytest.raises(yaml.YAMLError, match="alias"):
        parse_yaml(big)


@pytest.fixture(scope="module")
def processed_base(tmp_path_factory) -> Path:
    """A VerSe mini dataset through routine 04 (built once; each test works on a copy at the same path)."""
    lay = LAYOUTS["verse"]
    root = tmp_path_factory.mktemp("processed") / "base"
    make_mini_archive(root, lay)
    assert lay.run_01(root) == 0 and lay.run_02(root) == 0
    assert run_script(lay.script("03"), "--root_dir", root / "grouped") == 0
    assert run_script(lay.script("bin"), "--root_dir", root / "grouped", "--label_explanation", root / "descriptor/label_map.yaml") == 0
    return root


@pytest.fixture
def processed(processed_base) -> tuple[Layout, Path]:
    """A fresh copy of :func:`processed_base` (at its own path: the info yamls hold only relative paths)."""
    root = processed_base.parent / "work"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(processed_base, root)
    return LAYOUTS["verse"], root


BAD_INFO = [
    (b"", "the file is empty (0 bytes)"),
    (b"ID: x\nID: y\n", "duplicate key 'ID'"),
    (b"ID: [unclosed\n", "not valid YAML"),
    (b"- a\n- b\n", "a YAML mapping was expected, found list"),
    (b"ID: x\nhistory: 5\n", "'history' must be a list of mappings"),
    (b"\xff\xfe garbage", "cannot be read"),
]


@pytest.mark.parametrize("content, why", BAD_INFO)
@pytest.mark.parametrize("routine", ["02", "03", "bin", "close"])
def test_no_routine_rewrites_an_info_yaml_it_could_not_read(processed, routine, content, why, caplog):
    lay, root = processed
    sample = SampleDir(lay.sample_dir(root, lay.names[0]))
    sample.info.write_bytes(content)
    g = root / "grouped"
    args = {
        "02": (lay.script("02"), "--root_dir", root / "archive", "--output_dir", g, "--archive_manifest", root / "descriptor/archive_manifest.xlsx"),
        "03": (lay.script("03"), "--root_dir", g),
        "bin": (lay.script("bin"), "--root_dir", g, "--label_explanation", root / "descriptor/label_map.yaml", "--workers", "1"),
        "close": (CLOSE, "--root_dir", g, "--output_dir", g, "--kernel_size", "3", "3", "--filter_halfedge", "1", "--region_area_thresh", "2", "--force"),
    }[routine]  # fmt: skip
    caplog.clear()
    assert run_script(*args, "--no_pbar") == 1
    lines = [m for m in errors(caplog) if m.startswith(f"{sample.id}: ")]
    assert len(lines) == 1 and "invalid info yaml" in lines[0] and why in lines[0] and "has no info yaml" not in lines[0]
    assert sample.info.read_bytes() == content, "the info yaml was left as it was"
    assert "Traceback" not in caplog.text


def test_routine_02_rebuilds_a_sample_with_an_unreadable_info_yaml_only_with_overwrite(processed, caplog):
    lay, root = processed
    sample = SampleDir(lay.sample_dir(root, lay.names[0]))
    sample.info.write_bytes(b"")
    caplog.clear()
    assert lay.run_02(root, "--overwrite") == 0
    info = read_info(sample.info)
    assert info["ID"] == sample.id and info["built_from"]["volume"]["path"] == lay.volume_rel(lay.names[0])
    assert info["subset"] == "train" and info["archive"] == "VerSe20" and info["source"]["volume"] == lay.volume_rel(lay.names[0])


@pytest.mark.parametrize("garbage", ["just text", [1, 2], {"volume": 5, "mask": None}, {"volume": {"path": 3}}, {"volume": {"path": "x"}, "duplicates": "no"}])
def test_garbage_in_built_from_is_a_stale_record_never_a_traceback(garbage, tmp_path, caplog):
    lay = LAYOUTS["verse"]
    root = tmp_path / "v"
    make_mini_archive(root, lay)
    assert lay.run_01(root) == 0 and lay.run_02(root) == 0
    fresh, processed_ = (SampleDir(lay.sample_dir(root, n)) for n in lay.names)
    for sample in (fresh, processed_):
        info = read_info(sample.info)
        info["built_from"] = garbage
        if sample is processed_:  # a later step already changed this one: it must not be rebuilt silently
            info["history"].append({"step": "reduce_sacrum_coccyx_and_revise_T13", "params": {}})
        write_info(sample.info, info)
    caplog.clear()
    assert lay.run_02(root, "--no_pbar") == 1
    line = one_error_for(caplog, processed_.id)
    assert "its build record (built_from)" in line and "--overwrite" in line
    assert read_info(fresh.info)["built_from"]["volume"]["path"] == lay.volume_rel(lay.names[0])  # rebuilt
    assert "Traceback" not in caplog.text


def one_error_for(caplog, sample_id: str) -> str:
    lines = [m for m in errors(caplog) if m.startswith(f"{sample_id}: ")]
    assert len(lines) == 1, errors(caplog)
    return lines[0]


# --- no traceback ---------------------------------------------------------------------------------------------------


def test_a_csv_saved_as_archive_manifest_xlsx_is_one_line(tmp_path, caplog):
    lay, root = archive_ready(tmp_path, "verse")
    manifest = root / "descriptor/archive_manifest.xlsx"
    read_sheet(manifest).to_csv(manifest, index=False)
    caplog.clear()
    assert lay.run_02(root) == 2
    one_error(caplog, str(manifest), "not a readable .xlsx workbook (BadZipFile")
    caplog.clear()
    assert run_script("verse/06_make_split.py", "--manifest_file", manifest, "--split_name", "s1") == 2
    one_error(caplog, "BadZipFile")


def test_the_qc_report_probes_its_output_folder_before_drawing_anything(verse_done, tmp_path, caplog):
    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder")
    caplog.clear()
    assert run_script(QC, "--root_dir", verse_done / "grouped", "--output_dir", blocked / "qc", "--no_pbar") == 2
    one_error(caplog, "--output_dir", str(blocked), "is not a folder")


def test_the_qc_report_answers_a_zero_length_axis_in_one_line(tmp_path, caplog):
    import nibabel as nib

    sample = SampleDir(tmp_path / "g/VerSe20/train/z1")
    sample.path.mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.zeros((4, 0, 3), np.float32), AFFINE), sample.volume)
    nib.save(nib.Nifti1Image(np.zeros((4, 0, 3), np.uint8), AFFINE), sample.mask)
    write_info(sample.info, {"ID": "z1"})
    caplog.clear()
    assert run_script(QC, "--root_dir", tmp_path / "g", "--output_dir", tmp_path / "qc", "--no_pbar") == 1
    line = one_error_for(caplog, "VerSe20/train/z1")
    assert "z1_volume.nii.gz" in line and "(4, 0, 3)" in line and "unexpected" not in line


def test_the_dependency_check_is_derived_from_requirements_txt_and_knows_every_import_name(monkeypatch, tmp_path):
    listed = requirements_check.required_distributions()
    assert "connected-components-3d" in listed and "PyYAML" in listed and "isal" in listed
    for distribution in listed:  # a future dependency whose module has another name fails here until it is mapped
        module = requirements_check.import_name(distribution)
        assert __import__("importlib").util.find_spec(module) is not None, f"{distribution} -> {module} is not importable"
    real = __import__("importlib").util.find_spec
    monkeypatch.setattr(requirements_check.importlib.util, "find_spec", lambda name, *a: None if name == "cc3d" else real(name, *a))
    assert requirements_check.missing_modules() == ["connected-components-3d"]
    extra = tmp_path / "requirements.txt"
    extra.write_text("# comment\n-r base.txt\nnumpy>=1.24\nsome-new_Package[extra]==1.0 ; python_version > '3'\n")
    assert requirements_check.required_distributions(extra) == ["numpy", "some-new_Package"]
    assert requirements_check.import_name("some-new_Package") == "some_new_package"


def test_without_connected_components_3d_the_small_region_tool_says_so_in_one_line(tmp_path):
    hide = tmp_path / "sitecustomize.py"  # this interpreter cannot find cc3d
    hide.write_text("import sys\nclass _Hide:\n    def find_spec(self, name, path=None, target=None):\n"
                    "        return None if name != 'cc3d' else (_ for _ in ()).throw(ModuleNotFoundError(name))\n"
                    "sys.meta_path.insert(0, _Hide())\n")  # fmt: skip
    run = subprocess.run([sys.executable, str(REPO / REPORT), "--help"], capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "connected-components-3d" in run.stderr and "Traceback" not in run.stderr


# --- honest small things --------------------------------------------------------------------------------------------

NO_SAMPLE = {
    "verse 03": ("verse/03_reduce_sacrum_cocygis_and_revise_T13_label.py", "--root_dir", "{r}"),
    "verse 04": ("verse/04_extract_binary_masks.py", "--root_dir", "{r}", "--label_explanation", str(REPO / "descriptors/verse/label_map.yaml")),
    "verse 05": ("verse/05_gen_dataset_manifest.py", "--root_dir", "{r}", "--output_manifest_file", "{o}/dm.xlsx"),
    "nme 03": ("nme/03_extract_binary_masks.py", "--root_dir", "{r}", "--label_explanation", str(REPO / "descriptors/nme/label_map.yaml")),
    "nme 04": ("nme/04_gen_dataset_manifest.py", "--root_dir", "{r}", "--output_manifest_file", "{o}/dm.xlsx"),
    "eso 03": ("eso/03_extract_binary_masks.py", "--root_dir", "{r}", "--label_explanation", str(REPO / "descriptors/eso/label_map.yaml")),
    "eso 04": ("eso/04_gen_dataset_manifest.py", "--root_dir", "{r}", "--output_manifest_file", "{o}/dm.xlsx"),
    "small regions": (REPORT, "--root_dir", "{r}", "--region_volume_thresh", "10", "--output_manifest", "{o}/r.xlsx"),
    "close": (CLOSE, "--root_dir", "{r}", "--output_dir", "{r}", "--kernel_size", "3", "3", "--filter_halfedge", "1", "--region_area_thresh", "2"),
    "open": (OPEN, "--root_dir", "{r}", "--output_dir", "{o}/opened", "--kernel_size", "2", "2", "--filter_halfedge", "1", "--region_area_thresh", "2"),
    "threshold": (THRESHOLD, "--root_dir", "{r}", "--output_dir", "{r}", "--thresh", "0", "1"),
    "qc report": (QC, "--root_dir", "{r}", "--output_dir", "{o}/qc"),
}  # fmt: skip


@pytest.mark.parametrize("tool", sorted(NO_SAMPLE))
def test_a_root_dir_without_any_sample_folder_is_one_line_and_exit_2(tool, tmp_path, caplog):
    wrong = tmp_path / "not_grouped"
    (wrong / "something").mkdir(parents=True)
    (wrong / "something/notes.txt").write_text("x")
    out = tmp_path / "out"
    script, *args = NO_SAMPLE[tool]
    caplog.clear()
    assert run_script(script, *[a.format(r=wrong, o=out) for a in args], "--no_pbar") == 2
    one_error(caplog, str(wrong), "no sample folder below it")
    assert not out.exists(), "nothing written (no empty xlsx)"
    assert sorted(p.name for p in wrong.rglob("*")) == ["notes.txt", "something"]


def test_mask_tool_log_names_the_tool_once_with_correct_plurals_and_no_empty_detail(processed):
    lay, root = processed
    g = root / "grouped"
    cmd = [sys.executable, str(REPO / CLOSE), "--root_dir", str(g), "--output_dir", str(g), "--kernel_size", "3", "3", "--filter_halfedge", "1", "--region_area_thresh", "2"]
    first = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr.splitlines()
    second = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr.splitlines()
    name = "morphological_close_on_slice_small_region"
    for line in first + second:
        assert line.count(name) <= 1, line
    assert f"INFO {name}: 2 samples in {g}, rewritten in place; parameters" in first[0]
    assert any(line.endswith("slice-wise closing: 2 samples done") for line in first)
    assert any(line.endswith(": applied to 0 samples, 2 already applied with these parameters") for line in second), second
    assert not any("0 masks changed" in line or "; -)" in line for line in first + second)
    assert leftover_temporaries(root) == []


def test_plurals_of_one():
    from utils.run.cli import RunReport, plural
    from utils.maskqc.steps import step_summary

    assert plural(1, "sample") == "1 sample" and plural(0, "sample") == "0 samples"
    assert step_summary([{"status": "applied", "changed": True, "voxels": 3}]) == "applied to 1 sample (1 mask changed: voxels 3)"
    assert step_summary([{"status": "applied", "changed": False, "voxels": 0}, {"status": "no mask"}]) == "applied to 1 sample (no mask changed), 1 sample without mask"
    assert step_summary([{"status": "already applied"}] * 3) == "applied to 0 samples, 3 already applied with these parameters"
    report = RunReport("x", results={"a": 1})
    assert report.exit_code() == 0


def test_a_qc_review_file_with_an_alias_bomb_is_refused_at_once(tmp_path):
    from utils.review.review_file import ReviewFileError, load_review

    levels = ["version: 1", "dataset: verse", "reviews:", "  x0: &x0 [a, a, a, a, a, a, a, a, a]"]
    levels += [f"  x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 9)}]" for i in range(1, 10)]
    path = tmp_path / "qc_review.yaml"
    path.write_text("\n".join(levels + ["  verse004: {verdict: fail, note: *x9}"]) + "\n")
    with pytest.raises(ReviewFileError, match="alias bomb"):
        load_review(path)
