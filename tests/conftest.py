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
