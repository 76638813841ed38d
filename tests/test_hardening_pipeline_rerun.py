"""``run_pipeline.sh`` twice in a row (issue 10): the second run exits 0 and changes nothing.

VerSe and NME here; ESO in ``tests/test_eso_pipeline.py`` (its pipeline-script test runs the script twice).
"""

from __future__ import annotations

import pytest

from tests.conftest import run_script
from tests.mini_archives import assert_second_pipeline_run_changes_nothing, leftover_temporaries, run_pipeline_script


@pytest.mark.parametrize("dataset", ["verse", "nme"])
def test_pipeline_script_twice_changes_nothing_the_second_time(dataset, tmp_path):
    root = tmp_path / dataset
    assert run_script("demo/make_demo_archive.py", dataset, root) == 0
    first = run_pipeline_script(dataset, root)
    assert first.returncode == 0, first.stderr[-3000:]
    assert_second_pipeline_run_changes_nothing(dataset, root)
    assert leftover_temporaries(root) == []
