"""``kill -9`` at chosen points of routines 02, 03, 04 and a mask-QC tool, then a re-run (issue 10).

A forked child runs one routine and SIGKILLs itself at a chosen file operation
(just after creating the n-th temporary file, just before or just after the
n-th rename onto a file whose name holds a given text). The re-run must end
byte-identical to an uninterrupted run (info yaml files compared without their
``date`` fields), with no temporary file left once the killed run's leftovers
are older than the stale age (the test ages them instead of waiting an hour),
and with a history that tells what really happened.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import run_script
from tests.mini_archives import AFFINE, leftover_temporaries
from utils.files.atomic import STALE_TEMPORARY_AGE_S
from utils.archive.synthetic import write_raw_nifti

NAMES = ("verse601", "verse602", "verse603")
ROUTINES = ("02", "03", "04", "close")


def _arrays(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A volume and a mask with T13 (28) and sacrum (27) for routine 03 and one-voxel holes for the close tool."""
    rng = np.random.default_rng(seed)
    volume = rng.integers(-200, 900, (8, 8, 6)).astype(np.int16)
    mask = np.zeros((8, 8, 6), np.uint8)
    mask[1:7, 1:7, 1:3] = 20
    mask[3, 3, 1] = 0  # hole (0.64 mm² < 2 mm²)
    mask[1:7, 1:7, 3:5] = 28
    mask[4, 2, 4] = 0
    mask[0, 0, 5] = 27
    return volume, mask


def _make_archive(root: Path) -> None:
    for seed, name in enumerate(NAMES, start=1):
        volume, mask = _arrays(seed)
        write_raw_nifti(root / f"archive/dataset-01training/rawdata/sub-{name}/sub-{name}_ct.nii.gz", volume, AFFINE)
        write_raw_nifti(root / f"archive/dataset-01training/derivatives/sub-{name}/sub-{name}_seg-vert_msk.nii.gz", mask, AFFINE)


def _run(root: Path, routine: str) -> int:
    g = root / "grouped"
    args = {
        "02": ("verse/02_confirm_pairs.py", "--root_dir", root / "archive", "--output_dir", g, "--archive_manifest", root / "descriptor/archive_manifest.xlsx"),
        "03": ("verse/03_reduce_sacrum_cocygis_and_revise_T13_label.py", "--root_dir", g),
        "04": ("verse/04_extract_binary_masks.py", "--root_dir", g, "--label_explanation", root / "descriptor/label_map.yaml"),
        "close": ("utils/morphological_close_on_slice_small_region.py", "--root_dir", g, "--output_dir", g,
                  "--kernel_size", "3", "3", "--filter_halfedge", "1", "--region_area_thresh", "2.0"),
    }[routine]  # fmt: skip
    return run_script(*args)


def _run_killed(root: Path, routine: str, when: str, text: str | None, nth: int) -> None:
    """Run ``routine`` in a forked child that SIGKILLs itself at the chosen point; assert it was killed there."""
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            import utils.files.atomic as atomic

            seen = {"n": 0}
            real_replace, real_create = os.replace, atomic._create_temporary

            def replace(src, dst):
                hit = text in Path(dst).name
                if hit:
                    seen["n"] += 1
                if hit and seen["n"] == nth and when == "before":
                    os.kill(os.getpid(), signal.SIGKILL)
                real_replace(src, dst)
                if hit and seen["n"] == nth and when == "after":
                    os.kill(os.getpid(), signal.SIGKILL)

            def create(path):
                tmp = real_create(path)
                seen["n"] += 1
                if seen["n"] == nth:
                    os.kill(os.getpid(), signal.SIGKILL)
                return tmp

            if when == "created":
                atomic._create_temporary = create
            else:
                atomic.os.replace = replace
            _run(root, routine)
            os._exit(0)  # the kill point was never reached
        except BaseException:
            os._exit(3)
    _pid, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"child ended with status {status}, not killed"


def _snapshot(root: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for p in sorted((root / "grouped").rglob("*")):
        if p.is_file():
            rel = p.relative_to(root).as_posix()
            out[rel] = _without_dates(yaml.safe_load(p.read_text())) if p.suffix == ".yaml" else p.read_bytes()
    return out


def _without_dates(value):
    if isinstance(value, dict):
        return {k: _without_dates(v) for k, v in value.items() if k != "date"}
    if isinstance(value, list):
        return [_without_dates(v) for v in value]
    return value


@pytest.fixture(scope="module")
def states(tmp_path_factory):
    """The archive after routine 01 (base), and the snapshot of an uninterrupted run of 02, 03, 04, close."""
    base = tmp_path_factory.mktemp("kill") / "base"
    _make_archive(base)
    assert run_script("verse/01_gen_archive_manifest.py", "--root_dir", base / "archive", "--output_manifest_file", base / "descriptor/archive_manifest.xlsx") == 0
    work = base.parent / "work"
    shutil.copytree(base, work)
    for routine in ROUTINES:
        assert _run(work, routine) == 0
    reference = _snapshot(work)
    history = [h["step"] for h in yaml.safe_load((work / "grouped/VerSe20/train/verse601/verse601_info.yaml").read_text())["history"]]
    assert history == ["confirm_pairs", "reduce_sacrum_coccyx_and_revise_T13", "extract_binary_masks", "morphological_close_on_slice_small_region"]
    return base, work, reference


KILLS = [
    ("02", "after", "_mask.nii.gz", 1),  # mask written, info yaml not
    ("02", "before", "_info.yaml", 2),
    ("02", "created", None, 4),  # an empty temporary file left
    ("03", "after", "_mask.nii.gz", 2),  # revised mask written, info yaml not
    ("04", "after", "_mask_10_T3.nii.gz", 2),  # some binary masks of the second sample written
    ("04", "before", "_info.yaml", 1),
    ("close", "after", "_info.yaml", 1),  # pending entry written, nothing else
    ("close", "before", "_mask.nii.gz", 1),  # binary masks rewritten, mask not
    ("close", "after", "_mask.nii.gz", 1),  # mask rewritten, history not: it must stay true
]


@pytest.mark.parametrize("routine, when, text, nth", KILLS)
def test_rerun_after_sigkill_matches_an_uninterrupted_run(states, routine, when, text, nth):
    base, work, reference = states
    shutil.rmtree(work)
    shutil.copytree(base, work)  # same path as the reference run: the info yaml files name the same files
    before = ROUTINES[: ROUTINES.index(routine)]
    for r in before:
        assert _run(work, r) == 0
    _run_killed(work, routine, when, text, nth)
    stale = time.time() - 2 * STALE_TEMPORARY_AGE_S
    for tmp in work.rglob(".*.tmp"):
        os.utime(tmp, (stale, stale))  # an hour later
    for r in ROUTINES[ROUTINES.index(routine) :]:
        assert _run(work, r) == 0, r
    assert leftover_temporaries(work) == []
    after = _snapshot(work)
    assert sorted(after) == sorted(reference)
    different = [k for k in reference if after[k] != reference[k]]
    assert different == [], different
