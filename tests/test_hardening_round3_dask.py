"""Dask on a cluster someone else started (issue 18), with real worker processes.

- A worker started with nothing but the dependencies (no ``PYTHONPATH``, another working directory, no
  checkout on its path) runs routines 02 and 04: the command ships its own code, and the outputs are
  those of a serial run.
- The last worker killed in the middle of writing a sample: the run ends with one line and exit 2 once
  no worker has come back within the (shortened) wait, and no temporary, lock or probe file of ours is
  left behind.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

import cloudpickle  # noqa: E402

from tests.conftest import REPO, run_script  # noqa: E402
from tests.mini_archives import LAYOUTS, leftover_temporaries, make_mini_archive, write_sample  # noqa: E402
from utils.run import dask_runner  # noqa: E402

LAY = LAYOUTS["verse"]
DATE = re.compile(rb"date: '[^']*'")


def _start_worker(address: str, cwd: Path, *, nanny: bool) -> subprocess.Popen:
    """``dask worker ADDRESS`` as a user would start it on a machine without this checkout on its path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    args = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--no-dashboard",
            "--nanny" if nanny else "--no-nanny", "--local-directory", str(cwd / "scratch")]  # fmt: skip
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture
def scheduler():
    """A scheduler with no worker of its own (workers are started by the tests as separate programs)."""
    with distributed.LocalCluster(n_workers=0, dashboard_address=":0", silence_logs=logging.CRITICAL) as cluster:
        yield cluster


def _wait_for_workers(address: str, n: int) -> None:
    with distributed.Client(address, set_as_default=False) as client:
        client.wait_for_workers(n, timeout=60)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _archive(root: Path, n: int = 3) -> None:
    make_mini_archive(root, LAY)
    for i in range(3, 3 + n - 2):
        write_sample(root / "archive", LAY, f"verse6{i:02d}", seed=i)
    assert LAY.run_01(root, "--no_pbar") == 0


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): DATE.sub(b"date: X", p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_worker_without_pythonpath_or_checkout_runs_the_routines_with_the_shipped_code(scheduler, tmp_path):
    root = tmp_path / "root"
    _archive(root)
    serial = tmp_path / "serial"
    assert run_script(LAY.script("02"), "--root_dir", root / "archive", "--output_dir", serial, "--archive_manifest", root / "descriptor/archive_manifest.xlsx", "--no_pbar") == 0
    assert run_script(LAY.script("bin"), "--root_dir", serial, "--label_explanation", REPO / "descriptors/verse/label_map.yaml", "--no_pbar") == 0

    elsewhere = tmp_path / "worker_home"
    elsewhere.mkdir()
    probe = subprocess.run([sys.executable, "-c", "import utils"], cwd=elsewhere, capture_output=True,
                           env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})  # fmt: skip
    assert probe.returncode != 0, "the worker's Python must not find this checkout by itself"
    worker = _start_worker(scheduler.scheduler_address, elsewhere, nanny=True)
    try:
        _wait_for_workers(scheduler.scheduler_address, 1)
        dask_out = tmp_path / "dask"
        extra = ("--no_pbar", "--dask_scheduler", scheduler.scheduler_address)
        assert run_script(LAY.script("02"), "--root_dir", root / "archive", "--output_dir", dask_out, "--archive_manifest", root / "descriptor/archive_manifest.xlsx", *extra) == 0
        assert run_script(LAY.script("bin"), "--root_dir", dask_out, "--label_explanation", REPO / "descriptors/verse/label_map.yaml", *extra) == 0
        unpacked = [p for p in (elsewhere / "scratch").rglob("segmentation-toolkit-*") if p.is_dir()]  # gone when the worker stops
        assert unpacked and (unpacked[0] / "utils/run/dask_runner.py").is_file(), "the code was shipped and unpacked on the worker"
    finally:
        _stop(worker)
    assert _files(dask_out) == _files(serial)
    assert any(name.endswith("_mask_01_C1.nii.gz") for name in _files(dask_out))


class KillOnMaskRename(distributed.WorkerPlugin):
    """SIGKILLs its worker when the worker is about to rename a ``*_mask.nii.gz`` temporary into place."""

    def setup(self, worker) -> None:
        real_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            if str(dst).endswith("_mask.nii.gz"):
                os.kill(os.getpid(), signal.SIGKILL)
            return real_replace(src, dst, *args, **kwargs)

        os.replace = replace


def test_losing_the_last_worker_ends_the_run_in_one_line_and_leaves_no_file_of_ours(scheduler, tmp_path):
    root = tmp_path / "root"
    _archive(root, n=4)
    home = tmp_path / "worker_home"
    home.mkdir()
    worker = _start_worker(scheduler.scheduler_address, home, nanny=False)  # no nanny: a killed worker stays dead
    out = root / "grouped"
    try:
        _wait_for_workers(scheduler.scheduler_address, 1)
        cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the worker cannot import this test module
        try:
            with distributed.Client(scheduler.scheduler_address, set_as_default=False) as client:
                client.register_plugin(KillOnMaskRename(), name="kill-on-mask-rename")
        finally:
            cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        code = (
            "import sys, logging\n"
            f"sys.path.insert(0, {str(REPO)!r})\n"
            "import utils.run.dask_runner as d\n"
            "d.LOST_WORKERS_WAIT_S = 3.0\n"
            "from tests.conftest import load_script\n"
            f"sys.exit(load_script({LAY.script('02')!r}).main(sys.argv[1:]))\n"
        )
        run = subprocess.run(
            [sys.executable, "-c", code, "--root_dir", str(root / "archive"), "--output_dir", str(out), "--archive_manifest",
             str(root / "descriptor/archive_manifest.xlsx"), "--no_pbar", "--dask_scheduler", scheduler.scheduler_address],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        _stop(worker)
    assert run.returncode == 2, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1, errors
    assert re.search(r"every Dask worker of the scheduler at \S+ was lost during the run and none joined within 3 s: 0 of 4 samples finished, 4 not processed", errors[0])
    assert worker.poll() is not None
    assert re.search(r"removed 1 (stale )?temporary file left by .*: \.verse601_mask\.nii\.gz\.\d+-[0-9a-f]{8}\.tmp", run.stderr), run.stderr[-2000:]
    assert leftover_temporaries(root) == []
    assert not list(root.rglob(".sample.lock")), "no lock file left"
    assert not list(root.rglob(dask_runner.PROBE_PREFIX + "*")), "no probe file left"
    # the sample being written when its worker died holds complete files only; it has no info yaml, so it is no sample yet
    for folder in (p for p in out.rglob("*") if p.is_dir() and p.name.startswith("verse6")):
        assert not (folder / f"{folder.name}_info.yaml").exists()
        assert all(not f.name.startswith(".") for f in folder.iterdir())


def test_the_code_bundle_holds_what_workers_import_and_read_and_is_named_by_its_content(tmp_path):
    name, data = dask_runner.make_code_bundle()
    again = dask_runner.make_code_bundle()
    assert (name, data) == again, "the same code gives the same bundle"
    assert re.fullmatch(r"segmentation-toolkit-[0-9a-f]{12}\.zip", name)
    (tmp_path / name).write_bytes(data)
    activate = dask_runner.make_activator()
    code = [name, ["utils", "verse", "nme", "eso"]]
    saved_path, saved_modules = list(sys.path), dict(sys.modules)
    try:
        assert activate(code, str(tmp_path)) is None
        target = tmp_path / name[: -len(".zip")]
        assert sys.path[0] == str(target)
        for rel in ("utils/archive/pairing.py", "verse/archive.py", "nme/archive.py", "eso/archive.py", "descriptors/verse/label_map.yaml", "requirements.txt"):
            assert (target / rel).is_file(), rel
        assert not list(target.rglob("__pycache__"))
        import utils.archive.pairing  # noqa: F401 - now from the unpacked bundle

        assert Path(sys.modules["utils.archive.pairing"].__file__).is_relative_to(target)
        assert activate(code, str(tmp_path)) is None  # a second task: nothing to do
        assert activate(["segmentation-toolkit-000000000000.zip", ["utils"]], str(tmp_path)).startswith("did not receive the toolkit's code")
    finally:
        sys.path[:] = saved_path
        for mod in [m for m in sys.modules if m.split(".")[0] in ("utils", "verse", "nme", "eso")]:
            del sys.modules[mod]
        sys.modules.update({k: v for k, v in saved_modules.items() if k.split(".")[0] in ("utils", "verse", "nme", "eso")})
    shutil.rmtree(tmp_path / name[: -len(".zip")])
