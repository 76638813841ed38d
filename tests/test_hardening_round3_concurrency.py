"""One writer per sample folder, and Ctrl-C (issue 18), with real processes.

- Routine 04 and the close tool started at the same moment on one grouped folder: both succeed and the
  result is the one a sequential run gives (mask, binary masks derived from it, both history entries);
  routine 05 accepts it.
- A folder locked by another process: a routine waits for it; with a short wait it refuses that sample
  in one line naming the other run; a lock file left by a dead run is taken over and removed.
- Ctrl-C: the temporary file of a write in progress is removed before the routine says it was
  interrupted (also in ``--workers`` processes, and for a real SIGINT).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, run_script
from tests.mini_archives import AFFINE, LAYOUTS, leftover_temporaries
from utils.files import sample_lock
from utils.labels.label_stats import label_stats
from utils.files.nifti_io import load_nifti, read_mask
from utils.files.sample_info import SampleDir, find_samples, read_info
from utils.archive.synthetic import write_raw_nifti

LAY = LAYOUTS["verse"]
CLOSE = "utils/morphological_close_on_slice_small_region.py"
NAMES = [f"verse7{i:02d}" for i in range(12)]


def _archive(root: Path, names: list[str], shape=(10, 10, 6)) -> None:
    for seed, name in enumerate(names, start=1):
        rng = np.random.default_rng(seed)
        volume = rng.integers(-200, 900, shape).astype(np.int16)
        mask = np.zeros(shape, np.uint8)
        mask[1:-1, 1:-1, 1:3] = 20
        mask[3, 3, 1] = 0  # a hole for the close tool
        mask[2:-2, 2:-2, 3:5] = 21
        write_raw_nifti(root / f"archive/dataset-01training/rawdata/sub-{name}/sub-{name}_ct.nii.gz", volume, AFFINE)
        write_raw_nifti(root / f"archive/dataset-01training/derivatives/sub-{name}/sub-{name}_seg-vert_msk.nii.gz", mask, AFFINE)


def _command(script: str, *args: object) -> list[str]:
    return [sys.executable, str(REPO / script), *map(str, args), "--no_pbar"]


def _bin(root: Path) -> list[str]:
    return _command(LAY.script("bin"), "--root_dir", root / "grouped", "--label_explanation", root / "descriptor/label_map.yaml")


def _close(root: Path) -> list[str]:
    g = root / "grouped"
    return _command(CLOSE, "--root_dir", g, "--output_dir", g, "--kernel_size", 3, 3, "--filter_halfedge", 1, "--region_area_thresh", 2.0)


@pytest.fixture(scope="module")
def grouped(tmp_path_factory) -> Path:
    """Routines 01-03 done on 12 samples."""
    root = tmp_path_factory.mktemp("locks") / "base"
    _archive(root, NAMES)
    assert LAY.run_01(root) == 0 and LAY.run_02(root) == 0
    assert run_script(LAY.script("03"), "--root_dir", root / "grouped") == 0
    return root


def _masks(root: Path) -> dict[str, bytes]:
    return {s.id: read_mask(load_nifti(s.mask), s.mask).tobytes() for s in find_samples(root / "grouped")}


def test_routine_04_and_the_close_tool_at_once_give_the_sequential_result(grouped, tmp_path):
    sequential = tmp_path / "sequential"
    shutil.copytree(grouped, sequential)
    for cmd in (_bin(sequential), _close(sequential)):
        subprocess.run(cmd, check=True, capture_output=True)
    together = tmp_path / "together"
    shutil.copytree(grouped, together)
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for cmd in (_bin(together), _close(together))]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for code, err in results:
        assert code == 0 and "Traceback" not in err, err[-2000:]
    assert _masks(together) == _masks(sequential)
    label_names = {int(line.split(":")[0]): line for line in ("20:", "21:")}
    for sample in find_samples(together / "grouped"):
        mask = read_mask(load_nifti(sample.mask), sample.mask)
        for idx, (_short, path) in sample.binary_masks().items():
            binary = np.asarray(load_nifti(path).dataobj)
            assert np.array_equal(binary, (mask == idx).astype(np.uint8)), f"{path.name} does not match its mask"
        steps = [h["step"] for h in read_info(sample.info)["history"]]
        assert steps.count("extract_binary_masks") == 1 and steps.count("morphological_close_on_slice_small_region") == 1, steps
        assert set(label_stats(mask).present) <= {0, *label_names}
    assert run_script(LAY.script("dm"), "--root_dir", together / "grouped", "--output_manifest_file", together / "grouped/dataset_manifest.xlsx") == 0
    assert leftover_temporaries(together) == [] and not list(together.rglob(sample_lock.LOCK_NAME))


def _hold_lock(folder: Path, seconds: float) -> subprocess.Popen:
    code = (
        f"import sys, time; sys.path.insert(0, {str(REPO)!r}); sys.argv[0] = 'other_run.py'\n"
        "from utils.files.sample_lock import sample_lock\n"
        f"with sample_lock({str(folder)!r}):\n"
        "    print('locked', flush=True)\n"
        f"    time.sleep({seconds})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_routine_waits_for_the_other_writer_of_a_sample(grouped, tmp_path):
    root = tmp_path / "wait"
    shutil.copytree(grouped, root)
    folder = SampleDir(next(p for p in (root / "grouped").rglob(f"{NAMES[0]}") if p.is_dir()))
    holder = _hold_lock(folder.path, 2.0)
    try:
        assert run_script(LAY.script("bin"), "--root_dir", root / "grouped", "--label_explanation", root / "descriptor/label_map.yaml") == 0
    finally:
        holder.wait(timeout=60)
    assert folder.binary_masks(), "the waiting run wrote the sample once the other run had finished"
    assert not list(root.rglob(sample_lock.LOCK_NAME))


def test_a_sample_locked_longer_than_the_wait_is_refused_in_one_line_naming_the_other_run(grouped, tmp_path, monkeypatch, caplog):
    root = tmp_path / "busy"
    shutil.copytree(grouped, root)
    folder = next(p for p in (root / "grouped").rglob(f"{NAMES[0]}") if p.is_dir())
    monkeypatch.setattr(sample_lock, "LOCK_WAIT_S", 0.3)
    holder = _hold_lock(folder, 30.0)
    try:
        caplog.clear()
        assert run_script(LAY.script("bin"), "--root_dir", root / "grouped", "--label_explanation", root / "descriptor/label_map.yaml") == 1
    finally:
        holder.kill()
        holder.wait()
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.getMessage().startswith(f"{NAMES[0]}: ")]
    assert len(lines) == 1
    assert re.search(rf"{re.escape(str(folder))}: being written by other_run \(pid {holder.pid} on \S+, since [0-9T:-]+\); this sample was left alone", lines[0]), lines[0]
    assert not SampleDir(folder).binary_masks(), "the locked sample was not touched"
    assert len([s for s in find_samples(root / "grouped") if s.binary_masks()]) == len(NAMES) - 1


def test_a_lock_file_left_by_a_dead_run_is_taken_over_and_removed(grouped, tmp_path):
    root = tmp_path / "stale"
    shutil.copytree(grouped, root)
    folder = next(p for p in (root / "grouped").rglob(f"{NAMES[0]}") if p.is_dir())
    (folder / sample_lock.LOCK_NAME).write_text("04_extract_binary_masks (pid 999999 on gone, since 2026-01-01T00:00:00)\n")
    assert run_script(LAY.script("bin"), "--root_dir", root / "grouped", "--label_explanation", root / "descriptor/label_map.yaml") == 0
    assert SampleDir(folder).binary_masks() and not (folder / sample_lock.LOCK_NAME).exists()


# --- Ctrl-C ---------------------------------------------------------------------------------------------------------


def _interrupted_run(root: Path, nth: int, *extra: str) -> subprocess.CompletedProcess:
    """Routine 02 as a user runs it, with Ctrl-C arriving just after its ``nth`` temporary file was created."""
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "import utils.files.atomic as atomic\n"
        "real, seen = atomic._create_temporary, [0]\n"
        "def create(path):\n"
        "    tmp = real(path)\n"
        "    seen[0] += 1\n"
        f"    if seen[0] == {nth}:\n"
        "        raise KeyboardInterrupt  # the signal arrives between creating the file and using it\n"
        "    return tmp\n"
        "atomic._create_temporary = create\n"
        "from utils.run.cli import run_main\n"
        "from tests.conftest import load_script\n"
        f"sys.argv[0] = {str(REPO / LAY.script('02'))!r}\n"
        f"run_main(load_script({LAY.script('02')!r}).main)\n"
    )
    args = ["--root_dir", str(root / "archive"), "--output_dir", str(root / "grouped"), "--archive_manifest", str(root / "descriptor/archive_manifest.xlsx"), "--no_pbar"]
    return subprocess.run([sys.executable, "-c", code, *args, *extra], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("extra", [(), ("--workers", "2")])
def test_ctrl_c_removes_the_temporary_files_it_made_before_saying_so(tmp_path, extra):
    root = tmp_path / "r"
    _archive(root, NAMES[:4])
    assert LAY.run_01(root) == 0
    run = _interrupted_run(root, 3, *extra)
    assert run.returncode == 130, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"ERROR 02_confirm_pairs: interrupted; (1 temporary file of unfinished writes removed|no unfinished write was in progress); finished files are complete", last), last
    assert leftover_temporaries(root) == []
    assert not list(root.rglob(sample_lock.LOCK_NAME))


@pytest.mark.parametrize("extra", [(), ("--workers", "2")])
def test_a_real_ctrl_c_leaves_no_temporary_file_and_no_traceback(tmp_path, extra):
    root = tmp_path / "r"
    _archive(root, NAMES[:6], shape=(120, 120, 80))
    assert LAY.run_01(root) == 0
    proc = subprocess.Popen(_command(LAY.script("02"), "--root_dir", root / "archive", "--output_dir", root / "grouped",
                                     "--archive_manifest", root / "descriptor/archive_manifest.xlsx", *extra),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list((root / "grouped").rglob("*_volume.nii.gz")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole process group
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode in (0, 130), err[-2000:]
    assert "Traceback" not in err
    if proc.returncode == 130:
        assert "interrupted; " in err.strip().splitlines()[-1]
    assert leftover_temporaries(root) == []
    assert not list(root.rglob(sample_lock.LOCK_NAME))
    assert LAY.run_02(root) == 0, "a re-run finishes the work"
