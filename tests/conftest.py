"""Shared test helpers: run a script's ``main`` in-process, locate the optional real data."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def load_script(rel_path: str):
    """Import a script such as ``verse/01_gen_archive_manifest.py`` as a module (names may start with digits)."""
    path = REPO / rel_path
    name = "script_" + rel_path.replace("/", "_").replace(".py", "").replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(rel_path: str, *argv: object) -> int:
    """Call ``main([...])`` of a script in-process and return its exit code."""
    return load_script(rel_path).main([str(a) for a in argv])


@pytest.fixture
def realdata() -> Path:
    """``../shared/realdata``; the test is skipped when it is absent (a user's clone has none)."""
    if not REALDATA.is_dir():
        pytest.skip("../shared/realdata not present")
    return REALDATA


# --- demo datasets through their pipelines, built once per test session -----------------------------------------------
# Tests must treat them as read-only: copy the grouped folder (shutil.copytree) before changing anything.


@pytest.fixture(scope="session")
def verse_demo(tmp_path_factory) -> Path:
    """ROOT of the VerSe demo archive after routines 01-07 (``ROOT/grouped``, ``ROOT/descriptor``)."""
    from tests.test_verse_pipeline import run_01_02, run_03_to_07
    from verse.demo_archive import make_demo_archive

    root = tmp_path_factory.mktemp("verse_demo")
    make_demo_archive(root / "archive")
    assert run_01_02(root) == (0, 0)
    assert run_03_to_07(root) == [0] * 9
    return root


@pytest.fixture(scope="session")
def eso_demo(tmp_path_factory) -> Path:
    """ROOT of the ESO demo archive after routines 01-02, the tutorial's mask thresholding, and routines 03-06."""
    from eso.demo_archive import make_demo_archive
    from tests.test_eso_pipeline import run_01_02, run_03_to_06

    root = tmp_path_factory.mktemp("eso_demo")
    make_demo_archive(root / "archive")
    assert run_01_02(root) == (0, 0)
    grouped = root / "grouped"
    assert run_script("utils/mask_thresholding.py", "--root_dir", grouped, "--thresh", "-140.0", "1000.0", "--output_dir", grouped, "--no_pbar") == 0
    assert run_03_to_06(root) == [0] * 8
    return root


@pytest.fixture(scope="session")
def nme_demo(tmp_path_factory) -> Path:
    """ROOT of the NME demo archive after the tutorial's commands (routines 01-06)."""
    from nme.demo_archive import make_demo_archive
    from tests.test_nme_pipeline import TUTORIAL, run_tutorial

    root = tmp_path_factory.mktemp("nme_demo")
    make_demo_archive(root / "archive")
    assert run_tutorial(root) == [0] * len(TUTORIAL)
    return root


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "nnunet_draws: draw nnU-Net's own 10e7 foreground values for the fingerprint (slow)")


@pytest.fixture(autouse=True)
def _fewer_fingerprint_draws(request, monkeypatch):
    """Exports in tests draw 10e4 foreground values per dataset for nnU-Net's fingerprint instead of 10e7.

    The draws cost seconds and a gigabyte per export whatever the dataset's size (nnU-Net's rule);
    the count is decided in the exporting process, so workers and Dask follow it. Tests marked
    ``nnunet_draws`` keep nnU-Net's count and pin the fingerprint to nnU-Net's own bytes.
    """
    if request.node.get_closest_marker("nnunet_draws") is None:
        monkeypatch.setattr("utils.export.fingerprint.TOTAL_SAMPLES", 10e4)
