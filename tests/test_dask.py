"""``--dask_scheduler``: routines and a mask-QC tool on a real ``distributed.LocalCluster`` (2 worker processes).

Every output of a Dask run is compared byte for byte with a serial run (info yamls after masking the
time stamp of each history entry; xlsx by sheet content); a bad sample is reported exactly as with
``--workers``; a worker killed in the middle of writing a sample still ends with every sample complete
and correct; the start-up probe stops a run in one line naming the worker and the path.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

import cloudpickle  # noqa: E402  (a dependency of distributed)
import dask  # noqa: E402

from tests.conftest import REPO, run_script  # noqa: E402
from utils.run import dask_runner  # noqa: E402
from utils.run.cli import RunReport, run_per_sample  # noqa: E402
from utils.files.spreadsheet import read_sheet, sheet_names  # noqa: E402
from verse.demo_archive import make_demo_archive  # noqa: E402

R01 = "verse/01_gen_archive_manifest.py"
R02 = "verse/02_confirm_pairs.py"
R03 = "verse/03_reduce_sacrum_cocygis_and_revise_T13_label.py"
R04 = "verse/04_extract_binary_masks.py"
R05 = "verse/05_gen_dataset_manifest.py"
CLOSE = "utils/morphological_close_on_slice_small_region.py"
REPORT = "utils/small_connected_region_detect.py"
DATE = re.compile(rb"date: '[^']*'")


# --- fixtures: one cluster, one archive, one serial run per module --------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster with 2 worker processes (1 thread each) whose workers can import ``utils``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        with distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.CRITICAL
        ) as cluster:
            yield cluster


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """``root/archive`` (the VerSe demo archive); every run below works with paths relative to ``root``."""
    root = tmp_path_factory.mktemp("dask")
    make_demo_archive(root / "archive")
    return root


def pipeline(run: str, *extra: str) -> list[int]:
    """Routines 01-04, the closing tool in place, the small-region report and routine 05 into ``run/`` (relative paths)."""
    g, d = f"{run}/grouped", f"{run}/descriptor"
    codes = [
        run_script(R01, "--root_dir", "archive", "--output_manifest_file", f"{d}/archive_manifest.xlsx", "--no_pbar", *extra),
        run_script(R02, "--root_dir", "archive", "--output_dir", g, "--archive_manifest", f"{d}/archive_manifest.xlsx", "--no_pbar", *extra),
    ]
    shutil.copytree(g, f"{run}/grouped_02")  # routine 02's output, before later steps change it
    codes += [
        run_script(R03, "--root_dir", g, "--no_pbar", *extra),
        run_script(R04, "--root_dir", g, "--label_explanation", f"{d}/label_map.yaml", "--no_pbar", *extra),
        run_script(CLOSE, "--root_dir", g, "--output_dir", g, "--kernel_size", 5, 5, "--filter_halfedge", 3, "--region_area_thresh", 2.0, "--no_pbar", *extra),
        run_script(REPORT, "--root_dir", g, "--region_volume_thresh", 100.0, "--output_manifest", f"{d}/small_regions.xlsx", "--no_pbar", *extra),
        run_script(R05, "--root_dir", g, "--output_manifest_file", f"{g}/dataset_manifest.xlsx", "--no_pbar", *extra),
    ]
    return codes


@pytest.fixture(scope="module")
def runs(root, cluster):
    """The same steps serially (``root/serial``) and through ``--dask_scheduler`` (``root/dask``)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # relative paths: the workers must run in this folder too
        assert pipeline("serial") == [0] * 7
        assert pipeline("dask", "--dask_scheduler", cluster.scheduler_address) == [0] * 7
    return root


def visible_files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file() and not any(s.startswith(".") for s in p.relative_to(folder).parts)}


def assert_same_outputs(a: Path, b: Path) -> None:
    """Same files; NIfTI and yaml byte for byte (history time stamps masked), xlsx sheet by sheet."""
    files_a, files_b = visible_files(a), visible_files(b)
    assert sorted(files_a) == sorted(files_b)
    assert files_a, f"no files in {a}"
    for rel, path in files_a.items():
        other = files_b[rel]
        if rel.endswith(".xlsx"):
            assert sheet_names(path) == sheet_names(other), rel
            for sheet in sheet_names(path):
                assert read_sheet(path, sheet).equals(read_sheet(other, sheet)), f"{rel} [{sheet}]"
        elif rel.endswith(".yaml"):
            assert DATE.sub(b"date: X", path.read_bytes()) == DATE.sub(b"date: X", other.read_bytes()), rel
        else:
            assert path.read_bytes() == other.read_bytes(), rel


def error_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# --- the routines through the cluster -------------------------------------------------------------------------------


def test_routines_01_to_05_and_mask_qc_tools_on_dask_write_what_a_serial_run_writes(runs):
    root = runs
    for folder in ("descriptor", "grouped_02", "grouped"):
        assert_same_outputs(root / "serial" / folder, root / "dask" / folder)
    # the comparison has teeth: the runs wrote masks, binary masks, the repair history and a non-empty report
    grouped = visible_files(root / "dask/grouped")
    assert sum(name.endswith("_mask_01_C1.nii.gz") for name in grouped) == 10
    assert b"morphological_close_on_slice_small_region" in (root / "dask/grouped/VerSe20/train/gl003/gl003_info.yaml").read_bytes()
    assert len(read_sheet(root / "dask/descriptor/small_regions.xlsx")) > 0
    assert not list((root / "dask").rglob(dask_runner.PROBE_PREFIX + "*")), "probe files must be removed"


def test_a_bad_sample_is_reported_exactly_as_with_workers(runs, cluster, caplog):
    """Routine 04 without routine 03: verse505 holds labels 27/28 that are not in the label map."""
    root = runs
    scheduler_file = root / "scheduler.json"
    scheduler_file.write_text(json.dumps({"address": cluster.scheduler_address}))  # the other way to name the cluster
    bad = root / "bad"
    shutil.copytree(root / "serial/grouped_02", bad)
    outcomes = {}
    for name, extra in (("workers", ["--workers", "2"]), ("dask", ["--dask_scheduler", str(scheduler_file)])):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            rc = run_script(R04, "--root_dir", bad, "--label_explanation", root / "serial/descriptor/label_map.yaml", "--no_pbar", *extra)
        lines = error_lines(caplog)
        outcomes[name] = (rc, sorted(lines[:-2]), lines[-2:])  # per-sample lines (completion order), then the summary
        shutil.copytree(bad, root / f"bad_after_{name}")
    assert outcomes["dask"] == outcomes["workers"]
    rc, per_sample, summary = outcomes["dask"]
    assert rc == 1
    assert len(per_sample) == 1 and per_sample[0].startswith("verse505: ") and "mask values [27, 28] are not in the label map" in per_sample[0]
    assert summary[0] == "binary masks: 1 of 10 samples failed:"
    assert_same_outputs(root / "bad_after_workers", root / "bad_after_dask")


# --- worker loss --------------------------------------------------------------------------------------------------


class KillOnFirstMaskRename(distributed.WorkerPlugin):
    """Makes the first worker that renames a ``*_mask.nii.gz`` into place kill itself (SIGKILL) just before.

    The sample's volume is then complete, its mask only a temporary file, its info yaml missing:
    the worker dies in the middle of writing the sample. ``marker`` (created with O_EXCL) makes it
    happen once in the whole cluster, also after the nanny restarts the worker with this plugin.
    """

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def setup(self, worker) -> None:
        self.real_replace = real_replace = os.replace
        marker = self.marker

        def replace(src, dst, *args, **kwargs):
            if str(dst).endswith("_mask.nii.gz"):
                try:
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    pass
                else:
                    os.close(fd)
                    os.kill(os.getpid(), signal.SIGKILL)
            return real_replace(src, dst, *args, **kwargs)

        os.replace = replace

    def teardown(self, worker) -> None:
        os.replace = self.real_replace


def test_a_worker_killed_while_writing_a_sample_does_not_lose_or_corrupt_it(runs, cluster):
    root = runs
    marker = root / "killed.marker"
    with distributed.Client(cluster.scheduler_address) as client:
        client.register_plugin(KillOnFirstMaskRename(str(marker)), name="kill-once")
        try:
            rc = run_script(
                R02, "--root_dir", root / "archive", "--output_dir", root / "killed/grouped",
                "--archive_manifest", root / "serial/descriptor/archive_manifest.xlsx", "--no_pbar",
                "--dask_scheduler", cluster.scheduler_address,
            )  # fmt: skip
        finally:
            client.unregister_worker_plugin("kill-once")
        client.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker
    assert marker.exists(), "no worker was killed"
    assert rc == 0
    # absolute archive paths here, relative in the serial run: the info yamls' source paths differ only by that prefix
    serial, killed = root / "serial/grouped_02", root / "killed/grouped"
    assert sorted(visible_files(serial)) == sorted(visible_files(killed))
    for rel, path in visible_files(serial).items():
        ours = visible_files(killed)[rel].read_bytes()
        if rel.endswith(".yaml"):
            ours = ours.replace(str(root / "archive").encode(), b"archive")
            assert DATE.sub(b"", ours) == DATE.sub(b"", path.read_bytes()), rel
        else:
            assert ours == path.read_bytes(), rel


# --- the probe and the one-line errors ------------------------------------------------------------------------------


def test_a_worker_that_sees_another_folder_at_the_output_path_stops_the_run_in_one_line(runs, cluster, caplog, monkeypatch):
    root = runs
    monkeypatch.setattr(dask_runner, "_write_token", _write_other_token)
    out = root / "probe_out"
    with pytest.raises(SystemExit) as exc:
        run_script(R02, "--root_dir", root / "archive", "--output_dir", out, "--archive_manifest", root / "serial/descriptor/archive_manifest.xlsx",
                   "--no_pbar", "--dask_scheduler", cluster.scheduler_address)  # fmt: skip
    assert exc.value.code == 2
    lines = error_lines(caplog)
    assert len(lines) == 1
    assert re.fullmatch(rf"dask worker tcp://127\.0\.0\.1:\d+ sees another folder at {re.escape(str(out))} \(a file written there by this machine is not visible\)", lines[0])
    assert not out.exists(), "the folder made for the probe is removed, nothing was written"


def _write_other_token(folder: str, token: str) -> str:
    """What a worker with another disk mounted at the same path would read: not this machine's token."""
    path = os.path.join(folder, dask_runner.PROBE_PREFIX + token)
    Path(path).write_text("written on another machine")
    return path


def probe_spec(tmp_path: Path, **overrides) -> dict:
    spec = {"token": "t0k3n", "probe_prefix": dask_runner.PROBE_PREFIX, "cwd": None, "input_dirs": [], "output_dirs": [],
            "modules": ["utils"], "repo": str(REPO), "log_level": logging.INFO}  # fmt: skip
    spec.update(overrides)
    return spec


def test_probe_names_the_path_a_worker_does_not_see_or_sees_differently(tmp_path, monkeypatch):
    probe, fingerprint = dask_runner.make_probe()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.nii.gz").write_bytes(b"")
    digest = fingerprint(str(tmp_path / "in"))
    assert probe(probe_spec(tmp_path, input_dirs=[[str(tmp_path / "in"), digest]])) == {"error": None, "repo": str(REPO)}
    missing = str(tmp_path / "nowhere")
    assert probe(probe_spec(tmp_path, input_dirs=[[missing, None]]))["error"] == f"does not see {missing} (no such folder there)"
    (tmp_path / "in" / "b.nii.gz").write_bytes(b"")  # the worker's folder at that path holds other files
    assert probe(probe_spec(tmp_path, input_dirs=[[str(tmp_path / "in"), digest]]))["error"] == f"sees another folder at {tmp_path / 'in'} (its entries differ from this machine's)"
    assert "does not see the working directory" in probe(probe_spec(tmp_path, cwd=missing))["error"]
    (tmp_path / "out").mkdir()
    assert "a file written there by this machine is not visible" in probe(probe_spec(tmp_path, output_dirs=[str(tmp_path / "out")]))["error"]
    (tmp_path / "out" / (dask_runner.PROBE_PREFIX + "t0k3n")).write_text("t0k3n")
    assert probe(probe_spec(tmp_path, output_dirs=[str(tmp_path / "out")]))["error"] is None
    assert probe(probe_spec(tmp_path, modules=["utils.no_such_module_here"]))["error"].endswith("from the toolkit's code shipped to the worker")
    (tmp_path / "needs_dependency.py").write_text("import no_such_dependency_here\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert probe(probe_spec(tmp_path, modules=["needs_dependency"]))["error"] == (
        "cannot import needs_dependency (No module named 'no_such_dependency_here'): "
        "install requirements.txt in the workers' Python environment"
    )


def test_a_late_joining_worker_that_fails_the_probe_is_reported_by_its_first_task(tmp_path):
    spec = probe_spec(tmp_path, token="late", input_dirs=[[str(tmp_path / "gone"), None]])
    status, message, records = dask_runner.run_item_on_worker(1, work=str, spec=spec)
    assert (status, records) == ("probe", [])
    assert message == f"does not see {tmp_path / 'gone'} (no such folder there)"


def test_a_worker_that_cannot_import_the_code_answers_in_one_line(tmp_path):
    """The probe and the task function travel by value: they answer even where ``utils`` cannot be imported."""
    probe, _ = dask_runner.make_probe()
    task = dask_runner.make_task(str(REPO))
    (tmp_path / "probe.pkl").write_bytes(cloudpickle.dumps((probe, probe_spec(tmp_path), task)))
    code = (
        "import pickle, sys\n"
        "probe, spec, task = pickle.loads(open('probe.pkl', 'rb').read())\n"
        "print(probe(spec)['error'])\n"
        "print(pickle.loads(task(b'', b''))[1])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "cannot import utils (No module named 'utils') from the toolkit's code shipped to the worker"
    assert out[1] == f"cannot import utils.run.dask_runner (No module named 'utils') from the toolkit's code shipped to the worker (client checkout {REPO})"


def test_without_distributed_the_option_says_what_to_install(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    (tmp_path / "g").mkdir()
    sample = tmp_path / "g/s1"
    sample.mkdir()
    (sample / "s1_info.yaml").write_text("ID: s1\n")
    (sample / "s1_mask.nii.gz").write_bytes(b"")
    with pytest.raises(SystemExit) as exc:
        run_script(R04, "--root_dir", tmp_path / "g", "--label_explanation", REPO / "descriptors/verse/label_map.yaml",
                   "--no_pbar", "--dask_scheduler", "tcp://127.0.0.1:8786")  # fmt: skip
    assert exc.value.code == 2
    assert error_lines(caplog) == ["--dask_scheduler needs the 'distributed' package: pip install distributed"]


def test_an_unreachable_scheduler_or_missing_scheduler_file_is_one_line(tmp_path, caplog):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for address, expected in (
        (f"tcp://127.0.0.1:{port}", f"cannot connect to the Dask scheduler at tcp://127.0.0.1:{port}: "),
        (str(tmp_path / "scheduler.json"), f"--dask_scheduler: scheduler file not found: {tmp_path / 'scheduler.json'}"),
    ):
        caplog.clear()
        with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), pytest.raises(SystemExit) as exc:
            run_per_sample([1], str, desc="x", dask_scheduler=address, show_progress=False)
        assert exc.value.code == 2
        lines = error_lines(caplog)
        assert len(lines) == 1 and lines[0].startswith(expected) and "\n" not in lines[0]


# --- run_per_sample itself -------------------------------------------------------------------------------------------


def warn_and_check(item: int) -> int:
    """Per-sample work that logs a warning and fails for odd items (importable by the workers)."""
    logging.getLogger("utils.test_dask_work").warning("item %d looked at", item)
    if item % 2:
        raise ValueError(f"item {item} is odd")
    return item * 10


def test_run_per_sample_on_dask_returns_what_workers_return_and_logs_what_a_serial_run_logs(cluster, caplog):
    reports: dict[str, tuple[RunReport, list]] = {}
    for name, kwargs in (("serial", {}), ("workers", {"workers": 2}), ("dask", {"dask_scheduler": cluster.scheduler_address})):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            report = run_per_sample(range(5), warn_and_check, desc="x", show_progress=False, **kwargs)
        # our loggers only: the in-process scheduler logs client connections at its own pace
        records = sorted((r.name, r.levelname, r.getMessage()) for r in caplog.records if r.name != "utils.run.dask_runner" and not r.name.startswith("distributed"))
        reports[name] = (report, records)
    assert reports["dask"][0].results == reports["workers"][0].results == {"0": 0, "2": 20, "4": 40}
    assert reports["dask"][0].errors == reports["workers"][0].errors == {"1": "item 1 is odd", "3": "item 3 is odd"}
    assert reports["serial"][0].errors == reports["workers"][0].errors
    assert reports["dask"][1] == reports["serial"][1]  # records logged on the workers come back, as if run here
    assert ("utils.test_dask_work", "WARNING", "item 3 looked at") in reports["dask"][1]


def test_no_sample_needs_no_cluster():
    report = run_per_sample([], str, desc="x", dask_scheduler="tcp://127.0.0.1:1", show_progress=False)
    assert (report.results, report.errors) == ({}, {})


# --- command lines --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["verse", "nme", "eso"])
def test_run_pipeline_passes_dask_scheduler_to_every_per_sample_step(dataset, tmp_path):
    """``DASK_SCHEDULER`` reaches every step that loops over samples (``PYTHON`` is a stub recording the command lines)."""
    log = tmp_path / "calls.txt"
    stub = tmp_path / "python"
    stub.write_text(f'#!/usr/bin/env bash\necho "$*" >> {log}\n')
    stub.chmod(0o755)
    env = {**os.environ, "PYTHON": str(stub), "DASK_SCHEDULER": "tcp://10.0.0.5:8786", "WORKERS": "3"}
    subprocess.run(["bash", str(REPO / dataset / "run_pipeline.sh"), str(tmp_path / "root")], env=env, check=True, capture_output=True)
    calls = log.read_text().splitlines()
    looping = [c for c in calls if "--root_dir" in c]  # routines 01-05 and the QC tools; splits and index manifests take --manifest_file
    assert len(looping) >= 4
    for call in looping:
        assert "--dask_scheduler tcp://10.0.0.5:8786" in call, call
    for call in calls:
        if "--workers" in call:
            assert "--dask_scheduler tcp://10.0.0.5:8786" in call, call
    env.pop("DASK_SCHEDULER")
    log.unlink()
    subprocess.run(["bash", str(REPO / dataset / "run_pipeline.sh"), str(tmp_path / "root")], env=env, check=True, capture_output=True)
    assert "--dask_scheduler" not in log.read_text()
